//! Scale past one process: two operator processes with disjoint `--selector` shards and
//! leases of their own split 2,000 validators; each knows and probes only its own half, and
//! a shard killed and restarted takes its half back with no gap and no overlap.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;
use support::operator::Operator;
use support::{World, apply_ok, condition, eventually};

const N: usize = 2000;
const T: Duration = Duration::from_secs(300);

fn shard_of(i: usize) -> &'static str {
    if i.is_multiple_of(2) { "a" } else { "b" }
}

fn start(w: &World, shard: &str) -> Operator {
    let selector = format!("shard={shard}");
    let lease = format!("vigil-shard-{shard}");
    let mut op = Operator::start(
        w.c,
        &w.ns,
        &format!("shard-{shard}"),
        &["--selector", &selector, "--lease-name", &lease],
    );
    op.wait_ready(T);
    op.wait_leader(T);
    op
}

/// Validators this process knows (every `vigil_validators{ready}` series).
fn known(op: &Operator) -> f64 {
    ["True", "False", "Unknown"]
        .iter()
        .map(|r| {
            op.metric(&format!("vigil_validators{{ready=\"{r}\"}}"))
                .unwrap_or(0.0)
        })
        .sum()
}

fn probes(op: &Operator) -> f64 {
    let text = op.get("/metrics").map(|(_, b)| b).unwrap_or_default();
    vigil::probe::prom::parse(&text)
        .into_iter()
        .filter(|s| s.name == "vigil_probes_total")
        .map(|s| s.value)
        .sum()
}

/// Ready status per validator name, from one list call.
fn ready(w: &World) -> BTreeMap<String, String> {
    let list = w.c.kubectl_json(&["get", "mv", "-n", &w.ns, "-o", "json"]);
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|mv| {
            Some((
                mv["metadata"]["name"].as_str()?.to_string(),
                condition(mv, "Ready")?["status"].as_str()?.to_string(),
            ))
        })
        .collect()
}

#[test]
fn two_shards_split_two_thousand_validators_without_gap_or_overlap() {
    let w = World::new("shards", N, &[]);
    apply_ok(
        w.c,
        &w.ns,
        "apiVersion: vigil.dev/v1alpha1\nkind: MonitorPolicy\nmetadata:\n  name: p\nspec:\n  probe: {interval: 5s, timeout: 2s, failureThreshold: 1, successThreshold: 1}\n  health: {minPeers: 1}\n",
    );
    let docs: Vec<String> = (0..N)
        .map(|i| {
            w.sim.validator_yaml(i, "p").replacen(
                "metadata:\n",
                &format!("metadata:\n  labels: {{shard: {}}}\n", shard_of(i)),
                1,
            )
        })
        .collect();
    apply_ok(w.c, &w.ns, &docs.join("---\n"));
    let a = start(&w, "a");
    let mut b = start(&w, "b");
    eventually(T, "each shard knows exactly its 1,000", || {
        (known(&a) == 1000.0 && known(&b) == 1000.0).then_some(())
    });
    // No gap: every validator has a verdict (on a loaded machine some nodes may answer
    // late, so the verdict itself is not asserted).
    eventually(T, "a verdict for each of the 2,000", || {
        (ready(&w).len() == N).then_some(())
    });
    // Each probes only its own: over one interval, about 1,000 probes each.
    let (pa, pb) = (probes(&a), probes(&b));
    std::thread::sleep(Duration::from_secs(11));
    let (da, db) = (probes(&a) - pa, probes(&b) - pb);
    for (shard, d) in [("a", da), ("b", db)] {
        assert!(
            d >= 1000.0,
            "shard {shard}: {d} probes in 11 s for 1,000 validators at 5 s"
        );
    }

    // Shard b is killed: a does not take its half (it cannot: another selector, another
    // lease); b, restarted, takes it all back.
    b.signal("KILL");
    b.wait_exit(Duration::from_secs(10)).expect("killed");
    let dead_b = (0..N).find(|i| shard_of(*i) == "b").unwrap();
    let dead_a = (0..N).find(|i| shard_of(*i) == "a").unwrap();
    let before = ready(&w)[&w.sim.nodes[dead_b].name].clone();
    assert_ne!(before, "False");
    w.sim.fault(dead_b, "die");
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(
        known(&a),
        1000.0,
        "shard a took over another shard's validators"
    );
    assert_eq!(
        ready(&w)[&w.sim.nodes[dead_b].name],
        before,
        "a validator of the stopped shard was judged by another process"
    );
    let b = start(&w, "b");
    eventually(T, "the restarted shard knows its 1,000 again", || {
        (known(&b) == 1000.0).then_some(())
    });
    w.sim.fault(dead_a, "die");
    eventually(T, "both shards judge their own dead node", || {
        let r = ready(&w);
        (r[&w.sim.nodes[dead_b].name] == "False" && r[&w.sim.nodes[dead_a].name] == "False")
            .then_some(())
    });
    assert_eq!(ready(&w).len(), N);
    assert_eq!(known(&a), 1000.0);
}
