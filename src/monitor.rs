//! The monitor: probes every watched validator on its policy's interval, judges each result
//! (`health`), keeps the fleet view (`fleet`), and writes what users see (status conditions
//! and Events). It is the only writer of MonitoredValidator status.
//!
//! Scheduling: each validator has a fixed phase inside its interval (a hash of its name, so
//! load spreads evenly and stays put across restarts). The next due time is the previous due
//! time plus the interval, so slow probes never make the schedule drift; a probe still running
//! when its next turn comes is skipped (counted), never stacked. At most `concurrency` probes
//! run at once.
//!
//! Status writes: only when a condition, the observed generation or the published facts change.
//! Block heights alone do not count (a steady healthy fleet causes no writes); they are
//! refreshed with every write, and at most every `facts_refresh` when that is non-zero.

mod heal;

use crate::api::{
    Chain, ChainFacts, FleetIncident, MonitorPolicy, MonitorPolicySpec, MonitoredValidator,
    MonitoredValidatorStatus, ProbeRecord, RemediationAction, Target,
};
use crate::conditions::{self, Change, Desired};
use crate::fleet::Fleet;
use crate::health::{self, Check, FleetView, Incident, Limits, Memory, Outcome, Sample, Status};
use crate::metrics::Metrics;
use crate::probe::{ProbeError, ProbeKind, ProbeOptions, ProbeTarget, Prober};
use crate::remediate::guard::Rules;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

/// Field manager of the status the monitor writes.
const FIELD_MANAGER: &str = "vigil";
/// Field manager of the policy's fleet incident (the policy controller owns the rest).
const FLEET_MANAGER: &str = "vigil-fleet";

/// A validator, by namespace and name.
pub type Key = (String, String);

/// Annotation with which a person asks for a restart now, once per distinct value.
pub const RESTART_ANNOTATION: &str = "vigil.dev/restart";
/// Annotation with which a person acknowledges and clears an escalation, once per value.
pub const ACK_ANNOTATION: &str = "vigil.dev/ack";

/// A condition that changed status: (type, status, reason, message), for its Event.
type Transition = (String, String, String, String);

/// Sets a condition, collecting the transition for its Event. Every change of status is an
/// Event; a detail condition appearing healthy is not news (five Events per new validator).
fn set_condition(
    s: &mut MonitoredValidatorStatus,
    d: Desired<'_>,
    generation: Option<i64>,
    now: &Time,
    transitions: &mut Vec<Transition>,
) {
    let (t, st, r, m) = (
        d.type_.to_string(),
        d.status,
        d.reason.to_string(),
        d.message.clone(),
    );
    if let Change::Transitioned { from } = conditions::set(&mut s.conditions, d, generation, now)
        && (from.is_some() || t == "Ready" || st != "True")
    {
        transitions.push((t, st.to_string(), r, m));
    }
}

/// How one validator is probed and judged; rebuilt from the spec and its policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Chain.
    pub chain: Chain,
    /// Where and what to ask.
    pub target: ProbeTarget,
    /// Probe timeout and body cap.
    pub options: ProbeOptions,
    /// Health thresholds.
    pub limits: Limits,
    /// Probe interval.
    pub interval: Duration,
    /// Policy name (fleet membership).
    pub policy: String,
    /// Generation of the validator this config was built from.
    pub generation: Option<i64>,
    /// How the validator is healed.
    pub heal: Heal,
}

/// How a validator is healed; rebuilt from its spec and its policy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Heal {
    /// The policy's remediation rules.
    pub rules: Rules,
    /// What to act on.
    pub target: Option<Target>,
    /// The validator's `spec.suspend`.
    pub suspended: bool,
    /// The `ssh` action's command: name, argv (with placeholders) and timeout.
    pub ssh_command: Option<(String, Vec<String>, Duration)>,
}

impl Heal {
    /// Builds the healing config from a validator's spec and its policy.
    pub fn new(mv: &MonitoredValidator, policy: &MonitorPolicySpec) -> Result<Heal, String> {
        let d = |what: &str, v: &crate::api::Dur| v.parse().map_err(|e| format!("{what}: {e}"));
        let r = &policy.remediation;
        let percent = r
            .max_unhealthy
            .trim_end_matches('%')
            .parse::<u32>()
            .map_err(|_| {
                format!(
                    "remediation.maxUnhealthy {:?} is not a percentage",
                    r.max_unhealthy
                )
            })?;
        let ssh_command = match (&r.ssh_command, r.action) {
            (Some(name), _) => match r.ssh_commands.get(name) {
                Some(c) => Some((
                    name.clone(),
                    c.argv.clone(),
                    d("remediation.sshCommands.timeout", &c.timeout)?,
                )),
                None => {
                    return Err(format!(
                        "remediation.sshCommand {name:?} is not in remediation.sshCommands"
                    ));
                }
            },
            (None, RemediationAction::Ssh) => {
                return Err("remediation.action ssh needs remediation.sshCommand".into());
            }
            (None, _) => None,
        };
        Ok(Heal {
            rules: Rules {
                enabled: r.enabled,
                action: r.action,
                max_attempts: r.max_attempts,
                window: d("remediation.window", &r.window)?,
                cooldown: d("remediation.cooldown", &r.cooldown)?,
                max_cooldown: d("remediation.maxCooldown", &r.max_cooldown)?,
                healthy_reset_after: d("remediation.healthyResetAfter", &r.healthy_reset_after)?,
                max_concurrent: r.max_concurrent,
                max_unhealthy_percent: percent,
                escalate_after: r.escalate_after,
                policy_suspended: policy.suspend,
            },
            target: mv.spec.target.clone(),
            suspended: mv.spec.suspend,
            ssh_command,
        })
    }
}

impl Config {
    /// Builds the config of a validator under a (valid) policy.
    pub fn new(mv: &MonitoredValidator, policy: &MonitorPolicySpec) -> Result<Config, String> {
        let d = |what: &str, v: &crate::api::Dur| v.parse().map_err(|e| format!("{what}: {e}"));
        let interval = d("probe.interval", &policy.probe.interval)?;
        let timeout = d("probe.timeout", &policy.probe.timeout)?;
        let max_probe_latency = match &policy.health.max_probe_latency {
            Some(l) => Some(d("health.maxProbeLatency", l)?),
            None => None,
        };
        let e = &mv.spec.endpoints;
        let http = mv.spec.http.clone().unwrap_or_default();
        let mut expect_json = Vec::new();
        for f in &http.json_fields {
            let v = serde_json::from_str(&f.equals)
                .map_err(|e| format!("http.jsonFields {:?}: equals is not JSON: {e}", f.path))?;
            expect_json.push((f.path.clone(), v));
        }
        Ok(Config {
            chain: mv.spec.chain,
            target: ProbeTarget {
                kind: match mv.spec.chain {
                    Chain::Substrate => ProbeKind::Substrate,
                    Chain::Ethereum => ProbeKind::Ethereum,
                    Chain::Cosmos => ProbeKind::Cosmos,
                    Chain::Http => ProbeKind::Http,
                    Chain::Tcp => ProbeKind::Tcp,
                },
                rpc: e.rpc.as_ref().map(|u| u.0.clone()),
                metrics: e.metrics.as_ref().map(|u| u.0.clone()),
                health: e.health.as_ref().map(|u| u.0.clone()),
                tcp: e.tcp.clone(),
                expect_status: http.expected_status,
                expect_json,
                metrics_prefix: mv.spec.metrics_prefix.clone(),
            },
            options: ProbeOptions {
                timeout,
                max_response_bytes: policy.probe.max_response_bytes,
            },
            limits: Limits {
                min_peers: policy.health.min_peers,
                max_block_stall: d("health.maxBlockStall", &policy.health.max_block_stall)?,
                max_finality_lag: policy.health.max_finality_lag,
                max_blocks_behind: policy.health.max_blocks_behind,
                max_probe_latency,
                failure_threshold: policy.probe.failure_threshold,
                success_threshold: policy.probe.success_threshold,
            },
            interval,
            policy: mv.spec.policy_ref.name.clone(),
            generation: mv.meta().generation,
            heal: Heal::new(mv, policy)?,
        })
    }
}

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

/// One fleet's incident as this process knows it. After a start the policy may still show an
/// incident that ended while no Vigil was watching: once the fleet has been watched for longer
/// than `maxBlockStall` (long enough to see a halt), "no incident" is written once, which
/// closes such a leftover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncidentState {
    /// The incident last recorded (or none).
    pub kind: Option<Incident>,
    /// When this process started watching the fleet.
    pub since: Timestamp,
    /// Whether the recorded state has been checked against the policy since the start.
    pub settled: bool,
}

impl IncidentState {
    /// Takes the incident seen now; true when it must be recorded on the policy.
    pub fn update(&mut self, kind: Option<Incident>, now: Timestamp, stall: Duration) -> bool {
        let watched: Duration = now
            .duration_since(self.since)
            .try_into()
            .unwrap_or(Duration::ZERO);
        let settle = !self.settled && watched > stall;
        if settle {
            self.settled = true;
        }
        let changed = kind != self.kind;
        self.kind = kind;
        changed || (settle && kind.is_none())
    }
}

struct Entry {
    /// Not probed: the validator's policy is missing or invalid.
    blocked: bool,
    config: Arc<Config>,
    reference: ObjectReference,
    next_due: Instant,
    running: bool,
    memory: Memory,
    /// The status as last written (or as found when the entry was created).
    status: MonitoredValidatorStatus,
    last_write: Option<Instant>,
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
}

#[derive(Default)]
struct State {
    entries: HashMap<Key, Entry>,
    heap: BinaryHeap<Reverse<(Instant, Key)>>,
    fleets: HashMap<(String, String, Chain), Fleet>,
    /// What this process knows of each fleet's incident.
    incidents: HashMap<(String, String, Chain), IncidentState>,
    /// Policies whose storm guard is on (shown as `StormActive` on the policy).
    storms: HashMap<(String, String), bool>,
    /// Each fleet's view as last computed, and when. Counting a fleet's fresh and stalled
    /// members walks all of them: per probe that is quadratic in the fleet's size (a third
    /// of the CPU at 10,000 validators), so probes share a view for up to [`VIEW_REUSE`].
    views: HashMap<(String, String, Chain), (Instant, FleetView)>,
}

/// Longest a fleet view is shared (and at most a tenth of the probe interval).
const VIEW_REUSE: Duration = Duration::from_secs(1);

/// The probing engine; one per process, running while the process leads.
pub struct Monitor {
    client: Client,
    /// The client of remediation actions (no automatic retries: a refusal is an answer).
    actions: Client,
    recorder: Recorder,
    metrics: Metrics,
    prober: Prober,
    state: Mutex<State>,
    wake: Notify,
    permits: Arc<Semaphore>,
    facts_refresh: Duration,
    validators: Store<DeserializeGuard<MonitoredValidator>>,
    /// Decide and record, never act.
    dry_run: bool,
    /// HTTP client of the webhook action.
    http: reqwest::Client,
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

fn phase(key: &Key, interval: Duration) -> Duration {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    let ms = interval.as_millis().max(1) as u64;
    Duration::from_millis(h.finish() % ms)
}

fn fleet_key(ns: &str, c: &Config) -> (String, String, Chain) {
    (ns.to_string(), c.policy.clone(), c.chain)
}

impl Monitor {
    /// A monitor with at most `options.concurrency` probes in flight.
    pub fn new(
        client: Client,
        actions: Client,
        recorder: Recorder,
        metrics: Metrics,
        options: MonitorOptions,
        validators: Store<DeserializeGuard<MonitoredValidator>>,
    ) -> Arc<Self> {
        Arc::new(Monitor {
            client,
            actions,
            recorder,
            metrics,
            prober: Prober::new(),
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            permits: Arc::new(Semaphore::new(options.concurrency.max(1))),
            facts_refresh: options.facts_refresh,
            validators,
            dry_run: options.dry_run,
            http: reqwest::Client::builder()
                .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default(),
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
            let State {
                entries,
                heap,
                fleets,
                ..
            } = &mut *st;
            // A blocked entry (policy was missing) starts over, keeping what is on display.
            let kept_status = match entries.get(&key) {
                Some(e) if e.blocked => entries.remove(&key).map(|e| e.status),
                _ => None,
            };
            if let Some(e) = entries.get_mut(&key) {
                tokens_changed = e.restart_token != restart || e.ack_token != ack;
                e.restart_token = restart.clone();
                e.ack_token = ack.clone();
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
                        e.next_due = now + phase(&key, config.interval);
                        heap.push(Reverse((e.next_due, key.clone())));
                    }
                    let generation_changed = e.config.generation != config.generation;
                    e.config = config.clone();
                    generation_changed
                }
                None => {
                    fleets.entry(fk).or_default().join(&key.1);
                    let next_due = now + phase(&key, config.interval);
                    heap.push(Reverse((next_due, key.clone())));
                    entries.insert(
                        key.clone(),
                        Entry {
                            blocked: false,
                            config: config.clone(),
                            reference: mv.object_ref(&()),
                            next_due,
                            running: false,
                            memory: Memory::default(),
                            status: kept_status
                                .unwrap_or_else(|| mv.status.clone().unwrap_or_default()),
                            last_write: None,
                            version: 0,
                            written: 0,
                            write_lock: Arc::default(),
                            acting: false,
                            restart_token: restart.clone(),
                            ack_token: ack.clone(),
                        },
                    );
                    tokens_changed = restart.is_some() || ack.is_some();
                    true
                }
            }
        };
        self.wake.notify_one();
        if write {
            // New or changed spec: show the generation at once, and "waiting for the first
            // probe" unless a probe verdict is already on display.
            let pending = Desired {
                type_: "Ready",
                status: "Unknown",
                reason: "Pending",
                message: format!(
                    "Governed by MonitorPolicy {:?}; waiting for the first probe",
                    config.policy
                ),
            };
            self.publish(&key, None, Some(pending), None).await;
        }
        if tokens_changed {
            // A person asked for something: answer now, not at the next probe.
            let (me, key) = (self.clone(), key.clone());
            tokio::spawn(async move { me.heal(&key).await });
        }
    }

    /// Stops probing a validator and shows why (its policy is missing or invalid).
    pub async fn block(self: &Arc<Self>, mv: &MonitoredValidator, ready: Desired<'static>) {
        let key = (mv.namespace().unwrap_or_default(), mv.name_any());
        {
            let mut st = self.state.lock().expect("monitor state");
            let State {
                entries, fleets, ..
            } = &mut *st;
            if let Some(e) = entries.get(&key)
                && let Some(f) = fleets.get_mut(&fleet_key(&key.0, &e.config))
            {
                f.leave(&key.1);
            }
            let status = match entries.get(&key) {
                Some(e) => e.status.clone(),
                None => mv.status.clone().unwrap_or_default(),
            };
            entries.insert(
                key.clone(),
                Entry {
                    blocked: true,
                    config: Arc::new(Config {
                        generation: mv.meta().generation,
                        ..placeholder_config()
                    }),
                    reference: mv.object_ref(&()),
                    next_due: Instant::now(),
                    running: false,
                    memory: Memory::default(),
                    status,
                    last_write: None,
                    version: 0,
                    written: 0,
                    write_lock: Arc::default(),
                    acting: false,
                    restart_token: None,
                    ack_token: None,
                },
            );
        }
        self.publish(&key, None, Some(ready), None).await;
    }

    /// Forgets a validator (deleted).
    pub fn forget(&self, key: &Key) {
        let mut st = self.state.lock().expect("monitor state");
        if let Some(e) = st.entries.remove(key) {
            let fk = fleet_key(&key.0, &e.config);
            if let Some(f) = st.fleets.get_mut(&fk) {
                f.leave(&key.1);
            }
        }
    }

    /// Runs the schedule until `stop` resolves.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let next = {
                let st = self.state.lock().expect("monitor state");
                st.heap.peek().map(|Reverse((due, _))| *due)
            };
            let sleep = async {
                match next {
                    Some(due) => tokio::time::sleep_until(due).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut stop => break,
                _ = self.wake.notified() => continue,
                _ = sleep => {}
            }
            self.start_due_probes();
        }
        // Let running probes finish their writes before the process leaves.
        let _ = self
            .permits
            .acquire_many(self.permits.available_permits() as u32)
            .await;
    }

    fn start_due_probes(self: &Arc<Self>) {
        let now = Instant::now();
        let mut st = self.state.lock().expect("monitor state");
        while let Some(Reverse((due, _))) = st.heap.peek() {
            if *due > now {
                break;
            }
            let Some(Reverse((due, key))) = st.heap.pop() else {
                break;
            };
            let Some(e) = st.entries.get_mut(&key) else {
                continue;
            };
            if e.blocked || e.next_due != due {
                continue; // superseded by a rescheduling
            }
            let interval = e.config.interval;
            let mut next = due + interval;
            while next <= now {
                next += interval; // fell behind by a whole interval: skip, don't burst
            }
            e.next_due = next;
            let running = e.running;
            let config = e.config.clone();
            st.heap.push(Reverse((next, key.clone())));
            if running {
                self.metrics.probes_skipped.inc();
                continue;
            }
            if let Some(e) = st.entries.get_mut(&key) {
                e.running = true;
            }
            let me = self.clone();
            tokio::spawn(async move { me.probe_one(key, config, due).await });
        }
    }

    async fn probe_one(self: Arc<Self>, key: Key, config: Arc<Config>, due: Instant) {
        let Ok(_permit) = self.permits.clone().acquire_owned().await else {
            return;
        };
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

        let (evaluation, incident) = {
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
            let kind = view.incident(now, stall);
            let state = st.incidents.entry(fk.clone()).or_insert(IncidentState {
                kind: None,
                since: now,
                settled: false,
            });
            let incident = state
                .update(kind, now, stall)
                .then(|| (fk, kind, view.clone()));
            let Some(e) = st.entries.get_mut(&key) else {
                return;
            };
            e.running = false;
            if e.config != config {
                return; // the spec changed while probing; the next probe uses the new one
            }
            let published = conditions::get(&e.status.conditions, "Ready").and_then(|c| {
                match c.status.as_str() {
                    "True" => Some(Status::True),
                    "False" => Some(Status::False),
                    // "Pending" is not a verdict: the first confirmed result replaces it.
                    "Unknown" if c.reason != "Pending" => Some(Status::Unknown),
                    _ => None,
                }
            });
            let ev = health::evaluate(
                config.chain,
                &outcome,
                &e.memory,
                &view,
                &config.limits,
                published,
                now,
            );
            e.memory = ev.memory.clone();
            (ev, incident)
        };
        if let Some((fk, kind, view)) = incident {
            self.record_incident(&fk, kind, &view, now).await;
        }
        let facts = facts_seen.map(|mut f| {
            f.last_best_block_change = evaluation.memory.best_changed_at.map(Time);
            f
        });
        if let Some(checks) = evaluation.publish {
            self.publish(&key, Some(checks), None, Some((facts, record)))
                .await;
        } else if self.facts_refresh > Duration::ZERO {
            self.publish(&key, None, None, Some((facts, record))).await;
        }
        self.heal(&key).await;
    }

    /// Applies conditions (from a verdict, or one given condition) and facts to the cached
    /// status, writes it if anything a user sees changed, and emits one Event per transition.
    async fn publish(
        &self,
        key: &Key,
        checks: Option<Vec<Check>>,
        ready: Option<Desired<'static>>,
        seen: Option<(Option<ChainFacts>, ProbeRecord)>,
    ) {
        let now = conditions::now();
        let (transitions, reference) = {
            let mut st = self.state.lock().expect("monitor state");
            let Some(e) = st.entries.get_mut(key) else {
                return;
            };
            let previous = e.status.clone();
            let generation = e.config.generation;
            let mut s = e.status.clone();
            s.observed_generation = generation;
            let mut transitions = Vec::new();
            let mut set = |s: &mut MonitoredValidatorStatus, d: Desired<'_>| {
                set_condition(s, d, generation, &now, &mut transitions)
            };
            if let Some(checks) = &checks {
                for c in checks {
                    let d = Desired {
                        type_: c.type_,
                        status: c.status.as_str(),
                        reason: c.reason,
                        message: c.message.clone(),
                    };
                    set(&mut s, d);
                }
            }
            if let Some(d) = ready {
                // "Pending" never overrides a verdict already on display.
                let shown = conditions::get(&s.conditions, "Ready").map(|c| c.reason.as_str());
                let is_verdict = shown
                    .is_some_and(|r| !matches!(r, "Pending" | "PolicyNotFound" | "PolicyInvalid"));
                if !(d.reason == "Pending" && is_verdict) {
                    set(&mut s, d);
                }
            }
            let conditions_changed = s.conditions != previous.conditions
                || s.observed_generation != previous.observed_generation;
            let refresh_due = self.facts_refresh > Duration::ZERO
                && e.last_write
                    .is_none_or(|t| t.elapsed() >= self.facts_refresh);
            // Facts, the last probe and the counters ride along with a change (or a due
            // refresh); alone they would make every probe a write.
            if let Some((facts, record)) = seen
                && (conditions_changed || refresh_due)
            {
                if let Some(f) = facts {
                    s.facts = Some(f);
                }
                s.last_probe = Some(record);
                s.consecutive_failures = e.memory.failures;
                s.consecutive_successes = e.memory.successes;
            }
            // A write that failed before is retried with the next change or probe.
            if s == previous && e.written == e.version {
                return;
            }
            if s != previous {
                e.status = s;
                e.version += 1;
            }
            e.last_write = Some(Instant::now());
            (transitions, e.reference.clone())
        };
        self.commit(key, transitions, &reference).await;
    }

    /// Writes the cached status (the latest: writes of one validator are serialized, so an
    /// older status never lands after a newer one), then the Events of `transitions`.
    /// Returns whether the cached status is now on the server.
    async fn commit(
        &self,
        key: &Key,
        transitions: Vec<Transition>,
        reference: &ObjectReference,
    ) -> bool {
        let lock = match self.state.lock().expect("monitor state").entries.get(key) {
            Some(e) => e.write_lock.clone(),
            None => return false,
        };
        let _serial = lock.lock().await;
        let (status, version) = {
            let st = self.state.lock().expect("monitor state");
            match st.entries.get(key) {
                Some(e) if e.written == e.version => (None, e.version),
                Some(e) => (Some(e.status.clone()), e.version),
                None => return false,
            }
        };
        if let Some(status) = status
            && !self.write_status(key, &status).await
        {
            return false;
        }
        self.with_entry(key, |e| e.written = e.written.max(version));
        for ev in transition_events(transitions) {
            self.event(reference, ev).await;
        }
        true
    }

    /// One status write (server-side apply); false when it failed.
    async fn write_status(&self, key: &Key, status: &MonitoredValidatorStatus) -> bool {
        let api: Api<MonitoredValidator> = Api::namespaced(self.client.clone(), &key.0);
        let patch = serde_json::json!({
            "apiVersion": "vigil.dev/v1alpha1",
            "kind": "MonitoredValidator",
            "status": status,
        });
        match api
            .patch_status(
                &key.1,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
        {
            Ok(_) => {
                self.metrics
                    .status_writes
                    .with_label_values(&["MonitoredValidator"])
                    .inc();
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                self.forget(key);
                return false;
            }
            Err(err) => {
                tracing::warn!(namespace = %key.0, name = %key.1, error = %err, "writing validator status failed");
                return false;
            }
        }
        true
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

    /// Applies `status` fields to a policy's status as `manager` (server-side apply: each
    /// manager owns only what it sends). Returns the policy's reference for its Event, or
    /// `None` when the write failed (logged).
    async fn apply_policy_status(
        &self,
        ns: &str,
        name: &str,
        manager: &str,
        status: serde_json::Value,
    ) -> Option<ObjectReference> {
        let api: Api<MonitorPolicy> = Api::namespaced(self.client.clone(), ns);
        let patch = serde_json::json!({
            "apiVersion": "vigil.dev/v1alpha1",
            "kind": "MonitorPolicy",
            "status": status,
        });
        if let Err(e) = api
            .patch_status(
                name,
                &PatchParams::apply(manager).force(),
                &Patch::Apply(&patch),
            )
            .await
        {
            tracing::warn!(policy = %name, manager, error = %e, "writing policy status failed");
            return None;
        }
        Some(ObjectReference {
            api_version: Some("vigil.dev/v1alpha1".into()),
            kind: Some("MonitorPolicy".into()),
            name: Some(name.to_string()),
            namespace: Some(ns.to_string()),
            ..Default::default()
        })
    }

    /// Publishes an Event, logging (not failing) when that is refused.
    async fn event(&self, reference: &ObjectReference, ev: Event) {
        if let Err(e) = self.recorder.publish(&ev, reference).await {
            tracing::warn!(error = %e, "publishing event failed");
        }
    }

    /// Records the start, change or end of a fleet incident in the policy's status (its own
    /// field manager), with an Event on the policy.
    async fn record_incident(
        &self,
        fk: &(String, String, Chain),
        kind: Option<Incident>,
        view: &FleetView,
        now: Timestamp,
    ) {
        let (ns, policy, chain) = fk;
        let api: Api<MonitorPolicy> = Api::namespaced(self.client.clone(), ns);
        let current = match api.get_opt(policy).await {
            Ok(Some(p)) => p.status.and_then(|s| s.fleet_incident),
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "reading policy for fleet incident failed");
                return;
            }
        };
        let Some(incident) = incident_record(chain.as_str(), kind, current, view, now) else {
            return;
        };
        let halted = kind.is_some();
        let status = serde_json::json!({ "fleetIncident": incident });
        let Some(reference) = self
            .apply_policy_status(ns, policy, FLEET_MANAGER, status)
            .await
        else {
            return;
        };
        let ev = Event {
            type_: if halted {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: match kind {
                Some(k) => k.as_str().into(),
                None => "FleetRecovered".into(),
            },
            note: Some(incident.message),
            action: "FleetView".into(),
            secondary: None,
        };
        self.event(&reference, ev).await;
    }

    /// Counts of watched validators by published Ready status (for the metrics gauge).
    pub fn ready_counts(&self) -> (u64, u64, u64) {
        let st = self.state.lock().expect("monitor state");
        let (mut t, mut f, mut u) = (0, 0, 0);
        for e in st.entries.values() {
            match conditions::get(&e.status.conditions, "Ready").map(|c| c.status.as_str()) {
                Some("True") => t += 1,
                Some("False") => f += 1,
                _ => u += 1,
            }
        }
        (t, f, u)
    }
}

/// The policy's `fleetIncident` after a change of the fleet's incident: a new record when one
/// starts (or changes kind), the current one closed when it ends, `None` when nothing changes.
pub fn incident_record(
    chain: &str,
    kind: Option<Incident>,
    current: Option<FleetIncident>,
    view: &FleetView,
    now: Timestamp,
) -> Option<FleetIncident> {
    let at = view
        .highest
        .map(|h| format!(" (highest block #{h})"))
        .unwrap_or_default();
    match kind {
        Some(k) => {
            let (affected, message) = match k {
                Incident::ChainHalted => (
                    view.members,
                    format!(
                        "No validator of chain {chain} under this policy sees new blocks{at}: the chain halted; this is not a node fault, so no node is restarted for it"
                    ),
                ),
                Incident::MassStall => (
                    view.stalled,
                    format!(
                        "{} of {} validators of chain {chain} under this policy stopped advancing at once{at}: a common cause, not a fault of each node",
                        view.stalled, view.observed
                    ),
                ),
            };
            Some(FleetIncident {
                chain: chain.into(),
                kind: k.into(),
                since: Some(Time(now)),
                ended: None,
                affected,
                total: view.members,
                message,
            })
        }
        None => match current {
            Some(mut i) if i.ended.is_none() && i.chain == chain => {
                i.ended = Some(Time(now));
                i.message = format!("Ended: blocks advance again{at}. {}", i.message);
                Some(i)
            }
            _ => None,
        },
    }
}

/// The Events for a set of condition transitions. Transitions that would make the same
/// Event but for the condition's name (an unreachable node turns four detail conditions
/// Unknown at once) become one Event naming them all: the recorder folds Events of one
/// type and reason into a series that shows only the first note, hiding the others.
fn transition_events(transitions: Vec<Transition>) -> Vec<Event> {
    let mut groups: Vec<(Vec<String>, Event)> = Vec::new();
    for (type_, status, reason, message) in transitions {
        // For most conditions True is good; for Escalated it is the news.
        let warn = match type_.as_str() {
            "Escalated" => status == "True",
            "Remediating" => false,
            "Ready" => status == "False" || (status == "Unknown" && reason != "Pending"),
            _ => status == "False",
        };
        let ev = Event {
            type_: if warn {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason,
            note: Some(format!("{status}: {message}")),
            action: if matches!(type_.as_str(), "Escalated" | "Remediating") {
                "Remediate".into()
            } else {
                "Probe".into()
            },
            secondary: None,
        };
        let same = |g: &Event| {
            (g.type_, &g.reason, &g.note, &g.action) == (ev.type_, &ev.reason, &ev.note, &ev.action)
        };
        match groups.iter_mut().find(|(_, g)| same(g)) {
            Some((types, _)) => types.push(type_),
            None => groups.push((vec![type_], ev)),
        }
    }
    groups
        .into_iter()
        .map(|(types, mut ev)| {
            let verb = if types.len() == 1 { "is" } else { "are" };
            let rest = ev.note.take().unwrap_or_default();
            ev.note = Some(format!("{} {verb} {rest}", types.join(", ")));
            ev
        })
        .collect()
}

fn placeholder_config() -> Config {
    Config {
        chain: Chain::Tcp,
        target: ProbeTarget::new(ProbeKind::Tcp),
        options: ProbeOptions::default(),
        limits: Limits {
            min_peers: 0,
            max_block_stall: Duration::from_secs(60),
            max_finality_lag: 0,
            max_blocks_behind: 0,
            max_probe_latency: None,
            failure_threshold: 1,
            success_threshold: 1,
        },
        interval: Duration::from_secs(3600),
        policy: String::new(),
        generation: None,
        heal: Heal::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(stalled: u32) -> FleetView {
        FleetView {
            highest: Some(500),
            highest_changed_at: None,
            members: 10,
            observed: 10,
            stalled,
        }
    }

    #[test]
    fn shared_transitions_become_one_event() {
        let t =
            |ty: &str, st: &str, re: &str, msg: &str| (ty.into(), st.into(), re.into(), msg.into());
        let gone = "The node did not answer the last probe";
        let evs = transition_events(vec![
            t("Reachable", "False", "ConnectionFailed", "refused"),
            t("Ready", "False", "ConnectionFailed", "refused"),
            t("Synced", "Unknown", "NodeUnreachable", gone),
            t("BlockProduction", "Unknown", "NodeUnreachable", gone),
            t("Ready", "Unknown", "NodeUnreachable", gone),
            t("Finalizing", "Unknown", "NodeUnreachable", gone),
            t("PeersHealthy", "False", "TooFewPeers", "2 peers"),
            t("Remediating", "False", "TooFewPeers", "2 peers"),
        ]);
        let got: Vec<_> = evs
            .iter()
            .map(|e| (e.type_, e.reason.as_str(), e.note.as_deref().unwrap()))
            .collect();
        let (warn, normal) = (EventType::Warning, EventType::Normal);
        assert_eq!(
            got,
            vec![
                (
                    warn,
                    "ConnectionFailed",
                    "Reachable, Ready are False: refused"
                ),
                (
                    normal,
                    "NodeUnreachable",
                    "Synced, BlockProduction, Finalizing are Unknown: The node did not answer the last probe"
                ),
                (
                    warn,
                    "NodeUnreachable",
                    "Ready is Unknown: The node did not answer the last probe"
                ),
                (warn, "TooFewPeers", "PeersHealthy is False: 2 peers"),
                (normal, "TooFewPeers", "Remediating is False: 2 peers"),
            ]
        );
        assert_eq!(evs[4].action, "Remediate");
    }

    #[test]
    fn incidents_open_and_close() {
        let t0 = Timestamp::from_second(1_700_000_000).unwrap();
        let open = incident_record("substrate", Some(Incident::MassStall), None, &view(6), t0)
            .expect("a new incident");
        assert_eq!(
            (open.kind.as_str(), open.affected, open.total),
            ("MassStall", 6, 10)
        );
        assert!(open.message.contains("6 of 10"), "{}", open.message);
        assert!(open.ended.is_none());
        let t1 = Timestamp::from_second(1_700_000_100).unwrap();
        let closed = incident_record("substrate", None, Some(open.clone()), &view(0), t1)
            .expect("the incident ends");
        assert_eq!(closed.ended, Some(Time(t1)));
        assert_eq!(closed.since, open.since);
        assert!(closed.message.starts_with("Ended"), "{}", closed.message);
        // Nothing open (or another chain's incident): nothing to close.
        assert_eq!(
            incident_record("substrate", None, Some(closed), &view(0), t1),
            None
        );
        assert_eq!(
            incident_record("ethereum", None, Some(open), &view(0), t1),
            None
        );
        let halt = incident_record(
            "substrate",
            Some(Incident::ChainHalted),
            None,
            &view(10),
            t0,
        )
        .unwrap();
        assert!(halt.message.contains("halted"), "{}", halt.message);
    }

    #[test]
    fn a_leftover_incident_is_closed_once_the_fleet_was_watched_long_enough() {
        let t = |s: i64| Timestamp::from_second(1_700_000_000 + s).unwrap();
        let stall = Duration::from_secs(60);
        let mut st = IncidentState {
            kind: None,
            since: t(0),
            settled: false,
        };
        assert!(!st.update(None, t(10), stall), "too early to tell a halt");
        assert!(
            st.update(None, t(61), stall),
            "now \"no incident\" is known: write it once"
        );
        assert!(!st.update(None, t(70), stall));
        assert!(st.update(Some(Incident::ChainHalted), t(80), stall));
        assert!(!st.update(Some(Incident::ChainHalted), t(90), stall));
        assert!(st.update(None, t(100), stall));
        // An incident seen before settling is recorded at once, and settling does not repeat it.
        let mut st = IncidentState {
            kind: None,
            since: t(0),
            settled: false,
        };
        assert!(st.update(Some(Incident::MassStall), t(5), stall));
        assert!(!st.update(Some(Incident::MassStall), t(65), stall));
    }

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
