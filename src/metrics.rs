//! Prometheus metrics, registered once per process.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// Every metric Vigil exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Reconciles started, by kind.
    pub reconciles: IntCounterVec,
    /// Reconciles that returned an error, by kind and error.
    pub reconcile_errors: IntCounterVec,
    /// Reconcile duration, by kind.
    pub reconcile_duration: HistogramVec,
    /// Status patches sent, by kind.
    pub status_writes: IntCounterVec,
    /// 1 while this process holds the leader lease.
    pub leader: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric in a fresh registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new("vigil_reconciles_total", "Reconciles started, by kind"),
            &["kind"],
        )
        .expect("valid metric");
        let reconcile_errors = IntCounterVec::new(
            Opts::new(
                "vigil_reconcile_errors_total",
                "Reconciles that failed, by kind and error",
            ),
            &["kind", "error"],
        )
        .expect("valid metric");
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new(
                "vigil_reconcile_duration_seconds",
                "Reconcile duration, by kind",
            )
            .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
            &["kind"],
        )
        .expect("valid metric");
        let status_writes = IntCounterVec::new(
            Opts::new("vigil_status_writes_total", "Status patches sent, by kind"),
            &["kind"],
        )
        .expect("valid metric");
        let leader = IntGauge::new(
            "vigil_leader",
            "1 while this process holds the leader lease",
        )
        .expect("valid metric");
        for c in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(reconcile_errors.clone()),
            Box::new(reconcile_duration.clone()),
            Box::new(status_writes.clone()),
            Box::new(leader.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        Metrics {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            status_writes,
            leader,
        }
    }

    /// The registry, for modules that add their own metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// All metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_by_kind() {
        let m = Metrics::new();
        m.reconciles
            .with_label_values(&["MonitoredValidator"])
            .inc();
        m.leader.set(1);
        let text = m.render();
        assert!(
            text.contains("vigil_reconciles_total{kind=\"MonitoredValidator\"} 1"),
            "{text}"
        );
        assert!(text.contains("vigil_leader 1"), "{text}");
    }
}
