//! One node at one instant: the input every chain module answers from.

use std::net::Ipv4Addr;

use jiff::{SignedDuration, Timestamp};

use super::model::{DutyState, Facts, Params, SimChain};

/// The fixed identity of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Position in the fleet, from 0.
    pub index: usize,
    /// Node name (`sim-<index>`), used as Substrate node name and CometBFT moniker.
    pub name: String,
    /// Protocol family.
    pub chain: SimChain,
    /// The loopback address all of the node's ports listen on.
    pub ip: Ipv4Addr,
}

/// A node's identity and facts at one instant.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// Who the node is.
    pub node: &'a Identity,
    /// What it reports now.
    pub facts: Facts,
    /// Its height parameters (for hashes of past blocks).
    pub params: Params,
    /// Wall-clock time of `e = 0`.
    pub start_wall: Timestamp,
    /// What its validator does now (as its faults say).
    pub duty: DutyState,
}

/// Wall-clock time of the instant `e` (nanoseconds after `start_wall`; may be negative).
pub fn wall(start_wall: Timestamp, e: i128) -> Timestamp {
    let nanos = i64::try_from(e).unwrap_or(if e < 0 { i64::MIN } else { i64::MAX });
    start_wall
        .checked_add(SignedDuration::from_nanos(nanos))
        .unwrap_or(start_wall)
}

impl View<'_> {
    /// Wall-clock time of the instant `e` (nanoseconds after the start; may be negative).
    pub fn wall(&self, e: i128) -> Timestamp {
        wall(self.start_wall, e)
    }

    /// Seed for the node's identifiers (keys, peer ids), distinct per chain and index.
    pub fn seed(&self) -> u64 {
        seed_of(self.node.index, self.node.chain)
    }
}

/// Seed for the identifiers of node `index` of `chain` (keys, peer ids, addresses).
pub fn seed_of(index: usize, chain: SimChain) -> u64 {
    (index as u64) ^ ((chain as u64) << 56)
}

/// Runs `f` on a view of node `index` of `chain` whose state is `state`, `elapsed_ns` after
/// the start (block time and peers as given), as the chain modules' tests need.
#[cfg(test)]
pub fn with_test_view<T>(
    chain: SimChain,
    index: usize,
    block_time: std::time::Duration,
    peers: u32,
    elapsed_ns: u128,
    state: &super::model::NodeState,
    f: impl FnOnce(&View<'_>) -> T,
) -> T {
    let id = Identity {
        index,
        name: format!("sim-{index}"),
        chain,
        ip: Ipv4Addr::new(127, 0, 0, index as u8 + 1),
    };
    let params = Params::new(chain, block_time, peers, index as u64);
    let view = View {
        node: &id,
        facts: state.facts(&params, elapsed_ns),
        params,
        start_wall: Timestamp::from_second(1_700_000_000).expect("valid timestamp"),
        duty: state.duty(),
    };
    f(&view)
}
