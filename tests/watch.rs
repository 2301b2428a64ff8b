//! Watching validators end to end: `vigil-sim` nodes (real Substrate JSON-RPC and
//! Prometheus text, Ethereum and CometBFT variants), the operator as a subprocess, the real
//! control plane. One test per fault class, each asserting conditions, reasons and Events
//! within a bounded time; a chain-wide stall gives one fleet incident, not N node faults.

mod support;

use serde_json::Value;
use std::time::Duration;
use support::cluster::{self, Cluster};
use support::operator::Operator;
use support::simulator::Simulator;
use support::{apply_ok, condition, events_for, eventually, get_json, install_crds};

/// Bound on every wait: detection needs interval × failureThreshold (2 s here) plus the stall
/// or lag a fault needs to show, far below this.
const T: Duration = Duration::from_secs(40);

/// A policy with fast probes. `extra_health` adds health fields (YAML flow entries).
fn policy_yaml(name: &str, extra_health: &str) -> String {
    format!(
        "apiVersion: vigil.dev/v1alpha1\nkind: MonitorPolicy\nmetadata:\n  name: {name}\nspec:\n  probe: {{interval: 1s, timeout: 900ms, failureThreshold: 2, successThreshold: 1}}\n  health: {{minPeers: 3, maxBlockStall: 5s, maxFinalityLag: 6, maxBlocksBehind: 30{extra_health}}}\n  remediation: {{action: none}}\n"
    )
}

struct World {
    c: &'static Cluster,
    ns: String,
    sim: Simulator,
    op: Operator,
}

/// A namespace, `nodes` simulated nodes (extra simulator args), a policy `fast`, one
/// validator per node, and the operator; waits until every validator is Ready.
fn world(prefix: &str, sim_args: &[&str], extra_health: &str) -> World {
    let c = cluster::shared();
    install_crds(c);
    let ns = c.namespace(prefix);
    let mut args = vec!["--block-time", "1s", "--peers", "12"];
    args.extend_from_slice(sim_args);
    let sim = Simulator::start(&args);
    apply_ok(c, &ns, &policy_yaml("fast", extra_health));
    for n in &sim.nodes {
        apply_ok(c, &ns, &sim.validator_yaml(n.index, "fast"));
    }
    let mut op = Operator::start(c, &ns, "watch", &[]);
    op.wait_ready(T);
    let w = World { c, ns, sim, op };
    for n in &w.sim.nodes {
        w.wait(&n.name, "Ready", "True", "Healthy");
    }
    w
}

impl World {
    fn mv(&self, name: &str) -> Value {
        get_json(self.c, &self.ns, "mv", name).expect("validator exists")
    }

    /// Waits for a condition of validator `name`; returns it.
    fn wait(&self, name: &str, type_: &str, status: &str, reason: &str) -> Value {
        let mut last = Value::Null;
        let found = eventually_opt(T, || {
            let mv = get_json(self.c, &self.ns, "mv", name)?;
            let cond = condition(&mv, type_)?;
            if cond["status"] == status && cond["reason"] == reason {
                return Some(cond);
            }
            last = cond;
            None
        });
        found.unwrap_or_else(|| {
            panic!(
                "{name}: {type_} never became {status}/{reason}; last {last}\noperator log:\n{}",
                tail(&self.op.log_text())
            )
        })
    }

    /// Waits for an Event about `name` with this type and reason; returns its message.
    fn event(&self, name: &str, type_: &str, reason: &str) -> String {
        eventually(T, &format!("{type_} Event {reason} on {name}"), || {
            events_for(self.c, &self.ns, name)
                .into_iter()
                .find(|(t, r, _)| t == type_ && r == reason)
                .map(|(_, _, m)| m)
        })
    }

    /// Injects a fault into node 0, waits for the condition and its Event, then recovers the
    /// node and waits for Ready again.
    fn fault_and_recover(
        &self,
        fault: impl Fn(&Simulator),
        type_: &str,
        status: &str,
        reason: &str,
    ) {
        let name = self.sim.nodes[0].name.clone();
        fault(&self.sim);
        let cond = self.wait(&name, type_, status, reason);
        assert!(!cond["message"].as_str().unwrap_or_default().is_empty());
        assert_eq!(cond["observedGeneration"], 1);
        if type_ != "Ready" {
            let ready = self.wait(
                &name,
                "Ready",
                if status == "Unknown" {
                    "Unknown"
                } else {
                    "False"
                },
                if status == "Unknown" {
                    "ProbeError"
                } else {
                    reason
                },
            );
            assert!(!ready["message"].as_str().unwrap_or_default().is_empty());
        }
        let warn = if status == "Unknown" {
            "ProbeError"
        } else {
            reason
        };
        let message = self.event(&name, "Warning", warn);
        assert!(
            message.contains(" is ") || message.contains(" are "),
            "event says which condition: {message}"
        );
        // The other nodes are not blamed.
        for n in &self.sim.nodes[1..] {
            let mv = self.mv(&n.name);
            assert_eq!(
                condition(&mv, "Ready").unwrap()["status"],
                "True",
                "{}",
                n.name
            );
        }
        self.sim.recover(0);
        self.wait(&name, "Ready", "True", "Healthy");
        // The detail condition's way back is an Event of its own (a healthy condition that
        // merely appears is not, so this one is the recovery's).
        let back = match type_ {
            "Reachable" => "Responding",
            "BlockProduction" => "Advancing",
            "PeersHealthy" => "EnoughPeers",
            other => other, // Synced, Finalizing
        };
        self.event(&name, "Normal", back);
    }
}

fn eventually_opt<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[test]
fn healthy_nodes_show_facts_and_cause_no_steady_writes() {
    let w = world("healthy", &["--nodes", "3"], "");
    let mv = w.mv(&w.sim.nodes[0].name);
    let facts = &mv["status"]["facts"];
    assert!(facts["bestBlock"].as_u64().unwrap() > 0, "{facts}");
    assert!(facts["finalizedBlock"].as_u64().is_some(), "{facts}");
    assert_eq!(facts["peers"], 12);
    assert_eq!(facts["syncing"], false);
    assert!(facts["version"].as_str().is_some(), "{facts}");
    for t in [
        "Reachable",
        "Synced",
        "BlockProduction",
        "Finalizing",
        "PeersHealthy",
    ] {
        assert_eq!(condition(&mv, t).unwrap()["status"], "True", "{t}: {mv}");
    }
    // Steady state: five more probes of each node, not one more status write.
    let writes = || {
        w.op.metric("vigil_status_writes_total{kind=\"MonitoredValidator\"}")
    };
    std::thread::sleep(Duration::from_secs(2));
    let before = writes().expect("status write metric");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        writes(),
        Some(before),
        "a healthy fleet causes no status writes"
    );
    let probes =
        w.op.metric("vigil_probes_total{chain=\"substrate\",result=\"ok\"}")
            .unwrap();
    assert!(probes >= 15.0, "probes ran: {probes}");
}

#[test]
fn a_node_that_stops_producing_blocks_is_block_stalled() {
    let w = world("stall", &["--nodes", "3"], "");
    w.fault_and_recover(
        |s| s.fault(0, "stopBlocks"),
        "BlockProduction",
        "False",
        "BlockStalled",
    );
}

#[test]
fn a_node_that_stops_finalizing_is_finality_lagging() {
    let w = world("finality", &["--nodes", "3"], "");
    w.fault_and_recover(
        |s| s.fault(0, "stopFinality"),
        "Finalizing",
        "False",
        "FinalityLagging",
    );
}

#[test]
fn a_node_without_peers_is_not_peers_healthy() {
    let w = world("peers", &["--nodes", "3"], "");
    w.fault_and_recover(
        |s| s.fault(0, "dropPeers"),
        "PeersHealthy",
        "False",
        "TooFewPeers",
    );
}

#[test]
fn a_syncing_node_is_not_synced() {
    let w = world("syncing", &["--nodes", "3"], "");
    w.fault_and_recover(|s| s.fault(0, "syncing"), "Synced", "False", "Syncing");
}

#[test]
fn a_dead_node_is_unreachable() {
    let w = world("die", &["--nodes", "3"], "");
    w.fault_and_recover(
        |s| s.fault(0, "die"),
        "Reachable",
        "False",
        "ConnectionFailed",
    );
}

#[test]
fn a_hung_node_times_out() {
    let w = world("hang", &["--nodes", "3"], "");
    w.fault_and_recover(|s| s.fault(0, "hang"), "Reachable", "False", "Timeout");
}

#[test]
fn a_slow_node_is_reported_slow() {
    let w = world("slow", &["--nodes", "3"], ", maxProbeLatency: 300ms");
    w.fault_and_recover(|s| s.slow(0, 250), "Reachable", "False", "SlowResponse");
}

#[test]
fn garbage_answers_are_unknown_not_down() {
    let w = world("garbage", &["--nodes", "3"], "");
    for fault in ["malformed", "oversized", "nonUtf8"] {
        w.fault_and_recover(|s| s.fault(0, fault), "Reachable", "Unknown", "ProbeError");
        let mv = w.mv(&w.sim.nodes[0].name);
        assert!(
            mv["status"]["lastProbe"].get("error").is_none(),
            "recovered: the last probe has no error: {mv}"
        );
    }
}

#[test]
fn a_chain_wide_stall_is_one_fleet_incident_not_node_faults() {
    let w = world("halt", &["--nodes", "4"], "");
    w.sim.fault_all("stopBlocks");
    let incident = eventually(T, "policy fleet incident", || {
        let p = get_json(w.c, &w.ns, "mpol", "fast")?;
        let i = p["status"]["fleetIncident"].clone();
        (i["kind"] == "ChainHalted" && i["ended"].is_null()).then_some(i)
    });
    assert_eq!(incident["chain"], "substrate");
    assert_eq!(incident["total"], 4);
    for n in &w.sim.nodes {
        let c = w.wait(&n.name, "BlockProduction", "False", "ChainHalted");
        assert!(
            c["message"]
                .as_str()
                .unwrap()
                .contains("not a fault of this node")
        );
    }
    // Not N node faults: every node stays Ready (reason ChainHalted), none turns False.
    for n in &w.sim.nodes {
        let ready = condition(&w.mv(&n.name), "Ready").unwrap();
        assert_eq!(
            (ready["status"].as_str(), ready["reason"].as_str()),
            (Some("True"), Some("ChainHalted")),
            "{}",
            n.name
        );
        assert!(
            !events_for(w.c, &w.ns, &n.name)
                .iter()
                .any(|(t, r, _)| t == "Warning" && r == "BlockStalled"),
            "{} got a node-fault Event",
            n.name
        );
    }
    let events = events_for(w.c, &w.ns, "fast");
    assert!(
        events
            .iter()
            .any(|(t, r, _)| t == "Warning" && r == "ChainHalted"),
        "{events:?}"
    );

    w.sim.recover_all();
    eventually(T, "the incident ends", || {
        let p = get_json(w.c, &w.ns, "mpol", "fast")?;
        (!p["status"]["fleetIncident"]["ended"].is_null()).then_some(())
    });
    for n in &w.sim.nodes {
        w.wait(&n.name, "Ready", "True", "Healthy");
    }
    w.event("fast", "Normal", "FleetRecovered");
}

#[test]
fn most_validators_stalling_at_once_is_a_fleet_incident() {
    let w = world("massstall", &["--nodes", "5"], "");
    for i in 0..3 {
        w.sim.fault(i, "stopBlocks");
    }
    let incident = eventually(T, "policy fleet incident", || {
        let p = get_json(w.c, &w.ns, "mpol", "fast")?;
        let i = p["status"]["fleetIncident"].clone();
        (i["kind"] == "MassStall").then_some(i)
    });
    assert_eq!(
        (incident["affected"].as_u64(), incident["total"].as_u64()),
        (Some(3), Some(5))
    );
    for i in 0..3 {
        w.wait(&w.sim.nodes[i].name, "Ready", "True", "MassStall");
    }
}

#[test]
fn ethereum_and_cosmos_nodes_are_watched() {
    let w = world(
        "chains",
        &["--nodes", "4", "--mix", "ethereum=2,cosmos=2"],
        "",
    );
    for n in &w.sim.nodes {
        let mv = w.mv(&n.name);
        assert!(
            mv["status"]["facts"]["bestBlock"].as_u64().unwrap() > 0,
            "{mv}"
        );
        assert_eq!(mv["status"]["facts"]["peers"], 12, "{mv}");
    }
    let eth = w
        .sim
        .nodes
        .iter()
        .position(|n| n.chain == "ethereum")
        .unwrap();
    let cosmos = w
        .sim
        .nodes
        .iter()
        .position(|n| n.chain == "cosmos")
        .unwrap();
    w.sim.fault(eth, "syncing");
    w.sim.fault(cosmos, "syncing");
    w.wait(&w.sim.nodes[eth].name, "Synced", "False", "Syncing");
    w.wait(&w.sim.nodes[cosmos].name, "Synced", "False", "Syncing");
    w.sim.fault(cosmos, "die");
    w.wait(
        &w.sim.nodes[cosmos].name,
        "Reachable",
        "False",
        "ConnectionFailed",
    );
    w.sim.recover(eth);
    w.sim.recover(cosmos);
    w.wait(&w.sim.nodes[eth].name, "Ready", "True", "Healthy");
    w.wait(&w.sim.nodes[cosmos].name, "Ready", "True", "Healthy");
}
