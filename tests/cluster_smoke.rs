//! The local test control plane is a real cluster: the API server answers, RBAC is enforced,
//! a Deployment gets a Running pod (controller-manager + scheduler + kwok), and namespaces
//! come and go (namespace controller and garbage collection).

#[path = "support/cluster.rs"]
mod cluster;

use serde_json::Value;
use std::time::{Duration, Instant};

/// Polls `f` every 250 ms until it returns Some; panics with `what` after `timeout`.
fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn api_server_answers_with_its_version() {
    let c = cluster::shared();
    let v: Value = serde_json::from_str(&c.kubectl_ok(&["version", "-o", "json"])).unwrap();
    let server = v["serverVersion"]["gitVersion"]
        .as_str()
        .unwrap_or_default();
    assert!(server.starts_with("v1."), "unexpected server version {v}");
    assert_ne!(server, "v0.0.0");
}

#[test]
fn rbac_is_enforced() {
    let c = cluster::shared();
    let can_i = |as_user: &str| {
        let out = c.kubectl(&[
            "auth",
            "can-i",
            "create",
            "pods",
            "-n",
            "default",
            &format!("--as={as_user}"),
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(can_i("system:serviceaccount:default:nobody"), "no");
    assert_eq!(can_i("someone-else"), "no");
    // The admin kubeconfig (system:masters) may do everything.
    assert_eq!(
        c.kubectl_ok(&["auth", "can-i", "create", "pods", "-n", "default"])
            .trim(),
        "yes"
    );

    // Not just the review API: a real request as an unprivileged identity is refused.
    let out = c.kubectl(&[
        "get",
        "secrets",
        "-n",
        "kube-system",
        "--as=system:serviceaccount:default:nobody",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Forbidden") || err.contains("forbidden"),
        "{err}"
    );
}

#[test]
fn deployment_gets_a_running_pod() {
    let c = cluster::shared();
    let ns = c.namespace("smoke-deploy");
    let deployment = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: registry.invalid/web:1
"#;
    let out = c.kubectl_stdin(&["apply", "-n", &ns, "-f", "-"], deployment);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let nodes = eventually(
        Duration::from_secs(60),
        "2 Running pods of deployment web",
        || {
            let pods = c.kubectl_json(&["get", "pods", "-n", &ns, "-l", "app=web"]);
            let items = pods["items"].as_array()?;
            let running: Vec<String> = items
                .iter()
                .filter(|p| p["status"]["phase"] == "Running")
                .map(|p| {
                    p["spec"]["nodeName"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                })
                .collect();
            (running.len() == 2).then_some(running)
        },
    );
    // Scheduled onto kwok's fake nodes.
    for node in &nodes {
        let n = c.kubectl_json(&["get", "node", node]);
        assert_eq!(
            n["metadata"]["annotations"]["kwok.x-k8s.io/node"], "fake",
            "{node}"
        );
    }

    eventually(
        Duration::from_secs(30),
        "deployment web to report 2 available replicas",
        || {
            let d = c.kubectl_json(&["get", "deployment", "web", "-n", &ns]);
            (d["status"]["availableReplicas"] == 2).then_some(())
        },
    );
    c.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn namespaces_are_created_and_deleted() {
    let c = cluster::shared();
    let a = c.namespace("smoke-ns");
    let b = c.namespace("smoke-ns");
    assert_ne!(a, b);
    assert!(a.starts_with("smoke-ns-"), "{a}");
    let ns = c.kubectl_json(&["get", "namespace", &a]);
    assert_eq!(ns["status"]["phase"], "Active");
    assert_eq!(ns["metadata"]["labels"]["vigil-test"], "true");

    // A namespace with content: the namespace controller must empty it before it goes.
    c.kubectl_ok(&["create", "configmap", "cm", "-n", &a, "--from-literal=k=v"]);
    for ns in [&a, &b] {
        c.kubectl_ok(&["delete", "namespace", ns, "--timeout=60s"]);
        let out = c.kubectl(&["get", "namespace", ns]);
        assert!(!out.status.success(), "namespace {ns} still exists");
    }
}
