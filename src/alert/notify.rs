//! The alerter, the thin loop around the pure decision: every [`TICK`] (and while this
//! process leads) it reads each policy, its validators and its runs from the caches, asks
//! [`catalog`] what fires and [`decide`] what to tell, writes the alert records back to
//! each object's status (its own field manager, fenced by the resourceVersion the decision
//! was made on) and only then queues the notifications. A write that loses the fence sends
//! nothing: the next tick decides again on fresh records, so a restart, a new leader or a
//! stale cache never notifies twice inside a repeat interval. Each notification is
//! recorded `pending` until its channel is done with it (delivered, or given up after its
//! retries), and the record is then written again without it; one found pending and not in
//! flight (its process died) is sent again, unchanged: delivery is at least once.
//!
//! Event alerts (a remediation's outcome) come from the notice stream and ride along until
//! their record is written. Delivery health and the `vigil.dev/test-alert` button land on
//! the policy status, with `AlertDeliveryFailing` and an Event when a channel keeps failing.

use super::catalog::{self, Firing, Member};
use super::decide::{self, LOG_CHANNEL, Object as Input, Send, State, Timing};
use super::deliver::{ChannelKey, Delivery, FAILING_AFTER, channel_type};
use super::message::{self, Item, Message, Object};
use crate::api::{
    AlertName, AlertRecord, AlertTest, AlertTestResult, ChannelHealth, Condition, MonitorPolicy,
    MonitorPolicyStatus, MonitoredValidator, PipelineRun, Severity,
};
use crate::conditions::{self, Change, Desired, Status, kind};
use crate::metrics::Metrics;
use crate::notice::{self, Notice, Notices, What};
use crate::policy::Policy;
use crate::status::{Manager, StatusWriter, WriteError};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// Time between two decisions.
pub const TICK: Duration = Duration::from_secs(2);
/// Longest wait after a channel finished a notification before its record is written as
/// delivered (a short pause gathers the confirmations of a burst into one round).
const CONFIRM_WITHIN: Duration = Duration::from_millis(100);
/// Annotation on a MonitorPolicy that sends one test notification through each of its
/// channels, once per distinct value.
pub const TEST_ANNOTATION: &str = "vigil.dev/test-alert";
/// How long a resolve may wait in a channel's queue.
const RESOLVE_TTL: Duration = Duration::from_secs(900);

/// An object alerts are about: kind, namespace, name.
type ObjKey = (Object, String, String);

/// What the alerter reads and writes through.
pub struct Alerter {
    /// Writes alert records, delivery health and test results.
    pub writer: StatusWriter,
    /// Policies.
    pub policies: Store<DeserializeGuard<MonitorPolicy>>,
    /// Validators.
    pub validators: Store<DeserializeGuard<MonitoredValidator>>,
    /// Pipeline runs.
    pub runs: Store<DeserializeGuard<PipelineRun>>,
    /// Channel queues.
    pub delivery: Delivery,
    /// Where delivery trouble and test results are told (hence Events).
    pub notices: Notices,
    /// Metrics.
    pub metrics: Metrics,
}

/// The alerter's memory: only what can be rebuilt (events not yet recorded are the
/// exception: a crash loses them, at most once).
#[derive(Default)]
struct Memory {
    /// Event alerts from notices, not yet in a written record.
    pending: HashMap<ObjKey, Vec<Firing>>,
    /// Test notifications this process answered, newest per policy, until the cache
    /// shows them written.
    tests: HashMap<(String, String), AlertTest>,
    /// Notifications handed to a channel and not finished there yet: not sent again.
    in_flight: decide::InFlight,
    /// Notifications a channel is done with, by (fingerprint, channel, toldAt), and when
    /// that was known: their records lose `pending` at the next round.
    finished: HashMap<Told, std::time::Instant>,
}

/// A notification's identity: fingerprint, channel, when it was decided.
type Told = (String, String, Timestamp);

/// How long a finished notification is remembered for its record's next write.
const FINISHED_KEPT: Duration = Duration::from_secs(600);

/// The validators and runs under one policy.
type Members<'a> = (Vec<&'a MonitoredValidator>, Vec<&'a PipelineRun>);

/// One object of a policy's round.
struct Subject<'a> {
    key: ObjKey,
    records: &'a [AlertRecord],
    firing: Vec<(String, Firing)>,
    /// Events read from its status, with which event each is.
    events: Vec<(String, Firing, String)>,
    resource_version: Option<String>,
    chain: String,
    did: String,
}

/// The part of a validator's or run's status the alerter owns.
#[derive(Serialize)]
struct Records<'a> {
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    alerts: &'a [AlertRecord],
}

/// The part of a policy's status the alerter owns.
#[derive(Serialize, PartialEq, Debug)]
#[serde(rename_all = "camelCase")]
struct PolicyPart {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    alerts: Vec<AlertRecord>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    alert_delivery: Vec<ChannelHealth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alert_test: Option<AlertTest>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    conditions: Vec<Condition>,
}

impl PolicyPart {
    /// The alerter's part of a policy's status as it stands.
    fn of(status: &MonitorPolicyStatus) -> PolicyPart {
        PolicyPart {
            alerts: status.alerts.clone(),
            alert_delivery: status.alert_delivery.clone(),
            alert_test: status.alert_test.clone(),
            conditions: status
                .conditions
                .iter()
                .filter(|c| c.type_ == kind::ALERT_DELIVERY_FAILING)
                .cloned()
                .collect(),
        }
    }
}

fn object_of(kind: &str) -> Option<Object> {
    match kind {
        "MonitoredValidator" => Some(Object::Validator),
        "MonitorPolicy" => Some(Object::Policy),
        "PipelineRun" => Some(Object::Run),
        _ => None,
    }
}

fn is_reason(cs: &[Condition], t: &str, f: impl Fn(&Condition) -> bool) -> bool {
    cs.iter().any(|c| c.type_ == t && f(c))
}

/// A validator as the policy's fleet alerts list it.
fn member(v: &MonitoredValidator) -> Member {
    let cs = v
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    Member {
        name: v.name_any(),
        chain: v.spec.chain.as_str().to_string(),
        unhealthy: is_reason(cs, kind::READY, |c| c.status == "False"),
        in_incident: is_reason(cs, kind::BLOCK_PRODUCTION, |c| {
            c.reason == "ChainHalted" || c.reason == "MassStall"
        }),
    }
}

/// What Vigil did about a validator, in a few words.
fn did_of(v: &MonitoredValidator) -> String {
    let Some(s) = &v.status else {
        return String::new();
    };
    if conditions::is_true(&s.conditions, kind::ESCALATED) {
        return format!(
            "stopped acting; waits for a person (kubectl annotate monitoredvalidator {} vigil.dev/ack=<any new value>)",
            v.name_any()
        );
    }
    let Some(r) = &s.remediation else {
        return String::new();
    };
    if let Some(f) = &r.in_flight {
        return format!("{} in progress", f.action);
    }
    match (&r.last_action, &r.last_action_time) {
        (Some(a), Some(t)) => format!("last action: {a} at {}", t.0),
        (Some(a), None) => format!("last action: {a}"),
        _ => String::new(),
    }
}

impl Alerter {
    /// Runs until `stop` resolves (or the notice stream closes).
    pub async fn run(
        self,
        mut notices: broadcast::Receiver<Notice>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let me = Arc::new(self);
        let mut memory = Memory::default();
        let (test_tx, mut test_rx) = mpsc::channel::<((String, String), AlertTest)>(16);
        let (done_tx, mut done_rx) = mpsc::channel::<Vec<Told>>(256);
        // The next round: every TICK, and soon after a channel finished a notification, so
        // that its record loses `pending` (and a crash cannot send it again) within a
        // moment of the delivery.
        let next_round = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(next_round);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                n = notices.recv() => match n {
                    Ok(n) => memory.note(&n),
                    Err(broadcast::error::RecvError::Lagged(k)) => notice::lagged("alerts", k),
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                Some((key, test)) = test_rx.recv() => {
                    memory.tests.insert(key, test);
                }
                Some(done) = done_rx.recv() => {
                    for told in done {
                        memory.in_flight.remove(&(told.0.clone(), told.1.clone()));
                        memory.finished.insert(told, std::time::Instant::now());
                    }
                    let soon = tokio::time::Instant::now() + CONFIRM_WITHIN;
                    if next_round.deadline() > soon {
                        next_round.as_mut().reset(soon);
                    }
                }
                _ = &mut next_round => {
                    me.round(&mut memory, &test_tx, &done_tx).await;
                    next_round.as_mut().reset(tokio::time::Instant::now() + TICK);
                }
            }
        }
    }

    async fn round(
        self: &Arc<Self>,
        memory: &mut Memory,
        test_tx: &mpsc::Sender<((String, String), AlertTest)>,
        done_tx: &mpsc::Sender<Vec<Told>>,
    ) {
        let now = Timestamp::now();
        let validators = self.validators.state();
        let runs = self.runs.state();
        let mut by_policy: HashMap<(String, String), Members<'_>> = HashMap::new();
        for v in validators.iter().filter_map(|g| g.0.as_ref().ok()) {
            let key = (
                v.namespace().unwrap_or_default(),
                v.spec.policy_ref.name.clone(),
            );
            by_policy.entry(key).or_default().0.push(v);
        }
        for r in runs.iter().filter_map(|g| g.0.as_ref().ok()) {
            if let Some(p) = &r.spec.policy_ref {
                let key = (r.namespace().unwrap_or_default(), p.name.clone());
                by_policy.entry(key).or_default().1.push(r);
            }
        }
        let mut keep: HashSet<ChannelKey> = HashSet::new();
        let mut active = [0i64; 3];
        let mut unsaved: HashMap<ObjKey, Vec<Firing>> = HashMap::new();
        for p in self.policies.state().iter() {
            let Ok(pol) = p.0.as_ref() else { continue };
            let Ok(policy) = crate::policy::validate(&pol.spec) else {
                continue; // the policy controller shows why
            };
            if policy.suspend {
                continue; // the kill switch: no alerts
            }
            let ns = pol.namespace().unwrap_or_default();
            let name = pol.name_any();
            for ch in &policy.alerts.channels {
                keep.insert((ns.clone(), name.clone(), ch.name.clone()));
            }
            for h in pol.status.iter().flat_map(|s| &s.alert_delivery) {
                self.delivery
                    .seed(&(ns.clone(), name.clone(), h.channel.clone()), h);
            }
            self.test_button(pol, &policy, memory, test_tx).await;
            let (vs, rs) = by_policy
                .get(&(ns.clone(), name.clone()))
                .map(|(v, r)| (v.as_slice(), r.as_slice()))
                .unwrap_or_default();
            self.policy_round(
                pol,
                &policy,
                vs,
                rs,
                memory,
                &mut unsaved,
                &mut active,
                now,
                done_tx,
            )
            .await;
        }
        memory.finished.retain(|_, at| at.elapsed() < FINISHED_KEPT);
        // Events of objects no valid policy covers are dropped; those whose record could
        // not be written wait for the next round.
        memory.pending = unsaved;
        self.delivery.retain(|k| keep.contains(k));
        for (sev, n) in [
            (Severity::Info, active[0]),
            (Severity::Warning, active[1]),
            (Severity::Critical, active[2]),
        ] {
            self.metrics
                .alerts_active
                .with_label_values(&[message::severity_str(sev)])
                .set(n);
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn policy_round(
        &self,
        pol: &MonitorPolicy,
        policy: &Policy,
        validators: &[&MonitoredValidator],
        runs: &[&PipelineRun],
        memory: &mut Memory,
        unsaved: &mut HashMap<ObjKey, Vec<Firing>>,
        active: &mut [i64; 3],
        now: Timestamp,
        done_tx: &mpsc::Sender<Vec<Told>>,
    ) {
        let ns = pol.namespace().unwrap_or_default();
        let name = pol.name_any();
        let fp = |o: Object, obj: &str, f: &Firing| {
            decide::fingerprint(&ns, o.kind(), obj, f.name, &f.subject)
        };
        let mut take = |key: &ObjKey| memory.pending.remove(key).unwrap_or_default();
        // The fleet alerts list their validators; only then is the list built.
        let pstatus = pol.status.clone().unwrap_or_default();
        let fleet_alert = conditions::is_true(&pstatus.conditions, kind::STORM_ACTIVE)
            || pstatus
                .fleet_incident
                .as_ref()
                .is_some_and(|i| i.ended.is_none());
        let members: Vec<Member> = if fleet_alert {
            validators.iter().map(|v| member(v)).collect()
        } else {
            Vec::new()
        };

        let timing = Timing::of(&policy.alerts);
        let events_since = now
            .checked_sub(jiff::SignedDuration::try_from(timing.retention).unwrap_or_default())
            .unwrap_or(now);
        let mut subjects: Vec<Subject> = Vec::new();
        {
            let key = (Object::Policy, ns.clone(), name.clone());
            let mut firing: Vec<_> = catalog::policy(&pstatus, &members)
                .into_iter()
                .map(|f| (fp(Object::Policy, &name, &f), f))
                .collect();
            firing.extend(
                take(&key)
                    .into_iter()
                    .map(|f| (fp(Object::Policy, &name, &f), f)),
            );
            subjects.push(Subject {
                key,
                records: pol
                    .status
                    .as_ref()
                    .map(|s| s.alerts.as_slice())
                    .unwrap_or_default(),
                firing,
                events: catalog::advice_events(pstatus.fleet_advice.as_ref(), events_since)
                    .into_iter()
                    .map(|(f, which)| (fp(Object::Policy, &name, &f), f, which))
                    .collect(),
                resource_version: pol.resource_version(),
                chain: String::new(),
                did: String::new(),
            });
        }
        for v in validators {
            let vname = v.name_any();
            let key = (Object::Validator, ns.clone(), vname.clone());
            let records = v
                .status
                .as_ref()
                .map(|s| s.alerts.as_slice())
                .unwrap_or_default();
            let mut firing: Vec<_> = v
                .status
                .as_ref()
                .map(catalog::validator)
                .unwrap_or_default()
                .into_iter()
                .map(|f| (fp(Object::Validator, &vname, &f), f))
                .collect();
            firing.extend(
                take(&key)
                    .into_iter()
                    .map(|f| (fp(Object::Validator, &vname, &f), f)),
            );
            // Events (outcomes, advice) no older than a told one's record is kept (so that
            // one is never told twice).
            let events: Vec<_> = v
                .status
                .as_ref()
                .map(|s| {
                    let mut e = catalog::remediation_outcomes(s, events_since);
                    e.extend(catalog::advice_events(s.advice.as_ref(), events_since));
                    e
                })
                .unwrap_or_default()
                .into_iter()
                .map(|(f, which)| (fp(Object::Validator, &vname, &f), f, which))
                .collect();
            if firing.is_empty() && records.is_empty() && events.is_empty() {
                continue; // healthy and nothing to resolve: the common case, no work
            }
            subjects.push(Subject {
                key,
                records,
                firing,
                events,
                resource_version: v.resource_version(),
                chain: v.spec.chain.as_str().to_string(),
                did: did_of(v),
            });
        }
        for r in runs {
            let rname = r.name_any();
            let key = (Object::Run, ns.clone(), rname.clone());
            let records = r
                .status
                .as_ref()
                .map(|s| s.alerts.as_slice())
                .unwrap_or_default();
            let mut firing: Vec<_> = r
                .status
                .as_ref()
                .map(catalog::run)
                .unwrap_or_default()
                .into_iter()
                .map(|f| (fp(Object::Run, &rname, &f), f))
                .collect();
            firing.extend(
                take(&key)
                    .into_iter()
                    .map(|f| (fp(Object::Run, &rname, &f), f)),
            );
            let events: Vec<_> = r
                .status
                .as_ref()
                .map(|s| catalog::run_events(s, events_since))
                .unwrap_or_default()
                .into_iter()
                .map(|(f, which)| (fp(Object::Run, &rname, &f), f, which))
                .collect();
            if firing.is_empty() && records.is_empty() && events.is_empty() {
                continue;
            }
            subjects.push(Subject {
                key,
                records,
                firing,
                events,
                resource_version: r.resource_version(),
                chain: String::new(),
                did: String::new(),
            });
        }

        // What the channels finished since loses `pending`.
        let confirmed: Vec<Option<Vec<AlertRecord>>> = subjects
            .iter()
            .map(|s| {
                decide::confirm(s.records, |fp, ch, at| {
                    memory
                        .finished
                        .contains_key(&(fp.to_string(), ch.to_string(), at))
                })
            })
            .collect();
        let inputs: Vec<Input> = subjects
            .iter()
            .zip(&confirmed)
            .map(|(s, c)| Input {
                records: c.as_deref().unwrap_or(s.records),
                firing: s.firing.clone(),
                events: s.events.clone(),
            })
            .collect();
        let decision = decide::decide(&inputs, &policy.alerts, &timing, now, &memory.in_flight);

        // Record first; only what was recorded is sent.
        let mut saved = vec![false; subjects.len()];
        for (i, (s, records)) in subjects.iter().zip(&decision.records).enumerate() {
            for r in records
                .iter()
                .filter(|r| r.resolved_at.is_none() && r.cleared_at.is_none())
            {
                active[r.severity as usize] += 1;
            }
            saved[i] = if s.key.0 == Object::Policy {
                self.write_policy(pol, policy, records.clone(), memory)
                    .await
            } else if records.as_slice() == s.records {
                true
            } else {
                self.write_records(s, records).await
            };
            if !saved[i] {
                let events: Vec<Firing> = s
                    .firing
                    .iter()
                    .filter(|(_, f)| catalog::info(f.name).kind == catalog::Kind::Event)
                    .map(|(_, f)| f.clone())
                    .collect();
                if !events.is_empty() {
                    unsaved.insert(s.key.clone(), events);
                }
            }
        }

        // One message per channel, alert and state.
        let mut groups: BTreeMap<(String, AlertName, State), Vec<&Send>> = BTreeMap::new();
        for send in decision.sends.iter().filter(|s| saved[s.object]) {
            groups
                .entry((send.channel.clone(), send.alert.name, send.state))
                .or_default()
                .push(send);
        }
        for ((channel, alert, state), sends) in groups {
            let items: Vec<Item> = sends
                .iter()
                .map(|s| {
                    let sub = &subjects[s.object];
                    Item {
                        object: sub.key.0,
                        namespace: ns.clone(),
                        name: sub.key.2.clone(),
                        policy: name.clone(),
                        chain: if sub.key.0 == Object::Policy {
                            s.alert.subject.clone()
                        } else {
                            sub.chain.clone()
                        },
                        fingerprint: s.fingerprint.clone(),
                        alert: s.alert.clone(),
                        since: s.since,
                        did: sub.did.clone(),
                        told_at: s.told_at,
                    }
                })
                .collect();
            let m = Message {
                name: alert,
                state,
                items,
                test: false,
            };
            if channel == LOG_CHANNEL {
                audit(&m, sends.iter().any(|s| s.repeat));
                self.metrics
                    .notifications
                    .with_label_values(&["log", "sent"])
                    .inc();
                continue;
            }
            let Some(spec) = policy.alerts.channels.iter().find(|c| c.name == channel) else {
                continue;
            };
            let ttl = match state {
                State::Firing => {
                    decide::routes(&policy.alerts, alert, m.severity(), decide::REFRESH)
                        .iter()
                        .find(|r| r.channel == channel)
                        .map_or(RESOLVE_TTL, |r| r.repeat.max(Duration::from_secs(60)))
                }
                State::Resolved => RESOLVE_TTL,
            };
            let told: Vec<Told> = sends
                .iter()
                .map(|s| (s.fingerprint.clone(), channel.clone(), s.told_at))
                .collect();
            // Not queued (the channel's queue is full): still pending, sent next round.
            let Some(done) =
                self.delivery
                    .submit(&(ns.clone(), name.clone(), channel.clone()), spec, m, ttl)
            else {
                continue;
            };
            for t in &told {
                memory.in_flight.insert((t.0.clone(), t.1.clone()));
            }
            let done_tx = done_tx.clone();
            tokio::spawn(async move {
                // Delivered, given up, or dropped from the queue: the channel is done.
                let _ = done.await;
                let _ = done_tx.send(told).await;
            });
        }
    }

    /// Writes a validator's or run's alert records, fenced.
    async fn write_records(&self, s: &Subject<'_>, records: &[AlertRecord]) -> bool {
        let (_, ns, name) = &s.key;
        let part = Records { alerts: records };
        let fence = s.resource_version.clone();
        // Another writer (the monitor, the advisor) may have changed other fields of the
        // object since it was read: that loses the fence but not the decision, which rests
        // on the alert records only.
        let r = match s.key.0 {
            Object::Validator => {
                self.refence::<MonitoredValidator>(s, &part, fence, |o| {
                    o.status.as_ref().map(|st| st.alerts.as_slice())
                })
                .await
            }
            Object::Run => {
                self.refence::<PipelineRun>(s, &part, fence, |o| {
                    o.status.as_ref().map(|st| st.alerts.as_slice())
                })
                .await
            }
            Object::Policy => return false,
        };
        written(ns, name, r)
    }

    /// Writes `part` to the subject's object, again on a fresh resourceVersion while its
    /// alert records (read by `alerts`) are still the ones decided on.
    async fn refence<K>(
        &self,
        s: &Subject<'_>,
        part: &Records<'_>,
        fence: Option<String>,
        alerts: fn(&K) -> Option<&[AlertRecord]>,
    ) -> Result<(), WriteError>
    where
        K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let (_, ns, name) = &s.key;
        self.writer
            .apply_refenced::<K, _>(ns, name, Manager::Alerts, part, fence, |o| {
                alerts(o).unwrap_or_default() == s.records
            })
            .await
            .map(|_| ())
    }

    /// Writes the policy's own alert records, its channels' delivery health and the
    /// latest test result, fenced; tells when `AlertDeliveryFailing` changes.
    async fn write_policy(
        &self,
        pol: &MonitorPolicy,
        policy: &Policy,
        alerts: Vec<AlertRecord>,
        memory: &mut Memory,
    ) -> bool {
        let ns = pol.namespace().unwrap_or_default();
        let name = pol.name_any();
        let status = pol.status.clone().unwrap_or_default();
        let health = self.delivery.health(&ns, &name, &policy.alerts.channels);
        let test_key = (ns.clone(), name.clone());
        if memory.tests.get(&test_key) == status.alert_test.as_ref() {
            memory.tests.remove(&test_key); // the cache shows it written
        }
        let alert_test = memory
            .tests
            .get(&test_key)
            .cloned()
            .or_else(|| status.alert_test.clone());
        let mut conds: Vec<Condition> = status
            .conditions
            .iter()
            .filter(|c| c.type_ == kind::ALERT_DELIVERY_FAILING)
            .cloned()
            .collect();
        let mut change = Change::None;
        let mut want = None;
        if !policy.alerts.channels.is_empty() {
            let d = delivery_condition(&health);
            change = conditions::set(
                &mut conds,
                d.clone(),
                pol.meta().generation,
                &conditions::now(),
            );
            want = Some(d);
        } else {
            conds.clear();
        }
        let part = PolicyPart {
            alerts,
            alert_delivery: health,
            alert_test,
            conditions: conds,
        };
        let current = PolicyPart::of(&status);
        if part == current {
            return true;
        }
        // The policy's counts and fleet state change all the time in a busy fleet: what
        // this decision rests on is the alerter's own part only.
        let r = self
            .writer
            .apply_refenced::<MonitorPolicy, _>(
                &ns,
                &name,
                Manager::Alerts,
                &part,
                pol.resource_version(),
                |fresh| PolicyPart::of(&fresh.status.clone().unwrap_or_default()) == current,
            )
            .await
            .map(|_| ());
        let ok = written(&ns, &name, r);
        if ok && let (Change::Transitioned { .. }, Some(d)) = (change, want) {
            let failing = d.status == Status::True;
            self.notices.publish(
                Notice::new(
                    pol.object_ref(&()),
                    What::AlertDelivery,
                    d.reason,
                    d.message,
                )
                .warning(failing)
                .action("Alert"),
            );
        }
        ok
    }

    /// Honours `vigil.dev/test-alert`: records the token first (so a restart never sends
    /// it twice), then sends one test notification through each channel and records how
    /// each went.
    async fn test_button(
        self: &Arc<Self>,
        pol: &MonitorPolicy,
        policy: &Policy,
        memory: &mut Memory,
        tx: &mpsc::Sender<((String, String), AlertTest)>,
    ) {
        let Some(token) = pol.annotations().get(TEST_ANNOTATION) else {
            return;
        };
        let ns = pol.namespace().unwrap_or_default();
        let name = pol.name_any();
        let key = (ns.clone(), name.clone());
        let recorded = memory
            .tests
            .get(&key)
            .or(pol.status.as_ref().and_then(|s| s.alert_test.as_ref()));
        if recorded.is_some_and(|t| &t.token == token) {
            return;
        }
        let test = AlertTest {
            token: token.clone(),
            sent_at: Some(Time(Timestamp::now())),
            results: Vec::new(),
        };
        memory.tests.insert(key.clone(), test.clone());
        let alerts = pol
            .status
            .as_ref()
            .map(|s| s.alerts.clone())
            .unwrap_or_default();
        if !self.write_policy(pol, policy, alerts, memory).await {
            memory.tests.remove(&key); // not recorded: try again next round
            return;
        }
        let me = self.clone();
        let channels = policy.alerts.channels.clone();
        let reference = pol.object_ref(&());
        let tx = tx.clone();
        tokio::spawn(async move {
            let m = Message {
                name: AlertName::TestAlert,
                state: State::Firing,
                items: vec![Item {
                    object: Object::Policy,
                    namespace: ns.clone(),
                    name: name.clone(),
                    policy: name.clone(),
                    chain: String::new(),
                    fingerprint: decide::fingerprint(
                        &ns,
                        "MonitorPolicy",
                        &name,
                        AlertName::TestAlert,
                        &test.token,
                    ),
                    alert: Firing::new(
                        AlertName::TestAlert,
                        format!(
                            "Test notification asked for with {TEST_ANNOTATION}={}",
                            test.token
                        ),
                    ),
                    since: Timestamp::now(),
                    did: String::new(),
                    told_at: test.sent_at.as_ref().map_or_else(Timestamp::now, |t| t.0),
                }],
                test: true,
            };
            audit(&m, false);
            let sends = channels.iter().map(|ch| {
                let key = (ns.clone(), name.clone(), ch.name.clone());
                let (me, m) = (me.clone(), m.clone());
                async move { (ch, me.delivery.send_now(&key, ch, m).await) }
            });
            let mut results = Vec::new();
            for (ch, r) in futures::future::join_all(sends).await {
                let (reason, text) = match &r {
                    Ok(()) => (
                        "TestAlertDelivered",
                        format!(
                            "Test notification delivered to {} ({})",
                            ch.name,
                            channel_type(ch)
                        ),
                    ),
                    Err(e) => (
                        "TestAlertFailed",
                        format!(
                            "Test notification to {} ({}) failed: {e}",
                            ch.name,
                            channel_type(ch)
                        ),
                    ),
                };
                me.notices.publish(
                    Notice::new(reference.clone(), What::AlertSent, reason, text)
                        .warning(r.is_err())
                        .action("Alert"),
                );
                results.push(AlertTestResult {
                    channel: ch.name.clone(),
                    delivered: r.is_ok(),
                    error: r.err().map(|e| e.to_string()).unwrap_or_default(),
                });
            }
            let _ = tx.send(((ns, name), AlertTest { results, ..test })).await;
        });
    }
}

impl Memory {
    fn note(&mut self, n: &Notice) {
        let Some(f) = catalog::event(n) else { return };
        let Some(object) = n.object.kind.as_deref().and_then(object_of) else {
            return;
        };
        let key = (
            object,
            n.object.namespace.clone().unwrap_or_default(),
            n.object.name.clone().unwrap_or_default(),
        );
        self.pending.entry(key).or_default().push(f);
    }
}

/// `AlertDeliveryFailing` from the channels' health.
pub fn delivery_condition(health: &[ChannelHealth]) -> Desired {
    let failing: Vec<String> = health
        .iter()
        .filter(|h| h.permanent || h.consecutive_failures >= FAILING_AFTER)
        .map(|h| {
            format!(
                "{}: {} ({} failure(s) in a row{})",
                h.channel,
                h.last_error,
                h.consecutive_failures,
                if h.permanent {
                    ", refused for good"
                } else {
                    ""
                }
            )
        })
        .collect();
    if failing.is_empty() {
        Desired::new(
            kind::ALERT_DELIVERY_FAILING,
            Status::False,
            "Delivering",
            "Every alert channel delivers",
        )
    } else {
        Desired::new(
            kind::ALERT_DELIVERY_FAILING,
            Status::True,
            "ChannelFailing",
            failing.join("; "),
        )
    }
}

fn written(ns: &str, name: &str, r: Result<(), WriteError>) -> bool {
    match r {
        Ok(()) => true,
        Err(WriteError::Conflict) => {
            tracing::debug!(namespace = %ns, name = %name, "alert records changed since read; deciding again next round");
            false
        }
        Err(WriteError::NotFound) => false,
        Err(e) => {
            tracing::warn!(namespace = %ns, name = %name, error = %e, "writing alert records failed");
            false
        }
    }
}

/// The audit log's line for a notification (the log gets every alert).
fn audit(m: &Message, repeat: bool) {
    let objects: Vec<String> = m
        .items
        .iter()
        .map(|i| format!("{}/{}/{}", i.object.kind(), i.namespace, i.name))
        .collect();
    let fingerprints: Vec<&str> = m.items.iter().map(|i| i.fingerprint.as_str()).collect();
    tracing::info!(
        target: "vigil::audit",
        alert = catalog::name_str(m.name),
        state = match m.state { State::Firing => "firing", State::Resolved => "resolved" },
        severity = message::severity_str(m.severity()),
        repeat,
        test = m.test,
        objects = %objects.join(","),
        fingerprints = %fingerprints.join(","),
        "{}",
        m.title()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(channel: &str, failures: u32, permanent: bool) -> ChannelHealth {
        ChannelHealth {
            channel: channel.into(),
            last_error: "Slack answered 503".into(),
            consecutive_failures: failures,
            permanent,
            ..Default::default()
        }
    }

    #[test]
    fn delivery_fails_after_failures_in_a_row_or_a_refusal_for_good() {
        let cases = [
            (vec![], Status::False),
            (vec![health("a", 2, false)], Status::False),
            (vec![health("a", 3, false)], Status::True),
            (
                vec![health("a", 0, false), health("b", 1, true)],
                Status::True,
            ),
        ];
        for (h, want) in cases {
            let d = delivery_condition(&h);
            assert_eq!(d.status, want, "{h:?}");
            if want == Status::True {
                assert!(d.message.contains("Slack answered 503"), "{}", d.message);
            }
        }
    }

    #[test]
    fn what_vigil_did() {
        let mut v = MonitoredValidator::new(
            "v",
            serde_yaml::from_str("{chain: tcp, endpoints: {tcp: 'h:1'}, policyRef: {name: p}}")
                .unwrap(),
        );
        assert_eq!(did_of(&v), "");
        v.status = Some(crate::api::MonitoredValidatorStatus {
            remediation: Some(crate::api::RemediationStatus {
                last_action: Some("restart".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(did_of(&v), "last action: restart");
    }
}
