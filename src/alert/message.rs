//! What a notification says, pure: one [`Message`] per alert group and channel, rendered
//! as Alertmanager's postable alerts, a Slack message (text plus blocks), the generic
//! webhook's JSON (schema in `docs/alert-webhook.schema.json`), or an email a person can act
//! on. Nothing here holds a credential or an endpoint URL.

use super::catalog::{self, Firing};
use super::decide::State;
use crate::api::{AlertName, Severity};
use jiff::Timestamp;
use std::fmt::Write as _;
use std::time::Duration;

/// How many alerts one Slack message or email lists by name (the rest are counted).
pub const LIST_LIMIT: usize = 20;

/// The kind of object an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Object {
    /// A MonitoredValidator.
    Validator,
    /// A MonitorPolicy (fleet alerts).
    Policy,
    /// A PipelineRun.
    Run,
}

impl Object {
    /// The Alertmanager label naming the object.
    pub fn label(self) -> &'static str {
        match self {
            Object::Validator => "validator",
            Object::Policy => "policy",
            Object::Run => "pipelinerun",
        }
    }

    /// The resource's kind.
    pub fn kind(self) -> &'static str {
        match self {
            Object::Validator => "MonitoredValidator",
            Object::Policy => "MonitorPolicy",
            Object::Run => "PipelineRun",
        }
    }

    /// The resource's plural (for `kubectl` and API paths).
    pub fn plural(self) -> &'static str {
        match self {
            Object::Validator => "monitoredvalidators",
            Object::Policy => "monitorpolicies",
            Object::Run => "pipelineruns",
        }
    }
}

/// One alert in a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// What kind of object.
    pub object: Object,
    /// Namespace.
    pub namespace: String,
    /// Object name.
    pub name: String,
    /// The policy it falls under.
    pub policy: String,
    /// The chain, for validators and fleet alerts.
    pub chain: String,
    /// The alert's fingerprint.
    pub fingerprint: String,
    /// The alert.
    pub alert: Firing,
    /// When it started.
    pub since: Timestamp,
    /// What Vigil did about it, for people (empty when nothing).
    pub did: String,
    /// When Vigil decided to tell it: with the fingerprint and the state, the
    /// notification's identity, the same when it is delivered again after a restart.
    pub told_at: Timestamp,
}

impl Item {
    /// The `kubectl describe` command that shows the object.
    pub fn describe(&self) -> String {
        format!(
            "kubectl describe {} {} -n {}",
            self.object.plural(),
            self.name,
            self.namespace
        )
    }

    fn who(&self) -> String {
        let mut s = format!("{} {}/{}", self.object.label(), self.namespace, self.name);
        if !self.alert.subject.is_empty() && self.object != Object::Policy {
            let _ = write!(s, " ({})", self.alert.subject);
        }
        s
    }
}

/// One notification: the alerts of one group (same alert, same state) for one channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Which alert.
    pub name: AlertName,
    /// Firing or resolved.
    pub state: State,
    /// The alerts, at least one.
    pub items: Vec<Item>,
    /// A test notification (the `vigil.dev/test-alert` annotation).
    pub test: bool,
}

impl Message {
    /// The highest severity among the items.
    pub fn severity(&self) -> Severity {
        self.items
            .iter()
            .map(|i| i.alert.severity)
            .max()
            .unwrap_or(Severity::Info)
    }

    fn status_word(&self) -> &'static str {
        match (self.test, self.state) {
            (true, _) => "TEST",
            (_, State::Firing) => "FIRING",
            (_, State::Resolved) => "RESOLVED",
        }
    }

    /// One line: state, severity, alert, and whom it is about.
    pub fn title(&self) -> String {
        let first = &self.items[0];
        let about = match self.items.len() {
            1 => first.who(),
            n => format!("{n} in {}", first.namespace),
        };
        format!(
            "[{}] {} {}: {} ({about})",
            self.status_word(),
            severity_str(self.severity()),
            catalog::name_str(self.name),
            catalog::info(self.name).summary,
        )
    }

    /// The alerts, one line each (at most [`LIST_LIMIT`], the rest counted).
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .items
            .iter()
            .take(LIST_LIMIT)
            .map(|i| {
                let mut l = format!("{}: {}", i.who(), one_line(&i.alert.detail));
                if !i.alert.members.is_empty() {
                    let _ = write!(l, " [validators: {}]", list(&i.alert.members));
                }
                let _ = write!(l, " (since {})", clock(i.since));
                if !i.did.is_empty() {
                    let _ = write!(l, "; Vigil: {}", one_line(&i.did));
                }
                l
            })
            .collect();
        if self.items.len() > LIST_LIMIT {
            out.push(format!("… and {} more", self.items.len() - LIST_LIMIT));
        }
        out
    }
}

/// The API spelling of a severity.
pub fn severity_str(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

fn one_line(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    s.trim().to_string()
}

fn list(names: &[String]) -> String {
    let mut s = names
        .iter()
        .take(LIST_LIMIT)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > LIST_LIMIT {
        let _ = write!(s, " and {} more", names.len() - LIST_LIMIT);
    }
    s
}

fn clock(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Alertmanager's postable alerts (`POST /api/v2/alerts`): one per item. A firing alert
/// ends `ahead` from now unless refreshed; a resolved one ends now.
pub fn alertmanager(
    m: &Message,
    now: Timestamp,
    ahead: Duration,
    generator: &str,
) -> serde_json::Value {
    let ends = match m.state {
        State::Firing => now
            .checked_add(jiff::SignedDuration::try_from(ahead).unwrap_or_default())
            .unwrap_or(now),
        State::Resolved => now,
    };
    let alerts: Vec<_> = m
        .items
        .iter()
        .map(|i| {
            let mut labels = serde_json::Map::new();
            let mut label = |k: &str, v: &str| {
                if !v.is_empty() {
                    labels.insert(k.into(), v.into());
                }
            };
            label("alertname", catalog::name_str(m.name));
            label("severity", severity_str(i.alert.severity));
            label("namespace", &i.namespace);
            label(i.object.label(), &i.name);
            label("policy", &i.policy);
            label("chain", &i.chain);
            if i.object == Object::Run {
                label("step", &i.alert.subject);
            }
            if m.test {
                label("test", "true");
            }
            let mut description = one_line(&i.alert.detail);
            if !i.alert.members.is_empty() {
                let _ = write!(description, " (validators: {})", list(&i.alert.members));
            }
            serde_json::json!({
                "labels": labels,
                "annotations": {
                    "summary": catalog::info(m.name).summary,
                    "description": description,
                    "vigil_action": one_line(&i.did),
                    "kubectl": i.describe(),
                },
                "startsAt": i.since.to_string(),
                "endsAt": ends.to_string(),
                "generatorURL": format!(
                    "{}/apis/vigil.dev/v1alpha1/namespaces/{}/{}/{}",
                    generator.trim_end_matches('/'),
                    i.namespace,
                    i.object.plural(),
                    i.name
                ),
            })
        })
        .collect();
    serde_json::Value::Array(alerts)
}

/// A Slack message: the text (shown in notifications) plus blocks.
pub fn slack(m: &Message) -> serde_json::Value {
    let title = m.title();
    let body = m
        .lines()
        .iter()
        .map(|l| format!("• {l}"))
        .collect::<Vec<_>>()
        .join("\n");
    let describe = m.items[0].describe();
    serde_json::json!({
        "text": title,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": truncate(&title, 150)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": truncate(&body, 3000)}},
            {"type": "context", "elements": [
                {"type": "mrkdwn", "text": truncate(&format!("`{describe}`"), 3000)}
            ]}
        ]
    })
}

fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max_chars - 1).collect();
    t.push('…');
    t
}

/// The generic webhook's body (`docs/alert-webhook.schema.json`).
pub fn webhook(m: &Message, now: Timestamp) -> serde_json::Value {
    let alerts: Vec<_> = m
        .items
        .iter()
        .map(|i| {
            serde_json::json!({
                "fingerprint": i.fingerprint,
                "kind": i.object.kind(),
                "namespace": i.namespace,
                "name": i.name,
                "policy": i.policy,
                "chain": i.chain,
                "subject": i.alert.subject,
                "severity": severity_str(i.alert.severity),
                "detail": one_line(&i.alert.detail),
                "validators": i.alert.members,
                "vigilAction": one_line(&i.did),
                "startsAt": i.since.to_string(),
                "toldAt": i.told_at.to_string(),
                "describe": i.describe(),
            })
        })
        .collect();
    serde_json::json!({
        "version": "1",
        "status": match m.state { State::Firing => "firing", State::Resolved => "resolved" },
        "test": m.test,
        "alertname": catalog::name_str(m.name),
        "summary": catalog::info(m.name).summary,
        "severity": severity_str(m.severity()),
        "title": m.title(),
        "sentAt": now.to_string(),
        "alerts": alerts,
    })
}

/// An email's subject and plain-text body.
pub fn email(m: &Message) -> (String, String) {
    let mut body = String::new();
    let _ = writeln!(body, "{}\n", m.title());
    for l in m.lines() {
        let _ = writeln!(body, "- {l}");
    }
    let _ = writeln!(body, "\nTo look closer:");
    for i in m.items.iter().take(3) {
        let _ = writeln!(body, "  {}", i.describe());
    }
    match m.state {
        State::Firing if !m.test => {
            let _ = writeln!(
                body,
                "\nYou will be told again while this lasts, and when it ends."
            );
        }
        _ => {}
    }
    let _ = writeln!(body, "\n-- Vigil");
    (truncate(&m.title(), 200), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: &str) -> Item {
        Item {
            object: Object::Validator,
            namespace: "ns".into(),
            name: name.into(),
            policy: "p".into(),
            chain: "cosmos".into(),
            fingerprint: "0123456789abcdef".into(),
            alert: Firing::new(AlertName::ValidatorUnreachable, "connection refused\nagain"),
            since: Timestamp::from_second(1_800_000_000).unwrap(),
            did: "restart: Succeeded".into(),
            told_at: Timestamp::from_second(1_800_000_060).unwrap(),
        }
    }
    fn message(n: usize, state: State) -> Message {
        Message {
            name: AlertName::ValidatorUnreachable,
            state,
            items: (0..n).map(|i| item(&format!("val-{i}"))).collect(),
            test: false,
        }
    }

    #[test]
    fn alertmanager_alerts_carry_labels_times_and_the_describe_command() {
        let now = Timestamp::from_second(1_800_000_100).unwrap();
        let v = alertmanager(
            &message(2, State::Firing),
            now,
            Duration::from_secs(240),
            "https://10.0.0.1:6443/",
        );
        let a = &v[1];
        assert_eq!(a["labels"]["alertname"], "ValidatorUnreachable");
        assert_eq!(a["labels"]["severity"], "critical");
        assert_eq!(a["labels"]["validator"], "val-1");
        assert_eq!(a["labels"]["namespace"], "ns");
        assert_eq!(a["labels"]["policy"], "p");
        assert_eq!(a["labels"]["chain"], "cosmos");
        assert_eq!(
            a["annotations"]["kubectl"],
            "kubectl describe monitoredvalidators val-1 -n ns"
        );
        assert_eq!(a["annotations"]["description"], "connection refused again");
        assert_eq!(a["startsAt"], "2027-01-15T08:00:00Z");
        assert_eq!(a["endsAt"], "2027-01-15T08:05:40Z");
        assert_eq!(
            a["generatorURL"],
            "https://10.0.0.1:6443/apis/vigil.dev/v1alpha1/namespaces/ns/monitoredvalidators/val-1"
        );
        let r = alertmanager(
            &message(1, State::Resolved),
            now,
            Duration::from_secs(240),
            "x",
        );
        assert_eq!(r[0]["endsAt"], "2027-01-15T08:01:40Z", "a resolve ends now");
    }

    #[test]
    fn one_slack_message_lists_the_group() {
        let v = slack(&message(25, State::Firing));
        assert_eq!(
            v["text"],
            "[FIRING] critical ValidatorUnreachable: Validator is unreachable (25 in ns)"
        );
        let body = v["blocks"][1]["text"]["text"].as_str().unwrap();
        assert_eq!(body.lines().count(), LIST_LIMIT + 1);
        assert!(body.ends_with("… and 5 more"));
        assert!(body.starts_with("• validator ns/val-0: connection refused again (since 2027-01-15 08:00:00 UTC); Vigil: restart: Succeeded"));
        let one = slack(&message(1, State::Resolved));
        assert_eq!(
            one["text"],
            "[RESOLVED] critical ValidatorUnreachable: Validator is unreachable (validator ns/val-0)"
        );
    }

    #[test]
    fn webhook_body_follows_its_schema() {
        let schema: serde_json::Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/alert-webhook.schema.json"
        )))
        .unwrap();
        let body = webhook(&message(2, State::Firing), Timestamp::UNIX_EPOCH);
        // Every property the body has is documented, and every required one is there.
        let props = schema["properties"].as_object().unwrap();
        for (k, _) in body.as_object().unwrap() {
            assert!(props.contains_key(k), "{k} is not in the schema");
        }
        for k in schema["required"].as_array().unwrap() {
            assert!(body.get(k.as_str().unwrap()).is_some(), "{k} is missing");
        }
        let item_props = schema["properties"]["alerts"]["items"]["properties"]
            .as_object()
            .unwrap();
        for (k, _) in body["alerts"][0].as_object().unwrap() {
            assert!(
                item_props.contains_key(k),
                "alerts[].{k} is not in the schema"
            );
        }
        assert_eq!(body["status"], "firing");
        assert_eq!(body["alerts"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn an_email_says_what_and_how_to_look() {
        let (subject, body) = email(&message(1, State::Firing));
        assert_eq!(
            subject,
            "[FIRING] critical ValidatorUnreachable: Validator is unreachable (validator ns/val-0)"
        );
        assert!(body.contains("kubectl describe monitoredvalidators val-0 -n ns"));
        assert!(body.contains("- validator ns/val-0: connection refused again"));
        let test = Message {
            test: true,
            ..message(1, State::Firing)
        };
        assert!(email(&test).0.starts_with("[TEST]"));
    }
}
