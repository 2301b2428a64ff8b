//! What the advisor does for one validator at one moment, pure: which moment this is (a new
//! problem, the same one still, a remediation that did not fix it, an escalation), the
//! question's fingerprint, who answers (the model, earlier advice with the same
//! fingerprint, the fleet incident's advice, the rules, nobody), when an outcome is due,
//! and whether a decision may be applied. The advisor task, the cost simulation and the
//! tests all run this same code.

use super::decision::Decision;
use super::gate;
use super::rules::{self, Symptom};
use super::when::{self, Moment};
use crate::api::{
    AdviceAction, AdviceOutcome, AdviceRecord, AdviceSource, AdvisorProvider,
    MonitoredValidatorStatus,
};
use crate::conditions::{self, Status, kind};
use crate::policy::Advisor;
use jiff::Timestamp;
use std::time::Duration;

/// Pieces of earlier advice kept in `status.adviceHistory` (one per question, without
/// reasoning and evidence: the history is what dedup remembers, and it stays small).
pub const HISTORY: usize = 8;

/// The health conditions whose failures make up a question (not `Remediating` or
/// `Escalated`: what Vigil does about a problem is not the problem).
const HEALTH: [&str; 6] = [
    kind::READY,
    kind::REACHABLE,
    kind::SYNCED,
    kind::BLOCK_PRODUCTION,
    kind::FINALIZING,
    kind::PEERS_HEALTHY,
];

/// One validator as the advisor sees it.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    /// `namespace/name`.
    pub target: &'a str,
    /// Its status as the cache has it (advice included).
    pub status: &'a MonitoredValidatorStatus,
    /// The policy's advisor.
    pub advisor: &'a Advisor,
    /// The policy's probe interval (`everyProbe` asks at most once per interval).
    pub probe_interval: Duration,
    /// The open fleet incident's advice, when its chain has one.
    pub fleet_advice: Option<&'a AdviceRecord>,
    /// Now.
    pub now: Timestamp,
}

/// Who answers a question.
#[derive(Clone, Debug, PartialEq)]
pub enum Who {
    /// The model (budget and breaker permitting).
    Model,
    /// Earlier advice with the same fingerprint, inside the TTL.
    Reuse(AdviceRecord),
    /// The fleet incident's advice.
    Fleet(AdviceRecord),
    /// The rules, and why not the model.
    Rules(String),
}

/// A question to answer now.
#[derive(Clone, Debug, PartialEq)]
pub struct Ask {
    /// What just happened.
    pub moment: Moment,
    /// The rules' symptom class.
    pub symptom: Symptom,
    /// The question's fingerprint.
    pub fingerprint: String,
    /// Who answers.
    pub who: Who,
}

/// What to do for one validator now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Step {
    /// The outcome of the current advice, now that it is due.
    pub outcome: Option<AdviceOutcome>,
    /// A question to answer.
    pub ask: Option<Ask>,
}

fn ts(t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> Option<Timestamp> {
    t.as_ref().map(|t| t.0)
}

fn elapsed(since: Option<Timestamp>, now: Timestamp) -> Duration {
    since
        .and_then(|s| now.duration_since(s).try_into().ok())
        .unwrap_or(Duration::ZERO)
}

/// The failing health conditions with their reasons.
pub fn failing(s: &MonitoredValidatorStatus) -> Vec<(&str, &str)> {
    s.conditions
        .iter()
        .filter(|c| HEALTH.contains(&c.type_.as_str()) && c.status == Status::False.as_str())
        .map(|c| (c.type_.as_str(), c.reason.as_str()))
        .collect()
}

/// The severity of a symptom, as the question states it.
pub fn severity(symptom: Symptom) -> &'static str {
    match symptom {
        Symptom::Unreachable
        | Symptom::Stalled
        | Symptom::FleetIncident
        | Symptom::RepeatedFailures => "critical",
        Symptom::Healthy => "info",
        _ => "warning",
    }
}

/// A remediation ran after `after` and did not heal the node.
fn not_fixed(s: &MonitoredValidatorStatus, after: Timestamp) -> bool {
    s.remediation.as_ref().is_some_and(|r| {
        r.history.iter().any(|h| {
            ts(&h.time).is_some_and(|t| t >= after)
                && (h.recovered == Some(false) || h.result == crate::api::RemediationResult::Failed)
        })
    })
}

/// The moment of an unhealthy validator, given the advice it has and the fingerprints of
/// the questions of this problem (the first one, not fixed, escalated).
fn moment(
    s: &MonitoredValidatorStatus,
    advice: Option<&AdviceRecord>,
    fps: &[String; 3],
) -> Moment {
    let ready_since = conditions::get(&s.conditions, kind::READY).map(|c| c.last_transition_time.0);
    let Some(a) = advice else {
        return Moment::NewProblem;
    };
    let given = ts(&a.time).unwrap_or(Timestamp::UNIX_EPOCH);
    if ready_since.is_some_and(|r| given < r) {
        return Moment::NewProblem;
    }
    // Within one episode, what Vigil did since the advice comes first: a failed restart
    // changes the symptoms too (repeated failures), and that is not a new problem.
    let escalated_at = conditions::get(&s.conditions, kind::ESCALATED)
        .filter(|c| c.status == Status::True.as_str())
        .map(|c| c.last_transition_time.0);
    if escalated_at.is_some_and(|e| e > given) {
        return Moment::Escalated;
    }
    if not_fixed(s, given) {
        return Moment::NotFixed;
    }
    if !fps.contains(&a.fingerprint) {
        return Moment::NewProblem;
    }
    Moment::StillUnhealthy
}

/// The question's fingerprint. A remediation that did not fix the problem, or an
/// escalation, is a different question from the first one, with its own fingerprint.
fn question(input: &Input<'_>, symptom: Symptom, moment: Moment) -> String {
    let mut failing = failing(input.status);
    match moment {
        Moment::NotFixed => failing.push(("Remediation", "NotFixed")),
        Moment::Escalated => failing.push(("Remediation", "Escalated")),
        _ => {}
    }
    let model = input.advisor.model.as_deref().unwrap_or_default();
    gate::fingerprint(
        input.target,
        &failing,
        severity(symptom),
        input.advisor.provider,
        model,
    )
}

/// Earlier model advice with this fingerprint, inside the TTL.
fn earlier<'a>(
    s: &'a MonitoredValidatorStatus,
    fp: &str,
    ttl: Duration,
    now: Timestamp,
) -> Option<&'a AdviceRecord> {
    s.advice
        .iter()
        .chain(s.advice_history.iter().rev())
        .filter(|a| a.provider != AdvisorProvider::Rules)
        .filter(|a| matches!(a.source, AdviceSource::Model | AdviceSource::Batch))
        .find(|a| gate::reusable(Some((&a.fingerprint, elapsed(ts(&a.time), now))), fp, ttl))
}

/// The outcome of the current advice, once `outcomeAfter` has passed.
fn outcome_due(input: &Input<'_>) -> Option<AdviceOutcome> {
    let a = input.status.advice.as_ref()?;
    if a.outcome != AdviceOutcome::Pending
        || elapsed(ts(&a.time), input.now) < input.advisor.outcome_after
    {
        return None;
    }
    let ready = conditions::status_of(&input.status.conditions, kind::READY);
    Some(if ready == Some(Status::True) {
        AdviceOutcome::Recovered
    } else {
        AdviceOutcome::NotRecovered
    })
}

/// What to do for one validator now.
pub fn step(input: &Input<'_>) -> Step {
    let s = input.status;
    let mut out = Step {
        outcome: outcome_due(input),
        ask: None,
    };
    let symptom = rules::classify(s);
    if symptom == Symptom::Healthy {
        return out;
    }
    if symptom == Symptom::FleetIncident {
        // The fleet's one call answers every member; nothing is asked per node.
        if let Some(f) = input.fleet_advice
            && s.advice
                .as_ref()
                .is_none_or(|a| a.fingerprint != f.fingerprint)
        {
            out.ask = Some(Ask {
                moment: Moment::FleetIncident,
                symptom,
                fingerprint: f.fingerprint.clone(),
                who: Who::Fleet(f.clone()),
            });
        }
        return out;
    }
    // The fingerprints of this problem's questions decide whether the symptoms changed.
    let fps = [Moment::NewProblem, Moment::NotFixed, Moment::Escalated]
        .map(|m| question(input, symptom, m));
    let moment = moment(s, s.advice.as_ref(), &fps);
    let fp = match moment {
        Moment::NotFixed => fps[1].clone(),
        Moment::Escalated => fps[2].clone(),
        // Still the same problem: the question last answered.
        Moment::StillUnhealthy => s
            .advice
            .as_ref()
            .map(|a| a.fingerprint.clone())
            .unwrap_or_default(),
        _ => fps[0].clone(),
    };
    let a = input.advisor;
    let hosted = a.provider != AdvisorProvider::Rules;
    let mut who = match when::ask(a.mode, hosted, moment) {
        when::Ask::Nobody => return out,
        when::Ask::Rules if hosted => Who::Rules(format!(
            "advisor.mode {}: the rules answer this moment ({})",
            mode_str(a.mode),
            moment_str(moment)
        )),
        when::Ask::Rules => Who::Rules("advisor.provider is rules".into()),
        when::Ask::Model => Who::Model,
    };
    if moment == Moment::StillUnhealthy {
        // `everyProbe`: fresh reasoning once per probe interval, never a reused answer.
        let last = s.advice.as_ref().and_then(|a| ts(&a.time));
        if elapsed(last, input.now) < input.probe_interval {
            return out;
        }
    } else if who == Who::Model
        && moment == Moment::NewProblem
        && let Some(e) = earlier(s, &fp, a.dedup_ttl, input.now)
    {
        who = Who::Reuse(e.clone());
    }
    out.ask = Some(Ask {
        moment,
        symptom,
        fingerprint: fp,
        who,
    });
    out
}

/// The API spelling of a mode.
pub fn mode_str(m: crate::api::AdvisorMode) -> &'static str {
    match m {
        crate::api::AdvisorMode::OnIssue => "onIssue",
        crate::api::AdvisorMode::OnEscalation => "onEscalation",
        crate::api::AdvisorMode::EveryProbe => "everyProbe",
    }
}

/// A moment in a few words.
pub fn moment_str(m: Moment) -> &'static str {
    match m {
        Moment::NewProblem => "a new problem",
        Moment::StillUnhealthy => "still unhealthy",
        Moment::NotFixed => "the remediation did not fix it",
        Moment::Escalated => "escalated to a person",
        Moment::FleetIncident => "a fleet incident",
    }
}

/// What applying a decision does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// A restart, through the heal guards.
    Restart,
    /// Escalate to a person.
    Escalate,
    /// An alert, through alert routing.
    Alert,
}

/// Whether a decision is applied: only a model's (the rules' decisions are what healing
/// does anyway), only with `autoApply`, only at `minConfidence` or above, only an allowed
/// action, and only one that has something to do.
pub fn apply(advisor: &Advisor, d: &Decision, source: AdviceSource) -> (Option<Effect>, String) {
    let allowed = advisor.allowed_actions.is_empty() || advisor.allowed_actions.contains(&d.action);
    let why = if !matches!(
        source,
        AdviceSource::Model | AdviceSource::Batch | AdviceSource::Fleet
    ) {
        "not applied: only fresh model advice is applied; healing follows the policy".to_string()
    } else if !advisor.auto_apply {
        "advisory only: advisor.autoApply is off".to_string()
    } else if !allowed {
        format!(
            "not applied: {} is not in advisor.allowedActions",
            d.action.as_str()
        )
    } else if d.confidence < advisor.min_confidence {
        format!(
            "not applied: confidence {:.2} is below advisor.minConfidence {:.2}",
            d.confidence, advisor.min_confidence
        )
    } else {
        let effect = match d.action {
            AdviceAction::Restart => Effect::Restart,
            AdviceAction::Escalate => Effect::Escalate,
            AdviceAction::Alert => Effect::Alert,
            a => {
                return (None, format!("{}: nothing to do automatically", a.as_str()));
            }
        };
        let what = match effect {
            Effect::Restart => "restart requested through the heal guards",
            Effect::Escalate => "escalated to a person",
            Effect::Alert => "alert sent through alert routing",
        };
        return (Some(effect), format!("applied: {what}"));
    };
    (None, why)
}

/// The record of a decision.
pub fn record(
    fingerprint: &str,
    d: &Decision,
    provider: AdvisorProvider,
    model: &str,
    source: AdviceSource,
    now: Timestamp,
) -> AdviceRecord {
    AdviceRecord {
        time: Some(conditions::time(now)),
        fingerprint: fingerprint.to_string(),
        provider,
        model: model.to_string(),
        source,
        action: d.action.as_str().to_string(),
        confidence: d.confidence,
        summary: d.summary.clone(),
        reasoning: d.reasoning.clone(),
        evidence: d.evidence.clone(),
        ..AdviceRecord::default()
    }
}

/// The rules' record for a symptom, with why the rules answered.
pub fn rules_record(
    fingerprint: &str,
    symptom: Symptom,
    note: &str,
    now: Timestamp,
) -> AdviceRecord {
    let mut r = record(
        fingerprint,
        &rules::decide(symptom),
        AdvisorProvider::Rules,
        "",
        AdviceSource::Rules,
        now,
    );
    r.note = crate::text::cap(note, 256);
    r
}

/// Reused advice, as recorded again now (no tokens: nothing was spent).
pub fn reused(earlier: &AdviceRecord, source: AdviceSource, now: Timestamp) -> AdviceRecord {
    let given = earlier
        .time
        .as_ref()
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    AdviceRecord {
        time: Some(conditions::time(now)),
        source,
        note: match source {
            AdviceSource::Fleet => format!("the fleet incident's advice (given {given})"),
            _ => format!("same question as the advice given {given}; no new call"),
        },
        input_tokens: 0,
        output_tokens: 0,
        cost: String::new(),
        applied: false,
        applied_note: String::new(),
        outcome: AdviceOutcome::Pending,
        outcome_time: None,
        ..earlier.clone()
    }
}

/// The status after new advice: the previous one moves into the bounded history, which
/// keeps the newest answer of each question (so that dedup remembers as many questions as
/// the history holds), a model's answer before a copy of it.
pub fn push(s: &mut MonitoredValidatorStatus, advice: AdviceRecord) {
    if let Some(prev) = s.advice.take() {
        let model =
            |a: &AdviceRecord| matches!(a.source, AdviceSource::Model | AdviceSource::Batch);
        // A copy (reused, fleet, rules) of a question whose model answer is kept adds nothing.
        let covered = !model(&prev)
            && s.advice_history
                .iter()
                .any(|h| h.fingerprint == prev.fingerprint && model(h));
        if !covered {
            s.advice_history
                .retain(|h| h.fingerprint != prev.fingerprint);
            s.advice_history.push(prev);
        }
        let extra = s.advice_history.len().saturating_sub(HISTORY);
        s.advice_history.drain(..extra);
    }
    s.advice = Some(advice);
}

/// The status after the current advice's outcome is known.
pub fn settle_outcome(s: &mut MonitoredValidatorStatus, outcome: AdviceOutcome, now: Timestamp) {
    if let Some(a) = s.advice.as_mut() {
        a.outcome = outcome;
        a.outcome_time = Some(conditions::time(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        AdvisorMode, Condition, RemediationRecord, RemediationResult, RemediationStatus,
    };
    use crate::conditions::time;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn cond(type_: &str, status: &str, reason: &str, at: i64) -> Condition {
        let mut c = crate::conditions::found(type_, status, reason);
        c.last_transition_time = time(t(at));
        c
    }

    fn advisor(provider: AdvisorProvider, mode: AdvisorMode) -> Advisor {
        let mut spec = crate::api::MonitorPolicySpec::default();
        spec.advisor.provider = provider;
        spec.advisor.mode = mode;
        if provider != AdvisorProvider::Rules {
            spec.advisor.model = Some("m1".into());
            spec.advisor.api_key_secret_ref = Some(crate::api::SecretKeyRef {
                name: "k".into(),
                key: "k".into(),
            });
        }
        crate::policy::validate(&spec).unwrap().advisor
    }

    fn unreachable(at: i64) -> MonitoredValidatorStatus {
        MonitoredValidatorStatus {
            conditions: vec![
                cond("Ready", "False", "Unreachable", at),
                cond("Reachable", "False", "Timeout", at),
            ],
            ..Default::default()
        }
    }

    fn model_advice(fp: &str, at: i64) -> AdviceRecord {
        AdviceRecord {
            time: Some(time(t(at))),
            fingerprint: fp.into(),
            provider: AdvisorProvider::Anthropic,
            model: "m1".into(),
            source: AdviceSource::Model,
            action: "restart".into(),
            ..Default::default()
        }
    }

    fn run(s: &MonitoredValidatorStatus, a: &Advisor, now: i64) -> Step {
        step(&Input {
            target: "ns/v",
            status: s,
            advisor: a,
            probe_interval: Duration::from_secs(300),
            fleet_advice: None,
            now: t(now),
        })
    }

    fn who(s: &Step) -> Option<(&'static str, Moment)> {
        s.ask.as_ref().map(|a| {
            let w = match a.who {
                Who::Model => "model",
                Who::Reuse(_) => "reuse",
                Who::Fleet(_) => "fleet",
                Who::Rules(_) => "rules",
            };
            (w, a.moment)
        })
    }

    #[test]
    fn moments_and_who_answers() {
        use AdvisorMode as M;
        use AdvisorProvider as P;
        let hosted = advisor(P::Anthropic, M::OnIssue);
        let fresh = unreachable(100);
        let fp = run(&fresh, &hosted, 110).ask.unwrap().fingerprint;
        let with = |mut s: MonitoredValidatorStatus, a: AdviceRecord| {
            s.advice = Some(a);
            s
        };
        let failed_restart = |mut s: MonitoredValidatorStatus, at: i64| {
            s.remediation = Some(RemediationStatus {
                history: vec![RemediationRecord {
                    time: Some(time(t(at))),
                    result: RemediationResult::Succeeded,
                    recovered: Some(false),
                    ..Default::default()
                }],
                ..Default::default()
            });
            s
        };
        let mut escalated = with(unreachable(100), model_advice(&fp, 110));
        escalated
            .conditions
            .push(cond("Escalated", "True", "RemediationExhausted", 400));
        let healthy = MonitoredValidatorStatus {
            conditions: vec![cond("Ready", "True", "Healthy", 100)],
            ..Default::default()
        };
        type Row = (
            &'static str,
            MonitoredValidatorStatus,
            Advisor,
            i64,
            Option<(&'static str, Moment)>,
        );
        let cases: Vec<Row> = vec![
            ("healthy: nothing", healthy, hosted.clone(), 110, None),
            (
                "new problem: the model",
                fresh.clone(),
                hosted.clone(),
                110,
                Some(("model", Moment::NewProblem)),
            ),
            (
                "rules provider: the rules",
                fresh.clone(),
                advisor(P::Rules, M::OnIssue),
                110,
                Some(("rules", Moment::NewProblem)),
            ),
            (
                "cheap tier: the rules first",
                fresh.clone(),
                advisor(P::Anthropic, M::OnEscalation),
                110,
                Some(("rules", Moment::NewProblem)),
            ),
            (
                "same problem, advice stands: nobody",
                with(unreachable(100), model_advice(&fp, 110)),
                hosted.clone(),
                200,
                None,
            ),
            (
                "a new episode inside the TTL reuses",
                with(unreachable(500), model_advice(&fp, 110)),
                hosted.clone(),
                510,
                Some(("reuse", Moment::NewProblem)),
            ),
            (
                "a new episode past the TTL asks again",
                with(unreachable(700_000), model_advice(&fp, 110)),
                hosted.clone(),
                700_010,
                Some(("model", Moment::NewProblem)),
            ),
            (
                "other symptoms: a new question",
                with(unreachable(100), model_advice("other", 110)),
                hosted.clone(),
                200,
                Some(("model", Moment::NewProblem)),
            ),
            (
                "the restart did not fix it: the model",
                failed_restart(with(unreachable(100), model_advice(&fp, 110)), 150),
                hosted.clone(),
                400,
                Some(("model", Moment::NotFixed)),
            ),
            (
                "cheap tier asks when not fixed",
                failed_restart(with(unreachable(100), model_advice(&fp, 110)), 150),
                advisor(P::Anthropic, M::OnEscalation),
                400,
                Some(("model", Moment::NotFixed)),
            ),
            (
                "escalated: the model",
                escalated,
                hosted.clone(),
                410,
                Some(("model", Moment::Escalated)),
            ),
            (
                "everyProbe waits for the interval",
                with(unreachable(100), model_advice(&fp, 110)),
                advisor(P::Anthropic, M::EveryProbe),
                200,
                None,
            ),
            (
                "everyProbe asks every interval",
                with(unreachable(100), model_advice(&fp, 110)),
                advisor(P::Anthropic, M::EveryProbe),
                410,
                Some(("model", Moment::StillUnhealthy)),
            ),
        ];
        for (name, s, a, now, want) in cases {
            assert_eq!(who(&run(&s, &a, now)), want, "{name}");
        }
    }

    #[test]
    fn not_fixed_is_its_own_question_and_never_reused() {
        let a = advisor(AdvisorProvider::Anthropic, AdvisorMode::OnIssue);
        let first = run(&unreachable(100), &a, 110).ask.unwrap().fingerprint;
        let mut s = unreachable(100);
        s.advice = Some(model_advice(&first, 110));
        s.remediation = Some(RemediationStatus {
            history: vec![RemediationRecord {
                time: Some(time(t(150))),
                result: RemediationResult::Failed,
                ..Default::default()
            }],
            ..Default::default()
        });
        let ask = run(&s, &a, 400).ask.unwrap();
        assert_ne!(ask.fingerprint, first);
        assert_eq!(ask.who, Who::Model);
        // Once answered, the same moment is not asked again.
        s.advice = Some(model_advice(&ask.fingerprint, 401));
        assert_eq!(run(&s, &a, 500).ask, None);
    }

    #[test]
    fn fleet_members_take_the_fleets_advice_once() {
        let a = advisor(AdvisorProvider::Anthropic, AdvisorMode::OnIssue);
        let mut s = MonitoredValidatorStatus {
            conditions: vec![
                cond("Ready", "False", "ChainHalted", 100),
                cond("BlockProduction", "False", "ChainHalted", 100),
            ],
            ..Default::default()
        };
        let fleet = model_advice("fleet-fp", 105);
        let input = |s: &MonitoredValidatorStatus, f: Option<&AdviceRecord>| {
            step(&Input {
                target: "ns/v",
                status: s,
                advisor: &a,
                probe_interval: Duration::from_secs(300),
                fleet_advice: f,
                now: t(110),
            })
        };
        assert_eq!(input(&s, None).ask, None, "no call per node");
        let got = input(&s, Some(&fleet)).ask.unwrap();
        assert!(matches!(got.who, Who::Fleet(_)));
        s.advice = Some(reused(&fleet, AdviceSource::Fleet, t(110)));
        assert_eq!(input(&s, Some(&fleet)).ask, None, "copied once");
    }

    #[test]
    fn outcomes_come_due_after_outcome_after() {
        let a = advisor(AdvisorProvider::Rules, AdvisorMode::OnIssue);
        let mut s = unreachable(100);
        s.advice = Some(model_advice("x", 110));
        assert_eq!(run(&s, &a, 300).outcome, None, "10m not passed");
        assert_eq!(run(&s, &a, 711).outcome, Some(AdviceOutcome::NotRecovered));
        s.conditions = vec![cond("Ready", "True", "Healthy", 400)];
        assert_eq!(run(&s, &a, 711).outcome, Some(AdviceOutcome::Recovered));
        settle_outcome(&mut s, AdviceOutcome::Recovered, t(711));
        assert_eq!(run(&s, &a, 900).outcome, None, "recorded once");
    }

    #[test]
    fn applying_needs_auto_apply_confidence_and_an_allowed_action() {
        let mut a = advisor(AdvisorProvider::Anthropic, AdvisorMode::OnIssue);
        let d = |action, confidence| Decision {
            action,
            confidence,
            summary: String::new(),
            reasoning: String::new(),
            evidence: vec![],
        };
        use AdviceAction as A;
        assert_eq!(
            apply(&a, &d(A::Restart, 0.9), AdviceSource::Model).0,
            None,
            "autoApply off"
        );
        a.auto_apply = true;
        let cases = [
            (A::Restart, 0.9, AdviceSource::Model, Some(Effect::Restart)),
            (A::Restart, 0.5, AdviceSource::Model, None),
            (A::Restart, 0.9, AdviceSource::Rules, None),
            (A::Restart, 0.9, AdviceSource::Reused, None),
            (
                A::Escalate,
                0.9,
                AdviceSource::Batch,
                Some(Effect::Escalate),
            ),
            (A::Alert, 0.9, AdviceSource::Fleet, Some(Effect::Alert)),
            (A::Wait, 0.9, AdviceSource::Model, None),
        ];
        for (action, c, src, want) in cases {
            assert_eq!(
                apply(&a, &d(action, c), src).0,
                want,
                "{action:?} {c} {src:?}"
            );
        }
        a.allowed_actions = vec![A::Alert, A::Wait];
        assert_eq!(apply(&a, &d(A::Restart, 0.99), AdviceSource::Model).0, None);
    }

    #[test]
    fn history_keeps_the_newest_answer_of_each_question() {
        let mut s = MonitoredValidatorStatus::default();
        push(&mut s, model_advice("a", 1));
        push(&mut s, model_advice("b", 2));
        let copy = reused(&model_advice("a", 1), AdviceSource::Reused, t(3));
        push(&mut s, copy.clone());
        push(&mut s, model_advice("c", 4));
        // The copy of "a" is not kept beside the model's answer to "a".
        let fps: Vec<&str> = s
            .advice_history
            .iter()
            .map(|h| h.fingerprint.as_str())
            .collect();
        assert_eq!(fps, ["a", "b"]);
        push(&mut s, model_advice("b", 5));
        push(&mut s, model_advice("d", 6));
        let fps: Vec<&str> = s
            .advice_history
            .iter()
            .map(|h| h.fingerprint.as_str())
            .collect();
        assert_eq!(fps, ["a", "c", "b"], "one entry per question, newest last");
    }

    #[test]
    fn a_failed_restart_is_not_a_new_problem_even_when_the_symptoms_change() {
        let a = advisor(AdvisorProvider::Anthropic, AdvisorMode::OnIssue);
        let first = run(&unreachable(100), &a, 110).ask.unwrap().fingerprint;
        let mut s = unreachable(100);
        s.advice = Some(model_advice(&first, 110));
        s.remediation = Some(RemediationStatus {
            failed_attempts: 2,
            history: vec![RemediationRecord {
                time: Some(time(t(150))),
                result: RemediationResult::Succeeded,
                recovered: Some(false),
                ..Default::default()
            }],
            ..Default::default()
        });
        // Two failed attempts: the rules now class it as repeated failures.
        let ask = run(&s, &a, 400).ask.unwrap();
        assert_eq!(
            (ask.moment, ask.symptom),
            (Moment::NotFixed, Symptom::RepeatedFailures)
        );
    }

    #[test]
    fn history_is_bounded() {
        let mut s = MonitoredValidatorStatus::default();
        for i in 0..10 {
            push(&mut s, model_advice(&format!("fp{i}"), i));
        }
        assert_eq!(s.advice.as_ref().unwrap().fingerprint, "fp9");
        assert_eq!(s.advice_history.len(), HISTORY);
        assert_eq!(
            s.advice_history[0].fingerprint,
            format!("fp{}", 9 - HISTORY)
        );
        assert!(
            s.advice_history.iter().all(|h| h.reasoning.is_empty()),
            "kept small"
        );
    }
}
