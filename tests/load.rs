//! Load: N validators (1,000 in every test run; 10,000 by hand) with 5% of them flapping
//! (dying and recovering every 20 s) for M minutes against the real control plane. The
//! probe schedule does not fall behind (no skipped probes after the start, lateness stays
//! low), the work queued in the operator does not grow (status writes waiting stay within
//! the work of a few flips, and once the flips stop the queue drains), memory is flat (RSS
//! once drained against RSS at the first third; a leak stays, a burst's working set goes)
//! and alerts are grouped and bounded. Prints a table for BENCHMARKS.md.
//!
//! The full run: `VIGIL_LOAD_VALIDATORS=10000 VIGIL_LOAD_MINUTES=10 cargo test --release
//! --test load -- --nocapture` (after `cargo build --release -p vigil-sim`).

mod support;

use serde_json::json;
use std::time::{Duration, Instant};
use support::operator::Operator;
use support::receiver::Receiver;
use support::{World, apply_ok, eventually};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_mib(op: &Operator) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", op.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .expect("VmRSS")
        / 1024.0
}

/// Sum of every series of a metric family.
fn total(op: &Operator, family: &str) -> f64 {
    let text = op.get("/metrics").map(|(_, b)| b).unwrap_or_default();
    vigil::probe::prom::parse(&text)
        .into_iter()
        .filter(|s| s.name == family)
        .map(|s| s.value)
        .sum()
}

/// The share of probes that started more than `le` seconds late, from the histogram.
fn late_share(op: &Operator, le: &str) -> f64 {
    let text = op.get("/metrics").map(|(_, b)| b).unwrap_or_default();
    let samples = vigil::probe::prom::parse(&text);
    let count = samples
        .iter()
        .find(|s| s.name == "vigil_probe_lateness_seconds_count")
        .map_or(0.0, |s| s.value);
    let within = samples
        .iter()
        .find(|s| {
            s.name == "vigil_probe_lateness_seconds_bucket"
                && s.labels.iter().any(|(k, v)| k == "le" && v == le)
        })
        .map_or(0.0, |s| s.value);
    if count == 0.0 {
        0.0
    } else {
        1.0 - within / count
    }
}

#[test]
fn flapping_validators_do_not_grow_the_queue_memory_or_the_alerts() {
    let n = env_or("VIGIL_LOAD_VALIDATORS", 1000) as usize;
    let minutes = env_or("VIGIL_LOAD_MINUTES", 2);
    let n_str = n.to_string();
    // RPC only: 10,000 nodes with metrics would need 20,000 sockets.
    let w = World::new("load", n, &["--no-metrics"]);
    let rx = Receiver::start();
    apply_ok(
        w.c,
        &w.ns,
        &format!(
            "apiVersion: vigil.dev/v1alpha1\nkind: MonitorPolicy\nmetadata:\n  name: p\nspec:\n  probe: {{interval: 10s, timeout: 3s, failureThreshold: 1, successThreshold: 1}}\n  health: {{minPeers: 1}}\n  alerts:\n    groupWait: 5s\n    flapDamping: 30s\n    channels: [{{name: hook, webhook: {{url: '{}'}}}}]\n",
            rx.url
        ),
    );
    let docs: Vec<String> = (0..n).map(|i| w.sim.validator_yaml(i, "p")).collect();
    for chunk in docs.chunks(1000) {
        apply_ok(w.c, &w.ns, &chunk.join("---\n"));
    }
    // Logging at info: debug logging of 10,000 validators is itself a large share of the CPU.
    // Facts refresh every third of the run: the whole fleet refreshes three times during it, and
    // those writes must spread over the period, not queue up in one probe round.
    let refresh = format!("{}s", minutes * 20);
    let mut op = Operator::start_env(
        w.c,
        &w.ns,
        "load",
        &["--facts-refresh", &refresh],
        &[("RUST_LOG", "info")],
    );
    op.wait_ready(Duration::from_secs(120));
    op.wait_leader(Duration::from_secs(120));
    eventually(Duration::from_secs(600), "every validator probed", || {
        (total(&op, "vigil_validators") == n as f64).then_some(())
    });
    eventually(Duration::from_secs(600), "a first round of probes", || {
        (total(&op, "vigil_probes_total") >= n as f64).then_some(())
    });

    // 5% flap: every 20 s the flapping set dies or recovers.
    let flapping: Vec<usize> = (0..n).step_by(20).collect();
    let start = Instant::now();
    let run = Duration::from_secs(minutes * 60);
    let third = run / 3;
    let (mut rss_third, mut skipped_third, mut probes_third) = (None, 0.0, 0.0);
    // The most status writes waiting after the first third.
    let mut most_waiting = 0.0f64;
    let mut dead = false;
    let mut flips = 0;
    let mut next_flip = Instant::now();
    while start.elapsed() < run {
        if Instant::now() >= next_flip {
            let path = if dead { "/recover" } else { "/fault" };
            let body = if dead {
                json!({"nodes": flapping})
            } else {
                json!({"fault": "die", "nodes": flapping})
            };
            w.sim.admin_post(path, &body);
            dead = !dead;
            flips += 1;
            next_flip += Duration::from_secs(20);
        }
        if rss_third.is_none() && start.elapsed() >= third {
            rss_third = Some(rss_mib(&op));
            skipped_third = total(&op, "vigil_probes_skipped_total");
            probes_third = total(&op, "vigil_probes_total");
        }
        if start.elapsed() >= third {
            most_waiting = most_waiting.max(total(&op, "vigil_status_calls_waiting"));
        }
        if let Ok(Some(status)) = op.child.try_wait() {
            panic!("the operator exited ({status}); log:\n{}", op.log_text());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let rss_churn = rss_mib(&op);
    let rss_third = rss_third.expect("sampled");
    let skipped = total(&op, "vigil_probes_skipped_total") - skipped_third;
    let probes = total(&op, "vigil_probes_total") - probes_third;
    let expected = (n as f64 / 10.0) * (run - third).as_secs_f64();
    let late = late_share(&op, "1");
    let notifications = rx.count();
    // The flips stop: what was queued drains (a queue that grew for good would not), and
    // the probes and actions in flight fall back to what a steady fleet keeps busy.
    let steady = (n as f64 / 100.0).max(50.0);
    let drained = Instant::now();
    eventually(Duration::from_secs(120), "the queue drains", || {
        let waiting = total(&op, "vigil_status_calls_waiting");
        let tasks = total(&op, "vigil_monitor_tasks");
        (waiting == 0.0 && tasks <= steady).then_some(())
    });
    let drained = drained.elapsed().as_secs();
    let rss_end = rss_mib(&op);
    println!(
        "\n| validators | minutes | flapping | flips | probes (expected) after the first third | skipped after it | probes > 1 s late | most writes waiting | drained within | RSS MiB at 1/3 → end of churn → drained | alert notifications |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n| {n_str} | {minutes} | {} | {flips} | {probes:.0} ({expected:.0}) | {skipped:.0} | {:.2}% | {most_waiting:.0} | {drained} s | {rss_third:.1} → {rss_churn:.1} → {rss_end:.1} | {notifications} |\n",
        flapping.len(),
        late * 100.0,
    );
    // The queue is bounded by the churn, not by time or the fleet: at most the status and
    // alert writes of a few flips (each flips the whole flapping set) wait at once.
    assert!(
        most_waiting <= 4.0 * flapping.len() as f64,
        "{most_waiting} status writes waiting at once for {} flapping validators",
        flapping.len()
    );
    // The schedule keeps up: nothing skipped, at least 90% of the expected probes ran.
    assert_eq!(skipped, 0.0, "probes were skipped: the queue fell behind");
    assert!(
        probes >= expected * 0.9,
        "{probes} probes, {expected} expected"
    );
    assert!(
        late < 0.01,
        "{:.2}% of probes more than 1 s late",
        late * 100.0
    );
    // Memory is flat: no more than 10% (and 16 MiB of slack) above the first third.
    assert!(
        rss_end <= rss_third * 1.10 + 16.0,
        "RSS grew from {rss_third:.1} to {rss_end:.1} MiB"
    );
    // Alerts are grouped: far fewer notifications than node transitions.
    let transitions = flips * flapping.len();
    assert!(notifications > 0, "no alert at all");
    assert!(
        notifications * 10 <= transitions,
        "{notifications} notifications for {transitions} transitions"
    );
}
