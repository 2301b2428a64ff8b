//! The advisor task, the thin loop around the pure [`plan`]: every [`TICK`] (while this
//! process leads) it reads each policy and its validators from the caches, asks the plan
//! what each validator needs, and answers it: from the rules, from earlier advice, from the
//! fleet incident's advice, or with a model call. A call is checked against the budget and
//! reserved in the policy status (fenced) *before* it goes out, so a restart can neither
//! reset the spend nor forget a call; it runs on its own task (never blocking probes,
//! healing or this loop) and its result is settled and recorded when it comes back.
//! Validators of one policy that turn unhealthy within [`BATCH_WINDOW`] with the same
//! symptoms share one call; a fleet incident gets one call for the whole fleet.
//!
//! Every advice is recorded in the validator's status (its own field manager, fenced by
//! resourceVersion) and then told as a notice (an Event, an audit line, the `Advice`
//! alert). Applied advice goes through healing's guards (restart, escalate) or alert
//! routing (`AdvisorAlert`).

use super::budget::{self, Usage};
use super::call::{Call, Caller, Provider};
use super::context::{self, Member as FleetMember, Subject};
use super::decision::{self, Decision, Refused};
use super::gate;
use super::plan::{self, Effect, Who};
use super::redact::Redactor;
use super::rules::Symptom;
use super::when::{self, Moment};
use super::wire::Prompt;
use crate::alert::catalog::ADVISOR_ALERT;
use crate::api::{
    AdviceOutcome, AdviceRecord, AdviceSource, AdvisorProvider, AdvisorSpend, Condition,
    MonitorPolicy, MonitoredValidator, MonitoredValidatorStatus,
};
use crate::conditions::{self, Desired, Status, kind, reason};
use crate::metrics::Metrics;
use crate::monitor::Monitor;
use crate::notice::{self, Notice, Notices, What};
use crate::policy::{Advisor, Policy};
use crate::status::{Manager, StatusWriter, WriteError};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

/// Time between two rounds.
pub const TICK: Duration = Duration::from_secs(1);
/// How long a new problem waits for others alike to share its call.
pub const BATCH_WINDOW: Duration = Duration::from_secs(2);
/// Recent notices kept per validator for the context.
const NOTICES_KEPT: usize = 5;
/// Attempts at a fenced write that must not be lost (a call's result).
const WRITE_TRIES: usize = 4;

type Key = (String, String);

/// What the advisor reads and writes through.
pub struct Adviser {
    /// Writes advice and spend.
    pub writer: StatusWriter,
    /// Reads API keys.
    pub client: Client,
    /// Policies.
    pub policies: Store<DeserializeGuard<MonitorPolicy>>,
    /// Validators.
    pub validators: Store<DeserializeGuard<MonitoredValidator>>,
    /// Provider calls.
    pub caller: Arc<Caller>,
    /// Healing, for applied advice.
    pub monitor: Arc<Monitor>,
    /// Where advice is told.
    pub notices: Notices,
    /// Metrics.
    pub metrics: Metrics,
}

/// Caches only: all of it can be lost.
#[derive(Default)]
struct Memory {
    recent: HashMap<Key, VecDeque<String>>,
    first_seen: HashMap<Key, Instant>,
    busy: HashSet<Key>,
    fleet_busy: HashSet<Key>,
}

impl Memory {
    fn note(&mut self, n: &Notice) {
        if n.object.kind.as_deref() != Some("MonitoredValidator") || n.what == What::Advice {
            return;
        }
        let key = (
            n.object.namespace.clone().unwrap_or_default(),
            n.object.name.clone().unwrap_or_default(),
        );
        let text = if n.changes.is_empty() {
            format!("{}: {}", n.reason, n.message)
        } else {
            n.changes
                .iter()
                .map(|c| format!("{}={} {}", c.type_, c.status, c.reason))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let q = self.recent.entry(key).or_default();
        q.push_back(crate::text::cap(&text, 200));
        while q.len() > NOTICES_KEPT {
            q.pop_front();
        }
    }
}

/// One validator a call answers.
#[derive(Clone, Debug)]
struct Member {
    key: Key,
    fingerprint: String,
}

/// A call on its way.
struct Job {
    policy: Key,
    /// The validators it answers (none for a fleet call).
    members: Vec<Member>,
    /// A fleet call's fingerprint.
    fleet: Option<String>,
    symptom: Symptom,
    provider: Provider,
    prompt: Prompt,
    redactor: Redactor,
    estimate: Usage,
    repaired: bool,
}

struct Done {
    job: Job,
    call: Call,
}

/// The part of a validator's status the advisor owns.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AdvicePart<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    advice: Option<&'a AdviceRecord>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    advice_history: &'a [AdviceRecord],
}

/// The part of a policy's status the advisor owns.
#[derive(Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
struct PolicyPart {
    #[serde(skip_serializing_if = "Option::is_none")]
    advisor_spend: Option<AdvisorSpend>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fleet_advice: Option<AdviceRecord>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    conditions: Vec<Condition>,
}

impl PolicyPart {
    fn of(p: &MonitorPolicy) -> PolicyPart {
        let s = p.status.clone().unwrap_or_default();
        PolicyPart {
            advisor_spend: s.advisor_spend,
            fleet_advice: s.fleet_advice,
            conditions: s
                .conditions
                .into_iter()
                .filter(|c| c.type_ == kind::BUDGET_EXHAUSTED)
                .collect(),
        }
    }

    fn spend(&self) -> AdvisorSpend {
        self.advisor_spend.clone().unwrap_or_default()
    }
}

fn refused_label(r: &Refused) -> &'static str {
    match r {
        Refused::NotJson(_) => "notJson",
        Refused::CodeFence => "codeFence",
        Refused::Schema(_) => "schema",
        Refused::Confidence => "confidence",
        Refused::NotAllowed(_) => "notAllowed",
    }
}

fn source_str(s: AdviceSource) -> &'static str {
    match s {
        AdviceSource::Rules => "rules",
        AdviceSource::Model => "model",
        AdviceSource::Reused => "reused",
        AdviceSource::Batch => "batch",
        AdviceSource::Fleet => "fleet",
    }
}

/// The message of an advice, for people (its notice and its alert).
pub fn told(a: &AdviceRecord) -> String {
    let who = if a.model.is_empty() {
        a.provider.as_str().to_string()
    } else {
        format!("{} {}", a.provider.as_str(), a.model)
    };
    let mut m = format!(
        "{} ({who}, {}, confidence {:.2}): {}",
        a.action,
        source_str(a.source),
        a.confidence,
        a.summary
    );
    for extra in [&a.note, &a.applied_note] {
        if !extra.is_empty() {
            m.push_str(" [");
            m.push_str(extra);
            m.push(']');
        }
    }
    m
}

impl Adviser {
    /// Runs until `stop` resolves (or the notice stream closes).
    pub async fn run(
        self,
        mut notices: broadcast::Receiver<Notice>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let me = Arc::new(self);
        let mut memory = Memory::default();
        let (tx, mut rx) = mpsc::channel::<Done>(64);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                n = notices.recv() => match n {
                    Ok(n) => memory.note(&n),
                    Err(broadcast::error::RecvError::Lagged(k)) => notice::lagged("advisor", k),
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                Some(done) = rx.recv() => me.finish(done, &mut memory, &tx).await,
                _ = tick.tick() => me.round(&mut memory, &tx).await,
            }
        }
    }

    async fn round(self: &Arc<Self>, memory: &mut Memory, tx: &mpsc::Sender<Done>) {
        let now = Timestamp::now();
        let validators = self.validators.state();
        let mut by_policy: HashMap<Key, Vec<&MonitoredValidator>> = HashMap::new();
        for v in validators.iter().filter_map(|g| g.0.as_ref().ok()) {
            let key = (
                v.namespace().unwrap_or_default(),
                v.spec.policy_ref.name.clone(),
            );
            by_policy.entry(key).or_default().push(v);
        }
        let mut exhausted = 0;
        let mut asking: HashSet<Key> = HashSet::new();
        for p in self.policies.state().iter() {
            let Ok(pol) = p.0.as_ref() else { continue };
            let Ok(policy) = crate::policy::validate(&pol.spec) else {
                continue; // the policy controller shows why
            };
            if policy.suspend {
                continue; // the kill switch: no advice
            }
            let key = (pol.namespace().unwrap_or_default(), pol.name_any());
            let members = by_policy.get(&key).map(Vec::as_slice).unwrap_or_default();
            if self
                .policy_round(pol, &policy, members, memory, tx, &mut asking, now)
                .await
            {
                exhausted += 1;
            }
        }
        memory.first_seen.retain(|k, _| asking.contains(k));
        memory.recent.retain(|k, _| {
            self.validators
                .get(&ObjectRef::new(&k.1).within(&k.0))
                .is_some()
        });
        self.metrics.advisor.budget_exhausted.set(exhausted);
    }

    /// One policy's round; returns whether its budget is exhausted.
    #[allow(clippy::too_many_arguments)]
    async fn policy_round(
        self: &Arc<Self>,
        pol: &MonitorPolicy,
        policy: &Policy,
        validators: &[&MonitoredValidator],
        memory: &mut Memory,
        tx: &mpsc::Sender<Done>,
        asking: &mut HashSet<Key>,
        now: Timestamp,
    ) -> bool {
        let a = &policy.advisor;
        let hosted = a.provider != AdvisorProvider::Rules;
        let ns = pol.namespace().unwrap_or_default();
        let pkey = (ns.clone(), pol.name_any());
        let before = PolicyPart::of(pol);
        let mut part = before.clone();
        if hosted {
            let spend = budget::roll(&part.spend(), now);
            budget_condition(&mut part, &spend, pol.meta().generation, now);
            part.advisor_spend = Some(spend);
        } else {
            part.advisor_spend = None;
            part.conditions.clear();
        }
        let mut jobs: Vec<Job> = Vec::new();
        let mut records: Vec<(&MonitoredValidator, Vec<Change>)> = Vec::new();

        // The fleet incident: one question for the whole fleet.
        let pstatus = pol.status.clone().unwrap_or_default();
        let incident = pstatus
            .fleet_incident
            .as_ref()
            .filter(|i| i.ended.is_none());
        let fleet_advice = incident.and_then(|i| {
            part.fleet_advice
                .clone()
                .filter(|f| f.time.as_ref().map(|t| t.0) >= i.since.as_ref().map(|t| t.0))
        });
        if let Some(i) = incident
            && fleet_advice.is_none()
            && !memory.fleet_busy.contains(&pkey)
        {
            let fp = gate::fingerprint(
                // Each incident is its own question.
                &format!(
                    "{}/{}/{}/{}",
                    pkey.0,
                    pkey.1,
                    i.chain,
                    i.since
                        .as_ref()
                        .map(|t| t.0.as_second())
                        .unwrap_or_default()
                ),
                &[("FleetIncident", &format!("{:?}", i.kind))],
                "critical",
                a.provider,
                a.model.as_deref().unwrap_or_default(),
            );
            let affected: Vec<&MonitoredValidator> = validators
                .iter()
                .copied()
                .filter(|v| v.spec.chain.as_str() == i.chain)
                .collect();
            match when::ask(a.mode, hosted, Moment::FleetIncident) {
                when::Ask::Model => {
                    let statuses: Vec<MonitoredValidatorStatus> = affected
                        .iter()
                        .map(|v| v.status.clone().unwrap_or_default())
                        .collect();
                    let subjects: Vec<Subject> = affected
                        .iter()
                        .zip(&statuses)
                        .take(3)
                        .map(|(v, s)| Subject {
                            name: v.metadata.name.as_deref().unwrap_or_default(),
                            chain: &i.chain,
                            status: s,
                            notices: &[],
                            log_tail: None,
                        })
                        .collect();
                    let ctx = context::Context {
                        namespace: &ns,
                        moment: Moment::FleetIncident,
                        symptom: Symptom::FleetIncident,
                        subjects,
                        fleet: fleet_view(&affected),
                        incident: Some(i),
                    };
                    match self
                        .prepare(
                            pol,
                            a,
                            &ctx,
                            &mut part,
                            pkey.clone(),
                            vec![],
                            Some(fp.clone()),
                            now,
                        )
                        .await
                    {
                        Ok(job) => jobs.push(job),
                        Err(note) => {
                            part.fleet_advice =
                                Some(plan::rules_record(&fp, Symptom::FleetIncident, &note, now));
                        }
                    }
                }
                _ => {
                    part.fleet_advice = Some(plan::rules_record(
                        &fp,
                        Symptom::FleetIncident,
                        "the rules answer fleet incidents under this provider",
                        now,
                    ));
                }
            }
        }

        // Each validator; a healthy one with no advice pending costs a lookup (no copy).
        let empty = MonitoredValidatorStatus::default();
        let mut model: Vec<(&MonitoredValidator, plan::Ask)> = Vec::new();
        for v in validators {
            if v.spec.suspend {
                continue;
            }
            let key = (ns.clone(), v.name_any());
            if memory.busy.contains(&key) {
                continue;
            }
            let status = v.status.as_ref().unwrap_or(&empty);
            let fa = match (incident, &fleet_advice) {
                (Some(i), Some(f)) if v.spec.chain.as_str() == i.chain => Some(f),
                _ => None,
            };
            let target = format!("{}/{}", key.0, key.1);
            let step = plan::step(&plan::Input {
                target: &target,
                status,
                advisor: a,
                probe_interval: policy.probe.interval,
                fleet_advice: fa,
                now,
            });
            let mut changes = Vec::new();
            if let Some(o) = step.outcome {
                changes.push(Change::Outcome(o));
            }
            match step.ask {
                None => {}
                Some(ask) => {
                    match ask.who {
                        Who::Rules(note) => changes.push(Change::Advice(Box::new(
                            plan::rules_record(&ask.fingerprint, ask.symptom, &note, now),
                        ))),
                        Who::Reuse(e) => {
                            self.metrics.advisor.dedup_hits.inc();
                            changes.push(Change::Advice(Box::new(plan::reused(
                                &e,
                                AdviceSource::Reused,
                                now,
                            ))));
                        }
                        Who::Fleet(f) => changes.push(Change::Advice(Box::new(plan::reused(
                            &f,
                            AdviceSource::Fleet,
                            now,
                        )))),
                        Who::Model => {
                            asking.insert(key.clone());
                            memory.first_seen.entry(key).or_insert_with(Instant::now);
                            model.push((v, ask));
                        }
                    }
                }
            }
            if !changes.is_empty() {
                records.push((v, changes));
            }
        }

        // Model questions: new problems alike share a call once the batch window passed.
        let mut groups: Vec<Vec<(&MonitoredValidator, plan::Ask)>> = Vec::new();
        for (v, ask) in model {
            let alike = |g: &Vec<(&MonitoredValidator, plan::Ask)>| {
                let (w, first) = &g[0];
                first.moment == Moment::NewProblem
                    && ask.moment == Moment::NewProblem
                    && first.symptom == ask.symptom
                    && w.spec.chain == v.spec.chain
                    && shape(w) == shape(v)
            };
            match groups.iter_mut().find(|g| alike(g)) {
                Some(g) => g.push((v, ask)),
                None => groups.push(vec![(v, ask)]),
            }
        }
        for g in groups {
            let waited = g.iter().any(|(v, _)| {
                memory
                    .first_seen
                    .get(&(ns.clone(), v.name_any()))
                    .is_some_and(|t| t.elapsed() >= BATCH_WINDOW)
            });
            if g[0].1.moment == Moment::NewProblem && !waited {
                continue;
            }
            let statuses: Vec<MonitoredValidatorStatus> = g
                .iter()
                .map(|(v, _)| v.status.clone().unwrap_or_default())
                .collect();
            let notices: Vec<Vec<String>> = g
                .iter()
                .map(|(v, _)| {
                    memory
                        .recent
                        .get(&(ns.clone(), v.name_any()))
                        .map(|q| q.iter().cloned().collect())
                        .unwrap_or_default()
                })
                .collect();
            let mut logs: Vec<Option<String>> = Vec::new();
            for (v, _) in &g {
                logs.push(match a.log_tail_bytes {
                    0 => None,
                    n => self.log_tail(&ns, v, n).await,
                });
            }
            let subjects: Vec<Subject> = g
                .iter()
                .zip(&statuses)
                .zip(&notices)
                .zip(&logs)
                .map(|((((v, _), s), n), l)| Subject {
                    name: v.metadata.name.as_deref().unwrap_or_default(),
                    chain: v.spec.chain.as_str(),
                    status: s,
                    notices: n,
                    log_tail: l.as_deref(),
                })
                .collect();
            let chain = g[0].0.spec.chain;
            let peers: Vec<&MonitoredValidator> = validators
                .iter()
                .copied()
                .filter(|w| w.spec.chain == chain)
                .collect();
            let ctx = context::Context {
                namespace: &ns,
                moment: g[0].1.moment,
                symptom: g[0].1.symptom,
                subjects,
                fleet: fleet_view(&peers),
                incident: None,
            };
            let members: Vec<Member> = g
                .iter()
                .map(|(v, ask)| Member {
                    key: (ns.clone(), v.name_any()),
                    fingerprint: ask.fingerprint.clone(),
                })
                .collect();
            match self
                .prepare(pol, a, &ctx, &mut part, pkey.clone(), members, None, now)
                .await
            {
                Ok(job) => jobs.push(job),
                Err(note) => {
                    for (v, ask) in &g {
                        let r = plan::rules_record(&ask.fingerprint, ask.symptom, &note, now);
                        records.push((v, vec![Change::Advice(Box::new(r))]));
                    }
                }
            }
        }

        // The reservations (and the budget's state) are durable before any call goes.
        if part != before {
            // Fenced on the advisor's own part only: a busy policy's counts and fleet
            // state change every few seconds and would otherwise starve the advisor.
            match self
                .writer
                .apply_refenced::<MonitorPolicy, _>(
                    &pkey.0,
                    &pkey.1,
                    Manager::Advisor,
                    &part,
                    pol.resource_version(),
                    |fresh| PolicyPart::of(fresh) == before,
                )
                .await
            {
                Ok(_) => {
                    if before.fleet_advice != part.fleet_advice
                        && let Some(f) = &part.fleet_advice
                    {
                        self.tell_policy(pol, f);
                    }
                }
                Err(e) => {
                    tracing::debug!(namespace = %pkey.0, policy = %pkey.1, error = %e, "advisor: policy write lost; next round decides again");
                    jobs.clear();
                    records.retain(|(_, c)| c.iter().all(|c| matches!(c, Change::Outcome(_))));
                }
            }
        }
        for (v, changes) in records {
            self.record(v, &changes).await;
        }
        for job in jobs {
            match &job.fleet {
                Some(_) => {
                    memory.fleet_busy.insert(job.policy.clone());
                }
                None => {
                    for m in &job.members {
                        memory.busy.insert(m.key.clone());
                        memory.first_seen.remove(&m.key);
                    }
                }
            }
            self.spawn(job, tx);
        }
        hosted && budget::exhausted(&part.spend(), now).is_some()
    }

    /// Builds a call's job and reserves its budget in `part`, or says why the rules answer.
    #[allow(clippy::too_many_arguments)]
    async fn prepare(
        &self,
        pol: &MonitorPolicy,
        a: &Advisor,
        ctx: &context::Context<'_>,
        part: &mut PolicyPart,
        policy: Key,
        members: Vec<Member>,
        fleet: Option<String>,
        now: Timestamp,
    ) -> Result<Job, String> {
        let (prompt, redactor) = context::prompt(a, ctx);
        let estimate = context::estimate(&prompt);
        let spend = part.spend();
        if let Err(limit) = budget::check(&spend, &a.budget, &estimate, now) {
            self.metrics
                .advisor
                .budget_denials
                .with_label_values(&[limit.as_str()])
                .inc();
            let denied = budget::deny(&spend, limit, now);
            budget_condition(part, &denied, pol.meta().generation, now);
            part.advisor_spend = Some(denied);
            return Err(format!("{limit}; the rules decide"));
        }
        let provider = self.provider(&policy.0, a).await?;
        part.advisor_spend = Some(budget::account(&spend, &a.budget, &estimate, now));
        Ok(Job {
            policy,
            members,
            fleet,
            symptom: ctx.symptom,
            provider,
            prompt,
            redactor,
            estimate,
            repaired: false,
        })
    }

    /// The last lines of a workload validator's pod log, at most `bytes`; or why there are
    /// none (no workload target, no pod, the API could not serve it).
    async fn log_tail(&self, ns: &str, v: &MonitoredValidator, bytes: u32) -> Option<String> {
        let t = v.spec.target.as_ref()?.workload.as_ref()?;
        let pod = match crate::remediate::workload::resolve_pod(&self.client, ns, t).await {
            Ok(p) => p,
            Err(e) => return Some(format!("(no log: {e})")),
        };
        let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(self.client.clone(), ns);
        let lp = kube::api::LogParams {
            tail_lines: Some(60),
            limit_bytes: Some(i64::from(bytes) * 4),
            ..Default::default()
        };
        let name = pod.metadata.name.unwrap_or_default();
        match tokio::time::timeout(Duration::from_secs(5), api.logs(&name, &lp)).await {
            Ok(Ok(text)) => Some(context::tail(&text, bytes as usize).to_string()),
            Ok(Err(_)) => Some("(no log: the API could not serve the pod's log)".into()),
            Err(_) => Some("(no log: the API did not answer within 5s)".into()),
        }
    }

    /// The provider with its key, read from the Secret now (never cached, never logged).
    async fn provider(&self, ns: &str, a: &Advisor) -> Result<Provider, String> {
        let Some(r) = &a.api_key else {
            return Err("advisor.apiKeySecretRef is not set".into());
        };
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let why = |what: &str| {
            format!(
                "the API key could not be read (Secret {}, key {}: {what}); the rules decide",
                r.name, r.key
            )
        };
        let secret = tokio::time::timeout(Duration::from_secs(10), api.get_opt(&r.name))
            .await
            .map_err(|_| why("timed out"))?
            .map_err(|_| why("the API refused"))?
            .ok_or_else(|| why("not found"))?;
        let key = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&r.key))
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .ok_or_else(|| why("no such key, or empty"))?;
        Ok(Provider {
            kind: a.provider,
            base_url: a
                .base_url
                .as_ref()
                .map(|u| u.0.clone())
                .unwrap_or_else(|| Provider::default_base(a.provider).to_string()),
            key,
            headers: a.headers.clone(),
            model: a.model.clone().unwrap_or_default(),
            json_mode: a.json_mode,
        })
    }

    fn spawn(self: &Arc<Self>, job: Job, tx: &mpsc::Sender<Done>) {
        let (me, tx) = (self.clone(), tx.clone());
        tokio::spawn(async move {
            let timeout = me
                .policy(&job.policy)
                .map(|(_, p)| p.advisor.timeout)
                .unwrap_or(Duration::from_secs(20));
            let call = me.caller.ask(&job.provider, &job.prompt, timeout).await;
            let _ = tx.send(Done { job, call }).await;
        });
    }

    fn policy(&self, key: &Key) -> Option<(Arc<DeserializeGuard<MonitorPolicy>>, Policy)> {
        let g = self.policies.get(&ObjectRef::new(&key.1).within(&key.0))?;
        let p =
            g.0.as_ref()
                .ok()
                .and_then(|p| crate::policy::validate(&p.spec).ok())?;
        Some((g, p))
    }

    /// A call came back: settle its spend, parse and record its advice, apply it.
    async fn finish(self: &Arc<Self>, done: Done, memory: &mut Memory, tx: &mpsc::Sender<Done>) {
        let Done { mut job, call } = done;
        let now = Timestamp::now();
        let label = job.provider.kind.as_str();
        let Some((_, policy)) = self.policy(&job.policy) else {
            release(memory, &job);
            return;
        };
        let a = &policy.advisor;
        let usage = call.result.as_ref().map(|x| x.usage).unwrap_or_default();
        let m = &self.metrics.advisor;
        for (k, n) in [
            ("input", usage.input),
            ("output", usage.output),
            ("cacheRead", usage.cache_read),
            ("cacheWrite", usage.cache_write),
        ] {
            m.tokens.with_label_values(&[label, k]).inc_by(n);
        }
        let cost = budget::cost(&usage, &a.budget);
        m.cost
            .with_label_values(&[label])
            .inc_by(cost.micros as f64 / 1e6);
        let (answer, outcome) = match call.result {
            Ok(answer) => match decision::parse(&answer.text, a.strict, &a.allowed_actions) {
                Ok(d) => {
                    m.calls.with_label_values(&[label, "ok"]).inc();
                    (Some(answer), Ok(d))
                }
                Err(r) => {
                    m.calls.with_label_values(&[label, "invalid"]).inc();
                    m.invalid_answers
                        .with_label_values(&[refused_label(&r)])
                        .inc();
                    (
                        Some(answer),
                        Err((format!("the answer was refused: {r}"), Some(r))),
                    )
                }
            },
            Err(e) => {
                m.calls.with_label_values(&[label, "error"]).inc();
                (
                    None,
                    Err((format!("the provider gave no answer: {e}"), None)),
                )
            }
        };
        // One repair request after a refused answer, within the budget; then the rules.
        let repair = matches!(&outcome, Err((_, Some(_)))) && !job.repaired;
        let mut repair_estimate = None;
        if repair && let Err((_, Some(r))) = &outcome {
            let prompt = context::repair(&job.prompt, &r.to_string());
            repair_estimate = Some((context::estimate(&prompt), prompt));
        }
        let mut repaired_job = None;
        let settled = self
            .update_policy(&job.policy, |part| {
                let spend = part.spend();
                let mut spend = budget::settle(&spend, &a.budget, &job.estimate, &usage, now);
                repaired_job = None;
                if let Some((est, _)) = &repair_estimate {
                    match budget::check(&spend, &a.budget, est, now) {
                        Ok(()) => {
                            spend = budget::account(&spend, &a.budget, est, now);
                            repaired_job = Some(*est);
                        }
                        Err(limit) => spend = budget::deny(&spend, limit, now),
                    }
                }
                part.advisor_spend = Some(spend);
            })
            .await;
        if !settled {
            tracing::warn!(namespace = %job.policy.0, policy = %job.policy.1, "advisor: the spend of a call could not be settled");
        }
        if let (Some(est), Some((_, prompt))) = (repaired_job, repair_estimate) {
            job.prompt = prompt;
            job.estimate = est;
            job.repaired = true;
            self.spawn(job, tx);
            return;
        }
        release(memory, &job);
        let batch = job.members.len() > 1;
        let mut rec = match outcome {
            Ok(d) => {
                let d = unmask(&job.redactor, d);
                let source = if batch {
                    AdviceSource::Batch
                } else {
                    AdviceSource::Model
                };
                let model = answer
                    .as_ref()
                    .map(|x| x.model.clone())
                    .filter(|x| !x.is_empty())
                    .unwrap_or_else(|| job.provider.model.clone());
                let mut r = plan::record("", &d, job.provider.kind, &model, source, now);
                r.input_tokens = usage.input + usage.cache_read + usage.cache_write;
                r.output_tokens = usage.output;
                r.cost = cost.to_string();
                if batch {
                    r.note = format!(
                        "one call answered {} validators with the same symptoms (tokens and cost are the call's)",
                        job.members.len()
                    );
                }
                m.advice.with_label_values(&[label, "answered"]).inc();
                (r, Some(d))
            }
            Err((note, _)) => {
                m.advice.with_label_values(&["rules", "fallback"]).inc();
                let mut r = plan::rules_record("", job.symptom, &note, now);
                r.input_tokens = usage.input + usage.cache_read + usage.cache_write;
                r.output_tokens = usage.output;
                if cost.micros > 0 {
                    r.cost = cost.to_string();
                }
                (r, None)
            }
        };
        if let Some(fp) = &job.fleet {
            rec.0.fingerprint = fp.clone();
            let record = rec.0.clone();
            let written = self
                .update_policy(&job.policy, |part| part.fleet_advice = Some(record.clone()))
                .await;
            if written
                && let Some((p, _)) = self.policy(&job.policy)
                && let Ok(pol) = p.0.as_ref()
            {
                self.tell_policy(pol, &rec.0);
            }
            return;
        }
        for mb in &job.members {
            let mut r = rec.0.clone();
            r.fingerprint = mb.fingerprint.clone();
            let effect = match &rec.1 {
                Some(d) => {
                    let (effect, note) = plan::apply(a, d, r.source);
                    r.applied = effect.is_some();
                    r.applied_note = note;
                    effect
                }
                None => None,
            };
            let Some(v) = self
                .validators
                .get(&ObjectRef::new(&mb.key.1).within(&mb.key.0))
            else {
                continue;
            };
            let Ok(v) = v.0.as_ref() else { continue };
            if !self.record(v, &[Change::Advice(Box::new(r.clone()))]).await {
                continue;
            }
            let token = format!("{}-{}", r.fingerprint, now.as_second());
            match effect {
                Some(Effect::Restart) => self.monitor.advised(&mb.key, token, false),
                Some(Effect::Escalate) => self.monitor.advised(&mb.key, token, true),
                Some(Effect::Alert) => self.notices.publish(
                    Notice::new(v.object_ref(&()), What::Advice, ADVISOR_ALERT, told(&r))
                        .warning(true)
                        .action("Advise"),
                ),
                None => {}
            }
        }
    }

    /// Applies `edit` to the advisor's part of a policy's status, fenced, re-reading on a
    /// conflict (a call's spend must not be lost).
    async fn update_policy(&self, key: &Key, mut edit: impl FnMut(&mut PolicyPart)) -> bool {
        let mut current = self
            .policies
            .get(&ObjectRef::new(&key.1).within(&key.0))
            .and_then(|g| g.0.as_ref().ok().cloned());
        for _ in 0..WRITE_TRIES {
            let Some(pol) = current.take() else {
                return false;
            };
            let mut part = PolicyPart::of(&pol);
            edit(&mut part);
            let fence = pol.resource_version();
            match self
                .writer
                .apply::<MonitorPolicy, _>(
                    &key.0,
                    &key.1,
                    Manager::Advisor,
                    &part,
                    fence.as_deref(),
                )
                .await
            {
                Ok(_) => return true,
                Err(WriteError::Conflict) => {
                    current = self
                        .writer
                        .read::<MonitorPolicy>(&key.0, &key.1)
                        .await
                        .ok()
                        .flatten();
                }
                Err(e) => {
                    tracing::warn!(namespace = %key.0, policy = %key.1, error = %e, "advisor: policy write failed");
                    return false;
                }
            }
        }
        false
    }

    /// Records advice and outcomes on a validator, fenced, re-reading on a conflict; then
    /// tells of new advice.
    async fn record(&self, v: &MonitoredValidator, changes: &[Change]) -> bool {
        let ns = v.namespace().unwrap_or_default();
        let name = v.name_any();
        let mut current = Some(v.clone());
        for _ in 0..WRITE_TRIES {
            let Some(obj) = current.take() else {
                return false;
            };
            let mut s = obj.status.clone().unwrap_or_default();
            let now = Timestamp::now();
            for c in changes {
                match c {
                    Change::Advice(r) => plan::push(&mut s, (**r).clone()),
                    Change::Outcome(o) => plan::settle_outcome(&mut s, *o, now),
                }
            }
            let part = AdvicePart {
                advice: s.advice.as_ref(),
                advice_history: &s.advice_history,
            };
            let fence = obj.resource_version();
            match self
                .writer
                .apply::<MonitoredValidator, _>(
                    &ns,
                    &name,
                    Manager::Advisor,
                    &part,
                    fence.as_deref(),
                )
                .await
            {
                Ok(_) => {
                    for c in changes {
                        match c {
                            Change::Advice(r) => {
                                self.metrics
                                    .advisor
                                    .advice
                                    .with_label_values(&[r.provider.as_str(), source_str(r.source)])
                                    .inc();
                                self.notices.publish(
                                    Notice::new(
                                        obj.object_ref(&()),
                                        What::Advice,
                                        "Advice",
                                        told(r),
                                    )
                                    .warning(matches!(
                                        r.action.as_str(),
                                        "restart" | "escalate" | "alert"
                                    ))
                                    .action("Advise"),
                                );
                            }
                            Change::Outcome(o) => {
                                let applied = s.advice.as_ref().is_some_and(|a| a.applied);
                                self.metrics
                                    .advisor
                                    .outcomes
                                    .with_label_values(&[
                                        if applied { "true" } else { "false" },
                                        outcome_str(*o),
                                    ])
                                    .inc();
                            }
                        }
                    }
                    return true;
                }
                Err(WriteError::Conflict) => {
                    current = self
                        .writer
                        .read::<MonitoredValidator>(&ns, &name)
                        .await
                        .ok()
                        .flatten();
                }
                Err(e) => {
                    tracing::warn!(namespace = %ns, name = %name, error = %e, "advisor: advice write failed");
                    return false;
                }
            }
        }
        false
    }

    fn tell_policy(&self, pol: &MonitorPolicy, a: &AdviceRecord) {
        self.metrics
            .advisor
            .advice
            .with_label_values(&[a.provider.as_str(), "fleet"])
            .inc();
        self.notices.publish(
            Notice::new(pol.object_ref(&()), What::Advice, "FleetAdvice", told(a))
                .warning(true)
                .action("Advise"),
        );
    }
}

/// A change to a validator's advice.
#[derive(Clone, Debug)]
enum Change {
    Advice(Box<AdviceRecord>),
    Outcome(AdviceOutcome),
}

fn outcome_str(o: AdviceOutcome) -> &'static str {
    match o {
        AdviceOutcome::Pending => "Pending",
        AdviceOutcome::Recovered => "Recovered",
        AdviceOutcome::NotRecovered => "NotRecovered",
    }
}

fn release(memory: &mut Memory, job: &Job) {
    if job.fleet.is_some() {
        memory.fleet_busy.remove(&job.policy);
    }
    for m in &job.members {
        memory.busy.remove(&m.key);
    }
}

/// A decision with this call's masks replaced by the real values, for people.
fn unmask(r: &Redactor, d: Decision) -> Decision {
    let cap = |s: &str, n| crate::text::cap(&r.unmask(s), n);
    Decision {
        summary: cap(&d.summary, decision::SUMMARY_LIMIT),
        reasoning: cap(&d.reasoning, decision::REASONING_LIMIT),
        evidence: d.evidence.iter().map(|e| cap(e, 256)).collect(),
        ..d
    }
}

/// The failing conditions of a validator without their messages (what a batch shares).
fn shape(v: &MonitoredValidator) -> Vec<(String, String)> {
    let s = v.status.clone().unwrap_or_default();
    let mut f: Vec<(String, String)> = plan::failing(&s)
        .into_iter()
        .map(|(t, r)| (t.to_string(), r.to_string()))
        .collect();
    f.sort();
    f
}

fn fleet_view(vs: &[&MonitoredValidator]) -> Vec<FleetMember> {
    vs.iter()
        .map(|v| {
            let s = v.status.as_ref();
            FleetMember {
                name: v.name_any(),
                ready: s
                    .and_then(|s| conditions::status_of(&s.conditions, kind::READY))
                    .and_then(|st| match st {
                        Status::True => Some(true),
                        Status::False => Some(false),
                        Status::Unknown => None,
                    }),
                best_block: s.and_then(|s| s.facts.as_ref()).and_then(|f| f.best_block),
            }
        })
        .collect()
}

/// Sets `BudgetExhausted` from the spend.
fn budget_condition(
    part: &mut PolicyPart,
    spend: &AdvisorSpend,
    generation: Option<i64>,
    now: Timestamp,
) {
    let want = match budget::exhausted(spend, now) {
        Some(limit) => Desired::new(
            kind::BUDGET_EXHAUSTED,
            Status::True,
            limit.reason(),
            format!("{limit}; the built-in rules decide until it refills"),
        ),
        None => Desired::new(
            kind::BUDGET_EXHAUSTED,
            Status::False,
            reason::WITHIN_BUDGET,
            "The advisor is within its budget".to_string(),
        ),
    };
    conditions::set(
        &mut part.conditions,
        want,
        generation,
        &conditions::time(now),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectReference;

    #[test]
    fn the_budget_condition_follows_the_spend() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let mut part = PolicyPart::default();
        budget_condition(&mut part, &AdvisorSpend::default(), Some(1), now);
        assert_eq!(part.conditions[0].status, "False");
        assert_eq!(part.conditions[0].reason, "WithinBudget");
        let denied = budget::deny(&AdvisorSpend::default(), budget::Limit::CostPerDay, now);
        budget_condition(&mut part, &denied, Some(1), now);
        assert_eq!(part.conditions[0].status, "True");
        assert_eq!(part.conditions[0].reason, "CostPerDay");
        assert!(part.conditions[0].message.contains("costPerDay"));
        assert_eq!(part.conditions.len(), 1);
    }

    #[test]
    fn notices_are_kept_briefly_per_validator() {
        let mut m = Memory::default();
        let r = ObjectReference {
            kind: Some("MonitoredValidator".into()),
            namespace: Some("ns".into()),
            name: Some("v".into()),
            ..Default::default()
        };
        for i in 0..9 {
            m.note(&Notice::new(
                r.clone(),
                What::RemediationFailed,
                "RemediationFailed",
                format!("try {i}"),
            ));
        }
        let q = &m.recent[&("ns".to_string(), "v".to_string())];
        assert_eq!(q.len(), NOTICES_KEPT);
        assert!(q.back().unwrap().ends_with("try 8"));
        // Its own advice is not context.
        m.note(&Notice::new(r, What::Advice, "Advice", "x"));
        assert_eq!(
            m.recent[&("ns".to_string(), "v".to_string())].len(),
            NOTICES_KEPT
        );
    }
}
