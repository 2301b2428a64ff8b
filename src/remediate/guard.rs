//! Remediation guards as pure functions: whether to act on an unhealthy validator now, and
//! how the durable bookkeeping in `status.remediation` changes when Vigil acts, when the
//! action ends, and when the node recovers.
//!
//! The rules, in the order they are checked:
//! 1. kill switches: the policy's or the validator's `suspend`, `remediation.enabled: false`,
//!    action `none`, no target; an escalated validator is never acted on until acknowledged;
//! 2. an action whose result is not known (in flight, also after a crash) or a cooldown in
//!    force holds everything: never two actions inside one cooldown;
//! 3. the storm guard: a fleet incident (chain halt, mass stall) or more than `maxUnhealthy`
//!    of the policy's fleet unhealthy stops every automatic restart;
//! 4. at most `maxConcurrent` remediations in progress per policy;
//! 5. only after `failureThreshold` bad probes (the published `Ready=False` is that);
//! 6. at most `maxAttempts` per `window`, and escalation after `escalateAfter` attempts in a
//!    row that did not heal the node, or when the attempts are used up.
//!
//! A manual restart (`vigil.dev/restart=<token>`) skips the storm guard, the thresholds and
//! the attempt limits of 3, 5 and 6 — a person decided — but never the kill switches, an
//! unknown in-flight action, the cooldown, `maxConcurrent` or dry-run recording: at most one
//! action per cooldown whoever asks, so an annotation loop is not a restart loop. A request
//! held by the rate limits is refused, not queued (see `plan`).

use crate::api::{RemediationAction, RemediationRecord, RemediationResult, RemediationStatus};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::time::Duration;

/// Most records kept in `status.remediation.history`.
pub const HISTORY_LIMIT: usize = 10;

/// The policy's remediation settings, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    /// `remediation.enabled`.
    pub enabled: bool,
    /// `remediation.action`.
    pub action: RemediationAction,
    /// `remediation.maxAttempts`.
    pub max_attempts: u32,
    /// `remediation.window`.
    pub window: Duration,
    /// `remediation.cooldown`, doubled for each further attempt in the window.
    pub cooldown: Duration,
    /// `remediation.maxCooldown`.
    pub max_cooldown: Duration,
    /// `remediation.healthyResetAfter`.
    pub healthy_reset_after: Duration,
    /// `remediation.maxConcurrent`.
    pub max_concurrent: u32,
    /// `remediation.maxUnhealthy`, in percent.
    pub max_unhealthy_percent: u32,
    /// `remediation.escalateAfter`.
    pub escalate_after: u32,
    /// The policy's `suspend`.
    pub policy_suspended: bool,
    /// `duty.restartWhenNotSigning`: a validator not Ready only for its duty is restarted.
    pub duty_restart: bool,
}

impl Default for Rules {
    /// Rules that never act (for validators that are not watched).
    fn default() -> Self {
        Rules {
            enabled: false,
            action: RemediationAction::None,
            max_attempts: 0,
            window: Duration::from_secs(3600),
            cooldown: Duration::from_secs(60),
            max_cooldown: Duration::from_secs(1800),
            healthy_reset_after: Duration::from_secs(600),
            max_concurrent: 0,
            max_unhealthy_percent: 0,
            escalate_after: 0,
            policy_suspended: false,
            duty_restart: false,
        }
    }
}

impl Rules {
    /// The cooldown after the `attempt`-th attempt of a window (1-based): doubling, capped.
    pub fn cooldown_for(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(20);
        self.cooldown
            .checked_mul(factor)
            .unwrap_or(self.max_cooldown)
            .min(self.max_cooldown.max(self.cooldown))
    }
}

/// What is known of the validator right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The published verdict is a node fault (`Ready=False`, after the failure threshold).
    pub faulty: bool,
    /// The published verdict is healthy (`Ready=True`).
    pub healthy: bool,
    /// Since when `Ready` has been `True`, if it is.
    pub healthy_since: Option<Timestamp>,
    /// The validator's `suspend`.
    pub suspended: bool,
    /// The validator has a target to act on.
    pub has_target: bool,
    /// The validator is escalated (`Escalated=True`).
    pub escalated: bool,
}

/// What the policy's fleet shows right now (all validators under the policy).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetState {
    /// Validators under the policy.
    pub members: u32,
    /// Of which are unhealthy (node faults).
    pub unhealthy: u32,
    /// A fleet incident is open (chain halt, mass stall).
    pub incident: bool,
    /// Remediations in progress under the policy, other than this validator's.
    pub in_progress: u32,
}

impl FleetState {
    /// Whether the unhealthy share exceeds `max_percent`. One unhealthy node is never a
    /// storm (in a fleet of one it would be 100%): a storm takes at least two.
    pub fn storm(&self, max_percent: u32) -> bool {
        self.unhealthy >= 2
            && u64::from(self.unhealthy) * 100 > u64::from(max_percent) * u64::from(self.members)
    }
}

/// Who asked for an action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The policy, for an unhealthy node.
    Policy,
    /// A person, with the `vigil.dev/restart` token.
    Manual(String),
    /// Applied advice (`advisor.autoApply`), with its token; every guard applies.
    Advice(String),
}

impl Trigger {
    /// The API spelling in `RemediationRecord.trigger`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Trigger::Policy => "policy",
            Trigger::Manual(_) => "manual",
            Trigger::Advice(_) => "advice",
        }
    }
}

/// Why no action is taken although the node is unhealthy (or a restart was asked for).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hold {
    /// The policy or the validator is suspended, remediation is disabled or the action is
    /// `none`, or there is no target.
    Off(&'static str),
    /// Escalated: waiting for a person (`vigil.dev/ack`).
    Escalated,
    /// The last action's result is not known yet.
    InFlight,
    /// The cooldown after the last action is in force.
    Cooldown(Timestamp),
    /// A fleet incident is open.
    FleetIncident,
    /// Too much of the fleet is unhealthy.
    Storm {
        /// Unhealthy validators.
        unhealthy: u32,
        /// Validators under the policy.
        members: u32,
    },
    /// `maxConcurrent` remediations are in progress.
    MaxConcurrent(u32),
}

impl Hold {
    /// CamelCase reason for conditions, Events and the `blocked` metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Hold::Off(r) => r,
            Hold::Escalated => "Escalated",
            Hold::InFlight => "InFlight",
            Hold::Cooldown(_) => "Cooldown",
            Hold::FleetIncident => "FleetIncident",
            Hold::Storm { .. } => "StormGuard",
            Hold::MaxConcurrent(_) => "MaxConcurrent",
        }
    }

    /// A sentence for people.
    pub fn message(&self) -> String {
        match self {
            Hold::Off("PolicySuspended") => "The MonitorPolicy is suspended (spec.suspend): no action".into(),
            Hold::Off("Suspended") => "This validator is suspended (spec.suspend): no action".into(),
            Hold::Off("Disabled") => "remediation.enabled is false: no action".into(),
            Hold::Off("ActionNone") => "remediation.action is none: Vigil only reports".into(),
            Hold::Off("NoTarget") => "spec.target is not set: nothing to act on".into(),
            Hold::Off(other) => format!("No action: {other}"),
            Hold::Escalated => "Escalated to a person; annotate vigil.dev/ack=<token> to clear it and let Vigil act again".into(),
            Hold::InFlight => "The last action's result is not known yet".into(),
            Hold::Cooldown(until) => format!("Cooling down after the last action until {until}"),
            Hold::FleetIncident => "A fleet incident is open (the chain halted or most nodes stalled): restarting nodes would not help".into(),
            Hold::Storm { unhealthy, members } => format!(
                "Storm guard: {unhealthy} of {members} validators under the policy are unhealthy, more than remediation.maxUnhealthy; no restarts"
            ),
            Hold::MaxConcurrent(n) => format!("{n} remediation(s) already in progress under the policy (remediation.maxConcurrent)"),
        }
    }
}

/// What to do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing: the node is not unhealthy and no restart was asked for.
    Nothing,
    /// Act.
    Act {
        /// Why.
        trigger: Trigger,
    },
    /// Unhealthy (or asked for), but a guard holds.
    Hold(Hold),
    /// Stop acting and call a person.
    Escalate(String),
}

fn ts(t: &Option<Time>) -> Option<Timestamp> {
    t.as_ref().map(|t| t.0)
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

/// Attempts that count in the window at `now` (a window that has passed counts none).
pub fn attempts_in_window(state: &RemediationStatus, rules: &Rules, now: Timestamp) -> u32 {
    match ts(&state.window_start) {
        Some(start) if after(start, rules.window) > now => state.attempts_in_window,
        _ => 0,
    }
}

/// Decides what to do now. `manual` is a `vigil.dev/restart` token not yet honoured.
pub fn decide(
    rules: &Rules,
    node: &Node,
    fleet: &FleetState,
    state: &RemediationStatus,
    manual: Option<&str>,
    now: Timestamp,
) -> Decision {
    let asked = manual.is_some();
    if !node.faulty && !asked {
        return Decision::Nothing;
    }
    let off = if rules.policy_suspended {
        Some("PolicySuspended")
    } else if node.suspended {
        Some("Suspended")
    } else if !rules.enabled {
        Some("Disabled")
    } else if rules.action == RemediationAction::None {
        Some("ActionNone")
    } else if !node.has_target {
        Some("NoTarget")
    } else {
        None
    };
    if let Some(reason) = off {
        return Decision::Hold(Hold::Off(reason));
    }
    if state.in_flight.is_some() {
        return Decision::Hold(Hold::InFlight);
    }
    if let Some(token) = manual {
        if let Some(until) = ts(&state.cooldown_until)
            && until > now
        {
            return Decision::Hold(Hold::Cooldown(until));
        }
        if fleet.in_progress >= rules.max_concurrent {
            return Decision::Hold(Hold::MaxConcurrent(fleet.in_progress));
        }
        return Decision::Act {
            trigger: Trigger::Manual(token.to_string()),
        };
    }
    if node.escalated {
        return Decision::Hold(Hold::Escalated);
    }
    if let Some(until) = ts(&state.cooldown_until)
        && until > now
    {
        return Decision::Hold(Hold::Cooldown(until));
    }
    // The cooldown has passed and the node is still unhealthy: the last attempt did not heal.
    let failed = state.failed_attempts + u32::from(unjudged(state).is_some());
    if rules.escalate_after > 0 && failed >= rules.escalate_after {
        return Decision::Escalate(format!(
            "{failed} remediation attempt(s) in a row did not heal the node (remediation.escalateAfter is {})",
            rules.escalate_after
        ));
    }
    let used = attempts_in_window(state, rules, now);
    if used >= rules.max_attempts {
        return Decision::Escalate(format!(
            "All {} attempt(s) of the {} window are used and the node is still unhealthy (remediation.maxAttempts)",
            rules.max_attempts,
            crate::duration::format(rules.window)
        ));
    }
    if fleet.incident {
        return Decision::Hold(Hold::FleetIncident);
    }
    if fleet.storm(rules.max_unhealthy_percent) {
        return Decision::Hold(Hold::Storm {
            unhealthy: fleet.unhealthy,
            members: fleet.members,
        });
    }
    if fleet.in_progress >= rules.max_concurrent {
        return Decision::Hold(Hold::MaxConcurrent(fleet.in_progress));
    }
    Decision::Act {
        trigger: Trigger::Policy,
    }
}

/// The last record, if it is an issued action whose effect has not been judged yet.
fn unjudged(state: &RemediationStatus) -> Option<&RemediationRecord> {
    state.history.last().filter(|r| {
        r.recovered.is_none()
            && matches!(
                r.result,
                RemediationResult::Succeeded | RemediationResult::Interrupted
            )
    })
}

/// Bookkeeping before acting (written to status before the action runs, so that a crash
/// or a new leader can never act twice): the action is in flight, counted, and the cooldown
/// starts. Dry-run records the same way, so it too is rate-limited by the cooldown.
pub fn begin(
    state: &RemediationStatus,
    rules: &Rules,
    trigger: &Trigger,
    token: &str,
    now: Timestamp,
) -> RemediationStatus {
    let mut s = state.clone();
    // An attempt that ends without recovery (cooldown passed) counts as failed.
    if let Some(last) = s.history.last_mut()
        && last.recovered.is_none()
        && matches!(
            last.result,
            RemediationResult::Succeeded | RemediationResult::Interrupted
        )
    {
        last.recovered = Some(false);
        s.failed_attempts = s.failed_attempts.saturating_add(1);
    }
    let used = attempts_in_window(&s, rules, now);
    if used == 0 {
        s.window_start = Some(Time(now));
    }
    s.attempts_in_window = used.saturating_add(1);
    s.total_actions = s.total_actions.saturating_add(1);
    let action = action_name(rules.action);
    s.last_action = Some(action.clone());
    s.last_action_time = Some(Time(now));
    s.cooldown_until = Some(Time(after(now, rules.cooldown_for(s.attempts_in_window))));
    match trigger {
        Trigger::Manual(t) => s.last_restart_token = Some(t.clone()),
        Trigger::Advice(t) => s.last_advice_token = Some(t.clone()),
        Trigger::Policy => {}
    }
    s.in_flight = Some(RemediationRecord {
        token: token.to_string(),
        action,
        time: Some(Time(now)),
        result: RemediationResult::InFlight,
        message: String::new(),
        trigger: trigger.as_str().into(),
        recovered: None,
    });
    s
}

/// How an action ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActionOutcome {
    /// Done (the API accepted it, the command exited 0, the webhook answered 2xx).
    Succeeded(String),
    /// It failed; counts as a failed attempt.
    Failed(String),
    /// Refused for now by something that protects the workload (a PodDisruptionBudget):
    /// retried after `retry`, not counted as an attempt.
    Blocked {
        /// What refused it.
        message: String,
        /// When to try again.
        retry: Duration,
    },
    /// Dry-run: decided and recorded, nothing done.
    DryRun(String),
}

impl ActionOutcome {
    /// The `result` of the record.
    pub fn result(&self) -> RemediationResult {
        match self {
            ActionOutcome::Succeeded(_) => RemediationResult::Succeeded,
            ActionOutcome::Failed(_) => RemediationResult::Failed,
            ActionOutcome::Blocked { .. } => RemediationResult::Blocked,
            ActionOutcome::DryRun(_) => RemediationResult::DryRun,
        }
    }

    /// The message of the record.
    pub fn message(&self) -> &str {
        match self {
            ActionOutcome::Succeeded(m) | ActionOutcome::Failed(m) | ActionOutcome::DryRun(m) => m,
            ActionOutcome::Blocked { message, .. } => message,
        }
    }
}

/// Bookkeeping after the action ended: the in-flight record moves to the history.
pub fn finish(
    state: &RemediationStatus,
    outcome: &ActionOutcome,
    now: Timestamp,
) -> RemediationStatus {
    let mut s = state.clone();
    let Some(mut record) = s.in_flight.take() else {
        return s;
    };
    record.result = outcome.result();
    record.message = truncate(outcome.message(), 512);
    match outcome {
        ActionOutcome::Failed(_) => {
            record.recovered = Some(false);
            s.failed_attempts = s.failed_attempts.saturating_add(1);
        }
        ActionOutcome::Blocked { retry, .. } => {
            // Not an attempt: give it back, and retry sooner than a full cooldown.
            s.attempts_in_window = s.attempts_in_window.saturating_sub(1);
            s.total_actions = s.total_actions.saturating_sub(1);
            s.cooldown_until = Some(Time(after(now, *retry)));
        }
        ActionOutcome::DryRun(_) => record.recovered = Some(false),
        ActionOutcome::Succeeded(_) => {}
    }
    s.history.push(record);
    trim(&mut s.history);
    s
}

/// After a crash or a leader change, an action recorded as in flight may or may not have
/// happened. It is never repeated: it is closed as `Interrupted`, and its cooldown stands.
pub fn interrupted(state: &RemediationStatus) -> Option<RemediationStatus> {
    let mut s = state.clone();
    let mut record = s.in_flight.take()?;
    record.result = RemediationResult::Interrupted;
    record.message =
        "Vigil stopped while this action ran; it is not repeated, its cooldown stands".into();
    s.history.push(record);
    trim(&mut s.history);
    Some(s)
}

/// The node is healthy: the last attempt healed it, and after `healthyResetAfter` of health
/// the counts start over. `None` when nothing changes.
pub fn healthy(
    state: &RemediationStatus,
    rules: &Rules,
    healthy_since: Timestamp,
    now: Timestamp,
) -> Option<RemediationStatus> {
    let mut s = state.clone();
    if let Some(last) = s.history.last_mut()
        && last.recovered.is_none()
        && matches!(
            last.result,
            RemediationResult::Succeeded | RemediationResult::Interrupted
        )
    {
        last.recovered = Some(true);
        s.failed_attempts = 0;
    }
    if after(healthy_since, rules.healthy_reset_after) <= now
        && (s.attempts_in_window > 0 || s.failed_attempts > 0)
    {
        s.attempts_in_window = 0;
        s.window_start = None;
        s.failed_attempts = 0;
    }
    (s != *state).then_some(s)
}

/// A person acknowledged the escalation: counts start over.
pub fn acknowledge(state: &RemediationStatus, token: &str) -> RemediationStatus {
    let mut s = state.clone();
    s.last_ack_token = Some(token.to_string());
    s.attempts_in_window = 0;
    s.window_start = None;
    s.failed_attempts = 0;
    s.cooldown_until = None;
    if let Some(last) = s.history.last_mut()
        && last.recovered.is_none()
    {
        last.recovered = Some(false);
    }
    s
}

/// The API spelling of an action (`evictPod`, ...).
pub fn action_name(a: RemediationAction) -> String {
    match a {
        RemediationAction::EvictPod => "evictPod",
        RemediationAction::DeletePod => "deletePod",
        RemediationAction::RolloutRestart => "rolloutRestart",
        RemediationAction::Ssh => "ssh",
        RemediationAction::Webhook => "webhook",
        RemediationAction::None => "none",
    }
    .into()
}

fn trim(history: &mut Vec<RemediationRecord>) {
    if history.len() > HISTORY_LIMIT {
        history.drain(..history.len() - HISTORY_LIMIT);
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn sick() -> Node {
        Node {
            faulty: true,
            healthy: false,
            healthy_since: None,
            suspended: false,
            has_target: true,
            escalated: false,
        }
    }
    fn fleet() -> FleetState {
        FleetState {
            members: 10,
            unhealthy: 1,
            incident: false,
            in_progress: 0,
        }
    }
    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }
    fn act() -> Decision {
        Decision::Act {
            trigger: Trigger::Policy,
        }
    }

    /// Acts (begin + finish with `outcome`) at `t`.
    fn attempt(
        s: &RemediationStatus,
        r: &Rules,
        t: i64,
        outcome: ActionOutcome,
    ) -> RemediationStatus {
        let begun = begin(s, r, &Trigger::Policy, &format!("tok-{t}"), at(t));
        assert!(begun.in_flight.is_some());
        finish(&begun, &outcome, at(t))
    }

    #[test]
    fn healthy_nodes_are_left_alone() {
        let node = Node {
            faulty: false,
            healthy: true,
            ..sick()
        };
        assert_eq!(
            decide(&rules(), &node, &fleet(), &Default::default(), None, at(0)),
            Decision::Nothing
        );
    }

    #[test]
    fn kill_switches_hold_everything_even_manual_requests() {
        let s = RemediationStatus::default();
        let mut r = rules();
        r.policy_suspended = true;
        assert_eq!(
            decide(&r, &sick(), &fleet(), &s, Some("x"), at(0)),
            Decision::Hold(Hold::Off("PolicySuspended"))
        );
        let node = Node {
            suspended: true,
            ..sick()
        };
        assert_eq!(
            decide(&rules(), &node, &fleet(), &s, None, at(0)),
            Decision::Hold(Hold::Off("Suspended"))
        );
        let mut r = rules();
        r.action = RemediationAction::None;
        assert_eq!(
            decide(&r, &sick(), &fleet(), &s, None, at(0)).clone(),
            Decision::Hold(Hold::Off("ActionNone"))
        );
        let node = Node {
            has_target: false,
            ..sick()
        };
        assert_eq!(
            decide(&rules(), &node, &fleet(), &s, None, at(0)),
            Decision::Hold(Hold::Off("NoTarget"))
        );
        for h in [
            Hold::Off("PolicySuspended"),
            Hold::Off("Suspended"),
            Hold::Off("Disabled"),
            Hold::Off("ActionNone"),
            Hold::Off("NoTarget"),
        ] {
            assert!(
                !h.message().starts_with("No action: "),
                "{h:?} has its own sentence"
            );
        }
    }

    #[test]
    fn never_two_actions_inside_one_cooldown() {
        let r = rules();
        let s = attempt(
            &Default::default(),
            &r,
            0,
            ActionOutcome::Succeeded("evicted".into()),
        );
        assert_eq!(s.attempts_in_window, 1);
        assert!(matches!(
            decide(&r, &sick(), &fleet(), &s, None, at(59)),
            Decision::Hold(Hold::Cooldown(_))
        ));
        assert_eq!(decide(&r, &sick(), &fleet(), &s, None, at(61)), act());
        // The second cooldown is twice as long (backoff), capped at maxCooldown.
        let s = attempt(&s, &r, 61, ActionOutcome::Succeeded("evicted".into()));
        assert_eq!(s.cooldown_until, Some(Time(at(61 + 120))));
        assert_eq!(
            s.failed_attempts, 1,
            "the first attempt did not heal the node"
        );
        assert_eq!(r.cooldown_for(10), Duration::from_secs(600));
    }

    #[test]
    fn an_action_in_flight_is_never_repeated_not_even_after_a_crash() {
        let r = rules();
        let begun = begin(&Default::default(), &r, &Trigger::Policy, "t1", at(0));
        assert_eq!(
            decide(&r, &sick(), &fleet(), &begun, Some("manual"), at(1000)),
            Decision::Hold(Hold::InFlight)
        );
        let after_crash = interrupted(&begun).unwrap();
        assert!(after_crash.in_flight.is_none());
        assert_eq!(
            after_crash.history.last().unwrap().result,
            RemediationResult::Interrupted
        );
        assert!(matches!(
            decide(&r, &sick(), &fleet(), &after_crash, None, at(30)),
            Decision::Hold(Hold::Cooldown(_))
        ));
        assert_eq!(
            interrupted(&after_crash),
            None,
            "nothing in flight: nothing to close"
        );
    }

    #[test]
    fn no_fourth_attempt_escalates_instead() {
        let r = rules();
        let mut s = RemediationStatus::default();
        let mut t = 0;
        for _ in 0..3 {
            assert_eq!(
                decide(&r, &sick(), &fleet(), &s, None, at(t)),
                act(),
                "{s:?}"
            );
            s = attempt(&s, &r, t, ActionOutcome::Succeeded("evicted".into()));
            t += 1000;
        }
        match decide(&r, &sick(), &fleet(), &s, None, at(t)) {
            Decision::Escalate(why) => assert!(why.contains("maxAttempts"), "{why}"),
            d => panic!("{d:?}"),
        }
        // Escalated: held until a person acknowledges.
        let esc = Node {
            escalated: true,
            ..sick()
        };
        assert_eq!(
            decide(&r, &esc, &fleet(), &s, None, at(t)),
            Decision::Hold(Hold::Escalated)
        );
        let acked = acknowledge(&s, "ack-1");
        assert_eq!(acked.last_ack_token.as_deref(), Some("ack-1"));
        assert_eq!(decide(&r, &sick(), &fleet(), &acked, None, at(t)), act());
    }

    #[test]
    fn consecutive_failures_escalate() {
        let mut r = rules();
        r.escalate_after = 2;
        r.max_attempts = 10;
        let s = attempt(
            &Default::default(),
            &r,
            0,
            ActionOutcome::Failed("API error".into()),
        );
        assert_eq!(s.failed_attempts, 1);
        let s = attempt(&s, &r, 100, ActionOutcome::Failed("API error".into()));
        assert!(
            matches!(decide(&r, &sick(), &fleet(), &s, None, at(1000)), Decision::Escalate(why) if why.contains("escalateAfter"))
        );
    }

    #[test]
    fn a_pdb_refusal_is_retried_and_not_counted() {
        let r = rules();
        let blocked = ActionOutcome::Blocked {
            message: "Cannot evict pod as it would violate the pod's disruption budget.".into(),
            retry: Duration::from_secs(10),
        };
        let s = attempt(&Default::default(), &r, 0, blocked);
        assert_eq!(
            (s.attempts_in_window, s.total_actions, s.failed_attempts),
            (0, 0, 0)
        );
        assert_eq!(s.history.last().unwrap().result, RemediationResult::Blocked);
        assert!(matches!(
            decide(&r, &sick(), &fleet(), &s, None, at(5)),
            Decision::Hold(Hold::Cooldown(_))
        ));
        assert_eq!(decide(&r, &sick(), &fleet(), &s, None, at(11)), act());
    }

    #[test]
    fn storm_and_fleet_incidents_stop_all_restarts() {
        let r = rules();
        let s = RemediationStatus::default();
        let storm = FleetState {
            members: 10,
            unhealthy: 6,
            ..fleet()
        };
        assert_eq!(
            decide(&r, &sick(), &storm, &s, None, at(0)),
            Decision::Hold(Hold::Storm {
                unhealthy: 6,
                members: 10
            })
        );
        let alone = FleetState {
            members: 1,
            unhealthy: 1,
            ..fleet()
        };
        assert_eq!(
            decide(&r, &sick(), &alone, &s, None, at(0)),
            act(),
            "a lone node is no storm"
        );
        let two = FleetState {
            members: 3,
            unhealthy: 2,
            ..fleet()
        };
        assert!(matches!(
            decide(&r, &sick(), &two, &s, None, at(0)),
            Decision::Hold(Hold::Storm { .. })
        ));
        let half = FleetState {
            members: 10,
            unhealthy: 5,
            ..fleet()
        };
        assert_eq!(
            decide(&r, &sick(), &half, &s, None, at(0)),
            act(),
            "exactly 50% is not more than 50%"
        );
        let incident = FleetState {
            incident: true,
            ..fleet()
        };
        assert_eq!(
            decide(&r, &sick(), &incident, &s, None, at(0)),
            Decision::Hold(Hold::FleetIncident)
        );
        let busy = FleetState {
            in_progress: 1,
            ..fleet()
        };
        assert_eq!(
            decide(&r, &sick(), &busy, &s, None, at(0)),
            Decision::Hold(Hold::MaxConcurrent(1))
        );
        // A person may still restart one node in a storm.
        assert!(matches!(
            decide(&r, &sick(), &storm, &s, Some("tok"), at(0)),
            Decision::Act {
                trigger: Trigger::Manual(_)
            }
        ));
    }

    #[test]
    fn recovery_is_recorded_and_counts_reset_after_a_healthy_period() {
        let r = rules();
        let s = attempt(
            &Default::default(),
            &r,
            0,
            ActionOutcome::Succeeded("evicted".into()),
        );
        let s = healthy(&s, &r, at(30), at(31)).expect("recovery recorded");
        assert_eq!(s.history.last().unwrap().recovered, Some(true));
        assert_eq!(
            s.attempts_in_window, 1,
            "not yet healthy for healthyResetAfter"
        );
        assert_eq!(healthy(&s, &r, at(30), at(100)), None, "nothing new");
        let s = healthy(&s, &r, at(30), at(331)).expect("counts reset");
        assert_eq!((s.attempts_in_window, s.failed_attempts), (0, 0));
        assert_eq!(s.total_actions, 1, "the lifetime total stays");
    }

    #[test]
    fn manual_restart_bypasses_thresholds_once_per_token() {
        let r = rules();
        let node = Node {
            faulty: false,
            healthy: true,
            ..sick()
        };
        let d = decide(&r, &node, &fleet(), &Default::default(), Some("t1"), at(0));
        assert_eq!(
            d,
            Decision::Act {
                trigger: Trigger::Manual("t1".into())
            }
        );
        let s = begin(
            &Default::default(),
            &r,
            &Trigger::Manual("t1".into()),
            "tok",
            at(0),
        );
        assert_eq!(s.last_restart_token.as_deref(), Some("t1"));
        assert_eq!(s.in_flight.as_ref().unwrap().trigger, "manual");
    }

    /// (what stands, decision for a second manual request)
    #[test]
    fn manual_restarts_are_rate_limited() {
        let r = rules();
        let healthy = Node {
            faulty: false,
            healthy: true,
            ..sick()
        };
        let cooling = RemediationStatus {
            cooldown_until: Some(Time(at(100))),
            ..Default::default()
        };
        let busy = FleetState {
            in_progress: r.max_concurrent,
            ..fleet()
        };
        let cases = [
            (
                "inside the cooldown",
                cooling.clone(),
                fleet(),
                at(50),
                Decision::Hold(Hold::Cooldown(at(100))),
            ),
            (
                "the cooldown has passed",
                cooling,
                fleet(),
                at(100),
                Decision::Act {
                    trigger: Trigger::Manual("t2".into()),
                },
            ),
            (
                "maxConcurrent in progress",
                RemediationStatus::default(),
                busy,
                at(0),
                Decision::Hold(Hold::MaxConcurrent(r.max_concurrent)),
            ),
        ];
        for (name, state, f, now, want) in cases {
            assert_eq!(
                decide(&r, &healthy, &f, &state, Some("t2"), now),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn counters_saturate() {
        let r = rules();
        let full = RemediationStatus {
            total_actions: u32::MAX,
            failed_attempts: u32::MAX,
            ..Default::default()
        };
        let s = begin(&full, &r, &Trigger::Policy, "tok", at(0));
        assert_eq!(s.total_actions, u32::MAX);
        assert_eq!(s.failed_attempts, u32::MAX);
    }

    #[test]
    fn history_is_bounded() {
        let mut r = rules();
        r.max_attempts = 100;
        r.escalate_after = 0;
        let mut s = RemediationStatus::default();
        for i in 0..25 {
            s = attempt(
                &s,
                &r,
                i * 10_000,
                ActionOutcome::Failed(format!("failure {i} {}", "x".repeat(1000))),
            );
        }
        assert_eq!(s.history.len(), HISTORY_LIMIT);
        assert!(s.history.iter().all(|h| h.message.chars().count() <= 512));
        assert!(s.history.last().unwrap().message.starts_with("failure 24"));
    }
}
