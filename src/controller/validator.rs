//! The MonitoredValidator controller. In this version it validates the object (its policy
//! resolves and is valid) and publishes a first honest `Ready` condition.

use super::{Ctx, Error, event_for_change};
use crate::api::{MonitorPolicy, MonitoredValidator, MonitoredValidatorStatus};
use crate::conditions::{self, Desired};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use std::sync::Arc;

/// The kind name used in metrics and logs.
pub const KIND: &str = "MonitoredValidator";

/// What is known about the policy a validator points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyState {
    /// The policy exists and is valid.
    Valid,
    /// The policy exists but its spec is refused (message says why).
    Invalid(String),
    /// No policy of that name in the namespace.
    Missing,
}

/// The `Ready` condition a validator gets before any probe has run.
pub fn initial_ready(policy_name: &str, namespace: &str, policy: &PolicyState) -> Desired<'static> {
    match policy {
        PolicyState::Valid => Desired {
            type_: "Ready",
            status: "Unknown",
            reason: "Pending",
            message: format!(
                "Governed by MonitorPolicy {policy_name:?}; waiting for the first probe"
            ),
        },
        PolicyState::Invalid(why) => Desired {
            type_: "Ready",
            status: "False",
            reason: "PolicyInvalid",
            message: format!("MonitorPolicy {policy_name:?} is invalid: {why}"),
        },
        PolicyState::Missing => Desired {
            type_: "Ready",
            status: "False",
            reason: "PolicyNotFound",
            message: format!(
                "MonitorPolicy {policy_name:?} not found in namespace {namespace:?}; create it or fix spec.policyRef.name"
            ),
        },
    }
}

/// Looks a policy up in the cache, and asks the API server when the cache does not have it
/// (the cache may still be filling right after a start).
pub async fn policy_state(ctx: &Ctx, namespace: &str, name: &str) -> Result<PolicyState, Error> {
    let key = ObjectRef::<DeserializeGuard<MonitorPolicy>>::new(name).within(namespace);
    let policy = match ctx.policies.get(&key) {
        Some(p) => Some(p.0.clone().map_err(|e| e.error)),
        None => {
            let api: Api<DeserializeGuard<MonitorPolicy>> =
                Api::namespaced(ctx.client.clone(), namespace);
            api.get_opt(name).await?.map(|p| p.0.map_err(|e| e.error))
        }
    };
    Ok(match policy {
        None => PolicyState::Missing,
        Some(Err(decode)) => PolicyState::Invalid(decode),
        Some(Ok(p)) => match super::policy::validate(&p.spec) {
            Ok(()) => PolicyState::Valid,
            Err(problems) => PolicyState::Invalid(problems.join("; ")),
        },
    })
}

/// Reconciles one validator.
pub async fn reconcile(
    obj: Arc<DeserializeGuard<MonitoredValidator>>,
    ctx: Ctx,
) -> Result<Action, Error> {
    super::instrumented(&obj, &ctx, async |o| reconcile_valid(o, &ctx).await).await
}

async fn reconcile_valid(mv: &MonitoredValidator, ctx: &Ctx) -> Result<Action, Error> {
    let namespace = mv.namespace().unwrap_or_default();
    let policy_name = &mv.spec.policy_ref.name;
    let policy = policy_state(ctx, &namespace, policy_name).await?;

    let mut status: MonitoredValidatorStatus = mv.status.clone().unwrap_or_default();
    status.observed_generation = mv.meta().generation;
    let want = initial_ready(policy_name, &namespace, &policy);
    let (st, reason, message) = (want.status, want.reason, want.message.clone());
    let change = conditions::set(
        &mut status.conditions,
        want,
        mv.meta().generation,
        &conditions::now(),
    );
    ctx.write_status(mv, mv.status.as_ref(), &status).await?;
    event_for_change(ctx, &mv.object_ref(&()), &change, st, reason, &message).await;
    // A missing policy is noticed through the policy watch; nothing to poll.
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_policy_means_pending_until_probed() {
        let d = initial_ready("p", "ns", &PolicyState::Valid);
        assert_eq!((d.status, d.reason), ("Unknown", "Pending"));
    }

    #[test]
    fn missing_policy_says_what_to_do() {
        let d = initial_ready("main", "chain-a", &PolicyState::Missing);
        assert_eq!((d.status, d.reason), ("False", "PolicyNotFound"));
        assert!(
            d.message.contains("\"main\"")
                && d.message.contains("\"chain-a\"")
                && d.message.contains("policyRef")
        );
    }

    #[test]
    fn invalid_policy_is_reported_with_the_reason() {
        let d = initial_ready(
            "p",
            "ns",
            &PolicyState::Invalid("cooldown above maxCooldown".into()),
        );
        assert_eq!((d.status, d.reason), ("False", "PolicyInvalid"));
        assert!(d.message.contains("cooldown above maxCooldown"));
    }
}
