//! The `Signing` condition, pure: from what the chain says of a validator's duty and the
//! policy's thresholds. Node health is another matter (`Ready`): a healthy node may miss
//! every block (its key is not loaded, its remote signer is down, it is jailed).

use crate::api::{Chain, DutyFacts};
use crate::conditions::{Desired, Status, kind};
use jiff::Timestamp;
use std::time::Duration;

/// Reasons of the `Signing` condition.
pub mod reason {
    /// Doing its duty.
    pub const SIGNING: &str = "Signing";
    /// Missed blocks in a row at a warning tier.
    pub const MISSED_BLOCKS: &str = "MissedBlocks";
    /// Missed blocks in a row at the last (critical) tier.
    pub const MISSED_BLOCKS_CRITICAL: &str = "MissedBlocksCritical";
    /// Missed more than the allowed share of the window.
    pub const MISSED_SHARE: &str = "MissedShare";
    /// Jailed (Cosmos).
    pub const JAILED: &str = "Jailed";
    /// Tombstoned (Cosmos; permanent).
    pub const TOMBSTONED: &str = "Tombstoned";
    /// Slashed (Ethereum).
    pub const SLASHED: &str = "Slashed";
    /// Not in the active validator set.
    pub const NOT_IN_ACTIVE_SET: &str = "NotInActiveSet";
    /// The node does not run as an authority (Substrate).
    pub const NOT_AUTHORITY: &str = "NotAuthority";
    /// No block authored for too long (Substrate).
    pub const NOT_AUTHORING: &str = "NotAuthoring";
    /// Duty cannot be read (the duty RPC is down or answers garbage).
    pub const DUTY_UNKNOWN: &str = "DutyUnknown";
    /// Not enough read yet.
    pub const PENDING: &str = "Pending";
}

/// Every reason that says the validator does not do its duty (`Signing=False`).
pub const FAILING: [&str; 10] = [
    reason::MISSED_BLOCKS,
    reason::MISSED_BLOCKS_CRITICAL,
    reason::MISSED_SHARE,
    reason::JAILED,
    reason::TOMBSTONED,
    reason::SLASHED,
    reason::NOT_IN_ACTIVE_SET,
    reason::NOT_AUTHORITY,
    reason::NOT_AUTHORING,
    reason::DUTY_UNKNOWN,
];

/// The policy's duty thresholds, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Missed in a row per tier, ascending; the last is critical.
    pub tiers: Vec<u64>,
    /// Blocks in the window.
    pub window: u64,
    /// Largest missed share, percent.
    pub max_missed_percent: u64,
    /// Substrate: expected authoring intervals without a block before `NotAuthoring`.
    pub authored_within: u32,
    /// Fold `Signing` into `Ready`.
    pub affects_ready: bool,
    /// Restart a healthy node that does not sign.
    pub restart: bool,
}

impl Thresholds {
    /// From the policy's spec (tiers sorted).
    pub fn from_spec(s: &crate::api::DutySpecPolicy) -> Thresholds {
        let mut tiers: Vec<u64> = s.missed_in_a_row.iter().map(|t| u64::from(*t)).collect();
        tiers.sort_unstable();
        tiers.dedup();
        Thresholds {
            tiers,
            window: s.window.max(1),
            max_missed_percent: u64::from(s.max_missed_percent),
            authored_within: s.authored_within_intervals.max(1),
            affects_ready: s.affects_ready,
            restart: s.restart_when_not_signing,
        }
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds::from_spec(&crate::api::DutySpecPolicy::default())
    }
}

/// What one duty reading adds to the facts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    /// The facts as read now.
    pub facts: DutyFacts,
    /// Substrate: the node runs as an authority.
    pub authority: Option<bool>,
    /// Substrate: the expected time between two blocks of this validator.
    pub expected_interval: Option<Duration>,
    /// Why duty could not be read (a sentence without the answer's text).
    pub error: Option<String>,
}

/// The `Signing` condition.
pub fn judge(chain: Chain, r: &Reading, t: &Thresholds, now: Timestamp) -> Desired {
    let f = &r.facts;
    let no =
        |reason: &'static str, msg: String| Desired::new(kind::SIGNING, Status::False, reason, msg);
    if let Some(e) = &r.error {
        return Desired::new(
            kind::SIGNING,
            Status::Unknown,
            reason::DUTY_UNKNOWN,
            format!("Vigil cannot read the validator's duty: {e}"),
        );
    }
    if f.tombstoned == Some(true) {
        return no(
            reason::TOMBSTONED,
            "The validator is tombstoned (slashed for double signing, permanently out); a restart fixes nothing".into(),
        );
    }
    if f.jailed == Some(true) {
        return no(
            reason::JAILED,
            "The validator is jailed: it signs nothing until it is unjailed (a transaction by its operator); a restart fixes nothing".into(),
        );
    }
    if f.slashed == Some(true) {
        return no(reason::SLASHED, "The validator was slashed".into());
    }
    if r.authority == Some(false) {
        return no(
            reason::NOT_AUTHORITY,
            "The node does not run as an authority (validator role); is it a full node by mistake?"
                .into(),
        );
    }
    if f.active == Some(false) {
        let state = f
            .state
            .as_deref()
            .map(|s| format!(" (state {s})"))
            .unwrap_or_default();
        return no(
            reason::NOT_IN_ACTIVE_SET,
            format!("The validator is not in the active set{state}"),
        );
    }
    let unit = if chain == Chain::Ethereum {
        "epochs"
    } else {
        "blocks"
    };
    // Messages name the tier or the threshold, not the counts: a count that changes every
    // block would make every probe a status write and an Event. The counts are in
    // status.duty (written with every change of a condition).
    if let Some(i) = t.tiers.iter().rposition(|tier| f.missed_in_a_row >= *tier) {
        let critical = i + 1 == t.tiers.len();
        return no(
            if critical {
                reason::MISSED_BLOCKS_CRITICAL
            } else {
                reason::MISSED_BLOCKS
            },
            format!(
                "Missed {} or more {unit} in a row (tier {} of {}); see status.duty for the count and the last signed height",
                t.tiers[i],
                i + 1,
                t.tiers.len(),
            ),
        );
    }
    if f.window > 0
        && f.missed_in_window.saturating_mul(100) > t.max_missed_percent.saturating_mul(f.window)
    {
        return no(
            reason::MISSED_SHARE,
            format!(
                "Missed more than {}% of the recent {unit}; see status.duty for the counts (and how many the others signed)",
                t.max_missed_percent
            ),
        );
    }
    if chain == Chain::Substrate
        && let (Some(every), Some(at)) = (r.expected_interval, f.last_authored_time.as_ref())
    {
        let limit = every.saturating_mul(t.authored_within);
        let since: Duration = now
            .duration_since(at.0)
            .try_into()
            .unwrap_or(Duration::ZERO);
        if since > limit {
            return no(
                reason::NOT_AUTHORING,
                format!(
                    "No block authored for over {} ({} expected authoring intervals of {})",
                    crate::duration::format(limit),
                    t.authored_within,
                    crate::duration::format(every)
                ),
            );
        }
    }
    if chain != Chain::Substrate && f.window == 0 && f.last_signed_height.is_none() {
        return Desired::new(
            kind::SIGNING,
            Status::Unknown,
            reason::PENDING,
            "No block read yet",
        );
    }
    Desired::new(
        kind::SIGNING,
        Status::True,
        reason::SIGNING,
        "The validator does its duty",
    )
}

/// Whether a `Signing` reason is critical (for alert severity).
pub fn critical(reason: &str) -> bool {
    matches!(
        reason,
        reason::MISSED_BLOCKS_CRITICAL | reason::JAILED | reason::TOMBSTONED | reason::SLASHED
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }
    fn facts(f: impl FnOnce(&mut DutyFacts)) -> Reading {
        let mut d = DutyFacts {
            window: 100,
            last_signed_height: Some(100),
            active: Some(true),
            ..Default::default()
        };
        f(&mut d);
        Reading {
            facts: d,
            ..Default::default()
        }
    }

    #[test]
    fn the_signing_table() {
        let t = Thresholds::default(); // tiers 5, 25, 100; 5%
        let rows: Vec<(&str, Chain, Reading, Status, &str)> = vec![
            (
                "signs",
                Chain::Cosmos,
                facts(|_| {}),
                Status::True,
                reason::SIGNING,
            ),
            (
                "4 missed: below the first tier",
                Chain::Cosmos,
                facts(|f| f.missed_in_a_row = 4),
                Status::True,
                reason::SIGNING,
            ),
            (
                "5 in a row: warning tier",
                Chain::Cosmos,
                facts(|f| {
                    f.missed_in_a_row = 5;
                    f.missed_in_window = 5
                }),
                Status::False,
                reason::MISSED_BLOCKS,
            ),
            (
                "25 in a row: second tier",
                Chain::Cosmos,
                facts(|f| {
                    f.missed_in_a_row = 30;
                    f.missed_in_window = 30
                }),
                Status::False,
                reason::MISSED_BLOCKS,
            ),
            (
                "100 in a row: critical",
                Chain::Cosmos,
                facts(|f| {
                    f.missed_in_a_row = 100;
                    f.missed_in_window = 100
                }),
                Status::False,
                reason::MISSED_BLOCKS_CRITICAL,
            ),
            (
                "scattered misses over 5%",
                Chain::Cosmos,
                facts(|f| f.missed_in_window = 6),
                Status::False,
                reason::MISSED_SHARE,
            ),
            (
                "5% exactly is fine",
                Chain::Cosmos,
                facts(|f| f.missed_in_window = 5),
                Status::True,
                reason::SIGNING,
            ),
            (
                "jailed wins over misses",
                Chain::Cosmos,
                facts(|f| {
                    f.jailed = Some(true);
                    f.missed_in_a_row = 200
                }),
                Status::False,
                reason::JAILED,
            ),
            (
                "tombstoned wins over jailed",
                Chain::Cosmos,
                facts(|f| {
                    f.jailed = Some(true);
                    f.tombstoned = Some(true)
                }),
                Status::False,
                reason::TOMBSTONED,
            ),
            (
                "out of the set",
                Chain::Cosmos,
                facts(|f| f.active = Some(false)),
                Status::False,
                reason::NOT_IN_ACTIVE_SET,
            ),
            (
                "nothing read yet",
                Chain::Cosmos,
                facts(|f| {
                    f.window = 0;
                    f.last_signed_height = None
                }),
                Status::Unknown,
                reason::PENDING,
            ),
            (
                "slashed",
                Chain::Ethereum,
                facts(|f| f.slashed = Some(true)),
                Status::False,
                reason::SLASHED,
            ),
            (
                "missed attestations",
                Chain::Ethereum,
                facts(|f| {
                    f.missed_in_a_row = 5;
                    f.window = 10;
                    f.missed_in_window = 5
                }),
                Status::False,
                reason::MISSED_BLOCKS,
            ),
        ];
        for (name, chain, r, status, why) in rows {
            let d = judge(chain, &r, &t, at(0));
            assert_eq!((d.status, d.reason), (status, why), "{name}: {}", d.message);
        }
        let d = judge(
            Chain::Cosmos,
            &facts(|f| {
                f.missed_in_a_row = 30;
                f.missed_in_window = 30
            }),
            &t,
            at(0),
        );
        assert_eq!(
            d.message,
            "Missed 25 or more blocks in a row (tier 2 of 3); see status.duty for the count and the last signed height"
        );
        let d31 = judge(
            Chain::Cosmos,
            &facts(|f| {
                f.missed_in_a_row = 31;
                f.missed_in_window = 31
            }),
            &t,
            at(0),
        );
        assert_eq!(d31, d, "one more missed block within a tier writes nothing");
        let healthy = judge(Chain::Cosmos, &facts(|_| {}), &t, at(0));
        assert_eq!(
            healthy.message, "The validator does its duty",
            "no changing numbers"
        );
    }

    #[test]
    fn substrate_authorship_and_role() {
        let t = Thresholds::default(); // within 3 intervals
        let mut r = Reading {
            facts: DutyFacts {
                blocks_authored: Some(7),
                last_authored_time: Some(Time(at(0))),
                ..Default::default()
            },
            authority: Some(true),
            expected_interval: Some(Duration::from_secs(24)),
            error: None,
        };
        assert_eq!(
            judge(Chain::Substrate, &r, &t, at(72)).reason,
            reason::SIGNING
        );
        let d = judge(Chain::Substrate, &r, &t, at(73));
        assert_eq!((d.status, d.reason), (Status::False, reason::NOT_AUTHORING));
        assert!(
            d.message.contains("1m 12s")
                || d.message.contains("72s")
                || d.message.contains("1m12s"),
            "{}",
            d.message
        );
        r.authority = Some(false);
        assert_eq!(
            judge(Chain::Substrate, &r, &t, at(0)).reason,
            reason::NOT_AUTHORITY
        );
        r.error = Some("the duty RPC did not answer".into());
        let d = judge(Chain::Substrate, &r, &t, at(0));
        assert_eq!(
            (d.status, d.reason),
            (Status::Unknown, reason::DUTY_UNKNOWN)
        );
    }

    #[test]
    fn tiers_are_sorted_and_the_last_is_critical() {
        let spec = crate::api::DutySpecPolicy {
            missed_in_a_row: vec![50, 3],
            ..Default::default()
        };
        let t = Thresholds::from_spec(&spec);
        assert_eq!(t.tiers, vec![3, 50]);
        let r = facts(|f| {
            f.missed_in_a_row = 3;
            f.missed_in_window = 3;
            f.window = 1000
        });
        assert_eq!(
            judge(Chain::Cosmos, &r, &t, at(0)).reason,
            reason::MISSED_BLOCKS
        );
        assert!(critical(reason::MISSED_BLOCKS_CRITICAL) && critical(reason::JAILED));
        assert!(!critical(reason::MISSED_BLOCKS));
    }
}
