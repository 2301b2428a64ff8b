//! Leader election on a coordination.k8s.io Lease, so that of several replicas exactly one acts.

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Longest a stop waits for the lease to be given up.
pub const RELEASE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Leadership parameters.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Lease name (one per shard).
    pub name: String,
    /// Namespace of the Lease.
    pub namespace: String,
    /// This process's identity in the Lease.
    pub identity: String,
    /// Seconds a lease stays valid after its last renewal.
    pub duration_secs: u64,
    /// Seconds before expiry at which the holder renews.
    pub grace_secs: u64,
}

/// A running election: `is_leader` follows the lease; dropping it releases the lease.
pub struct Election {
    /// True while this process holds the lease.
    pub is_leader: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
}

impl Election {
    /// Starts competing for the lease.
    pub async fn start(client: Client, cfg: &LeaseConfig) -> kube_lease_manager::Result<Self> {
        let manager = LeaseManagerBuilder::new(client, &cfg.name)
            .with_namespace(&cfg.namespace)
            .with_identity(&cfg.identity)
            .with_field_manager(format!("vigil-lease-{}", cfg.identity))
            .with_duration(cfg.duration_secs)
            .with_grace(cfg.grace_secs)
            .build()
            .await?;
        let (is_leader, task) = manager.watch().await;
        Ok(Election { is_leader, task })
    }

    /// Gives the lease up (so a standby takes over at once) and waits for that to finish,
    /// at most [`RELEASE_TIMEOUT`]: with the API server gone, a stop must not hang on it (the
    /// lease then simply expires).
    pub async fn release(self) {
        drop(self.is_leader);
        match tokio::time::timeout(RELEASE_TIMEOUT, self.task).await {
            Ok(Ok(Ok(_))) => tracing::info!("leader lease released"),
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "releasing the leader lease failed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "lease task failed"),
            Err(_) => tracing::warn!(
                "the leader lease could not be released in time; a standby takes over when it expires"
            ),
        }
    }
}
