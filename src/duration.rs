//! Go-style durations (`30s`, `1h30m`, `500ms`), the syntax Kubernetes users already write
//! and the one CEL's `duration()` checks in the CRD schema.

use std::time::Duration;

/// Why a duration string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    /// Empty input.
    #[error("empty duration")]
    Empty,
    /// Not `<number><unit>` repeated.
    #[error("invalid duration {0:?}: expected e.g. 30s, 5m or 1h30m")]
    Syntax(String),
    /// A unit other than ns, us, µs, ms, s, m, h.
    #[error("invalid duration {0:?}: unknown unit {1:?} (use ns, us, ms, s, m or h)")]
    Unit(String, String),
    /// Too large to represent: over Go's limit of 2^63-1 nanoseconds (about 292 years).
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

/// Parses a Go duration without sign. `"0"` is accepted as zero, as in Go. Like Go's
/// `time.ParseDuration` (and so CEL's `duration()` in the CRD rules), durations above 2^63-1
/// nanoseconds are refused, never wrapped or saturated.
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(DurationError::Syntax(s.into()));
        }
        let (num, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let nanos_per_unit: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(DurationError::Syntax(s.into())),
            other => return Err(DurationError::Unit(s.into(), other.into())),
        };
        let (int_part, frac_part) = match num.split_once('.') {
            Some((i, f)) => (i, f),
            None => (num, ""),
        };
        if int_part.is_empty()
            || frac_part.contains('.')
            || (num.contains('.') && frac_part.is_empty())
        {
            return Err(DurationError::Syntax(s.into()));
        }
        let int: u128 = int_part
            .parse()
            .map_err(|_| DurationError::Overflow(s.into()))?;
        let mut value = int
            .checked_mul(nanos_per_unit)
            .ok_or_else(|| DurationError::Overflow(s.into()))?;
        // Fractions: keep at most 18 digits; anything finer than a nanosecond is dropped.
        let frac_digits = &frac_part[..frac_part.len().min(18)];
        if !frac_digits.is_empty() {
            let frac: u128 = frac_digits
                .parse()
                .map_err(|_| DurationError::Syntax(s.into()))?;
            let scale = 10u128.pow(frac_digits.len() as u32);
            value = value
                .checked_add(frac * nanos_per_unit / scale)
                .ok_or_else(|| DurationError::Overflow(s.into()))?;
        }
        total = total
            .checked_add(value)
            .ok_or_else(|| DurationError::Overflow(s.into()))?;
        rest = next;
    }
    if total > i64::MAX as u128 {
        return Err(DurationError::Overflow(s.into()));
    }
    // Below 2^63 nanoseconds, so the seconds fit a u64.
    Ok(Duration::new(
        (total / 1_000_000_000) as u64,
        (total % 1_000_000_000) as u32,
    ))
}

/// Formats a duration the Go way for messages (`1h30m0s` becomes `1h30m`, sub-second as `ms`).
pub fn format(d: Duration) -> String {
    let total_ms = d.as_millis();
    if total_ms < 1000 {
        return format!("{total_ms}ms");
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("2us"), Ok(Duration::from_micros(2)));
        assert_eq!(parse("2µs"), Ok(Duration::from_micros(2)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("1m0.25s"), Ok(Duration::from_millis(60_250)));
    }

    #[test]
    fn refuses_garbage() {
        assert_eq!(parse(""), Err(DurationError::Empty));
        assert!(matches!(parse("30"), Err(DurationError::Syntax(_))));
        assert!(matches!(parse("s"), Err(DurationError::Syntax(_))));
        assert!(matches!(parse("5 m"), Err(DurationError::Unit(_, _))));
        assert!(matches!(parse("3d"), Err(DurationError::Unit(_, _))));
        assert!(matches!(parse("1.s"), Err(DurationError::Syntax(_))));
        assert!(matches!(parse("-5s"), Err(DurationError::Syntax(_))));
        assert!(matches!(
            parse("99999999999999999999999999h"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn refuses_what_go_cannot_represent() {
        // The largest Go duration is 2562047h47m16.854775807s; one nanosecond more is refused.
        let max = Duration::new(i64::MAX as u64 / 1_000_000_000, 854_775_807);
        assert_eq!(parse("2562047h47m16.854775807s"), Ok(max));
        assert_eq!(parse("9223372036854775807ns"), Ok(max));
        for huge in [
            "9223372036854775808ns",
            "2562048h",
            "99999999999999999999h",
            "99999999999999999999999999999999999999999h",
            "1000000h1000000h1000000h",
            // The integer part alone fits a u128 of nanoseconds; its fraction would not.
            "94522879700260684295381835.999999999999999999h",
        ] {
            assert_eq!(
                parse(huge),
                Err(DurationError::Overflow(huge.into())),
                "{huge}"
            );
        }
    }

    #[test]
    fn agrees_with_the_schema_pattern() {
        // Every string the CRD pattern accepts must parse, and the reverse for these samples.
        let accepted = ["0", "1s", "1h2m3s", "0.5s", "10ms", "7ns"];
        for s in accepted {
            assert!(parse(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn formats_for_people() {
        assert_eq!(format(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format(Duration::from_millis(250)), "250ms");
        assert_eq!(format(Duration::from_secs(60)), "1m");
        assert_eq!(format(Duration::from_secs(0)), "0ms");
    }
}
