//! A real S3-compatible server on loopback for the pipeline run archive tests: SeaweedFS
//! (`weed server -filer -s3`: master, volume server, filer and S3 gateway in one process), built once from
//! the Go module proxy and cached per user by `scripts/s3-bins.sh` (its output directory is
//! `VIGIL_TEST_S3_DIR`, which `scripts/test.sh` sets; without it this harness runs the script
//! itself).
//!
//! `weed server` opens about ten ports, all with fixed defaults (9333, 8080, 8888, 8333, ...)
//! unless told otherwise. Every one of them is given here, chosen free on 127.0.0.1 at
//! [`SeaweedFs::start`] and kept for [`SeaweedFs::restart`], so several servers run at once in
//! one test process and beside anything else on the machine. Ports the tests do not need
//! (the Iceberg and Lance catalogs, metrics) are switched off. The signing key pair comes from
//! the environment (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` make an admin identity), and the
//! bucket is created by the first signed PUT (`-s3.autoCreateBucket`, on by default).

use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};
use std::collections::BTreeSet;
use std::hash::{BuildHasher, RandomState};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a start or restart may take until a signed round trip works (a first start on a
/// busy 2-core machine takes some seconds).
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// The directory with `weed`.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| super::cached_bins("VIGIL_TEST_S3_DIR", "s3-bins.sh"))
}

/// Every port `weed server` listens on (all on 127.0.0.1).
#[derive(Clone, Copy, Debug)]
struct Ports {
    s3: u16,
    s3_grpc: u16,
    master: u16,
    master_grpc: u16,
    volume: u16,
    volume_grpc: u16,
    filer: u16,
    filer_grpc: u16,
}

impl Ports {
    fn pick() -> Ports {
        let p = free_port;
        Ports {
            s3: p(),
            s3_grpc: p(),
            master: p(),
            master_grpc: p(),
            volume: p(),
            volume_grpc: p(),
            filer: p(),
            filer_grpc: p(),
        }
    }

    fn grpc(&self) -> [(&'static str, u16); 4] {
        [
            ("master", self.master_grpc),
            ("volume", self.volume_grpc),
            ("filer", self.filer_grpc),
            ("s3", self.s3_grpc),
        ]
    }
}

/// A free port on 127.0.0.1, below the kernel's ephemeral range (so an outgoing connection
/// cannot take it between this check and the server's bind) and never handed out twice in
/// this process (a server that is stopped keeps its ports for its restart).
fn free_port() -> u16 {
    static TAKEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .filter(|&low| low > 20_000)
        .unwrap_or(32_768);
    let span = low - 10_000;
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let random = RandomState::new().hash_one((std::process::id(), n, Instant::now()));
        let port = (10_000 + random % u64::from(span)) as u16;
        if taken.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            taken.insert(port);
            return port;
        }
    }
}

/// A running SeaweedFS with one bucket, serving signed S3 (path-style, plain HTTP) at
/// `endpoint`. Killed on drop, and its data directory removed.
pub struct SeaweedFs {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
    ports: Ports,
    client: AmazonS3,
    rt: tokio::runtime::Runtime,
}

impl SeaweedFs {
    /// Starts a server with a fresh data directory and bucket `vigil-test`, and waits until a
    /// signed PUT, GET and DELETE round trip works.
    pub fn start() -> SeaweedFs {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::Builder::new()
            .prefix("vigil-s3-")
            .tempdir()
            .expect("create a temp dir for SeaweedFS");
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let suffix = RandomState::new().hash_one((std::process::id(), Instant::now()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime for the S3 client");
        let bucket = "vigil-test".to_string();
        let access_key = format!("vigiltest{:08x}", suffix & 0xffff_ffff);
        let secret_key = format!("secret-{suffix:016x}");
        let ports = Ports::pick();
        let endpoint = format!("http://127.0.0.1:{}", ports.s3);
        let client = s3_client(&endpoint, &bucket, &access_key, &secret_key);
        let mut s = SeaweedFs {
            endpoint,
            bucket,
            access_key,
            secret_key,
            child: None,
            dir,
            ports,
            client,
            rt,
        };
        // A port can still be taken by someone else between the check and weed's bind; weed
        // then exits at once ("not available"), so try again with other ports.
        for attempt in 1.. {
            match s.launch() {
                Ok(()) => break,
                Err(e) if attempt < 3 && e.contains("not available") => {
                    s.kill();
                    s.ports = Ports::pick();
                    s.endpoint = format!("http://127.0.0.1:{}", s.ports.s3);
                    s.client = s3_client(&s.endpoint, &s.bucket, &s.access_key, &s.secret_key);
                }
                Err(e) => panic!("SeaweedFS did not start: {e}\n{}", s.log_tail()),
            }
        }
        s
    }

    /// Kills the server (SIGKILL, as a crash would); its data directory stays, for
    /// [`SeaweedFs::restart`]. Requests fail at once until then.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts the server again on the same ports and data directory (a running one is killed
    /// first), and waits until a signed round trip works.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(e) = self.launch() {
            panic!("SeaweedFS did not restart: {e}\n{}", self.log_tail());
        }
    }

    /// Stores `body` at `key` (a signed PUT); panics if the server refuses.
    pub fn put(&self, key: &str, body: &[u8]) {
        let path = object_path(key);
        let payload = PutPayload::from(body.to_vec());
        self.block_on(self.client.put(&path, payload))
            .unwrap_or_else(|e| panic!("S3 PUT {key}: {e}\n{}", self.log_tail()));
    }

    /// The object at `key`; None if there is none, and also if the server cannot be reached
    /// (e.g. after [`SeaweedFs::stop`]). [`SeaweedFs::try_get`] tells the two apart.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.try_get(key).ok().flatten()
    }

    /// The object at `key`: Ok(None) if there is none, Err if the request failed otherwise.
    pub fn try_get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let path = object_path(key);
        let result = self.block_on(async {
            match self.client.get(&path).await {
                Ok(r) => r.bytes().await.map(|b| Some(b.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        result.map_err(|e| format!("S3 GET {key}: {e}"))
    }

    /// Keys of every object under `prefix`, sorted. The prefix matches whole `/`-separated
    /// segments (`runs/a` lists `runs/a/x`, not `runs/ab`); "" lists the whole bucket.
    /// Panics if the server cannot be reached.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        let prefix = prefix.trim_matches('/');
        let path = (!prefix.is_empty()).then(|| object_path(prefix));
        let mut keys: Vec<String> = self
            .block_on(
                self.client
                    .list(path.as_ref())
                    .map_ok(|m| m.location.to_string())
                    .try_collect::<Vec<_>>(),
            )
            .unwrap_or_else(|e| panic!("S3 LIST {prefix:?}: {e}\n{}", self.log_tail()));
        keys.sort();
        keys
    }

    /// The server's output (all starts appended), e.g. for a panic message.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("weed.log")
    }

    /// The last lines of the server's output.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!(
            "--- last lines of {} ---\n{tail}",
            self.log_path().display()
        )
    }

    /// Runs `f` to completion on this server's runtime, from a helper thread (so that a
    /// caller inside another runtime does not trip over nesting).
    fn block_on<F: Future + Send>(&self, f: F) -> F::Output
    where
        F::Output: Send,
    {
        std::thread::scope(|s| {
            s.spawn(|| self.rt.block_on(f))
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// Spawns `weed server` and waits until it serves a signed round trip.
    fn launch(&mut self) -> Result<(), String> {
        let d = self.dir.path();
        let p = self.ports;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("open {}: {e}", self.log_path().display()))?;
        let _ = writeln!(&log, "=== vigil test harness: starting weed server ===");
        let args = [
            format!("-dir={}", d.join("data").display()),
            // Advertised to its own components: without it weed advertises the machine's
            // address and writes fail with 500.
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            "-filer".into(),
            "-s3".into(),
            format!("-s3.port={}", p.s3),
            format!("-s3.port.grpc={}", p.s3_grpc),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            format!("-master.port={}", p.master),
            format!("-master.port.grpc={}", p.master_grpc),
            format!("-volume.port={}", p.volume),
            format!("-volume.port.grpc={}", p.volume_grpc),
            format!("-filer.port={}", p.filer),
            format!("-filer.port.grpc={}", p.filer_grpc),
            // Fixed sizes, not sized from the disk: `weed mini` (used before) wants 1% of the
            // whole disk free and offered no volume at all on a big, nearly full CI disk ("no
            // volume server capacity registered yet"). Small volumes, a few of them, and an absolute
            // free-space floor keep the test independent of the machine's disk.
            "-master.volumeSizeLimitMB=64".into(),
            "-volume.max=16".into(),
            "-volume.minFreeSpace=256MiB".into(),
            "-master.telemetry=false".into(),
            "-metricsPort=0".into(),
            // Unix sockets default to /tmp/seaweedfs-<name>-<port>.sock; keep them here.
            format!("-filer.localSocket={}", d.join("filer.sock").display()),
            format!("-s3.localSocket={}", d.join("s3.sock").display()),
        ];
        let child = Command::new(bin_dir().join("weed"))
            .arg("server")
            .args(&args)
            .current_dir(d)
            .env("AWS_ACCESS_KEY_ID", &self.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_key)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("run {}: {e}", bin_dir().join("weed").display()))?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Polls a signed PUT, GET and DELETE of a probe object until all work, the server
    /// exits, or [`READY_TIMEOUT`] passes. The probe object is deleted, so `list` never
    /// shows it.
    fn wait_ready(&mut self) -> Result<(), String> {
        let start = Instant::now();
        let probe = object_path("vigil-ready-probe");
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
                let this_start = log.rsplit("=== vigil test harness").next().unwrap_or("");
                let why = if this_start.contains("not available") {
                    "a port was not available"
                } else {
                    "see its log"
                };
                return Err(format!("weed server exited ({status}): {why}"));
            }
            let round_trip = self.block_on(async {
                self.client
                    .put(&probe, PutPayload::from_static(b"ready"))
                    .await?;
                let body = self.client.get(&probe).await?.bytes().await?;
                self.client.delete(&probe).await?;
                Ok::<_, object_store::Error>(body)
            });
            let last = match round_trip {
                Ok(body) if body.as_ref() == b"ready" => return Ok(()),
                Ok(body) => format!("the probe read back {body:?}"),
                Err(e) => e.to_string(),
            };
            if start.elapsed() > READY_TIMEOUT {
                return Err(format!(
                    "no signed S3 round trip at {} after {READY_TIMEOUT:?}; last error: {last}",
                    self.endpoint
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // weed serves gRPC also on /tmp/seaweedfs-<name>-grpc-<port>.sock (not configurable);
        // the next server on that port replaces a leftover, but do not leave them around.
        for (name, port) in self.ports.grpc() {
            let _ = std::fs::remove_file(format!("/tmp/seaweedfs-{name}-grpc-{port}.sock"));
        }
    }
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        self.kill();
        // `dir` (data, log, sockets) is removed when the TempDir drops.
    }
}

fn object_path(key: &str) -> ObjectPath {
    ObjectPath::parse(key).unwrap_or_else(|e| panic!("S3 key {key:?}: {e}"))
}

/// An S3 client for the server: path-style requests, plain HTTP, no retries (so that a
/// stopped server fails a request at once) and short timeouts.
fn s3_client(endpoint: &str, bucket: &str, access_key: &str, secret_key: &str) -> AmazonS3 {
    let retry = RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: 0,
        retry_timeout: Duration::from_secs(5),
    };
    let options = ClientOptions::new()
        .with_allow_http(true)
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(30));
    AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_access_key_id(access_key)
        .with_secret_access_key(secret_key)
        .with_virtual_hosted_style_request(false)
        .with_retry(retry)
        .with_client_options(options)
        .build()
        .expect("an S3 client for SeaweedFS")
}
