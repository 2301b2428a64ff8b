//! Failover and identity, end to end against the real control plane: a deleted validator is
//! forgotten even when it was never probed, a validator re-created under the same name is a
//! new object, a stale leader woken from a pause never acts a second time inside the
//! cooldown, and SIGTERM during an action closes it (`Interrupted`) instead of leaving it
//! in flight or repeating it.

mod support;

use jiff::Timestamp;
use serde_json::Value;
use std::time::{Duration, Instant};
use support::cluster::Cluster;
use support::operator::Operator;
use support::receiver::Receiver;
use support::{World, apply_ok, condition, get_json};

const T: Duration = Duration::from_secs(60);

/// How often the polls below look again.
const POLL: Duration = Duration::from_millis(200);

fn world(prefix: &str, nodes: usize) -> World {
    World::new(prefix, nodes, &[])
}

/// The last lines of each operator's log, for panic messages.
fn tails(ops: &[&Operator]) -> String {
    ops.iter()
        .map(|op| {
            let log = op.log_text();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            format!(
                "--- log of {} (last {} lines):\n{}",
                op.identity,
                tail.len(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Polls `f` until it returns `Ok`; after `timeout` panics with `what`, the last `Err`
/// (what was seen instead) and the operators' log tails.
#[track_caller]
fn wait_for<T>(
    timeout: Duration,
    what: &str,
    ops: &[&Operator],
    mut f: impl FnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) if start.elapsed() > timeout => panic!(
                "timed out after {timeout:?} waiting for {what}; last seen: {last}\n{}",
                tails(ops)
            ),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Checks `f` again and again for `span`: the first `Err` fails the test with its message
/// and the operators' log tails.
#[track_caller]
fn holds_for(
    span: Duration,
    what: &str,
    ops: &[&Operator],
    mut f: impl FnMut() -> Result<(), String>,
) {
    let start = Instant::now();
    while start.elapsed() < span {
        if let Err(e) = f() {
            panic!(
                "{what} broke after {:?}: {e}\n{}",
                start.elapsed(),
                tails(ops)
            );
        }
        std::thread::sleep(POLL);
    }
}

/// The sum of every sample of `family` (e.g. `vigil_probes_total`), any labels.
fn metric_sum(op: &Operator, family: &str) -> Option<f64> {
    let (_, body) = op.get("/metrics")?;
    Some(
        body.lines()
            .filter(|l| {
                l.strip_prefix(family)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

fn ts(v: &Value) -> Option<Timestamp> {
    v.as_str()?.parse().ok()
}

fn lease_holder(c: &Cluster, ns: &str) -> String {
    c.kubectl_ok(&[
        "get",
        "lease",
        "-n",
        ns,
        &format!("vigil-{ns}"),
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])
    .trim()
    .to_string()
}

impl World {
    /// A policy `heal` with fast probes (1 s, failureThreshold 2) and these remediation
    /// fields (YAML flow entries).
    fn policy(&self, remediation: &str) {
        apply_ok(
            self.c,
            &self.ns,
            &format!(
                "apiVersion: vigil.dev/v1alpha1\nkind: MonitorPolicy\nmetadata:\n  name: heal\nspec:\n  probe: {{interval: 1s, timeout: 800ms, failureThreshold: 2, successThreshold: 1}}\n  health: {{minPeers: 1}}\n  remediation: {{{remediation}}}\n"
            ),
        );
    }

    /// The YAML of a validator for simulated node `i` under policy `policy`, with this
    /// `spec.target` (YAML flow).
    fn validator_yaml(&self, i: usize, policy: &str, target: &str) -> String {
        let n = &self.sim.nodes[i];
        format!(
            "apiVersion: vigil.dev/v1alpha1\nkind: MonitoredValidator\nmetadata:\n  name: {}\nspec:\n  chain: substrate\n  endpoints: {{rpc: '{}'}}\n  policyRef: {{name: {policy}}}\n  target: {target}\n",
            n.name, n.rpc
        )
    }

    /// A validator for simulated node `i` under policy `heal`; returns its name.
    fn validator(&self, i: usize, target: &str) -> String {
        apply_ok(self.c, &self.ns, &self.validator_yaml(i, "heal", target));
        self.sim.nodes[i].name.clone()
    }

    fn try_mv(&self, name: &str) -> Option<Value> {
        get_json(self.c, &self.ns, "mv", name)
    }

    fn mv(&self, name: &str) -> Value {
        self.try_mv(name).expect("validator exists")
    }

    fn remediation(&self, name: &str) -> Value {
        self.mv(name)["status"]["remediation"].clone()
    }

    /// Waits until condition `type_` of `name` is `status`/`reason`; returns it.
    #[track_caller]
    fn wait(
        &self,
        name: &str,
        type_: &str,
        status: &str,
        reason: &str,
        ops: &[&Operator],
    ) -> Value {
        wait_for(
            T,
            &format!("{name}: {type_} {status}/{reason}"),
            ops,
            || {
                let mv = self.try_mv(name).ok_or("no such validator")?;
                match condition(&mv, type_) {
                    Some(c) if c["status"] == status && c["reason"] == reason => Ok(c),
                    _ => Err(format!("status {}", mv["status"])),
                }
            },
        )
    }

    /// Deletes validator `name` and waits until it is gone.
    fn delete(&self, name: &str, ops: &[&Operator]) {
        self.c
            .kubectl_ok(&["delete", "mv", name, "-n", &self.ns, "--wait=true"]);
        wait_for(T, &format!("{name} gone"), ops, || {
            match self.try_mv(name) {
                None => Ok(()),
                Some(mv) => Err(format!("still there: {}", mv["metadata"])),
            }
        });
    }

    /// Events (events.k8s.io/v1) whose `regarding.uid` is `uid`: (type, reason, note).
    fn events_of_uid(&self, uid: &str) -> Vec<(String, String, String)> {
        let v = self
            .c
            .kubectl_json(&["get", "events.events.k8s.io", "-n", &self.ns]);
        v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["regarding"]["uid"] == uid)
            .map(|e| {
                let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                (s("type"), s("reason"), s("note"))
            })
            .collect()
    }
}

#[test]
fn a_deleted_blocked_validator_is_forgotten() {
    let w = world("forget", 1);
    // Its policy does not exist, so it is never probed: only the sweep can forget it.
    apply_ok(
        w.c,
        &w.ns,
        &w.validator_yaml(0, "missing", "{webhook: {url: 'http://127.0.0.1:9/never'}}"),
    );
    let name = w.sim.nodes[0].name.clone();
    let op = w.operator("solo");
    w.wait(&name, "Ready", "False", "PolicyNotFound", &[&op]);
    let gauge = "vigil_validators{ready=\"False\"}";
    // The gauge is refreshed every 5 s.
    wait_for(
        Duration::from_secs(15),
        &format!("{gauge} 1"),
        &[&op],
        || {
            let v = op.metric(gauge);
            if v == Some(1.0) {
                Ok(())
            } else {
                Err(format!("{gauge} = {v:?}"))
            }
        },
    );

    w.delete(&name, &[&op]);
    let deleted = Instant::now();
    wait_for(
        Duration::from_secs(15),
        &format!("{gauge} 0 after the deletion"),
        &[&op],
        || match op.metric(gauge) {
            Some(0.0) => Ok(()),
            v => Err(format!(
                "{gauge} = {v:?}; /metrics: {}",
                op.get("/metrics")
                    .map(|(_, b)| b
                        .lines()
                        .filter(|l| l.starts_with("vigil_validators"))
                        .collect::<Vec<_>>()
                        .join("; "))
                    .unwrap_or_default()
            )),
        },
    );
    eprintln!(
        "{gauge} dropped to 0 {:?} after the deletion",
        deleted.elapsed()
    );
    // Forgotten altogether: no other Ready bucket counts it instead.
    assert_eq!(
        metric_sum(&op, "vigil_validators"),
        Some(0.0),
        "the namespace has no validator left; /metrics:\n{}",
        op.get("/metrics").unwrap_or_default().1
    );
}

#[test]
fn a_validator_recreated_under_the_same_name_starts_fresh() {
    let w = world("recreate", 1);
    let rx = Receiver::start();
    w.policy("action: webhook, cooldown: 10m, maxCooldown: 30m");
    let target = format!("{{webhook: {{url: '{}'}}}}", rx.url);
    let name = w.validator(0, &target);
    let op = w.operator("solo");
    let ops = [&op];
    w.wait(&name, "Ready", "True", "Healthy", &ops);
    let old_uid = w.mv(&name)["metadata"]["uid"].as_str().unwrap().to_string();

    // Healed once.
    w.sim.fault(0, "die");
    wait_for(T, "the webhook call", &ops, || match rx.count() {
        1 => Ok(()),
        n => Err(format!("{n} calls")),
    });
    wait_for(T, "the healing recorded", &ops, || {
        let rem = w.remediation(&name);
        (rem["totalActions"] == 1
            && rem.get("inFlight").is_none()
            && rem["history"][0]["result"] == "Succeeded")
            .then_some(())
            .ok_or_else(|| format!("remediation {rem}"))
    });
    let old = w.mv(&name);
    let old_latest = old["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| ts(&c["lastTransitionTime"]))
        .max()
        .expect("the old object has conditions");

    w.delete(&name, &ops);
    w.sim.recover(0);
    // Condition times have whole seconds: re-create in a later second than any of the old
    // object's, so that an old condition carried over cannot pass for a new one.
    let later = old_latest + jiff::SignedDuration::from_secs(1);
    wait_for(Duration::from_secs(5), "a later second", &ops, || {
        (Timestamp::now() >= later)
            .then_some(())
            .ok_or_else(|| format!("now {}", Timestamp::now()))
    });
    w.validator(0, &target);
    let new = w.mv(&name);
    let new_uid = new["metadata"]["uid"].as_str().unwrap().to_string();
    assert_ne!(new_uid, old_uid, "the re-created validator is a new object");
    let created = ts(&new["metadata"]["creationTimestamp"]).unwrap();
    assert!(created > old_latest, "{created} vs {old_latest}");

    let ready = w.wait(&name, "Ready", "True", "Healthy", &ops);
    let mv = w.mv(&name);
    assert_eq!(mv["metadata"]["uid"], new_uid.as_str());
    let status = &mv["status"];
    let rem = &status["remediation"];
    assert!(
        rem.is_null()
            || (rem["totalActions"].as_u64().unwrap_or(0) == 0
                && rem["history"].as_array().is_none_or(Vec::is_empty)
                && rem.get("inFlight").is_none()
                && rem.get("cooldownUntil").is_none()),
        "the new object inherited remediation bookkeeping: {status}\n{}",
        tails(&ops)
    );
    assert_eq!(status["observedGeneration"], 1, "{status}");
    let ready_at = ts(&ready["lastTransitionTime"]).expect("lastTransitionTime");
    assert!(
        ready_at >= created,
        "Ready's lastTransitionTime {ready_at} is before the re-creation {created}: {status}"
    );
    for c in status["conditions"].as_array().unwrap() {
        let at = ts(&c["lastTransitionTime"]).expect("lastTransitionTime");
        assert!(
            at >= created,
            "condition {} is older than the object ({created}): carried over? {status}",
            c["type"]
        );
    }

    // Events about the new object, by UID; none tells of the old object's healing.
    let events = wait_for(T, "an Event about the new object", &ops, || {
        let ev = w.events_of_uid(&new_uid);
        if ev.is_empty() {
            Err(format!(
                "none; Events about the old UID: {:?}",
                w.events_of_uid(&old_uid)
            ))
        } else {
            Ok(ev)
        }
    });
    eprintln!("Events about the new object: {events:?}");

    // Several probes of the new object: no new call.
    let probes = metric_sum(&op, "vigil_probes_total").unwrap_or(0.0);
    holds_for(
        Duration::from_secs(5),
        "no new webhook call",
        &ops,
        || match rx.count() {
            1 => Ok(()),
            n => Err(format!(
                "{n} webhook calls; status {}",
                w.mv(&name)["status"]
            )),
        },
    );
    let after = metric_sum(&op, "vigil_probes_total").unwrap_or(0.0);
    assert!(
        after >= probes + 3.0,
        "the new object was not probed: {probes} -> {after}"
    );
    assert_eq!(rx.count(), 1);
    let remediation_reasons = [
        "RemediationSucceeded",
        "RemediationFailed",
        "RemediationInterrupted",
        "Recovered",
    ];
    let ev = w.events_of_uid(&new_uid);
    assert!(
        !ev.iter()
            .any(|(_, r, _)| remediation_reasons.contains(&r.as_str())),
        "an Event of the old object's healing is about the new one: {ev:?}"
    );
    let rem = &w.mv(&name)["status"]["remediation"];
    assert!(
        rem.is_null() || rem["totalActions"].as_u64().unwrap_or(0) == 0,
        "{rem}"
    );
}

#[test]
fn split_brain_never_acts_twice_inside_the_cooldown() {
    let w = world("splitbrain", 1);
    let rx = Receiver::start();
    w.policy("action: webhook, cooldown: 10m, maxCooldown: 30m");
    let name = w.validator(0, &format!("{{webhook: {{url: '{}'}}}}", rx.url));
    let mut a = w.operator("replica-a");
    a.wait_leader(T);
    let mut b = w.operator("replica-b");
    assert_eq!(b.metric("vigil_leader"), Some(0.0), "B must stand by");
    w.wait(&name, "Ready", "True", "Healthy", &[&a, &b]);

    // A freezes with the lease in hand; B takes over once it expires.
    a.signal("STOP");
    b.wait_leader(T);
    assert_eq!(lease_holder(w.c, &w.ns), "replica-b");
    w.sim.fault(0, "die");
    wait_for(T, "B's webhook call", &[&a, &b], || match rx.count() {
        0 => Err(format!("no call; status {}", w.mv(&name)["status"])),
        _ => Ok(()),
    });
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 1, "one call: {reqs:?}");
    let token = reqs[0]
        .header("x-vigil-token")
        .expect("X-Vigil-Token")
        .to_string();
    // Written ahead of the action, so it is there already.
    let rem = w.remediation(&name);
    let cooldown = rem["cooldownUntil"].clone();
    assert!(
        ts(&cooldown).is_some_and(|t| t > Timestamp::now()),
        "no cooldown written ahead of the action: {rem}"
    );
    assert_eq!(rem["totalActions"], 1, "{rem}");

    // A wakes up believing it leads.
    a.signal("CONT");
    let woke = Instant::now();
    wait_for(T, "B's record of its action", &[&a, &b], || {
        let rem = w.remediation(&name);
        (rem.get("inFlight").is_none() && rem["history"][0]["result"] == "Succeeded")
            .then_some(())
            .ok_or_else(|| format!("remediation {rem}"))
    });
    holds_for(
        Duration::from_secs(10),
        "one action inside the cooldown",
        &[&a, &b],
        || {
            if rx.count() != 1 {
                return Err(format!("{} webhook calls: {:?}", rx.count(), rx.requests()));
            }
            let rem = w.remediation(&name);
            let history = rem["history"].as_array().cloned().unwrap_or_default();
            if rem["totalActions"] != 1
                || history.len() != 1
                || history[0]["token"] != token.as_str()
                || rem["cooldownUntil"] != cooldown
                || rem.get("inFlight").is_some()
            {
                return Err(format!(
                    "remediation changed (B's token {token}, cooldownUntil {cooldown}): {rem}"
                ));
            }
            Ok(())
        },
    );
    assert_eq!(
        b.metric("vigil_remediations_total{action=\"webhook\",result=\"Succeeded\"}"),
        Some(1.0),
        "B made the one call\n{}",
        tails(&[&a, &b])
    );
    assert_eq!(lease_holder(w.c, &w.ns), "replica-b");
    assert_eq!(b.metric("vigil_leader"), Some(1.0));

    // A lost the lease: it exits non-zero and says why, or at least no longer leads.
    match a.wait_exit(Duration::from_secs(5)) {
        Some(code) => {
            let log = a.log_text();
            assert!(
                code.is_some_and(|c| c != 0),
                "A exited with {code:?} after losing the lease\n{}",
                tails(&[&a])
            );
            assert!(
                log.contains("lost the leader lease"),
                "A exited ({code:?}) without saying it lost the lease\n{}",
                tails(&[&a])
            );
            eprintln!(
                "A exited with {code:?} (checked {:?} after SIGCONT)",
                woke.elapsed()
            );
        }
        None => {
            let leader = a.metric("vigil_leader");
            assert_ne!(
                leader,
                Some(1.0),
                "A still runs and claims to lead 15 s after waking\n{}",
                tails(&[&a, &b])
            );
            eprintln!("A did not exit, but does not lead (vigil_leader {leader:?})");
        }
    }
    assert_eq!(rx.count(), 1);
}

#[test]
fn sigterm_during_an_action_finishes_or_records_interrupted() {
    let w = world("termaction", 1);
    let rx = Receiver::start();
    // A slow endpoint: the action is still running when SIGTERM comes.
    rx.delay(Duration::from_secs(20));
    w.policy("action: webhook, cooldown: 10m, maxCooldown: 30m");
    let name = w.validator(
        0,
        &format!("{{webhook: {{url: '{}', timeout: 30s}}}}", rx.url),
    );
    let mut op = w.operator("first");
    op.wait_leader(T);
    w.wait(&name, "Ready", "True", "Healthy", &[&op]);
    w.sim.fault(0, "die");
    wait_for(T, "the webhook call", &[&op], || match rx.count() {
        0 => Err(format!("no call; status {}", w.mv(&name)["status"])),
        _ => Ok(()),
    });
    let token = rx.requests()[0]
        .header("x-vigil-token")
        .expect("X-Vigil-Token")
        .to_string();
    let rem = w.remediation(&name);
    assert_eq!(
        rem["inFlight"]["token"],
        token.as_str(),
        "the running action is recorded in flight: {rem}"
    );

    op.signal("TERM");
    let termed = Instant::now();
    let code = op.wait_exit(Duration::from_secs(8));
    if code.is_none() {
        // Too slow: learn how it ends, for the report (the test fails either way).
        let late = op.wait_exit(Duration::from_secs(20));
        panic!(
            "no exit within 8 s of SIGTERM during an action; it ended with {late:?} after {:?}; lease holder now {:?}; status {}\n{}",
            termed.elapsed(),
            lease_holder(w.c, &w.ns),
            w.mv(&name)["status"]["remediation"],
            tails(&[&op])
        );
    }
    assert_eq!(
        code,
        Some(Some(0)),
        "exit code after SIGTERM during an action\n{}",
        tails(&[&op])
    );
    eprintln!("exited 0 {:?} after SIGTERM", termed.elapsed());
    // It gave the lease up on the way out.
    let holder = lease_holder(w.c, &w.ns);
    assert_ne!(
        holder,
        "first",
        "the lease stayed with the process that exited\n{}",
        tails(&[&op])
    );
    // Any repeat is answered at once from now on.
    rx.delay(Duration::ZERO);

    // Recorded before the process exited: nothing left in flight.
    let rem = w.remediation(&name);
    assert!(
        rem.get("inFlight").is_none(),
        "an action left in flight after SIGTERM: {rem}\n{}",
        tails(&[&op])
    );
    let history = rem["history"].as_array().cloned().unwrap_or_default();
    let last = history
        .last()
        .unwrap_or_else(|| panic!("no history: {rem}"));
    assert!(
        matches!(last["result"].as_str(), Some("Interrupted" | "Succeeded")),
        "the last record: {rem}\n{}",
        tails(&[&op])
    );
    assert_eq!(last["token"], token.as_str(), "{rem}");
    assert_eq!(history.len(), 1, "{rem}");
    assert_eq!(rem["totalActions"], 1, "{rem}");
    eprintln!("last record after SIGTERM: {last}");
    let cooldown = rem["cooldownUntil"].clone();
    assert!(
        ts(&cooldown).is_some_and(|t| t > Timestamp::now()),
        "the cooldown stands: {rem}"
    );

    // A new operator sees the dead node again and again, and does not repeat the action.
    let mut second = w.operator("second");
    second.wait_leader(T);
    let probes = |op: &Operator| metric_sum(op, "vigil_probes_total").unwrap_or(0.0);
    let mut seen = 0.0;
    let start = Instant::now();
    while seen < 5.0 || start.elapsed() < Duration::from_secs(5) {
        assert!(
            start.elapsed() < T,
            "the new operator probed {seen} times in {T:?}\n{}",
            tails(&[&second])
        );
        assert_eq!(
            rx.count(),
            1,
            "the new operator repeated the action inside the cooldown: {:?}\nstatus {}\n{}",
            rx.requests(),
            w.mv(&name)["status"],
            tails(&[&op, &second])
        );
        seen = probes(&second);
        std::thread::sleep(POLL);
    }
    let rem = w.remediation(&name);
    assert_eq!(rem["totalActions"], 1, "{rem}");
    assert!(rem.get("inFlight").is_none(), "{rem}");
    assert_eq!(rem["cooldownUntil"], cooldown, "{rem}");
    assert_eq!(rem["history"].as_array().map(Vec::len), Some(1), "{rem}");
    let cond = condition(&w.mv(&name), "Ready").unwrap();
    assert_eq!(cond["status"], "False", "the node is still dead: {cond}");
    assert_eq!(rx.count(), 1);
}

/// The fence of a decision's write against the real API server: another field manager
/// changing other fields of the status since the read does not lose the decision
/// (`apply_refenced` reads again and writes on the new resourceVersion), while a change of
/// the fields the decision rests on does, and a plain fenced write with the old
/// resourceVersion is refused. A busy policy's counts change every few seconds; without
/// this its alert records and advisor spend never landed under churn.
#[test]
fn a_fenced_write_outlives_other_managers_but_not_a_change_of_its_own_fields() {
    use vigil::api::MonitorPolicy;
    use vigil::status::{Manager, StatusWriter, WriteError};
    let w = world("refence", 1);
    apply_ok(
        w.c,
        &w.ns,
        "apiVersion: vigil.dev/v1alpha1\nkind: MonitorPolicy\nmetadata:\n  name: busy\nspec: {}\n",
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let kc = kube::config::Kubeconfig::read_from(&w.c.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        let writer = StatusWriter::new(
            kube::Client::try_from(config).unwrap(),
            vigil::metrics::Metrics::new(),
        );
        let ns = w.ns.as_str();
        let read = || async {
            writer
                .read::<MonitorPolicy>(ns, "busy")
                .await
                .unwrap()
                .unwrap()
        };
        let alerts = |p: &MonitorPolicy| {
            p.status
                .as_ref()
                .map(|s| s.alerts.len())
                .unwrap_or_default()
        };
        let record = |name: &str| {
            serde_json::json!({"alerts": [{"name": name, "fingerprint": format!("fp-{name}")}]})
        };
        let decided_on = read().await;
        let fence = decided_on.metadata.resource_version.clone();

        // Someone else rewrites the counts: the decision still holds.
        writer
            .apply::<MonitorPolicy, _>(ns, "busy", Manager::Vigil, &serde_json::json!({"healthy": 7}), None)
            .await
            .unwrap();
        let plain = writer
            .apply::<MonitorPolicy, _>(ns, "busy", Manager::Alerts, &record("ValidatorUnreachable"), fence.as_deref())
            .await;
        assert!(matches!(plain, Err(WriteError::Conflict)), "{plain:?}");
        let written = writer
            .apply_refenced::<MonitorPolicy, _>(
                ns,
                "busy",
                Manager::Alerts,
                &record("ValidatorUnreachable"),
                fence.clone(),
                |fresh| alerts(fresh) == alerts(&decided_on),
            )
            .await
            .unwrap();
        assert_eq!(alerts(&written), 1);
        assert_eq!(written.status.as_ref().unwrap().healthy, 7, "the other manager's field kept");

        // The records themselves changed since the read: the conflict stands.
        let stale = writer
            .apply_refenced::<MonitorPolicy, _>(
                ns,
                "busy",
                Manager::Alerts,
                &serde_json::json!({}),
                fence,
                |fresh| alerts(fresh) == alerts(&decided_on),
            )
            .await;
        assert!(matches!(stale, Err(WriteError::Conflict)), "{stale:?}");
        assert_eq!(alerts(&read().await), 1, "nothing written on a stale decision");
    });
}
