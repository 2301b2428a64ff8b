//! `vigil probe` against simulated nodes, the way a user runs it: no cluster, the verdict in
//! the output and in the exit code.

mod support;

use serde_json::Value;
use std::process::Command;
use support::simulator::Simulator;

fn probe(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("probe")
        .args(args)
        .output()
        .expect("run vigil probe");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    (out.status.code().expect("exit code"), text)
}

fn json(args: &[&str]) -> (i32, Value) {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let (code, text) = probe(&all);
    (
        code,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
    )
}

fn condition<'a>(doc: &'a Value, type_: &str) -> &'a Value {
    doc["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} in {doc}"))
}

#[test]
fn healthy_unhealthy_and_unreadable_nodes() {
    let sim = Simulator::start(&["--nodes", "3", "--mix", "substrate=1,ethereum=1,cosmos=1"]);
    let (sub, eth, cosmos) = (&sim.nodes[0], &sim.nodes[1], &sim.nodes[2]);
    let metrics = sub.metrics.clone().unwrap();

    let (code, doc) = json(&[
        "--chain",
        "substrate",
        "--rpc",
        &sub.rpc,
        "--metrics",
        &metrics,
    ]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["ready"], "True");
    assert!(doc["facts"]["bestBlock"].as_u64().unwrap() > 0);
    assert_eq!(doc["facts"]["peers"], 25);
    assert_eq!(condition(&doc, "BlockProduction")["reason"], "SingleSample");

    let (code, text) = probe(&["--chain", "ethereum", "--rpc", &eth.rpc]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("best block"), "{text}");
    assert!(text.contains("Ready           True"), "{text}");
    let (code, doc) = json(&["--chain", "cosmos", "--rpc", &cosmos.rpc]);
    assert_eq!(code, 0, "{doc}");

    // Two samples see the block advance (block time 1s).
    let sim2 = Simulator::start(&["--nodes", "1", "--block-time", "500ms"]);
    let (code, doc) = json(&[
        "--chain",
        "substrate",
        "--rpc",
        &sim2.nodes[0].rpc,
        "--samples",
        "2",
        "--interval",
        "1200ms",
    ]);
    assert_eq!(code, 0, "{doc}");
    let bp = condition(&doc, "BlockProduction");
    assert_eq!(bp["status"], "True", "{doc}");
    assert!(bp["message"].as_str().unwrap().contains("advanced"), "{bp}");

    // Too few peers under a policy file: unhealthy, exit 1.
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: vigil.dev/v1alpha1\nkind: MonitorPolicy\nmetadata: {name: strict}\nspec:\n  health: {minPeers: 40}\n",
    )
    .unwrap();
    let (code, doc) = json(&[
        "--chain",
        "substrate",
        "--rpc",
        &sub.rpc,
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{doc}");
    assert_eq!(condition(&doc, "Ready")["reason"], "TooFewPeers");

    // A dead node: unhealthy.
    sim.fault(0, "die");
    let (code, doc) = json(&["--chain", "substrate", "--rpc", &sub.rpc]);
    assert_eq!(code, 1, "{doc}");
    assert_eq!(condition(&doc, "Reachable")["reason"], "ConnectionFailed");
    assert!(doc["error"].as_str().unwrap().contains("cannot connect"));
    sim.recover(0);

    // Garbage: Vigil cannot tell, exit 3, never a panic.
    for fault in ["malformed", "nonUtf8", "oversized"] {
        sim.fault(0, fault);
        let (code, doc) = json(&["--chain", "substrate", "--rpc", &sub.rpc]);
        assert_eq!(code, 3, "{fault}: {doc}");
        assert_eq!(condition(&doc, "Ready")["reason"], "ProbeError", "{fault}");
        sim.recover(0);
    }
}

#[test]
fn bad_arguments_are_explained() {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["probe", "--chain", "substrate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs an rpc or metrics URL"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["probe", "--chain", "bitcoin", "--rpc", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown chain"));
}
