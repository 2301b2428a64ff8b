//! Status conditions by the Kubernetes API conventions: `lastTransitionTime` moves only when
//! the status changes, and every condition names the generation it was computed from.

use crate::api::Condition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The values a condition is set to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired<'a> {
    /// Condition type, e.g. `Ready`.
    pub type_: &'a str,
    /// `True`, `False` or `Unknown`.
    pub status: &'a str,
    /// CamelCase reason.
    pub reason: &'a str,
    /// Message for people.
    pub message: String,
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
    want: Desired<'_>,
    generation: Option<i64>,
    now: &Time,
) -> Change {
    match conditions.iter_mut().find(|c| c.type_ == want.type_) {
        Some(c) => {
            let transition = c.status != want.status;
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
            c.status = want.status.to_string();
            c.reason = want.reason.to_string();
            c.message = want.message;
            c.observed_generation = generation;
            change
        }
        None => {
            conditions.push(Condition {
                type_: want.type_.to_string(),
                status: want.status.to_string(),
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

/// The current time as a Kubernetes `Time`, truncated to seconds (what the API server stores),
/// so that comparing a freshly computed status with a stored one does not see phantom changes.
pub fn now() -> Time {
    let ts = jiff::Timestamp::now();
    Time(jiff::Timestamp::from_second(ts.as_second()).unwrap_or(ts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Time {
        Time(jiff::Timestamp::from_second(s).unwrap())
    }
    fn want<'a>(status: &'a str, reason: &'a str) -> Desired<'a> {
        Desired {
            type_: "Ready",
            status,
            reason,
            message: format!("{reason} message"),
        }
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
