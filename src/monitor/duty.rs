//! Validator duty beside each probe: what the chain says of the validator (read through the
//! shared block followers of [`crate::duty::feed`], and from the probe's own metrics for
//! Substrate authorship), judged into the `Signing` condition. Memory holds only what can be
//! read again: the authorship clock starts from `status.duty` after a restart.

use super::config::Duty;
use crate::api::{Chain, DutyFacts, MonitoredValidatorStatus};
use crate::conditions::{Desired, Status, kind};
use crate::duty::judge::{self, Reading};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::sync::Arc;
use std::time::Duration;

/// What one probe read that duty needs.
#[derive(Clone, Debug, Default)]
pub struct ProbeDuty {
    /// Blocks the node authored (Substrate metrics).
    pub authored: Option<u64>,
    /// The node runs as an authority.
    pub authority: Option<bool>,
    /// Its best block.
    pub best: Option<u64>,
    /// CometBFT metrics: the node's own validator and the last height it signed.
    pub last_signed: Option<(String, u64)>,
}

/// Per-validator duty memory (a cache: rebuilt from status and the chain).
#[derive(Clone, Debug, Default)]
pub(super) struct DutyMemory {
    /// The authored count as last seen, and when it last changed.
    authored: Option<(u64, Timestamp)>,
    /// The first best block seen and when (to estimate the block time).
    first_best: Option<(u64, Timestamp)>,
}

/// What one duty reading looks at.
pub(super) struct Look<'a> {
    /// The validator's chain.
    pub chain: Chain,
    /// Who it is and how it is judged.
    pub duty: &'a Duty,
    /// Its status as last written.
    pub status: &'a MonitoredValidatorStatus,
    /// What this probe read, if it answered.
    pub probe: Option<ProbeDuty>,
    /// Validators taking turns (this policy's fleet of the chain).
    pub validators: usize,
    /// The probe interval.
    pub interval: Duration,
    /// Now.
    pub now: Timestamp,
}

/// Reads and judges one validator's duty: the `Signing` condition and the facts.
pub(super) fn read(
    hub: &Arc<crate::duty::feed::Hub>,
    look: Look<'_>,
    memory: &mut DutyMemory,
) -> (Desired, DutyFacts) {
    let Look {
        chain,
        duty: d,
        status,
        probe,
        validators,
        interval,
        now,
    } = look;
    let mut r = Reading::default();
    match chain {
        Chain::Cosmos => {
            cosmos_blocks(hub, d, &mut r, interval);
            from_metrics(&mut r, d.consensus.as_deref(), probe.as_ref());
            if let Some(api) = &d.api {
                // Jailed and tombstoned from the Cosmos SDK, read in the background.
                let every = interval.max(Duration::from_secs(15));
                match hub.standing(
                    api,
                    d.consensus_given.as_deref(),
                    d.operator.as_deref(),
                    every,
                ) {
                    Some(Ok(s)) => {
                        r.facts.jailed = s.jailed;
                        r.facts.tombstoned = s.tombstoned;
                        if s.bonded == Some(false) {
                            r.facts.active = Some(false);
                        }
                        r.facts.state = s.status.map(|t| crate::text::cap(&t, 64));
                    }
                    Some(Err(e)) if r.error.is_none() => r.error = Some(e),
                    _ => {}
                }
            }
        }
        Chain::Substrate => substrate(memory, status, probe, validators, now, &mut r),
        Chain::Ethereum => {
            match &d.beacon {
                Some((url, id)) => {
                    // An epoch is 6.4 minutes: reading more often than every 30 s adds nothing.
                    let every = interval.max(Duration::from_secs(30));
                    match hub.beacon(url, id, d.thresholds.window, every) {
                        Some(Ok(b)) => {
                            let v = &b.validator;
                            r.facts = DutyFacts {
                                last_signed_height: b.last_live_epoch,
                                missed_in_a_row: b.missed_in_a_row,
                                missed_in_window: b.missed_in_window,
                                window: b.window,
                                active: Some(v.active),
                                slashed: Some(v.slashed),
                                voting_power: Some(v.effective_balance_gwei),
                                state: Some(crate::text::cap(&v.status, 64)),
                                ..Default::default()
                            }
                        }
                        Some(Err(e)) => r.error = Some(e),
                        None => {}
                    }
                }
                None => r.error = Some(
                    "an ethereum validator's duty needs endpoints.beacon and duty.beaconValidator"
                        .into(),
                ),
            }
        }
        Chain::Http | Chain::Tcp => {
            r.error = Some(format!(
                "a {} target has no validator duty to read",
                chain.as_str()
            ))
        }
    }
    let signing = judge::judge(chain, &r, &d.thresholds, now);
    (signing, r.facts)
}

/// Cosmos: what the blocks read from the duty RPC say.
fn cosmos_blocks(hub: &Arc<crate::duty::feed::Hub>, d: &Duty, r: &mut Reading, interval: Duration) {
    match (&d.consensus, &d.rpc) {
        (Some(addr), Some(rpc)) => match hub.signing(rpc, addr, d.thresholds.window, interval) {
            Ok(s) => {
                r.facts = DutyFacts {
                    last_signed_height: s.last_signed,
                    missed_in_a_row: s.missed_in_a_row,
                    missed_in_window: s.missed,
                    window: s.window,
                    solo_missed_in_window: s.solo_missed,
                    active: s.active,
                    voting_power: s.power,
                    ..Default::default()
                }
            }
            Err(e) => r.error = Some(e),
        },
        (None, _) if d.api.is_none() || d.operator.is_none() => {
            r.error = Some("duty.consensusAddress is needed for a cosmos validator".into())
        }
        (None, _) => {}
        (_, None) => r.error = Some("no duty RPC (duty.rpc or endpoints.rpc)".into()),
    }
}

/// CometBFT's own metrics (`consensus_validator_last_signed_height`, when the node is the
/// watched validator) stand in for the commits when the duty RPC cannot be read, and give
/// the last signed height before any commit was read.
fn from_metrics(r: &mut Reading, consensus: Option<&str>, probe: Option<&ProbeDuty>) {
    let (Some(addr), Some(p)) = (consensus, probe) else {
        return;
    };
    let (Some((who, last)), Some(best)) = (&p.last_signed, p.best) else {
        return;
    };
    if !who.eq_ignore_ascii_case(addr) {
        return;
    }
    if r.error.is_some() {
        r.error = None;
        r.facts = DutyFacts {
            last_signed_height: Some(*last),
            // The metric follows the last commit, one block behind the best block.
            missed_in_a_row: best.saturating_sub(*last).saturating_sub(1),
            ..Default::default()
        };
    } else if r.facts.last_signed_height.is_none() {
        r.facts.last_signed_height = Some(*last);
    }
}

/// Substrate: authorship from the node's own metrics.
fn substrate(
    memory: &mut DutyMemory,
    status: &MonitoredValidatorStatus,
    probe: Option<ProbeDuty>,
    validators: usize,
    now: Timestamp,
    r: &mut Reading,
) {
    let p = probe.clone().unwrap_or_default();
    r.authority = p.authority;
    if let Some(best) = p.best {
        memory.first_best.get_or_insert((best, now));
    }
    // The authorship clock: a new count is a new block authored. Before the first
    // change this process saw, the time on record (or the first sight) stands.
    let recorded = status
        .duty
        .as_ref()
        .and_then(|f| f.last_authored_time.as_ref())
        .map(|t| t.0);
    if let Some(n) = p.authored {
        match memory.authored {
            Some((m, _)) if m == n => {}
            Some(_) => memory.authored = Some((n, now)),
            None => memory.authored = Some((n, recorded.unwrap_or(now))),
        }
    }
    r.facts.blocks_authored = memory.authored.map(|(n, _)| n);
    r.facts.last_authored_time = memory.authored.map(|(_, t)| Time(t));
    r.expected_interval = expected_interval(memory, p.best, now, validators);
    if probe.is_none() {
        r.error = Some("the node did not answer its probe".into());
    } else if p.authored.is_none() && p.authority != Some(false) {
        r.error = Some(
            "the node's metrics have no *_proposer_block_constructed_count (endpoints.metrics)"
                .into(),
        );
    }
}

/// One reading without memory (`vigil probe`): what a single look at the chain shows.
pub fn read_once(
    hub: &Arc<crate::duty::feed::Hub>,
    chain: Chain,
    d: &Duty,
    probe: Option<ProbeDuty>,
    interval: Duration,
    now: Timestamp,
) -> (Desired, DutyFacts) {
    let status = MonitoredValidatorStatus::default();
    let look = Look {
        chain,
        duty: d,
        status: &status,
        probe,
        validators: 1,
        interval,
        now,
    };
    read(hub, look, &mut DutyMemory::default())
}

/// One validator's expected time between two blocks it authors: the chain's block time (as
/// seen on this node) times the validators taking turns (this policy's fleet of the chain).
fn expected_interval(
    memory: &DutyMemory,
    best: Option<u64>,
    now: Timestamp,
    validators: usize,
) -> Option<Duration> {
    let (b0, t0) = memory.first_best?;
    let blocks = best?.checked_sub(b0).filter(|n| *n >= 2)?;
    let elapsed: Duration = now.duration_since(t0).try_into().ok()?;
    let block_time = elapsed / u32::try_from(blocks).unwrap_or(u32::MAX);
    Some(block_time.saturating_mul(validators.max(1) as u32))
}

/// Folds `Signing=False` into `Ready` when the policy says so: the published checks get a
/// `Ready=False` naming the duty failure in place of a healthy `Ready`.
pub(super) fn fold_into_ready(
    checks: &mut Vec<Desired>,
    signing: &Desired,
    shown_ready: Option<Status>,
) {
    if signing.status != Status::False {
        return;
    }
    let ready = Desired::new(
        kind::READY,
        Status::False,
        signing.reason,
        format!(
            "The node is healthy but the validator does not do its duty: {}",
            signing.message
        ),
    );
    match checks.iter_mut().find(|c| c.type_ == kind::READY) {
        Some(c) if c.status == Status::True => *c = ready,
        Some(_) => {}
        None if shown_ready == Some(Status::True) => checks.push(ready),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duty::judge::{Thresholds, reason};

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    /// (RPC read failed?, metric's address, best, last signed) → (error left, last signed,
    /// missed in a row)
    #[test]
    fn cometbft_metrics_stand_in_for_an_unreadable_duty_rpc() {
        type Case = (bool, &'static str, u64, u64, bool, Option<u64>, u64);
        let me = "AABB";
        let cases: &[Case] = &[
            (true, "aabb", 100, 99, false, Some(99), 0),
            (true, "AABB", 100, 90, false, Some(90), 9),
            (true, "CCDD", 100, 99, true, None, 0), // another validator's node: no stand-in
            (false, "AABB", 100, 99, false, Some(99), 0), // commits first; fills a gap only
        ];
        for (i, (failed, who, best, last, error_left, signed, in_a_row)) in cases.iter().enumerate()
        {
            let mut r = Reading::default();
            if *failed {
                r.error = Some("cannot connect".into());
            }
            let p = ProbeDuty {
                best: Some(*best),
                last_signed: Some((who.to_string(), *last)),
                ..Default::default()
            };
            from_metrics(&mut r, Some(me), Some(&p));
            assert_eq!(r.error.is_some(), *error_left, "case {i}");
            assert_eq!(r.facts.last_signed_height, *signed, "case {i}");
            assert_eq!(r.facts.missed_in_a_row, *in_a_row, "case {i}");
        }
    }

    #[test]
    fn substrate_authorship_over_probes() {
        let hub = Arc::new(crate::duty::feed::Hub::default());
        let d = Duty {
            consensus: None,
            consensus_given: None,
            operator: None,
            api: None,
            beacon: None,
            rpc: None,
            thresholds: Thresholds::default(),
        };
        let mut m = DutyMemory::default();
        let st = MonitoredValidatorStatus::default();
        let p = |authored, best| {
            Some(ProbeDuty {
                authored: Some(authored),
                authority: Some(true),
                best: Some(best),
                last_signed: None,
            })
        };
        // 4 validators, a block every 6 s: one of ours every 24 s, 72 s allowed.
        let look = |status, probe, t| Look {
            chain: Chain::Substrate,
            duty: &d,
            status,
            probe,
            validators: 4,
            interval: Duration::from_secs(6),
            now: at(t),
        };
        let run = |m: &mut DutyMemory, probe, t| read(&hub, look(&st, probe, t), m).0;
        assert_eq!(run(&mut m, p(10, 100), 0).reason, reason::SIGNING);
        assert_eq!(run(&mut m, p(11, 104), 24).reason, reason::SIGNING);
        // Authoring stops; blocks go on.
        assert_eq!(run(&mut m, p(11, 112), 72).reason, reason::SIGNING);
        let s = run(&mut m, p(11, 120), 120);
        assert_eq!(
            (s.status, s.reason),
            (Status::False, reason::NOT_AUTHORING),
            "{}",
            s.message
        );
        assert_eq!(run(&mut m, p(12, 121), 126).reason, reason::SIGNING);
        // A full node by mistake.
        let full = Some(ProbeDuty {
            authored: None,
            authority: Some(false),
            best: Some(130),
            last_signed: None,
        });
        assert_eq!(run(&mut m, full, 130).reason, reason::NOT_AUTHORITY);
        // After a restart the clock starts from what status says.
        let mut fresh = DutyMemory::default();
        let st2 = MonitoredValidatorStatus {
            duty: Some(DutyFacts {
                last_authored_time: Some(Time(at(0))),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (s, f) = read(&hub, look(&st2, p(11, 100), 200), &mut fresh);
        assert_eq!(f.last_authored_time, Some(Time(at(0))));
        assert_eq!(s.reason, reason::SIGNING, "no block time known yet");
    }

    #[test]
    fn folding_into_ready() {
        let no = Desired::new(kind::SIGNING, Status::False, reason::JAILED, "jailed");
        let yes = Desired::new(kind::SIGNING, Status::True, reason::SIGNING, "ok");
        let ready = |s| Desired::new(kind::READY, s, "Healthy", "m");
        let mut c = vec![ready(Status::True)];
        fold_into_ready(&mut c, &no, None);
        assert_eq!((c[0].status, c[0].reason), (Status::False, reason::JAILED));
        let mut c = vec![ready(Status::False)];
        fold_into_ready(&mut c, &no, None);
        assert_eq!(c[0].reason, "Healthy", "a node fault stays the reason");
        let mut c = vec![];
        fold_into_ready(&mut c, &no, Some(Status::True));
        assert_eq!(c.len(), 1);
        let mut c = vec![ready(Status::True)];
        fold_into_ready(&mut c, &yes, None);
        assert_eq!(c[0].status, Status::True);
    }
}
