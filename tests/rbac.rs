//! Least privilege, asked of the real API server: what the operator's ServiceAccount may and
//! may not do, with the RBAC and admission policy the Helm chart renders (namespace mode, as
//! every end-to-end test runs the operator, and cluster mode). `kubectl auth can-i --as`
//! evaluates RBAC for that identity; `kubectl --as` really sends its writes, so the
//! ValidatingAdmissionPolicy is exercised too.

mod support;

use support::cluster::{self, Cluster};

/// `kubectl auth can-i`; `resource` may name a subresource (`pods/eviction`).
fn can(c: &Cluster, who: &str, verb: &str, resource: &str, namespace: &str) -> bool {
    let (resource, sub) = match resource.split_once('/') {
        Some((r, s)) => (r, format!("--subresource={s}")),
        None => (resource, "--subresource=".to_string()),
    };
    let out = c.kubectl(&[
        "auth", "can-i", verb, resource, &sub, "-n", namespace, "--as", who,
    ]);
    match String::from_utf8_lossy(&out.stdout).trim() {
        "yes" => true,
        "no" => false,
        other => panic!(
            "kubectl auth can-i {verb} {resource} -n {namespace}: {other:?} {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// `kubectl --as WHO -n NS patch KIND/NAME --type merge -p PATCH`: Ok, or Err(stderr).
fn patch_as(c: &Cluster, who: &str, ns: &str, what: &str, patch: &str) -> Result<(), String> {
    let out = c.kubectl(&[
        "--as", who, "-n", ns, "patch", what, "--type", "merge", "-p", patch,
    ]);
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn apply(c: &Cluster, args: &[&str], input: &str) {
    let out = c.kubectl_stdin(args, input);
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const WORKLOADS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: node-d}
spec:
  replicas: 1
  strategy: {type: Recreate}
  selector: {matchLabels: {app: node-d}}
  template:
    metadata: {labels: {app: node-d}}
    spec: {containers: [{name: node, image: validator:1}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: node-s}
spec:
  serviceName: node-s
  replicas: 1
  selector: {matchLabels: {app: node-s}}
  template:
    metadata: {labels: {app: node-s}}
    spec: {containers: [{name: node, image: validator:1}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: node-ds}
spec:
  selector: {matchLabels: {app: node-ds}}
  template:
    metadata: {labels: {app: node-ds}}
    spec: {containers: [{name: node, image: validator:1}]}
"#;

#[test]
fn namespace_mode_reaches_nothing_outside_the_watched_namespace() {
    let c = cluster::shared();
    support::install_crds(c);
    let ns = c.namespace("rbac");
    let other = c.namespace("rbac-other");
    let sa = support::install_operator_rights(c, &ns);
    let who = format!("system:serviceaccount:{ns}:{sa}");
    let can = |verb: &str, resource: &str, namespace: &str| can(c, &who, verb, resource, namespace);

    // What it needs, in the namespace it watches.
    for (verb, resource) in [
        ("watch", "monitoredvalidators.vigil.dev"),
        ("patch", "monitoredvalidators.vigil.dev/status"),
        ("get", "secrets"),
        ("create", "pods/eviction"),
        ("patch", "daemonsets.apps"),
        ("create", "jobs.batch"),
        ("get", "leases.coordination.k8s.io"),
        ("create", "leases.coordination.k8s.io"),
        ("patch", "leases.coordination.k8s.io"),
    ] {
        assert!(can(verb, resource, &ns), "needs {verb} {resource}");
    }
    // Nothing it does not use, even there.
    for (verb, resource) in [
        ("list", "secrets"),
        ("watch", "secrets"),
        ("create", "pods"),
        ("delete", "statefulsets.apps"),
        ("update", "monitoredvalidators.vigil.dev/status"),
        ("delete", "monitoredvalidators.vigil.dev"),
        ("update", "leases.coordination.k8s.io"),
        ("delete", "leases.coordination.k8s.io"),
    ] {
        assert!(!can(verb, resource, &ns), "no unused {verb} {resource}");
    }
    // Nothing at all anywhere else: no Secret of another namespace, no workload patch in
    // kube-system, no lease that could steal the scheduler's or fake a node heartbeat.
    for namespace in [other.as_str(), "kube-system", "kube-node-lease", "default"] {
        for (verb, resource) in [
            ("get", "secrets"),
            ("patch", "daemonsets.apps"),
            ("patch", "deployments.apps"),
            ("delete", "pods"),
            ("create", "leases.coordination.k8s.io"),
            ("patch", "leases.coordination.k8s.io"),
            ("list", "monitoredvalidators.vigil.dev"),
        ] {
            assert!(
                !can(verb, resource, namespace),
                "{verb} {resource} in {namespace}"
            );
        }
    }
    assert!(!can("list", "nodes", &ns));

    // The admission policy: of a workload it may change the restart annotation, nothing else.
    apply(c, &["apply", "-n", &ns, "-f", "-"], WORKLOADS);
    for what in [
        "deployment/node-d",
        "statefulset/node-s",
        "daemonset/node-ds",
    ] {
        let restart =
            r#"{"spec":{"template":{"metadata":{"annotations":{"vigil.dev/restartedAt":"t1"}}}}}"#;
        patch_as(c, &who, &ns, what, restart).unwrap_or_else(|e| panic!("restart {what}: {e}"));
        for (patch, says) in [
            (
                r#"{"spec":{"template":{"spec":{"containers":[{"name":"node","image":"evil:1"}]}}}}"#,
                "may not change the pod spec",
            ),
            (
                r#"{"spec":{"template":{"metadata":{"annotations":{"other":"x"}}}}}"#,
                "only the vigil.dev/restartedAt annotation",
            ),
            (
                r#"{"spec":{"template":{"metadata":{"labels":{"extra":"x"}}}}}"#,
                "may not change a pod template's labels",
            ),
            (r#"{"spec":{"minReadySeconds":30}}"#, "only restart it"),
            (
                r#"{"metadata":{"labels":{"extra":"x"}}}"#,
                "labels, annotations, owners or finalizers",
            ),
        ] {
            let err = patch_as(c, &who, &ns, what, patch)
                .expect_err(&format!("{what}: {patch} must be refused"));
            assert!(
                err.contains("ValidatingAdmissionPolicy") && err.contains(says),
                "{what}: {patch}: {err}"
            );
        }
    }
    let scale = patch_as(
        c,
        &who,
        &ns,
        "deployment/node-d",
        r#"{"spec":{"replicas":2}}"#,
    )
    .expect_err("a scale-up could run a validator twice");
    assert!(scale.contains("only restart it"), "{scale}");
    // The image really is unchanged, and an admin is not held by the policy.
    let image = c.kubectl_ok(&[
        "get",
        "-n",
        &ns,
        "deployment/node-d",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image.trim(), "validator:1");
    c.kubectl_ok(&[
        "-n",
        &ns,
        "patch",
        "deployment/node-d",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"node","image":"validator:2"}]}}}}"#,
    ]);
}

#[test]
fn cluster_mode_writes_leases_only_in_the_operators_own_namespace() {
    let c = cluster::shared();
    let ns = c.namespace("rbac-cluster");
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/vigil");
    let out = c.helm(&[
        "template",
        &ns,
        chart,
        "--namespace",
        &ns,
        "--show-only",
        "templates/rbac.yaml",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    apply(
        c,
        &["apply", "-f", "-"],
        &String::from_utf8_lossy(&out.stdout),
    );
    let who = format!("system:serviceaccount:{ns}:{ns}");
    let can = |verb: &str, resource: &str, namespace: &str| can(c, &who, verb, resource, namespace);
    for verb in ["get", "create", "patch"] {
        assert!(
            can(verb, "leases", &ns),
            "{verb} leases in its own namespace"
        );
    }
    for other in ["kube-system", "kube-node-lease", "default"] {
        for verb in ["create", "patch", "update", "delete"] {
            assert!(!can(verb, "leases", other), "{verb} leases in {other}");
        }
    }
    assert!(!can("update", "leases", &ns), "no unused verb");
    assert!(!can("delete", "leases", &ns), "no unused verb");
    // Cluster mode reaches validators in every namespace (its purpose) but still cannot
    // list Secrets anywhere: each is read by name.
    assert!(can("get", "secrets", "default"));
    assert!(!can("list", "secrets", "default"));
}

/// Validators this process knows (every `vigil_validators{ready}` series).
fn known(op: &support::operator::Operator) -> f64 {
    ["True", "False", "Unknown"]
        .iter()
        .map(|r| {
            op.metric(&format!("vigil_validators{{ready=\"{r}\"}}"))
                .unwrap_or(0.0)
        })
        .sum()
}

#[test]
fn namespace_mode_watches_several_namespaces_with_a_role_in_each() {
    use std::time::Duration;
    use support::{apply_ok, condition, eventually, get_json};
    const T: Duration = Duration::from_secs(90);
    let c = cluster::shared();
    support::install_crds(c);
    let ns = c.namespace("multi");
    let second = c.namespace("multi-second");
    let outside = c.namespace("multi-outside");
    let sim = support::simulator::Simulator::start(&["--nodes", "4", "--block-time", "1s"]);
    let policy = "apiVersion: vigil.dev/v1alpha1\nkind: MonitorPolicy\nmetadata:\n  name: p\nspec:\n  probe: {interval: 1s, timeout: 900ms, failureThreshold: 1, successThreshold: 1}\n  health: {minPeers: 1}\n";
    for n in [&ns, &second, &outside] {
        apply_ok(c, n, policy);
    }
    apply_ok(c, &ns, &sim.validator_yaml(0, "p"));
    apply_ok(c, &second, &sim.validator_yaml(1, "p"));
    apply_ok(c, &outside, &sim.validator_yaml(2, "p"));

    let mut op = support::operator::Operator::start_watching(c, &ns, &[&second], "multi");
    op.wait_ready(T);
    // The chart made a Role in each watched namespace and none elsewhere.
    let who = format!("system:serviceaccount:{ns}:{ns}");
    for n in [&ns, &second] {
        assert!(can(c, &who, "get", "secrets", n), "get secrets in {n}");
        assert!(can(c, &who, "watch", "monitoredvalidators.vigil.dev", n));
    }
    assert!(!can(c, &who, "get", "secrets", &outside));
    assert!(!can(
        c,
        &who,
        "list",
        "monitoredvalidators.vigil.dev",
        &outside
    ));

    for (n, i) in [(&ns, 0), (&second, 1)] {
        let name = &sim.nodes[i].name;
        eventually(T, &format!("{n}/{name} Ready=True"), || {
            let mv = get_json(c, n, "mv", name)?;
            (condition(&mv, "Ready")?["status"] == "True").then_some(())
        });
    }
    // Each watched namespace's policy counts its own validator.
    for n in [&ns, &second] {
        eventually(T, &format!("policy in {n} counts 1"), || {
            let p = get_json(c, n, "monitorpolicy", "p")?;
            (p["status"]["validators"] == 1).then_some(())
        });
    }
    // The gauges are refreshed every few seconds.
    eventually(T, "the process knows both", || {
        (known(&op) == 2.0).then_some(())
    });

    // Objects come and go in either namespace after the first listing.
    apply_ok(c, &second, &sim.validator_yaml(3, "p"));
    let name = &sim.nodes[3].name;
    eventually(
        T,
        "a validator added to the second namespace is judged",
        || {
            let mv = get_json(c, &second, "mv", name)?;
            (condition(&mv, "Ready")?["status"] == "True").then_some(())
        },
    );
    c.kubectl_ok(&["delete", "mv", "-n", &ns, &sim.nodes[0].name]);
    eventually(T, "a deleted validator is forgotten", || {
        (known(&op) == 2.0 && op.metric("vigil_validators{ready=\"True\"}") == Some(2.0))
            .then_some(())
    });

    // The namespace outside the list is never touched, and nothing was refused.
    let mv = get_json(c, &outside, "mv", &sim.nodes[2].name).expect("still there");
    assert!(
        mv["status"].is_null(),
        "outside validator got a status: {mv}"
    );
    let p = get_json(c, &outside, "monitorpolicy", "p").expect("still there");
    assert!(p["status"].is_null(), "outside policy got a status: {p}");
    let log = op.log_text();
    assert!(!log.contains("forbidden"), "a call was refused:\n{log}");
}
