//! Validator duty on the simulated chains: who signs which CometBFT block, who authors which
//! Substrate block, who is jailed.
//!
//! All simulated nodes of one chain family form one chain and every one of them is a
//! validator with equal power. What each validator does is a function of its faults
//! ([`DutyState`]), and the admin API records every change in a per-chain timeline at the
//! first block it affects (the block after the network's current height). History is
//! immutable from then on, so any past block is answered the same way whenever it is asked
//! for, and nothing ticks: a block's commit is rendered once, when first asked for
//! (O(validators)), and then served from a bounded cache. Timelines grow only with admin
//! actions (a fleet-wide fault within one block is one entry).
//!
//! - CometBFT: the validator set is every cosmos node not jailed, ordered by address (equal
//!   power); a block's commit has one signature per member, `block_id_flag` 2 when it signs
//!   and 1 (absent, no address, as CometBFT writes it) when it does not.
//! - Substrate: with N authorities (the substrate nodes, by index), authority `i` authors the
//!   blocks whose height % N == i; when it does not author (`stopSigning`, dead, frozen or
//!   syncing), the next authority in order that does authors them instead.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::cosmos;
use super::model::{DutyState, Params, SimChain};
use super::view::seed_of;

/// How many recent heights a node serves commits and validator sets for (older ones are
/// pruned, as on a pruning node).
pub const RING: u64 = 1000;
/// Most bytes of rendered commits kept (the oldest rendered go first).
const CACHE_BYTES: usize = 64 << 20;
/// Voting power of every simulated validator (as `/status` reports it).
pub const VOTING_POWER: u64 = 10;
/// `x/slashing` `signed_blocks_window`: the window `missed_blocks_counter` counts in.
pub const SIGNED_BLOCKS_WINDOW: u64 = 10_000;
/// `x/slashing` `downtime_jail_duration` (the SDK's default, 600 s).
pub const DOWNTIME_JAIL_SECONDS: i64 = 600;
/// `x/staking` `unbonding_time` (21 days).
pub const UNBONDING_SECONDS: i64 = 21 * 24 * 3600;

/// One validator's states over heights: `(from, state)`, ascending, the first from 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History(Vec<(u64, DutyState)>);

impl Default for History {
    fn default() -> Self {
        History(vec![(0, DutyState::HEALTHY)])
    }
}

impl History {
    /// The state at height `h`.
    pub fn at(&self, h: u64) -> DutyState {
        let i = self.0.partition_point(|(from, _)| *from <= h);
        self.0[i.saturating_sub(1)].1
    }

    /// The state from now on.
    pub fn last(&self) -> DutyState {
        self.0.last().map_or(DutyState::HEALTHY, |x| x.1)
    }

    /// Records `state` from height `from` on (`from` never decreases between calls).
    pub fn set(&mut self, from: u64, state: DutyState) {
        if self.last() == state {
            return;
        }
        match self.0.last_mut() {
            Some(last) if last.0 >= from => {
                last.1 = state;
                // Undone within the same block: the entry merges with the one before.
                let n = self.0.len();
                if n >= 2 && self.0[n - 2].1 == state {
                    self.0.pop();
                }
            }
            _ => self.0.push((from, state)),
        }
    }

    /// The segments `[a, b)` of heights in `(lo, hi]` with their state.
    fn segments(&self, lo: u64, hi: u64) -> impl Iterator<Item = (u64, u64, DutyState)> + '_ {
        self.0
            .iter()
            .enumerate()
            .filter_map(move |(i, (from, st))| {
                let to = self.0.get(i + 1).map_or(u64::MAX, |x| x.0);
                let a = (*from).max(lo.saturating_add(1));
                let b = to.min(hi.saturating_add(1));
                (a < b).then_some((a, b, *st))
            })
    }

    /// How many heights in `(lo, hi]` have a state for which `pred` holds.
    pub fn count(&self, lo: u64, hi: u64, pred: impl Fn(DutyState) -> bool) -> u64 {
        self.segments(lo, hi)
            .filter(|(_, _, st)| pred(*st))
            .map(|(a, b, _)| b - a)
            .sum()
    }

    /// The highest height at or below `hi` whose state satisfies `pred`.
    pub fn last_where(&self, hi: u64, pred: impl Fn(DutyState) -> bool) -> Option<u64> {
        self.segments(0, hi)
            .filter(|(_, _, st)| pred(*st))
            .map(|(_, b, _)| b - 1)
            .max()
    }
}

/// The chain height (the highest block any node can have) at `e`, and so the first block a
/// duty change at `e` affects is one above it.
fn first_affected(p: &Params, e: u128) -> u64 {
    p.network_at(e).saturating_add(1)
}

/// A CometBFT validator: one simulated cosmos node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validator {
    /// The node's index in the fleet.
    pub node: usize,
    /// Its name (the moniker).
    pub name: String,
    /// Consensus address, 40 upper-case hex digits.
    pub address: String,
    /// Ed25519 public key, base64.
    pub pub_key: String,
    /// Operator address, `cosmosvaloper1…`.
    pub valoper: String,
    /// Consensus address in bech32, `cosmosvalcons1…`.
    pub valcons: String,
    /// Its `/validators` entry, rendered once.
    pub entry: String,
}

/// When a validator was last jailed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Jail {
    /// First block it was out of the set.
    pub height: u64,
    /// When (`e` time, nanoseconds since the start).
    pub e: u128,
}

/// The mutable part of the CometBFT chain.
#[derive(Debug)]
pub struct CosmosState {
    /// Per validator (set order).
    pub hist: Vec<History>,
    /// Validator sets: `(from height, members by position in `vals`)`, ascending.
    sets: Vec<(u64, Arc<Vec<usize>>)>,
    /// Per validator: its last jailing, kept after it is unjailed (as the SDK keeps
    /// `jailed_until` and the unbonding height).
    pub jails: Vec<Option<Jail>>,
    /// Per validator: `start_height` of its signing info (0, or the block it was unjailed).
    pub start_heights: Vec<u64>,
    /// Rendered commits by height, and the order they were rendered in.
    commits: HashMap<u64, Bytes>,
    order: VecDeque<u64>,
    cached: usize,
}

impl CosmosState {
    /// The validator set at height `h`.
    pub fn set_at(&self, h: u64) -> Arc<Vec<usize>> {
        let i = self.sets.partition_point(|(from, _)| *from <= h);
        self.sets[i.saturating_sub(1)].1.clone()
    }

    /// The height the set valid at `h` took effect.
    pub fn set_since(&self, h: u64) -> u64 {
        let i = self.sets.partition_point(|(from, _)| *from <= h);
        self.sets[i.saturating_sub(1)].0
    }
}

/// The one CometBFT chain of the cosmos nodes.
#[derive(Debug)]
pub struct Cosmos {
    /// Every validator, in set order (by address: equal power).
    pub vals: Vec<Validator>,
    rank: HashMap<usize, usize>,
    by_valcons: HashMap<String, usize>,
    by_valoper: HashMap<String, usize>,
    /// Chain height parameters (phase 0: the network's own).
    pub params: Params,
    state: Mutex<CosmosState>,
}

/// Why a commit or validator set cannot be served, in CometBFT's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeightError(pub String);

/// Checks `h` against what a node at `best` serves: `Ok(h)` (no height: `best`).
pub fn check_height(h: Option<u64>, best: u64) -> Result<u64, HeightError> {
    let h = h.unwrap_or(best);
    if h == 0 {
        return Err(HeightError(
            "height must be greater than 0, but got 0".into(),
        ));
    }
    if h > best {
        return Err(HeightError(format!(
            "height {h} must be less than or equal to the current blockchain height {best}"
        )));
    }
    let lowest = best.saturating_sub(RING - 1).max(1);
    if h < lowest {
        return Err(HeightError(format!(
            "height {h} is not available, lowest height is {lowest}"
        )));
    }
    Ok(h)
}

impl Cosmos {
    /// The chain of the cosmos nodes among `chains` (by node index), with `params` of the
    /// chain; `None` when there are none.
    pub fn new(chains: &[SimChain], params: Params) -> Option<Cosmos> {
        let mut vals: Vec<Validator> = chains
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == SimChain::Cosmos)
            .map(|(node, _)| {
                let seed = seed_of(node, SimChain::Cosmos);
                let raw = cosmos::validator_address_bytes(seed);
                let address = ids_upper(&raw);
                let pub_key = cosmos::validator_pub_key(seed);
                let entry = format!(
                    "{{\"address\":\"{address}\",\"pub_key\":{{\"type\":\"tendermint/PubKeyEd25519\",\"value\":\"{pub_key}\"}},\"voting_power\":\"{VOTING_POWER}\",\"proposer_priority\":\"0\"}}"
                );
                Validator {
                    node,
                    name: format!("sim-{node}"),
                    valoper: super::ids::bech32(
                        cosmos::VALOPER_PREFIX,
                        &cosmos::operator_bytes(seed),
                    ),
                    valcons: super::ids::bech32(cosmos::VALCONS_PREFIX, &raw),
                    address,
                    pub_key,
                    entry,
                }
            })
            .collect();
        if vals.is_empty() {
            return None;
        }
        vals.sort_by(|a, b| a.address.cmp(&b.address));
        let n = vals.len();
        let rank = vals.iter().enumerate().map(|(r, v)| (v.node, r)).collect();
        let by_valcons = vals
            .iter()
            .enumerate()
            .map(|(r, v)| (v.valcons.clone(), r))
            .collect();
        let by_valoper = vals
            .iter()
            .enumerate()
            .map(|(r, v)| (v.valoper.clone(), r))
            .collect();
        Some(Cosmos {
            vals,
            rank,
            by_valcons,
            by_valoper,
            params: Params { phase: 0, ..params },
            state: Mutex::new(CosmosState {
                hist: vec![History::default(); n],
                sets: vec![(0, Arc::new((0..n).collect()))],
                jails: vec![None; n],
                start_heights: vec![0; n],
                commits: HashMap::new(),
                order: VecDeque::new(),
                cached: 0,
            }),
        })
    }

    /// The chain's state (a panic cannot leave it half-written: poisoning is ignored).
    pub fn state(&self) -> MutexGuard<'_, CosmosState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Position of node `node`'s validator in `vals`.
    pub fn rank(&self, node: usize) -> Option<usize> {
        self.rank.get(&node).copied()
    }

    /// The validator of node `node`.
    pub fn validator(&self, node: usize) -> Option<&Validator> {
        self.rank(node).map(|r| &self.vals[r])
    }

    /// Position of the validator with consensus address `valcons`.
    pub fn by_valcons(&self, valcons: &str) -> Option<usize> {
        self.by_valcons.get(valcons).copied()
    }

    /// Position of the validator with operator address `valoper`.
    pub fn by_valoper(&self, valoper: &str) -> Option<usize> {
        self.by_valoper.get(valoper).copied()
    }

    /// Records that node `node`'s validator does `duty` from the next block on (`e`: now).
    pub fn update(&self, node: usize, duty: DutyState, e: u128) {
        let Some(r) = self.rank(node) else {
            return;
        };
        let from = first_affected(&self.params, e);
        let mut st = self.state();
        let before = st.hist[r].last();
        st.hist[r].set(from, duty);
        if before.jailed == duty.jailed {
            return;
        }
        if duty.jailed {
            st.jails[r] = Some(Jail { height: from, e });
        } else {
            st.start_heights[r] = from;
        }
        let members: Vec<usize> = (0..self.vals.len())
            .filter(|m| !st.hist[*m].last().jailed)
            .collect();
        match st.sets.last_mut() {
            Some(last) if last.0 >= from => last.1 = Arc::new(members),
            _ => st.sets.push((from, Arc::new(members))),
        }
    }

    /// The rendered commit of block `h` (`render` builds it when it is not cached yet).
    /// Heights up to the network's are final, so a rendering is never stale.
    pub fn commit(&self, h: u64, render: impl FnOnce(&CosmosState) -> String) -> Bytes {
        let mut st = self.state();
        if let Some(b) = st.commits.get(&h) {
            return b.clone();
        }
        let body = Bytes::from(render(&st));
        st.cached += body.len();
        st.commits.insert(h, body.clone());
        st.order.push_back(h);
        while st.cached > CACHE_BYTES || st.order.len() as u64 > RING {
            let Some(old) = st.order.pop_front() else {
                break;
            };
            if let Some(b) = st.commits.remove(&old) {
                st.cached -= b.len();
            }
        }
        body
    }
}

fn ids_upper(bytes: &[u8]) -> String {
    super::ids::hex(bytes).to_ascii_uppercase()
}

/// The one Substrate chain of the substrate nodes: who authors which block.
#[derive(Debug)]
pub struct Substrate {
    rank: HashMap<usize, usize>,
    /// How many authorities.
    pub n: usize,
    params: Params,
    state: Mutex<SubstrateState>,
}

#[derive(Debug)]
struct SubstrateState {
    /// Per authority: what it does from now on.
    now: Vec<bool>,
    /// `(from height, authorities that do not author)`, ascending, the first from 0.
    idle: Vec<(u64, BTreeSet<usize>)>,
}

/// Heights `h` in `[a, b)` with `h % n == r`.
fn count_residue(a: u64, b: u64, r: u64, n: u64) -> u64 {
    // Heights below x with that residue.
    let below = |x: u64| if x <= r { 0 } else { (x - r - 1) / n + 1 };
    below(b) - below(a)
}

impl Substrate {
    /// The chain of the substrate nodes among `chains`; `None` when there are none.
    pub fn new(chains: &[SimChain], params: Params) -> Option<Substrate> {
        let rank: HashMap<usize, usize> = chains
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == SimChain::Substrate)
            .enumerate()
            .map(|(r, (node, _))| (node, r))
            .collect();
        let n = rank.len();
        (n > 0).then(|| Substrate {
            rank,
            n,
            params: Params { phase: 0, ..params },
            state: Mutex::new(SubstrateState {
                now: vec![true; n],
                idle: vec![(0, BTreeSet::new())],
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, SubstrateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Node `node`'s position among the authorities.
    pub fn rank(&self, node: usize) -> Option<usize> {
        self.rank.get(&node).copied()
    }

    /// Records whether node `node` authors from the next block on (`e`: now).
    pub fn update(&self, node: usize, duty: DutyState, e: u128) {
        let Some(r) = self.rank(node) else {
            return;
        };
        let authors = duty.signs();
        let from = first_affected(&self.params, e);
        let mut st = self.state();
        if st.now[r] == authors {
            return;
        }
        st.now[r] = authors;
        let mut set = st.idle.last().map(|x| x.1.clone()).unwrap_or_default();
        if authors {
            set.remove(&r);
        } else {
            set.insert(r);
        }
        match st.idle.last_mut() {
            Some(last) if last.0 >= from => last.1 = set,
            _ => st.idle.push((from, set)),
        }
    }

    /// How many blocks in `(lo, hi]` node `node` authored.
    pub fn authored(&self, node: usize, lo: u64, hi: u64) -> u64 {
        let Some(r) = self.rank(node) else {
            return 0;
        };
        let n = self.n as u64;
        let st = self.state();
        let mut total = 0;
        for (i, (from, idle)) in st.idle.iter().enumerate() {
            let to = st.idle.get(i + 1).map_or(u64::MAX, |x| x.0);
            let a = (*from).max(lo.saturating_add(1));
            let b = to.min(hi.saturating_add(1));
            if a >= b || idle.contains(&r) {
                continue;
            }
            // Its own slot, and the slots of the idle authorities right before it.
            let mut slot = r as u64;
            for _ in 0..n {
                total += count_residue(a, b, slot, n);
                slot = (slot + n - 1) % n;
                if !idle.contains(&(slot as usize)) {
                    break;
                }
            }
        }
        total
    }
}

/// The duty of every chain of the simulator.
#[derive(Debug, Default)]
pub struct Chains {
    /// The CometBFT chain, when there are cosmos nodes.
    pub cosmos: Option<Cosmos>,
    /// The Substrate chain, when there are substrate nodes.
    pub substrate: Option<Substrate>,
}

impl Chains {
    /// The chains of a fleet of `chains` (by node index), each with its params.
    pub fn new(chains: &[SimChain], params: impl Fn(SimChain) -> Params) -> Chains {
        Chains {
            cosmos: Cosmos::new(chains, params(SimChain::Cosmos)),
            substrate: Substrate::new(chains, params(SimChain::Substrate)),
        }
    }

    /// Records node `node`'s duty (of `chain`) from the next block on.
    pub fn update(&self, node: usize, chain: SimChain, duty: DutyState, e: u128) {
        match chain {
            SimChain::Cosmos => {
                if let Some(c) = &self.cosmos {
                    c.update(node, duty, e);
                }
            }
            SimChain::Substrate => {
                if let Some(s) = &self.substrate {
                    s.update(node, duty, e);
                }
            }
            SimChain::Ethereum => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const S: u128 = 1_000_000_000;

    fn down() -> DutyState {
        DutyState {
            signing: false,
            ..DutyState::HEALTHY
        }
    }

    #[test]
    fn histories_count_and_merge() {
        let mut h = History::default();
        h.set(10, down());
        h.set(20, DutyState::HEALTHY);
        assert_eq!(h.at(9), DutyState::HEALTHY);
        assert_eq!(h.at(10), down());
        assert_eq!(h.at(19), down());
        assert_eq!(h.at(20), DutyState::HEALTHY);
        assert_eq!(h.count(0, 30, |s| !s.signs()), 10);
        assert_eq!(h.count(14, 16, |s| !s.signs()), 2);
        assert_eq!(h.last_where(15, DutyState::signs), Some(9));
        assert_eq!(h.last_where(25, DutyState::signs), Some(25));
        // Switched off and on within one block: nothing is recorded.
        h.set(30, down());
        h.set(30, DutyState::HEALTHY);
        assert_eq!(h.0.len(), 3);
        h.set(31, DutyState::HEALTHY);
        assert_eq!(h.0.len(), 3);
    }

    #[test]
    fn residues() {
        assert_eq!(count_residue(0, 10, 3, 4), 2); // 3, 7
        assert_eq!(count_residue(4, 8, 0, 4), 1); // 4
        assert_eq!(count_residue(5, 5, 1, 4), 0);
        assert_eq!(count_residue(0, 1, 0, 1), 1);
    }

    #[test]
    fn authorship_moves_to_the_next_authority() {
        let chains = [SimChain::Substrate; 3];
        let p = Params::new(SimChain::Substrate, Duration::from_secs(1), 5, 0);
        let s = Substrate::new(&chains, p).unwrap();
        let base = p.base;
        // Blocks (base, base + 30]: 10 each.
        for node in 0..3 {
            assert_eq!(s.authored(node, base, base + 30), 10);
        }
        // Node 1 stops at e = 30 s: from block base + 31 on, node 2 authors its blocks.
        s.update(1, down(), 30 * S);
        assert_eq!(s.authored(1, base, base + 60), 10);
        assert_eq!(s.authored(2, base, base + 60), 20 + 10);
        assert_eq!(s.authored(0, base, base + 60), 20);
        // Node 2 stops too: node 0 authors every block.
        s.update(2, down(), 60 * S);
        assert_eq!(s.authored(0, base + 60, base + 90), 30);
        assert_eq!(s.authored(2, base + 60, base + 90), 0);
        // All idle: nobody authors.
        s.update(0, down(), 90 * S);
        assert_eq!(s.authored(0, base + 90, base + 120), 0);
        s.update(0, DutyState::HEALTHY, 120 * S);
        s.update(1, DutyState::HEALTHY, 120 * S);
        s.update(2, DutyState::HEALTHY, 120 * S);
        assert_eq!(s.authored(1, base + 120, base + 150), 10);
    }

    #[test]
    fn jailing_changes_the_set() {
        let chains = [SimChain::Cosmos, SimChain::Ethereum, SimChain::Cosmos];
        let p = Params::new(SimChain::Cosmos, Duration::from_secs(1), 5, 0);
        let c = Cosmos::new(&chains, p).unwrap();
        assert_eq!(c.vals.len(), 2);
        assert!(c.vals[0].address < c.vals[1].address);
        assert!(c.rank(1).is_none());
        let r = c.rank(2).unwrap();
        assert_eq!(c.by_valcons(&c.vals[r].valcons), Some(r));
        assert_eq!(c.by_valoper(&c.vals[r].valoper), Some(r));
        let jailed = DutyState {
            jailed: true,
            ..DutyState::HEALTHY
        };
        c.update(2, jailed, 10 * S);
        let st = c.state();
        let from = p.base + 11;
        assert_eq!(st.set_at(from - 1).len(), 2);
        assert_eq!(*st.set_at(from), vec![1 - r]);
        assert_eq!(st.set_since(from + 5), from);
        assert_eq!(
            st.jails[r],
            Some(Jail {
                height: from,
                e: 10 * S
            })
        );
        drop(st);
        c.update(2, DutyState::HEALTHY, 20 * S);
        let st = c.state();
        assert_eq!(st.set_at(p.base + 21).len(), 2);
        assert_eq!(st.start_heights[r], p.base + 21);
        assert!(check_height(Some(0), 100).is_err());
        assert_eq!(check_height(None, 100), Ok(100));
        let e = check_height(Some(5000), 10_000).unwrap_err();
        assert_eq!(e.0, "height 5000 is not available, lowest height is 9001");
        assert!(
            check_height(Some(101), 100)
                .unwrap_err()
                .0
                .contains("current blockchain height 100")
        );
    }
}
