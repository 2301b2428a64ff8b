//! The controllers, one per kind, and what they share: the client, the event recorder,
//! metrics, and the status writer (server-side apply, only when something changed).

pub mod pipeline;
pub mod policy;
pub mod validator;

use crate::api::{MonitorPolicy, MonitoredValidator};
use crate::conditions::Change;
use crate::metrics::Metrics;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Patch, PatchParams};
use kube::core::{DeserializeGuard, error_boundary::InvalidObject};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// The field manager Vigil writes status with.
pub const FIELD_MANAGER: &str = "vigil";

/// Errors a reconcile can return; the controller retries them with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Status could not be serialized.
    #[error("serializing status: {0}")]
    Serialize(#[from] serde_json::Error),
}

impl Error {
    /// A short label for the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Serialize(_) => "serialize",
        }
    }
}

/// What every reconcile gets.
pub struct Context {
    /// Client of the API server.
    pub client: Client,
    /// Publishes Events (`kubectl describe`).
    pub recorder: Recorder,
    /// Process metrics.
    pub metrics: Metrics,
    /// Cache of every policy in scope (rebuilt from the API after a restart).
    pub policies: Store<DeserializeGuard<MonitorPolicy>>,
    /// Cache of every validator in scope.
    pub validators: Store<DeserializeGuard<MonitoredValidator>>,
    /// Probes validators and writes their status.
    pub monitor: Arc<crate::monitor::Monitor>,
}

impl Context {
    /// Publishes an Event about `obj`; a failure is logged, never fatal (events are best effort).
    pub async fn event(
        &self,
        reference: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, reference).await {
            tracing::warn!(error = %e, reason, "publishing event failed");
        }
    }

    /// Writes `status` with server-side apply when it differs from `current`.
    /// Returns whether a write was sent.
    pub async fn write_status<K, S>(
        &self,
        obj: &K,
        current: Option<&S>,
        status: &S,
    ) -> Result<bool, Error>
    where
        K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        S: Serialize + PartialEq,
    {
        if current == Some(status) {
            return Ok(false);
        }
        let api: Api<K> =
            Api::namespaced(self.client.clone(), &obj.namespace().unwrap_or_default());
        let patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        });
        api.patch_status(
            &obj.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        self.metrics
            .status_writes
            .with_label_values(&[&K::kind(&())])
            .inc();
        Ok(true)
    }
}

/// Publishes the Event due for a condition change: one per transition, Warning when the new
/// status is `False`.
pub async fn event_for_change(
    ctx: &Context,
    reference: &ObjectReference,
    change: &Change,
    status: &str,
    reason: &str,
    message: &str,
) {
    if let Change::Transitioned { .. } = change {
        let type_ = if status == "False" {
            EventType::Warning
        } else {
            EventType::Normal
        };
        ctx.event(reference, type_, reason, "Reconcile", message.to_string())
            .await;
    }
}

/// Handles an object that could not be decoded into its Rust type (e.g. a status field written
/// by hand with an impossible value): report it once as a Warning Event and do not retry,
/// so the rest of the watch keeps going.
pub async fn report_invalid<K: Resource<DynamicType = ()>>(ctx: &Context, invalid: &InvalidObject) {
    let reference = ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: invalid.metadata.name.clone(),
        namespace: invalid.metadata.namespace.clone(),
        uid: invalid.metadata.uid.clone(),
        resource_version: invalid.metadata.resource_version.clone(),
        ..Default::default()
    };
    tracing::warn!(kind = %K::kind(&()), name = ?invalid.metadata.name, error = %invalid.error, "object cannot be read");
    ctx.event(
        &reference,
        EventType::Warning,
        "InvalidObject",
        "Decode",
        format!(
            "Vigil cannot read this object and ignores it until it is fixed: {}",
            invalid.error
        ),
    )
    .await;
}

/// Runs `reconcile` for a readable object with metrics around it; an unreadable one is
/// reported once and left alone until it changes.
pub async fn instrumented<K, F>(
    obj: &DeserializeGuard<K>,
    ctx: &Ctx,
    reconcile: F,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>,
    F: AsyncFnOnce(&K) -> Result<Action, Error>,
{
    let kind = K::kind(&());
    let object = match &obj.0 {
        Ok(o) => o,
        Err(invalid) => {
            report_invalid::<K>(ctx, invalid).await;
            return Ok(Action::await_change());
        }
    };
    let started = std::time::Instant::now();
    ctx.metrics
        .reconciles
        .with_label_values(&[kind.as_ref()])
        .inc();
    let result = reconcile(object).await;
    ctx.metrics
        .reconcile_duration
        .with_label_values(&[kind.as_ref()])
        .observe(started.elapsed().as_secs_f64());
    result
}

/// Requeue interval after an error.
pub fn error_policy_backoff(err: &Error) -> Duration {
    match err {
        Error::Kube(kube::Error::Api(s)) if s.code == 409 => Duration::from_secs(1),
        _ => Duration::from_secs(10),
    }
}

/// Shared state handed to each controller.
pub type Ctx = Arc<Context>;
