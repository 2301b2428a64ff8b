//! The operator's HTTP endpoints: `/metrics`, `/healthz` (the process is alive) and `/readyz`
//! (CRDs established, caches synced when leading, leadership reported).

use crate::metrics::Metrics;
use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What `/readyz` reports, updated by the operator as it starts.
#[derive(Default)]
pub struct Readiness {
    /// Every Vigil CRD is Established.
    pub crds_established: AtomicBool,
    /// This process holds the leader lease.
    pub leader: AtomicBool,
    /// The controllers' caches have synced (only meaningful while leading).
    pub caches_synced: AtomicBool,
}

impl Readiness {
    /// Ready: the CRDs exist, and a leader has synced its caches. A standby is ready too,
    /// so that a rolling update can proceed while it waits for the lease.
    pub fn report(&self) -> (bool, String) {
        let crds = self.crds_established.load(Ordering::Relaxed);
        let leader = self.leader.load(Ordering::Relaxed);
        let synced = self.caches_synced.load(Ordering::Relaxed);
        let ready = crds && (!leader || synced);
        let role = if leader { "leader" } else { "standby" };
        let body = format!(
            "ready: {ready}\ncrds established: {crds}\nrole: {role}\ncaches synced: {synced}\n"
        );
        (ready, body)
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    readiness: Arc<Readiness>,
}

/// Binds the server; returns the bound address and a future that serves until `shutdown` fires.
pub async fn bind(
    addr: SocketAddr,
    metrics: Metrics,
    readiness: Arc<Readiness>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(
    SocketAddr,
    impl std::future::Future<Output = std::io::Result<()>>,
)> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz_handler))
        .with_state(AppState { metrics, readiness });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let serve = async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    };
    Ok((local, serve))
}

async fn metrics_handler(State(s): State<AppState>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

async fn readyz_handler(State(s): State<AppState>) -> impl IntoResponse {
    let (ready, body) = s.readiness.report();
    (
        if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standby_is_ready_once_crds_exist_and_leader_needs_synced_caches() {
        let r = Readiness::default();
        assert!(!r.report().0);
        r.crds_established.store(true, Ordering::Relaxed);
        assert!(r.report().0);
        assert!(r.report().1.contains("role: standby"));
        r.leader.store(true, Ordering::Relaxed);
        assert!(!r.report().0);
        r.caches_synced.store(true, Ordering::Relaxed);
        let (ready, body) = r.report();
        assert!(ready);
        assert!(body.contains("role: leader"));
    }
}
