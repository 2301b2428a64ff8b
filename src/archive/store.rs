//! Where bundles go: an S3-compatible bucket or a local directory, both behind
//! `object_store`, with a location URL for status and for `vigil archive verify`.

use super::{ArchiveError, describe};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A place to keep bundles, and how to name a bundle in it.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<dyn ObjectStore>,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    S3 { bucket: String, prefix: String },
    Filesystem { dir: PathBuf },
}

// Not derived: the S3 client's own Debug would print its credentials.
impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::S3 { bucket, prefix } => write!(f, "Store(s3://{bucket}/{prefix})"),
            Kind::Filesystem { dir } => write!(f, "Store(file://{})", dir.display()),
        }
    }
}

/// The environment variables `Store::from_location` reads for `s3://` URLs.
pub const S3_ENV_HELP: &str = "\
For s3://bucket/key locations the store is configured from the environment:
  AWS_ACCESS_KEY_ID       access key (required)
  AWS_SECRET_ACCESS_KEY   secret key (required; never printed)
  AWS_ENDPOINT_URL        endpoint of a non-AWS server, e.g. http://127.0.0.1:8333
                          (path-style requests; http only when this URL says http)
  AWS_REGION              region (else AWS_DEFAULT_REGION, else us-east-1)
Any other location is a local path or a file:// URL.";

/// The S3 client on Vigil's one egress path (src/egress.rs): the address filter, no
/// redirects, no proxy from the environment; the timeouts of the options set above.
#[derive(Debug)]
struct EgressConnector;

impl object_store::client::HttpConnector for EgressConnector {
    fn connect(&self, _: &ClientOptions) -> object_store::Result<object_store::client::HttpClient> {
        let client = crate::egress::builder()
            .connect_timeout(Duration::from_secs(10))
            // One request carries at most one 8 MiB part.
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            })?;
        Ok(object_store::client::HttpClient::new(client))
    }
}

impl Store {
    /// An S3-compatible bucket; keys are placed under `prefix` (a folder: `runs` and
    /// `runs/` are the same). Plain http is allowed only when `endpoint` says `http://`.
    pub fn s3(
        bucket: &str,
        prefix: &str,
        endpoint: Option<&str>,
        region: &str,
        access_key: &str,
        secret_key: &str,
        force_path_style: bool,
    ) -> Result<Store, ArchiveError> {
        if bucket.is_empty() || bucket.contains('/') {
            return Err(ArchiveError::Config(format!(
                "bucket name {bucket:?} is not valid"
            )));
        }
        if access_key.is_empty() || secret_key.is_empty() {
            return Err(ArchiveError::Config(
                "the S3 access key or secret key is empty".into(),
            ));
        }
        let prefix = prefix.trim_matches('/').to_string();
        if !prefix.is_empty() && ObjectPath::parse(&prefix).is_err() {
            return Err(ArchiveError::Config(format!(
                "S3 prefix {prefix:?} is not a valid key prefix"
            )));
        }
        // Fail over quickly enough for the controller's own retry with backoff to take over;
        // object_store's default retries for 3 minutes per request.
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(200),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: 4,
            retry_timeout: Duration::from_secs(60),
        };
        // The HTTP client needs a TLS crypto provider; the binary installs ring first, and
        // this makes any other caller (tests, tools) work the same. A no-op once installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let options = ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(10))
            // One request carries at most one 8 MiB part.
            .with_timeout(Duration::from_secs(120));
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(region)
            .with_access_key_id(access_key)
            .with_secret_access_key(secret_key)
            .with_virtual_hosted_style_request(!force_path_style)
            .with_retry(retry);
        let mut options = options;
        if let Some(ep) = endpoint {
            let http = check_endpoint(ep)?;
            options = options.with_allow_http(http);
            builder = builder.with_endpoint(ep.trim_end_matches('/'));
        }
        let s3 = builder
            .with_client_options(options)
            .with_http_connector(EgressConnector)
            .build()
            // The builder's text can quote the settings; name the fields instead.
            .map_err(|_| {
                ArchiveError::Config(
                    "the S3 client refused the settings (bucket, region or endpoint)".into(),
                )
            })?;
        Ok(Store {
            inner: Arc::new(s3),
            kind: Kind::S3 {
                bucket: bucket.to_string(),
                prefix,
            },
        })
    }

    /// A local directory (e.g. a mounted PersistentVolumeClaim), created when missing.
    /// Writes are fsynced: after a verified archive the Jobs may be deleted, and the bundle
    /// is then the only copy.
    pub fn filesystem(dir: &Path) -> Result<Store, ArchiveError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            ArchiveError::Config(format!("cannot create directory {}: {e}", dir.display()))
        })?;
        Store::existing_dir(dir)
    }

    fn existing_dir(dir: &Path) -> Result<Store, ArchiveError> {
        let dir = std::fs::canonicalize(dir).map_err(|e| {
            ArchiveError::Config(format!("cannot open directory {}: {e}", dir.display()))
        })?;
        let fs = LocalFileSystem::new_with_prefix(&dir)
            .map_err(|e| ArchiveError::Config(describe(&e)))?
            .with_fsync(true);
        Ok(Store {
            inner: Arc::new(fs),
            kind: Kind::Filesystem { dir },
        })
    }

    /// The store and key of a location given to `vigil archive verify`: `s3://bucket/key`
    /// (settings from the environment, see [`S3_ENV_HELP`]), `file:///path`, or a path.
    pub fn from_location(url: &str) -> Result<(Store, String), ArchiveError> {
        Store::from_location_with(url, |k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// [`Store::from_location`] with the environment given as a function (for tests).
    pub fn from_location_with(
        url: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(Store, String), ArchiveError> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() || key.is_empty() {
                return Err(ArchiveError::Config(format!(
                    "{url:?} is not an s3://bucket/key URL"
                )));
            }
            let need = |k: &str| {
                env(k).ok_or_else(|| {
                    ArchiveError::Config(format!("{k} is not set (needed for s3:// locations)"))
                })
            };
            let access = need("AWS_ACCESS_KEY_ID")?;
            let secret = need("AWS_SECRET_ACCESS_KEY")?;
            let endpoint = env("AWS_ENDPOINT_URL");
            let region = env("AWS_REGION")
                .or_else(|| env("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".into());
            // Self-hosted servers (the reason to set an endpoint) mostly need path style.
            let path_style = endpoint.is_some();
            let store = Store::s3(
                bucket,
                "",
                endpoint.as_deref(),
                &region,
                &access,
                &secret,
                path_style,
            )?;
            check_key(key)?;
            return Ok((store, key.to_string()));
        }
        let path = match url.strip_prefix("file://") {
            Some(p) if p.starts_with('/') => PathBuf::from(percent_decode(p)?),
            Some(_) => {
                return Err(ArchiveError::Config(format!(
                    "{url:?}: a file:// URL needs an absolute path (file:///dir/bundle.tar.gz)"
                )));
            }
            None if url.contains("://") => {
                return Err(ArchiveError::Config(format!(
                    "{url:?}: only s3://, file:// and plain paths are supported"
                )));
            }
            None => PathBuf::from(url),
        };
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| ArchiveError::Config(format!("{url:?} does not name a file")))?
            .to_string();
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            return Err(ArchiveError::NotFound {
                location: url.to_string(),
            });
        }
        // Reading must not create directories: open what exists.
        let store = Store::existing_dir(&parent)?;
        check_key(&name)?;
        Ok((store, name))
    }

    /// The URL of `key` in this store: `s3://bucket/prefix/key` or `file:///dir/key`.
    pub fn location(&self, key: &str) -> String {
        match &self.kind {
            Kind::S3 { bucket, prefix } if prefix.is_empty() => format!("s3://{bucket}/{key}"),
            Kind::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}/{key}"),
            Kind::Filesystem { dir } => {
                let dir = dir.to_string_lossy();
                format!("file://{}/{key}", dir.trim_end_matches('/'))
            }
        }
    }

    /// The object path of `key` (the store's prefix applied).
    pub(crate) fn path(&self, key: &str) -> Result<ObjectPath, ArchiveError> {
        check_key(key)?;
        let full = match &self.kind {
            Kind::S3 { prefix, .. } if !prefix.is_empty() => format!("{prefix}/{key}"),
            _ => key.to_string(),
        };
        ObjectPath::parse(&full)
            .map_err(|_| ArchiveError::Config(format!("{key:?} is not a valid object key")))
    }

    /// Refuses when a directory store has less than 1.5 × `expected` bytes free (room for
    /// the bundle and its staging copy, and for the estimate being short). Buckets: always
    /// Ok, they do not run out in a way a client can see beforehand.
    pub async fn check_space(&self, expected: u64) -> Result<(), ArchiveError> {
        match &self.kind {
            Kind::S3 { .. } => Ok(()),
            Kind::Filesystem { dir } => {
                let dir = dir.clone();
                let free = tokio::task::spawn_blocking(move || free_bytes(&dir))
                    .await
                    .map_err(|_| ArchiveError::Config("free-space check stopped".into()))??;
                space_decision(expected, free)
            }
        }
    }

    /// Deletes the object at `key`; a missing object is not an error (deletes repeat after
    /// a restart).
    pub async fn delete(&self, key: &str) -> Result<(), ArchiveError> {
        let path = self.path(key)?;
        match self.inner.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(ArchiveError::Upload(format!(
                "deleting {}: {}",
                self.location(key),
                describe(&e)
            ))),
        }
    }
}

/// The free-space rule, apart from how free space is measured: `free` must be at least
/// 1.5 × `expected`.
pub fn space_decision(expected: u64, free: u64) -> Result<(), ArchiveError> {
    let need = (expected as u128 * 3).div_ceil(2);
    if free as u128 >= need {
        Ok(())
    } else {
        Err(ArchiveError::NoSpace {
            need: u64::try_from(need).unwrap_or(u64::MAX),
            free,
        })
    }
}

/// Bytes an unprivileged writer may still use in the filesystem holding `dir`.
fn free_bytes(dir: &Path) -> Result<u64, ArchiveError> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| ArchiveError::Config(format!("{} is not a valid path", dir.display())))?;
    // SAFETY: `c` is a NUL-terminated path and `st` a properly sized, writable statvfs.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return Err(ArchiveError::Config(format!(
            "cannot read free space of {}: {e}",
            dir.display()
        )));
    }
    #[allow(clippy::unnecessary_cast)] // the field widths differ between platforms
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// A key names a file below the store's root: relative, no empty, `.` or `..` segments.
fn check_key(key: &str) -> Result<(), ArchiveError> {
    let ok = !key.is_empty()
        && !key.starts_with('/')
        && key
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..");
    if ok {
        Ok(())
    } else {
        Err(ArchiveError::Config(format!(
            "{key:?} is not a valid object key"
        )))
    }
}

/// Checks an endpoint URL and says whether it is plain http. Credentials in the URL are
/// refused: they would be shown wherever the endpoint is.
fn check_endpoint(ep: &str) -> Result<bool, ArchiveError> {
    let (http, rest) = if let Some(r) = ep.strip_prefix("http://") {
        (true, r)
    } else if let Some(r) = ep.strip_prefix("https://") {
        (false, r)
    } else {
        return Err(ArchiveError::Config(
            "the S3 endpoint must be an http:// or https:// URL".into(),
        ));
    };
    let authority = rest.split('/').next().unwrap_or("");
    if authority.contains('@') {
        return Err(ArchiveError::Config(
            "the S3 endpoint must not carry credentials; use the credentials Secret".into(),
        ));
    }
    if authority.is_empty() {
        return Err(ArchiveError::Config("the S3 endpoint has no host".into()));
    }
    Ok(http)
}

/// `%XX` escapes of a file URL's path.
fn percent_decode(s: &str) -> Result<String, ArchiveError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| ArchiveError::Config(format!("bad %-escape in {s:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ArchiveError::Config(format!("{s:?} is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_rule() {
        let cases = [
            (100, 150, true),
            (100, 149, false),
            (101, 152, true), // 1.5 × 101 rounds up to 152
            (101, 151, false),
            (0, 0, true),
            (u64::MAX, u64::MAX, false),
        ];
        for (expected, free, ok) in cases {
            assert_eq!(
                space_decision(expected, free).is_ok(),
                ok,
                "{expected} {free}"
            );
        }
        assert_eq!(
            space_decision(100, 10),
            Err(ArchiveError::NoSpace {
                need: 150,
                free: 10
            })
        );
    }

    #[tokio::test]
    async fn a_directory_refuses_more_than_it_has() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::filesystem(dir.path()).unwrap();
        store.check_space(1024).await.unwrap();
        let free = free_bytes(dir.path()).unwrap();
        match store.check_space(free).await {
            Err(ArchiveError::NoSpace { need, .. }) => assert!(need > free),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn locations() {
        let dir = tempfile::tempdir().unwrap();
        let fs = Store::filesystem(&dir.path().join("a b")).unwrap();
        let canon = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(
            fs.location("ns/r.tar.gz"),
            format!("file://{}/a b/ns/r.tar.gz", canon.display())
        );
        let s3 = Store::s3("bkt", "/runs/", None, "us-east-1", "ak", "sk", false).unwrap();
        assert_eq!(s3.location("ns/r.tar.gz"), "s3://bkt/runs/ns/r.tar.gz");
        assert_eq!(s3.path("ns/r.tar.gz").unwrap().as_ref(), "runs/ns/r.tar.gz");
        let bare = Store::s3(
            "bkt",
            "",
            Some("http://127.0.0.1:8333"),
            "r",
            "ak",
            "sk",
            true,
        )
        .unwrap();
        assert_eq!(bare.location("k"), "s3://bkt/k");
        assert!(!format!("{bare:?}").contains("sk"));
    }

    #[test]
    fn bad_settings_are_named_without_secrets() {
        let cases: [(&str, Option<&str>, &str); 4] = [
            ("", None, "bucket"),
            ("b/c", None, "bucket"),
            ("b", Some("ftp://x"), "http"),
            ("b", Some("http://user:s3cr3t@host"), "credentials"),
        ];
        for (bucket, ep, says) in cases {
            let e = Store::s3(bucket, "", ep, "r", "ak", "s3cr3t", true).unwrap_err();
            let text = e.to_string();
            assert!(text.contains(says), "{text}");
            assert!(!text.contains("s3cr3t"), "{text}");
        }
        for key in ["", "/abs", "a//b", "a/../b", "."] {
            assert!(check_key(key).is_err(), "{key:?}");
        }
    }

    #[test]
    fn locations_parse() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x y.tar.gz");
        let env = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("ak".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("sk".to_string()),
            "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:8333".to_string()),
            _ => None,
        };
        let (s, k) = Store::from_location_with("s3://bkt/runs/ns/a.tar.gz", env).unwrap();
        assert_eq!(k, "runs/ns/a.tar.gz");
        assert_eq!(s.location(&k), "s3://bkt/runs/ns/a.tar.gz");
        let (s, k) = Store::from_location_with(file.to_str().unwrap(), env).unwrap();
        assert_eq!(k, "x y.tar.gz");
        assert!(s.location(&k).ends_with("/x y.tar.gz"));
        let url = format!("file://{}/x%20y.tar.gz", dir.path().display());
        let (_, k) = Store::from_location_with(&url, env).unwrap();
        assert_eq!(k, "x y.tar.gz");
        let none = |_: &str| None;
        let cases = [
            ("s3://bkt", "s3://bucket/key"),
            ("s3://bkt/k", "AWS_ACCESS_KEY_ID"),
            ("http://h/k", "only s3://"),
            ("file://rel/k", "absolute"),
        ];
        for (url, says) in cases {
            let e = Store::from_location_with(url, none).unwrap_err();
            assert!(e.to_string().contains(says), "{url}: {e}");
        }
        assert!(matches!(
            Store::from_location_with("/no/such/dir/b.tar.gz", none),
            Err(ArchiveError::NotFound { .. })
        ));
    }
}
