//! The MonitorPolicy controller: validates the policy ([`crate::policy::validate`], the one
//! validation every consumer uses) and counts the validators it governs.

use super::{Ctx, Error, tell_change};
use crate::api::{MonitorPolicy, MonitorPolicyStatus, MonitoredValidator};
use crate::conditions::{self, Desired, Status, kind, reason};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use std::sync::Arc;

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
    ctx.writer
        .apply_changed(policy, current.as_ref(), &status)
        .await?;
    tell_change(ctx, &policy.object_ref(&()), &change, &want);
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MonitoredValidatorSpec;

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
