//! The PipelineRun controller: validate → plan (pure, `crate::pipeline::plan`) → act on
//! Jobs → record status → tell; then, once the run ended, archive → verify → clean up
//! (`crate::pipeline::lifecycle` decides, `archive` carries it out). Watch-driven: the
//! run's Jobs are owned (`.owns()`), so a Job finishing wakes its run at once; timers only
//! for timeouts, stalls, backoff and TTLs.

mod archive;
mod jobs;

use super::{Ctx, Error, tell_change};
use crate::api::{PipelineRun, PipelineRunStatus, StepPhase};
use crate::conditions::{self, Desired, Status, kind, reason};
use crate::controller::validator::{PolicyState, policy_state};
use crate::notice::{Notice, What};
use crate::pipeline::lifecycle;
use crate::pipeline::{dag, plan};
use crate::status::{Manager, WriteError};
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use jobs::{RUN_LABEL, STEP_LABEL};

/// The kind name used in metrics and logs.
pub const KIND: &str = "PipelineRun";

/// Problems with a run's spec that the schema cannot catch, each a sentence for people.
/// (A step's template that cannot become a Job is reported on its step instead.)
pub fn validate(run: &PipelineRun) -> Vec<String> {
    match dag::check(&run.spec.steps) {
        Ok(_) => Vec::new(),
        Err(e) => vec![e.to_string()],
    }
}

/// The `Succeeded` condition of a run that cannot start.
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

/// The recorded status without what other managers own (alert records).
fn own_status(run: &PipelineRun) -> Option<PipelineRunStatus> {
    run.status.clone().map(|mut s| {
        s.alerts.clear();
        s
    })
}

async fn reconcile_valid(run: &PipelineRun, ctx: &Ctx) -> Result<Action, Error> {
    let namespace = run.namespace().unwrap_or_default();
    let deleting = run.meta().deletion_timestamp.is_some();
    let current = own_status(run);
    let recorded = current.clone().unwrap_or_default();
    let started = recorded.start_time.is_some() || plan::finished(&recorded);

    // A run that never started may wait for its policy; one with a cycle never starts.
    let problems = validate(run);
    let policy = match &run.spec.policy_ref {
        Some(r) if !started => Some((
            r.name.as_str(),
            policy_state(ctx, &namespace, &r.name).await?,
        )),
        _ => None,
    };
    let hold = initial_succeeded(&problems, policy.as_ref().map(|(n, s)| (*n, s)));
    if !started && (hold.status == Status::False || hold.reason != reason::PENDING) {
        let mut status = recorded.clone();
        status.observed_generation = run.meta().generation;
        status.progress = Some(format!("0/{}", run.spec.steps.len()));
        let change = conditions::set(
            &mut status.conditions,
            hold.clone(),
            run.meta().generation,
            &conditions::now(),
        );
        ctx.writer
            .apply_changed(run, current.as_ref(), &status)
            .await?;
        tell_change(ctx, &run.object_ref(&()), &change, &hold);
        if deleting {
            // Nothing ran, nothing to archive.
            archive::remove_finalizer(ctx, run).await?;
        }
        return Ok(Action::await_change());
    }

    // Plan against the Jobs as they are.
    let owned = jobs::list(ctx, run).await?;
    let mut views: HashMap<String, plan::JobView> = HashMap::new();
    for job in &owned {
        if let Some((step, mut view)) = jobs::view(job) {
            let recorded_running = recorded.steps.iter().any(|s| {
                s.name == step && matches!(s.phase, StepPhase::Running | StepPhase::Pending)
            });
            if view.state != plan::JobState::Active && recorded_running {
                view.exit_code = jobs::exit_code(ctx, &namespace, &view.name).await;
            }
            views.insert(step, view);
        }
    }
    let mut invalid: HashMap<String, String> = HashMap::new();
    let heartbeat = run.annotations().get(plan::HEARTBEAT).map(String::as_str);
    let uid = run.uid().unwrap_or_default();
    let name = run.name_any();
    let make = |views: &HashMap<String, plan::JobView>, invalid: &HashMap<String, String>| {
        plan::plan(
            plan::Observed {
                spec: &run.spec,
                status: &recorded,
                jobs: views,
                invalid,
                heartbeat,
                deleting,
                generation: run.meta().generation,
                now: jiff::Timestamp::now(),
            },
            &name,
            &uid,
        )
    };
    let mut p = make(&views, &invalid);
    // Create what is ready; a template the API refuses fails its step (and so the run).
    let mut refused = false;
    for (i, job_name) in &p.create {
        let step = &run.spec.steps[*i];
        match jobs::create(ctx, run, step, job_name).await? {
            Ok(view) => {
                views.insert(step.name.clone(), view);
            }
            Err(why) => {
                invalid.insert(step.name.clone(), why);
                refused = true;
            }
        }
    }
    if refused {
        p = make(&views, &invalid);
    }
    for job in &p.stop {
        jobs::stop(ctx, &namespace, job).await?;
    }

    // Record what was decided and done, then tell of it.
    let mut status = p.status.clone();
    let now = conditions::now();
    let before = conditions::get(&recorded.conditions, kind::SUCCEEDED).map(|c| c.reason.clone());
    let change = conditions::set(
        &mut status.conditions,
        p.succeeded.clone(),
        run.meta().generation,
        &now,
    );
    let written = if current.as_ref() != Some(&status) {
        let fence = run.resource_version();
        match ctx
            .writer
            .apply::<PipelineRun, _>(&namespace, &name, Manager::Vigil, &status, fence.as_deref())
            .await
        {
            Ok(obj) => Some(obj),
            // Someone wrote since: plan again on the fresh object (Jobs are idempotent).
            Err(WriteError::Conflict) => return Ok(Action::requeue(Duration::from_millis(200))),
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    for c in &p.changes {
        let warning = matches!(
            c.phase,
            StepPhase::Failed | StepPhase::TimedOut | StepPhase::Cancelled
        );
        ctx.notices.publish(
            Notice::new(
                run.object_ref(&()),
                What::StepChanged,
                format!("Step{}", phase_word(c.phase)),
                format!("Step {}: {}", c.step, c.message),
            )
            .warning(warning)
            .action("Reconcile"),
        );
    }
    // Running ↔ Stalled keeps the status Unknown: still news.
    let change = match change {
        conditions::Change::Updated if before.as_deref() != Some(p.succeeded.reason) => {
            conditions::Change::Transitioned { from: None }
        }
        c => c,
    };
    tell_change(ctx, &run.object_ref(&()), &change, &p.succeeded);

    // After the end: archive, verify, clean up.
    let fresh = written.unwrap_or_else(|| run.clone());
    let after = archive::lifecycle(ctx, &fresh, &status, p.finished(), deleting).await?;
    Ok(match (p.requeue, after) {
        (Some(a), Some(b)) => Action::requeue(a.min(b)),
        (Some(a), None) | (None, Some(a)) => Action::requeue(a),
        (None, None) => Action::await_change(),
    })
}

fn phase_word(p: StepPhase) -> &'static str {
    match p {
        StepPhase::Pending => "Pending",
        StepPhase::Running => "Started",
        StepPhase::Succeeded => "Succeeded",
        StepPhase::Failed => "Failed",
        StepPhase::TimedOut => "TimedOut",
        StepPhase::Skipped => "Skipped",
        StepPhase::Cancelled => "Cancelled",
    }
}

/// Merge-patches the run's finalizers, fenced by the resourceVersion it was decided on.
async fn set_finalizers(
    ctx: &Ctx,
    run: &PipelineRun,
    finalizers: Vec<String>,
) -> Result<(), Error> {
    let api: Api<PipelineRun> =
        Api::namespaced(ctx.client.clone(), &run.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "metadata": {
            "resourceVersion": run.resource_version(),
            "finalizers": finalizers,
        }
    });
    match api
        .patch(
            &run.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// What `Next` a run is at, for the archive shell.
fn seen<'a>(
    run: &'a PipelineRun,
    status: &'a PipelineRunStatus,
    finished: bool,
    deleting: bool,
) -> lifecycle::Seen<'a> {
    lifecycle::Seen {
        archive: run.spec.archive.as_ref(),
        status,
        finished,
        has_finalizer: run.finalizers().iter().any(|f| f == lifecycle::FINALIZER),
        deleting,
        skip: run
            .annotations()
            .get(lifecycle::SKIP_ARCHIVE)
            .map(String::as_str),
        now: jiff::Timestamp::now(),
    }
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
    fn a_cycle_is_named() {
        let run: PipelineRun = serde_json::from_value(serde_json::json!({
            "apiVersion": "vigil.dev/v1alpha1", "kind": "PipelineRun",
            "metadata": {"name": "r"},
            "spec": {"steps": [
                {"name": "a", "runAfter": ["b"], "template": {"template": {}}},
                {"name": "b", "runAfter": ["a"], "template": {"template": {}}}
            ]}
        }))
        .unwrap();
        let problems = validate(&run);
        assert_eq!(
            problems,
            vec!["steps wait on each other in a cycle: a -> b -> a"]
        );
    }
}
