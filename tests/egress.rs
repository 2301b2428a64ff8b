//! The one egress path end to end: the operator as a cluster runs it (no `--allow-loopback`)
//! refuses to probe loopback and the cloud metadata address, at connect time, and says why
//! in the condition; a webhook pointed at loopback is refused the same way and receives
//! nothing, and so is an email alert channel whose SMTP server is on loopback (Mailpit). The real control plane, the operator as a subprocess with the chart's RBAC.

mod support;

use std::time::{Duration, Instant};
use support::alerting::Mailpit;
use support::cluster;
use support::operator::Operator;
use support::receiver::Receiver;
use support::simulator::Simulator;
use support::{apply_ok, condition, get_json, install_crds};

const T: Duration = Duration::from_secs(40);

fn wait_reason(c: &cluster::Cluster, ns: &str, name: &str, op: &Operator) -> serde_json::Value {
    let start = Instant::now();
    loop {
        if let Some(mv) = get_json(c, ns, "mv", name)
            && let Some(r) = condition(&mv, "Reachable")
            && r["status"] == "False"
        {
            return r;
        }
        assert!(
            start.elapsed() < T,
            "{name}: Reachable never turned False\n{}",
            op.log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn loopback_and_cloud_metadata_are_refused_at_connect_time() {
    let c = cluster::shared();
    install_crds(c);
    let ns = c.namespace("egress");
    let sim = Simulator::start(&["--nodes", "1", "--block-time", "1s", "--peers", "12"]);
    let hook = Receiver::start();
    let mail = Mailpit::start();
    apply_ok(
        c,
        &ns,
        &format!(
            "apiVersion: vigil.dev/v1alpha1\nkind: MonitorPolicy\nmetadata:\n  name: p\nspec:\n  probe: {{interval: 1s, timeout: 900ms, failureThreshold: 1, successThreshold: 1}}\n  remediation: {{action: webhook, cooldown: 10m, maxUnhealthy: '100%'}}\n  alerts:\n    groupWait: 1s\n    channels:\n    - {{name: mail, email: {{smtpHost: localhost, smtpPort: {}, from: vigil@example.com, to: [ops@example.com], security: none}}}}\n",
            mail.smtp_port
        ),
    );
    let node = &sim.nodes[0];
    apply_ok(
        c,
        &ns,
        &format!(
            "apiVersion: vigil.dev/v1alpha1\nkind: MonitoredValidator\nmetadata:\n  name: local\nspec:\n  chain: substrate\n  endpoints: {{rpc: '{}'}}\n  policyRef: {{name: p}}\n  target: {{webhook: {{url: '{}'}}}}\n",
            node.rpc, hook.url
        ),
    );
    apply_ok(
        c,
        &ns,
        "apiVersion: vigil.dev/v1alpha1\nkind: MonitoredValidator\nmetadata:\n  name: metadata\nspec:\n  chain: http\n  endpoints: {health: 'http://169.254.169.254/latest/meta-data/'}\n  policyRef: {name: p}\n",
    );
    let mut op = Operator::start_without_loopback(c, &ns, "egress", &[]);
    op.wait_ready(T);

    let r = wait_reason(c, &ns, "local", &op);
    let msg = r["message"].as_str().unwrap();
    assert!(
        msg.contains("egress filter denies") && msg.contains("--allow-loopback"),
        "{r}"
    );
    let r = wait_reason(c, &ns, "metadata", &op);
    let msg = r["message"].as_str().unwrap();
    assert!(
        msg.contains("egress filter denies 169.254.169.254") && msg.contains("link-local"),
        "{r}"
    );
    // The loopback node is "down" to this operator, so it acts: the webhook (on loopback)
    // is refused too, and nothing reaches it. The record in status.remediation is read, not
    // the condition: `Remediating=False ActionFailed` turns into `Cooldown` at the next probe.
    let start = Instant::now();
    let rem = loop {
        let mv = get_json(c, &ns, "mv", "local").unwrap();
        let last = &mv["status"]["remediation"]["history"][0];
        if last["result"] == "Failed" {
            break last.clone();
        }
        assert!(start.elapsed() < T, "no failed action\n{}", op.log_text());
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(
        rem["message"]
            .as_str()
            .unwrap()
            .contains("egress filter denies"),
        "{rem}"
    );
    assert_eq!(hook.count(), 0, "the webhook received nothing");

    // The down node fires an alert; its email would go to an SMTP server on loopback (by a
    // name that resolves there): refused before a byte is sent, and shown as such.
    let start = Instant::now();
    let health = loop {
        let p = get_json(c, &ns, "monitorpolicy", "p").unwrap();
        let mail_health = p["status"]["alertDelivery"]
            .as_array()
            .and_then(|a| a.iter().find(|h| h["channel"] == "mail").cloned());
        if let Some(h) = mail_health.filter(|h| h["consecutiveFailures"].as_u64() >= Some(1)) {
            break h;
        }
        assert!(start.elapsed() < T, "no failed email\n{}", op.log_text());
        std::thread::sleep(Duration::from_millis(250));
    };
    let err = health["lastError"].as_str().unwrap();
    assert!(
        err.contains("egress filter denies") && err.contains("loopback"),
        "{health}"
    );
    assert_eq!(health["permanent"], true, "{health}");
    assert!(mail.messages().is_empty(), "Mailpit received nothing");
    assert!(
        !rem.to_string().contains(&hook.url),
        "no URL in the message: {rem}"
    );
}
