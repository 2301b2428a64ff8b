//! Chaos against the real control plane: the API server taken away for 30 s and made slow
//! (through a proxy in front of it, so that the control plane the other tests share keeps
//! running), with 100 validators watched: the operator keeps running and probing, acts only
//! on what it could record first, repeats no remediation and loses no escalation. And 50
//! SIGKILLs of two replicas (leader failovers among them) while they heal, archive, alert
//! and ask an LLM advisor: no action twice, no run archived twice or deleted unarchived, no
//! alert lost or told twice, no advisor budget reset.

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::llm::{Flavor, LlmServer};
use support::operator::Operator;
use support::proxy::{Mode, Proxy};
use support::receiver::Receiver;
use support::{World, apply_ok, condition, eventually, get_json};

const T: Duration = Duration::from_secs(90);

/// The API server's address, from the admin kubeconfig.
fn api_addr(w: &World) -> SocketAddr {
    let server = w.c.kubectl_ok(&[
        "config",
        "view",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ]);
    let hostport = server.trim().trim_start_matches("https://");
    hostport.parse().unwrap_or_else(|e| panic!("{server}: {e}"))
}

/// `n` validators of the simulator's nodes under policy `heal`, whose remediation calls the
/// receiver: one apply for all of them.
fn validators(w: &World, n: usize, rx: &Receiver) {
    let docs: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "{}  target: {{webhook: {{url: '{}'}}}}\n",
                w.sim.validator_yaml(i, "heal"),
                rx.url
            )
        })
        .collect();
    apply_ok(w.c, &w.ns, &docs.join("---\n"));
}

/// Webhook calls per validator name.
fn calls(rx: &Receiver) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in rx.requests() {
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        let name = body["validator"]["name"].as_str().unwrap().to_string();
        *out.entry(name).or_default() += 1;
    }
    out
}

fn alive(op: &mut Operator) {
    if let Ok(Some(status)) = op.child.try_wait() {
        panic!("the operator exited ({status}); log:\n{}", op.log_text());
    }
}

fn peak_rss_mib(op: &Operator) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", op.child.id())).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM");
    kib / 1024.0
}

/// Ready status and reason of every validator, from one list call.
fn verdicts(w: &World) -> BTreeMap<String, (String, String)> {
    let list = w.c.kubectl_json(&["get", "mv", "-n", &w.ns, "-o", "json"]);
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|mv| {
            let ready = condition(mv, "Ready")?;
            Some((
                mv["metadata"]["name"].as_str()?.to_string(),
                (
                    ready["status"].as_str()?.to_string(),
                    ready["reason"].as_str()?.to_string(),
                ),
            ))
        })
        .collect()
}

#[test]
fn an_api_server_outage_repeats_no_remediation_and_loses_no_escalation() {
    let w = World::new("chaos-api", 100, &[]);
    let rx = Receiver::start();
    apply_ok(
        w.c,
        &w.ns,
        // The longest timeout a 1 s interval allows and three failures in a row: a dead
        // node is refused at once, while a live one on a machine running three of these
        // tests at once may answer late now and then.
        "apiVersion: vigil.dev/v1alpha1\nkind: MonitorPolicy\nmetadata:\n  name: heal\nspec:\n  probe: {interval: 1s, timeout: 900ms, failureThreshold: 3, successThreshold: 1}\n  health: {minPeers: 1}\n  remediation: {action: webhook, cooldown: 2s, maxCooldown: 4s, maxAttempts: 3}\n",
    );
    validators(&w, 100, &rx);
    let proxy = Proxy::start(api_addr(&w));
    let mut op = Operator::start_via(w.c, &w.ns, "chaos", &[], proxy.addr);
    op.wait_ready(T);
    op.wait_leader(T);
    eventually(T, "100 validators Ready=True", || {
        let v = verdicts(&w);
        (v.len() == 100 && v.values().all(|(s, _)| s == "True")).then_some(())
    });
    let (dead, late) = (w.sim.nodes[0].name.clone(), w.sim.nodes[1].name.clone());

    // Node 0 dies; its first restart goes out; then the API server is gone for 30 s.
    w.sim.fault(0, "die");
    eventually(T, "the first restart of node 0", || {
        (calls(&rx).get(&dead) == Some(&1)).then_some(())
    });
    proxy.set(Mode::Down);
    let cut = Instant::now();
    let probes_before = op
        .metric("vigil_probes_total{chain=\"substrate\",result=\"ok\"}")
        .unwrap_or(0.0);
    // Node 1 dies while nobody can record it.
    std::thread::sleep(Duration::from_secs(5));
    w.sim.fault(1, "die");
    while cut.elapsed() < Duration::from_secs(30) {
        alive(&mut op);
        std::thread::sleep(Duration::from_millis(500));
    }
    // It kept probing the whole time: probes need no API server.
    let probes_during = op
        .metric("vigil_probes_total{chain=\"substrate\",result=\"ok\"}")
        .unwrap_or(0.0);
    // 98 live nodes at one probe a second for 30 s; half of that on a loaded machine.
    assert!(
        probes_during >= probes_before + 98.0 * 15.0,
        "probes stalled during the outage: {probes_before} -> {probes_during}"
    );
    // Nothing is acted on that could not be recorded first: node 1 got no restart, and
    // node 0 at most the one whose record was written before the cut.
    let during = calls(&rx);
    assert_eq!(during.get(&late), None, "acted unrecorded: {during:?}");
    assert!(during.get(&dead).copied().unwrap_or(0) <= 2, "{during:?}");
    proxy.set(Mode::Pass);

    // Back: node 0's attempts run out and it escalates, exactly once, with exactly
    // maxAttempts restarts; node 1's death, seen during the outage, is written and acted on.
    let escalated = eventually(T, "node 0 escalated", || {
        let mv = get_json(w.c, &w.ns, "mv", &dead)?;
        condition(&mv, "Escalated").filter(|c| c["status"] == "True")
    });
    assert_eq!(escalated["reason"], "RemediationExhausted", "{escalated}");
    eventually(T, "node 1 Ready=False and restarted", || {
        let v = verdicts(&w);
        (v.get(&late).map(|(s, _)| s.as_str()) == Some("False")
            && calls(&rx).get(&late).copied().unwrap_or(0) >= 1)
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(6));
    let after = calls(&rx);
    assert_eq!(after.get(&dead), Some(&3), "exactly maxAttempts: {after:?}");
    let rem = get_json(w.c, &w.ns, "mv", &dead).unwrap()["status"]["remediation"].clone();
    assert_eq!(rem["totalActions"], 3, "{rem}");
    assert!(rem.get("inFlight").is_none(), "{rem}");
    assert_eq!(op.metric("vigil_escalations_total"), Some(1.0));
    assert!(
        after.keys().filter(|k| **k != dead && **k != late).count() <= 2,
        "only dead nodes are restarted (a live one judged late on a starved machine aside): {after:?}"
    );
    // And the other 98 are still watched: every one has its verdict, nearly all healthy
    // (a live node on a starved machine may be judged late for a moment).
    let v = verdicts(&w);
    assert_eq!(v.len(), 100);
    assert!(
        v.values().filter(|(s, _)| s == "True").count() >= 90,
        "{v:?}"
    );
    alive(&mut op);
}

#[test]
fn a_slow_api_server_crashes_nothing_and_memory_stays_bounded() {
    let w = World::new("chaos-slow", 100, &[]);
    let rx = Receiver::start();
    apply_ok(
        w.c,
        &w.ns,
        "apiVersion: vigil.dev/v1alpha1\nkind: MonitorPolicy\nmetadata:\n  name: heal\nspec:\n  probe: {interval: 1s, timeout: 800ms, failureThreshold: 2, successThreshold: 1}\n  health: {minPeers: 1}\n  remediation: {action: webhook, cooldown: 30s}\n",
    );
    let proxy = Proxy::start(api_addr(&w));
    let mut op = Operator::start_via(w.c, &w.ns, "chaos", &[], proxy.addr);
    op.wait_ready(T);
    op.wait_leader(T);
    // Every chunk each way waits 250 ms: list, watch, status writes and the lease renewal
    // (every 2 s of a 6 s lease in these tests) all crawl.
    proxy.set(Mode::Delay(Duration::from_millis(250)));
    validators(&w, 100, &rx);
    eventually(
        Duration::from_secs(180),
        "100 verdicts through a slow API",
        || {
            let v = verdicts(&w);
            (v.len() == 100 && v.values().all(|(s, _)| s == "True")).then_some(())
        },
    );
    w.sim.fault(7, "die");
    let dead = w.sim.nodes[7].name.clone();
    eventually(
        Duration::from_secs(120),
        "the dead node restarted once",
        || (calls(&rx).get(&dead) == Some(&1)).then_some(()),
    );
    std::thread::sleep(Duration::from_secs(10));
    alive(&mut op);
    assert_eq!(
        calls(&rx).get(&dead),
        Some(&1),
        "one restart inside the cooldown"
    );
    let peak = peak_rss_mib(&op);
    assert!(
        peak < 128.0,
        "peak RSS {peak:.1} MiB with 100 validators behind a slow API server"
    );
}

/// A PipelineRun of two one-second steps, archived to `dir` and deleted 2 s after.
fn small_run(name: &str, dir: &std::path::Path) -> String {
    let step = |n: &str, after: &str| {
        format!(
            "  - name: {n}\n    runAfter: [{after}]\n    template:\n      backoffLimit: 0\n      template:\n        metadata:\n          annotations: {{vigil-test/exit-code: \"0\", vigil-test/run-seconds: \"1\"}}\n        spec:\n          restartPolicy: Never\n          containers: [{{name: main, image: busybox}}]\n"
        )
    };
    format!(
        "apiVersion: vigil.dev/v1alpha1\nkind: PipelineRun\nmetadata:\n  name: {name}\nspec:\n  archive:\n    filesystem: {{path: {}}}\n    deleteJobsAfterArchive: true\n    ttlAfterArchive: 2s\n  steps:\n{}{}",
        dir.display(),
        step("a", ""),
        step("b", "a")
    )
}

/// (inode, mtime) of every bundle under `dir`, by file name.
fn bundles(dir: &std::path::Path) -> BTreeMap<String, (u64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let Ok(namespaces) = std::fs::read_dir(dir) else {
        return out;
    };
    for ns in namespaces.flatten() {
        for f in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if let (true, Ok(m)) = (name.ends_with(".tar.gz"), f.metadata()) {
                out.insert(name, (m.ino(), m.mtime_nsec() + m.mtime() * 1_000_000_000));
            }
        }
    }
    out
}

/// A small xorshift generator: the kill points vary per run and the seed is printed, so a
/// failing sequence can be read back from the output.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The notifications of validator alerts the webhook channel received: per alert episode
/// (fingerprint, startsAt), each notification's (status, toldAt), in arrival order.
type Episodes = BTreeMap<(String, String), Vec<(String, String)>>;

fn episodes(alerts: &Receiver) -> Episodes {
    let mut out = Episodes::new();
    for q in alerts.requests() {
        let body: Value = serde_json::from_slice(&q.body).unwrap_or_default();
        let status = body["status"].as_str().unwrap_or_default().to_string();
        for a in body["alerts"].as_array().into_iter().flatten() {
            if a["kind"] != "MonitoredValidator" || body["alertname"] != "ValidatorUnreachable" {
                continue;
            }
            let key = (a["fingerprint"].to_string(), a["startsAt"].to_string());
            out.entry(key)
                .or_default()
                .push((status.clone(), a["toldAt"].to_string()));
        }
    }
    out
}

/// The `RemediationSucceeded` notifications the webhook channel received, by the action's
/// token (named in the detail): each distinct notification's toldAt.
fn healed_told(alerts: &Receiver) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for q in alerts.requests() {
        let body: Value = serde_json::from_slice(&q.body).unwrap_or_default();
        if body["alertname"] != "RemediationSucceeded" || body["status"] != "firing" {
            continue;
        }
        for a in body["alerts"].as_array().into_iter().flatten() {
            let detail = a["detail"].as_str().unwrap_or_default();
            let token = detail
                .split_once("token ")
                .and_then(|(_, rest)| rest.split_once(')'))
                .map(|(t, _)| t.to_string())
                .unwrap_or_default();
            let told = out.entry(token).or_default();
            let at = a["toldAt"].to_string();
            if !told.contains(&at) {
                told.push(at);
            }
        }
    }
    out
}

/// The hour of the clock a time falls in (the advisor's call budget is per clock hour).
fn hour_now() -> i64 {
    jiff::Timestamp::now().as_second() / 3600
}

#[test]
fn fifty_sigkills_during_healing_and_archiving_never_act_twice_or_lose_a_run() {
    let w = World::new("chaos-kill", 10, &[]);
    let rx = Receiver::start();
    let alerts = Receiver::start();
    let llm = LlmServer::start(Flavor::Anthropic);
    w.secret("llm", &[("key", "sk-chaos-1")]);
    let dir = std::env::temp_dir().join(format!("vigil-archive-{}", w.ns));
    let _ = std::fs::remove_dir_all(&dir);
    // Alerts to a webhook, never repeated inside the test (1 h); an LLM advisor allowed 3
    // calls an hour, which ten validators dying over and over want far more of.
    apply_ok(
        w.c,
        &w.ns,
        &format!(
            "apiVersion: vigil.dev/v1alpha1\nkind: MonitorPolicy\nmetadata:\n  name: heal\nspec:\n  probe: {{interval: 1s, timeout: 800ms, failureThreshold: 2, successThreshold: 1}}\n  health: {{minPeers: 1}}\n  remediation: {{action: webhook, cooldown: 2s, maxCooldown: 4s, maxAttempts: 1000, maxUnhealthy: '100%', maxConcurrent: 10}}\n  advisor: {{provider: anthropic, model: m, baseUrl: '{}', apiKeySecretRef: {{name: llm, key: key}}, budget: {{callsPerHour: 3}}}}\n  alerts:\n    groupWait: 1s\n    flapDamping: 2s\n    channels: [{{name: hook, webhook: {{url: '{}'}}}}]\n    rules: [{{channels: [hook], repeatInterval: 1h}}, {{alerts: [RemediationSucceeded], minSeverity: info, channels: [hook]}}]\n",
            llm.base_url, alerts.url
        ),
    );
    let first_hour = hour_now();
    validators(&w, 10, &rx);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("chaos seed {seed}");
    let mut rng = Rng(seed);
    // Two replicas: one leads, one stands by.
    let mut ops = [
        Operator::start(w.c, &w.ns, "a", &[]),
        Operator::start(w.c, &w.ns, "b", &[]),
    ];
    ops[0].wait_ready(T);
    ops[1].wait_ready(T);
    let mut runs = Vec::new();
    let mut first_seen: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    let mut kills = 0;
    for round in 0..50 {
        if round % 3 == 0 {
            let name = format!("r{round}");
            apply_ok(w.c, &w.ns, &small_run(&name, &dir));
            runs.push(name);
        }
        w.sim.fault(round % 10, "die");
        w.sim.recover((round + 5) % 10);
        std::thread::sleep(Duration::from_millis(300 + rng.below(2200)));
        for (name, id) in bundles(&dir) {
            first_seen.entry(name).or_insert(id);
        }
        let leader = ops
            .iter()
            .position(|o| o.metric("vigil_leader") == Some(1.0));
        let victim = match leader {
            Some(l) if rng.below(3) > 0 => l,
            _ => rng.below(2) as usize,
        };
        ops[victim].signal("KILL");
        ops[victim]
            .wait_exit(Duration::from_secs(10))
            .expect("SIGKILL ends it");
        kills += 1;
        // Every tenth round the leader stays down until the standby has taken over.
        if round % 10 == 9 && Some(victim) == leader {
            ops[1 - victim].wait_leader(T);
        }
        let identity = ops[victim].identity.clone();
        ops[victim] = Operator::start(w.c, &w.ns, &identity, &[]);
    }
    assert_eq!(kills, 50);
    let llm_calls = llm.count();
    let hours = hour_now() - first_hour + 1;
    w.sim.recover_all();

    // Settle: every run archived and deleted, every node healthy again.
    eventually(
        Duration::from_secs(180),
        "every run archived and deleted",
        || {
            for (name, id) in bundles(&dir) {
                first_seen.entry(name).or_insert(id);
            }
            let left =
                w.c.kubectl_json(&["get", "pipelineruns", "-n", &w.ns, "-o", "json"]);
            left["items"].as_array().unwrap().is_empty().then_some(())
        },
    );
    eventually(T, "every validator Ready=True", || {
        let v = verdicts(&w);
        (v.len() == 10 && v.values().all(|(s, _)| s == "True")).then_some(())
    });

    // No run deleted unarchived: each has its bundle, and the bundle verifies.
    let now = bundles(&dir);
    for run in &runs {
        let bundle = now
            .keys()
            .find(|b| b.starts_with(&format!("{run}-")))
            .unwrap_or_else(|| {
                panic!("run {run} was deleted without an archive; bundles: {now:?}")
            });
        let path = dir.join(&w.ns).join(bundle);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["archive", "verify"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{bundle}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    assert_eq!(now.len(), runs.len(), "one bundle per run: {now:?}");
    // No run archived twice: a bundle, once written, was never written again.
    for (name, id) in &now {
        assert_eq!(first_seen.get(name), Some(id), "{name} was written twice");
    }
    // No remediation ran twice: every webhook call carries its own attempt's token, and
    // no validator was called more often than it recorded attempts.
    let reqs = rx.requests();
    let mut tokens: Vec<String> = reqs
        .iter()
        .map(|r| r.header("x-vigil-token").unwrap_or_default().to_string())
        .collect();
    let total = tokens.len();
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), total, "an attempt's token was called twice");
    assert!(total > 0, "no remediation ran at all");
    // The advisor's spend lives in status: fifty restarts never reset its budget, and no
    // call goes out that was not recorded first.
    assert!(
        llm_calls as i64 <= 3 * hours,
        "{llm_calls} LLM calls in {hours} clock hour(s) with a budget of 3 an hour"
    );
    if hours == 1 {
        let spend = get_json(w.c, &w.ns, "mpol", "heal").unwrap()["status"]["advisorSpend"].clone();
        let recorded = spend["callsThisHour"].as_u64().unwrap_or(0) as usize;
        assert!(
            llm_calls <= recorded,
            "{llm_calls} calls, {recorded} recorded: {spend}"
        );
    }

    // Alerts: every validator's records resolved and confirmed; each episode told once
    // when it started and once when it ended (a redelivery after a kill is the same
    // notification: same fingerprint, status and toldAt), none lost.
    eventually(T, "every validator alert resolved and delivered", || {
        let all: Value = w.c.kubectl_json(&["get", "mv", "-n", &w.ns, "-o", "json"]);
        let open: Vec<Value> = all["items"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|v| {
                v["status"]["alerts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter(|r| {
                r["resolvedAt"].is_null()
                    || r["sent"]
                        .as_array()
                        .is_some_and(|s| s.iter().any(|s| s["pending"] == true))
            })
            .collect();
        open.is_empty().then_some(())
    });
    let eps = episodes(&alerts);
    assert!(!eps.is_empty(), "no validator alert was told at all");
    for (key, told) in &eps {
        let mut distinct: Vec<&(String, String)> = Vec::new();
        for t in told {
            if !distinct.contains(&t) {
                distinct.push(t);
            }
        }
        let states: Vec<&str> = distinct.iter().map(|(s, _)| s.as_str()).collect();
        assert!(
            states == ["firing", "resolved"] || states == ["resolved"],
            "episode {key:?}: told {told:?}"
        );
    }
    // Each validator's last recovery was told, once (the event is read from status: a kill
    // between the recovery and its alert record loses nothing), and no recovery was told
    // twice (a redelivery is the same notification).
    let last_recoveries = || -> Vec<(String, String)> {
        let all: Value = w.c.kubectl_json(&["get", "mv", "-n", &w.ns, "-o", "json"]);
        let mut out = Vec::new();
        for v in all["items"].as_array().unwrap() {
            let history = v["status"]["remediation"]["history"].as_array().cloned();
            let last = history
                .unwrap_or_default()
                .into_iter()
                .rev()
                .find(|h| h["recovered"] == true);
            if let Some(h) = last {
                let name = v["metadata"]["name"].as_str().unwrap_or_default();
                out.push((name.to_string(), h["token"].as_str().unwrap().to_string()));
            }
        }
        out
    };
    let recoveries = eventually(T, "each validator's last recovery told", || {
        let last = last_recoveries();
        let healed = healed_told(&alerts);
        last.iter()
            .all(|(_, token)| healed.contains_key(token))
            .then_some(last)
    });
    assert!(!recoveries.is_empty(), "no action healed a node");
    let healed = healed_told(&alerts);
    for (token, told) in &healed {
        assert_eq!(
            told.len(),
            1,
            "the recovery after {token} was told {told:?}"
        );
    }
    let redelivered: usize = eps.values().map(|t| t.len()).sum::<usize>()
        - eps
            .values()
            .map(|t| {
                let mut d = t.clone();
                d.sort();
                d.dedup();
                d.len()
            })
            .sum::<usize>();
    eprintln!(
        "chaos: {kills} SIGKILLs, {} runs archived once each, {total} remediations each run once, {} alert episodes told once each ({redelivered} redelivered after a kill), {} recoveries told once each, {llm_calls} LLM calls",
        runs.len(),
        eps.len(),
        healed.len()
    );
    for (name, n) in calls(&rx) {
        let rem = get_json(w.c, &w.ns, "mv", &name).unwrap()["status"]["remediation"].clone();
        let recorded = rem["totalActions"].as_u64().unwrap_or(0) as usize;
        assert!(
            n <= recorded,
            "{name}: {n} calls, {recorded} recorded: {rem}"
        );
        assert!(
            rem.get("inFlight").is_none(),
            "{name}: left in flight: {rem}"
        );
    }
}
