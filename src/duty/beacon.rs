//! An Ethereum validator's duty from a beacon node's standard REST API (the Beacon API):
//!
//! - `GET /eth/v1/beacon/states/head/validators/{id}` (`id`: index or 0x public key) →
//!   `{"data": {"index", "balance", "status", "validator": {"pubkey", "effective_balance",
//!   "slashed", "activation_epoch", "exit_epoch", ...}}}`;
//! - `GET /eth/v1/beacon/headers/head` → `{"data": {"header": {"message": {"slot"}}}}`, or
//!   `GET /eth/v1/node/syncing` → `{"data": {"head_slot"}}`: the epoch now (slot / 32);
//! - `POST /eth/v1/validator/liveness/{epoch}` with `["<index>"]` →
//!   `{"data": [{"index", "is_live"}]}`: whether the node saw the validator at work in
//!   that epoch (best effort: a node that just started or lost its peers may say no).
//!
//! Numbers come as decimal strings. A node must answer liveness for the current and the
//! previous epoch and may refuse older ones; only completed epochs (the previous one and
//! before) are asked, each once, into a [`LivenessTrack`].

use super::read::{self, DutyReadError, ParseError};
use serde_json::Value;
use std::collections::BTreeMap;

/// Slots in an epoch (mainnet and every public testnet).
pub const SLOTS_PER_EPOCH: u64 = 32;
/// Epochs whose liveness one [`read`] asks at most (catching up after a pause).
pub const MAX_EPOCHS_PER_READ: u64 = 4;
/// "Never" in an epoch field.
pub const FAR_FUTURE_EPOCH: u64 = u64::MAX;

/// A validator as the beacon state has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BeaconValidator {
    /// Its index in the registry.
    pub index: u64,
    /// `pending_initialized`, `pending_queued`, `active_ongoing`, `active_exiting`,
    /// `active_slashed`, `exited_unslashed`, `exited_slashed`, `withdrawal_possible` or
    /// `withdrawal_done`.
    pub status: String,
    /// Slashed (it will be forced out).
    pub slashed: bool,
    /// The balance at stake, in gwei (saturating).
    pub effective_balance_gwei: u64,
    /// The whole balance, in gwei (saturating).
    pub balance_gwei: u64,
    /// It must attest now (an `active_*` status).
    pub active: bool,
    /// When it started its duty ([`FAR_FUTURE_EPOCH`] if not yet).
    pub activation_epoch: u64,
    /// When its duty ends ([`FAR_FUTURE_EPOCH`] if it did not ask to leave).
    pub exit_epoch: u64,
}

/// Reads a `/eth/v1/beacon/states/{state}/validators/{id}` answer.
pub fn parse_validator(body: &[u8]) -> Result<BeaconValidator, ParseError> {
    let v = read::json(body)?;
    let data = read::object(&v, "data", "data")?;
    let index = read::u64_exact(read::field(data, "index", "data.index")?, "data.index")?;
    let balance_gwei = read::u64_saturating(
        read::field(data, "balance", "data.balance")?,
        "data.balance",
    )?;
    let status = read::string(data, "status", "data.status")?;
    let plausible = !status.is_empty()
        && status.len() <= 64
        && status.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    if !plausible {
        return Err(ParseError::Invalid {
            field: "data.status",
            why: "it is not a validator status such as active_ongoing",
        });
    }
    let val = read::object(data, "validator", "data.validator")?;
    let slashed = read::boolean(val, "slashed", "data.validator.slashed")?;
    let effective_balance_gwei = read::u64_saturating(
        read::field(val, "effective_balance", "data.validator.effective_balance")?,
        "data.validator.effective_balance",
    )?;
    let activation_epoch = read::u64_saturating(
        read::field(val, "activation_epoch", "data.validator.activation_epoch")?,
        "data.validator.activation_epoch",
    )?;
    let exit_epoch = read::u64_saturating(
        read::field(val, "exit_epoch", "data.validator.exit_epoch")?,
        "data.validator.exit_epoch",
    )?;
    Ok(BeaconValidator {
        index,
        active: status.starts_with("active_"),
        status: status.to_string(),
        slashed,
        effective_balance_gwei,
        balance_gwei,
        activation_epoch,
        exit_epoch,
    })
}

/// Reads a `/eth/v1/validator/liveness/{epoch}` answer: whether validator `index` was live
/// (`None`: the answer does not name it).
pub fn parse_liveness(body: &[u8], index: u64) -> Result<Option<bool>, ParseError> {
    let v = read::json(body)?;
    let data = read::field(&v, "data", "data")?
        .as_array()
        .ok_or(ParseError::WrongType {
            field: "data",
            expected: "a list",
        })?;
    for item in data {
        if !item.is_object() {
            return Err(ParseError::WrongType {
                field: "data[]",
                expected: "an object",
            });
        }
        let i = read::u64_exact(read::field(item, "index", "data[].index")?, "data[].index")?;
        let live = read::boolean(item, "is_live", "data[].is_live")?;
        if i == index {
            return Ok(Some(live));
        }
    }
    Ok(None)
}

/// Reads the head slot from a `/eth/v1/beacon/headers/{block}` answer
/// (`data.header.message.slot`) or a `/eth/v1/node/syncing` one (`data.head_slot`).
pub fn parse_head_slot(body: &[u8]) -> Result<u64, ParseError> {
    let v = read::json(body)?;
    let data = read::object(&v, "data", "data")?;
    if let Some(slot) = data.get("head_slot").filter(|x| !x.is_null()) {
        return read::u64_exact(slot, "data.head_slot");
    }
    let header = read::object(data, "header", "data.header")?;
    let message = read::object(header, "message", "data.header.message")?;
    read::u64_exact(
        read::field(message, "slot", "data.header.message.slot")?,
        "data.header.message.slot",
    )
}

/// A validator's liveness, epoch by epoch: only completed epochs, each recorded once, the
/// newest `capacity` kept. Epochs passed over (not asked in time, or no duty then) are gaps:
/// neither live nor missed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LivenessTrack {
    /// The validator the record is of (a new one starts a new record).
    validator: Option<u64>,
    epochs: BTreeMap<u64, bool>,
    capacity: usize,
    /// The first epoch not yet recorded or passed over.
    next: Option<u64>,
    last_live: Option<u64>,
}

impl Default for LivenessTrack {
    /// A day and a bit of epochs (256 × 6.4 minutes).
    fn default() -> Self {
        LivenessTrack::new(256)
    }
}

impl LivenessTrack {
    /// An empty record keeping the newest `capacity` epochs (at least 1).
    pub fn new(capacity: usize) -> Self {
        LivenessTrack {
            validator: None,
            epochs: BTreeMap::new(),
            capacity: capacity.max(1),
            next: None,
            last_live: None,
        }
    }

    /// Makes this the record of validator `index`: a record of another one is cleared.
    pub fn for_validator(&mut self, index: u64) {
        if self.validator != Some(index) {
            *self = LivenessTrack::new(self.capacity);
            self.validator = Some(index);
        }
    }

    /// The validator recorded, once known.
    pub fn validator(&self) -> Option<u64> {
        self.validator
    }

    /// The completed epochs (before `current_epoch`) not yet recorded, oldest first, at
    /// most the newest `max` of them; only the previous epoch on a new record.
    pub fn to_read(&self, current_epoch: u64, max: u64) -> Vec<u64> {
        let Some(completed) = current_epoch.checked_sub(1) else {
            return Vec::new();
        };
        if max == 0 {
            return Vec::new();
        }
        let from = self
            .next
            .unwrap_or(completed)
            .max(completed.saturating_sub(max - 1));
        (from..=completed).collect()
    }

    /// Records epoch `epoch`; `false` (and nothing changes) when it, or a later one, was
    /// recorded or passed over already.
    pub fn record(&mut self, epoch: u64, live: bool) -> bool {
        if self.next.is_some_and(|n| epoch < n) {
            return false;
        }
        self.epochs.insert(epoch, live);
        self.next = Some(epoch.saturating_add(1));
        if live {
            self.last_live = Some(epoch);
        }
        while self.epochs.len() > self.capacity {
            self.epochs.pop_first();
        }
        true
    }

    /// Passes over `epoch` (and any before it) without a verdict.
    pub fn skip(&mut self, epoch: u64) {
        let after = epoch.saturating_add(1);
        self.next = Some(self.next.map_or(after, |n| n.max(after)));
    }

    /// Recorded epochs missed since the last live one (gaps neither break nor add to it).
    pub fn missed_in_a_row(&self) -> u64 {
        self.epochs
            .values()
            .rev()
            .take_while(|live| !**live)
            .count() as u64
    }

    /// Epochs missed among the `window` epochs up to the newest one recorded or passed
    /// over.
    pub fn missed_in_window(&self, window: u64) -> u64 {
        self.in_window(window).filter(|(_, live)| !**live).count() as u64
    }

    /// Epochs recorded (live or missed) among the same `window` epochs.
    pub fn recorded_in_window(&self, window: u64) -> u64 {
        self.in_window(window).count() as u64
    }

    fn in_window(&self, window: u64) -> impl Iterator<Item = (&u64, &bool)> {
        let range = match (self.next, window) {
            (Some(next), 1..) => Some(next.saturating_sub(window)..next),
            _ => None,
        };
        range.into_iter().flat_map(|r| self.epochs.range(r))
    }

    /// The newest epoch the validator was seen live in.
    pub fn last_live_epoch(&self) -> Option<u64> {
        self.last_live
    }

    /// The newest epoch recorded.
    pub fn newest_epoch(&self) -> Option<u64> {
        self.epochs.keys().next_back().copied()
    }
}

/// A validator id the Beacon API takes: a decimal index or a 0x BLS public key.
fn checked_id(id: &str) -> Result<&str, DutyReadError> {
    let id = id.trim();
    let index = !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit());
    let pubkey =
        id.len() == 98 && id.starts_with("0x") && id[2..].bytes().all(|b| b.is_ascii_hexdigit());
    if index && id.parse::<u64>().is_ok() || pubkey {
        Ok(id)
    } else {
        Err(DutyReadError::Malformed(
            "the beacon validator is neither an index nor a 0x public key of 96 hex digits"
                .to_string(),
        ))
    }
}

/// The head slot: from the head header, else from the sync status.
async fn head_slot(
    client: &reqwest::Client,
    base: &reqwest::Url,
    max_bytes: usize,
) -> Result<u64, DutyReadError> {
    let header = read::join(base, &["eth", "v1", "beacon", "headers", "head"])?;
    let first = match read::get_json_capped(client, &header, max_bytes).await {
        Ok(body) => match parse_head_slot(&body) {
            Ok(slot) => return Ok(slot),
            Err(e) => DutyReadError::from(e),
        },
        Err(e @ (DutyReadError::Status(_) | DutyReadError::Malformed(_))) => e,
        Err(e) => return Err(e),
    };
    let syncing = read::join(base, &["eth", "v1", "node", "syncing"])?;
    match read::get_json_capped(client, &syncing, max_bytes).await {
        Ok(body) => parse_head_slot(&body).map_err(|_| first),
        Err(_) => Err(first),
    }
}

/// Reads validator `id` (index or 0x public key) from the beacon node at `beacon`: its
/// status, the head slot, and the liveness of the completed epochs `track` has not
/// recorded yet (at most [`MAX_EPOCHS_PER_READ`], only epochs of its duty, between its
/// activation and exit). Answers longer than `max_bytes` are refused. On an error `track`
/// keeps what it had plus any epoch read before the error.
pub async fn read(
    client: &reqwest::Client,
    beacon: &str,
    id: &str,
    track: &mut LivenessTrack,
    max_bytes: usize,
) -> Result<BeaconValidator, DutyReadError> {
    let base = read::base_url(beacon)?;
    let id = checked_id(id)?;
    let url = read::join(
        &base,
        &["eth", "v1", "beacon", "states", "head", "validators", id],
    )?;
    let validator = parse_validator(&read::get_json_capped(client, &url, max_bytes).await?)?;
    track.for_validator(validator.index);
    let epoch = head_slot(client, &base, max_bytes).await? / SLOTS_PER_EPOCH;
    let ask = Value::Array(vec![Value::String(validator.index.to_string())]);
    for e in track.to_read(epoch, MAX_EPOCHS_PER_READ) {
        if e < validator.activation_epoch || e >= validator.exit_epoch {
            track.skip(e);
            continue;
        }
        let url = read::join(
            &base,
            &["eth", "v1", "validator", "liveness", &e.to_string()],
        )?;
        match read::post_json_capped(client, &url, &ask, max_bytes).await {
            Ok(body) => match parse_liveness(&body, validator.index)? {
                Some(live) => {
                    track.record(e, live);
                }
                None => {
                    return Err(DutyReadError::Malformed(format!(
                        "the liveness answer for epoch {e} does not name validator {}",
                        validator.index
                    )));
                }
            },
            // Older than the node keeps: a gap, not a miss.
            Err(DutyReadError::Status(400 | 404)) if e.saturating_add(1) < epoch => track.skip(e),
            Err(err) => return Err(err),
        }
    }
    Ok(validator)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duty::read::testing;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    const PUBKEY: &str = "0x93247f2209abcacf57b75a51dafae777f9dd38bc7053d1af526f220a7489a6d3a2753e5f3e8b1cfe39b56f43611df74a";

    /// A mainnet-shaped answer of `getStateValidator`.
    fn validator_body(index: u64, status: &str, slashed: bool, exit: &str) -> String {
        format!(
            r#"{{"execution_optimistic":false,"finalized":false,"data":{{"index":"{index}","balance":"32004571012","status":"{status}","validator":{{"pubkey":"{PUBKEY}","withdrawal_credentials":"0x010000000000000000000000b9d7934878b5fb9610b3fe8a5e441e8fad7e293f","effective_balance":"32000000000","slashed":{slashed},"activation_eligibility_epoch":"0","activation_epoch":"10","exit_epoch":"{exit}","withdrawable_epoch":"{exit}"}}}}}}"#
        )
    }

    const HEADER: &str = r#"{"execution_optimistic":false,"finalized":false,"data":{"root":"0xcf8e0d4e9587369b2301d0790347320302cc0943d5a1884560367e8208d920f2","canonical":true,"header":{"message":{"slot":"9876543","proposer_index":"1","parent_root":"0xcf8e0d4e9587369b2301d0790347320302cc0943d5a1884560367e8208d920f2","state_root":"0xcf8e0d4e9587369b2301d0790347320302cc0943d5a1884560367e8208d920f2","body_root":"0xcf8e0d4e9587369b2301d0790347320302cc0943d5a1884560367e8208d920f2"},"signature":"0x1b66ac1fb663c9bc59509846d6ec05345bd908eda73e670af888da41af171505cc411d61252fb6cb3fa0017b679f8bb2305b26a285fa2737f175668d0dff91cc1b66ac1fb663c9bc59509846d6ec05345bd908eda73e670af888da41af171505"}}}"#;

    #[test]
    fn validators() {
        let far = "18446744073709551615";
        type Want = Result<(u64, &'static str, bool, u64, bool), fn(&ParseError) -> bool>;
        let cases: Vec<(&str, String, Want)> = vec![
            (
                "active",
                validator_body(123_456, "active_ongoing", false, far),
                Ok((123_456, "active_ongoing", false, 32_000_000_000, true)),
            ),
            (
                "slashed",
                validator_body(7, "active_slashed", true, "300000"),
                Ok((7, "active_slashed", true, 32_000_000_000, true)),
            ),
            (
                "exited",
                validator_body(7, "exited_unslashed", false, "300000"),
                Ok((7, "exited_unslashed", false, 32_000_000_000, false)),
            ),
            (
                "pending",
                validator_body(7, "pending_queued", false, far),
                Ok((7, "pending_queued", false, 32_000_000_000, false)),
            ),
            (
                "huge balance saturates",
                validator_body(1, "active_ongoing", false, far)
                    .replace(
                        r#""balance":"32004571012""#,
                        r#""balance":"99999999999999999999999""#,
                    )
                    .replace(
                        r#""effective_balance":"32000000000""#,
                        r#""effective_balance":"99999999999999999999999""#,
                    ),
                Ok((1, "active_ongoing", false, u64::MAX, true)),
            ),
            (
                "numbers as numbers",
                validator_body(1, "active_ongoing", false, far)
                    .replace(r#""index":"1""#, r#""index":1"#),
                Ok((1, "active_ongoing", false, 32_000_000_000, true)),
            ),
            (
                "not JSON",
                "Internal Server Error".into(),
                Err(|e| matches!(e, ParseError::NotJson(_))),
            ),
            (
                "empty",
                String::new(),
                Err(|e| matches!(e, ParseError::NotJson(_))),
            ),
            (
                "an error answer",
                r#"{"code":404,"message":"Validator not found"}"#.into(),
                Err(|e| *e == ParseError::Missing("data")),
            ),
            (
                "data a list",
                r#"{"data":[]}"#.into(),
                Err(|e| matches!(e, ParseError::WrongType { field: "data", .. })),
            ),
            (
                "index past u64",
                validator_body(1, "active_ongoing", false, far)
                    .replace(r#""index":"1""#, r#""index":"99999999999999999999999""#),
                Err(|e| {
                    matches!(
                        e,
                        ParseError::Invalid {
                            field: "data.index",
                            ..
                        }
                    )
                }),
            ),
            (
                "negative index",
                validator_body(1, "active_ongoing", false, far)
                    .replace(r#""index":"1""#, r#""index":-1"#),
                Err(|e| {
                    matches!(
                        e,
                        ParseError::Invalid {
                            field: "data.index",
                            ..
                        }
                    )
                }),
            ),
            (
                "no index",
                validator_body(1, "active_ongoing", false, far).replace(r#""index":"1","#, ""),
                Err(|e| *e == ParseError::Missing("data.index")),
            ),
            (
                "slashed as a string",
                validator_body(1, "active_ongoing", false, far)
                    .replace(r#""slashed":false"#, r#""slashed":"false""#),
                Err(|e| {
                    matches!(
                        e,
                        ParseError::WrongType {
                            field: "data.validator.slashed",
                            ..
                        }
                    )
                }),
            ),
            (
                "status garbage",
                validator_body(1, "Active Ongoing!", false, far),
                Err(|e| {
                    matches!(
                        e,
                        ParseError::Invalid {
                            field: "data.status",
                            ..
                        }
                    )
                }),
            ),
            (
                "status a number",
                validator_body(1, "x", false, far).replace(r#""status":"x""#, r#""status":3"#),
                Err(|e| {
                    matches!(
                        e,
                        ParseError::WrongType {
                            field: "data.status",
                            ..
                        }
                    )
                }),
            ),
            (
                "no validator",
                r#"{"data":{"index":"1","balance":"1","status":"active_ongoing"}}"#.into(),
                Err(|e| *e == ParseError::Missing("data.validator")),
            ),
            (
                "balance a float",
                validator_body(1, "active_ongoing", false, far)
                    .replace(r#""balance":"32004571012""#, r#""balance":3.2e1"#),
                Ok((1, "active_ongoing", false, 32_000_000_000, true)),
            ),
            (
                "balance a fraction",
                validator_body(1, "active_ongoing", false, far)
                    .replace(r#""balance":"32004571012""#, r#""balance":3.25"#),
                Err(|e| {
                    matches!(
                        e,
                        ParseError::Invalid {
                            field: "data.balance",
                            ..
                        }
                    )
                }),
            ),
            (
                "deep",
                format!("{}{}", r#"{"data":"#.repeat(200), "}".repeat(200)),
                Err(|e| matches!(e, ParseError::NotJson(_))),
            ),
        ];
        for (name, body, want) in cases {
            let got = parse_validator(body.as_bytes());
            match (&got, want) {
                (Ok(v), Ok((i, s, sl, eb, a))) => {
                    assert_eq!(
                        (
                            v.index,
                            v.status.as_str(),
                            v.slashed,
                            v.effective_balance_gwei,
                            v.active
                        ),
                        (i, s, sl, eb, a),
                        "{name}"
                    );
                }
                (Err(e), Err(ok)) => assert!(ok(e), "{name}: {e:?}"),
                _ => panic!("{name}: {got:?}"),
            }
        }
        let v = parse_validator(validator_body(5, "active_exiting", false, "300000").as_bytes())
            .unwrap();
        assert_eq!(
            (v.activation_epoch, v.exit_epoch, v.balance_gwei),
            (10, 300_000, 32_004_571_012)
        );
        let v =
            parse_validator(validator_body(5, "active_ongoing", false, far).as_bytes()).unwrap();
        assert_eq!(v.exit_epoch, FAR_FUTURE_EPOCH);
    }

    #[test]
    fn liveness() {
        type Want = Result<Option<bool>, fn(&ParseError) -> bool>;
        let cases: Vec<(&str, &str, Want)> = vec![
            (
                "live",
                r#"{"data":[{"index":"1","is_live":true}]}"#,
                Ok(Some(true)),
            ),
            (
                "not live",
                r#"{"data":[{"index":"1","is_live":false}]}"#,
                Ok(Some(false)),
            ),
            (
                "among others, with Lighthouse's old epoch field",
                r#"{"data":[{"index":"0","epoch":"9","is_live":false},{"index":"1","epoch":"9","is_live":true}]}"#,
                Ok(Some(true)),
            ),
            (
                "not named",
                r#"{"data":[{"index":"2","is_live":true}]}"#,
                Ok(None),
            ),
            ("empty list", r#"{"data":[]}"#, Ok(None)),
            ("not JSON", "", Err(|e| matches!(e, ParseError::NotJson(_)))),
            (
                "400",
                r#"{"code":400,"message":"Invalid epoch: -2"}"#,
                Err(|e| *e == ParseError::Missing("data")),
            ),
            (
                "data an object",
                r#"{"data":{"index":"1","is_live":true}}"#,
                Err(|e| matches!(e, ParseError::WrongType { field: "data", .. })),
            ),
            (
                "item a string",
                r#"{"data":["1"]}"#,
                Err(|e| {
                    matches!(
                        e,
                        ParseError::WrongType {
                            field: "data[]",
                            ..
                        }
                    )
                }),
            ),
            (
                "is_live a string",
                r#"{"data":[{"index":"1","is_live":"true"}]}"#,
                Err(|e| matches!(e, ParseError::WrongType { .. })),
            ),
            (
                "no is_live",
                r#"{"data":[{"index":"1"}]}"#,
                Err(|e| *e == ParseError::Missing("data[].is_live")),
            ),
            (
                "index huge",
                r#"{"data":[{"index":"99999999999999999999999","is_live":true}]}"#,
                Err(|e| matches!(e, ParseError::Invalid { .. })),
            ),
        ];
        for (name, body, want) in cases {
            let got = parse_liveness(body.as_bytes(), 1);
            match (&got, want) {
                (Ok(g), Ok(w)) => assert_eq!(*g, w, "{name}"),
                (Err(e), Err(ok)) => assert!(ok(e), "{name}: {e:?}"),
                _ => panic!("{name}: {got:?}"),
            }
        }
    }

    #[test]
    fn head_slots() {
        assert_eq!(parse_head_slot(HEADER.as_bytes()), Ok(9_876_543));
        let syncing = r#"{"data":{"head_slot":"9876544","sync_distance":"0","is_syncing":false,"is_optimistic":false,"el_offline":false}}"#;
        assert_eq!(parse_head_slot(syncing.as_bytes()), Ok(9_876_544));
        let bad: &[(&str, &str)] = &[
            ("", "not JSON"),
            ("[]", "no data"),
            (r#"{"data":{}}"#, "no header"),
            (r#"{"data":{"header":{"message":{}}}}"#, "no slot"),
            (
                r#"{"data":{"header":{"message":{"slot":true}}}}"#,
                "slot a bool",
            ),
            (
                r#"{"data":{"header":{"message":{"slot":"99999999999999999999999"}}}}"#,
                "slot past u64",
            ),
            (r#"{"data":{"head_slot":"-5"}}"#, "negative"),
            (r#"{"data":{"header":"x"}}"#, "header a string"),
        ];
        for (body, name) in bad {
            assert!(parse_head_slot(body.as_bytes()).is_err(), "{name}");
        }
    }

    #[test]
    fn track_records_each_completed_epoch_once() {
        let mut t = LivenessTrack::new(8);
        assert!(
            t.to_read(0, 4).is_empty(),
            "no epoch is complete in epoch 0"
        );
        assert_eq!(
            t.to_read(100, 4),
            vec![99],
            "a new record starts at the previous epoch"
        );
        assert!(t.record(99, true));
        assert!(!t.record(99, false), "recorded already");
        assert!(!t.record(98, false), "older than what is recorded");
        assert!(t.to_read(100, 4).is_empty());
        assert_eq!(t.to_read(101, 4), vec![100]);
        // A long pause: only the newest few are asked.
        assert_eq!(t.to_read(120, 4), vec![116, 117, 118, 119]);
        assert!(t.to_read(120, 0).is_empty());
        for e in 116..=119 {
            assert!(t.record(e, false));
        }
        assert_eq!(t.missed_in_a_row(), 4);
        assert_eq!(t.last_live_epoch(), Some(99));
        assert_eq!(t.missed_in_window(4), 4);
        assert_eq!(t.missed_in_window(100), 4);
        assert_eq!(t.recorded_in_window(100), 5);
        assert_eq!(t.missed_in_window(0), 0);
        // A gap (no duty that epoch) neither breaks the run nor adds to it.
        t.skip(120);
        assert_eq!(t.to_read(122, 4), vec![121]);
        assert!(t.record(121, false));
        assert_eq!(t.missed_in_a_row(), 5);
        assert_eq!(t.missed_in_window(3), 2, "epochs 119..=121: 120 is a gap");
        assert_eq!(t.recorded_in_window(3), 2);
        assert_eq!(t.missed_in_window(2), 1);
        assert!(t.record(122, true));
        assert_eq!((t.missed_in_a_row(), t.last_live_epoch()), (0, Some(122)));
        // Bounded: the oldest fall off.
        for e in 123..200 {
            t.record(e, e % 2 == 0);
        }
        assert_eq!(t.recorded_in_window(1000), 8);
        assert_eq!(t.newest_epoch(), Some(199));
        assert_eq!(t.missed_in_a_row(), 1);
        assert_eq!(t.last_live_epoch(), Some(198));
        // Another validator: a new record.
        t.for_validator(5);
        t.for_validator(5);
        assert_eq!(t.validator(), Some(5));
        assert_eq!(t.newest_epoch(), None);
        t.record(3, true);
        t.for_validator(6);
        assert_eq!((t.newest_epoch(), t.last_live_epoch()), (None, None));
        // The ends of u64 do not overflow.
        let mut t = LivenessTrack::default();
        assert_eq!(t.to_read(u64::MAX, 4), vec![u64::MAX - 1]);
        assert!(t.record(u64::MAX - 1, false));
        assert!(t.to_read(u64::MAX, u64::MAX).is_empty());
        t.skip(u64::MAX);
        assert_eq!(t.missed_in_window(u64::MAX), 1);
    }

    /// A beacon node on loopback: the head slot, the validator's answer and each epoch's
    /// liveness are the test's to set; every liveness request is counted.
    #[derive(Clone, Default)]
    struct Node {
        slot: Arc<AtomicU64>,
        validator: Arc<Mutex<String>>,
        /// Epochs the validator was live in; epochs in `refuse` answer 400, `broken` 500.
        live: Arc<Mutex<Vec<u64>>>,
        refuse_below: Arc<AtomicU64>,
        broken: Arc<Mutex<Vec<u64>>>,
        asked: Arc<Mutex<Vec<u64>>>,
        headers_gone: Arc<std::sync::atomic::AtomicBool>,
    }

    async fn beacon(node: Node) -> String {
        use axum::{
            Router,
            extract::{Path, State},
            http::StatusCode,
            response::IntoResponse,
            routing::{get, post},
        };
        let app = Router::new()
            .route(
                "/eth/v1/beacon/states/head/validators/{id}",
                get(|State(n): State<Node>, Path(id): Path<String>| async move {
                    if id == "666" {
                        return testing::streamed(1 << 20).into_response();
                    }
                    if id == "404" {
                        return (StatusCode::NOT_FOUND, r#"{"code":404,"message":"Validator not found"}"#).into_response();
                    }
                    n.validator.lock().unwrap().clone().into_response()
                }),
            )
            .route(
                "/eth/v1/beacon/headers/head",
                get(|State(n): State<Node>| async move {
                    if n.headers_gone.load(Ordering::Relaxed) {
                        return StatusCode::NOT_FOUND.into_response();
                    }
                    HEADER.replace("9876543", &n.slot.load(Ordering::Relaxed).to_string()).into_response()
                }),
            )
            .route(
                "/eth/v1/node/syncing",
                get(|State(n): State<Node>| async move {
                    format!(r#"{{"data":{{"head_slot":"{}","sync_distance":"0","is_syncing":false,"is_optimistic":false,"el_offline":false}}}}"#, n.slot.load(Ordering::Relaxed))
                }),
            )
            .route(
                "/eth/v1/validator/liveness/{epoch}",
                post(|State(n): State<Node>, Path(epoch): Path<u64>, body: String| async move {
                    let ids: Vec<String> = serde_json::from_str(&body).unwrap();
                    n.asked.lock().unwrap().push(epoch);
                    if epoch < n.refuse_below.load(Ordering::Relaxed) {
                        return (StatusCode::BAD_REQUEST, format!(r#"{{"code":400,"message":"Invalid epoch: {epoch}"}}"#)).into_response();
                    }
                    if n.broken.lock().unwrap().contains(&epoch) {
                        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                    }
                    let live = n.live.lock().unwrap().contains(&epoch);
                    let items: Vec<String> = ids.iter().map(|i| format!(r#"{{"index":"{i}","is_live":{live}}}"#)).collect();
                    format!(r#"{{"data":[{}]}}"#, items.join(",")).into_response()
                }),
            )
            .with_state(node);
        testing::serve(app).await
    }

    #[tokio::test]
    async fn read_over_loopback() {
        let far = "18446744073709551615";
        let node = Node::default();
        *node.validator.lock().unwrap() = validator_body(42, "active_ongoing", false, far);
        node.slot
            .store(100 * SLOTS_PER_EPOCH + 5, Ordering::Relaxed);
        *node.live.lock().unwrap() = vec![99, 100];
        let url = beacon(node.clone()).await;
        let c = testing::client(Duration::from_secs(5));
        let mut t = LivenessTrack::default();
        let max = 64 * 1024;

        let v = read(&c, &url, "42", &mut t, max).await.unwrap();
        assert_eq!((v.index, v.active), (42, true));
        assert_eq!(
            (t.validator(), t.last_live_epoch(), t.missed_in_a_row()),
            (Some(42), Some(99), 0)
        );
        // The same epoch again: nothing more is asked.
        read(&c, &url, "42", &mut t, max).await.unwrap();
        assert_eq!(*node.asked.lock().unwrap(), vec![99]);
        // Three epochs on (the first two missed), by public key.
        node.slot.store(103 * SLOTS_PER_EPOCH, Ordering::Relaxed);
        read(&c, &url, PUBKEY, &mut t, max).await.unwrap();
        assert_eq!(*node.asked.lock().unwrap(), vec![99, 100, 101, 102]);
        assert_eq!(
            (
                t.last_live_epoch(),
                t.missed_in_a_row(),
                t.missed_in_window(10)
            ),
            (Some(100), 2, 2)
        );
        // A long pause; the node keeps only the last two epochs: the rest are gaps.
        node.asked.lock().unwrap().clear();
        node.slot.store(120 * SLOTS_PER_EPOCH, Ordering::Relaxed);
        node.refuse_below.store(118, Ordering::Relaxed);
        read(&c, &url, "42", &mut t, max).await.unwrap();
        assert_eq!(*node.asked.lock().unwrap(), vec![116, 117, 118, 119]);
        assert_eq!((t.missed_in_a_row(), t.recorded_in_window(4)), (4, 2));
        // The previous epoch refused is an error, not a gap.
        node.slot.store(121 * SLOTS_PER_EPOCH, Ordering::Relaxed);
        node.refuse_below.store(200, Ordering::Relaxed);
        assert_eq!(
            read(&c, &url, "42", &mut t, max).await,
            Err(DutyReadError::Status(400))
        );
        node.refuse_below.store(0, Ordering::Relaxed);
        // A 500: an error, and the epoch is asked again next time.
        node.broken.lock().unwrap().push(120);
        assert_eq!(
            read(&c, &url, "42", &mut t, max).await,
            Err(DutyReadError::Status(500))
        );
        node.broken.lock().unwrap().clear();
        node.asked.lock().unwrap().clear();
        node.headers_gone.store(true, Ordering::Relaxed);
        read(&c, &url, "42", &mut t, max).await.unwrap();
        assert_eq!(
            *node.asked.lock().unwrap(),
            vec![120],
            "head slot from /eth/v1/node/syncing"
        );
        assert_eq!(t.missed_in_a_row(), 5);

        // An exited validator has no duty: nothing is asked.
        node.asked.lock().unwrap().clear();
        *node.validator.lock().unwrap() = validator_body(42, "exited_unslashed", false, "121");
        node.slot.store(125 * SLOTS_PER_EPOCH, Ordering::Relaxed);
        let v = read(&c, &url, "42", &mut t, max).await.unwrap();
        assert!(!v.active);
        assert!(node.asked.lock().unwrap().is_empty());
        // Another validator under the same record starts it anew.
        *node.validator.lock().unwrap() = validator_body(43, "active_ongoing", false, far);
        read(&c, &url, "43", &mut t, max).await.unwrap();
        assert_eq!((t.validator(), t.newest_epoch()), (Some(43), Some(124)));

        // Failures.
        assert_eq!(
            read(&c, &url, "666", &mut t, max).await,
            Err(DutyReadError::TooLarge(max))
        );
        assert_eq!(
            read(&c, &url, "404", &mut t, max).await,
            Err(DutyReadError::Status(404))
        );
        for bad in ["", "-1", "0x12", "1/../../x", "99999999999999999999999"] {
            assert!(
                matches!(
                    read(&c, &url, bad, &mut t, max).await,
                    Err(DutyReadError::Malformed(_))
                ),
                "{bad}"
            );
        }
        *node.validator.lock().unwrap() = r#"{"data":{"index":"43","balance":"1","status":"active_ongoing","validator":{"slashed":"no"}}}"#.into();
        let e = read(&c, &url, "43", &mut t, max).await.unwrap_err();
        assert!(
            matches!(&e, DutyReadError::Malformed(m) if m.contains("data.validator.slashed")),
            "{e:?}"
        );
        let dead = testing::dead().replace("http://", "http://me:t0ken@") + "/?apikey=hush";
        let e = read(&c, &dead, "43", &mut t, max).await.unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, DutyReadError::Unreachable(_)), "{e:?}");
        for secret in ["me:", "t0ken", "hush"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}
