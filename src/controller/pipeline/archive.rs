//! The shell of what follows a run's end: gathers the bundle's parts from the API (report,
//! manifests, pod logs, Events), writes it through `crate::archive`, reads it back, records
//! the verdict, and cleans up only after a verified archive. `crate::pipeline::lifecycle`
//! decides each step; this module carries it out.

use super::{Ctx, seen, set_finalizers};
use crate::api::{ArchiveSpec, PipelineRun, PipelineRunStatus};
use crate::archive::{self, ArchiveError, BundleWriter, Store};
use crate::conditions::{self, Desired, Status, kind};
use crate::controller::Error;
use crate::notice::{Notice, What};
use crate::pipeline::lifecycle::{self, Next, reason};
use crate::status::{Manager, WriteError};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Preconditions};
use kube::{Resource, ResourceExt};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest one API read of the archive's parts may take (a log streams for longer).
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Carries out the lifecycle's next step; returns when to look again, if a timer is due.
pub async fn lifecycle(
    ctx: &Ctx,
    run: &PipelineRun,
    status: &PipelineRunStatus,
    finished: bool,
    deleting: bool,
) -> Result<Option<Duration>, Error> {
    let next = lifecycle::next(seen(run, status, finished, deleting));
    match next {
        Next::Nothing => Ok(None),
        Next::Wait(d) | Next::DeleteRunAfter(d) => Ok(Some(d)),
        Next::AddFinalizer => {
            let mut f = run.finalizers().to_vec();
            f.push(lifecycle::FINALIZER.to_string());
            set_finalizers(ctx, run, f).await?;
            Ok(None)
        }
        Next::RemoveFinalizer => {
            remove_finalizer(ctx, run).await?;
            Ok(None)
        }
        Next::Skip => {
            let why = run
                .annotations()
                .get(lifecycle::SKIP_ARCHIVE)
                .cloned()
                .unwrap_or_default();
            let why = crate::text::cap(&why, 256);
            let mut st = status.clone();
            let want = Desired::new(
                kind::ARCHIVED,
                Status::False,
                reason::SKIPPED,
                format!("Not archived: {} says {why:?}", lifecycle::SKIP_ARCHIVE),
            );
            conditions::set(
                &mut st.conditions,
                want.clone(),
                run.meta().generation,
                &conditions::now(),
            );
            write(ctx, run, &st, true).await?;
            ctx.notices.publish(
                Notice::new(
                    run.object_ref(&()),
                    What::ArchiveSkipped,
                    "ArchiveSkipped",
                    want.message,
                )
                .warning(true)
                .action("Archive"),
            );
            Ok(None)
        }
        Next::DeleteJobs => {
            let ns = run.namespace().unwrap_or_default();
            let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
            let mut n = 0;
            for job in super::jobs::list(ctx, run).await? {
                match tokio::time::timeout(
                    READ_TIMEOUT,
                    api.delete(&job.name_any(), &DeleteParams::background()),
                )
                .await
                {
                    Ok(Ok(_)) => n += 1,
                    Ok(Err(kube::Error::Api(s))) if s.code == 404 => {}
                    Ok(Err(e)) => return Err(e.into()),
                    Err(_) => return Err(timeout_error()),
                }
            }
            let mut st = status.clone();
            if let Some(a) = st.archive.as_mut() {
                a.jobs_deleted = true;
            }
            write(ctx, run, &st, false).await?;
            ctx.notices.publish(
                Notice::new(
                    run.object_ref(&()),
                    What::RunCleanedUp,
                    "JobsDeleted",
                    format!("Deleted {n} Jobs of this run after its verified archive"),
                )
                .action("Archive"),
            );
            Ok(None)
        }
        Next::DeleteRun => {
            let api: Api<PipelineRun> =
                Api::namespaced(ctx.client.clone(), &run.namespace().unwrap_or_default());
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: run.uid(),
                    resource_version: None,
                }),
                ..DeleteParams::background()
            };
            match api.delete(&run.name_any(), &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
            ctx.notices.publish(
                Notice::new(
                    run.object_ref(&()),
                    What::RunCleanedUp,
                    "RunDeleted",
                    "Deleted this run: its archive was verified and ttlAfterArchive passed",
                )
                .action("Archive"),
            );
            Ok(None)
        }
        Next::Archive {
            attempt,
            check_existing,
        } => archive_once(ctx, run, status, attempt, check_existing).await,
    }
}

/// Takes Vigil's finalizer off the run.
pub async fn remove_finalizer(ctx: &Ctx, run: &PipelineRun) -> Result<(), Error> {
    if !run.finalizers().iter().any(|f| f == lifecycle::FINALIZER) {
        return Ok(());
    }
    let rest: Vec<String> = run
        .finalizers()
        .iter()
        .filter(|f| *f != lifecycle::FINALIZER)
        .cloned()
        .collect();
    set_finalizers(ctx, run, rest).await
}

fn timeout_error() -> Error {
    Error::Kube(kube::Error::Service(
        format!("no answer within {READ_TIMEOUT:?}").into(),
    ))
}

/// Writes the run's status; `fenced` for a decision (carries the resourceVersion).
async fn write(
    ctx: &Ctx,
    run: &PipelineRun,
    status: &PipelineRunStatus,
    fenced: bool,
) -> Result<PipelineRun, Error> {
    let fence = if fenced { run.resource_version() } else { None };
    Ok(ctx
        .writer
        .apply::<PipelineRun, _>(
            &run.namespace().unwrap_or_default(),
            &run.name_any(),
            Manager::Vigil,
            status,
            fence.as_deref(),
        )
        .await?)
}

/// The store of a run's archive spec (S3 credentials read from the run's namespace).
async fn store(ctx: &Ctx, ns: &str, spec: &ArchiveSpec) -> Result<Store, ArchiveError> {
    if let Some(fs) = &spec.filesystem {
        return Store::filesystem(Path::new(&fs.path));
    }
    let Some(s3) = &spec.s3 else {
        return Err(ArchiveError::Config("no store configured".into()));
    };
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let secret = match tokio::time::timeout(READ_TIMEOUT, api.get_opt(&s3.credentials_secret)).await
    {
        Ok(Ok(Some(s))) => s,
        Ok(Ok(None)) => {
            return Err(ArchiveError::Config(format!(
                "Secret {:?} (credentialsSecret) does not exist",
                s3.credentials_secret
            )));
        }
        Ok(Err(e)) => {
            return Err(ArchiveError::Config(format!(
                "cannot read Secret {:?}: {}",
                s3.credentials_secret,
                crate::text::cap(&e.to_string(), 200)
            )));
        }
        Err(_) => {
            return Err(ArchiveError::Config(
                "reading the credentials Secret timed out".into(),
            ));
        }
    };
    let key = |k: &str| -> Result<String, ArchiveError> {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
            .map(|s| s.trim().to_string())
            .ok_or_else(|| {
                ArchiveError::Config(format!(
                    "Secret {:?} has no key {k:?}",
                    s3.credentials_secret
                ))
            })
    };
    Store::s3(
        &s3.bucket,
        &s3.prefix,
        s3.endpoint.as_ref().map(|e| e.as_str()),
        &s3.region,
        &key("accessKeyId")?,
        &key("secretAccessKey")?,
        s3.force_path_style,
    )
}

/// One archive attempt: record it, (read back an earlier one,) write, read back, record the
/// verdict.
async fn archive_once(
    ctx: &Ctx,
    run: &PipelineRun,
    status: &PipelineRunStatus,
    attempt: u32,
    check_existing: bool,
) -> Result<Option<Duration>, Error> {
    let Some(spec) = run.spec.archive.as_ref() else {
        return Ok(None);
    };
    let ns = run.namespace().unwrap_or_default();
    let name = run.name_any();
    let uid = run.uid().unwrap_or_default();
    // The S3 store puts its prefix before every key itself.
    let key = archive::bundle_key("", &ns, &name, &uid);
    let store = match store(ctx, &ns, spec).await {
        Ok(s) => s,
        Err(e) => return failed(ctx, run, status, attempt, String::new(), &e).await,
    };
    let location = store.location(&key);

    // Write-ahead: the attempt is on record before anything is written.
    let mut st = status.clone();
    let mut a = st.archive.clone().unwrap_or_default();
    a.location = location.clone();
    a.attempts = attempt;
    a.attempt_time = Some(conditions::now());
    a.retry_time = None;
    st.archive = Some(a);
    conditions::set(
        &mut st.conditions,
        Desired::new(
            kind::ARCHIVED,
            Status::Unknown,
            reason::ARCHIVING,
            format!("Writing the archive to {location} (attempt {attempt})"),
        ),
        run.meta().generation,
        &conditions::now(),
    );
    let recorded = match write(ctx, run, &st, true).await {
        Ok(r) => r,
        Err(Error::Status(WriteError::Conflict)) => return Ok(Some(Duration::from_millis(200))),
        Err(e) => return Err(e),
    };

    // An earlier attempt may have landed before a crash: verify it rather than write again.
    if check_existing && let Ok(v) = archive::verify(&store, &key, None).await {
        return verified(ctx, &recorded, &st, v, true).await;
    }
    let result = async {
        let written = write_bundle(ctx, &recorded, &st, spec, &store, &key).await?;
        archive::verify(&store, &key, Some(&written.sha256)).await
    }
    .await;
    match result {
        Ok(v) => verified(ctx, &recorded, &st, v, false).await,
        Err(e) => failed(ctx, &recorded, &st, attempt, location, &e).await,
    }
}

async fn verified(
    ctx: &Ctx,
    run: &PipelineRun,
    status: &PipelineRunStatus,
    v: archive::Verified,
    earlier: bool,
) -> Result<Option<Duration>, Error> {
    let mut st = status.clone();
    let mut a = st.archive.clone().unwrap_or_default();
    a.sha256 = v.sha256.clone();
    a.size = v.size;
    a.files = v.files.len() as u32;
    a.verified_time = Some(conditions::now());
    a.retry_time = None;
    let location = a.location.clone();
    st.archive = Some(a);
    let how = if earlier {
        " (found from an earlier attempt, not written again)"
    } else {
        ""
    };
    let want = Desired::new(
        kind::ARCHIVED,
        Status::True,
        reason::VERIFIED,
        format!(
            "Archived to {location} and read back{how}: {} files, every SHA-256 matched",
            v.files.len()
        ),
    );
    conditions::set(
        &mut st.conditions,
        want.clone(),
        run.meta().generation,
        &conditions::now(),
    );
    // A verdict, not a decision: unfenced (a lost write only means verifying once more).
    write(ctx, run, &st, false).await?;
    ctx.notices.publish(
        Notice::new(
            run.object_ref(&()),
            What::ArchiveVerified,
            "ArchiveVerified",
            want.message,
        )
        .action("Archive"),
    );
    Ok(None)
}

async fn failed(
    ctx: &Ctx,
    run: &PipelineRun,
    status: &PipelineRunStatus,
    attempt: u32,
    location: String,
    e: &ArchiveError,
) -> Result<Option<Duration>, Error> {
    let wait = lifecycle::backoff(attempt);
    let mut st = status.clone();
    let mut a = st.archive.clone().unwrap_or_default();
    if !location.is_empty() {
        a.location = location;
    }
    a.attempts = attempt;
    a.retry_time = Some(conditions::time(
        jiff::Timestamp::now() + jiff::SignedDuration::try_from(wait).unwrap_or_default(),
    ));
    st.archive = Some(a);
    let why = match e.reason() {
        // What was just written did not read back right.
        "ChecksumMismatch" | "Corrupt" => reason::CHECKSUM_MISMATCH,
        "NoSpace" => reason::NO_SPACE,
        _ => reason::UPLOAD_FAILED,
    };
    let want = Desired::new(
        kind::ARCHIVED,
        Status::False,
        why,
        format!(
            "Attempt {attempt} failed: {}; nothing is deleted; next try in {}",
            crate::text::cap(&e.to_string(), 400),
            crate::duration::format(wait)
        ),
    );
    conditions::set(
        &mut st.conditions,
        want.clone(),
        run.meta().generation,
        &conditions::now(),
    );
    tracing::warn!(run = %run.name_any(), attempt, error = %e, "archive failed");
    write(ctx, run, &st, false).await?;
    ctx.notices.publish(
        Notice::new(run.object_ref(&()), What::ArchiveFailed, why, want.message)
            .warning(true)
            .action("Archive"),
    );
    Ok(Some(wait))
}

/// The run's object as archived: its final status, without server bookkeeping.
fn clean<K: Resource + Clone>(obj: &K) -> K {
    let mut o = obj.clone();
    o.meta_mut().managed_fields = None;
    o
}

/// Gathers the parts and streams the bundle to the store.
async fn write_bundle(
    ctx: &Ctx,
    run: &PipelineRun,
    status: &PipelineRunStatus,
    spec: &ArchiveSpec,
    store: &Store,
    key: &str,
) -> Result<archive::Written, ArchiveError> {
    let ns = run.namespace().unwrap_or_default();
    let mut final_run = clean(run);
    final_run.status = Some(status.clone());
    let include = &spec.include;
    let io = |what: &str, e: kube::Error| {
        ArchiveError::Input(format!("{what}: {}", crate::text::cap(&e.to_string(), 200)))
    };

    let jobs = super::jobs::list(ctx, run)
        .await
        .map_err(|e| ArchiveError::Input(format!("listing the run's Jobs: {e}")))?;
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let mut pods: Vec<(String, Pod)> = Vec::new();
    for job in &jobs {
        let step = job
            .labels()
            .get(super::STEP_LABEL)
            .cloned()
            .unwrap_or_else(|| job.name_any());
        let lp = ListParams::default()
            .labels(&format!("batch.kubernetes.io/job-name={}", job.name_any()));
        let list = tokio::time::timeout(READ_TIMEOUT, pods_api.list(&lp))
            .await
            .map_err(|_| ArchiveError::Input("listing pods timed out".into()))?
            .map_err(|e| io("listing pods", e))?;
        pods.extend(list.items.into_iter().map(|p| (step.clone(), p)));
    }

    // Logs first, spooled to disk: their sizes tell the space the bundle needs.
    let spool = tempfile::tempdir().map_err(|e| ArchiveError::Input(format!("spool: {e}")))?;
    let mut logs: Vec<(String, PathBuf)> = Vec::new();
    let mut notes: Vec<(String, String)> = Vec::new();
    if include.logs {
        for step in &run.spec.steps {
            let mine: Vec<&Pod> = pods
                .iter()
                .filter(|(s, _)| *s == step.name)
                .map(|(_, p)| p)
                .collect();
            if mine.is_empty() {
                let why = status
                    .steps
                    .iter()
                    .find(|s| s.name == step.name)
                    .map(|s| match s.phase {
                        crate::api::StepPhase::Skipped | crate::api::StepPhase::Pending => {
                            "the step never ran".to_string()
                        }
                        _ => "its pods are gone; the API has no log to serve".to_string(),
                    })
                    .unwrap_or_else(|| "unknown step".into());
                notes.push((
                    format!("logs/{}.txt", step.name),
                    format!("No log: {why}\n"),
                ));
                continue;
            }
            for pod in mine {
                let containers: Vec<String> = pod
                    .spec
                    .as_ref()
                    .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
                    .unwrap_or_default();
                for c in containers {
                    let name = format!("logs/{}/{}/{c}.log", step.name, pod.name_any());
                    let path = spool
                        .path()
                        .join(format!("{}.log", logs.len() + notes.len()));
                    match spool_log(&pods_api, &pod.name_any(), &c, &path).await {
                        Ok(()) => logs.push((name, path)),
                        Err(why) => notes.push((
                            format!("logs/{}/{}/{c}.txt", step.name, pod.name_any()),
                            format!("No log: {why}\n"),
                        )),
                    }
                }
            }
        }
    }

    let mut small: Vec<(String, Vec<u8>)> = Vec::new();
    if include.report {
        let report = archive::report::Report::from_run(&final_run, jiff::Timestamp::now());
        small.push(("report.json".into(), json(&report)));
        small.push(("report.md".into(), report.to_markdown().into_bytes()));
    }
    if include.manifests {
        small.push(("manifests/pipelinerun.json".into(), json(&final_run)));
        for job in &jobs {
            small.push((
                format!("manifests/jobs/{}.json", job.name_any()),
                json(&clean(job)),
            ));
        }
    }
    if include.events {
        let mut uids: HashSet<String> = HashSet::new();
        uids.extend(run.uid());
        uids.extend(jobs.iter().filter_map(|j| j.uid()));
        uids.extend(pods.iter().filter_map(|(_, p)| p.uid()));
        let api: Api<Event> = Api::namespaced(ctx.client.clone(), &ns);
        let all = tokio::time::timeout(READ_TIMEOUT, api.list(&ListParams::default()))
            .await
            .map_err(|_| ArchiveError::Input("listing Events timed out".into()))?
            .map_err(|e| io("listing Events", e))?;
        let mut mine: Vec<Event> = all
            .items
            .into_iter()
            .filter(|e| {
                e.involved_object
                    .uid
                    .as_ref()
                    .is_some_and(|u| uids.contains(u))
            })
            .map(|e| clean(&e))
            .collect();
        mine.sort_by_key(|e| {
            e.last_timestamp
                .as_ref()
                .map(|t| t.0)
                .or(e.event_time.as_ref().map(|t| t.0))
        });
        small.push(("events.json".into(), json(&mine)));
    }
    small.extend(notes.into_iter().map(|(n, t)| (n, t.into_bytes())));

    let mut expected: u64 = small.iter().map(|(_, b)| b.len() as u64).sum();
    for (_, p) in &logs {
        expected += std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    }
    store.check_space(expected).await?;
    let mut w = BundleWriter::start(store, key)?;
    for (n, b) in small {
        w.add_bytes(&n, b).await?;
    }
    for (n, p) in logs {
        w.add_file(&n, &p).await?;
        let _ = std::fs::remove_file(&p);
    }
    w.finish().await
}

/// Streams one container's log into `path` (bounded memory).
async fn spool_log(api: &Api<Pod>, pod: &str, container: &str, path: &Path) -> Result<(), String> {
    use futures::AsyncReadExt;
    use tokio::io::AsyncWriteExt;
    let lp = LogParams {
        container: Some(container.to_string()),
        ..LogParams::default()
    };
    let mut stream = match tokio::time::timeout(READ_TIMEOUT, api.log_stream(pod, &lp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(kube::Error::Api(s))) => return Err(format!("the API server answered {}", s.code)),
        Ok(Err(_)) => return Err("the log could not be read".into()),
        Err(_) => return Err("the log did not start within 30s".into()),
    };
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| format!("spool file: {e}"))?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match tokio::time::timeout(READ_TIMEOUT, stream.read(&mut buf)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(format!("reading the log: {e}")),
            Err(_) => return Err("the log stalled for 30s".into()),
        };
        file.write_all(&buf[..n])
            .await
            .map_err(|e| format!("spool file: {e}"))?;
    }
    file.flush().await.map_err(|e| format!("spool file: {e}"))?;
    Ok(())
}

/// Pretty JSON, for the bundle.
fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec_pretty(v).unwrap_or_default()
}
