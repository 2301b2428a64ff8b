//! Runs `vigil run` as a subprocess, the way users run it, against the test control plane.

use super::cluster::Cluster;
use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vigil::probe::prom;

/// A running operator process; killed on drop.
pub struct Operator {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
    pub identity: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[allow(dead_code)]
impl Operator {
    /// Starts `vigil run` watching `namespace`, with its own lease (named after the namespace),
    /// as the ServiceAccount the chart creates in namespace mode (`install_operator_rights`).
    /// Every server of the tests listens on loopback, so the operator may reach it
    /// (`--allow-loopback`).
    pub fn start(cluster: &Cluster, namespace: &str, identity: &str, extra: &[&str]) -> Operator {
        Self::launch(cluster, namespace, identity, extra, true)
    }

    /// [`Operator::start`] watching `also` besides `namespace` (its lease's), with the
    /// rights the chart grants for that list of namespaces.
    pub fn start_watching(
        cluster: &Cluster,
        namespace: &str,
        also: &[&str],
        identity: &str,
    ) -> Operator {
        let mut watched = vec![namespace];
        watched.extend_from_slice(also);
        let kubeconfig = super::operator_kubeconfig_watching(cluster, namespace, &watched);
        let also = also.join(",");
        let extra = ["--namespace", also.as_str()];
        Self::launch_with(cluster, namespace, identity, &extra, true, kubeconfig, &[])
    }

    /// [`Operator::start`] as a cluster would run it: loopback is refused.
    pub fn start_without_loopback(
        cluster: &Cluster,
        namespace: &str,
        identity: &str,
        extra: &[&str],
    ) -> Operator {
        Self::launch(cluster, namespace, identity, extra, false)
    }

    /// [`Operator::start`] reaching the API server at `server` (e.g. through a
    /// [`super::proxy::Proxy`]) instead of its own address.
    pub fn start_via(
        cluster: &Cluster,
        namespace: &str,
        identity: &str,
        extra: &[&str],
        server: std::net::SocketAddr,
    ) -> Operator {
        let direct = Self::kubeconfig(cluster, namespace);
        let text = std::fs::read_to_string(&direct).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let line = lines
            .iter_mut()
            .find(|l| l.trim_start().starts_with("server: "))
            .expect("kubeconfig has a server");
        *line = format!("    server: https://{server}");
        let path = direct.with_file_name(format!(
            "{}-via-{}",
            direct.file_name().unwrap().to_string_lossy(),
            server.port()
        ));
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        Self::launch_with(cluster, namespace, identity, extra, true, path, &[])
    }

    /// The operator's kubeconfig for `namespace`, made once per namespace.
    fn kubeconfig(cluster: &Cluster, namespace: &str) -> PathBuf {
        static KUBECONFIGS: std::sync::Mutex<Vec<(String, PathBuf)>> =
            std::sync::Mutex::new(Vec::new());
        let mut known = KUBECONFIGS.lock().unwrap();
        match known.iter().find(|(ns, _)| ns == namespace) {
            Some((_, p)) => p.clone(),
            None => {
                let p = super::operator_kubeconfig(cluster, namespace);
                known.push((namespace.to_string(), p.clone()));
                p
            }
        }
    }

    /// [`Operator::start`] with these environment variables set (e.g. `RUST_LOG`).
    pub fn start_env(
        cluster: &Cluster,
        namespace: &str,
        identity: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Operator {
        let kubeconfig = Self::kubeconfig(cluster, namespace);
        Self::launch_with(cluster, namespace, identity, extra, true, kubeconfig, env)
    }

    fn launch(
        cluster: &Cluster,
        namespace: &str,
        identity: &str,
        extra: &[&str],
        loopback: bool,
    ) -> Operator {
        let kubeconfig = Self::kubeconfig(cluster, namespace);
        Self::launch_with(
            cluster,
            namespace,
            identity,
            extra,
            loopback,
            kubeconfig,
            &[],
        )
    }

    fn launch_with(
        _cluster: &Cluster,
        namespace: &str,
        identity: &str,
        extra: &[&str],
        loopback: bool,
        kubeconfig: PathBuf,
        env: &[(&str, &str)],
    ) -> Operator {
        let port = free_port();
        let dir = std::env::temp_dir().join("vigil-test-logs");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join(format!("{namespace}-{identity}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
        cmd.args([
            "run",
            "--namespace",
            namespace,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--lease-namespace", namespace])
        .args([
            "--identity",
            identity,
            "--lease-duration",
            "6",
            "--log-format",
            "json",
        ])
        .args(extra)
        // One lease per namespace, unless the test shards it with leases of its own.
        .args(match extra.contains(&"--lease-name") {
            true => vec![],
            false => vec!["--lease-name".to_string(), format!("vigil-{namespace}")],
        })
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "info,vigil=debug")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file);
        if loopback {
            cmd.arg("--allow-loopback");
        }
        cmd.envs(env.iter().copied());
        let child = cmd.spawn().expect("start vigil run");
        Operator {
            child,
            port,
            log,
            identity: identity.to_string(),
        }
    }

    /// GETs a path of the operator's HTTP server: (status, body).
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        let status = buf.split_whitespace().nth(1)?.parse().ok()?;
        let body = buf
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Some((status, body))
    }

    /// Value of the first sample that matches `selector`, a metric name with optional
    /// labels as in the exposition (e.g. `vigil_leader` or
    /// `vigil_probes_total{chain="substrate",result="ok"}`: the sample must have those
    /// labels, and may have others), if present.
    pub fn metric(&self, selector: &str) -> Option<f64> {
        // The selector is read with the same parser, as a sample line with a dummy value.
        let want = prom::parse(&format!("{selector} 0"))
            .pop()
            .unwrap_or_else(|| panic!("not a metric selector: {selector}"));
        let (_, body) = self.get("/metrics")?;
        prom::parse(&body)
            .into_iter()
            .find(|s| {
                s.name == want.name
                    && want
                        .labels
                        .iter()
                        .all(|(k, v)| s.label(k) == Some(v.as_str()))
            })
            .map(|s| s.value)
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some((200, _)) = self.get("/readyz") {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "operator exited early with {status}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "operator not ready after {timeout:?}; log:\n{}",
            self.log_text()
        );
    }

    /// Waits until this process reports itself leader.
    pub fn wait_leader(&mut self, timeout: Duration) -> Duration {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.metric("vigil_leader") == Some(1.0) {
                return start.elapsed();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "operator exited early with {status}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "operator {} not leader after {timeout:?}; log:\n{}",
            self.identity,
            self.log_text()
        );
    }

    /// The operator's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal to the process.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for exit, up to `timeout`; returns the exit code (None if killed by a signal).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<Option<i32>> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
