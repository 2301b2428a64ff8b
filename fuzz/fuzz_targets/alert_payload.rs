//! Alert channels (`vigil::alert`): Slack's answer to a post, and the payloads Vigil sends to
//! Alertmanager, Slack, a generic webhook (signed) and email when what was seen (a node's
//! error, a command's output) is hostile text. The input is split at 0xFF bytes (never in
//! UTF-8, so a captured answer is one whole part): Slack's answer and the alert's detail,
//! what Vigil did, names, and a few control bytes. Beyond "never panics": Slack's answer is
//! classed without repeating it, every payload keeps its limits (one-line texts, Slack's block
//! sizes, the webhook schema's fields), the webhook body is JSON that reads back the same and
//! carries an HMAC that an independent HMAC-SHA256 confirms.

#![no_main]

use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::time::Duration;
use vigil::alert::catalog::Firing;
use vigil::alert::decide::State;
use vigil::alert::message::{self, Item, LIST_LIMIT, Message, Object};
use vigil::alert::send::{self, SendError};
use vigil::api::AlertName;

const NAMES: [AlertName; 6] = [
    AlertName::ValidatorUnreachable,
    AlertName::ValidatorNotSigning,
    AlertName::RemediationFailed,
    AlertName::ChainHalted,
    AlertName::StormActive,
    AlertName::AdvisorBudgetExhausted,
];

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0xFF);
    let first = parts.next().unwrap_or_default();
    let detail = String::from_utf8_lossy(first);
    let did = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let names = parts.next().unwrap_or(b"val-0");
    let ctl = parts.next().unwrap_or_default();
    let byte = |i: usize| ctl.get(i).copied().unwrap_or(0);

    let status = u16::from_le_bytes([byte(0), byte(1)]) % 1000;
    slack_answer(status, &detail);
    slack_answer(200, &detail);

    let name = NAMES[byte(2) as usize % NAMES.len()];
    let object = [Object::Validator, Object::Policy, Object::Run][byte(3) as usize % 3];
    let state = if byte(4) & 1 == 0 {
        State::Firing
    } else {
        State::Resolved
    };
    let items = 1 + byte(5) as usize % (LIST_LIMIT + 5);
    let secs = i64::from_le_bytes(std::array::from_fn(|i| byte(6 + i))) % 253_402_207_200;
    let since = Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH);

    // Kubernetes names (and the validators of a fleet alert, and a step) are DNS labels.
    let label = |i: usize| dns_label(names, i);
    let members: Vec<String> = (0..byte(14) as usize % 30)
        .map(|i| label(i + 100))
        .collect();
    let m = Message {
        name,
        state,
        test: byte(4) & 2 != 0,
        items: (0..items)
            .map(|i| Item {
                object,
                namespace: label(0),
                name: label(i + 1),
                policy: label(50),
                chain: label(51),
                fingerprint: format!("{:016x}", i),
                alert: Firing::new(name, detail.clone())
                    .subject(label(52))
                    .members(members.clone()),
                since,
                did: did.clone(),
                told_at: since,
            })
            .collect(),
    };
    payloads(&m, since, &first[..first.len().min(64)]);
});

/// Slack's answer: done only for `ok`, and whatever it says is not repeated.
fn slack_answer(status: u16, body: &str) {
    let after = Some(Duration::from_secs(7));
    match send::slack_answer(status, body, after) {
        Ok(()) => {
            let t = body.trim();
            assert!(status == 200 && (t == "ok" || t.starts_with("{\"ok\":true")));
        }
        Err(SendError::Retry { why, after: a }) => {
            sentence(&why);
            if status == 429 {
                assert_eq!(a, after, "Slack's retry-after is kept");
            }
        }
        Err(SendError::Permanent { why, .. }) => {
            sentence(&why);
            assert!(status != 429 && status < 500 || !why.contains(" answered "));
        }
    }
}

fn payloads(m: &Message, now: Timestamp, secret: &[u8]) {
    let lines = m.lines();
    assert_eq!(
        lines.len(),
        m.items.len().min(LIST_LIMIT) + usize::from(m.items.len() > LIST_LIMIT)
    );
    for l in &lines {
        assert!(!l.contains(['\n', '\r']), "{l:?}");
    }

    let am = message::alertmanager(m, now, Duration::from_secs(240), "https://10.0.0.1:6443/");
    let alerts = am.as_array().expect("a list of postable alerts");
    assert_eq!(alerts.len(), m.items.len());
    for a in alerts {
        for (k, v) in a["labels"].as_object().expect("labels") {
            assert!(
                !v.as_str().expect("a string label").is_empty(),
                "empty label {k}"
            );
        }
        for k in ["description", "vigil_action"] {
            one_line(a["annotations"][k].as_str().expect("an annotation"));
        }
        let starts: Timestamp = a["startsAt"].as_str().unwrap().parse().expect("a time");
        let ends: Timestamp = a["endsAt"].as_str().unwrap().parse().expect("a time");
        assert_eq!(starts, m.items[0].since);
        assert!(ends >= now);
    }

    let slack = message::slack(m);
    assert_eq!(slack["text"], m.title());
    let limits = [
        ("/blocks/0/text/text", 150),
        ("/blocks/1/text/text", 3000),
        ("/blocks/2/elements/0/text", 3000),
    ];
    for (at, max) in limits {
        let t = slack
            .pointer(at)
            .and_then(Value::as_str)
            .expect("a block text");
        assert!(
            t.chars().count() <= max,
            "{at}: {} chars",
            t.chars().count()
        );
    }

    let body = message::webhook(m, now).to_string();
    let back: Value = serde_json::from_str(&body).expect("the webhook body is JSON");
    assert_eq!(back, message::webhook(m, now));
    assert_eq!(back["version"], "1");
    assert!(matches!(
        back["status"].as_str(),
        Some("firing" | "resolved")
    ));
    let items = back["alerts"].as_array().expect("alerts");
    assert_eq!(items.len(), m.items.len());
    for a in items {
        for k in ["detail", "vigilAction"] {
            one_line(a[k].as_str().expect("a string"));
        }
    }
    let sig = vigil::remediate::webhook::signature(secret, body.as_bytes());
    assert_eq!(
        sig,
        format!("sha256={}", hmac_sha256(secret, body.as_bytes()))
    );

    let (subject, text) = message::email(m);
    assert!(subject.chars().count() <= 200);
    assert!(!subject.chars().any(char::is_control), "{subject:?}");
    let listed = text.lines().filter(|l| l.starts_with("- ")).count();
    assert_eq!(listed, lines.len(), "one line per alert:\n{text}");
}

/// An independent HMAC-SHA256 (RFC 2104), lowercase hex.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> String {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    outer.iter().map(|b| format!("{b:02x}")).collect()
}

/// A DNS label (1 to 63 of `a-z0-9-`) made from `seed` and `i`.
fn dns_label(seed: &[u8], i: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-";
    let len = 1 + seed.get(i % seed.len().max(1)).copied().unwrap_or(0) as usize % 63;
    let mut s: String = (0..len)
        .map(|j| {
            let b = seed
                .get((i + j) % seed.len().max(1))
                .copied()
                .unwrap_or(b'a');
            CHARS[b as usize % CHARS.len()] as char
        })
        .collect();
    // A label neither starts nor ends with `-`.
    s = s.trim_matches('-').to_string();
    if s.is_empty() { format!("x{i}") } else { s }
}

/// Text that was seen (a node's error, a command's output) arrives on one line.
fn one_line(s: &str) {
    assert!(
        !s.chars().any(char::is_control),
        "control characters in {s:?}"
    );
    assert!(
        s.chars().count() <= 300 + 40 * 64,
        "{} chars",
        s.chars().count()
    );
}

/// An error for people: a short sentence of Vigil's own words (ASCII) at most naming a known
/// token, never the answer's text.
fn sentence(why: &str) {
    assert!(why.is_ascii() && why.len() <= 120, "{why:?}");
}
