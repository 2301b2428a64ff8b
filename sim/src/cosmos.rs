//! A CometBFT node: `GET /status`, `GET /net_info`, `GET /health` (and the same as
//! JSON-RPC POST calls) on `:26657`, Prometheus text on `:26660/metrics`. The shapes
//! follow CometBFT 0.38.

use std::fmt::Write;

use serde_json::{Value, json};

use super::ids;
use super::jsonrpc::RpcError;
use super::view::View;

/// Chain id (`node_info.network`, the `chain_id` metric label).
pub const NETWORK: &str = "simnet-1";
/// CometBFT version (`node_info.version`).
pub const VERSION: &str = "0.38.12";
/// Salt of this chain's block hashes.
const SALT: u64 = 0xc05e_0000_0000_0003;
/// The P2P channels a 0.38 node advertises.
const CHANNELS: &str = "40202122233038606100";

/// Upper-case hex, as CometBFT writes hashes and addresses.
fn upper_hex(bytes: &[u8]) -> String {
    ids::hex(bytes).to_ascii_uppercase()
}

/// The node id: 20 bytes of hex, derived from the node key.
fn node_id(seed: u64) -> String {
    ids::hex(&ids::bytes(seed ^ 0x1d, 20))
}

/// The `node_info` object shared by `/status` and the peers of `/net_info`.
fn node_info(id: &str, moniker: &str, listen_addr: &str) -> Value {
    json!({
        "protocol_version": {"p2p": "8", "block": "11", "app": "0"},
        "id": id,
        "listen_addr": listen_addr,
        "network": NETWORK,
        "version": VERSION,
        "channels": CHANNELS,
        "moniker": moniker,
        "other": {"tx_index": "on", "rpc_address": "tcp://0.0.0.0:26657"},
    })
}

/// The `result` of `/status`.
pub fn status(v: &View<'_>) -> Value {
    let f = &v.facts;
    let block = i128::try_from(v.params.block).unwrap_or(0);
    let earliest = v.params.base.saturating_sub(1);
    let earliest_at = -(i128::from(earliest) * block);
    let seed = v.seed();
    json!({
        "node_info": node_info(&node_id(seed), &v.node.name, "tcp://0.0.0.0:26656"),
        "sync_info": {
            "latest_block_hash": upper_hex(&ids::block_hash(SALT, f.best)),
            "latest_app_hash": upper_hex(&ids::digest(SALT, f.best, 4)),
            "latest_block_height": f.best.to_string(),
            "latest_block_time": v.wall(f.best_at).to_string(),
            "earliest_block_hash": upper_hex(&ids::block_hash(SALT, 1)),
            "earliest_app_hash": upper_hex(&ids::digest(SALT, 1, 4)),
            "earliest_block_height": "1",
            "earliest_block_time": v.wall(earliest_at).to_string(),
            "catching_up": f.syncing,
        },
        "validator_info": {
            "address": validator_address(seed),
            "pub_key": {
                "type": "tendermint/PubKeyEd25519",
                "value": ids::base64(&ids::bytes(seed ^ 0x9b, 32)),
            },
            "voting_power": "10",
        },
    })
}

fn validator_address(seed: u64) -> String {
    upper_hex(&ids::bytes(seed ^ 0xad, 20))
}

/// Peers of `/net_info`, rendered once at start so that answering costs string copies,
/// not JSON serialisation: a 0.38 node sends about 1.5 KiB per peer.
#[derive(Debug, Clone, Default)]
pub struct PeerPool {
    peers: Vec<String>,
}

impl PeerPool {
    /// A pool from which every node can take `peers` distinct peers.
    pub fn new(peers: u32) -> PeerPool {
        // A few spare entries, so neighbouring nodes list different peer sets.
        let size = peers as usize + usize::from(peers > 0) * 8;
        let peers = (0..size).map(|i| render_peer(i as u64)).collect();
        PeerPool { peers }
    }

    /// The `result` of `/net_info` for `v`, as JSON text.
    pub fn net_info(&self, v: &View<'_>) -> String {
        let n = (v.facts.peers as usize).min(self.peers.len());
        let mut s = String::with_capacity(160 + n * 1600);
        let _ = write!(
            s,
            "{{\"listening\":true,\"listeners\":[\"Listener(@tcp://{ip}:26656)\"],\"n_peers\":\"{n}\",\"peers\":[",
            ip = v.node.ip
        );
        let start = if self.peers.is_empty() {
            0
        } else {
            v.node.index % self.peers.len()
        };
        for k in 0..n {
            if k > 0 {
                s.push(',');
            }
            s.push_str(&self.peers[(start + k) % self.peers.len()]);
        }
        s.push_str("]}");
        s
    }
}

fn render_peer(i: u64) -> String {
    let seed = i ^ 0x7ee7_0000;
    let ip = format!(
        "10.{}.{}.{}",
        (i >> 16) & 255,
        (i >> 8) & 255,
        (i & 255).max(1)
    );
    let monitor = |bytes: u64| {
        json!({
            "Active": true,
            "Start": "2024-11-05T09:12:41.52Z",
            "Duration": "3350640000000",
            "Idle": "1820000000",
            "Bytes": bytes.to_string(),
            "Samples": "1473",
            "InstRate": "0",
            "CurRate": "1823",
            "AvgRate": "10918",
            "PeakRate": "106300",
            "BytesRem": "0",
            "TimeRem": "0",
            "Progress": 0,
        })
    };
    let channels: Vec<Value> = [
        (48, 1, 5),
        (64, 1000, 10),
        (32, 100, 5),
        (33, 100, 10),
        (34, 100, 5),
        (35, 2, 1),
        (56, 1, 5),
        (0, 10, 1),
    ]
    .iter()
    .map(|(id, cap, prio)| {
        json!({
            "ID": id,
            "SendQueueCapacity": cap.to_string(),
            "SendQueueSize": "0",
            "Priority": prio.to_string(),
            "RecentlySent": "0",
        })
    })
    .collect();
    json!({
        "node_info": node_info(
            &node_id(seed),
            &format!("peer-{i}"),
            &format!("tcp://{ip}:26656"),
        ),
        "is_outbound": !i.is_multiple_of(3),
        "connection_status": {
            "Duration": "3350648332604",
            "SendMonitor": monitor(209_809 + i * 17),
            "RecvMonitor": monitor(222_732 + i * 13),
            "Channels": channels,
        },
        "remote_ip": ip,
    })
    .to_string()
}

/// A CometBFT reply envelope around a result, with the id of a URI (GET) request.
pub fn envelope(result: &str) -> String {
    format!("{{\"jsonrpc\":\"2.0\",\"id\":-1,\"result\":{result}}}")
}

/// Runs one JSON-RPC method (POST to `/`).
pub fn call(v: &View<'_>, pool: &PeerPool, method: &str) -> Result<Value, RpcError> {
    match method {
        "status" => Ok(status(v)),
        "net_info" => serde_json::from_str(&pool.net_info(v))
            .map_err(|e| RpcError::new(-32603, format!("Internal error: {e}"))),
        "health" => Ok(json!({})),
        _ => Err(RpcError::method_not_found()),
    }
}

/// The Prometheus exposition of `:26660/metrics`.
pub fn metrics(v: &View<'_>) -> String {
    let f = &v.facts;
    let c = NETWORK;
    let mut s = String::with_capacity(1024);
    let _ = write!(
        s,
        "# HELP cometbft_blocksync_syncing Whether or not a node is block syncing. 1 if yes, 0 if no.\n\
         # TYPE cometbft_blocksync_syncing gauge\n\
         cometbft_blocksync_syncing{{chain_id=\"{c}\"}} {syncing}\n\
         # HELP cometbft_consensus_height Height of the chain.\n\
         # TYPE cometbft_consensus_height gauge\n\
         cometbft_consensus_height{{chain_id=\"{c}\"}} {height}\n\
         # HELP cometbft_consensus_latest_block_height The latest block height.\n\
         # TYPE cometbft_consensus_latest_block_height gauge\n\
         cometbft_consensus_latest_block_height{{chain_id=\"{c}\"}} {latest}\n\
         # HELP cometbft_consensus_validator_missed_blocks Amount of blocks missed per validator.\n\
         # TYPE cometbft_consensus_validator_missed_blocks gauge\n\
         cometbft_consensus_validator_missed_blocks{{chain_id=\"{c}\",validator_address=\"{addr}\"}} {missed}\n\
         # HELP cometbft_p2p_peers Number of peers.\n\
         # TYPE cometbft_p2p_peers gauge\n\
         cometbft_p2p_peers{{chain_id=\"{c}\"}} {peers}\n",
        syncing = u8::from(f.syncing),
        // The height being decided is one past the last committed block.
        height = f.best + 1,
        latest = f.best,
        addr = validator_address(v.seed()),
        missed = f.missed,
        peers = f.peers,
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Fault, FaultOptions, NodeState, Params, SimChain};
    use crate::view::with_test_view;
    use std::time::Duration;

    fn with_view<T>(state: &NodeState, f: impl FnOnce(&View<'_>) -> T) -> T {
        with_test_view(
            SimChain::Cosmos,
            5,
            Duration::from_secs(6),
            3,
            60_000_000_000,
            state,
            f,
        )
    }

    #[test]
    fn status_has_the_real_shape() {
        with_view(&NodeState::new(), |v| {
            let doc: Value = serde_json::from_str(&envelope(&status(v).to_string())).unwrap();
            assert_eq!(doc["id"], -1);
            let r = &doc["result"];
            assert_eq!(r["node_info"]["network"], NETWORK);
            assert_eq!(r["node_info"]["moniker"], "sim-5");
            assert_eq!(r["node_info"]["id"].as_str().unwrap().len(), 40);
            let si = &r["sync_info"];
            assert_eq!(si["latest_block_height"], v.facts.best.to_string());
            assert_eq!(si["catching_up"], false);
            let t: jiff::Timestamp = si["latest_block_time"].as_str().unwrap().parse().unwrap();
            assert!(
                t.as_second() <= 1_700_000_060 && t.as_second() > 1_700_000_050,
                "{t}"
            );
            let early: jiff::Timestamp =
                si["earliest_block_time"].as_str().unwrap().parse().unwrap();
            assert!(early < t);
            assert_eq!(si["latest_block_hash"].as_str().unwrap().len(), 64);
            assert_eq!(r["validator_info"]["voting_power"], "10");
            assert_eq!(r["validator_info"]["address"].as_str().unwrap().len(), 40);
            assert_eq!(
                r["validator_info"]["pub_key"]["value"]
                    .as_str()
                    .unwrap()
                    .len(),
                44
            );
        });
    }

    #[test]
    fn net_info_lists_the_peers() {
        let pool = PeerPool::new(3);
        with_view(&NodeState::new(), |v| {
            let doc: Value = serde_json::from_str(&envelope(&pool.net_info(v))).unwrap();
            let r = &doc["result"];
            assert_eq!(r["n_peers"], "3");
            let peers = r["peers"].as_array().unwrap();
            assert_eq!(peers.len(), 3);
            assert_eq!(peers[0]["node_info"]["network"], NETWORK);
            assert!(peers[0]["connection_status"]["SendMonitor"]["Bytes"].is_string());
            assert_eq!(call(v, &pool, "net_info").unwrap()["n_peers"], "3");
            assert_eq!(call(v, &pool, "health").unwrap(), json!({}));
            assert_eq!(call(v, &pool, "genesis").unwrap_err().code, -32601);
        });
        let mut state = NodeState::new();
        let p = Params::new(SimChain::Cosmos, Duration::from_secs(6), 3, 5);
        state.apply(Fault::DropPeers, FaultOptions::default(), &p, 0);
        state.apply(Fault::Syncing, FaultOptions::default(), &p, 0);
        with_view(&state, |v| {
            let doc: Value = serde_json::from_str(&pool.net_info(v)).unwrap();
            assert_eq!(doc["n_peers"], "0");
            assert_eq!(doc["peers"], json!([]));
            assert_eq!(status(v)["sync_info"]["catching_up"], true);
            let m = metrics(v);
            assert!(
                m.contains("cometbft_blocksync_syncing{chain_id=\"simnet-1\"} 1\n"),
                "{m}"
            );
            assert!(m.contains("cometbft_p2p_peers{chain_id=\"simnet-1\"} 0\n"));
            assert!(m.contains(&format!(
                "cometbft_consensus_height{{chain_id=\"simnet-1\"}} {}\n",
                v.facts.best + 1
            )));
        });
        // An empty pool (zero peers configured) is fine too.
        with_view(&NodeState::new(), |v| {
            let doc: Value = serde_json::from_str(&PeerPool::new(0).net_info(v)).unwrap();
            assert_eq!(doc["n_peers"], "0");
        });
    }
}
