//! Validator duty decoding (`vigil::duty`) on any answer body: CometBFT `/commit`,
//! `/validators` and `/status`, the Beacon API's validator, liveness and head slot, the Cosmos
//! SDK's signing info and staking record, and consensus addresses. Beyond "never panics":
//! decoded heights are the body's own, a commit's signers are among its due validators, the
//! ring's counts stay within its window, the liveness record within its epochs, addresses
//! round-trip between hex and bech32, and errors are one printable line.

#![no_main]

use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use vigil::duty::beacon::{self, LivenessTrack};
use vigil::duty::commits::{self, Ring};
use vigil::duty::{address, cosmos_api};

fuzz_target!(|data: &[u8]| {
    // Lossy: the decoders skip unknown fields without checking their UTF-8.
    let doc: Value = serde_json::from_str(&String::from_utf8_lossy(data)).unwrap_or(Value::Null);
    cometbft(data, &doc);
    ethereum(data, &doc);
    cosmos(data);
    if let Ok(text) = std::str::from_utf8(data) {
        addresses(text);
    }
    // Any 20 bytes are an address, in either spelling.
    let mut raw = [0u8; 20];
    let k = data.len().min(20);
    raw[..k].copy_from_slice(&data[..k]);
    let hex: String = raw.iter().map(|b| format!("{b:02X}")).collect();
    let b32 = address::to_bech32("cosmosvalcons", &hex).expect("20 bytes encode");
    assert_eq!(address::consensus_hex(&b32).unwrap(), hex);
    assert_eq!(
        address::consensus_hex(&hex.to_ascii_lowercase()).unwrap(),
        hex
    );
});

/// CometBFT's numbers: decimal strings or JSON numbers.
fn num(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

fn cometbft(data: &[u8], doc: &Value) {
    let commit = commits::decode_commit(data);
    match &commit {
        Ok(b) => {
            assert_eq!(
                Some(b.height),
                num(&doc["result"]["signed_header"]["header"]["height"])
            );
            assert!(b.signed.len() <= b.due.len() && b.due.len() <= b.slots.len());
            assert_eq!(b.complete, b.due.len() == b.slots.len());
            assert!(b.signed.iter().all(|a| b.due.contains(a)));
            // Addresses are compared uppercase everywhere.
            assert!(
                b.slots
                    .iter()
                    .all(|a| !a.bytes().any(|c| c.is_ascii_lowercase()))
            );
        }
        Err(e) => one_line(&e.to_string()),
    }
    let set = commits::decode_validators(data);
    match &set {
        Ok((set, _total)) => {
            assert!(
                set.iter()
                    .all(|(a, _)| !a.bytes().any(|c| c.is_ascii_lowercase()))
            );
        }
        Err(e) => one_line(&e.to_string()),
    }
    match commits::decode_latest_height(data) {
        Ok(h) => assert_eq!(
            Some(h),
            num(&doc["result"]["sync_info"]["latest_block_height"])
        ),
        Err(e) => one_line(&e.to_string()),
    }

    // The shared ring: the set as read at the block's height, the block and the next one.
    let Ok(block) = commit else { return };
    let mut ring = Ring::new(4);
    let mut names: Vec<String> = block.slots.iter().take(8).cloned().collect();
    if let Ok((set, _)) = set {
        names.extend(set.iter().take(8).map(|(a, _)| a.clone()));
        ring.set_validators(set, block.height);
    }
    names.push("NOT-A-VALIDATOR".into());
    let mut next = block.clone();
    ring.push(block.clone());
    if let Some(h) = block.height.checked_add(1) {
        next.height = h;
        ring.push(next);
    }
    // An old block is ignored.
    let held = ring.newest();
    ring.push(block);
    assert_eq!(ring.newest(), held);
    for name in &names {
        for window in [1, 2, 100] {
            let s = ring.signing(name, window);
            assert!(s.window <= window.min(2), "{s:?}");
            assert!(s.missed <= s.window && s.solo_missed <= s.missed, "{s:?}");
            assert!(s.missed_in_a_row <= s.missed, "{s:?}");
            assert!(s.last_signed <= s.newest, "{s:?}");
        }
    }
}

/// The Beacon API's indexes: decimal digits, or a JSON number that is a whole one.
fn index(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        Value::Number(n) => n.as_u64().or_else(|| {
            let f = n.as_f64().filter(|_| n.as_i64().is_none())?;
            (f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f < 18_446_744_073_709_551_616.0)
                .then_some(f as u64)
        }),
        _ => None,
    }
}

fn ethereum(data: &[u8], doc: &Value) {
    match beacon::parse_validator(data) {
        Ok(v) => {
            assert_eq!(v.active, v.status.starts_with("active_"));
            assert!(!v.status.is_empty() && v.status.len() <= 64);
            assert_eq!(Some(v.index), index(&doc["data"]["index"]));
        }
        Err(e) => one_line(&e.to_string()),
    }
    let epoch = match beacon::parse_head_slot(data) {
        Ok(slot) => slot / beacon::SLOTS_PER_EPOCH,
        Err(e) => {
            one_line(&e.to_string());
            7
        }
    };
    // Liveness of every index the answer names (and one it does not).
    let mut track = LivenessTrack::new(8);
    let mut indexes: Vec<u64> = doc["data"]
        .as_array()
        .into_iter()
        .flatten()
        .take(8)
        .filter_map(|i| index(&i["index"]))
        .collect();
    indexes.push(u64::MAX);
    for wanted in indexes {
        match beacon::parse_liveness(data, wanted) {
            Ok(Some(live)) => {
                let first = doc["data"]
                    .as_array()
                    .and_then(|a| a.iter().find(|i| index(&i["index"]) == Some(wanted)));
                assert_eq!(first.map(|i| &i["is_live"]), Some(&Value::Bool(live)));
                track.for_validator(wanted);
                for e in track.to_read(epoch, beacon::MAX_EPOCHS_PER_READ) {
                    assert!(e < epoch);
                    assert!(track.record(e, live));
                    assert!(!track.record(e, live), "an epoch is recorded once");
                }
                let recorded = track.recorded_in_window(4);
                assert!(track.missed_in_window(4) <= recorded && recorded <= 4);
                assert!(track.missed_in_a_row() <= 8);
                assert_eq!(
                    track.last_live_epoch().is_some(),
                    live && track.newest_epoch().is_some()
                );
            }
            Ok(None) => {}
            Err(e) => one_line(&e.to_string()),
        }
    }
}

fn cosmos(data: &[u8]) {
    match (
        cosmos_api::parse_signing_info(data, Timestamp::UNIX_EPOCH),
        cosmos_api::parse_signing_info(data, Timestamp::MAX),
    ) {
        (Ok(early), Ok(late)) => {
            // Nobody is jailed past the end of time; the rest does not depend on the clock.
            assert!(!late.0);
            assert_eq!((early.1, early.2), (late.1, late.2));
        }
        (Err(a), Err(b)) => {
            assert_eq!(a, b);
            one_line(&a.to_string());
        }
        (a, b) => panic!("the clock changed whether the answer reads: {a:?} {b:?}"),
    }
    match cosmos_api::parse_validator(data) {
        Ok((_jailed, status, _tokens)) => {
            assert!(!status.is_empty() && status.len() <= 64);
            assert!(
                status
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            );
        }
        Err(e) => one_line(&e.to_string()),
    }
}

/// Hex and bech32 consensus addresses convert both ways.
fn addresses(text: &str) {
    if let Ok(hex) = address::consensus_hex(text) {
        assert_eq!(hex.len(), 40);
        assert!(
            hex.bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        );
        let b32 = address::to_bech32("cosmosvalcons", &hex).expect("a valid address encodes");
        assert_eq!(address::consensus_hex(&b32).as_deref(), Ok(hex.as_str()));
        // A bech32 address given is the one encoded again.
        // (Prefixes outside Cosmos's lowercase letters and digits are refused.)
        if let Ok(again) = address::prefix_of(text).and_then(|hrp| address::to_bech32(&hrp, &hex)) {
            assert_eq!(again, text.trim().to_ascii_lowercase());
        }
    }
    if let Ok(p) = address::valcons_prefix_for(text) {
        assert!(p.ends_with("valcons"));
    }
}

/// Errors reach conditions and Events: one line of printable text.
fn one_line(s: &str) {
    assert!(s.len() <= 1024, "an error of {} bytes", s.len());
    assert!(
        !s.chars().any(char::is_control),
        "control characters in {s:?}"
    );
}
