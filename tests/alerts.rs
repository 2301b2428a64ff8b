//! Alerts end to end against real servers: a real Alertmanager (API v2) and a real SMTP
//! server (Mailpit, STARTTLS and auth), a local receiver answering exactly as Slack does
//! (bodies from `../shared/fixtures/real-payloads/slack_*`) and a generic webhook receiver
//! that checks the HMAC, the real control plane, simulated nodes, and the operator as a
//! subprocess (SIGKILLed in one test).

mod support;

use serde_json::Value;
use std::time::{Duration, Instant};
use support::alerting::{Alertmanager, Mailpit};
use support::receiver::Receiver;
use support::{World, apply_ok, condition, events_for, eventually, get_json};

const T: Duration = Duration::from_secs(60);

fn world(prefix: &str, nodes: usize) -> World {
    World::new(prefix, nodes, &["--peers", "12"])
}

fn fixture(name: &str) -> String {
    let p = format!(
        "{}/../shared/fixtures/real-payloads/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

impl World {
    /// Policy `alerting` with fast probes, no remediation, and this `alerts` body (YAML,
    /// indented four spaces).
    fn policy(&self, alerts: &str) {
        apply_ok(
            self.c,
            &self.ns,
            &format!(
                "apiVersion: vigil.dev/v1alpha1\nkind: MonitorPolicy\nmetadata:\n  name: alerting\nspec:\n  probe: {{interval: 1s, timeout: 800ms, failureThreshold: 2, successThreshold: 1}}\n  health: {{minPeers: 1, maxBlockStall: 5s}}\n  remediation: {{action: none}}\n  alerts:\n{alerts}"
            ),
        );
    }

    fn validators(&self) {
        for n in &self.sim.nodes {
            apply_ok(
                self.c,
                &self.ns,
                &self.sim.validator_yaml(n.index, "alerting"),
            );
        }
    }

    /// A Slack channel posting to `slack` (its URL in Secret `slack`), and policy
    /// `alerting` with these alert `settings` (YAML, lines after the first indented four
    /// spaces, e.g. `groupWait: 1s`) and `rules` (YAML indented four spaces, or empty).
    fn slack_policy(&self, slack: &Receiver, settings: &str, rules: &str) {
        self.secret("slack", &[("url", &slack.url)]);
        self.policy(&format!(
            "    {settings}\n    channels: [{{name: slack, slack: {{webhookUrlSecretRef: {{name: slack, key: url}}}}}}]\n{rules}"
        ));
    }

    fn policy_json(&self) -> Value {
        get_json(self.c, &self.ns, "mpol", "alerting").expect("policy exists")
    }
}

/// Slack message texts a receiver got.
fn texts(r: &Receiver) -> Vec<String> {
    r.requests()
        .iter()
        .map(|q| {
            let v: Value = serde_json::from_slice(&q.body).unwrap_or_default();
            v["text"].as_str().unwrap_or_default().to_string()
        })
        .collect()
}

/// Waits `d`, then returns what `f` says (for "nothing more arrives" checks).
fn after<T>(d: Duration, f: impl FnOnce() -> T) -> T {
    std::thread::sleep(d);
    f()
}

#[test]
fn alertmanager_holds_a_fault_while_it_lasts_and_learns_its_end() {
    let w = world("al-am", 1);
    // Two instances, as an HA pair: each gets every alert.
    let (am, am2) = (Alertmanager::start("5s"), Alertmanager::start("5s"));
    w.policy(&format!(
        "    groupWait: 1s\n    flapDamping: 3s\n    channels: [{{name: am, alertmanager: {{urls: ['{}', '{}']}}}}]\n",
        am.url, am2.url
    ));
    w.validators();
    let _op = w.operator("al-am");
    w.ready_all("True");
    let name = w.sim.nodes[0].name.clone();

    w.sim.fault(0, "die");
    let alert = eventually(T, "ValidatorUnreachable in Alertmanager", || {
        am.named("ValidatorUnreachable").into_iter().next()
    });
    let labels = &alert["labels"];
    assert_eq!(labels["severity"], "critical");
    assert_eq!(labels["namespace"], w.ns.as_str());
    assert_eq!(labels["validator"], name.as_str());
    assert_eq!(labels["policy"], "alerting");
    assert_eq!(labels["chain"], "substrate");
    assert_eq!(
        alert["annotations"]["kubectl"],
        format!("kubectl describe monitoredvalidators {name} -n {}", w.ns).as_str()
    );
    assert!(
        alert["generatorURL"]
            .as_str()
            .unwrap()
            .contains("/monitoredvalidators/")
    );
    // The instances are posted to one after the other: the second may get it a moment later.
    eventually(T, "the second instance too", || {
        (am2.named("ValidatorUnreachable").len() == 1).then_some(())
    });
    // One fault, one alert: no ValidatorNotReady beside it.
    assert_eq!(am.alerts().len(), 1, "{:?}", am.alerts());

    // Still active after twice Alertmanager's resolve_timeout: Vigil refreshes endsAt.
    let still = after(Duration::from_secs(12), || am.named("ValidatorUnreachable"));
    assert_eq!(still.len(), 1, "the alert expired while the fault lasted");
    let mv = get_json(w.c, &w.ns, "mv", &name).unwrap();
    let rec = &mv["status"]["alerts"][0];
    assert_eq!(rec["name"], "ValidatorUnreachable");
    assert!(
        rec["firingSince"].is_string() && rec["resolvedAt"].is_null(),
        "{rec}"
    );

    w.sim.recover(0);
    eventually(T, "the alert resolves in both instances", || {
        (am.named("ValidatorUnreachable").is_empty()
            && am2.named("ValidatorUnreachable").is_empty())
        .then_some(())
    });
    let mv = get_json(w.c, &w.ns, "mv", &name).unwrap();
    assert!(
        mv["status"]["alerts"][0]["resolvedAt"].is_string(),
        "{}",
        mv["status"]["alerts"]
    );
}

#[test]
fn a_chain_wide_stall_is_one_grouped_alert_per_channel() {
    let w = world("al-group", 6);
    let am = Alertmanager::start("5m");
    let slack = Receiver::start();
    w.secret("slack", &[("url", &slack.url)]);
    w.policy(&format!(
        "    groupWait: 2s\n    flapDamping: 3s\n    channels:\n    - {{name: am, alertmanager: {{urls: ['{}']}}}}\n    - {{name: slack, slack: {{webhookUrlSecretRef: {{name: slack, key: url}}}}}}\n",
        am.url
    ));
    w.validators();
    let _op = w.operator("al-group");
    w.ready_all("True");

    w.sim.fault_all("stopBlocks");
    let alert = eventually(T, "ChainHalted in Alertmanager", || {
        am.named("ChainHalted").into_iter().next()
    });
    assert_eq!(alert["labels"]["policy"], "alerting");
    assert_eq!(alert["labels"]["chain"], "substrate");
    let description = alert["annotations"]["description"].as_str().unwrap();
    for n in &w.sim.nodes {
        assert!(
            description.contains(&n.name),
            "{description} lacks {}",
            n.name
        );
    }
    eventually(T, "one Slack message", || {
        (slack.count() >= 1).then_some(())
    });
    // Settled: still one alert and one message per channel, not one per validator.
    let (alerts, msgs) = after(Duration::from_secs(8), || (am.alerts(), texts(&slack)));
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(
        msgs[0].starts_with("[FIRING] critical ChainHalted"),
        "{}",
        msgs[0]
    );
    let body: Value = serde_json::from_slice(&slack.requests()[0].body).unwrap();
    assert!(
        body["blocks"].as_array().is_some_and(|b| !b.is_empty()),
        "{body}"
    );

    w.sim.recover_all();
    eventually(T, "the resolve reaches Slack", || {
        texts(&slack)
            .iter()
            .any(|t| t.starts_with("[RESOLVED] critical ChainHalted"))
            .then_some(())
    });
    eventually(T, "ChainHalted ends in Alertmanager", || {
        am.named("ChainHalted").is_empty().then_some(())
    });
}

#[test]
fn every_channel_type_delivers_and_a_dead_one_fails_alone() {
    let w = world("al-chan", 1);
    let slack = Receiver::start();
    let hook = Receiver::start();
    let mail = Mailpit::start();
    w.secret("slack", &[("url", &slack.url)]);
    w.secret("hook", &[("key", "hook-signing-key")]);
    w.secret(
        "smtp",
        &[("username", &mail.user), ("password", &mail.password)],
    );
    w.secret("smtp-ca", &[("ca.pem", &mail.ca_pem)]);
    w.policy(&format!(
        "    groupWait: 1s\n    flapDamping: 2s\n    channels:\n    - {{name: slack, slack: {{webhookUrlSecretRef: {{name: slack, key: url}}}}}}\n    - {{name: hook, webhook: {{url: '{}', signingSecretRef: {{name: hook, key: key}}}}}}\n    - {{name: mail, email: {{smtpHost: 127.0.0.1, smtpPort: {}, from: vigil@example.com, to: [ops@example.com, oncall@example.com], credentialsSecret: smtp, security: starttls, caSecretRef: {{name: smtp-ca, key: ca.pem}}}}}}\n    - {{name: dead, webhook: {{url: 'http://127.0.0.1:1/alerts'}}}}\n",
        hook.url, mail.smtp_port
    ));
    w.validators();
    let op = w.operator("al-chan");
    w.ready_all("True");
    let name = w.sim.nodes[0].name.clone();

    w.sim.fault(0, "die");
    eventually(T, "Slack, webhook and email", || {
        (slack.count() >= 1 && hook.count() >= 1 && !mail.messages().is_empty()).then_some(())
    });
    let text = &texts(&slack)[0];
    assert!(
        text.starts_with("[FIRING] critical ValidatorUnreachable"),
        "{text}"
    );
    assert!(text.contains(&name), "{text}");

    // The webhook's body is signed with the Secret's key.
    let q = &hook.requests()[0];
    let sig = q.header("x-vigil-signature").expect("signed");
    assert_eq!(
        sig,
        vigil::remediate::webhook::signature(b"hook-signing-key", &q.body)
    );
    let body: Value = serde_json::from_slice(&q.body).unwrap();
    assert_eq!(
        (body["status"].as_str(), body["alertname"].as_str()),
        (Some("firing"), Some("ValidatorUnreachable"))
    );
    assert_eq!(body["alerts"][0]["name"], name.as_str());

    // The email went through STARTTLS with auth, to both recipients.
    let m = &mail.messages()[0];
    let subject = m["Subject"].as_str().unwrap();
    assert!(
        subject.starts_with("[FIRING] critical ValidatorUnreachable"),
        "{subject}"
    );
    let to: Vec<&str> = m["To"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["Address"].as_str())
        .collect();
    assert_eq!(to, ["ops@example.com", "oncall@example.com"]);
    let full = mail.message(m["ID"].as_str().unwrap());
    let text = full["Text"].as_str().unwrap();
    assert!(
        text.contains(&format!(
            "kubectl describe monitoredvalidators {name} -n {}",
            w.ns
        )),
        "{text}"
    );

    // The dead channel is retried, then shows as failing, with a Warning Event.
    let cond = eventually(T, "AlertDeliveryFailing", || {
        condition(&w.policy_json(), "AlertDeliveryFailing").filter(|c| c["status"] == "True")
    });
    let msg = cond["message"].as_str().unwrap();
    assert!(msg.starts_with("dead: Webhook:"), "{msg}");
    assert!(!msg.contains("127.0.0.1:1"), "no URL in status: {msg}");
    let delivery = w.policy_json()["status"]["alertDelivery"].clone();
    let dead = delivery
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["channel"] == "dead")
        .unwrap()
        .clone();
    assert!(dead["consecutiveFailures"].as_u64().unwrap() >= 3, "{dead}");
    let ok = delivery
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["channel"] == "slack")
        .unwrap()
        .clone();
    assert!(
        ok["lastSuccess"].is_string() && ok["consecutiveFailures"] == 0,
        "{ok}"
    );
    eventually(T, "a Warning Event on the policy", || {
        events_for(w.c, &w.ns, "alerting")
            .into_iter()
            .find(|(t, r, _)| t == "Warning" && r == "ChannelFailing")
    });
    let failures =
        op.metric("vigil_alert_notifications_total{channel=\"webhook\",result=\"retried\"}");
    assert!(failures.is_some_and(|n| n >= 1.0), "{failures:?}");

    // The end reaches every channel that heard of the start.
    w.sim.recover(0);
    eventually(T, "resolves everywhere", || {
        let slack_ok = texts(&slack).iter().any(|t| t.starts_with("[RESOLVED]"));
        let hook_ok = hook.requests().iter().any(|q| {
            serde_json::from_slice::<Value>(&q.body).is_ok_and(|b| b["status"] == "resolved")
        });
        let mail_ok = mail.messages().iter().any(|m| {
            m["Subject"]
                .as_str()
                .is_some_and(|s| s.starts_with("[RESOLVED]"))
        });
        (slack_ok && hook_ok && mail_ok).then_some(())
    });
    assert_eq!(texts(&slack).len(), 2, "{:?}", texts(&slack));
}

/// Whether the Slack notification of validator 0's alert is recorded as still pending
/// (decided, not yet confirmed by the channel); None before any record.
fn slack_pending(w: &World) -> Option<bool> {
    let mv = get_json(w.c, &w.ns, "mv", &w.sim.nodes[0].name)?;
    let rec = mv["status"]["alerts"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == "ValidatorUnreachable")?
        .clone();
    let sent = rec["sent"]
        .as_array()?
        .iter()
        .find(|s| s["channel"] == "slack")?
        .clone();
    Some(sent["pending"] == true)
}

/// Delivery is at least once, and never more than that: a notification the channel had
/// confirmed before a SIGKILL is not sent again by the next process; one still on its way
/// (the channel slow to answer) is sent again, identical; the resolve is not forgotten.
#[test]
fn a_sigkill_mid_incident_neither_repeats_nor_loses_a_notification() {
    let w = world("al-kill", 1);
    let slack = Receiver::start();
    w.slack_policy(
        &slack,
        "groupWait: 1s\n    flapDamping: 2s",
        "    rules: [{channels: [slack], repeatInterval: 1h}]\n",
    );
    w.validators();
    let mut op = w.operator("al-kill-1");
    w.ready_all("True");

    // Killed after the channel confirmed the first notification: not sent again.
    w.sim.fault(0, "die");
    eventually(T, "the first notification, confirmed", || {
        (slack.count() == 1 && slack_pending(&w) == Some(false)).then_some(())
    });
    op.signal("KILL");
    op.wait_exit(Duration::from_secs(10));
    let mut op = w.operator("al-kill-2");
    let msgs = after(Duration::from_secs(10), || texts(&slack));
    assert_eq!(msgs.len(), 1, "the new process repeated it: {msgs:?}");

    // Killed while the channel holds the resolve unanswered: the next process sends it
    // again, as it was.
    slack.delay(Duration::from_secs(30));
    w.sim.recover(0);
    eventually(T, "the resolve on its way", || {
        (slack.count() == 2 && slack_pending(&w) == Some(true)).then_some(())
    });
    op.signal("KILL");
    op.wait_exit(Duration::from_secs(10));
    slack.delay(Duration::ZERO);
    let _op = w.operator("al-kill-3");
    eventually(T, "the resolve sent again", || {
        (slack.count() == 3 && slack_pending(&w) == Some(false)).then_some(())
    });
    let msgs = after(Duration::from_secs(5), || texts(&slack));
    assert_eq!(msgs.len(), 3, "{msgs:?}");
    assert!(msgs[1].starts_with("[RESOLVED]"), "{msgs:?}");
    assert_eq!(msgs[1], msgs[2], "the same notification again");
}

/// An action's outcome is read from the validator's status, not only from the moment it
/// happened: one recorded by a process that died before telling it (simulated by writing
/// the history entry as that process would have) is told by the next process, once, and
/// not again by the one after it.
#[test]
fn a_remediation_outcome_recorded_before_a_crash_is_told_once_after_it() {
    let w = world("al-outcome", 1);
    let slack = Receiver::start();
    w.slack_policy(
        &slack,
        "groupWait: 1s",
        "    rules: [{channels: [slack], repeatInterval: 1h}]\n",
    );
    w.validators();
    let name = w.sim.nodes[0].name.clone();
    let token = "tok-before-crash";
    let entry = serde_json::json!({"status": {"remediation": {"history": [{
        "token": token,
        "action": "evictPod",
        "time": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "result": "Failed",
        "message": "the eviction was refused",
        "trigger": "policy",
        "recovered": false,
    }]}}});
    w.c.kubectl_ok(&[
        "patch",
        "-n",
        &w.ns,
        "mv",
        &name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &entry.to_string(),
    ]);
    let mut op = w.operator("al-outcome-1");
    let msgs = eventually(T, "the outcome told", || {
        let m = texts(&slack);
        (!m.is_empty()).then_some(m)
    });
    assert!(msgs[0].contains("RemediationFailed"), "{msgs:?}");
    let body = String::from_utf8_lossy(&slack.requests()[0].body).to_string();
    assert!(
        body.contains(&format!("token {token}): the eviction was refused")),
        "{body}"
    );
    eventually(T, "its record, resolved and confirmed", || {
        let mv = get_json(w.c, &w.ns, "mv", &name)?;
        let rec = mv["status"]["alerts"]
            .as_array()?
            .iter()
            .find(|r| r["name"] == "RemediationFailed")?
            .clone();
        let confirmed = rec["sent"].as_array()?.iter().all(|s| s["pending"] != true);
        (rec["resolvedAt"].is_string() && confirmed).then_some(())
    });
    op.signal("KILL");
    op.wait_exit(Duration::from_secs(10));
    let _op = w.operator("al-outcome-2");
    w.ready_all("True");
    let msgs = after(Duration::from_secs(8), || texts(&slack));
    assert_eq!(msgs.len(), 1, "told again: {msgs:?}");
}

#[test]
fn a_flapping_node_is_not_a_notification_per_flap() {
    let w = world("al-flap", 1);
    let slack = Receiver::start();
    w.slack_policy(&slack, "groupWait: 1s\n    flapDamping: 20s", "");
    w.validators();
    let _op = w.operator("al-flap");
    w.ready_all("True");

    let mut flips = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        w.sim.fault(0, "die");
        std::thread::sleep(Duration::from_secs(3));
        w.sim.recover(0);
        std::thread::sleep(Duration::from_secs(3));
        flips += 1;
    }
    let mv = get_json(w.c, &w.ns, "mv", &w.sim.nodes[0].name).unwrap();
    let transitions = events_for(w.c, &w.ns, &w.sim.nodes[0].name).len();
    let firing: Vec<String> = texts(&slack)
        .into_iter()
        .filter(|t| t.starts_with("[FIRING]"))
        .collect();
    assert!(
        firing.len() <= 1,
        "{flips} flaps ({transitions} Events) gave {firing:?}"
    );
    assert!(
        !firing.is_empty(),
        "a node flapping for 30 s is news: {}",
        mv["status"]
    );
    assert!(
        texts(&slack).iter().all(|t| !t.starts_with("[RESOLVED]")),
        "resolved inside the damping"
    );
    eventually(T, "one resolve after it stays up", || {
        texts(&slack)
            .iter()
            .any(|t| t.starts_with("[RESOLVED]"))
            .then_some(())
    });
    assert_eq!(texts(&slack).len(), 2, "{:?}", texts(&slack));
}

#[test]
fn the_test_button_reaches_every_channel_once() {
    let w = world("al-test", 1);
    let am = Alertmanager::start("5m");
    let slack = Receiver::start();
    let hook = Receiver::start();
    w.secret("slack", &[("url", &slack.url)]);
    w.policy(&format!(
        "    channels:\n    - {{name: am, alertmanager: {{urls: ['{}']}}}}\n    - {{name: slack, slack: {{webhookUrlSecretRef: {{name: slack, key: url}}}}}}\n    - {{name: hook, webhook: {{url: '{}'}}}}\n",
        am.url, hook.url
    ));
    let op = w.operator("al-test-1");
    let annotate = |v: &str| {
        w.c.kubectl_ok(&[
            "annotate",
            "--overwrite",
            "-n",
            &w.ns,
            "mpol",
            "alerting",
            &format!("vigil.dev/test-alert={v}"),
        ]);
    };
    annotate("t1");
    let test = eventually(T, "test results in status", || {
        let t = w.policy_json()["status"]["alertTest"].clone();
        (t["token"] == "t1" && t["results"].as_array().is_some_and(|r| r.len() == 3)).then_some(t)
    });
    for r in test["results"].as_array().unwrap() {
        assert_eq!(r["delivered"], true, "{r}");
    }
    assert_eq!(slack.count(), 1);
    assert!(
        texts(&slack)[0].starts_with("[TEST]"),
        "{:?}",
        texts(&slack)
    );
    assert_eq!(hook.count(), 1);
    let a = am.named("TestAlert");
    assert_eq!(
        (a.len(), a[0]["labels"]["test"].as_str()),
        (1, Some("true"))
    );
    eventually(T, "an Event per channel", || {
        let n = events_for(w.c, &w.ns, "alerting")
            .iter()
            .filter(|(_, r, m)| {
                r == "TestAlertDelivered" || m.contains("Test notification delivered")
            })
            .count();
        (n >= 1).then_some(())
    });
    // Once per token: not again for the same value, nor after a restart.
    drop(op);
    let _op = w.operator("al-test-2");
    let n = after(Duration::from_secs(6), || (slack.count(), hook.count()));
    assert_eq!(n, (1, 1), "the same token was honoured twice");
    annotate("t2");
    eventually(T, "a new token sends again", || {
        (slack.count() == 2 && hook.count() == 2).then_some(())
    });
}

#[test]
fn slack_refusals_are_final_and_its_rate_limit_is_honoured() {
    let w = world("al-slack", 2);
    let slack = Receiver::start();
    w.slack_policy(&slack, "groupWait: 1s\n    flapDamping: 2s", "");
    w.validators();
    let _op = w.operator("al-slack");
    w.ready_all("True");

    // channel_not_found: refused for good, not retried.
    slack.reply(
        404,
        &fixture("slack_webhook_response_404_channel_not_found.txt"),
        &[],
    );
    w.sim.fault(0, "die");
    let h = eventually(T, "the channel shown refused for good", || {
        let d = w.policy_json()["status"]["alertDelivery"].clone();
        d.as_array()?
            .iter()
            .find(|h| h["permanent"] == true)
            .cloned()
    });
    assert!(
        h["lastError"]
            .as_str()
            .unwrap()
            .contains("channel_not_found"),
        "{h}"
    );
    let n = after(Duration::from_secs(5), || slack.count());
    assert_eq!(n, 1, "a refusal for good was retried");
    let cond = condition(&w.policy_json(), "AlertDeliveryFailing").unwrap();
    assert_eq!(cond["status"], "True", "{cond}");

    // 429 with Retry-After: the retry waits as told, then goes through.
    slack.reply(429, "rate_limited", &["Retry-After: 3"]);
    let before = slack.count();
    w.sim.fault(1, "die");
    eventually(T, "the rate-limited try", || {
        (slack.count() > before).then_some(())
    });
    let first = Instant::now();
    slack.reply(200, &fixture("slack_webhook_response_ok.txt"), &[]);
    eventually(T, "the retry", || {
        (slack.count() > before + 1).then_some(())
    });
    assert!(
        first.elapsed() >= Duration::from_millis(2500),
        "retried after {:?}",
        first.elapsed()
    );
    eventually(T, "the channel delivers again", || {
        let c = condition(&w.policy_json(), "AlertDeliveryFailing")?;
        (c["status"] == "False").then_some(())
    });
}
