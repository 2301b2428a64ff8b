//! Prometheus metrics, registered once per process.

use prometheus::{
    CounterVec, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
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
    /// Status calls waiting for a slot (the writer's queue).
    pub status_calls_waiting: IntGauge,
    /// Probes and actions of the monitor in flight or waiting.
    pub monitor_tasks: IntGauge,
    /// 1 while this process holds the leader lease.
    pub leader: IntGauge,
    /// Probes finished, by chain and result (`ok` or the error class).
    pub probes: IntCounterVec,
    /// Probe duration, by chain.
    pub probe_latency: HistogramVec,
    /// Delay between a probe's due time and its start.
    pub probe_lateness: Histogram,
    /// Probes skipped because the previous one of the same validator was still running.
    pub probes_skipped: IntCounter,
    /// Watched validators by published Ready status.
    pub validators: IntGaugeVec,
    /// Remediation actions, by action and result (`Succeeded`, `Failed`, `Blocked`, `DryRun`).
    pub remediations: IntCounterVec,
    /// Remediation decisions held back, by guard reason (`Cooldown`, `StormGuard`, ...).
    pub remediations_blocked: IntCounterVec,
    /// Validators escalated to a person.
    pub escalations: IntCounter,
    /// Requests sent to duty endpoints (CometBFT RPC, Cosmos SDK REST, beacon API): shared
    /// by every validator read through one endpoint.
    pub duty_requests: IntCounter,
    /// Alert notifications, by channel type and result (`sent`, `retried`, `failed`,
    /// `refused`, `dropped`).
    pub notifications: IntCounterVec,
    /// Active alerts, by severity.
    pub alerts_active: IntGaugeVec,
    /// Time from queueing a notification to its delivery, by channel type.
    pub delivery_latency: HistogramVec,
    /// The advisor's metrics.
    pub advisor: AdvisorMetrics,
}

/// The advisor's metrics.
#[derive(Clone)]
pub struct AdvisorMetrics {
    /// Advice given, by provider (`rules` included) and result (`answered`, `reused`,
    /// `fleet`, `failed`, `refused`, `budget`, `rules`).
    pub advice: IntCounterVec,
    /// Calls to a provider, by provider and result (`ok`, `error`, `invalid`).
    pub calls: IntCounterVec,
    /// Tokens billed, by provider and kind (`input`, `output`, `cacheRead`, `cacheWrite`).
    pub tokens: IntCounterVec,
    /// Dollars spent, by provider.
    pub cost: CounterVec,
    /// Questions answered by earlier advice with the same fingerprint (no call).
    pub dedup_hits: IntCounter,
    /// Calls a budget refused, by limit.
    pub budget_denials: IntCounterVec,
    /// Policies whose advisor budget is exhausted now.
    pub budget_exhausted: IntGauge,
    /// Model answers refused, by reason (`notJson`, `codeFence`, `schema`, `confidence`,
    /// `notAllowed`).
    pub invalid_answers: IntCounterVec,
    /// Recorded outcomes, by whether the advice was applied and the outcome.
    pub outcomes: IntCounterVec,
}

impl AdvisorMetrics {
    fn new(registry: &Registry) -> AdvisorMetrics {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("metric registered once");
            c
        };
        let advice = counter(
            "vigil_advisor_advice_total",
            "Advice given, by provider and result",
            &["provider", "result"],
        );
        let calls = counter(
            "vigil_advisor_calls_total",
            "Calls to a provider, by provider and result",
            &["provider", "result"],
        );
        let tokens = counter(
            "vigil_advisor_tokens_total",
            "Tokens billed, by provider and kind",
            &["provider", "kind"],
        );
        let budget_denials = counter(
            "vigil_advisor_budget_denials_total",
            "Advisor calls a budget refused, by limit",
            &["limit"],
        );
        let invalid_answers = counter(
            "vigil_advisor_invalid_answers_total",
            "Model answers refused, by reason",
            &["reason"],
        );
        let outcomes = counter(
            "vigil_advisor_outcomes_total",
            "Recorded advice outcomes, by applied and outcome",
            &["applied", "outcome"],
        );
        let cost = CounterVec::new(
            Opts::new(
                "vigil_advisor_cost_dollars_total",
                "Dollars spent, by provider",
            ),
            &["provider"],
        )
        .expect("valid metric");
        let dedup_hits = IntCounter::new(
            "vigil_advisor_dedup_hits_total",
            "Questions answered by earlier advice with the same fingerprint",
        )
        .expect("valid metric");
        let budget_exhausted = IntGauge::new(
            "vigil_advisor_budget_exhausted",
            "Policies whose advisor budget is exhausted now",
        )
        .expect("valid metric");
        for c in [
            Box::new(cost.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(dedup_hits.clone()),
            Box::new(budget_exhausted.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        AdvisorMetrics {
            advice,
            calls,
            tokens,
            cost,
            dedup_hits,
            budget_denials,
            budget_exhausted,
            invalid_answers,
            outcomes,
        }
    }
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
        let status_calls_waiting = IntGauge::new(
            "vigil_status_calls_waiting",
            "Status writes and reads waiting for one of the writer's call slots",
        )
        .expect("valid metric");
        let monitor_tasks = IntGauge::new(
            "vigil_monitor_tasks",
            "Probes and actions of the monitor in flight or waiting for a slot",
        )
        .expect("valid metric");
        let leader = IntGauge::new(
            "vigil_leader",
            "1 while this process holds the leader lease",
        )
        .expect("valid metric");
        let probes = IntCounterVec::new(
            Opts::new("vigil_probes_total", "Probes finished, by chain and result"),
            &["chain", "result"],
        )
        .expect("valid metric");
        let probe_latency = HistogramVec::new(
            HistogramOpts::new("vigil_probe_duration_seconds", "Probe duration, by chain").buckets(
                vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            ),
            &["chain"],
        )
        .expect("valid metric");
        let probe_lateness = Histogram::with_opts(
            HistogramOpts::new(
                "vigil_probe_lateness_seconds",
                "Delay between a probe's due time and its start",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )
        .expect("valid metric");
        let probes_skipped = IntCounter::new(
            "vigil_probes_skipped_total",
            "Probes skipped because the previous probe of the same validator was still running",
        )
        .expect("valid metric");
        let validators = IntGaugeVec::new(
            Opts::new(
                "vigil_validators",
                "Watched validators by published Ready status",
            ),
            &["ready"],
        )
        .expect("valid metric");
        let remediations = IntCounterVec::new(
            Opts::new(
                "vigil_remediations_total",
                "Remediation actions, by action and result",
            ),
            &["action", "result"],
        )
        .expect("valid metric");
        let remediations_blocked = IntCounterVec::new(
            Opts::new(
                "vigil_remediations_blocked_total",
                "Remediation decisions held back, by guard reason",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let escalations = IntCounter::new(
            "vigil_escalations_total",
            "Validators escalated to a person",
        )
        .expect("valid metric");
        let duty_requests = IntCounter::new(
            "vigil_duty_requests_total",
            "Requests sent to validator duty endpoints (one block follower per duty RPC)",
        )
        .expect("valid metric");
        let notifications = IntCounterVec::new(
            Opts::new(
                "vigil_alert_notifications_total",
                "Alert notifications, by channel type and result",
            ),
            &["channel", "result"],
        )
        .expect("valid metric");
        let alerts_active = IntGaugeVec::new(
            Opts::new("vigil_alerts_active", "Active alerts, by severity"),
            &["severity"],
        )
        .expect("valid metric");
        let delivery_latency = HistogramVec::new(
            HistogramOpts::new(
                "vigil_alert_delivery_seconds",
                "Time from queueing a notification to its delivery, by channel type",
            )
            .buckets(vec![
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
            &["channel"],
        )
        .expect("valid metric");
        for c in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(notifications.clone()),
            Box::new(alerts_active.clone()),
            Box::new(delivery_latency.clone()),
            Box::new(remediations.clone()),
            Box::new(remediations_blocked.clone()),
            Box::new(escalations.clone()),
            Box::new(duty_requests.clone()),
            Box::new(reconcile_errors.clone()),
            Box::new(reconcile_duration.clone()),
            Box::new(status_writes.clone()),
            Box::new(status_calls_waiting.clone()),
            Box::new(monitor_tasks.clone()),
            Box::new(leader.clone()),
            Box::new(probes.clone()),
            Box::new(probe_latency.clone()),
            Box::new(probe_lateness.clone()),
            Box::new(probes_skipped.clone()),
            Box::new(validators.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        let advisor = AdvisorMetrics::new(&registry);
        Metrics {
            advisor,
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            status_writes,
            status_calls_waiting,
            monitor_tasks,
            leader,
            probes,
            probe_latency,
            probe_lateness,
            probes_skipped,
            validators,
            remediations,
            remediations_blocked,
            escalations,
            duty_requests,
            notifications,
            alerts_active,
            delivery_latency,
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
