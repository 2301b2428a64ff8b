//! An Ethereum execution client (geth-like): JSON-RPC on `:8545` and the EIP-2159
//! Prometheus names on `:6060/debug/metrics/prometheus`.

use std::fmt::Write;

use serde_json::{Value, json};

use super::ids::{self, quantity};
use super::jsonrpc::{self, RpcError};
use super::view::View;

/// Chain id of the simulated network (a private-network id, like geth's dev mode).
pub const CHAIN_ID: u64 = 1337;
/// `web3_clientVersion`.
pub const CLIENT_VERSION: &str = "Geth/v1.14.12-stable-sim/linux-amd64/go1.23.4";
/// Salt of this chain's block hashes.
const SALT: u64 = 0xe7e7_0000_0000_0002;

fn hash(height: u64) -> String {
    ids::hex0x(&ids::block_hash(SALT, height))
}

/// A block object without transaction bodies, or `null` beyond the node's head.
fn block(v: &View<'_>, n: u64) -> Value {
    if n > v.facts.best {
        return Value::Null;
    }
    let at = if n == v.facts.best {
        v.facts.best_at
    } else {
        // Older blocks came one block time apart.
        let back = i128::from(v.facts.best - n) * i128::try_from(v.params.block).unwrap_or(0);
        v.facts.best_at - back
    };
    let timestamp = u64::try_from(v.wall(at).as_second()).unwrap_or(0);
    json!({
        "number": quantity(n),
        "hash": hash(n),
        "parentHash": if n == 0 { ids::hex0x(&[0; 32]) } else { hash(n - 1) },
        "timestamp": quantity(timestamp),
        "miner": ids::hex0x(&ids::bytes(v.seed(), 20)),
        "stateRoot": ids::hex0x(&ids::digest(SALT, n, 1)),
        "transactionsRoot": ids::hex0x(&ids::digest(SALT, n, 2)),
        "receiptsRoot": ids::hex0x(&ids::digest(SALT, n, 3)),
        "gasLimit": quantity(30_000_000),
        "gasUsed": "0x0",
        "baseFeePerGas": "0x7",
        "difficulty": "0x0",
        "extraData": "0x",
        "size": "0x21d",
        "transactions": [],
        "uncles": [],
    })
}

fn block_by_number(v: &View<'_>, params: &Value) -> Result<Value, RpcError> {
    let Some(tag) = jsonrpc::param(params, 0) else {
        return Err(RpcError::invalid_params(
            "missing value for required argument 0",
        ));
    };
    match tag.as_str() {
        Some("latest" | "pending") => Ok(block(v, v.facts.best)),
        Some("earliest") => Ok(block(v, 0)),
        // What geth says on a chain without a finality gadget.
        Some(t @ ("finalized" | "safe")) => {
            Err(RpcError::new(-32000, format!("{t} block not found")))
        }
        _ => Ok(block(v, jsonrpc::block_number(tag)?)),
    }
}

/// Runs one JSON-RPC method.
pub fn call(v: &View<'_>, method: &str, params: &Value) -> Result<Value, RpcError> {
    let f = &v.facts;
    Ok(match method {
        "eth_blockNumber" => json!(quantity(f.best)),
        "eth_syncing" if f.syncing => json!({
            "startingBlock": quantity(f.starting.min(f.best)),
            "currentBlock": quantity(f.best),
            "highestBlock": quantity(f.target),
        }),
        "eth_syncing" => json!(false),
        "net_peerCount" => json!(quantity(u64::from(f.peers))),
        "net_listening" => json!(true),
        "net_version" => json!(CHAIN_ID.to_string()),
        "eth_chainId" => json!(quantity(CHAIN_ID)),
        "web3_clientVersion" => json!(CLIENT_VERSION),
        "eth_getBlockByNumber" => block_by_number(v, params)?,
        "eth_getBlockByHash" => match jsonrpc::param(params, 0).and_then(Value::as_str) {
            Some(h) => ids::parse_hash(h)
                .and_then(|b| ids::height_of(SALT, &b))
                .map_or(Value::Null, |n| block(v, n)),
            None => {
                return Err(RpcError::invalid_params(
                    "missing value for required argument 0",
                ));
            }
        },
        _ => {
            return Err(RpcError::new(
                -32601,
                format!("the method {method} does not exist/is not available"),
            ));
        }
    })
}

/// The Prometheus exposition of `:6060/debug/metrics/prometheus` (EIP-2159 names).
pub fn metrics(v: &View<'_>) -> String {
    let f = &v.facts;
    let mut s = String::with_capacity(512);
    let _ = write!(
        s,
        "# HELP ethereum_best_known_block_number The estimated highest block available\n\
         # TYPE ethereum_best_known_block_number gauge\n\
         ethereum_best_known_block_number {target}\n\
         # HELP ethereum_blockchain_height The current height of the canonical chain\n\
         # TYPE ethereum_blockchain_height gauge\n\
         ethereum_blockchain_height {best}\n\
         # HELP ethereum_peer_count The current number of peers connected\n\
         # TYPE ethereum_peer_count gauge\n\
         ethereum_peer_count {peers}\n",
        target = f.target,
        best = f.best,
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
            SimChain::Ethereum,
            0,
            Duration::from_secs(12),
            9,
            120_000_000_000,
            state,
            f,
        )
    }

    fn rpc(v: &View<'_>, body: &str) -> Value {
        jsonrpc::respond(body.as_bytes(), &mut |m, p| call(v, m, p)).unwrap()
    }

    #[test]
    fn probe_batch() {
        with_view(&NodeState::new(), |v| {
            let r = rpc(
                v,
                r#"[{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]},
                    {"jsonrpc":"2.0","id":2,"method":"eth_syncing","params":[]},
                    {"jsonrpc":"2.0","id":3,"method":"net_peerCount","params":[]},
                    {"jsonrpc":"2.0","id":4,"method":"eth_chainId","params":[]},
                    {"jsonrpc":"2.0","id":5,"method":"eth_getBlockByNumber","params":["finalized",false]},
                    {"jsonrpc":"2.0","id":6,"method":"eth_getBlockByNumber","params":["latest",false]},
                    {"jsonrpc":"2.0","id":7,"method":"debug_traceBlock","params":[]}]"#,
            );
            let r = r.as_array().unwrap();
            assert_eq!(r[0]["result"], json!(quantity(v.facts.best)));
            assert_eq!(r[1]["result"], json!(false));
            assert_eq!(r[2]["result"], json!("0x9"));
            assert_eq!(r[3]["result"], json!("0x539"));
            assert_eq!(r[4]["error"]["code"], -32000);
            assert_eq!(r[5]["result"]["number"], json!(quantity(v.facts.best)));
            assert_eq!(r[5]["result"]["parentHash"], json!(hash(v.facts.best - 1)));
            assert_eq!(r[6]["error"]["code"], -32601);
            let by_hash = json!({"jsonrpc":"2.0","id":8,"method":"eth_getBlockByHash","params":[hash(5), false]});
            assert_eq!(rpc(v, &by_hash.to_string())["result"]["number"], "0x5");
        });
    }

    #[test]
    fn syncing_object_has_hex_quantities() {
        let mut state = NodeState::new();
        let p = Params::new(SimChain::Ethereum, Duration::from_secs(12), 9, 0);
        state.apply(Fault::Syncing, FaultOptions::default(), &p, 60_000_000_000);
        state.apply(
            Fault::DropPeers,
            FaultOptions::default(),
            &p,
            60_000_000_000,
        );
        with_view(&state, |v| {
            let r = rpc(v, r#"{"jsonrpc":"2.0","id":1,"method":"eth_syncing"}"#);
            let s = &r["result"];
            let hex = |k: &str| u64::from_str_radix(&s[k].as_str().unwrap()[2..], 16).unwrap();
            assert!(hex("highestBlock") > hex("currentBlock"));
            assert!(hex("startingBlock") <= hex("currentBlock"));
            let m = metrics(v);
            assert!(m.contains("ethereum_peer_count 0\n"), "{m}");
            assert!(m.contains(&format!("ethereum_blockchain_height {}\n", v.facts.best)));
        });
    }
}
