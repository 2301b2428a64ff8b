//! What the advisor costs over a month, simulated: a seeded trace of validators probed
//! every 5 minutes (episodes of trouble, remediations that do not fix them, chain-wide
//! incidents) replayed through the real advisor code ([`plan::step`], [`when::ask`],
//! [`context::prompt`], [`budget`]) and applied to each validator's status the way the
//! advisor task applies it, with every call priced as Anthropic bills it. Compared with the
//! design Vigil replaces, a model call on every unhealthy validator-cycle. `vigil
//! advisor-cost` prints the table.
//!
//! Not simulated: batching (probes are spread over the interval, so two validators rarely
//! turn unhealthy within the task's 2 s batch window), escalations, failing providers and
//! refused answers. Calls answer at once, so a call's reservation is settled in its round.

use super::budget::{self, Usage};
use super::context::{self, Member, Subject};
use super::gate;
use super::plan::{self, Who};
use super::rules::{self, Symptom};
use super::when::{self, Moment};
use super::wire::Prompt;
use crate::api::{
    AdviceRecord, AdviceSource, AdvisorBudget, AdvisorMode, AdvisorProvider, AdvisorSpend,
    ChainFacts, Dur, FleetIncident, FleetIncidentKind, MonitorPolicySpec, MonitoredValidatorStatus,
    ProbeRecord, RemediationAction, RemediationRecord, RemediationResult, RemediationStatus,
    SecretKeyRef,
};
use crate::conditions::{self, Desired, Status, kind};
use crate::health::Limits;
use crate::policy::{Policy, Usd};
use crate::remediate::guard::{self, Rules};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::fmt::Write;
use std::time::Duration;

/// Anthropic's shortest cacheable prompt prefix (tokens, Sonnet models).
const MIN_CACHEABLE: u64 = 1024;
/// Time between two probes of a validator.
pub const INTERVAL: Duration = Duration::from_secs(300);
/// The model asked.
pub const MODEL: &str = "claude-sonnet-4-5";
/// The onIssue target: at most this much a month.
pub const TARGET_PER_MONTH: Usd = Usd { micros: 5_000_000 };
/// Tokens of the reference design's prompt (the script Vigil replaces).
pub const REFERENCE_INPUT_TOKENS: u64 = 500;
/// Output tokens of every call, Vigil's and the reference's (a decision object).
pub const OUTPUT_TOKENS: u64 = 100;

/// 2026-01-01T00:00:00Z.
const START_SECOND: i64 = 1_767_225_600;
/// A healthy cycle is followed by a new episode with this chance: with episodes of 6
/// cycles on average, 10% of validator-cycles are unhealthy.
const EPISODE_START: f64 = 1.0 / 54.0;
/// An episode goes on for another cycle with this chance (geometric, mean 6 cycles).
const EPISODE_GOES_ON: f64 = 5.0 / 6.0;
/// Episodes the first remediation does not fix.
const NOT_FIXED: f64 = 0.3;
/// A not-fixed episode lasts at least this long (its record appears in its 3rd cycle).
const NOT_FIXED_CYCLES: usize = 4;
/// Symptom classes of episodes, with their weights in percent.
const CLASSES: [(Class, u32); 5] = [
    (Class::Unreachable, 50),
    (Class::Stalled, 20),
    (Class::Syncing, 15),
    (Class::NoPeers, 10),
    (Class::Behind, 5),
];
/// Days (from 0) of each 30 on which the chain halts.
const INCIDENT_DAYS: [u32; 2] = [8, 22];
/// Probe cycles in an hour.
const CYCLES_PER_HOUR: usize = 3600 / INTERVAL.as_secs() as usize;
/// How long a chain halt lasts: one hour.
const INCIDENT_CYCLES: usize = CYCLES_PER_HOUR;
/// Anthropic keeps a cached prompt prefix this long after its last use.
const CACHE_TTL: Duration = Duration::from_secs(300);
/// Remediation records kept per validator.
const REMEDIATION_HISTORY: usize = 5;
/// Recent notices kept per validator for the context (as the task does).
const NOTICES_KEPT: usize = 5;
/// The policy's role instructions (two lines, as a team would write them).
const INSTRUCTIONS: &str = "We run these Polkadot validators for staking; a validator that is down for an era loses rewards, so restart a node that is down or stalled.\n\
Never restart more than one validator at a time, and page the on-call for anything that affects the whole chain.";
/// Not a word of any prompt text: the context masks the namespace wherever it appears.
const NAMESPACE: &str = "staking";
const POLICY: &str = "polkadot";
const CHAIN: &str = "substrate";
const FIRST_BLOCK: u64 = 24_000_000;
/// Blocks per cycle (6 s blocks).
const BLOCKS_PER_CYCLE: u64 = 50;

/// What to simulate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Length of the run. Chain halts come on days 9 and 23 of every 30; a run shorter
    /// than 30 days gets them at the same fractions of its length.
    pub days: u32,
    /// Validators, all of one chain under one policy.
    pub validators: u32,
    /// Seed of the trace.
    pub seed: u64,
    /// `advisor.dedupTtl` of the policy; `None`: the default (24h).
    pub dedup_ttl: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            days: 30,
            validators: 21,
            seed: 7,
            dedup_ttl: None,
        }
    }
}

/// Model calls by the moment they answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Calls {
    /// A new problem.
    pub new_problem: u64,
    /// Still unhealthy (`everyProbe` only).
    pub still_unhealthy: u64,
    /// The first remediation did not fix it.
    pub not_fixed: u64,
    /// Escalated to a person.
    pub escalated: u64,
    /// The fleet's one question of a chain-wide incident.
    pub fleet: u64,
}

impl Calls {
    fn count(&mut self, m: Moment) {
        let n = match m {
            Moment::NewProblem => &mut self.new_problem,
            Moment::StillUnhealthy => &mut self.still_unhealthy,
            Moment::NotFixed => &mut self.not_fixed,
            Moment::Escalated => &mut self.escalated,
            Moment::FleetIncident => &mut self.fleet,
        };
        *n += 1;
    }
}

/// One design's month.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The design, as the table names it.
    pub design: String,
    /// The advisor mode; `None` for the reference.
    pub mode: Option<AdvisorMode>,
    /// Model calls made.
    pub calls: u64,
    /// The same, by moment (Vigil's modes only).
    pub by_moment: Calls,
    /// New problems answered by earlier advice with the same fingerprint (no call).
    pub reused: u64,
    /// Episodes whose validator got at least one piece of advice (any source) during it.
    pub episodes_advised: usize,
    /// Not-fixed episodes whose validator got a model answer at or after the remediation
    /// record that showed it was not fixed.
    pub not_fixed_answered: usize,
    /// Chain-wide incidents during which exactly one model call was made.
    pub incidents_one_call: usize,
    /// What the calls of the whole run cost.
    pub cost: Usd,
    /// The same if nothing were cached.
    pub cost_uncached: Usd,
    /// Tokens billed over the run.
    pub usage: Usage,
    /// Calls the default budget (`AdvisorBudget::default()`) refused in a second run of
    /// the same trace; `None` for the reference, which has no budget.
    pub refused_by_default: Option<u64>,
}

/// One line of the onIssue target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// What is checked, with the numbers.
    pub what: String,
    /// Whether it holds.
    pub passed: bool,
}

/// What a simulation found.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// What was simulated.
    pub options: Options,
    /// The simulated clock's start.
    pub start: Timestamp,
    /// Probe cycles.
    pub cycles: usize,
    /// Share of validator-cycles unhealthy (chain halts included), as generated.
    pub unhealthy_share: f64,
    /// Mean length of an episode in cycles, as generated.
    pub mean_episode: f64,
    /// Episodes of trouble.
    pub episodes: usize,
    /// Of them, not fixed by the first remediation (its record appeared within the run).
    pub not_fixed: usize,
    /// Chain-wide incidents.
    pub incidents: usize,
    /// `advisor.dedupTtl` of the policy.
    pub dedup_ttl: Duration,
    /// Input tokens of the stable prompt prefix (system prompt and instructions).
    pub prefix_tokens: u64,
    /// Price of a million input tokens.
    pub input_price: Usd,
    /// Price of a million output tokens.
    pub output_price: Usd,
    /// The design Vigil replaces.
    pub reference: Row,
    /// `everyProbe`, `onIssue`, `onEscalation`.
    pub modes: Vec<Row>,
}

impl Report {
    /// The row of a mode.
    pub fn row(&self, mode: AdvisorMode) -> Option<&Row> {
        self.modes.iter().find(|r| r.mode == Some(mode))
    }

    /// An amount spent over the run, scaled to 30 days.
    pub fn per_month(&self, spent: Usd) -> Usd {
        let micros = u128::from(spent.micros) * 30 / u128::from(self.options.days.max(1));
        Usd {
            micros: u64::try_from(micros).unwrap_or(u64::MAX),
        }
    }

    /// The onIssue target, line by line.
    pub fn target(&self) -> Vec<Check> {
        let Some(r) = self.row(AdvisorMode::OnIssue) else {
            return vec![];
        };
        let month = self.per_month(r.cost);
        vec![
            Check {
                what: format!(
                    "onIssue costs {} a month (target: at most {})",
                    dollars(month),
                    dollars(TARGET_PER_MONTH)
                ),
                passed: month <= TARGET_PER_MONTH,
            },
            Check {
                what: format!(
                    "onIssue advised {} of {} episodes",
                    r.episodes_advised, self.episodes
                ),
                passed: r.episodes_advised == self.episodes,
            },
            Check {
                what: format!(
                    "onIssue gave a model answer to {} of {} not-fixed episodes",
                    r.not_fixed_answered, self.not_fixed
                ),
                passed: r.not_fixed_answered == self.not_fixed,
            },
            Check {
                what: format!(
                    "onIssue made exactly one model call in {} of {} incidents",
                    r.incidents_one_call, self.incidents
                ),
                passed: r.incidents_one_call == self.incidents,
            },
        ]
    }

    /// Whether onIssue meets its whole target.
    pub fn passed(&self) -> bool {
        let t = self.target();
        !t.is_empty() && t.iter().all(|c| c.passed)
    }
}

// ------------------------------------------------------------------------------- the trace

/// splitmix64: small, fast, and the same sequence everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Unreachable,
    Stalled,
    Syncing,
    NoPeers,
    Behind,
}

#[derive(Clone, Debug)]
struct Episode {
    class: Class,
    /// First cycle.
    start: usize,
    /// First healthy cycle after it (the run's length when it is cut off).
    end: usize,
    /// Its unhealthy cycles within the run.
    cycles: usize,
    /// When the first remediation ran (start + 1 cycle, skipping a chain halt).
    restart: Option<usize>,
    /// Not fixed: the cycle its remediation record (`recovered: false`) appears.
    reported: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cell {
    Healthy,
    Sick(u32),
    /// A chain halt (its index).
    Halted(u32),
}

/// A remediation record appearing: at cycle, of episode, recovered or not.
type RemediationEvent = (usize, u32, bool);

struct Trace {
    cycles: usize,
    episodes: Vec<Episode>,
    /// Start cycle of each chain halt.
    incidents: Vec<usize>,
    /// Per validator, per cycle.
    cells: Vec<Vec<Cell>>,
    /// Per validator, per cycle: the episode whose span covers it (a halt may pause one).
    during: Vec<Vec<Option<u32>>>,
    /// Per validator, in time order.
    remediations: Vec<Vec<RemediationEvent>>,
    /// What a probe that timed out says.
    timeout: String,
}

impl Trace {
    fn new(o: &Options) -> Trace {
        let days = o.days.max(1);
        let cycles = days as usize * 86_400 / INTERVAL.as_secs() as usize;
        let mut rng = Rng(o.seed);
        let mut incidents = Vec::new();
        for month in 0..days.div_ceil(30) {
            for d in INCIDENT_DAYS {
                let day = if days >= 30 {
                    month * 30 + d
                } else {
                    d * days / 30
                };
                let hour = rng.below(24) as usize;
                if day < days {
                    incidents.push((day as usize * 24 + hour) * CYCLES_PER_HOUR);
                }
            }
        }
        let mut halted = vec![None; cycles];
        for (k, &s) in incidents.iter().enumerate() {
            for h in halted.iter_mut().skip(s).take(INCIDENT_CYCLES) {
                *h = Some(k as u32);
            }
        }
        // A node's own trouble runs on the cycles outside chain halts: a halt pauses it.
        let own: Vec<usize> = (0..cycles).filter(|&c| halted[c].is_none()).collect();
        let base: Vec<Cell> = halted
            .iter()
            .map(|h| h.map_or(Cell::Healthy, Cell::Halted))
            .collect();
        let n = o.validators as usize;
        let mut t = Trace {
            cycles,
            episodes: Vec::new(),
            incidents,
            cells: vec![base; n],
            during: vec![vec![None; cycles]; n],
            remediations: vec![Vec::new(); n],
            timeout: crate::probe::ProbeError::Timeout(Duration::from_secs(5)).to_string(),
        };
        for v in 0..n {
            // Own cycle 0 is healthy; each healthy cycle may be followed by an episode.
            let mut i = 1;
            while i < own.len() {
                if rng.unit() >= EPISODE_START {
                    i += 1;
                    continue;
                }
                let mut len = 1;
                while rng.unit() < EPISODE_GOES_ON {
                    len += 1;
                }
                let mut pick = rng.below(100) as u32;
                let class = CLASSES
                    .iter()
                    .find(|(_, w)| {
                        let hit = pick < *w;
                        pick = pick.saturating_sub(*w);
                        hit
                    })
                    .map_or(Class::Unreachable, |(c, _)| *c);
                let not_fixed = rng.unit() < NOT_FIXED;
                if not_fixed {
                    len = len.max(NOT_FIXED_CYCLES);
                }
                let e = t.episodes.len() as u32;
                let ep = Episode {
                    class,
                    start: own[i],
                    end: own.get(i + len).copied().unwrap_or(cycles),
                    cycles: len.min(own.len() - i),
                    restart: own.get(i + 1).copied(),
                    reported: if not_fixed {
                        own.get(i + 2).copied()
                    } else {
                        None
                    },
                };
                for &c in own.iter().skip(i).take(len) {
                    t.cells[v][c] = Cell::Sick(e);
                }
                for d in &mut t.during[v][ep.start..ep.end] {
                    *d = Some(e);
                }
                match (ep.reported, ep.end < cycles) {
                    (Some(r), _) => t.remediations[v].push((r, e, false)),
                    (None, true) if !not_fixed => t.remediations[v].push((ep.end, e, true)),
                    _ => {}
                }
                t.episodes.push(ep);
                // The cycle after an episode is healthy: the next may start another.
                i += len + 1;
            }
        }
        t
    }

    fn incident_at(&self, c: usize) -> Option<usize> {
        self.incidents
            .iter()
            .position(|&s| (s..s + INCIDENT_CYCLES).contains(&c))
    }

    fn unhealthy(&self) -> u64 {
        self.cells
            .iter()
            .flatten()
            .filter(|c| **c != Cell::Healthy)
            .count() as u64
    }
}

// ------------------------------------------------------------------------- the statuses

fn at(c: usize) -> Timestamp {
    Timestamp::from_second(START_SECOND + (c as u64 * INTERVAL.as_secs()) as i64)
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

fn height(c: usize) -> u64 {
    FIRST_BLOCK + c as u64 * BLOCKS_PER_CYCLE
}

fn name(v: usize) -> String {
    format!("polkadot-val-{:02}", v + 1)
}

/// One validator as the monitor and healing leave its status, and its recent notices.
struct Node {
    name: String,
    target: String,
    status: MonitoredValidatorStatus,
    notices: Vec<String>,
    shown: Option<Cell>,
    next_remediation: usize,
}

/// The conditions the monitor publishes for a cell (the messages are health's).
fn shown(cell: Cell, trace: &Trace, limits: &Limits) -> Vec<Desired> {
    let stall = crate::duration::format(limits.max_block_stall);
    let ok =
        |t: &'static str, reason: &'static str, m: &str| Desired::new(t, Status::True, reason, m);
    let bad =
        |t: &'static str, reason: &'static str, m: &str| Desired::new(t, Status::False, reason, m);
    let mut reachable = ok(kind::REACHABLE, "Responding", "The node answers probes");
    let mut synced = ok(
        kind::SYNCED,
        kind::SYNCED,
        "In sync with the network and the fleet",
    );
    let mut blocks = ok(
        kind::BLOCK_PRODUCTION,
        "Advancing",
        "The best block advances",
    );
    let mut finalizing = ok(
        kind::FINALIZING,
        kind::FINALIZING,
        "Blocks are being finalized",
    );
    let mut peers = ok(kind::PEERS_HEALTHY, "EnoughPeers", "Enough peers connected");
    let ready = match cell {
        Cell::Healthy => ok(kind::READY, "Healthy", "All checks pass"),
        Cell::Halted(k) => {
            let b = height(trace.incidents[k as usize]);
            blocks = bad(
                kind::BLOCK_PRODUCTION,
                "ChainHalted",
                &format!(
                    "No validator of this chain under the policy has seen a new block for over {stall} (stuck at #{b}); a chain-wide halt, not a fault of this node"
                ),
            );
            // Health publishes a chain halt as no fault of the node: Ready stays True.
            ok(
                kind::READY,
                "ChainHalted",
                "No fault of this node; its fleet has a problem (see the MonitorPolicy's fleetIncident)",
            )
        }
        Cell::Sick(e) => {
            let ep = &trace.episodes[e as usize];
            let deciding = match ep.class {
                Class::Unreachable => {
                    reachable = bad(kind::REACHABLE, "Timeout", &trace.timeout);
                    let unknown = |t: &'static str| {
                        Desired::new(
                            t,
                            Status::Unknown,
                            "NodeUnreachable",
                            "The node did not answer the last probe",
                        )
                    };
                    synced = unknown(kind::SYNCED);
                    blocks = unknown(kind::BLOCK_PRODUCTION);
                    finalizing = unknown(kind::FINALIZING);
                    peers = unknown(kind::PEERS_HEALTHY);
                    &reachable
                }
                Class::Stalled => {
                    blocks = bad(
                        kind::BLOCK_PRODUCTION,
                        "BlockStalled",
                        &format!(
                            "Best block #{} has not changed for over {stall} while the fleet moved on",
                            height(ep.start)
                        ),
                    );
                    &blocks
                }
                Class::Syncing => {
                    synced = bad(
                        kind::SYNCED,
                        "Syncing",
                        "The node reports that it is syncing",
                    );
                    &synced
                }
                Class::NoPeers => {
                    peers = bad(
                        kind::PEERS_HEALTHY,
                        "TooFewPeers",
                        &format!(
                            "Fewer than health.minPeers ({}) peers connected",
                            limits.min_peers
                        ),
                    );
                    &peers
                }
                Class::Behind => {
                    synced = bad(
                        kind::SYNCED,
                        "BehindFleet",
                        &format!(
                            "More than {} blocks behind the fleet's highest block",
                            limits.max_blocks_behind
                        ),
                    );
                    &synced
                }
            };
            // Ready takes the deciding check's reason and message.
            Desired::new(
                kind::READY,
                Status::False,
                deciding.reason,
                deciding.message.clone(),
            )
        }
    };
    vec![reachable, synced, blocks, finalizing, peers, ready]
}

impl Node {
    fn new(v: usize) -> Node {
        let name = name(v);
        Node {
            target: format!("{NAMESPACE}/{name}"),
            name,
            status: MonitoredValidatorStatus::default(),
            notices: Vec::new(),
            shown: None,
            next_remediation: 0,
        }
    }

    fn notice(&mut self, text: String) {
        self.notices.push(crate::text::cap(&text, 200));
        if self.notices.len() > NOTICES_KEPT {
            self.notices.remove(0);
        }
    }

    /// The status after this cycle's probe and healing.
    fn observe(&mut self, trace: &Trace, v: usize, c: usize, p: &Policy) {
        let rules = &p.remediation.rules;
        let now = at(c);
        let cell = trace.cells[v][c];
        if self.shown != Some(cell) {
            let t = conditions::time(now);
            let mut changed = Vec::new();
            for d in shown(cell, trace, &p.limits) {
                conditions::set_noting(&mut self.status.conditions, d, Some(1), &t, &mut changed);
            }
            if !changed.is_empty() {
                // As the task keeps a condition notice: its changes.
                let text = changed
                    .iter()
                    .map(|d| format!("{}={} {}", d.type_, d.status.as_str(), d.reason))
                    .collect::<Vec<_>>()
                    .join(", ");
                self.notice(text);
            }
            self.shown = Some(cell);
        }
        let h = height(c);
        let peers = 20 + (v as u32 % 10);
        // What the probe read: (best, target, peers, syncing); `None` when it got no answer.
        let read = match cell {
            Cell::Healthy => Some((h, h, peers, false)),
            Cell::Halted(k) => {
                let b = height(trace.incidents[k as usize]);
                Some((b, b, peers, false))
            }
            Cell::Sick(e) => {
                let h0 = height(trace.episodes[e as usize].start);
                match trace.episodes[e as usize].class {
                    Class::Unreachable => None,
                    Class::Stalled => Some((h0, h, peers, false)),
                    Class::Syncing => Some((h.saturating_sub(4_000), h, peers, true)),
                    Class::NoPeers => Some((h0, h0, 1, false)),
                    Class::Behind => Some((h - 80, h, peers, false)),
                }
            }
        };
        // No answer: the facts stay as last read.
        if let Some((best, target, peers, syncing)) = read {
            let f = self.status.facts.get_or_insert_with(|| ChainFacts {
                version: Some("1.18.2-4f0e8c1".into()),
                network: Some("polkadot".into()),
                ..ChainFacts::default()
            });
            f.best_block = Some(best);
            f.finalized_block = Some(best.saturating_sub(2));
            f.target_block = Some(target);
            f.peers = Some(peers);
            f.syncing = Some(syncing);
        }
        let error = read.is_none().then(|| trace.timeout.clone());
        self.status.last_probe = Some(ProbeRecord {
            time: Some(conditions::time(now)),
            latency_ms: Some(if error.is_some() { 5_000 } else { 40 }),
            error,
        });
        while let Some(&(when, e, recovered)) = trace.remediations[v].get(self.next_remediation) {
            if when > c {
                break;
            }
            self.next_remediation += 1;
            let restart = trace.episodes[e as usize].restart.unwrap_or(c);
            self.remediated(at(restart), recovered, rules);
        }
        // Healing starts its counts over after `healthyResetAfter` of health.
        if cell == Cell::Healthy
            && let Some(rem) = &self.status.remediation
            && (rem.attempts_in_window > 0 || rem.failed_attempts > 0)
            && let Some(since) = conditions::get(&self.status.conditions, kind::READY)
            && let Some(reset) = guard::healthy(rem, rules, since.last_transition_time.0, now)
        {
            self.status.remediation = Some(reset);
        }
    }

    /// A restart's record, once it is known whether the node recovered.
    fn remediated(&mut self, when: Timestamp, recovered: bool, rules: &Rules) {
        let rem = self
            .status
            .remediation
            .get_or_insert_with(RemediationStatus::default);
        rem.total_actions += 1;
        let token = format!("{}-{}", self.name, rem.total_actions);
        let message = format!("rollout restart of StatefulSet {} requested", self.name);
        rem.history.push(RemediationRecord {
            token: token.clone(),
            action: "rolloutRestart".into(),
            time: Some(conditions::time(when)),
            result: RemediationResult::Succeeded,
            message: message.clone(),
            trigger: "policy".into(),
            recovered: Some(recovered),
        });
        let extra = rem.history.len().saturating_sub(REMEDIATION_HISTORY);
        rem.history.drain(..extra);
        rem.failed_attempts = if recovered {
            0
        } else {
            rem.failed_attempts + 1
        };
        rem.last_action = Some("rolloutRestart".into());
        rem.last_action_time = Some(conditions::time(when));
        // Counted in its window as healing counts it.
        let used = guard::attempts_in_window(rem, rules, when);
        if used == 0 {
            rem.window_start = Some(Time(when));
        }
        rem.attempts_in_window = used + 1;
        self.notice(format!(
            "RemediationSucceeded: rolloutRestart (policy, token {token}): {message}"
        ));
    }

    fn member(&self) -> Member {
        Member {
            name: self.name.clone(),
            ready: conditions::status_of(&self.status.conditions, kind::READY).and_then(
                |s| match s {
                    Status::True => Some(true),
                    Status::False => Some(false),
                    Status::Unknown => None,
                },
            ),
            best_block: self.status.facts.as_ref().and_then(|f| f.best_block),
        }
    }
}

// --------------------------------------------------------------------------- the advisor

/// The policy under test: Anthropic, [`MODEL`], its prices, role instructions, `mode`.
fn policy(mode: AdvisorMode, mut b: AdvisorBudget, dedup_ttl: Option<Duration>) -> Policy {
    let mut spec = MonitorPolicySpec::default();
    spec.probe.interval = Dur::new(crate::duration::format(INTERVAL));
    spec.health.min_peers = 3;
    spec.remediation.action = RemediationAction::RolloutRestart;
    let a = &mut spec.advisor;
    a.provider = AdvisorProvider::Anthropic;
    a.model = Some(MODEL.into());
    a.api_key_secret_ref = Some(SecretKeyRef {
        name: "anthropic".into(),
        key: "apiKey".into(),
    });
    a.mode = mode;
    a.instructions = Some(INSTRUCTIONS.into());
    b.input_price_per_million = "3".into();
    b.output_price_per_million = "15".into();
    a.budget = b;
    if let Some(ttl) = dedup_ttl {
        a.dedup_ttl = Dur::new(crate::duration::format(ttl));
    }
    // Only a dedupTtl over 30 days is refused; `simulate` documents that it panics then.
    crate::policy::validate(&spec).unwrap_or_else(|e| panic!("the simulated policy: {e}"))
}

fn unlimited() -> AdvisorBudget {
    AdvisorBudget {
        calls_per_hour: 1_000_000,
        tokens_per_day: 1_000_000_000_000,
        cost_per_day: "100000".into(),
        ..AdvisorBudget::default()
    }
}

/// A prompt of the policy with no context: its system prompt and instructions.
fn prefix(p: &Policy) -> Prompt {
    let empty = context::Context {
        namespace: NAMESPACE,
        moment: Moment::NewProblem,
        symptom: Symptom::Other,
        subjects: vec![],
        fleet: vec![],
        incident: None,
    };
    context::prompt(&p.advisor, &empty).0
}

/// Tokens of so many bytes of prompt, as billed here: a token per four bytes.
fn tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

/// One mode's run over the trace: the statuses, the policy's spend, what happened.
struct Run<'t> {
    trace: &'t Trace,
    policy: Policy,
    nodes: Vec<Node>,
    spend: AdvisorSpend,
    fleet_advice: Option<AdviceRecord>,
    last_call: Option<Timestamp>,
    row: Row,
    advised: Vec<bool>,
    answered: Vec<bool>,
    incident_calls: Vec<u64>,
    refused: u64,
    /// The smallest estimate of any call: the stable prefix alone.
    least: Usage,
}

impl<'t> Run<'t> {
    fn new(trace: &'t Trace, policy: Policy, validators: usize) -> Run<'t> {
        let least = context::estimate(&Prompt {
            context: String::new(),
            ..prefix(&policy)
        });
        Run {
            trace,
            row: Row {
                design: plan::mode_str(policy.advisor.mode).to_string(),
                mode: Some(policy.advisor.mode),
                calls: 0,
                by_moment: Calls::default(),
                reused: 0,
                episodes_advised: 0,
                not_fixed_answered: 0,
                incidents_one_call: 0,
                cost: Usd::default(),
                cost_uncached: Usd::default(),
                usage: Usage::default(),
                refused_by_default: None,
            },
            policy,
            nodes: (0..validators).map(Node::new).collect(),
            spend: AdvisorSpend::default(),
            fleet_advice: None,
            last_call: None,
            advised: vec![false; trace.episodes.len()],
            answered: vec![false; trace.episodes.len()],
            incident_calls: vec![0; trace.incidents.len()],
            refused: 0,
            least,
        }
    }

    fn push(&mut self, v: usize, c: usize, r: AdviceRecord) {
        if let Some(e) = self.trace.during[v][c] {
            let e = e as usize;
            self.advised[e] = true;
            if r.source == AdviceSource::Model
                && self.trace.episodes[e].reported.is_some_and(|at| c >= at)
            {
                self.answered[e] = true;
            }
        }
        plan::push(&mut self.nodes[v].status, r);
    }

    /// What a call with this prompt is billed: the stable prefix is written to the cache
    /// unless a call in the last 5 minutes left it there; the context is plain input. A
    /// prefix under Anthropic's minimum cacheable length is not cached: plain input too.
    fn bill(&mut self, p: &Prompt, now: Timestamp, c: usize) -> (Usage, Usd) {
        let prefix = tokens(p.system.len() + p.instructions.len());
        let warm = self
            .last_call
            .is_some_and(|t| now.duration_since(t).unsigned_abs() < CACHE_TTL);
        self.last_call = Some(now);
        let cacheable = prefix >= MIN_CACHEABLE;
        let usage = Usage {
            input: tokens(p.context.len()) + if cacheable { 0 } else { prefix },
            output: OUTPUT_TOKENS,
            cache_read: if cacheable && warm { prefix } else { 0 },
            cache_write: if cacheable && !warm { prefix } else { 0 },
        };
        let b = &self.policy.advisor.budget;
        let cost = budget::cost(&usage, b);
        let plain = Usage {
            input: tokens(p.context.len()) + prefix,
            output: usage.output,
            ..Usage::default()
        };
        let r = &mut self.row;
        r.calls += 1;
        r.cost.micros += cost.micros;
        r.cost_uncached.micros += budget::cost(&plain, b).micros;
        r.usage.input += usage.input;
        r.usage.output += usage.output;
        r.usage.cache_read += usage.cache_read;
        r.usage.cache_write += usage.cache_write;
        if let Some(k) = self.trace.incident_at(c) {
            self.incident_calls[k] += 1;
        }
        (usage, cost)
    }

    /// A model's record of a call (the rules' decision stands in for the model's).
    fn answer(
        &self,
        fp: &str,
        symptom: Symptom,
        usage: &Usage,
        cost: Usd,
        now: Timestamp,
    ) -> AdviceRecord {
        let a = &self.policy.advisor;
        let d = rules::decide(symptom);
        let mut r = plan::record(fp, &d, a.provider, MODEL, AdviceSource::Model, now);
        r.input_tokens = usage.input + usage.cache_read + usage.cache_write;
        r.output_tokens = usage.output;
        r.cost = cost.to_string();
        let (effect, note) = plan::apply(a, &d, r.source);
        r.applied = effect.is_some();
        r.applied_note = note;
        r
    }

    /// Checks a call against the budget and reserves it, as the task does before a call.
    fn reserve(
        &mut self,
        prompt: impl FnOnce(&Run<'t>) -> Prompt,
        now: Timestamp,
    ) -> Result<(Prompt, Usage), String> {
        let b = self.policy.advisor.budget;
        // Refused even at the least any prompt is estimated at (the hour's calls or the
        // day's tokens are used up): the same answer as with its prompt, without building
        // it. A cost refusal could have been a token refusal: those build it.
        let checked = match budget::check(&self.spend, &b, &self.least, now) {
            Err(l @ (budget::Limit::CallsPerHour | budget::Limit::TokensPerDay)) => Err(l),
            _ => {
                let p = prompt(self);
                let estimate = context::estimate(&p);
                budget::check(&self.spend, &b, &estimate, now).map(|()| (p, estimate))
            }
        };
        match checked {
            Ok((p, estimate)) => {
                self.spend = budget::account(&self.spend, &b, &estimate, now);
                Ok((p, estimate))
            }
            Err(limit) => {
                self.refused += 1;
                self.spend = budget::deny(&self.spend, limit, now);
                Err(format!("{limit}; the rules decide"))
            }
        }
    }

    fn fleet_view(&self) -> Vec<Member> {
        self.nodes.iter().map(Node::member).collect()
    }

    /// The fleet's one question while a chain halt is open, as the task asks it.
    fn fleet_question(&mut self, incident: &FleetIncident, now: Timestamp, c: usize) {
        let a = &self.policy.advisor;
        let fp = gate::fingerprint(
            &format!("{NAMESPACE}/{POLICY}/{}", incident.chain),
            &[("FleetIncident", &format!("{:?}", incident.kind))],
            "critical",
            a.provider,
            a.model.as_deref().unwrap_or_default(),
        );
        let hosted = a.provider != AdvisorProvider::Rules;
        if when::ask(a.mode, hosted, Moment::FleetIncident) != when::Ask::Model {
            self.fleet_advice = Some(plan::rules_record(
                &fp,
                Symptom::FleetIncident,
                "the rules answer fleet incidents under this provider",
                now,
            ));
            return;
        }
        let ask = |r: &Run<'t>| {
            let ctx = context::Context {
                namespace: NAMESPACE,
                moment: Moment::FleetIncident,
                symptom: Symptom::FleetIncident,
                subjects: r
                    .nodes
                    .iter()
                    .take(3)
                    .map(|n| Subject {
                        name: &n.name,
                        chain: CHAIN,
                        status: &n.status,
                        notices: &[],
                        log_tail: None,
                    })
                    .collect(),
                fleet: r.fleet_view(),
                incident: Some(incident),
            };
            context::prompt(&r.policy.advisor, &ctx).0
        };
        self.fleet_advice = Some(match self.reserve(ask, now) {
            Ok((prompt, estimate)) => {
                let (usage, cost) = self.bill(&prompt, now, c);
                self.row.by_moment.count(Moment::FleetIncident);
                let b = &self.policy.advisor.budget;
                self.spend = budget::settle(&self.spend, b, &estimate, &usage, now);
                self.answer(&fp, Symptom::FleetIncident, &usage, cost, now)
            }
            Err(note) => plan::rules_record(&fp, Symptom::FleetIncident, &note, now),
        });
    }

    /// One probe cycle: statuses, then one advisor round.
    fn cycle(&mut self, c: usize) {
        let now = at(c);
        for (v, n) in self.nodes.iter_mut().enumerate() {
            n.observe(self.trace, v, c, &self.policy);
        }
        self.spend = budget::roll(&self.spend, now);
        let incident = self.trace.incident_at(c).map(|k| {
            let s = self.trace.incidents[k];
            let n = self.nodes.len() as u32;
            FleetIncident {
                chain: CHAIN.into(),
                kind: FleetIncidentKind::ChainHalted,
                since: Some(Time(at(s))),
                ended: None,
                affected: n,
                total: n,
                message: format!(
                    "No validator of chain {CHAIN} under this policy sees new blocks (highest block #{}): the chain halted; this is not a node fault, so no node is restarted for it",
                    height(s)
                ),
            }
        });
        let current = |f: &Option<AdviceRecord>, i: &FleetIncident| {
            f.clone()
                .filter(|f| f.time.as_ref().map(|t| t.0) >= i.since.as_ref().map(|t| t.0))
        };
        if let Some(i) = &incident
            && current(&self.fleet_advice, i).is_none()
        {
            self.fleet_question(i, now, c);
        }
        let fleet_advice = incident
            .as_ref()
            .and_then(|i| current(&self.fleet_advice, i));

        // Each validator, against the status the round read.
        let mut asks = Vec::new();
        let mut records: Vec<(
            usize,
            Option<AdviceRecord>,
            Option<crate::api::AdviceOutcome>,
        )> = Vec::new();
        for (v, n) in self.nodes.iter().enumerate() {
            let step = plan::step(&plan::Input {
                target: &n.target,
                status: &n.status,
                advisor: &self.policy.advisor,
                probe_interval: self.policy.probe.interval,
                fleet_advice: fleet_advice.as_ref(),
                now,
            });
            let advice = match step.ask {
                None => None,
                Some(ask) => match ask.who {
                    Who::Rules(note) => Some(plan::rules_record(
                        &ask.fingerprint,
                        ask.symptom,
                        &note,
                        now,
                    )),
                    Who::Reuse(e) => {
                        self.row.reused += 1;
                        Some(plan::reused(&e, AdviceSource::Reused, now))
                    }
                    Who::Fleet(f) => Some(plan::reused(&f, AdviceSource::Fleet, now)),
                    Who::Model => {
                        asks.push((v, ask));
                        None
                    }
                },
            };
            if step.outcome.is_some() || advice.is_some() {
                records.push((v, advice, step.outcome));
            }
        }
        // Model questions: each checked and reserved with its real prompt.
        let mut calls = Vec::new();
        for (v, ask) in asks {
            let (moment, symptom) = (ask.moment, ask.symptom);
            let prompt = |r: &Run<'t>| {
                let n = &r.nodes[v];
                let ctx = context::Context {
                    namespace: NAMESPACE,
                    moment,
                    symptom,
                    subjects: vec![Subject {
                        name: &n.name,
                        chain: CHAIN,
                        status: &n.status,
                        notices: &n.notices,
                        log_tail: None,
                    }],
                    fleet: r.fleet_view(),
                    incident: None,
                };
                context::prompt(&r.policy.advisor, &ctx).0
            };
            match self.reserve(prompt, now) {
                Ok((prompt, estimate)) => calls.push((v, ask, prompt, estimate)),
                Err(note) => records.push((
                    v,
                    Some(plan::rules_record(
                        &ask.fingerprint,
                        ask.symptom,
                        &note,
                        now,
                    )),
                    None,
                )),
            }
        }
        for (v, advice, outcome) in records {
            if let Some(o) = outcome {
                plan::settle_outcome(&mut self.nodes[v].status, o, now);
            }
            if let Some(r) = advice {
                self.push(v, c, r);
            }
        }
        // The calls come back: settled at what they used, recorded.
        for (v, ask, prompt, estimate) in calls {
            let (usage, cost) = self.bill(&prompt, now, c);
            self.row.by_moment.count(ask.moment);
            let b = &self.policy.advisor.budget;
            self.spend = budget::settle(&self.spend, b, &estimate, &usage, now);
            let r = self.answer(&ask.fingerprint, ask.symptom, &usage, cost, now);
            self.push(v, c, r);
        }
    }

    /// The row, and how many calls the budget refused.
    fn finish(mut self) -> (Row, u64) {
        self.row.episodes_advised = self.advised.iter().filter(|x| **x).count();
        self.row.not_fixed_answered = self
            .trace
            .episodes
            .iter()
            .zip(&self.answered)
            .filter(|(e, a)| e.reported.is_some() && **a)
            .count();
        self.row.incidents_one_call = self.incident_calls.iter().filter(|n| **n == 1).count();
        (self.row, self.refused)
    }
}

fn run(trace: &Trace, o: &Options, mode: AdvisorMode, b: AdvisorBudget) -> (Row, u64) {
    let mut r = Run::new(trace, policy(mode, b, o.dedup_ttl), o.validators as usize);
    for c in 0..trace.cycles {
        r.cycle(c);
    }
    r.finish()
}

/// The design Vigil replaces: a model call on every unhealthy validator-cycle, with the
/// script's own prompt, no caching, no dedup, no budget.
fn reference(trace: &Trace, o: &Options) -> Row {
    let b = policy(AdvisorMode::OnIssue, unlimited(), None)
        .advisor
        .budget;
    let per_call = Usage {
        input: REFERENCE_INPUT_TOKENS,
        output: OUTPUT_TOKENS,
        ..Usage::default()
    };
    let calls = trace.unhealthy();
    let cost = Usd {
        micros: budget::cost(&per_call, &b).micros * calls,
    };
    let mut advised = vec![false; trace.episodes.len()];
    let mut answered = vec![false; trace.episodes.len()];
    for v in 0..o.validators as usize {
        for (c, cell) in trace.cells[v].iter().enumerate() {
            if let Cell::Sick(e) = cell {
                let e = *e as usize;
                advised[e] = true;
                answered[e] |= trace.episodes[e].reported.is_some_and(|r| c >= r);
            }
        }
    }
    // A call for every validator in every cycle of a halt.
    let incidents_one_call = trace
        .incidents
        .iter()
        .filter(|&&s| {
            let calls: usize = trace
                .cells
                .iter()
                .map(|row| row.iter().skip(s).take(INCIDENT_CYCLES).count())
                .sum();
            calls == 1
        })
        .count();
    Row {
        design: "reference: a model call on every unhealthy cycle".into(),
        mode: None,
        calls,
        by_moment: Calls::default(),
        reused: 0,
        episodes_advised: advised.iter().filter(|x| **x).count(),
        not_fixed_answered: answered.iter().filter(|x| **x).count(),
        incidents_one_call,
        cost,
        cost_uncached: cost,
        usage: Usage {
            input: per_call.input * calls,
            output: per_call.output * calls,
            ..Usage::default()
        },
        refused_by_default: None,
    }
}

/// Simulates the reference and every mode (each once with an unlimited budget for its
/// cost, once with the default budget for its refusals) over one trace. Deterministic for
/// its options. Panics when `dedup_ttl` is over 30 days (the policy refuses it).
pub fn simulate(o: &Options) -> Report {
    let o = Options {
        days: o.days.max(1),
        validators: o.validators.max(1),
        ..*o
    };
    let trace = Trace::new(&o);
    let modes = [
        AdvisorMode::EveryProbe,
        AdvisorMode::OnIssue,
        AdvisorMode::OnEscalation,
    ];
    // Each run is independent: they share only the trace, so they run side by side.
    let modes: Vec<Row> = std::thread::scope(|s| {
        let handles: Vec<_> = modes
            .iter()
            .map(|&m| {
                let t = &trace;
                (
                    s.spawn(move || run(t, &o, m, unlimited())),
                    s.spawn(move || run(t, &o, m, AdvisorBudget::default())),
                )
            })
            .collect();
        handles
            .into_iter()
            .map(|(a, b)| {
                let (mut row, _) = a.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
                let (_, refused) = b.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
                row.refused_by_default = Some(refused);
                row
            })
            .collect()
    });
    let p = policy(AdvisorMode::OnIssue, unlimited(), o.dedup_ttl);
    let prompt = prefix(&p);
    let all = (trace.cycles * o.validators as usize) as f64;
    let episode_cycles: usize = trace.episodes.iter().map(|e| e.cycles).sum();
    Report {
        options: o,
        start: at(0),
        cycles: trace.cycles,
        unhealthy_share: trace.unhealthy() as f64 / all,
        mean_episode: episode_cycles as f64 / trace.episodes.len().max(1) as f64,
        episodes: trace.episodes.len(),
        not_fixed: trace
            .episodes
            .iter()
            .filter(|e| e.reported.is_some())
            .count(),
        incidents: trace.incidents.len(),
        dedup_ttl: p.advisor.dedup_ttl,
        prefix_tokens: tokens(prompt.system.len() + prompt.instructions.len()),
        input_price: p.advisor.budget.input_price_per_million,
        output_price: p.advisor.budget.output_price_per_million,
        reference: reference(&trace, &o),
        modes,
    }
}

/// Dollars with cents.
fn dollars(u: Usd) -> String {
    let cents = u.micros.div_ceil(10_000);
    format!("${}.{:02}", cents / 100, cents % 100)
}

/// The report as Markdown: a header, the table, what the calls were, the onIssue target.
pub fn table(r: &Report) -> String {
    let o = &r.options;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Advisor cost simulation: seed {}, {} validators, {} days, probe every {} ({} cycles from {}); unhealthy {:.1}% of validator-cycles (chain halts included), mean episode {:.2} cycles; {} episodes ({} not fixed by the first remediation), {} chain-wide incidents; dedupTtl {}.",
        o.seed,
        o.validators,
        o.days,
        crate::duration::format(INTERVAL),
        r.cycles,
        r.start,
        r.unhealthy_share * 100.0,
        r.mean_episode,
        r.episodes,
        r.not_fixed,
        r.incidents,
        crate::duration::format(r.dedup_ttl),
    );
    let reference = r.per_month(r.reference.cost);
    let per_call = Usd {
        micros: r
            .reference
            .cost
            .micros
            .checked_div(r.reference.calls)
            .unwrap_or(0),
    };
    let _ = writeln!(
        out,
        "Reference: {} unhealthy validator-cycles, one call each of {REFERENCE_INPUT_TOKENS} input and {OUTPUT_TOKENS} output tokens at ${} and ${} per million (${} a call) = {} over {} days, {} a month.",
        r.reference.calls,
        r.input_price,
        r.output_price,
        per_call,
        dollars(r.reference.cost),
        o.days,
        dollars(reference),
    );
    out.push('\n');
    let _ = writeln!(
        out,
        "| design | model calls | episodes advised (of {}) | not-fixed episodes with a model answer (of {}) | incidents with one model call (of {}) | cost / month | vs reference | calls refused by the default budget |",
        r.episodes, r.not_fixed, r.incidents
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for row in std::iter::once(&r.reference).chain(&r.modes) {
        let month = r.per_month(row.cost);
        let vs = if reference.micros == 0 {
            "-".to_string()
        } else {
            format!(
                "{:.1}%",
                month.micros as f64 * 100.0 / reference.micros as f64
            )
        };
        let refused = row
            .refused_by_default
            .map_or("n/a (no budget)".to_string(), |n| n.to_string());
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            row.design,
            row.calls,
            row.episodes_advised,
            row.not_fixed_answered,
            row.incidents_one_call,
            dollars(month),
            vs,
            refused
        );
    }
    out.push('\n');
    for row in &r.modes {
        let m = &row.by_moment;
        let input = row.usage.input + row.usage.cache_read + row.usage.cache_write;
        let _ = writeln!(
            out,
            "- {}: calls for {} new problems, {} still unhealthy, {} not fixed, {} fleet incidents; {} new problems took earlier advice instead; {} input tokens a call ({} of them the stable prefix); {} a month if nothing were cached (Anthropic caches no prefix under 1,024 tokens, so a shorter one is billed as plain input).",
            row.design,
            m.new_problem,
            m.still_unhealthy,
            m.not_fixed,
            m.fleet,
            row.reused,
            input.checked_div(row.calls).unwrap_or(0),
            r.prefix_tokens,
            dollars(r.per_month(row.cost_uncached)),
        );
    }
    out.push('\n');
    for c in r.target() {
        let _ = writeln!(out, "{} {}", if c.passed { "PASS" } else { "FAIL" }, c.what);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// Three days of the default fleet, shared by the tests that only read it.
    fn short() -> &'static Report {
        static R: OnceLock<Report> = OnceLock::new();
        R.get_or_init(|| {
            simulate(&Options {
                days: 3,
                ..Options::default()
            })
        })
    }

    #[test]
    fn a_seed_gives_the_same_report() {
        let o = |seed| Options {
            days: 2,
            validators: 8,
            seed,
            dedup_ttl: None,
        };
        let a = simulate(&o(11));
        assert_eq!(a, simulate(&o(11)));
        assert_ne!(a.reference.calls, simulate(&o(12)).reference.calls);
    }

    #[test]
    fn every_mode_advises_every_episode() {
        let r = short();
        assert!(r.episodes > 100, "{}", r.episodes);
        for row in &r.modes {
            assert_eq!(row.episodes_advised, r.episodes, "{}", row.design);
        }
        assert_eq!(r.reference.episodes_advised, r.episodes);
    }

    #[test]
    fn on_issue_answers_what_was_not_fixed_and_asks_once_per_incident() {
        let r = short();
        let on_issue = r.row(AdvisorMode::OnIssue).unwrap();
        assert!(r.not_fixed > 20, "{}", r.not_fixed);
        assert_eq!(on_issue.not_fixed_answered, r.not_fixed);
        assert_eq!(r.incidents, 2);
        assert_eq!(on_issue.incidents_one_call, r.incidents);
        assert_eq!(on_issue.by_moment.fleet, 2);
    }

    #[test]
    fn calls_and_costs_are_ordered_by_mode() {
        let r = short();
        let row = |m| r.row(m).unwrap();
        let every = row(AdvisorMode::EveryProbe);
        assert!(every.calls > row(AdvisorMode::OnIssue).calls);
        assert!(row(AdvisorMode::OnIssue).calls > row(AdvisorMode::OnEscalation).calls);
        // everyProbe calls less often than the reference (one call per chain halt) but with
        // a prompt about twice the script's: over a month it costs more, so only its calls
        // are compared.
        assert!(r.reference.calls > every.calls);
        for m in [AdvisorMode::OnIssue, AdvisorMode::OnEscalation] {
            assert!(r.reference.cost > row(m).cost, "{m:?}");
        }
        // The default budget refuses far more of everyProbe than of onIssue.
        let refused = |m| row(m).refused_by_default.unwrap();
        assert!(refused(AdvisorMode::EveryProbe) > 10 * refused(AdvisorMode::OnIssue).max(1));
    }

    #[test]
    fn a_month_reproduces_the_reference() {
        let r = simulate(&Options::default());
        let month = r.per_month(r.reference.cost);
        assert!(
            (50_000_000..=62_000_000).contains(&month.micros),
            "{}",
            dollars(month)
        );
        assert!(
            (0.095..0.11).contains(&r.unhealthy_share),
            "{}",
            r.unhealthy_share
        );
        assert!((5.5..7.0).contains(&r.mean_episode), "{}", r.mean_episode);
    }
}
