//! Substrate / Polkadot SDK nodes over JSON-RPC (HTTP POST on `:9944`).

use serde_json::{Value, json};

use super::http::Ctx;
use super::jsonrpc::{self, Call};
use super::{Observation, ProbeError, Url};

/// The batched calls, in this order.
fn calls() -> [Call; 6] {
    [
        Call::new("system_health"),
        Call::new("system_syncState"),
        Call::new("chain_getHeader"), // no params: the best header
        Call::new("chain_getFinalizedHead"),
        Call::new("system_version"),
        Call::new("system_chain"),
    ]
}

/// Facts from the replies of [`calls`]: everything except the finalized number, which
/// needs a second round trip. Returns the finalized head hash alongside.
///
/// Only a missing best block fails; every other missing fact becomes a warning.
pub(crate) fn facts_from_replies(
    replies: Vec<Result<Value, ProbeError>>,
) -> Result<(Observation, Option<String>), ProbeError> {
    let mut obs = Observation::default();
    let names = calls().map(|c| c.method);
    let mut it = replies.into_iter();
    let mut next = || {
        it.next().unwrap_or_else(|| {
            Err(ProbeError::Malformed(
                "the batch reply has no entry for this call".into(),
            ))
        })
    };
    let (health, sync, header, fin_head, version, chain) =
        (next(), next(), next(), next(), next(), next());

    match health {
        Ok(v) => {
            obs.peers = v
                .get("peers")
                .and_then(jsonrpc::any_u64)
                .map(jsonrpc::to_u32);
            obs.syncing = v.get("isSyncing").and_then(Value::as_bool);
            if obs.peers.is_none() && obs.syncing.is_none() {
                obs.warn(format!("{}: reply has no peers/isSyncing", names[0]));
            }
        }
        Err(e) => obs.warn(format!("{}: {e}", names[0])),
    }

    let mut sync_current = None;
    match sync {
        Ok(v) => {
            obs.target_block = v.get("highestBlock").and_then(jsonrpc::any_u64);
            sync_current = v.get("currentBlock").and_then(jsonrpc::any_u64);
        }
        Err(e) => obs.warn(format!("{}: {e}", names[1])),
    }

    let header_err = match header {
        Ok(v) => match v.get("number").and_then(jsonrpc::hex_u64) {
            Some(n) => {
                obs.best_block = Some(n);
                None
            }
            None => Some(super::http::not_a_height(
                "the block `number` of the chain_getHeader reply",
                v.get("number"),
            )),
        },
        Err(e) => Some(e),
    };
    if let Some(e) = header_err {
        match sync_current {
            // syncState's currentBlock is the best block too: a node that hides
            // chain_getHeader still tells us its height.
            Some(n) => {
                obs.best_block = Some(n);
                obs.warn(format!("{}: {e}", names[2]));
            }
            None => return Err(e),
        }
    }

    let fin_hash = match fin_head {
        Ok(Value::String(h)) if h.starts_with("0x") => Some(h),
        Ok(_) => {
            obs.warn(format!("{}: reply is not a block hash", names[3]));
            None
        }
        Err(e) => {
            obs.warn(format!("{}: {e}", names[3]));
            None
        }
    };

    match version {
        Ok(Value::String(v)) => obs.version = Some(jsonrpc::sanitize(&v)),
        Ok(_) => obs.warn(format!("{}: reply is not a string", names[4])),
        Err(e) => obs.warn(format!("{}: {e}", names[4])),
    }
    match chain {
        Ok(Value::String(c)) => obs.network = Some(jsonrpc::sanitize(&c)),
        Ok(_) => obs.warn(format!("{}: reply is not a string", names[5])),
        Err(e) => obs.warn(format!("{}: {e}", names[5])),
    }
    Ok((obs, fin_hash))
}

/// Probes the node's JSON-RPC endpoint.
pub(crate) async fn rpc(ctx: &Ctx<'_>, url: &Url) -> Result<Observation, ProbeError> {
    let replies = jsonrpc::call_batch(ctx, url, &calls()).await?;
    let (mut obs, fin_hash) = facts_from_replies(replies)?;
    if let Some(hash) = fin_hash {
        let call = Call::with("chain_getHeader", json!([hash]));
        match jsonrpc::call_one(ctx, url, &call).await {
            Ok(v) => match v.get("number").and_then(jsonrpc::hex_u64) {
                Some(n) => obs.finalized_block = Some(n),
                None => obs.warn(format!(
                    "chain_getHeader(finalized): {}",
                    super::http::not_a_height("the block `number`", v.get("number"))
                )),
            },
            Err(e) => obs.warn(format!("chain_getHeader(finalized): {e}")),
        }
    }
    Ok(obs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::test_support::fixture_reply as reply;

    #[test]
    fn full_set_of_fixtures() {
        let (o, fin) = facts_from_replies(vec![
            reply("substrate_rpc_system_health_syncing.json"),
            reply("substrate_rpc_system_syncState.json"),
            reply("substrate_rpc_chain_getHeader.json"),
            reply("substrate_rpc_chain_getFinalizedHead.json"),
            reply("substrate_rpc_system_version.json"),
            reply("substrate_rpc_system_chain.json"),
        ])
        .unwrap();
        assert_eq!(o.peers, Some(41));
        assert_eq!(o.syncing, Some(true));
        assert_eq!(o.target_block, Some(10_525_440));
        assert_eq!(o.best_block, Some(0x93c0));
        assert_eq!(o.version.as_deref(), Some("0.9.42-9b1fc27cec4"));
        assert_eq!(o.network.as_deref(), Some("Polkadot"));
        assert_eq!(
            fin.as_deref(),
            Some("0x32dc93cb9c89a0fe0a4486cd9c05ebdeee4d8d9324c7612cc120b4728f6c3bb6")
        );
        assert!(o.warnings.is_empty(), "{:?}", o.warnings);
    }

    #[test]
    fn unsafe_and_missing_methods_become_warnings() {
        let (o, fin) = facts_from_replies(vec![
            reply("substrate_rpc_system_health_getblock.json"),
            reply("substrate_rpc_error_method_not_found.json"),
            reply("substrate_rpc_chain_getHeader_getblock.json"),
            reply("substrate_rpc_error_provider_405_getblock.json"),
            reply("substrate_rpc_error_unsafe.json"),
            reply("substrate_rpc_system_chain.json"),
        ])
        .unwrap();
        assert_eq!(o.peers, Some(21));
        assert_eq!(o.best_block, Some(6_754_362));
        assert_eq!(o.target_block, None);
        assert_eq!(fin, None);
        assert_eq!(o.version, None);
        assert_eq!(o.warnings.len(), 3, "{:?}", o.warnings);
        assert!(o.warnings[0].starts_with("system_syncState: "));
        assert!(o.warnings[1].contains("405"));
        assert!(o.warnings[2].contains("unsafe"));
    }

    #[test]
    fn sync_state_stands_in_for_a_hidden_header() {
        let (o, _) = facts_from_replies(vec![
            reply("substrate_rpc_system_health.json"),
            reply("substrate_rpc_system_syncState_getblock_synced.json"),
            reply("substrate_rpc_error_unsafe_legacy.json"),
            reply("substrate_rpc_chain_getFinalizedHead.json"),
            reply("substrate_rpc_system_version.json"),
            reply("substrate_rpc_system_chain.json"),
        ])
        .unwrap();
        assert_eq!(o.best_block, Some(16_049_622));
        assert_eq!(o.target_block, Some(16_049_622));
        assert_eq!(o.warnings.len(), 1);
    }

    #[test]
    fn no_best_block_is_an_error() {
        let e = facts_from_replies(vec![
            reply("substrate_rpc_system_health.json"),
            reply("substrate_rpc_error_method_not_found.json"),
            reply("substrate_rpc_error_unsafe.json"),
        ])
        .unwrap_err();
        assert_eq!(
            e,
            ProbeError::Rpc {
                code: -32601,
                message: "RPC call is unsafe to be called externally".into()
            }
        );
        // Wrongly shaped replies never panic.
        let e = facts_from_replies(vec![Ok(json!(1)); 6]).unwrap_err();
        assert_eq!(e.class(), "malformed");
        assert!(facts_from_replies(vec![]).is_err());
    }
}
