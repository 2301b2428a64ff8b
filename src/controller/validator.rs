//! The MonitoredValidator controller: resolves the validator's policy (validated once, the
//! same value the policy shows), builds its typed config, and hands it to the monitor; or
//! shows why it cannot be probed.

use super::{Ctx, Error};
use crate::api::{MonitorPolicy, MonitoredValidator};
use crate::conditions::{Desired, Status, kind, reason};
use crate::monitor::Config;
use crate::policy::Policy;
use kube::ResourceExt;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
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
pub fn initial_ready(policy_name: &str, namespace: &str, policy: &PolicyState) -> Desired {
    match policy {
        PolicyState::Valid => Desired::new(
            kind::READY,
            Status::Unknown,
            reason::PENDING,
            format!("Governed by MonitorPolicy {policy_name:?}; waiting for the first probe"),
        ),
        // The policy's own `Ready` message, word for word.
        PolicyState::Invalid(why) => Desired::new(
            kind::READY,
            Status::False,
            reason::POLICY_INVALID,
            format!("MonitorPolicy {policy_name:?} is invalid: {why}"),
        ),
        PolicyState::Missing => Desired::new(
            kind::READY,
            Status::False,
            reason::POLICY_NOT_FOUND,
            format!(
                "MonitorPolicy {policy_name:?} not found in namespace {namespace:?}; create it or fix spec.policyRef.name"
            ),
        ),
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
) -> Result<(PolicyState, Option<Policy>), Error> {
    let key = ObjectRef::<DeserializeGuard<MonitorPolicy>>::new(name).within(namespace);
    let policy = match ctx.policies.get(&key) {
        Some(p) => Some(p.0.clone().map_err(|e| e.error)),
        None => {
            // Bounded like every other call (a stalled read must not hang the reconcile).
            let p = ctx
                .writer
                .read::<DeserializeGuard<MonitorPolicy>>(namespace, name)
                .await?;
            p.map(|p| p.0.map_err(|e| e.error))
        }
    };
    Ok(match policy {
        None => (PolicyState::Missing, None),
        Some(Err(decode)) => (PolicyState::Invalid(decode), None),
        Some(Ok(p)) => match crate::policy::validate(&p.spec) {
            Ok(policy) => (PolicyState::Valid, Some(policy)),
            Err(problems) => (PolicyState::Invalid(problems.to_string()), None),
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
        (PolicyState::Valid, Some(policy)) => match Config::new(mv, &policy) {
            Ok(config) => ctx.monitor.watch(mv, config).await,
            Err(why) => {
                let ready = Desired::new(
                    kind::READY,
                    Status::False,
                    reason::INVALID_SPEC,
                    format!("Cannot probe this validator: {why}"),
                );
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
        assert_eq!((d.status, d.reason), (Status::Unknown, reason::PENDING));
    }

    #[test]
    fn missing_policy_says_what_to_do() {
        let d = initial_ready("main", "chain-a", &PolicyState::Missing);
        assert_eq!(
            (d.status, d.reason),
            (Status::False, reason::POLICY_NOT_FOUND)
        );
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
        assert_eq!(
            (d.status, d.reason),
            (Status::False, reason::POLICY_INVALID)
        );
        assert!(d.message.contains("cooldown above maxCooldown"));
    }
}
