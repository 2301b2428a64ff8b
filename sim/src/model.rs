//! The pure model of a simulated node: its chain, its faults, and its block heights as a
//! function of time.
//!
//! Nothing here ticks. Heights are computed on demand from the time elapsed since the
//! simulator started (`e`, in nanoseconds), so ten thousand idle nodes cost no CPU. A
//! fault only records what it needs (a frozen height, where a sync began) at the moment
//! it is applied.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The protocol family a simulated node speaks (a subset of `vigil::api::Chain`, which
/// also has `http` and `tcp`: hence its own name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum SimChain {
    /// Substrate / Polkadot SDK: JSON-RPC `:9944`, Prometheus `:9615`.
    Substrate,
    /// Ethereum execution client: JSON-RPC `:8545`, Prometheus `:6060`.
    Ethereum,
    /// CometBFT: RPC `:26657`, Prometheus `:26660`.
    Cosmos,
}

impl SimChain {
    /// Every chain, in the order used for listings.
    pub const ALL: [SimChain; 3] = [SimChain::Substrate, SimChain::Ethereum, SimChain::Cosmos];

    /// Lower-case name, as in `--chain` and the probe's `ProbeKind`.
    pub fn as_str(self) -> &'static str {
        match self {
            SimChain::Substrate => "substrate",
            SimChain::Ethereum => "ethereum",
            SimChain::Cosmos => "cosmos",
        }
    }

    /// The client's default RPC port.
    pub fn rpc_port(self) -> u16 {
        match self {
            SimChain::Substrate => 9944,
            SimChain::Ethereum => 8545,
            SimChain::Cosmos => 26657,
        }
    }

    /// The client's default Prometheus port.
    pub fn metrics_port(self) -> u16 {
        match self {
            SimChain::Substrate => 9615,
            SimChain::Ethereum => 6060,
            SimChain::Cosmos => 26660,
        }
    }

    /// Path of the Prometheus endpoint (geth serves it under `/debug/metrics/prometheus`).
    pub fn metrics_path(self) -> &'static str {
        match self {
            SimChain::Ethereum => "/debug/metrics/prometheus",
            SimChain::Substrate | SimChain::Cosmos => "/metrics",
        }
    }

    /// Path of the plain HTTP health endpoint on the RPC port; geth has none.
    pub fn health_path(self) -> Option<&'static str> {
        match self {
            SimChain::Substrate | SimChain::Cosmos => Some("/health"),
            SimChain::Ethereum => None,
        }
    }

    /// Typical block time of the chain, used when `--block-time` is not given.
    pub fn default_block_time(self) -> Duration {
        match self {
            SimChain::Substrate | SimChain::Cosmos => Duration::from_secs(6),
            SimChain::Ethereum => Duration::from_secs(12),
        }
    }

    /// Height of the chain when the simulator starts: a chain with history, so that
    /// "blocks behind" arithmetic never sits near zero.
    pub fn base_height(self) -> u64 {
        match self {
            SimChain::Substrate => 1_000_000,
            SimChain::Ethereum => 20_000_000,
            SimChain::Cosmos => 5_000_000,
        }
    }

    /// How far finality trails the best block. CometBFT commits are final at once, and
    /// the simulated Ethereum chain has no finality gadget.
    pub fn finality_lag(self) -> u64 {
        match self {
            SimChain::Substrate => 2,
            SimChain::Ethereum | SimChain::Cosmos => 0,
        }
    }
}

impl fmt::Display for SimChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SimChain {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SimChain::ALL
            .into_iter()
            .find(|c| c.as_str() == s.trim())
            .ok_or_else(|| format!("unknown chain {s:?} (use substrate, ethereum or cosmos)"))
    }
}

/// Something wrong with a node, switched on by the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Best and finalized heights freeze.
    StopBlocks,
    /// The best height advances, the finalized one freezes (Substrate only).
    StopFinality,
    /// The node reports zero peers.
    DropPeers,
    /// The node reports a major sync: it falls behind the network, which is its target.
    Syncing,
    /// The node's ports close: listeners and open connections.
    Die,
    /// Connections are accepted and requests read, but never answered.
    Hang,
    /// Every answer waits `ms` milliseconds first.
    Slow,
    /// Answers are 200 with invalid JSON / unparsable metrics.
    Malformed,
    /// Answers are 200 with a body of several MiB.
    Oversized,
    /// Answers are 200 with bytes that are not UTF-8.
    NonUtf8,
    /// The node stays healthy (blocks advance, peers fine) but its validator does no duty:
    /// a CometBFT validator is absent from the commits it would sign, a Substrate
    /// authority authors no block (the next authority authors its blocks instead).
    StopSigning,
    /// The CometBFT validator is jailed: out of the validator set (so it signs nothing),
    /// `jailed` and unbonding in the staking module, `jailed_until` in the future in its
    /// signing info (Cosmos only).
    Jailed,
}

impl Fault {
    /// Every fault, in the order used for listings.
    pub const ALL: [Fault; 12] = [
        Fault::StopBlocks,
        Fault::StopFinality,
        Fault::DropPeers,
        Fault::Syncing,
        Fault::Die,
        Fault::Hang,
        Fault::Slow,
        Fault::Malformed,
        Fault::Oversized,
        Fault::NonUtf8,
        Fault::StopSigning,
        Fault::Jailed,
    ];

    /// The name used in the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::StopBlocks => "stopBlocks",
            Fault::StopFinality => "stopFinality",
            Fault::DropPeers => "dropPeers",
            Fault::Syncing => "syncing",
            Fault::Die => "die",
            Fault::Hang => "hang",
            Fault::Slow => "slow",
            Fault::Malformed => "malformed",
            Fault::Oversized => "oversized",
            Fault::NonUtf8 => "nonUtf8",
            Fault::StopSigning => "stopSigning",
            Fault::Jailed => "jailed",
        }
    }

    /// Whether the fault means anything on `chain`: only Substrate has a finality gadget
    /// separate from block production, the simulated Ethereum nodes are no validators,
    /// and only Cosmos has jailing.
    pub fn applies_to(self, chain: SimChain) -> bool {
        self.chains().contains(&chain)
    }

    /// The chains the fault means anything on.
    pub fn chains(self) -> &'static [SimChain] {
        match self {
            Fault::StopFinality => &[SimChain::Substrate],
            Fault::StopSigning => &[SimChain::Substrate, SimChain::Cosmos],
            Fault::Jailed => &[SimChain::Cosmos],
            _ => &SimChain::ALL,
        }
    }

    /// `substrate`, `substrate and cosmos`: the chains of [`Fault::chains`], for messages.
    pub fn chains_text(self) -> String {
        let names: Vec<&str> = self.chains().iter().map(|c| c.as_str()).collect();
        match names.split_last() {
            Some((last, [])) => (*last).to_string(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
            None => String::new(),
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Fault::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Fault::ALL.iter().map(|f| f.as_str()).collect();
                format!("unknown fault {s:?}; known faults: {}", names.join(", "))
            })
    }
}

/// A set of faults, as bits: copying it is free and it fits in the node's lock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultSet(u16);

impl FaultSet {
    /// Whether `f` is on.
    pub fn contains(self, f: Fault) -> bool {
        self.0 & f.bit() != 0
    }

    fn insert(&mut self, f: Fault) {
        self.0 |= f.bit();
    }

    fn remove(&mut self, f: Fault) {
        self.0 &= !f.bit();
    }

    /// The faults that are on, in [`Fault::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Fault> {
        Fault::ALL.into_iter().filter(move |f| self.contains(*f))
    }

    /// The API names of the faults that are on.
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Fault::as_str).collect()
    }
}

/// What a node's validator does, as its faults say: the input of the chain's duty
/// timeline (`duty.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DutyState {
    /// The node runs and follows the chain (not dead, frozen or syncing).
    pub alive: bool,
    /// Its key signs (no `stopSigning`).
    pub signing: bool,
    /// Jailed: out of the validator set.
    pub jailed: bool,
}

impl DutyState {
    /// A validator doing its duty.
    pub const HEALTHY: DutyState = DutyState {
        alive: true,
        signing: true,
        jailed: false,
    };

    /// The duty of a node with `faults`.
    pub fn of(faults: FaultSet) -> DutyState {
        DutyState {
            alive: !(faults.contains(Fault::Die)
                || faults.contains(Fault::StopBlocks)
                || faults.contains(Fault::Syncing)),
            signing: !faults.contains(Fault::StopSigning),
            jailed: faults.contains(Fault::Jailed),
        }
    }

    /// Whether its signature is in a commit (CometBFT) or it authors its blocks (Substrate).
    pub fn signs(self) -> bool {
        self.alive && self.signing && !self.jailed
    }

    /// In the validator set, and absent from the commit while the node itself runs: the
    /// blocks CometBFT's `validator_missed_blocks` metric counts for `stopSigning` (the
    /// node's own downtime is [`Facts::missed`]).
    pub fn misses_while_up(self) -> bool {
        self.alive && !self.signing && !self.jailed
    }
}

/// Default delay of the `slow` fault.
pub const DEFAULT_SLOW_MS: u64 = 2000;
/// Longest accepted `slow` delay: longer is a hang, and there is a fault for that.
pub const MAX_SLOW_MS: u64 = 10 * 60 * 1000;
/// How many blocks a node that starts syncing drops behind at once, unless told.
pub const DEFAULT_SYNC_BEHIND: u64 = 20;

/// The fixed, per-node inputs of the height computation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// The node's chain.
    pub chain: SimChain,
    /// Chain height at `e = 0`.
    pub base: u64,
    /// Block time in nanoseconds (at least 1).
    pub block: u128,
    /// This node's offset into the block cycle, in `[0, block)`: it staggers when nodes
    /// see a new block, so they disagree by at most one block, like a real network.
    pub phase: u128,
    /// Peers reported when healthy.
    pub peers: u32,
}

impl Params {
    /// Parameters for a node of `chain` with the given block time, peers and phase seed
    /// (the node index: phases are spread deterministically).
    pub fn new(chain: SimChain, block_time: Duration, peers: u32, seed: u64) -> Params {
        let block = block_time.as_nanos().max(1);
        Params {
            chain,
            base: chain.base_height(),
            block,
            phase: u128::from(super::ids::mix64(seed ^ 0x5eed)) % block,
            peers,
        }
    }

    /// This node's height at `e` when it is healthy.
    pub fn height_at(&self, e: u128) -> u64 {
        self.base
            .saturating_add(to_u64((e + self.phase) / self.block))
    }

    /// The network's height at `e`: the highest height any healthy node can report.
    pub fn network_at(&self, e: u128) -> u64 {
        self.base.saturating_add(to_u64(e.div_ceil(self.block)))
    }

    /// When (in `e` time; negative is before the start) a healthy node reached `height`.
    fn reached(&self, height: u64) -> i128 {
        let blocks = i128::from(height) - i128::from(self.base);
        blocks.saturating_mul(to_i128(self.block)) - to_i128(self.phase)
    }
}

fn to_u64(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

fn to_i128(v: u128) -> i128 {
    i128::try_from(v).unwrap_or(i128::MAX)
}

/// What a node reports at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// Best block.
    pub best: u64,
    /// Finalized block (equal to `best` on chains without separate finality).
    pub finalized: u64,
    /// Sync target: the network height while syncing, else the node's own best.
    pub target: u64,
    /// The network height (what a syncing node chases).
    pub network: u64,
    /// Connected peers.
    pub peers: u32,
    /// Whether the node reports a major sync.
    pub syncing: bool,
    /// When (in `e` time) the best block was reached: CometBFT's `latest_block_time`.
    pub best_at: i128,
    /// Best block when the node (last) started: `system_syncState.startingBlock`.
    pub starting: u64,
    /// When (in `e` time) the node (last) started: the process start time metric.
    pub started_at: u128,
    /// Blocks the node missed while frozen, dead or syncing (CometBFT's missed blocks).
    pub missed: u64,
}

/// Heights frozen by `stopBlocks` or `die`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Frozen {
    best: u64,
    finalized: u64,
    best_at: i128,
}

/// A sync in progress: from which height, since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SyncRun {
    from: u64,
    since: u128,
}

/// Options of one fault application.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultOptions {
    /// Delay of `slow` in milliseconds (default [`DEFAULT_SLOW_MS`]).
    pub ms: Option<u64>,
    /// How many blocks `syncing` drops behind at once (default [`DEFAULT_SYNC_BEHIND`]).
    pub blocks: Option<u64>,
}

/// The mutable state of one node. Methods take `e`, the nanoseconds since the simulator
/// started, so they stay pure and testable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeState {
    faults: FaultSet,
    slow_ms: u64,
    frozen: Option<Frozen>,
    final_frozen: Option<u64>,
    sync: Option<SyncRun>,
    missed: u64,
    /// Best block and time of the last (re)start; `None` until the first restart.
    started: Option<(u64, u128)>,
}

impl NodeState {
    /// A healthy node.
    pub fn new() -> NodeState {
        NodeState::default()
    }

    /// The faults that are on.
    pub fn faults(&self) -> FaultSet {
        self.faults
    }

    /// What its validator does now.
    pub fn duty(&self) -> DutyState {
        DutyState::of(self.faults)
    }

    /// Delay of the `slow` fault, when it is on.
    pub fn slow(&self) -> Option<Duration> {
        self.faults
            .contains(Fault::Slow)
            .then(|| Duration::from_millis(self.slow_ms))
    }

    /// What the node reports at `e`.
    pub fn facts(&self, p: &Params, e: u128) -> Facts {
        let network = p.network_at(e);
        let (mut best, mut best_at) = match self.sync {
            // A syncing node imports at half the network's pace, so it keeps losing ground.
            Some(s) => {
                let step = p.block.saturating_mul(2);
                let gained = to_u64(e.saturating_sub(s.since) / step);
                let best = s.from.saturating_add(gained).min(network);
                let at = to_i128(s.since)
                    .saturating_add(i128::from(best - s.from.min(best)) * to_i128(step));
                (best, at)
            }
            None => {
                let best = p.height_at(e);
                (best, p.reached(best))
            }
        };
        let mut finalized = best.saturating_sub(p.chain.finality_lag());
        if let Some(f) = self.frozen {
            best = f.best;
            finalized = f.finalized;
            best_at = f.best_at;
        }
        if let Some(f) = self.final_frozen {
            finalized = f;
        }
        let finalized = finalized.min(best);
        let syncing = self.faults.contains(Fault::Syncing);
        let (starting, started_at) = self.started.unwrap_or((p.height_at(0), 0));
        Facts {
            best,
            finalized,
            target: if syncing { network.max(best) } else { best },
            network,
            peers: if self.faults.contains(Fault::DropPeers) {
                0
            } else {
                p.peers
            },
            syncing,
            best_at,
            starting,
            started_at,
            missed: self.missed,
        }
    }

    /// Switches `fault` on at `e`. Applying a fault that is already on keeps its frozen
    /// heights (re-sending `stopBlocks` must not move them) but updates `slow`'s delay.
    pub fn apply(&mut self, fault: Fault, opts: FaultOptions, p: &Params, e: u128) {
        let now = self.facts(p, e);
        match fault {
            Fault::StopBlocks | Fault::Die => {
                if self.frozen.is_none() {
                    self.frozen = Some(Frozen {
                        best: now.best,
                        finalized: now.finalized,
                        best_at: now.best_at,
                    });
                }
            }
            Fault::StopFinality => {
                if self.final_frozen.is_none() {
                    self.final_frozen = Some(now.finalized);
                }
            }
            Fault::Syncing => {
                if self.sync.is_none() {
                    let behind = opts.blocks.unwrap_or(DEFAULT_SYNC_BEHIND);
                    self.sync = Some(SyncRun {
                        from: now.best.saturating_sub(behind),
                        since: e,
                    });
                }
            }
            Fault::Slow => {
                self.slow_ms = opts.ms.unwrap_or(DEFAULT_SLOW_MS).min(MAX_SLOW_MS);
            }
            Fault::DropPeers
            | Fault::Hang
            | Fault::Malformed
            | Fault::Oversized
            | Fault::NonUtf8
            | Fault::StopSigning
            | Fault::Jailed => {}
        }
        self.faults.insert(fault);
    }

    /// Switches `fault` off at `e`. A node whose blocks were stopped, that died or that
    /// was syncing catches up with the network at once, as a restarted node that syncs
    /// quickly would; the blocks it skipped count as missed.
    pub fn clear(&mut self, fault: Fault, p: &Params, e: u128) {
        if !self.faults.contains(fault) {
            return;
        }
        let before = self.facts(p, e);
        self.faults.remove(fault);
        match fault {
            Fault::StopBlocks | Fault::Die => {
                let still_frozen =
                    self.faults.contains(Fault::StopBlocks) || self.faults.contains(Fault::Die);
                if !still_frozen && self.frozen.take().is_some() {
                    let after = self.facts(p, e);
                    self.missed += after.network.saturating_sub(before.best);
                    if fault == Fault::Die {
                        self.started = Some((before.best, e));
                    }
                }
            }
            Fault::StopFinality => self.final_frozen = None,
            Fault::Syncing => {
                if self.sync.take().is_some() && self.frozen.is_none() {
                    self.missed += before.network.saturating_sub(before.best);
                }
            }
            Fault::Slow => self.slow_ms = 0,
            Fault::DropPeers
            | Fault::Hang
            | Fault::Malformed
            | Fault::Oversized
            | Fault::NonUtf8
            | Fault::StopSigning
            | Fault::Jailed => {}
        }
    }

    /// Switches every fault off at `e` (a restart).
    pub fn clear_all(&mut self, p: &Params, e: u128) {
        for f in self.faults.iter() {
            self.clear(f, p, e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u128 = 1_000_000_000;

    fn params(chain: SimChain) -> Params {
        Params {
            chain,
            base: 100,
            block: 6 * S,
            phase: 2 * S,
            peers: 25,
        }
    }

    #[test]
    fn names_round_trip() {
        for f in Fault::ALL {
            assert_eq!(f.as_str().parse::<Fault>(), Ok(f));
        }
        for c in SimChain::ALL {
            assert_eq!(c.as_str().parse::<SimChain>(), Ok(c));
        }
        let e = "explode".parse::<Fault>().unwrap_err();
        assert!(e.contains("stopBlocks") && e.contains("nonUtf8"), "{e}");
        assert!("bitcoin".parse::<SimChain>().is_err());
        assert!(Fault::StopFinality.applies_to(SimChain::Substrate));
        assert!(!Fault::StopFinality.applies_to(SimChain::Cosmos));
        assert!(Fault::Die.applies_to(SimChain::Ethereum));
    }

    #[test]
    fn heights_follow_the_clock() {
        let p = params(SimChain::Substrate);
        let n = NodeState::new();
        let f = n.facts(&p, 0);
        assert_eq!((f.best, f.finalized, f.target, f.peers), (100, 98, 100, 25));
        assert!(!f.syncing);
        // With a phase of 2 s this node sees block 101 at 4 s. It is never ahead of the
        // network, and at most one block behind.
        assert_eq!(n.facts(&p, 4 * S).best, 101);
        assert_eq!(n.facts(&p, 4 * S - 1).best, 100);
        assert_eq!(n.facts(&p, 60 * S).best, 110);
        assert_eq!(n.facts(&p, 60 * S).best_at, 58 * S as i128);
        for e in (0..200).map(|i| i * S / 3) {
            let f = n.facts(&p, e);
            assert!(f.network >= f.best && f.network - f.best <= 1, "{f:?}");
        }
        // Chains without separate finality report finalized = best.
        let c = params(SimChain::Cosmos);
        let f = n.facts(&c, 60 * S);
        assert_eq!(f.finalized, f.best);
    }

    #[test]
    fn phases_are_spread_and_bounded() {
        let mut phases: Vec<u128> = (0..100)
            .map(|i| Params::new(SimChain::Substrate, Duration::from_secs(6), 25, i).phase)
            .collect();
        assert!(phases.iter().all(|p| *p < 6 * S));
        phases.sort_unstable();
        phases.dedup();
        assert!(phases.len() > 90);
        // A zero block time cannot divide by zero.
        let p = Params::new(SimChain::Ethereum, Duration::ZERO, 1, 7);
        assert_eq!(p.block, 1);
        assert!(p.height_at(10) >= p.base);
    }

    #[test]
    fn stop_blocks_freezes_then_catches_up() {
        let p = params(SimChain::Substrate);
        let mut n = NodeState::new();
        n.apply(Fault::StopBlocks, FaultOptions::default(), &p, 60 * S);
        let frozen = n.facts(&p, 600 * S);
        assert_eq!((frozen.best, frozen.finalized), (110, 108));
        assert_eq!(frozen.best_at, 58 * S as i128);
        // Applying again keeps the original freeze.
        n.apply(Fault::StopBlocks, FaultOptions::default(), &p, 300 * S);
        assert_eq!(n.facts(&p, 600 * S).best, 110);
        n.clear(Fault::StopBlocks, &p, 600 * S);
        let after = n.facts(&p, 600 * S);
        assert_eq!(after.best, p.height_at(600 * S));
        assert_eq!(after.missed, after.network - 110);
        assert!(n.faults().names().is_empty());
    }

    #[test]
    fn stop_finality_only_freezes_finality() {
        let p = params(SimChain::Substrate);
        let mut n = NodeState::new();
        n.apply(Fault::StopFinality, FaultOptions::default(), &p, 60 * S);
        let f = n.facts(&p, 120 * S);
        assert_eq!((f.best, f.finalized), (120, 108));
        n.clear(Fault::StopFinality, &p, 120 * S);
        assert_eq!(n.facts(&p, 120 * S).finalized, 118);
    }

    #[test]
    fn faults_combine_and_clear() {
        let p = params(SimChain::Substrate);
        let mut n = NodeState::new();
        let opts = FaultOptions {
            ms: Some(300),
            blocks: None,
        };
        for f in [
            Fault::DropPeers,
            Fault::Slow,
            Fault::StopFinality,
            Fault::StopBlocks,
        ] {
            n.apply(f, opts, &p, 60 * S);
        }
        assert_eq!(
            n.faults().names(),
            ["stopBlocks", "stopFinality", "dropPeers", "slow"]
        );
        assert_eq!(n.slow(), Some(Duration::from_millis(300)));
        let f = n.facts(&p, 120 * S);
        assert_eq!((f.best, f.finalized, f.peers), (110, 108, 0));
        // Clearing one fault leaves the others on.
        n.clear(Fault::StopBlocks, &p, 120 * S);
        let f = n.facts(&p, 120 * S);
        assert_eq!((f.best, f.finalized, f.peers), (120, 108, 0));
        // Clearing a fault that is off changes nothing.
        let before = n.clone();
        n.clear(Fault::Hang, &p, 120 * S);
        assert_eq!(n, before);
        n.clear_all(&p, 120 * S);
        assert!(n.faults().names().is_empty());
        assert_eq!(n.slow(), None);
        let f = n.facts(&p, 120 * S);
        assert_eq!((f.best, f.finalized, f.peers), (120, 118, 25));
        // The slow delay is capped and defaults to 2 s.
        n.apply(Fault::Slow, FaultOptions::default(), &p, 0);
        assert_eq!(n.slow(), Some(Duration::from_millis(DEFAULT_SLOW_MS)));
        n.apply(
            Fault::Slow,
            FaultOptions {
                ms: Some(u64::MAX),
                blocks: None,
            },
            &p,
            0,
        );
        assert_eq!(n.slow(), Some(Duration::from_millis(MAX_SLOW_MS)));
    }

    #[test]
    fn syncing_falls_behind_and_targets_the_network() {
        let p = params(SimChain::Substrate);
        let mut n = NodeState::new();
        n.apply(Fault::Syncing, FaultOptions::default(), &p, 60 * S);
        let f = n.facts(&p, 60 * S);
        assert!(f.syncing);
        assert_eq!(f.best, 110 - DEFAULT_SYNC_BEHIND);
        assert_eq!(f.target, f.network);
        // Half the network's pace: 60 s later it gained 5 blocks, the network 10.
        let later = n.facts(&p, 120 * S);
        assert_eq!(later.best, f.best + 5);
        assert!(later.network - later.best > f.network - f.best);
        assert_eq!(later.finalized, later.best - 2);
        n.clear(Fault::Syncing, &p, 120 * S);
        let done = n.facts(&p, 120 * S);
        assert!(!done.syncing);
        assert_eq!(done.best, p.height_at(120 * S));
        assert_eq!(done.target, done.best);
        assert_eq!(done.missed, later.network - later.best);
        // A node near height zero cannot go negative.
        let low = Params { base: 3, ..p };
        let mut n = NodeState::new();
        n.apply(
            Fault::Syncing,
            FaultOptions {
                ms: None,
                blocks: Some(1000),
            },
            &low,
            0,
        );
        assert_eq!(n.facts(&low, 0).best, 0);
    }

    #[test]
    fn die_restarts_the_node() {
        let p = params(SimChain::Cosmos);
        let mut n = NodeState::new();
        assert_eq!(n.facts(&p, 0).started_at, 0);
        n.apply(Fault::Die, FaultOptions::default(), &p, 60 * S);
        // stopBlocks on top of die: one freeze, both must clear.
        n.apply(Fault::StopBlocks, FaultOptions::default(), &p, 90 * S);
        n.clear(Fault::Die, &p, 120 * S);
        assert_eq!(n.facts(&p, 120 * S).best, 110);
        n.clear(Fault::StopBlocks, &p, 120 * S);
        let f = n.facts(&p, 120 * S);
        assert_eq!(f.best, 120);
        assert_eq!(f.missed, 10);
        let mut n = NodeState::new();
        n.apply(Fault::Die, FaultOptions::default(), &p, 60 * S);
        n.clear_all(&p, 120 * S);
        let f = n.facts(&p, 120 * S);
        assert_eq!((f.starting, f.started_at), (110, 120 * S));
    }
}
