//! The one status writer: every status write of every kind goes through [`StatusWriter`].
//! It writes with server-side apply under the field managers defined here, takes
//! apiVersion and kind from the type, writes only when something changed, counts its
//! writes (`vigil_status_writes_total{kind}`), and bounds every call with a timeout.
//!
//! Fencing: a write that records a decision carries the `resourceVersion` of the object it
//! was decided on. If anyone wrote the object since (a new leader, a person), the API
//! server refuses it with a conflict ([`WriteError::Conflict`]): the writer then knows its
//! view is stale and must not act on it.

use crate::metrics::Metrics;
use kube::api::{Patch, PatchParams};
use kube::core::NamespaceResourceScope;
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Longest a status write may take.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(15);

/// Most status calls (writes and fence re-reads) in flight at once, per writer and its
/// clones: enough to keep a busy API server fed, few enough that a slow one gets a queue
/// here (where it is counted and costs a few bytes per waiting write) rather than hundreds
/// of open connections.
pub const CALLS_IN_FLIGHT: usize = 32;

/// Writes again after a lost fence when the decision's fields are unchanged
/// ([`StatusWriter::apply_refenced`]).
pub const REFENCE_TRIES: usize = 2;

/// Who owns which status fields (server-side apply: each manager owns what it sends).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Manager {
    /// Everything Vigil decides per object: a validator's whole status, a policy's counts
    /// and `Ready`, a run's status.
    Vigil,
    /// A policy's `fleetIncident`, written by the monitor.
    Fleet,
    /// A policy's `StormActive` condition, written by healing.
    Storm,
    /// Alert records, delivery health and test results (`vigil-alerts`).
    Alerts,
    /// Advice, its history, the advisor's spend and `BudgetExhausted` (`vigil-advisor`).
    Advisor,
}

impl Manager {
    /// The field manager name.
    pub fn as_str(self) -> &'static str {
        match self {
            Manager::Vigil => "vigil",
            Manager::Fleet => "vigil-fleet",
            Manager::Storm => "vigil-storm",
            Manager::Alerts => "vigil-alerts",
            Manager::Advisor => "vigil-advisor",
        }
    }
}

/// Why a status write did not land.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The object changed since the fence's resourceVersion: the writer's view is stale.
    #[error("the object changed since it was read (resourceVersion conflict)")]
    Conflict,
    /// The object is gone.
    #[error("the object no longer exists")]
    NotFound,
    /// The API server refused or failed the write.
    #[error("kubernetes API: {0}")]
    Api(kube::Error),
    /// No answer within [`WRITE_TIMEOUT`].
    #[error("no answer within {WRITE_TIMEOUT:?}")]
    Timeout,
    /// The status could not be serialized.
    #[error("serializing status: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// The status writer; cheap to clone.
#[derive(Clone)]
pub struct StatusWriter {
    client: Client,
    metrics: Metrics,
    /// Calls in flight, shared by every clone. The client speaks HTTP/1.1, so each call in
    /// flight is a connection of its own to the API server (kept in the pool afterwards):
    /// unbounded, a slow API server would make the operator open hundreds of them and
    /// queue work behind them.
    calls: Arc<Semaphore>,
}

impl StatusWriter {
    /// A writer over `client`, counting into `metrics`.
    pub fn new(client: Client, metrics: Metrics) -> StatusWriter {
        StatusWriter {
            client,
            metrics,
            calls: Arc::new(Semaphore::new(CALLS_IN_FLIGHT)),
        }
    }

    /// Waits for a call slot (the wait is counted in `vigil_status_calls_waiting`; the
    /// call's own timeout starts once it has one).
    async fn slot(&self) -> tokio::sync::SemaphorePermit<'_> {
        /// Counts one waiting call until dropped: a wait that is cancelled (a stop, a
        /// caller's timeout) leaves the gauge right too.
        struct Waiting<'a>(&'a prometheus::IntGauge);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.dec();
            }
        }
        self.metrics.status_calls_waiting.inc();
        let _waiting = Waiting(&self.metrics.status_calls_waiting);
        self.calls
            .acquire()
            .await
            .expect("the status writer's semaphore is never closed")
    }

    /// Applies `status` to the status of the `K` named `ns/name` as `manager`. With a
    /// `fence`, the write succeeds only if the object's resourceVersion is still that one.
    /// Returns the object as written (its new resourceVersion included).
    pub async fn apply<K, S>(
        &self,
        ns: &str,
        name: &str,
        manager: Manager,
        status: &S,
        fence: Option<&str>,
    ) -> Result<K, WriteError>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug,
        S: Serialize,
    {
        let mut patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": serde_json::to_value(status)?,
        });
        if let Some(rv) = fence {
            patch["metadata"] = serde_json::json!({ "resourceVersion": rv });
        }
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        let pp = PatchParams::apply(manager.as_str()).force();
        let _slot = self.slot().await;
        let written = tokio::time::timeout(
            WRITE_TIMEOUT,
            api.patch_status(name, &pp, &Patch::Apply(&patch)),
        )
        .await
        .map_err(|_| WriteError::Timeout)?
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 409 => WriteError::Conflict,
            kube::Error::Api(s) if s.code == 404 => WriteError::NotFound,
            e => WriteError::Api(e),
        })?;
        self.metrics
            .status_writes
            .with_label_values(&[&K::kind(&())])
            .inc();
        Ok(written)
    }

    /// [`apply`](Self::apply) fenced by `fence`; when the fence is lost, reads the object
    /// again and, if `still` says the fields the decision rests on are what it was made on
    /// (another manager changed only its own fields), writes on the fresh resourceVersion,
    /// at most [`REFENCE_TRIES`] times. Any other change keeps the conflict: the caller
    /// decides again on fresh data. Without this, a field that others rewrite every few
    /// seconds (a busy policy's status) starves a fenced writer for good.
    pub async fn apply_refenced<K, S>(
        &self,
        ns: &str,
        name: &str,
        manager: Manager,
        status: &S,
        fence: Option<String>,
        still: impl Fn(&K) -> bool,
    ) -> Result<K, WriteError>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug,
        S: Serialize,
    {
        let mut fence = fence;
        let mut tries = 0;
        loop {
            match self
                .apply::<K, S>(ns, name, manager, status, fence.as_deref())
                .await
            {
                Err(WriteError::Conflict) if tries < REFENCE_TRIES => {
                    tries += 1;
                    match self.read::<K>(ns, name).await? {
                        Some(fresh) if still(&fresh) => {
                            fence = fresh.meta().resource_version.clone()
                        }
                        Some(_) => return Err(WriteError::Conflict),
                        None => return Err(WriteError::NotFound),
                    }
                }
                r => return r,
            }
        }
    }

    /// Applies `status` to `obj` as [`Manager::Vigil`] when it differs from `current`
    /// (unfenced: for statuses recomputed from scratch on every reconcile). Returns
    /// whether a write was sent.
    pub async fn apply_changed<K, S>(
        &self,
        obj: &K,
        current: Option<&S>,
        status: &S,
    ) -> Result<bool, WriteError>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug,
        S: Serialize + PartialEq,
    {
        if current == Some(status) {
            return Ok(false);
        }
        let meta = obj.meta();
        let ns = meta.namespace.as_deref().unwrap_or_default();
        let name = meta.name.as_deref().unwrap_or_default();
        self.apply::<K, S>(ns, name, Manager::Vigil, status, None)
            .await?;
        Ok(true)
    }

    /// Reads one object, within [`WRITE_TIMEOUT`] (to refresh a stale view after a
    /// conflict, or to look up what a decision needs).
    pub async fn read<K>(&self, ns: &str, name: &str) -> Result<Option<K>, WriteError>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        let _slot = self.slot().await;
        tokio::time::timeout(WRITE_TIMEOUT, api.get_opt(name))
            .await
            .map_err(|_| WriteError::Timeout)?
            .map_err(WriteError::Api)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managers_are_distinct() {
        let names = [
            Manager::Vigil,
            Manager::Fleet,
            Manager::Storm,
            Manager::Alerts,
            Manager::Advisor,
        ]
        .map(Manager::as_str);
        assert_eq!(
            names,
            [
                "vigil",
                "vigil-fleet",
                "vigil-storm",
                "vigil-alerts",
                "vigil-advisor"
            ]
        );
    }
}
