//! `vigil probe`: one probe (or a few) of a node from the command line, no cluster needed.
//! It runs the same probe client and the same health evaluation as the operator, so users can
//! point it at their own node and see what Vigil would conclude.

use crate::api::{
    Chain, Endpoints, HttpUrl, MonitorPolicySpec, MonitoredValidator, MonitoredValidatorSpec,
    PolicyRef,
};
use crate::health::{self, Desired, FleetView, Memory, Status};
use crate::monitor::{Config, outcome_of};
use crate::probe::{Observation, ProbeError, Prober};
use jiff::Timestamp;
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

/// Exit code when the node is healthy.
pub const EXIT_HEALTHY: u8 = 0;
/// Exit code when the node is unhealthy (`Ready=False`).
pub const EXIT_UNHEALTHY: u8 = 1;
/// Exit code when Vigil could not tell (`Ready=Unknown`: garbage answers).
pub const EXIT_UNKNOWN: u8 = 3;
/// Exit code when the arguments or the policy file are unusable.
pub const EXIT_USAGE: u8 = 64;

/// Arguments of `vigil probe`.
#[derive(clap::Args, Debug, Clone)]
pub struct ProbeArgs {
    /// How to probe: substrate, ethereum, cosmos, http or tcp.
    #[arg(long, value_parser = parse_chain)]
    pub chain: Chain,
    /// JSON-RPC (or CometBFT RPC) URL, e.g. http://127.0.0.1:9944.
    #[arg(long)]
    pub rpc: Option<String>,
    /// Prometheus metrics URL, e.g. http://127.0.0.1:9615/metrics.
    #[arg(long)]
    pub metrics: Option<String>,
    /// Plain HTTP health URL (the probe of the `http` chain).
    #[arg(long)]
    pub health: Option<String>,
    /// host:port (the probe of the `tcp` chain).
    #[arg(long)]
    pub tcp: Option<String>,
    /// Prefix of the node's metric names on forks (e.g. polkadot).
    #[arg(long)]
    pub metrics_prefix: Option<String>,
    /// Judge with the thresholds of this MonitorPolicy (a YAML file as given to kubectl);
    /// default: the thresholds a new MonitorPolicy gets.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Probe timeout (overrides the policy's probe.timeout).
    #[arg(long)]
    pub timeout: Option<String>,
    /// Probes to take; two or more let Vigil see whether the best block advances.
    #[arg(long, default_value_t = 1)]
    pub samples: u32,
    /// Time between samples.
    #[arg(long, default_value = "6s")]
    pub interval: String,
    /// `text` for people, `json` for scripts.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    /// The validator whose duty to read: a Cosmos consensus address (hex or bech32
    /// valcons), a Substrate account (authorship is read from --metrics).
    #[arg(long)]
    pub validator: Option<String>,
    /// Where to read blocks and signatures (default: --rpc).
    #[arg(long)]
    pub duty_rpc: Option<String>,
}

/// Output format of `vigil probe`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Aligned text.
    Text,
    /// One JSON document.
    Json,
}

fn parse_chain(s: &str) -> Result<Chain, String> {
    serde_json::from_value(json!(s))
        .map_err(|_| format!("unknown chain {s:?}: use substrate, ethereum, cosmos, http or tcp"))
}

/// What one run of `vigil probe` found.
#[derive(Debug)]
pub struct Report {
    /// The last probe's facts, or why it failed.
    pub last: Result<Observation, ProbeError>,
    /// Best blocks seen, one per successful sample.
    pub bests: Vec<u64>,
    /// Time from the first to the last sample.
    pub span: Duration,
    /// The judged conditions, `Ready` last.
    pub conditions: Vec<Desired>,
    /// The validator's duty (`--validator`): `Signing` and the facts.
    pub duty: Option<(Desired, crate::api::DutyFacts)>,
}

impl Report {
    /// The `Ready` condition.
    pub fn ready(&self) -> &Desired {
        self.conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .expect("evaluation always yields Ready")
    }

    /// The process exit code for this verdict.
    pub fn exit_code(&self) -> u8 {
        match self.ready().status {
            Status::True => EXIT_HEALTHY,
            Status::False => EXIT_UNHEALTHY,
            Status::Unknown => EXIT_UNKNOWN,
        }
    }
}

/// Builds the probe configuration from the arguments (and the policy file).
pub fn config(args: &ProbeArgs) -> Result<Config, String> {
    let mut policy = match &args.policy {
        Some(path) => read_policy(path)?,
        None => MonitorPolicySpec::default(),
    };
    if let Some(t) = &args.timeout {
        policy.probe.timeout = crate::api::Timeout::new(t.clone());
    }
    let url = |u: &Option<String>| u.clone().map(HttpUrl);
    let spec = MonitoredValidatorSpec {
        chain: args.chain,
        endpoints: Endpoints {
            rpc: url(&args.rpc),
            metrics: url(&args.metrics),
            health: url(&args.health),
            tcp: args.tcp.clone(),
            api: None,
            beacon: None,
        },
        http: None,
        metrics_prefix: args.metrics_prefix.clone(),
        target: None,
        policy_ref: PolicyRef { name: "cli".into() },
        suspend: false,
        duty: args.validator.as_ref().map(|v| crate::api::DutySpec {
            consensus_address: (args.chain == Chain::Cosmos).then(|| v.clone()),
            account: (args.chain == Chain::Substrate).then(|| v.clone()),
            beacon_validator: (args.chain == Chain::Ethereum).then(|| v.clone()),
            rpc: url(&args.duty_rpc),
            ..Default::default()
        }),
    };
    let policy = crate::policy::validate(&policy).map_err(|p| format!("policy: {p}"))?;
    Config::new(&MonitoredValidator::new("cli", spec), &policy)
}

/// Reads a MonitorPolicy manifest (or a bare spec) from a YAML file.
fn read_policy(path: &std::path::Path) -> Result<MonitorPolicySpec, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let spec = match doc.get("spec") {
        Some(s) => s.clone(),
        None => doc,
    };
    serde_yaml::from_value(spec)
        .map_err(|e| format!("{}: not a MonitorPolicy: {e}", path.display()))
}

/// Probes `samples` times, `interval` apart, and judges like the operator does for a lone
/// validator whose thresholds are met at once (one CLI run is the whole history).
pub async fn run_probe(config: &Config, samples: u32, interval: Duration) -> Report {
    let prober = Prober::new();
    let mut limits = config.limits.clone();
    limits.failure_threshold = 1;
    limits.success_threshold = 1;
    let mut memory = Memory::default();
    let mut bests = Vec::new();
    let started = Timestamp::now();
    let mut last = Err(ProbeError::Config("no probe ran".into()));
    let mut conditions = Vec::new();
    for i in 0..samples.max(1) {
        if i > 0 {
            tokio::time::sleep(interval).await;
        }
        let result = prober.probe(&config.target, &config.options).await;
        if let Ok(o) = &result
            && let Some(b) = o.best_block
        {
            bests.push(b);
        }
        let best = result.as_ref().ok().and_then(|o| o.best_block);
        let fleet = FleetView {
            highest: best.or(memory.best),
            highest_changed_at: memory.best_changed_at,
            members: 1,
            observed: 1,
            stalled: 0,
        };
        let outcome = outcome_of(result.clone());
        let judged = health::Judged {
            outcome: &outcome,
            memory: &memory,
            fleet: &fleet,
            published_ready: None,
        };
        let ev = health::evaluate(config.chain, &limits, judged, Timestamp::now());
        memory = ev.memory;
        conditions = ev.publish.unwrap_or(ev.checks);
        last = result;
    }
    let span: Duration = Timestamp::now()
        .duration_since(started)
        .try_into()
        .unwrap_or_default();
    block_progress(&mut conditions, &bests, span, config.limits.max_block_stall);
    let duty = match &config.duty {
        Some(d) => Some(read_duty(config, d, &last, interval).await),
        None => None,
    };
    Report {
        last,
        bests,
        span,
        conditions,
        duty,
    }
}

/// One reading of a validator's duty, the way the operator reads it (for Cosmos: a block
/// follower on the duty RPC, given a few seconds to read the recent blocks).
async fn read_duty(
    config: &Config,
    d: &crate::monitor::Duty,
    last: &Result<Observation, ProbeError>,
    interval: Duration,
) -> (Desired, crate::api::DutyFacts) {
    let hub = std::sync::Arc::new(crate::duty::feed::Hub::default());
    if let (Some(rpc), Some(addr)) = (&d.rpc, &d.consensus) {
        let every = Duration::from_millis(500);
        let best = last.as_ref().ok().and_then(|o| o.best_block);
        let _ = hub.signing(rpc, addr, d.thresholds.window, every);
        for _ in 0..40 {
            tokio::time::sleep(every).await;
            match hub.signing(rpc, addr, d.thresholds.window, every) {
                Ok(s) if read_enough(&s, d.thresholds.window, best) => break,
                Err(_) => break,
                _ => {}
            }
        }
    }
    let probe = last.as_ref().ok().map(|o| crate::monitor::ProbeDuty {
        authored: o.authored,
        authority: o.authority,
        best: o.best_block,
        last_signed: o.last_signed.clone(),
    });
    crate::monitor::read_duty(&hub, config.chain, d, probe, interval, Timestamp::now())
}

/// Whether a one-shot duty reading has read enough: a few blocks of the window, and up to
/// the height the probe saw (`best`, when known). The block follower fills a window oldest
/// first, 50 blocks a tick, so on a chain longer than that its first blocks are a window
/// old: judged then, a validator that stopped a minute ago would still look like signing.
fn read_enough(s: &crate::duty::commits::Signing, window: u64, best: Option<u64>) -> bool {
    // The newest block read is the one before the node's latest (its commit is final).
    let caught_up = best.is_none_or(|b| s.newest.is_some_and(|n| n.saturating_add(2) >= b));
    s.window >= window.min(10) && caught_up
}

/// A single run cannot see a stall shorter than `maxBlockStall`; say what was seen instead of
/// claiming that blocks advance.
fn block_progress(conditions: &mut [Desired], bests: &[u64], span: Duration, stall: Duration) {
    let Some(c) = conditions
        .iter_mut()
        .find(|c| c.type_ == "BlockProduction" && c.status == Status::True)
    else {
        return;
    };
    match (bests.first(), bests.last()) {
        (Some(first), Some(last)) if last > first => {
            c.message = format!(
                "The best block advanced from #{first} to #{last} in {}",
                crate::duration::format(span)
            );
        }
        _ if bests.len() < 2 => {
            c.status = Status::Unknown;
            c.reason = "SingleSample";
            c.message = "One sample cannot show block progress; use --samples 2 or more".into();
        }
        _ => {
            c.status = Status::Unknown;
            c.reason = "NotYetStalled";
            c.message = format!(
                "The best block did not change in {}; health.maxBlockStall is {}",
                crate::duration::format(span),
                crate::duration::format(stall)
            );
        }
    }
}

/// The report as text for people.
pub fn render_text(config: &Config, report: &Report) -> String {
    let mut out = String::new();
    let t = &config.target;
    fn url(u: &Option<crate::probe::Url>) -> Option<&str> {
        u.as_ref().map(|u| u.as_str().trim_end_matches('/'))
    }
    let endpoint = url(&t.rpc)
        .or(url(&t.health))
        .or(t.tcp.as_deref())
        .or(url(&t.metrics))
        .unwrap_or_default();
    out.push_str(&format!("{} {endpoint}\n", config.chain.as_str()));
    match &report.last {
        Ok(o) => {
            out.push_str(&format!("  latency         {} ms\n", o.latency.as_millis()));
            let facts: [(&str, Option<String>); 7] = [
                ("best block", o.best_block.map(|b| format!("#{b}"))),
                ("finalized", o.finalized_block.map(|b| format!("#{b}"))),
                ("sync target", o.target_block.map(|b| format!("#{b}"))),
                ("peers", o.peers.map(|p| p.to_string())),
                ("syncing", o.syncing.map(|s| s.to_string())),
                ("version", o.version.clone()),
                ("network", o.network.clone()),
            ];
            for (k, v) in facts {
                if let Some(v) = v {
                    out.push_str(&format!("  {k:<15} {v}\n"));
                }
            }
            for w in &o.warnings {
                out.push_str(&format!("  warning         {w}\n"));
            }
        }
        Err(e) => out.push_str(&format!("  probe failed    {e}\n")),
    }
    if let Some((_, f)) = &report.duty {
        out.push_str("duty\n");
        let facts: [(&str, Option<String>); 9] = [
            ("last signed", f.last_signed_height.map(|h| format!("#{h}"))),
            ("missed in row", Some(f.missed_in_a_row.to_string())),
            (
                "missed",
                Some(format!(
                    "{} of {} ({} alone)",
                    f.missed_in_window, f.window, f.solo_missed_in_window
                )),
            ),
            ("active", f.active.map(|a| a.to_string())),
            ("jailed", f.jailed.map(|a| a.to_string())),
            ("tombstoned", f.tombstoned.map(|a| a.to_string())),
            ("voting power", f.voting_power.map(|p| p.to_string())),
            ("authored", f.blocks_authored.map(|p| p.to_string())),
            ("state", f.state.clone()),
        ];
        for (k, v) in facts {
            if let Some(v) = v {
                out.push_str(&format!("  {k:<15} {v}\n"));
            }
        }
    }
    out.push_str("conditions\n");
    let signing = report.duty.as_ref().map(|(d, _)| d);
    for c in report.conditions.iter().chain(signing) {
        out.push_str(&format!(
            "  {:<15} {:<7} {:<18} {}\n",
            c.type_,
            c.status.as_str(),
            c.reason,
            c.message
        ));
    }
    out
}

/// The report as one JSON document for scripts.
pub fn render_json(config: &Config, report: &Report) -> serde_json::Value {
    let facts = report.last.as_ref().ok().map(|o| {
        json!({
            "bestBlock": o.best_block,
            "finalizedBlock": o.finalized_block,
            "targetBlock": o.target_block,
            "peers": o.peers,
            "syncing": o.syncing,
            "version": o.version,
            "network": o.network,
            "healthOk": o.health_ok,
            "latencyMs": o.latency.as_millis() as u64,
            "warnings": o.warnings,
        })
    });
    json!({
        "chain": config.chain.as_str(),
        "facts": facts,
        "error": report.last.as_ref().err().map(|e| e.to_string()),
        "samples": report.bests.len(),
        "spanMs": report.span.as_millis() as u64,
        "ready": report.ready().status.as_str(),
        "duty": report.duty.as_ref().map(|(_, f)| f),
        "conditions": report.conditions.iter().chain(report.duty.as_ref().map(|(d, _)| d)).map(|c| json!({
            "type": c.type_,
            "status": c.status.as_str(),
            "reason": c.reason,
            "message": c.message,
        })).collect::<Vec<_>>(),
    })
}

/// Runs `vigil probe` and returns the process exit code.
pub fn main(args: ProbeArgs) -> u8 {
    let config = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let interval = match crate::duration::parse(&args.interval) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: --interval: {e}");
            return EXIT_USAGE;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return EXIT_USAGE;
        }
    };
    let report = rt.block_on(run_probe(&config, args.samples, interval));
    let text = match args.output {
        Output::Text => render_text(&config, &report),
        Output::Json => format!("{:#}\n", render_json(&config, &report)),
    };
    // A closed pipe (`| head`) is not an error of the probe: keep the verdict's exit code.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
    report.exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_shot_duty_reading_waits_for_the_recent_blocks() {
        let read = |window: u64, newest: Option<u64>| crate::duty::commits::Signing {
            window,
            newest,
            ..Default::default()
        };
        // (blocks read, newest read, window asked, best the probe saw, enough)
        let table = [
            // The first tick of a 100-block window on a chain at 109: blocks 9..58 read.
            (50, Some(58), 100, Some(109), false),
            // The next tick reached the top.
            (100, Some(108), 100, Some(109), true),
            // The chain moved on by one while reading: still caught up.
            (100, Some(107), 100, Some(109), true),
            // A young chain: fewer blocks than the window, all of them read.
            (12, Some(12), 100, Some(13), true),
            // Too few blocks to judge yet.
            (3, Some(108), 100, Some(109), false),
            // No probe height (the probe failed): a few blocks are enough.
            (10, Some(58), 100, None, true),
            // Nothing read.
            (0, None, 100, Some(109), false),
        ];
        for (window, newest, asked, best, enough) in table {
            assert_eq!(
                read_enough(&read(window, newest), asked, best),
                enough,
                "read {window} up to {newest:?} of {asked}, best {best:?}"
            );
        }
    }

    fn ok(type_: &'static str) -> Desired {
        Desired {
            type_,
            status: Status::True,
            reason: "Advancing",
            message: String::new(),
        }
    }

    #[test]
    fn one_sample_does_not_claim_progress() {
        let mut c = vec![ok("BlockProduction")];
        block_progress(&mut c, &[10], Duration::ZERO, Duration::from_secs(180));
        assert_eq!(
            (c[0].status, c[0].reason),
            (Status::Unknown, "SingleSample")
        );
    }

    #[test]
    fn progress_between_samples_is_shown() {
        let mut c = vec![ok("BlockProduction")];
        block_progress(
            &mut c,
            &[10, 12],
            Duration::from_secs(12),
            Duration::from_secs(180),
        );
        assert_eq!(c[0].status, Status::True);
        assert!(c[0].message.contains("#10 to #12"), "{}", c[0].message);
        let mut c = vec![ok("BlockProduction")];
        block_progress(
            &mut c,
            &[10, 10],
            Duration::from_secs(12),
            Duration::from_secs(180),
        );
        assert_eq!(c[0].reason, "NotYetStalled");
    }

    #[test]
    fn config_from_args_and_policy_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.yaml");
        std::fs::write(
            &path,
            "apiVersion: vigil.dev/v1alpha1\nkind: MonitorPolicy\nmetadata: {name: x}\nspec:\n  health: {minPeers: 7}\n  probe: {interval: 10s, timeout: 2s}\n",
        )
        .unwrap();
        let args = ProbeArgs {
            chain: Chain::Substrate,
            rpc: Some("http://127.0.0.1:9944".into()),
            metrics: None,
            health: None,
            tcp: None,
            metrics_prefix: None,
            policy: Some(path),
            timeout: None,
            samples: 1,
            interval: "1s".into(),
            output: Output::Text,
            validator: None,
            duty_rpc: None,
        };
        let c = config(&args).unwrap();
        assert_eq!(c.limits.min_peers, 7);
        assert_eq!(c.options.timeout, Duration::from_secs(2));
        let bad = ProbeArgs {
            rpc: Some("ws://x".into()),
            policy: None,
            ..args.clone()
        };
        assert!(config(&bad).unwrap_err().contains("ws"));
        let none = ProbeArgs {
            rpc: None,
            policy: None,
            ..args
        };
        assert!(config(&none).is_err());
        assert!(parse_chain("bitcoin").unwrap_err().contains("substrate"));
    }
}
