//! The monitor: keeps every watched validator's probing, judging, healing and status in
//! one place while this process leads. It is the only writer of MonitoredValidator status
//! (through [`crate::status::StatusWriter`]), and tells of what it sees on the notice
//! stream. Each concern has its own file:
//!
//! - `config`: what a validator is probed, judged and healed with (built once per spec);
//! - `schedule`: when each validator is probed, and waiting for work in flight on stop;
//! - `evaluate`: one probe, its verdict, and publishing it (status, notices);
//! - `incident`: fleet incidents (chain halt, mass stall) on the policy;
//! - `heal`: the healing step (the plan is pure, in [`crate::remediate::plan`]).
//!
//! Entries are keyed by namespace and name, and belong to one object (its UID): a
//! validator deleted and re-created under the same name is a new object with a fresh
//! status. Memory holds only what can be rebuilt from the API: the status is read back
//! from the object after a restart.

mod config;
mod duty;
mod evaluate;
mod fair;
mod heal;
mod incident;
mod schedule;

pub use config::{Config, Duty, Heal};
pub use duty::{ProbeDuty, read_once as read_duty};
pub use evaluate::outcome_of;
pub use incident::{IncidentState, incident_record};

use crate::api::{Chain, MonitoredValidator, MonitoredValidatorStatus};
use crate::conditions::{self, Desired, Status, kind, reason};
use crate::fleet::Fleet;
use crate::health::{FleetView, Memory};
use crate::metrics::Metrics;
use crate::notice::{self, Notice, Notices, What};
use crate::probe::Prober;
use crate::remediate::Deps;
use crate::status::StatusWriter;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use schedule::Tracker;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// A validator, by namespace and name.
pub type Key = (String, String);

/// A fleet: namespace, policy, chain.
type FleetKey = (String, String, Chain);

/// Annotation with which a person asks for a restart now, once per distinct value.
pub const RESTART_ANNOTATION: &str = "vigil.dev/restart";
/// Annotation with which a person acknowledges and clears an escalation, once per value.
pub const ACK_ANNOTATION: &str = "vigil.dev/ack";

struct Entry {
    /// Not probed: the validator's policy is missing or invalid.
    blocked: bool,
    config: Arc<Config>,
    /// The object (its UID included) Events and notices are about.
    reference: ObjectReference,
    /// The resourceVersion of the object as last written or read: the fence of the next
    /// status write.
    resource_version: Option<String>,
    next_due: Instant,
    running: bool,
    memory: Memory,
    /// The status as last written (or as found when the entry was created).
    status: MonitoredValidatorStatus,
    /// When the status was last written (or the entry made: the object's status is as
    /// good as written then), for spreading facts refreshes.
    last_write: Instant,
    /// Bumped on every change of `status` in the cache.
    version: u64,
    /// The `version` the API server last accepted; a difference is a write still due.
    written: u64,
    /// Serializes this validator's status writes, so that an older one never lands last.
    write_lock: Arc<tokio::sync::Mutex<()>>,
    /// This process is acting on the validator right now (decided, not finished).
    acting: bool,
    /// The `vigil.dev/restart` annotation as last seen.
    restart_token: Option<String>,
    /// The `vigil.dev/ack` annotation as last seen.
    ack_token: Option<String>,
    /// Applied advice for healing: its token, and whether it escalates (else restarts).
    advice: Option<(String, bool)>,
    /// A hash of the status this process last wrote (to tell a conflict caused by another
    /// field manager's fields from one caused by a change of the monitor's own).
    written_hash: Option<u64>,
    /// What duty tracking remembers of the validator.
    duty: duty::DutyMemory,
}

/// The part of a validator's status the monitor writes: alert records belong to the
/// alerter and advice to the advisor (their own field managers), so the monitor neither
/// takes them over nor removes them.
/// A hash of a status as the monitor owns it.
fn status_hash(s: &MonitoredValidatorStatus) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(s).unwrap_or_default().hash(&mut h);
    h.finish()
}

fn own_status(mv: &MonitoredValidator) -> MonitoredValidatorStatus {
    let mut s = mv.status.clone().unwrap_or_default();
    s.alerts.clear();
    s.advice = None;
    s.advice_history.clear();
    s
}

impl Entry {
    fn new(mv: &MonitoredValidator, config: Arc<Config>, blocked: bool) -> Entry {
        Entry {
            blocked,
            config,
            reference: mv.object_ref(&()),
            resource_version: mv.resource_version(),
            next_due: Instant::now(),
            running: false,
            memory: Memory::default(),
            status: own_status(mv),
            last_write: Instant::now(),
            version: 0,
            written: 0,
            write_lock: Arc::default(),
            acting: false,
            restart_token: None,
            ack_token: None,
            advice: None,
            written_hash: None,
            duty: duty::DutyMemory::default(),
        }
    }

    fn uid(&self) -> Option<&str> {
        self.reference.uid.as_deref()
    }
}

#[derive(Default)]
struct State {
    entries: HashMap<Key, Entry>,
    heap: BinaryHeap<Reverse<(Instant, Key)>>,
    fleets: HashMap<FleetKey, Fleet>,
    /// What this process knows of each fleet's incident.
    incidents: HashMap<FleetKey, IncidentState>,
    /// Policies whose storm guard is on (shown as `StormActive` on the policy).
    storms: HashMap<(String, String), bool>,
    /// Each fleet's view as last computed, and when. Counting a fleet's fresh and stalled
    /// members walks all of them: per probe that is quadratic in the fleet's size (a third
    /// of the CPU at 10,000 validators), so probes share a view for up to [`VIEW_REUSE`].
    views: HashMap<FleetKey, (Instant, FleetView)>,
}

impl State {
    /// Takes a validator out of its fleet, and drops the fleet's state with its last
    /// member.
    fn leave_fleet(&mut self, key: &Key, config: &Config) {
        let fk = fleet_key(&key.0, config);
        if let Some(f) = self.fleets.get_mut(&fk) {
            f.leave(&key.1);
            if f.is_empty() {
                self.fleets.remove(&fk);
                self.incidents.remove(&fk);
                self.views.remove(&fk);
            }
        }
        let policy = (key.0.clone(), config.policy.clone());
        let members = self
            .fleets
            .keys()
            .any(|(ns, p, _)| (ns, p) == (&policy.0, &policy.1));
        if !members {
            self.storms.remove(&policy);
        }
    }

    /// Removes an entry and everything that only it kept alive.
    fn remove(&mut self, key: &Key) -> Option<Entry> {
        let e = self.entries.remove(key)?;
        if !e.blocked {
            let config = e.config.clone();
            self.leave_fleet(key, &config);
        }
        Some(e)
    }
}

/// Longest a fleet view is shared (and at most a tenth of the probe interval).
const VIEW_REUSE: Duration = Duration::from_secs(1);

/// The probing engine; one per process, running while the process leads.
pub struct Monitor {
    writer: StatusWriter,
    notices: Notices,
    /// The clients of remediation actions.
    deps: Deps,
    metrics: Metrics,
    prober: Prober,
    state: Mutex<State>,
    wake: Notify,
    /// Probe slots, shared fairly between namespaces.
    permits: Arc<fair::FairSlots>,
    facts_refresh: Duration,
    /// The start of the monitor: facts refreshes are scheduled in periods counted from it.
    epoch: Instant,
    validators: Store<DeserializeGuard<MonitoredValidator>>,
    /// Decide and record, never act.
    dry_run: bool,
    /// True while this process holds the leader lease; checked right before every action.
    leader: watch::Receiver<bool>,
    /// Probes and actions in flight (a stop waits for them).
    tasks: Tracker,
    /// The block followers of duty RPCs, shared by the validators read through each.
    duty: Arc<crate::duty::feed::Hub>,
}

/// Tuning of the monitor.
#[derive(Clone, Debug)]
pub struct MonitorOptions {
    /// Most probes in flight at once.
    pub concurrency: usize,
    /// Refresh facts in status at most this often without a change (0: only with a change).
    pub facts_refresh: Duration,
    /// Decide and record remediations, never perform them (`--dry-run`).
    pub dry_run: bool,
}

/// What the monitor works with.
pub struct Parts {
    /// Client of the API server (status, Secrets, policies; transient errors retried).
    pub client: Client,
    /// The status writer (shared with the other writers, and its bound on calls in flight).
    pub writer: StatusWriter,
    /// Client of remediation actions (no automatic retries: a refusal is an answer).
    pub actions: Client,
    /// Process metrics.
    pub metrics: Metrics,
    /// The notice stream.
    pub notices: Notices,
    /// The validator cache.
    pub validators: Store<DeserializeGuard<MonitoredValidator>>,
    /// The leadership flag.
    pub leader: watch::Receiver<bool>,
}

fn fleet_key(ns: &str, c: &Config) -> FleetKey {
    (ns.to_string(), c.policy.clone(), c.chain)
}

impl Monitor {
    /// A monitor with at most `options.concurrency` probes in flight.
    pub fn new(parts: Parts, options: MonitorOptions) -> Arc<Self> {
        let http = crate::remediate::webhook_client();
        Arc::new(Monitor {
            writer: parts.writer,
            notices: parts.notices,
            deps: Deps {
                kube: parts.actions,
                secrets: parts.client,
                http,
            },
            metrics: parts.metrics,
            prober: Prober::new(),
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            permits: fair::FairSlots::new(options.concurrency),
            facts_refresh: options.facts_refresh,
            epoch: Instant::now(),
            validators: parts.validators,
            dry_run: options.dry_run,
            leader: parts.leader,
            tasks: Tracker::default(),
            duty: Arc::new(crate::duty::feed::Hub::default()),
        })
    }

    /// Starts (or updates) probing of a validator. Called by the validator controller on every
    /// reconcile of a validator whose policy is valid.
    pub async fn watch(self: &Arc<Self>, mv: &MonitoredValidator, config: Config) {
        let key = (mv.namespace().unwrap_or_default(), mv.name_any());
        let config = Arc::new(config);
        let annotation = |k: &str| mv.annotations().get(k).cloned();
        let (restart, ack) = (annotation(RESTART_ANNOTATION), annotation(ACK_ANNOTATION));
        let mut tokens_changed = false;
        let write = {
            let mut st = self.state.lock().expect("monitor state");
            let now = Instant::now();
            let fk = fleet_key(&key.0, &config);
            // A new object under an old name starts from scratch; a blocked entry (policy
            // was missing) starts over, keeping what is on display.
            let restart_entry = match st.entries.get(&key) {
                Some(e) if e.uid() != mv.uid().as_deref() => Some(false),
                Some(e) if e.blocked => Some(true),
                _ => None,
            };
            let kept_status = restart_entry.and_then(|keep| {
                let old = st.remove(&key)?;
                keep.then_some(old.status)
            });
            let State {
                entries,
                heap,
                fleets,
                ..
            } = &mut *st;
            if let Some(e) = entries.get_mut(&key) {
                tokens_changed = e.restart_token != restart || e.ack_token != ack;
                e.restart_token = restart.clone();
                e.ack_token = ack.clone();
                // The object shows what this process wrote last: it is as new as our
                // view, so its resourceVersion is the right fence.
                if mv.status.as_ref() == Some(&e.status) && e.written == e.version {
                    e.resource_version = mv.resource_version();
                }
            }
            match entries.get_mut(&key) {
                Some(e) if *e.config == *config => false,
                Some(e) => {
                    let old = fleet_key(&key.0, &e.config);
                    if old != fk {
                        if let Some(f) = fleets.get_mut(&old) {
                            f.leave(&key.1);
                        }
                        fleets.entry(fk).or_default().join(&key.1);
                    }
                    if e.config.interval != config.interval {
                        e.next_due = now + schedule::phase(&key, config.interval);
                        heap.push(Reverse((e.next_due, key.clone())));
                    }
                    let generation_changed = e.config.generation != config.generation;
                    e.config = config.clone();
                    generation_changed
                }
                None => {
                    fleets.entry(fk).or_default().join(&key.1);
                    let mut e = Entry::new(mv, config.clone(), false);
                    e.next_due = now + schedule::phase(&key, config.interval);
                    heap.push(Reverse((e.next_due, key.clone())));
                    if let Some(s) = kept_status {
                        e.status = s;
                    }
                    e.restart_token = restart.clone();
                    e.ack_token = ack.clone();
                    entries.insert(key.clone(), e);
                    tokens_changed = restart.is_some() || ack.is_some();
                    true
                }
            }
        };
        self.wake.notify_one();
        if write {
            // New or changed spec: show the generation at once, and "waiting for the first
            // probe" unless a probe verdict is already on display.
            let pending = Desired::new(
                kind::READY,
                Status::Unknown,
                reason::PENDING,
                format!(
                    "Governed by MonitorPolicy {:?}; waiting for the first probe",
                    config.policy
                ),
            );
            self.publish(&key, evaluate::Update::Ready(pending)).await;
        }
        if tokens_changed {
            // A person asked for something: answer now, not at the next probe.
            let (me, key) = (self.clone(), key.clone());
            self.tasks.spawn(async move { me.heal(&key).await });
        }
    }

    /// Stops probing a validator and shows why (its policy is missing or invalid, or its
    /// own spec cannot be probed).
    pub async fn block(self: &Arc<Self>, mv: &MonitoredValidator, ready: Desired) {
        let key = (mv.namespace().unwrap_or_default(), mv.name_any());
        {
            let mut st = self.state.lock().expect("monitor state");
            let same_object = st
                .entries
                .get(&key)
                .is_some_and(|e| e.uid() == mv.uid().as_deref());
            let old = st.remove(&key);
            let config = Arc::new(Config::blocked(mv.meta().generation));
            let mut e = Entry::new(mv, config, true);
            if let Some(old) = old.filter(|_| same_object) {
                e.status = old.status;
                e.resource_version = old.resource_version;
            }
            st.entries.insert(key.clone(), e);
        }
        self.publish(&key, evaluate::Update::Ready(ready)).await;
    }

    /// Applied advice asks healing for a restart (through every guard) or an escalation;
    /// the plan handles each token once (recorded in status).
    pub fn advised(self: &Arc<Self>, key: &Key, token: String, escalate: bool) {
        self.with_entry(key, |e| e.advice = Some((token, escalate)));
        let (me, key) = (self.clone(), key.clone());
        self.tasks.spawn(async move { me.heal(&key).await });
    }

    /// Forgets a validator (deleted).
    pub fn forget(&self, key: &Key) {
        self.state.lock().expect("monitor state").remove(key);
    }

    /// Forgets every validator that left the cache (deleted, probed or not) or was
    /// replaced by a new object of the same name. Run periodically.
    pub fn sweep(&self) {
        let mut st = self.state.lock().expect("monitor state");
        let gone: Vec<Key> = st
            .entries
            .iter()
            .filter(|(key, e)| {
                let r =
                    ObjectRef::<DeserializeGuard<MonitoredValidator>>::new(&key.1).within(&key.0);
                match self.validators.get(&r) {
                    None => true,
                    Some(obj) => obj.uid().as_deref() != e.uid(),
                }
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            st.remove(&key);
        }
    }

    /// Requests sent to duty endpoints so far (for the metrics counter).
    pub fn duty_requests(&self) -> u64 {
        self.duty
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Probes and actions in flight or waiting (for the metrics gauge).
    pub fn tasks(&self) -> usize {
        self.tasks.running()
    }

    /// Counts of watched validators by published Ready status (for the metrics gauge).
    pub fn ready_counts(&self) -> (u64, u64, u64) {
        let st = self.state.lock().expect("monitor state");
        let (mut t, mut f, mut u) = (0, 0, 0);
        for e in st.entries.values() {
            match conditions::status_of(&e.status.conditions, kind::READY) {
                Some(Status::True) => t += 1,
                Some(Status::False) => f += 1,
                _ => u += 1,
            }
        }
        (t, f, u)
    }

    /// Runs `f` on a validator's entry, if it is still known.
    fn with_entry(&self, key: &Key, f: impl FnOnce(&mut Entry)) {
        if let Some(e) = self
            .state
            .lock()
            .expect("monitor state")
            .entries
            .get_mut(key)
        {
            f(e);
        }
    }

    /// Tells the notice stream.
    fn tell(&self, notice: Notice) {
        self.notices.publish(notice);
    }

    /// The notices of condition transitions on `reference`.
    fn tell_transitions(
        &self,
        reference: &ObjectReference,
        transitions: Vec<Desired>,
        action: &'static str,
    ) {
        if transitions.is_empty() {
            return;
        }
        let mut n = Notice::new(reference.clone(), What::Conditions, "", "").action(action);
        n.changes = transitions
            .into_iter()
            .map(|d| notice::Change {
                type_: d.type_.to_string(),
                status: d.status.as_str().to_string(),
                reason: d.reason.to_string(),
                message: d.message,
            })
            .collect();
        self.tell(n);
    }
}
