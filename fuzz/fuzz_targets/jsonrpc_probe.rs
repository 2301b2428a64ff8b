//! What the chain probes do with a reply body (`vigil::probe::fuzzing`): JSON-RPC decoding of
//! single and batched replies, hex and decimal quantities, and the Substrate, Ethereum and
//! CometBFT facts built from them. The same bytes answer every call, so one real reply
//! exercises every interpretation. Beyond "never panics": a decoded `result` is the body's
//! own, a batch has one entry per call, errors and facts from the node are short printable
//! text, and a probe that succeeds has a block height.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use vigil::probe::fuzzing;
use vigil::probe::{Observation, ProbeError};

/// Calls in each probe's batch.
const CALLS: usize = 6;

fuzz_target!(|data: &[u8]| {
    // The body as the test sees it, independently of the code under test.
    let doc: Option<Value> = std::str::from_utf8(data)
        .ok()
        .and_then(|t| serde_json::from_str(t).ok());

    let single = fuzzing::decode_single(data);
    match &single {
        Ok(result) => {
            let obj = doc.as_ref().and_then(Value::as_object);
            let obj = obj.expect("decode_single accepted a body that is not a JSON object");
            assert_eq!(
                obj.get("result"),
                Some(result),
                "the result is not the body's"
            );
            assert!(
                obj.get("error").is_none_or(Value::is_null),
                "an error was ignored"
            );
        }
        Err(e) => check_error(e),
    }

    for n in [1, CALLS] {
        match fuzzing::decode_batch(data, n) {
            Ok(Some(replies)) => {
                assert!(
                    matches!(doc, Some(Value::Array(_))),
                    "replies from a non-array"
                );
                assert_eq!(replies.len(), n, "one entry per call");
                let items = doc.as_ref().and_then(Value::as_array).expect("an array");
                for r in &replies {
                    match r {
                        // Every result comes from one of the body's items.
                        Ok(v) => assert!(items.iter().any(|i| i.get("result") == Some(v))),
                        Err(e) => check_error(e),
                    }
                }
                if n == CALLS {
                    probes(replies);
                }
            }
            Ok(None) => assert!(
                matches!(doc, Some(Value::Object(_))),
                "refused a non-object"
            ),
            Err(e) => check_error(&e),
        }
    }
    // A node that refuses batches answers every call alike.
    probes(vec![single; CALLS]);

    match fuzzing::json_body(data) {
        Ok(doc) => {
            match fuzzing::cosmos_status(&doc) {
                Ok(obs) => {
                    check_observation(&obs);
                    // Instant finality: the committed height is the final one.
                    assert!(obs.best_block.is_some());
                    assert_eq!(obs.best_block, obs.finalized_block);
                }
                Err(e) => check_error(&e),
            }
            if let Err(e) = fuzzing::cosmos_peers(&doc) {
                check_error(&e);
            }
            quantities(&doc);
        }
        Err(e) => check_error(&e),
    }

    if let Ok(text) = std::str::from_utf8(data) {
        hex_text(text.trim());
    }
    // Round trips of the first eight bytes as a number.
    let mut word = [0u8; 8];
    let k = data.len().min(8);
    word[..k].copy_from_slice(&data[..k]);
    let n = u64::from_le_bytes(word);
    assert_eq!(fuzzing::parse_hex(&format!("0x{n:x}")), Some(n));
    assert_eq!(fuzzing::parse_hex(&format!("0X{n:016X}")), Some(n));
    assert_eq!(fuzzing::any_u64(&Value::from(n.to_string())), Some(n));
    assert_eq!(fuzzing::any_u64(&Value::from(n)), Some(n));
});

/// The Substrate and Ethereum probes on `replies`: only a missing head block fails.
fn probes(replies: Vec<Result<Value, ProbeError>>) {
    match fuzzing::substrate_facts(replies.clone()) {
        Ok((obs, fin)) => {
            check_observation(&obs);
            assert!(
                obs.best_block.is_some(),
                "substrate facts without a best block"
            );
            assert!(fin.is_none_or(|h| h.starts_with("0x")));
        }
        Err(e) => check_error(&e),
    }
    match fuzzing::ethereum_facts(replies) {
        Ok(obs) => {
            check_observation(&obs);
            assert!(
                obs.best_block.is_some(),
                "ethereum facts without a head block"
            );
        }
        Err(e) => check_error(&e),
    }
}

/// `parse_hex` accepts exactly `0x` (or `0X`) and 1 or more hex digits that fit in 64 bits.
fn hex_text(s: &str) {
    let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"));
    let expect = digits
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|d| u64::from_str_radix(d, 16).ok());
    assert_eq!(fuzzing::parse_hex(s), expect, "{s:?}");
}

/// Every string and number in `doc` read as a quantity agrees with the plain parsers.
fn quantities(doc: &Value) {
    let mut stack = vec![doc];
    let mut seen = 0;
    while let Some(v) = stack.pop() {
        seen += 1;
        if seen > 256 {
            return;
        }
        match v {
            Value::String(s) => {
                let expect = if s.starts_with("0x") || s.starts_with("0X") {
                    fuzzing::parse_hex(s)
                } else {
                    s.trim().parse::<u64>().ok()
                };
                assert_eq!(fuzzing::any_u64(v), expect, "{s:?}");
            }
            Value::Number(n) => assert_eq!(fuzzing::any_u64(v), n.as_u64()),
            Value::Array(a) => stack.extend(a),
            Value::Object(o) => stack.extend(o.values()),
            _ => assert_eq!(fuzzing::any_u64(v), None),
        }
    }
}

/// What a node says reaches statuses and Events: the facts' text is one short printable line.
fn check_observation(obs: &Observation) {
    assert!(obs.warnings.len() <= 16, "{} warnings", obs.warnings.len());
    for w in &obs.warnings {
        assert!(
            w.chars().count() <= 300,
            "a warning of {} chars",
            w.chars().count()
        );
    }
    for text in [&obs.version, &obs.network].into_iter().flatten() {
        printable(text, 201);
    }
}

/// Errors are sentences for people: one line, bounded, node text sanitized.
fn check_error(e: &ProbeError) {
    if let ProbeError::Rpc { message, .. } = e {
        printable(message, 201);
    }
    let shown = e.to_string();
    assert!(shown.len() <= 1024, "an error of {} bytes", shown.len());
    assert!(
        !shown.contains(['\n', '\r']),
        "a multi-line error: {shown:?}"
    );
}

fn printable(text: &str, max_chars: usize) {
    assert!(
        text.chars().count() <= max_chars,
        "{} chars",
        text.chars().count()
    );
    assert!(
        !text.chars().any(char::is_control),
        "control characters in {text:?}"
    );
}
