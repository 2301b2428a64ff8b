//! What alerts: the table of alerts (name, default severity, default repeat, whether it is a
//! state that resolves or a one-off event), and what fires, read from an object's status
//! (level-triggered: a restart reads the same answer back) or from a notice (events).

use crate::api::{
    AlertName, Condition, MonitorPolicyStatus, MonitoredValidatorStatus, PipelineRunStatus,
    RemediationResult, Severity, StepPhase,
};
use crate::conditions::{Status, kind, reason};
use crate::notice::{Notice, What};
use std::time::Duration;

/// Whether an alert is a state (fires while it lasts, then resolves) or a one-off event
/// (sent once, never resolved).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Fires while a condition lasts.
    State,
    /// Happened once.
    Event,
}

/// One row of the alert table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Info {
    /// Default severity.
    pub severity: Severity,
    /// Default repeat interval while it lasts.
    pub repeat: Duration,
    /// State or event.
    pub kind: Kind,
    /// Sent only when a rule names it.
    pub opt_in: bool,
    /// One line for people.
    pub summary: &'static str,
}

const fn mins(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

/// Every alert, in the order of the table in the docs.
pub const ALL: [AlertName; 28] = [
    AlertName::ValidatorNotReady,
    AlertName::ValidatorUnreachable,
    AlertName::BlockProductionStalled,
    AlertName::FinalityLagging,
    AlertName::PeersLow,
    AlertName::NotSynced,
    AlertName::BehindFleet,
    AlertName::ProbeFailing,
    AlertName::ValidatorNotSigning,
    AlertName::ValidatorJailed,
    AlertName::ValidatorInactive,
    AlertName::RemediationSucceeded,
    AlertName::RemediationFailed,
    AlertName::RemediationBlocked,
    AlertName::Escalated,
    AlertName::StormActive,
    AlertName::ChainHalted,
    AlertName::MassStall,
    AlertName::AdvisorBudgetExhausted,
    AlertName::Advice,
    AlertName::AdvisorAlert,
    AlertName::PipelineRunFailed,
    AlertName::PipelineRunStalled,
    AlertName::PipelineRunTimedOut,
    AlertName::PipelineStepFailed,
    AlertName::ArchiveFailed,
    AlertName::ArchiveVerified,
    AlertName::TestAlert,
];

/// The table row of an alert.
pub fn info(name: AlertName) -> Info {
    use AlertName as A;
    use Kind::{Event, State};
    use Severity::{Critical, Info as Inf, Warning};
    let row = |severity, repeat, kind, summary| Info {
        severity,
        repeat,
        kind,
        opt_in: false,
        summary,
    };
    match name {
        A::ValidatorNotReady => row(Critical, mins(60), State, "Validator is not ready"),
        A::ValidatorUnreachable => row(Critical, mins(60), State, "Validator is unreachable"),
        A::BlockProductionStalled => row(
            Critical,
            mins(60),
            State,
            "Validator's block production stalled",
        ),
        A::FinalityLagging => row(Warning, mins(240), State, "Validator's finality is lagging"),
        A::PeersLow => row(Warning, mins(240), State, "Validator has too few peers"),
        A::NotSynced => row(Warning, mins(240), State, "Validator is not synced"),
        A::BehindFleet => row(Warning, mins(240), State, "Validator is behind its fleet"),
        A::ProbeFailing => row(
            Warning,
            mins(240),
            State,
            "Vigil cannot tell the validator's health",
        ),
        A::ValidatorNotSigning => row(Warning, mins(60), State, "Validator does not sign"),
        A::ValidatorJailed => row(Critical, mins(60), State, "Validator is jailed or slashed"),
        A::ValidatorInactive => row(
            Warning,
            mins(240),
            State,
            "Validator is not in the active set",
        ),
        A::RemediationSucceeded => row(Inf, mins(0), Event, "Remediation healed the validator"),
        A::RemediationFailed => row(Warning, mins(0), Event, "Remediation failed"),
        A::RemediationBlocked => row(Warning, mins(0), Event, "Remediation was held back"),
        A::Escalated => row(
            Critical,
            mins(60),
            State,
            "Vigil escalated: a person must act",
        ),
        A::StormActive => row(Critical, mins(30), State, "Storm guard holds every restart"),
        A::ChainHalted => row(Critical, mins(15), State, "Chain halted"),
        A::MassStall => row(Critical, mins(30), State, "Most validators stalled at once"),
        A::AdvisorBudgetExhausted => row(
            Warning,
            mins(720),
            State,
            "Advisor budget exhausted; built-in rules decide",
        ),
        A::Advice => Info {
            opt_in: true,
            ..row(Inf, mins(0), Event, "Advisor's diagnosis")
        },
        A::AdvisorAlert => row(Warning, mins(0), Event, "The advisor asks people to look"),
        A::PipelineRunFailed => row(Critical, mins(15), State, "Pipeline run failed"),
        A::PipelineRunStalled => row(Warning, mins(60), State, "Pipeline run stalled"),
        A::PipelineRunTimedOut => row(Critical, mins(15), State, "Pipeline run timed out"),
        A::PipelineStepFailed => row(Warning, mins(30), State, "Pipeline step failed"),
        A::ArchiveFailed => row(Critical, mins(30), State, "Run archive failed"),
        A::ArchiveVerified => row(Inf, mins(0), Event, "Run archive verified"),
        A::TestAlert => Info {
            opt_in: true,
            ..row(Inf, mins(0), Event, "Test notification")
        },
    }
}

/// The API spelling of an alert name (the Alertmanager `alertname`).
pub fn name_str(name: AlertName) -> &'static str {
    use AlertName as A;
    match name {
        A::ValidatorNotReady => "ValidatorNotReady",
        A::ValidatorUnreachable => "ValidatorUnreachable",
        A::BlockProductionStalled => "BlockProductionStalled",
        A::FinalityLagging => "FinalityLagging",
        A::PeersLow => "PeersLow",
        A::NotSynced => "NotSynced",
        A::BehindFleet => "BehindFleet",
        A::ProbeFailing => "ProbeFailing",
        A::ValidatorNotSigning => "ValidatorNotSigning",
        A::ValidatorJailed => "ValidatorJailed",
        A::ValidatorInactive => "ValidatorInactive",
        A::RemediationSucceeded => "RemediationSucceeded",
        A::RemediationFailed => "RemediationFailed",
        A::RemediationBlocked => "RemediationBlocked",
        A::Escalated => "Escalated",
        A::StormActive => "StormActive",
        A::ChainHalted => "ChainHalted",
        A::MassStall => "MassStall",
        A::AdvisorBudgetExhausted => "AdvisorBudgetExhausted",
        A::Advice => "Advice",
        A::AdvisorAlert => "AdvisorAlert",
        A::PipelineRunFailed => "PipelineRunFailed",
        A::PipelineRunStalled => "PipelineRunStalled",
        A::PipelineRunTimedOut => "PipelineRunTimedOut",
        A::PipelineStepFailed => "PipelineStepFailed",
        A::ArchiveFailed => "ArchiveFailed",
        A::ArchiveVerified => "ArchiveVerified",
        A::TestAlert => "TestAlert",
    }
}

/// One alert that fires now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Firing {
    /// Which alert.
    pub name: AlertName,
    /// What inside the object (a step's name, a chain), or empty.
    pub subject: String,
    /// How urgent.
    pub severity: Severity,
    /// What was seen, for people (a condition's message).
    pub detail: String,
    /// The validators it is about, for an alert of a whole fleet (storm, incident).
    pub members: Vec<String>,
}

impl Firing {
    /// An alert with its default severity.
    pub fn new(name: AlertName, detail: impl Into<String>) -> Firing {
        Firing {
            name,
            subject: String::new(),
            severity: info(name).severity,
            detail: detail.into(),
            members: Vec::new(),
        }
    }

    /// About one part of the object.
    pub fn subject(mut self, subject: impl Into<String>) -> Firing {
        self.subject = subject.into();
        self
    }

    /// Listing these validators.
    pub fn members(mut self, members: Vec<String>) -> Firing {
        self.members = members;
        self
    }
}

/// Reasons that blame the fleet, not the node: the policy's incident alert covers them, so
/// a chain halt is one alert, not one per validator.
fn fleet_reason(r: &str) -> bool {
    matches!(r, "ChainHalted" | "MassStall")
}

/// Reasons of `Ready=False` that say Vigil cannot probe the validator (its spec or policy
/// is refused), not that the node is down.
fn cannot_probe(r: &str) -> bool {
    [
        reason::INVALID_SPEC,
        reason::POLICY_INVALID,
        reason::POLICY_NOT_FOUND,
    ]
    .contains(&r)
}

/// The state alerts of a validator, from its status: one per failing condition (a fleet's
/// fault excepted), `ValidatorNotReady` when `Ready=False` names no failing condition,
/// `ProbeFailing` when Vigil cannot tell, and `Escalated`.
pub fn validator(status: &MonitoredValidatorStatus) -> Vec<Firing> {
    let cs = &status.conditions;
    let mut out = Vec::new();
    let failing = |c: &&Condition| c.status == Status::False.as_str() && !fleet_reason(&c.reason);
    for c in cs.iter().filter(failing) {
        let name = match c.type_.as_str() {
            kind::REACHABLE => AlertName::ValidatorUnreachable,
            kind::BLOCK_PRODUCTION => AlertName::BlockProductionStalled,
            kind::FINALIZING => AlertName::FinalityLagging,
            kind::PEERS_HEALTHY => AlertName::PeersLow,
            kind::SYNCED if c.reason == "BehindFleet" => AlertName::BehindFleet,
            kind::SYNCED => AlertName::NotSynced,
            kind::SIGNING => {
                use crate::duty::judge::reason as duty;
                let name = match c.reason.as_str() {
                    duty::JAILED | duty::TOMBSTONED | duty::SLASHED => AlertName::ValidatorJailed,
                    duty::NOT_IN_ACTIVE_SET => AlertName::ValidatorInactive,
                    _ => AlertName::ValidatorNotSigning,
                };
                // Tiered: the last tier of missed blocks is critical.
                let mut f = Firing::new(name, &c.message);
                if crate::duty::judge::critical(&c.reason) {
                    f.severity = Severity::Critical;
                }
                out.push(f);
                continue;
            }
            _ => continue,
        };
        out.push(Firing::new(name, &c.message));
    }
    if let Some(ready) = cs.iter().find(|c| c.type_ == kind::READY) {
        let st = Status::parse(&ready.status);
        if st == Status::False && cannot_probe(&ready.reason)
            || st == Status::Unknown && ready.reason == "ProbeError"
        {
            let detail = cs
                .iter()
                .find(|c| c.type_ == kind::REACHABLE && c.reason == "ProbeError")
                .unwrap_or(ready);
            out.push(Firing::new(AlertName::ProbeFailing, &detail.message));
        } else if st == Status::False && out.is_empty() && !fleet_reason(&ready.reason) {
            out.push(Firing::new(AlertName::ValidatorNotReady, &ready.message));
        }
    }
    if let Some(c) = cs
        .iter()
        .find(|c| c.type_ == kind::ESCALATED && c.status == Status::True.as_str())
    {
        out.push(Firing::new(AlertName::Escalated, &c.message));
    }
    out
}

/// An event read from status: the alert, and which event it is (told once per value).
pub type Happened = (Firing, String);

/// The outcomes of a validator's remediations, from its status: of the actions in its history
/// that started at `not_before` or later, the newest that failed, the newest that was blocked
/// and the newest the node recovered after, each with the action's token. Read from status,
/// not from a notice, so that an outcome recorded just before a crash is still told by the
/// next process; it counts as told once its alert's record names that token.
pub fn remediation_outcomes(
    status: &MonitoredValidatorStatus,
    not_before: jiff::Timestamp,
) -> Vec<Happened> {
    let Some(rem) = &status.remediation else {
        return Vec::new();
    };
    let mut out: Vec<Happened> = Vec::new();
    for h in rem.history.iter().rev() {
        if h.time.as_ref().is_none_or(|t| t.0 < not_before) {
            continue;
        }
        let (name, what) = match (h.result, h.recovered) {
            (RemediationResult::Failed, _) => (AlertName::RemediationFailed, h.message.clone()),
            (RemediationResult::Blocked, _) => (
                AlertName::RemediationBlocked,
                format!("{}; retried later", h.message),
            ),
            // The action's own success is not the news; the node healing after it is.
            (_, Some(true)) => (
                AlertName::RemediationSucceeded,
                "the node is healthy again".to_string(),
            ),
            _ => continue,
        };
        if out.iter().any(|(f, _)| f.name == name) {
            continue; // an older one: told before the newer, or with it
        }
        let trigger = if h.trigger.is_empty() {
            "policy"
        } else {
            &h.trigger
        };
        let detail = format!("{} ({trigger}, token {}): {what}", h.action, h.token);
        out.push((Firing::new(name, detail), h.token.clone()));
    }
    out
}

/// A validator under a policy, as the policy's fleet alerts list it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Validator name.
    pub name: String,
    /// Its chain (`spec.chain`).
    pub chain: String,
    /// Its published `Ready` is `False`.
    pub unhealthy: bool,
    /// Its block production is blamed on its fleet (chain halt, mass stall).
    pub in_incident: bool,
}

/// The state alerts of a policy: the storm guard, the fleet incident, the advisor budget.
pub fn policy(status: &MonitorPolicyStatus, members: &[Member]) -> Vec<Firing> {
    let cs = &status.conditions;
    let is_true = |t: &str| {
        cs.iter()
            .any(|c| c.type_ == t && c.status == Status::True.as_str())
    };
    let message = |t: &str| {
        cs.iter()
            .find(|c| c.type_ == t)
            .map(|c| c.message.clone())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    if is_true(kind::STORM_ACTIVE) {
        let names = members
            .iter()
            .filter(|m| m.unhealthy)
            .map(|m| m.name.clone())
            .collect();
        out.push(Firing::new(AlertName::StormActive, message(kind::STORM_ACTIVE)).members(names));
    }
    if let Some(i) = status.fleet_incident.as_ref().filter(|i| i.ended.is_none()) {
        let name = match i.kind {
            crate::api::FleetIncidentKind::ChainHalted => AlertName::ChainHalted,
            crate::api::FleetIncidentKind::MassStall => AlertName::MassStall,
        };
        let names = members
            .iter()
            .filter(|m| m.chain == i.chain && m.in_incident)
            .map(|m| m.name.clone())
            .collect();
        out.push(
            Firing::new(name, &i.message)
                .subject(&i.chain)
                .members(names),
        );
    }
    if is_true(kind::BUDGET_EXHAUSTED) {
        out.push(Firing::new(
            AlertName::AdvisorBudgetExhausted,
            message(kind::BUDGET_EXHAUSTED),
        ));
    }
    out
}

/// The events of an object's latest advice (a validator's `advice`, a policy's
/// `fleetAdvice`), when it was given at `not_before` or later: `Advice`, and `AdvisorAlert`
/// when Vigil applied advice that asks people to look. Read every round, like
/// [`remediation_outcomes`]; one advice is one event, named by its question and time.
pub fn advice_events(
    advice: Option<&crate::api::AdviceRecord>,
    not_before: jiff::Timestamp,
) -> Vec<Happened> {
    let Some(a) = advice else {
        return Vec::new();
    };
    let Some(at) = a.time.as_ref().map(|t| t.0).filter(|t| *t >= not_before) else {
        return Vec::new();
    };
    let which = format!("{}@{at}", a.fingerprint);
    let told = crate::advisor::task::told(a);
    let mut out = vec![(Firing::new(AlertName::Advice, &told), which.clone())];
    if a.applied && a.action == "alert" {
        out.push((Firing::new(AlertName::AdvisorAlert, told), which));
    }
    out
}

/// The event of a pipeline run, from its status: its archive verified, when that happened at
/// `not_before` or later (read every round, like [`remediation_outcomes`]).
pub fn run_events(status: &PipelineRunStatus, not_before: jiff::Timestamp) -> Vec<Happened> {
    status
        .conditions
        .iter()
        .filter(|c| {
            c.type_ == kind::ARCHIVED
                && c.status == Status::True.as_str()
                && c.reason == crate::pipeline::lifecycle::reason::VERIFIED
                && c.last_transition_time.0 >= not_before
        })
        .map(|c| {
            (
                Firing::new(AlertName::ArchiveVerified, &c.message),
                c.last_transition_time.0.to_string(),
            )
        })
        .collect()
}

/// The state alerts of a pipeline run: its outcome, each failed step, a failed archive.
pub fn run(status: &PipelineRunStatus) -> Vec<Firing> {
    let cs = &status.conditions;
    let mut out = Vec::new();
    if let Some(c) = cs.iter().find(|c| c.type_ == kind::SUCCEEDED) {
        let name = match (Status::parse(&c.status), c.reason.as_str()) {
            (Status::False, "TimedOut") => Some(AlertName::PipelineRunTimedOut),
            (Status::False, "Cancelled") => None,
            (Status::False, _) => Some(AlertName::PipelineRunFailed),
            (Status::Unknown, "Stalled") => Some(AlertName::PipelineRunStalled),
            _ => None,
        };
        out.extend(name.map(|n| Firing::new(n, &c.message)));
    }
    for s in &status.steps {
        if matches!(s.phase, StepPhase::Failed | StepPhase::TimedOut) {
            out.push(Firing::new(AlertName::PipelineStepFailed, &s.message).subject(&s.name));
        }
    }
    // A skipped archive is a person's decision, not a failure.
    if let Some(c) = cs.iter().find(|c| c.type_ == kind::ARCHIVED)
        && c.status == Status::False.as_str()
        && c.reason != crate::pipeline::lifecycle::reason::SKIPPED
    {
        out.push(Firing::new(AlertName::ArchiveFailed, &c.message));
    }
    out
}

/// The reason of the notice of applied advice that asks people to look.
pub const ADVISOR_ALERT: &str = "AdvisorAlert";

/// The event alert a notice is, if any.
pub fn event(n: &Notice) -> Option<Firing> {
    // Outcomes of actions, advice and verified archives come from status
    // (`remediation_outcomes`, `advice_events`, `run_events`); a held manual restart is
    // recorded nowhere else. Its subject keeps it apart from the outcomes read from status
    // (same alert, another fingerprint).
    (n.what == What::RemediationHeld)
        .then(|| Firing::new(AlertName::RemediationBlocked, &n.message).subject("manual restart"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{FleetIncident, FleetIncidentKind, StepStatus};

    use crate::conditions::found as cond;
    fn names(f: &[Firing]) -> Vec<AlertName> {
        f.iter().map(|f| f.name).collect()
    }

    #[test]
    fn every_alert_has_a_row_and_a_unique_name() {
        let mut seen = std::collections::HashSet::new();
        for n in ALL {
            assert!(seen.insert(name_str(n)), "{n:?}");
            // The API spelling is the serde spelling.
            assert_eq!(
                serde_json::to_value(n).unwrap(),
                serde_json::json!(name_str(n))
            );
            let i = info(n);
            assert_eq!(i.kind == Kind::Event, i.repeat.is_zero(), "{n:?}");
        }
        // The rows the pipeline daemon Vigil replaces used.
        let r = |n| (info(n).severity, info(n).repeat);
        assert_eq!(
            r(AlertName::PipelineRunFailed),
            (Severity::Critical, mins(15))
        );
        assert_eq!(r(AlertName::ArchiveFailed), (Severity::Critical, mins(30)));
        assert_eq!(
            r(AlertName::PipelineRunStalled),
            (Severity::Warning, mins(60))
        );
        assert_eq!(
            r(AlertName::PipelineStepFailed),
            (Severity::Warning, mins(30))
        );
    }

    #[test]
    fn validator_alerts_follow_its_conditions() {
        use AlertName as A;
        let cases: &[(&str, Vec<Condition>, Vec<AlertName>)] = &[
            ("healthy", vec![cond("Ready", "True", "Healthy")], vec![]),
            (
                "down",
                vec![
                    cond("Ready", "False", "ConnectionFailed"),
                    cond("Reachable", "False", "ConnectionFailed"),
                    cond("BlockProduction", "Unknown", "NodeUnreachable"),
                ],
                vec![A::ValidatorUnreachable],
            ),
            (
                "missing blocks: a warning tier",
                vec![
                    cond("Ready", "True", "Healthy"),
                    cond("Signing", "False", "MissedBlocks"),
                ],
                vec![A::ValidatorNotSigning],
            ),
            (
                "jailed, folded into Ready: one alert",
                vec![
                    cond("Ready", "False", "Jailed"),
                    cond("Signing", "False", "Jailed"),
                ],
                vec![A::ValidatorJailed],
            ),
            (
                "out of the active set",
                vec![cond("Signing", "False", "NotInActiveSet")],
                vec![A::ValidatorInactive],
            ),
            (
                "duty cannot be read: no alert of duty",
                vec![cond("Signing", "Unknown", "DutyUnknown")],
                vec![],
            ),
            (
                "two failing conditions",
                vec![
                    cond("Ready", "False", "FinalityLagging"),
                    cond("Finalizing", "False", "FinalityLagging"),
                    cond("PeersHealthy", "False", "TooFewPeers"),
                ],
                vec![A::FinalityLagging, A::PeersLow],
            ),
            (
                "syncing",
                vec![
                    cond("Ready", "False", "Syncing"),
                    cond("Synced", "False", "Syncing"),
                ],
                vec![A::NotSynced],
            ),
            (
                "behind",
                vec![
                    cond("Ready", "False", "BehindFleet"),
                    cond("Synced", "False", "BehindFleet"),
                ],
                vec![A::BehindFleet],
            ),
            (
                "stalled",
                vec![
                    cond("Ready", "False", "BlockStalled"),
                    cond("BlockProduction", "False", "BlockStalled"),
                ],
                vec![A::BlockProductionStalled],
            ),
            (
                "the fleet's fault is the policy's alert",
                vec![
                    cond("Ready", "True", "ChainHalted"),
                    cond("BlockProduction", "False", "ChainHalted"),
                ],
                vec![],
            ),
            (
                "answers unreadable: cannot probe, not down",
                vec![
                    cond("Ready", "Unknown", "ProbeError"),
                    cond("Reachable", "Unknown", "ProbeError"),
                ],
                vec![A::ProbeFailing],
            ),
            (
                "spec refused: cannot probe",
                vec![cond("Ready", "False", "InvalidSpec")],
                vec![A::ProbeFailing],
            ),
            (
                "slow answers",
                vec![cond("Ready", "False", "Other")],
                vec![A::ValidatorNotReady],
            ),
            ("pending", vec![cond("Ready", "Unknown", "Pending")], vec![]),
            (
                "escalated",
                vec![
                    cond("Ready", "False", "BlockStalled"),
                    cond("BlockProduction", "False", "BlockStalled"),
                    cond("Escalated", "True", "RemediationExhausted"),
                ],
                vec![A::BlockProductionStalled, A::Escalated],
            ),
        ];
        for (what, conditions, want) in cases {
            let s = MonitoredValidatorStatus {
                conditions: conditions.clone(),
                ..Default::default()
            };
            assert_eq!(&names(&validator(&s)), want, "{what}");
        }
    }

    #[test]
    fn policy_alerts_list_their_validators() {
        let m = |name: &str, chain: &str, unhealthy, in_incident| Member {
            name: name.into(),
            chain: chain.into(),
            unhealthy,
            in_incident,
        };
        let members = [
            m("a", "cosmos", true, true),
            m("b", "cosmos", false, true),
            m("c", "substrate", true, false),
        ];
        let mut s = MonitorPolicyStatus {
            conditions: vec![cond("StormActive", "True", "StormGuard")],
            fleet_incident: Some(FleetIncident {
                chain: "cosmos".into(),
                kind: FleetIncidentKind::ChainHalted,
                message: "no new block".into(),
                since: None,
                ended: None,
                affected: 2,
                total: 3,
            }),
            ..Default::default()
        };
        let f = policy(&s, &members);
        assert_eq!(names(&f), [AlertName::StormActive, AlertName::ChainHalted]);
        assert_eq!(f[0].members, ["a", "c"]);
        assert_eq!(
            (f[1].subject.as_str(), &f[1].members[..]),
            ("cosmos", &["a".to_string(), "b".to_string()][..])
        );
        // Ended incidents and a storm that is over do not fire.
        s.conditions = vec![cond("StormActive", "False", "FleetHealthy")];
        s.fleet_incident.as_mut().unwrap().ended = Some(crate::conditions::now());
        assert!(policy(&s, &members).is_empty());
    }

    #[test]
    fn run_alerts_follow_its_outcome() {
        use AlertName as A;
        let step = |name: &str, phase| StepStatus {
            name: name.into(),
            phase,
            ..Default::default()
        };
        type Case = (
            &'static str,
            Vec<Condition>,
            Vec<StepStatus>,
            Vec<AlertName>,
        );
        let cases: &[Case] = &[
            (
                "running",
                vec![cond("Succeeded", "Unknown", "Running")],
                vec![step("a", StepPhase::Running)],
                vec![],
            ),
            (
                "failed",
                vec![cond("Succeeded", "False", "Failed")],
                vec![step("a", StepPhase::Failed), step("b", StepPhase::Skipped)],
                vec![A::PipelineRunFailed, A::PipelineStepFailed],
            ),
            (
                "timed out",
                vec![cond("Succeeded", "False", "TimedOut")],
                vec![step("a", StepPhase::TimedOut)],
                vec![A::PipelineRunTimedOut, A::PipelineStepFailed],
            ),
            (
                "stalled",
                vec![cond("Succeeded", "Unknown", "Stalled")],
                vec![],
                vec![A::PipelineRunStalled],
            ),
            (
                "cancelled by a person",
                vec![cond("Succeeded", "False", "Cancelled")],
                vec![step("a", StepPhase::Cancelled)],
                vec![],
            ),
            (
                "archive failed",
                vec![
                    cond("Succeeded", "True", "Succeeded"),
                    cond("Archived", "False", "UploadFailed"),
                ],
                vec![],
                vec![A::ArchiveFailed],
            ),
        ];
        for (what, conditions, steps, want) in cases {
            let s = PipelineRunStatus {
                conditions: conditions.clone(),
                steps: steps.clone(),
                ..Default::default()
            };
            assert_eq!(&names(&run(&s)), want, "{what}");
        }
        let s = PipelineRunStatus {
            steps: vec![step("a", StepPhase::Failed), step("b", StepPhase::Failed)],
            ..Default::default()
        };
        let subjects: Vec<_> = run(&s).into_iter().map(|f| f.subject).collect();
        assert_eq!(subjects, ["a", "b"], "one alert per failed step");
        // A verified archive is an event, read while it is recent.
        let mut verified = cond("Archived", "True", "Verified");
        let t0 = verified.last_transition_time.0;
        verified.message = "Archived to s3://b/k and read back".into();
        let s = PipelineRunStatus {
            conditions: vec![cond("Succeeded", "True", "Succeeded"), verified],
            ..Default::default()
        };
        let events = run_events(&s, t0);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].0.name, A::ArchiveVerified);
        assert_eq!(events[0].1, t0.to_string(), "the archive's time");
        assert!(run(&s).is_empty(), "not a state");
        let later = t0 + jiff::SignedDuration::from_secs(1);
        assert!(run_events(&s, later).is_empty(), "older than the window");
        let mut s = s;
        s.conditions[1] = cond("Archived", "False", "UploadFailed");
        assert!(run_events(&s, t0).is_empty());
    }

    #[test]
    fn remediation_outcomes_come_from_the_history() {
        use crate::api::{RemediationRecord, RemediationStatus};
        use AlertName as A;
        use RemediationResult as R;
        let t0 = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        let at = |s: i64| t0 + jiff::SignedDuration::from_secs(s);
        let rec = |token: &str, s: i64, result, recovered| RemediationRecord {
            token: token.into(),
            action: "evictPod".into(),
            time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(s))),
            result,
            message: "the API refused it".into(),
            trigger: "policy".into(),
            recovered,
        };
        type Case = (
            &'static str,
            Vec<RemediationRecord>,
            Vec<(AlertName, &'static str)>,
        );
        let cases: Vec<Case> = vec![
            (
                "failed",
                vec![rec("a", 0, R::Failed, Some(false))],
                vec![(A::RemediationFailed, "a")],
            ),
            (
                "blocked",
                vec![rec("b", 0, R::Blocked, None)],
                vec![(A::RemediationBlocked, "b")],
            ),
            (
                "healed",
                vec![rec("c", 0, R::Succeeded, Some(true))],
                vec![(A::RemediationSucceeded, "c")],
            ),
            (
                "interrupted, then healed",
                vec![rec("d", 0, R::Interrupted, Some(true))],
                vec![(A::RemediationSucceeded, "d")],
            ),
            (
                "done, not yet healed",
                vec![rec("e", 0, R::Succeeded, None)],
                vec![],
            ),
            (
                "done, never healed",
                vec![rec("f", 0, R::Succeeded, Some(false))],
                vec![],
            ),
            ("dry run", vec![rec("g", 0, R::DryRun, Some(false))], vec![]),
            ("in flight", vec![rec("h", 0, R::InFlight, None)], vec![]),
            (
                "older than the window",
                vec![rec("i", -1, R::Failed, Some(false))],
                vec![],
            ),
            (
                "the newest of each",
                vec![
                    rec("j1", 0, R::Failed, Some(false)),
                    rec("j2", 5, R::Succeeded, Some(true)),
                    rec("j3", 9, R::Failed, Some(false)),
                    rec("j4", 12, R::Succeeded, None),
                ],
                vec![
                    (A::RemediationFailed, "j3"),
                    (A::RemediationSucceeded, "j2"),
                ],
            ),
        ];
        for (what, history, want) in cases {
            let s = MonitoredValidatorStatus {
                remediation: Some(RemediationStatus {
                    history: history.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let got = remediation_outcomes(&s, t0);
            assert_eq!(got.len(), want.len(), "{what}: {got:?}");
            for ((f, which), (name, token)) in got.iter().zip(&want) {
                assert_eq!(f.name, *name, "{what}");
                assert!(
                    f.detail.contains(&format!("token {token})")),
                    "{what}: {}",
                    f.detail
                );
                assert_eq!(which, token, "{what}: the action's token");
            }
        }
        assert!(remediation_outcomes(&Default::default(), t0).is_empty());
    }

    #[test]
    fn advice_events_come_from_the_latest_advice() {
        use crate::api::AdviceRecord;
        use AlertName as A;
        let t0 = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        let advice = |action: &str, applied, s: i64| AdviceRecord {
            time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                t0 + jiff::SignedDuration::from_secs(s),
            )),
            fingerprint: "q1".into(),
            action: action.into(),
            applied,
            summary: "the node is stuck at one height".into(),
            ..Default::default()
        };
        type Case = (&'static str, Option<AdviceRecord>, Vec<AlertName>);
        let cases: Vec<Case> = vec![
            ("no advice", None, vec![]),
            (
                "advice",
                Some(advice("investigate", false, 0)),
                vec![A::Advice],
            ),
            (
                "an alert not applied",
                Some(advice("alert", false, 0)),
                vec![A::Advice],
            ),
            (
                "an applied alert",
                Some(advice("alert", true, 0)),
                vec![A::Advice, A::AdvisorAlert],
            ),
            (
                "an applied restart",
                Some(advice("restart", true, 0)),
                vec![A::Advice],
            ),
            (
                "older than the window",
                Some(advice("alert", true, -1)),
                vec![],
            ),
        ];
        for (what, a, want) in cases {
            let got = advice_events(a.as_ref(), t0);
            let got_names: Vec<_> = got.iter().map(|(f, _)| f.name).collect();
            assert_eq!(got_names, want, "{what}");
            for (f, which) in &got {
                assert_eq!(
                    which,
                    &format!("q1@{t0}"),
                    "{what}: the question and its time"
                );
                assert!(
                    f.detail.contains("stuck at one height"),
                    "{what}: {}",
                    f.detail
                );
            }
        }
    }
}
