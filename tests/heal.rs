//! Healing end to end, against the real control plane (kube-controller-manager, scheduler
//! and kwok make pods real), simulated nodes, a webhook receiver and a real sshd: evictions
//! the StatefulSet controller answers, PodDisruptionBudgets, rollout restarts, SSH commands,
//! the storm guard, attempt limits and escalation, crash safety, dry-run and kill switches.

mod support;

use serde_json::Value;
use std::time::{Duration, Instant};
use support::operator::Operator;
use support::receiver::Receiver;
use support::{World, apply_ok, condition, events_for, eventually, get_json};

const T: Duration = Duration::from_secs(60);

fn world(prefix: &str, nodes: usize) -> World {
    World::new(prefix, nodes, &[])
}

impl World {
    /// A policy `heal` with fast probes and these remediation fields (YAML flow entries).
    fn policy(&self, remediation: &str, extra: &str) {
        apply_ok(
            self.c,
            &self.ns,
            &format!(
                "apiVersion: vigil.dev/v1alpha1\nkind: MonitorPolicy\nmetadata:\n  name: heal\nspec:\n  probe: {{interval: 1s, timeout: 800ms, failureThreshold: 2, successThreshold: 1}}\n  health: {{minPeers: 1}}\n  remediation: {{{remediation}}}\n{extra}"
            ),
        );
    }

    /// A validator for simulated node `i` with this `spec.target` (YAML flow).
    fn validator(&self, i: usize, target: &str) -> String {
        let n = &self.sim.nodes[i];
        apply_ok(
            self.c,
            &self.ns,
            &format!(
                "apiVersion: vigil.dev/v1alpha1\nkind: MonitoredValidator\nmetadata:\n  name: {}\nspec:\n  chain: substrate\n  endpoints: {{rpc: '{}'}}\n  policyRef: {{name: heal}}\n  target: {target}\n",
                n.name, n.rpc
            ),
        );
        n.name.clone()
    }

    fn operator_with(&self, identity: &str, extra: &[&str]) -> Operator {
        let mut op = Operator::start(self.c, &self.ns, identity, extra);
        op.wait_ready(T);
        op
    }

    fn mv(&self, name: &str) -> Value {
        get_json(self.c, &self.ns, "mv", name).expect("validator exists")
    }

    fn wait(&self, name: &str, type_: &str, status: &str, reason: &str, op: &Operator) -> Value {
        let mut last = Value::Null;
        let start = Instant::now();
        while start.elapsed() < T {
            if let Some(cond) =
                get_json(self.c, &self.ns, "mv", name).and_then(|o| condition(&o, type_))
            {
                if cond["status"] == status && cond["reason"] == reason {
                    return cond;
                }
                last = cond;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let log = op.log_text();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        panic!(
            "{name}: {type_} never became {status}/{reason}; last {last}\nstatus: {}\nlog:\n{}",
            self.mv(name)["status"],
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }

    fn has_event(&self, name: &str, type_: &str, reason: &str) -> Option<String> {
        events_for(self.c, &self.ns, name)
            .into_iter()
            .find(|(t, r, _)| t == type_ && r == reason)
            .map(|(_, _, m)| m)
    }

    fn event(&self, name: &str, type_: &str, reason: &str) -> String {
        eventually(T, &format!("{type_} Event {reason} on {name}"), || {
            self.has_event(name, type_, reason)
        })
    }

    fn annotate(&self, name: &str, kv: &str) {
        self.c
            .kubectl_ok(&["annotate", "--overwrite", "-n", &self.ns, "mv", name, kv]);
    }

    fn suspend(&self, name: &str, on: bool) {
        let patch = format!("{{\"spec\":{{\"suspend\":{on}}}}}");
        self.c.kubectl_ok(&[
            "patch",
            "-n",
            &self.ns,
            "mv",
            name,
            "--type=merge",
            "-p",
            &patch,
        ]);
    }

    fn kubectl_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-n", &self.ns, "-o", "json"]);
        serde_json::from_str(&self.c.kubectl_ok(&all)).unwrap()
    }

    /// The UID of the Running pod `name`, once there is one.
    fn running_pod(&self, name: &str) -> String {
        eventually(T, &format!("pod {name} Running"), || {
            let out = self
                .c
                .kubectl(&["get", "pod", name, "-n", &self.ns, "-o", "json"]);
            let p: Value = serde_json::from_slice(&out.stdout).ok()?;
            (p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null())
                .then(|| p["metadata"]["uid"].as_str().unwrap().to_string())
        })
    }

    fn remediation(&self, name: &str) -> Value {
        self.mv(name)["status"]["remediation"].clone()
    }

    /// The message of the validator's first failed attempt, once there is one (from
    /// status.remediation.history: the Remediating condition moves on at the next probe).
    fn failed_attempt(&self, name: &str) -> String {
        eventually(T, &format!("a failed attempt on {name}"), || {
            let rem = self.remediation(name);
            rem["history"]
                .as_array()?
                .iter()
                .find(|h| h["result"] == "Failed")
                .map(|h| h["message"].as_str().unwrap_or_default().to_string())
        })
    }
}

fn workload_yaml(kind: &str, name: &str, extra_spec: &str) -> String {
    let service = if kind == "StatefulSet" {
        format!("  serviceName: {name}\n")
    } else {
        String::new()
    };
    format!(
        "apiVersion: apps/v1\nkind: {kind}\nmetadata:\n  name: {name}\nspec:\n  replicas: 1\n{service}{extra_spec}  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n        - {{name: node, image: busybox}}\n"
    )
}

#[test]
fn an_evicted_statefulset_pod_is_recreated_and_the_recovery_recorded() {
    let w = world("evict", 1);
    apply_ok(w.c, &w.ns, &workload_yaml("StatefulSet", "val", ""));
    let uid = w.running_pod("val-0");
    w.policy("action: evictPod, cooldown: 5s, maxAttempts: 3", "");
    let name = w.validator(0, "{workload: {kind: StatefulSet, name: val}}");
    let op = w.operator_with("heal", &[]);
    w.wait(&name, "Ready", "True", "Healthy", &op);

    w.sim.fault(0, "die");
    // The real StatefulSet controller recreates the evicted pod: a new UID.
    let new_uid = eventually(T, "a new val-0", || {
        let out = w.c.kubectl(&[
            "get",
            "pod",
            "val-0",
            "-n",
            &w.ns,
            "-o",
            "jsonpath={.metadata.uid}",
        ]);
        let u = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (!u.is_empty() && u != uid).then_some(u)
    });
    assert_eq!(w.running_pod("val-0"), new_uid);
    // The restarted node answers again.
    w.sim.recover(0);
    w.wait(&name, "Ready", "True", "Healthy", &op);
    w.wait(&name, "Remediating", "False", "Recovered", &op);
    let rem = w.remediation(&name);
    assert_eq!(rem["totalActions"], 1, "{rem}");
    let last = &rem["history"][0];
    assert_eq!(last["action"], "evictPod");
    assert_eq!(last["result"], "Succeeded", "{rem}");
    assert_eq!(last["recovered"], true, "{rem}");
    assert_eq!(last["trigger"], "policy");
    assert!(last["message"].as_str().unwrap().contains("val-0"), "{rem}");
    assert!(rem.get("inFlight").is_none(), "{rem}");
    w.event(&name, "Normal", "RemediationSucceeded");
    w.event(&name, "Normal", "Recovered");
    assert!(
        op.metric("vigil_remediations_total{action=\"evictPod\",result=\"Succeeded\"}")
            == Some(1.0),
        "{}",
        op.get("/metrics").unwrap().1
    );
}

#[test]
fn a_disruption_budget_blocks_eviction_which_is_retried_not_counted() {
    let w = world("pdb", 1);
    apply_ok(w.c, &w.ns, &workload_yaml("StatefulSet", "guarded", ""));
    apply_ok(
        w.c,
        &w.ns,
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: guarded\nspec:\n  minAvailable: 1\n  selector:\n    matchLabels: {app: guarded}\n",
    );
    let uid = w.running_pod("guarded-0");
    eventually(T, "the PDB allows no disruption", || {
        let p = w.kubectl_json(&["get", "pdb", "guarded"]);
        (p["status"]["observedGeneration"] == 1 && p["status"]["disruptionsAllowed"] == 0)
            .then_some(())
    });
    w.policy("action: evictPod, cooldown: 2s, maxAttempts: 2", "");
    let name = w.validator(0, "{workload: {kind: Pod, name: guarded-0}}");
    let op = w.operator_with("heal", &[]);
    w.wait(&name, "Ready", "True", "Healthy", &op);
    w.sim.fault(0, "die");
    w.wait(
        &name,
        "Remediating",
        "False",
        "BlockedByDisruptionBudget",
        &op,
    );
    let msg = w.event(&name, "Warning", "EvictionBlocked");
    assert!(msg.contains("disruption budget"), "{msg}");
    // Retried, and never counted as an attempt: no escalation although maxAttempts is 2.
    eventually(T, "three blocked tries", || {
        let rem = w.remediation(&name);
        let blocked = rem["history"]
            .as_array()?
            .iter()
            .filter(|h| h["result"] == "Blocked")
            .count();
        (blocked >= 3).then_some(())
    });
    let rem = w.remediation(&name);
    assert_eq!(rem["attemptsInWindow"], 0, "{rem}");
    assert_eq!(rem["totalActions"], 0, "{rem}");
    assert_ne!(
        condition(&w.mv(&name), "Escalated").map(|c| c["status"].clone()),
        Some("True".into())
    );
    assert_eq!(w.running_pod("guarded-0"), uid, "the pod was not evicted");
    // Without the budget the next try goes through.
    w.c.kubectl_ok(&["delete", "pdb", "guarded", "-n", &w.ns]);
    eventually(T, "the eviction goes through", || {
        let rem = w.remediation(&name);
        rem["history"]
            .as_array()?
            .iter()
            .any(|h| h["result"] == "Succeeded")
            .then_some(())
    });
}

#[test]
fn rollout_restart_changes_the_template_and_a_paused_deployment_is_refused() {
    let w = world("rollout", 3);
    // Recreate stops the old pod before starting the new one: no two copies at once.
    let recreate = "  strategy: {type: Recreate}\n";
    apply_ok(w.c, &w.ns, &workload_yaml("Deployment", "dep", recreate));
    apply_ok(
        w.c,
        &w.ns,
        &workload_yaml("Deployment", "held", &format!("  paused: true\n{recreate}")),
    );
    // The default strategy surges (maxSurge 25%): refused, no allowOverlap.
    apply_ok(w.c, &w.ns, &workload_yaml("Deployment", "surging", ""));
    w.policy(
        "action: rolloutRestart, cooldown: 30s, maxUnhealthy: '100%', maxConcurrent: 3",
        "",
    );
    let a = w.validator(0, "{workload: {kind: Deployment, name: dep}}");
    let b = w.validator(1, "{workload: {kind: Deployment, name: held}}");
    let s = w.validator(2, "{workload: {kind: Deployment, name: surging}}");
    let op = w.operator_with("heal", &[]);
    w.wait(&a, "Ready", "True", "Healthy", &op);
    w.wait(&b, "Ready", "True", "Healthy", &op);
    w.wait(&s, "Ready", "True", "Healthy", &op);
    w.sim.fault(0, "die");
    w.sim.fault(1, "die");
    w.sim.fault(2, "die");
    w.wait(&a, "Remediating", "True", "WaitingForRecovery", &op);
    let token = w.remediation(&a)["history"][0]["token"]
        .as_str()
        .unwrap()
        .to_string();
    let d = w.kubectl_json(&["get", "deployment", "dep"]);
    assert_eq!(
        d["spec"]["template"]["metadata"]["annotations"]["vigil.dev/restartedAt"],
        token.as_str(),
        "{d}"
    );
    let cond = w.wait(&b, "Remediating", "False", "ActionFailed", &op);
    assert!(
        cond["message"].as_str().unwrap().contains("paused"),
        "{cond}"
    );
    let held = w.kubectl_json(&["get", "deployment", "held"]);
    assert!(
        held["spec"]["template"]["metadata"]["annotations"]
            .get("vigil.dev/restartedAt")
            .is_none()
    );
    let refused = w.failed_attempt(&s);
    assert!(
        refused.contains("refused: a rollout of Deployment surging can start the new pod")
            && refused.contains("allowOverlap"),
        "{refused}"
    );
    let surging = w.kubectl_json(&["get", "deployment", "surging"]);
    assert!(
        surging["spec"]["template"]["metadata"]["annotations"]
            .get("vigil.dev/restartedAt")
            .is_none(),
        "{surging}"
    );
}

/// Signing safety: a Deployment's ReplicaSet starts a pod's replacement while the old pod is
/// still stopping, so evicting it could run the validator twice with one key. Vigil refuses
/// (the StatefulSet case, which is safe, is evicted in the first test of this file) until the
/// policy says allowOverlap.
#[test]
fn a_deployment_pod_is_not_evicted_unless_the_policy_allows_overlap() {
    let w = world("overlap", 1);
    apply_ok(w.c, &w.ns, &workload_yaml("Deployment", "dep", ""));
    w.policy(
        "action: evictPod, cooldown: 1s, maxAttempts: 10, escalateAfter: 10",
        "",
    );
    let name = w.validator(0, "{workload: {kind: Deployment, name: dep}}");
    let pods = || {
        let list = w.kubectl_json(&["get", "pods", "-l", "app=dep"]);
        let mut uids: Vec<String> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["metadata"]["uid"].as_str().unwrap().to_string())
            .collect();
        uids.sort();
        uids
    };
    let before = eventually(T, "the Deployment's pod", || {
        let p = pods();
        (p.len() == 1).then_some(p)
    });
    let op = w.operator_with("heal", &[]);
    w.wait(&name, "Ready", "True", "Healthy", &op);
    w.sim.fault(0, "die");
    let refused = w.failed_attempt(&name);
    assert!(
        refused.starts_with("refused: pod dep-")
            && refused.contains("belongs to ReplicaSet dep-")
            && refused.contains("double signing")
            && refused.contains("remediation.allowOverlap: true"),
        "{refused}"
    );
    assert_eq!(pods(), before, "the pod was not touched");

    w.policy(
        "action: evictPod, cooldown: 1s, maxAttempts: 10, escalateAfter: 10, allowOverlap: true",
        "",
    );
    eventually(T, "the pod evicted once overlap is allowed", || {
        let rem = w.remediation(&name);
        rem["history"]
            .as_array()?
            .iter()
            .any(|h| h["action"] == "evictPod" && h["result"] == "Succeeded")
            .then_some(())
    });
    assert!(!pods().contains(&before[0]), "the old pod is gone or going");
}

#[test]
fn ssh_runs_the_allow_listed_command_quoted_and_refuses_a_wrong_host_key() {
    let sshd = support::sshd::Sshd::start();
    let w = world("ssh", 2);
    let dir = sshd.scratch().to_path_buf();
    let log = dir.join("restarts.log");
    let pwned = dir.join("pwned");
    apply_ok(
        w.c,
        &w.ns,
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: ssh-key\nstringData:\n  id: |\n{}\n",
            sshd.client_private_key()
                .lines()
                .map(|l| format!("    {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    );
    // The restart "command" appends its arguments to a log, one per line.
    let cmd = format!(
        "sshCommands: {{restart: {{argv: [sh, -c, 'printf \"%s\\n\" \"$1\" \"$2\" >> {}', sh, '{{validator}}', '{{request}}'], timeout: 10s}}}}, sshCommand: restart",
        log.display()
    );
    w.policy(
        &format!("action: ssh, cooldown: 1s, maxUnhealthy: '100%', maxConcurrent: 2, {cmd}"),
        "",
    );
    let target = |key: &str| {
        format!(
            "{{ssh: {{host: 127.0.0.1, port: {}, user: '{}', privateKeySecretRef: {{name: ssh-key, key: id}}, hostKey: '{}'}}}}",
            sshd.port(),
            sshd.user(),
            key
        )
    };
    let good = w.validator(0, &target(sshd.host_public_key()));
    let bad = w.validator(1, &target(sshd.other_public_key()));
    let op = w.operator_with("heal", &[]);
    w.wait(&good, "Ready", "True", "Healthy", &op);

    // A person asks for a restart with a token full of shell metacharacters: it arrives as
    // one literal argument and runs nothing.
    let evil = format!(
        "x;touch {p} $(touch {p}) `touch {p}` | touch {p} && touch {p} 'q\"",
        p = pwned.display()
    );
    w.annotate(&good, &format!("vigil.dev/restart={evil}"));
    w.event(&good, "Normal", "ManualRestart");
    // The node is healthy, so WaitingForRecovery turns into Recovered at once: look at the
    // record instead.
    eventually(T, "the manual restart recorded", || {
        let rem = w.remediation(&good);
        (rem["history"][0]["result"] == "Succeeded").then_some(())
    });
    let text = eventually(T, "the command ran", || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.lines().count() >= 2)
    });
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], good);
    assert_eq!(lines[1], evil, "the token arrives as one literal argument");
    assert!(!pwned.exists(), "a metacharacter reached a shell");
    let rem = w.remediation(&good);
    assert_eq!(rem["history"][0]["trigger"], "manual");
    assert_eq!(rem["lastRestartToken"], evil.as_str());
    // Once per token.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        std::fs::read_to_string(&log).unwrap().lines().count(),
        2,
        "a token is honoured once"
    );

    // The wrong pinned host key: refused and recorded, nothing run.
    w.annotate(&bad, "vigil.dev/restart=t1");
    let cond = w.wait(&bad, "Remediating", "False", "ActionFailed", &op);
    assert!(
        cond["message"]
            .as_str()
            .unwrap()
            .contains("host key mismatch"),
        "{cond}"
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 2);
    let msg = w.event(&bad, "Warning", "RemediationFailed");
    assert!(msg.contains("nothing was run"), "{msg}");
}

#[test]
fn six_of_ten_failing_at_once_is_a_storm_and_restarts_nothing() {
    let w = world("storm", 10);
    let rx = Receiver::start();
    w.policy(
        "action: webhook, cooldown: 1s, maxUnhealthy: '50%', maxConcurrent: 10",
        "",
    );
    let names: Vec<String> = (0..10)
        .map(|i| w.validator(i, &format!("{{webhook: {{url: '{}'}}}}", rx.url)))
        .collect();
    let op = w.operator_with("heal", &[]);
    for n in &names {
        w.wait(n, "Ready", "True", "Healthy", &op);
    }
    w.sim.admin_post(
        "/fault",
        &serde_json::json!({"fault": "die", "nodes": [0, 1, 2, 3, 4, 5]}),
    );
    for n in &names[..6] {
        w.wait(n, "Ready", "False", "ConnectionFailed", &op);
        w.wait(n, "Remediating", "False", "StormGuard", &op);
    }
    let cond = eventually(T, "StormActive on the policy", || {
        let p = get_json(w.c, &w.ns, "mpol", "heal")?;
        condition(&p, "StormActive").filter(|c| c["status"] == "True")
    });
    assert!(
        cond["message"].as_str().unwrap().contains("6 of 10"),
        "{cond}"
    );
    w.event("heal", "Warning", "StormActive");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(rx.count(), 0, "no restart in a storm");
    for n in &names {
        assert_eq!(
            w.remediation(n)
                .get("totalActions")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            0,
            "{n}"
        );
    }
    assert!(
        op.metric("vigil_remediations_blocked_total{reason=\"StormGuard\"}")
            .unwrap_or(0.0)
            >= 6.0
    );
    // The policy controller's own writes leave StormActive alone.
    let p = get_json(w.c, &w.ns, "mpol", "heal").unwrap();
    assert_eq!(condition(&p, "Ready").unwrap()["status"], "True");
    w.sim.recover_all();
    eventually(T, "StormActive cleared", || {
        let p = get_json(w.c, &w.ns, "mpol", "heal")?;
        condition(&p, "StormActive").filter(|c| c["status"] == "False")
    });
    assert_eq!(rx.count(), 0);
}

#[test]
fn no_fourth_attempt_but_escalation_then_ack_lets_vigil_act_again() {
    let w = world("escalate", 1);
    let rx = Receiver::start();
    apply_ok(
        w.c,
        &w.ns,
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: hook\nstringData:\n  key: s3cret\n",
    );
    w.policy(
        "action: webhook, cooldown: 1s, maxCooldown: 2s, maxAttempts: 3",
        "",
    );
    let name = w.validator(
        0,
        &format!(
            "{{webhook: {{url: '{}', signingSecretRef: {{name: hook, key: key}}, timeout: 5s}}}}",
            rx.url
        ),
    );
    let op = w.operator_with("heal", &[]);
    w.wait(&name, "Ready", "True", "Healthy", &op);
    w.sim.fault(0, "die");
    let cond = w.wait(&name, "Escalated", "True", "RemediationExhausted", &op);
    assert!(
        cond["message"].as_str().unwrap().contains("maxAttempts"),
        "{cond}"
    );
    w.event(&name, "Warning", "Escalated");
    std::thread::sleep(Duration::from_secs(4));
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 3, "exactly maxAttempts attempts, no fourth");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"s3cret");
    let mut tokens = Vec::new();
    for r in &reqs {
        assert_eq!(r.method, "POST");
        let sig = r.header("x-vigil-signature").expect("signed");
        let hex = sig.strip_prefix("sha256=").expect("sha256=");
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        ring::hmac::verify(&key, &r.body, &bytes).expect("valid HMAC-SHA256 of the body");
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["validator"]["name"], name.as_str());
        assert_eq!(body["reason"], "ConnectionFailed");
        assert_eq!(r.header("x-vigil-token"), body["token"].as_str());
        tokens.push(body["token"].as_str().unwrap().to_string());
    }
    tokens.dedup();
    assert_eq!(tokens.len(), 3, "a token per attempt");
    assert_eq!(op.metric("vigil_escalations_total"), Some(1.0));

    w.annotate(&name, "vigil.dev/ack=looked-at-it");
    w.wait(&name, "Escalated", "False", "Acknowledged", &op);
    w.event(&name, "Normal", "Acknowledged");
    eventually(T, "Vigil acts again after the ack", || {
        (rx.count() >= 4).then_some(())
    });
}

#[test]
fn killing_the_operator_right_after_a_restart_never_restarts_twice_in_the_cooldown() {
    let w = world("sigkill", 1);
    let rx = Receiver::start();
    w.policy("action: webhook, cooldown: 10m, maxCooldown: 30m", "");
    let name = w.validator(0, &format!("{{webhook: {{url: '{}'}}}}", rx.url));
    let op = w.operator_with("heal", &[]);
    w.wait(&name, "Ready", "True", "Healthy", &op);
    w.sim.fault(0, "die");
    eventually(T, "the first restart", || (rx.count() == 1).then_some(()));
    let mut op = op;
    for round in 0..10 {
        op.signal("KILL");
        op.wait_exit(Duration::from_secs(5)).expect("killed");
        op = w.operator_with("heal", &[]);
        op.wait_leader(T);
        // Give the new leader several probes of the dead node to (not) act on.
        w.wait(&name, "Ready", "False", "ConnectionFailed", &op);
        std::thread::sleep(Duration::from_millis(if round == 9 { 4000 } else { 1500 }));
        assert_eq!(
            rx.count(),
            1,
            "round {round}: a second restart inside the cooldown"
        );
    }
    let rem = w.remediation(&name);
    assert_eq!(rem["totalActions"], 1, "{rem}");
    assert!(rem.get("inFlight").is_none(), "{rem}");
    assert!(
        matches!(
            rem["history"][0]["result"].as_str(),
            Some("Succeeded" | "Interrupted")
        ),
        "{rem}"
    );
}

#[test]
fn dry_run_and_suspend_never_act() {
    let w = world("killswitch", 1);
    let rx = Receiver::start();
    w.policy("action: webhook, cooldown: 2s", "");
    let name = w.validator(0, &format!("{{webhook: {{url: '{}'}}}}", rx.url));
    let mut op = w.operator_with("dry", &["--dry-run"]);
    w.wait(&name, "Ready", "True", "Healthy", &op);
    w.sim.fault(0, "die");
    let cond = w.wait(&name, "Remediating", "False", "DryRun", &op);
    assert!(
        cond["message"]
            .as_str()
            .unwrap()
            .contains("nothing was done")
    );
    w.event(&name, "Normal", "DryRun");
    assert_eq!(w.remediation(&name)["history"][0]["result"], "DryRun");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(rx.count(), 0, "dry-run acted");
    op.signal("TERM");
    op.wait_exit(Duration::from_secs(10));

    // The policy's kill switch.
    w.policy("action: webhook, cooldown: 2s", "  suspend: true\n");
    let op = w.operator_with("real", &[]);
    w.wait(&name, "Remediating", "False", "PolicySuspended", &op);
    // The validator's own switch: on before the policy's goes off, so that no moment has
    // neither switch on.
    w.suspend(&name, true);
    w.policy("action: webhook, cooldown: 2s", "");
    w.wait(&name, "Remediating", "False", "Suspended", &op);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(rx.count(), 0, "a suspended validator was acted on");
    // Off again: now it acts, so it was the switches that held it.
    w.suspend(&name, false);
    eventually(T, "an action once unsuspended", || {
        (rx.count() >= 1).then_some(())
    });
}

#[test]
fn delete_pod_deletes_the_selected_pod() {
    let w = world("delete", 1);
    apply_ok(
        w.c,
        &w.ns,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bare\n  labels: {app: bare, role: validator}\nspec:\n  containers:\n    - {name: node, image: busybox}\n",
    );
    let uid = w.running_pod("bare");
    w.policy("action: deletePod, cooldown: 30s", "");
    // By selector: the one live pod it matches is the validator's.
    let name = w.validator(
        0,
        "{workload: {kind: Pod, selector: {matchLabels: {role: validator}}}}",
    );
    let op = w.operator_with("heal", &[]);
    w.wait(&name, "Ready", "True", "Healthy", &op);
    w.sim.fault(0, "die");
    w.wait(&name, "Remediating", "True", "WaitingForRecovery", &op);
    eventually(T, "the pod is gone", || {
        let out = w.c.kubectl(&[
            "get",
            "pod",
            "bare",
            "-n",
            &w.ns,
            "-o",
            "jsonpath={.metadata.uid}",
        ]);
        let now = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (now != uid).then_some(())
    });
    let rem = w.remediation(&name);
    assert_eq!(rem["history"][0]["action"], "deletePod");
    assert_eq!(rem["history"][0]["message"], "Deleted pod bare", "{rem}");
}
