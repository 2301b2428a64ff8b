//! The Helm chart, with real Helm against the real control plane: it lints, installs (its
//! pods reach Ready on kwok's nodes), grants exactly the RBAC rules of `manifests/`, and
//! uninstalls cleanly.

mod support;

use serde_json::Value;
use std::time::Duration;
use support::cluster;

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/vigil");

fn helm_ok(c: &cluster::Cluster, args: &[&str]) -> String {
    let out = c.helm(args);
    assert!(
        out.status.success(),
        "helm {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The first document of `kind` in a YAML stream whose metadata.name is `name`.
fn doc(yaml_stream: &str, kind: &str, name: &str) -> Value {
    for doc in yaml_stream.split("\n---") {
        let Ok(v) = serde_yaml::from_str::<Value>(doc) else {
            continue;
        };
        if v["kind"] == kind && v["metadata"]["name"] == name {
            return v;
        }
    }
    panic!("no {kind} {name} in:\n{yaml_stream}");
}

fn manifest(path: &str) -> String {
    std::fs::read_to_string(format!("{}/manifests/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn chart_lints_and_matches_the_plain_manifests() {
    let c = cluster::shared();
    helm_ok(c, &["lint", "--strict", CHART]);
    let rendered = helm_ok(
        c,
        &["template", "vigil", CHART, "--namespace", "vigil-system"],
    );
    let plain = manifest("rbac.yaml");
    assert_eq!(
        doc(&rendered, "ClusterRole", "vigil")["rules"],
        doc(&plain, "ClusterRole", "vigil")["rules"],
        "chart and manifests/rbac.yaml grant different rules"
    );
    assert_eq!(
        doc(&rendered, "Role", "vigil-leader-election")["rules"],
        doc(&plain, "Role", "vigil-leader-election")["rules"],
    );
    assert!(rendered.contains("--lease-name=vigil-leader"), "{rendered}");
    // The admission policy is on by default and is the one of manifests/admission.yaml.
    let admission = manifest("admission.yaml");
    for kind in [
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ] {
        let (a, b) = (
            doc(&rendered, kind, "vigil-restart-only"),
            doc(&admission, kind, "vigil-restart-only"),
        );
        assert_eq!(
            a["spec"], b["spec"],
            "chart and manifests/admission.yaml differ"
        );
    }

    // Namespace mode: the same rules in a Role of the watched namespace, and a ClusterRole
    // that only reads Vigil's CRDs; as manifests/namespaced/rbac.yaml.
    let rendered = helm_ok(
        c,
        &[
            "template",
            "vigil",
            CHART,
            "--namespace",
            "vigil-system",
            "--set",
            "rbac.scope=namespace",
            "--set",
            "watchNamespace=validators",
        ],
    );
    let plain = manifest("namespaced/rbac.yaml");
    let role = doc(&rendered, "Role", "vigil");
    assert_eq!(role["metadata"]["namespace"], "validators");
    assert_eq!(role["rules"], doc(&plain, "Role", "vigil")["rules"]);
    let crds = doc(&rendered, "ClusterRole", "vigil-crds");
    assert_eq!(
        crds["rules"],
        doc(&plain, "ClusterRole", "vigil-crds")["rules"]
    );
    assert_eq!(crds["rules"].as_array().map(Vec::len), Some(1), "{crds}");
    assert!(
        !rendered.contains("kind: ClusterRole\nmetadata:\n  name: vigil\n"),
        "no cluster-wide rules in namespace mode"
    );
    // Role rules minus nothing = ClusterRole rules minus the CRD rule: one list of rights.
    let mut cluster_rules = doc(&manifest("rbac.yaml"), "ClusterRole", "vigil")["rules"]
        .as_array()
        .unwrap()
        .clone();
    cluster_rules.retain(|r| r["apiGroups"][0] != "apiextensions.k8s.io");
    assert_eq!(role["rules"], Value::Array(cluster_rules));

    // Several namespaces, as a list or a comma-separated string: a Role and RoleBinding in
    // each, one --namespace argument with all of them.
    for set in [
        "watchNamespace={validators,more}",
        "watchNamespace=validators\\, more",
    ] {
        let rendered = helm_ok(
            c,
            &[
                "template",
                "vigil",
                CHART,
                "--namespace",
                "vigil-system",
                "--set",
                "rbac.scope=namespace",
                "--set",
                set,
            ],
        );
        let placed = |kind: &str| -> Vec<String> {
            rendered
                .split("\n---")
                .filter_map(|d| serde_yaml::from_str::<Value>(d).ok())
                .filter(|v| v["kind"] == kind && v["metadata"]["name"] == "vigil")
                .map(|v| {
                    v["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or("")
                        .to_string()
                })
                .collect()
        };
        assert_eq!(placed("Role"), ["validators", "more"], "{set}");
        assert_eq!(placed("RoleBinding"), ["validators", "more"], "{set}");
        assert!(
            rendered.contains("- --namespace=validators,more\n"),
            "{set}: {rendered}"
        );
    }

    // Settings that cannot work are refused with a message a person understands.
    for (set, says) in [
        (
            "rbac.scope=namespace",
            "rbac.scope=namespace needs watchNamespace",
        ),
        (
            "rbac.scope=everywhere",
            "rbac.scope must be cluster or namespace",
        ),
    ] {
        let out = c.helm(&["template", "vigil", CHART, "--set", set]);
        assert!(!out.status.success(), "{set} rendered");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{set}: {err}");
    }
}

#[test]
fn chart_installs_and_uninstalls_on_the_real_cluster() {
    let c = cluster::shared();
    let ns = c.namespace("helm");
    let release = ns.clone();
    helm_ok(
        c,
        &[
            "install",
            &release,
            CHART,
            "--namespace",
            &ns,
            "--set",
            &format!("watchNamespace={ns}"),
            "--wait",
            "--timeout",
            "120s",
        ],
    );
    // Helm's wait follows the new ReplicaSet; the Deployment's own status may trail it.
    let deploy = support::eventually(Duration::from_secs(30), "2 ready replicas", || {
        let d = c.kubectl_json(&["get", "deployment", "-n", &ns, &release, "-o", "json"]);
        (d["status"]["readyReplicas"] == 2).then_some(d)
    });
    let args = deploy["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains(&format!("--namespace={ns}")), "{args}");
    // The ServiceAccount really has the rights the operator needs, and no more than that.
    let sa = format!("system:serviceaccount:{ns}:{release}");
    let can = |verb: &str, what: &str| {
        let mut args = vec!["auth", "can-i", verb, what, "-n", &ns, "--as", &sa];
        let sub;
        if let Some((resource, subresource)) = what.split_once('/') {
            sub = format!("--subresource={subresource}");
            args[3] = resource;
            args.push(&sub);
        }
        c.kubectl(&args).status.success()
    };
    assert!(can("watch", "monitoredvalidators.vigil.dev"));
    assert!(can("patch", "monitoredvalidators.vigil.dev/status"));
    assert!(can("create", "leases.coordination.k8s.io"));
    assert!(can("create", "events.events.k8s.io"));
    assert!(!can("delete", "monitoredvalidators.vigil.dev"));
    // Healing: evict, delete and restart what a validator targets; read the one Secret key
    // its target names (get only: Vigil cannot list or watch Secrets).
    assert!(can("create", "pods/eviction"));
    assert!(can("delete", "pods"));
    assert!(can("patch", "statefulsets.apps"));
    assert!(can("get", "secrets"));
    assert!(!can("list", "secrets"));
    assert!(!can("watch", "secrets"));
    assert!(!can("create", "pods"));
    assert!(!can("delete", "statefulsets.apps"));
    helm_ok(c, &["uninstall", &release, "--namespace", &ns, "--wait"]);
    let left = c.kubectl(&["get", "clusterrole", &release]);
    assert!(
        !left.status.success(),
        "ClusterRole left behind after uninstall"
    );
}
