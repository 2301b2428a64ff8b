//! The `vigil` binary: `run` (the operator), `crd` (print the CRDs), `probe`, `advisor-cost`
//! (the advisor's cost, simulated), `archive verify` (re-check a run's bundle) and `version`.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::process::ExitCode;
use vigil::leader::LeaseConfig;
use vigil::operator::{self, Settings, Shutdown};
use vigil::telemetry::{self, LogFormat};

// A probe allocates many small, short-lived buffers (request, response, JSON values) on
// whichever worker thread runs it; glibc's malloc spent a quarter of the operator's CPU on
// them at 10,000 validators (perf, BENCHMARKS.md). mimalloc's thread-local heaps do not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "vigil",
    version,
    about = "Keeps watch over blockchain validators and pipeline runs on Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator.
    Run(RunArgs),
    /// Print every CustomResourceDefinition as YAML (pipe to `kubectl apply --server-side -f -`).
    Crd {
        /// Write one file per CRD into each of these directories instead of printing
        /// (the repository keeps them in `crds/` and `charts/vigil/crds/`).
        #[arg(long)]
        out_dir: Vec<std::path::PathBuf>,
    },
    /// Probe one node once (or a few times) and print what Vigil would conclude; no cluster
    /// needed. Exit code: 0 healthy, 1 unhealthy, 3 cannot tell, 64 bad arguments.
    Probe(vigil::inspect::ProbeArgs),
    /// Simulate a month of the LLM advisor against the design it replaces (a model call on
    /// every unhealthy probe) and print the cost table; no cluster or provider needed. Exit
    /// code: 0 when onIssue meets its target, 1 when it does not, 2 bad arguments.
    AdvisorCost(AdvisorCostArgs),
    /// Re-check a run's archive bundle (`archive verify <location>`); no cluster needed.
    Archive {
        #[command(subcommand)]
        command: vigil::archive::cli::ArchiveCommand,
    },
    /// Print the version.
    Version,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Watch only these namespaces (comma-separated or repeated; default: all namespaces).
    /// Each needs the operator's Role there; nothing outside them is read or written.
    #[arg(long = "namespace", env = "VIGIL_NAMESPACE", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Only handle objects matching this label selector (to shard work across deployments).
    #[arg(long, env = "VIGIL_SELECTOR")]
    selector: Option<String>,
    /// Address of the metrics and health server.
    #[arg(long, env = "VIGIL_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Log format.
    #[arg(long, value_enum, env = "VIGIL_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    /// Name of the leader-election Lease (use one per shard).
    #[arg(long, env = "VIGIL_LEASE_NAME", default_value = "vigil-leader")]
    lease_name: String,
    /// Namespace of the leader-election Lease (default: the pod's namespace, else `default`).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Seconds a lease stays valid without renewal; a standby takes over after this.
    #[arg(long, env = "VIGIL_LEASE_DURATION", default_value_t = 15)]
    lease_duration: u64,
    /// Identity in the lease (default: the pod name, else host name and process id).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Most reconciles running at once, per kind.
    #[arg(long, env = "VIGIL_CONCURRENCY", default_value_t = 16)]
    concurrency: u16,
    /// Most probes in flight at once. When probes wait for a slot, a freed slot goes to
    /// the namespace with the fewest probes in flight, so one namespace cannot starve others.
    #[arg(long, env = "VIGIL_PROBE_CONCURRENCY", default_value_t = 512)]
    probe_concurrency: usize,
    /// MiB of node responses (bodies being read and their decoded form) all probes may
    /// hold at once; a probe waits for its share, up to its timeout.
    #[arg(long, env = "VIGIL_PROBE_MEMORY_BUDGET", default_value_t = 32,
          value_parser = clap::value_parser!(u64).range(16..=4096))]
    probe_memory_budget: u64,
    /// Also refresh block heights in status this often when nothing else changed (e.g. 5m),
    /// each validator at its own point of the period so the fleet's writes spread over it;
    /// 0s writes them only together with a change, so a healthy fleet causes no writes.
    #[arg(long, env = "VIGIL_FACTS_REFRESH", default_value = "0s")]
    facts_refresh: String,
    /// Decide and record every remediation (status, Events, metrics), but never act.
    #[arg(long, env = "VIGIL_DRY_RUN")]
    dry_run: bool,
    /// Most advisor (LLM) calls in flight at once, across all policies.
    #[arg(long, env = "VIGIL_ADVISOR_CONCURRENCY", default_value_t = 4)]
    advisor_concurrency: usize,
    /// Let outbound connections (probes, webhooks, alerts, LLM APIs, S3) reach loopback
    /// addresses. Off by default: in a pod, loopback is the operator itself. Tests and the
    /// demo, which run everything on one machine, turn it on.
    #[arg(long, env = "VIGIL_ALLOW_LOOPBACK")]
    allow_loopback: bool,
    /// Never connect to these networks (CIDRs or addresses, comma-separated or repeated),
    /// e.g. the cluster's service and pod ranges or the control plane's addresses.
    #[arg(long = "egress-deny", env = "VIGIL_EGRESS_DENY", value_delimiter = ',', value_parser = egress_net)]
    egress_deny: Vec<ipnet::IpNet>,
    /// Connect only to these networks (CIDRs or addresses, comma-separated or repeated);
    /// empty: anywhere not denied.
    #[arg(long = "egress-allow", env = "VIGIL_EGRESS_ALLOW", value_delimiter = ',', value_parser = egress_net)]
    egress_allow: Vec<ipnet::IpNet>,
    /// The operator's own pod addresses (from the downward API), never connected to.
    #[arg(long, env = "POD_IPS", value_delimiter = ',')]
    pod_ips: Vec<std::net::IpAddr>,
}

fn egress_net(s: &str) -> Result<ipnet::IpNet, String> {
    vigil::egress::parse_net(s)
}

#[derive(clap::Args)]
struct AdvisorCostArgs {
    /// Days simulated.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=366))]
    days: u32,
    /// Validators, all of one chain under one policy.
    #[arg(long, default_value_t = 21, value_parser = clap::value_parser!(u32).range(1..=1000))]
    validators: u32,
    /// Seed of the trace (the same seed, the same table).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// The policy's advisor.dedupTtl (e.g. 72h); default: the policy default, 24h.
    #[arg(long, value_parser = dedup_ttl)]
    dedup_ttl: Option<std::time::Duration>,
}

/// A dedupTtl the policy accepts (at most 30 days).
fn dedup_ttl(s: &str) -> Result<std::time::Duration, String> {
    let d = vigil::duration::parse(s).map_err(|e| e.to_string())?;
    if d > vigil::policy::MAX_POLICY_DURATION {
        return Err("at most 30 days (720h)".into());
    }
    Ok(d)
}

fn main() -> ExitCode {
    // One crypto provider for every TLS client in the process (kube and reqwest both use rustls).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Command::Crd { out_dir } => match crd(out_dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Version => {
            println!("vigil {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Run(args) => run(args),
        Command::Probe(args) => ExitCode::from(vigil::inspect::main(args)),
        Command::Archive { command } => ExitCode::from(vigil::archive::cli::main(command)),
        Command::AdvisorCost(args) => {
            use vigil::advisor::simulate;
            let report = simulate::simulate(&simulate::Options {
                days: args.days,
                validators: args.validators,
                seed: args.seed,
                dedup_ttl: args.dedup_ttl,
            });
            print!("{}", simulate::table(&report));
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn crd(out_dirs: Vec<std::path::PathBuf>) -> anyhow::Result<()> {
    if out_dirs.is_empty() {
        print!("{}", vigil::crd::all_yaml()?);
    }
    for dir in out_dirs {
        std::fs::create_dir_all(&dir)?;
        for (file, crd) in vigil::crd::all() {
            std::fs::write(dir.join(file), vigil::crd::to_yaml(&crd)?)?;
        }
    }
    Ok(())
}

fn run(args: RunArgs) -> ExitCode {
    telemetry::init(args.log_format);
    // Before any client exists: every outbound connection passes this filter.
    vigil::egress::configure(vigil::egress::Policy {
        allow_loopback: args.allow_loopback,
        deny: args.egress_deny.clone(),
        allow: args.egress_allow.clone(),
        own: args.pod_ips.clone(),
    });
    tracing::info!(
        allow_loopback = args.allow_loopback,
        deny = ?args.egress_deny,
        allow = ?args.egress_allow,
        own = ?args.pod_ips,
        "egress filter"
    );
    vigil::probe::budget::configure(args.probe_memory_budget << 20);
    tracing::info!(mib = args.probe_memory_budget, "probe memory budget");
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let client = match operator::Clients::infer().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot build a Kubernetes client (KUBECONFIG or in-cluster config)");
                return ExitCode::FAILURE;
            }
        };
        let identity = args.identity.unwrap_or_else(default_identity);
        let facts_refresh = match vigil::duration::parse(&args.facts_refresh) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "--facts-refresh");
                return ExitCode::FAILURE;
            }
        };
        let settings = Settings {
            scope: vigil::scope::Scope::from_args(&args.namespaces),
            selector: args.selector,
            listen: args.listen,
            lease: LeaseConfig {
                name: args.lease_name,
                namespace: args.lease_namespace,
                identity,
                duration_secs: args.lease_duration.max(2),
                grace_secs: (args.lease_duration / 3).max(1),
            },
            concurrency: args.concurrency,
            probe_concurrency: args.probe_concurrency,
            facts_refresh,
            dry_run: args.dry_run,
            advisor_concurrency: args.advisor_concurrency,
        };
        match operator::run(client, settings, Shutdown::on_signals()).await {
            Ok(()) => {
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(error = %e, "operator stopped");
                ExitCode::FAILURE
            }
        }
    })
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!(
        "{}-{}",
        if host.is_empty() { "vigil" } else { &host },
        std::process::id()
    )
}
