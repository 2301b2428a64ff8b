//! The notice stream: everything a person or another subsystem may care about, as a typed
//! [`Notice`] on one internal broadcast stream. Kubernetes Events are one subscriber
//! ([`crate::events`]); the audit log is another ([`audit`]); alerts and the advisor
//! subscribe too.
//!
//! The contract:
//! - Publishing never blocks and never fails: probing and healing do not wait for any
//!   subscriber. The stream holds the last [`CAPACITY`] notices; a subscriber that falls
//!   further behind skips the oldest and is told how many it missed.
//! - Notices are edges, for promptness. What must not be missed (an alert that is firing,
//!   a budget spent) lives in status, and a subscriber that must not miss a state is
//!   level-triggered at heart: after an overflow or a restart it resyncs from status; the
//!   stream only makes it prompt.
//! - Every notice is published after the status write that records it succeeded, so a
//!   notice never tells of a state that is not on the object.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use serde::Serialize;
use tokio::sync::broadcast;

/// Notices held for slow subscribers.
pub const CAPACITY: usize = 16 * 1024;

/// What happened, by kind (what subscribers route on).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum What {
    /// One or more conditions changed status (the transitions are in [`Notice::changes`]).
    Conditions,
    /// A fleet incident opened (chain halt, mass stall).
    FleetIncidentOpened,
    /// A fleet incident ended.
    FleetIncidentClosed,
    /// A remediation was decided and recorded, and is about to run.
    RemediationDecided,
    /// A remediation succeeded.
    RemediationSucceeded,
    /// A remediation failed.
    RemediationFailed,
    /// A remediation was refused for now (a PodDisruptionBudget).
    RemediationBlocked,
    /// A guard held a remediation back.
    RemediationHeld,
    /// An action in flight was closed as interrupted after a restart.
    RemediationInterrupted,
    /// Dry-run: decided, nothing done.
    RemediationDryRun,
    /// The node recovered after a remediation.
    Recovered,
    /// Vigil stopped acting and waits for a person.
    Escalated,
    /// A person acknowledged an escalation.
    Acknowledged,
    /// A person asked for a restart.
    ManualRestart,
    /// The storm guard began holding every restart of a policy.
    StormActive,
    /// The storm guard ended.
    StormCleared,
    /// An object could not be read (decode failure).
    InvalidObject,
    /// A pipeline run's step changed phase (started, finished, failed, stopped, skipped).
    StepChanged,
    /// A pipeline run's archive was written and verified.
    ArchiveVerified,
    /// A pipeline run's archive failed (it is retried).
    ArchiveFailed,
    /// A person let a run go without its archive (`vigil.dev/skip-archive`).
    ArchiveSkipped,
    /// A run's Jobs, or the run itself, were deleted after its verified archive.
    RunCleanedUp,
    /// The advisor gave a diagnosis.
    Advice,
    /// A notification was sent (or could not be).
    AlertSent,
    /// An alert channel keeps failing, or works again.
    AlertDelivery,
}

/// One condition transition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Condition type.
    #[serde(rename = "type")]
    pub type_: String,
    /// New status.
    pub status: String,
    /// Reason.
    pub reason: String,
    /// Message.
    pub message: String,
}

/// One thing that happened to one object.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    /// The object it is about.
    #[serde(serialize_with = "object_ser")]
    pub object: ObjectReference,
    /// What happened.
    pub what: What,
    /// CamelCase reason (the Event reason).
    pub reason: String,
    /// For people: what was seen, why, and what Vigil did.
    pub message: String,
    /// Calls for attention (a Warning Event).
    pub warning: bool,
    /// What Vigil was doing: `Probe`, `Remediate`, `FleetView`, `Reconcile`, `Decode`.
    pub action: &'static str,
    /// The condition transitions of a [`What::Conditions`] notice.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
}

fn object_ser<S: serde::Serializer>(o: &ObjectReference, s: S) -> Result<S::Ok, S::Error> {
    let text = format!(
        "{}/{}/{}",
        o.kind.as_deref().unwrap_or("?"),
        o.namespace.as_deref().unwrap_or(""),
        o.name.as_deref().unwrap_or("?")
    );
    s.serialize_str(&text)
}

impl Notice {
    /// A notice about `object`.
    pub fn new(
        object: ObjectReference,
        what: What,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Notice {
        Notice {
            object,
            what,
            reason: reason.into(),
            message: message.into(),
            warning: false,
            action: "Reconcile",
            changes: Vec::new(),
        }
    }

    /// Marks it as calling for attention.
    pub fn warning(mut self, warning: bool) -> Notice {
        self.warning = warning;
        self
    }

    /// Names what Vigil was doing.
    pub fn action(mut self, action: &'static str) -> Notice {
        self.action = action;
        self
    }
}

/// A reference to an object of a Vigil kind by namespace and name, with apiVersion and
/// kind from the type.
pub fn reference<K: Resource<DynamicType = ()>>(ns: &str, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: Some(name.to_string()),
        namespace: Some(ns.to_string()),
        ..Default::default()
    }
}

/// The sending side; cheap to clone.
#[derive(Clone)]
pub struct Notices {
    tx: broadcast::Sender<Notice>,
}

impl Default for Notices {
    fn default() -> Self {
        Notices::new()
    }
}

impl Notices {
    /// A stream holding at most [`CAPACITY`] notices for slow subscribers.
    pub fn new() -> Notices {
        Notices {
            tx: broadcast::channel(CAPACITY).0,
        }
    }

    /// Publishes a notice; never blocks, never fails (no subscriber is fine).
    pub fn publish(&self, notice: Notice) {
        let _ = self.tx.send(notice);
    }

    /// A new subscriber, seeing notices published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.tx.subscribe()
    }
}

/// Logs that a subscriber fell behind and skipped `missed` notices (it must then resync
/// from status if it keeps state).
pub fn lagged(subscriber: &'static str, missed: u64) {
    tracing::warn!(
        subscriber,
        missed,
        "notice subscriber fell behind; it skipped the oldest notices"
    );
}

/// The audit subscriber: one line per notice with target `vigil::audit` (a JSON line with
/// `--log-format json`): the object, what happened, why, and what Vigil did.
pub async fn audit(mut rx: broadcast::Receiver<Notice>) {
    loop {
        let n = match rx.recv().await {
            Ok(n) => n,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                lagged("audit", missed);
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => break,
        };
        let changes = serde_json::to_string(&n.changes).unwrap_or_default();
        tracing::info!(
            target: "vigil::audit",
            object = %format!(
                "{}/{}/{}",
                n.object.kind.as_deref().unwrap_or("?"),
                n.object.namespace.as_deref().unwrap_or(""),
                n.object.name.as_deref().unwrap_or("?")
            ),
            what = ?n.what,
            reason = %n.reason,
            action = n.action,
            warning = n.warning,
            changes = %changes,
            "{}",
            n.message
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MonitoredValidator;

    #[tokio::test]
    async fn publishing_never_blocks_and_a_laggard_is_told() {
        let notices = Notices::new();
        // No subscriber: fine.
        notices.publish(Notice::new(Default::default(), What::Recovered, "R", "m"));
        let mut rx = notices.subscribe();
        for i in 0..CAPACITY + 10 {
            notices.publish(Notice::new(
                reference::<MonitoredValidator>("ns", &format!("v{i}")),
                What::Conditions,
                "R",
                "m",
            ));
        }
        match rx.recv().await {
            Err(broadcast::error::RecvError::Lagged(n)) => assert_eq!(n, 10),
            other => panic!("{other:?}"),
        }
        let next = rx.recv().await.unwrap();
        assert_eq!(next.object.name.as_deref(), Some("v10"));
        assert_eq!(next.object.kind.as_deref(), Some("MonitoredValidator"));
        assert_eq!(
            next.object.api_version.as_deref(),
            Some("vigil.dev/v1alpha1")
        );
    }

    #[test]
    fn a_notice_serializes_for_the_audit_log() {
        let n = Notice::new(
            reference::<MonitoredValidator>("ns", "v"),
            What::RemediationDecided,
            "InFlight",
            "evictPod running",
        )
        .warning(true)
        .action("Remediate");
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(v["object"], "MonitoredValidator/ns/v");
        assert_eq!(v["what"], "remediationDecided");
        assert_eq!(v["action"], "Remediate");
    }
}
