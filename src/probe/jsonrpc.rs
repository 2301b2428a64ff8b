//! JSON-RPC 2.0 over HTTP POST: batched calls with a fallback to single calls, and
//! tolerant decoding of the envelopes real nodes and gateways send (number or string
//! ids, any key order, provider-specific error objects).

use futures::future::join_all;
use reqwest::Url;
use serde_json::{Value, json};

use super::ProbeError;
use super::http::{self, Ctx};

/// One method call.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub method: &'static str,
    pub params: Value,
}

impl Call {
    /// A call without parameters.
    pub fn new(method: &'static str) -> Self {
        Call {
            method,
            params: json!([]),
        }
    }

    /// A call with positional parameters.
    pub fn with(method: &'static str, params: Value) -> Self {
        Call { method, params }
    }

    fn request(&self, id: u64) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "method": self.method, "params": self.params})
    }
}

/// HTTP statuses with which servers and proxies turn down a batch (a JSON array) while
/// still serving single calls.
const BATCH_REFUSAL_STATUSES: &[u16] = &[400, 405, 413, 415, 422, 501];

/// What a batch POST produced.
#[derive(Debug)]
pub(crate) enum BatchOutcome {
    /// One entry per call, in call order.
    Replies(Vec<Result<Value, ProbeError>>),
    /// The server answered with a single object instead of an array: it does not take
    /// batches (or a gateway rewrote the request).
    Refused,
}

/// Makes all `calls`, batched in one POST when the server allows it. The outer error is
/// a failure of the whole exchange; inner errors belong to single methods.
pub(crate) async fn call_batch(
    ctx: &Ctx<'_>,
    url: &Url,
    calls: &[Call],
) -> Result<Vec<Result<Value, ProbeError>>, ProbeError> {
    let body = Value::Array(
        calls
            .iter()
            .zip(1u64..)
            .map(|(c, id)| c.request(id))
            .collect(),
    );
    let req = ctx.client.post(url.clone()).json(&body);
    let (status, bytes) = http::fetch(ctx, req, url).await?;
    if (200..300).contains(&status) {
        ctx.reserve_json(&bytes).await?;
        if let BatchOutcome::Replies(replies) = decode_batch(&bytes, calls.len())? {
            return Ok(replies);
        }
    } else if !BATCH_REFUSAL_STATUSES.contains(&status) {
        return Err(ProbeError::Status(status));
    }
    tracing::debug!(
        target = %http::redact(url),
        status,
        "JSON-RPC batch refused, falling back to single calls"
    );
    Ok(join_all(calls.iter().map(|c| call_one(ctx, url, c))).await)
}

/// Makes one call and returns its `result`.
pub(crate) async fn call_one(ctx: &Ctx<'_>, url: &Url, call: &Call) -> Result<Value, ProbeError> {
    let req = ctx.client.post(url.clone()).json(&call.request(1));
    let (status, bytes) = http::fetch(ctx, req, url).await?;
    // A body too deep or too large is refused by the decoder below as well.
    let reserved = ctx.reserve_json(&bytes).await;
    if !(200..300).contains(&status) {
        // Some gateways send a proper JSON-RPC error with a 4xx/5xx: it says more.
        return match decode_single(&bytes) {
            Err(e @ ProbeError::Rpc { .. }) => Err(e),
            _ => Err(ProbeError::Status(status)),
        };
    }
    reserved?;
    decode_single(&bytes)
}

/// Decodes a single reply body into its `result`.
pub(crate) fn decode_single(body: &[u8]) -> Result<Value, ProbeError> {
    let v = http::json(body, "a JSON-RPC reply")?;
    envelope(&v)
}

/// Decodes a batch reply body for `n` calls with ids `1..=n`.
pub(crate) fn decode_batch(body: &[u8], n: usize) -> Result<BatchOutcome, ProbeError> {
    let v = http::json(body, "a JSON-RPC batch reply")?;
    let items = match v {
        Value::Array(items) => items,
        Value::Object(_) => return Ok(BatchOutcome::Refused),
        _ => {
            return Err(ProbeError::Malformed(
                "JSON-RPC batch reply is neither an array nor an object".into(),
            ));
        }
    };
    let mut slots: Vec<Option<Result<Value, ProbeError>>> = (0..n).map(|_| None).collect();
    let mut unmatched = Vec::new();
    for item in &items {
        match item.get("id").and_then(id_index).filter(|i| *i < n) {
            Some(i) if slots[i].is_none() => slots[i] = Some(envelope(item)),
            _ => unmatched.push(item),
        }
    }
    // Gateways that rewrite ids (e.g. to a constant string) still keep the order.
    if unmatched.len() == items.len() && items.len() == n {
        for (slot, item) in slots.iter_mut().zip(unmatched) {
            *slot = Some(envelope(item));
        }
    }
    Ok(BatchOutcome::Replies(
        slots
            .into_iter()
            .map(|s| {
                s.unwrap_or_else(|| {
                    Err(ProbeError::Malformed(
                        "the batch reply has no entry for this call".into(),
                    ))
                })
            })
            .collect(),
    ))
}

/// Maps a reply id back to the call index (ids are `1..=n`, as numbers or strings).
fn id_index(id: &Value) -> Option<usize> {
    let n = match id {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) => s.parse::<u64>().ok()?,
        _ => return None,
    };
    usize::try_from(n.checked_sub(1)?).ok()
}

/// One reply object → its `result`, or the error it carries.
pub(crate) fn envelope(v: &Value) -> Result<Value, ProbeError> {
    let Some(obj) = v.as_object() else {
        return Err(ProbeError::Malformed(
            "JSON-RPC reply is not an object".into(),
        ));
    };
    if let Some(err) = obj.get("error").filter(|e| !e.is_null()) {
        return Err(match err {
            Value::Object(e) => ProbeError::Rpc {
                code: e.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: sanitize(e.get("message").and_then(Value::as_str).unwrap_or("")),
            },
            Value::String(s) => ProbeError::Rpc {
                code: 0,
                message: sanitize(s),
            },
            _ => ProbeError::Rpc {
                code: 0,
                message: "(error without a message)".into(),
            },
        });
    }
    // Gateways answer refused methods with their own envelope, e.g.
    // {"result":"null","status_code":405,"message":"Method not allowed"}.
    if let Some(code) = obj.get("status_code").and_then(Value::as_i64)
        && !(200..300).contains(&code)
    {
        return Err(ProbeError::Rpc {
            code,
            message: sanitize(obj.get("message").and_then(Value::as_str).unwrap_or("")),
        });
    }
    match obj.get("result") {
        Some(r) => Ok(r.clone()),
        None => Err(ProbeError::Malformed(
            "JSON-RPC reply has neither `result` nor `error`".into(),
        )),
    }
}

/// Node-supplied text goes into statuses and events: keep it short and on one line.
pub(crate) fn sanitize(s: &str) -> String {
    crate::text::printable(s, 200)
}

/// A JSON-RPC quantity: `"0x…"` hex string (also accepts a plain JSON number, which
/// some forks return).
pub(crate) fn hex_u64(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => parse_hex(s),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// Parses `0x`-prefixed hex without overflow.
pub(crate) fn parse_hex(s: &str) -> Option<u64> {
    let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    // from_str_radix takes a leading sign; a node's hex never has one.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// A count that may be a JSON number, a decimal string (CometBFT) or a hex string.
pub(crate) fn any_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if s.starts_with("0x") || s.starts_with("0X") => parse_hex(s),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    }
}

/// Peer counts are `u32` in observations; absurd values saturate instead of wrapping.
pub(crate) fn to_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::test_support::{arb_json, fixture_bytes, fixture_json};
    use proptest::prelude::*;

    #[test]
    fn substrate_success_fixtures() {
        let h = decode_single(&fixture_bytes("substrate_rpc_system_health.json")).unwrap();
        assert_eq!(h["peers"], 50);
        assert_eq!(h["isSyncing"], false);
        let h = decode_single(&fixture_bytes("substrate_rpc_system_health_getblock.json")).unwrap();
        assert_eq!(h["peers"], 21);
        let h = decode_single(&fixture_bytes("substrate_rpc_system_health_syncing.json")).unwrap();
        assert_eq!(h["isSyncing"], true);
        let hdr = decode_single(&fixture_bytes("substrate_rpc_chain_getHeader.json")).unwrap();
        assert_eq!(hex_u64(&hdr["number"]), Some(0x93c0));
        let hdr = decode_single(&fixture_bytes(
            "substrate_rpc_chain_getHeader_getblock.json",
        ))
        .unwrap();
        assert_eq!(hex_u64(&hdr["number"]), Some(6_754_362));
        let v = decode_single(&fixture_bytes("substrate_rpc_system_version.json")).unwrap();
        assert_eq!(v, "0.9.42-9b1fc27cec4");
        let roles = decode_single(&fixture_bytes("substrate_rpc_system_nodeRoles.json")).unwrap();
        assert_eq!(roles, json!(["Full"]));
    }

    #[test]
    fn error_fixtures() {
        for f in [
            "substrate_rpc_error_unsafe.json",
            "substrate_rpc_error_unsafe_legacy.json",
        ] {
            let e = decode_single(&fixture_bytes(f)).unwrap_err();
            assert_eq!(
                e,
                ProbeError::Rpc {
                    code: -32601,
                    message: "RPC call is unsafe to be called externally".into()
                }
            );
            assert_eq!(e.class(), "rpc");
        }
        let e =
            decode_single(&fixture_bytes("substrate_rpc_error_method_not_found.json")).unwrap_err();
        assert_eq!(
            e,
            ProbeError::Rpc {
                code: -32601,
                message: "Method not found".into()
            }
        );
        let e = decode_single(&fixture_bytes(
            "substrate_rpc_error_provider_405_getblock.json",
        ))
        .unwrap_err();
        assert_eq!(
            e,
            ProbeError::Rpc {
                code: 405,
                message: "Method not allowed".into()
            }
        );
    }

    #[test]
    fn eth_fixtures() {
        let p = decode_single(&fixture_bytes("eth_peercount.json")).unwrap();
        assert_eq!(hex_u64(&p), Some(4));
        let s = decode_single(&fixture_bytes("eth_syncing.json")).unwrap();
        assert_eq!(hex_u64(&s["currentBlock"]), Some(0x11df6b9));
        assert_eq!(hex_u64(&s["highestBlock"]), Some(18_741_038));
        let f = decode_single(&fixture_bytes("eth_syncing_false.json")).unwrap();
        assert_eq!(f, false);
    }

    #[test]
    fn batch_matching_by_id_any_order_and_string_ids() {
        let health = fixture_json("substrate_rpc_system_health.json");
        let mut version = fixture_json("substrate_rpc_system_version.json");
        version["id"] = json!("2");
        let mut unsafe_err = fixture_json("substrate_rpc_error_unsafe.json");
        unsafe_err["id"] = json!(3);
        // health has id 1
        let body = serde_json::to_vec(&json!([unsafe_err, version, health])).unwrap();
        let BatchOutcome::Replies(r) = decode_batch(&body, 4).unwrap() else {
            panic!("expected replies")
        };
        assert_eq!(r[0].as_ref().unwrap()["peers"], 50);
        assert_eq!(r[1].as_ref().unwrap(), "0.9.42-9b1fc27cec4");
        assert_eq!(r[2].as_ref().unwrap_err().class(), "rpc");
        assert_eq!(r[3].as_ref().unwrap_err().class(), "malformed");
    }

    #[test]
    fn batch_with_rewritten_ids_uses_order() {
        // The gateway fixtures all carry the constant id "getblock.io".
        let a = fixture_json("substrate_rpc_system_chain.json");
        let b = fixture_json("substrate_rpc_chain_getFinalizedHead.json");
        let body = serde_json::to_vec(&json!([a, b])).unwrap();
        let BatchOutcome::Replies(r) = decode_batch(&body, 2).unwrap() else {
            panic!("expected replies")
        };
        assert_eq!(r[0].as_ref().unwrap(), "Polkadot");
        assert!(
            r[1].as_ref()
                .unwrap()
                .as_str()
                .unwrap()
                .starts_with("0x32dc93")
        );
    }

    #[test]
    fn batch_refusal_is_recognised() {
        let body = fixture_bytes("substrate_rpc_error_method_not_found.json");
        assert!(matches!(
            decode_batch(&body, 3).unwrap(),
            BatchOutcome::Refused
        ));
        assert_eq!(decode_batch(b"42", 1).unwrap_err().class(), "malformed");
    }

    #[test]
    fn hex_parsing() {
        assert_eq!(parse_hex("0x0"), Some(0));
        assert_eq!(parse_hex("0xffffffffffffffff"), Some(u64::MAX));
        assert_eq!(parse_hex("0x1ffffffffffffffff"), None);
        assert_eq!(parse_hex("0x"), None);
        assert_eq!(parse_hex("12"), None);
        assert_eq!(parse_hex("0x+1"), None);
        assert_eq!(any_u64(&json!("232")), Some(232));
        assert_eq!(any_u64(&json!("0x10")), Some(16));
        assert_eq!(any_u64(&json!(-1)), None);
        assert_eq!(to_u32(u64::MAX), u32::MAX);
    }

    #[test]
    fn sanitize_is_short_and_single_line() {
        let long = "a\nb".repeat(200);
        let s = sanitize(&long);
        assert!(!s.contains('\n'));
        assert!(s.chars().count() <= 201 && s.ends_with('…'), "{s}");
    }

    proptest! {
        #[test]
        fn decoders_never_panic_on_bytes(b in proptest::collection::vec(any::<u8>(), 0..400), n in 0usize..8) {
            let _ = decode_single(&b);
            let _ = decode_batch(&b, n);
        }

        #[test]
        fn decoders_never_panic_on_strings(s in any::<String>(), n in 0usize..8) {
            let _ = decode_single(s.as_bytes());
            let _ = decode_batch(s.as_bytes(), n);
            let _ = parse_hex(&s);
        }

        #[test]
        fn decoders_never_panic_on_json_shapes(v in arb_json(), n in 0usize..8) {
            let body = serde_json::to_vec(&v).unwrap();
            let _ = decode_single(&body);
            let _ = decode_batch(&body, n);
            let _ = hex_u64(&v);
            let _ = any_u64(&v);
        }
    }
}
