//! The MonitorPolicy controller: validates the policy ([`crate::policy::validate`], the one
//! validation every consumer uses) and counts the validators it governs.

use super::{Ctx, Error, tell_change};
use crate::api::{MonitorPolicy, MonitorPolicyStatus, MonitoredValidator};
use crate::conditions::{self, Desired, Status, kind, reason};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The kind name used in metrics and logs.
pub const KIND: &str = "MonitorPolicy";

/// Validators in `namespace` that point at policy `name`: (total, ready, not ready).
pub fn count_validators<'a>(
    validators: impl Iterator<Item = &'a MonitoredValidator>,
    namespace: &str,
    name: &str,
) -> (u32, u32, u32) {
    let (mut total, mut healthy, mut unhealthy) = (0, 0, 0);
    for v in validators {
        if v.namespace().as_deref() != Some(namespace) || v.spec.policy_ref.name != name {
            continue;
        }
        total += 1;
        let ready = v
            .status
            .as_ref()
            .and_then(|s| conditions::status_of(&s.conditions, kind::READY));
        match ready {
            Some(Status::True) => healthy += 1,
            Some(Status::False) => unhealthy += 1,
            _ => {}
        }
    }
    (total, healthy, unhealthy)
}

/// Reconciles one policy.
pub async fn reconcile(
    obj: Arc<DeserializeGuard<MonitorPolicy>>,
    ctx: Ctx,
) -> Result<Action, Error> {
    super::instrumented(&obj, &ctx, async |o| reconcile_valid(o, &ctx).await).await
}

async fn reconcile_valid(policy: &MonitorPolicy, ctx: &Ctx) -> Result<Action, Error> {
    let namespace = policy.namespace().unwrap_or_default();
    let name = policy.name_any();
    // The fleet incident and `StormActive` belong to the monitor, alerts and their delivery
    // to the alerter, the spend, fleet advice and `BudgetExhausted` to the advisor (their
    // own field managers): leave them out, so this apply neither takes them over nor
    // removes them.
    let current = policy.status.clone().map(|mut s| {
        s.fleet_incident = None;
        s.advisor_spend = None;
        s.fleet_advice = None;
        s.alerts.clear();
        s.alert_delivery.clear();
        s.alert_test = None;
        s.conditions.retain(|c| c.type_ == kind::READY);
        s
    });
    let mut status: MonitorPolicyStatus = current.clone().unwrap_or_default();
    status.observed_generation = policy.meta().generation;

    let state = ctx.validators.state();
    let (total, healthy, unhealthy) = count_validators(
        state.iter().filter_map(|g| g.0.as_ref().ok()),
        &namespace,
        &name,
    );
    status.validators = total;
    status.healthy = healthy;
    status.unhealthy = unhealthy;

    let want = match crate::policy::validate(&policy.spec) {
        Ok(_) => Desired::new(
            kind::READY,
            Status::True,
            reason::VALID,
            format!("Policy accepted; it governs {total} validator(s)"),
        ),
        Err(problems) => Desired::new(
            kind::READY,
            Status::False,
            reason::INVALID_SPEC,
            problems.to_string(),
        ),
    };
    let change = conditions::set(
        &mut status.conditions,
        want.clone(),
        policy.meta().generation,
        &conditions::now(),
    );
    let key = (namespace, name);
    if let Some(cur) = &current
        && counts_only(cur, &status)
    {
        let last = ctx
            .counts_written
            .lock()
            .expect("counts cache")
            .get(&key)
            .copied();
        if let Err(wait) = counts_due(last, Instant::now()) {
            return Ok(Action::requeue(wait));
        }
    }
    if ctx
        .writer
        .apply_changed(policy, current.as_ref(), &status)
        .await?
    {
        let mut written = ctx.counts_written.lock().expect("counts cache");
        // An entry older than COUNTS_EVERY no longer holds a write back: dropping those keeps
        // the cache to recently written policies (deleted ones leave it too).
        written.retain(|_, at| at.elapsed() < COUNTS_EVERY);
        written.insert(key, Instant::now());
    }
    tell_change(ctx, &policy.object_ref(&()), &change, &want);
    Ok(Action::await_change())
}

/// Shortest time between two writes of a policy that change only its counts. In a busy
/// fleet validators change state many times a second; writing the counts on each would
/// load the API server and keep the policy's resourceVersion moving under every other
/// writer of its status (alerts, advice, the fleet incident).
pub const COUNTS_EVERY: Duration = Duration::from_secs(5);

/// Whether `new` differs from `current` only in the counts (and the count in `Ready`'s
/// message): no generation, condition status or reason changed.
fn counts_only(current: &MonitorPolicyStatus, new: &MonitorPolicyStatus) -> bool {
    let strip = |s: &MonitorPolicyStatus| {
        let mut s = s.clone();
        (s.validators, s.healthy, s.unhealthy) = (0, 0, 0);
        for c in &mut s.conditions {
            c.message.clear();
        }
        s
    };
    strip(current) == strip(new)
}

/// Whether counts may be written now, given the last counts write: `Err(wait)` until
/// [`COUNTS_EVERY`] has passed since.
fn counts_due(last: Option<Instant>, now: Instant) -> Result<(), Duration> {
    match last.map(|l| now.saturating_duration_since(l)) {
        Some(since) if since < COUNTS_EVERY => Err(COUNTS_EVERY - since),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MonitoredValidatorSpec;

    fn status(
        total: u32,
        healthy: u32,
        generation: i64,
        ready: &str,
        msg: &str,
    ) -> MonitorPolicyStatus {
        let mut s = MonitorPolicyStatus {
            validators: total,
            healthy,
            unhealthy: total - healthy,
            observed_generation: Some(generation),
            ..Default::default()
        };
        let want = Desired::new(
            kind::READY,
            if ready == "True" {
                Status::True
            } else {
                Status::False
            },
            reason::VALID,
            msg,
        );
        conditions::set(
            &mut s.conditions,
            want,
            Some(generation),
            &conditions::now(),
        );
        s
    }

    #[test]
    fn only_a_change_of_counts_waits() {
        let base = status(10, 8, 1, "True", "governs 10");
        let cases = [
            ("same", base.clone(), true),
            (
                "healthy count",
                status(10, 3, 1, "True", "governs 10"),
                true,
            ),
            (
                "total and its message",
                status(11, 8, 1, "True", "governs 11"),
                true,
            ),
            (
                "new generation",
                status(10, 8, 2, "True", "governs 10"),
                false,
            ),
            (
                "Ready turns False",
                status(10, 8, 1, "False", "governs 10"),
                false,
            ),
        ];
        for (what, new, want) in cases {
            assert_eq!(counts_only(&base, &new), want, "{what}");
        }
    }

    #[test]
    fn counts_are_written_at_most_once_per_interval() {
        let now = Instant::now();
        let s = Duration::from_secs;
        let cases = [
            (None, Ok(())),
            (Some(now), Err(COUNTS_EVERY)),
            (Some(now - s(2)), Err(COUNTS_EVERY - s(2))),
            (Some(now - COUNTS_EVERY), Ok(())),
            (Some(now - s(60)), Ok(())),
        ];
        for (last, want) in cases {
            assert_eq!(counts_due(last, now), want, "{last:?}");
        }
    }

    #[test]
    fn counts_only_this_policys_validators_by_ready() {
        let v = |ns: &str, policy: &str, ready: Option<&str>| {
            let spec: MonitoredValidatorSpec = serde_yaml::from_str(&format!(
                "{{chain: tcp, endpoints: {{tcp: 'h:1'}}, policyRef: {{name: {policy}}}}}"
            ))
            .unwrap();
            let mut mv = MonitoredValidator::new("v", spec);
            mv.metadata.namespace = Some(ns.into());
            mv.status = ready.map(|r| crate::api::MonitoredValidatorStatus {
                conditions: vec![crate::api::Condition {
                    type_: kind::READY.into(),
                    status: r.into(),
                    reason: "R".into(),
                    message: String::new(),
                    observed_generation: None,
                    last_transition_time: conditions::now(),
                }],
                ..Default::default()
            });
            mv
        };
        let all = [
            v("a", "p", Some("True")),
            v("a", "p", Some("False")),
            v("a", "p", None),
            v("a", "other", Some("True")),
            v("b", "p", Some("True")),
        ];
        assert_eq!(count_validators(all.iter(), "a", "p"), (3, 1, 1));
    }
}
