//! PipelineRuns end to end: steps run as real Jobs (the real Job controller of
//! kube-controller-manager; kwok moves each pod to Succeeded or Failed with the exit code of
//! its `vigil-test/exit-code` annotation and serves its log), the operator as a subprocess
//! with exactly the chart's RBAC, archives written to a directory or to a real S3 server
//! (SeaweedFS), read back and verified before anything is deleted.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::cluster::{self, Cluster};
use support::operator::Operator;
use support::s3::SeaweedFs;
use support::tamper::Tamper;
use support::{apply_ok, condition, events_for, eventually, get_json, install_crds};

const T: Duration = Duration::from_secs(60);

/// One step: name, runAfter, exit code (None: runs until stopped), seconds it runs,
/// its own timeout.
struct S<'a> {
    name: &'a str,
    after: &'a [&'a str],
    exit: Option<i32>,
    secs: u32,
    timeout: Option<&'a str>,
}

fn s<'a>(name: &'a str, after: &'a [&'a str], exit: Option<i32>) -> S<'a> {
    S {
        name,
        after,
        exit,
        secs: 1,
        timeout: None,
    }
}

fn run_yaml(name: &str, steps: &[S], extra: &str) -> String {
    let mut y = format!(
        "apiVersion: vigil.dev/v1alpha1\nkind: PipelineRun\nmetadata:\n  name: {name}\nspec:\n{extra}  steps:\n"
    );
    for st in steps {
        let after = st
            .after
            .iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let ann = match st.exit {
            Some(code) => format!(
                "{{vigil-test/exit-code: \"{code}\", vigil-test/run-seconds: \"{}\"}}",
                st.secs
            ),
            None => "{}".into(),
        };
        let timeout = st
            .timeout
            .map(|t| format!("    timeout: {t}\n"))
            .unwrap_or_default();
        y.push_str(&format!(
            "  - name: {:?}\n    runAfter: [{after}]\n{timeout}    template:\n      backoffLimit: 0\n      template:\n        metadata:\n          annotations: {ann}\n        spec:\n          restartPolicy: Never\n          containers: [{{name: main, image: busybox}}]\n",
            st.name
        ));
    }
    y
}

struct World {
    c: &'static Cluster,
    ns: String,
    op: Operator,
}

fn world(prefix: &str) -> World {
    let c = cluster::shared();
    install_crds(c);
    let ns = c.namespace(prefix);
    let mut op = Operator::start(c, &ns, "runs", &[]);
    op.wait_ready(T);
    World { c, ns, op }
}

impl World {
    fn run(&self, name: &str) -> Option<Value> {
        get_json(self.c, &self.ns, "prun", name)
    }

    /// Waits for a condition of run `name`; returns it.
    fn wait(&self, name: &str, type_: &str, status: &str, reason: &str) -> Value {
        let mut last = Value::Null;
        let start = Instant::now();
        while start.elapsed() < T {
            if let Some(cond) = self.run(name).and_then(|r| condition(&r, type_)) {
                if cond["status"] == status && cond["reason"] == reason {
                    return cond;
                }
                last = cond;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "run {name}: {type_} never became {status}/{reason}; last {last}\n{}\noperator log:\n{}",
            serde_json::to_string_pretty(&self.run(name)).unwrap_or_default(),
            tail(&self.op.log_text())
        )
    }

    fn step<'a>(&self, run: &'a Value, step: &str) -> &'a Value {
        run["status"]["steps"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == step))
            .unwrap_or_else(|| panic!("no step {step} in {run}"))
    }

    fn jobs(&self, run: &str) -> Vec<String> {
        let out = self.c.kubectl_ok(&[
            "get",
            "jobs",
            "-n",
            &self.ns,
            "-l",
            &format!("vigil.dev/pipelinerun={run}"),
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ]);
        out.split_whitespace().map(String::from).collect()
    }

    fn has_event(&self, name: &str, type_: &str, reason: &str) -> bool {
        events_for(self.c, &self.ns, name)
            .iter()
            .any(|(t, r, _)| t == type_ && r == reason)
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn time(v: &Value) -> jiff::Timestamp {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap()
}

/// `vigil archive verify` on a location: (exit code, stdout).
fn verify_cli(location: &str, env: &[(&str, &str)]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["archive", "verify", location])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The files of a .tar.gz bundle: name → content.
fn untar(path: &Path) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let f = std::fs::File::open(path).unwrap();
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut out = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut b = Vec::new();
        e.read_to_end(&mut b).unwrap();
        out.push((name, b));
    }
    out
}

fn archive_dir(ns: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vigil-archive-{ns}"));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn a_dag_runs_in_order_and_in_parallel_then_is_archived_verified_and_cleaned_up() {
    let w = world("run-ok");
    let dir = archive_dir(&w.ns);
    let mut b = s("b", &["a"], Some(0));
    b.secs = 3;
    let mut c = s("c", &["a"], Some(0));
    c.secs = 3;
    let yaml = run_yaml(
        "nightly",
        &[s("a", &[], Some(0)), b, c, s("d", &["b", "c"], Some(0))],
        &format!(
            "  archive:\n    filesystem: {{path: {}}}\n    deleteJobsAfterArchive: true\n    ttlAfterArchive: 4s\n",
            dir.display()
        ),
    );
    // Step containers serve the control plane's shared pod log file; this test's own line
    // must come back in the bundle (other tests append theirs too).
    let log_line = format!("step output of {}", w.ns);
    w.c.append_pod_log(None, &[&log_line]);
    apply_ok(w.c, &w.ns, &yaml);
    w.wait("nightly", "Succeeded", "True", "Succeeded");
    let run = w.run("nightly").unwrap();
    assert_eq!(run["status"]["progress"], "4/4");
    let (a, b, c, d) = (
        w.step(&run, "a"),
        w.step(&run, "b"),
        w.step(&run, "c"),
        w.step(&run, "d"),
    );
    for st in [a, b, c, d] {
        assert_eq!(st["phase"], "Succeeded", "{st}");
        assert_eq!(st["exitCode"], 0, "{st}");
    }
    // Order: b and c after a; d after both. Parallel: b and c overlap.
    assert!(time(&b["startTime"]) >= time(&a["completionTime"]));
    assert!(time(&c["startTime"]) >= time(&a["completionTime"]));
    assert!(time(&d["startTime"]) >= time(&b["completionTime"]));
    assert!(time(&d["startTime"]) >= time(&c["completionTime"]));
    assert!(
        time(&b["startTime"]) < time(&c["completionTime"])
            && time(&c["startTime"]) < time(&b["completionTime"]),
        "b and c ran at the same time: {b} {c}"
    );
    assert!(w.has_event("nightly", "Normal", "StepSucceeded"));

    let archived = w.wait("nightly", "Archived", "True", "Verified");
    let run = w.run("nightly").unwrap();
    let a = &run["status"]["archive"];
    let location = a["location"].as_str().unwrap().to_string();
    let path = PathBuf::from(
        location
            .strip_prefix("file://")
            .expect("a file:// location"),
    );
    assert!(path.starts_with(&dir), "{location}");
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(a["size"], bytes.len() as u64);
    assert_eq!(a["sha256"], vigil::archive::sha256_hex(&bytes));
    assert_eq!(a["attempts"], 1);
    assert!(
        archived["message"]
            .as_str()
            .unwrap()
            .contains("every SHA-256 matched")
    );

    // What the bundle holds: report, manifests, real logs through the API, Events, manifest.
    let files = untar(&path);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "report.json",
        "report.md",
        "manifests/pipelinerun.json",
        "events.json",
        "SHA256SUMS",
    ] {
        assert!(names.contains(&want), "{want} missing: {names:?}");
    }
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("manifests/jobs/"))
            .count(),
        4
    );
    let logs: Vec<&(String, Vec<u8>)> = files
        .iter()
        .filter(|(n, _)| n.starts_with("logs/a/"))
        .collect();
    assert_eq!(logs.len(), 1, "{names:?}");
    assert!(
        String::from_utf8_lossy(&logs[0].1).contains(&log_line),
        "the log has the pod's real bytes"
    );
    let report: Value =
        serde_json::from_slice(&files.iter().find(|(n, _)| n == "report.json").unwrap().1).unwrap();
    assert_eq!(report["outcome"]["reason"], "Succeeded");
    assert_eq!(report["steps"].as_array().unwrap().len(), 4);
    let events =
        String::from_utf8_lossy(&files.iter().find(|(n, _)| n == "events.json").unwrap().1)
            .into_owned();
    assert!(
        events.contains("StepSucceeded"),
        "the run's own Events are archived"
    );

    let (code, out) = verify_cli(&path.display().to_string(), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("report.json"), "{out}");

    // Only after verification: the Jobs go, then the run after its TTL.
    eventually(T, "the run's Jobs deleted", || {
        w.jobs("nightly").is_empty().then_some(())
    });
    eventually(T, "the run deleted after ttlAfterArchive", || {
        w.run("nightly").is_none().then_some(())
    });
    assert!(path.exists(), "the archive stays");
}

#[test]
fn a_failing_step_fails_the_run_fast_and_it_is_still_archived() {
    let w = world("run-fail");
    let dir = archive_dir(&w.ns);
    let mut a = s("a", &[], Some(3));
    a.secs = 2;
    let yaml = run_yaml(
        "broken",
        &[a, s("forever", &[], None), s("after-a", &["a"], Some(0))],
        &format!("  archive:\n    filesystem: {{path: {}}}\n", dir.display()),
    );
    apply_ok(w.c, &w.ns, &yaml);
    let cond = w.wait("broken", "Succeeded", "False", "Failed");
    assert!(
        cond["message"].as_str().unwrap().contains("Step a failed"),
        "{cond}"
    );
    let run = w.run("broken").unwrap();
    assert_eq!(w.step(&run, "a")["phase"], "Failed");
    assert_eq!(w.step(&run, "a")["exitCode"], 3);
    assert_eq!(w.step(&run, "forever")["phase"], "Cancelled");
    assert_eq!(w.step(&run, "after-a")["phase"], "Skipped");
    assert!(
        w.step(&run, "after-a")["message"]
            .as_str()
            .unwrap()
            .contains("step a failed"),
        "{run}"
    );
    // The running step's Job is stopped.
    eventually(T, "the cancelled step's Job gone", || {
        (!w.jobs("broken").iter().any(|j| j.contains("forever"))).then_some(())
    });
    w.wait("broken", "Archived", "True", "Verified");
    assert!(w.has_event("broken", "Warning", "StepFailed"));
}

#[test]
fn timeouts_cancel_stalls_and_heartbeats() {
    let w = world("run-time");
    let mut slow = s("slow", &[], None);
    slow.timeout = Some("2s");
    apply_ok(w.c, &w.ns, &run_yaml("step-timeout", &[slow], ""));
    apply_ok(
        w.c,
        &w.ns,
        &run_yaml("run-timeout", &[s("x", &[], None)], "  timeout: 3s\n"),
    );
    apply_ok(
        w.c,
        &w.ns,
        &run_yaml(
            "cancelled",
            &[s("x", &[], None), s("y", &["x"], Some(0))],
            "",
        ),
    );
    apply_ok(
        w.c,
        &w.ns,
        &run_yaml("stalled", &[s("x", &[], None)], "  stallTimeout: 3s\n"),
    );
    apply_ok(
        w.c,
        &w.ns,
        &run_yaml("alive", &[s("x", &[], None)], "  stallTimeout: 4s\n"),
    );

    let cond = w.wait("step-timeout", "Succeeded", "False", "Failed");
    assert!(
        cond["message"].as_str().unwrap().contains("timed out"),
        "{cond}"
    );
    let run = w.run("step-timeout").unwrap();
    assert_eq!(w.step(&run, "slow")["phase"], "TimedOut");

    w.wait("run-timeout", "Succeeded", "False", "TimedOut");
    let run = w.run("run-timeout").unwrap();
    assert_eq!(w.step(&run, "x")["phase"], "TimedOut");

    eventually(T, "cancelled's first Job", || {
        (!w.jobs("cancelled").is_empty()).then_some(())
    });
    w.c.kubectl_ok(&[
        "patch",
        "prun",
        "cancelled",
        "-n",
        &w.ns,
        "--type=merge",
        "-p",
        "{\"spec\":{\"cancel\":true}}",
    ]);
    w.wait("cancelled", "Succeeded", "False", "Cancelled");
    let run = w.run("cancelled").unwrap();
    assert_eq!(w.step(&run, "x")["phase"], "Cancelled");
    assert_eq!(w.step(&run, "y")["phase"], "Skipped");
    eventually(T, "cancelled's Job deleted", || {
        w.jobs("cancelled").is_empty().then_some(())
    });

    // Stalled is Unknown (it may go on), not TimedOut.
    w.wait("stalled", "Succeeded", "Unknown", "Stalled");
    assert!(
        w.has_event("stalled", "Normal", "Stalled") || w.has_event("stalled", "Warning", "Stalled")
    );

    // A step that heartbeats on its Job every second is alive, for longer than its stall
    // timeout; when it stops, it stalls.
    let job = eventually(T, "alive's Job", || w.jobs("alive").into_iter().next());
    let until = Instant::now() + Duration::from_secs(10);
    let mut beat = 0;
    while Instant::now() < until {
        beat += 1;
        w.c.kubectl_ok(&[
            "annotate",
            "--overwrite",
            "job",
            &job,
            "-n",
            &w.ns,
            &format!("vigil.dev/heartbeat={beat}"),
        ]);
        std::thread::sleep(Duration::from_secs(1));
        let c = condition(&w.run("alive").unwrap(), "Succeeded").unwrap();
        assert_eq!(
            c["reason"], "Running",
            "a heartbeating step is not stalled: {c}"
        );
    }
    w.wait("alive", "Succeeded", "Unknown", "Stalled");
}

/// A run whose archive goes to a real S3 server.
fn s3_run(name: &str, s3: &SeaweedFs, extra: &str) -> String {
    run_yaml(
        name,
        &[s("a", &[], Some(0)), s("b", &["a"], Some(0))],
        &format!(
            "  archive:\n    s3: {{bucket: {}, prefix: runs/, endpoint: '{}', credentialsSecret: s3}}\n{extra}",
            s3.bucket, s3.endpoint
        ),
    )
}

fn s3_secret(w: &World, s3: &SeaweedFs) {
    w.c.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "s3",
        "-n",
        &w.ns,
        &format!("--from-literal=accessKeyId={}", s3.access_key),
        &format!("--from-literal=secretAccessKey={}", s3.secret_key),
    ]);
}

#[test]
fn an_s3_outage_is_retried_and_an_unarchived_run_is_never_deleted() {
    let w = world("run-s3");
    let mut s3 = SeaweedFs::start();
    s3_secret(&w, &s3);
    s3.stop();
    apply_ok(
        w.c,
        &w.ns,
        &s3_run("outage", &s3, "    deleteJobsAfterArchive: true\n"),
    );
    apply_ok(w.c, &w.ns, &s3_run("given-up", &s3, ""));
    w.wait("outage", "Succeeded", "True", "Succeeded");
    let failed = w.wait("outage", "Archived", "False", "UploadFailed");
    let msg = failed["message"].as_str().unwrap();
    assert!(msg.contains("nothing is deleted"), "{msg}");
    assert!(
        !msg.contains(&s3.secret_key) && !msg.contains(&s3.access_key),
        "{msg}"
    );
    eventually(T, "a second attempt", || {
        let a = w.run("outage")?["status"]["archive"]["attempts"].as_u64()?;
        (a >= 2).then_some(())
    });
    assert_eq!(
        w.jobs("outage").len(),
        2,
        "nothing deleted before a verified archive"
    );

    // Deleting an unarchived run waits for its archive...
    w.c.kubectl_ok(&["delete", "prun", "outage", "-n", &w.ns, "--wait=false"]);
    std::thread::sleep(Duration::from_secs(3));
    let held = w.run("outage").expect("the finalizer holds the run");
    assert!(held["metadata"]["deletionTimestamp"].is_string());
    // ... unless a person says to let it go.
    w.wait("given-up", "Archived", "False", "UploadFailed");
    w.c.kubectl_ok(&[
        "annotate",
        "prun",
        "given-up",
        "-n",
        &w.ns,
        "vigil.dev/skip-archive=bucket decommissioned",
    ]);
    w.c.kubectl_ok(&["delete", "prun", "given-up", "-n", &w.ns, "--wait=false"]);
    eventually(T, "the skipped run goes", || {
        w.run("given-up").is_none().then_some(())
    });
    assert!(w.has_event("given-up", "Warning", "ArchiveSkipped"));

    // The store comes back: archived, verified, then the Jobs and the run go.
    s3.restart();
    eventually(
        Duration::from_secs(120),
        "the held run archived and gone",
        || w.run("outage").is_none().then_some(()),
    );
    let keys = s3.list("runs/");
    assert_eq!(keys.len(), 1, "one archive: {keys:?}");
    assert!(
        keys[0].starts_with(&format!("runs/{}/outage-", w.ns)),
        "<prefix><namespace>/<run>-<uid>.tar.gz: {keys:?}"
    );
    let env = [
        ("AWS_ACCESS_KEY_ID", s3.access_key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_key.as_str()),
        ("AWS_ENDPOINT_URL", s3.endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
    ];
    let location = format!("s3://{}/{}", s3.bucket, keys[0]);
    let (code, out) = verify_cli(&location, &env);
    assert_eq!(code, 0, "{out}");

    // A tampered copy fails `vigil archive verify`.
    let mut bytes = s3.get(&keys[0]).unwrap();
    let tampered = tamper(&mut bytes);
    s3.put(&keys[0], &tampered);
    let (code, out) = verify_cli(&location, &env);
    assert_ne!(code, 0, "{out}");
}

/// The same bundle with one file's content changed (a valid .tar.gz, so that the manifest
/// check is what catches it).
fn tamper(bytes: &mut [u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    let mut out = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let mut h = e.header().clone();
        let mut b = Vec::new();
        e.read_to_end(&mut b).unwrap();
        if e.path().unwrap().to_string_lossy() == "report.md" {
            b.extend_from_slice(b"forged\n");
            h.set_size(b.len() as u64);
            h.set_cksum();
        }
        out.append(&h, &b[..]).unwrap();
    }
    let mut gz = out.into_inner().unwrap();
    gz.flush().unwrap();
    gz.finish().unwrap()
}

#[test]
fn a_sigkill_between_archive_and_cleanup_loses_nothing_and_archives_once() {
    let c = cluster::shared();
    install_crds(c);
    let ns = c.namespace("run-kill");
    let s3 = SeaweedFs::start();
    let mut op = Operator::start(c, &ns, "first", &[]);
    op.wait_ready(T);
    let w = World {
        c,
        ns: ns.clone(),
        op,
    };
    s3_secret(&w, &s3);
    apply_ok(
        c,
        &ns,
        &s3_run("killed", &s3, "    deleteJobsAfterArchive: true\n"),
    );
    // Kill the operator as soon as the archive is recorded as under way.
    eventually(T, "the archive under way", || {
        let cond = condition(&w.run("killed")?, "Archived")?;
        (cond["reason"] == "Archiving" || cond["reason"] == "Verified").then_some(())
    });
    let World { c, ns, mut op } = w;
    op.signal("KILL");
    op.wait_exit(Duration::from_secs(10));
    let mut op = Operator::start(c, &ns, "second", &[]);
    op.wait_ready(T);
    let w = World { c, ns, op };
    w.wait("killed", "Archived", "True", "Verified");
    eventually(T, "Jobs deleted after the verified archive", || {
        w.jobs("killed").is_empty().then_some(())
    });
    let run = w.run("killed").unwrap();
    let attempts = run["status"]["archive"]["attempts"].as_u64().unwrap();
    assert!(attempts <= 2, "{run}");
    assert_eq!(s3.list("runs/").len(), 1, "one archive, not two");
    let sha = run["status"]["archive"]["sha256"].as_str().unwrap();
    let key = &s3.list("runs/")[0];
    assert_eq!(vigil::archive::sha256_hex(&s3.get(key).unwrap()), sha);
}

#[test]
fn an_archive_that_reads_back_wrong_is_never_trusted_and_nothing_is_deleted() {
    let w = world("run-tamper");
    let s3 = SeaweedFs::start();
    s3_secret(&w, &s3);
    // The store's answers pass through a proxy that corrupts what is read back.
    let proxy = Tamper::start(s3.endpoint.trim_start_matches("http://"));
    proxy.corrupt(true);
    let yaml = run_yaml(
        "tampered",
        &[s("a", &[], Some(0))],
        &format!(
            "  archive:\n    s3: {{bucket: {}, prefix: runs/, endpoint: '{}', credentialsSecret: s3}}\n    deleteJobsAfterArchive: true\n",
            s3.bucket, proxy.url
        ),
    );
    apply_ok(w.c, &w.ns, &yaml);
    w.wait("tampered", "Succeeded", "True", "Succeeded");
    let cond = w.wait("tampered", "Archived", "False", "ChecksumMismatch");
    assert!(
        cond["message"]
            .as_str()
            .unwrap()
            .contains("nothing is deleted"),
        "{cond}"
    );
    assert!(proxy.corrupted() >= 1);
    assert!(w.has_event("tampered", "Warning", "ChecksumMismatch"));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        w.jobs("tampered").len(),
        1,
        "nothing deleted after a mismatch"
    );
    // The path heals: the object that was written is read back right, and trusted without
    // writing it again.
    proxy.corrupt(false);
    let ok = w.wait("tampered", "Archived", "True", "Verified");
    assert!(
        ok["message"]
            .as_str()
            .unwrap()
            .contains("not written again"),
        "{ok}"
    );
    eventually(T, "Jobs deleted after the verified archive", || {
        w.jobs("tampered").is_empty().then_some(())
    });
    assert_eq!(s3.list("runs/").len(), 1);
}
