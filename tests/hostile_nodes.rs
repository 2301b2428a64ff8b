//! Hostile nodes. A table of hostile responses (issue 13 item 6), each served on loopback by
//! a raw TCP server and probed through the library's `Prober` for every probe kind it
//! applies to: each must give the error class and message a person would read, never a
//! panic, and bounded memory (the server counts what it managed to send, since a probe
//! stops reading at the body cap, and the probe memory budget is whole again after every
//! probe). And one namespace of 20 hostile validators against a running operator under a
//! 256 MiB memory limit (issue 13 item 2): it stays up, and 100 honest validators in
//! another namespace keep fresh verdicts.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use vigil::probe::{Budget, ProbeKind, ProbeOptions, ProbeTarget, Prober, parse_url};

const CAP: u64 = 1 << 20;

/// What the hostile server answers to every request.
#[derive(Clone)]
enum Answer {
    /// A whole response: status line and headers, then the body.
    Fixed(String, Arc<Vec<u8>>),
    /// JSON-RPC batches refused (405), single calls answered with this body.
    RefuseBatch(Arc<Vec<u8>>),
    /// JSON-RPC replies (batch or single) whose `result` comes from the method name; a
    /// GET (CometBFT) gets `{"result": get}`.
    Rpc(fn(&str) -> Value, Value),
    /// A 200 with no length and this text repeated until `total` bytes or the client leaves.
    Endless(&'static str, u64),
    /// The status line, then one byte every 200 ms.
    SlowHeaders,
    /// Headers promising a body, then one byte of it every 200 ms.
    SlowBody,
}

struct Server {
    url: String,
    sent: Arc<AtomicU64>,
}

async fn serve(answer: Answer) -> Server {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = l.accept().await {
            let (answer, counter) = (answer.clone(), counter.clone());
            tokio::spawn(async move { answer_one(conn, answer, counter).await });
        }
    });
    Server { url, sent }
}

/// Reads one request (head and Content-Length body).
async fn read_request(conn: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            let mut body = buf[end + 4..].to_vec();
            while body.len() < len {
                let n = conn.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            return Some((head, body));
        }
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn send(conn: &mut TcpStream, bytes: &[u8], sent: &AtomicU64) -> bool {
    let ok = conn.write_all(bytes).await.is_ok();
    if ok {
        sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    }
    ok
}

async fn answer_one(mut conn: TcpStream, answer: Answer, sent: Arc<AtomicU64>) {
    while let Some((head, body)) = read_request(&mut conn).await {
        match &answer {
            Answer::Fixed(h, b) => {
                if !send(&mut conn, format!("{h}\r\n\r\n").as_bytes(), &sent).await
                    || !send(&mut conn, b, &sent).await
                {
                    return;
                }
            }
            Answer::RefuseBatch(single) => {
                let ok = if body.trim_ascii_start().starts_with(b"[") {
                    send(
                        &mut conn,
                        b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n",
                        &sent,
                    )
                    .await
                } else {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        single.len()
                    );
                    send(&mut conn, head.as_bytes(), &sent).await
                        && send(&mut conn, single, &sent).await
                };
                if !ok {
                    return;
                }
            }
            Answer::Rpc(result, get) => {
                let reply = if head.starts_with("GET") {
                    json!({"jsonrpc": "2.0", "id": -1, "result": get})
                } else {
                    let one = |c: &Value| {
                        let m = c["method"].as_str().unwrap_or_default();
                        json!({"jsonrpc": "2.0", "id": c["id"], "result": result(m)})
                    };
                    match serde_json::from_slice::<Value>(&body) {
                        Ok(Value::Array(calls)) => calls.iter().map(one).collect(),
                        Ok(c) => one(&c),
                        Err(_) => return,
                    }
                };
                let b = reply.to_string();
                let msg = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                    b.len()
                );
                if !send(&mut conn, msg.as_bytes(), &sent).await {
                    return;
                }
            }
            Answer::Endless(text, total) => {
                let _ = send(
                    &mut conn,
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n",
                    &sent,
                )
                .await;
                let block = text.repeat((64 * 1024 / text.len()).max(1));
                let mut n = 0;
                while n < *total {
                    if !send(&mut conn, block.as_bytes(), &sent).await {
                        break;
                    }
                    n += block.len() as u64;
                }
                return;
            }
            Answer::SlowHeaders | Answer::SlowBody => {
                let head: &[u8] = match answer {
                    Answer::SlowBody => {
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n"
                    }
                    _ => b"HTTP/1.1 200 OK\r\n",
                };
                let _ = send(&mut conn, head, &sent).await;
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if !send(&mut conn, b" ", &sent).await {
                        return;
                    }
                }
            }
        }
    }
}

/// Every kind that reads the URL this way: chain RPCs, a metrics scrape (Substrate), and an
/// HTTP health check with a JSON expectation (so that its body is read).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Via {
    Substrate,
    Ethereum,
    Cosmos,
    Metrics,
    Health,
}

const RPC: &[Via] = &[Via::Substrate, Via::Ethereum, Via::Cosmos];
const JSON: &[Via] = &[Via::Substrate, Via::Ethereum, Via::Cosmos, Via::Health];
const ALL: &[Via] = &[
    Via::Substrate,
    Via::Ethereum,
    Via::Cosmos,
    Via::Metrics,
    Via::Health,
];

fn target(via: Via, url: &str) -> ProbeTarget {
    let u = Some(parse_url(url).unwrap());
    match via {
        Via::Substrate => ProbeTarget {
            rpc: u,
            ..ProbeTarget::new(ProbeKind::Substrate)
        },
        Via::Ethereum => ProbeTarget {
            rpc: u,
            ..ProbeTarget::new(ProbeKind::Ethereum)
        },
        Via::Cosmos => ProbeTarget {
            rpc: u,
            ..ProbeTarget::new(ProbeKind::Cosmos)
        },
        Via::Metrics => ProbeTarget {
            metrics: u,
            ..ProbeTarget::new(ProbeKind::Substrate)
        },
        Via::Health => ProbeTarget {
            health: u,
            expect_json: vec![("result.ok".into(), json!(true))],
            ..ProbeTarget::new(ProbeKind::Http)
        },
    }
}

fn fixed(head: &str, body: impl Into<Vec<u8>>) -> Answer {
    let body = body.into();
    Answer::Fixed(
        format!("{head}\r\nContent-Length: {}", body.len()),
        Arc::new(body),
    )
}

fn json_200(body: impl Into<Vec<u8>>) -> Answer {
    fixed("HTTP/1.1 200 OK\r\nContent-Type: application/json", body)
}

fn gzip_bomb() -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    for _ in 0..64 {
        gz.write_all(&[b'0'; 1 << 20]).unwrap();
    }
    gz.finish().unwrap()
}

/// Heights that are not heights, per protocol.
fn nan_height(m: &str) -> Value {
    match m {
        "eth_blockNumber" => json!("NaN"),
        "chain_getHeader" => json!({"number": "NaN"}),
        "system_health" => json!({"peers": 3, "isSyncing": false}),
        _ => Value::Null,
    }
}
fn negative_height(m: &str) -> Value {
    match m {
        "eth_blockNumber" => json!("-0x5"),
        "chain_getHeader" => json!({"number": -5}),
        "system_health" => json!({"peers": 3, "isSyncing": false}),
        _ => Value::Null,
    }
}
fn overflowing_height(m: &str) -> Value {
    match m {
        "eth_blockNumber" => json!("0x1ffffffffffffffffffff"),
        "chain_getHeader" => json!({"number": "0x1ffffffffffffffffffff"}),
        "system_health" => json!({"peers": 3, "isSyncing": false}),
        _ => Value::Null,
    }
}
fn cometbft_height(h: Value) -> Value {
    json!({"sync_info": {"latest_block_height": h, "catching_up": false}, "node_info": {"network": "x"}, "n_peers": "1"})
}

struct Case {
    name: &'static str,
    answer: Answer,
    via: &'static [Via],
    /// Error class and words of the message, the same for every kind.
    class: &'static str,
    words: &'static str,
}

fn cases() -> Vec<Case> {
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let wide = format!(
        r#"{{"jsonrpc":"2.0","id":1,"result":[{}0]}}"#,
        "0,".repeat(400_000)
    );
    vec![
        Case {
            name: "oversized, announced",
            answer: json_200(vec![b' '; 2 << 20]),
            via: ALL,
            class: "tooLarge",
            words: "larger than the 1048576-byte limit",
        },
        Case {
            name: "oversized, streamed without a length",
            answer: Answer::Endless("[0,0,0,0,0,0,0,0]", 256 << 20),
            via: ALL,
            class: "tooLarge",
            words: "larger than the 1048576-byte limit",
        },
        Case {
            name: "slowloris headers",
            answer: Answer::SlowHeaders,
            via: ALL,
            class: "timeout",
            words: "no complete answer within the 1s probe timeout",
        },
        Case {
            name: "slowloris body",
            answer: Answer::SlowBody,
            via: ALL,
            class: "timeout",
            words: "no complete answer within the 1s probe timeout",
        },
        Case {
            name: "invalid UTF-8",
            answer: json_200(b"{\"result\": \"\xff\xfe\xfd\"}".to_vec()),
            via: ALL,
            class: "malformed",
            words: "not UTF-8 text (invalid byte at offset 12)",
        },
        Case {
            name: "deeply nested JSON",
            answer: json_200(deep),
            via: JSON,
            class: "malformed",
            words: "nested deeper than 32 levels",
        },
        Case {
            name: "a huge JSON array",
            answer: json_200(wide),
            via: JSON,
            class: "malformed",
            words: "more than 100000 values",
        },
        Case {
            name: "an HTML page as application/json",
            answer: json_200("<html><body>login</body></html>"),
            via: JSON,
            class: "malformed",
            words: "looks like HTML",
        },
        Case {
            name: "an HTML page at the metrics URL",
            answer: fixed(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html",
                "<html>\n<body>login</body>\n</html>\n",
            ),
            via: &[Via::Metrics],
            class: "malformed",
            words: "returned no Prometheus samples",
        },
        Case {
            name: "protobuf metrics",
            answer: fixed(
                "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.google.protobuf",
                vec![0x0a, 0x8f, 0xff, 0x01, 0x12],
            ),
            via: &[Via::Metrics],
            class: "malformed",
            words: "not UTF-8 text",
        },
        Case {
            name: "a redirect to another host",
            answer: fixed(
                "HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/meta-data/",
                "",
            ),
            via: ALL,
            class: "http",
            words: "HTTP 302 (Found), a redirect: Vigil does not follow redirects",
        },
        Case {
            name: "a gzip bomb",
            answer: fixed(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip",
                gzip_bomb(),
            ),
            via: ALL,
            class: "malformed",
            words: "Content-Encoding `gzip`, which Vigil did not ask for",
        },
        Case {
            name: "a Prometheus flood",
            answer: Answer::Endless("polkadot_x 1\n", 900 * 1024),
            via: &[Via::Metrics],
            class: "malformed",
            words: "more than 50000 samples",
        },
        Case {
            name: "a NaN height (metrics)",
            answer: fixed(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain",
                "polkadot_block_height{status=\"best\"} NaN\n",
            ),
            via: &[Via::Metrics],
            class: "malformed",
            words: "`polkadot_block_height` is NaN, not a block height",
        },
        Case {
            name: "a negative height (metrics)",
            answer: fixed(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain",
                "polkadot_block_height{status=\"best\"} -7\n",
            ),
            via: &[Via::Metrics],
            class: "malformed",
            words: "`polkadot_block_height` is negative, not a block height",
        },
        Case {
            name: "an overflowing height (metrics)",
            answer: fixed(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain",
                "polkadot_block_height{status=\"best\"} 1e300\n",
            ),
            via: &[Via::Metrics],
            class: "malformed",
            words: "`polkadot_block_height` is too large, not a block height",
        },
        Case {
            name: "a NaN height (RPC)",
            answer: Answer::Rpc(nan_height, cometbft_height(json!("NaN"))),
            via: RPC,
            class: "malformed",
            words: "not a block height",
        },
        Case {
            name: "a negative height (RPC)",
            answer: Answer::Rpc(negative_height, cometbft_height(json!("-5"))),
            via: RPC,
            class: "malformed",
            words: "not a block height",
        },
        Case {
            name: "an overflowing height (RPC)",
            answer: Answer::Rpc(
                overflowing_height,
                cometbft_height(json!("99999999999999999999999")),
            ),
            via: RPC,
            class: "malformed",
            words: "not a block height",
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_answer_gets_a_clear_status_and_bounded_memory() {
    let budget = Budget::new(16 << 20);
    let prober = Prober::new().with_budget(budget.clone());
    let options = ProbeOptions {
        timeout: Duration::from_secs(1),
        max_response_bytes: CAP,
    };
    let mut failures = Vec::new();
    for case in cases() {
        for via in case.via {
            let server = serve(case.answer.clone()).await;
            let result = prober.probe(&target(*via, &server.url), &options).await;
            let what = format!("{} via {via:?}", case.name);
            match result {
                Ok(obs) => failures.push(format!("{what}: probe passed: {obs:?}")),
                Err(e) => {
                    let msg = e.to_string();
                    if e.class() != case.class || !msg.contains(case.words) {
                        failures.push(format!(
                            "{what}: {} `{msg}`, want {} `{}`",
                            e.class(),
                            case.class,
                            case.words
                        ));
                    }
                    if msg.contains(&server.url) || msg.contains("login") {
                        failures.push(format!("{what}: the message repeats the node: {msg}"));
                    }
                }
            }
            // The probe stopped reading at the cap: what the server got out is the cap
            // plus what socket buffers hold, never the hundreds of MiB it meant to send.
            let sent = server.sent.load(Ordering::Relaxed);
            if sent > CAP * 7 + (16 << 20) {
                failures.push(format!("{what}: the server sent {sent} bytes"));
            }
            if budget.available() != budget.total() {
                failures.push(format!(
                    "{what}: {} budget bytes still held after the probe",
                    budget.total() - budget.available()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------
// 20 hostile validators against a running operator under a memory limit.

use support::operator::Operator;
use support::{apply_ok, condition, eventually};

/// The operator's memory limit, as in the chart.
const LIMIT_MIB: u64 = 256;

/// A memory cgroup the operator runs in: cgroup v2 when its memory controller is writable
/// here, else v1's; `None` when neither is (then only the sampled peak RSS bounds it).
struct MemCgroup {
    dir: std::path::PathBuf,
    v2: bool,
}

impl MemCgroup {
    fn create(name: &str, bytes: u64) -> Option<MemCgroup> {
        let root = std::path::Path::new("/sys/fs/cgroup");
        let v2 = std::fs::read_to_string(root.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|x| x == "memory"));
        let (dir, file) = if v2 {
            (root.join(name), "memory.max")
        } else {
            (root.join("memory").join(name), "memory.limit_in_bytes")
        };
        std::fs::create_dir_all(&dir).ok()?;
        let cg = MemCgroup { dir, v2 };
        std::fs::write(cg.dir.join(file), bytes.to_string()).ok()?;
        Some(cg)
    }

    /// Peak memory charged to the cgroup (page cache of the log file included).
    fn peak_mib(&self) -> Option<f64> {
        let file = if self.v2 {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        let text = std::fs::read_to_string(self.dir.join(file)).ok()?;
        Some(text.trim().parse::<f64>().ok()? / 1048576.0)
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A field of the process's /proc status in MiB (`VmHWM:`, `RssAnon:`).
fn status_mib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
}

/// Samples the process's anonymous memory (heap and stacks; its binary's mapped pages,
/// which the kernel can drop, are not in it) every 50 ms; the peak, in MiB.
fn sample_anon(pid: u32, stop: Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<f64> {
    std::thread::spawn(move || {
        let mut peak = 0f64;
        while !stop.load(Ordering::Relaxed) {
            match status_mib(pid, "RssAnon:") {
                Some(m) => peak = peak.max(m),
                None => break,
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        peak
    })
}

fn alive(op: &mut Operator, cg: &Option<MemCgroup>) {
    if let Ok(Some(status)) = op.child.try_wait() {
        let peak = cg.as_ref().and_then(MemCgroup::peak_mib);
        let log = op.log_text();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!(
            "the operator exited ({status}; cgroup peak {peak:?} MiB); log tail, newest first:\n{}",
            tail.join("\n")
        );
    }
}

type Verdict = (String, String, Option<jiff::Timestamp>);

/// Name, Ready status and last probe time of every validator of `ns`.
fn verdicts(c: &support::cluster::Cluster, ns: &str) -> Vec<Verdict> {
    let list = c.kubectl_json(&["get", "mv", "-n", ns, "-o", "json"]);
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|mv| {
            (
                mv["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                condition(mv, "Ready")
                    .and_then(|r| r["status"].as_str().map(str::to_string))
                    .unwrap_or_default(),
                mv["status"]["lastProbe"]["time"]
                    .as_str()
                    .and_then(|t| t.parse().ok()),
            )
        })
        .collect()
}

#[test]
fn twenty_hostile_validators_do_not_starve_or_sink_the_operator() {
    let c = support::cluster::shared();
    support::install_crds(c);
    let run = format!("hostile-{}", std::process::id());
    let label = format!("vigil-test/run: {run}");
    let (bad, good) = (c.namespace("hostile"), c.namespace("honest"));

    // The hostile servers, on a runtime of their own.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let big = 4 << 20;
    let wide = {
        let mut b = br#"{"jsonrpc":"2.0","id":1,"result":["#.to_vec();
        while b.len() < big - 16 {
            b.extend_from_slice(b"0,");
        }
        b.extend_from_slice(b"0]}");
        b
    };
    let single = {
        let mut b = br#"{"jsonrpc":"2.0","id":1,"result":""#.to_vec();
        b.resize(big - 16, b'x');
        b.extend_from_slice(b"\"}");
        Arc::new(b)
    };
    let answers = [
        ("flood", Answer::Endless("polkadot_x 1\n", big as u64)),
        ("array", json_200(wide)),
        ("singles", Answer::RefuseBatch(single)),
        ("slowloris", Answer::SlowBody),
    ];
    let servers: Vec<(String, Server)> = (0..20)
        .map(|i| {
            let (mode, answer) = &answers[i % answers.len()];
            (format!("{mode}-{i}"), rt.block_on(serve(answer.clone())))
        })
        .collect();

    // The hostile tenant asks for the largest bodies and the shortest interval it may.
    apply_ok(
        c,
        &bad,
        &format!(
            "apiVersion: vigil.dev/v1alpha1\nkind: MonitorPolicy\nmetadata:\n  name: p\n  labels: {{{label}}}\nspec:\n  probe: {{interval: 1s, timeout: 900ms, maxResponseBytes: 4194304}}\n  remediation: {{action: none}}\n"
        ),
    );
    let docs: Vec<String> = servers
        .iter()
        .map(|(name, s)| {
            format!(
                "apiVersion: vigil.dev/v1alpha1\nkind: MonitoredValidator\nmetadata:\n  name: {name}\n  labels: {{{label}}}\nspec:\n  chain: substrate\n  endpoints: {{rpc: '{u}', metrics: '{u}/metrics'}}\n  policyRef: {{name: p}}\n",
                u = s.url
            )
        })
        .collect();
    apply_ok(c, &bad, &docs.join("---\n"));

    let sim = support::simulator::Simulator::start(&["--nodes", "100", "--block-time", "1s"]);
    apply_ok(
        c,
        &good,
        &format!(
            "apiVersion: vigil.dev/v1alpha1\nkind: MonitorPolicy\nmetadata:\n  name: p\n  labels: {{{label}}}\nspec:\n  probe: {{interval: 2s, timeout: 1s, failureThreshold: 2}}\n  remediation: {{action: none}}\n"
        ),
    );
    let docs: Vec<String> = (0..100)
        .map(|i| {
            sim.validator_yaml(i, "p")
                .replace("\nspec:", &format!("\n  labels: {{{label}}}\nspec:"))
        })
        .collect();
    apply_ok(c, &good, &docs.join("---\n"));

    // The operator: all namespaces, this run's label, the admin's rights (namespace-mode
    // rights cover one namespace), inside the memory limit.
    let cg = MemCgroup::create(&format!("vigil-{run}"), LIMIT_MIB << 20);
    eprintln!(
        "memory limit: {}",
        cg.as_ref()
            .map_or("none could be set; peak RSS sampled".into(), |g| format!(
                "{LIMIT_MIB} MiB in {}",
                g.dir.display()
            ))
    );
    let port = free_port();
    let log = std::env::temp_dir()
        .join("vigil-test-logs")
        .join(format!("{run}-operator.log"));
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    let file = std::fs::File::create(&log).unwrap();
    let procs = cg
        .as_ref()
        .map(|g| g.dir.join("cgroup.procs"))
        .unwrap_or_default();
    let child = std::process::Command::new("sh")
        .arg("-c")
        // Joins the cgroup before exec, so that nothing of the operator runs outside it.
        .arg(r#"if [ -n "$CGROUP_PROCS" ]; then echo $$ > "$CGROUP_PROCS" || exit 97; fi; exec "$@""#)
        .arg("vigil")
        .arg(env!("CARGO_BIN_EXE_vigil"))
        .args(["run", "--selector", &format!("vigil-test/run={run}")])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--lease-namespace", &good, "--lease-name", &run])
        .args(["--identity", &run, "--lease-duration", "6"])
        .args(["--log-format", "json", "--facts-refresh", "3s", "--allow-loopback"])
        .env("CGROUP_PROCS", &procs)
        .env("KUBECONFIG", &c.kubeconfig)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let mut op = Operator {
        child,
        port,
        log,
        identity: run.clone(),
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let anon = sample_anon(op.child.id(), stop.clone());
    let t = Duration::from_secs(120);
    op.wait_ready(t);
    op.wait_leader(t);

    eventually(t, "100 honest validators Ready=True", || {
        let v = verdicts(c, &good);
        (v.len() == 100 && v.iter().all(|(_, r, _)| r == "True")).then_some(())
    });
    // Not Ready: False (timeouts) or Unknown (answers that cannot be read).
    eventually(t, "every hostile validator judged not Ready", || {
        let v = verdicts(c, &bad);
        (v.len() == 20 && v.iter().all(|(_, r, _)| r == "False" || r == "Unknown")).then_some(())
    });
    // Three rounds under hostile load: every honest verdict is refreshed in each.
    for round in 0..3 {
        alive(&mut op, &cg);
        let since = jiff::Timestamp::now();
        eventually(
            Duration::from_secs(30),
            &format!("round {round}: 100 fresh honest verdicts"),
            || {
                let fresh = verdicts(c, &good)
                    .iter()
                    .filter(|(_, r, t)| r == "True" && t.is_some_and(|t| t > since))
                    .count();
                (fresh == 100).then_some(())
            },
        );
    }
    // A real change among the honest is still seen quickly.
    sim.fault(0, "die");
    let dead = sim.nodes[0].name.clone();
    eventually(
        Duration::from_secs(30),
        "the dead honest node Ready=False",
        || {
            verdicts(c, &good)
                .iter()
                .any(|(n, r, _)| *n == dead && r == "False")
                .then_some(())
        },
    );
    alive(&mut op, &cg);

    let rss = status_mib(op.child.id(), "VmHWM:").expect("VmHWM");
    stop.store(true, Ordering::Relaxed);
    let anon = anon.join().unwrap();
    let charged = cg.as_ref().and_then(MemCgroup::peak_mib);
    let sent: u64 = servers
        .iter()
        .map(|(_, s)| s.sent.load(Ordering::Relaxed))
        .sum();
    eprintln!(
        "peak anonymous memory {anon:.1} MiB (sampled every 50 ms), peak RSS {rss:.1} MiB (with the binary's mapped pages), cgroup peak {charged:?} MiB (with page cache), hostile servers sent {} MiB",
        sent >> 20
    );
    assert!(
        anon < LIMIT_MIB as f64,
        "peak anonymous memory {anon:.1} MiB under 20 hostile validators"
    );
    drop(op);
    drop(cg);
    drop(rt);
}
