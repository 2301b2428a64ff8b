//! `vigil-sim`: many simulated blockchain validator nodes in one process, for
//! integration tests, the demo and scale benchmarks.
//!
//! Each node gets its own loopback address (Linux routes all of 127.0.0.0/8 to `lo`) and
//! the real default ports of its chain, so a watcher configured for real nodes works
//! unchanged:
//!
//! | chain | RPC | metrics | health |
//! |---|---|---|---|
//! | substrate | `http://IP:9944` (JSON-RPC POST) | `http://IP:9615/metrics` | `http://IP:9944/health` (+ `/health/readiness`) |
//! | ethereum | `http://IP:8545` (JSON-RPC POST) | `http://IP:6060/debug/metrics/prometheus` | none |
//! | cosmos | `http://IP:26657` (`/status`, `/net_info`, JSON-RPC POST) | `http://IP:26660/metrics` | `http://IP:26657/health` |
//!
//! Validator duty (`duty.rs`): the nodes of one chain family form one chain on which each is
//! a validator. Cosmos nodes also serve `/commit?height=H`, `/validators?height=H&page=P&per_page=N`
//! and the Cosmos SDK REST queries `/cosmos/slashing/v1beta1/signing_infos/{valcons}` and
//! `/cosmos/staking/v1beta1/validators/{valoper}` on their RPC port; Substrate nodes count the
//! blocks they author in `substrate_proposer_block_constructed_count`. The faults
//! `stopSigning` and `jailed` take a healthy node's validator off its duty.
//!
//! Addresses are consecutive from `--base-ip`, skipping last octets 0 and 255. Node `i`
//! is `sim-i`; with `--mix` the chains come in blocks, in the order given.
//!
//! Heights are computed from the clock when asked, so idle nodes cost nothing: no node
//! has a timer or a periodic task. Faults are switched on and off through the admin
//! HTTP API (`GET /nodes`, `POST /nodes/{index}/fault`, `POST /nodes/{index}/recover`,
//! `POST /fault`, `POST /recover`).
//!
//! **File descriptors.** A node takes one descriptor per port (two, or one with
//! `--no-metrics`) plus one per open client connection. The soft open-file limit is
//! raised to the hard limit at start; with a limit of 20,000, 10,000 nodes fit with
//! `--no-metrics`. When descriptors get scarce, replies carry `Connection: close` so
//! idle keep-alive connections do not pile up. Larger fleets: run several simulator
//! processes with distinct `--base-ip` ranges (e.g. `127.20.0.1` and `127.40.0.1`).

mod admin;
mod body;
mod cosmos;
mod duty;
mod ethereum;
mod ids;
mod jsonrpc;
mod model;
mod serve;
mod substrate;
mod view;

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use vigil::telemetry::{self, LogFormat};

pub use admin::NodeInfo;
pub use model::{Fault, SimChain};

/// Most peers a node may report (CometBFT lists every peer in `/net_info`).
const MAX_PEERS: u32 = 1000;

/// Command-line arguments of `vigil-sim`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Number of nodes (default: the sum of the --mix weights, else 1).
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Chain of every node.
    #[arg(long, value_enum, conflicts_with = "mix")]
    pub chain: Option<SimChain>,
    /// Share of each chain, e.g. `substrate=6,ethereum=2,cosmos=2` (weights, scaled to
    /// --nodes; nodes come in blocks, in this order).
    #[arg(long)]
    pub mix: Option<String>,
    /// First node address; the others follow, skipping .0 and .255 (must be in 127/8).
    #[arg(long, default_value = "127.20.0.1")]
    pub base_ip: Ipv4Addr,
    /// Address of the admin HTTP API (port 0: any free port; printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub admin: SocketAddr,
    /// Block time of every chain (e.g. 6s, 500ms). Default: 6s for substrate and
    /// cosmos, 12s for ethereum.
    #[arg(long)]
    pub block_time: Option<String>,
    /// Peers each healthy node reports.
    #[arg(long, default_value_t = 25)]
    pub peers: u32,
    /// Once every port is open, write the admin address and the node list here as JSON
    /// (atomically: written to PATH.tmp, then renamed). Removed on a clean stop.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Do not open metrics ports (one descriptor per node instead of two).
    #[arg(long)]
    pub no_metrics: bool,
    /// Log format (logs go to stderr).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// A validated simulator configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// The chain of each node, by index.
    pub chains: Vec<SimChain>,
    /// Address of node 0.
    pub base_ip: Ipv4Addr,
    /// Admin API address.
    pub admin: SocketAddr,
    /// Block time of every chain; `None`: each chain's typical one.
    pub block_time: Option<Duration>,
    /// Peers each healthy node reports.
    pub peers: u32,
    /// Whether nodes open their metrics port.
    pub metrics: bool,
}

impl SimConfig {
    /// A configuration with the CLI defaults for nodes of `chains` from `base_ip`.
    pub fn new(chains: Vec<SimChain>, base_ip: Ipv4Addr) -> SimConfig {
        SimConfig {
            chains,
            base_ip,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            block_time: None,
            peers: 25,
            metrics: true,
        }
    }

    /// Validates command-line arguments.
    pub fn from_args(args: &SimulateArgs) -> Result<SimConfig, String> {
        let mix = args.mix.as_deref().map(parse_mix).transpose()?;
        let chains = plan(
            args.nodes,
            args.chain.unwrap_or(SimChain::Substrate),
            mix.as_deref(),
        )?;
        let block_time = args
            .block_time
            .as_deref()
            .map(|s| {
                let d = vigil::duration::parse(s).map_err(|e| format!("--block-time: {e}"))?;
                if d < Duration::from_millis(1) {
                    return Err(format!("--block-time {s} is too short; use at least 1ms"));
                }
                Ok(d)
            })
            .transpose()?;
        if args.peers > MAX_PEERS {
            return Err(format!(
                "--peers {} is above the maximum of {MAX_PEERS}",
                args.peers
            ));
        }
        addresses(args.base_ip, chains.len())?;
        Ok(SimConfig {
            chains,
            base_ip: args.base_ip,
            admin: args.admin,
            block_time,
            peers: args.peers,
            metrics: !args.no_metrics,
        })
    }

    /// Listening sockets the fleet needs.
    pub fn listeners(&self) -> usize {
        self.chains.len() * if self.metrics { 2 } else { 1 }
    }
}

/// Parses `substrate=6,ethereum=2,cosmos=2`.
pub fn parse_mix(s: &str) -> Result<Vec<(SimChain, u64)>, String> {
    let mut out: Vec<(SimChain, u64)> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, weight) = part
            .split_once('=')
            .ok_or_else(|| format!("--mix: {part:?} is not chain=weight (e.g. substrate=6)"))?;
        let chain: SimChain = name.parse().map_err(|e| format!("--mix: {e}"))?;
        let weight: u64 = weight
            .trim()
            .parse()
            .map_err(|_| format!("--mix: weight {weight:?} of {name} is not a whole number"))?;
        if out.iter().any(|(c, _)| *c == chain) {
            return Err(format!("--mix: {chain} is listed twice"));
        }
        out.push((chain, weight));
    }
    if out.iter().all(|(_, w)| *w == 0) {
        return Err("--mix: give at least one chain a weight above 0".into());
    }
    Ok(out)
}

/// The chain of each node: `nodes` of `chain`, or `nodes` split by the `mix` weights
/// (largest remainders get the rounding), in blocks in mix order.
pub fn plan(
    nodes: Option<usize>,
    chain: SimChain,
    mix: Option<&[(SimChain, u64)]>,
) -> Result<Vec<SimChain>, String> {
    let Some(mix) = mix else {
        let n = nodes.unwrap_or(1);
        if n == 0 {
            return Err("--nodes must be at least 1".into());
        }
        return Ok(vec![chain; n]);
    };
    let total: u128 = mix.iter().map(|(_, w)| u128::from(*w)).sum();
    let n = match nodes {
        Some(n) => n,
        None => usize::try_from(total).map_err(|_| "--mix weights are too large".to_string())?,
    };
    if n == 0 || total == 0 {
        return Err("--nodes must be at least 1".into());
    }
    let n128 = n as u128;
    let mut counts: Vec<(usize, u128)> = mix
        .iter()
        .map(|(_, w)| {
            let exact = n128 * u128::from(*w);
            ((exact / total) as usize, exact % total)
        })
        .collect();
    let mut left = n - counts.iter().map(|(c, _)| c).sum::<usize>();
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by(|a, b| counts[*b].1.cmp(&counts[*a].1).then(a.cmp(b)));
    for i in order {
        if left == 0 {
            break;
        }
        counts[i].0 += 1;
        left -= 1;
    }
    Ok(mix
        .iter()
        .zip(counts)
        .flat_map(|((c, _), (count, _))| std::iter::repeat_n(*c, count))
        .collect())
}

/// `n` consecutive addresses from `base`, skipping last octets 0 and 255, all inside
/// 127.0.0.0/8.
pub fn addresses(base: Ipv4Addr, n: usize) -> Result<Vec<Ipv4Addr>, String> {
    if base.octets()[0] != 127 {
        return Err(format!(
            "--base-ip {base} is not a loopback address; use one in 127.0.0.0/8"
        ));
    }
    let mut out = Vec::with_capacity(n);
    let mut next = u32::from(base);
    while out.len() < n {
        let ip = Ipv4Addr::from(next);
        if ip.octets()[0] != 127 {
            return Err(format!(
                "{n} nodes from {base} run past 127.255.255.254; use a lower --base-ip"
            ));
        }
        if !matches!(ip.octets()[3], 0 | 255) {
            out.push(ip);
        }
        next = next.wrapping_add(1);
    }
    Ok(out)
}

/// What the ready file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyFile {
    /// Admin API address (`host:port`).
    pub admin: String,
    /// Process id of the simulator.
    pub pid: u32,
    /// Every node, as `GET /nodes` lists them.
    pub nodes: Vec<NodeInfo>,
}

/// A running fleet. Dropping it closes every port.
#[derive(Debug)]
pub struct Simulator {
    shared: Arc<serve::Shared>,
    admin_addr: SocketAddr,
    admin_task: Option<JoinHandle<()>>,
    stop_admin: Option<oneshot::Sender<()>>,
}

impl Simulator {
    /// Opens every node's ports and the admin API. Fails, with nothing left open, when
    /// an address is taken or descriptors would run out.
    pub async fn start(cfg: SimConfig) -> anyhow::Result<Simulator> {
        let ips = addresses(cfg.base_ip, cfg.chains.len()).map_err(anyhow::Error::msg)?;
        let limit = fd_limit().unwrap_or(1024);
        let listeners = cfg.listeners();
        let budget = serve::Shared::connection_budget(limit, listeners);
        if budget < 64 {
            anyhow::bail!(
                "{} nodes need {listeners} listening sockets, but the open-file limit is {limit}; \
                 use --no-metrics, or split the fleet over several simulator processes with \
                 distinct --base-ip",
                cfg.chains.len()
            );
        }
        let nodes: Vec<serve::Node> = cfg
            .chains
            .iter()
            .zip(ips)
            .enumerate()
            .map(|(index, (&chain, ip))| {
                let block_time = cfg.block_time.unwrap_or(chain.default_block_time());
                serve::Node::new(
                    view::Identity {
                        index,
                        name: format!("sim-{index}"),
                        chain,
                        ip,
                    },
                    model::Params::new(chain, block_time, cfg.peers, index as u64),
                )
            })
            .collect();
        let pool = if cfg.chains.contains(&SimChain::Cosmos) {
            cosmos::PeerPool::new(cfg.peers)
        } else {
            cosmos::PeerPool::default()
        };
        let duty = duty::Chains::new(&cfg.chains, |chain| {
            let block_time = cfg.block_time.unwrap_or(chain.default_block_time());
            model::Params::new(chain, block_time, cfg.peers, 0)
        });
        let shared = Arc::new(serve::Shared {
            nodes,
            start: Instant::now(),
            start_wall: jiff::Timestamp::now(),
            metrics: cfg.metrics,
            pool,
            duty,
            conns: AtomicUsize::new(0),
            close_above: budget - budget / 8,
            accept_warned: std::sync::atomic::AtomicU64::new(0),
        });
        let mut bound = Vec::with_capacity(shared.nodes.len());
        for node in &shared.nodes {
            bound.push(serve::bind(node, cfg.metrics).with_context(|| {
                format!(
                    "node {} ({}): is another simulator using these addresses? pick another --base-ip",
                    node.id.index, node.id.chain
                )
            })?);
        }
        let admin_listener = tokio::net::TcpListener::bind(cfg.admin)
            .await
            .with_context(|| format!("cannot listen on the admin address {}", cfg.admin))?;
        let admin_addr = admin_listener.local_addr()?;
        for (index, listeners) in bound.into_iter().enumerate() {
            serve::spawn(&shared, index, listeners);
        }
        let router = admin::router(admin::Admin {
            shared: shared.clone(),
            lock: Arc::new(tokio::sync::Mutex::new(())),
        });
        let (stop_admin, stopped) = oneshot::channel::<()>();
        let admin_task = tokio::spawn(async move {
            let server = axum::serve(admin_listener, router).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = server.await {
                tracing::error!(error = %e, "admin server failed");
            }
        });
        Ok(Simulator {
            shared,
            admin_addr,
            admin_task: Some(admin_task),
            stop_admin: Some(stop_admin),
        })
    }

    /// The admin API address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Every node, as of now.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        self.shared
            .nodes
            .iter()
            .map(|n| admin::info(&self.shared, n))
            .collect()
    }

    /// The ready-file document.
    pub fn ready(&self) -> ReadyFile {
        ReadyFile {
            admin: self.admin_addr.to_string(),
            pid: std::process::id(),
            nodes: self.nodes(),
        }
    }

    /// Stops the admin API and closes every node's ports.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop_admin.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.admin_task.take() {
            // Admin requests are short; do not wait forever for a stuck client.
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                tracing::warn!("admin server did not stop within 5s");
            }
        }
        for node in &self.shared.nodes {
            serve::kill(node).await;
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(task) = self.admin_task.take() {
            task.abort();
        }
        for node in &self.shared.nodes {
            for task in node
                .tasks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain(..)
            {
                task.abort();
            }
        }
    }
}

/// Writes `doc` to `path` atomically: readers see no file or the whole file.
pub fn write_ready(path: &Path, doc: &ReadyFile) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let bytes = serde_json::to_vec(doc).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

// `rlim_t` is `u64` on 64-bit Linux, but not on every target: keep the conversions.
#[allow(clippy::useless_conversion)]
fn fd_limit() -> std::io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given, which lives on our stack.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(u64::from(lim.rlim_cur))
}

/// Raises the soft open-file limit to the hard limit; returns (before, after).
#[allow(clippy::useless_conversion)]
pub fn raise_fd_limit() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: as in fd_limit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    // An unlimited hard limit still meets the kernel's per-process cap (nr_open).
    let target = if lim.rlim_max == libc::RLIM_INFINITY {
        1 << 20
    } else {
        lim.rlim_max
    };
    if before < target {
        lim.rlim_cur = target;
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((u64::from(before), u64::from(lim.rlim_cur)))
}

/// Resolves on SIGTERM or SIGINT.
async fn signalled() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Runs `vigil-sim` until SIGTERM or SIGINT.
pub fn run(args: SimulateArgs) -> ExitCode {
    telemetry::init(args.log_format);
    let cfg = match SimConfig::from_args(&args) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match raise_fd_limit() {
        Ok((before, after)) if before != after => {
            tracing::info!(before, after, "raised the open-file limit")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(async move {
        if let Some(path) = &args.ready_file {
            // A file left by an earlier run must not pass for this one's readiness.
            let _ = std::fs::remove_file(path);
        }
        let started = Instant::now();
        let sim = match Simulator::start(cfg.clone()).await {
            Ok(sim) => sim,
            Err(e) => {
                tracing::error!("cannot start the simulator: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", sim.admin_addr());
        let _ = out.flush();
        drop(out);
        if let Some(path) = &args.ready_file
            && let Err(e) = write_ready(path, &sim.ready())
        {
            tracing::error!(path = %path.display(), error = %e, "cannot write the ready file");
            return ExitCode::FAILURE;
        }
        let count = |c: SimChain| cfg.chains.iter().filter(|x| **x == c).count();
        tracing::info!(
            nodes = cfg.chains.len(),
            substrate = count(SimChain::Substrate),
            ethereum = count(SimChain::Ethereum),
            cosmos = count(SimChain::Cosmos),
            first_ip = %cfg.base_ip,
            metrics = cfg.metrics,
            admin = %sim.admin_addr(),
            startup_ms = started.elapsed().as_millis() as u64,
            "simulator ready"
        );
        signalled().await;
        tracing::info!("stopping");
        sim.stop().await;
        if let Some(path) = &args.ready_file {
            let _ = std::fs::remove_file(path);
        }
        ExitCode::SUCCESS
    });
    // Do not wait for stray connection tasks at exit.
    rt.shutdown_timeout(Duration::from_secs(1));
    code
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn mixes() {
        let mix = parse_mix("substrate=6, ethereum=2,cosmos=2").unwrap();
        assert_eq!(
            mix,
            [
                (SimChain::Substrate, 6),
                (SimChain::Ethereum, 2),
                (SimChain::Cosmos, 2)
            ]
        );
        let p = plan(None, SimChain::Substrate, Some(&mix)).unwrap();
        assert_eq!(p.len(), 10);
        assert_eq!(p[0], SimChain::Substrate);
        assert_eq!(p[6], SimChain::Ethereum);
        assert_eq!(p[9], SimChain::Cosmos);
        let p = plan(Some(10_000), SimChain::Substrate, Some(&mix)).unwrap();
        assert_eq!(p.iter().filter(|c| **c == SimChain::Ethereum).count(), 2000);
        // Rounding by largest remainder still gives exactly n nodes.
        let thirds = parse_mix("substrate=1,ethereum=1,cosmos=1").unwrap();
        let p = plan(Some(10), SimChain::Substrate, Some(&thirds)).unwrap();
        assert_eq!(p.len(), 10);
        assert_eq!(p.iter().filter(|c| **c == SimChain::Substrate).count(), 4);
        assert_eq!(
            plan(Some(3), SimChain::Cosmos, None).unwrap(),
            [SimChain::Cosmos; 3]
        );
        assert_eq!(
            plan(None, SimChain::Ethereum, None).unwrap(),
            [SimChain::Ethereum]
        );
        for bad in [
            "",
            "substrate",
            "substrate=x",
            "bitcoin=1",
            "cosmos=0",
            "cosmos=1,cosmos=2",
        ] {
            assert!(parse_mix(bad).is_err(), "{bad}");
        }
        assert!(plan(Some(0), SimChain::Substrate, None).is_err());
        assert!(plan(Some(0), SimChain::Substrate, Some(&mix)).is_err());
    }

    #[test]
    fn address_scheme() {
        let a = addresses(Ipv4Addr::new(127, 20, 0, 253), 4).unwrap();
        assert_eq!(
            a,
            [
                Ipv4Addr::new(127, 20, 0, 253),
                Ipv4Addr::new(127, 20, 0, 254),
                Ipv4Addr::new(127, 20, 1, 1),
                Ipv4Addr::new(127, 20, 1, 2),
            ]
        );
        assert_eq!(
            addresses(Ipv4Addr::new(127, 20, 0, 0), 1).unwrap(),
            [Ipv4Addr::new(127, 20, 0, 1)]
        );
        let many = addresses(Ipv4Addr::new(127, 20, 0, 1), 10_000).unwrap();
        assert_eq!(many.len(), 10_000);
        assert_eq!(many[9_999], Ipv4Addr::new(127, 20, 39, 94));
        assert!(
            addresses(Ipv4Addr::new(10, 0, 0, 1), 1)
                .unwrap_err()
                .contains("loopback")
        );
        assert!(addresses(Ipv4Addr::new(127, 255, 255, 250), 10).is_err());
    }

    #[test]
    fn arguments() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            sim: SimulateArgs,
        }
        let parse = |argv: &[&str]| {
            let cli = Cli::try_parse_from(std::iter::once("vigil-sim").chain(argv.iter().copied()))
                .map_err(|e| e.to_string())?;
            SimConfig::from_args(&cli.sim)
        };
        let cfg = parse(&["--nodes", "4", "--chain", "cosmos", "--block-time", "500ms"]).unwrap();
        assert_eq!(cfg.chains, [SimChain::Cosmos; 4]);
        assert_eq!(cfg.block_time, Some(Duration::from_millis(500)));
        assert_eq!(cfg.listeners(), 8);
        let cfg = parse(&["--mix", "substrate=1,ethereum=1", "--no-metrics"]).unwrap();
        assert_eq!(cfg.chains, [SimChain::Substrate, SimChain::Ethereum]);
        assert_eq!(cfg.listeners(), 2);
        assert_eq!(cfg.admin, SocketAddr::from(([127, 0, 0, 1], 0)));
        assert_eq!(cfg.block_time, None);
        assert!(parse(&["--chain", "cosmos", "--mix", "cosmos=1"]).is_err());
        assert!(
            parse(&["--block-time", "0s"])
                .unwrap_err()
                .contains("too short")
        );
        assert!(parse(&["--block-time", "soon"]).is_err());
        assert!(parse(&["--peers", "5000"]).is_err());
        assert!(parse(&["--base-ip", "192.168.1.1"]).is_err());
    }

    #[test]
    fn ready_file_is_written_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ready.json");
        let doc = ReadyFile {
            admin: "127.0.0.1:1234".into(),
            pid: 7,
            nodes: Vec::new(),
        };
        write_ready(&path, &doc).unwrap();
        let back: ReadyFile = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back, doc);
        assert!(!dir.path().join("ready.json.tmp").exists());
    }

    #[test]
    fn fd_limit_is_readable() {
        let limit = fd_limit().unwrap();
        assert!(limit > 0);
    }
}
