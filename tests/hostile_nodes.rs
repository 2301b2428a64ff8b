//! A table of hostile node responses (issue 13 item 6), each served on loopback by a raw
//! TCP server and probed through the library's `Prober` for every probe kind it applies to.
//! Each must give the error class and message a person would read, never a panic, and
//! bounded memory: the server counts what it managed to send (a probe stops reading at the
//! body cap), and the probe memory budget is whole again after every probe.

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
    Fixed(String, Vec<u8>),
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
                let msg = [h.as_bytes(), b"\r\n\r\n", b].concat();
                if !send(&mut conn, &msg, &sent).await {
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
    Answer::Fixed(format!("{head}\r\nContent-Length: {}", body.len()), body)
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
