//! Validator duty on the simulated chains, over real HTTP: CometBFT commits, validator sets
//! and the Cosmos SDK slashing and staking queries; Substrate authorship; and the faults
//! `stopSigning` and `jailed`. Fleets on 127.201.2x.y (distinct from tests/probe.rs).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use vigil_sim::{NodeInfo, SimChain, SimConfig, Simulator};

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

async fn start(third: u8, chains: Vec<SimChain>, block_ms: u64) -> Simulator {
    let mut cfg = SimConfig::new(chains, Ipv4Addr::new(127, 201, third, 1));
    cfg.block_time = Some(Duration::from_millis(block_ms));
    cfg.peers = 3;
    Simulator::start(cfg).await.expect("the simulator starts")
}

/// GET `url`: (status, body).
async fn get(url: &str) -> (u16, String) {
    let resp = client().get(url).send().await.expect("the node answers");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

/// GET `url` and parse the JSON body, asserting the status.
async fn get_json(url: &str, want: u16) -> Value {
    let (status, body) = get(url).await;
    assert_eq!(status, want, "{url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {body}"))
}

async fn admin(sim: &Simulator, path: &str, body: Value) -> (u16, Value) {
    let resp = client()
        .post(format!("http://{}{path}", sim.admin_addr()))
        .body(body.to_string())
        .send()
        .await
        .expect("admin answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("admin JSON"))
}

async fn fault(sim: &Simulator, index: usize, name: &str) {
    let (status, doc) = admin(
        sim,
        &format!("/nodes/{index}/fault"),
        json!({"fault": name}),
    )
    .await;
    assert_eq!(status, 200, "{doc}");
    assert!(
        doc["faults"].as_array().unwrap().contains(&json!(name)),
        "{doc}"
    );
}

async fn recover(sim: &Simulator, index: usize) {
    let (status, doc) = admin(sim, &format!("/nodes/{index}/recover"), json!({})).await;
    assert_eq!(status, 200, "{doc}");
}

async fn best(node: &NodeInfo) -> u64 {
    let doc = get_json(&format!("{}/status", node.rpc), 200).await;
    doc["result"]["sync_info"]["latest_block_height"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Waits until `node` is at `height` or above.
async fn reach(node: &NodeInfo, height: u64) -> u64 {
    let start = Instant::now();
    loop {
        let b = best(node).await;
        if b >= height {
            return b;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{b} < {height}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn commit(node: &NodeInfo, height: u64) -> Value {
    get_json(&format!("{}/commit?height={height}", node.rpc), 200).await["result"].clone()
}

/// `(block_id_flag, validator_address)` of each signature.
fn sigs(commit: &Value) -> Vec<(u64, String)> {
    commit["signed_header"]["commit"]["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["block_id_flag"].as_u64().unwrap(),
                s["validator_address"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The value of the first sample of `name` (with any labels) in a Prometheus text.
fn sample(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}")) as u64
}

async fn metrics(node: &NodeInfo) -> String {
    get(node.metrics.as_deref().unwrap()).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosmos_commits_validators_and_the_ready_file() {
    let sim = start(
        20,
        vec![
            SimChain::Cosmos,
            SimChain::Cosmos,
            SimChain::Substrate,
            SimChain::Cosmos,
            SimChain::Cosmos,
        ],
        100,
    )
    .await;
    let nodes = sim.nodes();
    let cosmos: Vec<&NodeInfo> = nodes.iter().filter(|n| n.chain == "cosmos").collect();
    assert_eq!(cosmos.len(), 4);
    // The ready file describes each validator.
    let ready = serde_json::to_value(sim.ready()).unwrap();
    let n0 = &ready["nodes"][0];
    assert_eq!(n0["validatorAddress"].as_str().unwrap().len(), 40);
    assert!(
        n0["valoper"]
            .as_str()
            .unwrap()
            .starts_with("cosmosvaloper1"),
        "{n0}"
    );
    assert!(
        n0["valcons"]
            .as_str()
            .unwrap()
            .starts_with("cosmosvalcons1"),
        "{n0}"
    );
    assert_eq!(n0["api"], "http://127.201.20.1:26657");
    assert_eq!(n0["authorIndex"], Value::Null);
    assert_eq!(ready["nodes"][2]["valoper"], Value::Null);
    assert_eq!(ready["nodes"][2]["authorIndex"], 0);
    assert_eq!(ready["nodes"][2]["authorities"], 1);
    let addrs: BTreeSet<String> = cosmos
        .iter()
        .map(|n| n.validator_address.clone().unwrap())
        .collect();
    assert_eq!(addrs.len(), 4);
    for n in &cosmos {
        let status = get_json(&format!("{}/status", n.rpc), 200).await;
        let vi = &status["result"]["validator_info"];
        assert_eq!(vi["address"], n.validator_address.clone().unwrap().as_str());
        assert_eq!(vi["voting_power"], "10");
    }

    let a = cosmos[0];
    let h = reach(a, 5_000_003).await - 1;
    let c = commit(a, h).await;
    assert_eq!(c["signed_header"]["header"]["height"], h.to_string());
    assert_eq!(c["signed_header"]["commit"]["height"], h.to_string());
    assert_eq!(c["canonical"], true);
    let header = &c["signed_header"]["header"];
    assert_eq!(header["chain_id"], "simnet-1");
    assert!(addrs.contains(header["proposer_address"].as_str().unwrap()));
    let t: jiff::Timestamp = header["time"].as_str().unwrap().parse().unwrap();
    assert!(t < jiff::Timestamp::now());
    assert_eq!(header["last_block_id"]["hash"].as_str().unwrap().len(), 64);
    let s = sigs(&c);
    // Every validator signed, in address order (equal power).
    assert!(s.iter().all(|(f, _)| *f == 2), "{s:?}");
    let order: Vec<String> = s.iter().map(|(_, a)| a.clone()).collect();
    assert_eq!(order, addrs.iter().cloned().collect::<Vec<_>>());
    for sig in c["signed_header"]["commit"]["signatures"]
        .as_array()
        .unwrap()
    {
        let ts: jiff::Timestamp = sig["timestamp"].as_str().unwrap().parse().unwrap();
        assert!(ts > t);
        assert_eq!(sig["signature"].as_str().unwrap().len(), 88);
    }
    // One chain: every node serves the same bytes for a block.
    let url = |n: &NodeInfo| format!("{}/commit?height={h}", n.rpc);
    let one = get(&url(a)).await.1;
    assert_eq!(one, get(&url(cosmos[3])).await.1);
    // The same as a JSON-RPC call, by name or by position.
    for params in [json!({"height": h.to_string()}), json!([h])] {
        let reply: Value = client()
            .post(&a.rpc)
            .json(&json!({"jsonrpc":"2.0","id":1,"method":"commit","params":params}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(reply["result"], c, "{params}");
    }
    // The latest commit is not canonical yet.
    let latest = get_json(&format!("{}/commit", a.rpc), 200).await;
    assert_eq!(latest["result"]["canonical"], false);

    // Validator sets, paged.
    let page = |q: &str| format!("{}/validators?{q}", a.rpc);
    let all = get_json(&page(&format!("height={h}")), 200).await["result"].clone();
    assert_eq!(
        (all["count"].clone(), all["total"].clone()),
        (json!("4"), json!("4"))
    );
    assert_eq!(all["block_height"], h.to_string());
    let v0 = &all["validators"][0];
    assert_eq!(v0["address"], order[0].as_str());
    assert_eq!(v0["voting_power"], "10");
    assert_eq!(v0["pub_key"]["type"], "tendermint/PubKeyEd25519");
    assert!(v0["proposer_priority"].is_string());
    let p2 = get_json(&page(&format!("height={h}&page=2&per_page=3")), 200).await;
    assert_eq!(p2["result"]["count"], "1");
    assert_eq!(p2["result"]["validators"][0]["address"], order[3].as_str());
    let err = get_json(&page("page=3&per_page=3"), 500).await;
    assert_eq!(
        err["error"]["data"],
        "page should be within [1, 2] range, given 3"
    );

    // Heights a node does not have, as CometBFT words them (HTTP 500).
    let b = best(a).await;
    for (q, says) in [
        (
            "height=0".to_string(),
            "height must be greater than 0".to_string(),
        ),
        (
            format!("height={}", b + 1000),
            "must be less than or equal to the current blockchain height".into(),
        ),
        (
            format!("height={}", b - 5000),
            "is not available, lowest height is".into(),
        ),
        ("height=abc".into(), "invalid 64-bit integer".into()),
    ] {
        let doc = get_json(&format!("{}/commit?{q}", a.rpc), 500).await;
        let data = doc["error"]["data"].as_str().unwrap_or_default();
        assert!(data.contains(&says), "{q}: {doc}");
        assert_eq!(doc["id"], -1);
    }
    // Heights up to a thousand below the tip are served.
    let b = best(a).await;
    assert_eq!(sigs(&commit(a, b - 900).await).len(), 4);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_signing_keeps_the_node_healthy_but_absent() {
    let sim = start(21, vec![SimChain::Cosmos; 3], 100).await;
    let nodes = sim.nodes();
    let (a, quiet) = (&nodes[0], &nodes[2]);
    let addr = quiet.validator_address.clone().unwrap();
    let before = reach(quiet, 5_000_003).await;
    let m0 = metrics(quiet).await;
    assert_eq!(sample(&m0, "cometbft_consensus_validator_missed_blocks"), 0);
    assert!(sample(&m0, "cometbft_consensus_validator_last_signed_height") + 2 >= before);
    assert_eq!(sample(&m0, "cometbft_consensus_validator_power"), 10);
    assert_eq!(sample(&m0, "cometbft_consensus_validators"), 3);

    fault(&sim, 2, "stopSigning").await;
    let from = best(a).await + 2;
    let to = reach(a, from + 5).await;
    // Healthy: its blocks advance, it has peers, it says it is a validator.
    let q = reach(quiet, from + 5).await;
    assert!(q > before + 5);
    let st = get_json(&format!("{}/status", quiet.rpc), 200).await;
    assert_eq!(st["result"]["sync_info"]["catching_up"], false);
    assert_eq!(st["result"]["validator_info"]["voting_power"], "10");
    let ni = get_json(&format!("{}/net_info", quiet.rpc), 200).await;
    assert_eq!(ni["result"]["n_peers"], "3");
    // ...but its signature is absent from every commit since, read through any node.
    for h in from..=to {
        let s = sigs(&commit(a, h).await);
        assert_eq!(s.len(), 3);
        assert_eq!(s.iter().filter(|(f, _)| *f == 1).count(), 1, "{h}: {s:?}");
        assert!(s.iter().all(|(f, x)| (*f == 2) != x.is_empty()), "{s:?}");
        assert!(!s.iter().any(|(_, x)| *x == addr), "{h}: {s:?}");
    }
    let frozen = commit(a, to).await;
    let m1 = metrics(quiet).await;
    let missed = sample(&m1, "cometbft_consensus_validator_missed_blocks");
    assert!(missed >= to - from, "{missed} < {}", to - from);
    let last = sample(&m1, "cometbft_consensus_validator_last_signed_height");
    assert!(last < from, "{last} >= {from}");

    recover(&sim, 2).await;
    let again = best(a).await + 2;
    reach(a, again).await;
    let s = sigs(&commit(a, again).await);
    assert!(s.iter().all(|(f, _)| *f == 2), "{s:?}");
    assert!(s.iter().any(|(_, x)| *x == addr));
    // History does not change with the recovery.
    assert_eq!(commit(a, to).await, frozen);
    reach(quiet, again + 1).await;
    let m2 = metrics(quiet).await;
    assert!(sample(&m2, "cometbft_consensus_validator_last_signed_height") >= again);
    // It misses no more.
    let missed = sample(&m2, "cometbft_consensus_validator_missed_blocks");
    reach(quiet, again + 4).await;
    let m3 = metrics(quiet).await;
    assert_eq!(
        sample(&m3, "cometbft_consensus_validator_missed_blocks"),
        missed
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jailed_leaves_the_set_and_shows_in_slashing_and_staking() {
    let sim = start(22, vec![SimChain::Cosmos; 4], 100).await;
    let nodes = sim.nodes();
    let (a, j) = (&nodes[0], &nodes[1]);
    let valcons = j.valcons.clone().unwrap();
    let valoper = j.valoper.clone().unwrap();
    let addr = j.validator_address.clone().unwrap();
    let api = a.api.clone().unwrap();
    let info_url = format!("{api}/cosmos/slashing/v1beta1/signing_infos/{valcons}");
    let staking_url = format!("{api}/cosmos/staking/v1beta1/validators/{valoper}");

    let info = get_json(&info_url, 200).await;
    let si = &info["val_signing_info"];
    assert_eq!(si["address"], valcons.as_str());
    assert_eq!(si["start_height"], "0");
    assert_eq!(si["jailed_until"], "1970-01-01T00:00:00Z");
    assert_eq!(si["tombstoned"], false);
    assert_eq!(si["missed_blocks_counter"], "0");
    assert!(si["index_offset"].as_str().unwrap().parse::<u64>().unwrap() > 0);
    let v = get_json(&staking_url, 200).await["validator"].clone();
    assert_eq!(v["operator_address"], valoper.as_str());
    assert_eq!(v["jailed"], false);
    assert_eq!(v["status"], "BOND_STATUS_BONDED");
    assert_eq!(v["tokens"], "10000000");
    assert_eq!(
        v["consensus_pubkey"]["@type"],
        "/cosmos.crypto.ed25519.PubKey"
    );
    assert_eq!(v["description"]["moniker"], "sim-1");

    let pre = best(a).await;
    fault(&sim, 1, "jailed").await;
    let from = best(a).await + 2;
    let h = reach(a, from + 3).await;
    // Out of the set: not in /validators, no signature at all in commits.
    let set = get_json(&format!("{}/validators?height={h}", a.rpc), 200).await;
    assert_eq!(set["result"]["total"], "3");
    let listed: Vec<&str> = set["result"]["validators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["address"].as_str().unwrap())
        .collect();
    assert!(!listed.contains(&addr.as_str()));
    for height in from..=h {
        let s = sigs(&commit(a, height).await);
        assert_eq!(s.len(), 3, "{height}: {s:?}");
        assert!(s.iter().all(|(f, _)| *f == 2));
        assert_ne!(
            commit(a, height).await["signed_header"]["header"]["validators_hash"],
            commit(a, pre).await["signed_header"]["header"]["validators_hash"]
        );
    }
    // An older set still has it.
    let old = get_json(&format!("{}/validators?height={pre}", a.rpc), 200).await;
    assert_eq!(old["result"]["total"], "4");
    // Jailed in slashing and staking; the node itself says it has no power.
    let si = get_json(&info_url, 200).await["val_signing_info"].clone();
    let until: jiff::Timestamp = si["jailed_until"].as_str().unwrap().parse().unwrap();
    assert!(until > jiff::Timestamp::now(), "{si}");
    let v = get_json(&staking_url, 200).await["validator"].clone();
    assert_eq!(v["jailed"], true);
    assert_eq!(v["status"], "BOND_STATUS_UNBONDING");
    let unbonding: u64 = v["unbonding_height"].as_str().unwrap().parse().unwrap();
    assert!(
        unbonding > pre && unbonding <= from,
        "{pre} {unbonding} {from}"
    );
    let st = get_json(&format!("{}/status", j.rpc), 200).await;
    assert_eq!(st["result"]["validator_info"]["voting_power"], "0");
    let m = metrics(j).await;
    assert_eq!(sample(&m, "cometbft_consensus_validators"), 3);
    assert_eq!(sample(&m, "cometbft_consensus_validator_power"), 0);

    // Unknown and malformed addresses, as the SDK's gateway answers them.
    let other = nodes[2].valcons.clone().unwrap();
    let unknown = format!(
        "{api}/cosmos/slashing/v1beta1/signing_infos/{}",
        valcons.replace("cosmosvalcons", "cosmosvaloper")
    );
    let e = get_json(&unknown, 400).await;
    assert_eq!(e["code"], 3, "{e}");
    let e = get_json(
        &format!("{api}/cosmos/staking/v1beta1/validators/cosmosvaloper1xyz"),
        400,
    )
    .await;
    assert_eq!(e["code"], 3);
    assert!(e["message"].as_str().unwrap().contains("bech32"), "{e}");
    assert_eq!(
        get_json(
            &format!("{api}/cosmos/slashing/v1beta1/signing_infos/{other}"),
            200
        )
        .await["val_signing_info"]["jailed_until"],
        "1970-01-01T00:00:00Z"
    );

    // Recovered (unjailed): back in the set, bonded, a new start height.
    recover(&sim, 1).await;
    let back = best(a).await + 2;
    reach(a, back).await;
    let s = sigs(&commit(a, back).await);
    assert_eq!(s.len(), 4);
    assert!(s.iter().any(|(_, x)| *x == addr));
    let v = get_json(&staking_url, 200).await["validator"].clone();
    assert_eq!(
        (v["jailed"].clone(), v["status"].clone()),
        (json!(false), json!("BOND_STATUS_BONDED"))
    );
    let si = get_json(&info_url, 200).await["val_signing_info"].clone();
    assert!(si["start_height"].as_str().unwrap().parse::<u64>().unwrap() >= from);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn substrate_authors_in_turn_and_stop_signing_hands_blocks_on() {
    let sim = start(23, vec![SimChain::Substrate; 3], 100).await;
    let nodes = sim.nodes();
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!((n.author_index, n.authorities), (Some(i), Some(3)));
    }
    let roles: Value = client()
        .post(&nodes[0].rpc)
        .json(&json!({"jsonrpc":"2.0","id":1,"method":"system_nodeRoles","params":[]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(roles["result"], json!(["Authority"]));

    let m = metrics(&nodes[0]).await;
    assert_eq!(sample(&m, "substrate_node_roles"), 4);
    assert!(m.contains("# TYPE substrate_proposer_block_constructed histogram\n"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Each authors one block in three (the bests of the nodes differ by a block at most).
    let counts = authored_counts(&sim, &nodes).await;
    let total: u64 = counts.iter().sum();
    assert!(total >= 12, "{counts:?}");
    for c in &counts {
        assert!(c * 3 + 6 >= total && *c * 3 <= total + 6, "{counts:?}");
    }

    fault(&sim, 1, "stopSigning").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b1 = authored_counts(&sim, &nodes).await;
    let h1 = sim.nodes()[0].best;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let b2 = authored_counts(&sim, &nodes).await;
    let h2 = sim.nodes()[0].best;
    // The chain goes on; node 1 authors nothing; node 2 authors its blocks and node 1's.
    assert!(h2 >= h1 + 10, "{h1} -> {h2}");
    assert_eq!(b2[1], b1[1], "{b1:?} -> {b2:?}");
    let (d0, d2) = ((b2[0] - b1[0]) as i64, (b2[2] - b1[2]) as i64);
    assert!(d0 >= 3 && (d2 - 2 * d0).abs() <= 4, "{b1:?} -> {b2:?}");
    assert_eq!(sim.nodes()[1].faults, ["stopSigning"]);
    assert!(
        sim.nodes()[1].best >= h2 - 1,
        "node 1 still follows the chain"
    );

    recover(&sim, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b3 = authored_counts(&sim, &nodes).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    let b4 = authored_counts(&sim, &nodes).await;
    assert!(b4[1] >= b3[1] + 2, "{b3:?} -> {b4:?}");

    // Only substrate and cosmos validators sign; only cosmos ones are jailed.
    sim.stop().await;
    let mix = start(
        24,
        vec![SimChain::Substrate, SimChain::Ethereum, SimChain::Cosmos],
        1000,
    )
    .await;
    for (node, name, status, says) in [
        (1, "stopSigning", 400, "substrate and cosmos"),
        (0, "jailed", 400, "only to cosmos"),
        (2, "jailed", 200, ""),
        (0, "stopSigning", 200, ""),
    ] {
        let (s, doc) = admin(
            &mix,
            &format!("/nodes/{node}/fault"),
            json!({"fault": name}),
        )
        .await;
        assert_eq!(s, status, "{doc}");
        assert!(
            doc["error"].as_str().unwrap_or_default().contains(says),
            "{doc}"
        );
    }
    let (s, doc) = admin(&mix, "/fault", json!({"fault": "jailed"})).await;
    assert_eq!(
        (s, doc["affected"].clone(), doc["skipped"].clone()),
        (200, json!(1), json!(2))
    );
    mix.stop().await;
}

/// Every node's `substrate_proposer_block_constructed_count`, read while the chain is
/// stopped for a moment (`stopBlocks` on all, then recovered): the counts belong to one
/// instant, however slow the reads.
async fn authored_counts(sim: &Simulator, nodes: &[NodeInfo]) -> Vec<u64> {
    let (status, doc) = admin(sim, "/fault", json!({"fault": "stopBlocks"})).await;
    assert_eq!(status, 200, "{doc}");
    let mut out = Vec::new();
    for n in nodes {
        out.push(sample(
            &metrics(n).await,
            "substrate_proposer_block_constructed_count",
        ));
    }
    let (status, doc) = admin(sim, "/recover", json!({"fault": "stopBlocks"})).await;
    assert_eq!(status, 200, "{doc}");
    out
}
