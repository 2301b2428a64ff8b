//! The fleet view: validators of one chain under one policy, seen together. It answers "how
//! far behind the fleet is this node" and "has the whole chain stopped" (a halt is not a node
//! fault). Pure data, fed by probe results; rebuilt from observations after a restart.
//!
//! The fleet's reference height ("highest") is not the maximum of its members: one node
//! reporting `u64::MAX` would put every other node behind. It is the lower median of the
//! top third of fresh heights ([`reference`]): with 4 or more fresh members one liar is
//! outvoted (with t = ⌈n/3⌉ top heights, ⌊t/2⌋ liars are); with 3 or fewer nobody can tell
//! the liar from the leader, and the maximum is used.

use crate::health::FleetView;
#[cfg(test)]
use crate::health::Incident;
use jiff::Timestamp;
use std::collections::HashMap;
use std::time::Duration;

#[derive(Clone, Debug)]
struct Member {
    best: u64,
    seen: Timestamp,
    /// When this member's best block last changed (or was first seen).
    changed_at: Timestamp,
}

/// One fleet (policy + chain).
#[derive(Clone, Debug, Default)]
pub struct Fleet {
    members: HashMap<String, Option<Member>>,
    /// The reference height, see [`reference`].
    highest: Option<u64>,
    highest_changed_at: Option<Timestamp>,
    /// When the members were last walked to find the reference height.
    walked: Option<Timestamp>,
}

/// How often at most the members are walked to find the reference height again: walking on
/// every probe would cost time quadratic in the fleet's size.
const WALK_EVERY: Duration = Duration::from_secs(1);

/// The reference height of fresh heights: the lower median of the top third (the maximum
/// for 3 or fewer). Linear time.
pub fn reference(mut fresh: Vec<u64>) -> Option<u64> {
    if fresh.is_empty() {
        return None;
    }
    let top = fresh.len().div_ceil(3);
    let (_, v, _) = fresh.select_nth_unstable_by(top / 2, |a, b| b.cmp(a));
    Some(*v)
}

impl Fleet {
    /// Adds a validator to the fleet (before it was ever observed).
    pub fn join(&mut self, name: &str) {
        self.members.entry(name.to_string()).or_insert(None);
    }

    /// Removes a validator (deleted, or moved to another policy).
    pub fn leave(&mut self, name: &str) {
        self.members.remove(name);
    }

    /// Validators in the fleet.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the fleet has no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Records a best block seen on `name` at `now`. Only fresh observations (within
    /// `freshness`) count toward the fleet's reference height, so a dead node's old height
    /// neither raises nor holds it.
    pub fn observe(&mut self, name: &str, best: Option<u64>, now: Timestamp, freshness: Duration) {
        if let Some(b) = best {
            let slot = self.members.entry(name.to_string()).or_insert(None);
            let changed_at = match slot {
                Some(m) if m.best == b => m.changed_at,
                _ => now,
            };
            *slot = Some(Member {
                best: b,
                seen: now,
                changed_at,
            });
        } else {
            self.members.entry(name.to_string()).or_insert(None);
        }
        if self.walked.is_some_and(|t| age(t, now) < WALK_EVERY) {
            return;
        }
        self.walked = Some(now);
        let fresh: Vec<(u64, Timestamp)> = self
            .members
            .values()
            .flatten()
            .filter(|m| age(m.seen, now) <= freshness)
            .map(|m| (m.best, m.changed_at))
            .collect();
        // The reference follows the fresh members (it may drop when the leaders die); only
        // a rise counts as the fleet moving, dated by the latest move of a member at or above
        // it (not when the walk noticed: a walk lags by up to a second; and not earlier than
        // the move that can have raised it, so a halt is never seen too soon).
        if let Some(h) = reference(fresh.iter().map(|(b, _)| *b).collect()) {
            if self.highest.is_none_or(|prev| h > prev) {
                let at = fresh
                    .iter()
                    .filter(|(b, _)| *b >= h)
                    .map(|(_, t)| *t)
                    .max()
                    .unwrap_or(now);
                self.highest_changed_at = Some(self.highest_changed_at.map_or(at, |p| p.max(at)));
            }
            self.highest = Some(h);
        }
    }

    /// The view one evaluation needs at `now`: members seen within `freshness` count as
    /// observed, and those whose best block has not moved for longer than `stall` as stalled.
    pub fn view(&self, now: Timestamp, freshness: Duration, stall: Duration) -> FleetView {
        let fresh = || {
            self.members
                .values()
                .flatten()
                .filter(move |m| age(m.seen, now) <= freshness)
        };
        FleetView {
            highest: self.highest,
            highest_changed_at: self.highest_changed_at,
            members: self.members.len() as u32,
            observed: fresh().count() as u32,
            stalled: fresh().filter(|m| age(m.changed_at, now) > stall).count() as u32,
        }
    }
}

fn age(seen: Timestamp, now: Timestamp) -> Duration {
    now.duration_since(seen)
        .try_into()
        .unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }
    const FRESH: Duration = Duration::from_secs(30);
    const STALL: Duration = Duration::from_secs(120);
    const NOW: Timestamp = Timestamp::UNIX_EPOCH;

    #[test]
    fn highest_block_and_when_it_moved() {
        let mut f = Fleet::default();
        f.observe("a", Some(10), at(0), FRESH);
        f.observe("b", Some(12), at(1), FRESH);
        assert_eq!(f.view(NOW, FRESH, STALL).highest, Some(12));
        assert_eq!(f.view(NOW, FRESH, STALL).highest_changed_at, Some(at(1)));
        f.observe("a", Some(11), at(5), FRESH);
        assert_eq!(
            f.view(NOW, FRESH, STALL).highest_changed_at,
            Some(at(1)),
            "a lower node does not move the fleet"
        );
        f.observe("b", Some(13), at(6), FRESH);
        assert_eq!(f.view(NOW, FRESH, STALL).highest_changed_at, Some(at(6)));
        assert_eq!(f.view(NOW, FRESH, STALL).members, 2);
    }

    #[test]
    fn a_halted_chain_is_seen_as_one() {
        let mut f = Fleet::default();
        for (t, n) in [(0, "a"), (1, "b"), (2, "c")] {
            f.observe(n, Some(100), at(t), FRESH);
        }
        for t in (10..200).step_by(10) {
            for n in ["a", "b", "c"] {
                f.observe(n, Some(100), at(t), FRESH);
            }
        }
        let v = f.view(at(200), FRESH, STALL);
        assert!(v.halted(at(200), STALL));
        assert_eq!(v.incident(at(200), STALL), Some(Incident::ChainHalted));
        assert_eq!((v.observed, v.stalled), (3, 3));
        assert!(!f.view(at(100), FRESH, STALL).halted(at(100), STALL));
    }

    #[test]
    fn stale_members_do_not_count_and_leavers_go() {
        let mut f = Fleet::default();
        f.join("a");
        f.join("b");
        assert_eq!(f.view(NOW, FRESH, STALL).members, 2);
        f.observe("a", Some(500), at(0), FRESH);
        f.observe("b", Some(100), at(100), FRESH);
        // a's 500 is stale at t=100: the fleet's highest is what live nodes report.
        assert_eq!(f.view(at(100), FRESH, STALL).highest, Some(100));
        assert_eq!(
            f.view(at(100), FRESH, STALL).observed,
            1,
            "a dead node is not observed"
        );
        assert_eq!(
            f.view(NOW, FRESH, STALL).highest_changed_at,
            Some(at(0)),
            "a drop is not progress"
        );
        f.leave("a");
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn most_nodes_stalling_at_once_is_a_fleet_incident() {
        let mut f = Fleet::default();
        // Six of ten stop at #100 at t=0; four keep producing.
        for t in (0..=200).step_by(10) {
            for n in 0..10 {
                let best = if n < 6 { 100 } else { 100 + t as u64 / 6 };
                f.observe(&format!("v{n}"), Some(best), at(t), FRESH);
            }
        }
        let v = f.view(at(200), FRESH, STALL);
        assert_eq!((v.observed, v.stalled), (10, 6));
        assert!(!v.halted(at(200), STALL), "the highest block still moves");
        assert_eq!(v.incident(at(200), STALL), Some(Incident::MassStall));
        // Four of ten: node faults, not a fleet incident.
        let mut g = Fleet::default();
        for t in (0..=200).step_by(10) {
            for n in 0..10 {
                let best = if n < 4 { 100 } else { 100 + t as u64 / 6 };
                g.observe(&format!("v{n}"), Some(best), at(t), FRESH);
            }
        }
        assert_eq!(g.view(at(200), FRESH, STALL).incident(at(200), STALL), None);
    }

    #[test]
    fn a_rise_and_a_drop_show_within_a_second() {
        let ms = |m: i64| Timestamp::from_millisecond(1_700_000_000_000 + m).unwrap();
        let mut f = Fleet::default();
        f.observe("a", Some(10), ms(0), FRESH);
        f.observe("b", Some(12), ms(0), FRESH);
        assert_eq!(f.view(ms(0), FRESH, STALL).highest, Some(10), "no walk yet");
        f.observe("a", Some(10), ms(1000), FRESH);
        assert_eq!(f.view(ms(1000), FRESH, STALL).highest, Some(12));
        f.leave("b");
        f.observe("a", Some(10), ms(1500), FRESH);
        assert_eq!(
            f.view(ms(1500), FRESH, STALL).highest,
            Some(12),
            "no walk within a second"
        );
        f.observe("a", Some(10), ms(2000), FRESH);
        assert_eq!(
            f.view(ms(2000), FRESH, STALL).highest,
            Some(10),
            "the walk sees the drop"
        );
        assert_eq!(
            f.view(ms(2000), FRESH, STALL).highest_changed_at,
            Some(ms(0)),
            "the rise is dated when b reached #12, not when the walk saw it; a drop is not progress"
        );
    }

    /// (fresh heights, reference)
    #[test]
    fn the_reference_height_outvotes_liars() {
        let cases: &[(&[u64], Option<u64>)] = &[
            (&[], None),
            (&[7], Some(7)),
            (&[7, 9], Some(9)),
            (&[u64::MAX, 9, 9], Some(u64::MAX)), // three: the liar cannot be told apart
            (&[u64::MAX, 100, 100, 99], Some(100)),
            (&[100, 99, u64::MAX, 98, 100, 97], Some(100)),
            // Nine: the top three, lower median: one liar is outvoted, two are not.
            (
                &[u64::MAX, 100, 100, 100, 100, 100, 100, 100, 99],
                Some(100),
            ),
            (
                &[u64::MAX, u64::MAX, 100, 100, 100, 100, 100, 100, 100],
                Some(u64::MAX),
            ),
            // Fifteen: top five, two liars outvoted.
            (
                &[u64::MAX, u64::MAX, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9],
                Some(9),
            ),
            (&[5, 4, 3, 2, 1, 0, 0, 0, 0, 0, 0, 0], Some(3)),
        ];
        for (heights, want) in cases {
            assert_eq!(reference(heights.to_vec()), *want, "{heights:?}");
        }
    }

    #[test]
    fn one_node_reporting_u64_max_does_not_put_the_fleet_behind() {
        let mut f = Fleet::default();
        for t in 0..3 {
            for n in 0..5 {
                f.observe(&format!("v{n}"), Some(1000 + t), at(t as i64), FRESH);
            }
            f.observe("liar", Some(u64::MAX), at(t as i64), FRESH);
        }
        assert_eq!(f.view(at(2), FRESH, STALL).highest, Some(1002));
        f.observe("v0", Some(1003), at(3), FRESH);
        assert_eq!(f.view(at(3), FRESH, STALL).highest, Some(1003));
    }
}
