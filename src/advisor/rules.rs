//! The built-in advisor, pure and deterministic: no network, no cost, and the default. It
//! classes the symptoms a validator's status shows and maps each class to a decision with
//! its reasoning. It is also what decides whenever a model is slow, failing, out of budget
//! or answers something that is refused.

use super::decision::Decision;
use crate::api::{AdviceAction, Condition, MonitoredValidatorStatus};
use crate::conditions::{Status, kind};

/// What is wrong, as far as the rules can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Symptom {
    /// The node does not answer.
    Unreachable,
    /// The node is syncing or catching up.
    Syncing,
    /// The node has no (or too few) peers.
    NoPeers,
    /// Block production stalled while the node has peers.
    Stalled,
    /// The node is behind its fleet but advancing.
    Behind,
    /// The whole fleet of the chain is affected (halt, mass stall).
    FleetIncident,
    /// Restarts were tried and did not fix it.
    RepeatedFailures,
    /// The node is healthy but the validator is jailed, tombstoned or slashed.
    Jailed,
    /// The node is healthy but the validator is not in the active set.
    Inactive,
    /// The node is healthy but the validator misses blocks or authors none.
    NotSigning,
    /// Something else is wrong (finality, latency).
    Other,
    /// Nothing is wrong.
    Healthy,
}

impl Symptom {
    /// A short name (in fingerprints and prompts).
    pub fn as_str(self) -> &'static str {
        match self {
            Symptom::Unreachable => "unreachable",
            Symptom::Syncing => "syncing",
            Symptom::NoPeers => "noPeers",
            Symptom::Stalled => "stalled",
            Symptom::Behind => "behind",
            Symptom::FleetIncident => "fleetIncident",
            Symptom::RepeatedFailures => "repeatedFailures",
            Symptom::Jailed => "jailed",
            Symptom::Inactive => "inactive",
            Symptom::NotSigning => "notSigning",
            Symptom::Other => "other",
            Symptom::Healthy => "healthy",
        }
    }
}

fn failing<'a>(cs: &'a [Condition], t: &str) -> Option<&'a Condition> {
    cs.iter()
        .find(|c| c.type_ == t && c.status == Status::False.as_str())
}

/// Failed restarts after which the rules stop recommending another.
pub const REPEATED_FAILURES: u32 = 2;

/// The symptom class of a validator's status. The order matters: a fleet's fault is not
/// the node's, a syncing node must never be restarted, and repeated failed restarts call
/// for a person before anything else the node shows.
pub fn classify(s: &MonitoredValidatorStatus) -> Symptom {
    let cs = &s.conditions;
    let fleet = |c: &Condition| c.reason == "ChainHalted" || c.reason == "MassStall";
    if cs
        .iter()
        .any(|c| c.status == Status::False.as_str() && fleet(c))
        || cs.iter().any(|c| c.type_ == kind::READY && fleet(c))
    {
        return Symptom::FleetIncident;
    }
    // Duty: a healthy node whose validator does not do its job. (A dead node misses
    // blocks too; then the node's own fault is the cause, classed below.)
    let node_fault = [
        kind::REACHABLE,
        kind::SYNCED,
        kind::BLOCK_PRODUCTION,
        kind::PEERS_HEALTHY,
        kind::FINALIZING,
    ]
    .iter()
    .any(|t| failing(cs, t).is_some());
    if !node_fault && let Some(c) = failing(cs, kind::SIGNING) {
        use crate::duty::judge::reason as duty;
        return match c.reason.as_str() {
            duty::JAILED | duty::TOMBSTONED | duty::SLASHED => Symptom::Jailed,
            duty::NOT_IN_ACTIVE_SET => Symptom::Inactive,
            _ => Symptom::NotSigning,
        };
    }
    let ready_false = failing(cs, kind::READY).is_some();
    if !ready_false {
        return Symptom::Healthy;
    }
    let failed_restarts = s.remediation.as_ref().map_or(0, |r| {
        r.failed_attempts
            .max(r.attempts_in_window.saturating_sub(1))
    });
    if failed_restarts >= REPEATED_FAILURES
        || s.remediation.as_ref().is_some_and(|r| {
            r.history
                .iter()
                .rev()
                .take(REPEATED_FAILURES as usize)
                .filter(|h| h.recovered == Some(false))
                .count()
                >= REPEATED_FAILURES as usize
        })
    {
        return Symptom::RepeatedFailures;
    }
    if failing(cs, kind::REACHABLE).is_some() {
        return Symptom::Unreachable;
    }
    let synced = failing(cs, kind::SYNCED);
    if synced.is_some_and(|c| c.reason != "BehindFleet") {
        return Symptom::Syncing;
    }
    if failing(cs, kind::PEERS_HEALTHY).is_some() {
        return Symptom::NoPeers;
    }
    // A stalled node soon falls behind its fleet too: the stall is the cause.
    if failing(cs, kind::BLOCK_PRODUCTION).is_some() {
        return Symptom::Stalled;
    }
    if synced.is_some() {
        return Symptom::Behind;
    }
    Symptom::Other
}

/// The rules' decision for a symptom class.
pub fn decide(symptom: Symptom) -> Decision {
    use AdviceAction as A;
    let (action, confidence, summary, reasoning) = match symptom {
        Symptom::Unreachable => (
            A::Restart,
            0.8,
            "The node does not answer; restart it.",
            "Probes fail to connect or time out while the fleet is fine: the process is down or hung, which a restart fixes most often.",
        ),
        Symptom::Syncing => (
            A::Wait,
            0.9,
            "The node is syncing; let it catch up.",
            "A syncing node is doing its job; a restart would throw away progress and start the sync over. Never restart a syncing node.",
        ),
        Symptom::NoPeers => (
            A::Investigate,
            0.7,
            "The node has too few peers; check its network.",
            "Without peers the node cannot follow the chain; the cause is usually outside it (firewall, bootnodes, a partition), which a restart does not fix.",
        ),
        Symptom::Stalled => (
            A::Restart,
            0.7,
            "Block production stalled although the node has peers; restart it.",
            "The node has peers and the fleet moves on, yet its best block is stuck: its import or consensus is wedged, which a restart clears.",
        ),
        Symptom::Behind => (
            A::Wait,
            0.8,
            "The node is behind its fleet but advancing; give it time.",
            "It still imports blocks, only slower than the others; a restart would set it further back.",
        ),
        Symptom::FleetIncident => (
            A::Alert,
            0.9,
            "The whole chain is affected; tell people, restart nothing.",
            "Every (or most) validator of the chain shows the same fault at once: a chain halt or a common cause. Restarting nodes cannot fix it and risks a stampede.",
        ),
        Symptom::RepeatedFailures => (
            A::Escalate,
            0.9,
            "Restarts did not fix it; a person must look.",
            "The last restarts did not heal the node; another restart is unlikely to help and may hide the cause.",
        ),
        Symptom::Jailed => (
            A::Alert,
            0.9,
            "The validator is jailed or slashed; its operator must act, restart nothing.",
            "The chain itself keeps the validator out until its operator unjails it (or for good, when tombstoned); the node is fine and a restart changes nothing.",
        ),
        Symptom::Inactive => (
            A::Investigate,
            0.7,
            "The validator is not in the active set; check its stake and registration.",
            "The node is healthy but the chain does not count the validator among the active ones this era or session: a matter of stake, nomination or registration, not of the node.",
        ),
        Symptom::NotSigning => (
            A::Investigate,
            0.7,
            "The node is healthy but the validator misses blocks; check its signing key and signer.",
            "Blocks advance and the node follows them, yet the validator's signature is missing: its key is not loaded, its remote signer is down, or it runs as a full node. A restart does not load a key and can double-sign behind a remote signer.",
        ),
        Symptom::Other => (
            A::Alert,
            0.5,
            "The node is unhealthy in a way the rules do not class; tell people.",
            "No symptom the rules know matches; a person should look at the conditions.",
        ),
        Symptom::Healthy => (A::None, 1.0, "The node is healthy.", "All checks pass."),
    };
    Decision {
        action,
        confidence,
        summary: summary.into(),
        reasoning: reasoning.into(),
        evidence: vec![format!("symptom: {}", symptom.as_str())],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{RemediationRecord, RemediationStatus};

    use crate::conditions::found as cond;

    fn status(cs: Vec<Condition>) -> MonitoredValidatorStatus {
        MonitoredValidatorStatus {
            conditions: cs,
            ..Default::default()
        }
    }

    #[test]
    fn each_symptom_has_its_decision() {
        use AdviceAction as A;
        let ready_false = |r: &str| cond("Ready", "False", r);
        let cases: Vec<(&str, MonitoredValidatorStatus, Symptom, A)> = vec![
            (
                "healthy",
                status(vec![cond("Ready", "True", "Healthy")]),
                Symptom::Healthy,
                A::None,
            ),
            (
                "healthy node, jailed validator: alert, never restart",
                status(vec![
                    cond("Ready", "True", "Healthy"),
                    cond("Signing", "False", "Jailed"),
                ]),
                Symptom::Jailed,
                A::Alert,
            ),
            (
                "healthy node, missing blocks (folded into Ready): investigate",
                status(vec![
                    cond("Ready", "False", "MissedBlocks"),
                    cond("Signing", "False", "MissedBlocks"),
                ]),
                Symptom::NotSigning,
                A::Investigate,
            ),
            (
                "out of the active set",
                status(vec![cond("Signing", "False", "NotInActiveSet")]),
                Symptom::Inactive,
                A::Investigate,
            ),
            (
                "a dead node misses blocks: the node is the cause",
                status(vec![
                    cond("Ready", "False", "ConnectionRefused"),
                    cond("Reachable", "False", "ConnectionRefused"),
                    cond("Signing", "False", "MissedBlocks"),
                ]),
                Symptom::Unreachable,
                A::Restart,
            ),
            (
                "unreachable: restart",
                status(vec![
                    ready_false("Timeout"),
                    cond("Reachable", "False", "Timeout"),
                ]),
                Symptom::Unreachable,
                A::Restart,
            ),
            (
                "syncing: wait, never restart",
                status(vec![
                    ready_false("Syncing"),
                    cond("Synced", "False", "Syncing"),
                    cond("BlockProduction", "False", "BlockStalled"),
                ]),
                Symptom::Syncing,
                A::Wait,
            ),
            (
                "no peers: investigate the network",
                status(vec![
                    ready_false("TooFewPeers"),
                    cond("PeersHealthy", "False", "TooFewPeers"),
                    cond("BlockProduction", "False", "BlockStalled"),
                ]),
                Symptom::NoPeers,
                A::Investigate,
            ),
            (
                "stalled with peers: restart",
                status(vec![
                    ready_false("BlockStalled"),
                    cond("BlockProduction", "False", "BlockStalled"),
                    cond("PeersHealthy", "True", "EnoughPeers"),
                ]),
                Symptom::Stalled,
                A::Restart,
            ),
            (
                "behind but advancing: wait",
                status(vec![
                    ready_false("BehindFleet"),
                    cond("Synced", "False", "BehindFleet"),
                ]),
                Symptom::Behind,
                A::Wait,
            ),
            (
                "chain halt: alert, no restart",
                status(vec![
                    cond("Ready", "True", "ChainHalted"),
                    cond("BlockProduction", "False", "ChainHalted"),
                ]),
                Symptom::FleetIncident,
                A::Alert,
            ),
            (
                "finality only",
                status(vec![
                    ready_false("FinalityLagging"),
                    cond("Finalizing", "False", "FinalityLagging"),
                ]),
                Symptom::Other,
                A::Alert,
            ),
        ];
        for (what, s, symptom, action) in cases {
            assert_eq!(classify(&s), symptom, "{what}");
            let d = decide(symptom);
            assert_eq!(d.action, action, "{what}");
            assert!(!d.reasoning.is_empty() && (0.0..=1.0).contains(&d.confidence));
        }
    }

    #[test]
    fn repeated_failed_restarts_escalate() {
        let mut s = status(vec![
            cond("Ready", "False", "Timeout"),
            cond("Reachable", "False", "Timeout"),
        ]);
        let rec = |recovered| RemediationRecord {
            recovered: Some(recovered),
            ..Default::default()
        };
        s.remediation = Some(RemediationStatus {
            history: vec![rec(true), rec(false)],
            ..Default::default()
        });
        assert_eq!(
            classify(&s),
            Symptom::Unreachable,
            "one failed restart: try again"
        );
        s.remediation.as_mut().unwrap().history.push(rec(false));
        assert_eq!(classify(&s), Symptom::RepeatedFailures);
        assert_eq!(decide(classify(&s)).action, AdviceAction::Escalate);
        s.remediation = Some(RemediationStatus {
            failed_attempts: 2,
            ..Default::default()
        });
        assert_eq!(classify(&s), Symptom::RepeatedFailures);
    }
}
