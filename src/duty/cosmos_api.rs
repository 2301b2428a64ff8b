//! What the Cosmos SDK REST API (the LCD, `api.enable` in `app.toml`, port 1317; SDK
//! v0.47 to v0.50) says of a validator's standing:
//!
//! - `GET /cosmos/slashing/v1beta1/signing_infos/{valcons}` →
//!   `{"val_signing_info": {"address", "start_height", "index_offset", "jailed_until"
//!   (RFC 3339), "tombstoned", "missed_blocks_counter"}}`;
//! - `GET /cosmos/staking/v1beta1/validators/{valoper}` →
//!   `{"validator": {"operator_address", "consensus_pubkey", "jailed", "status"
//!   (`BOND_STATUS_BONDED` | `_UNBONDING` | `_UNBONDED` | `_UNSPECIFIED`), "tokens", ...}}`.
//!
//! 64-bit integers come as decimal strings. The gateway writes proto3 JSON: a field at its
//! default (`false`, `0`, the zero enum) may be left out, so an absent `jailed`,
//! `tombstoned` or `status` reads as that default; the wrapper object and the address in it
//! are required (they tell an answer from something else). The camelCase spelling of the
//! same fields (grpcurl, some gateways) is read too. An unknown address answers 404.

use super::address;
use super::read::{self, DutyReadError, ParseError};
use jiff::Timestamp;
use serde_json::Value;

/// The bonded status of a validator in the active set.
pub const BONDED: &str = "BOND_STATUS_BONDED";

/// What the Cosmos SDK says of a validator. `None`: not read (the address for it was not
/// given) or not in the answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CosmosStanding {
    /// Jailed: the staking module's flag when the operator address was read, else the
    /// signing info's `jailed_until` being still ahead.
    pub jailed: Option<bool>,
    /// Tombstoned (double-signed, out for good).
    pub tombstoned: Option<bool>,
    /// In the bonded (active) set.
    pub bonded: Option<bool>,
    /// `BOND_STATUS_...` as the staking module says it.
    pub status: Option<String>,
    /// Bonded tokens (base denomination; saturates at `u64::MAX`).
    pub tokens: Option<u64>,
    /// Blocks missed in the current slashing window (the SDK's own count).
    pub missed_blocks_counter: Option<u64>,
    /// Until when the validator cannot unjail; `None` when it never was jailed (the SDK
    /// writes the Unix epoch then).
    pub jailed_until: Option<Timestamp>,
}

/// The signing info's fields that matter.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SigningInfo {
    jailed_until: Option<Timestamp>,
    tombstoned: bool,
    missed: Option<u64>,
}

/// A field by its proto name, or by its camelCase JSON name.
fn get<'a>(v: &'a Value, snake: &str, camel: &str) -> Option<&'a Value> {
    match v.get(snake) {
        None | Some(Value::Null) => v.get(camel).filter(|x| !x.is_null()),
        some => some,
    }
}

fn signing_info(body: &[u8]) -> Result<SigningInfo, ParseError> {
    let v = read::json(body)?;
    let info = get(&v, "val_signing_info", "valSigningInfo")
        .ok_or(ParseError::Missing("val_signing_info"))?;
    if !info.is_object() {
        return Err(ParseError::WrongType {
            field: "val_signing_info",
            expected: "an object",
        });
    }
    match info.get("address") {
        Some(Value::String(_)) => {}
        None | Some(Value::Null) => return Err(ParseError::Missing("val_signing_info.address")),
        Some(_) => {
            return Err(ParseError::WrongType {
                field: "val_signing_info.address",
                expected: "a string",
            });
        }
    }
    let tombstoned = match info.get("tombstoned") {
        None | Some(Value::Null) => false,
        Some(x) => x.as_bool().ok_or(ParseError::WrongType {
            field: "val_signing_info.tombstoned",
            expected: "true or false",
        })?,
    };
    let missed = get(info, "missed_blocks_counter", "missedBlocksCounter")
        .map(|x| read::u64_saturating(x, "val_signing_info.missed_blocks_counter"))
        .transpose()?;
    let jailed_until = match get(info, "jailed_until", "jailedUntil") {
        None => None,
        Some(Value::String(s)) => {
            let t = rfc3339(s).ok_or(ParseError::Invalid {
                field: "val_signing_info.jailed_until",
                why: "it is not an RFC 3339 time between the years 0 and 9999",
            })?;
            // The SDK writes the Unix epoch (or Go's zero time) for "never jailed".
            (t > Timestamp::UNIX_EPOCH).then_some(t)
        }
        Some(_) => {
            return Err(ParseError::WrongType {
                field: "val_signing_info.jailed_until",
                expected: "an RFC 3339 time string",
            });
        }
    };
    Ok(SigningInfo {
        jailed_until,
        tombstoned,
        missed,
    })
}

/// An RFC 3339 time. The last hours of the year 9999 lie past what [`Timestamp`] holds;
/// the SDK jails a double-signer until `9999-12-31T23:59:59Z` ("forever"), read as
/// [`Timestamp::MAX`].
fn rfc3339(s: &str) -> Option<Timestamp> {
    if s.len() > 64 {
        return None;
    }
    match s.parse::<Timestamp>() {
        Ok(t) => Some(t),
        Err(_) if s.starts_with("9999-12-") => {
            // Well-formed but out of range: check it parses with the year moved back.
            format!("9998{}", &s[4..])
                .parse::<Timestamp>()
                .ok()
                .map(|_| Timestamp::MAX)
        }
        Err(_) => None,
    }
}

/// Reads a `/cosmos/slashing/v1beta1/signing_infos/{valcons}` answer: (jailed — its
/// `jailed_until` is after `now` —, tombstoned, the missed blocks counter).
pub fn parse_signing_info(
    body: &[u8],
    now: Timestamp,
) -> Result<(bool, bool, Option<u64>), ParseError> {
    let s = signing_info(body)?;
    Ok((
        s.jailed_until.is_some_and(|t| t > now),
        s.tombstoned,
        s.missed,
    ))
}

/// Reads a `/cosmos/staking/v1beta1/validators/{valoper}` answer: (jailed, the bond status,
/// the bonded tokens, saturating at `u64::MAX`).
pub fn parse_validator(body: &[u8]) -> Result<(bool, String, Option<u64>), ParseError> {
    let v = read::json(body)?;
    let val = read::object(&v, "validator", "validator")?;
    match get(val, "operator_address", "operatorAddress") {
        Some(Value::String(_)) => {}
        None => return Err(ParseError::Missing("validator.operator_address")),
        Some(_) => {
            return Err(ParseError::WrongType {
                field: "validator.operator_address",
                expected: "a string",
            });
        }
    }
    let jailed = match val.get("jailed") {
        None | Some(Value::Null) => false,
        Some(x) => x.as_bool().ok_or(ParseError::WrongType {
            field: "validator.jailed",
            expected: "true or false",
        })?,
    };
    let status = match val.get("status") {
        None | Some(Value::Null) => "BOND_STATUS_UNSPECIFIED".to_string(),
        // Gateways set to write enums as numbers.
        Some(Value::Number(n)) => match n.as_u64() {
            Some(0) => "BOND_STATUS_UNSPECIFIED".to_string(),
            Some(1) => "BOND_STATUS_UNBONDED".to_string(),
            Some(2) => "BOND_STATUS_UNBONDING".to_string(),
            Some(3) => BONDED.to_string(),
            _ => {
                return Err(ParseError::Invalid {
                    field: "validator.status",
                    why: "it is not a known bond status number (0 to 3)",
                });
            }
        },
        Some(Value::String(s)) => {
            let plausible = !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            if !plausible {
                return Err(ParseError::Invalid {
                    field: "validator.status",
                    why: "it is not a BOND_STATUS_... name",
                });
            }
            s.clone()
        }
        Some(_) => {
            return Err(ParseError::WrongType {
                field: "validator.status",
                expected: "a string",
            });
        }
    };
    let tokens = match val.get("tokens") {
        None | Some(Value::Null) => None,
        Some(x) => Some(read::u64_saturating(x, "validator.tokens")?),
    };
    Ok((jailed, status, tokens))
}

/// Reads the standing of a validator from the Cosmos SDK REST API at `api` (both reads at
/// once): its signing info when `valcons` is given (bech32, or hex with `valoper` to take
/// the chain's prefix from), its staking record when `valoper` is given. Answers longer
/// than `max_bytes` are refused. The first failure is the error.
pub async fn standing(
    client: &reqwest::Client,
    api: &str,
    valcons: Option<&str>,
    valoper: Option<&str>,
    max_bytes: usize,
) -> Result<CosmosStanding, DutyReadError> {
    let base = read::base_url(api)?;
    let valcons = valcons.map(|c| bech32_valcons(c, valoper)).transpose()?;
    let valoper = valoper.map(str::trim);
    let slashing = async {
        match &valcons {
            None => Ok(None),
            Some(c) => {
                let url = read::join(
                    &base,
                    &["cosmos", "slashing", "v1beta1", "signing_infos", c],
                )?;
                let body = read::get_json_capped(client, &url, max_bytes).await?;
                Ok::<_, DutyReadError>(Some(signing_info(&body)?))
            }
        }
    };
    let staking = async {
        match valoper {
            None => Ok(None),
            Some(o) => {
                let url = read::join(&base, &["cosmos", "staking", "v1beta1", "validators", o])?;
                let body = read::get_json_capped(client, &url, max_bytes).await?;
                Ok::<_, DutyReadError>(Some(parse_validator(&body)?))
            }
        }
    };
    let (slashing, staking) = tokio::join!(slashing, staking);
    let (slashing, staking) = (slashing?, staking?);
    let now = Timestamp::now();
    let mut out = CosmosStanding::default();
    if let Some(s) = &slashing {
        out.jailed = Some(s.jailed_until.is_some_and(|t| t > now));
        out.tombstoned = Some(s.tombstoned);
        out.missed_blocks_counter = s.missed;
        out.jailed_until = s.jailed_until;
    }
    if let Some((jailed, status, tokens)) = staking {
        out.jailed = Some(jailed);
        out.bonded = Some(status == BONDED);
        out.status = Some(status);
        out.tokens = tokens;
    }
    Ok(out)
}

/// The bech32 consensus address the REST API takes: as given when it is bech32 already,
/// built with the prefix of `valoper`'s chain when it is hex.
fn bech32_valcons(valcons: &str, valoper: Option<&str>) -> Result<String, DutyReadError> {
    let bad =
        |e: address::AddressError| DutyReadError::Malformed(format!("consensus address: {e}"));
    let hex = address::consensus_hex(valcons).map_err(bad)?;
    let given = valcons.trim();
    if !given.bytes().all(|b| b.is_ascii_hexdigit()) && !given.starts_with("0x") {
        return Ok(given.to_ascii_lowercase());
    }
    let Some(valoper) = valoper else {
        return Err(DutyReadError::Malformed(
            "the signing info needs the bech32 consensus address (...valcons1...), or the operator address to take the chain's prefix from"
                .to_string(),
        ));
    };
    let hrp = address::valcons_prefix_for(valoper)
        .map_err(|e| DutyReadError::Malformed(format!("operator address: {e}")))?;
    address::to_bech32(&hrp, &hex).map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duty::read::testing;
    use std::time::Duration;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const NOW: &str = "2024-06-01T12:00:00Z";

    /// The Cosmos SDK docs' example (`simd query slashing signing-info`), as the REST
    /// gateway writes it.
    const SIGNING_OK: &str = r#"{"val_signing_info":{"address":"cosmosvalcons1a0kkjnnvuy3ylv0g5twcae368ptgk83tyalw6t","start_height":"0","index_offset":"2068","jailed_until":"1970-01-01T00:00:00Z","tombstoned":false,"missed_blocks_counter":"0"}}"#;
    const SIGNING_JAILED: &str = r#"{"val_signing_info":{"address":"cosmosvalcons1a0kkjnnvuy3ylv0g5twcae368ptgk83tyalw6t","start_height":"9123","index_offset":"40211","jailed_until":"2024-06-01T12:10:00.123456789Z","tombstoned":false,"missed_blocks_counter":"9501"}}"#;
    /// Double-signing: tombstoned, jailed "forever" (the SDK's DoubleSignJailEndTime).
    const SIGNING_TOMBSTONED: &str = r#"{"val_signing_info":{"address":"cosmosvalcons1a0kkjnnvuy3ylv0g5twcae368ptgk83tyalw6t","start_height":"1","index_offset":"7","jailed_until":"9999-12-31T23:59:59Z","tombstoned":true,"missed_blocks_counter":"0"}}"#;

    /// A bonded validator as the staking REST endpoint returns it (fields from a real
    /// chain's answer).
    const VALIDATOR_BONDED: &str = r#"{"validator":{"operator_address":"cosmosvaloper1rcp29q3hpd246n6qak7jluqep4v006cdsc2kkl","consensus_pubkey":{"@type":"/cosmos.crypto.ed25519.PubKey","key":"i4unhp2x1nry+iBrSBa4eag4e9rOU//MA4vcwHVJws0="},"jailed":false,"status":"BOND_STATUS_BONDED","tokens":"80216413085275","delegator_shares":"80296709794859.478689896810257297","description":{"moniker":"Plug Storm Foundation-1","identity":"","website":"","security_contact":"","details":""},"unbonding_height":"3288539","unbonding_time":"2022-04-19T08:50:41.926091423Z","commission":{"commission_rates":{"rate":"0.100000000000000000","max_rate":"0.200000000000000000","max_change_rate":"0.010000000000000000"},"update_time":"2021-08-19T08:56:38.706170801Z"},"min_self_delegation":"1000000","unbonding_on_hold_ref_count":"0","unbonding_ids":[]}}"#;

    #[test]
    fn signing_infos() {
        let now = at(NOW);
        type Want = Result<(bool, bool, Option<u64>), fn(&ParseError) -> bool>;
        let cases: Vec<(&str, String, Want)> = vec![
            ("healthy", SIGNING_OK.into(), Ok((false, false, Some(0)))),
            ("jailed", SIGNING_JAILED.into(), Ok((true, false, Some(9501)))),
            ("tombstoned", SIGNING_TOMBSTONED.into(), Ok((true, true, Some(0)))),
            (
                "jail served",
                SIGNING_JAILED.replace("2024-06-01T12:10", "2024-06-01T11:50"),
                Ok((false, false, Some(9501))),
            ),
            (
                "camelCase (grpcurl), defaults left out",
                r#"{"valSigningInfo":{"address":"cosmosvalcons1x","indexOffset":"5","jailedUntil":"1970-01-01T00:00:00Z"}}"#.into(),
                Ok((false, false, None)),
            ),
            (
                "offset time",
                r#"{"val_signing_info":{"address":"a","jailed_until":"2024-06-01T14:00:00+02:00","missed_blocks_counter":"3"}}"#.into(),
                Ok((false, false, Some(3))),
            ),
            (
                "Go's zero time",
                r#"{"val_signing_info":{"address":"a","jailed_until":"0001-01-01T00:00:00Z"}}"#.into(),
                Ok((false, false, None)),
            ),
            (
                "huge counter saturates",
                SIGNING_OK.replace(r#""missed_blocks_counter":"0""#, r#""missed_blocks_counter":"99999999999999999999999""#),
                Ok((false, false, Some(u64::MAX))),
            ),
            ("not JSON", "<html>bad gateway</html>".into(), Err(|e| matches!(e, ParseError::NotJson(_)))),
            ("empty", String::new(), Err(|e| matches!(e, ParseError::NotJson(_)))),
            ("empty object", "{}".into(), Err(|e| *e == ParseError::Missing("val_signing_info"))),
            ("an error answer", r#"{"code":5,"message":"not found","details":[]}"#.into(), Err(|e| *e == ParseError::Missing("val_signing_info"))),
            ("no address", r#"{"val_signing_info":{}}"#.into(), Err(|e| *e == ParseError::Missing("val_signing_info.address"))),
            ("array", r#"{"val_signing_info":[1]}"#.into(), Err(|e| matches!(e, ParseError::WrongType { .. }))),
            (
                "tombstoned as a string",
                SIGNING_OK.replace(r#""tombstoned":false"#, r#""tombstoned":"false""#),
                Err(|e| matches!(e, ParseError::WrongType { field: "val_signing_info.tombstoned", .. })),
            ),
            (
                "negative counter",
                SIGNING_OK.replace(r#""missed_blocks_counter":"0""#, r#""missed_blocks_counter":"-4""#),
                Err(|e| matches!(e, ParseError::Invalid { .. })),
            ),
            (
                "counter as an object",
                SIGNING_OK.replace(r#""missed_blocks_counter":"0""#, r#""missed_blocks_counter":{}"#),
                Err(|e| matches!(e, ParseError::WrongType { .. })),
            ),
            (
                "garbled time",
                SIGNING_OK.replace("1970-01-01T00:00:00Z", "yesterday"),
                Err(|e| matches!(e, ParseError::Invalid { field: "val_signing_info.jailed_until", .. })),
            ),
            (
                "year 10000",
                SIGNING_OK.replace("1970-01-01T00:00:00Z", "10000-01-01T00:00:00Z"),
                Err(|e| matches!(e, ParseError::Invalid { .. })),
            ),
            (
                "time as a number",
                SIGNING_OK.replace(r#""1970-01-01T00:00:00Z""#, "0"),
                Err(|e| matches!(e, ParseError::WrongType { .. })),
            ),
            ("deep", format!("{}{}", r#"{"val_signing_info":"#.repeat(10_000), "}".repeat(10_000)), Err(|e| matches!(e, ParseError::NotJson(_)))),
        ];
        for (name, body, want) in cases {
            let got = parse_signing_info(body.as_bytes(), now);
            match (&got, want) {
                (Ok(g), Ok(w)) => assert_eq!(*g, w, "{name}"),
                (Err(e), Err(ok)) => {
                    assert!(ok(e), "{name}: {e:?}");
                    assert!(!e.to_string().contains("cosmosvalcons"), "{name}: {e}");
                }
                _ => panic!("{name}: {got:?}"),
            }
        }
    }

    #[test]
    fn validators() {
        type Want = Result<(bool, &'static str, Option<u64>), fn(&ParseError) -> bool>;
        let cases: Vec<(&str, String, Want)> = vec![
            ("bonded", VALIDATOR_BONDED.into(), Ok((false, BONDED, Some(80_216_413_085_275)))),
            (
                "jailed, unbonding",
                VALIDATOR_BONDED
                    .replace(r#""jailed":false"#, r#""jailed":true"#)
                    .replace("BOND_STATUS_BONDED", "BOND_STATUS_UNBONDING"),
                Ok((true, "BOND_STATUS_UNBONDING", Some(80_216_413_085_275))),
            ),
            (
                "unbonded",
                VALIDATOR_BONDED.replace("BOND_STATUS_BONDED", "BOND_STATUS_UNBONDED"),
                Ok((false, "BOND_STATUS_UNBONDED", Some(80_216_413_085_275))),
            ),
            (
                // An EVM chain's 18-decimal tokens overflow 64 bits.
                "tokens past u64",
                VALIDATOR_BONDED.replace("80216413085275", "268000000000000000000"),
                Ok((false, BONDED, Some(u64::MAX))),
            ),
            (
                "camelCase, jailed left out (grpcurl)",
                r#"{"validator":{"operatorAddress":"cosmosvaloper1rne8lgs98p0jqe82sgt0qr4rdn4hgvmgp9ggcc","status":"BOND_STATUS_BONDED","tokens":"10000000","delegatorShares":"10000000000000000000000000"}}"#.into(),
                Ok((false, BONDED, Some(10_000_000))),
            ),
            (
                "status as a number, no tokens",
                r#"{"validator":{"operator_address":"x","status":2}}"#.into(),
                Ok((false, "BOND_STATUS_UNBONDING", None)),
            ),
            (
                "status left out (the zero enum)",
                r#"{"validator":{"operator_address":"x","jailed":true}}"#.into(),
                Ok((true, "BOND_STATUS_UNSPECIFIED", None)),
            ),
            ("not JSON", "502 Bad Gateway".into(), Err(|e| matches!(e, ParseError::NotJson(_)))),
            ("empty", String::new(), Err(|e| matches!(e, ParseError::NotJson(_)))),
            ("null", "null".into(), Err(|e| *e == ParseError::Missing("validator"))),
            ("not found", r#"{"code":5,"message":"validator cosmosvaloper1x not found: key not found","details":[]}"#.into(), Err(|e| *e == ParseError::Missing("validator"))),
            ("no operator", r#"{"validator":{"jailed":false}}"#.into(), Err(|e| *e == ParseError::Missing("validator.operator_address"))),
            ("validator a string", r#"{"validator":"x"}"#.into(), Err(|e| matches!(e, ParseError::WrongType { .. }))),
            (
                "jailed as a number",
                VALIDATOR_BONDED.replace(r#""jailed":false"#, r#""jailed":0"#),
                Err(|e| matches!(e, ParseError::WrongType { field: "validator.jailed", .. })),
            ),
            (
                "status garbage",
                VALIDATOR_BONDED.replace("BOND_STATUS_BONDED", "bonded <script>"),
                Err(|e| matches!(e, ParseError::Invalid { field: "validator.status", .. })),
            ),
            (
                "status 7",
                VALIDATOR_BONDED.replace(r#""BOND_STATUS_BONDED""#, "7"),
                Err(|e| matches!(e, ParseError::Invalid { .. })),
            ),
            (
                "status huge",
                VALIDATOR_BONDED.replace("BOND_STATUS_BONDED", &"A".repeat(100_000)),
                Err(|e| matches!(e, ParseError::Invalid { .. })),
            ),
            (
                "tokens decimal",
                VALIDATOR_BONDED.replace(r#""tokens":"80216413085275""#, r#""tokens":"1.5""#),
                Err(|e| matches!(e, ParseError::Invalid { field: "validator.tokens", .. })),
            ),
            (
                "tokens a list",
                VALIDATOR_BONDED.replace(r#""tokens":"80216413085275""#, r#""tokens":["1"]"#),
                Err(|e| matches!(e, ParseError::WrongType { .. })),
            ),
            ("deep", format!("{}1{}", "[".repeat(1_000_000), "]".repeat(1_000_000)), Err(|e| matches!(e, ParseError::NotJson(_)))),
        ];
        for (name, body, want) in cases {
            let got = parse_validator(body.as_bytes());
            match (&got, want) {
                (Ok((j, s, t)), Ok((wj, ws, wt))) => {
                    assert_eq!((*j, s.as_str(), *t), (wj, ws, wt), "{name}")
                }
                (Err(e), Err(ok)) => assert!(ok(e), "{name}: {e:?}"),
                _ => panic!("{name}: {got:?}"),
            }
        }
    }

    #[test]
    fn hex_consensus_addresses_take_the_operators_prefix() {
        let valoper = "cosmosvaloper1rcp29q3hpd246n6qak7jluqep4v006cdsc2kkl";
        let b32 = "cosmosvalcons1a0kkjnnvuy3ylv0g5twcae368ptgk83tyalw6t";
        let hex = "EBED694E6CE1224FB1E8A2DD8EE63A38568B1E2B";
        assert_eq!(bech32_valcons(hex, Some(valoper)).as_deref(), Ok(b32));
        assert_eq!(bech32_valcons(b32, None).as_deref(), Ok(b32));
        assert!(matches!(
            bech32_valcons(hex, None),
            Err(DutyReadError::Malformed(_))
        ));
        assert!(matches!(
            bech32_valcons(valoper, None),
            Err(DutyReadError::Malformed(m)) if m.contains("operator address (valoper)")
        ));
    }

    #[tokio::test]
    async fn standing_over_loopback() {
        use axum::{Router, extract::Path, http::StatusCode, response::IntoResponse, routing::get};
        let signing = |Path(c): Path<String>| async move {
            match c.as_str() {
                "cosmosvalcons1a0kkjnnvuy3ylv0g5twcae368ptgk83tyalw6t" => {
                    SIGNING_TOMBSTONED.into_response()
                }
                "cosmosvalcons1jjll9ffc9jsy39c59dx9hps9kdfj7hm7w63d0c" => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "panic: secret").into_response()
                }
                "cosmosvalcons1ntk8eualewuprz0gamh8hnvcem2nrcdsgz563h" => {
                    testing::streamed(100_000).into_response()
                }
                _ => (
                    StatusCode::NOT_FOUND,
                    r#"{"code":5,"message":"SigningInfo not found","details":[]}"#,
                )
                    .into_response(),
            }
        };
        let validator = |Path(o): Path<String>| async move {
            if o == "cosmosvaloper1rcp29q3hpd246n6qak7jluqep4v006cdsc2kkl" {
                VALIDATOR_BONDED
                    .replace(r#""jailed":false"#, r#""jailed":true"#)
                    .replace("BOND_STATUS_BONDED", "BOND_STATUS_UNBONDING")
                    .into_response()
            } else {
                r#"{"validator":{"operator_address":7}}"#.into_response()
            }
        };
        let app = Router::new()
            .route(
                "/lcd/cosmos/slashing/v1beta1/signing_infos/{c}",
                get(signing),
            )
            .route("/lcd/cosmos/staking/v1beta1/validators/{o}", get(validator));
        let base = format!("{}/lcd?token=hush", testing::serve(app).await);
        let c = testing::client(Duration::from_secs(5));
        let valoper = "cosmosvaloper1rcp29q3hpd246n6qak7jluqep4v006cdsc2kkl";

        // Both, the consensus address in hex: tombstoned, and jailed by the staking module.
        let s = standing(
            &c,
            &base,
            Some("EBED694E6CE1224FB1E8A2DD8EE63A38568B1E2B"),
            Some(valoper),
            64 * 1024,
        )
        .await
        .unwrap();
        assert_eq!(
            s,
            CosmosStanding {
                jailed: Some(true),
                tombstoned: Some(true),
                bonded: Some(false),
                status: Some("BOND_STATUS_UNBONDING".into()),
                tokens: Some(80_216_413_085_275),
                missed_blocks_counter: Some(0),
                jailed_until: Some(Timestamp::MAX),
            }
        );
        // Only the signing info.
        let s = standing(
            &c,
            &base,
            Some("cosmosvalcons1a0kkjnnvuy3ylv0g5twcae368ptgk83tyalw6t"),
            None,
            64 * 1024,
        )
        .await
        .unwrap();
        assert_eq!(
            (s.jailed, s.tombstoned, s.bonded),
            (Some(true), Some(true), None)
        );
        // Nothing asked, nothing read.
        assert_eq!(
            standing(&c, &base, None, None, 10).await,
            Ok(CosmosStanding::default())
        );
        // Failures: an unknown address, a 500, an answer past the cap, a malformed one.
        let e = standing(
            &c,
            &base,
            Some("cosmosvalcons1qqqqrezrl53hujmpdch6d805ac75n220ku09rl"),
            None,
            64 * 1024,
        )
        .await;
        assert_eq!(e, Err(DutyReadError::Status(404)));
        let e = standing(
            &c,
            &base,
            Some("cosmosvalcons1jjll9ffc9jsy39c59dx9hps9kdfj7hm7w63d0c"),
            None,
            64 * 1024,
        )
        .await;
        assert_eq!(e, Err(DutyReadError::Status(500)));
        let e = standing(
            &c,
            &base,
            Some("cosmosvalcons1ntk8eualewuprz0gamh8hnvcem2nrcdsgz563h"),
            None,
            64 * 1024,
        )
        .await;
        assert_eq!(e, Err(DutyReadError::TooLarge(64 * 1024)));
        let e = standing(&c, &base, None, Some("cosmosvaloper1other"), 64 * 1024)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, DutyReadError::Malformed(m) if m.contains("validator.operator_address")),
            "{e:?}"
        );
        // The signing info's answer is past the cap even when the staking one is fine.
        let e = standing(
            &c,
            &base,
            Some("cosmosvalcons1ntk8eualewuprz0gamh8hnvcem2nrcdsgz563h"),
            Some(valoper),
            64 * 1024,
        )
        .await;
        assert_eq!(e, Err(DutyReadError::TooLarge(64 * 1024)));
        // A bad address is refused before any request.
        let e = standing(&c, &base, Some("cosmosvalcons1bad"), None, 1024)
            .await
            .unwrap_err();
        assert!(matches!(e, DutyReadError::Malformed(_)));
        // A dead endpoint, with credentials in its URL: not echoed.
        let dead = testing::dead().replace("http://", "http://admin:s3cret@") + "/?token=hush";
        let e = standing(&c, &dead, None, Some(valoper), 1024)
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, DutyReadError::Unreachable(_)), "{e:?}");
        for secret in ["admin", "s3cret", "hush", "cosmosvaloper"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(matches!(
            standing(&c, "not a url", None, Some(valoper), 1024).await,
            Err(DutyReadError::Unreachable(_))
        ));
    }
}
