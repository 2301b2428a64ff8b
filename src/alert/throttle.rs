//! Per-channel pacing, pure: a token bucket (a burst of up to a minute's allowance, then
//! one notification per `60 s / perMinute`), and the retry backoff (exponential with
//! jitter, capped).

use std::time::Duration;

/// A token bucket over an abstract clock (seconds since any fixed start).
#[derive(Clone, Debug, PartialEq)]
pub struct Throttle {
    per_minute: u32,
    tokens: f64,
    at: f64,
}

impl Throttle {
    /// A full bucket of `per_minute` (at least 1) at time `now`.
    pub fn new(per_minute: u32, now: Duration) -> Throttle {
        let per_minute = per_minute.max(1);
        Throttle {
            per_minute,
            tokens: f64::from(per_minute),
            at: now.as_secs_f64(),
        }
    }

    /// Takes one token at `now`, or says how long to wait for the next.
    pub fn take(&mut self, now: Duration) -> Result<(), Duration> {
        let now = now.as_secs_f64().max(self.at);
        let rate = f64::from(self.per_minute) / 60.0;
        self.tokens = (self.tokens + (now - self.at) * rate).min(f64::from(self.per_minute));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }
}

/// First retry delay.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// The wait before retry number `attempt` (0 for the first retry): `base × 2^attempt`,
/// capped, scaled by `jitter` in [0, 1) into its upper half (so retries of many channels
/// spread out but never come sooner than half the nominal wait).
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let nominal = BACKOFF_BASE
        .checked_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX))
        .unwrap_or(BACKOFF_CAP)
        .min(BACKOFF_CAP);
    nominal.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// A number in [0, 1) that differs between calls (for jitter; not for secrets).
pub fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: f64) -> Duration {
        Duration::from_secs_f64(x)
    }

    #[test]
    fn a_burst_then_the_rate() {
        let mut t = Throttle::new(6, s(0.0));
        for _ in 0..6 {
            assert_eq!(t.take(s(0.0)), Ok(()));
        }
        // One token every 10 s after the burst.
        let wait = t.take(s(0.0)).unwrap_err();
        assert!((wait.as_secs_f64() - 10.0).abs() < 1e-6, "{wait:?}");
        assert!(t.take(s(5.0)).is_err());
        assert_eq!(t.take(s(10.0)), Ok(()));
        // A quiet hour refills only up to the burst.
        for _ in 0..6 {
            assert_eq!(t.take(s(4000.0)), Ok(()));
        }
        assert!(t.take(s(4000.0)).is_err());
        // A clock that goes back does not mint tokens.
        assert!(t.take(s(1.0)).is_err());
    }

    #[test]
    fn backoff_grows_with_jitter_and_a_cap() {
        let cases = [
            (0, 0.0, 0.5),
            (0, 0.999_999, 1.0),
            (1, 0.0, 1.0),
            (3, 1.0, 8.0),
            (6, 1.0, 60.0),
            (40, 0.0, 30.0),
            (u32::MAX, 1.0, 60.0),
        ];
        for (attempt, jitter, want) in cases {
            let got = backoff(attempt, jitter).as_secs_f64();
            assert!(
                (got - want).abs() < 1e-3,
                "attempt {attempt}: {got} != {want}"
            );
        }
    }
}
