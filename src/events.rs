//! The one Event writer, a subscriber of the notice stream: it turns notices into
//! Kubernetes Events (`events.k8s.io/v1`, what `kubectl describe` shows).
//!
//! Like kube-runtime's `Recorder`, repeats of one Event (same object, type, reason,
//! action and note: the API refuses to change a note) within [`SERIES_TTL`] become a series on the first Event (count and last time)
//! instead of new objects. Unlike it, the writer keeps only a small record per series, and
//! at most [`CACHE_LIMIT`] of them, oldest dropped first: the Recorder keeps every Event it
//! published for 6 minutes, about 50 MB at 10,000 validators. Notes are capped at the
//! API's 1 KiB limit ([`NOTE_LIMIT`]): a longer note is truncated and marked, never
//! refused by the API server.

use crate::notice::{self, Notice, What};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, broadcast};

/// Longest note the API server accepts, in bytes.
pub const NOTE_LIMIT: usize = 1024;
/// Repeats within this time join the first Event's series.
pub const SERIES_TTL: Duration = Duration::from_secs(6 * 60);
/// Most series remembered.
pub const CACHE_LIMIT: usize = 4096;
/// Longest one Event call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Event writes in flight at once.
const IN_FLIGHT: usize = 16;

/// One Event to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draft {
    /// Warning (else Normal).
    pub warning: bool,
    /// CamelCase reason.
    pub reason: String,
    /// What Vigil was doing.
    pub action: String,
    /// The note.
    pub note: String,
}

/// A note cut to at most [`NOTE_LIMIT`] bytes on a character boundary, marked with `…`
/// when cut.
pub fn cap_note(note: &str) -> String {
    crate::text::cap(note, NOTE_LIMIT)
}

/// The Events of a notice. Condition transitions that would make the same Event but for
/// the condition's name (an unreachable node turns four detail conditions Unknown at once)
/// become one Event naming them all: a series shows only one note, hiding the others.
pub fn drafts(n: &Notice) -> Vec<Draft> {
    if n.what != What::Conditions {
        return vec![Draft {
            warning: n.warning,
            reason: n.reason.clone(),
            action: n.action.to_string(),
            note: cap_note(&n.message),
        }];
    }
    let mut groups: Vec<(Vec<&str>, Draft)> = Vec::new();
    for c in &n.changes {
        use crate::conditions::kind;
        // For most conditions True is good; for Escalated it is the news.
        let warn = match c.type_.as_str() {
            kind::ESCALATED => c.status == "True",
            kind::REMEDIATING => false,
            // A stalled run is still Unknown (it may go on), but calls for attention.
            kind::SUCCEEDED => c.status == "False" || c.reason == "Stalled",
            kind::READY => c.status == "False" || (c.status == "Unknown" && c.reason != "Pending"),
            _ => c.status == "False",
        };
        let action = if matches!(c.type_.as_str(), kind::ESCALATED | kind::REMEDIATING) {
            "Remediate"
        } else {
            n.action
        };
        let draft = Draft {
            warning: warn,
            reason: c.reason.clone(),
            action: action.to_string(),
            note: format!("{}: {}", c.status, c.message),
        };
        match groups.iter_mut().find(|(_, g)| *g == draft) {
            Some((types, _)) => types.push(&c.type_),
            None => groups.push((vec![&c.type_], draft)),
        }
    }
    groups
        .into_iter()
        .map(|(types, mut d)| {
            let verb = if types.len() == 1 { "is" } else { "are" };
            d.note = cap_note(&format!("{} {verb} {}", types.join(", "), d.note));
            d
        })
        .collect()
}

/// What is remembered of one series.
struct Series {
    namespace: String,
    name: String,
    count: i32,
    last: Timestamp,
}

/// The bounded record of recent series.
#[derive(Default)]
struct Cache {
    series: HashMap<u64, Series>,
    /// Keys by first publication, oldest first (for dropping the oldest).
    order: VecDeque<u64>,
}

impl Cache {
    /// The series `key` belongs to, if it is recent: its (namespace, name, next count).
    fn repeat(&mut self, key: u64, now: Timestamp) -> Option<(String, String, i32)> {
        let s = self.series.get_mut(&key)?;
        if now.duration_since(s.last).as_secs() > SERIES_TTL.as_secs() as i64 {
            return None;
        }
        s.count = s.count.saturating_add(1);
        s.last = now;
        Some((s.namespace.clone(), s.name.clone(), s.count))
    }

    fn insert(&mut self, key: u64, namespace: String, name: String, now: Timestamp) {
        if self
            .series
            .insert(
                key,
                Series {
                    namespace,
                    name,
                    count: 1,
                    last: now,
                },
            )
            .is_none()
        {
            self.order.push_back(key);
        }
        while self.series.len() > CACHE_LIMIT {
            match self.order.pop_front() {
                Some(old) => {
                    self.series.remove(&old);
                }
                None => break,
            }
        }
        // Keys dropped above may still sit in `order` after a re-insert; keep it bounded.
        if self.order.len() > 2 * CACHE_LIMIT {
            let live = &self.series;
            self.order.retain(|k| live.contains_key(k));
        }
    }

    fn forget(&mut self, key: u64) {
        self.series.remove(&key);
    }
}

/// Publishes Events; cheap to share.
pub struct EventWriter {
    client: Client,
    controller: String,
    instance: String,
    cache: Mutex<Cache>,
}

fn key(reference: &ObjectReference, d: &Draft) -> u64 {
    let mut h = DefaultHasher::new();
    (
        &reference.kind,
        &reference.namespace,
        &reference.name,
        &reference.uid,
        d.warning,
        &d.reason,
        &d.action,
        // events.k8s.io/v1 refuses to change an Event's note: another note is another Event.
        &d.note,
    )
        .hash(&mut h);
    h.finish()
}

impl EventWriter {
    /// A writer reporting as `controller` (instance `instance`).
    pub fn new(client: Client, controller: &str, instance: &str) -> EventWriter {
        EventWriter {
            client,
            controller: controller.to_string(),
            instance: instance.to_string(),
            cache: Mutex::new(Cache::default()),
        }
    }

    /// Series remembered now (for tests and the memory bound).
    pub fn remembered(&self) -> usize {
        self.cache.lock().expect("event cache").series.len()
    }

    /// Publishes one Event about `reference` (a new one, or a repeat in its series).
    pub async fn publish(&self, reference: &ObjectReference, d: &Draft) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let k = key(reference, d);
        let ns = reference
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let repeat = self.cache.lock().expect("event cache").repeat(k, now);
        if let Some((ns, name, count)) = repeat {
            let patch = serde_json::json!({
                "series": EventSeries { count, last_observed_time: MicroTime(now) },
            });
            let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
            match timed(api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))).await {
                Ok(_) => return Ok(()),
                // The Event expired on the server: start a new series.
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    self.cache.lock().expect("event cache").forget(k)
                }
                Err(e) => return Err(e),
            }
        }
        let name = format!(
            "{}.{:x}",
            reference.name.as_deref().unwrap_or(&self.controller),
            now.as_nanosecond()
        );
        let event = Event {
            action: Some(d.action.clone()),
            reason: Some(d.reason.clone()),
            event_time: Some(MicroTime(now)),
            regarding: Some(reference.clone()),
            note: Some(d.note.clone()),
            metadata: ObjectMeta {
                namespace: Some(ns.clone()),
                name: Some(name.clone()),
                ..Default::default()
            },
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(if d.warning { "Warning" } else { "Normal" }.into()),
            ..Default::default()
        };
        timed(api.create(&PostParams::default(), &event)).await?;
        self.cache
            .lock()
            .expect("event cache")
            .insert(k, ns, name, now);
        Ok(())
    }

    /// The Events subscriber: writes the Events of every notice, a few at once, until the
    /// stream closes. Events are best effort: a refusal is logged, never retried.
    pub async fn subscriber(self: Arc<Self>, mut rx: broadcast::Receiver<Notice>) {
        let permits = Arc::new(Semaphore::new(IN_FLIGHT));
        loop {
            let n = match rx.recv().await {
                Ok(n) => n,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    notice::lagged("events", missed);
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let me = self.clone();
            tokio::spawn(async move {
                for d in drafts(&n) {
                    if let Err(e) = me.publish(&n.object, &d).await {
                        tracing::warn!(error = %e, reason = %d.reason, "publishing event failed");
                    }
                }
                drop(permit);
            });
        }
        // Let the last writes finish.
        let _ = permits.acquire_many(IN_FLIGHT as u32).await;
    }
}

async fn timed<T>(
    fut: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, kube::Error> {
    tokio::time::timeout(CALL_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| {
            Err(kube::Error::Service(
                format!("no answer within {CALL_TIMEOUT:?}").into(),
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notice::Change;

    fn change(ty: &str, st: &str, re: &str, msg: &str) -> Change {
        Change {
            type_: ty.into(),
            status: st.into(),
            reason: re.into(),
            message: msg.into(),
        }
    }

    #[test]
    fn shared_transitions_become_one_event() {
        let gone = "The node did not answer the last probe";
        let mut n = Notice::new(Default::default(), What::Conditions, "", "").action("Probe");
        n.changes = vec![
            change("Reachable", "False", "ConnectionFailed", "refused"),
            change("Ready", "False", "ConnectionFailed", "refused"),
            change("Synced", "Unknown", "NodeUnreachable", gone),
            change("BlockProduction", "Unknown", "NodeUnreachable", gone),
            change("Ready", "Unknown", "NodeUnreachable", gone),
            change("Finalizing", "Unknown", "NodeUnreachable", gone),
            change("PeersHealthy", "False", "TooFewPeers", "2 peers"),
            change("Remediating", "False", "TooFewPeers", "2 peers"),
        ];
        let got: Vec<_> = drafts(&n)
            .into_iter()
            .map(|d| (d.warning, d.reason, d.note, d.action))
            .collect();
        let s = |x: &str| x.to_string();
        assert_eq!(
            got,
            vec![
                (
                    true,
                    s("ConnectionFailed"),
                    s("Reachable, Ready are False: refused"),
                    s("Probe")
                ),
                (
                    false,
                    s("NodeUnreachable"),
                    format!("Synced, BlockProduction, Finalizing are Unknown: {gone}"),
                    s("Probe")
                ),
                (
                    true,
                    s("NodeUnreachable"),
                    format!("Ready is Unknown: {gone}"),
                    s("Probe")
                ),
                (
                    true,
                    s("TooFewPeers"),
                    s("PeersHealthy is False: 2 peers"),
                    s("Probe")
                ),
                (
                    false,
                    s("TooFewPeers"),
                    s("Remediating is False: 2 peers"),
                    s("Remediate")
                ),
            ]
        );
    }

    #[test]
    fn notes_are_capped_at_the_api_limit_and_marked() {
        assert_eq!(cap_note("short"), "short");
        let long = "é".repeat(800); // 1600 bytes
        let capped = cap_note(&long);
        assert!(capped.len() <= NOTE_LIMIT, "{}", capped.len());
        assert!(capped.ends_with('…'));
        let n = Notice::new(
            Default::default(),
            What::Escalated,
            "Escalated",
            "x".repeat(5000),
        );
        assert!(drafts(&n)[0].note.len() <= NOTE_LIMIT);
    }

    #[test]
    fn another_note_is_another_event() {
        let r = ObjectReference {
            kind: Some("PipelineRun".into()),
            name: Some("r".into()),
            ..Default::default()
        };
        let d = |note: &str| Draft {
            warning: false,
            reason: "StepChanged".into(),
            action: "Reconcile".into(),
            note: note.into(),
        };
        assert_eq!(key(&r, &d("a Running")), key(&r, &d("a Running")));
        assert_ne!(key(&r, &d("a Running")), key(&r, &d("b Running")));
    }

    #[test]
    fn the_series_record_is_bounded_and_expires() {
        let t0 = Timestamp::from_second(1_700_000_000).unwrap();
        let mut c = Cache::default();
        for k in 0..(CACHE_LIMIT as u64 + 100) {
            c.insert(k, "ns".into(), format!("e{k}"), t0);
        }
        assert_eq!(c.series.len(), CACHE_LIMIT);
        assert!(!c.series.contains_key(&0), "the oldest went first");
        let k = CACHE_LIMIT as u64 + 99;
        assert_eq!(c.repeat(k, t0).map(|r| r.2), Some(2));
        let later = t0 + jiff::SignedDuration::from_secs(7 * 60);
        assert_eq!(c.repeat(k, later), None, "a series ends after SERIES_TTL");
        for round in 0..10u64 {
            for k in 0..CACHE_LIMIT as u64 {
                c.insert(k + round * 7, "ns".into(), "e".into(), t0);
            }
        }
        assert!(c.order.len() <= 2 * CACHE_LIMIT + 1);
    }
}
