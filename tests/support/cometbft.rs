//! A real CometBFT network on loopback for the validator duty tests: 4 validators generated
//! by `cometbft testnet`, each running the built-in `kvstore` app. The `cometbft` binary is
//! built once from the Go module proxy and cached per user by `scripts/cometbft-bins.sh`
//! (its output directory is `VIGIL_TEST_COMETBFT_DIR`, which `scripts/test.sh` sets; without
//! it this harness runs the script itself).
//!
//! Every node gets its own loopback address, `127.S.T.1` to `127.S.T.4`, with CometBFT's
//! default ports there (RPC 26657, P2P 26656, Prometheus 26660). The block `S.T` is picked
//! at random in `127.240.0.0`–`127.254.255.0` (second octets the simulators and the probe
//! benchmark never use), checked free by binding every port first, and never handed out
//! twice in one process: two testnets in one test binary, and other tests on 127.0.0.1,
//! never collide.
//!
//! Blocks come about every half second (`timeout_commit = 500ms`, `timeout_propose = 1s`).
//! With one of the 4 validators stopped, the other 3 hold 75% of the power (over 2/3), so
//! the chain goes on; every commit then carries all three of their signatures.
//!
//! In `/commit`, an absent validator's signature has `block_id_flag` 1 and an EMPTY
//! `validator_address` (CometBFT does not name who is absent): signatures are in the order of
//! the validator set at that height (`/validators?height=H`), so a reader matches them by
//! position. [`Testnet::signature_flags`] does exactly that.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, RandomState};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::simulator::http;

/// Validators in the network.
pub const VALIDATORS: usize = 4;
/// CometBFT's default ports, used on each node's own address.
pub const RPC_PORT: u16 = 26657;
pub const P2P_PORT: u16 = 26656;
pub const METRICS_PORT: u16 = 26660;

/// How long the network may take to reach height 3 (a busy 2-core machine is slow to start
/// four Go processes).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a stopped node may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The directory with `cometbft`.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| super::cached_bins("VIGIL_TEST_COMETBFT_DIR", "cometbft-bins.sh"))
}

fn cometbft() -> PathBuf {
    bin_dir().join("cometbft")
}

/// A free block of 4 loopback addresses (`127.S.T.1`–`.4`) with every port this network
/// uses free on each, never handed out twice in this process.
fn pick_addresses() -> [Ipv4Addr; VALIDATORS] {
    static TAKEN: Mutex<BTreeSet<(u8, u8)>> = Mutex::new(BTreeSet::new());
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    for attempt in 0u32..1000 {
        let random = RandomState::new().hash_one((std::process::id(), attempt, Instant::now()));
        let block = (240 + (random % 15) as u8, ((random >> 8) % 256) as u8);
        if taken.contains(&block) {
            continue;
        }
        let ips: [Ipv4Addr; VALIDATORS] =
            std::array::from_fn(|i| Ipv4Addr::new(127, block.0, block.1, i as u8 + 1));
        // All listeners are held until every one is bound, then released together.
        let held: Option<Vec<TcpListener>> = ips
            .iter()
            .flat_map(|ip| [RPC_PORT, P2P_PORT, METRICS_PORT].map(|p| (*ip, p)))
            .map(|addr| TcpListener::bind(addr).ok())
            .collect();
        if held.is_some() {
            taken.insert(block);
            return ips;
        }
    }
    panic!("no free block of loopback addresses in 127.240.0.0-127.254.255.0 after 1000 tries");
}

/// Sets `key = value` in `[section]` of a CometBFT `config.toml` (the key must exist there:
/// `cometbft testnet` writes every option).
fn set_toml(text: &str, section: &str, key: &str, value: &str) -> String {
    let mut current = String::new();
    let mut done = false;
    let out: Vec<String> = text
        .lines()
        .map(|line| {
            let t = line.trim();
            if t.starts_with('[') && t.ends_with(']') {
                current = t[1..t.len() - 1].to_string();
            } else if current == section && t.split_once('=').is_some_and(|(k, _)| k.trim() == key)
            {
                done = true;
                return format!("{key} = {value}");
            }
            line.to_string()
        })
        .collect();
    assert!(done, "config.toml has no {key} in [{section}]");
    out.join("\n") + "\n"
}

fn quoted(s: &str) -> String {
    format!("\"{s}\"")
}

/// One node: its home directory, address, and process while it runs.
struct Node {
    home: PathBuf,
    ip: Ipv4Addr,
    /// The genesis validator address of this node (hex, upper case).
    validator: String,
    child: Option<Child>,
    /// How many times it was started (each start logs to its own file).
    starts: u32,
}

impl Node {
    fn log(&self, start: u32) -> PathBuf {
        self.home.join(format!("node-{start}.log"))
    }
}

/// A running 4-validator CometBFT network on loopback. Dropping it kills every node and
/// removes its directory (the node logs are kept under the temp dir's `vigil-test-logs`
/// when the test panicked).
pub struct Testnet {
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
}

impl Testnet {
    /// Generates the network, starts every node and waits until all of them are at height 3
    /// or more.
    pub fn start() -> Testnet {
        let dir = tempfile::Builder::new()
            .prefix("vigil-cometbft-")
            .tempdir()
            .expect("create a temp dir for the testnet");
        let ips = pick_addresses();
        let out = Command::new(cometbft())
            .args(["testnet", "--v", &VALIDATORS.to_string(), "--n", "0", "--o"])
            .arg(dir.path())
            .args(["--starting-ip-address", &ips[0].to_string()])
            .args(["--p2p-port", &P2P_PORT.to_string()])
            .stdin(Stdio::null())
            .output()
            .expect("run cometbft testnet");
        assert!(
            out.status.success(),
            "cometbft testnet failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let nodes: Vec<Node> = ips
            .iter()
            .enumerate()
            .map(|(i, ip)| {
                let home = dir.path().join(format!("node{i}"));
                let validator = read_key_address(&home);
                Node {
                    home,
                    ip: *ip,
                    validator,
                    child: None,
                    starts: 0,
                }
            })
            .collect();
        let ids: Vec<String> = nodes.iter().map(|n| node_id(&n.home)).collect();
        for (i, node) in nodes.iter().enumerate() {
            let peers: Vec<String> = (0..VALIDATORS)
                .filter(|j| *j != i)
                .map(|j| format!("{}@{}:{P2P_PORT}", ids[j], ips[j]))
                .collect();
            let path = node.home.join("config/config.toml");
            let mut text = std::fs::read_to_string(&path).expect("read config.toml");
            let ip = node.ip;
            for (section, key, value) in [
                ("", "moniker", quoted(&format!("node{i}"))),
                ("rpc", "laddr", quoted(&format!("tcp://{ip}:{RPC_PORT}"))),
                ("p2p", "laddr", quoted(&format!("tcp://{ip}:{P2P_PORT}"))),
                (
                    "p2p",
                    "external_address",
                    quoted(&format!("{ip}:{P2P_PORT}")),
                ),
                ("p2p", "persistent_peers", quoted(&peers.join(","))),
                // Only the configured peers: nothing learnt from another network.
                ("p2p", "pex", "false".into()),
                ("p2p", "allow_duplicate_ip", "true".into()),
                ("p2p", "addr_book_strict", "false".into()),
                ("consensus", "timeout_propose", quoted("1s")),
                ("consensus", "timeout_commit", quoted("500ms")),
                ("instrumentation", "prometheus", "true".into()),
                (
                    "instrumentation",
                    "prometheus_listen_addr",
                    quoted(&format!("{ip}:{METRICS_PORT}")),
                ),
            ] {
                text = set_toml(&text, section, key, &value);
            }
            std::fs::write(&path, text).expect("write config.toml");
        }
        let mut net = Testnet { dir, nodes };
        for i in 0..VALIDATORS {
            net.start_node(i);
        }
        let start = Instant::now();
        loop {
            let heights: Vec<u64> = (0..VALIDATORS).map(|i| net.height(i)).collect();
            if heights.iter().all(|h| *h >= 3) {
                break;
            }
            net.assert_running();
            assert!(
                start.elapsed() < START_TIMEOUT,
                "the testnet did not reach height 3 within {START_TIMEOUT:?}: heights {heights:?}\n{}",
                net.log_tails()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        net
    }

    /// Node `i`'s RPC base URL, `http://127.S.T.(i+1):26657`.
    pub fn rpc(&self, i: usize) -> String {
        format!("http://{}:{RPC_PORT}", self.nodes[i].ip)
    }

    /// Node `i`'s Prometheus URL, `http://127.S.T.(i+1):26660/metrics`.
    pub fn metrics(&self, i: usize) -> String {
        format!("http://{}:{METRICS_PORT}/metrics", self.nodes[i].ip)
    }

    /// Node `i`'s loopback address.
    pub fn ip(&self, i: usize) -> Ipv4Addr {
        self.nodes[i].ip
    }

    /// Node `i`'s home directory (`config/`, `data/`, and its logs `node-N.log`).
    pub fn home(&self, i: usize) -> &Path {
        &self.nodes[i].home
    }

    /// The genesis validator address of node `i` (hex, upper case, as `/validators` and
    /// `/status` write it). It stays the same after [`Testnet::restart_with_new_key`]: that
    /// validator keeps missing blocks.
    pub fn address(&self, i: usize) -> String {
        self.nodes[i].validator.clone()
    }

    /// The address of the key node `i` signs with now (differs from [`Testnet::address`]
    /// after [`Testnet::restart_with_new_key`]).
    pub fn key_address(&self, i: usize) -> String {
        read_key_address(&self.nodes[i].home)
    }

    /// Whether node `i`'s process runs.
    pub fn running(&mut self, i: usize) -> bool {
        match &mut self.nodes[i].child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Stops node `i` (SIGTERM, then SIGKILL after 10 s) and returns once it has exited.
    /// Its data stays for [`Testnet::start_node`].
    pub fn stop(&mut self, i: usize) {
        let Some(mut child) = self.nodes[i].child.take() else {
            return;
        };
        // SAFETY: kill(2) with the pid of our own child, which has not been reaped yet.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let start = Instant::now();
        while start.elapsed() < STOP_TIMEOUT {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts node `i` (after [`Testnet::stop`]; a no-op while it runs) and waits until its
    /// RPC answers `/status`. It then catches up with the others by itself.
    pub fn start_node(&mut self, i: usize) {
        if self.running(i) {
            return;
        }
        let node = &mut self.nodes[i];
        node.starts += 1;
        let log = std::fs::File::create(node.log(node.starts)).expect("create the node log");
        let child = Command::new(cometbft())
            .arg("start")
            .arg("--home")
            .arg(&node.home)
            .arg("--proxy_app=kvstore")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("start cometbft");
        node.child = Some(child);
        let start = Instant::now();
        loop {
            if self.status(i).is_some() {
                return;
            }
            self.assert_running();
            assert!(
                start.elapsed() < START_TIMEOUT,
                "node {i}'s RPC did not answer within {START_TIMEOUT:?}\n{}",
                self.log_tails()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops node `i`, gives it a freshly generated validator key (with a reset sign state)
    /// and starts it again: it then runs as a healthy full node, in sync and with peers, while
    /// its validator ([`Testnet::address`]) keeps missing every block.
    pub fn restart_with_new_key(&mut self, i: usize) {
        self.stop(i);
        let out = Command::new(cometbft())
            .arg("gen-validator")
            .stdin(Stdio::null())
            .output()
            .expect("run cometbft gen-validator");
        assert!(
            out.status.success(),
            "cometbft gen-validator: {}",
            out.status
        );
        let doc: Value = serde_json::from_slice(&out.stdout).expect("gen-validator prints JSON");
        let home = &self.nodes[i].home;
        let key = serde_json::to_vec_pretty(&doc["Key"]).unwrap();
        std::fs::write(home.join("config/priv_validator_key.json"), key).unwrap();
        let state = serde_json::to_vec_pretty(&doc["LastSignState"]).unwrap();
        std::fs::write(home.join("data/priv_validator_state.json"), state).unwrap();
        assert_ne!(self.key_address(i), self.address(i));
        self.start_node(i);
    }

    /// `GET path` on node `i`'s RPC: the whole reply document, if it answered 200 with JSON.
    pub fn get(&self, i: usize, path: &str) -> Option<Value> {
        let addr = format!("{}:{RPC_PORT}", self.nodes[i].ip);
        let (status, body) = http(&addr, "GET", path, None)?;
        if status != 200 {
            return None;
        }
        serde_json::from_str(&body).ok()
    }

    /// The `result` of node `i`'s `/status`, if it answers.
    pub fn status(&self, i: usize) -> Option<Value> {
        self.get(i, "/status")
            .map(|d| d["result"].clone())
            .filter(|r| !r.is_null())
    }

    /// Node `i`'s latest block height (0 when it does not answer).
    pub fn height(&self, i: usize) -> u64 {
        self.status(i)
            .and_then(|s| s["sync_info"]["latest_block_height"].as_str()?.parse().ok())
            .unwrap_or(0)
    }

    /// Waits until node `i` is at `height` or above; returns its height then.
    pub fn wait_height(&self, i: usize, height: u64, timeout: Duration) -> u64 {
        let start = Instant::now();
        loop {
            let h = self.height(i);
            if h >= height {
                return h;
            }
            assert!(
                start.elapsed() < timeout,
                "node {i} is at {h}, not {height}, after {timeout:?}\n{}",
                self.log_tails()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The `result` of `/commit?height=H` read from node `i`.
    pub fn commit(&self, i: usize, height: u64) -> Option<Value> {
        self.get(i, &format!("/commit?height={height}"))
            .map(|d| d["result"].clone())
            .filter(|r| !r.is_null())
    }

    /// The addresses of the validator set at `height`, in the set's order (the order of the
    /// commit signatures), read from node `i`.
    pub fn validators(&self, i: usize, height: u64) -> Option<Vec<String>> {
        let doc = self.get(i, &format!("/validators?height={height}&per_page=100"))?;
        doc["result"]["validators"]
            .as_array()?
            .iter()
            .map(|v| v["address"].as_str().map(str::to_string))
            .collect()
    }

    /// Each validator's `block_id_flag` in the commit of block `height` (1 absent, 2 commit,
    /// 3 nil), by address, read from node `i`. Signatures are matched to the validator set by
    /// position: an absent one carries no address.
    pub fn signature_flags(&self, i: usize, height: u64) -> Option<BTreeMap<String, u64>> {
        let set = self.validators(i, height)?;
        let commit = self.commit(i, height)?;
        let sigs = commit["signed_header"]["commit"]["signatures"].as_array()?;
        assert_eq!(sigs.len(), set.len(), "commit {height}: {commit}");
        let mut out = BTreeMap::new();
        for (addr, sig) in set.into_iter().zip(sigs) {
            let flag = sig["block_id_flag"].as_u64()?;
            let named = sig["validator_address"].as_str().unwrap_or_default();
            assert!(
                named.is_empty() || named == addr,
                "commit {height}: signature of {named} in the place of {addr}"
            );
            out.insert(addr, flag);
        }
        Some(out)
    }

    /// Panics, with the logs, when a node that should run has exited.
    fn assert_running(&mut self) {
        for i in 0..self.nodes.len() {
            if let Some(c) = &mut self.nodes[i].child
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!(
                    "cometbft node {i} exited with {status}\n{}",
                    self.log_tails()
                );
            }
        }
    }

    /// The last lines of each node's current log.
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let text = std::fs::read_to_string(n.log(n.starts)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- node {i} ({}) ---\n", n.ip));
            for l in &lines[lines.len().saturating_sub(15)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Testnet {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::thread::panicking() {
            let keep = std::env::temp_dir().join("vigil-test-logs").join(
                self.dir
                    .path()
                    .file_name()
                    .unwrap_or_else(|| "vigil-cometbft".as_ref()),
            );
            let _ = std::fs::create_dir_all(&keep);
            for (i, n) in self.nodes.iter().enumerate() {
                for s in 1..=n.starts {
                    let _ = std::fs::copy(n.log(s), keep.join(format!("node{i}-{s}.log")));
                }
            }
            eprintln!("cometbft node logs kept in {}", keep.display());
        }
    }
}

/// The `address` in `HOME/config/priv_validator_key.json`.
fn read_key_address(home: &Path) -> String {
    let path = home.join("config/priv_validator_key.json");
    let doc: Value = serde_json::from_slice(&std::fs::read(&path).expect("read the key"))
        .expect("the key is JSON");
    doc["address"]
        .as_str()
        .expect("the key has an address")
        .to_ascii_uppercase()
}

/// The node id (`cometbft show-node-id`) of the node at `home`.
fn node_id(home: &Path) -> String {
    let out = Command::new(cometbft())
        .args(["show-node-id", "--home"])
        .arg(home)
        .stdin(Stdio::null())
        .output()
        .expect("run cometbft show-node-id");
    assert!(
        out.status.success(),
        "cometbft show-node-id: {}",
        out.status
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
