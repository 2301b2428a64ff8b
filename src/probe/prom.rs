//! A small, lenient parser for the Prometheus text exposition format.
//!
//! It handles what real nodes emit: `# HELP` / `# TYPE` / free comments, labels with
//! `\\`, `\"` and `\n` escapes, `NaN` / `+Inf` / `-Inf`, optional timestamps, OpenMetrics
//! exemplars (`… # {trace_id="x"} 1`, ignored), quoted UTF-8 metric and label names
//! (`{"my.metric", "a.b"="c"}`), CRLF line endings and stray whitespace.
//!
//! Why our own: the probe only needs "name, labels, value", must never panic on what a
//! broken or hostile endpoint sends, and should skip a bad line instead of rejecting a
//! whole scrape (a single odd line from one exporter must not blind the watcher).

/// One sample line of an exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name, e.g. `substrate_block_height`.
    pub name: String,
    /// Labels in the order they appeared, values unescaped.
    pub labels: Vec<(String, String)>,
    /// The sample value; may be NaN or infinite.
    pub value: f64,
    /// Optional timestamp as written (milliseconds in the Prometheus text format;
    /// a fractional OpenMetrics timestamp in seconds is converted to milliseconds).
    pub timestamp: Option<i64>,
}

impl Sample {
    /// The value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses an exposition, skipping comments, blank lines and lines that are not valid
/// samples. Never panics.
pub fn parse(text: &str) -> Vec<Sample> {
    parse_counting(text).0
}

/// Like [`parse`], and also returns how many non-comment lines were skipped as invalid.
pub fn parse_counting(text: &str) -> (Vec<Sample>, usize) {
    let mut samples = Vec::new();
    let mut skipped = 0usize;
    for raw in text.split('\n') {
        let line = raw.trim_matches(|c: char| c == ' ' || c == '\t' || c == '\r');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Some(s) => samples.push(s),
            None => skipped += 1,
        }
    }
    (samples, skipped)
}

/// Most labels a sample may carry; a line with more is skipped as invalid (real nodes use
/// at most 5).
pub const MAX_LABELS: usize = 32;

/// What one scrape may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most sample lines (valid or not) in the exposition.
    pub max_lines: usize,
    /// Most samples kept.
    pub max_kept: usize,
}

/// Why [`parse_limited`] refused an exposition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// More sample lines than [`Limits::max_lines`].
    Lines(usize),
    /// More kept samples than [`Limits::max_kept`].
    Kept(usize),
}

/// What [`parse_limited`] read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parsed {
    /// The samples kept.
    pub samples: Vec<Sample>,
    /// Sample lines, valid or not.
    pub lines: usize,
    /// Lines that are not valid samples.
    pub skipped: usize,
}

/// Like [`parse_counting`], keeping only the samples whose name `keep` accepts, and
/// refusing an exposition past `limits` as soon as it passes them: a flood of samples
/// must not be materialised.
pub fn parse_limited(
    text: &str,
    limits: Limits,
    keep: impl Fn(&str) -> bool,
) -> Result<Parsed, Overflow> {
    let (mut samples, mut skipped, mut lines) = (Vec::new(), 0usize, 0usize);
    for raw in text.split('\n') {
        let line = raw.trim_matches(|c: char| c == ' ' || c == '\t' || c == '\r');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        lines += 1;
        if lines > limits.max_lines {
            return Err(Overflow::Lines(limits.max_lines));
        }
        match parse_line(line) {
            Some(s) if keep(&s.name) => {
                if samples.len() == limits.max_kept {
                    return Err(Overflow::Kept(limits.max_kept));
                }
                samples.push(s);
            }
            Some(_) => {}
            None => skipped += 1,
        }
    }
    Ok(Parsed {
        samples,
        lines,
        skipped,
    })
}

/// Parses one non-comment, trimmed line.
fn parse_line(line: &str) -> Option<Sample> {
    let mut cur = Cursor { s: line, pos: 0 };
    let mut name = if cur.peek() == Some('{') {
        String::new()
    } else {
        cur.metric_name()?.to_owned()
    };
    let mut labels = Vec::new();
    let ws_after_name = cur.skip_ws();
    let mut had_labels = false;
    if cur.peek() == Some('{') {
        had_labels = true;
        cur.bump();
        loop {
            if labels.len() >= MAX_LABELS {
                return None;
            }
            cur.skip_ws();
            match cur.peek()? {
                '}' => {
                    cur.bump();
                    break;
                }
                '"' => {
                    // A quoted string is either the metric name (no `=` after it) or a
                    // quoted label name.
                    let quoted = cur.quoted()?;
                    cur.skip_ws();
                    if cur.peek() == Some('=') {
                        cur.bump();
                        cur.skip_ws();
                        let value = cur.quoted()?;
                        labels.push((quoted, value));
                    } else if name.is_empty() {
                        name = quoted;
                    } else {
                        return None;
                    }
                }
                _ => {
                    let key = cur.label_name()?.to_owned();
                    cur.skip_ws();
                    if cur.peek() != Some('=') {
                        return None;
                    }
                    cur.bump();
                    cur.skip_ws();
                    let value = cur.quoted()?;
                    labels.push((key, value));
                }
            }
            cur.skip_ws();
            match cur.peek()? {
                ',' => cur.bump(),
                '}' => {
                    cur.bump();
                    break;
                }
                _ => return None,
            }
        }
    }
    if name.is_empty() {
        return None;
    }
    // The value must be separated from the name/labels by whitespace or follow `}`.
    let had_ws = if had_labels {
        cur.skip_ws()
    } else {
        ws_after_name
    };
    if !had_ws && !had_labels {
        return None;
    }
    let value = parse_value(cur.token()?)?;
    cur.skip_ws();
    let mut timestamp = None;
    match cur.peek() {
        None => {}
        Some('#') => {} // exemplar follows: ignored
        Some(_) => {
            timestamp = Some(parse_timestamp(cur.token()?)?);
            cur.skip_ws();
            match cur.peek() {
                None | Some('#') => {}
                Some(_) => return None,
            }
        }
    }
    Some(Sample {
        name,
        labels,
        value,
        timestamp,
    })
}

/// Parses a sample value the way Prometheus does (Go `ParseFloat` semantics for the
/// spellings that occur in practice).
fn parse_value(tok: &str) -> Option<f64> {
    match tok {
        "NaN" | "nan" => return Some(f64::NAN),
        "+Inf" | "Inf" | "+inf" | "inf" => return Some(f64::INFINITY),
        "-Inf" | "-inf" => return Some(f64::NEG_INFINITY),
        _ => {}
    }
    // Reject Rust-only spellings like "infinity" so the accepted set stays predictable.
    if tok
        .bytes()
        .any(|b| !(b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')))
    {
        return None;
    }
    tok.parse::<f64>().ok()
}

/// Integer milliseconds (Prometheus) or fractional seconds (OpenMetrics).
fn parse_timestamp(tok: &str) -> Option<i64> {
    if let Ok(ms) = tok.parse::<i64>() {
        return Some(ms);
    }
    let secs = parse_value(tok)?;
    let ms = secs * 1000.0;
    // `as` saturates, but an out-of-range timestamp is garbage: reject it instead.
    if ms.is_finite() && ms.abs() < 9.0e18 {
        Some(ms.round() as i64)
    } else {
        None
    }
}

/// Byte cursor over an ASCII-structured line; slicing only happens at ASCII bytes, so
/// it is always on a char boundary.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) {
        if let Some(c) = self.peek() {
            self.pos += c.len_utf8();
        }
    }

    /// Skips spaces and tabs; returns whether anything was skipped.
    fn skip_ws(&mut self) -> bool {
        let start = self.pos;
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.pos += 1;
        }
        self.pos > start
    }

    fn take_while(&mut self, first: fn(char) -> bool, rest: fn(char) -> bool) -> Option<&'a str> {
        let start = self.pos;
        match self.peek() {
            Some(c) if first(c) => self.pos += 1,
            _ => return None,
        }
        while let Some(c) = self.peek() {
            if rest(c) {
                self.pos += 1;
            } else {
                break;
            }
        }
        self.s.get(start..self.pos)
    }

    fn metric_name(&mut self) -> Option<&'a str> {
        self.take_while(
            |c| c.is_ascii_alphabetic() || c == '_' || c == ':',
            |c| c.is_ascii_alphanumeric() || c == '_' || c == ':',
        )
    }

    fn label_name(&mut self) -> Option<&'a str> {
        self.take_while(
            |c| c.is_ascii_alphabetic() || c == '_',
            |c| c.is_ascii_alphanumeric() || c == '_',
        )
    }

    /// A whitespace-delimited token (value or timestamp).
    fn token(&mut self) -> Option<&'a str> {
        let rest = self.rest();
        let len = rest.find([' ', '\t']).unwrap_or(rest.len());
        if len == 0 {
            return None;
        }
        self.pos += len;
        rest.get(..len)
    }

    /// A double-quoted string with `\\`, `\"` and `\n` escapes. Unknown escapes are
    /// kept verbatim, as the reference parser's lenient mode does.
    fn quoted(&mut self) -> Option<String> {
        if self.peek() != Some('"') {
            return None;
        }
        self.bump();
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Some(out);
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, '\\')) => out.push('\\'),
                    Some((_, '"')) => out.push('"'),
                    Some((_, other)) => {
                        out.push('\\');
                        out.push(other);
                    }
                    None => return None,
                },
                _ => out.push(c),
            }
        }
        None // unterminated
    }
}

/// Formats samples back into exposition text (used by tests and handy for debugging).
pub fn render(samples: &[Sample]) -> String {
    let mut out = String::new();
    for s in samples {
        out.push_str(&s.name);
        if !s.labels.is_empty() {
            out.push('{');
            for (i, (k, v)) in s.labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(k);
                out.push_str("=\"");
                for c in v.chars() {
                    match c {
                        '\\' => out.push_str("\\\\"),
                        '"' => out.push_str("\\\""),
                        '\n' => out.push_str("\\n"),
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
            out.push('}');
        }
        out.push(' ');
        if s.value.is_nan() {
            out.push_str("NaN");
        } else if s.value == f64::INFINITY {
            out.push_str("+Inf");
        } else if s.value == f64::NEG_INFINITY {
            out.push_str("-Inf");
        } else {
            out.push_str(&format!("{:?}", s.value));
        }
        if let Some(ts) = s.timestamp {
            out.push(' ');
            out.push_str(&ts.to_string());
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::test_support::fixture_text;
    use proptest::prelude::*;

    fn find<'a>(samples: &'a [Sample], name: &str, label: Option<(&str, &str)>) -> &'a Sample {
        samples
            .iter()
            .find(|s| s.name == name && label.is_none_or(|(k, v)| s.label(k) == Some(v)))
            .unwrap_or_else(|| panic!("sample {name} {label:?} not found"))
    }

    #[test]
    fn basic_forms() {
        let text = "# HELP x help text\n# TYPE x gauge\nx 1\r\n  y{a=\"b\",c=\"d\",} 2.5 1700000000000\n\
                    z{q=\"a\\\"b\\\\c\\nd\"} -Inf\nn NaN\np +Inf # {trace_id=\"abc\"} 1 1.5\n\
                    {\"my.metric\",\"dotted.label\"=\"v\"} 3\nbad{ 1\nno_value\nw 1 2 3\n";
        let (s, skipped) = parse_counting(text);
        assert_eq!(skipped, 3, "{s:?}");
        assert_eq!(s.len(), 6);
        assert_eq!(s[0].name, "x");
        assert_eq!(s[0].value, 1.0);
        assert_eq!(
            s[1].labels,
            vec![("a".into(), "b".into()), ("c".into(), "d".into())]
        );
        assert_eq!(s[1].timestamp, Some(1_700_000_000_000));
        assert_eq!(s[2].label("q"), Some("a\"b\\c\nd"));
        assert_eq!(s[2].value, f64::NEG_INFINITY);
        assert!(s[3].value.is_nan());
        assert_eq!(s[4].value, f64::INFINITY);
        assert_eq!(s[4].timestamp, None);
        assert_eq!(s[5].name, "my.metric");
        assert_eq!(s[5].label("dotted.label"), Some("v"));
    }

    #[test]
    fn openmetrics_fractional_timestamp() {
        let s = parse("a 1 1520879607.789\n");
        assert_eq!(s[0].timestamp, Some(1_520_879_607_789));
    }

    #[test]
    fn rococo_fixture() {
        let text = fixture_text("substrate_metrics_polkadot_v1.1.0_rococo_local.txt");
        let (s, skipped) = parse_counting(&text);
        assert_eq!(skipped, 0);
        assert!(s.len() > 3000, "{}", s.len());
        let best = find(&s, "substrate_block_height", Some(("status", "best")));
        assert_eq!(best.value, 13.0);
        assert_eq!(best.label("chain"), Some("rococo_local_testnet"));
        assert_eq!(
            find(&s, "substrate_block_height", Some(("status", "finalized"))).value,
            10.0
        );
        assert_eq!(
            find(&s, "substrate_sub_libp2p_peers_count", None).value,
            2.0
        );
        let info = find(&s, "substrate_build_info", None);
        assert_eq!(info.label("name"), Some("bob"));
        assert_eq!(info.label("version"), Some("1.1.0-9b6e241ab63"));
    }

    #[test]
    fn every_metrics_fixture_parses_cleanly() {
        for f in [
            "substrate_metrics_chainflip_2021.txt",
            "substrate_metrics_polkadot_v0.7.28_kusama_syncing_prefixed.txt",
            "substrate_metrics_polkadot_v1.1.0_rococo_local.txt",
            "substrate_metrics_zeitgeist_v0.2.1_polkadot_prefixed.txt",
            "cometbft_metrics_biyachain_peers.txt",
            "cometbft_metrics_evmos_tendermint_prefix.txt",
            "cometbft_metrics_injective.txt",
        ] {
            let text = fixture_text(f);
            let (s, skipped) = parse_counting(&text);
            assert_eq!(skipped, 0, "{f}");
            let sample_lines = text
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                .count();
            assert_eq!(s.len(), sample_lines, "{f}");
        }
    }

    #[test]
    fn biyachain_has_nan_and_peers() {
        let s = parse(&fixture_text("cometbft_metrics_biyachain_peers.txt"));
        assert!(s.iter().any(|x| x.value.is_nan()));
        let p = find(&s, "cometbft_p2p_peers", Some(("chain_id", "biyachain-1")));
        assert_eq!(p.value, 5.0);
    }

    fn label_value() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[a-zA-Z0-9 _\\\\\"\n{}=,#.μ-]{0,12}").expect("regex")
    }

    fn sample() -> impl Strategy<Value = Sample> {
        (
            "[a-zA-Z_:][a-zA-Z0-9_:]{0,20}",
            proptest::collection::vec(("[a-zA-Z_][a-zA-Z0-9_]{0,8}", label_value()), 0..4),
            prop_oneof![
                any::<f64>(),
                Just(f64::NAN),
                Just(f64::INFINITY),
                Just(f64::NEG_INFINITY),
                (-1e12f64..1e12)
            ],
            proptest::option::of(any::<i64>()),
        )
            .prop_map(|(name, labels, value, timestamp)| Sample {
                name,
                labels,
                value,
                timestamp,
            })
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_strings(s in any::<String>()) {
            let _ = parse(&s);
        }

        #[test]
        fn never_panics_on_exposition_like_text(
            s in "[a-z_{}=\",\\\\# \t\r\n0-9.eE+-NaIf]{0,200}"
        ) {
            let _ = parse(&s);
        }

        #[test]
        fn never_panics_on_lossy_bytes(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&String::from_utf8_lossy(&b));
        }

        #[test]
        fn render_then_parse_round_trips(samples in proptest::collection::vec(sample(), 0..6)) {
            let text = render(&samples);
            let (parsed, skipped) = parse_counting(&text);
            prop_assert_eq!(skipped, 0, "{}", text);
            prop_assert_eq!(parsed.len(), samples.len());
            for (a, b) in parsed.iter().zip(samples.iter()) {
                prop_assert_eq!(&a.name, &b.name);
                prop_assert_eq!(&a.labels, &b.labels);
                prop_assert_eq!(a.timestamp, b.timestamp);
                prop_assert!(a.value == b.value || (a.value.is_nan() && b.value.is_nan()));
            }
        }
    }
}
