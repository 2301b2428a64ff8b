//! CometBFT blocks and their signatures, pure: decoding `/commit` and `/validators`
//! answers, and a bounded ring of recent blocks that every validator read from the same
//! duty RPC shares (one read per block per endpoint, however many validators watch it).

use serde::Deserialize;
use std::collections::{HashMap, VecDeque};

/// `block_id_flag` of a signature that committed to the block.
const FLAG_COMMIT: u8 = 2;

/// One block's signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockSigs {
    /// The height.
    pub height: u64,
    /// Addresses (uppercase hex) that signed for the block (commit flag).
    pub signed: Vec<String>,
    /// The validators due at this height: every address the commit names (signed, nil, or
    /// absent with its address), and once the set at this height is known, all of it.
    pub due: Vec<String>,
    /// The commit's signatures in order, one per member of the set at this height (the
    /// order of `/validators`); empty where CometBFT leaves an absent validator unnamed.
    pub slots: Vec<String>,
    /// Whether `due` is the whole set (every slot named or matched to the set).
    pub complete: bool,
}

/// Why an answer could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not the JSON shape expected.
    #[error("not a CometBFT {0} answer")]
    Shape(&'static str),
    /// A JSON-RPC error (e.g. a height that was pruned).
    #[error("the node refused: {0}")]
    Refused(String),
}

#[derive(Deserialize)]
struct Rpc<T> {
    result: Option<T>,
    error: Option<RpcError>,
}

#[derive(Deserialize)]
struct RpcError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    data: String,
}

fn unwrap<T>(r: Rpc<T>, what: &'static str) -> Result<T, DecodeError> {
    if let Some(e) = r.error {
        let text = if e.data.is_empty() { e.message } else { e.data };
        // The node's words end up in the duty condition's message: one printable line.
        return Err(DecodeError::Refused(crate::text::printable(&text, 160)));
    }
    r.result.ok_or(DecodeError::Shape(what))
}

fn num(s: &serde_json::Value) -> Option<u64> {
    match s {
        serde_json::Value::String(t) => t.parse().ok(),
        serde_json::Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// Decodes a `/commit?height=H` answer.
pub fn decode_commit(body: &[u8]) -> Result<BlockSigs, DecodeError> {
    #[derive(Deserialize)]
    struct R {
        signed_header: Sh,
    }
    #[derive(Deserialize)]
    struct Sh {
        header: H,
        commit: C,
    }
    #[derive(Deserialize)]
    struct H {
        height: serde_json::Value,
    }
    #[derive(Deserialize)]
    struct C {
        #[serde(default)]
        signatures: Vec<Sig>,
    }
    #[derive(Deserialize)]
    struct Sig {
        #[serde(default)]
        block_id_flag: serde_json::Value,
        #[serde(default)]
        validator_address: Option<String>,
    }
    let r: Rpc<R> = serde_json::from_slice(body).map_err(|_| DecodeError::Shape("commit"))?;
    let r = unwrap(r, "commit")?;
    let height = num(&r.signed_header.header.height).ok_or(DecodeError::Shape("commit"))?;
    let mut signed = Vec::new();
    let mut due = Vec::new();
    let mut slots = Vec::new();
    for s in r.signed_header.commit.signatures {
        // An absent validator may carry no address at all (flag 1, empty address): its
        // slot is matched to the set later.
        let a = s.validator_address.unwrap_or_default().to_ascii_uppercase();
        if !a.is_empty() {
            if num(&s.block_id_flag) == Some(FLAG_COMMIT as u64) {
                signed.push(a.clone());
            }
            due.push(a.clone());
        }
        slots.push(a);
    }
    Ok(BlockSigs {
        height,
        signed,
        complete: due.len() == slots.len(),
        due,
        slots,
    })
}

/// One page of `/validators`: (address → voting power), and the total count.
pub fn decode_validators(body: &[u8]) -> Result<(Vec<(String, u64)>, u64), DecodeError> {
    #[derive(Deserialize)]
    struct R {
        #[serde(default)]
        validators: Vec<V>,
        #[serde(default)]
        total: serde_json::Value,
    }
    #[derive(Deserialize)]
    struct V {
        address: String,
        #[serde(default)]
        voting_power: serde_json::Value,
    }
    let r: Rpc<R> = serde_json::from_slice(body).map_err(|_| DecodeError::Shape("validators"))?;
    let r = unwrap(r, "validators")?;
    let total = num(&r.total).unwrap_or(r.validators.len() as u64);
    Ok((
        r.validators
            .into_iter()
            .map(|v| {
                (
                    v.address.to_ascii_uppercase(),
                    num(&v.voting_power).unwrap_or(0),
                )
            })
            .collect(),
        total,
    ))
}

/// The latest height of a `/status` answer.
pub fn decode_latest_height(body: &[u8]) -> Result<u64, DecodeError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| DecodeError::Shape("status"))?;
    num(&v["result"]["sync_info"]["latest_block_height"]).ok_or(DecodeError::Shape("status"))
}

/// What the ring says of one validator.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Signing {
    /// Blocks read in the window.
    pub window: u64,
    /// Missed in the window (due and not signed, or not in the set).
    pub missed: u64,
    /// Missed while more than 2/3 of the power signed.
    pub solo_missed: u64,
    /// Missed in a row up to the newest block read.
    pub missed_in_a_row: u64,
    /// The last height it signed, within the ring.
    pub last_signed: Option<u64>,
    /// In the validator set as last read.
    pub active: Option<bool>,
    /// Its voting power as last read.
    pub power: Option<u64>,
    /// The newest height read.
    pub newest: Option<u64>,
}

/// Recent blocks of one duty endpoint, and its validator set.
#[derive(Clone, Debug, Default)]
pub struct Ring {
    blocks: VecDeque<BlockSigs>,
    capacity: usize,
    /// Voting power by address, as last read.
    powers: HashMap<String, u64>,
    /// The set as last read, in its order (the order of commit signatures).
    order: Vec<String>,
    /// The height the set was read at.
    pub set_height: Option<u64>,
}

impl Ring {
    /// A ring keeping the newest `capacity` blocks.
    pub fn new(capacity: usize) -> Ring {
        Ring {
            blocks: VecDeque::with_capacity(capacity.min(1024)),
            capacity: capacity.max(1),
            ..Default::default()
        }
    }

    /// Keeps at least `capacity` blocks from now on (a validator with a wider window came).
    pub fn widen(&mut self, capacity: usize) {
        self.capacity = self.capacity.max(capacity);
    }

    /// Blocks kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The newest height held.
    pub fn newest(&self) -> Option<u64> {
        self.blocks.back().map(|b| b.height)
    }

    /// Adds a block (heights must rise; an old or repeated one is ignored), naming its
    /// unnamed absent validators from the set when the set fits the block.
    pub fn push(&mut self, mut b: BlockSigs) {
        if self.newest().is_some_and(|n| b.height <= n) {
            return;
        }
        if !b.complete && !self.set_is_stale(&b) {
            b.due = self.order.clone();
            b.complete = true;
        }
        self.blocks.push_back(b);
        while self.blocks.len() > self.capacity {
            self.blocks.pop_front();
        }
    }

    /// Takes a validator set read at `height`.
    pub fn set_validators(&mut self, set: Vec<(String, u64)>, height: u64) {
        self.order = set.iter().map(|(a, _)| a.clone()).collect();
        self.powers = set.into_iter().collect();
        self.set_height = Some(height);
    }

    /// Whether a block does not fit the set (another size, or a named signature in another
    /// place): the set changed, read it again.
    pub fn set_is_stale(&self, b: &BlockSigs) -> bool {
        self.set_height.is_none()
            || b.slots.len() != self.order.len()
            || b.slots
                .iter()
                .zip(&self.order)
                .any(|(s, o)| !s.is_empty() && s != o)
    }

    /// What the newest `window` blocks say of `address` (uppercase hex).
    pub fn signing(&self, address: &str, window: u64) -> Signing {
        let total: u64 = self.powers.values().sum();
        let active = self.set_height.map(|_| self.powers.contains_key(address));
        let mut out = Signing {
            active,
            power: self.powers.get(address).copied(),
            newest: self.newest(),
            ..Default::default()
        };
        let mut streak = true;
        for b in self.blocks.iter().rev().take(window as usize) {
            let signed = b.signed.iter().any(|a| a == address);
            // Outside the set at that height (jailed, not yet bonded), nothing was due. Where
            // the block could not be matched to a set, a member of today's set was due.
            let due = if b.complete {
                b.due.iter().any(|a| a == address)
            } else {
                signed || active == Some(true)
            };
            if !due {
                continue;
            }
            out.window += 1;
            if signed {
                out.last_signed = out.last_signed.max(Some(b.height));
                streak = false;
                continue;
            }
            out.missed += 1;
            if streak {
                out.missed_in_a_row += 1;
            }
            let signed_power: u64 = b.signed.iter().filter_map(|a| self.powers.get(a)).sum();
            if total > 0 && signed_power.saturating_mul(3) > total.saturating_mul(2) {
                out.solo_missed += 1;
            }
        }
        if out.last_signed.is_none() {
            out.last_signed = self
                .blocks
                .iter()
                .rev()
                .find(|b| b.signed.iter().any(|a| a == address))
                .map(|b| b.height);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Block `h` as CometBFT writes it: one slot per member of `set` in order, absent
    /// members unnamed.
    fn block(h: u64, signed: &[&str], set: &[&str]) -> BlockSigs {
        let slots: Vec<String> = set
            .iter()
            .map(|a| {
                if signed.contains(a) {
                    a.to_string()
                } else {
                    String::new()
                }
            })
            .collect();
        let named: Vec<String> = slots.iter().filter(|a| !a.is_empty()).cloned().collect();
        BlockSigs {
            height: h,
            signed: named.clone(),
            complete: named.len() == slots.len(),
            due: named,
            slots,
        }
    }

    #[test]
    fn decodes_a_commit_of_cometbft() {
        let body = br#"{"jsonrpc":"2.0","id":-1,"result":{"signed_header":{"header":{"height":"120","chain_id":"c"},
          "commit":{"height":"120","round":0,"signatures":[
            {"block_id_flag":2,"validator_address":"aa11","timestamp":"2026-01-01T00:00:00Z","signature":"x"},
            {"block_id_flag":1,"validator_address":"","timestamp":"0001-01-01T00:00:00Z","signature":null},
            {"block_id_flag":1,"validator_address":"BB22","timestamp":"0001-01-01T00:00:00Z","signature":null},
            {"block_id_flag":3,"validator_address":"CC33","signature":"y"}]}},"canonical":true}}"#;
        let b = decode_commit(body).unwrap();
        assert_eq!(b.height, 120);
        assert_eq!(b.signed, vec!["AA11"]);
        assert_eq!(b.due, vec!["AA11", "BB22", "CC33"]);
        assert_eq!(b.slots, vec!["AA11", "", "BB22", "CC33"]);
        assert!(!b.complete, "one absent validator is unnamed");
        let pruned = br#"{"jsonrpc":"2.0","id":-1,"error":{"code":-32603,"message":"Internal error","data":"height 1 is not available, lowest height is 50"}}"#;
        assert_eq!(
            decode_commit(pruned),
            Err(DecodeError::Refused(
                "height 1 is not available, lowest height is 50".into()
            ))
        );
        for garbage in [
            &b"<html>"[..],
            b"{}",
            br#"{"result":{"signed_header":{"header":{"height":-3}}}}"#,
        ] {
            assert!(decode_commit(garbage).is_err());
        }
    }

    #[test]
    fn a_refusal_is_one_printable_line() {
        // Found by fuzz/fuzz_targets/duty_decode.rs: a node's error data went into the duty
        // condition with its newlines and control characters.
        let body = "{\"error\":{\"message\":\"m\",\"data\":\"height 5 is not available,\\nlowest\\u001b[31m is 100\\u202e\\r\\n\"}}";
        let Err(DecodeError::Refused(why)) = decode_commit(body.as_bytes()) else {
            panic!("a refusal")
        };
        assert_eq!(why, "height 5 is not available, lowest [31m is 100");
        let long = format!("{{\"error\":{{\"data\":\"{}\"}}}}", "é".repeat(500));
        let Err(DecodeError::Refused(why)) = decode_validators(long.as_bytes()) else {
            panic!("a refusal")
        };
        assert!(why.chars().count() == 161 && why.ends_with('…'), "{why}");
    }

    #[test]
    fn decodes_validators_and_status() {
        let body = br#"{"result":{"block_height":"9","validators":[{"address":"aa","voting_power":"10","proposer_priority":"0"},{"address":"BB","voting_power":"30"}],"count":"2","total":"2"}}"#;
        let (set, total) = decode_validators(body).unwrap();
        assert_eq!(set, vec![("AA".into(), 10), ("BB".into(), 30)]);
        assert_eq!(total, 2);
        let status = std::fs::read(format!(
            "{}/../shared/fixtures/real-payloads/cometbft_status.json",
            env!("CARGO_MANIFEST_DIR")
        ));
        if let Ok(status) = status {
            assert!(decode_latest_height(&status).unwrap() > 0);
        }
        assert!(decode_latest_height(b"[]").is_err());
    }

    /// (name, blocks oldest first, window, expected missed / in a row / solo / last signed)
    #[test]
    fn signing_from_the_ring() {
        let all = ["A", "B", "C", "D"];
        let mut r = Ring::new(100);
        r.set_validators(all.iter().map(|a| (a.to_string(), 10)).collect(), 1);
        // D signs 1-3, misses 4-6 while the others sign (solo), then 7 with only B and C.
        for h in 1..=3 {
            r.push(block(h, &all, &all));
        }
        for h in 4..=6 {
            r.push(block(h, &["A", "B", "C"], &all));
        }
        r.push(block(7, &["B", "C"], &all));
        r.push(block(7, &all, &all)); // a repeat is ignored
        let d = r.signing("D", 100);
        assert_eq!(
            (
                d.window,
                d.missed,
                d.missed_in_a_row,
                d.solo_missed,
                d.last_signed
            ),
            (7, 4, 4, 3, Some(3))
        );
        assert_eq!(
            (d.active, d.power, d.newest),
            (Some(true), Some(10), Some(7))
        );
        let a = r.signing("A", 100);
        assert_eq!(
            (a.missed, a.missed_in_a_row, a.last_signed),
            (1, 1, Some(6))
        );
        // A window of 2 sees only 6 and 7.
        let d2 = r.signing("D", 2);
        assert_eq!((d2.window, d2.missed, d2.missed_in_a_row), (2, 2, 2));
        assert_eq!(d2.last_signed, Some(3), "found beyond the window");
        // Not in the set: nothing was due.
        let x = r.signing("X", 100);
        assert_eq!((x.active, x.window, x.missed), (Some(false), 0, 0));
        // The ring keeps its capacity.
        let mut small = Ring::new(3);
        for h in 1..=10 {
            small.push(block(h, &all, &all));
        }
        assert_eq!(small.signing("A", 100).window, 3);
        assert!(small.set_is_stale(&block(11, &all, &all)));
        small.set_validators(vec![("A".into(), 1)], 10);
        assert!(
            small.set_is_stale(&block(11, &all, &all)),
            "B is new to the set"
        );
        assert!(!small.set_is_stale(&block(11, &["A"], &["A"])));
        assert!(
            small.set_is_stale(&block(11, &["B"], &["B"])),
            "a named signer in another place"
        );
    }

    /// Jailed from block 4 to 6: those blocks were not due, so they are not missed; the
    /// validator's unnamed absent slot is matched to the set by position.
    #[test]
    fn blocks_outside_the_set_are_not_missed() {
        let all = ["A", "B", "C", "D"];
        let three = ["A", "B", "C"];
        let mut r = Ring::new(100);
        r.set_validators(all.iter().map(|a| (a.to_string(), 10)).collect(), 1);
        r.push(block(1, &all, &all));
        r.push(block(2, &three, &all)); // D absent, its slot unnamed
        let b = block(3, &three, &all);
        assert!(!r.set_is_stale(&b));
        r.push(b);
        // Jailed: the set shrinks, the feed sees the misfit and reads the set again.
        let b4 = block(4, &three, &three);
        assert!(r.set_is_stale(&b4));
        r.set_validators(three.iter().map(|a| (a.to_string(), 10)).collect(), 4);
        for h in 4..=6 {
            r.push(block(h, &three, &three));
        }
        let d = r.signing("D", 100);
        assert_eq!(
            (d.window, d.missed, d.missed_in_a_row, d.active),
            (3, 2, 2, Some(false))
        );
        // Unjailed, signing again: the two misses before the jail stay, nothing more.
        r.set_validators(all.iter().map(|a| (a.to_string(), 10)).collect(), 7);
        for h in 7..=9 {
            r.push(block(h, &all, &all));
        }
        let d = r.signing("D", 100);
        assert_eq!(
            (d.window, d.missed, d.missed_in_a_row, d.last_signed),
            (6, 2, 0, Some(9))
        );
        // A block that fits no set read is kept, and a member of today's set was due in it.
        let mut odd = block(10, &["A", "B"], &["A", "B", "C"]);
        odd.slots = vec!["A".into(), "B".into(), String::new()];
        r.push(odd);
        assert_eq!(r.signing("D", 100).missed_in_a_row, 1);
    }
}
