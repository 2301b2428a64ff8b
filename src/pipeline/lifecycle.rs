//! What follows the end of a run, as a pure function: archive, read back and verify, and
//! only then delete anything (the run's Jobs, then the run after `ttlAfterArchive`). The
//! finalizer holds a run's deletion until its archive is verified, unless a person sets
//! `vigil.dev/skip-archive=<reason>`.
//!
//! Write-ahead, as healing does: an upload is recorded in status (fenced) before it starts.
//! A restart that finds a recorded upload without a verdict first reads back what may
//! already be there; only if that does not verify is the bundle written again, to the same
//! key. So a run is never archived twice, and nothing is deleted unverified.

use crate::api::{ArchiveSpec, PipelineRunStatus};
use crate::conditions::{self, kind};
use jiff::Timestamp;
use std::time::Duration;

/// The finalizer that keeps a run until its archive is verified.
pub const FINALIZER: &str = "vigil.dev/archive";

/// The annotation that lets a run go without (or without waiting for) its archive.
pub const SKIP_ARCHIVE: &str = "vigil.dev/skip-archive";

/// Reasons of the `Archived` condition.
pub mod reason {
    /// An upload was recorded and is under way (or was interrupted).
    pub const ARCHIVING: &str = "Archiving";
    /// Written, read back, every hash matched.
    pub const VERIFIED: &str = "Verified";
    /// The upload failed; it is retried with backoff.
    pub const UPLOAD_FAILED: &str = "UploadFailed";
    /// What was read back does not match; retried, nothing deleted.
    pub const CHECKSUM_MISMATCH: &str = "ChecksumMismatch";
    /// The filesystem store has too little free space; retried.
    pub const NO_SPACE: &str = "NoSpace";
    /// A person set `vigil.dev/skip-archive`.
    pub const SKIPPED: &str = "Skipped";
}

/// First wait after a failed archive; doubled per attempt up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(2);
/// Longest wait between archive attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What a run looks like to the lifecycle.
#[derive(Clone, Copy, Debug)]
pub struct Seen<'a> {
    /// `spec.archive`.
    pub archive: Option<&'a ArchiveSpec>,
    /// The run's status (its `Succeeded` condition says whether it ended).
    pub status: &'a PipelineRunStatus,
    /// The run ended (by the plan just made).
    pub finished: bool,
    /// The finalizer is on the run.
    pub has_finalizer: bool,
    /// The run is being deleted.
    pub deleting: bool,
    /// The `vigil.dev/skip-archive` reason, if set.
    pub skip: Option<&'a str>,
    /// Now.
    pub now: Timestamp,
}

/// The next step of the lifecycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing to do (yet).
    Nothing,
    /// Put the finalizer on the run.
    AddFinalizer,
    /// Record an upload (attempt number), then write the bundle; when `check_existing`, an
    /// earlier recorded upload may have landed: verify that first.
    Archive {
        /// The attempt being recorded.
        attempt: u32,
        /// Read back what is there before writing again.
        check_existing: bool,
    },
    /// Wait for the backoff after a failure.
    Wait(Duration),
    /// Record that the archive is skipped (a person said so); then let the run go.
    Skip,
    /// Delete the run's Jobs (the archive is verified).
    DeleteJobs,
    /// Take the finalizer off (verified or skipped; the run is being deleted).
    RemoveFinalizer,
    /// Delete the run (its TTL after the verified archive passed).
    DeleteRun,
    /// Wait until the TTL passes.
    DeleteRunAfter(Duration),
}

/// The backoff before attempt `attempts + 1` after `attempts` failed ones.
pub fn backoff(attempts: u32) -> Duration {
    let shift = attempts.saturating_sub(1).min(16);
    FIRST_BACKOFF.saturating_mul(1 << shift).min(MAX_BACKOFF)
}

fn archived_reason(status: &PipelineRunStatus) -> Option<(&str, &str)> {
    conditions::get(&status.conditions, kind::ARCHIVED)
        .map(|c| (c.status.as_str(), c.reason.as_str()))
}

/// The next step.
pub fn next(s: Seen<'_>) -> Next {
    let Some(spec) = s.archive else {
        // No archive configured (maybe removed from the spec): hold nothing.
        return if s.has_finalizer && s.deleting {
            Next::RemoveFinalizer
        } else {
            Next::Nothing
        };
    };
    let archived = archived_reason(s.status);
    let verified = archived == Some(("True", reason::VERIFIED));
    let skipped = archived.is_some_and(|(_, r)| r == reason::SKIPPED);
    if !s.has_finalizer && !s.deleting && !verified && !skipped {
        return Next::AddFinalizer;
    }
    if skipped {
        return if s.has_finalizer && (s.deleting || s.finished) {
            Next::RemoveFinalizer
        } else {
            Next::Nothing
        };
    }
    if !verified && s.skip.is_some() && (s.deleting || s.finished) {
        return Next::Skip;
    }
    if !s.finished {
        return Next::Nothing;
    }
    if verified {
        let a = s.status.archive.as_ref();
        if spec.delete_jobs_after_archive && !a.is_some_and(|a| a.jobs_deleted) {
            return Next::DeleteJobs;
        }
        if s.has_finalizer {
            // Verified: nothing holds the run any more (its TTL, if any, deletes it).
            return Next::RemoveFinalizer;
        }
        if s.deleting {
            return Next::Nothing;
        }
        let Some(ttl) = spec.ttl_after_archive.as_ref().and_then(|t| t.parse().ok()) else {
            return Next::Nothing;
        };
        let since = a
            .and_then(|a| a.verified_time.as_ref())
            .map(|t| {
                s.now
                    .duration_since(t.0)
                    .try_into()
                    .unwrap_or(Duration::ZERO)
            })
            .unwrap_or(Duration::ZERO);
        return if since >= ttl {
            Next::DeleteRun
        } else {
            Next::DeleteRunAfter(ttl - since)
        };
    }
    let attempts = s.status.archive.as_ref().map_or(0, |a| a.attempts);
    match archived {
        // Recorded, no verdict: an upload may have landed before a crash.
        Some((_, reason::ARCHIVING)) => Next::Archive {
            attempt: attempts + 1,
            check_existing: true,
        },
        Some(("False", _)) => {
            let retry = s
                .status
                .archive
                .as_ref()
                .and_then(|a| a.retry_time.as_ref())
                .map(|t| t.0);
            match retry {
                Some(t) if t > s.now => Next::Wait(
                    t.duration_since(s.now)
                        .try_into()
                        .unwrap_or(Duration::from_secs(1)),
                ),
                // A failed upload may still have left a complete object (a mismatch did):
                // read back first, it costs less than writing again.
                _ => Next::Archive {
                    attempt: attempts + 1,
                    check_existing: true,
                },
            }
        }
        _ => Next::Archive {
            attempt: attempts + 1,
            check_existing: attempts > 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ArchiveInclude, ArchiveStatus, FilesystemStore, LongDur};
    use crate::conditions::{Desired, Status};

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }
    fn spec(delete_jobs: bool, ttl: Option<&str>) -> ArchiveSpec {
        ArchiveSpec {
            s3: None,
            filesystem: Some(FilesystemStore { path: "/a".into() }),
            include: ArchiveInclude::default(),
            delete_jobs_after_archive: delete_jobs,
            ttl_after_archive: ttl.map(LongDur::new),
        }
    }
    fn status(
        archived: Option<(&str, &'static str)>,
        a: Option<ArchiveStatus>,
    ) -> PipelineRunStatus {
        let mut st = PipelineRunStatus {
            archive: a,
            ..Default::default()
        };
        if let Some((s, r)) = archived {
            conditions::set(
                &mut st.conditions,
                Desired::new(kind::ARCHIVED, Status::parse(s), r, "m"),
                None,
                &conditions::time(at(0)),
            );
        }
        st
    }
    fn attempts(n: u32, retry: Option<i64>) -> Option<ArchiveStatus> {
        Some(ArchiveStatus {
            attempts: n,
            retry_time: retry.map(|t| conditions::time(at(t))),
            ..Default::default()
        })
    }
    fn verified(at_s: i64, jobs_deleted: bool) -> Option<ArchiveStatus> {
        Some(ArchiveStatus {
            attempts: 1,
            verified_time: Some(conditions::time(at(at_s))),
            jobs_deleted,
            ..Default::default()
        })
    }

    /// (name, spec, status, finished, has finalizer, deleting, skip, now, expected)
    #[test]
    fn the_lifecycle_table() {
        let s0 = status(None, None);
        let archiving = status(Some(("Unknown", reason::ARCHIVING)), attempts(1, None));
        let failed_wait = status(
            Some(("False", reason::UPLOAD_FAILED)),
            attempts(2, Some(50)),
        );
        let mismatch = status(
            Some(("False", reason::CHECKSUM_MISMATCH)),
            attempts(1, Some(5)),
        );
        let ok = status(Some(("True", reason::VERIFIED)), verified(100, false));
        let ok_cleaned = status(Some(("True", reason::VERIFIED)), verified(100, true));
        let skipped = status(Some(("False", reason::SKIPPED)), None);
        let plain = spec(false, None);
        let tidy = spec(true, Some("60s"));
        type Row<'a> = (
            &'a str,
            Option<&'a ArchiveSpec>,
            &'a PipelineRunStatus,
            bool,
            bool,
            bool,
            Option<&'a str>,
            i64,
            Next,
        );
        let rows: Vec<Row> = vec![
            (
                "no archive: nothing",
                None,
                &s0,
                true,
                false,
                false,
                None,
                0,
                Next::Nothing,
            ),
            (
                "no archive, old finalizer, deleting: let go",
                None,
                &s0,
                true,
                true,
                true,
                None,
                0,
                Next::RemoveFinalizer,
            ),
            (
                "a new run gets the finalizer",
                Some(&plain),
                &s0,
                false,
                false,
                false,
                None,
                0,
                Next::AddFinalizer,
            ),
            (
                "running: wait for the end",
                Some(&plain),
                &s0,
                false,
                true,
                false,
                None,
                0,
                Next::Nothing,
            ),
            (
                "ended: first upload",
                Some(&plain),
                &s0,
                true,
                true,
                false,
                None,
                0,
                Next::Archive {
                    attempt: 1,
                    check_existing: false,
                },
            ),
            (
                "recorded without verdict: read back first",
                Some(&plain),
                &archiving,
                true,
                true,
                false,
                None,
                0,
                Next::Archive {
                    attempt: 2,
                    check_existing: true,
                },
            ),
            (
                "failed: back off",
                Some(&plain),
                &failed_wait,
                true,
                true,
                false,
                None,
                20,
                Next::Wait(Duration::from_secs(30)),
            ),
            (
                "failed, backoff over: again",
                Some(&plain),
                &failed_wait,
                true,
                true,
                false,
                None,
                50,
                Next::Archive {
                    attempt: 3,
                    check_existing: true,
                },
            ),
            (
                "mismatch, backoff over: again",
                Some(&plain),
                &mismatch,
                true,
                true,
                false,
                None,
                9,
                Next::Archive {
                    attempt: 2,
                    check_existing: true,
                },
            ),
            (
                "verified: let the finalizer go",
                Some(&plain),
                &ok,
                true,
                true,
                false,
                None,
                200,
                Next::RemoveFinalizer,
            ),
            (
                "verified, no ttl: keep the run",
                Some(&plain),
                &ok,
                true,
                false,
                false,
                None,
                200,
                Next::Nothing,
            ),
            (
                "verified: delete Jobs first",
                Some(&tidy),
                &ok,
                true,
                true,
                false,
                None,
                120,
                Next::DeleteJobs,
            ),
            (
                "verified, cleaned: finalizer",
                Some(&tidy),
                &ok_cleaned,
                true,
                true,
                false,
                None,
                120,
                Next::RemoveFinalizer,
            ),
            (
                "ttl not over",
                Some(&tidy),
                &ok_cleaned,
                true,
                false,
                false,
                None,
                120,
                Next::DeleteRunAfter(Duration::from_secs(40)),
            ),
            (
                "ttl over: delete the run",
                Some(&tidy),
                &ok_cleaned,
                true,
                false,
                false,
                None,
                160,
                Next::DeleteRun,
            ),
            (
                "deleting unarchived: archive first",
                Some(&plain),
                &s0,
                true,
                true,
                true,
                None,
                0,
                Next::Archive {
                    attempt: 1,
                    check_existing: false,
                },
            ),
            (
                "deleting, failing store: keep trying",
                Some(&plain),
                &failed_wait,
                true,
                true,
                true,
                None,
                20,
                Next::Wait(Duration::from_secs(30)),
            ),
            (
                "the skip annotation lets a deleted run go",
                Some(&plain),
                &failed_wait,
                true,
                true,
                true,
                Some("store lost"),
                20,
                Next::Skip,
            ),
            (
                "skip recorded: finalizer off",
                Some(&plain),
                &skipped,
                true,
                true,
                true,
                Some("store lost"),
                20,
                Next::RemoveFinalizer,
            ),
            (
                "skip on a running run waits for its end",
                Some(&plain),
                &s0,
                false,
                true,
                false,
                Some("x"),
                0,
                Next::Nothing,
            ),
            (
                "a verified archive is never skipped",
                Some(&plain),
                &ok,
                true,
                true,
                true,
                Some("x"),
                200,
                Next::RemoveFinalizer,
            ),
        ];
        for (name, spec, st, finished, fin, deleting, skip, now, want) in rows {
            let got = next(Seen {
                archive: spec,
                status: st,
                finished,
                has_finalizer: fin,
                deleting,
                skip,
                now: at(now),
            });
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(5), Duration::from_secs(32));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
