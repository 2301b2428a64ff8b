//! The alert decision, pure: given the alert records of the objects under one policy (from
//! their status), what fires now and the policy's rules, which notifications are due on
//! which channels, and what each record becomes. The records are written back to status
//! before anything is sent, so a restart neither repeats a notification inside its repeat
//! interval nor forgets a resolve.
//!
//! - A new alert waits `groupWait`; every alert of the same name joining in that time goes
//!   out with it (one message per group and channel).
//! - While it fires, each channel is notified again every repeat interval (Alertmanager
//!   channels every `refresh`, with an `endsAt` ahead of the next refresh).
//! - An alert that clears waits `flapDamping`; firing again in that time continues it (no
//!   resolve, no new notification). After it, the resolve goes to the channels that were
//!   told (Alertmanager always; the others when `sendResolved`).
//! - An alert that clears before anyone was told is dropped silently after the damping.
//! - Events (a remediation's outcome, an archive verified) are told once and never resolve.

use super::catalog::{self, Firing, Kind};
use crate::api::{AlertName, AlertRecord, ChannelSent, Severity};
use crate::policy::Alerts;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

/// How long a record's message may be in status.
pub const MESSAGE_LIMIT: usize = 256;

/// The timing of decisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// A new alert's wait before its first notification.
    pub group_wait: Duration,
    /// How long a cleared alert must stay clear before it resolves.
    pub flap_damping: Duration,
    /// How often Alertmanager channels are re-posted while an alert is active.
    pub refresh: Duration,
    /// How long a resolved record stays in status.
    pub retention: Duration,
}

impl Timing {
    /// The timing of a validated policy's alerts.
    pub fn of(alerts: &Alerts) -> Timing {
        Timing {
            group_wait: alerts.group_wait,
            flap_damping: alerts.flap_damping,
            refresh: REFRESH,
            retention: RETENTION,
        }
    }
}

/// How often active alerts are re-posted to Alertmanager.
pub const REFRESH: Duration = Duration::from_secs(60);
/// How long a resolved record stays in status.
pub const RETENTION: Duration = Duration::from_secs(3600);

/// The channel every alert goes to whatever the rules: the audit log (`vigil::audit`).
pub const LOG_CHANNEL: &str = "log";

/// How a channel takes alerts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// The audit log: always told, resolves included.
    Log,
    /// Alertmanager: refreshed while active, always told of the resolve.
    Alertmanager,
    /// Slack, webhook, email: repeated at the rule's interval, resolves when asked.
    Notify,
}

/// One channel an alert goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Channel name.
    pub channel: String,
    /// Time between two notifications while the alert is active.
    pub repeat: Duration,
    /// How the channel takes alerts.
    pub via: Via,
}

/// The channels an alert goes to: the audit log, and the channels of the policy's rules
/// that match (a channel named by several matching rules is notified at the shortest of
/// their repeat intervals).
pub fn routes(
    alerts: &Alerts,
    name: AlertName,
    severity: Severity,
    refresh: Duration,
) -> Vec<Route> {
    let info = catalog::info(name);
    let mut out = vec![Route {
        channel: LOG_CHANNEL.to_string(),
        repeat: info.repeat,
        via: Via::Log,
    }];
    for rule in &alerts.rules {
        let matches = if rule.alerts.is_empty() {
            !info.opt_in
        } else {
            rule.alerts.contains(&name)
        };
        if !matches || severity < rule.min_severity {
            continue;
        }
        for ch in &rule.channels {
            let Some(spec) = alerts.channels.iter().find(|c| &c.name == ch) else {
                continue;
            };
            let is_am = spec.alertmanager.is_some();
            let repeat = if is_am {
                refresh
            } else {
                rule.repeat_interval.unwrap_or(info.repeat)
            };
            match out.iter_mut().find(|r| &r.channel == ch) {
                Some(r) => r.repeat = r.repeat.min(repeat),
                None => out.push(Route {
                    channel: ch.clone(),
                    repeat,
                    via: if is_am {
                        Via::Alertmanager
                    } else {
                        Via::Notify
                    },
                }),
            }
        }
    }
    out
}

/// The stable identity of an alert: a hash of what it is about.
pub fn fingerprint(
    namespace: &str,
    kind: &str,
    object: &str,
    name: AlertName,
    subject: &str,
) -> String {
    crate::text::fingerprint(&[namespace, kind, object, catalog::name_str(name), subject])
}

/// One object's alerts as the decision sees them.
#[derive(Clone, Debug, Default)]
pub struct Object<'a> {
    /// Its alert records, as in its status.
    pub records: &'a [AlertRecord],
    /// What fires now (state alerts from its status, events from notices), each with its
    /// fingerprint.
    pub firing: Vec<(String, Firing)>,
    /// Events read from its status, each with its fingerprint and which event it is (an
    /// action's token): unlike a notice's, one is read again every round, so it fires only
    /// while the record of its fingerprint names another (or there is none). Only the
    /// newest of a fingerprint is given, and no older than a told record is kept (the
    /// retention).
    pub events: Vec<(String, Firing, String)>,
}

/// Firing or resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// The alert is active.
    Firing,
    /// The alert ended.
    Resolved,
}

/// One notification due now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Send {
    /// Index of the object in the decision's input.
    pub object: usize,
    /// Channel name.
    pub channel: String,
    /// The alert's fingerprint.
    pub fingerprint: String,
    /// Firing or resolved.
    pub state: State,
    /// The alert (for a resolve, as recorded).
    pub alert: Firing,
    /// When it started.
    pub since: Timestamp,
    /// A repeat of an earlier notification.
    pub repeat: bool,
    /// When Vigil decided to tell it: with the fingerprint and the state, the
    /// notification's identity (a redelivery after a restart keeps it).
    pub told_at: Timestamp,
}

/// What to do now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Each object's records as they become (in input order).
    pub records: Vec<Vec<AlertRecord>>,
    /// Notifications due now.
    pub sends: Vec<Send>,
}

fn ts(t: &Option<Time>) -> Option<Timestamp> {
    t.as_ref().map(|t| t.0)
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    let d = jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX);
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

fn cap(message: &str) -> String {
    crate::text::cap(message, MESSAGE_LIMIT)
}

fn record_of(fp: &str, f: &Firing, now: Timestamp) -> AlertRecord {
    AlertRecord {
        fingerprint: fp.to_string(),
        name: f.name,
        subject: f.subject.clone(),
        severity: f.severity,
        message: cap(&f.detail),
        event: String::new(),
        firing_since: Some(Time(now)),
        cleared_at: None,
        resolved_at: None,
        sent: Vec::new(),
    }
}

/// The alert a record stands for (for resolves, and events told later than they came).
fn firing_of(r: &AlertRecord) -> Firing {
    Firing {
        name: r.name,
        subject: r.subject.clone(),
        severity: r.severity,
        detail: r.message.clone(),
        members: Vec::new(),
    }
}

/// `records` with the notifications a channel is done with (`done(fingerprint, channel,
/// toldAt)`: delivered, or given up after its retries) no longer pending; None when none
/// of theirs was.
pub fn confirm(
    records: &[AlertRecord],
    done: impl Fn(&str, &str, Timestamp) -> bool,
) -> Option<Vec<AlertRecord>> {
    let mut out = records.to_vec();
    let mut changed = false;
    for r in &mut out {
        for s in r.sent.iter_mut().filter(|s| s.pending) {
            if done(&r.fingerprint, &s.channel, s.at.0) {
                s.pending = false;
                changed = true;
            }
        }
    }
    changed.then_some(out)
}

/// Notifications handed to a channel and not yet finished there, by (fingerprint,
/// channel): not sent again while they are.
pub type InFlight = HashSet<(String, String)>;

/// Decides what to notify now. A notification recorded as told but still `pending` (its
/// channel never confirmed it: the process that decided it ended first) and not
/// `in_flight` here is sent again, as it was.
pub fn decide(
    objects: &[Object<'_>],
    alerts: &Alerts,
    timing: &Timing,
    now: Timestamp,
    in_flight: &InFlight,
) -> Decision {
    // Status keeps whole seconds (metav1.Time): decide on what the records will hold, so a
    // notification's toldAt is the same in its first delivery, in its record and after a
    // restart.
    let now = Timestamp::from_second(now.as_second()).unwrap_or(now);
    let route = |f: &Firing| routes(alerts, f.name, f.severity, timing.refresh);
    // What fires now per object: state alerts as given, plus events recorded and not yet
    // told everywhere. A resolved record of the same fingerprint starts over.
    let active: Vec<Vec<(String, Firing, Option<&AlertRecord>)>> = objects
        .iter()
        .map(|o| {
            let mut v: Vec<_> = o
                .firing
                .iter()
                .map(|(fp, f)| {
                    let r = o
                        .records
                        .iter()
                        .find(|r| &r.fingerprint == fp && r.resolved_at.is_none());
                    (fp.clone(), f.clone(), r)
                })
                .collect();
            for (fp, f, which) in &o.events {
                let record = o.records.iter().find(|r| &r.fingerprint == fp);
                // Told when its record names it; an earlier one still on its way goes first
                // (below), and this one starts a new record after it.
                let told = record.is_some_and(|r| r.resolved_at.is_none() || &r.event == which);
                if !told && !v.iter().any(|(x, ..)| x == fp) {
                    v.push((fp.clone(), f.clone(), None));
                }
            }
            for r in o.records {
                let pending_event =
                    catalog::info(r.name).kind == Kind::Event && r.resolved_at.is_none();
                if pending_event && !v.iter().any(|(fp, ..)| fp == &r.fingerprint) {
                    v.push((r.fingerprint.clone(), firing_of(r), Some(r)));
                }
            }
            v
        })
        .collect();

    // A group (channel, alert) is due when its oldest member not yet told has waited
    // `groupWait`; then every member not yet told goes with it.
    let mut oldest: HashMap<(String, AlertName), Timestamp> = HashMap::new();
    for v in &active {
        for (_, f, r) in v {
            let since = r.and_then(|r| ts(&r.firing_since)).unwrap_or(now);
            for rt in route(f) {
                let told = r.is_some_and(|r| r.sent.iter().any(|s| s.channel == rt.channel));
                if !told {
                    let e = oldest.entry((rt.channel, f.name)).or_insert(since);
                    *e = (*e).min(since);
                }
            }
        }
    }
    let due = |channel: &str, name: AlertName| {
        oldest
            .get(&(channel.to_string(), name))
            .is_some_and(|t| after(*t, timing.group_wait) <= now)
    };

    let mut decision = Decision::default();
    for (i, (o, v)) in objects.iter().zip(&active).enumerate() {
        let mut out: Vec<AlertRecord> = Vec::new();
        let first = decision.sends.len();
        let mut send =
            |rec: &AlertRecord, alert: &Firing, channel: &str, state, repeat, told_at| {
                decision.sends.push(Send {
                    object: i,
                    channel: channel.to_string(),
                    fingerprint: rec.fingerprint.clone(),
                    state,
                    alert: alert.clone(),
                    since: ts(&rec.firing_since).unwrap_or(now),
                    repeat,
                    told_at,
                });
            };
        // Firing now.
        for (fp, f, r) in v {
            let info = catalog::info(f.name);
            let routes = route(f);
            let mut rec = match r {
                Some(r) => (*r).clone(),
                None => {
                    let mut rec = record_of(fp, f, now);
                    if let Some((.., which)) = o.events.iter().find(|(x, ..)| x == fp) {
                        rec.event = which.clone();
                    }
                    rec
                }
            };
            rec.cleared_at = None;
            rec.severity = f.severity;
            rec.message = cap(&f.detail);
            rec.sent
                .retain(|s| routes.iter().any(|rt| rt.channel == s.channel));
            for rt in &routes {
                match rec.sent.iter().position(|s| s.channel == rt.channel) {
                    None if due(&rt.channel, f.name) => {
                        send(&rec, f, &rt.channel, State::Firing, false, now);
                        rec.sent.push(ChannelSent {
                            channel: rt.channel.clone(),
                            at: Time(now),
                            pending: rt.via != Via::Log,
                        });
                    }
                    None => {}
                    Some(k) => {
                        let at = rec.sent[k].at.0;
                        if info.kind == Kind::State && after(at, rt.repeat) <= now {
                            send(&rec, f, &rt.channel, State::Firing, true, now);
                            rec.sent[k].at = Time(now);
                            rec.sent[k].pending = rt.via != Via::Log;
                        }
                    }
                }
            }
            if info.kind == Kind::Event
                && routes
                    .iter()
                    .all(|rt| rec.sent.iter().any(|s| s.channel == rt.channel))
            {
                rec.resolved_at = Some(Time(now)); // told everywhere: done
            }
            out.push(rec);
        }
        // Not firing now.
        for r in o.records {
            // A new episode of the same alert replaces the old record, unless the old one's
            // resolve is still to be delivered: it stays until then (and goes first, as the
            // new one waits out its group wait).
            let undelivered = r.resolved_at.is_some() && r.sent.iter().any(|s| s.pending);
            if !undelivered && out.iter().any(|x| x.fingerprint == r.fingerprint) {
                continue;
            }
            if let Some(resolved) = ts(&r.resolved_at) {
                if after(resolved, timing.retention) > now {
                    out.push(r.clone());
                }
                continue;
            }
            let mut rec = r.clone();
            let cleared = rec.cleared_at.get_or_insert(Time(now)).0;
            let alert = firing_of(&rec);
            let routes = route(&alert);
            if after(cleared, timing.flap_damping) <= now {
                if rec.sent.is_empty() {
                    continue; // cleared before anyone was told: nothing to resolve
                }
                for k in 0..rec.sent.len() {
                    if let Some(rt) = routes.iter().find(|rt| rt.channel == rec.sent[k].channel)
                        && (alerts.send_resolved || rt.via != Via::Notify)
                    {
                        send(&rec, &alert, &rt.channel, State::Resolved, false, now);
                        rec.sent[k].at = Time(now);
                        rec.sent[k].pending = rt.via != Via::Log;
                    } else {
                        rec.sent[k].pending = false; // no resolve goes there
                    }
                }
                rec.resolved_at = Some(Time(now));
            } else {
                // Damping: Alertmanager must not expire it meanwhile.
                for s in rec.sent.iter_mut() {
                    if let Some(rt) = routes.iter().find(|rt| rt.channel == s.channel)
                        && rt.via == Via::Alertmanager
                        && after(s.at.0, rt.repeat) <= now
                    {
                        s.at = Time(now);
                        s.pending = true;
                        send(r, &alert, &rt.channel, State::Firing, true, now);
                    }
                }
            }
            out.push(rec);
        }
        // Told but never confirmed (the deciding process ended first): again, as it was.
        for rec in &out {
            let info = catalog::info(rec.name);
            let alert = firing_of(rec);
            let state = if info.kind == Kind::State && rec.resolved_at.is_some() {
                State::Resolved
            } else {
                State::Firing
            };
            for s in rec.sent.iter().filter(|s| s.pending) {
                let key = (rec.fingerprint.clone(), s.channel.clone());
                let decided_now = decision.sends[first..]
                    .iter()
                    .any(|x| x.fingerprint == key.0 && x.channel == key.1);
                let routed = route(&alert).iter().any(|rt| rt.channel == s.channel);
                if !decided_now && routed && !in_flight.contains(&key) {
                    decision.sends.push(Send {
                        object: i,
                        channel: key.1,
                        fingerprint: key.0,
                        state,
                        alert: alert.clone(),
                        since: ts(&rec.firing_since).unwrap_or(now),
                        repeat: true,
                        told_at: s.at.0,
                    });
                }
            }
        }
        // Status order: as before, new records last.
        let pos: BTreeMap<&str, usize> = o
            .records
            .iter()
            .enumerate()
            .map(|(k, r)| (r.fingerprint.as_str(), k))
            .collect();
        out.sort_by_key(|r| {
            pos.get(r.fingerprint.as_str())
                .copied()
                .unwrap_or(usize::MAX)
        });
        decision.records.push(out);
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AlertChannel, AlertmanagerChannel, HttpUrl, SecretKeyRef, SlackChannel};
    use crate::policy::AlertRule;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }
    fn channel(name: &str, am: bool) -> AlertChannel {
        AlertChannel {
            name: name.into(),
            alertmanager: am.then(|| AlertmanagerChannel {
                urls: vec![HttpUrl("http://127.0.0.1:9093".into())],
            }),
            slack: (!am).then(|| SlackChannel {
                webhook_url_secret_ref: SecretKeyRef {
                    name: "s".into(),
                    key: "url".into(),
                },
            }),
            webhook: None,
            email: None,
            max_per_minute: 20,
        }
    }
    fn alerts(rules: Vec<AlertRule>) -> Alerts {
        Alerts {
            channels: vec![channel("am", true), channel("slack", false)],
            rules,
            send_resolved: true,
            group_wait: Duration::from_secs(10),
            flap_damping: Duration::from_secs(120),
        }
    }
    fn rule(
        names: &[AlertName],
        min: Severity,
        channels: &[&str],
        repeat: Option<u64>,
    ) -> AlertRule {
        AlertRule {
            alerts: names.to_vec(),
            min_severity: min,
            channels: channels.iter().map(|c| c.to_string()).collect(),
            repeat_interval: repeat.map(Duration::from_secs),
        }
    }
    fn default_rule() -> Vec<AlertRule> {
        vec![rule(&[], Severity::Warning, &["am", "slack"], None)]
    }
    fn timing() -> Timing {
        Timing::of(&alerts(vec![]))
    }

    #[test]
    fn routes_follow_the_rules() {
        use AlertName as A;
        let a = alerts(vec![
            rule(&[], Severity::Critical, &["slack"], Some(600)),
            rule(&[A::PeersLow], Severity::Info, &["slack"], Some(300)),
            rule(&[A::Advice], Severity::Info, &["am"], None),
        ]);
        type Case = (&'static str, AlertName, Severity, Vec<(&'static str, u64)>);
        let cases: &[Case] = &[
            (
                "critical to slack",
                A::ValidatorUnreachable,
                Severity::Critical,
                vec![("slack", 600)],
            ),
            (
                "warning below the first rule",
                A::FinalityLagging,
                Severity::Warning,
                vec![],
            ),
            (
                "named by a rule: the shortest repeat",
                A::PeersLow,
                Severity::Critical,
                vec![("slack", 300)],
            ),
            (
                "opt-in only when named; Alertmanager refreshes",
                A::Advice,
                Severity::Info,
                vec![("am", 60)],
            ),
        ];
        for (what, name, sev, want) in cases {
            let all = routes(&a, *name, *sev, REFRESH);
            assert_eq!(all[0].via, Via::Log, "{what}: the log always hears");
            let got: Vec<_> = all[1..]
                .iter()
                .map(|r| (r.channel.clone(), r.repeat.as_secs()))
                .collect();
            let want: Vec<_> = want.iter().map(|(c, s)| (c.to_string(), *s)).collect();
            assert_eq!(got, want, "{what}");
        }
        // The default rule: warning and above everywhere, at each alert's own repeat; no
        // opt-in alerts, no info.
        let d = alerts(default_rule());
        let r = routes(&d, A::PipelineRunFailed, Severity::Critical, REFRESH);
        assert_eq!(r[2].repeat, Duration::from_secs(900));
        assert_eq!(
            routes(&d, A::ArchiveVerified, Severity::Info, REFRESH).len(),
            1
        );
        assert_eq!(routes(&d, A::Advice, Severity::Critical, REFRESH).len(), 1);
    }

    #[test]
    fn fingerprints_are_stable_and_distinct() {
        let f = |ns, obj, name, subj| fingerprint(ns, "MonitoredValidator", obj, name, subj);
        let a = f("ns", "val-0", AlertName::PeersLow, "");
        assert_eq!(a, f("ns", "val-0", AlertName::PeersLow, ""));
        assert_eq!(a.len(), 16);
        for other in [
            f("ns2", "val-0", AlertName::PeersLow, ""),
            f("ns", "val-1", AlertName::PeersLow, ""),
            f("ns", "val-0", AlertName::NotSynced, ""),
            f("ns", "val-0", AlertName::PeersLow, "x"),
            // No ambiguity from joining the parts.
            f("ns", "val-0P", AlertName::PeersLow, ""),
        ] {
            assert_ne!(a, other);
        }
    }

    /// Steps one object through time: the firing alerts at each second, the sends.
    struct Sim {
        alerts: Alerts,
        records: Vec<AlertRecord>,
        log: Vec<(i64, String, State, bool)>,
    }

    impl Sim {
        fn new(rules: Vec<AlertRule>) -> Sim {
            Sim {
                alerts: alerts(rules),
                records: Vec::new(),
                log: Vec::new(),
            }
        }
        fn tick(&mut self, t: i64, firing: &[Firing]) {
            self.tick_reading(t, firing, &[]);
        }
        /// A tick with `events` read from status as well.
        fn tick_reading(&mut self, t: i64, firing: &[Firing], events: &[(Firing, &str)]) {
            let fp = |f: &Firing| fingerprint("ns", "V", "v", f.name, &f.subject);
            let obj = Object {
                records: &self.records,
                firing: firing.iter().map(|f| (fp(f), f.clone())).collect(),
                events: events
                    .iter()
                    .map(|(f, which)| (fp(f), f.clone(), which.to_string()))
                    .collect(),
            };
            let d = decide(&[obj], &self.alerts, &timing(), at(t), &InFlight::new());
            let records = d.records.into_iter().next().unwrap();
            // A channel that delivers at once: everything sent is confirmed.
            self.records = confirm(&records, |fp, ch, told| {
                d.sends
                    .iter()
                    .any(|s| s.fingerprint == fp && s.channel == ch && s.told_at == told)
            })
            .unwrap_or(records);
            for s in d.sends {
                self.log.push((t, s.channel, s.state, s.repeat));
            }
        }
        fn run(&mut self, from: i64, to: i64, firing: &[Firing]) {
            for t in from..to {
                self.tick(t, firing);
            }
        }
        fn sends(&self, channel: &str) -> Vec<(i64, State, bool)> {
            self.log
                .iter()
                .filter(|l| l.1 == channel)
                .map(|l| (l.0, l.2, l.3))
                .collect()
        }
    }

    fn down() -> Firing {
        Firing::new(AlertName::ValidatorUnreachable, "connection refused")
    }

    #[test]
    fn fire_wait_repeat_clear_resolve() {
        let mut s = Sim::new(vec![rule(
            &[],
            Severity::Warning,
            &["am", "slack"],
            Some(600),
        )]);
        s.run(0, 1300, &[down()]);
        // Told after the group wait, repeated every 10 min (Slack) or refreshed every
        // minute (Alertmanager).
        assert_eq!(
            s.sends("slack"),
            [
                (10, State::Firing, false),
                (610, State::Firing, true),
                (1210, State::Firing, true)
            ]
        );
        let am = s.sends("am");
        assert_eq!(am[0], (10, State::Firing, false));
        assert_eq!(am.len(), 1 + (1299 - 10) / 60);
        assert_eq!(s.records.len(), 1);
        let since = s.records[0].firing_since.clone();
        // Clears: nothing during the damping, then one resolve each.
        s.run(1300, 1500, &[]);
        let resolves: Vec<_> = s
            .log
            .iter()
            .filter(|l| l.2 == State::Resolved)
            .map(|l| (l.0, l.1.as_str()))
            .collect();
        assert_eq!(resolves, [(1420, "log"), (1420, "am"), (1420, "slack")]);
        assert!(
            s.sends("slack")
                .iter()
                .all(|l| l.0 < 1300 || l.1 == State::Resolved)
        );
        // Kept a while as resolved, with its history, then dropped.
        assert_eq!(s.records[0].firing_since, since);
        assert!(s.records[0].resolved_at.is_some());
        s.tick(1420 + 3600, &[]);
        assert!(s.records.is_empty());
    }

    #[test]
    fn a_flapping_alert_is_told_once_and_resolved_once() {
        let mut s = Sim::new(vec![rule(&[], Severity::Warning, &["slack"], Some(3600))]);
        // On 3 s, off 3 s, for ten minutes: shorter than the group wait every time.
        let on = [down()];
        for t in 0..600 {
            s.tick(t, if (t / 3) % 2 == 0 { &on } else { &[] });
        }
        assert_eq!(s.sends("slack"), [(12, State::Firing, false)]);
        s.run(600, 800, &[]);
        assert_eq!(s.sends("slack").len(), 2);
        assert_eq!(s.sends("slack")[1].1, State::Resolved);
    }

    #[test]
    fn cleared_before_anyone_was_told_is_never_told() {
        let mut s = Sim::new(default_rule());
        s.run(0, 5, &[down()]);
        s.run(5, 300, &[]);
        assert!(s.log.is_empty());
        assert!(s.records.is_empty());
    }

    #[test]
    fn a_restart_reads_the_records_back() {
        let mut s = Sim::new(vec![rule(&[], Severity::Warning, &["slack"], Some(900))]);
        s.run(0, 100, &[down()]);
        assert_eq!(s.sends("slack").len(), 1);
        // A new process: the same records (from status), nothing in memory.
        let mut again = Sim::new(vec![rule(&[], Severity::Warning, &["slack"], Some(900))]);
        again.records = s.records.clone();
        again.run(100, 909, &[down()]);
        assert!(
            again.sends("slack").is_empty(),
            "nothing again inside the repeat"
        );
        again.tick(910, &[down()]);
        assert_eq!(again.sends("slack"), [(910, State::Firing, true)]);
        // ... and resolves what an earlier process told.
        again.run(911, 1100, &[]);
        assert_eq!(again.sends("slack")[1].1, State::Resolved);
    }

    #[test]
    fn events_are_told_once_and_never_resolved() {
        let ok = Firing::new(AlertName::RemediationFailed, "restart failed");
        let mut s = Sim::new(default_rule());
        s.tick(0, std::slice::from_ref(&ok));
        // The notice came once; the record carries it through the group wait.
        s.run(1, 4000, &[]);
        assert_eq!(s.sends("slack"), [(10, State::Firing, false)]);
        assert_eq!(s.sends("am"), [(10, State::Firing, false)]);
        assert!(s.records.is_empty(), "dropped after the retention");
        // No channel for it: the log still hears, once.
        let mut quiet = Sim::new(vec![rule(&[], Severity::Critical, &["slack"], None)]);
        quiet.tick(0, &[ok]);
        quiet.run(1, 100, &[]);
        assert_eq!(quiet.sends("log"), [(10, State::Firing, false)]);
        assert!(quiet.sends("slack").is_empty());
    }

    /// An outcome read from status every round (a crash cannot lose it between the action
    /// and its record): told once, not again by a new process reading the records back; a
    /// newer one is told too, after an older one still on its way, however late the older
    /// one's record started.
    #[test]
    fn events_read_from_status_are_told_once_and_each_newer_one_after() {
        let failed = |what: &str| Firing::new(AlertName::RemediationFailed, what);
        let mut s = Sim::new(default_rule());
        for t in 0..3000 {
            s.tick_reading(t, &[], &[(failed("a"), "a")]);
        }
        assert_eq!(s.sends("slack"), [(10, State::Firing, false)]);
        assert_eq!(s.records.len(), 1);
        assert!(s.records[0].resolved_at.is_some(), "told everywhere: done");
        assert_eq!(s.records[0].event, "a");

        let mut again = Sim::new(default_rule());
        again.records = s.records.clone();
        for t in 3000..3100 {
            again.tick_reading(t, &[], &[(failed("a"), "a")]);
        }
        assert!(again.sends("slack").is_empty(), "told before");
        for t in 3100..3200 {
            again.tick_reading(t, &[], &[(failed("b"), "b")]);
        }
        assert_eq!(again.sends("slack"), [(3110, State::Firing, false)]);
        assert_eq!(
            (
                again.records[0].message.as_str(),
                again.records[0].event.as_str()
            ),
            ("b", "b")
        );

        // A newer one while the older waits out its group wait: both, one after the other.
        let mut two = Sim::new(default_rule());
        for t in 0..100 {
            let newest = if t < 3 { "a" } else { "b" };
            two.tick_reading(t, &[], &[(failed(newest), newest)]);
        }
        assert_eq!(
            two.sends("slack"),
            [(10, State::Firing, false), (21, State::Firing, false)]
        );
        assert_eq!(two.records[0].event, "b");

        // A notice of the same alert in the same round is one alert.
        let mut both = Sim::new(default_rule());
        for t in 0..100 {
            let notice = if t == 0 { vec![failed("a")] } else { vec![] };
            both.tick_reading(t, &notice, &[(failed("a"), "a")]);
        }
        assert_eq!(both.sends("slack"), [(10, State::Firing, false)]);
    }

    #[test]
    fn resolves_only_where_asked() {
        let mut s = Sim::new(default_rule());
        s.alerts.send_resolved = false;
        s.run(0, 100, &[down()]);
        s.run(100, 300, &[]);
        let resolves: Vec<_> = s
            .log
            .iter()
            .filter(|l| l.2 == State::Resolved)
            .map(|l| l.1.as_str())
            .collect();
        assert_eq!(
            resolves,
            ["log", "am"],
            "Alertmanager and the log always learn the end"
        );
    }

    #[test]
    fn a_burst_is_one_group_per_channel() {
        let a = alerts(default_rule());
        let names: Vec<String> = (0..6).map(|i| format!("val-{i}")).collect();
        let mut records: Vec<Vec<AlertRecord>> = vec![Vec::new(); 6];
        let mut sends = Vec::new();
        let mut in_flight = InFlight::new();
        for t in 0..30 {
            let objects: Vec<Object> = names
                .iter()
                .zip(&records)
                .enumerate()
                .map(|(i, (n, r))| Object {
                    records: r,
                    // They fail one second apart.
                    firing: if t >= i as i64 {
                        vec![(
                            fingerprint("ns", "V", n, AlertName::ValidatorUnreachable, ""),
                            down(),
                        )]
                    } else {
                        vec![]
                    },
                    events: vec![],
                })
                .collect();
            let d = decide(&objects, &a, &timing(), at(t), &in_flight);
            for s in &d.sends {
                in_flight.insert((s.fingerprint.clone(), s.channel.clone()));
            }
            sends.extend(d.sends.into_iter().map(|s| (t, s.channel, s.object)));
            records = d.records;
        }
        // All six go at once, 10 s after the first failed (to the log, am and slack).
        assert_eq!(sends.len(), 18);
        assert!(sends.iter().all(|s| s.0 == 10));
    }

    /// A process that decided a notification and ended before its channel confirmed it:
    /// the next one finds it pending and sends it again, with the same identity, unless it
    /// is in flight there; once confirmed, never again.
    #[test]
    fn an_unconfirmed_notification_is_sent_again_as_it_was() {
        let a = alerts(vec![rule(&[], Severity::Warning, &["slack"], Some(3600))]);
        let fp = fingerprint("ns", "V", "v", AlertName::ValidatorUnreachable, "");
        let firing = vec![(fp.clone(), down())];
        let step =
            |records: &[AlertRecord], firing: &[(String, Firing)], t, in_flight: &InFlight| {
                let obj = Object {
                    records,
                    firing: firing.to_vec(),
                    events: vec![],
                };
                decide(&[obj], &a, &timing(), at(t), in_flight)
            };
        let slack = |d: &Decision| -> Vec<(State, Timestamp, bool)> {
            d.sends
                .iter()
                .filter(|s| s.channel == "slack")
                .map(|s| (s.state, s.told_at, s.repeat))
                .collect()
        };
        let mut records = Vec::new();
        for t in 0..10 {
            records = step(&records, &firing, t, &InFlight::new())
                .records
                .remove(0);
        }
        let d = step(&records, &firing, 10, &InFlight::new());
        assert_eq!(slack(&d), [(State::Firing, at(10), false)]);
        let told = d.records[0].clone();
        let sent =
            |r: &[AlertRecord], ch: &str| r[0].sent.iter().find(|s| s.channel == ch).cloned();
        assert!(sent(&told, "slack").unwrap().pending);
        assert!(
            !sent(&told, "log").unwrap().pending,
            "the audit log is written at once"
        );

        // Still in flight in this process: not again.
        let busy = InFlight::from([(fp.clone(), "slack".to_string())]);
        assert_eq!(slack(&step(&told, &firing, 11, &busy)), []);
        // A new process (nothing in flight): again, as it was decided at 10.
        let again = step(&told, &firing, 30, &InFlight::new());
        assert_eq!(slack(&again), [(State::Firing, at(10), true)]);
        assert_eq!(again.records[0], told, "the record stays as it was");
        assert!(
            again.sends.iter().all(|s| s.channel == "slack"),
            "{:?}",
            again.sends
        );
        // Confirmed: never again.
        let done = confirm(&told, |f, ch, t| f == fp && ch == "slack" && t == at(10)).unwrap();
        assert!(!sent(&done, "slack").unwrap().pending);
        assert_eq!(slack(&step(&done, &firing, 40, &InFlight::new())), []);
        assert_eq!(confirm(&done, |_, _, _| true), None, "nothing left pending");

        // Decided at a fraction of a second, read back from the API (whole seconds): the
        // identity holds, and the confirmation matches the record.
        let mut rs = Vec::new();
        for t in 0..10 {
            rs = step(&rs, &firing, t, &InFlight::new()).records.remove(0);
        }
        let odd = at(10)
            .checked_add(jiff::SignedDuration::from_millis(730))
            .unwrap();
        let obj = Object {
            records: &rs,
            firing: firing.clone(),
            events: vec![],
        };
        let d = decide(&[obj], &a, &timing(), odd, &InFlight::new());
        let told_at = slack(&d)[0].1;
        let stored: Vec<AlertRecord> =
            serde_json::from_value(serde_json::to_value(&d.records[0]).unwrap()).unwrap();
        assert!(
            confirm(&stored, |f, ch, t| f == fp && ch == "slack" && t == told_at).is_some(),
            "toldAt {told_at} does not match the stored record {:?}",
            stored[0].sent
        );

        // The resolve, unconfirmed, goes again as a resolve.
        let mut records = done;
        let mut resolved_at = None;
        for t in 100..300 {
            let d = step(&records, &[], t, &busy);
            if !slack(&d).is_empty() {
                resolved_at = Some(t);
                assert_eq!(slack(&d), [(State::Resolved, at(t), false)]);
            }
            records = d.records.into_iter().next().unwrap();
            if resolved_at.is_some() {
                break;
            }
        }
        let t = resolved_at.expect("resolved after the damping");
        let again = step(&records, &[], t + 5, &InFlight::new());
        assert_eq!(slack(&again), [(State::Resolved, at(t), true)]);
        // The alert fires again before the resolve was delivered: the resolve goes first
        // and its record stays until confirmed; the new episode waits its group wait.
        let again = step(&records, &firing, t + 6, &InFlight::new());
        assert_eq!(slack(&again), [(State::Resolved, at(t), true)]);
        assert_eq!(again.records[0].len(), 2, "{:?}", again.records[0]);
        let mut rs = again.records[0].clone();
        for k in 7..30 {
            let d = step(&rs, &firing, t + k, &InFlight::new());
            rs = confirm(&d.records[0], |_, _, _| true).unwrap_or_else(|| d.records[0].clone());
            if k == 7 {
                assert_eq!(rs.len(), 2, "kept while its resolve is on its way");
            }
        }
        assert_eq!(rs.len(), 1, "{rs:?}");
        assert!(rs[0].resolved_at.is_none() && rs[0].firing_since.as_ref().unwrap().0 > at(t));
    }

    #[test]
    fn severity_changes_reach_new_channels() {
        let mut s = Sim::new(vec![
            rule(&[], Severity::Warning, &["slack"], Some(3600)),
            rule(&[], Severity::Critical, &["am"], None),
        ]);
        let mut f = down();
        f.severity = Severity::Warning;
        s.run(0, 20, std::slice::from_ref(&f));
        assert!(s.sends("am").is_empty());
        f.severity = Severity::Critical;
        s.tick(20, &[f]);
        assert_eq!(
            s.sends("am"),
            [(20, State::Firing, false)],
            "already past its wait"
        );
        assert_eq!(s.sends("slack").len(), 1);
    }

    #[test]
    fn messages_are_capped() {
        let mut s = Sim::new(default_rule());
        s.tick(0, &[Firing::new(AlertName::PeersLow, "é".repeat(1000))]);
        assert!(s.records[0].message.len() <= MESSAGE_LIMIT + '…'.len_utf8());
    }
}
