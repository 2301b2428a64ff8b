//! Ethereum execution clients over JSON-RPC (`:8545`).

use serde_json::{Value, json};

use super::http::Ctx;
use super::jsonrpc::{self, Call};
use super::{Observation, ProbeError, Url};

fn calls() -> [Call; 6] {
    [
        Call::new("eth_blockNumber"),
        Call::new("eth_syncing"),
        Call::new("net_peerCount"),
        Call::new("web3_clientVersion"),
        Call::new("eth_chainId"),
        // The "finalized" tag exists on proof-of-stake chains only.
        Call::with("eth_getBlockByNumber", json!(["finalized", false])),
    ]
}

/// Facts from the replies of [`calls`]. Only a missing head block fails.
pub(crate) fn facts_from_replies(
    replies: Vec<Result<Value, ProbeError>>,
) -> Result<Observation, ProbeError> {
    let mut obs = Observation::default();
    let mut it = replies.into_iter();
    let mut next = || {
        it.next().unwrap_or_else(|| {
            Err(ProbeError::Malformed(
                "the batch reply has no entry for this call".into(),
            ))
        })
    };
    let (number, syncing, peers, client, chain_id, finalized) =
        (next(), next(), next(), next(), next(), next());

    let mut sync_current = None;
    match syncing {
        Ok(Value::Bool(false)) => obs.syncing = Some(false),
        Ok(Value::Object(o)) => {
            // geth, besu, nethermind, erigon: an object with hex quantities while syncing.
            obs.syncing = Some(true);
            obs.target_block = o.get("highestBlock").and_then(jsonrpc::hex_u64);
            sync_current = o.get("currentBlock").and_then(jsonrpc::hex_u64);
        }
        Ok(_) => obs.warn("eth_syncing: reply is neither false nor an object"),
        Err(e) => obs.warn(format!("eth_syncing: {e}")),
    }

    let head = match number {
        Ok(v) => jsonrpc::hex_u64(&v)
            .ok_or_else(|| super::http::not_a_height("the eth_blockNumber reply", Some(&v))),
        Err(e) => Err(e),
    };
    match (head, sync_current) {
        (Ok(n), _) => obs.best_block = Some(n),
        (Err(e), Some(n)) => {
            obs.best_block = Some(n);
            obs.warn(format!("eth_blockNumber: {e}"));
        }
        (Err(e), None) => return Err(e),
    }

    match peers {
        Ok(v) => match jsonrpc::hex_u64(&v) {
            Some(n) => obs.peers = Some(jsonrpc::to_u32(n)),
            None => obs.warn("net_peerCount: reply is not a hex quantity"),
        },
        Err(e) => obs.warn(format!("net_peerCount: {e}")),
    }

    // Optional: clients may disable the web3 namespace.
    match client {
        Ok(Value::String(s)) => obs.version = Some(jsonrpc::sanitize(&s)),
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "web3_clientVersion unavailable"),
    }
    match chain_id.map(|v| jsonrpc::hex_u64(&v)) {
        Ok(Some(id)) => obs.network = Some(id.to_string()),
        Ok(None) => obs.warn("eth_chainId: reply is not a hex quantity"),
        Err(e) => obs.warn(format!("eth_chainId: {e}")),
    }
    // Optional: chains without a finality gadget reject the tag; that is not a fault.
    match finalized {
        Ok(Value::Object(b)) => obs.finalized_block = b.get("number").and_then(jsonrpc::hex_u64),
        Ok(_) => {}
        Err(e @ ProbeError::Rpc { .. }) => {
            tracing::debug!(error = %e, "no finalized block tag on this chain");
        }
        Err(e) => obs.warn(format!("eth_getBlockByNumber(finalized): {e}")),
    }
    Ok(obs)
}

/// Probes the node's JSON-RPC endpoint with one batch.
pub(crate) async fn rpc(ctx: &Ctx<'_>, url: &Url) -> Result<Observation, ProbeError> {
    let replies = jsonrpc::call_batch(ctx, url, &calls()).await?;
    facts_from_replies(replies)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::test_support::fixture_reply as reply;

    #[test]
    fn syncing_geth_object() {
        let o = facts_from_replies(vec![
            Ok(json!("0x11df6b9")),
            reply("eth_syncing.json"),
            reply("eth_peercount.json"),
            Ok(json!("Geth/v1.13.5-stable/linux-amd64/go1.21.4")),
            Ok(json!("0x1")),
            Err(ProbeError::Rpc {
                code: -32000,
                message: "finalized block not found".into(),
            }),
        ])
        .unwrap();
        assert_eq!(o.best_block, Some(0x11df6b9));
        assert_eq!(o.target_block, Some(0x11df72e));
        assert_eq!(o.syncing, Some(true));
        assert_eq!(o.peers, Some(4));
        assert_eq!(o.network.as_deref(), Some("1"));
        assert_eq!(o.finalized_block, None);
        assert!(o.warnings.is_empty(), "{:?}", o.warnings);
    }

    #[test]
    fn synced_node_and_missing_block_number() {
        let o = facts_from_replies(vec![
            Ok(json!("0x3e0e41")),
            reply("eth_syncing_false.json"),
            reply("eth_peercount.json"),
            Err(ProbeError::Rpc {
                code: -32601,
                message: "the method web3_clientVersion does not exist/is not available".into(),
            }),
            Ok(json!("0x38")),
            Ok(json!({"number": "0x3e0e00", "hash": "0xab"})),
        ])
        .unwrap();
        assert_eq!(o.syncing, Some(false));
        assert_eq!(o.best_block, Some(0x3e0e41));
        assert_eq!(o.finalized_block, Some(0x3e0e00));
        assert_eq!(o.network.as_deref(), Some("56"));
        assert_eq!(o.target_block, None);
        assert!(o.warnings.is_empty());

        // eth_blockNumber refused, but eth_syncing has currentBlock.
        let o = facts_from_replies(vec![
            reply("substrate_rpc_error_method_not_found.json"),
            reply("eth_syncing_ethereum_org_geth_example.json"),
        ])
        .unwrap();
        assert_eq!(o.best_block, Some(0x3cf522));
        assert_eq!(o.target_block, Some(0x3e0e41));

        let e = facts_from_replies(vec![
            reply("substrate_rpc_error_method_not_found.json"),
            reply("eth_syncing_false.json"),
        ])
        .unwrap_err();
        assert_eq!(e.class(), "rpc");
    }
}
