//! A real Kubernetes control plane for integration tests: etcd, kube-apiserver (RBAC on),
//! kube-controller-manager, kube-scheduler and kwok fake nodes, all on 127.0.0.1.
//!
//! [`shared`] returns one control plane per test binary. If `VIGIL_TEST_KUBECONFIG` is set
//! (e.g. by `scripts/test.sh`, after `scripts/control-plane.sh start`), that cluster is used;
//! otherwise this module runs `scripts/control-plane.sh run --watch-pid <this process>`, which
//! tears the cluster down as soon as the test binary exits, however it exits. Tests share the
//! cluster, so each should work in its own [`Cluster::namespace`].
//!
//! Binaries come from `VIGIL_TEST_BIN_DIR` or `scripts/k8s-bins.sh` (built on first use, then
//! cached per user).
#![allow(dead_code)]

use std::hash::{BuildHasher, RandomState};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Generous: the first start on a machine may build Kubernetes from source.
const START_TIMEOUT: Duration = Duration::from_secs(40 * 60);

/// A running control plane.
#[derive(Debug)]
pub struct Cluster {
    /// Admin kubeconfig (`system:masters`, CA and client certificate embedded).
    pub kubeconfig: PathBuf,
    /// Directory with `kubectl`, `helm`, `kube-apiserver`, ... of the matching version.
    pub bin_dir: PathBuf,
}

/// The control plane shared by all tests of this test binary, started on first use.
pub fn shared() -> &'static Cluster {
    // A Result, so that after a failed start the other tests fail fast with the same
    // message instead of each trying again.
    static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();
    match SHARED.get_or_init(init) {
        Ok(c) => c,
        Err(e) => panic!("no test control plane: {e}"),
    }
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn init() -> Result<Cluster, String> {
    let bin_dir = find_bin_dir()?;
    let kubeconfig = match env_path("VIGIL_TEST_KUBECONFIG") {
        Some(k) if k.is_file() => k,
        Some(k) => {
            return Err(format!(
                "VIGIL_TEST_KUBECONFIG={} is not a file",
                k.display()
            ));
        }
        None => start_control_plane()?,
    };
    Ok(Cluster {
        kubeconfig,
        bin_dir,
    })
}

fn find_bin_dir() -> Result<PathBuf, String> {
    let dir = match env_path("VIGIL_TEST_BIN_DIR") {
        Some(d) => d,
        None => {
            let script = repo_root().join("scripts/k8s-bins.sh");
            // stderr is inherited: a first build reports its progress there.
            let out = Command::new(&script)
                .stdin(Stdio::null())
                .stderr(Stdio::inherit())
                .output()
                .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
            if !out.status.success() {
                return Err(format!("{} failed ({})", script.display(), out.status));
            }
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
    };
    if !dir.join("kubectl").is_file() {
        return Err(format!(
            "no kubectl in the Kubernetes bin dir {}",
            dir.display()
        ));
    }
    Ok(dir)
}

/// Runs `scripts/control-plane.sh run` in the background and waits for DIR/ready.
fn start_control_plane() -> Result<PathBuf, String> {
    // The script removes the directory on teardown, so it must outlive this TempDir.
    let dir = tempfile::Builder::new()
        .prefix("vigil-cp-")
        .tempdir()
        .map_err(|e| format!("cannot create a temp dir: {e}"))?
        .keep();
    let script = repo_root().join("scripts/control-plane.sh");
    progress(&format!(
        "starting a local control plane in {}",
        dir.display()
    ));
    let mut child = Command::new(&script)
        .arg("run")
        .arg("--dir")
        .arg(&dir)
        .arg("--watch-pid")
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // Piped rather than inherited: the script outlives this process by a moment, and
        // must not hold the test runner's output open.
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;

    // Stream the script's progress lines.
    let stderr = child.stderr.take().expect("stderr is piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            match line {
                Ok(line) => progress(&line),
                Err(_) => break,
            }
        }
    });

    let ready = dir.join("ready");
    let start = Instant::now();
    loop {
        // `ready` is renamed into place, so it is never seen half-written.
        if let Ok(kubeconfig) = std::fs::read_to_string(&ready) {
            progress(&format!(
                "control plane ready after {:.1?}",
                start.elapsed()
            ));
            return Ok(PathBuf::from(kubeconfig.trim()));
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                return Err(format!(
                    "{} exited ({status}) before the cluster was ready; see the output above and {}",
                    script.display(),
                    dir.join("logs").display()
                ));
            }
            Ok(None) => {}
            Err(e) => return Err(format!("cannot wait for {}: {e}", script.display())),
        }
        if start.elapsed() > START_TIMEOUT {
            // SIGKILL: the script's reaper process still removes all components.
            let _ = child.kill();
            return Err(format!(
                "the control plane was not ready after {START_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // `child` is dropped without waiting: the script keeps running until this process exits.
}

/// Writes a line to the real stderr. (`eprintln!` would be captured by the test harness,
/// also in threads spawned from a test, and shown only if the test fails.)
fn progress(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

impl Cluster {
    /// A `kubectl` command for this cluster (admin credentials); add arguments and run it.
    pub fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.bin_dir.join("kubectl"));
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `kubectl ARGS` and returns its output, successful or not.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_command(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run kubectl {args:?}: {e}"))
    }

    /// Runs `kubectl ARGS`, panics with its stderr if it fails, and returns its stdout.
    #[track_caller]
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert_success("kubectl", args, &out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `kubectl ARGS` with `input` on stdin (e.g. `apply -f -`).
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .kubectl_command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run kubectl {args:?}: {e}"));
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let input = input.to_owned();
        // Written from a thread: a large input must not deadlock against unread output.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("cannot wait for kubectl {args:?}: {e}"));
        let _ = writer.join();
        out
    }

    /// Runs `kubectl ARGS -o json` (panics on failure) and parses the result.
    #[track_caller]
    pub fn kubectl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.kubectl_ok(&all);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("kubectl {all:?}: bad JSON ({e}): {out}"))
    }

    /// Path of the `helm` binary built alongside the Kubernetes binaries.
    pub fn helm_path(&self) -> PathBuf {
        self.bin_dir.join("helm")
    }

    /// Runs `helm --kubeconfig <this cluster> ARGS` and returns its output.
    pub fn helm(&self, args: &[&str]) -> Output {
        Command::new(self.helm_path())
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run helm {args:?}: {e}"))
    }

    /// Appends `lines` (CRI log format, one each) to a pod log file the control plane's kwok
    /// serves through the API: `Some(k)` is the file of containers named `vigil-log-<k>`,
    /// `None` the file of every other container (see scripts/control-plane.sh). Tests share
    /// these files, so a test appends lines with a marker of its own and never truncates.
    #[track_caller]
    pub fn append_pod_log(&self, container_key: Option<u8>, lines: &[&str]) {
        let path = match container_key {
            Some(k) => self
                .kubeconfig
                .with_file_name("pod-logs")
                .join(format!("{k}.log")),
            None => self.kubeconfig.with_file_name("pod.log"),
        };
        let mut text = String::new();
        for line in lines {
            text.push_str(&format!("2026-12-02T00:00:00.000000000Z stdout F {line}\n"));
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (the test control plane serves pod logs from it)",
                    path.display()
                )
            });
    }

    /// Creates a fresh namespace `<prefix>-<n>-<random>` (labelled `vigil-test=true`),
    /// waits until pods can be created in it, and returns its name.
    #[track_caller]
    pub fn namespace(&self, prefix: &str) -> String {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        // RandomState is seeded randomly per process: unique across test binaries and runs
        // that share one cluster.
        let random = RandomState::new().hash_one((std::process::id(), n, nanos)) & 0xff_ffff;
        let name = format!("{}-{n}-{random:06x}", dns_label_prefix(prefix));

        let manifest = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n    vigil-test: \"true\"\n"
        );
        let args = ["create", "-f", "-"];
        let out = self.kubectl_stdin(&args, &manifest);
        assert_success("kubectl", &args, &out);

        // The ServiceAccount admission plugin rejects pods until kube-controller-manager
        // has created the namespace's `default` ServiceAccount.
        let start = Instant::now();
        while !self
            .kubectl(&["get", "serviceaccount", "default", "-n", &name])
            .status
            .success()
        {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "namespace {name}: no default ServiceAccount after 60s (is kube-controller-manager running?)"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        name
    }
}

/// A valid start for a namespace name: lowercase alphanumerics and '-', at most 40 chars.
fn dns_label_prefix(prefix: &str) -> String {
    let mut s = String::new();
    for c in prefix.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            s.push(c);
        } else if !s.is_empty() && !s.ends_with('-') {
            s.push('-');
        }
    }
    s.truncate(40);
    let s = s.trim_end_matches('-');
    if s.is_empty() {
        "test".to_owned()
    } else {
        s.to_owned()
    }
}

#[track_caller]
fn assert_success(program: &str, args: &[&str], out: &Output) {
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout),
    );
}
