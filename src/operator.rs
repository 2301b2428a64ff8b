//! `vigil run`: the operator process. It serves health and metrics at once, waits for the
//! CRDs, competes for the leader lease, and only while leading runs the controllers.

use crate::api::{MonitorPolicy, MonitoredValidator, PipelineRun};
use crate::controller::{self, Context, Ctx};
use crate::events::EventWriter;
use crate::leader::{Election, LeaseConfig};
use crate::metrics::Metrics;
use crate::monitor::Monitor;
use crate::notice::Notices;
use crate::scope::Scope;
use crate::server::{self, Readiness};
use crate::status::StatusWriter;
use futures::{FutureExt, StreamExt, future::BoxFuture};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::DeserializeGuard;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, CustomResourceExt, Resource, ResourceExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::watch;

/// Settings of `vigil run`.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The namespaces watched.
    pub scope: Scope,
    /// Label selector restricting the objects this process owns (sharding).
    pub selector: Option<String>,
    /// Address of the HTTP server.
    pub listen: SocketAddr,
    /// Leader lease.
    pub lease: LeaseConfig,
    /// Most reconciles running at once, per controller.
    pub concurrency: u16,
    /// Most probes in flight at once.
    pub probe_concurrency: usize,
    /// Refresh block heights in status at most this often even without a change (0: only
    /// with a change).
    pub facts_refresh: Duration,
    /// Decide and record remediations, never perform them.
    pub dry_run: bool,
    /// Most advisor calls in flight at once.
    pub advisor_concurrency: usize,
}

/// Why the operator stopped other than by a signal.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Could not reach or use the API server.
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    /// Leader election failed.
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    /// The HTTP server failed.
    #[error("http server: {0}")]
    Io(#[from] std::io::Error),
    /// Another replica took the lease while this one was leading.
    #[error("lost the leader lease; exiting so that only the new leader acts")]
    LostLeadership,
}

/// A shutdown signal that can be awaited from many places.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Fires on SIGTERM or SIGINT.
    pub fn on_signals() -> Self {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
            }
            let _ = tx.send(true);
            // Keep the sender alive so that receivers see `true`, not a closed channel.
            std::future::pending::<()>().await;
        });
        Shutdown(rx)
    }

    /// Resolves once shutdown was requested.
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|v| *v).await;
    }

    /// Whether shutdown was requested.
    pub fn requested(&self) -> bool {
        *self.0.borrow()
    }
}

/// The Kubernetes clients of the operator.
#[derive(Clone)]
pub struct Clients {
    /// Watches, status writes, leases, Events: transient refusals (429, 503) are retried.
    pub api: Client,
    /// Remediation actions: never retried by the client, because a refusal is an answer (a
    /// PodDisruptionBudget refuses an eviction with 429; retrying would hide it for minutes).
    pub actions: Client,
    /// The API server's URL (the base of the `generatorURL` of Alertmanager alerts).
    pub cluster_url: String,
}

impl Clients {
    /// Both clients from the kubeconfig or the in-cluster configuration.
    pub async fn infer() -> Result<Clients, kube::Error> {
        let config = kube::Config::infer()
            .await
            .map_err(kube::Error::InferConfig)?;
        let mut actions = config.clone();
        actions.default_retry = false;
        let cluster_url = config.cluster_url.to_string();
        Ok(Clients {
            api: Client::try_from(config)?,
            actions: Client::try_from(actions)?,
            cluster_url,
        })
    }
}

/// Runs the operator until a signal (Ok) or a fatal error.
pub async fn run(clients: Clients, settings: Settings, shutdown: Shutdown) -> Result<(), RunError> {
    let client = clients.api.clone();
    let metrics = Metrics::new();
    let readiness = Arc::new(Readiness::default());
    let (addr, serve) = server::bind(
        settings.listen,
        metrics.clone(),
        readiness.clone(),
        shutdown.clone().wait(),
    )
    .await?;
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    let server = tokio::spawn(serve);

    let outcome = async {
        if !wait_for_crds(&client, &shutdown).await? {
            return Ok(());
        }
        readiness.crds_established.store(true, Ordering::Relaxed);

        let mut election = Election::start(client.clone(), &settings.lease).await?;
        tracing::info!(identity = %settings.lease.identity, lease = %settings.lease.name, "waiting for leadership");
        let became_leader = tokio::select! {
            r = election.is_leader.wait_for(|l| *l) => r.is_ok(),
            _ = shutdown.clone().wait() => false,
        };
        if !became_leader {
            election.release().await;
            return Ok(());
        }
        tracing::info!(identity = %settings.lease.identity, "acquired leadership; starting controllers");
        readiness.leader.store(true, Ordering::Relaxed);
        metrics.leader.set(1);

        let mut lost = election.is_leader.clone();
        let lost_leadership = async move {
            let _ = lost.wait_for(|l| !*l).await;
        }
        .shared();
        let stop = {
            let lost = lost_leadership.clone();
            let sd = shutdown.clone();
            async move {
                tokio::select! { _ = lost => {}, _ = sd.wait() => {} }
            }
            .boxed()
            .shared()
        };
        let leading = election.is_leader.clone();
        run_controllers(
            Run {
                clients: clients.clone(),
                settings: &settings,
                metrics: metrics.clone(),
                readiness: readiness.clone(),
                leader: leading,
            },
            stop,
        )
        .await;
        readiness.leader.store(false, Ordering::Relaxed);
        metrics.leader.set(0);
        let lost_it = lost_leadership.now_or_never().is_some() && !shutdown.requested();
        // Every receiver of the lease state must be gone before the release can complete.
        election.release().await;
        if lost_it { Err(RunError::LostLeadership) } else { Ok(()) }
    }
    .await;

    // The server stops with the shutdown signal; on an error, stop it here.
    if outcome.is_err() {
        server.abort();
    } else {
        let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    }
    outcome
}

/// Waits until every Vigil CRD is Established. Returns false if shutdown came first.
async fn wait_for_crds(client: &Client, shutdown: &Shutdown) -> Result<bool, RunError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let names = [
        MonitoredValidator::crd_name(),
        MonitorPolicy::crd_name(),
        PipelineRun::crd_name(),
    ];
    let mut logged = false;
    loop {
        let mut missing = Vec::new();
        for name in names {
            let established = api.get_opt(name).await?.is_some_and(|crd| {
                crd.status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
            if !established {
                missing.push(name);
            }
        }
        if missing.is_empty() {
            return Ok(true);
        }
        if !logged {
            tracing::warn!(
                ?missing,
                "waiting for CRDs to be installed and established (vigil crd | kubectl apply -f -)"
            );
            logged = true;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.clone().wait() => return Ok(false),
        }
    }
}

/// What the controllers run with.
struct Run<'a> {
    clients: Clients,
    settings: &'a Settings,
    metrics: Metrics,
    readiness: Arc<Readiness>,
    /// True while this process holds the lease.
    leader: watch::Receiver<bool>,
}

async fn run_controllers(run: Run<'_>, stop: futures::future::Shared<BoxFuture<'static, ()>>) {
    let Run {
        clients,
        settings,
        metrics,
        readiness,
        leader,
    } = run;
    let mut wc = watcher::Config::default().any_semantic();
    if let Some(sel) = &settings.selector {
        wc = wc.labels(sel);
    }
    let cfg = ControllerConfig::default().concurrency(settings.concurrency);
    let client = clients.api.clone();

    let scope = &settings.scope;

    // The validator cache drops each object's managedFields: nothing reads them, and at
    // 10,000 validators they are about a third of the operator's memory.
    let (v_reader, v_writer) = kube::runtime::reflector::store();
    let v_stream = scope
        .watch::<DeserializeGuard<MonitoredValidator>>(&client, wc.clone())
        .modify(|g| g.managed_fields_mut().clear())
        .reflect(v_writer)
        .applied_objects();
    let validator_ctl = Controller::for_stream(v_stream, v_reader).with_config(cfg.clone());
    let (p_reader, p_writer) = kube::runtime::reflector::store();
    let p_stream = scope
        .watch::<DeserializeGuard<MonitorPolicy>>(&client, wc.clone())
        .reflect(p_writer)
        .applied_objects();
    let policy_ctl = Controller::for_stream(p_stream, p_reader).with_config(cfg.clone());
    // A run owns its steps' Jobs: a Job finishing (or heartbeating) wakes its run at once.
    // Only Jobs labelled as a run's are watched, not every Job of the cluster.
    let (r_reader, r_writer) = kube::runtime::reflector::store();
    let r_stream = scope
        .watch::<DeserializeGuard<PipelineRun>>(&client, wc.clone())
        .reflect(r_writer)
        .applied_objects();
    let jobs = scope
        .watch::<k8s_openapi::api::batch::v1::Job>(
            &client,
            watcher::Config::default()
                .any_semantic()
                .labels(controller::pipeline::RUN_LABEL),
        )
        .touched_objects();
    let run_ctl = Controller::for_stream(r_stream, r_reader)
        .owns_stream(jobs)
        .with_config(cfg);
    let validators = validator_ctl.store();
    // Shards split validators and runs by label; policies are shared, so every shard
    // reads all of them (the policy controller, which writes a policy's status, still
    // handles only the policies its selector matches).
    let all_policies = watcher::Config::default().any_semantic();
    let (policies, policies_writer) = kube::runtime::reflector::store();
    let runs = run_ctl.store();

    // The notice stream and its subscribers: Kubernetes Events and the audit log. They
    // end when every sender is gone (the monitor and the controllers stopped).
    let notices = Notices::new();
    let events = Arc::new(EventWriter::new(
        client.clone(),
        "vigil",
        &settings.lease.identity,
    ));
    let event_task = tokio::spawn(events.subscriber(notices.subscribe()));
    let audit_task = tokio::spawn(crate::notice::audit(notices.subscribe()));
    // Alerts: decided from status, recorded there, then delivered; only while leading.
    // One status writer for every component: its bound on calls in flight is global.
    let writer = StatusWriter::new(client.clone(), metrics.clone());
    let alerter = crate::alert::notify::Alerter {
        writer: writer.clone(),
        policies: policies.clone(),
        validators: validators.clone(),
        runs: runs.clone(),
        delivery: crate::alert::deliver::Delivery::new(
            // A notification goes where it is configured to, never elsewhere (no redirects).
            crate::egress::client(),
            client.clone(),
            clients.cluster_url.clone(),
            metrics.clone(),
        ),
        notices: notices.clone(),
        metrics: metrics.clone(),
    };
    let alerts = alerter.run(notices.subscribe(), stop.clone());
    let monitor = Monitor::new(
        crate::monitor::Parts {
            client: client.clone(),
            writer: writer.clone(),
            actions: clients.actions.clone(),
            metrics: metrics.clone(),
            notices: notices.clone(),
            validators: validators.clone(),
            leader,
        },
        crate::monitor::MonitorOptions {
            concurrency: settings.probe_concurrency,
            facts_refresh: settings.facts_refresh,
            dry_run: settings.dry_run,
        },
    );
    // The advisor: asks, reserves budgets, records advice; only while leading.
    let adviser = crate::advisor::task::Adviser {
        writer: writer.clone(),
        client: client.clone(),
        policies: policies.clone(),
        validators: validators.clone(),
        caller: Arc::new(crate::advisor::call::Caller::new(
            // A prompt goes to the configured endpoint, never elsewhere (no redirects).
            crate::egress::builder()
                .connect_timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            settings.advisor_concurrency,
        )),
        monitor: monitor.clone(),
        notices: notices.clone(),
        metrics: metrics.clone(),
    };
    let advice = adviser.run(notices.subscribe(), stop.clone());
    let ctx: Ctx = Arc::new(Context {
        client: client.clone(),
        notices,
        writer,
        metrics: metrics.clone(),
        policies: policies.clone(),
        validators: validators.clone(),
        monitor: monitor.clone(),
        counts_written: Default::default(),
    });

    // A policy appearing, changing its spec or going away re-reconciles the validators and
    // runs that point at it. Its status changes (counts, incidents) do not: with thousands of
    // validators per policy that would re-reconcile all of them on every count change.
    let v_store = validators.clone();
    // The shared policy cache, fed by its own watch; validators and runs are reconciled
    // only once it holds the first full list, so that none is judged "policy missing"
    // while the policies are still being listed.
    let policy_feed = scope
        .watch(&client, all_policies.clone())
        .reflect(policies_writer)
        .take_until(stop.clone())
        .for_each(|_| futures::future::ready(()));
    let validator_ctl = validator_ctl.watches_stream(
        spec_changes(scope.watch(&client, all_policies.clone())),
        move |p| {
            referrers(&v_store, &p, |v: &MonitoredValidator| {
                Some(v.spec.policy_ref.name.as_str())
            })
        },
    );
    let r_store = runs.clone();
    let run_ctl =
        run_ctl.watches_stream(spec_changes(scope.watch(&client, all_policies)), move |p| {
            referrers(&r_store, &p, |r: &PipelineRun| {
                r.spec.policy_ref.as_ref().map(|x| x.name.as_str())
            })
        });
    // A validator changing re-counts its policy.
    let policy_ctl = policy_ctl.watches_stream(
        scope
            .watch::<DeserializeGuard<MonitoredValidator>>(&client, wc)
            .touched_objects(),
        |v| {
            v.0.as_ref().ok().and_then(|v| {
                v.namespace()
                    .map(|ns| ObjectRef::new(&v.spec.policy_ref.name).within(&ns))
            })
        },
    );

    {
        let readiness = readiness.clone();
        let (v, p, r) = (validators.clone(), policies.clone(), runs.clone());
        tokio::spawn(async move {
            if store_ready(&v).await && store_ready(&p).await && store_ready(&r).await {
                readiness.caches_synced.store(true, Ordering::Relaxed);
                tracing::info!("caches synced");
            }
        });
    }

    let policies_listed = {
        let (policies, stop) = (policies.clone(), stop.clone());
        async move {
            tokio::select! {
                listed = store_ready(&policies) => listed,
                _ = stop => false,
            }
        }
        .shared()
    };
    let v = {
        let (ctl, listed, stop, ctx) = (
            validator_ctl,
            policies_listed.clone(),
            stop.clone(),
            ctx.clone(),
        );
        async move {
            if listed.await {
                ctl.graceful_shutdown_on(stop)
                    .run(controller::validator::reconcile, error_policy, ctx)
                    .for_each(log_result)
                    .await;
            }
        }
    };
    let p = policy_ctl
        .graceful_shutdown_on(stop.clone())
        .run(controller::policy::reconcile, error_policy, ctx.clone())
        .for_each(log_result);
    let r = {
        let (ctl, stop, ctx) = (run_ctl, stop.clone(), ctx.clone());
        async move {
            if policies_listed.await {
                ctl.graceful_shutdown_on(stop)
                    .run(controller::pipeline::reconcile, error_policy, ctx)
                    .for_each(log_result)
                    .await;
            }
        }
    };
    let gauge = {
        let (monitor, metrics, stop) = (monitor.clone(), metrics.clone(), stop.clone());
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            let refresh = async {
                loop {
                    tick.tick().await;
                    // Deleted validators leave the cache; forget them here whether or not
                    // they were being probed.
                    monitor.sweep();
                    // The duty followers count their own requests; the counter follows.
                    let sent = monitor.duty_requests();
                    let shown = metrics.duty_requests.get();
                    metrics.duty_requests.inc_by(sent.saturating_sub(shown));
                    metrics.monitor_tasks.set(monitor.tasks() as i64);
                    let (t, f, u) = monitor.ready_counts();
                    for (label, n) in [("True", t), ("False", f), ("Unknown", u)] {
                        metrics.validators.with_label_values(&[label]).set(n as i64);
                    }
                }
            };
            tokio::select! { _ = refresh => {}, _ = stop => {} }
        }
    };
    futures::join!(
        policy_feed,
        v,
        p,
        r,
        monitor.clone().run(stop.clone()),
        gauge,
        alerts,
        advice
    );
    // The last notices (of actions that finished at the stop) reach their subscribers.
    drop(ctx);
    drop(monitor);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = event_task.await;
        let _ = audit_task.await;
    })
    .await;
    tracing::info!("controllers stopped");
}

/// Waits until a store holds its first full list. Its readiness signal is a oneshot that wakes
/// only its latest waiter (the controller's own), so it is polled rather than awaited once.
async fn store_ready<K>(store: &Store<DeserializeGuard<K>>) -> bool
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    loop {
        if let Ok(r) =
            tokio::time::timeout(Duration::from_millis(100), store.wait_until_ready()).await
        {
            return r.is_ok();
        }
    }
}

/// Objects in `store` (same namespace) whose policy reference names policy `p`.
/// Policies whose spec changed (new generation), that appeared, or that were deleted.
fn spec_changes(
    events: impl futures::Stream<
        Item = Result<watcher::Event<DeserializeGuard<MonitorPolicy>>, watcher::Error>,
    > + Send,
) -> impl futures::Stream<Item = Result<DeserializeGuard<MonitorPolicy>, watcher::Error>> + Send {
    let mut seen: std::collections::HashMap<(Option<String>, String), Option<i64>> =
        Default::default();
    events.filter_map(move |event| {
        let out = match event {
            Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => {
                let key = (p.namespace(), p.name_any());
                let generation = p.meta().generation;
                (seen.insert(key, generation) != Some(generation)).then_some(Ok(p))
            }
            Ok(watcher::Event::Delete(p)) => {
                seen.remove(&(p.namespace(), p.name_any()));
                Some(Ok(p))
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
            Err(e) => Some(Err(e)),
        };
        futures::future::ready(out)
    })
}

fn referrers<K>(
    store: &Store<DeserializeGuard<K>>,
    p: &DeserializeGuard<MonitorPolicy>,
    policy_of: impl Fn(&K) -> Option<&str>,
) -> Vec<ObjectRef<DeserializeGuard<K>>>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let ns = p.namespace();
    let name = p.name_any();
    store
        .state()
        .iter()
        .filter(|g| g.namespace() == ns)
        .filter(|g| g.0.as_ref().ok().and_then(&policy_of) == Some(name.as_str()))
        .map(|g| ObjectRef::from_obj(g.as_ref()))
        .collect()
}

fn error_policy<K: kube::Resource<DynamicType = ()>>(
    _obj: Arc<K>,
    err: &controller::Error,
    ctx: Ctx,
) -> Action {
    ctx.metrics
        .reconcile_errors
        .with_label_values(&[K::kind(&()).as_ref(), err.metric_label()])
        .inc();
    Action::requeue(controller::error_policy_backoff(err))
}

async fn log_result<T: std::fmt::Debug, E: std::fmt::Display>(r: Result<T, E>) {
    if let Err(e) = r {
        tracing::warn!(error = %e, "reconcile failed");
    }
}
