//! Test support: the shared local control plane and the operator subprocess.
#![allow(dead_code)]

pub mod alerting;
pub mod cluster;
pub mod cometbft;
pub mod llm;
pub mod operator;
pub mod proxy;
pub mod receiver;
pub mod s3;
pub mod simulator;
pub mod sshd;
pub mod tamper;

use serde_json::Value;
use std::time::{Duration, Instant};

/// A directory of cached test binaries: `env` when set, else what `scripts/<script>`
/// prints (it builds or fetches them once and caches them per user).
pub fn cached_bins(env: &str, script: &str) -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os(env).filter(|d| !d.is_empty()) {
        return std::path::PathBuf::from(dir);
    }
    let script = format!("{}/scripts/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(out.status.success(), "{script} failed: {}", out.status);
    std::path::PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// Applies the CRDs from `crds/` (server-side, idempotent) and waits until they are Established.
pub fn install_crds(c: &cluster::Cluster) {
    static ONCE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/crds");
        c.kubectl_ok(&["apply", "--server-side", "--force-conflicts", "-f", dir]);
        c.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "-f",
            dir,
        ]);
    });
}

/// Applies a YAML document in `ns`, returning the command output.
pub fn apply(c: &cluster::Cluster, ns: &str, yaml: &str) -> std::process::Output {
    c.kubectl_stdin(&["apply", "-n", ns, "-f", "-"], yaml)
}

/// Applies a YAML document in `ns` and panics if it is refused.
pub fn apply_ok(c: &cluster::Cluster, ns: &str, yaml: &str) {
    let out = apply(c, ns, yaml);
    assert!(
        out.status.success(),
        "apply failed: {}\n{yaml}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Gets an object as JSON, if it exists.
pub fn get_json(c: &cluster::Cluster, ns: &str, kind: &str, name: &str) -> Option<Value> {
    let out = c.kubectl(&["get", "-n", ns, kind, name, "-o", "json"]);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// The condition of `type_` on an object's status.
pub fn condition(obj: &Value, type_: &str) -> Option<Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
}

/// Polls `f` until it returns Some, or panics with `what` after `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Waits for a condition with the given status and reason on `obj` (`kind/name`); returns
/// the condition.
pub fn wait_condition(
    c: &cluster::Cluster,
    ns: &str,
    obj: &str,
    type_: &str,
    status: &str,
    reason: &str,
    timeout: Duration,
) -> Value {
    let (kind, name) = obj.split_once('/').expect("kind/name");
    let start = Instant::now();
    let mut last = Value::Null;
    while start.elapsed() < timeout {
        if let Some(cond) = get_json(c, ns, kind, name).and_then(|o| condition(&o, type_)) {
            if cond["status"] == status && cond["reason"] == reason {
                return cond;
            }
            last = cond;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("{obj}: condition {type_} never became {status}/{reason}; last seen {last}");
}

/// Events (core/v1 view) about an object: (type, reason, message).
pub fn events_for(c: &cluster::Cluster, ns: &str, name: &str) -> Vec<(String, String, String)> {
    let out = c.kubectl_ok(&[
        "get",
        "events",
        "-n",
        ns,
        "--field-selector",
        &format!("involvedObject.name={name}"),
        "-o",
        "json",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|e| {
                    (
                        e["type"].as_str().unwrap_or_default().to_string(),
                        e["reason"].as_str().unwrap_or_default().to_string(),
                        e["message"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The operator's ServiceAccount and rights when the Helm chart is installed into `ns` in
/// namespace mode, watching `ns`, as release `ns` (cluster-scoped names stay unique per
/// test): RBAC and admission policy rendered by real Helm from `charts/vigil`, so the
/// operator under test has exactly the rights a namespace-mode installation grants, and the
/// API server enforces them. Returns the ServiceAccount's name.
pub fn install_operator_rights(c: &cluster::Cluster, ns: &str) -> String {
    install_operator_rights_watching(c, ns, &[ns])
}

/// [`install_operator_rights`] with the chart watching `watched` (a Role in each).
pub fn install_operator_rights_watching(
    c: &cluster::Cluster,
    ns: &str,
    watched: &[&str],
) -> String {
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/vigil");
    let args = [
        "template",
        ns,
        chart,
        "--namespace",
        ns,
        "--set",
        "rbac.scope=namespace",
        "--set",
        &format!("watchNamespace={}", watched.join("\\,")),
        "--show-only",
        "templates/rbac.yaml",
        "--show-only",
        "templates/admission.yaml",
    ];
    let out = c.helm(&args);
    assert!(
        out.status.success(),
        "helm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = c.kubectl_stdin(&["apply", "-f", "-"], &String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ns.to_string()
}

/// A kubeconfig for the ServiceAccount of [`install_operator_rights`].
pub fn operator_kubeconfig(c: &cluster::Cluster, ns: &str) -> std::path::PathBuf {
    operator_kubeconfig_watching(c, ns, &[ns])
}

/// [`operator_kubeconfig`] for the chart watching `watched`.
pub fn operator_kubeconfig_watching(
    c: &cluster::Cluster,
    ns: &str,
    watched: &[&str],
) -> std::path::PathBuf {
    let sa = install_operator_rights_watching(c, ns, watched);
    let token = c.kubectl_ok(&["create", "token", &sa, "-n", ns, "--duration=2h"]);
    let server = c.kubectl_ok(&[
        "config",
        "view",
        "--raw",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ]);
    let ca = c.kubectl_ok(&[
        "config",
        "view",
        "--raw",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.certificate-authority-data}",
    ]);
    let path = std::env::temp_dir().join(format!("vigil-kubeconfig-{ns}"));
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\ncontexts:\n- name: test\n  context: {{cluster: test, user: vigil, namespace: {ns}}}\ncurrent-context: test\nusers:\n- name: vigil\n  user:\n    token: {token}\n",
        server = server.trim(),
        ca = ca.trim(),
        token = token.trim(),
    );
    std::fs::write(&path, kubeconfig).unwrap();
    path
}

/// One test's world: the shared control plane, a fresh namespace, and simulated nodes.
/// Test files add their own methods (`impl World` in the test crate).
pub struct World {
    pub c: &'static cluster::Cluster,
    pub ns: String,
    pub sim: simulator::Simulator,
}

impl World {
    /// CRDs installed, a namespace named after `prefix`, `nodes` simulated nodes with 1 s
    /// blocks and these extra simulator arguments.
    pub fn new(prefix: &str, nodes: usize, extra: &[&str]) -> World {
        let c = cluster::shared();
        install_crds(c);
        let ns = c.namespace(prefix);
        let n = nodes.to_string();
        let mut args = vec!["--nodes", n.as_str(), "--block-time", "1s"];
        args.extend_from_slice(extra);
        let sim = simulator::Simulator::start(&args);
        World { c, ns, sim }
    }

    /// The operator for this namespace, ready.
    pub fn operator(&self, identity: &str) -> operator::Operator {
        let mut op = operator::Operator::start(self.c, &self.ns, identity, &[]);
        op.wait_ready(Duration::from_secs(60));
        op
    }

    /// Creates Secret `name` in the namespace with these keys and values.
    pub fn secret(&self, name: &str, kv: &[(&str, &str)]) {
        let mut args = vec![
            "create".to_string(),
            "secret".into(),
            "generic".into(),
            name.into(),
            "-n".into(),
            self.ns.clone(),
        ];
        for (k, v) in kv {
            args.push(format!("--from-literal={k}={v}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.c.kubectl_ok(&args);
    }

    /// Waits until every simulated node's validator shows `Ready=want`.
    pub fn ready_all(&self, want: &str) {
        for n in &self.sim.nodes {
            eventually(
                Duration::from_secs(60),
                &format!("{} Ready={want}", n.name),
                || {
                    let mv = get_json(self.c, &self.ns, "mv", &n.name)?;
                    (condition(&mv, "Ready")?["status"] == want).then_some(())
                },
            );
        }
    }
}
