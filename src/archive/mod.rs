//! Run archives: one tar.gz bundle per finished PipelineRun, streamed to a store and read back
//! before anything is deleted.
//!
//! A bundle holds `report.json` and `report.md` ([`report`]), the run's and its Jobs'
//! manifests, each step's pod log (or why there is none), the run's Events, and last a
//! `SHA256SUMS` manifest of every other file (`sha256sum` format, so `sha256sum -c` checks
//! an unpacked bundle too).
//!
//! - [`store::Store`]: an S3-compatible bucket or a directory (e.g. a mounted PVC), both
//!   through `object_store`; the directory store refuses to start without 1.5 × the
//!   expected size free.
//! - [`bundle::BundleWriter`]: tar + gzip on a blocking thread, handed through a bounded
//!   channel to a multipart upload with a bounded number of parts in flight, so memory stays
//!   flat whatever the bundle's size; any failure aborts the upload, leaving no object.
//! - [`verify::verify`]: streams the object back and checks the whole-object SHA-256 and
//!   every file against `SHA256SUMS`.
//! - [`cli`]: `vigil archive verify <location>` for auditors.
//!
//! Errors are sentences for people and for condition messages. They never carry
//! credentials or a server's response body (which can echo request details): only what
//! went wrong, e.g. "the store answered HTTP 403".

pub mod bundle;
pub mod cli;
pub mod report;
pub mod store;
pub mod verify;

#[cfg(test)]
mod roundtrip;

pub use bundle::{BundleWriter, Written};
pub use report::Report;
pub use store::Store;
pub use verify::{Inspection, Verified, inspect, verify};

/// Name of the manifest, the last entry of every bundle.
pub const MANIFEST: &str = "SHA256SUMS";

/// What can go wrong while archiving or verifying, each a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    /// The store settings or a location cannot be used as given (bad URL, bucket, key).
    #[error("archive store settings are not usable: {0}")]
    Config(String),
    /// The filesystem store has less than 1.5 × the expected size free.
    #[error(
        "not enough free space for the archive: need {need} bytes (1.5 × the expected size), {free} free"
    )]
    NoSpace {
        /// Bytes needed (1.5 × the expected size).
        need: u64,
        /// Bytes free for an unprivileged writer.
        free: u64,
    },
    /// Something the bundle was to hold could not be read, or its name is not allowed.
    #[error("archive input is not usable: {0}")]
    Input(String),
    /// Writing the bundle to the store failed; the upload was aborted.
    #[error("uploading the archive failed: {0}")]
    Upload(String),
    /// Reading the bundle back from the store failed.
    #[error("reading the archive back failed: {0}")]
    Download(String),
    /// There is no object at the location.
    #[error("no archive at {location}")]
    NotFound {
        /// Where it was looked for.
        location: String,
    },
    /// A file's SHA-256 differs from the manifest, or it is missing from one of the bundle
    /// and the manifest; `<bundle>` when the whole object differs from the recorded hash.
    #[error("checksum mismatch: {file}")]
    ChecksumMismatch {
        /// The file that differs, or `<bundle>` for the whole object.
        file: String,
    },
    /// The object is not a bundle: not gzip, not tar, truncated, or without a manifest.
    #[error("the archive is corrupt: {0}")]
    Corrupt(String),
}

impl ArchiveError {
    /// The condition reason for this error (`Archived=False`).
    pub fn reason(&self) -> &'static str {
        match self {
            ArchiveError::Config(_) => "InvalidStore",
            ArchiveError::NoSpace { .. } => "NoSpace",
            ArchiveError::Input(_) => "InputUnreadable",
            ArchiveError::Upload(_) => "UploadFailed",
            ArchiveError::Download(_) => "ReadBackFailed",
            ArchiveError::NotFound { .. } => "NotFound",
            ArchiveError::ChecksumMismatch { .. } => "ChecksumMismatch",
            ArchiveError::Corrupt(_) => "Corrupt",
        }
    }

    /// Whether trying again later (with backoff) may succeed. A bad setting stays bad until
    /// a person changes it; a store can come back, free space can appear, inputs are
    /// gathered afresh, and a bundle that read back wrong is written again.
    pub fn retryable(&self) -> bool {
        !matches!(self, ArchiveError::Config(_))
    }
}

/// One file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileEntry {
    /// Path inside the bundle.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
}

/// The key of a run's bundle: `<prefix><namespace>/<name>-<first 8 of uid>.tar.gz`.
///
/// Deterministic, so a retried archive (after a failure, a restart or a leader change)
/// overwrites its own object instead of leaving a second one; the uid part keeps a new run
/// of the same name from overwriting an old run's bundle. `prefix` is relative to the
/// store (which already applies its own prefix): usually empty, else ending in `/`.
pub fn bundle_key(prefix: &str, namespace: &str, name: &str, uid: &str) -> String {
    let short: String = uid.chars().take(8).collect();
    format!("{prefix}{namespace}/{name}-{short}.tar.gz")
}

/// Lowercase hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// The SHA-256 of `data`, lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(data))
}

/// What an `object_store` error means, without its text: that text can hold a server's
/// response body or a full request URL. Only the kind, an HTTP status, or a local I/O
/// error (which names a local path, no secret) is kept.
pub(crate) fn describe(e: &object_store::Error) -> String {
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => "the object was not found".into(),
        E::PermissionDenied { .. } => {
            "the store denied access (check the credentials and the bucket policy)".into()
        }
        E::Unauthenticated { .. } => "the store refused the credentials".into(),
        E::Precondition { .. } | E::NotModified { .. } | E::AlreadyExists { .. } => {
            "the store refused the request (a precondition failed)".into()
        }
        E::NotSupported { .. } | E::NotImplemented { .. } => {
            "the store does not support this operation".into()
        }
        E::InvalidPath { .. } => "the object key is not a valid path".into(),
        E::JoinError { .. } => "an upload task stopped unexpectedly".into(),
        E::Generic { store, source } => describe_source(store, source.as_ref()),
        _ => "the store failed".into(),
    }
}

fn describe_source(store: &str, source: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(source);
    while let Some(e) = cur {
        if let Some(h) = e.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind as K;
            return match h.kind() {
                K::Connect => "cannot connect to the store".into(),
                K::Timeout => "the store did not answer in time".into(),
                K::Request | K::Interrupted => "the connection to the store broke".into(),
                K::Decode => "the store's answer could not be read".into(),
                _ => "the request to the store failed".into(),
            };
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return format!("I/O error: {io}");
        }
        cur = e.source();
    }
    // The status sits in the retry error's text, next to the body: take only the number.
    let text = source.to_string();
    if let Some(i) = text.find("status code: ") {
        let code: String = text[i + 13..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        if code.len() == 3 {
            return format!("the store answered HTTP {code}");
        }
    }
    if text.contains("error response") {
        return "the store answered with an error".into();
    }
    format!("the {store} store failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_keys_are_stable_per_run() {
        let uid = "0f3c9a2e-1111-2222-3333-444455556666";
        assert_eq!(
            bundle_key("", "ns", "nightly", uid),
            "ns/nightly-0f3c9a2e.tar.gz"
        );
        assert_eq!(
            bundle_key("runs/", "ns", "nightly", uid),
            bundle_key("runs/", "ns", "nightly", uid)
        );
        assert_eq!(bundle_key("runs/", "ns", "x", "ab"), "runs/ns/x-ab.tar.gz");
    }

    #[test]
    fn reasons_and_retries() {
        let cases = [
            (ArchiveError::Config("x".into()), "InvalidStore", false),
            (ArchiveError::NoSpace { need: 3, free: 1 }, "NoSpace", true),
            (ArchiveError::Input("x".into()), "InputUnreadable", true),
            (ArchiveError::Upload("x".into()), "UploadFailed", true),
            (ArchiveError::Download("x".into()), "ReadBackFailed", true),
            (
                ArchiveError::NotFound {
                    location: "l".into(),
                },
                "NotFound",
                true,
            ),
            (
                ArchiveError::ChecksumMismatch { file: "f".into() },
                "ChecksumMismatch",
                true,
            ),
            (ArchiveError::Corrupt("x".into()), "Corrupt", true),
        ];
        for (e, reason, retry) in cases {
            assert_eq!(e.reason(), reason, "{e}");
            assert_eq!(e.retryable(), retry, "{e}");
        }
    }

    #[test]
    fn store_errors_lose_their_bodies() {
        #[derive(Debug)]
        struct Body;
        impl std::fmt::Display for Body {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("Error performing PUT http://h/b/k?X-Amz-Signature=s3cr3t - Server returned non-2xx status code: 503 Service Unavailable: <Error>secret body</Error>")
            }
        }
        impl std::error::Error for Body {}
        let e = object_store::Error::Generic {
            store: "S3",
            source: Box::new(Body),
        };
        let d = describe(&e);
        assert_eq!(d, "the store answered HTTP 503");
        let denied = object_store::Error::PermissionDenied {
            path: "k".into(),
            source: Box::new(Body),
        };
        assert!(!describe(&denied).contains("secret"));
    }

    #[test]
    fn hex_is_lowercase() {
        assert_eq!(hex(&[0x00, 0xab, 0x0f]), "00ab0f");
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
