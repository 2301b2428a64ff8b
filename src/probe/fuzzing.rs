//! The probe's decoders for the fuzz targets in `fuzz/` (docs/fuzzing.md), without the
//! network: a reply body goes through the same functions the probes call on it. Private to
//! the probe otherwise; not an API.

use serde_json::Value;

use super::prom::Sample;
use super::{Observation, ProbeError, ProbeKind, http, jsonrpc, metrics};

/// A single JSON-RPC reply body → its `result` (what `call_one` does with a body).
pub fn decode_single(body: &[u8]) -> Result<Value, ProbeError> {
    jsonrpc::decode_single(body)
}

/// A batch reply body for `n` calls → one entry per call, or `None` when the server
/// answered a single object (it refuses batches).
pub fn decode_batch(
    body: &[u8],
    n: usize,
) -> Result<Option<Vec<Result<Value, ProbeError>>>, ProbeError> {
    Ok(match jsonrpc::decode_batch(body, n)? {
        jsonrpc::BatchOutcome::Replies(r) => Some(r),
        jsonrpc::BatchOutcome::Refused => None,
    })
}

/// A `0x` hex quantity.
pub fn parse_hex(s: &str) -> Option<u64> {
    jsonrpc::parse_hex(s)
}

/// A count as a number, decimal string or hex string.
pub fn any_u64(v: &Value) -> Option<u64> {
    jsonrpc::any_u64(v)
}

/// A JSON body as the CometBFT probe reads one.
pub fn json_body(body: &[u8]) -> Result<Value, ProbeError> {
    http::json(body, "a reply")
}

/// The Substrate probe's facts from its six batched replies, and the finalized head hash.
pub fn substrate_facts(
    replies: Vec<Result<Value, ProbeError>>,
) -> Result<(Observation, Option<String>), ProbeError> {
    super::substrate::facts_from_replies(replies)
}

/// The Ethereum probe's facts from its six batched replies.
pub fn ethereum_facts(replies: Vec<Result<Value, ProbeError>>) -> Result<Observation, ProbeError> {
    super::ethereum::facts_from_replies(replies)
}

/// The CometBFT probe's facts from a `/status` document.
pub fn cosmos_status(doc: &Value) -> Result<Observation, ProbeError> {
    super::cosmos::facts_from_status(doc)
}

/// The CometBFT probe's peer count from a `/net_info` document.
pub fn cosmos_peers(doc: &Value) -> Result<u32, ProbeError> {
    super::cosmos::peers_from_net_info(doc)
}

/// The facts a metrics scrape of a `kind` node gives (before the "no block height" check).
pub fn metrics_facts(kind: ProbeKind, samples: &[Sample], prefix: Option<&str>) -> Observation {
    let family = match kind {
        ProbeKind::Ethereum => &metrics::ETHEREUM,
        ProbeKind::Cosmos => &metrics::COSMOS,
        _ => &metrics::SUBSTRATE,
    };
    metrics::facts(samples, family, prefix)
}
