//! Whether to call a model at all, pure: the fingerprint of what would be asked (dedup),
//! and a per-provider circuit breaker that opens after failures in a row, half-opens after
//! a cool-off to let one call through, and closes again by itself when that call works.

use crate::api::AdvisorProvider;
use std::time::Duration;

/// Bumped whenever the prompt's wording changes: old advice then no longer counts as an
/// answer to the same question.
pub const PROMPT_VERSION: &str = "v1";

/// The fingerprint of a question: the target, its failing conditions and reasons, the
/// severity, the provider, the model and the prompt version. Condition order does not
/// matter. The same fingerprint within the TTL reuses the previous advice.
pub fn fingerprint(
    target: &str,
    failing: &[(&str, &str)],
    severity: &str,
    provider: AdvisorProvider,
    model: &str,
) -> String {
    let mut conds: Vec<String> = failing.iter().map(|(t, r)| format!("{t}={r}")).collect();
    conds.sort();
    crate::text::fingerprint(&[
        target,
        &conds.join(","),
        severity,
        provider.as_str(),
        model,
        PROMPT_VERSION,
    ])
}

/// Whether earlier advice answers this question: same fingerprint, younger than `ttl`.
pub fn reusable(previous: Option<(&str, Duration)>, fingerprint: &str, ttl: Duration) -> bool {
    previous.is_some_and(|(fp, age)| fp == fingerprint && age < ttl)
}

/// A circuit breaker over an abstract clock (time since any fixed start).
#[derive(Clone, Debug, PartialEq)]
pub struct Breaker {
    state: State,
    failures: u32,
    open_after: u32,
    cool_off: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Closed,
    Open { until: Duration },
    HalfOpen { trying: bool },
}

/// What the breaker says of a call now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Go ahead.
    Call,
    /// The provider is failing; the rules decide until the cool-off ends.
    Open,
}

impl Breaker {
    /// Opens after `open_after` failures in a row, for `cool_off`.
    pub fn new(open_after: u32, cool_off: Duration) -> Breaker {
        Breaker {
            state: State::Closed,
            failures: 0,
            open_after: open_after.max(1),
            cool_off,
        }
    }

    /// Whether a call may go now (a half-open breaker lets exactly one through).
    pub fn gate(&mut self, now: Duration) -> Gate {
        match self.state {
            State::Closed => Gate::Call,
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen { trying: true };
                Gate::Call
            }
            State::Open { .. } | State::HalfOpen { trying: true } => Gate::Open,
            State::HalfOpen { trying: false } => {
                self.state = State::HalfOpen { trying: true };
                Gate::Call
            }
        }
    }

    /// Records how a call that went ended.
    pub fn record(&mut self, ok: bool, now: Duration) {
        if ok {
            self.state = State::Closed;
            self.failures = 0;
            return;
        }
        self.failures = self.failures.saturating_add(1);
        let half_open = matches!(self.state, State::HalfOpen { .. });
        if half_open || self.failures >= self.open_after {
            self.state = State::Open {
                until: now + self.cool_off,
            };
        }
    }

    /// Whether calls are held back now.
    pub fn is_open(&self) -> bool {
        !matches!(self.state, State::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: u64) -> Duration {
        Duration::from_secs(x)
    }

    #[test]
    fn fingerprints_change_with_what_is_asked_only() {
        use AdvisorProvider as P;
        let base = fingerprint(
            "ns/v",
            &[("Reachable", "Timeout"), ("Ready", "Timeout")],
            "critical",
            P::Anthropic,
            "m1",
        );
        assert_eq!(base.len(), 16);
        // Condition order does not matter.
        assert_eq!(
            base,
            fingerprint(
                "ns/v",
                &[("Ready", "Timeout"), ("Reachable", "Timeout")],
                "critical",
                P::Anthropic,
                "m1"
            )
        );
        // Everything else does, the model included (k8sgpt's cache key omits it).
        for other in [
            fingerprint(
                "ns/w",
                &[("Reachable", "Timeout"), ("Ready", "Timeout")],
                "critical",
                P::Anthropic,
                "m1",
            ),
            fingerprint(
                "ns/v",
                &[("Reachable", "ConnectionFailed"), ("Ready", "Timeout")],
                "critical",
                P::Anthropic,
                "m1",
            ),
            fingerprint(
                "ns/v",
                &[("Reachable", "Timeout"), ("Ready", "Timeout")],
                "warning",
                P::Anthropic,
                "m1",
            ),
            fingerprint(
                "ns/v",
                &[("Reachable", "Timeout"), ("Ready", "Timeout")],
                "critical",
                P::Openai,
                "m1",
            ),
            fingerprint(
                "ns/v",
                &[("Reachable", "Timeout"), ("Ready", "Timeout")],
                "critical",
                P::Anthropic,
                "m2",
            ),
        ] {
            assert_ne!(base, other);
        }
        assert!(reusable(Some((&base, s(60))), &base, s(3600)));
        assert!(!reusable(Some((&base, s(3600))), &base, s(3600)), "expired");
        assert!(!reusable(Some(("other", s(1))), &base, s(3600)));
        assert!(!reusable(None, &base, s(3600)));
    }

    #[test]
    fn the_breaker_opens_half_opens_and_closes_by_itself() {
        let mut b = Breaker::new(3, s(30));
        for t in 0..2 {
            assert_eq!(b.gate(s(t)), Gate::Call);
            b.record(false, s(t));
        }
        assert!(!b.is_open(), "two failures: still closed");
        assert_eq!(b.gate(s(2)), Gate::Call);
        b.record(false, s(2));
        assert_eq!(b.gate(s(3)), Gate::Open);
        assert_eq!(b.gate(s(31)), Gate::Open, "cool-off lasts until 32");
        // Half-open: one call through, the next waits for its result.
        assert_eq!(b.gate(s(32)), Gate::Call);
        assert_eq!(b.gate(s(32)), Gate::Open);
        b.record(false, s(33));
        assert_eq!(b.gate(s(40)), Gate::Open, "the trial failed: open again");
        assert_eq!(b.gate(s(63)), Gate::Call);
        b.record(true, s(63));
        // Closed again, and it stays closed (k8sgpt's never did).
        assert!(!b.is_open());
        assert_eq!(b.gate(s(64)), Gate::Call);
        b.record(false, s(64));
        assert_eq!(
            b.gate(s(65)),
            Gate::Call,
            "a single failure after closing does not reopen"
        );
    }
}
