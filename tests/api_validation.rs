//! The CRDs against a real API server: they become Established, `kubectl explain` shows the
//! doc comments, every validation rule rejects a bad object with a message a person
//! understands, and `kubectl get vigil` lists all three kinds with their printer columns.

mod support;

use std::time::Duration;
use support::cluster::{self, Cluster};
use support::{apply, apply_ok, install_crds};

fn setup(prefix: &str) -> (&'static Cluster, String) {
    let c = cluster::shared();
    install_crds(c);
    let ns = c.namespace(prefix);
    (c, ns)
}

/// Applies `yaml` and asserts it is refused with a message containing `needle`.
fn rejected(c: &Cluster, ns: &str, yaml: &str, needle: &str) {
    let out = apply(c, ns, yaml);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected rejection ({needle}) but it was accepted:\n{yaml}"
    );
    assert!(
        err.contains(needle),
        "rejection does not say {needle:?}:\n{err}"
    );
}

fn validator(spec: &str) -> String {
    format!(
        "apiVersion: vigil.dev/v1alpha1\nkind: MonitoredValidator\nmetadata:\n  name: v\nspec:\n{spec}"
    )
}

fn policy(spec: &str) -> String {
    format!(
        "apiVersion: vigil.dev/v1alpha1\nkind: MonitorPolicy\nmetadata:\n  name: p\nspec:\n{spec}"
    )
}

fn run(spec: &str) -> String {
    format!(
        "apiVersion: vigil.dev/v1alpha1\nkind: PipelineRun\nmetadata:\n  name: r\nspec:\n{spec}"
    )
}

const JOB: &str =
    "{template: {spec: {restartPolicy: Never, containers: [{name: m, image: busybox}]}}}";

#[test]
fn crds_are_established_and_explained() {
    let (c, _) = setup("explain");
    for crd in [
        "monitoredvalidators.vigil.dev",
        "monitorpolicies.vigil.dev",
        "pipelineruns.vigil.dev",
    ] {
        let out = c.kubectl_ok(&[
            "get",
            "crd",
            crd,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
        ]);
        assert_eq!(out.trim(), "True", "{crd}");
    }
    // The API server publishes a new or changed CRD's schema to discovery and OpenAPI a
    // moment after it is Established: ask until it is there.
    let explain = |path: &str| {
        support::eventually(
            Duration::from_secs(30),
            &format!("kubectl explain {path}"),
            || {
                let out = c.kubectl(&["explain", path]);
                out.status
                    .success()
                    .then(|| String::from_utf8_lossy(&out.stdout).to_string())
            },
        )
    };
    let text = explain("monitoredvalidator.spec.endpoints");
    assert!(text.contains("Where the node answers."), "{text}");
    assert!(text.contains("JSON-RPC URL"), "{text}");
    let text = explain("monitorpolicy.spec.probe.interval");
    assert!(text.contains("Time between two probes"), "{text}");
}

#[test]
fn examples_are_accepted_with_defaults() {
    let (c, ns) = setup("examples");
    for f in ["policy.yaml", "validator.yaml", "pipelinerun.yaml"] {
        let path = format!("{}/examples/{f}", env!("CARGO_MANIFEST_DIR"));
        c.kubectl_ok(&["apply", "-n", &ns, "-f", &path]);
    }
    let p = support::get_json(c, &ns, "monitorpolicy", "substrate-main").unwrap();
    // Defaults filled in by the API server from the schema.
    assert_eq!(p["spec"]["probe"]["successThreshold"], 1);
    assert_eq!(p["spec"]["remediation"]["escalateAfter"], 5);
    assert_eq!(p["spec"]["advisor"]["mode"], "onIssue");
    assert_eq!(p["spec"]["remediation"]["window"], "1h");
    apply_ok(c, &ns, &policy("  {}\n"));
    let p = support::get_json(c, &ns, "monitorpolicy", "p").unwrap();
    assert_eq!(p["spec"]["probe"]["interval"], "30s");
    assert_eq!(p["spec"]["probe"]["timeout"], "5s");
    assert_eq!(p["spec"]["probe"]["failureThreshold"], 3);
    assert_eq!(p["spec"]["remediation"]["maxAttempts"], 3);
    assert_eq!(p["spec"]["remediation"]["cooldown"], "60s");
    assert_eq!(p["spec"]["advisor"]["provider"], "rules");
    let r = support::get_json(c, &ns, "pipelinerun", "nightly-snapshot").unwrap();
    assert_eq!(r["spec"]["stallTimeout"], "30m");
}

#[test]
fn target_needs_exactly_one_kind() {
    let (c, ns) = setup("target");
    let base =
        "  chain: substrate\n  endpoints: {rpc: 'http://127.0.0.1:9944'}\n  policyRef: {name: p}\n";
    rejected(
        c,
        &ns,
        &validator(&format!(
            "{base}  target:\n    workload: {{kind: Pod, name: a}}\n    webhook: {{url: 'http://127.0.0.1:1/r'}}\n"
        )),
        "target must set exactly one of workload, ssh or webhook",
    );
    rejected(
        c,
        &ns,
        &validator(&format!("{base}  target: {{}}\n")),
        "target must set exactly one of workload, ssh or webhook",
    );
    rejected(
        c,
        &ns,
        &validator(&format!("{base}  target:\n    workload: {{kind: Pod}}\n")),
        "workload target needs exactly one of name or selector",
    );
    apply_ok(
        c,
        &ns,
        &validator(&format!(
            "{base}  target:\n    workload: {{kind: StatefulSet, name: alice}}\n"
        )),
    );
}

#[test]
fn ssh_target_needs_a_pinned_host_key() {
    let (c, ns) = setup("hostkey");
    let base =
        "  chain: substrate\n  endpoints: {rpc: 'http://127.0.0.1:9944'}\n  policyRef: {name: p}\n";
    let ssh = "    ssh: {host: 10.1.2.3, user: ops, privateKeySecretRef: {name: k, key: id}";
    rejected(
        c,
        &ns,
        &validator(&format!("{base}  target:\n{ssh}}}\n")),
        "ssh target needs hostKey",
    );
    rejected(
        c,
        &ns,
        &validator(&format!(
            "{base}  target:\n{ssh}, hostKey: 'yes please'}}\n"
        )),
        "ssh target needs hostKey",
    );
    apply_ok(
        c,
        &ns,
        &validator(&format!(
            "{base}  target:\n{ssh}, hostKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl'}}\n"
        )),
    );
}

#[test]
fn urls_must_be_http_or_https() {
    let (c, ns) = setup("urls");
    let msg = "must be an absolute http:// or https:// URL";
    rejected(
        c,
        &ns,
        &validator(
            "  chain: substrate\n  endpoints: {rpc: 'ftp://node:21'}\n  policyRef: {name: p}\n",
        ),
        msg,
    );
    rejected(
        c,
        &ns,
        &validator("  chain: substrate\n  endpoints: {rpc: 'node:9944'}\n  policyRef: {name: p}\n"),
        msg,
    );
    rejected(
        c,
        &ns,
        &validator(
            "  chain: cosmos\n  endpoints: {rpc: 'http://n:26657', metrics: 'file:///etc/passwd'}\n  policyRef: {name: p}\n",
        ),
        msg,
    );
    rejected(
        c,
        &ns,
        &policy("  alerts:\n    channels: [{name: am, alertmanager: {urls: ['am:9093']}}]\n"),
        msg,
    );
}

#[test]
fn chains_need_their_endpoints() {
    let (c, ns) = setup("chains");
    rejected(
        c,
        &ns,
        &validator("  chain: ethereum\n  endpoints: {}\n  policyRef: {name: p}\n"),
        "need spec.endpoints.rpc",
    );
    rejected(
        c,
        &ns,
        &validator("  chain: tcp\n  endpoints: {}\n  policyRef: {name: p}\n"),
        "needs spec.endpoints.tcp",
    );
    rejected(
        c,
        &ns,
        &validator("  chain: solana\n  endpoints: {}\n  policyRef: {name: p}\n"),
        "Unsupported value: \"solana\"",
    );
    apply_ok(
        c,
        &ns,
        &validator("  chain: tcp\n  endpoints: {tcp: '127.0.0.1:30333'}\n  policyRef: {name: p}\n"),
    );
}

#[test]
fn durations_must_parse_and_interval_is_at_least_a_second() {
    let (c, ns) = setup("durations");
    let msg = "must be a duration such as 500ms, 30s, 5m or 1h30m";
    rejected(c, &ns, &policy("  probe: {interval: 'ten seconds'}\n"), msg);
    rejected(c, &ns, &policy("  remediation: {cooldown: '3d'}\n"), msg);
    rejected(
        c,
        &ns,
        &policy("  probe: {interval: 500ms, timeout: 100ms}\n"),
        "probe.interval must be at least 1s",
    );
    apply_ok(c, &ns, &policy("  probe: {interval: 1s, timeout: 500ms}\n"));
}

#[test]
fn probe_timeout_is_shorter_than_interval() {
    let (c, ns) = setup("timeout");
    rejected(
        c,
        &ns,
        &policy("  probe: {interval: 10s, timeout: 10s}\n"),
        "probe.timeout must be shorter than probe.interval",
    );
    rejected(
        c,
        &ns,
        &policy("  probe: {interval: 10s, timeout: 1m}\n"),
        "probe.timeout must be shorter than probe.interval",
    );
}

#[test]
fn zero_timeouts_are_refused() {
    let (c, ns) = setup("zero");
    let msg = "must be longer than 0s (a zero timeout fails every attempt)";
    // `0` alone is Go's spelling of zero; every unit of zero means the same.
    for zero in ["'0'", "0s", "0ms", "0.0h", "0h0m0s"] {
        rejected(
            c,
            &ns,
            &policy(&format!("  probe: {{timeout: {zero}}}\n")),
            "spec.probe.timeout",
        );
        rejected(
            c,
            &ns,
            &policy(&format!("  probe: {{timeout: {zero}}}\n")),
            msg,
        );
    }
    rejected(
        c,
        &ns,
        &policy("  health: {maxProbeLatency: 0s}\n"),
        "health.maxProbeLatency must be longer than 0s; leave it unset to judge probes by probe.timeout alone",
    );
    rejected(
        c,
        &ns,
        &policy("  health: {maxProbeLatency: '0'}\n"),
        "health.maxProbeLatency must be longer than 0s",
    );
    rejected(
        c,
        &ns,
        &policy("  remediation: {sshCommands: {restart: {argv: [reboot], timeout: 0s}}}\n"),
        msg,
    );
    let base =
        "  chain: substrate\n  endpoints: {rpc: 'http://127.0.0.1:9944'}\n  policyRef: {name: p}\n";
    rejected(
        c,
        &ns,
        &validator(&format!(
            "{base}  target:\n    webhook: {{url: 'http://127.0.0.1:1/r', timeout: 0ms}}\n"
        )),
        msg,
    );
    rejected(
        c,
        &ns,
        &validator(&format!(
            "{base}  target:\n    ssh: {{host: h, user: u, privateKeySecretRef: {{name: k, key: id}}, hostKey: 'ssh-ed25519 AAAA', connectTimeout: 0s}}\n"
        )),
        msg,
    );
    rejected(
        c,
        &ns,
        &run(&format!(
            "  timeout: 0s\n  steps:\n  - {{name: a, template: {JOB}}}\n"
        )),
        "spec.timeout must be longer than 0s; leave it unset for no limit",
    );
    rejected(
        c,
        &ns,
        &run(&format!(
            "  stallTimeout: '0'\n  steps:\n  - {{name: a, template: {JOB}}}\n"
        )),
        "spec.stallTimeout must be longer than 0s",
    );
    rejected(
        c,
        &ns,
        &run(&format!(
            "  steps:\n  - {{name: a, timeout: 0m, template: {JOB}}}\n"
        )),
        "a step timeout must be longer than 0s",
    );
    // The smallest positive values, and a zero where it means "at once".
    apply_ok(
        c,
        &ns,
        &policy("  probe: {timeout: 1ns}\n  health: {maxProbeLatency: 1ms}\n"),
    );
    apply_ok(
        c,
        &ns,
        &run(&format!(
            "  timeout: 1s\n  stallTimeout: 1s\n  archive: {{filesystem: {{path: /a}}, ttlAfterArchive: 0s}}\n  steps:\n  - {{name: a, timeout: 1s, template: {JOB}}}\n"
        )),
    );
}

#[test]
fn remediation_needs_a_limit_and_counts_of_at_least_one() {
    let (c, ns) = setup("remlimits");
    let msg = "remediation.cooldown and remediation.window cannot both be 0: nothing would limit how often a node is restarted";
    rejected(
        c,
        &ns,
        &policy("  remediation: {cooldown: 0s, window: '0'}\n"),
        msg,
    );
    rejected(
        c,
        &ns,
        &policy("  remediation: {cooldown: 0ms, window: 0h, maxCooldown: 0s}\n"),
        msg,
    );
    for field in ["maxAttempts", "maxConcurrent", "escalateAfter"] {
        rejected(
            c,
            &ns,
            &policy(&format!("  remediation: {{{field}: 0}}\n")),
            &format!(
                "remediation.{field} must be at least 1; to stop remediation use action: none or suspend: true"
            ),
        );
    }
    // Either limit alone is enough.
    apply_ok(
        c,
        &ns,
        &policy(
            "  remediation: {cooldown: 0s, window: 1h, maxAttempts: 1, maxConcurrent: 1, escalateAfter: 1}\n",
        ),
    );
    apply_ok(
        c,
        &ns,
        &policy("  remediation: {cooldown: 1s, window: 0s}\n"),
    );
}

#[test]
fn durations_are_bounded() {
    let (c, ns) = setup("bounds");
    let month = "must be at most 720h (30 days)";
    let hour = "must be at most 1h";
    let year = "must be at most 8760h (365 days)";
    rejected(c, &ns, &policy("  health: {maxBlockStall: 721h}\n"), month);
    rejected(
        c,
        &ns,
        &policy("  remediation: {cooldown: 2592001s}\n"),
        month,
    );
    rejected(
        c,
        &ns,
        &policy("  alerts: {rules: [{channels: [x], repeatInterval: 720h1ns}]}\n"),
        month,
    );
    rejected(
        c,
        &ns,
        &policy("  probe: {interval: 2h, timeout: 1h1s}\n"),
        hour,
    );
    rejected(
        c,
        &ns,
        &policy("  remediation: {sshCommands: {restart: {argv: [reboot], timeout: 61m}}}\n"),
        hour,
    );
    let base =
        "  chain: substrate\n  endpoints: {rpc: 'http://127.0.0.1:9944'}\n  policyRef: {name: p}\n";
    rejected(
        c,
        &ns,
        &validator(&format!(
            "{base}  target:\n    webhook: {{url: 'http://127.0.0.1:1/r', timeout: 3601s}}\n"
        )),
        hour,
    );
    rejected(
        c,
        &ns,
        &validator(&format!(
            "{base}  target:\n    ssh: {{host: h, user: u, privateKeySecretRef: {{name: k, key: id}}, hostKey: 'ssh-ed25519 AAAA', connectTimeout: 2h}}\n"
        )),
        hour,
    );
    rejected(
        c,
        &ns,
        &run(&format!(
            "  stallTimeout: 8761h\n  steps:\n  - {{name: a, template: {JOB}}}\n"
        )),
        year,
    );
    rejected(
        c,
        &ns,
        &run(&format!(
            "  steps:\n  - {{name: a, timeout: 366h8400h, template: {JOB}}}\n"
        )),
        year,
    );
    // The boundaries themselves are accepted, in any unit.
    apply_ok(
        c,
        &ns,
        &policy(
            "  probe: {interval: 720h, timeout: 1h}\n  health: {maxBlockStall: 43200m, maxProbeLatency: 3600s}\n  remediation:\n    window: 2592000s\n    cooldown: 720h\n    maxCooldown: 720h\n    healthyResetAfter: 2592000000ms\n    sshCommands: {restart: {argv: [reboot], timeout: 60m}}\n  alerts: {channels: [{name: x, webhook: {url: 'http://127.0.0.1:1/n'}}], rules: [{channels: [x], repeatInterval: 2592000000000000ns}]}\n",
        ),
    );
    apply_ok(
        c,
        &ns,
        &validator(&format!(
            "{base}  target:\n    webhook: {{url: 'http://127.0.0.1:1/r', timeout: 1h}}\n"
        )),
    );
    apply_ok(
        c,
        &ns,
        &run(&format!(
            "  timeout: 8760h\n  stallTimeout: 31536000s\n  archive: {{filesystem: {{path: /a}}, ttlAfterArchive: 525600m}}\n  steps:\n  - {{name: a, timeout: 31536000000ms, template: {JOB}}}\n"
        )),
    );
}

#[test]
fn huge_durations_are_refused_without_overflow() {
    let (c, ns) = setup("huge");
    // Past Go's 2^63 nanoseconds CEL's duration() cannot read a value: a rule calling it says
    // "type conversion error from 'string' to 'google.protobuf.Duration' evaluating rule".
    // The schema must instead say, for people, what is wrong.
    let huge = "99999999999999999999h";
    let cases = [
        (
            policy(&format!("  probe: {{interval: {huge}}}\n")),
            "spec.probe.interval",
            "must be at most 720h (30 days)",
        ),
        (
            policy(&format!("  probe: {{timeout: {huge}}}\n")),
            "spec.probe.timeout",
            "must be at most 1h",
        ),
        (
            policy("  remediation: {cooldown: 2562048h, window: 1000000h1000000h1000000h}\n"),
            "spec.remediation.cooldown",
            "must be at most 720h (30 days)",
        ),
        (
            policy(&format!("  health: {{maxProbeLatency: {huge}}}\n")),
            "spec.health.maxProbeLatency",
            "must be at most 720h (30 days)",
        ),
        (
            run(&format!(
                "  timeout: {huge}\n  steps:\n  - {{name: a, timeout: 9223372036854775808ns, template: {JOB}}}\n"
            )),
            "spec.timeout",
            "must be at most 8760h (365 days)",
        ),
    ];
    for (yaml, field, msg) in cases {
        let out = apply(c, &ns, &yaml);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "accepted:\n{yaml}");
        assert!(err.contains(&format!("{field}: Invalid value")), "{err}");
        assert!(err.contains(msg), "{err}");
        assert!(
            !err.contains("evaluating rule") && !err.contains("type conversion error"),
            "an evaluation error leaked:\n{err}"
        );
    }
    // Longer than any sane duration: refused by its length, before any rule reads it.
    rejected(
        c,
        &ns,
        &policy(&format!(
            "  remediation: {{window: '{}s'}}\n",
            "9".repeat(80)
        )),
        "spec.remediation.window",
    );
}

#[test]
fn response_bodies_are_capped_at_4_mib() {
    let (c, ns) = setup("bodies");
    for over in ["4194305", "8388608", "67108864"] {
        rejected(
            c,
            &ns,
            &policy(&format!("  probe: {{maxResponseBytes: {over}}}\n")),
            "should be less than or equal to 4194304",
        );
    }
    apply_ok(c, &ns, &policy("  probe: {maxResponseBytes: 4194304}\n"));
}

#[test]
fn budgets_and_thresholds_are_not_negative() {
    let (c, ns) = setup("budgets");
    rejected(
        c,
        &ns,
        &policy("  probe: {failureThreshold: 0}\n"),
        "should be greater than or equal to 1",
    );
    rejected(
        c,
        &ns,
        &policy("  remediation: {maxAttempts: -1}\n"),
        "should be greater than or equal to 0",
    );
    rejected(
        c,
        &ns,
        &policy("  advisor: {budget: {callsPerHour: -5}}\n"),
        "should be greater than or equal to 0",
    );
    rejected(
        c,
        &ns,
        &policy("  advisor: {budget: {tokensPerDay: -1}}\n"),
        "should be greater than or equal to 0",
    );
    rejected(
        c,
        &ns,
        &policy("  advisor: {budget: {costPerDay: '-2'}}\n"),
        "spec.advisor.budget.costPerDay",
    );
    rejected(
        c,
        &ns,
        &policy("  advisor: {minConfidence: 1.5}\n"),
        "should be less than or equal to 1",
    );
    rejected(
        c,
        &ns,
        &policy("  remediation: {maxUnhealthy: '150%'}\n"),
        "spec.remediation.maxUnhealthy",
    );
    rejected(
        c,
        &ns,
        &policy("  advisor: {provider: anthropic, model: claude-sonnet-4-5}\n"),
        "advisor providers anthropic and openai need apiKeySecretRef",
    );
    rejected(
        c,
        &ns,
        &policy(
            "  remediation: {action: ssh, sshCommands: {restart: {argv: [systemctl, restart, polkadot]}}}\n",
        ),
        "remediation.action 'ssh' needs sshCommand naming an entry of sshCommands",
    );
}

#[test]
fn steps_are_unique_and_run_after_existing_steps() {
    let (c, ns) = setup("steps");
    rejected(
        c,
        &ns,
        &run(&format!(
            "  steps:\n  - {{name: a, template: {JOB}}}\n  - {{name: a, template: {JOB}}}\n"
        )),
        "step names must be unique within a run",
    );
    rejected(
        c,
        &ns,
        &run(&format!(
            "  steps:\n  - {{name: a, template: {JOB}}}\n  - {{name: b, runAfter: [c], template: {JOB}}}\n"
        )),
        "every runAfter entry must name a step of this run",
    );
    rejected(
        c,
        &ns,
        &run(&format!(
            "  steps:\n  - {{name: a, runAfter: [a], template: {JOB}}}\n"
        )),
        "a step cannot run after itself",
    );
    rejected(c, &ns, &run("  steps: []\n"), "spec.steps");
    rejected(
        c,
        &ns,
        &run("  steps:\n  - {name: a, template: {backoffLimit: 1}}\n"),
        "needs template (the pod template)",
    );
    rejected(
        c,
        &ns,
        &run(&format!(
            "  archive: {{include: {{logs: true}}}}\n  steps:\n  - {{name: a, template: {JOB}}}\n"
        )),
        "archive needs exactly one store: s3 or filesystem",
    );
    apply_ok(
        c,
        &ns,
        &run(&format!(
            "  steps:\n  - {{name: a, template: {JOB}}}\n  - {{name: b, runAfter: [a], template: {JOB}}}\n"
        )),
    );
    // A run's steps are fixed once it exists (its Jobs are made from them).
    rejected(
        c,
        &ns,
        &run(&format!(
            "  steps:\n  - {{name: a, template: {JOB}}}\n  - {{name: b, template: {JOB}}}\n"
        )),
        "steps cannot change after the run is created",
    );
}

#[test]
fn kubectl_get_vigil_lists_every_kind_with_columns() {
    let (c, ns) = setup("getvigil");
    for f in ["policy.yaml", "validator.yaml", "pipelinerun.yaml"] {
        let path = format!("{}/examples/{f}", env!("CARGO_MANIFEST_DIR"));
        c.kubectl_ok(&["apply", "-n", &ns, "-f", &path]);
    }
    let out = c.kubectl_ok(&["get", "vigil", "-n", &ns]);
    assert!(out.contains("monitoredvalidator.vigil.dev/alice"), "{out}");
    assert!(
        out.contains("monitorpolicy.vigil.dev/substrate-main"),
        "{out}"
    );
    assert!(
        out.contains("pipelinerun.vigil.dev/nightly-snapshot"),
        "{out}"
    );
    for header in [
        "CHAIN",
        "READY",
        "BEST",
        "PEERS",
        "RESTARTS",
        "VALIDATORS",
        "HEALTHY",
        "SUSPENDED",
        "SUCCEEDED",
        "REASON",
        "STEPS",
        "ARCHIVED",
        "AGE",
    ] {
        assert!(out.contains(header), "missing column {header}:\n{out}");
    }
    let short = c.kubectl_ok(&["get", "mv,mpol,prun", "-n", &ns, "-o", "name"]);
    assert_eq!(short.lines().count(), 3, "{short}");
}
