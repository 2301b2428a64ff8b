//! Secret-leak scan: known canary values planted in every kind of secret Vigil handles (an
//! LLM API key, an SSH private key, webhook signing keys, a Slack URL, SMTP credentials, S3
//! credentials, tokens in URL queries and user info), then every one of them driven through
//! its failure path with `RUST_LOG=debug`; the operator's log, the Events, the status of
//! every object, the prompts the LLM received, the alert payloads delivered and the archive
//! bundle written must hold none of them.

mod support;

use std::time::Duration;
use support::llm::{Behave, Flavor, LlmServer};
use support::operator::Operator;
use support::receiver::Receiver;
use support::{World, apply_ok, condition, eventually, get_json};

const T: Duration = Duration::from_secs(90);

const LLM_KEY: &str = "sk-ant-CANARY1llmkey7f3a";
const HOOK_SIGNING: &str = "CANARY2hooksign91c2";
const SLACK_TOKEN: &str = "CANARY3slacktoken3d9";
const SMTP_USER: &str = "CANARY4smtpuser";
const SMTP_PASS: &str = "CANARY5smtppass66";
const S3_KEY_ID: &str = "CANARY6AKIAKEYID";
const S3_SECRET: &str = "CANARY7s3secret8e";
const URL_QUERY: &str = "CANARY8querytokena1";
const URL_USERINFO: &str = "CANARY9userinfo55";
const ALERT_QUERY: &str = "CANARY10alerthook2b";
const SSH_KEY_BODY: &str = "CANARY11sshkeyb3BlbnNzaC1rZXktdjEAAAAA";

fn canaries() -> [&'static str; 11] {
    [
        LLM_KEY,
        HOOK_SIGNING,
        SLACK_TOKEN,
        SMTP_USER,
        SMTP_PASS,
        S3_KEY_ID,
        S3_SECRET,
        URL_QUERY,
        URL_USERINFO,
        ALERT_QUERY,
        SSH_KEY_BODY,
    ]
}

/// Panics naming the canary and where it was found.
fn scan(place: &str, text: &str) {
    for c in canaries() {
        if let Some(at) = text.find(c) {
            let from = text[..at]
                .char_indices()
                .rev()
                .nth(120)
                .map_or(0, |(i, _)| i);
            panic!(
                "canary {c} leaked into {place}: …{}…",
                &text[from..(at + c.len()).min(text.len())]
            );
        }
    }
}

/// The `.status` of every object of `kind` in the namespace, as JSON text.
fn statuses(w: &World, kind: &str) -> String {
    let list = w.c.kubectl_json(&["get", kind, "-n", &w.ns, "-o", "json"]);
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["status"].to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn no_secret_reaches_logs_events_status_prompts_payloads_or_archives() {
    let w = World::new("leaks", 2, &[]);
    let llm = LlmServer::start(Flavor::Anthropic);
    // Every answer is a 500: the advisor falls back to the rules and says why.
    llm.set_default(Behave::Error {
        status: 500,
        retry_after: None,
    });
    let alerts = Receiver::start();
    w.secret("llm", &[("key", LLM_KEY)]);
    w.secret("hook", &[("key", HOOK_SIGNING)]);
    w.secret(
        "slack",
        &[(
            "url",
            &format!("http://127.0.0.1:1/services/T0/B0/{SLACK_TOKEN}"),
        )],
    );
    w.secret("smtp", &[("username", SMTP_USER), ("password", SMTP_PASS)]);
    w.secret(
        "s3",
        &[("accessKeyId", S3_KEY_ID), ("secretAccessKey", S3_SECRET)],
    );
    w.secret(
        "ssh-key",
        &[(
            "id",
            &format!(
                "-----BEGIN OPENSSH PRIVATE KEY-----\n{SSH_KEY_BODY}\n-----END OPENSSH PRIVATE KEY-----\n"
            ),
        )],
    );
    let alerting = format!(
        "  alerts:\n    groupWait: 1s\n    flapDamping: 2s\n    channels:\n    - {{name: slack, slack: {{webhookUrlSecretRef: {{name: slack, key: url}}}}}}\n    - {{name: mail, email: {{smtpHost: 127.0.0.1, smtpPort: 1, from: vigil@example.com, to: [ops@example.com], credentialsSecret: smtp, security: none}}}}\n    - {{name: dead, webhook: {{url: 'http://{URL_USERINFO}@127.0.0.1:1/alerts?token={ALERT_QUERY}', signingSecretRef: {{name: hook, key: key}}}}}}\n    - {{name: seen, webhook: {{url: '{}?token={ALERT_QUERY}', signingSecretRef: {{name: hook, key: key}}}}}}\n",
        alerts.url
    );
    let advisor = format!(
        "  advisor: {{provider: anthropic, model: m, baseUrl: '{}', apiKeySecretRef: {{name: llm, key: key}}}}\n",
        llm.base_url
    );
    for (policy, remediation) in [
        ("hooked", "action: webhook, cooldown: 2s"),
        (
            "sshd",
            "action: ssh, cooldown: 2s, sshCommands: {restart: {argv: [systemctl, restart, node], timeout: 5s}}, sshCommand: restart",
        ),
    ] {
        apply_ok(
            w.c,
            &w.ns,
            &format!(
                "apiVersion: vigil.dev/v1alpha1\nkind: MonitorPolicy\nmetadata:\n  name: {policy}\nspec:\n  probe: {{interval: 1s, timeout: 800ms, failureThreshold: 2, successThreshold: 1}}\n  health: {{minPeers: 1}}\n  remediation: {{{remediation}}}\n{alerting}{advisor}"
            ),
        );
    }
    // Endpoints and the webhook target carry tokens in their query and user info.
    let with_tokens = |rpc: &str| {
        rpc.replacen("http://", &format!("http://vigil:{URL_USERINFO}@"), 1)
            + &format!("/?token={URL_QUERY}")
    };
    let n0 = &w.sim.nodes[0];
    let n1 = &w.sim.nodes[1];
    apply_ok(
        w.c,
        &w.ns,
        &format!(
            "apiVersion: vigil.dev/v1alpha1\nkind: MonitoredValidator\nmetadata:\n  name: {}\nspec:\n  chain: {}\n  endpoints: {{rpc: '{}'}}\n  policyRef: {{name: hooked}}\n  target: {{webhook: {{url: 'http://ops:{URL_USERINFO}@127.0.0.1:1/restart?token={URL_QUERY}', signingSecretRef: {{name: hook, key: key}}}}}}\n---\napiVersion: vigil.dev/v1alpha1\nkind: MonitoredValidator\nmetadata:\n  name: {}\nspec:\n  chain: {}\n  endpoints: {{rpc: '{}'}}\n  policyRef: {{name: sshd}}\n  target: {{ssh: {{host: 127.0.0.1, port: 1, user: node, privateKeySecretRef: {{name: ssh-key, key: id}}, hostKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl'}}}}\n",
            n0.name,
            n0.chain,
            with_tokens(&n0.rpc),
            n1.name,
            n1.chain,
            with_tokens(&n1.rpc),
        ),
    );
    // A run archived to an S3 server that is not there, and one archived to a directory.
    let dir = std::env::temp_dir().join(format!("vigil-archive-{}", w.ns));
    let _ = std::fs::remove_dir_all(&dir);
    let step = "  steps:\n  - name: a\n    template:\n      backoffLimit: 0\n      template:\n        metadata:\n          annotations: {vigil-test/exit-code: \"0\", vigil-test/run-seconds: \"1\"}\n        spec:\n          restartPolicy: Never\n          containers: [{name: main, image: busybox}]\n";
    apply_ok(
        w.c,
        &w.ns,
        &format!(
            "apiVersion: vigil.dev/v1alpha1\nkind: PipelineRun\nmetadata:\n  name: to-s3\nspec:\n  archive:\n    s3: {{bucket: runs, endpoint: 'http://127.0.0.1:1', credentialsSecret: s3}}\n{step}---\napiVersion: vigil.dev/v1alpha1\nkind: PipelineRun\nmetadata:\n  name: to-dir\nspec:\n  archive:\n    filesystem: {{path: {}}}\n{step}",
            dir.display()
        ),
    );

    let op = Operator::start_env(w.c, &w.ns, "leaks", &[], &[("RUST_LOG", "debug")]);
    // Both nodes die: probes fail, the webhook and SSH actions fail, alerts go out (and fail
    // on three channels), the advisor's calls fail.
    w.sim.fault(0, "die");
    w.sim.fault(1, "die");
    let failed = |name: &str| {
        let mv = get_json(w.c, &w.ns, "mv", name)?;
        let history = mv["status"]["remediation"]["history"].as_array()?.clone();
        history
            .iter()
            .any(|h| h["result"] == "Failed")
            .then_some(())
    };
    eventually(T, "the webhook action failed", || failed(&n0.name));
    eventually(T, "the SSH action failed", || failed(&n1.name));
    eventually(T, "the advisor was asked and failed", || {
        (llm.count() >= 1).then_some(())
    });
    eventually(T, "an alert delivered on the working channel", || {
        (alerts.count() >= 1).then_some(())
    });
    eventually(T, "the S3 archive failed", || {
        let run = get_json(w.c, &w.ns, "prun", "to-s3")?;
        (condition(&run, "Archived")?["reason"] == "UploadFailed").then_some(())
    });
    eventually(T, "the directory archive verified", || {
        let run = get_json(w.c, &w.ns, "prun", "to-dir")?;
        (condition(&run, "Archived")?["reason"] == "Verified").then_some(())
    });
    // A few more rounds of every failure.
    std::thread::sleep(Duration::from_secs(5));

    scan("the operator's log", &op.log_text());
    let events =
        w.c.kubectl_json(&["get", "events", "-n", &w.ns, "-o", "json"]);
    assert!(
        events["items"].as_array().is_some_and(|e| e.len() > 5),
        "too few Events to mean anything: {events}"
    );
    scan("Events", &events.to_string());
    for kind in ["mv", "mpol", "prun"] {
        scan(&format!("{kind} status"), &statuses(&w, kind));
    }
    for r in llm.requests() {
        scan("a prompt", &r.prompt_text());
    }
    for r in alerts.requests() {
        scan("an alert payload", &String::from_utf8_lossy(&r.body));
    }
    let bundles: Vec<_> = walk(&dir);
    assert_eq!(bundles.len(), 1, "{bundles:?}");
    let bytes = std::fs::read(&bundles[0]).unwrap();
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text).unwrap();
    scan("the archive bundle", &String::from_utf8_lossy(&text));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.to_string_lossy().ends_with(".tar.gz") {
            out.push(p);
        }
    }
    out
}
