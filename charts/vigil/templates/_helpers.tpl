{{/*
The watched namespaces, comma-joined: watchNamespace may be a list or a string of
comma-separated names. Empty: every namespace.
*/}}
{{- define "vigil.watchNamespaces" -}}
{{- $ns := .Values.watchNamespace | default list -}}
{{- if kindIs "string" $ns -}}{{- $ns = splitList "," $ns -}}{{- end -}}
{{- $out := list -}}
{{- range $ns -}}{{- $n := trim (toString .) -}}{{- if $n -}}{{- $out = append $out $n -}}{{- end -}}{{- end -}}
{{- $out | uniq | join "," -}}
{{- end -}}

{{- define "vigil.labels" -}}
app.kubernetes.io/name: vigil
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/*
The rules on namespaced objects: a ClusterRole's in cluster mode, a Role's in the watched
namespace in namespace mode. Each is explained in manifests/rbac.yaml.
*/}}
{{- define "vigil.namespacedRules" -}}
- apiGroups: ["vigil.dev"]
  resources: ["monitoredvalidators", "monitorpolicies", "pipelineruns"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["vigil.dev"]
  resources: ["monitoredvalidators/status", "monitorpolicies/status", "pipelineruns/status"]
  verbs: ["patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "delete"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["pods/eviction"]
  verbs: ["create"]
- apiGroups: ["apps"]
  resources: ["statefulsets", "deployments", "daemonsets"]
  verbs: ["get", "patch"]
- apiGroups: ["apps"]
  resources: ["replicasets"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: ["vigil.dev"]
  resources: ["pipelineruns/finalizers"]
  verbs: ["update"]
- apiGroups: ["vigil.dev"]
  resources: ["pipelineruns"]
  verbs: ["patch", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["list"]
{{- end -}}

{{- define "vigil.crdRule" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  resourceNames: ["monitoredvalidators.vigil.dev", "monitorpolicies.vigil.dev", "pipelineruns.vigil.dev"]
  verbs: ["get"]
{{- end -}}

{{/* The checks of the restart-only admission policy; manifests/admission.yaml explains them. */}}
{{- define "vigil.restartOnly" -}}
variables:
  - name: key
    expression: "'vigil.dev/restartedAt'"
  - name: new
    expression: "has(object.spec.template.metadata) && has(object.spec.template.metadata.annotations) ? object.spec.template.metadata.annotations : {}"
  - name: old
    expression: "has(oldObject.spec.template.metadata) && has(oldObject.spec.template.metadata.annotations) ? oldObject.spec.template.metadata.annotations : {}"
  - name: generationKey
    expression: "'deprecated.daemonset.template.generation'"
  - name: newMeta
    expression: "has(object.metadata.annotations) ? object.metadata.annotations : {}"
  - name: oldMeta
    expression: "has(oldObject.metadata.annotations) ? oldObject.metadata.annotations : {}"
validations:
  - expression: "object.spec.template.spec == oldObject.spec.template.spec"
    message: "Vigil's ServiceAccount may only restart a workload (the vigil.dev/restartedAt pod template annotation); it may not change the pod spec (images, commands, volumes, service account)"
    reason: Forbidden
  - expression: "variables.new.all(k, k == variables.key || (k in variables.old && variables.old[k] == variables.new[k])) && variables.old.all(k, k == variables.key || k in variables.new)"
    message: "Vigil's ServiceAccount may change only the vigil.dev/restartedAt annotation of a pod template"
    reason: Forbidden
  - expression: "object.spec.template.metadata.?labels == oldObject.spec.template.metadata.?labels"
    message: "Vigil's ServiceAccount may not change a pod template's labels"
    reason: Forbidden
  - expression: >-
      object.spec.?replicas == oldObject.spec.?replicas &&
      object.spec.selector == oldObject.spec.selector &&
      object.spec.?strategy == oldObject.spec.?strategy &&
      object.spec.?updateStrategy == oldObject.spec.?updateStrategy &&
      object.spec.?paused == oldObject.spec.?paused &&
      object.spec.?minReadySeconds == oldObject.spec.?minReadySeconds &&
      object.spec.?progressDeadlineSeconds == oldObject.spec.?progressDeadlineSeconds &&
      object.spec.?revisionHistoryLimit == oldObject.spec.?revisionHistoryLimit &&
      object.spec.?serviceName == oldObject.spec.?serviceName &&
      object.spec.?podManagementPolicy == oldObject.spec.?podManagementPolicy &&
      object.spec.?volumeClaimTemplates == oldObject.spec.?volumeClaimTemplates &&
      object.spec.?persistentVolumeClaimRetentionPolicy == oldObject.spec.?persistentVolumeClaimRetentionPolicy &&
      object.spec.?ordinals == oldObject.spec.?ordinals
    message: "Vigil's ServiceAccount may not change replicas, selector, update strategy or any other workload setting, only restart it"
    reason: Forbidden
  - expression: >-
      object.metadata.?labels == oldObject.metadata.?labels &&
      variables.newMeta.all(k, k == variables.generationKey || (k in variables.oldMeta && variables.oldMeta[k] == variables.newMeta[k])) &&
      variables.oldMeta.all(k, k == variables.generationKey || k in variables.newMeta) &&
      object.metadata.?ownerReferences == oldObject.metadata.?ownerReferences &&
      object.metadata.?finalizers == oldObject.metadata.?finalizers
    message: "Vigil's ServiceAccount may not change a workload's labels, annotations, owners or finalizers"
    reason: Forbidden
{{- end -}}
