//! Health evaluation: pure functions from one probe's outcome (plus what was seen before and
//! what the fleet shows) to the conditions a user reads.
//!
//! Rules, in short:
//! - Each probe yields instant checks: `Reachable`, `Synced`, `BlockProduction`, `Finalizing`,
//!   `PeersHealthy` (those that apply to the chain).
//! - Hysteresis: a bad verdict is published only after `failureThreshold` bad probes in a row,
//!   a good one only after `successThreshold` good probes in a row; in between, the published
//!   conditions stay as they are (no flapping, no status write).
//! - "We could not tell" (garbage answer, protocol error) is `Unknown`, never "down".
//! - A stall of the whole fleet (the highest block of every validator of that chain under the
//!   policy stopped moving) is a chain halt: reported as such, and not held against the node.
//!   A node stalled while the fleet has been quiet for over half the stall limit is not
//!   judged yet (nodes of a halting chain stop a block or two apart).
//! - Messages of healthy conditions carry no changing numbers, so a steady fleet needs no
//!   status writes; block heights live in `status.facts` and are refreshed with a change.

use crate::api::Chain;
use jiff::Timestamp;
use std::time::Duration;

use crate::conditions::kind;
pub use crate::conditions::{Desired, Status};

fn check(
    type_: &'static str,
    status: Status,
    reason: &'static str,
    message: impl Into<String>,
) -> Desired {
    Desired::new(type_, status, reason, message)
}

/// What a successful probe read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// Best block.
    pub best: Option<u64>,
    /// Finalized block.
    pub finalized: Option<u64>,
    /// Sync target.
    pub target: Option<u64>,
    /// Peers.
    pub peers: Option<u32>,
    /// Node says it is syncing.
    pub syncing: Option<bool>,
    /// How long the probe took.
    pub latency: Duration,
}

/// How a probe ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The node answered and the answer could be read.
    Answered(Sample),
    /// The node did not answer (refused, timed out, server error): it is down or hung.
    Down {
        /// CamelCase reason, e.g. `ConnectionRefused`, `Timeout`.
        reason: &'static str,
        /// What happened.
        message: String,
    },
    /// The answer could not be judged (garbage, protocol error): we cannot tell.
    Indeterminate {
        /// What happened.
        message: String,
    },
}

/// Thresholds from the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Fewest peers.
    pub min_peers: u32,
    /// Longest best-block stall.
    pub max_block_stall: Duration,
    /// Largest best − finalized distance.
    pub max_finality_lag: u64,
    /// Largest distance behind the fleet's highest block.
    pub max_blocks_behind: u64,
    /// Slowest acceptable probe.
    pub max_probe_latency: Option<Duration>,
    /// Bad probes in a row before publishing a failure.
    pub failure_threshold: u32,
    /// Good probes in a row before publishing a recovery.
    pub success_threshold: u32,
}

/// What the evaluator remembers of one validator between probes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// Last best block seen.
    pub best: Option<u64>,
    /// When the best block last changed (or was first seen).
    pub best_changed_at: Option<Timestamp>,
    /// Bad probes in a row.
    pub failures: u32,
    /// Good probes in a row.
    pub successes: u32,
}

/// What the fleet (same policy, same chain) shows right now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetView {
    /// Highest best block among the fleet's recent observations.
    pub highest: Option<u64>,
    /// When that highest block last increased.
    pub highest_changed_at: Option<Timestamp>,
    /// Validators in the fleet.
    pub members: u32,
    /// Members with a recent observation.
    pub observed: u32,
    /// Observed members whose best block has not moved for longer than `maxBlockStall`.
    pub stalled: u32,
}

/// A problem of the whole fleet rather than of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Incident {
    /// No validator of the chain sees new blocks: the chain halted.
    ChainHalted,
    /// Most validators stopped at once while a few still move: a common cause (a bad
    /// release, a partition), not a fault of each node.
    MassStall,
}

impl Incident {
    /// The API spelling (a condition reason and `fleetIncident.kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            Incident::ChainHalted => "ChainHalted",
            Incident::MassStall => "MassStall",
        }
    }
}

impl From<Incident> for crate::api::FleetIncidentKind {
    fn from(i: Incident) -> Self {
        match i {
            Incident::ChainHalted => crate::api::FleetIncidentKind::ChainHalted,
            Incident::MassStall => crate::api::FleetIncidentKind::MassStall,
        }
    }
}

impl FleetView {
    /// The fleet-wide problem now, if any: a halt, or more than half of the observed
    /// members (at least two) stalled at once.
    pub fn incident(&self, now: Timestamp, stall: Duration) -> Option<Incident> {
        if self.halted(now, stall) {
            Some(Incident::ChainHalted)
        } else if self.observed >= 2 && self.stalled * 2 > self.observed {
            Some(Incident::MassStall)
        } else {
            None
        }
    }

    /// A fleet of two or more whose highest block has not moved for over half of `stall`: a
    /// node stalled that long cannot yet be told to have been left behind by its fleet.
    pub fn quiet(&self, now: Timestamp, stall: Duration) -> bool {
        self.members >= 2
            && self
                .highest_changed_at
                .is_some_and(|t| elapsed(t, now) > stall / 2)
    }

    /// A fleet of two or more whose highest block has not moved for `stall`: the chain halted.
    pub fn halted(&self, now: Timestamp, stall: Duration) -> bool {
        self.members >= 2
            && self
                .highest_changed_at
                .is_some_and(|t| elapsed(t, now) > stall)
    }
}

fn elapsed(since: Timestamp, now: Timestamp) -> Duration {
    now.duration_since(since)
        .try_into()
        .unwrap_or(Duration::ZERO)
}

/// The condition types that apply to a chain, in display order (`Ready` not included).
pub fn condition_types(chain: Chain) -> &'static [&'static str] {
    match chain {
        Chain::Substrate => &[
            kind::REACHABLE,
            kind::SYNCED,
            kind::BLOCK_PRODUCTION,
            kind::FINALIZING,
            kind::PEERS_HEALTHY,
        ],
        Chain::Ethereum | Chain::Cosmos => &[
            kind::REACHABLE,
            kind::SYNCED,
            kind::BLOCK_PRODUCTION,
            kind::PEERS_HEALTHY,
        ],
        Chain::Http | Chain::Tcp => &[kind::REACHABLE],
    }
}

/// The instant checks of one probe, and the updated best-block memory.
pub fn instant_checks(
    chain: Chain,
    outcome: &Outcome,
    memory: &Memory,
    fleet: &FleetView,
    limits: &Limits,
    now: Timestamp,
) -> (Vec<Desired>, Option<u64>, Option<Timestamp>) {
    let types = condition_types(chain);
    let sample = match outcome {
        Outcome::Answered(s) => s,
        Outcome::Down { reason, message } => {
            let mut out = vec![check(
                kind::REACHABLE,
                Status::False,
                reason,
                message.clone(),
            )];
            for t in &types[1..] {
                out.push(check(
                    t,
                    Status::Unknown,
                    "NodeUnreachable",
                    "The node did not answer the last probe",
                ));
            }
            return (out, memory.best, memory.best_changed_at);
        }
        Outcome::Indeterminate { message } => {
            let out = types
                .iter()
                .map(|t| {
                    check(
                        t,
                        Status::Unknown,
                        "ProbeError",
                        format!("The node's answer could not be read: {message}"),
                    )
                })
                .collect();
            return (out, memory.best, memory.best_changed_at);
        }
    };

    let mut out = Vec::with_capacity(types.len());
    match limits.max_probe_latency {
        Some(max) if sample.latency > max => out.push(check(
            kind::REACHABLE,
            Status::False,
            "SlowResponse",
            format!(
                "The node answered, but slower than health.maxProbeLatency ({})",
                crate::duration::format(max)
            ),
        )),
        _ => out.push(check(
            kind::REACHABLE,
            Status::True,
            "Responding",
            "The node answers probes",
        )),
    }

    // Best-block memory: a change (or first sight) restarts the stall clock.
    let (best, changed_at) = match (sample.best, memory.best) {
        (Some(b), Some(prev)) if b == prev => (Some(b), memory.best_changed_at.or(Some(now))),
        (Some(b), _) => (Some(b), Some(now)),
        (None, _) => (memory.best, memory.best_changed_at),
    };

    let stalled = changed_at.is_some_and(|t| elapsed(t, now) > limits.max_block_stall);
    // A node stalled together with most of its fleet is behind for the fleet's reason.
    let fleet_stall = stalled && fleet.incident(now, limits.max_block_stall).is_some();
    if types.contains(&kind::SYNCED) {
        let behind = match (fleet.highest, sample.best) {
            (Some(h), Some(b)) => h.saturating_sub(b),
            _ => 0,
        };
        out.push(if sample.syncing == Some(true) {
            check(
                kind::SYNCED,
                Status::False,
                "Syncing",
                "The node reports that it is syncing",
            )
        } else if behind > limits.max_blocks_behind && fleet_stall {
            check(
                kind::SYNCED,
                Status::False,
                "MassStall",
                "Behind the fleet's highest block because most validators stalled at once",
            )
        } else if behind > limits.max_blocks_behind {
            check(
                kind::SYNCED,
                Status::False,
                "BehindFleet",
                format!(
                    "More than {} blocks behind the fleet's highest block",
                    limits.max_blocks_behind
                ),
            )
        } else if sample.best.is_none() {
            check(
                kind::SYNCED,
                Status::Unknown,
                "NotReported",
                "The node did not report its best block",
            )
        } else {
            check(
                kind::SYNCED,
                Status::True,
                kind::SYNCED,
                "In sync with the network and the fleet",
            )
        });
    }

    if types.contains(&kind::BLOCK_PRODUCTION) {
        let stall = crate::duration::format(limits.max_block_stall);
        out.push(match best {
            None => check(kind::BLOCK_PRODUCTION, Status::Unknown, "NotReported", "The node did not report its best block"),
            Some(b) if stalled && fleet.halted(now, limits.max_block_stall) => check(kind::BLOCK_PRODUCTION,
                Status::False,
                "ChainHalted",
                format!("No validator of this chain under the policy has seen a new block for over {stall} (stuck at #{b}); a chain-wide halt, not a fault of this node"),
            ),
            Some(b) if stalled && fleet.incident(now, limits.max_block_stall).is_some() => check(kind::BLOCK_PRODUCTION,
                Status::False,
                "MassStall",
                format!("Best block #{b} has not changed for over {stall}, like most validators of this chain under the policy; a fleet-wide problem, not a fault of this node"),
            ),
            // The rest of the fleet stopped too, just later than this node (nodes of a halting
            // chain stop a block or two apart): too early to tell a halt from a node fault, so
            // no verdict yet rather than a node fault that the incident would contradict.
            Some(b) if stalled && fleet.quiet(now, limits.max_block_stall) => check(kind::BLOCK_PRODUCTION,
                Status::Unknown,
                "FleetStalling",
                format!("Best block #{b} has not changed for over {stall}, and the fleet's highest block has not moved for a while either; waiting to tell a chain halt from a fault of this node"),
            ),
            Some(b) if stalled => check(kind::BLOCK_PRODUCTION,
                Status::False,
                "BlockStalled",
                format!("Best block #{b} has not changed for over {stall} while the fleet moved on"),
            ),
            Some(_) => check(kind::BLOCK_PRODUCTION, Status::True, "Advancing", "The best block advances"),
        });
    }

    if types.contains(&kind::FINALIZING) {
        out.push(match (sample.best, sample.finalized) {
            (Some(b), Some(f)) if b.saturating_sub(f) > limits.max_finality_lag => check(
                kind::FINALIZING,
                Status::False,
                "FinalityLagging",
                format!(
                    "Finalized block trails the best block by more than {} blocks",
                    limits.max_finality_lag
                ),
            ),
            (Some(_), Some(_)) => check(
                kind::FINALIZING,
                Status::True,
                kind::FINALIZING,
                "Blocks are being finalized",
            ),
            _ => check(
                kind::FINALIZING,
                Status::Unknown,
                "NotReported",
                "The node did not report its finalized block",
            ),
        });
    }

    if types.contains(&kind::PEERS_HEALTHY) {
        out.push(match sample.peers {
            Some(p) if p < limits.min_peers => check(
                kind::PEERS_HEALTHY,
                Status::False,
                "TooFewPeers",
                format!(
                    "Fewer than health.minPeers ({}) peers connected",
                    limits.min_peers
                ),
            ),
            Some(_) => check(
                kind::PEERS_HEALTHY,
                Status::True,
                "EnoughPeers",
                "Enough peers connected",
            ),
            None => check(
                kind::PEERS_HEALTHY,
                Status::Unknown,
                "NotReported",
                "The node did not report its peers",
            ),
        });
    }
    (out, best, changed_at)
}

/// Whether a set of checks is a node fault (`Some(check)`: the deciding one), healthy (`None`),
/// or cannot be told. A chain halt is never a node fault.
fn verdict(checks: &[Desired]) -> Verdict<'_> {
    // Order of importance: down, stalled (the root cause of falling behind), syncing or
    // behind, finality, peers.
    const PRIORITY: [&str; 5] = [
        kind::REACHABLE,
        kind::BLOCK_PRODUCTION,
        kind::SYNCED,
        kind::FINALIZING,
        kind::PEERS_HEALTHY,
    ];
    for t in PRIORITY {
        let deciding = checks
            .iter()
            .find(|c| c.type_ == t && c.status == Status::False && !is_fleet_reason(c.reason));
        if let Some(c) = deciding {
            return Verdict::Bad(c);
        }
    }
    if checks
        .iter()
        .any(|c| c.status == Status::Unknown && c.reason == "ProbeError")
    {
        return Verdict::Indeterminate;
    }
    Verdict::Good
}

/// Reasons that blame the fleet, not the node.
fn is_fleet_reason(reason: &str) -> bool {
    matches!(reason, "ChainHalted" | "MassStall")
}

enum Verdict<'a> {
    Good,
    Bad(&'a Desired),
    Indeterminate,
}

/// The result of judging one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation {
    /// Conditions to publish (each applicable type plus `Ready`), or `None` to keep the
    /// published ones (inside the hysteresis window).
    pub publish: Option<Vec<Desired>>,
    /// Updated memory.
    pub memory: Memory,
    /// The instant checks of this probe (for logs and `vigil probe`).
    pub checks: Vec<Desired>,
}

/// What one probe is judged on.
#[derive(Clone, Copy, Debug)]
pub struct Judged<'a> {
    /// How the probe ended.
    pub outcome: &'a Outcome,
    /// What was remembered of the validator.
    pub memory: &'a Memory,
    /// What the fleet shows.
    pub fleet: &'a FleetView,
    /// The status of the `Ready` condition users see now (`None` before the first verdict).
    pub published_ready: Option<Status>,
}

/// Judges one probe.
pub fn evaluate(chain: Chain, limits: &Limits, judged: Judged<'_>, now: Timestamp) -> Evaluation {
    let Judged {
        outcome,
        memory,
        fleet,
        published_ready,
    } = judged;
    let (checks, best, best_changed_at) =
        instant_checks(chain, outcome, memory, fleet, limits, now);
    let v = verdict(&checks);
    let good = matches!(v, Verdict::Good);
    let memory = Memory {
        best,
        best_changed_at,
        failures: if good {
            0
        } else {
            memory.failures.saturating_add(1)
        },
        successes: if good {
            memory.successes.saturating_add(1)
        } else {
            0
        },
    };
    let ready = match &v {
        Verdict::Good => match checks.iter().find(|c| is_fleet_reason(c.reason)) {
            Some(c) => check(
                kind::READY,
                Status::True,
                c.reason,
                "No fault of this node; its fleet has a problem (see the MonitorPolicy's fleetIncident)",
            ),
            None => check(kind::READY, Status::True, "Healthy", "All checks pass"),
        },
        Verdict::Bad(c) => check(kind::READY, Status::False, c.reason, c.message.clone()),
        Verdict::Indeterminate => check(
            kind::READY,
            Status::Unknown,
            "ProbeError",
            "Vigil could not read the node's answers; see the Reachable condition",
        ),
    };
    let confirmed = if good {
        memory.successes >= limits.success_threshold.max(1)
    } else {
        memory.failures >= limits.failure_threshold.max(1)
    };
    // Before the first verdict, or when the verdict agrees with what is shown, publish the
    // details at once (a bad node's details may evolve); otherwise wait for confirmation.
    let agrees = published_ready == Some(ready.status);
    let publish = if confirmed || agrees {
        let mut all = checks.clone();
        all.push(ready);
        Some(all)
    } else {
        None
    };
    Evaluation {
        publish,
        memory,
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            min_peers: 2,
            max_block_stall: Duration::from_secs(60),
            max_finality_lag: 10,
            max_blocks_behind: 5,
            max_probe_latency: None,
            failure_threshold: 3,
            success_threshold: 2,
        }
    }
    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }
    fn ok(best: u64) -> Outcome {
        Outcome::Answered(Sample {
            best: Some(best),
            finalized: Some(best - 2),
            target: Some(best),
            peers: Some(10),
            syncing: Some(false),
            latency: Duration::from_millis(5),
        })
    }
    fn find<'a>(cs: &'a [Desired], t: &str) -> &'a Desired {
        cs.iter().find(|c| c.type_ == t).unwrap()
    }
    fn fleet(highest: u64, changed: i64, members: u32) -> FleetView {
        FleetView {
            highest: Some(highest),
            highest_changed_at: Some(at(changed)),
            members,
            observed: members,
            stalled: 0,
        }
    }

    /// Runs probes through `evaluate`, keeping memory and the published Ready like the engine.
    struct Sim {
        mem: Memory,
        ready: Option<Status>,
        published: Vec<Desired>,
    }
    impl Sim {
        fn new() -> Self {
            Sim {
                mem: Memory::default(),
                ready: None,
                published: vec![],
            }
        }
        fn probe(&mut self, o: Outcome, f: &FleetView, now: Timestamp) -> bool {
            let judged = Judged {
                outcome: &o,
                memory: &self.mem,
                fleet: f,
                published_ready: self.ready,
            };
            let e = evaluate(Chain::Substrate, &limits(), judged, now);
            self.mem = e.memory;
            match e.publish {
                Some(p) => {
                    self.ready = Some(find(&p, "Ready").status);
                    self.published = p;
                    true
                }
                None => false,
            }
        }
        fn ready(&self) -> (&str, &str) {
            let r = find(&self.published, "Ready");
            (r.status.as_str(), r.reason)
        }
    }

    #[test]
    fn a_healthy_node_is_ready_with_stable_messages() {
        let mut s = Sim::new();
        let f = fleet(100, 0, 3);
        assert!(
            !s.probe(ok(100), &f, at(0)),
            "one good probe is not yet confirmed (successThreshold 2)"
        );
        assert!(s.probe(ok(101), &f, at(10)));
        assert_eq!(s.ready(), ("True", "Healthy"));
        let before = s.published.clone();
        s.probe(ok(102), &fleet(102, 20, 3), at(20));
        assert_eq!(
            s.published, before,
            "a steady healthy node publishes the same conditions"
        );
    }

    #[test]
    fn failures_need_the_threshold_to_show() {
        let mut s = Sim::new();
        let f = fleet(100, 0, 3);
        s.probe(ok(100), &f, at(0));
        s.probe(ok(100), &f, at(1));
        let down = Outcome::Down {
            reason: "ConnectionRefused",
            message: "connection refused".into(),
        };
        assert!(!s.probe(down.clone(), &f, at(2)));
        assert!(!s.probe(down.clone(), &f, at(3)));
        assert_eq!(s.ready(), ("True", "Healthy"));
        assert!(s.probe(down.clone(), &f, at(4)));
        assert_eq!(s.ready(), ("False", "ConnectionRefused"));
        assert_eq!(find(&s.published, "Synced").status, Status::Unknown);
        // One good probe does not flip back (successThreshold 2): no flapping.
        assert!(!s.probe(ok(101), &f, at(5)));
        assert!(
            s.probe(down, &f, at(6)),
            "still down: details republished (no change)"
        );
        s.probe(ok(102), &f, at(7));
        assert!(s.probe(ok(103), &f, at(8)));
        assert_eq!(s.ready(), ("True", "Healthy"));
    }

    #[test]
    fn garbage_is_unknown_not_down() {
        let mut s = Sim::new();
        let f = fleet(100, 0, 3);
        let bad = Outcome::Indeterminate {
            message: "invalid JSON".into(),
        };
        for i in 0..3 {
            s.probe(bad.clone(), &f, at(i));
        }
        assert_eq!(s.ready(), ("Unknown", "ProbeError"));
        assert_eq!(find(&s.published, "Reachable").status, Status::Unknown);
    }

    #[test]
    fn a_node_stall_is_a_fault_while_the_fleet_moves_on() {
        let mut s = Sim::new();
        s.probe(ok(100), &fleet(100, 0, 3), at(0));
        s.probe(ok(100), &fleet(100, 0, 3), at(10));
        // The fleet keeps advancing, this node stays at #100.
        for t in [70, 80, 90] {
            s.probe(ok(100), &fleet(100 + t as u64 / 6, t - 5, 3), at(t));
        }
        assert_eq!(s.ready().1, "BlockStalled");
        assert!(
            find(&s.published, "BlockProduction")
                .message
                .contains("#100")
        );
    }

    #[test]
    fn a_chain_halt_is_not_a_node_fault() {
        let mut s = Sim::new();
        s.probe(ok(100), &fleet(100, 0, 5), at(0));
        s.probe(ok(100), &fleet(100, 0, 5), at(10));
        for t in [70, 80, 90] {
            s.probe(ok(100), &fleet(100, 0, 5), at(t));
        }
        let bp = find(&s.published, "BlockProduction");
        assert_eq!((bp.status, bp.reason), (Status::False, "ChainHalted"));
        assert_eq!(s.ready(), ("True", "ChainHalted"));
    }

    /// Nodes of a halting chain stop a block or two apart: the first to stop must not be
    /// confirmed stalled before the fleet's halt shows (a node fault, then N "recoveries").
    #[test]
    fn a_node_that_stops_first_in_a_halt_is_never_a_node_fault() {
        let mut s = Sim::new();
        s.probe(ok(100), &fleet(100, 0, 4), at(0));
        s.probe(ok(100), &fleet(100, 0, 4), at(1));
        // This node stopped at t=0; the fleet's last block came at t=5, then nothing.
        let mut readies = vec![];
        for t in (2..=80).step_by(2) {
            s.probe(ok(100), &fleet(101, 5, 4), at(t));
            let (st, why) = s.ready();
            readies.push((t, st.to_string(), why.to_string()));
        }
        assert!(
            readies.iter().all(|(_, st, _)| st == "True"),
            "never a node fault: {readies:?}"
        );
        let bp = find(&s.published, "BlockProduction");
        assert_eq!((bp.status, bp.reason), (Status::False, "ChainHalted"));
        // Between its own stall (t>60) and the halt (t>65): no verdict, not a fault.
        let mut w = Sim::new();
        w.probe(ok(100), &fleet(100, 0, 4), at(0));
        w.probe(ok(100), &fleet(100, 0, 4), at(1));
        w.probe(ok(100), &fleet(101, 5, 4), at(62));
        let e = find(&w.published, "BlockProduction");
        assert_eq!((e.status, e.reason), (Status::Unknown, "FleetStalling"));
        assert_eq!(w.ready(), ("True", "Healthy"));
    }

    #[test]
    fn most_of_the_fleet_stalling_is_not_a_node_fault() {
        let mut s = Sim::new();
        let mass = |t: i64| FleetView {
            stalled: 6,
            observed: 10,
            ..fleet(100 + t as u64, t, 10)
        };
        for t in [0, 10, 70, 80, 90] {
            s.probe(ok(100), &mass(t), at(t));
        }
        let bp = find(&s.published, "BlockProduction");
        assert_eq!((bp.status, bp.reason), (Status::False, "MassStall"));
        assert_eq!(s.ready(), ("True", "MassStall"));
        // The same stall with most of the fleet moving is this node's fault.
        let mut s = Sim::new();
        let few = |t: i64| FleetView {
            stalled: 1,
            observed: 10,
            ..fleet(100 + t as u64, t, 10)
        };
        for t in [0, 10, 70, 80, 90] {
            s.probe(ok(100), &few(t), at(t));
        }
        assert_eq!(s.ready(), ("False", "BlockStalled"));
    }

    #[test]
    fn a_lone_validator_cannot_blame_the_chain() {
        let mut s = Sim::new();
        for t in [0, 10, 70, 80, 90] {
            s.probe(ok(100), &fleet(100, 0, 1), at(t));
        }
        assert_eq!(s.ready().1, "BlockStalled");
    }

    #[test]
    fn syncing_behind_finality_and_peers() {
        let f = fleet(200, 0, 3);
        let e = |sample: Sample| {
            let (checks, _, _) = instant_checks(
                Chain::Substrate,
                &Outcome::Answered(sample),
                &Memory::default(),
                &f,
                &limits(),
                at(0),
            );
            checks
        };
        let base = Sample {
            best: Some(200),
            finalized: Some(198),
            peers: Some(5),
            syncing: Some(false),
            ..Default::default()
        };
        let c = e(Sample {
            syncing: Some(true),
            ..base.clone()
        });
        assert_eq!(find(&c, "Synced").reason, "Syncing");
        let c = e(Sample {
            best: Some(190),
            finalized: Some(189),
            ..base.clone()
        });
        assert_eq!(find(&c, "Synced").reason, "BehindFleet");
        let c = e(Sample {
            finalized: Some(150),
            ..base.clone()
        });
        assert_eq!(find(&c, "Finalizing").reason, "FinalityLagging");
        let c = e(Sample {
            peers: Some(1),
            ..base.clone()
        });
        assert_eq!(find(&c, "PeersHealthy").reason, "TooFewPeers");
        let c = e(base);
        assert!(c.iter().all(|c| c.status == Status::True), "{c:?}");
    }

    #[test]
    fn slow_answers_count_as_unreachable_when_bounded() {
        let mut l = limits();
        l.max_probe_latency = Some(Duration::from_millis(100));
        let sample = Sample {
            best: Some(1),
            finalized: Some(1),
            peers: Some(9),
            latency: Duration::from_millis(300),
            ..Default::default()
        };
        let (c, _, _) = instant_checks(
            Chain::Substrate,
            &Outcome::Answered(sample),
            &Memory::default(),
            &FleetView::default(),
            &l,
            at(0),
        );
        assert_eq!(find(&c, "Reachable").reason, "SlowResponse");
    }

    #[test]
    fn http_and_tcp_only_judge_reachability() {
        let (c, _, _) = instant_checks(
            Chain::Tcp,
            &Outcome::Answered(Sample::default()),
            &Memory::default(),
            &FleetView::default(),
            &limits(),
            at(0),
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].type_, "Reachable");
    }
}
