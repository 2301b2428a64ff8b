//! Healing, run by the monitor after each verdict and when a person annotates a validator:
//! decide with the pure guards ([`crate::remediate::guard`]), record the decision in status
//! *before* acting (so a crash or a new leader never acts twice), act, record the outcome.
//!
//! Conditions on the validator: `Remediating` (True while an action runs or waits for the
//! node to recover; False with the guard's reason when one holds) and `Escalated`. The
//! policy shows `StormActive` while its storm guard holds every restart.

use super::{Entry, Key, Monitor, State, Transition, set_condition};
use crate::api::{MonitorPolicy, MonitoredValidatorStatus, RemediationAction, Target};
use crate::conditions::{self, Desired};
use crate::remediate::guard::{self, Decision, FleetState, Hold, Node, Outcome, Trigger};
use crate::remediate::{ssh, webhook, workload};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::Api;
use kube::runtime::events::{Event, EventType};
use std::sync::Arc;
use std::time::Duration;

/// Field manager of the policy's `StormActive` condition.
const STORM_MANAGER: &str = "vigil-storm";

/// The outcome of planning one healing step.
struct Plan {
    /// What to write and do.
    step: Step,
    /// The policy's storm state, when it was looked at: the hold, or none.
    storm: Option<Option<Hold>>,
    /// For the metrics.
    verdict: Verdict,
}

/// What the metrics count of a decision.
enum Verdict {
    /// A guard held the action back.
    Held(&'static str),
    /// The validator was escalated.
    Escalated,
    /// Anything else.
    Other,
}

/// What one healing step found to do, decided under the lock.
enum Step {
    /// Nothing to write.
    Nothing,
    /// Write this status (bookkeeping only).
    Write(Box<MonitoredValidatorStatus>, Vec<Transition>, Vec<Event>),
    /// Write this status, then perform the action.
    Act {
        /// The status with the decision recorded (written before the action runs).
        status: Box<MonitoredValidatorStatus>,
        transitions: Vec<Transition>,
        events: Vec<Event>,
        token: String,
        trigger: Trigger,
    },
}

fn ready_of(s: &MonitoredValidatorStatus) -> (Option<&str>, Option<Timestamp>) {
    match conditions::get(&s.conditions, "Ready") {
        Some(c) => (Some(c.status.as_str()), Some(c.last_transition_time.0)),
        None => (None, None),
    }
}

fn is_true(s: &MonitoredValidatorStatus, type_: &str) -> bool {
    conditions::get(&s.conditions, type_).is_some_and(|c| c.status == "True")
}

fn note(reason: &str, type_: EventType, note: String) -> Event {
    Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Remediate".into(),
        secondary: None,
    }
}

/// The fleet under `entry`'s policy as the guards see it (all entries of the policy).
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
        if ready_of(&e.status).0 == Some("False") || e.memory.failures > 0 {
            f.unhealthy += 1;
        }
        if name != &key.1 && (e.acting || is_true(&e.status, "Remediating")) {
            f.in_progress += 1;
        }
    }
    f.incident = st
        .incidents
        .iter()
        .any(|((ns, p, _), i)| ns == &key.0 && p == policy && i.kind.is_some());
    f
}

impl Monitor {
    /// One healing step for a validator.
    pub(super) async fn heal(self: &Arc<Self>, key: &Key) {
        let now = Timestamp::now();
        let mut storm_change = None;
        let (step, reference) = {
            let mut st = self.state.lock().expect("monitor state");
            let Some(e) = st.entries.get(key) else {
                return;
            };
            if e.blocked || e.acting {
                return;
            }
            let Plan {
                step,
                storm,
                verdict,
            } = plan(&st, key, e, now, self.dry_run);
            match verdict {
                Verdict::Held(reason) => self
                    .metrics
                    .remediations_blocked
                    .with_label_values(&[reason])
                    .inc(),
                Verdict::Escalated => self.metrics.escalations.inc(),
                Verdict::Other => {}
            }
            if let Some(active) = storm {
                let k = (key.0.clone(), e.config.policy.clone());
                let was = st
                    .storms
                    .insert(k.clone(), active.is_some())
                    .unwrap_or(false);
                if was != active.is_some() {
                    storm_change = Some((k, active));
                }
            }
            let Some(e) = st.entries.get_mut(key) else {
                return;
            };
            match &step {
                Step::Nothing => {}
                Step::Write(s, ..) => {
                    e.status = (**s).clone();
                    e.version += 1;
                }
                Step::Act { status, .. } => {
                    e.status = (**status).clone();
                    e.version += 1;
                    e.acting = true;
                }
            }
            (step, e.reference.clone())
        };
        if let Some((policy, active)) = storm_change {
            self.record_storm(&policy, active.as_ref()).await;
        }
        match step {
            Step::Nothing => {}
            Step::Write(_, transitions, events) => {
                if self.commit(key, transitions, &reference).await {
                    for ev in events {
                        self.event(&reference, ev).await;
                    }
                }
            }
            Step::Act {
                transitions,
                events,
                token,
                trigger,
                ..
            } => {
                // Write-ahead: the decision is durable before anything happens.
                if !self.commit(key, transitions, &reference).await {
                    self.with_entry(key, |e| e.acting = false);
                    return;
                }
                for ev in events {
                    self.event(&reference, ev).await;
                }
                let (me, key) = (self.clone(), key.clone());
                tokio::spawn(async move { me.perform(&key, &token, trigger, reference).await });
            }
        }
    }

    /// Runs the decided action and records how it ended.
    async fn perform(
        self: Arc<Self>,
        key: &Key,
        token: &str,
        trigger: Trigger,
        reference: ObjectReference,
    ) {
        let (config, status) = {
            let st = self.state.lock().expect("monitor state");
            match st.entries.get(key) {
                Some(e) => (e.config.clone(), e.status.clone()),
                None => return,
            }
        };
        let heal = &config.heal;
        let action = heal.rules.action;
        let reason = conditions::get(&status.conditions, "Ready")
            .map(|c| (c.reason.clone(), c.message.clone()))
            .unwrap_or_default();
        let outcome = if self.dry_run {
            Outcome::DryRun(format!(
                "--dry-run: would run {} (token {token}); nothing was done",
                guard::action_name(action)
            ))
        } else {
            self.run_action(key, heal, action, token, &trigger, &reason, &config)
                .await
        };
        let action_name = guard::action_name(action);
        self.metrics
            .remediations
            .with_label_values(&[action_name.as_str(), outcome.result().as_str()])
            .inc();
        let now = Timestamp::now();
        let transitions = {
            let mut st = self.state.lock().expect("monitor state");
            let Some(e) = st.entries.get_mut(key) else {
                return;
            };
            e.acting = false;
            let mut s = e.status.clone();
            let rem = s.remediation.clone().unwrap_or_default();
            s.remediation = Some(guard::finish(&rem, &outcome, now));
            let (st_, reason, message) = match &outcome {
                Outcome::Succeeded(m) => (
                    "True",
                    "WaitingForRecovery",
                    format!("{action_name}: {m}; waiting for the node to recover"),
                ),
                Outcome::Failed(m) => (
                    "False",
                    "ActionFailed",
                    format!("{action_name} failed: {m}"),
                ),
                Outcome::Blocked { message, .. } => (
                    "False",
                    "BlockedByDisruptionBudget",
                    format!("{message}; retried later, not counted as an attempt"),
                ),
                Outcome::DryRun(m) => ("False", "DryRun", m.clone()),
            };
            let mut transitions = Vec::new();
            let generation = e.config.generation;
            set_condition(
                &mut s,
                Desired {
                    type_: "Remediating",
                    status: st_,
                    reason,
                    message,
                },
                generation,
                &conditions::now(),
                &mut transitions,
            );
            e.status = s;
            e.version += 1;
            transitions
        };
        if self.commit(key, transitions, &reference).await {
            let (reason, type_) = match &outcome {
                Outcome::Succeeded(_) => ("RemediationSucceeded", EventType::Normal),
                Outcome::Failed(_) => ("RemediationFailed", EventType::Warning),
                Outcome::Blocked { .. } => ("EvictionBlocked", EventType::Warning),
                Outcome::DryRun(_) => ("DryRun", EventType::Normal),
            };
            self.event(
                &reference,
                note(
                    reason,
                    type_,
                    format!(
                        "{action_name} ({}, token {token}): {}",
                        trigger.as_str(),
                        outcome.message()
                    ),
                ),
            )
            .await;
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_action(
        &self,
        key: &Key,
        heal: &super::Heal,
        action: RemediationAction,
        token: &str,
        trigger: &Trigger,
        reason: &(String, String),
        config: &super::Config,
    ) -> Outcome {
        let retry = heal.rules.cooldown.min(Duration::from_secs(30));
        match (&heal.target, action) {
            (
                Some(Target {
                    workload: Some(w), ..
                }),
                RemediationAction::EvictPod
                | RemediationAction::DeletePod
                | RemediationAction::RolloutRestart,
            ) => workload::act(&self.actions, &key.0, w, action, token, retry).await,
            (
                Some(Target {
                    webhook: Some(w), ..
                }),
                RemediationAction::Webhook,
            ) => {
                let secret = match &w.signing_secret_ref {
                    Some(r) => match self.secret(&key.0, &r.name, &r.key).await {
                        Ok(s) => Some(s),
                        Err(e) => return Outcome::Failed(e),
                    },
                    None => None,
                };
                let timeout = w.timeout.parse().unwrap_or(Duration::from_secs(10));
                let payload = serde_json::json!({
                    "token": token,
                    "action": "restart",
                    "trigger": trigger.as_str(),
                    "validator": {"namespace": key.0, "name": key.1, "chain": config.chain.as_str()},
                    "endpoints": {"rpc": config.target.rpc, "metrics": config.target.metrics, "health": config.target.health},
                    "reason": reason.0,
                    "message": reason.1,
                    "time": Timestamp::now().to_string(),
                });
                webhook::call(
                    &self.http,
                    w.url.as_str(),
                    secret.as_deref(),
                    token,
                    &payload,
                    timeout,
                )
                .await
            }
            (Some(Target { ssh: Some(t), .. }), RemediationAction::Ssh) => {
                let Some((name, argv, timeout)) = &heal.ssh_command else {
                    return Outcome::Failed("remediation.sshCommand is not set".into());
                };
                let key_text = match self
                    .secret(
                        &key.0,
                        &t.private_key_secret_ref.name,
                        &t.private_key_secret_ref.key,
                    )
                    .await
                {
                    Ok(k) => String::from_utf8_lossy(&k).to_string(),
                    Err(e) => return Outcome::Failed(e),
                };
                let request = match trigger {
                    Trigger::Manual(t) => t.as_str(),
                    Trigger::Policy => "",
                };
                let values = [
                    ("request", request),
                    ("validator", key.1.as_str()),
                    ("namespace", key.0.as_str()),
                    ("chain", config.chain.as_str()),
                    ("host", t.host.as_str()),
                    ("reason", reason.0.as_str()),
                    ("token", token),
                ];
                let argv: Vec<String> = argv.iter().map(|a| substitute(a, &values)).collect();
                let req = ssh::SshRequest {
                    host: &t.host,
                    port: t.port,
                    user: &t.user,
                    private_key: &key_text,
                    host_key: &t.host_key,
                    argv: &argv,
                    connect_timeout: t.connect_timeout.parse().unwrap_or(Duration::from_secs(10)),
                    command_timeout: *timeout,
                };
                match ssh::run(&req).await {
                    Ok(o) if o.success() => Outcome::Succeeded(format!(
                        "ssh command {name} exited 0: {}",
                        o.stdout.trim()
                    )),
                    Ok(o) => Outcome::Failed(format!(
                        "ssh command {name} exited {}: {}",
                        o.exit_status
                            .map(|s| s.to_string())
                            .or(o.exit_signal.map(|s| format!("by signal {s}")))
                            .unwrap_or_else(|| "without a status".into()),
                        o.stderr.trim()
                    )),
                    Err(e) => Outcome::Failed(format!("ssh command {name}: {e}")),
                }
            }
            (_, a) => Outcome::Failed(format!(
                "remediation.action {} does not fit spec.target (workload actions need target.workload, ssh needs target.ssh, webhook needs target.webhook)",
                guard::action_name(a)
            )),
        }
    }

    /// One key of a Secret in `ns`.
    async fn secret(&self, ns: &str, name: &str, key: &str) -> Result<Vec<u8>, String> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let s = api
            .get(name)
            .await
            .map_err(|e| format!("cannot read Secret {name}: {e}"))?;
        s.data
            .and_then(|mut d| d.remove(key))
            .map(|b| b.0)
            .ok_or_else(|| format!("Secret {name} has no key {key:?}"))
    }

    /// Shows or clears `StormActive` on a policy, with an Event.
    async fn record_storm(&self, policy: &(String, String), hold: Option<&Hold>) {
        let (ns, name) = policy;
        let (status, reason, message) = match hold {
            Some(h) => ("True", h.reason(), h.message()),
            None => (
                "False",
                "FleetHealthy",
                "The storm guard no longer holds restarts".to_string(),
            ),
        };
        let mut conds = Vec::new();
        let api: Api<MonitorPolicy> = Api::namespaced(self.client.clone(), ns);
        let (generation, current) = match api.get_opt(name).await {
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
        conds.extend(current.into_iter().filter(|c| c.type_ == "StormActive"));
        conditions::set(
            &mut conds,
            Desired {
                type_: "StormActive",
                status,
                reason,
                message: message.clone(),
            },
            generation,
            &conditions::now(),
        );
        let status = serde_json::json!({ "conditions": conds });
        let Some(reference) = self
            .apply_policy_status(ns, name, STORM_MANAGER, status)
            .await
        else {
            return;
        };
        let (reason, type_) = if hold.is_some() {
            ("StormActive", EventType::Warning)
        } else {
            ("StormCleared", EventType::Normal)
        };
        self.event(&reference, note(reason, type_, message)).await;
    }
}

/// Replaces `{name}` placeholders in one argv element. The result stays one element: it is
/// quoted on its own before it reaches the remote shell.
pub fn substitute(arg: &str, values: &[(&str, &str)]) -> String {
    let mut out = arg.to_string();
    for (k, v) in values {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// A token unique per attempt: the validator's UID prefix, the attempt number, the time.
fn new_token(uid: Option<&str>, n: u32, now: Timestamp) -> String {
    let uid: String = uid
        .unwrap_or("vigil")
        .chars()
        .filter(|c| *c != '-')
        .take(8)
        .collect();
    format!("{uid}-{n}-{}", now.as_millisecond())
}

/// The pure part of one healing step: from what is known, what to write and whether to act,
/// and (when the node is unhealthy or a storm is on) the policy's storm state.
fn plan(st: &State, key: &Key, e: &Entry, now: Timestamp, dry_run: bool) -> Plan {
    if quiet(st, e) {
        return Plan {
            step: Step::Nothing,
            storm: None,
            verdict: Verdict::Other,
        };
    }
    let heal = &e.config.heal;
    let generation = e.config.generation;
    let time = conditions::now();
    let mut s = e.status.clone();
    let rem = s.remediation.clone().unwrap_or_default();
    let mut transitions = Vec::new();
    let mut events = Vec::new();
    let mut set = |s: &mut MonitoredValidatorStatus,
                   type_: &'static str,
                   status: &'static str,
                   reason: &'static str,
                   message: String| {
        set_condition(
            s,
            Desired {
                type_,
                status,
                reason,
                message,
            },
            generation,
            &time,
            &mut transitions,
        )
    };

    // An action this process did not start is in flight: a previous process stopped while
    // it ran. Close it, never repeat it.
    if let Some(closed) = guard::interrupted(&rem) {
        s.remediation = Some(closed);
        set(
            &mut s,
            "Remediating",
            "True",
            "Interrupted",
            "Vigil restarted while an action ran; it is not repeated and its cooldown stands"
                .into(),
        );
        return Plan {
            step: Step::Write(Box::new(s), transitions, events),
            storm: None,
            verdict: Verdict::Other,
        };
    }

    let escalated = is_true(&s, "Escalated");
    if let Some(ack) = e.ack_token.as_deref()
        && rem.last_ack_token.as_deref() != Some(ack)
    {
        s.remediation = Some(guard::acknowledge(&rem, ack));
        let msg = if escalated {
            format!("Acknowledged by a person (vigil.dev/ack={ack}); Vigil may act again")
        } else {
            format!("vigil.dev/ack={ack} noted; nothing was escalated")
        };
        set(&mut s, "Escalated", "False", "Acknowledged", msg.clone());
        events.push(note("Acknowledged", EventType::Normal, msg));
        return Plan {
            step: Step::Write(Box::new(s), transitions, events),
            storm: None,
            verdict: Verdict::Other,
        };
    }

    let (ready, since) = ready_of(&s);
    let node = Node {
        faulty: ready == Some("False"),
        healthy: ready == Some("True"),
        healthy_since: (ready == Some("True")).then_some(since).flatten(),
        suspended: heal.suspended,
        has_target: heal.target.is_some(),
        escalated,
    };
    let manual = e
        .restart_token
        .as_deref()
        .filter(|t| rem.last_restart_token.as_deref() != Some(*t));
    let storm_known = st
        .storms
        .get(&(key.0.clone(), e.config.policy.clone()))
        .copied()
        .unwrap_or(false);
    let need_fleet = node.faulty || manual.is_some() || storm_known;
    let fleet = if need_fleet {
        fleet_state(st, key, &e.config.policy)
    } else {
        FleetState::default()
    };
    let storm = need_fleet.then(|| {
        if fleet.incident {
            Some(Hold::FleetIncident)
        } else if fleet.storm(heal.rules.max_unhealthy_percent) && heal.rules.enabled {
            Some(Hold::Storm {
                unhealthy: fleet.unhealthy,
                members: fleet.members,
            })
        } else {
            None
        }
    });

    match guard::decide(&heal.rules, &node, &fleet, &rem, manual, now) {
        Decision::Nothing => {
            if let (true, Some(since)) = (node.healthy, node.healthy_since)
                && let Some(new) = guard::healthy(&rem, &heal.rules, since, now)
            {
                let recovered = new.history.last().and_then(|h| h.recovered) == Some(true)
                    && rem.history.last().and_then(|h| h.recovered).is_none();
                s.remediation = Some(new);
                if recovered {
                    set(
                        &mut s,
                        "Remediating",
                        "False",
                        "Recovered",
                        "The node is healthy again after the last action".into(),
                    );
                    events.push(note(
                        "Recovered",
                        EventType::Normal,
                        "The node recovered after the last remediation".into(),
                    ));
                }
            } else if node.healthy && is_true(&s, "Remediating") {
                set(
                    &mut s,
                    "Remediating",
                    "False",
                    "Recovered",
                    "The node is healthy".into(),
                );
            }
        }
        Decision::Hold(h) => {
            let reason = h.reason();
            let shown = conditions::get(&s.conditions, "Remediating").map(|c| c.reason.clone());
            // Waiting out the cooldown of an action keeps `Remediating=True` as the action
            // left it (what was done, and that Vigil waits for the node to recover).
            let waiting =
                matches!(h, Hold::InFlight | Hold::Cooldown(_)) && is_true(&s, "Remediating");
            if !waiting {
                set(&mut s, "Remediating", "False", reason, h.message());
            }
            if manual.is_some() && shown.as_deref() != Some(reason) {
                // The request is not forgotten: it is honoured once the hold ends.
                events.push(note(
                    "ManualRestartHeld",
                    EventType::Warning,
                    format!("vigil.dev/restart is held: {}", h.message()),
                ));
            }
            return Plan {
                step: finish_step(s, &e.status, transitions, events),
                storm,
                verdict: Verdict::Held(reason),
            };
        }
        Decision::Escalate(why) => {
            set(
                &mut s,
                "Escalated",
                "True",
                "RemediationExhausted",
                format!("{why}; a person must look (annotate vigil.dev/ack=<token> to clear)"),
            );
            set(
                &mut s,
                "Remediating",
                "False",
                "Escalated",
                "Escalated: Vigil no longer acts on this node".into(),
            );
            events.push(note("Escalated", EventType::Warning, why));
            return Plan {
                step: finish_step(s, &e.status, transitions, events),
                storm,
                verdict: Verdict::Escalated,
            };
        }
        Decision::Act { trigger } => {
            let token = new_token(e.reference.uid.as_deref(), rem.total_actions + 1, now);
            s.remediation = Some(guard::begin(&rem, &heal.rules, &trigger, &token, now));
            let action = guard::action_name(heal.rules.action);
            let what = if dry_run {
                "deciding (dry-run)"
            } else {
                "running"
            };
            set(
                &mut s,
                "Remediating",
                "True",
                "InFlight",
                format!("{action} {what} (token {token})"),
            );
            if let Trigger::Manual(t) = &trigger {
                events.push(note(
                    "ManualRestart",
                    EventType::Normal,
                    format!("vigil.dev/restart={t}: {action} requested by a person"),
                ));
            }
            return Plan {
                step: Step::Act {
                    status: Box::new(s),
                    transitions,
                    events,
                    token,
                    trigger,
                },
                storm,
                verdict: Verdict::Other,
            };
        }
    }
    Plan {
        step: finish_step(s, &e.status, transitions, events),
        storm,
        verdict: Verdict::Other,
    }
}

/// The common case, decided without copying anything: a node that is not unhealthy, with
/// no request of a person, nothing in flight, nothing to reset or judge, and no storm on.
fn quiet(st: &State, e: &Entry) -> bool {
    let s = &e.status;
    let rem_quiet = s.remediation.as_ref().is_none_or(|r| {
        r.in_flight.is_none()
            && r.attempts_in_window == 0
            && r.failed_attempts == 0
            && r.history.last().is_none_or(|h| h.recovered.is_some())
            && e.restart_token
                .as_deref()
                .is_none_or(|t| r.last_restart_token.as_deref() == Some(t))
            && e.ack_token
                .as_deref()
                .is_none_or(|t| r.last_ack_token.as_deref() == Some(t))
    });
    let no_requests =
        s.remediation.is_some() || (e.restart_token.is_none() && e.ack_token.is_none());
    rem_quiet
        && no_requests
        && ready_of(s).0 != Some("False")
        && !is_true(s, "Remediating")
        // Any storm on (of any policy): take the full path, which knows which policy.
        && !st.storms.values().any(|on| *on)
}

fn finish_step(
    s: MonitoredValidatorStatus,
    shown: &MonitoredValidatorStatus,
    transitions: Vec<Transition>,
    events: Vec<Event>,
) -> Step {
    if s == *shown && events.is_empty() {
        Step::Nothing
    } else {
        Step::Write(Box::new(s), transitions, events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_stay_one_argument() {
        let v = [("validator", "v1"), ("token", "$(touch /tmp/pwned); echo")];
        assert_eq!(substitute("restart-{validator}", &v), "restart-v1");
        let arg = substitute("--token={token}", &v);
        assert_eq!(arg, "--token=$(touch /tmp/pwned); echo");
        assert_eq!(
            ssh::quote_argv(&[arg]),
            "'--token=$(touch /tmp/pwned); echo'"
        );
        assert_eq!(substitute("{unknown}", &v), "{unknown}");
    }

    #[test]
    fn tokens_are_unique_per_attempt() {
        let t = Timestamp::from_second(1_700_000_000).unwrap();
        assert_eq!(
            new_token(Some("1234-5678-9abc"), 3, t),
            "12345678-3-1700000000000"
        );
        assert_ne!(new_token(Some("x"), 1, t), new_token(Some("x"), 2, t));
    }
}
