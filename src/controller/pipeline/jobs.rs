//! The Kubernetes side of a run's steps: its Jobs (found by label, owned by the run),
//! what they say, creating and stopping them. Every call is bounded.

use super::Ctx;
use crate::api::{PipelineRun, Step};
use crate::controller::Error;
use crate::pipeline::plan::{self, JobState, JobView};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Resource, ResourceExt};
use std::time::Duration;

/// Label on a run's Jobs (and their pods): the run's name.
pub const RUN_LABEL: &str = "vigil.dev/pipelinerun";
/// Label on a run's Jobs (and their pods): the step's name.
pub const STEP_LABEL: &str = "vigil.dev/step";
/// The label the Job controller puts on a Job's pods.
const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// Longest a Job or pod call may take.
const API_TIMEOUT: Duration = Duration::from_secs(20);

async fn bounded<T>(
    f: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(API_TIMEOUT, f).await {
        Ok(r) => r.map_err(Error::Kube),
        Err(_) => Err(Error::Kube(kube::Error::Service(
            format!("no answer within {API_TIMEOUT:?}").into(),
        ))),
    }
}

/// The run's Jobs: labelled with its name and owned by this very object (its UID).
pub async fn list(ctx: &Ctx, run: &PipelineRun) -> Result<Vec<Job>, Error> {
    let ns = run.namespace().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let lp = ListParams::default().labels(&format!("{RUN_LABEL}={}", run.name_any()));
    let uid = run.uid();
    let jobs = bounded(api.list(&lp)).await?;
    Ok(jobs
        .items
        .into_iter()
        .filter(|j| {
            j.owner_references()
                .iter()
                .any(|o| Some(&o.uid) == uid.as_ref())
        })
        .collect())
}

/// A Job as the plan sees it, keyed by its step.
pub fn view(job: &Job) -> Option<(String, JobView)> {
    let step = job.labels().get(STEP_LABEL)?.clone();
    let created = job
        .meta()
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or_else(jiff::Timestamp::now);
    let conds = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let terminal = conds
        .iter()
        .find(|c| c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed"));
    let (state, finished) = match terminal {
        Some(c) if c.type_ == "Complete" => (
            JobState::Succeeded,
            job.status
                .as_ref()
                .and_then(|s| s.completion_time.as_ref())
                .or(c.last_transition_time.as_ref())
                .map(|t| t.0),
        ),
        Some(c) => {
            let why = match (c.reason.as_deref(), c.message.as_deref()) {
                (Some(r), Some(m)) => format!("{r}: {m}"),
                (Some(r), None) => r.to_string(),
                (None, Some(m)) => m.to_string(),
                (None, None) => "the Job failed".into(),
            };
            (
                JobState::Failed(why),
                c.last_transition_time.as_ref().map(|t| t.0),
            )
        }
        None => (JobState::Active, None),
    };
    Some((
        step,
        JobView {
            name: job.name_any(),
            created,
            state,
            finished,
            exit_code: None,
            heartbeat: job.annotations().get(plan::HEARTBEAT).cloned(),
        },
    ))
}

/// The exit code of a finished Job's last pod, when a pod says.
pub async fn exit_code(ctx: &Ctx, ns: &str, job: &str) -> Option<i32> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let lp = ListParams::default().labels(&format!("{JOB_NAME_LABEL}={job}"));
    let pods = bounded(api.list(&lp)).await.ok()?;
    pods.items
        .iter()
        .filter_map(|p| {
            let cs = p.status.as_ref()?.container_statuses.as_ref()?;
            cs.iter()
                .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
                .map(|t| (t.finished_at.as_ref().map(|f| f.0), t.exit_code))
                .max_by_key(|(at, _)| *at)
        })
        .max_by_key(|(at, _)| *at)
        .map(|(_, code)| code)
}

/// The Job of a step: its template's JobSpec, named and labelled, owned by the run.
pub fn build(run: &PipelineRun, step: &Step, name: &str) -> Result<Job, String> {
    let mut spec: JobSpec =
        serde_json::from_value(serde_json::Value::Object(step.template.0.clone()))
            .map_err(|e| format!("not a valid JobSpec: {e}"))?;
    let labels = [
        (RUN_LABEL.to_string(), run.name_any()),
        (STEP_LABEL.to_string(), step.name.clone()),
    ];
    let pod_meta = spec
        .template
        .metadata
        .get_or_insert_with(ObjectMeta::default);
    pod_meta
        .labels
        .get_or_insert_with(Default::default)
        .extend(labels.clone());
    // The Job's own name label on pods is the Job controller's; a template setting a
    // selector by hand would fight it.
    spec.manual_selector = None;
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: run.namespace(),
            labels: Some(labels.into_iter().collect()),
            owner_references: run.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    })
}

/// Creates a step's Job. `Ok(Err(why))`: the template cannot become a Job (the API server
/// refused it); the step fails with that reason.
pub async fn create(
    ctx: &Ctx,
    run: &PipelineRun,
    step: &Step,
    name: &str,
) -> Result<Result<JobView, String>, Error> {
    let job = match build(run, step, name) {
        Ok(j) => j,
        Err(why) => return Ok(Err(why)),
    };
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &run.namespace().unwrap_or_default());
    let created = match bounded(api.create(&PostParams::default(), &job)).await {
        Ok(j) => j,
        // Created by an earlier reconcile whose status write did not land: the same Job.
        Err(Error::Kube(kube::Error::Api(s))) if s.code == 409 => {
            match bounded(api.get_opt(name)).await? {
                Some(j) => j,
                None => return Err(Error::Kube(kube::Error::Api(s))),
            }
        }
        Err(Error::Kube(kube::Error::Api(s))) if s.code == 422 || s.code == 400 => {
            return Ok(Err(format!(
                "the API server refused the Job: {}",
                s.message
            )));
        }
        Err(e) => return Err(e),
    };
    Ok(Ok(view(&created).map(|(_, v)| v).unwrap_or_else(|| {
        JobView {
            name: name.to_string(),
            created: jiff::Timestamp::now(),
            state: JobState::Active,
            finished: None,
            exit_code: None,
            heartbeat: None,
        }
    })))
}

/// Stops a Job: deleted in the foreground (its pods go first); gone already is fine.
pub async fn stop(ctx: &Ctx, ns: &str, name: &str) -> Result<(), Error> {
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    match bounded(api.delete(name, &DeleteParams::foreground())).await {
        Ok(_) => Ok(()),
        Err(Error::Kube(kube::Error::Api(s))) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> PipelineRun {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "vigil.dev/v1alpha1", "kind": "PipelineRun",
            "metadata": {"name": "r", "namespace": "ns", "uid": "u-1"},
            "spec": {"steps": [{"name": "build", "template": {
                "backoffLimit": 0,
                "template": {"metadata": {"labels": {"app": "x"}},
                             "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}
            }}]}
        }))
        .unwrap()
    }

    #[test]
    fn a_job_is_owned_labelled_and_keeps_the_template() {
        let r = run();
        let j = build(&r, &r.spec.steps[0], "r-build-u1").unwrap();
        let owner = &j.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("PipelineRun", "u-1")
        );
        assert_eq!(owner.controller, Some(true));
        assert_eq!(j.labels()[STEP_LABEL], "build");
        let spec = j.spec.unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        let labels = spec.template.metadata.unwrap().labels.unwrap();
        assert_eq!(labels["app"], "x");
        assert_eq!(labels[RUN_LABEL], "r");
    }

    #[test]
    fn a_bad_template_is_a_reason_not_a_panic() {
        let mut r = run();
        r.spec.steps[0]
            .template
            .0
            .insert("parallelism".into(), "lots".into());
        let why = build(&r, &r.spec.steps[0], "x").unwrap_err();
        assert!(why.starts_with("not a valid JobSpec"), "{why}");
    }

    #[test]
    fn job_states_from_conditions() {
        let job = |conds: serde_json::Value| -> Job {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "j", "labels": {STEP_LABEL: "s"}, "creationTimestamp": "2027-01-01T00:00:00Z"},
                "status": {"conditions": conds}
            }))
            .unwrap()
        };
        let (step, v) = view(&job(serde_json::json!([]))).unwrap();
        assert_eq!((step.as_str(), v.state), ("s", JobState::Active));
        let (_, v) = view(&job(serde_json::json!([
            {"type": "SuccessCriteriaMet", "status": "True"},
            {"type": "Complete", "status": "True", "lastTransitionTime": "2027-01-01T00:01:00Z"}
        ])))
        .unwrap();
        assert_eq!(v.state, JobState::Succeeded);
        assert!(v.finished.is_some());
        let (_, v) = view(&job(serde_json::json!([
            {"type": "FailureTarget", "status": "True"},
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}
        ])))
        .unwrap();
        assert_eq!(
            v.state,
            JobState::Failed(
                "BackoffLimitExceeded: Job has reached the specified backoff limit".into()
            )
        );
    }
}
