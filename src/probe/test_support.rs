//! Test helpers: the real payloads captured from nodes and APIs live outside the repository
//! (`../shared/fixtures/real-payloads`, or `$VIGIL_FIXTURES`); tests read them from there.

use proptest::prelude::*;
use serde_json::{Value, json};
use std::path::PathBuf;

/// The directory of the captured payloads.
pub fn fixtures_dir() -> PathBuf {
    match std::env::var_os("VIGIL_FIXTURES") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/real-payloads"),
    }
}

/// One fixture's bytes.
pub fn fixture_bytes(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// One fixture as text.
pub fn fixture_text(name: &str) -> String {
    String::from_utf8(fixture_bytes(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// One fixture as JSON.
pub fn fixture_json(name: &str) -> serde_json::Value {
    serde_json::from_slice(&fixture_bytes(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// One fixture decoded as a single JSON-RPC reply: its result, or its error.
pub fn fixture_reply(name: &str) -> Result<Value, super::ProbeError> {
    super::jsonrpc::decode_single(&fixture_bytes(name))
}

/// Arbitrary JSON shaped like what nodes and gateways send (envelope keys, hex strings,
/// deep nesting), for the property tests of every decoder.
pub fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "[ -~]{0,12}".prop_map(Value::String),
        Just(json!("0x")),
        Just(json!("0xffffffffffffffffff")),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec(
                (
                    prop_oneof![
                        Just("id".to_owned()),
                        Just("result".to_owned()),
                        Just("error".to_owned()),
                        Just("code".to_owned()),
                        Just("message".to_owned()),
                        Just("status_code".to_owned()),
                        "[a-z]{1,6}"
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    /// Every fact extractor takes any JSON (as each reply of a batch, or as a whole
    /// document) without panicking.
    #[test]
    fn fact_extractors_never_panic(docs in proptest::collection::vec(arb_json(), 0..8)) {
        for d in &docs {
            let _ = super::cosmos::facts_from_status(d);
            let _ = super::cosmos::peers_from_net_info(d);
        }
        let replies = |docs: &[Value]| docs.iter().cloned().map(Ok).collect::<Vec<_>>();
        let _ = super::substrate::facts_from_replies(replies(&docs));
        let _ = super::ethereum::facts_from_replies(replies(&docs));
    }
}
