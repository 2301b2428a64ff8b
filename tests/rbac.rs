//! Least privilege, asked of the real API server: what the operator's ServiceAccount (bound
//! exactly as `manifests/rbac.yaml` binds it, as every end-to-end test runs the operator) may
//! and may not do. `kubectl auth can-i --as` evaluates RBAC for that identity.

mod support;

use support::cluster;

#[test]
fn leases_are_written_only_in_the_operators_own_namespace() {
    let c = cluster::shared();
    let ns = c.namespace("rbac");
    // Binds the ClusterRole and the leader-election Role to ns's `vigil` ServiceAccount.
    let _ = support::operator_kubeconfig(c, &ns);
    let who = format!("system:serviceaccount:{ns}:vigil");
    let can = |verb: &str, resource: &str, namespace: &str| {
        let out = c.kubectl(&[
            "auth", "can-i", verb, resource, "-n", namespace, "--as", &who,
        ]);
        match String::from_utf8_lossy(&out.stdout).trim() {
            "yes" => true,
            "no" => false,
            other => panic!(
                "kubectl auth can-i {verb} {resource} -n {namespace}: {other:?} {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    };
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
}
