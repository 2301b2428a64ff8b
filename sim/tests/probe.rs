//! End-to-end tests: a small fleet on 127.201.x.y addresses (one range per test, so the
//! tests run in parallel), driven over real HTTP with reqwest and read with the operator's
//! probe (`vigil::probe`).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use vigil::probe::{Observation, ProbeError, ProbeKind, ProbeOptions, ProbeTarget, Prober};
use vigil_sim::{NodeInfo, SimChain, SimConfig, Simulator};

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

async fn start(third: u8, chains: Vec<SimChain>, block_ms: Option<u64>) -> Simulator {
    let mut cfg = SimConfig::new(chains, Ipv4Addr::new(127, 201, third, 1));
    cfg.block_time = block_ms.map(Duration::from_millis);
    cfg.peers = 7;
    Simulator::start(cfg).await.expect("the simulator starts")
}

async fn admin(sim: &Simulator, method: &str, path: &str, body: &str) -> (u16, Value) {
    let url = format!("http://{}{path}", sim.admin_addr());
    let req = match method {
        "GET" => client().get(url),
        _ => client().post(url).body(body.to_string()),
    };
    let resp = req.send().await.expect("admin answers");
    let status = resp.status().as_u16();
    let body = resp.bytes().await.expect("admin body");
    let doc = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("admin {path} sent non-JSON ({e}): {body:?}"));
    (status, doc)
}

async fn fault(sim: &Simulator, index: usize, body: Value) -> Value {
    let (status, doc) = admin(
        sim,
        "POST",
        &format!("/nodes/{index}/fault"),
        &body.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{doc}");
    doc
}

async fn recover(sim: &Simulator, index: usize) -> Value {
    let (status, doc) = admin(sim, "POST", &format!("/nodes/{index}/recover"), "").await;
    assert_eq!(status, 200, "{doc}");
    doc
}

async fn rpc(url: &str, body: Value) -> Value {
    let resp = client()
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("rpc answers");
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("rpc JSON")
}

async fn best_of(sim: &Simulator, index: usize) -> u64 {
    let node = &sim.nodes()[index];
    let reply = rpc(
        &node.rpc,
        json!({"jsonrpc":"2.0","id":1,"method":"chain_getHeader","params":[]}),
    )
    .await;
    let hex = reply["result"]["number"].as_str().expect("hex number");
    u64::from_str_radix(&hex[2..], 16).expect("hex")
}

fn kind(chain: &str) -> ProbeKind {
    match chain {
        "ethereum" => ProbeKind::Ethereum,
        "cosmos" => ProbeKind::Cosmos,
        _ => ProbeKind::Substrate,
    }
}

fn vigil_url(u: &str) -> vigil::probe::Url {
    vigil::probe::parse_url(u).expect("the simulator's URLs parse")
}

async fn probe(node: &NodeInfo, rpc: bool, metrics: bool) -> Result<Observation, ProbeError> {
    let url = |u: &str| vigil_url(u);
    let target = ProbeTarget {
        rpc: rpc.then(|| url(&node.rpc)),
        metrics: if metrics {
            node.metrics.as_deref().map(url)
        } else {
            None
        },
        health: if rpc {
            node.health.as_deref().map(url)
        } else {
            None
        },
        ..ProbeTarget::new(kind(&node.chain))
    };
    Prober::new().probe(&target, &ProbeOptions::default()).await
}

fn addr_of(url: &str) -> SocketAddr {
    let host_port = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    host_port.parse().expect("socket address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn substrate_http_surface() {
    let sim = start(1, vec![SimChain::Substrate], None).await;
    let node = sim.nodes()[0].clone();
    assert_eq!(node.ip, "127.201.1.1");
    assert_eq!(node.rpc, "http://127.201.1.1:9944");
    assert_eq!(
        node.metrics.as_deref(),
        Some("http://127.201.1.1:9615/metrics")
    );
    assert_eq!(
        node.health.as_deref(),
        Some("http://127.201.1.1:9944/health")
    );
    let c = client();

    let health: Value = c
        .get(node.health.clone().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        health,
        json!({"peers":7,"isSyncing":false,"shouldHavePeers":true})
    );
    let ready = c
        .get(format!("{}/health/readiness", node.rpc))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    let batch = rpc(
        &node.rpc,
        json!([
            {"jsonrpc":"2.0","id":1,"method":"system_health","params":[]},
            {"jsonrpc":"2.0","id":2,"method":"chain_getFinalizedHead","params":[]},
            {"jsonrpc":"2.0","id":3,"method":"system_chain","params":[]},
            {"jsonrpc":"2.0","id":4,"method":"author_insertKey","params":[]},
        ]),
    )
    .await;
    let items = batch.as_array().expect("a batch answer is an array");
    assert_eq!(items.len(), 4);
    assert_eq!(items[2]["result"], "Simnet");
    assert_eq!(items[3]["error"]["code"], -32601);
    let fin_hash = items[1]["result"].as_str().unwrap().to_string();
    let header = rpc(
        &node.rpc,
        json!({"jsonrpc":"2.0","id":5,"method":"chain_getHeader","params":[fin_hash]}),
    )
    .await;
    let fin = u64::from_str_radix(&header["result"]["number"].as_str().unwrap()[2..], 16).unwrap();
    let now = &sim.nodes()[0];
    assert!(
        fin == now.finalized || fin + 1 == now.finalized,
        "{fin} vs {now:?}"
    );

    let parse = c.post(&node.rpc).body("{oops").send().await.unwrap();
    assert_eq!(parse.status(), 200);
    let parse: Value = parse.json().await.unwrap();
    assert_eq!(parse["error"]["code"], -32700);

    let text = c
        .get(node.metrics.clone().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("# TYPE substrate_block_height gauge\n"),
        "{text}"
    );
    assert!(text.contains("substrate_sub_libp2p_peers_count{chain=\"simnet\"} 7\n"));

    fault(&sim, 0, json!({"fault":"dropPeers"})).await;
    let ready = c
        .get(format!("{}/health/readiness", node.rpc))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 500);
    let doc = fault(&sim, 0, json!({"fault":"syncing","blocks":50})).await;
    assert_eq!(doc["faults"], json!(["dropPeers", "syncing"]));
    assert!(doc["target"].as_u64().unwrap() >= doc["best"].as_u64().unwrap() + 50);
    let health: Value = c
        .get(node.health.clone().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        health,
        json!({"peers":0,"isSyncing":true,"shouldHavePeers":true})
    );
    let doc = recover(&sim, 0).await;
    assert_eq!(doc["faults"], json!([]));
    assert_eq!(doc["syncing"], false);
    assert_eq!(
        c.get(format!("{}/health/readiness", node.rpc))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_reads_every_chain() {
    // Long blocks: heights stay put while the test compares them.
    let sim = start(
        2,
        vec![SimChain::Substrate, SimChain::Ethereum, SimChain::Cosmos],
        Some(60_000),
    )
    .await;
    for node in sim.nodes() {
        let o = probe(&node, true, true)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", node.chain));
        assert!(o.warnings.is_empty(), "{}: {:?}", node.chain, o.warnings);
        let best = o.best_block.expect("best block");
        assert!(
            best.abs_diff(node.best) <= 1,
            "{}: {best} vs {}",
            node.chain,
            node.best
        );
        assert_eq!(o.peers, Some(7), "{}", node.chain);
        assert_eq!(o.syncing, Some(false), "{}", node.chain);
        assert_eq!(
            o.health_ok,
            node.health.as_ref().map(|_| true),
            "{}",
            node.chain
        );
        match node.chain.as_str() {
            "substrate" => {
                let fin = o.finalized_block.expect("finalized");
                assert!(fin.abs_diff(node.finalized) <= 1);
                assert_eq!(best - fin, 2);
                assert_eq!(o.version.as_deref(), Some("1.16.0-sim"));
                assert_eq!(o.network.as_deref(), Some("Simnet"));
                assert_eq!(o.target_block, Some(best));
            }
            "ethereum" => {
                assert_eq!(o.finalized_block, None);
                assert_eq!(o.network.as_deref(), Some("1337"));
                assert!(o.version.as_deref().unwrap().starts_with("Geth/"));
            }
            _ => {
                assert_eq!(o.finalized_block, Some(best));
                assert_eq!(o.network.as_deref(), Some("simnet-1"));
                assert_eq!(o.version.as_deref(), Some("0.38.12"));
            }
        }
        // The metrics alone give the same facts (the probe's Prometheus parser reads them).
        let m = probe(&node, false, true)
            .await
            .unwrap_or_else(|e| panic!("{} metrics: {e}", node.chain));
        assert!(m.best_block.unwrap().abs_diff(best) <= 1, "{}", node.chain);
        assert_eq!(m.peers, Some(7), "{}", node.chain);
    }

    let (status, doc) = admin(&sim, "POST", "/fault", r#"{"fault":"syncing"}"#).await;
    assert_eq!((status, doc["affected"].as_u64()), (200, Some(3)), "{doc}");
    let (status, _) = admin(&sim, "POST", "/fault", r#"{"fault":"dropPeers"}"#).await;
    assert_eq!(status, 200);
    for node in sim.nodes() {
        let o = probe(&node, true, true)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", node.chain));
        assert_eq!(o.syncing, Some(true), "{}", node.chain);
        assert_eq!(o.peers, Some(0), "{}", node.chain);
        let best = o.best_block.unwrap();
        assert!(
            best + 15 < node.target,
            "{}: {best} vs {node:?}",
            node.chain
        );
        if node.chain != "cosmos" {
            let target = o.target_block.expect("a sync target");
            assert!(
                target.abs_diff(node.target) <= 1,
                "{}: {target} vs {node:?}",
                node.chain
            );
        }
    }
    // Only Substrate has separate finality: the others are skipped.
    let (status, doc) = admin(&sim, "POST", "/fault", r#"{"fault":"stopFinality"}"#).await;
    assert_eq!(status, 200);
    assert_eq!(
        (doc["affected"].as_u64(), doc["skipped"].as_u64()),
        (Some(1), Some(2))
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn die_closes_ports_and_recover_catches_up() {
    let sim = start(3, vec![SimChain::Substrate, SimChain::Substrate], Some(100)).await;
    let node = sim.nodes()[0].clone();
    let rpc_addr = addr_of(&node.rpc);
    let metrics_addr = addr_of(node.metrics.as_deref().unwrap());
    let before = best_of(&sim, 0).await;
    // An idle open connection, which `die` must close too.
    let mut idle = tokio::net::TcpStream::connect(rpc_addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;

    let doc = fault(&sim, 0, json!({"fault":"die"})).await;
    assert_eq!(doc["faults"], json!(["die"]));
    for addr in [rpc_addr, metrics_addr] {
        let err = tokio::net::TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{addr}");
    }
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(2), idle.read(&mut buf))
        .await
        .expect("the open connection is closed, not left hanging");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let err = client()
        .post(&node.rpc)
        .body("{}")
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    // The other node still answers; dying twice is harmless.
    assert!(best_of(&sim, 1).await >= before);
    fault(&sim, 0, json!({"fault":"die"})).await;

    tokio::time::sleep(Duration::from_millis(1000)).await;
    let doc = recover(&sim, 0).await;
    assert_eq!(doc["faults"], json!([]));
    // The network first: read after it, a caught-up node is at least as high, however
    // long the machine takes between the two reads.
    let network = best_of(&sim, 1).await;
    let after = best_of(&sim, 0).await;
    assert!(after >= before + 8, "caught up: {before} -> {after}");
    assert!(after + 2 >= network, "{after} vs the network's {network}");
    assert!(
        client()
            .get(node.metrics.clone().unwrap())
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    // Recovering a healthy node is a no-op.
    recover(&sim, 0).await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_times_out_and_slow_is_late() {
    let sim = start(4, vec![SimChain::Ethereum], None).await;
    let node = sim.nodes()[0].clone();
    let call = json!({"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]});

    fault(&sim, 0, json!({"fault":"hang"})).await;
    let started = Instant::now();
    let err = client()
        .post(&node.rpc)
        .json(&call)
        .timeout(Duration::from_millis(500))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(500));
    // A request held by the hang ends when the node recovers.
    let held = tokio::spawn({
        let url = node.rpc.clone();
        let call = call.clone();
        async move {
            client()
                .post(&url)
                .json(&call)
                .send()
                .await
                .map(|r| r.status())
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    recover(&sim, 0).await;
    let held = tokio::time::timeout(Duration::from_secs(2), held)
        .await
        .expect("released")
        .unwrap();
    assert!(held.is_err(), "{held:?}");
    let reply = rpc(&node.rpc, call.clone()).await;
    assert_eq!(
        reply["result"].as_str().map(|s| s.starts_with("0x")),
        Some(true)
    );

    fault(&sim, 0, json!({"fault":"slow","ms":300})).await;
    let started = Instant::now();
    let reply = rpc(&node.rpc, call.clone()).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(reply["result"].is_string());
    // The probe gives up at its timeout.
    let opts = ProbeOptions {
        timeout: Duration::from_millis(150),
        ..ProbeOptions::default()
    };
    let target = ProbeTarget {
        rpc: Some(vigil_url(&node.rpc)),
        ..ProbeTarget::new(ProbeKind::Ethereum)
    };
    let e = Prober::new().probe(&target, &opts).await.unwrap_err();
    assert_eq!(e.class(), "timeout");
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_bodies() {
    let sim = start(5, vec![SimChain::Substrate, SimChain::Cosmos], None).await;
    let nodes = sim.nodes();
    let (sub, cos) = (&nodes[0], &nodes[1]);
    let c = client();
    let call = json!({"jsonrpc":"2.0","id":1,"method":"system_health","params":[]});
    let get_bytes = |url: String| {
        let c = c.clone();
        async move {
            let r = c.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap()
        }
    };
    // The Substrate node's answer to `call`, whatever its status.
    let post_call = || {
        let (c, url, call) = (c.clone(), sub.rpc.clone(), call.clone());
        async move {
            c.post(url)
                .json(&call)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
        }
    };
    // Every node back to normal, then `name` on both.
    let refault = |name: &'static str| {
        let sim = &sim;
        async move {
            for n in [0, 1] {
                recover(sim, n).await;
                fault(sim, n, json!({ "fault": name })).await;
            }
        }
    };

    fault(&sim, 0, json!({"fault":"oversized"})).await;
    fault(&sim, 1, json!({"fault":"oversized"})).await;
    let r = c.post(&sub.rpc).json(&call).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().len() > 2 * 1024 * 1024);
    assert!(get_bytes(sub.metrics.clone().unwrap()).await.len() > 2 * 1024 * 1024);
    assert!(get_bytes(format!("{}/status", cos.rpc)).await.len() > 2 * 1024 * 1024);
    assert_eq!(
        probe(sub, true, false).await.unwrap_err().class(),
        "tooLarge"
    );

    refault("nonUtf8").await;
    let body = post_call().await;
    assert!(std::str::from_utf8(&body).is_err());
    assert!(std::str::from_utf8(&get_bytes(sub.metrics.clone().unwrap()).await).is_err());
    assert!(std::str::from_utf8(&get_bytes(format!("{}/net_info", cos.rpc)).await).is_err());
    assert_eq!(
        probe(sub, true, false).await.unwrap_err().class(),
        "malformed"
    );
    assert!(probe(sub, false, true).await.is_err());

    refault("malformed").await;
    let body = post_call().await;
    assert!(serde_json::from_slice::<Value>(&body).is_err());
    assert!(std::str::from_utf8(&body).is_ok());
    let status = get_bytes(format!("{}/status", cos.rpc)).await;
    assert!(serde_json::from_slice::<Value>(&status).is_err());
    assert_eq!(
        probe(sub, true, false).await.unwrap_err().class(),
        "malformed"
    );
    assert_eq!(
        probe(cos, true, false).await.unwrap_err().class(),
        "malformed"
    );
    assert!(probe(cos, false, true).await.is_err());
    // Together: a huge body that is not UTF-8.
    fault(&sim, 0, json!({"fault":"oversized"})).await;
    fault(&sim, 0, json!({"fault":"nonUtf8"})).await;
    let body = post_call().await;
    assert!(body.len() > 2 * 1024 * 1024 && std::str::from_utf8(&body).is_err());
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api() {
    let sim = start(
        6,
        vec![SimChain::Substrate, SimChain::Ethereum, SimChain::Cosmos],
        None,
    )
    .await;

    let ready = serde_json::to_value(sim.ready()).unwrap();
    assert_eq!(ready["admin"], sim.admin_addr().to_string());
    assert_eq!(ready["pid"], std::process::id());
    let keys: Vec<&str> = ready["nodes"][1]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for k in [
        "index",
        "name",
        "chain",
        "ip",
        "rpc",
        "metrics",
        "health",
        "faults",
        "best",
        "finalized",
        "target",
        "peers",
        "syncing",
    ] {
        assert!(keys.contains(&k), "{k} in {keys:?}");
    }
    assert_eq!(ready["nodes"][1]["health"], Value::Null);
    assert_eq!(
        ready["nodes"][1]["metrics"],
        "http://127.201.6.2:6060/debug/metrics/prometheus"
    );
    assert_eq!(ready["nodes"][2]["rpc"], "http://127.201.6.3:26657");

    let (status, list) = admin(&sim, "GET", "/nodes", "").await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 3);
    assert_eq!(list[2]["name"], "sim-2");

    for (method, path, body, want, says) in [
        ("POST", "/nodes/0/fault", "{", 400, "invalid JSON"),
        (
            "POST",
            "/nodes/0/fault",
            r#"{"fault":"explode"}"#,
            400,
            "known faults",
        ),
        ("POST", "/nodes/0/fault", "", 400, "missing"),
        (
            "POST",
            "/nodes/abc/fault",
            r#"{"fault":"die"}"#,
            400,
            "not a number",
        ),
        (
            "POST",
            "/nodes/99/fault",
            r#"{"fault":"die"}"#,
            404,
            "no node 99",
        ),
        ("POST", "/nodes/99/recover", "", 404, "no node 99"),
        ("GET", "/nodes/99", "", 404, "no node 99"),
        (
            "POST",
            "/nodes/1/fault",
            r#"{"fault":"stopFinality"}"#,
            400,
            "substrate",
        ),
        (
            "POST",
            "/fault",
            r#"{"fault":"die","nodes":[1,5]}"#,
            404,
            "[5]",
        ),
        (
            "POST",
            "/fault",
            r#"{"fault":"stopFinality","nodes":[0,1]}"#,
            400,
            "[1]",
        ),
        (
            "POST",
            "/fault",
            r#"{"fault":"die","chain":"bitcoin"}"#,
            400,
            "unknown chain",
        ),
        ("GET", "/nope", "", 404, "no such route"),
        ("GET", "/fault", "", 405, "wrong method"),
    ] {
        let (status, doc) = admin(&sim, method, path, body).await;
        assert_eq!(status, want, "{method} {path} {body}: {doc}");
        let msg = doc["error"].as_str().unwrap_or_default();
        assert!(msg.contains(says), "{method} {path} {body}: {msg}");
    }
    // Nothing was applied by the refused requests.
    assert!(sim.nodes().iter().all(|n| n.faults.is_empty()));

    // A chain halt: every substrate node stops.
    let (status, doc) = admin(
        &sim,
        "POST",
        "/fault",
        r#"{"fault":"stopBlocks","chain":"substrate"}"#,
    )
    .await;
    assert_eq!((status, doc["nodes"].clone()), (200, json!([0])), "{doc}");
    let (_, doc) = admin(
        &sim,
        "POST",
        "/fault",
        r#"{"fault":"slow","ms":10,"nodes":[1,2]}"#,
    )
    .await;
    assert_eq!(doc["affected"], 2);
    let faults: Vec<Vec<String>> = sim.nodes().into_iter().map(|n| n.faults).collect();
    assert_eq!(faults, [vec!["stopBlocks"], vec!["slow"], vec!["slow"]]);
    // Recover one fault of one chain, then everything.
    let (status, doc) = admin(
        &sim,
        "POST",
        "/recover",
        r#"{"fault":"slow","chain":"cosmos"}"#,
    )
    .await;
    assert_eq!((status, doc["affected"].as_u64()), (200, Some(1)));
    assert_eq!(sim.nodes()[2].faults, Vec::<String>::new());
    let (status, doc) = admin(&sim, "POST", "/recover", "").await;
    assert_eq!((status, doc["affected"].as_u64()), (200, Some(3)));
    assert!(sim.nodes().iter().all(|n| n.faults.is_empty()));

    // The addresses are taken: a second fleet on them fails with a hint.
    let mut cfg = SimConfig::new(vec![SimChain::Substrate], Ipv4Addr::new(127, 201, 6, 1));
    cfg.peers = 1;
    let err = Simulator::start(cfg).await.unwrap_err();
    assert!(format!("{err:#}").contains("--base-ip"), "{err:#}");
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finality_and_chain_halt_follow_the_clock() {
    let sim = start(7, vec![SimChain::Substrate, SimChain::Substrate], Some(50)).await;
    fault(&sim, 0, json!({"fault":"stopFinality"})).await;
    let a = sim.nodes()[0].clone();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let b = sim.nodes()[0].clone();
    assert_eq!(a.finalized, b.finalized);
    assert!(b.best >= a.best + 5, "{a:?} {b:?}");
    let o = probe(&b, true, false).await.unwrap();
    assert_eq!(o.finalized_block, Some(a.finalized));

    let (status, _) = admin(
        &sim,
        "POST",
        "/fault",
        r#"{"fault":"stopBlocks","chain":"substrate"}"#,
    )
    .await;
    assert_eq!(status, 200);
    let halted: Vec<u64> = sim.nodes().iter().map(|n| n.best).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        halted,
        sim.nodes().iter().map(|n| n.best).collect::<Vec<_>>()
    );
    let (status, _) = admin(&sim, "POST", "/recover", r#"{"chain":"substrate"}"#).await;
    assert_eq!(status, 200);
    for (n, was) in sim.nodes().iter().zip(halted) {
        assert!(n.best >= was + 5, "{n:?} was {was}");
        assert_eq!(n.best - n.finalized, 2);
    }
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_metrics_only_the_rpc_port_opens() {
    let mut cfg = SimConfig::new(vec![SimChain::Cosmos; 3], Ipv4Addr::new(127, 201, 8, 1));
    cfg.metrics = false;
    let sim = Simulator::start(cfg).await.unwrap();
    let nodes = sim.nodes();
    assert!(nodes.iter().all(|n| n.metrics.is_none()));
    let err = tokio::net::TcpStream::connect("127.201.8.1:26660")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    // Nodes of one chain agree on the height within a block.
    let heights: Vec<u64> = nodes.iter().map(|n| n.best).collect();
    // (Two if the network ticks between the snapshots of the nodes.)
    assert!(heights.iter().max().unwrap() - heights.iter().min().unwrap() <= 2);
    let health: Value = client()
        .get(nodes[0].health.clone().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health, json!({"jsonrpc":"2.0","id":-1,"result":{}}));
    let reply = rpc(
        &nodes[0].rpc,
        json!({"jsonrpc":"2.0","id":"x","method":"status"}),
    )
    .await;
    assert_eq!(reply["result"]["node_info"]["moniker"], "sim-0");
    assert_eq!(reply["id"], "x");
    sim.stop().await;
}
