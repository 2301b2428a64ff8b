//! Runs `vigil-sim` (the `sim/` crate) as a subprocess: simulated validator nodes on
//! loopback addresses, and its admin API to inject faults.

use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// One simulated node as listed in the ready file.
#[derive(Clone, Debug)]
pub struct Node {
    pub index: usize,
    pub name: String,
    pub chain: String,
    pub rpc: String,
    pub metrics: Option<String>,
    pub health: Option<String>,
}

/// A running simulator; killed on drop.
pub struct Simulator {
    pub child: Child,
    pub admin: String,
    pub nodes: Vec<Node>,
    pub log: PathBuf,
}

/// The `vigil-sim` binary: `VIGIL_TEST_SIM_BIN` if set, else the one next to the `vigil`
/// binary under test. Cargo gives this package's tests only its own binaries
/// (`CARGO_BIN_EXE_vigil`), and another package's binary lands in the same directory when
/// built with the same target dir and profile: `cargo build -p vigil-sim` (scripts/test.sh
/// does) or `cargo test --workspace`. Not built from here: the running `cargo test` holds
/// the build directory's lock.
pub fn sim_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("VIGIL_TEST_SIM_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_vigil")).with_file_name("vigil-sim");
    assert!(
        bin.is_file(),
        "no simulator at {}: build it first with `cargo build --locked -p vigil-sim` \
         (same target dir and profile as the tests), or run `cargo test --workspace`",
        bin.display()
    );
    bin
}

/// A loopback /16 that no other simulator of this test run uses: distinct per process and
/// per call, so tests (and test binaries) running at once never collide on an address.
pub fn unique_base_ip() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    format!(
        "127.{}.{}.1",
        32 + (pid % 200),
        (n * 16 + (pid / 200) % 16) % 250
    )
}

#[allow(dead_code)]
impl Simulator {
    /// Starts `vigil-sim` with `args` (e.g. `["--nodes", "3", "--block-time", "1s"]`) and
    /// waits until every node listens.
    pub fn start(args: &[&str]) -> Simulator {
        let dir = std::env::temp_dir().join("vigil-test-logs");
        std::fs::create_dir_all(&dir).unwrap();
        let base_ip = unique_base_ip();
        let tag = base_ip.replace('.', "-");
        let ready = dir.join(format!("sim-{tag}.json"));
        let _ = std::fs::remove_file(&ready);
        let log = dir.join(format!("sim-{tag}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(sim_bin())
            .args(["--admin", "127.0.0.1:0", "--base-ip", &base_ip])
            .arg("--ready-file")
            .arg(&ready)
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start vigil-sim");
        let mut sim = Simulator {
            child,
            admin: String::new(),
            nodes: Vec::new(),
            log,
        };
        let start = Instant::now();
        let doc: Value = loop {
            if let Ok(text) = std::fs::read_to_string(&ready)
                && let Ok(v) = serde_json::from_str(&text)
            {
                break v;
            }
            if let Ok(Some(status)) = sim.child.try_wait() {
                panic!("simulator exited with {status}:\n{}", sim.log_text());
            }
            if start.elapsed() > Duration::from_secs(60) {
                panic!("simulator not ready after 60s:\n{}", sim.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        sim.admin = doc["admin"].as_str().expect("admin address").to_string();
        sim.nodes = doc["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| Node {
                index: n["index"].as_u64().unwrap() as usize,
                name: n["name"].as_str().unwrap().to_string(),
                chain: n["chain"].as_str().unwrap().to_string(),
                rpc: n["rpc"].as_str().unwrap().to_string(),
                metrics: n["metrics"].as_str().map(str::to_string),
                health: n["health"].as_str().map(str::to_string),
            })
            .collect();
        sim
    }

    /// The simulator's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Injects `fault` into node `index` (with `ms` for `slow`).
    pub fn fault(&self, index: usize, fault: &str) {
        self.admin_ok(&format!("/nodes/{index}/fault"), &json!({ "fault": fault }));
    }

    /// Injects `slow` with a delay into node `index`.
    pub fn slow(&self, index: usize, ms: u64) {
        self.admin_ok(
            &format!("/nodes/{index}/fault"),
            &json!({ "fault": "slow", "ms": ms }),
        );
    }

    /// Clears every fault of node `index` ("restart").
    pub fn recover(&self, index: usize) {
        self.admin_ok(&format!("/nodes/{index}/recover"), &json!({}));
    }

    /// Injects `fault` into every node.
    pub fn fault_all(&self, fault: &str) {
        self.admin_ok("/fault", &json!({ "fault": fault }));
    }

    /// Clears the faults of every node.
    pub fn recover_all(&self) {
        self.admin_ok("/recover", &json!({}));
    }

    /// `GET /nodes` of the admin API.
    pub fn list(&self) -> Value {
        let (status, body) = http(&self.admin, "GET", "/nodes", None).expect("admin API");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// POSTs `body` to an admin API path (e.g. `/fault` with a node list).
    pub fn admin_post(&self, path: &str, body: &Value) {
        self.admin_ok(path, body);
    }

    fn admin_ok(&self, path: &str, body: &Value) {
        let (status, text) =
            http(&self.admin, "POST", path, Some(&body.to_string())).expect("admin API");
        assert!(
            (200..300).contains(&status),
            "admin {path} {body}: {status} {text}"
        );
    }

    /// A MonitoredValidator manifest for node `index` under `policy`.
    pub fn validator_yaml(&self, index: usize, policy: &str) -> String {
        let n = &self.nodes[index];
        let mut endpoints = format!("rpc: '{}'", n.rpc);
        if let Some(m) = &n.metrics {
            endpoints.push_str(&format!(", metrics: '{m}'"));
        }
        format!(
            "apiVersion: vigil.dev/v1alpha1\nkind: MonitoredValidator\nmetadata:\n  name: {name}\nspec:\n  chain: {chain}\n  endpoints: {{{endpoints}}}\n  policyRef: {{name: {policy}}}\n",
            name = n.name,
            chain = n.chain,
        )
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 exchange (Connection: close): (status, body).
pub fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Some((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
