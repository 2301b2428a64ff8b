//! Status conditions by the Kubernetes API conventions: `lastTransitionTime` moves only when
//! the status changes, and every condition names the generation it was computed from.
//! Condition types and reasons are the constants below, never string literals at their
//! use: a reader finds every place that sets or reads one.

use crate::api::Condition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Condition types.
pub mod kind {
    /// The summary: a validator is healthy, a policy is valid.
    pub const READY: &str = "Ready";
    /// The node answers probes.
    pub const REACHABLE: &str = "Reachable";
    /// The node is in sync with the network and the fleet.
    pub const SYNCED: &str = "Synced";
    /// The best block advances.
    pub const BLOCK_PRODUCTION: &str = "BlockProduction";
    /// Finality keeps up.
    pub const FINALIZING: &str = "Finalizing";
    /// Enough peers.
    pub const PEERS_HEALTHY: &str = "PeersHealthy";
    /// An action runs or waits for the node to recover; False with the guard's reason.
    pub const REMEDIATING: &str = "Remediating";
    /// Vigil stopped acting and waits for a person.
    pub const ESCALATED: &str = "Escalated";
    /// The validator does its duty: signs, authors, stays in the active set (`spec.duty`).
    pub const SIGNING: &str = "Signing";
    /// The policy's storm guard holds every restart.
    pub const STORM_ACTIVE: &str = "StormActive";
    /// A pipeline run's outcome.
    pub const SUCCEEDED: &str = "Succeeded";
    /// A pipeline run's archive was written and verified.
    pub const ARCHIVED: &str = "Archived";
    /// The advisor's budget is spent (the rules decide).
    pub const BUDGET_EXHAUSTED: &str = "BudgetExhausted";
    /// An alert channel keeps failing.
    pub const ALERT_DELIVERY_FAILING: &str = "AlertDeliveryFailing";
}

/// Condition reasons that are not a probe's, a guard's or an incident's own (those are
/// defined next to their decisions: [`crate::health`], [`crate::remediate::guard::Hold`]).
pub mod reason {
    /// Waiting for the first probe (or the first step).
    pub const PENDING: &str = "Pending";
    /// The referenced MonitorPolicy does not exist.
    pub const POLICY_NOT_FOUND: &str = "PolicyNotFound";
    /// The referenced MonitorPolicy is refused.
    pub const POLICY_INVALID: &str = "PolicyInvalid";
    /// The object's own spec is refused.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// The policy is valid.
    pub const VALID: &str = "Valid";
    /// Vigil restarted while an action ran.
    pub const INTERRUPTED: &str = "Interrupted";
    /// A person acknowledged an escalation.
    pub const ACKNOWLEDGED: &str = "Acknowledged";
    /// The node is healthy again.
    pub const RECOVERED: &str = "Recovered";
    /// An action was decided and runs.
    pub const IN_FLIGHT: &str = "InFlight";
    /// An action was done; waiting for the node to recover.
    pub const WAITING_FOR_RECOVERY: &str = "WaitingForRecovery";
    /// An action failed.
    pub const ACTION_FAILED: &str = "ActionFailed";
    /// A PodDisruptionBudget refused an eviction.
    pub const BLOCKED_BY_DISRUPTION_BUDGET: &str = "BlockedByDisruptionBudget";
    /// `--dry-run`: decided, nothing done.
    pub const DRY_RUN: &str = "DryRun";
    /// Escalated: Vigil no longer acts.
    pub const ESCALATED: &str = "Escalated";
    /// Attempts are used up or did not heal the node.
    pub const REMEDIATION_EXHAUSTED: &str = "RemediationExhausted";
    /// `Escalated`: applied advice escalated the node to a person.
    pub const ADVISOR_ESCALATED: &str = "AdvisorEscalated";
    /// `BudgetExhausted`: the advisor is within its budget.
    pub const WITHIN_BUDGET: &str = "WithinBudget";
    /// The storm guard no longer holds restarts.
    pub const FLEET_HEALTHY: &str = "FleetHealthy";
    /// A run's steps are running.
    pub const RUNNING: &str = "Running";
}

/// A condition as found in status, for tests (message `"<type> <reason>"`).
#[cfg(test)]
pub fn found(type_: &str, status: &str, reason: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: format!("{type_} {reason}"),
        last_transition_time: now(),
        observed_generation: None,
    }
}

/// `True`, `False` or `Unknown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// It cannot be told.
    Unknown,
}

impl Status {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }

    /// The status of an API spelling (anything unknown is `Unknown`).
    pub fn parse(s: &str) -> Status {
        match s {
            "True" => Status::True,
            "False" => Status::False,
            _ => Status::Unknown,
        }
    }
}

/// The values a condition is set to: the one desired-condition type of every decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    /// Condition type, one of [`kind`].
    pub type_: &'static str,
    /// Its status.
    pub status: Status,
    /// CamelCase reason.
    pub reason: &'static str,
    /// Message for people; stable while nothing changes.
    pub message: String,
}

impl Desired {
    /// A desired condition.
    pub fn new(
        type_: &'static str,
        status: Status,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Desired {
        Desired {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// What changed when a condition was set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing a user would see.
    None,
    /// Reason, message or observed generation changed, status did not.
    Updated,
    /// The status changed (or the condition is new): an Event is due.
    Transitioned {
        /// The previous status, if the condition existed.
        from: Option<String>,
    },
}

/// Sets one condition in `conditions`, keeping `lastTransitionTime` unless the status changed.
pub fn set(
    conditions: &mut Vec<Condition>,
    want: Desired,
    generation: Option<i64>,
    now: &Time,
) -> Change {
    match conditions.iter_mut().find(|c| c.type_ == want.type_) {
        Some(c) => {
            let transition = c.status != want.status.as_str();
            let change = if transition {
                Change::Transitioned {
                    from: Some(c.status.clone()),
                }
            } else if c.reason != want.reason
                || c.message != want.message
                || c.observed_generation != generation
            {
                Change::Updated
            } else {
                Change::None
            };
            if transition {
                c.last_transition_time = now.clone();
            }
            c.status = want.status.as_str().to_string();
            c.reason = want.reason.to_string();
            c.message = want.message;
            c.observed_generation = generation;
            change
        }
        None => {
            conditions.push(Condition {
                type_: want.type_.to_string(),
                status: want.status.as_str().to_string(),
                reason: want.reason.to_string(),
                message: want.message,
                observed_generation: generation,
                last_transition_time: now.clone(),
            });
            Change::Transitioned { from: None }
        }
    }
}

/// The condition of a type, if present.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// The status of a condition type, if present.
pub fn status_of(conditions: &[Condition], type_: &str) -> Option<Status> {
    get(conditions, type_).map(|c| Status::parse(&c.status))
}

/// Whether a condition type is present and `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    status_of(conditions, type_) == Some(Status::True)
}

/// Sets a condition and notes it in `transitions` when it is news: every change of status
/// is, and so is a new `Ready` or a new detail condition that is not healthy (a detail
/// condition appearing healthy is not: five Events per new validator).
pub fn set_noting(
    conditions: &mut Vec<Condition>,
    want: Desired,
    generation: Option<i64>,
    now: &Time,
    transitions: &mut Vec<Desired>,
) {
    let noted = want.clone();
    if let Change::Transitioned { from } = set(conditions, want, generation, now)
        && (from.is_some() || noted.type_ == kind::READY || noted.status != Status::True)
    {
        transitions.push(noted);
    }
}

/// `t` as a Kubernetes `Time`, truncated to seconds (what the API server stores).
pub fn time(t: jiff::Timestamp) -> Time {
    Time(jiff::Timestamp::from_second(t.as_second()).unwrap_or(t))
}

/// The current time as a Kubernetes `Time`, truncated to seconds (what the API server stores),
/// so that comparing a freshly computed status with a stored one does not see phantom changes.
pub fn now() -> Time {
    time(jiff::Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Time {
        Time(jiff::Timestamp::from_second(s).unwrap())
    }
    fn want(status: &str, reason: &'static str) -> Desired {
        Desired::new(
            kind::READY,
            Status::parse(status),
            reason,
            format!("{reason} message"),
        )
    }

    #[test]
    fn new_condition_is_a_transition() {
        let mut cs = vec![];
        assert_eq!(
            set(&mut cs, want("Unknown", "Pending"), Some(1), &t(10)),
            Change::Transitioned { from: None }
        );
        assert_eq!(cs[0].last_transition_time, t(10));
        assert_eq!(cs[0].observed_generation, Some(1));
    }

    #[test]
    fn same_status_keeps_transition_time() {
        let mut cs = vec![];
        set(&mut cs, want("False", "PolicyNotFound"), Some(1), &t(10));
        assert_eq!(
            set(&mut cs, want("False", "PolicyNotFound"), Some(1), &t(20)),
            Change::None
        );
        assert_eq!(
            set(&mut cs, want("False", "Other"), Some(2), &t(30)),
            Change::Updated
        );
        assert_eq!(cs[0].last_transition_time, t(10));
        assert_eq!(cs[0].reason, "Other");
        assert_eq!(cs[0].observed_generation, Some(2));
    }

    #[test]
    fn status_change_moves_transition_time() {
        let mut cs = vec![];
        set(&mut cs, want("False", "PolicyNotFound"), Some(1), &t(10));
        let c = set(&mut cs, want("Unknown", "Pending"), Some(1), &t(20));
        assert_eq!(
            c,
            Change::Transitioned {
                from: Some("False".into())
            }
        );
        assert_eq!(cs[0].last_transition_time, t(20));
        assert_eq!(cs.len(), 1);
    }
}
