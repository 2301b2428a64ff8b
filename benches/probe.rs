//! Scale benchmark of the probing engine: `vigil run` against 1,000 / 5,000 / 10,000
//! simulated Substrate validators (`vigil-sim`) on a real local control plane, and
//! Prometheus blackbox_exporter doing the equivalent JSON-RPC POST probe at the same rate.
//!
//! Run it with `scripts/bench-probe.sh`: the script builds the binaries, starts the control
//! plane and passes their paths here in the environment:
//!
//! - `VIGIL_BENCH_KUBECONFIG`: admin kubeconfig of the control plane (required);
//! - `VIGIL_BENCH_VIGIL_BIN`: the release `vigil` binary (default `target/release/vigil`);
//! - `VIGIL_BENCH_SIM_BIN`: the release `vigil-sim` binary (default: next to `vigil`);
//! - `VIGIL_BENCH_BLACKBOX_BIN`: blackbox_exporter (unset: no comparison);
//! - `VIGIL_BENCH_CP_DIR`: the control plane's directory (optional: apiserver/etcd CPU);
//! - `VIGIL_BENCH_DIR`: where logs and ready files go (default: a temporary directory);
//! - `VIGIL_BENCH_OPERATOR_WRAP`: for profiling, a command that runs the operator, e.g.
//!   `heaptrack` or `perf record -g --` (its output lands in the size's log directory; the
//!   numbers are then those of a profiled operator).
//!
//! Arguments: `--validators 1000,5000,10000`, `--window 60s` (steady-state measurement),
//! `--no-blackbox`. Markdown tables go to stdout, progress to stderr. Every wait has a
//! deadline and fails with a message saying what did not happen; child processes are killed
//! when the bench exits by any path (and by the kernel if the bench itself is killed).

use anyhow::{Context as _, Result, anyhow, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Client, Config, ResourceExt};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::{Instant, sleep, sleep_until};
use vigil::api::{MonitorPolicy, MonitoredValidator};
use vigil::probe::prom;

/// Policy under test: `probe: {interval: 10s, timeout: 5s, failureThreshold: 3, successThreshold: 1}`.
const INTERVAL: Duration = Duration::from_secs(10);
const FAILURE_THRESHOLD: u32 = 3;
const SUCCESS_THRESHOLD: u32 = 1;
/// Nodes per simulator process (the open-file limit is 20,000 per process).
const MAX_NODES_PER_SIM: usize = 3500;
/// Validator creations in flight at once.
const CREATE_CONCURRENCY: usize = 64;
/// Blackbox probe requests in flight at once (the driver's bound).
const BLACKBOX_CONCURRENCY: usize = 256;
/// Wait after all validators are Ready before the steady window opens (one interval: the
/// last first-probes and their Events drain).
const SETTLE: Duration = INTERVAL;
/// Faults are injected over this long, not all at once.
const INJECT_SPREAD: Duration = Duration::from_secs(5);
/// The JSON-RPC call blackbox_exporter POSTs.
const SYSTEM_HEALTH: &str = r#"{"jsonrpc":"2.0","id":1,"method":"system_health","params":[]}"#;
const BLACKBOX_MODULE: &str = "substrate_system_health";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then only say how to run.
    if !argv.iter().any(|a| a == "--bench") {
        self_check();
        eprintln!(
            "benches/probe.rs: helpers ok; this is a scale benchmark, run it with scripts/bench-probe.sh"
        );
        return ExitCode::SUCCESS;
    }
    let args = match Args::parse(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(async move {
        let mut report = Report::default();
        // Children are spawned by this (the main) thread only, so that their parent-death
        // signal fires exactly when the bench goes away.
        let outcome = tokio::select! {
            r = run(&args, &mut report) => r,
            _ = interrupted() => Err(anyhow!("interrupted; stopping every child process")),
        };
        print!("{}", report.render(&args));
        match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("\nbench failed: {e:#}");
                println!("\n**The run did not complete:** {e:#}");
                ExitCode::FAILURE
            }
        }
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    code
}

async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(mut t), Ok(mut i), Ok(mut h)) => {
            tokio::select! { _ = t.recv() => {}, _ = i.recv() => {}, _ = h.recv() => {} }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

// ------------------------------------------------------------------------------- arguments

struct Args {
    sizes: Vec<usize>,
    window: Duration,
    blackbox: bool,
    kubeconfig: PathBuf,
    vigil: PathBuf,
    sim: PathBuf,
    blackbox_bin: Option<PathBuf>,
    cp_dir: Option<PathBuf>,
    dir: PathBuf,
}

impl Args {
    fn parse(argv: &[String]) -> Result<Args> {
        let mut sizes = vec![1000, 5000, 10_000];
        let mut window = Duration::from_secs(60);
        let mut blackbox = true;
        let mut it = argv.iter();
        while let Some(a) = it.next() {
            let (flag, inline) = match a.split_once('=') {
                Some((f, v)) => (f, Some(v.to_string())),
                None => (a.as_str(), None),
            };
            let mut value = |what: &str| -> Result<String> {
                inline
                    .clone()
                    .or_else(|| it.next().cloned())
                    .ok_or_else(|| anyhow!("{what} needs a value"))
            };
            match flag {
                "--bench" => {}
                "--validators" => {
                    sizes = value("--validators")?
                        .split(',')
                        .map(|s| {
                            s.trim()
                                .replace('_', "")
                                .parse::<usize>()
                                .ok()
                                .filter(|n| *n > 0)
                                .ok_or_else(|| {
                                    anyhow!("--validators: {s:?} is not a positive number")
                                })
                        })
                        .collect::<Result<_>>()?;
                }
                "--window" => {
                    let v = value("--window")?;
                    window =
                        vigil::duration::parse(&v).map_err(|e| anyhow!("--window {v:?}: {e}"))?;
                    if window < Duration::from_secs(10) {
                        bail!("--window {v}: use at least 10s (one probe interval)");
                    }
                }
                "--no-blackbox" => blackbox = false,
                other => bail!(
                    "unknown argument {other:?}; expected --validators N,N,… --window DURATION --no-blackbox"
                ),
            }
        }
        let env_path = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let kubeconfig = env_path("VIGIL_BENCH_KUBECONFIG").ok_or_else(|| {
            anyhow!(
                "VIGIL_BENCH_KUBECONFIG is not set: run scripts/bench-probe.sh, which starts a control plane and sets it"
            )
        })?;
        let vigil = env_path("VIGIL_BENCH_VIGIL_BIN")
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/vigil"));
        if !vigil.is_file() {
            bail!(
                "no vigil binary at {} (cargo build --release --bin vigil)",
                vigil.display()
            );
        }
        let sim =
            env_path("VIGIL_BENCH_SIM_BIN").unwrap_or_else(|| vigil.with_file_name("vigil-sim"));
        if !sim.is_file() {
            bail!(
                "no vigil-sim binary at {} (cargo build --release -p vigil-sim)",
                sim.display()
            );
        }
        let blackbox_bin = env_path("VIGIL_BENCH_BLACKBOX_BIN");
        if blackbox && blackbox_bin.is_none() {
            bail!(
                "VIGIL_BENCH_BLACKBOX_BIN is not set (scripts/bench-bins.sh builds it); or pass --no-blackbox"
            );
        }
        let dir = env_path("VIGIL_BENCH_DIR").unwrap_or_else(|| {
            std::env::temp_dir().join(format!("vigil-bench-{}", std::process::id()))
        });
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Args {
            sizes,
            window,
            blackbox,
            kubeconfig,
            vigil,
            sim,
            blackbox_bin,
            cp_dir: env_path("VIGIL_BENCH_CP_DIR"),
            dir,
        })
    }
}

// ------------------------------------------------------------------------- child processes

/// A child process, killed (and reaped) when dropped.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    /// The process measured and signalled, when the child is a wrapper (a profiler) that
    /// runs it; else the child itself.
    target: Option<u32>,
}

impl Proc {
    fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Result<Proc> {
        let file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        // SAFETY: between fork and exec only async-signal-safe system calls run.
        unsafe {
            cmd.pre_exec(|| {
                // Its own process group: a terminal's ^C reaches the bench, which then stops
                // its children in order.
                libc::setpgid(0, 0);
                // If the bench dies without cleaning up, the kernel kills the child.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({})", cmd.get_program().display()))?;
        Ok(Proc {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
            target: None,
        })
    }

    fn pid(&self) -> u32 {
        self.target.unwrap_or_else(|| self.child.id())
    }

    /// Finds the descendant running `exe` (the wrapped program) and measures that one.
    async fn follow(&mut self, exe: &Path) -> Result<()> {
        let exe = std::fs::canonicalize(exe)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.alive()?;
            if let Some(pid) = descendants(self.child.id())
                .into_iter()
                .find(|p| std::fs::read_link(format!("/proc/{p}/exe")).ok().as_ref() == Some(&exe))
            {
                self.target = Some(pid);
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: no process running {} under the wrapper",
                    self.name,
                    exe.display()
                );
            }
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// An error with the tail of the log if the process has exited.
    fn alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited unexpectedly ({status}); last lines of {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log, 30)
            );
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL after `grace`. True if it stopped on SIGTERM.
    async fn stop(&mut self, grace: Duration) -> bool {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return true;
        }
        // SAFETY: kill(2) on our own, not yet reaped, child (or the program it wraps).
        unsafe {
            libc::kill(self.pid() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return true;
            }
            sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Every process below `pid` (from /proc's parent links).
fn descendants(pid: u32) -> Vec<u32> {
    let mut parent: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            if let Some(pp) = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse().ok())
            {
                parent.push((p, pp));
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let cur = out[i];
        out.extend(parent.iter().filter(|(_, pp)| *pp == cur).map(|(p, _)| *p));
        i += 1;
    }
    out
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

// ----------------------------------------------------------------------------- /proc

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// User + system CPU seconds of a process so far.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start at field 3 (state).
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("unexpected /proc/{pid}/stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let stime: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    Ok((utime + stime) / clock_ticks())
}

/// A `kB` line of /proc/PID/status (VmHWM: peak resident set; VmRSS: current), in MiB.
fn status_mib(pid: u32, field: &str) -> Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kb: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow!("no {field} in /proc/{pid}/status"))?;
    Ok(kb / 1024.0)
}

/// (busy, total) CPU seconds of the whole machine so far.
fn machine_cpu() -> (f64, f64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<f64> = text
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 5 {
        return (0.0, 0.0);
    }
    let total: f64 = v.iter().sum();
    let idle = v[3] + v[4];
    ((total - idle) / clock_ticks(), total / clock_ticks())
}

/// CPU seconds so far of every process: pid → (command name, seconds).
fn all_cpu() -> HashMap<u32, (String, f64)> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let comm = stat
            .split_once('(')
            .and_then(|(_, r)| r.rsplit_once(')'))
            .map(|(c, _)| c.to_string())
            .unwrap_or_default();
        if let Ok(cpu) = cpu_seconds(pid) {
            out.insert(pid, (comm, cpu));
        }
    }
    out
}

/// The busiest other processes between two [`all_cpu`] snapshots, by command name, as
/// `name cores` (at most three), leaving out `exclude`.
fn busiest_others(
    before: &HashMap<u32, (String, f64)>,
    after: &HashMap<u32, (String, f64)>,
    exclude: &[u32],
    window: Duration,
) -> String {
    let mut by_name: HashMap<&str, f64> = HashMap::new();
    for (pid, (name, cpu)) in after {
        if exclude.contains(pid) {
            continue;
        }
        // A process that started inside the window counts from zero.
        let start = before.get(pid).map(|(_, c)| *c).unwrap_or(0.0);
        *by_name.entry(name.as_str()).or_default() += cpu - start;
    }
    let mut v: Vec<(&str, f64)> = by_name.into_iter().filter(|(_, c)| *c > 0.0).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    let parts: Vec<String> = v
        .iter()
        .take(3)
        .filter(|(_, c)| c / window.as_secs_f64() >= 0.01)
        .map(|(n, c)| format!("{n} {:.2}", c / window.as_secs_f64()))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|x| x.1.trim())
        })
        .unwrap_or("unknown");
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cores} cores (nproc), CPU \"{model}\", {mem_gib:.1} GiB memory, Linux {}",
        kernel.trim()
    )
}

/// Pids of the control plane's components, from its `pids` file (`name pid` lines).
fn control_plane_pids(dir: Option<&Path>) -> HashMap<String, u32> {
    let Some(dir) = dir else {
        return HashMap::new();
    };
    std::fs::read_to_string(dir.join("pids"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (name, pid) = l.split_once(' ')?;
            Some((name.to_string(), pid.trim().parse().ok()?))
        })
        .collect()
}

// -------------------------------------------------------------------------- Prometheus text

/// One scrape of a Prometheus text endpoint, read with the operator's own parser.
struct Scrape(Vec<prom::Sample>);

impl Scrape {
    fn parse(text: &str) -> Scrape {
        Scrape(prom::parse(text))
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        filter: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a prom::Sample> + 'a {
        self.0
            .iter()
            .filter(move |s| s.name == name && filter.iter().all(|(k, v)| s.label(k) == Some(*v)))
    }

    fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.matching(name, filter).map(|s| s.value).sum()
    }

    /// Cumulative histogram buckets `(le, count)` of `name` (summed over other labels).
    fn buckets(&self, name: &str, filter: &[(&str, &str)]) -> Vec<(f64, f64)> {
        let bucket = format!("{name}_bucket");
        let mut by_le: Vec<(f64, f64)> = Vec::new();
        for s in self.matching(&bucket, filter) {
            let Some(le) = s.label("le").and_then(|v| v.parse::<f64>().ok()) else {
                continue;
            };
            match by_le.iter_mut().find(|(l, _)| *l == le) {
                Some(slot) => slot.1 += s.value,
                None => by_le.push((le, s.value)),
            }
        }
        by_le.sort_by(|a, b| a.0.total_cmp(&b.0));
        by_le
    }
}

/// Bucket counts of `after` minus `before` (same bounds).
fn bucket_delta(before: &[(f64, f64)], after: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|(le, c)| {
            let b = before
                .iter()
                .find(|(l, _)| l == le)
                .map(|x| x.1)
                .unwrap_or(0.0);
            (*le, c - b)
        })
        .collect()
}

/// The `q` quantile of cumulative buckets, interpolated linearly inside the bucket that holds
/// it (like PromQL's `histogram_quantile`). In the `+Inf` bucket: the largest finite bound.
fn bucket_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lo, mut below) = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lo);
            }
            let inside = count - below;
            let frac = if inside > 0.0 {
                (rank - below) / inside
            } else {
                1.0
            };
            return Some(lo + (le - lo) * frac);
        }
        lo = le;
        below = count;
    }
    Some(lo)
}

/// Nearest-rank percentile of samples.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

async fn scrape(http: &reqwest::Client, url: &str) -> Result<Scrape> {
    let text = http
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .with_context(|| format!("GET {url}"))?
        .error_for_status()?
        .text()
        .await?;
    Ok(Scrape::parse(&text))
}

// ------------------------------------------------------------------------------ kubernetes

async fn kube_client(path: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// Applies Vigil's CRDs (server-side) and waits until they are Established.
async fn install_crds(client: &Client) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = Vec::new();
    for (_, crd) in vigil::crd::all() {
        let name = crd.name_any();
        api.patch(
            &name,
            &PatchParams::apply("vigil-bench").force(),
            &Patch::Apply(&crd),
        )
        .await
        .with_context(|| format!("applying CRD {name}"))?;
        names.push(name);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for name in names {
        loop {
            let crd = api.get(&name).await?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            if Instant::now() > deadline {
                bail!("CRD {name} not Established within 60s");
            }
            sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

async fn create_namespace(client: &Client, ns: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(ns).await?.is_some() {
        eprintln!("  namespace {ns} exists from an earlier run; deleting it first");
        delete_namespace(client, ns).await?;
    }
    let obj: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}
    }))?;
    api.create(&PostParams::default(), &obj)
        .await
        .with_context(|| format!("creating namespace {ns}"))?;
    Ok(())
}

async fn delete_namespace(client: &Client, ns: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let t0 = Instant::now();
    match api.delete(ns, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("deleting namespace {ns}")),
    }
    let limit = Duration::from_secs(600);
    let mut said = Instant::now();
    while api.get_opt(ns).await?.is_some() {
        if t0.elapsed() > limit {
            bail!(
                "namespace {ns} still exists {}s after its deletion (is kube-controller-manager's namespace controller running?)",
                limit.as_secs()
            );
        }
        if said.elapsed() > Duration::from_secs(30) {
            eprintln!(
                "  waiting for namespace {ns} to go ({}s)",
                t0.elapsed().as_secs()
            );
            said = Instant::now();
        }
        sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "  namespace {ns} deleted in {:.0}s",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn create_policy(client: &Client, ns: &str) -> Result<()> {
    let api: Api<MonitorPolicy> = Api::namespaced(client.clone(), ns);
    let policy: MonitorPolicy = serde_json::from_value(serde_json::json!({
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "MonitorPolicy",
        "metadata": {"name": "bench"},
        "spec": {
            "probe": {
                "interval": format!("{}s", INTERVAL.as_secs()),
                "timeout": "5s",
                "failureThreshold": FAILURE_THRESHOLD,
                "successThreshold": SUCCESS_THRESHOLD,
            },
            "remediation": {"action": "none"},
        }
    }))
    .context("building the MonitorPolicy")?;
    api.create(&PostParams::default(), &policy)
        .await
        .context("creating the MonitorPolicy")?;
    Ok(())
}

async fn create_validators(client: &Client, ns: &str, nodes: &[FleetNode]) -> Result<Duration> {
    let api: Api<MonitoredValidator> = Api::namespaced(client.clone(), ns);
    let t0 = Instant::now();
    let done = AtomicU64::new(0);
    futures::stream::iter(nodes.iter().map(|n| {
        let api = api.clone();
        let done = &done;
        async move {
            let mv: MonitoredValidator = serde_json::from_value(serde_json::json!({
                "apiVersion": "vigil.dev/v1alpha1",
                "kind": "MonitoredValidator",
                "metadata": {"name": n.name},
                "spec": {
                    "chain": "substrate",
                    "endpoints": {"rpc": n.rpc},
                    "policyRef": {"name": "bench"},
                }
            }))?;
            let mut attempt = 0;
            loop {
                attempt += 1;
                match api.create(&PostParams::default(), &mv).await {
                    Ok(_) => break,
                    Err(kube::Error::Api(s)) if s.code == 409 => break,
                    Err(e) if attempt < 5 => {
                        eprintln!("  creating {} failed ({e}); retrying", n.name);
                        sleep(Duration::from_millis(200 * attempt)).await;
                    }
                    Err(e) => {
                        return Err(anyhow::Error::new(e))
                            .with_context(|| format!("creating MonitoredValidator {}", n.name));
                    }
                }
            }
            let d = done.fetch_add(1, Ordering::Relaxed) + 1;
            if d.is_multiple_of(2500) {
                eprintln!("  created {d}/{}", nodes.len());
            }
            anyhow::Ok(())
        }
    }))
    .buffer_unordered(CREATE_CONCURRENCY)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(t0.elapsed())
}

/// Status of the `Ready` condition of a validator ("" without one).
fn ready_status(mv: &MonitoredValidator) -> String {
    mv.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.clone())
        .unwrap_or_default()
}

/// What a watch of the namespace's validators has seen: every change of `Ready`, with the
/// instant the bench received it.
#[derive(Default)]
struct ReadyLog {
    synced: bool,
    last: HashMap<String, String>,
    changes: HashMap<String, Vec<(Instant, String)>>,
    errors: u64,
}

impl ReadyLog {
    /// First time `name` was seen with Ready == `status` after `after`.
    fn first_after(&self, name: &str, after: Instant, status: &str) -> Option<Instant> {
        self.changes
            .get(name)?
            .iter()
            .find(|(t, s)| *t >= after && s == status)
            .map(|(t, _)| *t)
    }
}

fn watch_ready(client: &Client, ns: &str) -> (Arc<Mutex<ReadyLog>>, tokio::task::JoinHandle<()>) {
    use kube::runtime::WatchStreamExt;
    let log = Arc::new(Mutex::new(ReadyLog::default()));
    let api: Api<MonitoredValidator> = Api::namespaced(client.clone(), ns);
    let task = {
        let log = log.clone();
        tokio::spawn(async move {
            let mut stream =
                std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
            while let Some(ev) = stream.next().await {
                let now = Instant::now();
                let mut l = log.lock().expect("ready log");
                match ev {
                    Ok(watcher::Event::Apply(mv) | watcher::Event::InitApply(mv)) => {
                        let name = mv.name_any();
                        let status = ready_status(&mv);
                        if l.last.get(&name) != Some(&status) {
                            l.last.insert(name.clone(), status.clone());
                            l.changes.entry(name).or_default().push((now, status));
                        }
                    }
                    Ok(watcher::Event::Delete(mv)) => {
                        l.last.remove(&mv.name_any());
                    }
                    Ok(watcher::Event::InitDone) => l.synced = true,
                    Ok(watcher::Event::Init) => {}
                    Err(e) => {
                        l.errors += 1;
                        eprintln!("  watch error (retrying): {e}");
                    }
                }
            }
        })
    };
    (log, task)
}

// ------------------------------------------------------------------------------- simulators

/// One simulated node and the validator that watches it.
struct FleetNode {
    /// Name of its MonitoredValidator.
    name: String,
    rpc: String,
    /// Which simulator process serves it, and its index there.
    sim: usize,
    index: usize,
}

struct Sim {
    proc: Proc,
    admin: String,
}

struct SimFleet {
    sims: Vec<Sim>,
    nodes: Vec<FleetNode>,
}

/// What the bench reads of a simulator's `--ready-file` (JSON; more fields are ignored).
/// Declared here because the operator's package does not depend on the simulator's crate.
#[derive(serde::Deserialize)]
struct ReadyFile {
    /// Address of the admin API.
    admin: String,
    nodes: Vec<ReadyNode>,
}

#[derive(serde::Deserialize)]
struct ReadyNode {
    index: usize,
    rpc: String,
}

impl SimFleet {
    /// Starts `n` Substrate nodes in processes of at most [`MAX_NODES_PER_SIM`], the `p`-th
    /// from `127.{octet + p}.0.1`.
    async fn start(sim: &Path, dir: &Path, n: usize, octet: usize, tag: &str) -> Result<SimFleet> {
        let procs = n.div_ceil(MAX_NODES_PER_SIM);
        let per = n.div_ceil(procs);
        let mut sims = Vec::new();
        let mut pending = Vec::new();
        let mut left = n;
        for p in 0..procs {
            let k = per.min(left);
            left -= k;
            let base = format!("127.{}.0.1", 16 + (octet + p) % 224);
            let ready = dir.join(format!("sim-{tag}-{p}.json"));
            let _ = std::fs::remove_file(&ready);
            let mut cmd = Command::new(sim);
            cmd.args(["--nodes", &k.to_string(), "--no-metrics"])
                .args(["--chain", "substrate", "--base-ip", &base])
                .args(["--admin", "127.0.0.1:0", "--ready-file"])
                .arg(&ready);
            let proc = Proc::spawn(
                &format!("simulator {tag}-{p} ({k} nodes from {base})"),
                &mut cmd,
                &dir.join(format!("sim-{tag}-{p}.log")),
            )?;
            sims.push(Sim {
                proc,
                admin: String::new(),
            });
            pending.push(ready);
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut nodes = Vec::with_capacity(n);
        for (p, ready) in pending.iter().enumerate() {
            let doc: ReadyFile = loop {
                if let Ok(bytes) = std::fs::read(ready)
                    && let Ok(doc) = serde_json::from_slice(&bytes)
                {
                    break doc;
                }
                sims[p].proc.alive()?;
                if Instant::now() > deadline {
                    bail!(
                        "{} wrote no ready file ({}) within 120s",
                        sims[p].proc.name,
                        ready.display()
                    );
                }
                sleep(Duration::from_millis(100)).await;
            };
            sims[p].admin = doc.admin.clone();
            for node in doc.nodes {
                nodes.push(FleetNode {
                    name: format!("v{:05}", nodes.len()),
                    rpc: node.rpc,
                    sim: p,
                    index: node.index,
                });
            }
        }
        if nodes.len() != n {
            bail!("the simulators list {} nodes, not {n}", nodes.len());
        }
        Ok(SimFleet { sims, nodes })
    }

    fn alive(&mut self) -> Result<()> {
        self.sims.iter_mut().try_for_each(|s| s.proc.alive())
    }

    fn cpu_seconds(&self) -> f64 {
        self.sims
            .iter()
            .map(|s| cpu_seconds(s.proc.pid()).unwrap_or(0.0))
            .sum()
    }

    /// POSTs a fault (or a recovery) to the node's simulator.
    async fn admin(&self, http: &reqwest::Client, node: &FleetNode, what: &str) -> Result<()> {
        let (path, body) = match what {
            "recover" => (format!("/nodes/{}/recover", node.index), "{}".to_string()),
            fault => (
                format!("/nodes/{}/fault", node.index),
                serde_json::json!({ "fault": fault }).to_string(),
            ),
        };
        let url = format!("http://{}{path}", self.sims[node.sim].admin);
        let resp = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        if !resp.status().is_success() {
            let status = resp.status();
            bail!(
                "POST {url}: {status}: {}",
                resp.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    async fn stop(&mut self) {
        for s in &mut self.sims {
            s.proc.stop(Duration::from_secs(10)).await;
        }
    }
}

// ---------------------------------------------------------------------------------- results

#[derive(Default)]
struct Report {
    machine: String,
    rows: Vec<Row>,
    blackbox: Option<Blackbox>,
    notes: Vec<String>,
}

struct Row {
    n: usize,
    sim_procs: usize,
    create: Duration,
    all_ready: Duration,
    window: Duration,
    probes: f64,
    probe_errors: f64,
    skipped: f64,
    cpu_secs: f64,
    peak_rss_mib: f64,
    rss_mib: f64,
    lateness_p50: Option<f64>,
    lateness_p99: Option<f64>,
    duration_p50: Option<f64>,
    duration_p99: Option<f64>,
    mv_writes: f64,
    other_writes: f64,
    apiserver_cores: Option<f64>,
    etcd_cores: Option<f64>,
    sim_cores: f64,
    machine_busy: f64,
    others: String,
    faults: usize,
    detection: Vec<f64>,
    recovery: Vec<f64>,
}

struct Blackbox {
    n: usize,
    window: Duration,
    probes: u64,
    ok: u64,
    failed: u64,
    errors: u64,
    cpu_secs: f64,
    peak_rss_mib: f64,
    vigil_cpu_per_1000: f64,
    vigil_probes_per_sec: f64,
    /// Vigil's probes in its window, the successful ones, and its peak RSS.
    vigil_probes: f64,
    vigil_ok: f64,
    vigil_peak_rss_mib: f64,
    /// The bench process (mostly the driver) during the window.
    driver_cores: f64,
    machine_busy: f64,
    others: String,
}

fn ms(v: Option<f64>) -> String {
    match v {
        Some(s) => format!("{:.1}", s * 1000.0),
        None => "–".into(),
    }
}

fn secs(v: Option<f64>) -> String {
    match v {
        Some(s) => format!("{s:.1}"),
        None => "–".into(),
    }
}

fn opt_cores(v: Option<f64>) -> String {
    v.map(|c| format!("{c:.2}")).unwrap_or_else(|| "–".into())
}

impl Row {
    fn per_sec(&self, v: f64) -> f64 {
        v / self.window.as_secs_f64()
    }
    fn cores(&self) -> f64 {
        self.per_sec(self.cpu_secs)
    }
    fn writes_per_min(&self) -> f64 {
        self.per_sec(self.mv_writes) * 60.0
    }
    fn detection_p(&self, q: f64) -> Option<f64> {
        percentile(&self.detection, q)
    }
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

impl Report {
    fn render(&self, args: &Args) -> String {
        let mut o = String::new();
        let w = args.window.as_secs();
        let _ = writeln!(o, "\n## Probe benchmark\n");
        let _ = writeln!(o, "Machine: {}.", self.machine);
        let _ = writeln!(
            o,
            "Everything shares it: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok, the simulators, the operator and this bench."
        );
        let _ = writeln!(
            o,
            "Policy: interval {}s, timeout 5s, failureThreshold {FAILURE_THRESHOLD}, successThreshold {SUCCESS_THRESHOLD}, remediation none. Steady window {w}s, opened {}s after every validator was Ready.\n",
            INTERVAL.as_secs(),
            SETTLE.as_secs()
        );
        if self.rows.is_empty() {
            let _ = writeln!(o, "(no fleet size completed)");
        } else {
            let _ = writeln!(o, "### Steady state (operator process, {w}s window)\n");
            let _ = writeln!(
                o,
                "| validators | probes/s (expected) | probe errors | skipped | CPU cores (avg) | peak RSS MiB (now) | lateness p50 / p99 ms | probe duration p50 / p99 ms | MV status writes/min | other status writes/min |"
            );
            let _ = writeln!(o, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            for r in &self.rows {
                let _ = writeln!(
                    o,
                    "| {} | {:.1} ({:.0}) | {:.0} | {:.0} | {:.3} | {:.1} ({:.1}) | {} / {} | {} / {} | {:.1} | {:.1} |",
                    r.n,
                    r.per_sec(r.probes),
                    r.n as f64 / INTERVAL.as_secs_f64(),
                    r.probe_errors,
                    r.skipped,
                    r.cores(),
                    r.peak_rss_mib,
                    r.rss_mib,
                    ms(r.lateness_p50),
                    ms(r.lateness_p99),
                    ms(r.duration_p50),
                    ms(r.duration_p99),
                    r.writes_per_min(),
                    r.per_sec(r.other_writes) * 60.0,
                );
            }
            let _ = writeln!(o, "\n### Setup, detection and recovery\n");
            let _ = writeln!(
                o,
                "| validators | simulator processes | create all (s) | all Ready after operator start (s) | faults (`die`) | detection p50 / p99 / max (s) | target (s) | recovery p50 / p99 (s) |"
            );
            let _ = writeln!(o, "|---:|---:|---:|---:|---:|---:|---:|---:|");
            let target = detection_target();
            for r in &self.rows {
                let max = r.detection.last().copied();
                let _ = writeln!(
                    o,
                    "| {} | {} | {:.1} ({:.0}/s) | {:.1} | {} | {} / {} / {} | {:.0} | {} / {} |",
                    r.n,
                    r.sim_procs,
                    r.create.as_secs_f64(),
                    r.n as f64 / r.create.as_secs_f64().max(1e-9),
                    r.all_ready.as_secs_f64(),
                    r.faults,
                    secs(r.detection_p(0.5)),
                    secs(r.detection_p(0.99)),
                    secs(max),
                    target.as_secs_f64(),
                    secs(percentile(&r.recovery, 0.5)),
                    secs(percentile(&r.recovery, 0.99)),
                );
            }
            let _ = writeln!(o, "\n### The rest of the machine during the same window\n");
            let _ = writeln!(
                o,
                "| validators | kube-apiserver cores | etcd cores | simulators cores | whole machine busy (of {} cores) | busiest other processes (cores) |",
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(0)
            );
            let _ = writeln!(o, "|---:|---:|---:|---:|---:|---|");
            for r in &self.rows {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {:.2} | {:.2} | {} |",
                    r.n,
                    opt_cores(r.apiserver_cores),
                    opt_cores(r.etcd_cores),
                    r.sim_cores,
                    r.machine_busy,
                    r.others
                );
            }
            if let Some(r) = self.rows.iter().max_by_key(|r| r.n) {
                let _ = writeln!(o, "\n### Targets at {} validators\n", r.n);
                let _ = writeln!(o, "| target | measured | |");
                let _ = writeln!(o, "|---|---:|---|");
                let expected = r.n as f64 / INTERVAL.as_secs_f64();
                let rate = r.per_sec(r.probes);
                let _ = writeln!(
                    o,
                    "| probes/s = validators / interval ({expected:.0}) | {rate:.1} | {} |",
                    met(rate >= expected * 0.98)
                );
                let _ = writeln!(
                    o,
                    "| CPU ≤ 0.5 core | {:.3} | {} |",
                    r.cores(),
                    met(r.cores() <= 0.5)
                );
                let _ = writeln!(
                    o,
                    "| peak RSS ≤ 256 MiB | {:.1} MiB | {} |",
                    r.peak_rss_mib,
                    met(r.peak_rss_mib <= 256.0)
                );
                let p99 = r.lateness_p99.unwrap_or(f64::INFINITY);
                let _ = writeln!(
                    o,
                    "| lateness p99 ≤ 500 ms | {} ms | {} |",
                    ms(r.lateness_p99),
                    met(p99 <= 0.5)
                );
                let d99 = r.detection_p(0.99).unwrap_or(f64::INFINITY);
                let _ = writeln!(
                    o,
                    "| detection p99 ≤ interval × failureThreshold + 1 s ({:.0} s) | {} s | {} |",
                    detection_target().as_secs_f64(),
                    secs(r.detection_p(0.99)),
                    met(d99 <= detection_target().as_secs_f64())
                );
                let _ = writeln!(
                    o,
                    "| zero steady-state status writes | {:.1}/min | {} |",
                    r.writes_per_min(),
                    met(r.mv_writes == 0.0)
                );
                if let Some(b) = &self.blackbox {
                    let ratio = b.vigil_cpu_per_1000 / b.cpu_per_1000();
                    let _ = writeln!(
                        o,
                        "| CPU per 1,000 probes ≤ ½ of blackbox_exporter's | {:.3} vs {:.3} CPU-s ({:.2}×) | {} |",
                        b.vigil_cpu_per_1000,
                        b.cpu_per_1000(),
                        ratio,
                        met(ratio <= 0.5)
                    );
                }
            }
        }
        if let Some(b) = &self.blackbox {
            let _ = writeln!(
                o,
                "\n### Vigil vs blackbox_exporter at {} targets, each once per {}s\n",
                b.n,
                INTERVAL.as_secs()
            );
            let _ = writeln!(
                o,
                "| prober | probes/s | successful | CPU-seconds per 1,000 probes | peak RSS MiB | one probe |"
            );
            let _ = writeln!(o, "|---|---:|---:|---:|---:|---|");
            let _ = writeln!(
                o,
                "| Vigil (`vigil run`) | {:.1} | {:.0} of {:.0} | {:.3} | {:.1} | one new connection carrying a batched JSON-RPC POST of 6 methods and a finalized-header POST, health evaluation with hysteresis, fleet view, remediation guards, status diff; the process also runs its watches, leader lease and controllers |",
                b.vigil_probes_per_sec,
                b.vigil_ok,
                b.vigil_probes,
                b.vigil_cpu_per_1000,
                b.vigil_peak_rss_mib
            );
            let _ = writeln!(
                o,
                "| blackbox_exporter | {:.1} | {} of {} ({} failed, {} driver errors) | {:.3} | {:.1} | one JSON-RPC POST (`system_health`) on a new connection + status check + regexp on the body |",
                b.probes as f64 / b.window.as_secs_f64(),
                b.ok,
                b.probes,
                b.failed,
                b.errors,
                b.cpu_per_1000(),
                b.peak_rss_mib
            );
            let _ = writeln!(
                o,
                "\nblackbox_exporter's CPU is its own process only: the bench's driver (which stands in for Prometheus scraping `/probe` {:.0} times a second) is not counted; it used {:.2} cores. Vigil's CPU is the whole operator process. During the blackbox window the machine was {:.2} cores busy; busiest other processes: {}.",
                b.probes as f64 / b.window.as_secs_f64(),
                b.driver_cores,
                b.machine_busy,
                b.others
            );
        }
        o.push_str("\nLateness and probe duration are bucket-interpolated from the operator's histograms (window deltas). Detection: fault injected (bench clock, just before the admin request) → the bench's watch sees `Ready=False`.\n");
        for n in &self.notes {
            let _ = writeln!(o, "\nNote: {n}");
        }
        o
    }
}

impl Blackbox {
    fn cpu_per_1000(&self) -> f64 {
        if self.probes == 0 {
            return f64::INFINITY;
        }
        self.cpu_secs / self.probes as f64 * 1000.0
    }
}

fn detection_target() -> Duration {
    INTERVAL * FAILURE_THRESHOLD + Duration::from_secs(1)
}

// ------------------------------------------------------------------------------------ run

async fn run(args: &Args, report: &mut Report) -> Result<()> {
    report.machine = machine();
    eprintln!("machine: {}", report.machine);
    eprintln!("logs: {}", args.dir.display());
    let client = kube_client(&args.kubeconfig).await?;
    tokio::time::timeout(Duration::from_secs(90), install_crds(&client))
        .await
        .map_err(|_| anyhow!("installing the CRDs took longer than 90s"))??;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(BLACKBOX_CONCURRENCY)
        .build()?;
    for (i, &n) in args.sizes.iter().enumerate() {
        eprintln!("\n=== {n} validators ===");
        let row = one_size(args, &client, &http, n, i * 16).await?;
        eprintln!(
            "  {n}: {:.1} probes/s, {:.3} cores, peak RSS {:.1} MiB, lateness p99 {} ms, detection p99 {} s, {:.1} MV writes/min",
            row.per_sec(row.probes),
            row.cores(),
            row.peak_rss_mib,
            ms(row.lateness_p99),
            secs(row.detection_p(0.99)),
            row.writes_per_min()
        );
        report.rows.push(row);
    }
    if args.blackbox
        && let Some(bin) = &args.blackbox_bin
        && let Some(vigil) = report.rows.iter().max_by_key(|r| r.n)
    {
        let n = vigil.n;
        eprintln!("\n=== blackbox_exporter, {n} targets ===");
        let octet = args.sizes.len() * 16;
        let mut b = blackbox(args, &http, bin, n, octet).await?;
        b.vigil_cpu_per_1000 = vigil.cpu_secs / vigil.probes.max(1.0) * 1000.0;
        b.vigil_probes_per_sec = vigil.per_sec(vigil.probes);
        b.vigil_probes = vigil.probes;
        b.vigil_ok = vigil.probes - vigil.probe_errors;
        b.vigil_peak_rss_mib = vigil.peak_rss_mib;
        eprintln!(
            "  blackbox_exporter: {:.1} probes/s, {:.3} CPU-s per 1000 probes (Vigil {:.3})",
            b.probes as f64 / b.window.as_secs_f64(),
            b.cpu_per_1000(),
            b.vigil_cpu_per_1000
        );
        report.blackbox = Some(b);
    }
    Ok(())
}

/// Waits for `fut`, failing with `what` after `limit`.
async fn within<T>(
    limit: Duration,
    what: &str,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| anyhow!("{what} did not finish within {}s", limit.as_secs()))?
}

async fn one_size(
    args: &Args,
    client: &Client,
    http: &reqwest::Client,
    n: usize,
    octet: usize,
) -> Result<Row> {
    let ns = format!("bench-{n}");
    let dir = args.dir.join(&ns);
    std::fs::create_dir_all(&dir)?;
    within(
        Duration::from_secs(660),
        "creating the namespace",
        create_namespace(client, &ns),
    )
    .await?;
    within(
        Duration::from_secs(60),
        "creating the MonitorPolicy",
        create_policy(client, &ns),
    )
    .await?;

    let mut fleet = SimFleet::start(&args.sim, &dir, n, octet, &n.to_string()).await?;
    eprintln!(
        "  {} simulator process(es) ready with {n} nodes",
        fleet.sims.len()
    );

    let create = within(
        Duration::from_secs(120 + n as u64 / 20),
        "creating the MonitoredValidators",
        create_validators(client, &ns, &fleet.nodes),
    )
    .await?;
    eprintln!(
        "  created {n} MonitoredValidators in {:.1}s",
        create.as_secs_f64()
    );

    // The operator, as users run it.
    let port = free_port()?;
    // For profiling: VIGIL_BENCH_OPERATOR_WRAP="heaptrack" (or "perf record -g --") runs
    // the operator under that command, in the size's log directory.
    let wrap: Vec<String> = std::env::var("VIGIL_BENCH_OPERATOR_WRAP")
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect();
    let mut cmd = match wrap.split_first() {
        Some((prog, rest)) => {
            let mut c = Command::new(prog);
            c.args(rest).arg(&args.vigil).current_dir(&dir);
            c
        }
        None => Command::new(&args.vigil),
    };
    // The simulated nodes listen on loopback.
    cmd.args(["run", "--allow-loopback", "--namespace", &ns])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--lease-namespace",
            &ns,
            "--lease-name",
            &format!("bench-{n}"),
        ])
        .env("KUBECONFIG", &args.kubeconfig);
    let mut op = Proc::spawn("vigil run", &mut cmd, &dir.join("operator.log"))?;
    if !wrap.is_empty() {
        op.follow(&args.vigil).await?;
    }
    let started = Instant::now();
    let metrics = format!("http://127.0.0.1:{port}/metrics");

    // Every validator Ready=True.
    let limit = Duration::from_secs(180 + n as u64 / 25);
    let mut last_said = Instant::now();
    loop {
        op.alive()?;
        fleet.alive()?;
        let ready = match scrape(http, &metrics).await {
            Ok(s) => s.sum("vigil_validators", &[("ready", "True")]),
            Err(_) => 0.0,
        };
        if ready as usize >= n {
            break;
        }
        if started.elapsed() > limit {
            bail!(
                "only {ready} of {n} validators Ready=True {}s after the operator started; see {}",
                limit.as_secs(),
                op.log.display()
            );
        }
        if last_said.elapsed() > Duration::from_secs(15) {
            eprintln!(
                "  {ready:.0}/{n} Ready after {:.0}s",
                started.elapsed().as_secs_f64()
            );
            last_said = Instant::now();
        }
        sleep(Duration::from_secs(1)).await;
    }
    let all_ready = started.elapsed();
    eprintln!(
        "  all {n} Ready {:.1}s after the operator started; settling {}s, then a {}s window",
        all_ready.as_secs_f64(),
        SETTLE.as_secs(),
        args.window.as_secs()
    );
    sleep(SETTLE).await;

    // The steady window: nothing but the operator's own work (no scrapes in between).
    let pid = op.pid();
    let cp = control_plane_pids(args.cp_dir.as_deref());
    let cp_cpu = |name: &str| cp.get(name).and_then(|p| cpu_seconds(*p).ok());
    let s0 = scrape(http, &metrics).await?;
    let procs0 = all_cpu();
    let (cpu0, sim0, api0, etcd0, m0) = (
        cpu_seconds(pid)?,
        fleet.cpu_seconds(),
        cp_cpu("kube-apiserver"),
        cp_cpu("etcd"),
        machine_cpu(),
    );
    let t0 = Instant::now();
    let end = t0 + args.window;
    while Instant::now() < end {
        sleep_until((Instant::now() + Duration::from_secs(5)).min(end)).await;
        op.alive()?;
        fleet.alive()?;
    }
    let (cpu1, sim1, api1, etcd1, m1) = (
        cpu_seconds(pid)?,
        fleet.cpu_seconds(),
        cp_cpu("kube-apiserver"),
        cp_cpu("etcd"),
        machine_cpu(),
    );
    let window = t0.elapsed();
    let mut ours: Vec<u32> = vec![std::process::id(), pid];
    ours.extend(fleet.sims.iter().map(|s| s.proc.pid()));
    ours.extend(["kube-apiserver", "etcd"].iter().filter_map(|n| cp.get(*n)));
    let others = busiest_others(&procs0, &all_cpu(), &ours, window);
    let s1 = scrape(http, &metrics).await?;
    let peak_rss_mib = status_mib(pid, "VmHWM")?;
    let rss_mib = status_mib(pid, "VmRSS")?;
    let d = |name: &str, f: &[(&str, &str)]| s1.sum(name, f) - s0.sum(name, f);
    let probes = d("vigil_probes_total", &[]);
    let ok = d("vigil_probes_total", &[("result", "ok")]);
    let lateness = bucket_delta(
        &s0.buckets("vigil_probe_lateness_seconds", &[]),
        &s1.buckets("vigil_probe_lateness_seconds", &[]),
    );
    let duration = bucket_delta(
        &s0.buckets("vigil_probe_duration_seconds", &[]),
        &s1.buckets("vigil_probe_duration_seconds", &[]),
    );
    let mv_writes = d(
        "vigil_status_writes_total",
        &[("kind", "MonitoredValidator")],
    );
    let all_writes = d("vigil_status_writes_total", &[]);
    let core = |a: Option<f64>, b: Option<f64>| Some((b? - a?) / window.as_secs_f64());
    let mut row = Row {
        n,
        sim_procs: fleet.sims.len(),
        create,
        all_ready,
        window,
        probes,
        probe_errors: probes - ok,
        skipped: d("vigil_probes_skipped_total", &[]),
        cpu_secs: cpu1 - cpu0,
        peak_rss_mib,
        rss_mib,
        lateness_p50: bucket_quantile(0.5, &lateness),
        lateness_p99: bucket_quantile(0.99, &lateness),
        duration_p50: bucket_quantile(0.5, &duration),
        duration_p99: bucket_quantile(0.99, &duration),
        mv_writes,
        other_writes: all_writes - mv_writes,
        apiserver_cores: core(api0, api1),
        etcd_cores: core(etcd0, etcd1),
        sim_cores: (sim1 - sim0) / window.as_secs_f64(),
        machine_busy: (m1.0 - m0.0) / window.as_secs_f64(),
        others,
        faults: 0,
        detection: Vec::new(),
        recovery: Vec::new(),
    };
    eprintln!(
        "  window: {:.1} probes/s, {:.3} cores, {:.0} MV status writes",
        row.per_sec(probes),
        row.cores(),
        mv_writes
    );

    // Detection: kill some nodes, watch their Ready flip.
    let (log, watch_task) = watch_ready(client, &ns);
    let synced = async {
        loop {
            if log.lock().expect("ready log").synced {
                return anyhow::Ok(());
            }
            sleep(Duration::from_millis(100)).await;
        }
    };
    within(
        Duration::from_secs(120),
        "the bench's watch of the validators",
        synced,
    )
    .await?;
    let k = (n / 200).max(10).min(n);
    let victims = pick(n, k);
    let mut injected = Vec::with_capacity(k);
    let t_inject = Instant::now();
    for (j, &v) in victims.iter().enumerate() {
        sleep_until(t_inject + INJECT_SPREAD.mul_f64(j as f64 / k as f64)).await;
        let t = Instant::now();
        fleet.admin(http, &fleet.nodes[v], "die").await?;
        injected.push(t);
    }
    eprintln!(
        "  injected `die` into {k} nodes over {:.1}s; waiting for Ready=False",
        t_inject.elapsed().as_secs_f64()
    );
    let wait_flips = |status: &'static str, since: Vec<Instant>, limit: Duration| {
        let log = log.clone();
        let names: Vec<String> = victims
            .iter()
            .map(|v| fleet.nodes[*v].name.clone())
            .collect();
        async move {
            let deadline = since.iter().max().copied().unwrap_or_else(Instant::now) + limit;
            loop {
                let seen: Vec<Option<Instant>> = {
                    let l = log.lock().expect("ready log");
                    names
                        .iter()
                        .zip(&since)
                        .map(|(name, t)| l.first_after(name, *t, status))
                        .collect()
                };
                if seen.iter().all(Option::is_some) {
                    let mut d: Vec<f64> = seen
                        .iter()
                        .zip(&since)
                        .map(|(s, t)| s.unwrap_or(*t).duration_since(*t).as_secs_f64())
                        .collect();
                    d.sort_by(f64::total_cmp);
                    return Ok(d);
                }
                if Instant::now() > deadline {
                    let l = log.lock().expect("ready log");
                    let missing: Vec<String> = names
                        .iter()
                        .zip(&seen)
                        .filter(|(_, s)| s.is_none())
                        .map(|(name, _)| {
                            format!(
                                "{name} (Ready={})",
                                l.last.get(name).map(String::as_str).unwrap_or("?")
                            )
                        })
                        .take(10)
                        .collect();
                    bail!(
                        "{} of {} validators did not turn Ready={status} within {}s: {}",
                        seen.iter().filter(|s| s.is_none()).count(),
                        names.len(),
                        limit.as_secs(),
                        missing.join(", ")
                    );
                }
                sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let flip_limit = INTERVAL * FAILURE_THRESHOLD + Duration::from_secs(60);
    let detection = tokio::select! {
        r = wait_flips("False", injected, flip_limit) => r?,
        e = async { loop { sleep(Duration::from_secs(1)).await; if let Err(e) = op.alive() { return e; } } } => return Err(e),
    };
    eprintln!(
        "  detection p50 {} s, p99 {} s",
        secs(percentile(&detection, 0.5)),
        secs(percentile(&detection, 0.99))
    );
    let mut recovered_at = Vec::with_capacity(k);
    for &v in &victims {
        recovered_at.push(Instant::now());
        fleet.admin(http, &fleet.nodes[v], "recover").await?;
    }
    let recovery_limit = INTERVAL * SUCCESS_THRESHOLD + Duration::from_secs(60);
    let recovery = wait_flips("True", recovered_at, recovery_limit).await?;
    watch_task.abort();
    row.faults = k;
    row.detection = detection;
    row.recovery = recovery;

    // Teardown, so that the next size starts clean.
    let grace = Duration::from_secs(if wrap.is_empty() { 30 } else { 300 });
    if !op.stop(grace).await {
        eprintln!("  the operator did not stop within 30s of SIGTERM; killed it");
    }
    fleet.stop().await;
    within(
        Duration::from_secs(660),
        "deleting the namespace",
        delete_namespace(client, &ns),
    )
    .await?;
    Ok(row)
}

/// `k` distinct indices below `n`, spread at random (xorshift, seeded by the clock).
fn pick(n: usize, k: usize) -> Vec<usize> {
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    let mut out: Vec<usize> = Vec::with_capacity(k);
    while out.len() < k {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = (x % n as u64) as usize;
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

// ---------------------------------------------------------------------------- blackbox

#[derive(Default)]
struct Counters {
    done: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> [u64; 4] {
        [
            self.done.load(Ordering::Relaxed),
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        ]
    }
}

/// Percent-encodes what a target URL needs in a query string.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for c in s.chars() {
        match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '.' | '_' | '~' => out.push(c),
            c => {
                let mut b = [0; 4];
                for byte in c.encode_utf8(&mut b).bytes() {
                    let _ = write!(out, "%{byte:02X}");
                }
            }
        }
    }
    out
}

async fn blackbox(
    args: &Args,
    http: &reqwest::Client,
    bin: &Path,
    n: usize,
    octet: usize,
) -> Result<Blackbox> {
    let dir = args.dir.join("blackbox");
    std::fs::create_dir_all(&dir)?;
    let mut fleet = SimFleet::start(&args.sim, &dir, n, octet, "blackbox").await?;
    eprintln!(
        "  {} simulator process(es) ready with {n} nodes",
        fleet.sims.len()
    );
    let config = dir.join("blackbox.yml");
    std::fs::write(
        &config,
        format!(
            "modules:\n  {BLACKBOX_MODULE}:\n    prober: http\n    timeout: 5s\n    http:\n      method: POST\n      headers:\n        Content-Type: application/json\n      body: '{SYSTEM_HEALTH}'\n      valid_status_codes: [200]\n      fail_if_body_not_matches_regexp: ['\"peers\"']\n"
        ),
    )?;
    let port = free_port()?;
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"));
    let mut bb = Proc::spawn("blackbox_exporter", &mut cmd, &dir.join("blackbox.log"))?;
    let base = format!("http://127.0.0.1:{port}");
    let healthy = async {
        loop {
            bb.alive()?;
            if let Ok(r) = http.get(format!("{base}/-/healthy")).send().await
                && r.status().is_success()
            {
                return anyhow::Ok(());
            }
            sleep(Duration::from_millis(100)).await;
        }
    };
    within(
        Duration::from_secs(30),
        "blackbox_exporter startup",
        healthy,
    )
    .await?;

    let urls: Arc<Vec<String>> = Arc::new(
        fleet
            .nodes
            .iter()
            .map(|node| {
                format!(
                    "{base}/probe?module={BLACKBOX_MODULE}&target={}",
                    query_escape(&node.rpc)
                )
            })
            .collect(),
    );
    let counters = Arc::new(Counters::default());
    let warmup = INTERVAL;
    let stop_at = Instant::now() + warmup + args.window;
    let driver = tokio::spawn(drive(http.clone(), urls, stop_at, counters.clone()));
    sleep(warmup).await;
    bb.alive()?;
    let (procs0, m0, me0) = (all_cpu(), machine_cpu(), cpu_seconds(std::process::id())?);
    let (c0, cpu0) = (counters.snapshot(), cpu_seconds(bb.pid())?);
    let t0 = Instant::now();
    let end = t0 + args.window;
    while Instant::now() < end {
        sleep_until((Instant::now() + Duration::from_secs(5)).min(end)).await;
        bb.alive()?;
        fleet.alive()?;
    }
    let (c1, cpu1) = (counters.snapshot(), cpu_seconds(bb.pid())?);
    let window = t0.elapsed();
    let (m1, me1) = (machine_cpu(), cpu_seconds(std::process::id())?);
    let mut ours: Vec<u32> = vec![std::process::id(), bb.pid()];
    ours.extend(fleet.sims.iter().map(|s| s.proc.pid()));
    let others = busiest_others(&procs0, &all_cpu(), &ours, window);
    let peak_rss_mib = status_mib(bb.pid(), "VmHWM")?;
    within(
        Duration::from_secs(30),
        "the blackbox driver's last probes",
        async { driver.await.map_err(|e| anyhow!("driver: {e}")) },
    )
    .await?;
    bb.stop(Duration::from_secs(10)).await;
    fleet.stop().await;
    Ok(Blackbox {
        n,
        window,
        probes: c1[0] - c0[0],
        ok: c1[1] - c0[1],
        failed: c1[2] - c0[2],
        errors: c1[3] - c0[3],
        cpu_secs: cpu1 - cpu0,
        peak_rss_mib,
        vigil_cpu_per_1000: 0.0,
        vigil_probes_per_sec: 0.0,
        vigil_probes: 0.0,
        vigil_ok: 0.0,
        vigil_peak_rss_mib: 0.0,
        driver_cores: (me1 - me0) / window.as_secs_f64(),
        machine_busy: (m1.0 - m0.0) / window.as_secs_f64(),
        others,
    })
}

/// Asks blackbox_exporter to probe every target once per interval, evenly spread, at most
/// [`BLACKBOX_CONCURRENCY`] at once, until `stop_at`; then waits for the last answers.
async fn drive(
    http: reqwest::Client,
    urls: Arc<Vec<String>>,
    stop_at: Instant,
    counters: Arc<Counters>,
) {
    let n = urls.len() as u128;
    let step_ns = INTERVAL.as_nanos() / n.max(1);
    let permits = Arc::new(Semaphore::new(BLACKBOX_CONCURRENCY));
    let start = Instant::now();
    let mut seq: u128 = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let now = Instant::now();
        if now >= stop_at {
            break;
        }
        while start + Duration::from_nanos((seq * step_ns) as u64) <= now {
            let url = urls[(seq % n) as usize].clone();
            seq += 1;
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let (http, counters) = (http.clone(), counters.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let r = async {
                    http.get(&url)
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await?
                        .error_for_status()?
                        .text()
                        .await
                }
                .await;
                match r {
                    Ok(body) if body.lines().any(|l| l == "probe_success 1") => {
                        counters.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {
                        counters.failed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                counters.done.fetch_add(1, Ordering::Relaxed);
            });
        }
    }
    let _ = permits.acquire_many(BLACKBOX_CONCURRENCY as u32).await;
}

/// Checks of the parsing helpers; run when the bench is started without `--bench`
/// (`cargo test --benches`).
fn self_check() {
    let b = [(0.01, 50.0), (0.1, 100.0), (f64::INFINITY, 100.0)];
    assert!((bucket_quantile(0.5, &b).unwrap() - 0.01).abs() < 1e-9);
    assert!((bucket_quantile(0.75, &b).unwrap() - 0.055).abs() < 1e-9);
    assert_eq!(bucket_quantile(0.5, &[(1.0, 0.0)]), None);
    assert_eq!(
        bucket_quantile(0.99, &[(0.5, 1.0), (f64::INFINITY, 10.0)]),
        Some(0.5)
    );
    let s = Scrape::parse(
        "# HELP x\nx_bucket{le=\"0.01\"} 5\nx_bucket{le=\"+Inf\"} 10\ny{a=\"1\",b=\"2\"} 3\ny{a=\"2\"} 4\nz 1.5\n",
    );
    assert_eq!(s.buckets("x", &[]), [(0.01, 5.0), (f64::INFINITY, 10.0)]);
    assert_eq!(s.sum("y", &[("a", "1")]), 3.0);
    assert_eq!(s.sum("y", &[]), 7.0);
    assert_eq!(s.sum("z", &[]), 1.5);
    assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.5), Some(2.0));
    assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.99), Some(4.0));
    assert_eq!(
        query_escape("http://127.0.0.1:9944"),
        "http%3A%2F%2F127.0.0.1%3A9944"
    );
    let p = pick(100, 10);
    assert_eq!(p.len(), 10);
    assert!(p.iter().all(|i| *i < 100));
}
