//! CometBFT / Tendermint nodes over their HTTP RPC (`:26657`, `GET /status`,
//! `GET /net_info`).

use serde_json::Value;

use super::http::{self, Ctx};
use super::jsonrpc::{self, any_u64};
use super::{Observation, ProbeError, Url};

/// The `result` of a CometBFT reply. Accepts the JSON-RPC envelope (all released
/// versions) and a bare result object, and surfaces an `error` member.
fn result_of(doc: &Value) -> Result<&Value, ProbeError> {
    if doc.get("error").is_some_and(|e| !e.is_null()) {
        return jsonrpc::envelope(doc).map(|_| doc);
    }
    match doc.get("result") {
        Some(r) if r.is_object() => Ok(r),
        _ if doc.is_object() => Ok(doc),
        _ => Err(ProbeError::Malformed("reply is not a JSON object".into())),
    }
}

/// Facts from a `/status` document.
pub(crate) fn facts_from_status(doc: &Value) -> Result<Observation, ProbeError> {
    let r = result_of(doc)?;
    let height = r
        .pointer("/sync_info/latest_block_height")
        .and_then(any_u64)
        .ok_or_else(|| {
            http::not_a_height(
                "sync_info.latest_block_height of /status",
                r.pointer("/sync_info/latest_block_height"),
            )
        })?;
    let text = |ptr: &str| {
        r.pointer(ptr)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(jsonrpc::sanitize)
    };
    Ok(Observation {
        best_block: Some(height),
        // CometBFT has instant finality: a committed block is final.
        finalized_block: Some(height),
        syncing: r.pointer("/sync_info/catching_up").and_then(Value::as_bool),
        network: text("/node_info/network"),
        version: text("/node_info/version"),
        ..Observation::default()
    })
}

/// Peer count from a `/net_info` document (`n_peers` is a decimal string).
pub(crate) fn peers_from_net_info(doc: &Value) -> Result<u32, ProbeError> {
    result_of(doc)?
        .get("n_peers")
        .and_then(any_u64)
        .map(jsonrpc::to_u32)
        .ok_or_else(|| ProbeError::Malformed("/net_info has no n_peers".into()))
}

/// Fetches `/status` and `/net_info` concurrently. A failing `/net_info` is a warning.
pub(crate) async fn rpc(ctx: &Ctx<'_>, base: &Url) -> Result<Observation, ProbeError> {
    let status_url = http::join_path(base, "status");
    let net_url = http::join_path(base, "net_info");
    let (status, net) = tokio::join!(
        http::get_json(ctx, &status_url, "a CometBFT /status reply"),
        http::get_json(ctx, &net_url, "a CometBFT /net_info reply"),
    );
    let mut obs = facts_from_status(&status?)?;
    match net.and_then(|doc| peers_from_net_info(&doc)) {
        Ok(n) => obs.peers = Some(n),
        Err(e) => obs.warn(format!("net_info: {e}")),
    }
    Ok(obs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::test_support::fixture_json;
    use serde_json::json;

    #[test]
    fn status_fixtures() {
        let o = facts_from_status(&fixture_json("cometbft_status.json")).unwrap();
        assert_eq!(o.best_block, Some(232));
        assert_eq!(o.finalized_block, Some(232));
        assert_eq!(o.syncing, Some(false));
        assert_eq!(o.network.as_deref(), Some("dockerchain"));
        assert_eq!(o.version.as_deref(), Some("0.38.0-alpha.1"));

        let o = facts_from_status(&fixture_json("cometbft_status_kira_v0.34.json")).unwrap();
        assert_eq!(o.best_block, Some(2718));
        assert_eq!(o.network.as_deref(), Some("kira-1"));
        assert_eq!(o.version.as_deref(), Some("0.34.0"));

        // A bare result object (no envelope) works too.
        let bare = fixture_json("cometbft_status.json")["result"].clone();
        assert_eq!(facts_from_status(&bare).unwrap().best_block, Some(232));
    }

    #[test]
    fn net_info_fixtures() {
        assert_eq!(
            peers_from_net_info(&fixture_json("cometbft_net_info.json")).unwrap(),
            2
        );
        assert_eq!(
            peers_from_net_info(&fixture_json("cometbft_net_info_no_peers.json")).unwrap(),
            0
        );
    }

    #[test]
    fn errors_and_odd_shapes() {
        let e = facts_from_status(&json!({"jsonrpc":"2.0","id":-1,"error":{"code":-32603,"message":"Internal error","data":"x"}}))
            .unwrap_err();
        assert_eq!(
            e,
            ProbeError::Rpc {
                code: -32603,
                message: "Internal error".into()
            }
        );
        assert_eq!(
            facts_from_status(&json!([1])).unwrap_err().class(),
            "malformed"
        );
        assert_eq!(
            facts_from_status(&json!({"result": {}}))
                .unwrap_err()
                .class(),
            "malformed"
        );
        assert_eq!(
            facts_from_status(&fixture_json("eth_syncing.json"))
                .unwrap_err()
                .class(),
            "malformed"
        );
        assert!(peers_from_net_info(&json!({"result": {"n_peers": "x"}})).is_err());
    }
}
