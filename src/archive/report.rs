//! The run report: `report.json` (documented by `docs/run-report.schema.json`) and its
//! short human form, `report.md`, both built from the PipelineRun alone.

use crate::api::PipelineRun;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Version of the report's schema; raised when a field changes meaning or goes away (new
/// optional fields do not raise it).
pub const SCHEMA_VERSION: u32 = 1;

/// What a run was and how it ended, for `report.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Which run.
    pub run: RunRef,
    /// The `Succeeded` condition.
    pub outcome: Outcome,
    /// When the first step started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Timestamp>,
    /// When the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Timestamp>,
    /// When any step last made progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_progress_time: Option<Timestamp>,
    /// Completion minus start, in whole seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<u64>,
    /// Every step, in spec order.
    pub steps: Vec<StepReport>,
    /// The run's conditions as they were when archived.
    pub conditions: Vec<ReportCondition>,
    /// When the report was made.
    pub archived_at: Timestamp,
}

/// The run's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRef {
    /// Namespace of the PipelineRun.
    pub namespace: String,
    /// Name of the PipelineRun.
    pub name: String,
    /// Its uid (tells apart runs that reused a name).
    pub uid: String,
    /// When it was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<Timestamp>,
}

/// The run's `Succeeded` condition (`Unknown` with empty reason when it has none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// `Succeeded`, `Failed`, `Stalled`, `TimedOut`, `Cancelled`, ...
    pub reason: String,
    /// What happened, for people.
    pub message: String,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepReport {
    /// Step name.
    pub name: String,
    /// Steps it ran after.
    pub run_after: Vec<String>,
    /// Its phase (`Succeeded`, `Failed`, `Skipped`, ...).
    pub phase: String,
    /// Its Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// When its Job was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Timestamp>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Timestamp>,
    /// Completion minus start, in whole seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<u64>,
    /// Exit code of its container, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// What happened, for people (may be empty).
    pub message: String,
}

/// One condition of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportCondition {
    /// `Succeeded`, `Archived`, `Ready`, ...
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Machine-readable reason.
    pub reason: String,
    /// For people.
    pub message: String,
    /// When the status last changed.
    pub last_transition_time: Timestamp,
}

fn seconds(start: Option<Timestamp>, end: Option<Timestamp>) -> Option<u64> {
    let (s, e) = (start?, end?);
    // Clocks of different writers can disagree by a little: never negative.
    Some(e.as_second().saturating_sub(s.as_second()).max(0) as u64)
}

impl Report {
    /// The report of `run` as it is now (its status fields copied, missing ones left out).
    pub fn from_run(run: &PipelineRun, archived_at: Timestamp) -> Report {
        let meta = &run.metadata;
        let status = run.status.clone().unwrap_or_default();
        let time = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
            t.as_ref().map(|t| t.0)
        };
        let outcome = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Succeeded")
            .map(|c| Outcome {
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
            })
            .unwrap_or_else(|| Outcome {
                status: "Unknown".into(),
                reason: String::new(),
                message: String::new(),
            });
        let step_report = |name: &str, run_after: Vec<String>| {
            let st = status.steps.iter().find(|s| s.name == name);
            let (start, end) = (
                st.and_then(|s| time(&s.start_time)),
                st.and_then(|s| time(&s.completion_time)),
            );
            StepReport {
                name: name.to_string(),
                run_after,
                phase: st
                    .and_then(|s| serde_json::to_value(s.phase).ok())
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_else(|| "Pending".into()),
                job_name: st.and_then(|s| s.job_name.clone()),
                start_time: start,
                completion_time: end,
                duration_seconds: seconds(start, end),
                exit_code: st.and_then(|s| s.exit_code),
                message: st.map(|s| s.message.clone()).unwrap_or_default(),
            }
        };
        let mut steps: Vec<StepReport> = run
            .spec
            .steps
            .iter()
            .map(|s| step_report(&s.name, s.run_after.clone()))
            .collect();
        // A status step the spec no longer names still happened: keep it.
        for s in &status.steps {
            if !steps.iter().any(|r| r.name == s.name) {
                steps.push(step_report(&s.name, Vec::new()));
            }
        }
        let (start, end) = (time(&status.start_time), time(&status.completion_time));
        Report {
            schema_version: SCHEMA_VERSION,
            run: RunRef {
                namespace: meta.namespace.clone().unwrap_or_default(),
                name: meta.name.clone().unwrap_or_default(),
                uid: meta.uid.clone().unwrap_or_default(),
                creation_timestamp: meta.creation_timestamp.as_ref().map(|t| t.0),
            },
            outcome,
            start_time: start,
            completion_time: end,
            last_progress_time: time(&status.last_progress_time),
            duration_seconds: seconds(start, end),
            steps,
            conditions: status
                .conditions
                .iter()
                .map(|c| ReportCondition {
                    type_: c.type_.clone(),
                    status: c.status.clone(),
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                    last_transition_time: c.last_transition_time.0,
                })
                .collect(),
            archived_at,
        }
    }

    /// `report.json`: pretty-printed, ending in a newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// `report.md`: a title with the outcome, the times, and a table of the steps.
    pub fn to_markdown(&self) -> String {
        let r = &self.run;
        let o = &self.outcome;
        let verdict = match (o.status.as_str(), o.reason.is_empty()) {
            ("Unknown", true) => "not finished".to_string(),
            ("Unknown", false) => format!("not finished ({})", o.reason),
            (_, false) => o.reason.clone(),
            (s, true) => s.to_string(),
        };
        let mut md = format!("# PipelineRun {}/{}: {verdict}\n\n", r.namespace, r.name);
        if !o.message.is_empty() {
            md.push_str(&format!("{}\n\n", cell(&o.message, 1000)));
        }
        let when = |t: Option<Timestamp>| t.map(|t| t.to_string()).unwrap_or_else(|| "-".into());
        md.push_str("| | |\n|---|---|\n");
        md.push_str(&format!("| Started | {} |\n", when(self.start_time)));
        md.push_str(&format!("| Completed | {} |\n", when(self.completion_time)));
        md.push_str(&format!(
            "| Duration | {} |\n",
            self.duration_seconds
                .map(duration)
                .unwrap_or_else(|| "-".into())
        ));
        md.push_str(&format!("| Archived | {} |\n", self.archived_at));
        md.push_str(&format!("| Uid | {} |\n\n", r.uid));
        md.push_str("## Steps\n\n| Step | Phase | Exit code | Duration | Job | Message |\n");
        md.push_str("|---|---|---|---|---|---|\n");
        for s in &self.steps {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                cell(&s.name, 100),
                s.phase,
                s.exit_code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into()),
                s.duration_seconds
                    .map(duration)
                    .unwrap_or_else(|| "-".into()),
                s.job_name
                    .as_deref()
                    .map(|j| cell(j, 100))
                    .unwrap_or_else(|| "-".into()),
                cell(&s.message, 200),
            ));
        }
        md
    }
}

/// Text fit for one table cell: one line, pipes escaped, capped.
fn cell(text: &str, limit: usize) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    crate::text::cap(&one_line, limit).replace('|', "\\|")
}

/// `1h 2m 3s`, `4m 0s`, `12s`.
fn duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m {s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn run(with_status: bool) -> PipelineRun {
        let mut doc = json!({
            "apiVersion": "vigil.dev/v1alpha1",
            "kind": "PipelineRun",
            "metadata": {
                "name": "nightly",
                "namespace": "ci",
                "uid": "0f3c9a2e-1111-2222-3333-444455556666",
                "creationTimestamp": "2027-01-15T08:00:00Z"
            },
            "spec": {
                "steps": [
                    {"name": "build", "template": {"template": {}}},
                    {"name": "test", "runAfter": ["build"], "template": {"template": {}}},
                    {"name": "publish", "runAfter": ["test"], "template": {"template": {}}}
                ]
            }
        });
        if with_status {
            doc["status"] = json!({
                "conditions": [
                    {"type": "Succeeded", "status": "False", "reason": "Failed",
                     "message": "step test failed: exit code 2 | see log",
                     "lastTransitionTime": "2027-01-15T08:05:00Z"},
                    {"type": "Archived", "status": "Unknown", "reason": "Archiving",
                     "message": "", "lastTransitionTime": "2027-01-15T08:05:01Z"}
                ],
                "startTime": "2027-01-15T08:00:01Z",
                "completionTime": "2027-01-15T08:05:00Z",
                "lastProgressTime": "2027-01-15T08:05:00Z",
                "steps": [
                    {"name": "build", "phase": "Succeeded", "jobName": "nightly-build",
                     "startTime": "2027-01-15T08:00:01Z", "completionTime": "2027-01-15T08:02:00Z",
                     "exitCode": 0},
                    {"name": "test", "phase": "Failed", "jobName": "nightly-test",
                     "startTime": "2027-01-15T08:02:01Z", "completionTime": "2027-01-15T08:05:00Z",
                     "exitCode": 2, "message": "exit code 2\nsee log"},
                    {"name": "publish", "phase": "Skipped", "message": "test did not succeed"}
                ]
            });
        }
        serde_json::from_value(doc).unwrap()
    }

    fn at() -> Timestamp {
        "2027-01-15T08:06:00Z".parse().unwrap()
    }

    #[test]
    fn a_failed_run() {
        let r = Report::from_run(&run(true), at());
        assert_eq!(r.outcome.reason, "Failed");
        assert_eq!(r.duration_seconds, Some(299));
        let phases: Vec<_> = r.steps.iter().map(|s| s.phase.as_str()).collect();
        assert_eq!(phases, ["Succeeded", "Failed", "Skipped"]);
        assert_eq!(r.steps[1].run_after, ["build"]);
        assert_eq!(r.steps[1].exit_code, Some(2));
        assert_eq!(r.steps[0].duration_seconds, Some(119));
        assert_eq!(r.conditions.len(), 2);
        let md = r.to_markdown();
        assert!(md.starts_with("# PipelineRun ci/nightly: Failed\n"), "{md}");
        assert!(
            md.contains("| test | Failed | 2 | 2m 59s | nightly-test | exit code 2 see log |"),
            "{md}"
        );
        assert!(md.contains("exit code 2 \\| see log"), "{md}");
        assert!(
            md.contains("| publish | Skipped | - | - | - | test did not succeed |"),
            "{md}"
        );
        // JSON round trip.
        let back: Report = serde_json::from_slice(&r.to_json()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn a_run_without_status() {
        let r = Report::from_run(&run(false), at());
        assert_eq!(r.outcome.status, "Unknown");
        assert!(r.steps.iter().all(|s| s.phase == "Pending"));
        assert_eq!(r.duration_seconds, None);
        assert!(
            r.to_markdown()
                .starts_with("# PipelineRun ci/nightly: not finished\n")
        );
    }

    #[test]
    fn durations() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(240), "4m 0s");
        assert_eq!(duration(3723), "1h 2m 3s");
    }

    /// Every property the report has is documented, and every required one is there, at
    /// every level (a full report and one of a run that never started).
    #[test]
    fn report_follows_its_schema() {
        let schema: Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/run-report.schema.json"
        )))
        .unwrap();
        fn check(doc: &Value, schema: &Value, at: &str) {
            let props = schema["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("{at}: no properties"));
            for (k, v) in doc.as_object().unwrap() {
                let sub = props
                    .get(k)
                    .unwrap_or_else(|| panic!("{at}.{k} is not in the schema"));
                if v.is_object() {
                    check(v, sub, &format!("{at}.{k}"));
                }
                if let Some(items) = v.as_array() {
                    for item in items.iter().filter(|i| i.is_object()) {
                        check(item, &sub["items"], &format!("{at}.{k}[]"));
                    }
                }
            }
            for k in schema["required"].as_array().into_iter().flatten() {
                let k = k.as_str().unwrap();
                assert!(doc.get(k).is_some(), "{at}.{k} is required but missing");
            }
        }
        for with_status in [true, false] {
            let doc = serde_json::to_value(Report::from_run(&run(with_status), at())).unwrap();
            check(&doc, &schema, "report");
        }
        assert_eq!(
            schema["properties"]["schemaVersion"]["const"],
            json!(SCHEMA_VERSION)
        );
    }
}
