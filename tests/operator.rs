//! The operator, run as a subprocess the way users run it, against the real control plane:
//! first conditions and Events, policy resolution, leader election, SIGTERM, bad objects.

mod support;

use std::time::{Duration, Instant};
use support::cluster::{self, Cluster};
use support::operator::Operator;
use support::{
    apply_ok, condition, events_for, eventually, get_json, install_crds, wait_condition,
};

const T: Duration = Duration::from_secs(30);

fn setup(prefix: &str) -> (&'static Cluster, String) {
    let c = cluster::shared();
    install_crds(c);
    let ns = c.namespace(prefix);
    (c, ns)
}

fn example(c: &Cluster, ns: &str, file: &str) {
    let path = format!("{}/examples/{file}", env!("CARGO_MANIFEST_DIR"));
    c.kubectl_ok(&["apply", "-n", ns, "-f", &path]);
}

fn validator_yaml(name: &str, policy: &str) -> String {
    format!(
        "apiVersion: vigil.dev/v1alpha1\nkind: MonitoredValidator\nmetadata:\n  name: {name}\nspec:\n  chain: substrate\n  endpoints: {{rpc: 'http://127.0.0.1:9944'}}\n  policyRef: {{name: {policy}}}\n"
    )
}

fn lease_holder(c: &Cluster, ns: &str) -> String {
    let jsonpath = "jsonpath={.spec.holderIdentity}";
    c.kubectl_ok(&[
        "get",
        "lease",
        "-n",
        ns,
        &format!("vigil-{ns}"),
        "-o",
        jsonpath,
    ])
    .trim()
    .to_string()
}

fn has_event(c: &Cluster, ns: &str, name: &str, type_: &str, reason: &str) -> bool {
    events_for(c, ns, name)
        .iter()
        .any(|(t, r, _)| t == type_ && r == reason)
}

#[test]
fn reconciles_valid_objects_with_status_and_events() {
    let (c, ns) = setup("reconcile");
    example(c, &ns, "policy.yaml");
    example(c, &ns, "validator.yaml");
    example(c, &ns, "pipelinerun.yaml");
    let mut op = Operator::start(c, &ns, "solo", &[]);
    op.wait_ready(T);

    let cond = wait_condition(c, &ns, "mv/alice", "Ready", "Unknown", "Pending", T);
    assert_eq!(cond["observedGeneration"], 1);
    assert!(cond["message"].as_str().unwrap().contains("substrate-main"));
    let mv = get_json(c, &ns, "mv", "alice").unwrap();
    assert_eq!(mv["status"]["observedGeneration"], 1);

    wait_condition(c, &ns, "mpol/substrate-main", "Ready", "True", "Valid", T);
    eventually(T, "policy counts one validator", || {
        let p = get_json(c, &ns, "mpol", "substrate-main")?;
        (p["status"]["validators"] == 1).then_some(())
    });

    // The run starts its first step as a Job (its pod runs until it is stopped here).
    wait_condition(
        c,
        &ns,
        "prun/nightly-snapshot",
        "Succeeded",
        "Unknown",
        "Running",
        T,
    );
    let run = get_json(c, &ns, "prun", "nightly-snapshot").unwrap();
    assert_eq!(run["status"]["progress"], "0/3");
    assert_eq!(run["status"]["steps"][0]["phase"], "Running");
    assert_eq!(run["status"]["steps"][1]["name"], "verify");
    assert_eq!(run["status"]["steps"][1]["phase"], "Pending");

    eventually(T, "Events for all three objects", || {
        (has_event(c, &ns, "alice", "Normal", "Pending")
            && has_event(c, &ns, "substrate-main", "Normal", "Valid")
            && has_event(c, &ns, "nightly-snapshot", "Normal", "Running")
            && has_event(c, &ns, "nightly-snapshot", "Normal", "StepStarted"))
        .then_some(())
    });

    // A generation change is reflected in observedGeneration, and one that changes no
    // condition leaves lastTransitionTime alone. Suspended first (generation 2), so that no
    // probe can change a condition in between (the first one may land any moment).
    let patch = |p: &str| {
        c.kubectl_ok(&["patch", "-n", &ns, "mv", "alice", "--type=merge", "-p", p]);
    };
    let ready_at = |generation: i64| {
        eventually(T, &format!("observedGeneration {generation}"), || {
            let mv = get_json(c, &ns, "mv", "alice")?;
            let ready = condition(&mv, "Ready")?;
            (mv["status"]["observedGeneration"] == generation
                && ready["observedGeneration"] == generation)
                .then_some(ready)
        })
    };
    patch("{\"spec\":{\"suspend\":true}}");
    let before = ready_at(2);
    patch("{\"spec\":{\"endpoints\":{\"metrics\":\"http://127.0.0.1:9616/metrics\"}}}");
    let after = ready_at(3);
    assert_eq!(
        (&after["status"], &after["reason"]),
        (&before["status"], &before["reason"])
    );
    assert_eq!(
        after["lastTransitionTime"], before["lastTransitionTime"],
        "status did not change, so lastTransitionTime must not move"
    );
}

#[test]
fn missing_policy_is_reported_and_recovers_when_created() {
    let (c, ns) = setup("nopolicy");
    apply_ok(c, &ns, &validator_yaml("bob", "later"));
    let mut op = Operator::start(c, &ns, "solo", &[]);
    op.wait_ready(T);
    let cond = wait_condition(c, &ns, "mv/bob", "Ready", "False", "PolicyNotFound", T);
    assert!(
        cond["message"]
            .as_str()
            .unwrap()
            .contains("\"later\" not found"),
        "{cond}"
    );
    eventually(T, "PolicyNotFound Warning event", || {
        has_event(c, &ns, "bob", "Warning", "PolicyNotFound").then_some(())
    });

    apply_ok(
        c,
        &ns,
        "apiVersion: vigil.dev/v1alpha1\nkind: MonitorPolicy\nmetadata:\n  name: later\nspec: {}\n",
    );
    wait_condition(c, &ns, "mv/bob", "Ready", "Unknown", "Pending", T);
    eventually(T, "policy counts bob", || {
        (get_json(c, &ns, "mpol", "later")?["status"]["validators"] == 1).then_some(())
    });
}

#[test]
fn exactly_one_leader_acts_and_a_standby_takes_over() {
    let (c, ns) = setup("leader");
    example(c, &ns, "policy.yaml");
    let mut a = Operator::start(c, &ns, "replica-a", &[]);
    a.wait_ready(T);
    a.wait_leader(T);
    let mut b = Operator::start(c, &ns, "replica-b", &[]);
    b.wait_ready(T);

    apply_ok(c, &ns, &validator_yaml("v1", "substrate-main"));
    wait_condition(c, &ns, "mv/v1", "Ready", "Unknown", "Pending", T);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(b.metric("vigil_leader"), Some(0.0), "standby must not lead");
    assert!(
        a.metric("vigil_reconciles_total{kind=\"MonitoredValidator\"}")
            .unwrap_or(0.0)
            >= 1.0
    );
    assert_eq!(
        b.metric("vigil_reconciles_total"),
        None,
        "standby must not reconcile anything"
    );
    let holder = lease_holder(c, &ns);
    assert_eq!(holder, "replica-a");

    // Kill the leader without a chance to release its lease: the standby must take over
    // within the lease duration (6 s in tests), plus a renewal period of slack.
    a.signal("KILL");
    let killed = Instant::now();
    b.wait_leader(Duration::from_secs(20));
    let took = killed.elapsed();
    assert!(took <= Duration::from_secs(6 + 3), "takeover took {took:?}");

    apply_ok(c, &ns, &validator_yaml("v2", "substrate-main"));
    wait_condition(c, &ns, "mv/v2", "Ready", "Unknown", "Pending", T);
    let holder = lease_holder(c, &ns);
    assert_eq!(holder, "replica-b");
}

#[test]
fn sigterm_exits_zero_within_five_seconds_and_releases_the_lease() {
    let (c, ns) = setup("sigterm");
    example(c, &ns, "policy.yaml");
    example(c, &ns, "validator.yaml");
    let mut a = Operator::start(c, &ns, "term-a", &[]);
    a.wait_leader(T);
    wait_condition(c, &ns, "mv/alice", "Ready", "Unknown", "Pending", T);
    let mut b = Operator::start(c, &ns, "term-b", &[]);
    b.wait_ready(T);

    a.signal("TERM");
    let code = a.wait_exit(Duration::from_secs(5));
    assert_eq!(
        code,
        Some(Some(0)),
        "exit after SIGTERM; log:\n{}",
        a.log_text()
    );
    // The lease was released on the way out (no holder left behind), and the standby leads
    // within one lease duration.
    let holder = lease_holder(c, &ns);
    assert_ne!(
        holder, "term-a",
        "the lease must not stay with a process that exited"
    );
    let took = b.wait_leader(Duration::from_secs(20));
    assert!(
        took <= Duration::from_secs(6 + 1),
        "standby took {took:?} after a clean release"
    );

    // A standby that never led also exits cleanly.
    let mut s = Operator::start(c, &ns, "term-c", &[]);
    s.wait_ready(T);
    s.signal("TERM");
    assert_eq!(
        s.wait_exit(Duration::from_secs(5)),
        Some(Some(0)),
        "log:\n{}",
        s.log_text()
    );
}

#[test]
fn an_unreadable_object_does_not_stall_the_watch() {
    let (c, ns) = setup("malformed");
    example(c, &ns, "policy.yaml");
    apply_ok(c, &ns, &validator_yaml("broken", "substrate-main"));
    let mut op = Operator::start(c, &ns, "solo", &[]);
    op.wait_ready(T);
    wait_condition(c, &ns, "mv/broken", "Ready", "Unknown", "Pending", T);

    // An object stored under an older, looser schema (simulated by dropping one bound from
    // the CRD for a moment) holds a value Vigil's types cannot hold. Vigil must say so and
    // carry on with every other object.
    {
        let _loose = LooseCrd::new(c);
        c.kubectl_ok(&[
            "patch",
            "-n",
            &ns,
            "mv",
            "broken",
            "--subresource=status",
            "--type=merge",
            "-p",
            "{\"status\":{\"consecutiveFailures\":99999999999}}",
        ]);
    }
    eventually(T, "InvalidObject event", || {
        has_event(c, &ns, "broken", "Warning", "InvalidObject").then_some(())
    });

    apply_ok(
        c,
        &ns,
        &validator_yaml("healthy-neighbour", "substrate-main"),
    );
    wait_condition(
        c,
        &ns,
        "mv/healthy-neighbour",
        "Ready",
        "Unknown",
        "Pending",
        T,
    );
    assert_eq!(
        op.child.try_wait().unwrap(),
        None,
        "operator must keep running"
    );
}

/// Drops the upper bound of `status.consecutiveFailures` from the validator CRD until dropped,
/// then re-applies the checked-in CRD.
struct LooseCrd<'a>(&'a Cluster);

impl<'a> LooseCrd<'a> {
    fn new(c: &'a Cluster) -> Self {
        c.kubectl_ok(&[
            "patch", "crd", "monitoredvalidators.vigil.dev", "--type=json", "-p",
            r#"[{"op":"remove","path":"/spec/versions/0/schema/openAPIV3Schema/properties/status/properties/consecutiveFailures/maximum"}]"#,
        ]);
        LooseCrd(c)
    }
}

impl Drop for LooseCrd<'_> {
    fn drop(&mut self) {
        let crd = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/monitoredvalidators.yaml");
        self.0
            .kubectl_ok(&["apply", "--server-side", "--force-conflicts", "-f", crd]);
    }
}
