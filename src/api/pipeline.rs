//! `PipelineRun`: a multi-step run whose steps are Kubernetes Jobs, archived when done.

use super::{Condition, HttpUrl, LongDur, PolicyRef, cel_duration_is, cel_rule, push_rules};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// A run of steps (Kubernetes Jobs) ordered as a DAG, watched for stalls and timeouts, and
/// archived (report, manifests, logs, events) to object storage or a volume when it ends.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "vigil.dev",
    version = "v1alpha1",
    kind = "PipelineRun",
    plural = "pipelineruns",
    shortname = "prun",
    category = "vigil",
    namespaced,
    status = "PipelineRunStatus",
    printcolumn(
        name = "Succeeded",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Succeeded\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Succeeded\")].reason"
    ),
    printcolumn(name = "Steps", type_ = "string", json_path = ".status.progress"),
    printcolumn(
        name = "Archived",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Archived\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.steps.all(s, self.steps.exists_one(t, t.name == s.name))",
        "message": "step names must be unique within a run"
    },
    {
        "rule": "self.steps.all(s, s.runAfter.all(r, self.steps.exists(t, t.name == r)))",
        "message": "every runAfter entry must name a step of this run"
    },
    {
        "rule": "self.steps.all(s, !(s.name in s.runAfter))",
        "message": "a step cannot run after itself"
    }
]))]
#[schemars(transform = run_rules)]
pub struct PipelineRunSpec {
    /// The steps (1 to 100); each runs as one Job once every step in its `runAfter` has
    /// succeeded. They cannot change once the run exists: create a new run instead.
    #[schemars(length(min = 1, max = 100))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self == oldSelf",
        "message": "steps cannot change after the run is created; create a new PipelineRun"
    }]))]
    pub steps: Vec<Step>,
    /// Longest the whole run may take (more than 0s, at most 8760h); unset means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<LongDur>,
    /// Longest time without any step progress before the run is marked `Stalled` (more
    /// than 0s, at most 8760h).
    #[serde(default = "d30m")]
    pub stall_timeout: LongDur,
    /// Set to true to stop the run: running Jobs are deleted, the run ends `Cancelled`.
    #[serde(default)]
    pub cancel: bool,
    /// MonitorPolicy (same namespace) whose alert channels are told about this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_ref: Option<PolicyRef>,
    /// Where and what to archive when the run ends. Unset: no archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveSpec>,
}

/// A zero run timeout or stall timeout would end every run at once: only a mistake. (Zero
/// is fine for `ttlAfterArchive`: delete as soon as the archive is verified.)
fn run_rules(schema: &mut Schema) {
    push_rules(
        schema,
        [
            cel_rule(
                format!(
                    "!has(self.timeout) || {}",
                    cel_duration_is("self.timeout", "> duration('0s')")
                ),
                "spec.timeout must be longer than 0s; leave it unset for no limit",
            ),
            cel_rule(
                cel_duration_is("self.stallTimeout", "> duration('0s')"),
                "spec.stallTimeout must be longer than 0s",
            ),
        ],
    );
}

/// One step of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = step_rules)]
pub struct Step {
    /// Step name, unique in the run (a DNS label: it becomes part of the Job name).
    #[schemars(
        length(min = 1, max = 40),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Steps that must succeed before this one starts (at most 40: the admission check of
    /// the names must fit the API server's CEL cost budget for 100 steps).
    #[serde(default)]
    #[schemars(length(max = 40))]
    pub run_after: Vec<String>,
    /// The Job to run: a batch/v1 JobSpec (`template`, `backoffLimit`, ...). Checked when
    /// the Job is created; problems are reported on the step.
    pub template: JobTemplate,
    /// Longest this step may run (more than 0s, at most 8760h); unset means only the run's
    /// limits apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<LongDur>,
}

fn step_rules(schema: &mut Schema) {
    push_rules(
        schema,
        [cel_rule(
            format!(
                "!has(self.timeout) || {}",
                cel_duration_is("self.timeout", "> duration('0s')")
            ),
            "a step timeout must be longer than 0s; leave it unset for only the run's limits",
        )],
    );
}

/// A batch/v1 JobSpec kept as raw JSON so that one malformed template is reported on its run
/// instead of breaking the watch of every run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobTemplate(pub serde_json::Map<String, serde_json::Value>);

impl JsonSchema for JobTemplate {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "JobTemplate".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
            "properties": {
                "template": {
                    "description": "The pod template of the Job (batch/v1 PodTemplateSpec).",
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": true
                }
            },
            "x-kubernetes-validations": [{
                "rule": "has(self.template)",
                "message": "a step template is a JobSpec and needs template (the pod template)"
            }]
        })
    }
}

/// Where and what to archive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.s3) != has(self.filesystem)",
    "message": "archive needs exactly one store: s3 or filesystem"
}]))]
pub struct ArchiveSpec {
    /// An S3-compatible bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Store>,
    /// A directory in Vigil's filesystem (e.g. a mounted PersistentVolumeClaim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<FilesystemStore>,
    /// What goes into the archive.
    #[serde(default)]
    pub include: ArchiveInclude,
    /// Delete the run's Jobs (and their pods) once the archive was read back and verified.
    #[serde(default)]
    pub delete_jobs_after_archive: bool,
    /// Delete the PipelineRun itself this long after a verified archive (at most 8760h; 0
    /// deletes it at once); unset keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_after_archive: Option<LongDur>,
}

/// An S3-compatible bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Store {
    /// Bucket name.
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// Key prefix inside the bucket, e.g. `runs/`.
    #[serde(default)]
    #[schemars(length(max = 512))]
    pub prefix: String,
    /// Endpoint URL for non-AWS servers (MinIO, Ceph, Garage, ...); unset means AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<HttpUrl>,
    /// Region.
    #[serde(default = "us_east_1")]
    #[schemars(length(max = 64))]
    pub region: String,
    /// Secret with `accessKeyId` and `secretAccessKey` keys.
    #[schemars(length(min = 1, max = 253))]
    pub credentials_secret: String,
    /// Use path-style URLs (`endpoint/bucket/key`), as most self-hosted servers need.
    #[serde(default = "yes")]
    pub force_path_style: bool,
}

/// A directory in Vigil's filesystem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FilesystemStore {
    /// Absolute directory path.
    #[schemars(length(min = 1, max = 4096), regex(pattern = "^/"))]
    pub path: String,
}

/// What goes into an archive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveInclude {
    /// A JSON report of the run: steps, times, exit codes, conditions.
    #[serde(default = "yes")]
    pub report: bool,
    /// The run's and its Jobs' manifests.
    #[serde(default = "yes")]
    pub manifests: bool,
    /// Each step's pod logs.
    #[serde(default = "yes")]
    pub logs: bool,
    /// Events about the run and its Jobs and pods.
    #[serde(default = "yes")]
    pub events: bool,
}

impl Default for ArchiveInclude {
    fn default() -> Self {
        ArchiveInclude {
            report: true,
            manifests: true,
            logs: true,
            events: true,
        }
    }
}

/// Progress and outcome of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipelineRunStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Succeeded` (Unknown while running; reasons `Pending`, `Running`, `Succeeded`, `Failed`,
    /// `Stalled`, `TimedOut`, `Cancelled`) and `Archived` (`Verified`, `UploadFailed`,
    /// `ChecksumMismatch`).
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// When the first step started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// When any step last made progress (started, finished, or its pod changed phase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_progress_time: Option<Time>,
    /// Steps done out of all steps, e.g. `2/5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// Per-step state, in spec order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepStatus>,
    /// The last `vigil.dev/heartbeat` annotation value seen on the run (a new value is
    /// progress).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub heartbeat: Option<String>,
    /// The archive: recorded before each upload (so a restart finds an upload that may have
    /// happened and verifies it instead of writing a second one), completed once verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveStatus>,
    /// Alerts of this run and whether they are still firing (for repeat and resolve).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<super::AlertRecord>,
}

/// State of one step.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepStatus {
    /// Step name.
    pub name: String,
    /// Where the step is: `Pending`, `Running`, `Succeeded`, `Failed`, `TimedOut`, `Skipped`
    /// or `Cancelled`.
    pub phase: StepPhase,
    /// Name of the step's Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// When the step's Job was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the step ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Exit code of the step's container, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// What happened, for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The last `vigil.dev/heartbeat` annotation value seen on the step's Job (a new value
    /// is progress, so a slow but alive step is not called stalled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub heartbeat: Option<String>,
}

/// Where a step is. A step runs as one Job once every step in its `runAfter` succeeded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum StepPhase {
    /// Not started: waiting for the steps in its `runAfter`.
    #[default]
    Pending,
    /// Its Job exists and has not finished.
    Running,
    /// Its Job completed.
    Succeeded,
    /// Its Job failed.
    Failed,
    /// It ran longer than its own or the run's timeout; its Job was stopped.
    TimedOut,
    /// Never started: a step it depends on did not succeed, or the run failed first.
    Skipped,
    /// The run was cancelled (`spec.cancel`) before the step finished.
    Cancelled,
}

/// Where the archive went and how it was verified.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveStatus {
    /// URL of the archive (`s3://bucket/key` or `file:///path`).
    pub location: String,
    /// SHA-256 of the archive, hex (once verified).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
    /// Size in bytes (once verified).
    #[serde(default)]
    pub size: u64,
    /// Files in the bundle (once verified).
    #[serde(default)]
    pub files: u32,
    /// When the archive was read back and every hash matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_time: Option<Time>,
    /// Uploads started so far (recorded before each one).
    #[serde(default)]
    pub attempts: u32,
    /// When the latest upload started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_time: Option<Time>,
    /// Earliest time of the next try after a failure (backoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_time: Option<Time>,
    /// The run's Jobs were deleted after the verified archive (`deleteJobsAfterArchive`).
    #[serde(default)]
    pub jobs_deleted: bool,
}

fn d30m() -> LongDur {
    LongDur::new("30m")
}
fn yes() -> bool {
    true
}
fn us_east_1() -> String {
    "us-east-1".into()
}
