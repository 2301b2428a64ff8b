//! The PipelineRun controller. In this version it validates the run (step graph, Job
//! templates, policy) and publishes a first honest `Succeeded` condition.

use super::{Ctx, Error, tell_change};
use crate::api::{PipelineRun, PipelineRunStatus, StepPhase, StepStatus};
use crate::conditions::{self, Desired, Status, kind, reason};
use crate::controller::validator::{PolicyState, policy_state};
use crate::pipeline::dag;
use k8s_openapi::api::batch::v1::JobSpec;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use std::sync::Arc;

/// The kind name used in metrics and logs.
pub const KIND: &str = "PipelineRun";

/// Problems with a run's spec that the schema cannot catch, each a sentence for people.
pub fn validate(run: &PipelineRun) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = dag::check(&run.spec.steps) {
        problems.push(e.to_string());
    }
    for step in &run.spec.steps {
        if let Err(e) =
            serde_json::from_value::<JobSpec>(serde_json::Value::Object(step.template.0.clone()))
        {
            problems.push(format!(
                "step {:?}: template is not a valid JobSpec: {e}",
                step.name
            ));
        }
    }
    problems
}

/// The `Succeeded` condition of a run that has not started.
pub fn initial_succeeded(problems: &[String], policy: Option<(&str, &PolicyState)>) -> Desired {
    if !problems.is_empty() {
        return Desired::new(
            kind::SUCCEEDED,
            Status::False,
            reason::INVALID_SPEC,
            problems.join("; "),
        );
    }
    match policy {
        Some((name, PolicyState::Missing)) => Desired::new(
            kind::SUCCEEDED,
            Status::Unknown,
            reason::POLICY_NOT_FOUND,
            format!("Waiting for MonitorPolicy {name:?} (spec.policyRef) before starting"),
        ),
        Some((name, PolicyState::Invalid(why))) => Desired::new(
            kind::SUCCEEDED,
            Status::Unknown,
            reason::POLICY_INVALID,
            format!("Waiting for MonitorPolicy {name:?} to become valid: {why}"),
        ),
        _ => Desired::new(
            kind::SUCCEEDED,
            Status::Unknown,
            reason::PENDING,
            "Run accepted; no step has started yet",
        ),
    }
}

/// Reconciles one run.
pub async fn reconcile(obj: Arc<DeserializeGuard<PipelineRun>>, ctx: Ctx) -> Result<Action, Error> {
    super::instrumented(&obj, &ctx, async |o| reconcile_valid(o, &ctx).await).await
}

async fn reconcile_valid(run: &PipelineRun, ctx: &Ctx) -> Result<Action, Error> {
    let namespace = run.namespace().unwrap_or_default();
    let problems = validate(run);
    let policy = match &run.spec.policy_ref {
        Some(r) => Some((
            r.name.as_str(),
            policy_state(ctx, &namespace, &r.name).await?,
        )),
        None => None,
    };
    let want = initial_succeeded(&problems, policy.as_ref().map(|(n, s)| (*n, s)));

    // Alert records belong to the alerter (its own field manager).
    let current = run.status.clone().map(|mut s| {
        s.alerts.clear();
        s
    });
    let mut status: PipelineRunStatus = current.clone().unwrap_or_default();
    status.observed_generation = run.meta().generation;
    if status.steps.is_empty() {
        status.steps = run
            .spec
            .steps
            .iter()
            .map(|s| StepStatus {
                name: s.name.clone(),
                phase: StepPhase::Pending,
                ..Default::default()
            })
            .collect();
    }
    let done = status
        .steps
        .iter()
        .filter(|s| s.phase == StepPhase::Succeeded)
        .count();
    status.progress = Some(format!("{done}/{}", run.spec.steps.len()));
    let change = conditions::set(
        &mut status.conditions,
        want.clone(),
        run.meta().generation,
        &conditions::now(),
    );
    ctx.writer
        .apply_changed(run, current.as_ref(), &status)
        .await?;
    tell_change(ctx, &run.object_ref(&()), &change, &want);
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_win_over_everything() {
        let d = initial_succeeded(&["cycle".into()], Some(("p", &PolicyState::Missing)));
        assert_eq!((d.status, d.reason), (Status::False, reason::INVALID_SPEC));
    }

    #[test]
    fn a_missing_policy_holds_the_run() {
        let d = initial_succeeded(&[], Some(("alerts", &PolicyState::Missing)));
        assert_eq!(
            (d.status, d.reason),
            (Status::Unknown, reason::POLICY_NOT_FOUND)
        );
        let d = initial_succeeded(&[], None);
        assert_eq!((d.status, d.reason), (Status::Unknown, reason::PENDING));
    }

    #[test]
    fn bad_job_templates_are_named() {
        let run: PipelineRun = serde_json::from_value(serde_json::json!({
            "apiVersion": "vigil.dev/v1alpha1", "kind": "PipelineRun",
            "metadata": {"name": "r"},
            "spec": {"steps": [{"name": "build", "template": {"template": {}, "parallelism": "lots"}}]}
        }))
        .unwrap();
        let problems = validate(&run);
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with("step \"build\": template is not a valid JobSpec"),
            "{problems:?}"
        );
    }
}
