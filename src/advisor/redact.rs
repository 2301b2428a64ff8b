//! Redaction of what goes into a prompt, pure: IP addresses, host names, URLs, keys,
//! secrets in `key=value` form and peer ids are replaced by masks such as `<ip-1>`. The
//! same value gets the same mask within one call (so the model can still tell two nodes
//! apart), and [`Redactor::unmask`] puts the values back into what is shown to people.
//! It errs on the side of masking: a version number survives, a file name with a dot may
//! not.

use std::collections::HashMap;

/// What a mask stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An IPv4 or IPv6 address (with its port).
    Ip,
    /// A host name.
    Host,
    /// A URL.
    Url,
    /// A key, hash or token (long hex or base58/64 runs).
    Key,
    /// The value of a `password=`, `token=`, `secret=`, `apikey=` pair.
    Secret,
    /// A libp2p peer id.
    Peer,
    /// A name the caller knows is one (a validator's, a namespace's).
    Name,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::Ip => "ip",
            Kind::Host => "host",
            Kind::Url => "url",
            Kind::Key => "key",
            Kind::Secret => "secret",
            Kind::Peer => "peer",
            Kind::Name => "name",
        }
    }
}

/// Masks values consistently within one call.
#[derive(Debug, Default)]
pub struct Redactor {
    masks: HashMap<String, String>,
    values: HashMap<String, String>,
    counts: HashMap<Kind, usize>,
    names: Vec<String>,
}

fn word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._:/@%+=-~?&#[]".contains(c)
}

fn is_ipv4(s: &str) -> bool {
    let host = match s.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => s,
    };
    host.parse::<std::net::Ipv4Addr>().is_ok()
}

fn is_ipv6(s: &str) -> bool {
    let t = s.trim_start_matches('[');
    let t = t.split(']').next().unwrap_or(t);
    t.matches(':').count() >= 2 && t.parse::<std::net::Ipv6Addr>().is_ok()
}

fn is_peer_id(s: &str) -> bool {
    (s.starts_with("12D3KooW") || s.starts_with("Qm") || s.starts_with("16Uiu2"))
        && s.len() >= 44
        && s.chars().all(|c| c.is_ascii_alphanumeric())
}

fn is_key(s: &str) -> bool {
    let t = s.strip_prefix("0x").unwrap_or(s);
    if t.len() >= 32 && t.chars().all(|c| c.is_ascii_hexdigit()) {
        return true;
    }
    // base58/base64-like: long, and mixing digits with letters of both cases.
    t.len() >= 32
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+/=_-".contains(c))
        && t.chars().any(|c| c.is_ascii_digit())
        && t.chars().any(|c| c.is_ascii_uppercase())
        && t.chars().any(|c| c.is_ascii_lowercase())
}

fn is_host(s: &str) -> bool {
    let host = s.split(':').next().unwrap_or(s).trim_end_matches('.');
    let labels: Vec<&str> = host.split('.').collect();
    labels.len() >= 2
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()))
}

const SECRET_KEYS: [&str; 8] = [
    "password", "passwd", "secret", "token", "apikey", "api_key", "api-key", "auth",
];

impl Redactor {
    /// A redactor with no masks yet.
    pub fn new() -> Redactor {
        Redactor::default()
    }

    fn mask(&mut self, kind: Kind, value: &str) -> String {
        if let Some(m) = self.masks.get(value) {
            return m.clone();
        }
        let n = self.counts.entry(kind).or_default();
        *n += 1;
        let m = format!("<{}-{}>", kind.tag(), n);
        self.masks.insert(value.to_string(), m.clone());
        self.values.insert(m.clone(), value.to_string());
        m
    }

    /// The mask of a known name (the same name, the same mask); later text that contains
    /// the name has it masked too.
    pub fn name(&mut self, name: &str) -> String {
        if name.is_empty() {
            return String::new();
        }
        let m = self.mask(Kind::Name, name);
        if !self.names.iter().any(|n| n == name) {
            self.names.push(name.to_string());
            // Longest first, so that `val-10` is not masked as `val-1` and a `0`.
            self.names.sort_by_key(|n| std::cmp::Reverse(n.len()));
        }
        m
    }

    fn word(&mut self, w: &str) -> String {
        // Brackets around and sentence punctuation after are not part of the value.
        let inner = w.trim_start_matches(['(', '[']);
        let lead = &w[..w.len() - inner.len()];
        let core = inner.trim_end_matches(['.', ',', ':', ';', ')', ']', '?']);
        let tail = &inner[core.len()..];
        if core.is_empty() {
            return w.to_string();
        }
        if let Some((k, v)) = core.split_once('=')
            && !v.is_empty()
            && SECRET_KEYS
                .iter()
                .any(|s| k.to_ascii_lowercase().contains(s))
        {
            return format!("{lead}{k}={}{tail}", self.mask(Kind::Secret, v));
        }
        let kind = if core.contains("://") {
            Some(Kind::Url)
        } else if is_ipv4(core) || is_ipv6(core) {
            Some(Kind::Ip)
        } else if is_peer_id(core) {
            Some(Kind::Peer)
        } else if is_key(core) {
            Some(Kind::Key)
        } else if is_host(core) {
            Some(Kind::Host)
        } else {
            None
        };
        match kind {
            Some(k) => format!("{lead}{}{tail}", self.mask(k, core)),
            None => w.to_string(),
        }
    }

    /// `text` with every sensitive value masked.
    pub fn redact(&mut self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut word = String::new();
        for c in text.chars() {
            if word_char(c) {
                word.push(c);
            } else {
                if !word.is_empty() {
                    out.push_str(&self.word(&word));
                    word.clear();
                }
                out.push(c);
            }
        }
        if !word.is_empty() {
            out.push_str(&self.word(&word));
        }
        for n in self.names.clone() {
            // A name that could be part of a mask's tag is left to the word rules.
            let tags = ["ip", "host", "url", "key", "secret", "peer", "name"];
            if n.len() >= 3
                && !tags.iter().any(|t| t.contains(n.as_str()))
                && out.contains(n.as_str())
            {
                let m = self.mask(Kind::Name, &n);
                out = out.replace(n.as_str(), &m);
            }
        }
        out
    }

    /// `text` (an answer) with the masks of this call replaced by their values again.
    pub fn unmask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (mask, value) in &self.values {
            out = out.replace(mask, value);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn masks_are_consistent_and_reversible() {
        let mut r = Redactor::new();
        let text = "cannot connect to http://user:pw@10.0.0.5:9944/rpc?key=abc; node 10.0.0.5:9944 and 10.0.0.6 differ, host val-1.example.com, peer 12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo, key 0x8f2a5b1c9d3e4f60718293a4b5c6d7e8f90a1b2c, token=s3cr3t, p2p [2001:db8::7]:30333, version 1.2.3.";
        let out = r.redact(text);
        for planted in [
            "10.0.0.5",
            "10.0.0.6",
            "user:pw",
            "val-1.example.com",
            "12D3KooW",
            "0x8f2a",
            "s3cr3t",
            "2001:db8",
        ] {
            assert!(!out.contains(planted), "{planted} survived: {out}");
        }
        assert!(out.contains("<ip-1> and <ip-2> differ"), "{out}");
        assert!(out.contains("version 1.2.3."), "versions stay: {out}");
        assert!(out.contains("token=<secret-1>"), "{out}");
        // The same value, the same mask; unmasking restores the original.
        let again = r.redact("10.0.0.5:9944 is down");
        assert!(again.starts_with("<ip-1>"), "{again}");
        assert_eq!(r.unmask(&out), text);
    }

    #[test]
    fn known_names_are_masked_wherever_they_appear() {
        let mut r = Redactor::new();
        assert_eq!(r.name("val-1"), "<name-1>");
        assert_eq!(r.name("val-10"), "<name-2>");
        let out = r.redact("val-10 and val-1 lag; see monitoredvalidator/val-1");
        assert_eq!(
            out,
            "<name-2> and <name-1> lag; see monitoredvalidator/<name-1>"
        );
        assert_eq!(
            r.unmask(&out),
            "val-10 and val-1 lag; see monitoredvalidator/val-1"
        );
    }

    #[test]
    fn ordinary_words_stay() {
        let mut r = Redactor::new();
        let s = "Ready=False BlockStalled: best block 1234 did not move for 60s (peers: 12)";
        assert_eq!(r.redact(s), s);
    }

    proptest! {
        #[test]
        fn no_planted_value_survives(
            a in 1u8..255, b in 0u8..255, c in 0u8..255, d in 1u8..255,
            port in 1u16..65535,
            key in "[0-9a-f]{40}",
            host in "[a-z]{3,10}\\.[a-z]{3,8}\\.(com|net|io|org)",
            secret in "[A-Za-z0-9]{8,20}",
            filler in "[A-Za-z ,;()]{0,40}",
        ) {
            let ip = format!("{a}.{b}.{c}.{d}");
            let text = format!("{filler} {ip}:{port} {filler} 0x{key}, {host}. password={secret} [{ip}]");
            let out = Redactor::new().redact(&text);
            prop_assert!(!out.contains(&ip), "{}", out);
            prop_assert!(!out.contains(&key), "{}", out);
            prop_assert!(!out.contains(&host), "{}", out);
            prop_assert!(!out.contains(&format!("={secret}")), "{}", out);
        }
    }
}
