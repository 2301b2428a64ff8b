//! One probe, its verdict, and publishing it: the conditions a user reads are applied to
//! the cached status, written (fenced) only when something a user sees changed, and told
//! on the notice stream.
//!
//! Status writes happen only when a condition, the observed generation or the published
//! facts change. Block heights alone do not count (a steady healthy fleet causes no
//! writes); they are refreshed with every write, and once every `facts_refresh` when that
//! is non-zero, at the validator's own point of the period (`schedule::refresh_due`).

use super::{Config, IncidentState, Key, Monitor, VIEW_REUSE, fleet_key};
use crate::api::{ChainFacts, MonitoredValidator, ProbeRecord};
use crate::conditions::{self, Desired, Status, kind, reason};
use crate::health::{self, Outcome, Sample};
use crate::probe::ProbeError;
use crate::status::{Manager, WriteError};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::ObjectRef;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How a probe error is judged: the node is down, or its answer cannot be read.
pub fn outcome_of(result: Result<crate::probe::Observation, ProbeError>) -> Outcome {
    match result {
        Ok(o) => Outcome::Answered(Sample {
            best: o.best_block,
            finalized: o.finalized_block,
            target: o.target_block,
            peers: o.peers,
            syncing: o.syncing,
            latency: o.latency,
        }),
        Err(e) => {
            let reason = match &e {
                ProbeError::Timeout(_) => "Timeout",
                ProbeError::Connect(_) => "ConnectionFailed",
                ProbeError::Status(_) => "HttpError",
                ProbeError::Expectation(_) => "UnexpectedResponse",
                ProbeError::TooLarge(_)
                | ProbeError::Malformed(_)
                | ProbeError::Rpc { .. }
                | ProbeError::Config(_) => {
                    return Outcome::Indeterminate {
                        message: e.to_string(),
                    };
                }
            };
            Outcome::Down {
                reason,
                message: e.to_string(),
            }
        }
    }
}

/// What to publish about a validator.
pub(super) enum Update {
    /// A probe's verdict, with what the probe read.
    Verdict(Vec<Desired>, Seen),
    /// Only what a probe read (written when a facts refresh is due).
    Seen(Seen),
    /// One `Ready` condition (pending, or why the validator is not probed).
    Ready(Desired),
}

/// What one probe read.
pub(super) struct Seen {
    facts: Option<ChainFacts>,
    record: ProbeRecord,
    /// The validator's duty as read now (with `spec.duty`).
    duty: Option<crate::api::DutyFacts>,
}

impl Monitor {
    pub(super) async fn probe_one(self: Arc<Self>, key: Key, config: Arc<Config>, due: Instant) {
        // A slot bounds probes (requests to nodes), not what follows: a slot held through
        // a slow status write would leave other validators' probes waiting behind it.
        let slot = self.permits.acquire(&key.0).await;
        // Deleted validators have no reconcile to tell us; the cache does.
        let in_cache =
            ObjectRef::<DeserializeGuard<MonitoredValidator>>::new(&key.1).within(&key.0);
        if self.validators.get(&in_cache).is_none() {
            self.forget(&key);
            return;
        }
        let started = Instant::now();
        self.metrics
            .probe_lateness
            .observe(started.saturating_duration_since(due).as_secs_f64());
        let result = self.prober.probe(&config.target, &config.options).await;
        drop(slot);
        let chain = config.chain.as_str();
        self.metrics
            .probe_latency
            .with_label_values(&[chain])
            .observe(started.elapsed().as_secs_f64());
        let label = match &result {
            Ok(_) => "ok",
            Err(e) => e.class(),
        };
        self.metrics.probes.with_label_values(&[chain, label]).inc();
        let record = ProbeRecord {
            time: Some(conditions::now()),
            latency_ms: Some(started.elapsed().as_millis() as u64),
            error: result.as_ref().err().map(|e| e.to_string()),
        };
        let probe_duty = result.as_ref().ok().map(|o| super::duty::ProbeDuty {
            authored: o.authored,
            authority: o.authority,
            best: o.best_block,
            last_signed: o.last_signed.clone(),
        });
        let facts_seen = result.as_ref().ok().map(|o| ChainFacts {
            best_block: o.best_block,
            finalized_block: o.finalized_block,
            target_block: o.target_block,
            peers: o.peers,
            syncing: o.syncing,
            version: o.version.clone(),
            network: o.network.clone(),
            last_best_block_change: None,
        });
        let outcome = outcome_of(result);
        let now = Timestamp::now();

        let (evaluation, incident, duty) = {
            let mut st = self.state.lock().expect("monitor state");
            let fk = fleet_key(&key.0, &config);
            let freshness = config.interval * 3;
            let best = match &outcome {
                Outcome::Answered(s) => s.best,
                _ => None,
            };
            let fleet = st.fleets.entry(fk.clone()).or_default();
            fleet.observe(&key.1, best, now, freshness);
            let stall = config.limits.max_block_stall;
            let view = match st.views.get(&fk) {
                Some((at, v)) if at.elapsed() < (config.interval / 10).min(VIEW_REUSE) => v.clone(),
                _ => {
                    let v = st.fleets[&fk].view(now, freshness, stall);
                    st.views.insert(fk.clone(), (Instant::now(), v.clone()));
                    v
                }
            };
            let st_validators = st.fleets.get(&fk).map_or(1, |f| f.len());
            let kind_now = view.incident(now, stall);
            let state = st
                .incidents
                .entry(fk.clone())
                .or_insert_with(|| IncidentState::new(now));
            let incident = state
                .update(kind_now, now, stall)
                .then(|| (fk, kind_now, view.clone()));
            let Some(e) = st.entries.get_mut(&key) else {
                return;
            };
            e.running = false;
            if e.config != config {
                return; // the spec changed while probing; the next probe uses the new one
            }
            let published = conditions::get(&e.status.conditions, kind::READY).and_then(|c| {
                // "Pending" is not a verdict: the first confirmed result replaces it.
                (c.reason != reason::PENDING || c.status != "Unknown")
                    .then(|| Status::parse(&c.status))
            });
            let judged = health::Judged {
                outcome: &outcome,
                memory: &e.memory,
                fleet: &view,
                published_ready: published,
            };
            let mut ev = health::evaluate(config.chain, &config.limits, judged, now);
            e.memory = ev.memory.clone();
            // Duty beside health: `Signing`, folded into `Ready` when the policy says so.
            let duty = config.duty.as_ref().map(|d| {
                let look = super::duty::Look {
                    chain: config.chain,
                    duty: d,
                    status: &e.status,
                    probe: probe_duty,
                    validators: st_validators,
                    interval: config.interval,
                    now,
                };
                let (signing, facts) = super::duty::read(&self.duty, look, &mut e.duty);
                let mut checks = ev.publish.take().unwrap_or_default();
                if d.thresholds.affects_ready {
                    let shown = conditions::status_of(&e.status.conditions, kind::READY);
                    super::duty::fold_into_ready(&mut checks, &signing, shown);
                }
                checks.push(signing);
                ev.publish = Some(checks);
                facts
            });
            (ev, incident, duty)
        };
        if let Some((fk, kind, view)) = incident {
            self.record_incident(&fk, kind, &view, now).await;
        }
        let facts = facts_seen.map(|mut f| {
            f.last_best_block_change = evaluation.memory.best_changed_at.map(Time);
            f
        });
        let seen = Seen {
            facts,
            record,
            duty,
        };
        if let Some(checks) = evaluation.publish {
            self.publish(&key, Update::Verdict(checks, seen)).await;
        } else if self.facts_refresh > Duration::ZERO {
            self.publish(&key, Update::Seen(seen)).await;
        }
        self.heal(&key).await;
    }

    /// Applies an update to the cached status, writes it if anything a user sees changed,
    /// and tells of every transition.
    pub(super) async fn publish(&self, key: &Key, update: Update) {
        let now = conditions::now();
        let transitions = {
            let mut st = self.state.lock().expect("monitor state");
            let Some(e) = st.entries.get_mut(key) else {
                return;
            };
            let previous = &e.status;
            let generation = e.config.generation;
            let mut s = previous.clone();
            s.observed_generation = generation;
            let mut transitions = Vec::new();
            let mut set = |s: &mut crate::api::MonitoredValidatorStatus, d: Desired| {
                conditions::set_noting(&mut s.conditions, d, generation, &now, &mut transitions)
            };
            let seen = match update {
                Update::Verdict(checks, seen) => {
                    for c in checks {
                        set(&mut s, c);
                    }
                    Some(seen)
                }
                Update::Seen(seen) => Some(seen),
                Update::Ready(d) => {
                    // "Pending" never overrides a verdict already on display.
                    let shown =
                        conditions::get(&s.conditions, kind::READY).map(|c| c.reason.as_str());
                    let is_verdict = shown.is_some_and(|r| {
                        ![
                            reason::PENDING,
                            reason::POLICY_NOT_FOUND,
                            reason::POLICY_INVALID,
                        ]
                        .contains(&r)
                    });
                    if !(d.reason == reason::PENDING && is_verdict) {
                        set(&mut s, d);
                    }
                    None
                }
            };
            let conditions_changed = s.conditions != previous.conditions
                || s.observed_generation != previous.observed_generation;
            let since = |t: Instant| t.saturating_duration_since(self.epoch);
            let refresh_due = self.facts_refresh > Duration::ZERO
                && super::schedule::refresh_due(
                    since(e.last_write),
                    since(Instant::now()),
                    self.facts_refresh,
                    super::schedule::phase(key, self.facts_refresh),
                );
            // Facts, the last probe and the counters ride along with a change (or a due
            // refresh); alone they would make every probe a write.
            if let Some(Seen {
                facts,
                record,
                duty,
            }) = seen
                && (conditions_changed || refresh_due)
            {
                if let Some(f) = facts {
                    s.facts = Some(f);
                }
                if let Some(d) = duty {
                    s.duty = Some(d);
                }
                s.last_probe = Some(record);
                s.consecutive_failures = e.memory.failures;
                s.consecutive_successes = e.memory.successes;
            }
            // A write that failed before is retried with the next change or probe.
            if s == e.status && e.written == e.version {
                return;
            }
            if s != e.status {
                e.status = s;
                e.version += 1;
            }
            e.last_write = Instant::now();
            transitions
        };
        self.commit(key, transitions, "Probe").await;
    }

    /// Writes the cached status, fenced by the resourceVersion it was decided on (writes of
    /// one validator are serialized, so an older status never lands after a newer one),
    /// then tells of `transitions`. Returns whether the cached status is now on the server.
    /// A conflict means another writer (a new leader) changed the object: the entry takes
    /// the object's status and resourceVersion, and nothing decided on the old view runs.
    pub(super) async fn commit(
        &self,
        key: &Key,
        transitions: Vec<Desired>,
        action: &'static str,
    ) -> bool {
        let lock = match self.state.lock().expect("monitor state").entries.get(key) {
            Some(e) => e.write_lock.clone(),
            None => return false,
        };
        let _serial = lock.lock().await;
        let (status, version, fence, reference) = {
            let st = self.state.lock().expect("monitor state");
            match st.entries.get(key) {
                Some(e) => (
                    (e.written != e.version).then(|| e.status.clone()),
                    e.version,
                    e.resource_version.clone(),
                    e.reference.clone(),
                ),
                None => return false,
            }
        };
        if let Some(status) = status {
            // Another manager (alerts, advice) changed only its own fields: what this
            // process decided on is still what the object holds, so write again on the new
            // resourceVersion instead of dropping the decision.
            let last = self
                .state
                .lock()
                .expect("monitor state")
                .entries
                .get(key)
                .and_then(|e| e.written_hash);
            let written = self
                .writer
                .apply_refenced::<MonitoredValidator, _>(
                    &key.0,
                    &key.1,
                    Manager::Vigil,
                    &status,
                    fence,
                    |obj| last == Some(super::status_hash(&super::own_status(obj))),
                )
                .await;
            match written {
                Ok(obj) => self.with_entry(key, |e| {
                    e.resource_version = obj.resource_version();
                    e.written = e.written.max(version);
                    e.written_hash = Some(super::status_hash(&status));
                }),
                Err(WriteError::NotFound) => {
                    self.forget(key);
                    return false;
                }
                Err(WriteError::Conflict) => {
                    tracing::info!(namespace = %key.0, name = %key.1, "validator changed since it was read; reloading its status");
                    self.reload(key).await;
                    return false;
                }
                Err(err) => {
                    tracing::warn!(namespace = %key.0, name = %key.1, error = %err, "writing validator status failed");
                    return false;
                }
            }
        }
        self.tell_transitions(&reference, transitions, action);
        true
    }

    /// Takes the object's status and resourceVersion as the cached view (after a conflict).
    async fn reload(&self, key: &Key) {
        match self.writer.read::<MonitoredValidator>(&key.0, &key.1).await {
            Ok(Some(obj)) => self.with_entry(key, |e| {
                if obj.uid().as_deref() == e.uid() {
                    e.status = super::own_status(&obj);
                    e.resource_version = obj.resource_version();
                    e.version += 1;
                    e.written = e.version;
                }
            }),
            Ok(None) => self.forget(key),
            Err(err) => {
                tracing::warn!(namespace = %key.0, name = %key.1, error = %err, "reloading validator status failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_errors_are_down_or_cannot_tell() {
        let down = outcome_of(Err(ProbeError::Connect("refused".into())));
        assert!(matches!(
            down,
            Outcome::Down {
                reason: "ConnectionFailed",
                ..
            }
        ));
        let down = outcome_of(Err(ProbeError::Timeout(Duration::from_secs(1))));
        assert!(matches!(
            down,
            Outcome::Down {
                reason: "Timeout",
                ..
            }
        ));
        for e in [
            ProbeError::Malformed("x".into()),
            ProbeError::TooLarge(10),
            ProbeError::Rpc {
                code: -32601,
                message: "no".into(),
            },
        ] {
            assert!(matches!(outcome_of(Err(e)), Outcome::Indeterminate { .. }));
        }
    }
}
