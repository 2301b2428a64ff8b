//! The healing plan, pure: from a validator's status, the validated remediation rules, the
//! fleet, `now` and dry-run, what to write and whether to act. The monitor runs it after
//! each verdict and when a person annotates a validator, records what it returns *before*
//! acting (write-ahead), then acts through [`super::execute`] and records the outcome with
//! [`outcome`].
//!
//! Conditions on the validator: `Remediating` (True while an action runs or waits for the
//! node to recover; False with the guard's reason when one holds) and `Escalated`.

use super::guard::{self, ActionOutcome, Decision, FleetState, Hold, Node, Rules, Trigger};
use crate::api::{MonitoredValidatorStatus, RemediationStatus};
use crate::conditions::{self, Desired, Status, kind, reason};
use jiff::Timestamp;

/// What is known when a healing step is planned: plain data only.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    /// The validator's status as last written.
    pub status: &'a MonitoredValidatorStatus,
    /// The policy's validated remediation rules.
    pub rules: &'a Rules,
    /// The validator's `spec.suspend`.
    pub suspended: bool,
    /// The validator has a target to act on.
    pub has_target: bool,
    /// The validator's UID (part of each attempt's token).
    pub uid: Option<&'a str>,
    /// The generation conditions are written for.
    pub generation: Option<i64>,
    /// The `vigil.dev/restart` annotation as seen.
    pub restart: Option<&'a str>,
    /// The `vigil.dev/ack` annotation as seen.
    pub ack: Option<&'a str>,
    /// Applied advice not yet handled: its token, and whether it escalates (else restarts).
    pub advice: Option<(&'a str, bool)>,
    /// The policy's fleet; needed only when [`needs_fleet`] says so (else ignored).
    pub fleet: Option<&'a FleetState>,
    /// The time of the decision.
    pub now: Timestamp,
    /// `--dry-run`: decide and record, never act.
    pub dry_run: bool,
}

/// A note for people (an Event, an audit line) beside the condition transitions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// CamelCase reason.
    pub reason: &'static str,
    /// Whether it calls for attention.
    pub warning: bool,
    /// For people.
    pub message: String,
}

fn note(reason: &'static str, warning: bool, message: impl Into<String>) -> Note {
    Note {
        reason,
        warning,
        message: message.into(),
    }
}

/// What the metrics count of a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A guard held the action back (its reason).
    Held(&'static str),
    /// The validator was escalated.
    Escalated,
    /// Anything else.
    Other,
}

/// The policy's storm guard as a plan saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Storm {
    /// Not looked at (the node needed no fleet view).
    Unseen,
    /// No storm: restarts may go ahead.
    Clear,
    /// The guard holds every restart of the policy, for this reason.
    Holding(Hold),
}

/// An action to perform once the plan's status is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Act {
    /// The attempt's unique token.
    pub token: String,
    /// Who asked.
    pub trigger: Trigger,
}

/// The outcome of planning one healing step.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The status to write; `None`: nothing changed.
    pub status: Option<MonitoredValidatorStatus>,
    /// Conditions that changed status (for Events and notices).
    pub transitions: Vec<Desired>,
    /// Further notes for people.
    pub notes: Vec<Note>,
    /// The action to perform after the status is written.
    pub act: Option<Act>,
    /// The policy's storm guard, when it was looked at.
    pub storm: Storm,
    /// For the metrics.
    pub verdict: Verdict,
}

/// The token of one attempt: the validator's UID prefix, the attempt number, the time.
pub fn token(uid: Option<&str>, n: u32, now: Timestamp) -> String {
    let uid: String = uid
        .unwrap_or("vigil")
        .chars()
        .filter(|c| *c != '-')
        .take(8)
        .collect();
    format!("{uid}-{n}-{}", now.as_millisecond())
}

/// Applied advice this plan has not handled yet.
fn advice<'a>(input: &Input<'a>, rem: Option<&RemediationStatus>) -> Option<(&'a str, bool)> {
    input
        .advice
        .filter(|(t, _)| rem.and_then(|r| r.last_advice_token.as_deref()) != Some(*t))
}

fn manual<'a>(input: &Input<'a>, rem: Option<&RemediationStatus>) -> Option<&'a str> {
    input
        .restart
        .filter(|t| rem.and_then(|r| r.last_restart_token.as_deref()) != Some(*t))
}

/// The common case, decided without copying anything: a node that is not unhealthy, with
/// no request of a person, nothing in flight, nothing to reset or judge. (A storm that is
/// on takes the full path too: the caller checks that.)
pub fn quiet(input: &Input<'_>) -> bool {
    let s = input.status;
    let rem_quiet = s.remediation.as_ref().is_none_or(|r| {
        r.in_flight.is_none()
            && r.attempts_in_window == 0
            && r.failed_attempts == 0
            && r.history.last().is_none_or(|h| h.recovered.is_some())
            && input
                .restart
                .is_none_or(|t| r.last_restart_token.as_deref() == Some(t))
            && input
                .ack
                .is_none_or(|t| r.last_ack_token.as_deref() == Some(t))
    });
    let no_requests = s.remediation.is_some() || (input.restart.is_none() && input.ack.is_none());
    rem_quiet
        && advice(input, s.remediation.as_ref()).is_none()
        && no_requests
        && conditions::status_of(&s.conditions, kind::READY) != Some(Status::False)
        && !conditions::is_true(&s.conditions, kind::REMEDIATING)
}

/// Whether the plan needs the policy's fleet: the node is faulty, a person asked for a
/// restart, or the policy's storm guard is on (so that it can be lifted).
pub fn needs_fleet(input: &Input<'_>, storm_on: bool) -> bool {
    let s = input.status;
    conditions::status_of(&s.conditions, kind::READY) == Some(Status::False)
        || manual(input, s.remediation.as_ref()).is_some()
        || storm_on
}

/// Plans one healing step.
pub fn plan(input: &Input<'_>) -> Plan {
    let rules = input.rules;
    let time = conditions::time(input.now);
    let mut s = input.status.clone();
    let rem = s.remediation.clone().unwrap_or_default();
    let mut transitions = Vec::new();
    let mut notes = Vec::new();
    let mut set = |s: &mut MonitoredValidatorStatus,
                   type_: &'static str,
                   status: Status,
                   reason: &'static str,
                   message: String| {
        conditions::set_noting(
            &mut s.conditions,
            Desired::new(type_, status, reason, message),
            input.generation,
            &time,
            &mut transitions,
        )
    };
    let finish = |s: MonitoredValidatorStatus,
                  transitions: Vec<Desired>,
                  notes: Vec<Note>,
                  storm: Storm,
                  verdict: Verdict| {
        let changed = s != *input.status || !notes.is_empty();
        Plan {
            status: changed.then_some(s),
            transitions,
            notes,
            act: None,
            storm,
            verdict,
        }
    };

    // An action this process did not start is in flight: a previous process stopped while
    // it ran. Close it, never repeat it.
    if let Some(closed) = guard::interrupted(&rem) {
        s.remediation = Some(closed);
        set(
            &mut s,
            kind::REMEDIATING,
            Status::True,
            reason::INTERRUPTED,
            "Vigil restarted while an action ran; it is not repeated and its cooldown stands"
                .into(),
        );
        notes.push(note(
            reason::INTERRUPTED,
            true,
            "An action recorded in flight was closed as interrupted (Vigil stopped while it ran); it is not repeated",
        ));
        return finish(s, transitions, notes, Storm::Unseen, Verdict::Other);
    }

    let escalated = conditions::is_true(&s.conditions, kind::ESCALATED);
    if let Some(ack) = input.ack
        && rem.last_ack_token.as_deref() != Some(ack)
    {
        s.remediation = Some(guard::acknowledge(&rem, ack));
        let msg = if escalated {
            format!("Acknowledged by a person (vigil.dev/ack={ack}); Vigil may act again")
        } else {
            format!("vigil.dev/ack={ack} noted; nothing was escalated")
        };
        set(
            &mut s,
            kind::ESCALATED,
            Status::False,
            reason::ACKNOWLEDGED,
            msg.clone(),
        );
        notes.push(note(reason::ACKNOWLEDGED, false, msg));
        return finish(s, transitions, notes, Storm::Unseen, Verdict::Other);
    }

    let advised = advice(input, Some(&rem));
    if let Some((t, true)) = advised {
        s.remediation.get_or_insert_default().last_advice_token = Some(t.to_string());
        if !escalated {
            let why = format!(
                "The advisor escalated (advice {t}); a person must look (annotate vigil.dev/ack=<token> to clear)"
            );
            set(
                &mut s,
                kind::ESCALATED,
                Status::True,
                reason::ADVISOR_ESCALATED,
                why.clone(),
            );
            notes.push(note("Escalated", true, why));
            return finish(s, transitions, notes, Storm::Unseen, Verdict::Escalated);
        }
        return finish(s, transitions, notes, Storm::Unseen, Verdict::Other);
    }

    let ready = conditions::get(&s.conditions, kind::READY);
    let ready_status = ready.map(|c| Status::parse(&c.status));
    let since = ready.map(|c| c.last_transition_time.0);
    let healthy = ready_status == Some(Status::True);
    // Not Ready only for its duty (jailed, not signing) is no node fault: a restart fixes
    // nothing and can double-sign, unless the policy opts in.
    let duty_only = ready.is_some_and(|c| crate::duty::judge::FAILING.contains(&c.reason.as_str()));
    let node = Node {
        faulty: ready_status == Some(Status::False) && (!duty_only || rules.duty_restart),
        healthy,
        healthy_since: healthy.then_some(since).flatten(),
        suspended: input.suspended,
        has_target: input.has_target,
        escalated,
    };
    let manual = manual(input, Some(&rem));
    let fleet = input.fleet.cloned().unwrap_or_default();
    let storm = match input.fleet {
        None => Storm::Unseen,
        // A fleet incident holds every restart itself (and has its own condition and alert):
        // it is not a storm, so the storm guard's state is left as it is.
        Some(f) if f.incident => Storm::Unseen,
        Some(f) if f.storm(rules.max_unhealthy_percent) && rules.enabled => {
            Storm::Holding(Hold::Storm {
                unhealthy: f.unhealthy,
                members: f.members,
            })
        }
        Some(_) => Storm::Clear,
    };

    let mut decision = guard::decide(rules, &node, &fleet, &rem, manual, input.now);
    if let Some((t, false)) = advised {
        match &decision {
            Decision::Act {
                trigger: Trigger::Policy,
            } => {
                decision = Decision::Act {
                    trigger: Trigger::Advice(t.to_string()),
                }
            }
            Decision::Act { .. } => {}
            other => {
                // Held or not needed: handled once, never queued (healing acts by the
                // policy when the hold ends).
                s.remediation.get_or_insert_default().last_advice_token = Some(t.to_string());
                let why = match other {
                    Decision::Hold(h) => h.message(),
                    Decision::Escalate(w) => w.clone(),
                    _ => "the node is not unhealthy".to_string(),
                };
                notes.push(note(
                    "AdvisedRestartHeld",
                    false,
                    format!("The advisor's restart (advice {t}) is not run: {why}"),
                ));
            }
        }
    }
    match decision {
        Decision::Nothing => {
            if let (true, Some(since)) = (node.healthy, node.healthy_since)
                && let Some(new) = guard::healthy(&rem, rules, since, input.now)
            {
                let recovered = new.history.last().and_then(|h| h.recovered) == Some(true)
                    && rem.history.last().and_then(|h| h.recovered).is_none();
                s.remediation = Some(new);
                if recovered {
                    set(
                        &mut s,
                        kind::REMEDIATING,
                        Status::False,
                        reason::RECOVERED,
                        "The node is healthy again after the last action".into(),
                    );
                    notes.push(note(
                        reason::RECOVERED,
                        false,
                        "The node recovered after the last remediation",
                    ));
                }
            } else if node.healthy && conditions::is_true(&s.conditions, kind::REMEDIATING) {
                set(
                    &mut s,
                    kind::REMEDIATING,
                    Status::False,
                    reason::RECOVERED,
                    "The node is healthy".into(),
                );
            }
            finish(s, transitions, notes, storm, Verdict::Other)
        }
        Decision::Hold(h) => {
            let held = h.reason();
            let shown = conditions::get(&s.conditions, kind::REMEDIATING).map(|c| c.reason.clone());
            // Waiting out the cooldown of an action keeps `Remediating=True` as the action
            // left it (what was done, and that Vigil waits for the node to recover).
            let waiting = matches!(h, Hold::InFlight | Hold::Cooldown(_))
                && conditions::is_true(&s.conditions, kind::REMEDIATING);
            if !waiting {
                set(&mut s, kind::REMEDIATING, Status::False, held, h.message());
            }
            match manual {
                // The rate limits refuse a request rather than queue it: it is recorded as
                // handled, and a person asks again later with a new token.
                Some(t) if matches!(h, Hold::Cooldown(_) | Hold::MaxConcurrent(_)) => {
                    s.remediation.get_or_insert_default().last_restart_token = Some(t.to_string());
                    notes.push(note(
                        "ManualRestartRefused",
                        true,
                        format!(
                            "vigil.dev/restart={} is refused, not queued: {}",
                            crate::text::cap(t, 64),
                            h.message()
                        ),
                    ));
                }
                // Otherwise the request is not forgotten: it is honoured once the hold ends.
                Some(_) if shown.as_deref() != Some(held) => notes.push(note(
                    "ManualRestartHeld",
                    true,
                    format!("vigil.dev/restart is held: {}", h.message()),
                )),
                _ => {}
            }
            finish(s, transitions, notes, storm, Verdict::Held(held))
        }
        Decision::Escalate(why) => {
            set(
                &mut s,
                kind::ESCALATED,
                Status::True,
                reason::REMEDIATION_EXHAUSTED,
                format!("{why}; a person must look (annotate vigil.dev/ack=<token> to clear)"),
            );
            set(
                &mut s,
                kind::REMEDIATING,
                Status::False,
                reason::ESCALATED,
                "Escalated: Vigil no longer acts on this node".into(),
            );
            notes.push(note("Escalated", true, why));
            finish(s, transitions, notes, storm, Verdict::Escalated)
        }
        Decision::Act { trigger } => {
            let token = token(input.uid, rem.total_actions.saturating_add(1), input.now);
            s.remediation = Some(guard::begin(&rem, rules, &trigger, &token, input.now));
            let action = guard::action_name(rules.action);
            let what = if input.dry_run {
                "deciding (dry-run)"
            } else {
                "running"
            };
            set(
                &mut s,
                kind::REMEDIATING,
                Status::True,
                reason::IN_FLIGHT,
                format!("{action} {what} (token {token})"),
            );
            match &trigger {
                Trigger::Manual(t) => notes.push(note(
                    "ManualRestart",
                    false,
                    format!("vigil.dev/restart={t}: {action} requested by a person"),
                )),
                Trigger::Advice(t) => notes.push(note(
                    "AdvisedRestart",
                    false,
                    format!("{action} requested by applied advice {t}, within every guard"),
                )),
                Trigger::Policy => {}
            }
            Plan {
                status: Some(s),
                transitions,
                notes,
                act: Some(Act { token, trigger }),
                storm,
                verdict: Verdict::Other,
            }
        }
    }
}

/// What recording an action's outcome changes: the new status, the transitions, and the
/// note about it. `action` is the action's API spelling, `trigger` who asked.
pub fn outcome(
    status: &MonitoredValidatorStatus,
    result: &ActionOutcome,
    act: &Act,
    action: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> (MonitoredValidatorStatus, Vec<Desired>, Note) {
    let mut s = status.clone();
    let rem = s.remediation.clone().unwrap_or_default();
    s.remediation = Some(guard::finish(&rem, result, now));
    let (st, why, message) = match result {
        ActionOutcome::Succeeded(m) => (
            Status::True,
            reason::WAITING_FOR_RECOVERY,
            format!("{action}: {m}; waiting for the node to recover"),
        ),
        ActionOutcome::Failed(m) => (
            Status::False,
            reason::ACTION_FAILED,
            format!("{action} failed: {m}"),
        ),
        ActionOutcome::Blocked { message, .. } => (
            Status::False,
            reason::BLOCKED_BY_DISRUPTION_BUDGET,
            format!("{message}; retried later, not counted as an attempt"),
        ),
        ActionOutcome::DryRun(m) => (Status::False, reason::DRY_RUN, m.clone()),
    };
    let mut transitions = Vec::new();
    conditions::set_noting(
        &mut s.conditions,
        Desired::new(kind::REMEDIATING, st, why, message),
        generation,
        &conditions::time(now),
        &mut transitions,
    );
    let (reason, warning) = match result {
        ActionOutcome::Succeeded(_) => ("RemediationSucceeded", false),
        ActionOutcome::Failed(_) => ("RemediationFailed", true),
        ActionOutcome::Blocked { .. } => ("EvictionBlocked", true),
        ActionOutcome::DryRun(_) => (reason::DRY_RUN, false),
    };
    let text = format!(
        "{action} ({}, token {}): {}",
        act.trigger.as_str(),
        act.token,
        result.message()
    );
    (s, transitions, note(reason, warning, text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Condition, RemediationAction, RemediationRecord, RemediationResult};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use std::time::Duration;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn rules() -> Rules {
        Rules {
            enabled: true,
            action: RemediationAction::EvictPod,
            max_attempts: 3,
            window: Duration::from_secs(3600),
            cooldown: Duration::from_secs(60),
            max_cooldown: Duration::from_secs(600),
            healthy_reset_after: Duration::from_secs(300),
            max_concurrent: 1,
            max_unhealthy_percent: 50,
            escalate_after: 5,
            policy_suspended: false,
            duty_restart: false,
        }
    }

    fn cond(type_: &str, status: &str, since: i64) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: "R".into(),
            message: "m".into(),
            observed_generation: Some(1),
            last_transition_time: Time(at(since)),
        }
    }

    fn status(ready: &str) -> MonitoredValidatorStatus {
        MonitoredValidatorStatus {
            conditions: vec![cond(kind::READY, ready, 0)],
            ..Default::default()
        }
    }

    fn fleet(members: u32, unhealthy: u32) -> FleetState {
        FleetState {
            members,
            unhealthy,
            incident: false,
            in_progress: 0,
        }
    }

    /// One row of the table: a situation and what the plan must do.
    struct Case {
        name: &'static str,
        status: MonitoredValidatorStatus,
        rules: Rules,
        suspended: bool,
        restart: Option<&'static str>,
        ack: Option<&'static str>,
        advice: Option<(&'static str, bool)>,
        fleet: FleetState,
        now: i64,
        dry_run: bool,
        /// `Some(reason)`: the plan acts (`"policy"` or `"manual"`); `None`: it does not.
        acts: Option<&'static str>,
        /// The `Remediating` reason shown afterwards (if any is expected).
        remediating: Option<&'static str>,
        verdict: Verdict,
    }

    fn case(name: &'static str, status: MonitoredValidatorStatus) -> Case {
        Case {
            name,
            status,
            rules: rules(),
            suspended: false,
            restart: None,
            ack: None,
            advice: None,
            fleet: fleet(10, 1),
            now: 1000,
            dry_run: false,
            acts: None,
            remediating: None,
            verdict: Verdict::Other,
        }
    }

    fn with_rem(
        mut s: MonitoredValidatorStatus,
        rem: RemediationStatus,
    ) -> MonitoredValidatorStatus {
        s.remediation = Some(rem);
        s
    }

    fn record(result: RemediationResult, recovered: Option<bool>) -> RemediationRecord {
        RemediationRecord {
            token: "t".into(),
            action: "evictPod".into(),
            time: Some(Time(at(0))),
            result,
            message: String::new(),
            trigger: "policy".into(),
            recovered,
        }
    }

    fn run(c: &Case) -> Plan {
        let input = Input {
            status: &c.status,
            rules: &c.rules,
            suspended: c.suspended,
            has_target: true,
            uid: Some("abcd-ef01-2345"),
            generation: Some(1),
            restart: c.restart,
            ack: c.ack,
            advice: c.advice,
            fleet: Some(&c.fleet),
            now: at(c.now),
            dry_run: c.dry_run,
        };
        plan(&input)
    }

    #[test]
    fn a_refused_manual_restart_is_recorded_once_and_not_queued() {
        let cooling = RemediationStatus {
            cooldown_until: Some(Time(at(1060))),
            ..Default::default()
        };
        let mut c = case("refused", with_rem(status("True"), cooling));
        c.restart = Some("again");
        let p = run(&c);
        assert!(p.act.is_none());
        let s = p.status.clone().unwrap();
        let rem = s.remediation.as_ref().unwrap();
        assert_eq!(rem.last_restart_token.as_deref(), Some("again"));
        assert_eq!(p.notes.len(), 1);
        assert_eq!(p.notes[0].reason, "ManualRestartRefused");
        assert!(p.notes[0].warning);
        // After the cooldown the same token does nothing: it was handled.
        let mut later = case("later", s);
        later.restart = Some("again");
        later.now = 2000;
        let p = run(&later);
        assert!(p.act.is_none() && p.notes.is_empty(), "{:?}", p.notes);
    }

    #[test]
    fn the_table() {
        let cooling = RemediationStatus {
            attempts_in_window: 1,
            window_start: Some(Time(at(900))),
            total_actions: 1,
            cooldown_until: Some(Time(at(1060))),
            history: vec![record(RemediationResult::Succeeded, None)],
            ..Default::default()
        };
        let used_up = RemediationStatus {
            attempts_in_window: 3,
            window_start: Some(Time(at(500))),
            total_actions: 3,
            cooldown_until: Some(Time(at(900))),
            history: vec![record(RemediationResult::Succeeded, None)],
            ..Default::default()
        };
        let failing = RemediationStatus {
            attempts_in_window: 1,
            window_start: Some(Time(at(900))),
            total_actions: 5,
            failed_attempts: 5,
            cooldown_until: Some(Time(at(950))),
            history: vec![record(RemediationResult::Failed, Some(false))],
            ..Default::default()
        };
        let old_window = RemediationStatus {
            attempts_in_window: 3,
            window_start: Some(Time(at(-5000))),
            total_actions: 3,
            cooldown_until: Some(Time(at(-4000))),
            history: vec![record(RemediationResult::Succeeded, Some(false))],
            ..Default::default()
        };
        let in_flight = RemediationStatus {
            in_flight: Some(record(RemediationResult::InFlight, None)),
            attempts_in_window: 1,
            window_start: Some(Time(at(990))),
            total_actions: 1,
            cooldown_until: Some(Time(at(1050))),
            ..Default::default()
        };
        let mut escalated = status("False");
        escalated
            .conditions
            .push(cond(kind::ESCALATED, "True", 500));
        let escalated = with_rem(escalated, used_up.clone());

        let mut cases = vec![
            Case {
                acts: Some("policy"),
                remediating: Some(reason::IN_FLIGHT),
                ..case("a confirmed fault acts", status("False"))
            },
            Case {
                ..case(
                    "not confirmed yet (Ready still True): nothing",
                    status("True"),
                )
            },
            Case {
                ..case("a first probe pending: nothing", status("Unknown"))
            },
            Case {
                remediating: Some("Cooldown"),
                verdict: Verdict::Held("Cooldown"),
                ..case(
                    "inside the cooldown: held",
                    with_rem(
                        status("False"),
                        RemediationStatus {
                            history: vec![record(RemediationResult::Failed, Some(false))],
                            ..cooling.clone()
                        },
                    ),
                )
            },
            Case {
                now: 1061,
                acts: Some("policy"),
                remediating: Some(reason::IN_FLIGHT),
                ..case(
                    "after the cooldown: acts again",
                    with_rem(status("False"), cooling.clone()),
                )
            },
            Case {
                remediating: Some(reason::ESCALATED),
                verdict: Verdict::Escalated,
                ..case(
                    "attempts used up: escalates",
                    with_rem(status("False"), used_up.clone()),
                )
            },
            Case {
                now: 1000,
                remediating: Some(reason::ESCALATED),
                verdict: Verdict::Escalated,
                ..case(
                    "failures in a row: escalates",
                    with_rem(status("False"), failing),
                )
            },
            Case {
                acts: Some("policy"),
                ..case(
                    "an old window counts nothing",
                    with_rem(status("False"), old_window),
                )
            },
            Case {
                fleet: fleet(10, 6),
                remediating: Some("StormGuard"),
                verdict: Verdict::Held("StormGuard"),
                ..case("a storm holds every restart", status("False"))
            },
            Case {
                fleet: FleetState {
                    incident: true,
                    ..fleet(10, 1)
                },
                remediating: Some("FleetIncident"),
                verdict: Verdict::Held("FleetIncident"),
                ..case("a fleet incident holds every restart", status("False"))
            },
            Case {
                fleet: FleetState {
                    in_progress: 1,
                    ..fleet(10, 2)
                },
                remediating: Some("MaxConcurrent"),
                verdict: Verdict::Held("MaxConcurrent"),
                ..case("maxConcurrent holds", status("False"))
            },
            Case {
                remediating: Some("Escalated"),
                verdict: Verdict::Held("Escalated"),
                ..case("escalated: held until acknowledged", escalated.clone())
            },
            Case {
                ack: Some("seen"),
                ..case("an ack clears the escalation", escalated)
            },
            Case {
                restart: Some("now"),
                acts: Some("manual"),
                remediating: Some(reason::IN_FLIGHT),
                ..case("a manual restart of a healthy node acts", status("True"))
            },
            Case {
                advice: Some(("adv-1", false)),
                acts: Some("advice"),
                remediating: Some(reason::IN_FLIGHT),
                ..case(
                    "applied advice restarts as its own trigger",
                    status("False"),
                )
            },
            Case {
                advice: Some(("adv-1", false)),
                remediating: Some("Cooldown"),
                verdict: Verdict::Held("Cooldown"),
                ..case(
                    "applied advice never skips the cooldown",
                    with_rem(status("False"), cooling.clone()),
                )
            },
            Case {
                advice: Some(("adv-1", false)),
                fleet: fleet(10, 8),
                verdict: Verdict::Held("StormGuard"),
                ..case(
                    "applied advice never skips the storm guard",
                    status("False"),
                )
            },
            Case {
                advice: Some(("adv-1", false)),
                ..case(
                    "applied advice does not restart a healthy node",
                    status("True"),
                )
            },
            Case {
                advice: Some(("adv-2", true)),
                verdict: Verdict::Escalated,
                ..case("applied advice escalates", status("False"))
            },
            Case {
                restart: Some("now"),
                fleet: fleet(10, 8),
                acts: Some("manual"),
                ..case("a manual restart skips the storm guard", status("False"))
            },
            Case {
                restart: Some("again"),
                remediating: Some("Cooldown"),
                verdict: Verdict::Held("Cooldown"),
                ..case(
                    "a manual restart inside the cooldown is refused",
                    with_rem(status("True"), cooling.clone()),
                )
            },
            Case {
                restart: Some("now"),
                fleet: FleetState {
                    in_progress: 1,
                    ..fleet(10, 1)
                },
                remediating: Some("MaxConcurrent"),
                verdict: Verdict::Held("MaxConcurrent"),
                ..case(
                    "a manual restart beyond maxConcurrent is refused",
                    status("True"),
                )
            },
            Case {
                suspended: true,
                restart: Some("now"),
                remediating: Some("Suspended"),
                verdict: Verdict::Held("Suspended"),
                ..case("suspend holds even a manual restart", status("False"))
            },
            Case {
                dry_run: true,
                acts: Some("policy"),
                remediating: Some(reason::IN_FLIGHT),
                ..case(
                    "dry run decides and records like a real action",
                    status("False"),
                )
            },
            Case {
                remediating: Some(reason::INTERRUPTED),
                ..case(
                    "an interrupted attempt is closed, never repeated",
                    with_rem(status("False"), in_flight),
                )
            },
        ];
        let mut off = rules();
        off.policy_suspended = true;
        cases.push(Case {
            rules: off,
            remediating: Some("PolicySuspended"),
            verdict: Verdict::Held("PolicySuspended"),
            ..case("a suspended policy holds", status("False"))
        });

        for c in &cases {
            let p = run(c);
            assert_eq!(
                p.act.as_ref().map(|a| a.trigger.as_str()),
                c.acts,
                "{}: {p:?}",
                c.name
            );
            assert_eq!(p.verdict, c.verdict, "{}", c.name);
            if let Some(want) = c.remediating {
                let s = p.status.as_ref().unwrap_or(&c.status);
                let shown =
                    conditions::get(&s.conditions, kind::REMEDIATING).map(|c| c.reason.as_str());
                assert_eq!(shown, Some(want), "{}: {p:?}", c.name);
            }
            if p.act.is_some() {
                let rem = p
                    .status
                    .as_ref()
                    .and_then(|s| s.remediation.as_ref())
                    .unwrap();
                assert!(
                    rem.in_flight.is_some(),
                    "{}: the decision is recorded before acting",
                    c.name
                );
            }
        }
    }

    #[test]
    fn a_healthy_period_resets_the_counts_and_marks_the_recovery() {
        let rem = RemediationStatus {
            attempts_in_window: 2,
            window_start: Some(Time(at(0))),
            total_actions: 2,
            failed_attempts: 1,
            history: vec![record(RemediationResult::Succeeded, None)],
            ..Default::default()
        };
        let mut s = with_rem(status("True"), rem);
        s.conditions[0].last_transition_time = Time(at(100));
        s.conditions.push(cond(kind::REMEDIATING, "True", 50));
        let c = Case {
            now: 150,
            ..case("recovered", s.clone())
        };
        let p = run(&c);
        let after = p.status.expect("recovery recorded");
        let rem = after.remediation.as_ref().unwrap();
        assert_eq!(rem.history[0].recovered, Some(true));
        assert_eq!(
            rem.attempts_in_window, 2,
            "not yet healthy for healthyResetAfter"
        );
        assert_eq!(p.notes[0].reason, reason::RECOVERED);
        let c = Case {
            now: 401,
            ..case("reset", after)
        };
        let rem = run(&c).status.expect("counts reset").remediation.unwrap();
        assert_eq!((rem.attempts_in_window, rem.failed_attempts), (0, 0));
    }

    #[test]
    fn the_plan_reads_no_clock() {
        let c = Case {
            now: 77,
            ..case("act", status("False"))
        };
        let p = run(&c);
        let s = p.status.unwrap();
        let ready_since = conditions::get(&s.conditions, kind::REMEDIATING)
            .unwrap()
            .last_transition_time
            .clone();
        assert_eq!(ready_since, Time(at(77)));
        assert_eq!(
            p.act.unwrap().token,
            format!("abcdef01-1-{}", at(77).as_millisecond())
        );
        assert_eq!(s.remediation.unwrap().last_action_time, Some(Time(at(77))));
    }

    #[test]
    fn quiet_nodes_need_no_plan_and_no_fleet() {
        let healthy = status("True");
        let input = Input {
            status: &healthy,
            rules: &rules(),
            suspended: false,
            has_target: true,
            uid: None,
            generation: None,
            restart: None,
            ack: None,
            advice: None,
            fleet: None,
            now: at(0),
            dry_run: false,
        };
        assert!(quiet(&input));
        assert!(!needs_fleet(&input, false));
        assert!(needs_fleet(&input, true), "a storm on must be re-judged");
        let asked = Input {
            restart: Some("x"),
            ..input
        };
        assert!(!quiet(&asked));
        assert!(needs_fleet(&asked, false));
        let sick = status("False");
        let sick = Input {
            status: &sick,
            ..input
        };
        assert!(!quiet(&sick) && needs_fleet(&sick, false));
    }

    #[test]
    fn outcomes_are_recorded() {
        let mut s = with_rem(
            status("False"),
            RemediationStatus {
                in_flight: Some(record(RemediationResult::InFlight, None)),
                attempts_in_window: 1,
                total_actions: 1,
                ..Default::default()
            },
        );
        // As the plan left it: Remediating=True InFlight.
        s.conditions.push(cond(kind::REMEDIATING, "True", 1));
        let act = Act {
            token: "tok".into(),
            trigger: Trigger::Policy,
        };
        let cases = [
            (
                ActionOutcome::Succeeded("evicted".into()),
                reason::WAITING_FOR_RECOVERY,
                "RemediationSucceeded",
                false,
            ),
            (
                ActionOutcome::Failed("boom".into()),
                reason::ACTION_FAILED,
                "RemediationFailed",
                true,
            ),
            (
                ActionOutcome::Blocked {
                    message: "pdb".into(),
                    retry: Duration::from_secs(5),
                },
                reason::BLOCKED_BY_DISRUPTION_BUDGET,
                "EvictionBlocked",
                true,
            ),
            (
                ActionOutcome::DryRun("would".into()),
                reason::DRY_RUN,
                reason::DRY_RUN,
                false,
            ),
        ];
        for (result, shown, noted, warning) in cases {
            let (after, transitions, n) = outcome(&s, &result, &act, "evictPod", Some(1), at(5));
            let rem = after.remediation.as_ref().unwrap();
            assert!(rem.in_flight.is_none(), "{result:?}");
            assert_eq!(rem.history.last().unwrap().result, result.result());
            assert_eq!(
                conditions::get(&after.conditions, kind::REMEDIATING)
                    .unwrap()
                    .reason,
                shown
            );
            // True (in flight) to True (waiting) is no transition; to False it is.
            let flipped = !matches!(result, ActionOutcome::Succeeded(_));
            assert_eq!(transitions.len(), usize::from(flipped), "{result:?}");
            assert_eq!((n.reason, n.warning), (noted, warning));
            assert!(n.message.contains("token tok"), "{}", n.message);
        }
    }

    #[test]
    fn tokens_are_unique_per_attempt() {
        let t = Timestamp::from_second(1_700_000_000).unwrap();
        assert_eq!(
            token(Some("1234-5678-9abc"), 3, t),
            "12345678-3-1700000000000"
        );
        assert_ne!(token(Some("x"), 1, t), token(Some("x"), 2, t));
    }
}
