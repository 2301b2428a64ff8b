//! Validator duty end to end: a real CometBFT network of 4 validators on loopback (built
//! once from the Go module proxy, see scripts/cometbft-bins.sh), the operator as a
//! subprocess with exactly the chart's RBAC, and the real control plane. Duty is read
//! through another node's RPC: a dead validator cannot report its own missed blocks.

mod support;

use serde_json::Value;
use std::time::{Duration, Instant};
use support::cluster::{self, Cluster};
use support::cometbft::Testnet;
use support::operator::Operator;
use support::receiver::Receiver;
use support::{apply_ok, condition, eventually, get_json, install_crds};

const T: Duration = Duration::from_secs(90);

struct World {
    c: &'static Cluster,
    ns: String,
    op: Operator,
}

impl World {
    fn mv(&self, name: &str) -> Value {
        get_json(self.c, &self.ns, "mv", name).expect("validator exists")
    }

    fn wait(&self, name: &str, type_: &str, status: &str, reason: &str) -> Value {
        let start = Instant::now();
        let mut last = Value::Null;
        while start.elapsed() < T {
            if let Some(c) = condition(&self.mv(name), type_) {
                if c["status"] == status && c["reason"] == reason {
                    return c;
                }
                last = c;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let log = self.op.log_text();
        let lines: Vec<&str> = log.lines().collect();
        panic!(
            "{name}: {type_} never became {status}/{reason}; last {last}\n{}\noperator log:\n{}",
            serde_json::to_string_pretty(&self.mv(name)["status"]).unwrap_or_default(),
            lines[lines.len().saturating_sub(30)..].join("\n")
        )
    }
}

#[test]
fn a_stopped_validator_misses_blocks_and_a_healthy_node_with_the_wrong_key_is_not_restarted() {
    let c = cluster::shared();
    install_crds(c);
    let ns = c.namespace("duty-cometbft");
    let mut net = Testnet::start();
    let hook = Receiver::start();
    // Tiers 3 and 1000 in a row; a restart would call the webhook.
    apply_ok(
        c,
        &ns,
        "apiVersion: vigil.dev/v1alpha1\nkind: MonitorPolicy\nmetadata:\n  name: duty\nspec:\n  probe: {interval: 1s, timeout: 900ms, failureThreshold: 2, successThreshold: 1}\n  health: {minPeers: 1, maxBlockStall: 20s, maxBlocksBehind: 50}\n  remediation: {action: webhook, cooldown: 5s, maxAttempts: 10}\n  duty: {missedInARow: [3, 1000], window: 50}\n",
    );
    for i in [0usize, 3] {
        apply_ok(
            c,
            &ns,
            &format!(
                "apiVersion: vigil.dev/v1alpha1\nkind: MonitoredValidator\nmetadata:\n  name: val-{i}\nspec:\n  chain: cosmos\n  endpoints: {{rpc: '{rpc}'}}\n  duty: {{consensusAddress: '{addr}', rpc: '{duty}'}}\n  target: {{webhook: {{url: '{hook}'}}}}\n  policyRef: {{name: duty}}\n",
                rpc = net.rpc(i),
                addr = net.address(i),
                duty = net.rpc(0),
                hook = hook.url,
            ),
        );
    }
    let mut op = Operator::start(c, &ns, "duty", &[]);
    op.wait_ready(T);
    let w = World { c, ns, op };
    for i in [0, 3] {
        w.wait(&format!("val-{i}"), "Ready", "True", "Healthy");
        w.wait(&format!("val-{i}"), "Signing", "True", "Signing");
    }

    // Node 3 stops: the chain goes on with 3 of 4, and node 0's RPC shows 3's misses.
    net.stop(3);
    let cond = w.wait("val-3", "Signing", "False", "MissedBlocks");
    assert!(
        cond["message"].as_str().unwrap().contains("in a row"),
        "{cond}"
    );
    let duty = &w.mv("val-3")["status"]["duty"];
    assert!(duty["missedInARow"].as_u64().unwrap() >= 3, "{duty}");
    assert_eq!(duty["active"], true, "still in the set");
    assert!(duty["lastSignedHeight"].as_u64().is_some(), "{duty}");
    assert!(
        duty["soloMissedInWindow"].as_u64().unwrap() >= 3,
        "the other three signed: {duty}"
    );
    w.wait("val-0", "Signing", "True", "Signing");

    // The same from the command line, pointed at a real node.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["probe", "--chain", "cosmos", "--rpc", &net.rpc(0)])
        .args(["--validator", &net.address(3), "--output", "json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(
        report["duty"]["missedInARow"].as_u64().unwrap() >= 3,
        "{report}"
    );
    let signing = report["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Signing")
        .cloned()
        .unwrap();
    assert_eq!(signing["status"], "False", "{signing}");

    // Node 3 comes back with another key: a healthy full node, while the validator still
    // misses every block. Ready (node health) and Signing (duty) say so apart, and nothing
    // restarts the healthy node.
    net.restart_with_new_key(3);
    w.wait("val-3", "Ready", "True", "Healthy");
    let calls_before = hook.requests().len();
    let until = Instant::now() + Duration::from_secs(12);
    while Instant::now() < until {
        let mv = w.mv("val-3");
        let s = condition(&mv, "Signing").unwrap();
        assert_eq!(s["status"], "False", "the old key still signs nothing: {s}");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        hook.requests().len(),
        calls_before,
        "a healthy node that does not sign is not restarted"
    );
    let mv = w.mv("val-3");
    assert_eq!(condition(&mv, "Ready").unwrap()["status"], "True");
    assert!(mv["status"]["duty"]["missedInARow"].as_u64().unwrap() > 3);
}

#[test]
fn duty_alerts_and_opt_in_folding_are_per_policy() {
    // Pure parts are covered by the unit tests (duty::judge, alert::catalog); this checks
    // that the CRD takes the duty settings and refuses nonsense.
    let c = cluster::shared();
    install_crds(c);
    let ns = c.namespace("duty-api");
    let bad = |spec: &str, needle: &str| {
        let out = support::apply(
            c,
            &ns,
            &format!(
                "apiVersion: vigil.dev/v1alpha1\nkind: MonitorPolicy\nmetadata:\n  name: p\nspec:\n{spec}"
            ),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(needle),
            "{spec}: {err}"
        );
    };
    bad(
        "  duty: {missedInARow: [0, 5]}\n",
        "tiers must be above 0 and distinct",
    );
    bad(
        "  duty: {missedInARow: [5, 5]}\n",
        "tiers must be above 0 and distinct",
    );
    bad("  duty: {maxMissedPercent: 101}\n", "at most 100");
    apply_ok(
        c,
        &ns,
        "apiVersion: vigil.dev/v1alpha1\nkind: MonitorPolicy\nmetadata:\n  name: p\nspec:\n  duty: {missedInARow: [5, 25, 100], affectsReady: true}\n",
    );
    let v = |duty: &str| {
        format!(
            "apiVersion: vigil.dev/v1alpha1\nkind: MonitoredValidator\nmetadata:\n  name: v\nspec:\n  chain: cosmos\n  endpoints: {{rpc: 'http://127.0.0.1:26657'}}\n  policyRef: {{name: p}}\n  duty: {duty}\n"
        )
    };
    let out = support::apply(c, &ns, &v("{rpc: 'http://127.0.0.1:26657'}"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("duty needs the validator's identity"),
        "{out:?}"
    );
    apply_ok(
        c,
        &ns,
        &v("{consensusAddress: 'A1B2C3D4E5F60718293A4B5C6D7E8F9012345678'}"),
    );
    let _ = eventually(Duration::from_secs(5), "stored", || {
        get_json(c, &ns, "mv", "v")
    });
}

/// The simulator's description of its nodes (duty fields included).
fn sim_nodes(sim: &support::simulator::Simulator) -> Vec<Value> {
    sim.list()["nodes"]
        .as_array()
        .cloned()
        .or_else(|| sim.list().as_array().cloned())
        .expect("the simulator lists its nodes")
}

#[test]
fn simulated_authorship_stops_and_a_jailed_validator_is_never_restarted() {
    let c = cluster::shared();
    install_crds(c);
    let ns = c.namespace("duty-sim");
    let sim = support::simulator::Simulator::start(&[
        "--nodes",
        "4",
        "--mix",
        "substrate=2,cosmos=2",
        "--block-time",
        "1s",
        "--peers",
        "12",
    ]);
    let hook = Receiver::start();
    apply_ok(
        c,
        &ns,
        "apiVersion: vigil.dev/v1alpha1\nkind: MonitorPolicy\nmetadata:\n  name: duty\nspec:\n  probe: {interval: 1s, timeout: 900ms, failureThreshold: 2, successThreshold: 1}\n  health: {minPeers: 3}\n  remediation: {action: webhook, cooldown: 5s}\n  duty: {missedInARow: [3, 1000], authoredWithinIntervals: 3, affectsReady: true}\n",
    );
    let nodes = sim_nodes(&sim);
    for n in &nodes {
        let (name, chain, rpc) = (
            n["name"].as_str().unwrap(),
            n["chain"].as_str().unwrap(),
            n["rpc"].as_str().unwrap(),
        );
        let (endpoints, duty) = if chain == "cosmos" {
            (
                format!("{{rpc: '{rpc}', api: '{}'}}", n["api"].as_str().unwrap()),
                format!(
                    "{{consensusAddress: '{}', operatorAddress: '{}'}}",
                    n["validatorAddress"].as_str().unwrap(),
                    n["valoper"].as_str().unwrap()
                ),
            )
        } else {
            (
                format!(
                    "{{rpc: '{rpc}', metrics: '{}'}}",
                    n["metrics"].as_str().unwrap()
                ),
                "{account: '5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY'}".to_string(),
            )
        };
        apply_ok(
            c,
            &ns,
            &format!(
                "apiVersion: vigil.dev/v1alpha1\nkind: MonitoredValidator\nmetadata:\n  name: {name}\nspec:\n  chain: {chain}\n  endpoints: {endpoints}\n  duty: {duty}\n  target: {{webhook: {{url: '{}'}}}}\n  policyRef: {{name: duty}}\n",
                hook.url
            ),
        );
    }
    let mut op = Operator::start(c, &ns, "duty-sim", &[]);
    op.wait_ready(T);
    let w = World { c, ns, op };
    let name = |chain: &str| {
        nodes
            .iter()
            .find(|n| n["chain"] == chain)
            .map(|n| {
                (
                    n["index"].as_u64().unwrap() as usize,
                    n["name"].as_str().unwrap().to_string(),
                )
            })
            .unwrap()
    };
    let (sub_i, sub) = name("substrate");
    let (cos_i, cos) = name("cosmos");
    for n in &nodes {
        w.wait(n["name"].as_str().unwrap(), "Signing", "True", "Signing");
    }
    let authored = w.mv(&sub)["status"]["duty"]["blocksAuthored"].clone();
    assert!(authored.as_u64().is_some(), "{authored}");

    // The Substrate node stays healthy but stops authoring: NotAuthoring, folded into Ready
    // (affectsReady), and no restart.
    sim.fault(sub_i, "stopSigning");
    let s = w.wait(&sub, "Signing", "False", "NotAuthoring");
    assert!(
        s["message"].as_str().unwrap().contains("No block authored"),
        "{s}"
    );
    w.wait(&sub, "Ready", "False", "NotAuthoring");

    // The Cosmos validator is jailed: the Cosmos SDK says so; never restarted.
    sim.fault(cos_i, "jailed");
    w.wait(&cos, "Signing", "False", "Jailed");
    w.wait(&cos, "Ready", "False", "Jailed");
    let duty = w.mv(&cos)["status"]["duty"].clone();
    assert_eq!(duty["jailed"], true, "{duty}");
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(hook.count(), 0, "duty failures restart nothing");
    for n in [&sub, &cos] {
        let r = w.mv(n)["status"]["remediation"].clone();
        assert!(
            r.is_null() || r["totalActions"].as_u64().unwrap_or(0) == 0,
            "{n}: {r}"
        );
    }

    sim.recover(sub_i);
    sim.recover(cos_i);
    w.wait(&sub, "Signing", "True", "Signing");
    w.wait(&cos, "Signing", "True", "Signing");
    w.wait(&cos, "Ready", "True", "Healthy");
}
