//! The MonitoredValidator controller. In this version it validates the object (its policy
//! resolves and is valid) and publishes a first honest `Ready` condition.

use super::{Ctx, Error};
use crate::api::{MonitorPolicy, MonitorPolicySpec, MonitoredValidator};
use crate::conditions::Desired;
use crate::monitor::Config;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
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
    Ok(lookup_policy(ctx, namespace, name).await?.0)
}

/// The policy's state and, when valid, its spec.
pub async fn lookup_policy(
    ctx: &Ctx,
    namespace: &str,
    name: &str,
) -> Result<(PolicyState, Option<MonitorPolicySpec>), Error> {
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
        None => (PolicyState::Missing, None),
        Some(Err(decode)) => (PolicyState::Invalid(decode), None),
        Some(Ok(p)) => match super::policy::validate(&p.spec) {
            Ok(()) => (PolicyState::Valid, Some(p.spec)),
            Err(problems) => (PolicyState::Invalid(problems.join("; ")), None),
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
    // The monitor owns the validator's status: it probes a validator whose policy is valid,
    // and shows why it does not otherwise.
    match lookup_policy(ctx, &namespace, policy_name).await? {
        (PolicyState::Valid, Some(spec)) => match Config::new(mv, &spec) {
            Ok(config) => ctx.monitor.watch(mv, config).await,
            Err(why) => {
                let ready = Desired {
                    type_: "Ready",
                    status: "False",
                    reason: "InvalidSpec",
                    message: format!("Cannot probe this validator: {why}"),
                };
                ctx.monitor.block(mv, ready).await;
            }
        },
        (state, _) => {
            ctx.monitor
                .block(mv, initial_ready(policy_name, &namespace, &state))
                .await
        }
    }
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
