//! A Substrate / Polkadot SDK node: JSON-RPC methods, `/health`, and the Prometheus text
//! of `:9615/metrics`, shaped like polkadot 1.x output.

use std::fmt::Write;

use serde_json::{Value, json};

use super::ids;
use super::jsonrpc::{self, RpcError};
use super::view::View;

/// Chain name (`system_chain`) and the `chain` label of every metric.
pub const CHAIN_NAME: &str = "Simnet";
const CHAIN_LABEL: &str = "simnet";
/// Node software version (`system_version`, `substrate_build_info`).
pub const VERSION: &str = "1.16.0-sim";
/// Implementation name (`system_name`), as polkadot reports it.
const IMPL_NAME: &str = "Parity Polkadot";
/// Salt of this chain's block hashes.
const SALT: u64 = 0x5b57_a7e0_0000_0001;

/// The methods this node answers (also the reply of `rpc_methods`).
const METHODS: &[&str] = &[
    "chain_getBlockHash",
    "chain_getFinalisedHead",
    "chain_getFinalizedHead",
    "chain_getHead",
    "chain_getHeader",
    "rpc_methods",
    "system_chain",
    "system_health",
    "system_localPeerId",
    "system_name",
    "system_nodeRoles",
    "system_properties",
    "system_syncState",
    "system_version",
];

/// The hash of block `height`.
pub fn hash(height: u64) -> String {
    ids::hex0x(&ids::block_hash(SALT, height))
}

/// The `system_health` result (also the body of `GET /health`).
pub fn health(v: &View<'_>) -> Value {
    json!({
        "peers": v.facts.peers,
        "isSyncing": v.facts.syncing,
        "shouldHavePeers": true,
    })
}

/// Whether `GET /health/readiness` answers 200: synced and connected.
pub fn ready(v: &View<'_>) -> bool {
    !v.facts.syncing && v.facts.peers > 0
}

/// The header of block `n`, or `null` when the node does not have it yet.
fn header(v: &View<'_>, n: u64) -> Value {
    if n > v.facts.best {
        return Value::Null;
    }
    let parent = if n == 0 {
        ids::hex0x(&[0; 32])
    } else {
        hash(n - 1)
    };
    json!({
        "parentHash": parent,
        "number": ids::quantity(n),
        "stateRoot": ids::hex0x(&ids::digest(SALT, n, 1)),
        "extrinsicsRoot": ids::hex0x(&ids::digest(SALT, n, 2)),
        "digest": {"logs": []},
    })
}

/// The number of the block with hash `h` that this node has.
fn number_of(v: &View<'_>, h: &str) -> Option<u64> {
    ids::parse_hash(h)
        .and_then(|bytes| ids::height_of(SALT, &bytes))
        .filter(|n| *n <= v.facts.best)
}

fn block_hash_of(v: &View<'_>, p: Option<&Value>) -> Result<Value, RpcError> {
    let one = |n: &Value| -> Result<Value, RpcError> {
        let n = jsonrpc::block_number(n)?;
        Ok(if n <= v.facts.best {
            json!(hash(n))
        } else {
            Value::Null
        })
    };
    match p {
        None => Ok(json!(hash(v.facts.best))),
        // Substrate takes a number or a list of numbers.
        Some(Value::Array(list)) => list.iter().map(one).collect::<Result<_, _>>(),
        Some(n) => one(n),
    }
}

/// Runs one JSON-RPC method.
pub fn call(v: &View<'_>, method: &str, params: &Value) -> Result<Value, RpcError> {
    let f = &v.facts;
    Ok(match method {
        "system_health" => health(v),
        "system_syncState" => json!({
            "startingBlock": f.starting,
            "currentBlock": f.best,
            "highestBlock": f.target,
        }),
        "chain_getFinalizedHead" | "chain_getFinalisedHead" => json!(hash(f.finalized)),
        "chain_getHeader" => match jsonrpc::param(params, 0) {
            None => header(v, f.best),
            Some(Value::String(h)) => number_of(v, h).map_or(Value::Null, |n| header(v, n)),
            Some(other) => {
                return Err(RpcError::invalid_params(format!(
                    "{other} is not a block hash"
                )));
            }
        },
        "chain_getBlockHash" | "chain_getHead" => block_hash_of(v, jsonrpc::param(params, 0))?,
        "system_version" => json!(VERSION),
        "system_chain" => json!(CHAIN_NAME),
        "system_name" => json!(IMPL_NAME),
        "system_nodeRoles" => json!(["Authority"]),
        "system_localPeerId" => json!(ids::libp2p_peer_id(v.seed())),
        "system_properties" => json!({"ss58Format": 42, "tokenDecimals": 12, "tokenSymbol": "SIM"}),
        "rpc_methods" => json!({"methods": METHODS}),
        _ => return Err(RpcError::method_not_found()),
    })
}

/// Upper bounds of the `substrate_proposer_block_constructed` histogram (seconds).
const CONSTRUCT_BUCKETS: [&str; 11] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10",
];
/// How long constructing a block takes here (seconds, in the 0.05–0.1 bucket).
const CONSTRUCT_SECONDS: f64 = 0.08;

/// The Prometheus exposition of `:9615/metrics`: the families a watcher reads, with
/// the HELP texts, label order and `chain` label of a real node, sorted by name.
/// `authored`: blocks this node authored since it started (the count of the
/// `substrate_proposer_block_constructed` histogram).
pub fn metrics(v: &View<'_>, authored: u64) -> String {
    let f = &v.facts;
    let c = CHAIN_LABEL;
    let started = v
        .wall(i128::try_from(f.started_at).unwrap_or(i128::MAX))
        .as_second();
    // GRANDPA completes about one round per finalized block.
    let round = f.finalized.saturating_sub(v.params.base) + 1;
    let mut s = String::with_capacity(2048);
    let _ = write!(
        s,
        "# HELP substrate_block_height Block height info of the chain\n\
         # TYPE substrate_block_height gauge\n\
         substrate_block_height{{status=\"best\",chain=\"{c}\"}} {best}\n\
         substrate_block_height{{status=\"finalized\",chain=\"{c}\"}} {fin}\n\
         substrate_block_height{{status=\"sync_target\",chain=\"{c}\"}} {target}\n\
         # HELP substrate_build_info A metric with a constant '1' value labeled by name, version\n\
         # TYPE substrate_build_info gauge\n\
         substrate_build_info{{name=\"{name}\",version=\"{VERSION}\",chain=\"{c}\"}} 1\n\
         # HELP substrate_finality_grandpa_round Highest completed GRANDPA round.\n\
         # TYPE substrate_finality_grandpa_round gauge\n\
         substrate_finality_grandpa_round{{chain=\"{c}\"}} {round}\n\
         # HELP substrate_node_roles The roles the node is running as\n\
         # TYPE substrate_node_roles gauge\n\
         substrate_node_roles{{chain=\"{c}\"}} 4\n\
         # HELP substrate_process_start_time_seconds Number of seconds between the UNIX epoch and the moment the process started\n\
         # TYPE substrate_process_start_time_seconds gauge\n\
         substrate_process_start_time_seconds{{chain=\"{c}\"}} {started}\n\
         # HELP substrate_proposer_block_constructed Histogram of time taken to construct new block\n\
         # TYPE substrate_proposer_block_constructed histogram\n\
         {constructed}\
         # HELP substrate_ready_transactions_number Number of transactions in the ready queue\n\
         # TYPE substrate_ready_transactions_number gauge\n\
         substrate_ready_transactions_number{{chain=\"{c}\"}} 0\n\
         # HELP substrate_sub_libp2p_is_major_syncing Whether the node is performing a major sync or not.\n\
         # TYPE substrate_sub_libp2p_is_major_syncing gauge\n\
         substrate_sub_libp2p_is_major_syncing{{chain=\"{c}\"}} {syncing}\n\
         # HELP substrate_sub_libp2p_peers_count Number of connected peers\n\
         # TYPE substrate_sub_libp2p_peers_count gauge\n\
         substrate_sub_libp2p_peers_count{{chain=\"{c}\"}} {peers}\n\
         # HELP substrate_sync_peers Number of peers we sync with\n\
         # TYPE substrate_sync_peers gauge\n\
         substrate_sync_peers{{chain=\"{c}\"}} {peers}\n",
        best = f.best,
        fin = f.finalized,
        target = f.target,
        name = v.node.name,
        syncing = u8::from(f.syncing),
        peers = f.peers,
        constructed = constructed(c, authored),
    );
    s
}

/// The samples of the `substrate_proposer_block_constructed` histogram after `authored`
/// blocks, each built in [`CONSTRUCT_SECONDS`].
fn constructed(c: &str, authored: u64) -> String {
    let mut s = String::with_capacity(1024);
    for le in CONSTRUCT_BUCKETS {
        let n = if le.parse::<f64>().unwrap_or(0.0) >= CONSTRUCT_SECONDS {
            authored
        } else {
            0
        };
        let _ = writeln!(
            s,
            "substrate_proposer_block_constructed_bucket{{chain=\"{c}\",le=\"{le}\"}} {n}"
        );
    }
    let _ = write!(
        s,
        "substrate_proposer_block_constructed_bucket{{chain=\"{c}\",le=\"+Inf\"}} {authored}\n\
         substrate_proposer_block_constructed_sum{{chain=\"{c}\"}} {sum:.3}\n\
         substrate_proposer_block_constructed_count{{chain=\"{c}\"}} {authored}\n",
        sum = authored as f64 * CONSTRUCT_SECONDS,
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
            SimChain::Substrate,
            3,
            Duration::from_secs(6),
            25,
            60_000_000_000,
            state,
            f,
        )
    }

    fn rpc(v: &View<'_>, body: &str) -> Value {
        jsonrpc::respond(body.as_bytes(), &mut |m, p| call(v, m, p)).unwrap()
    }

    #[test]
    fn header_of_the_finalized_head() {
        with_view(&NodeState::new(), |v| {
            let fin = rpc(
                v,
                r#"{"jsonrpc":"2.0","id":1,"method":"chain_getFinalizedHead"}"#,
            );
            let h = fin["result"].as_str().unwrap();
            assert_eq!(h.len(), 66);
            let req = json!({"jsonrpc":"2.0","id":2,"method":"chain_getHeader","params":[h]});
            let header = rpc(v, &req.to_string());
            assert_eq!(
                header["result"]["number"],
                json!(ids::quantity(v.facts.finalized))
            );
            assert_eq!(header["result"]["digest"], json!({"logs": []}));
            assert_eq!(
                header["result"]["parentHash"],
                json!(hash(v.facts.finalized - 1))
            );
            // No parameter: the best header. Unknown hash: null.
            let best = rpc(v, r#"{"jsonrpc":"2.0","id":3,"method":"chain_getHeader"}"#);
            assert_eq!(best["result"]["number"], json!(ids::quantity(v.facts.best)));
            let unknown = json!({"jsonrpc":"2.0","id":4,"method":"chain_getHeader","params":[format!("0x{}", "ab".repeat(32))]});
            assert_eq!(rpc(v, &unknown.to_string())["result"], Value::Null);
            let future = json!({"jsonrpc":"2.0","id":5,"method":"chain_getHeader","params":[hash(v.facts.best + 1)]});
            assert_eq!(rpc(v, &future.to_string())["result"], Value::Null);
            let bad = r#"{"jsonrpc":"2.0","id":6,"method":"chain_getHeader","params":[5]}"#;
            assert_eq!(rpc(v, bad)["error"]["code"], -32602);
        });
    }

    #[test]
    fn batch_of_the_probe() {
        let mut state = NodeState::new();
        let p = Params::new(SimChain::Substrate, Duration::from_secs(6), 25, 3);
        state.apply(Fault::Syncing, FaultOptions::default(), &p, 30_000_000_000);
        with_view(&state, |v| {
            let reply = rpc(
                v,
                r#"[{"jsonrpc":"2.0","id":1,"method":"system_health","params":[]},
                    {"jsonrpc":"2.0","id":2,"method":"system_syncState","params":[]},
                    {"jsonrpc":"2.0","id":3,"method":"chain_getBlockHash","params":[[1,2]]},
                    {"jsonrpc":"2.0","id":4,"method":"system_nodeRoles","params":[]},
                    {"jsonrpc":"2.0","id":5,"method":"system_localPeerId","params":[]},
                    {"jsonrpc":"2.0","id":6,"method":"author_rotateKeys","params":[]}]"#,
            );
            let r = reply.as_array().unwrap();
            assert_eq!(r.len(), 6);
            assert_eq!(
                r[0]["result"],
                json!({"peers":25,"isSyncing":true,"shouldHavePeers":true})
            );
            let sync = &r[1]["result"];
            assert!(sync["highestBlock"].as_u64() > sync["currentBlock"].as_u64());
            assert!(sync["startingBlock"].is_u64());
            assert_eq!(r[2]["result"], json!([hash(1), hash(2)]));
            assert_eq!(r[3]["result"], json!(["Authority"]));
            assert!(r[4]["result"].as_str().unwrap().starts_with("12D3KooW"));
            assert_eq!(
                r[5]["error"],
                json!({"code":-32601,"message":"Method not found"})
            );
            assert!(!ready(v));
        });
    }

    #[test]
    fn metrics_look_like_a_real_node() {
        with_view(&NodeState::new(), |v| {
            let text = metrics(v, 7);
            let best = format!(
                "substrate_block_height{{status=\"best\",chain=\"simnet\"}} {}\n",
                v.facts.best
            );
            assert!(text.contains(&best), "{text}");
            assert!(text.contains("substrate_node_roles{chain=\"simnet\"} 4\n"));
            assert!(
                text.contains("substrate_proposer_block_constructed_count{chain=\"simnet\"} 7\n")
            );
            assert!(text.contains(
                "substrate_proposer_block_constructed_bucket{chain=\"simnet\",le=\"0.05\"} 0\n"
            ));
            assert!(text.contains(
                "substrate_proposer_block_constructed_bucket{chain=\"simnet\",le=\"0.1\"} 7\n"
            ));
            assert!(
                text.contains("substrate_proposer_block_constructed_sum{chain=\"simnet\"} 0.560\n")
            );
            assert!(text.contains("substrate_sub_libp2p_is_major_syncing{chain=\"simnet\"} 0\n"));
            assert!(text.contains(
                "substrate_build_info{name=\"sim-3\",version=\"1.16.0-sim\",chain=\"simnet\"} 1\n"
            ));
            assert!(
                text.contains(
                    "substrate_process_start_time_seconds{chain=\"simnet\"} 1700000000\n"
                )
            );
            // Every family has HELP and TYPE lines before its samples.
            let families = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
            assert_eq!(
                families,
                text.lines().filter(|l| l.starts_with("# HELP ")).count()
            );
            assert_eq!(families, 10);
            assert!(ready(v));
        });
    }
}
