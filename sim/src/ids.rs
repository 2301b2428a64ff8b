//! Deterministic identifiers: block hashes that encode their height (so a node can answer
//! `chain_getHeader(hash)` without storing blocks), peer ids, validator addresses.

/// The splitmix64 finalizer: a fast, well-mixing bijection on `u64`.
pub fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Odd multiplier of the height encoding, and its inverse modulo 2^64.
const ODD: u64 = 0xd6e8_feb8_6659_fd93;
const ODD_INV: u64 = inverse(ODD);

/// The multiplicative inverse of an odd number modulo 2^64 (Newton's iteration doubles
/// the correct low bits each round: 5 rounds from 3 bits cover 64).
const fn inverse(a: u64) -> u64 {
    let mut x = a; // correct to 3 bits for any odd a
    let mut i = 0;
    while i < 5 {
        x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
        i += 1;
    }
    x
}

/// A 32-byte block hash for `height` on a chain identified by `salt`. The first word is
/// an invertible scramble of the height, the rest derive from it, so the hash looks
/// random but [`height_of`] can read the height back and verify the whole hash.
pub fn block_hash(salt: u64, height: u64) -> [u8; 32] {
    let w0 = (height ^ salt).wrapping_mul(ODD);
    let mut out = [0u8; 32];
    out[..8].copy_from_slice(&w0.to_be_bytes());
    for i in 1..4u64 {
        let w = mix64(w0 ^ salt.rotate_left(i as u32 * 16) ^ i);
        let at = i as usize * 8;
        out[at..at + 8].copy_from_slice(&w.to_be_bytes());
    }
    out
}

/// The height a hash made by [`block_hash`] with `salt` encodes; `None` for any other
/// 32 bytes.
pub fn height_of(salt: u64, hash: &[u8; 32]) -> Option<u64> {
    let mut w0 = [0u8; 8];
    w0.copy_from_slice(&hash[..8]);
    let height = u64::from_be_bytes(w0).wrapping_mul(ODD_INV) ^ salt;
    (block_hash(salt, height) == *hash).then_some(height)
}

/// Other 32-byte values (state roots and such), keyed by height and a purpose.
pub fn digest(salt: u64, height: u64, purpose: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut w = mix64(salt ^ mix64(height) ^ purpose.rotate_left(40));
    for chunk in out.chunks_mut(8) {
        w = mix64(w);
        chunk.copy_from_slice(&w.to_be_bytes());
    }
    out
}

/// `n` pseudo-random bytes derived from `seed`.
pub fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 8);
    let mut w = mix64(seed);
    while out.len() < n {
        w = mix64(w);
        out.extend_from_slice(&w.to_be_bytes());
    }
    out.truncate(n);
    out
}

/// Lower-case hex, no prefix.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// `0x`-prefixed lower-case hex, as Substrate and Ethereum write hashes.
pub fn hex0x(bytes: &[u8]) -> String {
    format!("0x{}", hex(bytes))
}

/// Parses a `0x`-prefixed 32-byte hex hash.
pub fn parse_hash(s: &str) -> Option<[u8; 32]> {
    let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in digits.as_bytes().chunks(2).enumerate() {
        let hi = char::from(pair[0]).to_digit(16)?;
        let lo = char::from(pair[1]).to_digit(16)?;
        out[i] = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

/// A `0x`-prefixed hex quantity, as Ethereum and Substrate headers write numbers.
pub fn quantity(n: u64) -> String {
    format!("{n:#x}")
}

/// Base58 (Bitcoin alphabet), the encoding of libp2p peer ids.
pub fn base58(input: &[u8]) -> String {
    const ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let zeros = input.iter().take_while(|b| **b == 0).count();
    // Little-endian base-58 digits of the big-endian input.
    let mut digits: Vec<u8> = Vec::with_capacity(input.len() * 138 / 100 + 1);
    for &byte in &input[zeros..] {
        let mut carry = u32::from(byte);
        for d in digits.iter_mut() {
            carry += u32::from(*d) << 8;
            *d = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let mut s = String::with_capacity(zeros + digits.len());
    s.extend(std::iter::repeat_n('1', zeros));
    s.extend(
        digits
            .iter()
            .rev()
            .map(|d| char::from(ALPHABET[usize::from(*d)])),
    );
    s
}

/// Standard base64 with padding, as CometBFT writes public keys.
pub fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                s.push('=');
            }
        }
    }
    s
}

const BECH32: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";

fn bech32_polymod(values: impl Iterator<Item = u8>) -> u32 {
    const GEN: [u32; 5] = [
        0x3b6a_57b2,
        0x2650_8e6d,
        0x1ea1_19fa,
        0x3d42_33dd,
        0x2a14_62b3,
    ];
    let mut chk: u32 = 1;
    for v in values {
        let top = chk >> 25;
        chk = ((chk & 0x01ff_ffff) << 5) ^ u32::from(v);
        for (i, g) in GEN.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
    }
    chk
}

fn hrp_expand(hrp: &str) -> impl Iterator<Item = u8> + '_ {
    hrp.bytes()
        .map(|b| b >> 5)
        .chain(std::iter::once(0))
        .chain(hrp.bytes().map(|b| b & 31))
}

/// Bech32 (BIP-173) of `data` with the human-readable part `hrp`, as Cosmos SDK writes
/// addresses (`cosmosvaloper1…`, `cosmosvalcons1…`).
pub fn bech32(hrp: &str, data: &[u8]) -> String {
    let mut five = Vec::with_capacity(data.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in data {
        acc = (acc << 8) | u32::from(*b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            five.push(((acc >> bits) & 31) as u8);
        }
    }
    if bits > 0 {
        five.push(((acc << (5 - bits)) & 31) as u8);
    }
    let chk = bech32_polymod(hrp_expand(hrp).chain(five.iter().copied()).chain([0; 6])) ^ 1;
    let mut s = String::with_capacity(hrp.len() + 1 + five.len() + 6);
    s.push_str(hrp);
    s.push('1');
    s.extend(five.iter().map(|v| char::from(BECH32[usize::from(*v)])));
    s.extend((0..6).map(|i| char::from(BECH32[((chk >> (5 * (5 - i))) & 31) as usize])));
    s
}

/// Decodes a Bech32 string (lower case): its human-readable part and data bytes, or why
/// not, in the words of the Go `bech32` package Cosmos SDK uses.
pub fn bech32_decode(s: &str) -> Result<(String, Vec<u8>), String> {
    let Some(sep) = s.rfind('1') else {
        return Err("decoding bech32 failed: invalid separator index -1".into());
    };
    if sep < 1 || sep + 7 > s.len() {
        return Err(format!(
            "decoding bech32 failed: invalid separator index {sep}"
        ));
    }
    let (hrp, rest) = (&s[..sep], &s[sep + 1..]);
    let mut five = Vec::with_capacity(rest.len());
    for c in rest.bytes() {
        let Some(v) = BECH32.iter().position(|x| *x == c) else {
            return Err(format!(
                "decoding bech32 failed: invalid character not part of charset: {c}"
            ));
        };
        five.push(v as u8);
    }
    if bech32_polymod(hrp_expand(hrp).chain(five.iter().copied())) != 1 {
        return Err("decoding bech32 failed: invalid checksum".into());
    }
    five.truncate(five.len() - 6);
    let (mut acc, mut bits) = (0u32, 0u32);
    let mut out = Vec::with_capacity(five.len() * 5 / 8);
    for v in five {
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 255) as u8);
        }
    }
    Ok((hrp.to_string(), out))
}

/// A libp2p peer id for an Ed25519 key derived from `seed`: the identity multihash of
/// the protobuf-encoded public key, which is why real ids start with `12D3KooW`.
pub fn libp2p_peer_id(seed: u64) -> String {
    let mut raw = vec![0x00, 0x24, 0x08, 0x01, 0x12, 0x20];
    raw.extend(bytes(seed, 32));
    base58(&raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_encode_their_height() {
        assert_eq!(ODD.wrapping_mul(ODD_INV), 1);
        for salt in [0, 1, 0xdead_beef] {
            for h in [0, 1, 1_000_000, u64::MAX] {
                let hash = block_hash(salt, h);
                assert_eq!(height_of(salt, &hash), Some(h));
                assert_eq!(parse_hash(&hex0x(&hash)), Some(hash));
            }
        }
        // A different chain's hash, or any other bytes, is not a block of ours.
        assert_eq!(height_of(2, &block_hash(1, 5)), None);
        assert_eq!(height_of(1, &[7u8; 32]), None);
        assert_ne!(block_hash(1, 5), block_hash(1, 6));
        assert_eq!(hex0x(&block_hash(1, 5)).len(), 66);
    }

    #[test]
    fn hex_parsing_is_strict() {
        assert_eq!(parse_hash("0x12"), None);
        assert_eq!(parse_hash(&format!("0x{}", "g".repeat(64))), None);
        assert_eq!(parse_hash(&"0".repeat(66)), None);
        assert_eq!(parse_hash(&format!("0x{}", "é".repeat(32))), None);
        assert_eq!(quantity(0), "0x0");
        assert_eq!(quantity(255), "0xff");
    }

    #[test]
    fn encodings_match_known_values() {
        assert_eq!(base58(b"hello world"), "StV1DL6CwTryKyV");
        assert_eq!(base58(&[0, 0, 1]), "112");
        assert_eq!(base58(&[]), "");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"fooba"), "Zm9vYmE=");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
        assert_eq!(base64(&bytes(1, 32)).len(), 44);
        let id = libp2p_peer_id(3);
        assert!(id.starts_with("12D3KooW"), "{id}");
        assert_eq!(id.len(), 52);
        assert_ne!(libp2p_peer_id(3), libp2p_peer_id(4));
    }

    #[test]
    fn bech32_matches_known_addresses() {
        // BIP-173 test vectors (checksum over the human-readable part and the data).
        assert_eq!(bech32("a", &[]), "a12uel5l");
        // One account of the Cosmos Hub, as an account and as its validator operator.
        let (hrp, data) = bech32_decode("cosmos1sjllsnramtg3ewxqwwrwjxfgc4n4ef9u0tvx7u").unwrap();
        assert_eq!((hrp.as_str(), data.len()), ("cosmos", 20));
        assert_eq!(
            bech32("cosmosvaloper", &data),
            "cosmosvaloper1sjllsnramtg3ewxqwwrwjxfgc4n4ef9u2lcnj0"
        );
        assert_eq!(
            bech32("cosmos", &data),
            "cosmos1sjllsnramtg3ewxqwwrwjxfgc4n4ef9u0tvx7u"
        );
        let mine = bech32("cosmosvalcons", &bytes(5, 20));
        assert_eq!(
            bech32_decode(&mine).unwrap(),
            ("cosmosvalcons".to_string(), bytes(5, 20))
        );
        let mut broken = mine.clone();
        broken.replace_range(20..21, if &mine[20..21] == "q" { "p" } else { "q" });
        assert!(bech32_decode(&broken).unwrap_err().contains("checksum"));
        assert!(bech32_decode("cosmosvalconsb").is_err());
        assert!(
            bech32_decode("cosmosvalcons1bbbbbbO")
                .unwrap_err()
                .contains("charset")
        );
    }
}
