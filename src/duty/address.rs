//! Cosmos validator addresses. CometBFT's commits name a validator by its consensus address
//! as 40 uppercase hex digits (the first 20 bytes of the SHA-256 of its consensus public
//! key); people and the Cosmos SDK write the same 20 bytes in bech32 with a `...valcons`
//! prefix (`cosmosvalcons1...`). The operator address (`...valoper1...`) is another key's
//! address: it names the same validator in the staking module, but no conversion leads from
//! one to the other.

use bech32::{Bech32, Hrp, primitives::decode::CheckedHrpstring};

/// Bytes in a CometBFT validator address.
pub const ADDRESS_LEN: usize = 20;

/// Why an address was refused. Messages say what a valid one looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Empty (or blank).
    #[error(
        "the address is empty; give the consensus address as 40 hex digits or as bech32 (...valcons1...)"
    )]
    Empty,
    /// Neither hex nor a bech32 string (or a bech32 string with a wrong checksum).
    #[error(
        "the address is neither 40 hex digits nor a valid bech32 address ({0}); copy it again, a typo breaks the bech32 checksum"
    )]
    Invalid(String),
    /// Hex of the wrong length.
    #[error("a hex consensus address has 40 digits (20 bytes), this one has {0}")]
    HexLength(usize),
    /// A valid bech32 address of something other than a consensus address.
    #[error(
        "`{hrp}1...` is {what}, not a consensus address; give the `...valcons1...` address (`<daemon> tendermint show-address` prints it)"
    )]
    NotConsensus {
        /// The address's prefix.
        hrp: String,
        /// What the prefix says it is.
        what: &'static str,
    },
    /// A bech32 address whose payload is not 20 bytes.
    #[error("a consensus address holds 20 bytes, this one holds {0}")]
    PayloadLength(usize),
    /// A prefix that bech32 cannot carry.
    #[error("`{0}` cannot be a bech32 prefix: it must be 1 to 83 lowercase letters or digits")]
    Prefix(String),
}

/// The consensus address `addr` (40 hex digits in any case, optionally after `0x`, or bech32
/// `...valcons1...`) as CometBFT writes it in `/commit` and `/validators`: 40 uppercase hex
/// digits.
pub fn consensus_hex(addr: &str) -> Result<String, AddressError> {
    let addr = addr.trim();
    if addr.is_empty() {
        return Err(AddressError::Empty);
    }
    let digits = addr
        .strip_prefix("0x")
        .or_else(|| addr.strip_prefix("0X"))
        .unwrap_or(addr);
    if digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return if digits.len() == 2 * ADDRESS_LEN {
            Ok(digits.to_ascii_uppercase())
        } else {
            Err(AddressError::HexLength(digits.len()))
        };
    }
    let (hrp, bytes) = decode(addr)?;
    if !hrp.ends_with("valcons") {
        return Err(AddressError::NotConsensus {
            what: kind_of(&hrp),
            hrp,
        });
    }
    if bytes.len() != ADDRESS_LEN {
        return Err(AddressError::PayloadLength(bytes.len()));
    }
    Ok(hex_upper(&bytes))
}

/// The bech32 form of the hex address `hex` with prefix `hrp` (`cosmosvalcons`): what the
/// Cosmos SDK REST API takes (`/cosmos/slashing/v1beta1/signing_infos/{valcons}`).
pub fn to_bech32(hrp: &str, hex: &str) -> Result<String, AddressError> {
    let hex = consensus_hex(hex)?;
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| AddressError::HexLength(hex.len()))?;
    let valid = !hrp.is_empty()
        && hrp
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let parsed = Hrp::parse(hrp)
        .ok()
        .filter(|_| valid)
        .ok_or_else(|| AddressError::Prefix(short(hrp)))?;
    bech32::encode_lower::<Bech32>(parsed, &bytes).map_err(|_| AddressError::Prefix(short(hrp)))
}

/// The bech32 prefix of `addr` (`cosmosvaloper` for `cosmosvaloper1...`), checksum checked.
pub fn prefix_of(addr: &str) -> Result<String, AddressError> {
    decode(addr.trim()).map(|(hrp, _)| hrp)
}

/// The consensus address prefix that goes with an operator address: `cosmosvalcons` for
/// `cosmosvaloper1...` (the chain's account prefix followed by `valcons`).
pub fn valcons_prefix_for(valoper: &str) -> Result<String, AddressError> {
    let hrp = prefix_of(valoper)?;
    match hrp.strip_suffix("valoper") {
        Some(chain) => Ok(format!("{chain}valcons")),
        None => Err(AddressError::NotConsensus {
            what: kind_of(&hrp),
            hrp,
        }),
    }
}

/// Decodes a bech32 (not bech32m) string; refuses mixed case and non-canonical padding (a
/// string that does not encode back to itself).
fn decode(addr: &str) -> Result<(String, Vec<u8>), AddressError> {
    let checked = CheckedHrpstring::new::<Bech32>(addr)
        .map_err(|e| AddressError::Invalid(short(&e.to_string())))?;
    let hrp = checked.hrp();
    let bytes: Vec<u8> = checked.byte_iter().collect();
    let again = bech32::encode_lower::<Bech32>(hrp, &bytes)
        .map_err(|e| AddressError::Invalid(short(&e.to_string())))?;
    if !again.eq_ignore_ascii_case(addr) {
        return Err(AddressError::Invalid(
            "its data part has invalid padding".to_string(),
        ));
    }
    Ok((hrp.to_lowercase(), bytes))
}

/// What a Cosmos bech32 prefix names.
fn kind_of(hrp: &str) -> &'static str {
    if hrp.ends_with("valconspub") {
        "a consensus public key"
    } else if hrp.ends_with("valoperpub") {
        "an operator public key"
    } else if hrp.ends_with("valoper") {
        "an operator address (valoper)"
    } else if hrp.ends_with("pub") {
        "an account public key"
    } else {
        "an account address"
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(2 * bytes.len()), |mut s, b| {
            let _ = write!(s, "{b:02X}");
            s
        })
}

/// At most 90 characters of a user's input for a message.
fn short(s: &str) -> String {
    let head: String = s.chars().take(90).collect();
    if head.len() < s.len() {
        format!("{head}…")
    } else {
        head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real pairs: a genesis edit script's consensus key swap (the hex and the valcons of
    /// the same key, both checked here against each other), the Cosmos SDK docs' evidence
    /// example, and the CometBFT `/status` fixture's `validator_info.address`.
    const PAIRS: &[(&str, &str)] = &[
        (
            "cosmosvalcons1a0kkjnnvuy3ylv0g5twcae368ptgk83tyalw6t",
            "EBED694E6CE1224FB1E8A2DD8EE63A38568B1E2B",
        ),
        (
            "cosmosvalcons1jjll9ffc9jsy39c59dx9hps9kdfj7hm7w63d0c",
            "94BFF2A5382CA04897142B4C5B8605B3532F5F7E",
        ),
        (
            "cosmosvalcons1ntk8eualewuprz0gamh8hnvcem2nrcdsgz563h",
            "9AEC7CF3BFCBB81189E8EEEE7BCD98CED531E1B0",
        ),
        (
            "cosmosvalcons1qqqqrezrl53hujmpdch6d805ac75n220ku09rl",
            "000001E443FD237E4B616E2FA69DF4EE3D49A94F",
        ),
    ];

    #[test]
    fn bech32_and_hex_name_the_same_validator() {
        for (b32, hex) in PAIRS {
            assert_eq!(consensus_hex(b32).as_deref(), Ok(*hex), "{b32}");
            assert_eq!(consensus_hex(&b32.to_uppercase()).as_deref(), Ok(*hex));
            assert_eq!(consensus_hex(hex).as_deref(), Ok(*hex));
            assert_eq!(consensus_hex(&hex.to_lowercase()).as_deref(), Ok(*hex));
            assert_eq!(to_bech32("cosmosvalcons", hex).as_deref(), Ok(*b32));
            assert_eq!(
                to_bech32("cosmosvalcons", &hex.to_lowercase()).as_deref(),
                Ok(*b32)
            );
        }
    }

    #[test]
    fn the_status_fixture_address() {
        let raw = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/fixtures/real-payloads/cometbft_status.json"
        ));
        // The shared fixtures sit beside the repository; without them the address is the
        // one they held when this test was written.
        let addr = match raw {
            Ok(raw) => {
                let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
                v["result"]["validator_info"]["address"]
                    .as_str()
                    .unwrap()
                    .to_string()
            }
            Err(_) => "2DD9F44FD9067555C322243C3C913BA7B51D2BE0".to_string(),
        };
        assert_eq!(consensus_hex(&addr).as_deref(), Ok(addr.as_str()));
        for hrp in ["cosmosvalcons", "osmovalcons", "celestiavalcons"] {
            let b32 = to_bech32(hrp, &addr).unwrap();
            assert!(b32.starts_with(&format!("{hrp}1")), "{b32}");
            assert_eq!(consensus_hex(&b32).as_deref(), Ok(addr.as_str()));
        }
    }

    #[test]
    fn odd_but_valid_inputs() {
        let hex = PAIRS[0].1;
        assert_eq!(consensus_hex(&format!("0x{hex}")).as_deref(), Ok(hex));
        assert_eq!(consensus_hex(&format!("  {hex}\n")).as_deref(), Ok(hex));
        assert_eq!(
            consensus_hex(" cosmosvalcons1a0kkjnnvuy3ylv0g5twcae368ptgk83tyalw6t ").as_deref(),
            Ok(hex)
        );
    }

    #[test]
    fn refusals_say_why() {
        use AddressError as E;
        type Check = fn(&AddressError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |e| *e == E::Empty),
            ("   ", |e| *e == E::Empty),
            ("EBED694E6CE1224FB1E8A2DD8EE63A38568B1E", |e| {
                *e == E::HexLength(38)
            }),
            ("0x", |e| *e == E::HexLength(0)),
            // One character changed: the checksum catches it.
            (
                "cosmosvalcons1a0kkjnnvuy3ylv0g5twcae368ptgk83tyalw6q",
                |e| matches!(e, E::Invalid(_)),
            ),
            // Mixed case is not bech32.
            (
                "cosmosvalcons1A0kkjnnvuy3ylv0g5twcae368ptgk83tyalw6t",
                |e| matches!(e, E::Invalid(_)),
            ),
            (
                "cosmosvaloper1rcp29q3hpd246n6qak7jluqep4v006cdsc2kkl",
                |e| matches!(e, E::NotConsensus { what, .. } if what.contains("operator address")),
            ),
            (
                "cosmosvalconspub1zcjduepq7mft6gfls57a0a42d7uhx656cckhfvtrlmw744jv4q0mvlv0dypskehfk8",
                |e| matches!(e, E::NotConsensus { what, .. } if what.contains("public key")),
            ),
            (
                "cosmos1z4hfrxvlgl4s8u4n5ngjcw8kdqrcv43599amxs",
                |e| matches!(e, E::NotConsensus { what, .. } if what.contains("account")),
            ),
            // A real valcons of 12 bytes (an interchain-security test's placeholder).
            ("cosmosvalcons1wpex7anfv3jhystyv3eq20r35a", |e| {
                *e == E::PayloadLength(12)
            }),
            ("not an address", |e| matches!(e, E::Invalid(_))),
            ("валидатор", |e| matches!(e, E::Invalid(_))),
        ];
        for (input, ok) in cases {
            let e = consensus_hex(input).unwrap_err();
            assert!(ok(&e), "{input}: {e:?}");
            assert!(!e.to_string().is_empty());
        }
        let long = "z".repeat(10_000);
        let e = consensus_hex(&long).unwrap_err();
        assert!(e.to_string().len() < 400, "{e}");
    }

    #[test]
    fn bech32_prefix_rules() {
        let hex = PAIRS[0].1;
        for bad in ["", "Cosmosvalcons", "cosmos valcons", "cösmos"] {
            assert!(
                matches!(to_bech32(bad, hex), Err(AddressError::Prefix(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            to_bech32("cosmosvalcons", "xyz"),
            Err(AddressError::Invalid(_))
        ));
        assert_eq!(
            valcons_prefix_for("cosmosvaloper1rcp29q3hpd246n6qak7jluqep4v006cdsc2kkl").as_deref(),
            Ok("cosmosvalcons")
        );
        assert_eq!(
            prefix_of("cosmos1z4hfrxvlgl4s8u4n5ngjcw8kdqrcv43599amxs").as_deref(),
            Ok("cosmos")
        );
        assert!(matches!(
            valcons_prefix_for("cosmos1z4hfrxvlgl4s8u4n5ngjcw8kdqrcv43599amxs"),
            Err(AddressError::NotConsensus { .. })
        ));
    }

    #[test]
    fn round_trips() {
        let mut bytes = [0u8; ADDRESS_LEN];
        for seed in 0u32..200 {
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = (seed.wrapping_mul(2_654_435_761).rotate_left(i as u32) >> 3) as u8;
            }
            let hex = hex_upper(&bytes);
            let b32 = to_bech32("junovalcons", &hex).unwrap();
            assert_eq!(consensus_hex(&b32).unwrap(), hex);
        }
    }
}
