//! The MonitorPolicy controller: validates the policy and counts the validators it governs.

use super::{Ctx, Error, event_for_change};
use crate::api::{MonitorPolicy, MonitorPolicySpec, MonitorPolicyStatus, MonitoredValidator};
use crate::conditions::{self, Desired};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use std::sync::Arc;

/// The kind name used in metrics and logs.
pub const KIND: &str = "MonitorPolicy";

/// Checks what the schema cannot: every duration parses in Vigil's own parser and the
/// cross-field orders hold. Returns the problems, each a sentence for people.
pub fn validate(spec: &MonitorPolicySpec) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let mut dur = |field: &str, d: &crate::api::Dur| match d.parse() {
        Ok(v) => Some(v),
        Err(e) => {
            problems.push(format!("{field}: {e}"));
            None
        }
    };
    let interval = dur("probe.interval", &spec.probe.interval);
    let timeout = dur("probe.timeout", &spec.probe.timeout);
    dur("health.maxBlockStall", &spec.health.max_block_stall);
    if let Some(l) = &spec.health.max_probe_latency {
        dur("health.maxProbeLatency", l);
    }
    let r = &spec.remediation;
    dur("remediation.window", &r.window);
    let cooldown = dur("remediation.cooldown", &r.cooldown);
    let max_cooldown = dur("remediation.maxCooldown", &r.max_cooldown);
    dur("remediation.healthyResetAfter", &r.healthy_reset_after);
    for (name, c) in &r.ssh_commands {
        dur(
            &format!("remediation.sshCommands.{name}.timeout"),
            &c.timeout,
        );
    }
    for (i, rule) in spec.alerts.rules.iter().enumerate() {
        dur(
            &format!("alerts.rules[{i}].repeatInterval"),
            &rule.repeat_interval,
        );
    }
    if let (Some(i), Some(t)) = (interval, timeout)
        && t >= i
    {
        problems.push("probe.timeout must be shorter than probe.interval".into());
    }
    if let (Some(c), Some(m)) = (cooldown, max_cooldown)
        && c > m
    {
        problems.push("remediation.cooldown must not exceed remediation.maxCooldown".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

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
            .and_then(|s| conditions::get(&s.conditions, "Ready"))
            .map(|c| c.status.as_str());
        match ready {
            Some("True") => healthy += 1,
            Some("False") => unhealthy += 1,
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
    // The fleet incident and `StormActive` belong to the monitor (their own field managers):
    // leave them out, so this apply neither takes them over nor removes them.
    let current = policy.status.clone().map(|mut s| {
        s.fleet_incident = None;
        s.conditions.retain(|c| c.type_ == "Ready");
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

    let want = match validate(&policy.spec) {
        Ok(()) => Desired {
            type_: "Ready",
            status: "True",
            reason: "Valid",
            message: format!("Policy accepted; it governs {total} validator(s)"),
        },
        Err(problems) => Desired {
            type_: "Ready",
            status: "False",
            reason: "InvalidSpec",
            message: problems.join("; "),
        },
    };
    let (st, reason) = (want.status, want.reason);
    let message = want.message.clone();
    let change = conditions::set(
        &mut status.conditions,
        want,
        policy.meta().generation,
        &conditions::now(),
    );
    ctx.write_status(policy, current.as_ref(), &status).await?;
    event_for_change(ctx, &policy.object_ref(&()), &change, st, reason, &message).await;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Dur, Timeout};

    #[test]
    fn defaults_are_valid() {
        assert_eq!(validate(&MonitorPolicySpec::default()), Ok(()));
    }

    #[test]
    fn cross_field_orders_are_checked() {
        let mut spec = MonitorPolicySpec::default();
        spec.probe.timeout = Timeout::new("30s");
        spec.remediation.cooldown = Dur::new("2h");
        let problems = validate(&spec).unwrap_err();
        assert!(
            problems.iter().any(|p| p.contains("probe.timeout")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("maxCooldown")),
            "{problems:?}"
        );
    }

    #[test]
    fn unparsable_durations_name_the_field() {
        let mut spec = MonitorPolicySpec::default();
        spec.remediation.window = Dur::new("3 days");
        let problems = validate(&spec).unwrap_err();
        assert!(
            problems[0].starts_with("remediation.window:"),
            "{problems:?}"
        );
    }
}
