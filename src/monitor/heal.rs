//! Healing, run after each verdict and when a person annotates a validator: plan with the
//! pure [`plan`], record the decision in status *before* acting (fenced, so a stale leader
//! never acts), check leadership, act through [`remediate::execute`], record the outcome.
//! The policy shows `StormActive` while its storm guard holds every restart.

use super::{Key, Monitor, State};
use crate::api::MonitorPolicy;
use crate::conditions::{self, Desired, Status, kind, reason};
use crate::notice::{self, Notice, What};
use crate::remediate::guard::{self, ActionOutcome, FleetState, Hold};
use crate::remediate::plan::{self, Act, Input, Note, Storm, Verdict};
use crate::remediate::{self, Request, Subject};
use crate::status::Manager;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use std::sync::Arc;
use std::time::Duration;

/// The fleet under a policy as the guards see it (all entries of the policy).
/// Unhealthy are the nodes shown `Ready=False` and those failing their probes right now.
fn fleet_state(st: &State, key: &Key, policy: &str) -> FleetState {
    let mut f = FleetState::default();
    for ((ns, name), e) in &st.entries {
        if e.blocked || ns != &key.0 || e.config.policy != policy {
            continue;
        }
        f.members += 1;
        // A node failing its probes right now counts before its failure is confirmed: when
        // many nodes die at once, the first one confirmed must already see the storm.
        let shown = conditions::status_of(&e.status.conditions, kind::READY);
        if shown == Some(Status::False) || e.memory.failures > 0 {
            f.unhealthy += 1;
        }
        if name != &key.1
            && (e.acting || conditions::is_true(&e.status.conditions, kind::REMEDIATING))
        {
            f.in_progress += 1;
        }
    }
    f.incident = st
        .incidents
        .iter()
        .any(|((ns, p, _), i)| ns == &key.0 && p == policy && i.kind.is_some());
    f
}

/// What a note is, for the notice stream.
fn what_of(n: &Note) -> What {
    match n.reason {
        reason::ACKNOWLEDGED => What::Acknowledged,
        reason::RECOVERED => What::Recovered,
        reason::INTERRUPTED => What::RemediationInterrupted,
        "Escalated" => What::Escalated,
        "ManualRestart" => What::ManualRestart,
        "ManualRestartHeld" => What::RemediationHeld,
        "RemediationSucceeded" => What::RemediationSucceeded,
        "RemediationFailed" => What::RemediationFailed,
        "EvictionBlocked" => What::RemediationBlocked,
        reason::DRY_RUN => What::RemediationDryRun,
        _ => What::RemediationDecided,
    }
}

/// What a healing plan changes in a validator's status, as it was before: restored when
/// the plan could not be recorded.
struct Undo {
    remediation: Option<crate::api::RemediationStatus>,
    conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
}

impl Undo {
    /// The conditions healing owns.
    const KINDS: [&'static str; 2] = [kind::REMEDIATING, kind::ESCALATED];

    fn of(status: &crate::api::MonitoredValidatorStatus) -> Undo {
        Undo {
            remediation: status.remediation.clone(),
            conditions: status
                .conditions
                .iter()
                .filter(|c| Self::KINDS.contains(&c.type_.as_str()))
                .cloned()
                .collect(),
        }
    }

    fn restore(self, status: &mut crate::api::MonitoredValidatorStatus) {
        status.remediation = self.remediation;
        status
            .conditions
            .retain(|c| !Self::KINDS.contains(&c.type_.as_str()));
        status.conditions.extend(self.conditions);
    }
}

impl Monitor {
    fn tell_notes(&self, reference: &ObjectReference, notes: Vec<Note>) {
        for n in notes {
            self.tell(
                Notice::new(reference.clone(), what_of(&n), n.reason, n.message)
                    .warning(n.warning)
                    .action("Remediate"),
            );
        }
    }

    /// One healing step for a validator.
    pub(super) async fn heal(self: &Arc<Self>, key: &Key) {
        let now = Timestamp::now();
        let mut storm_change = None;
        let mut undo = None;
        let (p, reference) = {
            let mut st = self.state.lock().expect("monitor state");
            let Some(e) = st.entries.get(key) else {
                return;
            };
            if e.blocked || e.acting {
                return;
            }
            let policy = (key.0.clone(), e.config.policy.clone());
            let storm_on = st.storms.get(&policy).copied().unwrap_or(false);
            let mut input = Input {
                status: &e.status,
                rules: &e.config.heal.rules,
                suspended: e.config.heal.suspended,
                has_target: e.config.heal.target.is_some(),
                uid: e.uid(),
                generation: e.config.generation,
                restart: e.restart_token.as_deref(),
                ack: e.ack_token.as_deref(),
                advice: e.advice.as_ref().map(|(t, esc)| (t.as_str(), *esc)),
                fleet: None,
                now,
                dry_run: self.dry_run,
            };
            if plan::quiet(&input) && !storm_on {
                return;
            }
            let fleet = plan::needs_fleet(&input, storm_on)
                .then(|| fleet_state(&st, key, &e.config.policy));
            input.fleet = fleet.as_ref();
            let p = plan::plan(&input);
            match p.verdict {
                Verdict::Held(reason) => self
                    .metrics
                    .remediations_blocked
                    .with_label_values(&[reason])
                    .inc(),
                // Counted once it is written (a lost write plans it again).
                Verdict::Escalated | Verdict::Other => {}
            }
            if p.storm != Storm::Unseen {
                let hold = match &p.storm {
                    Storm::Holding(h) => Some(h.clone()),
                    _ => None,
                };
                let on = hold.is_some();
                let was = st.storms.insert(policy.clone(), on).unwrap_or(false);
                if was != on {
                    storm_change = Some((policy, hold));
                }
            }
            let Some(e) = st.entries.get_mut(key) else {
                return;
            };
            if let Some(s) = &p.status {
                undo = Some(Undo::of(&e.status));
                e.status = s.clone();
                e.version += 1;
                e.acting = p.act.is_some();
            }
            (p, e.reference.clone())
        };
        if let Some((policy, active)) = storm_change {
            self.record_storm(&policy, active.as_ref()).await;
        }
        if p.status.is_none() {
            return;
        }
        // Write-ahead: the decision is durable (and fenced) before anything happens.
        if !self.commit(key, p.transitions, "Remediate").await {
            self.with_entry(key, |e| {
                e.acting = false;
                // A conflict reloaded the durable status (written == version): keep it.
                // Otherwise the write failed (API server gone or slow): what was not
                // recorded was not decided, so the planned attempt is forgotten. Kept, it
                // would be planned on as an attempt that never ran, closed as interrupted
                // and written once the API server is back: attempts used up and an
                // escalation without a single action.
                if e.written != e.version
                    && let Some(undo) = undo
                {
                    undo.restore(&mut e.status);
                    e.version += 1;
                }
            });
            return;
        }
        if p.verdict == Verdict::Escalated {
            self.metrics.escalations.inc();
        }
        self.tell_notes(&reference, p.notes);
        if let Some(act) = p.act {
            let (me, key) = (self.clone(), key.clone());
            self.tasks
                .spawn(async move { me.perform(&key, act, reference).await });
        }
    }

    /// Runs the decided action and records how it ended.
    async fn perform(self: Arc<Self>, key: &Key, act: Act, reference: ObjectReference) {
        let (config, status) = {
            let st = self.state.lock().expect("monitor state");
            match st.entries.get(key) {
                Some(e) => (e.config.clone(), e.status.clone()),
                None => return,
            }
        };
        let heal = &config.heal;
        let action = guard::action_name(heal.rules.action);
        self.tell(
            Notice::new(
                reference.clone(),
                What::RemediationDecided,
                reason::IN_FLIGHT,
                format!("{action} ({}, token {})", act.trigger.as_str(), act.token),
            )
            .action("Remediate"),
        );
        // Leadership is checked right before acting: a process that lost the lease leaves
        // the record in flight, and the new leader closes it as interrupted.
        if !*self.leader.borrow() {
            tracing::warn!(namespace = %key.0, name = %key.1, "not the leader any more; not acting");
            return;
        }
        let why = conditions::get(&status.conditions, kind::READY)
            .map(|c| (c.reason.clone(), c.message.clone()))
            .unwrap_or_default();
        let outcome = match (&heal.target, self.dry_run) {
            (_, true) => ActionOutcome::DryRun(format!(
                "--dry-run: would run {action} (token {}); nothing was done",
                act.token
            )),
            (None, false) => ActionOutcome::Failed("spec.target is not set".into()),
            (Some(target), false) => {
                let t = &config.target;
                let endpoint =
                    |u: &Option<crate::probe::Url>| u.as_ref().map(|u| u.as_str().to_string());
                let endpoints = [endpoint(&t.rpc), endpoint(&t.metrics), endpoint(&t.health)];
                let req = Request {
                    action: heal.rules.action,
                    token: &act.token,
                    trigger: &act.trigger,
                    subject: Subject {
                        namespace: &key.0,
                        name: &key.1,
                        chain: config.chain,
                        endpoints: endpoints.each_ref().map(|e| e.as_deref()),
                        reason: (&why.0, &why.1),
                    },
                    ssh_command: heal.ssh_command.as_ref(),
                    allow_overlap: heal.allow_overlap,
                    retry: heal.rules.cooldown.min(Duration::from_secs(30)),
                };
                remediate::execute(&req, target, &self.deps).await.into()
            }
        };
        self.metrics
            .remediations
            .with_label_values(&[action.as_str(), outcome.result().as_str()])
            .inc();
        let now = Timestamp::now();
        let (transitions, n) = {
            let mut st = self.state.lock().expect("monitor state");
            let Some(e) = st.entries.get_mut(key) else {
                return;
            };
            e.acting = false;
            let (s, transitions, n) =
                plan::outcome(&e.status, &outcome, &act, &action, e.config.generation, now);
            e.status = s;
            e.version += 1;
            (transitions, n)
        };
        if self.commit(key, transitions, "Remediate").await {
            self.tell_notes(&reference, vec![n]);
        }
    }

    /// Records every action still running at a stop as interrupted: it is never repeated,
    /// and its cooldown stands.
    pub(super) async fn interrupt_actions(&self) {
        let keys: Vec<Key> = {
            let mut st = self.state.lock().expect("monitor state");
            let mut keys = Vec::new();
            for (k, e) in st.entries.iter_mut() {
                let rem = e.status.remediation.clone().unwrap_or_default();
                if !e.acting {
                    continue;
                }
                if let Some(closed) = guard::interrupted(&rem) {
                    e.status.remediation = Some(closed);
                    conditions::set(
                        &mut e.status.conditions,
                        Desired::new(
                            kind::REMEDIATING,
                            Status::True,
                            reason::INTERRUPTED,
                            "Vigil stopped while this action ran; it is not repeated and its cooldown stands",
                        ),
                        e.config.generation,
                        &conditions::now(),
                    );
                    e.version += 1;
                    keys.push(k.clone());
                }
            }
            keys
        };
        for k in keys {
            self.commit(&k, Vec::new(), "Remediate").await;
        }
    }

    /// Shows or clears `StormActive` on a policy, and tells of it.
    async fn record_storm(&self, policy: &(String, String), hold: Option<&Hold>) {
        let (ns, name) = policy;
        let (status, why, message) = match hold {
            Some(h) => (Status::True, h.reason(), h.message()),
            None => (
                Status::False,
                reason::FLEET_HEALTHY,
                "The storm guard no longer holds restarts".to_string(),
            ),
        };
        let (generation, current) = match self.writer.read::<MonitorPolicy>(ns, name).await {
            Ok(Some(p)) => (
                p.metadata.generation,
                p.status.map(|s| s.conditions).unwrap_or_default(),
            ),
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "reading policy for the storm guard failed");
                return;
            }
        };
        let mut conds: Vec<_> = current
            .into_iter()
            .filter(|c| c.type_ == kind::STORM_ACTIVE)
            .collect();
        conditions::set(
            &mut conds,
            Desired::new(kind::STORM_ACTIVE, status, why, message.clone()),
            generation,
            &conditions::now(),
        );
        let patch = serde_json::json!({ "conditions": conds });
        if let Err(e) = self
            .writer
            .apply::<MonitorPolicy, _>(ns, name, Manager::Storm, &patch, None)
            .await
        {
            tracing::warn!(policy = %name, error = %e, "writing StormActive failed");
            return;
        }
        let (what, reason) = if hold.is_some() {
            (What::StormActive, "StormActive")
        } else {
            (What::StormCleared, "StormCleared")
        };
        self.tell(
            Notice::new(
                notice::reference::<MonitorPolicy>(ns, name),
                what,
                reason,
                message,
            )
            .warning(hold.is_some())
            .action("Remediate"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{MonitoredValidatorStatus, RemediationStatus};

    #[test]
    fn an_unrecorded_plan_is_undone_and_nothing_else() {
        let now = conditions::now();
        let mut before = MonitoredValidatorStatus::default();
        for (k, s, r) in [
            (kind::READY, Status::False, "ConnectionFailed"),
            (kind::REMEDIATING, Status::False, "Cooldown"),
        ] {
            conditions::set(
                &mut before.conditions,
                Desired::new(k, s, r, "m"),
                Some(1),
                &now,
            );
        }
        before.remediation = Some(RemediationStatus {
            total_actions: 1,
            ..Default::default()
        });
        let undo = Undo::of(&before);
        // The plan: a second attempt in flight, escalated; meanwhile a probe changed Ready.
        let mut planned = before.clone();
        planned.remediation = Some(RemediationStatus {
            total_actions: 2,
            attempts_in_window: 2,
            ..Default::default()
        });
        for (k, s, r) in [
            (kind::REMEDIATING, Status::True, "InFlight"),
            (kind::ESCALATED, Status::True, "RemediationExhausted"),
            (kind::READY, Status::False, "Timeout"),
        ] {
            conditions::set(
                &mut planned.conditions,
                Desired::new(k, s, r, "m"),
                Some(1),
                &now,
            );
        }
        undo.restore(&mut planned);
        assert_eq!(planned.remediation, before.remediation);
        let reason = |k| conditions::get(&planned.conditions, k).map(|c| c.reason.clone());
        assert_eq!(reason(kind::REMEDIATING).as_deref(), Some("Cooldown"));
        assert_eq!(reason(kind::ESCALATED), None);
        assert_eq!(
            reason(kind::READY).as_deref(),
            Some("Timeout"),
            "not healing's to undo"
        );
    }
}
