//! Real alert servers on loopback for the alert tests: Prometheus Alertmanager (API v2) and
//! Mailpit (SMTP with STARTTLS and auth; an HTTP API to read what arrived). Both are built
//! once from the Go module proxy and cached per user by `scripts/alert-bins.sh` (its output
//! directory is `VIGIL_TEST_ALERT_DIR`, which `scripts/test.sh` sets; without it this
//! harness runs the script itself).

use serde_json::Value;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The directory with `alertmanager` and `mailpit`.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| super::cached_bins("VIGIL_TEST_ALERT_DIR", "alert-bins.sh"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_http(url: &str, what: &str, log: &Path) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if http_get(url).is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{what} did not come up at {url}; log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// GET `url` (plain HTTP on loopback) and parse the JSON answer.
pub fn http_get(url: &str) -> Option<Value> {
    let rest = url.strip_prefix("http://")?;
    let (addr, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (code, body) = super::simulator::http(addr, "GET", &format!("/{path}"), None)?;
    (code == 200).then(|| serde_json::from_str(&body).ok())?
}

/// A running Alertmanager.
pub struct Alertmanager {
    child: Child,
    /// Base URL, e.g. `http://127.0.0.1:PORT`.
    pub url: String,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Starts Alertmanager with a `resolve_timeout` (alerts posted without `endsAt` resolve
    /// after it) and a receiver that forwards nowhere.
    pub fn start(resolve_timeout: &str) -> Alertmanager {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("am.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  resolve_timeout: {resolve_timeout}\nroute:\n  receiver: \"null\"\n  group_wait: 1s\nreceivers:\n- name: \"null\"\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let log = dir.path().join("alertmanager.log");
        let child = Command::new(bin_dir().join("alertmanager"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start alertmanager");
        let url = format!("http://127.0.0.1:{port}");
        wait_http(&format!("{url}/api/v2/status"), "alertmanager", &log);
        Alertmanager {
            child,
            url,
            log,
            _dir: dir,
        }
    }

    /// Active alerts (`GET /api/v2/alerts`; resolved ones are not listed).
    pub fn alerts(&self) -> Vec<Value> {
        http_get(&format!("{}/api/v2/alerts", self.url))
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    /// Active alerts named `name`.
    pub fn named(&self, name: &str) -> Vec<Value> {
        self.alerts()
            .into_iter()
            .filter(|a| a["labels"]["alertname"] == name)
            .collect()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running Mailpit with STARTTLS required and one SMTP account.
pub struct Mailpit {
    child: Child,
    pub smtp_port: u16,
    /// Base URL of its HTTP API.
    pub api: String,
    /// The CA that signed its certificate (PEM), for the channel's `caSecretRef`.
    pub ca_pem: String,
    pub user: String,
    pub password: String,
    _dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Mailpit {
    pub fn start() -> Mailpit {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A CA and a server certificate for 127.0.0.1 signed by it (a CA certificate
        // cannot serve as the server's own).
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=vigil test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        );
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "smtp.key",
                "-out",
                "smtp.csr",
            ],
        );
        std::fs::write(d.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n").unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "smtp.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
                "-out",
                "smtp.pem",
            ],
        );
        let (user, password) = ("vigil".to_string(), "s3cret-pass".to_string());
        std::fs::write(d.join("auth"), format!("{user}:{password}\n")).unwrap();
        let smtp_port = free_port();
        let http_port = free_port();
        let log = d.join("mailpit.log");
        let child = Command::new(bin_dir().join("mailpit"))
            .arg(format!("--smtp=127.0.0.1:{smtp_port}"))
            .arg(format!("--listen=127.0.0.1:{http_port}"))
            .arg(format!("--smtp-tls-cert={}", d.join("smtp.pem").display()))
            .arg(format!("--smtp-tls-key={}", d.join("smtp.key").display()))
            .arg("--smtp-require-starttls")
            .arg(format!("--smtp-auth-file={}", d.join("auth").display()))
            .arg("--disable-version-check")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mailpit");
        let api = format!("http://127.0.0.1:{http_port}");
        wait_http(&format!("{api}/api/v1/info"), "mailpit", &log);
        Mailpit {
            child,
            smtp_port,
            api,
            ca_pem: std::fs::read_to_string(d.join("ca.pem")).unwrap(),
            user,
            password,
            _dir: dir,
        }
    }

    /// Summaries of the messages received, newest first.
    pub fn messages(&self) -> Vec<Value> {
        http_get(&format!("{}/api/v1/messages", self.api))
            .and_then(|v| v["messages"].as_array().cloned())
            .unwrap_or_default()
    }

    /// One message in full (`Text` is the plain-text body).
    pub fn message(&self, id: &str) -> Value {
        http_get(&format!("{}/api/v1/message/{id}", self.api)).expect("message")
    }
}

impl Drop for Mailpit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
