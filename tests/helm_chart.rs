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

fn cluster_role_rules(yaml_stream: &str) -> Value {
    for doc in yaml_stream.split("\n---") {
        let Ok(v) = serde_yaml::from_str::<Value>(doc) else {
            continue;
        };
        if v["kind"] == "ClusterRole" {
            return v["rules"].clone();
        }
    }
    panic!("no ClusterRole in:\n{yaml_stream}");
}

#[test]
fn chart_lints_and_matches_the_plain_manifests() {
    let c = cluster::shared();
    helm_ok(c, &["lint", "--strict", CHART]);
    let rendered = helm_ok(
        c,
        &["template", "vigil", CHART, "--namespace", "vigil-system"],
    );
    let manifests =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/rbac.yaml"))
            .unwrap();
    assert_eq!(
        cluster_role_rules(&rendered),
        cluster_role_rules(&manifests),
        "chart and manifests/ grant different rules"
    );
    assert!(rendered.contains("--lease-name=vigil-leader"), "{rendered}");
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
