//! DAG progress of a run, as a pure function: from the spec, the status as recorded and the
//! Jobs as they are now, the next status and what to do (create Jobs, stop Jobs, wake up
//! again). The controller only carries it out.
//!
//! Rules:
//! - A step starts (its Job is created) once every step in its `runAfter` succeeded;
//!   independent steps run at once.
//! - Fail-fast: the first step that fails (or passes its own timeout) fails the run; running
//!   steps are stopped (`Cancelled`) and pending ones `Skipped`, each with the reason.
//! - The run's timeout ends it `TimedOut`; `spec.cancel` (or the run being deleted) ends it
//!   `Cancelled`. Both stop running Jobs.
//! - Progress is any step transition or a new heartbeat value (`vigil.dev/heartbeat` on a
//!   step's Job or on the run). No progress for `stallTimeout` is `Stalled`: still Unknown
//!   (the run may go on), distinct from `TimedOut`, and back to `Running` with progress.
//! - A run that ended is frozen: nothing is created or stopped for it again.

use crate::api::{PipelineRunSpec, PipelineRunStatus, StepPhase, StepStatus};
use crate::conditions::{self, Desired, Status, kind};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::HashMap;
use std::time::Duration;

/// The annotation a long step (on its Job) or the run may change to show it is alive.
pub const HEARTBEAT: &str = "vigil.dev/heartbeat";

/// Longest heartbeat value kept in status.
const HEARTBEAT_MAX: usize = 128;

/// Reasons of the run's `Succeeded` condition.
pub mod reason {
    /// No step has started yet.
    pub const PENDING: &str = "Pending";
    /// Steps are running.
    pub const RUNNING: &str = "Running";
    /// Every step succeeded.
    pub const SUCCEEDED: &str = "Succeeded";
    /// A step failed (or passed its own timeout).
    pub const FAILED: &str = "Failed";
    /// No progress for `stallTimeout`.
    pub const STALLED: &str = "Stalled";
    /// The run passed its timeout.
    pub const TIMED_OUT: &str = "TimedOut";
    /// `spec.cancel`, or the run is being deleted.
    pub const CANCELLED: &str = "Cancelled";
}

/// A step's Job as it is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobView {
    /// The Job's name.
    pub name: String,
    /// When it was created.
    pub created: Timestamp,
    /// How it is doing.
    pub state: JobState,
    /// When it finished (its terminal condition's time), if it did.
    pub finished: Option<Timestamp>,
    /// Exit code of its last pod's container, when the pod says.
    pub exit_code: Option<i32>,
    /// Its `vigil.dev/heartbeat` annotation.
    pub heartbeat: Option<String>,
}

/// Where a Job is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Not finished.
    Active,
    /// Condition `Complete`.
    Succeeded,
    /// Condition `Failed`, with what it says.
    Failed(String),
}

/// What a plan is made from.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    /// The run's spec.
    pub spec: &'a PipelineRunSpec,
    /// The run's status as recorded (alert records aside).
    pub status: &'a PipelineRunStatus,
    /// Jobs of this run, by step name.
    pub jobs: &'a HashMap<String, JobView>,
    /// Problems of a step's template, by step name (it cannot become a Job).
    pub invalid: &'a HashMap<String, String>,
    /// The run's own `vigil.dev/heartbeat` annotation.
    pub heartbeat: Option<&'a str>,
    /// The run is being deleted.
    pub deleting: bool,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// Now.
    pub now: Timestamp,
}

/// One step's transition, to tell of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepChange {
    /// The step.
    pub step: String,
    /// Its new phase.
    pub phase: StepPhase,
    /// Why.
    pub message: String,
}

/// What to do now.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The status to record.
    pub status: PipelineRunStatus,
    /// The run's `Succeeded` condition.
    pub succeeded: Desired,
    /// Steps (spec indices) whose Job must be created, with the Job's name.
    pub create: Vec<(usize, String)>,
    /// Jobs to stop (delete in the foreground).
    pub stop: Vec<String>,
    /// Step transitions.
    pub changes: Vec<StepChange>,
    /// Wake up again after this long (the nearest timeout or stall deadline).
    pub requeue: Option<Duration>,
}

impl Plan {
    /// Whether the run has ended.
    pub fn finished(&self) -> bool {
        self.succeeded.status != Status::Unknown
    }
}

/// Whether a recorded status says the run ended.
pub fn finished(status: &PipelineRunStatus) -> bool {
    conditions::get(&status.conditions, kind::SUCCEEDED).is_some_and(|c| c.status != "Unknown")
}

/// The Job name of a step: `<run>-<step>-<uid[..5]>` (unique per run object, stable across
/// reconciles), shortened with a hash where it would pass 63 characters (a label value).
pub fn job_name(run: &str, uid: &str, step: &str) -> String {
    let tag: String = uid
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(5)
        .collect();
    let tag = tag.to_ascii_lowercase();
    let full = format!("{run}-{step}-{tag}");
    if full.len() <= 63 {
        return full;
    }
    let hash = crate::text::fingerprint(&[run, step]);
    // 63 = kept + "-" + 8 hash digits + "-" + 5 uid characters
    let keep = 63 - 1 - 8 - 1 - tag.len();
    let base = format!("{run}-{step}");
    let mut cut = base[..keep.min(base.len())]
        .trim_end_matches('-')
        .to_string();
    cut.push('-');
    cut.push_str(&hash[..8]);
    cut.push('-');
    cut.push_str(&tag);
    cut
}

fn dur(d: &crate::api::LongDur) -> Option<Duration> {
    d.parse().ok()
}

fn elapsed(since: &Time, now: Timestamp) -> Duration {
    now.duration_since(since.0)
        .try_into()
        .unwrap_or(Duration::ZERO)
}

fn cut(s: &str) -> String {
    crate::text::cap(s, HEARTBEAT_MAX)
}

/// The next status and actions.
pub fn plan(o: Observed<'_>, run: &str, uid: &str) -> Plan {
    let now_t = conditions::time(o.now);
    let mut st = o.status.clone();
    st.observed_generation = o.generation;
    // One status per spec step, in spec order (recorded ones kept by name).
    let mut old: HashMap<String, StepStatus> =
        st.steps.drain(..).map(|s| (s.name.clone(), s)).collect();
    st.steps = o
        .spec
        .steps
        .iter()
        .map(|s| {
            old.remove(&s.name).unwrap_or_else(|| StepStatus {
                name: s.name.clone(),
                ..Default::default()
            })
        })
        .collect();
    let mut changes = Vec::new();
    let mut create = Vec::new();
    let mut stop = Vec::new();
    let mut progress = false;

    let mut set_phase = |s: &mut StepStatus, phase: StepPhase, msg: String, at: &Time| {
        s.phase = phase;
        s.message = msg.clone();
        if phase != StepPhase::Running && s.completion_time.is_none() && s.start_time.is_some() {
            s.completion_time = Some(at.clone());
        }
        changes.push(StepChange {
            step: s.name.clone(),
            phase,
            message: msg,
        });
    };

    if finished(o.status) {
        let succeeded = current_succeeded(o.status);
        st.progress = Some(progress_text(&st.steps));
        return Plan {
            status: st,
            succeeded,
            create,
            stop,
            changes,
            requeue: None,
        };
    }

    // The run's own heartbeat.
    if let Some(h) = o.heartbeat.map(cut)
        && st.heartbeat.as_deref() != Some(h.as_str())
    {
        if st.heartbeat.is_some() || st.start_time.is_some() {
            progress = true;
        }
        st.heartbeat = Some(h);
    }

    // What the Jobs say.
    for (i, spec) in o.spec.steps.iter().enumerate() {
        let s = &mut st.steps[i];
        let job = o.jobs.get(&spec.name);
        // A Job that exists for a step recorded as pending was created by a reconcile whose
        // status write did not land: adopt it.
        if s.phase == StepPhase::Pending
            && let Some(j) = job
        {
            s.job_name = Some(j.name.clone());
            s.start_time = Some(conditions::time(j.created));
            set_phase(s, StepPhase::Running, "Its Job is running".into(), &now_t);
            progress = true;
        }
        if s.phase != StepPhase::Running {
            continue;
        }
        match job {
            None => {
                set_phase(
                    s,
                    StepPhase::Failed,
                    "Its Job was deleted before it finished".into(),
                    &now_t,
                );
                progress = true;
            }
            Some(j) => {
                if let Some(h) = j.heartbeat.as_deref().map(cut)
                    && s.heartbeat.as_deref() != Some(h.as_str())
                {
                    s.heartbeat = Some(h);
                    progress = true;
                }
                let at = j.finished.map(conditions::time).unwrap_or(now_t.clone());
                match &j.state {
                    JobState::Succeeded => {
                        s.exit_code = j.exit_code.or(Some(0));
                        set_phase(s, StepPhase::Succeeded, "Its Job completed".into(), &at);
                        progress = true;
                    }
                    JobState::Failed(why) => {
                        s.exit_code = j.exit_code;
                        let code = j
                            .exit_code
                            .map(|c| format!(" (exit code {c})"))
                            .unwrap_or_default();
                        set_phase(
                            s,
                            StepPhase::Failed,
                            format!("Its Job failed{code}: {}", crate::text::cap(why, 512)),
                            &at,
                        );
                        progress = true;
                    }
                    JobState::Active => {
                        let limit = spec.timeout.as_ref().and_then(dur);
                        let started = s.start_time.clone().unwrap_or(now_t.clone());
                        if let Some(l) = limit
                            && elapsed(&started, o.now) > l
                        {
                            stop.push(j.name.clone());
                            set_phase(
                                s,
                                StepPhase::TimedOut,
                                format!(
                                    "Ran longer than its timeout ({}); its Job was stopped",
                                    crate::duration::format(l)
                                ),
                                &now_t,
                            );
                            progress = true;
                        }
                    }
                }
            }
        }
    }

    // Templates that cannot become a Job fail their step (before it would start).
    for (i, spec) in o.spec.steps.iter().enumerate() {
        let s = &mut st.steps[i];
        if s.phase == StepPhase::Pending
            && let Some(why) = o.invalid.get(&spec.name)
        {
            set_phase(
                s,
                StepPhase::Failed,
                format!(
                    "Its template cannot become a Job: {}",
                    crate::text::cap(why, 512)
                ),
                &now_t,
            );
            progress = true;
        }
    }

    // How the run ends, if it does now: cancel, run timeout, a failed step.
    let run_timeout = o.spec.timeout.as_ref().and_then(dur);
    let over_time = match (run_timeout, &st.start_time) {
        (Some(l), Some(t)) => elapsed(t, o.now) > l,
        _ => false,
    };
    let failed = st
        .steps
        .iter()
        .find(|s| matches!(s.phase, StepPhase::Failed | StepPhase::TimedOut))
        .map(|s| (s.name.clone(), s.phase, s.message.clone()));
    let ending: Option<(&'static str, String, StepPhase, String)> = if o.spec.cancel || o.deleting {
        let why = if o.spec.cancel {
            "The run was cancelled (spec.cancel)"
        } else {
            "The run is being deleted"
        };
        Some((
            reason::CANCELLED,
            why.to_string(),
            StepPhase::Cancelled,
            format!("{why}; its Job was stopped"),
        ))
    } else if over_time {
        let l = crate::duration::format(run_timeout.unwrap_or_default());
        Some((
            reason::TIMED_OUT,
            format!("The run passed its timeout ({l})"),
            StepPhase::TimedOut,
            format!("The run passed its timeout ({l}); its Job was stopped"),
        ))
    } else if let Some((name, phase, msg)) = failed {
        let what = if phase == StepPhase::TimedOut {
            "timed out"
        } else {
            "failed"
        };
        Some((
            reason::FAILED,
            format!("Step {name} {what}: {msg}"),
            StepPhase::Cancelled,
            format!("Stopped: step {name} {what} and the run fails fast"),
        ))
    } else {
        None
    };

    if let Some((why, run_msg, running_phase, running_msg)) = ending {
        for (i, spec) in o.spec.steps.iter().enumerate() {
            let s = &mut st.steps[i];
            match s.phase {
                StepPhase::Running => {
                    if let Some(j) = o.jobs.get(&spec.name) {
                        stop.push(j.name.clone());
                    }
                    set_phase(s, running_phase, running_msg.clone(), &now_t);
                }
                StepPhase::Pending => {
                    set_phase(
                        s,
                        StepPhase::Skipped,
                        format!("Not started: {}", lower_first(&run_msg)),
                        &now_t,
                    );
                }
                _ => {}
            }
        }
        st.completion_time = Some(now_t.clone());
        st.last_progress_time = Some(now_t.clone());
        st.progress = Some(progress_text(&st.steps));
        stop.sort();
        stop.dedup();
        return Plan {
            status: st,
            succeeded: Desired::new(kind::SUCCEEDED, Status::False, why, run_msg),
            create,
            stop,
            changes,
            requeue: None,
        };
    }

    // Start what is ready.
    let succeeded_names: Vec<&str> = st
        .steps
        .iter()
        .filter(|s| s.phase == StepPhase::Succeeded)
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>();
    let ready: Vec<usize> = o
        .spec
        .steps
        .iter()
        .enumerate()
        .filter(|(i, spec)| {
            st.steps[*i].phase == StepPhase::Pending
                && spec
                    .run_after
                    .iter()
                    .all(|r| succeeded_names.contains(&r.as_str()))
        })
        .map(|(i, _)| i)
        .collect();
    for i in ready {
        let name = job_name(run, uid, &o.spec.steps[i].name);
        let s = &mut st.steps[i];
        s.job_name = Some(name.clone());
        s.start_time = Some(now_t.clone());
        set_phase(s, StepPhase::Running, "Its Job was created".into(), &now_t);
        create.push((i, name));
        progress = true;
        if st.start_time.is_none() {
            st.start_time = Some(now_t.clone());
        }
    }
    if progress || st.last_progress_time.is_none() {
        st.last_progress_time = Some(now_t.clone());
    }
    st.progress = Some(progress_text(&st.steps));

    if st.steps.iter().all(|s| s.phase == StepPhase::Succeeded) {
        st.completion_time = Some(now_t.clone());
        let n = st.steps.len();
        return Plan {
            status: st,
            succeeded: Desired::new(
                kind::SUCCEEDED,
                Status::True,
                reason::SUCCEEDED,
                format!("All {n} steps succeeded"),
            ),
            create,
            stop,
            changes,
            requeue: None,
        };
    }

    // Still running: stalled, or not; and when to look again.
    let stall = dur(&o.spec.stall_timeout);
    let quiet = st
        .last_progress_time
        .as_ref()
        .map(|t| elapsed(t, o.now))
        .unwrap_or_default();
    let running: Vec<&str> = st
        .steps
        .iter()
        .filter(|s| s.phase == StepPhase::Running)
        .map(|s| s.name.as_str())
        .collect();
    let succeeded = match stall {
        Some(l) if quiet > l => Desired::new(
            kind::SUCCEEDED,
            Status::Unknown,
            reason::STALLED,
            format!(
                "No step progress for over {} (stallTimeout); still running: {}",
                crate::duration::format(l),
                running.join(", ")
            ),
        ),
        _ => Desired::new(
            kind::SUCCEEDED,
            Status::Unknown,
            reason::RUNNING,
            format!("Running: {}", running.join(", ")),
        ),
    };
    let mut deadlines: Vec<Duration> = Vec::new();
    if let Some(l) = stall
        && quiet <= l
    {
        deadlines.push(l - quiet);
    }
    if let (Some(l), Some(t)) = (run_timeout, &st.start_time) {
        deadlines.push(l.saturating_sub(elapsed(t, o.now)));
    }
    for (i, spec) in o.spec.steps.iter().enumerate() {
        let s = &st.steps[i];
        if s.phase == StepPhase::Running
            && let (Some(l), Some(t)) = (spec.timeout.as_ref().and_then(dur), &s.start_time)
        {
            deadlines.push(l.saturating_sub(elapsed(t, o.now)));
        }
    }
    // A second past the deadline, so that it has passed when the wake-up looks.
    let requeue = deadlines
        .into_iter()
        .min()
        .map(|d| d + Duration::from_secs(1));
    Plan {
        status: st,
        succeeded,
        create,
        stop,
        changes,
        requeue,
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn progress_text(steps: &[StepStatus]) -> String {
    let done = steps
        .iter()
        .filter(|s| s.phase == StepPhase::Succeeded)
        .count();
    format!("{done}/{}", steps.len())
}

fn current_succeeded(status: &PipelineRunStatus) -> Desired {
    let c = conditions::get(&status.conditions, kind::SUCCEEDED);
    let reason = match c.map(|c| c.reason.as_str()) {
        Some("Succeeded") => reason::SUCCEEDED,
        Some("TimedOut") => reason::TIMED_OUT,
        Some("Cancelled") => reason::CANCELLED,
        Some("InvalidSpec") => crate::conditions::reason::INVALID_SPEC,
        _ => reason::FAILED,
    };
    Desired::new(
        kind::SUCCEEDED,
        c.map(|c| Status::parse(&c.status))
            .unwrap_or(Status::Unknown),
        reason,
        c.map(|c| c.message.clone()).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{JobTemplate, LongDur, Step};

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }
    fn step(name: &str, after: &[&str], timeout: Option<&str>) -> Step {
        Step {
            name: name.into(),
            run_after: after.iter().map(|s| s.to_string()).collect(),
            template: JobTemplate(serde_json::Map::new()),
            timeout: timeout.map(LongDur::new),
        }
    }
    fn spec(steps: Vec<Step>) -> PipelineRunSpec {
        PipelineRunSpec {
            steps,
            timeout: None,
            stall_timeout: LongDur::new("60s"),
            cancel: false,
            policy_ref: None,
            archive: None,
        }
    }
    fn job(step: &str, created: i64, state: JobState) -> (String, JobView) {
        (
            step.to_string(),
            JobView {
                name: job_name("r", "abcdef", step),
                created: at(created),
                finished: None,
                state,
                exit_code: None,
                heartbeat: None,
            },
        )
    }

    /// Runs plans like the controller: the recorded status is the last plan's, with its
    /// `Succeeded` condition set.
    struct Run {
        spec: PipelineRunSpec,
        status: PipelineRunStatus,
        jobs: HashMap<String, JobView>,
        invalid: HashMap<String, String>,
        heartbeat: Option<String>,
        deleting: bool,
    }
    impl Run {
        fn new(spec: PipelineRunSpec) -> Run {
            Run {
                spec,
                status: PipelineRunStatus::default(),
                jobs: HashMap::new(),
                invalid: HashMap::new(),
                heartbeat: None,
                deleting: false,
            }
        }
        fn at(&mut self, t: i64) -> Plan {
            let p = plan(
                Observed {
                    spec: &self.spec,
                    status: &self.status,
                    jobs: &self.jobs,
                    invalid: &self.invalid,
                    heartbeat: self.heartbeat.as_deref(),
                    deleting: self.deleting,
                    generation: Some(1),
                    now: at(t),
                },
                "r",
                "abcdef",
            );
            self.status = p.status.clone();
            conditions::set(
                &mut self.status.conditions,
                p.succeeded.clone(),
                Some(1),
                &conditions::time(at(t)),
            );
            // The Jobs it asked for exist; the ones it stopped are gone.
            for (i, name) in &p.create {
                let s = &self.spec.steps[*i].name;
                let mut j = job(s, t, JobState::Active).1;
                j.name = name.clone();
                self.jobs.insert(s.clone(), j);
            }
            self.jobs.retain(|_, j| !p.stop.contains(&j.name));
            p
        }
        fn finish(&mut self, step: &str, state: JobState, code: Option<i32>, t: i64) {
            let j = self.jobs.get_mut(step).expect("job exists");
            j.state = state;
            j.finished = Some(at(t));
            j.exit_code = code;
        }
        fn phases(&self) -> Vec<(String, StepPhase)> {
            self.status
                .steps
                .iter()
                .map(|s| (s.name.clone(), s.phase))
                .collect()
        }
        fn phase(&self, step: &str) -> StepPhase {
            self.status
                .steps
                .iter()
                .find(|s| s.name == step)
                .unwrap()
                .phase
        }
    }
    fn created(p: &Plan) -> Vec<String> {
        p.create.iter().map(|(_, n)| n.clone()).collect()
    }

    #[test]
    fn a_diamond_runs_in_order_and_in_parallel() {
        let mut r = Run::new(spec(vec![
            step("a", &[], None),
            step("b", &["a"], None),
            step("c", &["a"], None),
            step("d", &["b", "c"], None),
        ]));
        let p = r.at(0);
        assert_eq!(created(&p), vec![job_name("r", "abcdef", "a")]);
        assert_eq!(
            (p.succeeded.status, p.succeeded.reason),
            (Status::Unknown, "Running")
        );
        assert_eq!(r.status.progress.as_deref(), Some("0/4"));
        assert!(r.at(1).create.is_empty(), "nothing new while a runs");
        r.finish("a", JobState::Succeeded, Some(0), 2);
        let p = r.at(2);
        assert_eq!(p.create.len(), 2, "b and c start together");
        r.finish("b", JobState::Succeeded, None, 3);
        assert!(r.at(3).create.is_empty(), "d waits for c");
        r.finish("c", JobState::Succeeded, None, 4);
        assert_eq!(r.at(4).create.len(), 1);
        r.finish("d", JobState::Succeeded, None, 5);
        let p = r.at(5);
        assert!(p.finished());
        assert_eq!(
            (p.succeeded.status, p.succeeded.reason),
            (Status::True, "Succeeded")
        );
        assert_eq!(r.status.progress.as_deref(), Some("4/4"));
        assert_eq!(r.status.completion_time, Some(conditions::time(at(5))));
        let a = &r.status.steps[0];
        assert_eq!(a.exit_code, Some(0));
        assert_eq!(a.completion_time, Some(conditions::time(at(2))));
        // Ended: frozen.
        let again = r.at(100);
        assert!(again.create.is_empty() && again.stop.is_empty() && again.changes.is_empty());
    }

    #[test]
    fn a_failed_step_fails_fast() {
        let mut r = Run::new(spec(vec![
            step("a", &[], None),
            step("b", &[], None),
            step("c", &["a"], None),
        ]));
        r.at(0);
        r.finish(
            "a",
            JobState::Failed("BackoffLimitExceeded".into()),
            Some(3),
            4,
        );
        let p = r.at(5);
        assert!(p.finished());
        assert_eq!(
            (p.succeeded.status, p.succeeded.reason),
            (Status::False, "Failed")
        );
        assert!(
            p.succeeded.message.contains("Step a failed"),
            "{}",
            p.succeeded.message
        );
        assert!(p.succeeded.message.contains("exit code 3"));
        assert_eq!(p.stop, vec![job_name("r", "abcdef", "b")], "b is stopped");
        assert_eq!(
            r.phases(),
            vec![
                ("a".into(), StepPhase::Failed),
                ("b".into(), StepPhase::Cancelled),
                ("c".into(), StepPhase::Skipped)
            ]
        );
        assert_eq!(r.status.steps[0].exit_code, Some(3));
        assert!(
            r.status.steps[2]
                .message
                .starts_with("Not started: step a failed")
        );
        assert_eq!(p.changes.len(), 3, "one transition per step");
    }

    #[test]
    fn timeouts_of_a_step_and_of_the_run() {
        let mut r = Run::new(spec(vec![
            step("slow", &[], Some("10s")),
            step("next", &["slow"], None),
        ]));
        let p = r.at(0);
        assert_eq!(p.requeue, Some(Duration::from_secs(11)));
        assert!(r.at(10).stop.is_empty(), "not past 10s yet");
        let p = r.at(11);
        assert_eq!(p.stop, vec![job_name("r", "abcdef", "slow")]);
        assert_eq!(r.phase("slow"), StepPhase::TimedOut);
        assert_eq!(
            (p.succeeded.status, p.succeeded.reason),
            (Status::False, "Failed")
        );
        assert!(p.succeeded.message.contains("timed out"));

        let mut s = spec(vec![step("a", &[], None)]);
        s.timeout = Some(LongDur::new("30s"));
        let mut r = Run::new(s);
        assert_eq!(r.at(0).requeue, Some(Duration::from_secs(31)));
        let p = r.at(31);
        assert_eq!(
            (p.succeeded.status, p.succeeded.reason),
            (Status::False, "TimedOut")
        );
        assert_eq!(r.phase("a"), StepPhase::TimedOut);
        assert_eq!(p.stop.len(), 1);
    }

    #[test]
    fn cancel_and_delete_stop_everything() {
        for deleting in [false, true] {
            let mut r = Run::new(spec(vec![step("a", &[], None), step("b", &["a"], None)]));
            r.at(0);
            if deleting {
                r.deleting = true;
            } else {
                r.spec.cancel = true;
            }
            let p = r.at(3);
            assert_eq!(
                (p.succeeded.status, p.succeeded.reason),
                (Status::False, "Cancelled")
            );
            assert_eq!(p.stop.len(), 1);
            assert_eq!(
                r.phases(),
                vec![
                    ("a".into(), StepPhase::Cancelled),
                    ("b".into(), StepPhase::Skipped)
                ]
            );
        }
    }

    #[test]
    fn stalls_and_heartbeats() {
        let mut r = Run::new(spec(vec![step("long", &[], None)]));
        let p = r.at(0);
        assert_eq!(p.requeue, Some(Duration::from_secs(61)));
        let p = r.at(61);
        assert_eq!(
            (p.succeeded.status, p.succeeded.reason),
            (Status::Unknown, "Stalled")
        );
        assert!(!p.finished(), "a stall is not the end");
        assert!(p.stop.is_empty());
        // A heartbeat on the Job is progress: running again.
        r.jobs.get_mut("long").unwrap().heartbeat = Some("1".into());
        let p = r.at(62);
        assert_eq!(p.succeeded.reason, "Running");
        assert_eq!(r.status.last_progress_time, Some(conditions::time(at(62))));
        assert_eq!(r.status.steps[0].heartbeat.as_deref(), Some("1"));
        // The same value again is not.
        let p = r.at(100);
        assert_eq!(p.succeeded.reason, "Running");
        assert_eq!(r.status.last_progress_time, Some(conditions::time(at(62))));
        // A heartbeat on the run counts too.
        r.heartbeat = Some("x".into());
        r.at(110);
        assert_eq!(r.status.last_progress_time, Some(conditions::time(at(110))));
        let p = r.at(171);
        assert_eq!(p.succeeded.reason, "Stalled");
    }

    #[test]
    fn a_job_created_before_a_lost_write_is_adopted_and_one_deleted_fails() {
        let mut r = Run::new(spec(vec![step("a", &[], None)]));
        // The Job exists, the status does not know it.
        let (k, j) = job("a", 0, JobState::Active);
        r.jobs.insert(k, j);
        let p = r.at(2);
        assert!(p.create.is_empty(), "adopted, not created twice");
        assert_eq!(r.phase("a"), StepPhase::Running);
        assert_eq!(r.status.steps[0].start_time, Some(conditions::time(at(0))));
        r.jobs.clear();
        let p = r.at(3);
        assert_eq!(r.phase("a"), StepPhase::Failed);
        assert!(p.succeeded.message.contains("deleted"));
    }

    #[test]
    fn an_invalid_template_fails_its_step() {
        let mut r = Run::new(spec(vec![step("a", &[], None), step("b", &["a"], None)]));
        r.invalid
            .insert("b".into(), "spec.template: missing".into());
        let p = r.at(0);
        assert!(p.create.is_empty(), "the run fails before a starts");
        assert_eq!(r.phase("b"), StepPhase::Failed);
        assert_eq!(r.phase("a"), StepPhase::Skipped);
        assert!(p.succeeded.message.contains("template cannot become a Job"));
    }

    #[test]
    fn job_names_are_stable_unique_and_short() {
        assert_eq!(
            job_name("build", "1a2B3c4d-ffff", "test"),
            "build-test-1a2b3"
        );
        let long = "r".repeat(60);
        let a = job_name(&long, "abcdef", "step-one");
        let b = job_name(&long, "abcdef", "step-two");
        assert!(a.len() <= 63 && b.len() <= 63, "{a}");
        assert_ne!(a, b);
        assert_eq!(a, job_name(&long, "abcdef", "step-one"));
        assert_ne!(
            a,
            job_name(&long, "bbcdef", "step-one"),
            "another run object"
        );
        assert!(!a.contains("--"));
    }
}
