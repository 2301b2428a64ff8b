//! The controllers, one per kind, and what they share: the client, the notice stream
//! (Events and the audit log subscribe to it), metrics, and the one status writer.

pub mod pipeline;
pub mod policy;
pub mod validator;

use crate::api::{MonitorPolicy, MonitoredValidator};
use crate::conditions::{Change, Desired};
use crate::metrics::Metrics;
use crate::notice::{self, Notice, Notices, What};
use crate::status::{StatusWriter, WriteError};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::core::{DeserializeGuard, error_boundary::InvalidObject};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Client, Resource};
use std::sync::Arc;
use std::time::Duration;

/// Errors a reconcile can return; the controller retries them with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A status write did not land.
    #[error("writing status: {0}")]
    Status(#[from] WriteError),
}

impl Error {
    /// A short label for the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Status(WriteError::Conflict) => "conflict",
            Error::Status(_) => "status",
        }
    }
}

/// What every reconcile gets.
pub struct Context {
    /// Client of the API server.
    pub client: Client,
    /// The notice stream (Events and the audit log).
    pub notices: Notices,
    /// The one status writer.
    pub writer: StatusWriter,
    /// Process metrics.
    pub metrics: Metrics,
    /// Cache of every policy in scope (rebuilt from the API after a restart).
    pub policies: Store<DeserializeGuard<MonitorPolicy>>,
    /// Cache of every validator in scope.
    pub validators: Store<DeserializeGuard<MonitoredValidator>>,
    /// Probes validators and writes their status.
    pub monitor: Arc<crate::monitor::Monitor>,
    /// When each policy's counts were last written (a cache: empty after a restart, which
    /// only allows one early write).
    pub counts_written:
        std::sync::Mutex<std::collections::HashMap<(String, String), std::time::Instant>>,
}

/// Tells of a condition change (one notice per transition, hence an Event).
pub fn tell_change(ctx: &Context, reference: &ObjectReference, change: &Change, want: &Desired) {
    if let Change::Transitioned { .. } = change {
        let mut n = Notice::new(
            reference.clone(),
            What::Conditions,
            want.reason,
            &want.message,
        )
        .warning(want.status == crate::conditions::Status::False);
        n.changes = vec![notice::Change {
            type_: want.type_.to_string(),
            status: want.status.as_str().to_string(),
            reason: want.reason.to_string(),
            message: want.message.clone(),
        }];
        ctx.notices.publish(n);
    }
}

/// Handles an object that could not be decoded into its Rust type (e.g. a status field written
/// by hand with an impossible value): report it once as a Warning Event and do not retry,
/// so the rest of the watch keeps going.
pub fn report_invalid<K: Resource<DynamicType = ()>>(ctx: &Context, invalid: &InvalidObject) {
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
    ctx.notices.publish(
        Notice::new(
            reference,
            What::InvalidObject,
            "InvalidObject",
            format!(
                "Vigil cannot read this object and ignores it until it is fixed: {}",
                invalid.error
            ),
        )
        .warning(true)
        .action("Decode"),
    );
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
            report_invalid::<K>(ctx, invalid);
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
