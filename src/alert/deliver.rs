//! Delivery: one bounded queue and one worker per channel, so a slow or dead channel never
//! blocks a reconcile, a probe, or another channel. Each worker paces its channel
//! ([`Throttle`]), reads the channel's credentials from its Secrets at send time, gives each
//! send a timeout, retries with exponential backoff and jitter, and keeps the channel's
//! health (last success, last error, failures in a row) for the policy status.

use super::message::Message;
use super::send::{self, Email, SendError, Sink};
use super::throttle::{Throttle, backoff, jitter};
use crate::api::{AlertChannel, ChannelHealth, SecretKeyRef};
use crate::metrics::Metrics;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Api, Client};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Notifications waiting per channel; more are dropped (and counted).
pub const QUEUE: usize = 64;
/// Tries of one notification (the first and its retries).
pub const ATTEMPTS: u32 = 5;
/// Failures in a row after which a channel counts as failing.
pub const FAILING_AFTER: u32 = 3;
/// Longest wait for reading a channel's Secret.
const SECRET_TIMEOUT: Duration = Duration::from_secs(10);

/// A channel of a policy: namespace, policy, channel name.
pub type ChannelKey = (String, String, String);

struct Job {
    message: Message,
    channel: AlertChannel,
    queued: Instant,
    /// Dropped when still queued at this time (its next repeat is due anyway).
    expires: Instant,
    done: Option<oneshot::Sender<Result<(), SendError>>>,
}

struct Worker {
    tx: mpsc::Sender<Job>,
    handle: tokio::task::JoinHandle<()>,
}

/// The delivery side of alerting, shared by the alerter.
#[derive(Clone)]
pub struct Delivery {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    secrets: Client,
    generator: String,
    metrics: Metrics,
    workers: Mutex<HashMap<ChannelKey, Worker>>,
    health: Mutex<HashMap<ChannelKey, ChannelHealth>>,
}

/// The channel's type, for metrics.
pub fn channel_type(c: &AlertChannel) -> &'static str {
    if c.alertmanager.is_some() {
        "alertmanager"
    } else if c.slack.is_some() {
        "slack"
    } else if c.webhook.is_some() {
        "webhook"
    } else {
        "email"
    }
}

impl Delivery {
    /// Delivery through `http`, reading Secrets with `secrets`; `generator` is the base of
    /// Alertmanager's `generatorURL` (the API server's URL).
    pub fn new(
        http: reqwest::Client,
        secrets: Client,
        generator: String,
        metrics: Metrics,
    ) -> Self {
        Delivery {
            inner: Arc::new(Inner {
                http,
                secrets,
                generator,
                metrics,
                workers: Mutex::default(),
                health: Mutex::default(),
            }),
        }
    }

    /// Queues `message` for the channel; None when its queue is full (dropped, counted).
    /// A message still queued after `ttl` is dropped: its next repeat will say it again.
    /// The receiver answers once the channel is done with it: delivered, or given up after
    /// its retries (closed without an answer when dropped from the queue or stopped).
    pub fn submit(
        &self,
        key: &ChannelKey,
        channel: &AlertChannel,
        message: Message,
        ttl: Duration,
    ) -> Option<oneshot::Receiver<Result<(), SendError>>> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(key, channel, message, ttl, Some(tx))
            .then_some(rx)
    }

    /// Sends `message` through the channel's queue and waits for the outcome.
    pub async fn send_now(
        &self,
        key: &ChannelKey,
        channel: &AlertChannel,
        message: Message,
    ) -> Result<(), SendError> {
        let (tx, rx) = oneshot::channel();
        if !self.enqueue(key, channel, message, Duration::from_secs(600), Some(tx)) {
            return Err(SendError::Retry {
                why: "the channel's queue is full".into(),
                after: None,
            });
        }
        rx.await.unwrap_or_else(|_| {
            Err(SendError::Retry {
                why: "delivery stopped".into(),
                after: None,
            })
        })
    }

    fn enqueue(
        &self,
        key: &ChannelKey,
        channel: &AlertChannel,
        message: Message,
        ttl: Duration,
        done: Option<oneshot::Sender<Result<(), SendError>>>,
    ) -> bool {
        let now = Instant::now();
        let job = Job {
            message,
            channel: channel.clone(),
            queued: now,
            expires: now + ttl,
            done,
        };
        let mut workers = self.inner.workers.lock().expect("delivery workers");
        let w = workers
            .entry(key.clone())
            .or_insert_with(|| self.spawn(key, channel));
        match w.tx.try_send(job) {
            Ok(()) => true,
            Err(_) => {
                self.inner
                    .metrics
                    .notifications
                    .with_label_values(&[channel_type(channel), "dropped"])
                    .inc();
                tracing::warn!(namespace = %key.0, policy = %key.1, channel = %key.2, "alert channel queue full; notification dropped");
                false
            }
        }
    }

    fn spawn(&self, key: &ChannelKey, channel: &AlertChannel) -> Worker {
        let (tx, rx) = mpsc::channel(QUEUE);
        let inner = self.inner.clone();
        let handle = tokio::spawn(worker(inner, key.clone(), channel.max_per_minute, rx));
        Worker { tx, handle }
    }

    /// Stops the workers of channels that are no longer configured (`keep` says which are).
    pub fn retain(&self, keep: impl Fn(&ChannelKey) -> bool) {
        let mut workers = self.inner.workers.lock().expect("delivery workers");
        workers.retain(|k, w| {
            let k_ok = keep(k);
            if !k_ok {
                w.handle.abort();
            }
            k_ok
        });
        self.inner
            .health
            .lock()
            .expect("delivery health")
            .retain(|k, _| keep(k));
    }

    /// Seeds a channel's health (from status, after a restart) unless it is already known.
    pub fn seed(&self, key: &ChannelKey, h: &ChannelHealth) {
        self.inner
            .health
            .lock()
            .expect("delivery health")
            .entry(key.clone())
            .or_insert_with(|| h.clone());
    }

    /// The health of each channel of a policy, in `channels` order.
    pub fn health(&self, ns: &str, policy: &str, channels: &[AlertChannel]) -> Vec<ChannelHealth> {
        let h = self.inner.health.lock().expect("delivery health");
        channels
            .iter()
            .filter_map(|c| {
                h.get(&(ns.to_string(), policy.to_string(), c.name.clone()))
                    .cloned()
            })
            .collect()
    }
}

impl Inner {
    fn record(&self, key: &ChannelKey, result: &Result<(), SendError>) {
        let now = Time(jiff::Timestamp::now());
        let mut all = self.health.lock().expect("delivery health");
        let h = all.entry(key.clone()).or_insert_with(|| ChannelHealth {
            channel: key.2.clone(),
            ..Default::default()
        });
        match result {
            Ok(()) => {
                h.last_success = Some(now);
                h.consecutive_failures = 0;
                h.permanent = false;
            }
            Err(e) => {
                h.last_failure = Some(now);
                h.last_error = e.to_string();
                h.consecutive_failures = h.consecutive_failures.saturating_add(1);
                h.permanent = matches!(
                    e,
                    SendError::Permanent {
                        channel_gone: true,
                        ..
                    }
                );
            }
        }
    }

    async fn secret(&self, ns: &str, r: &SecretKeyRef) -> Result<Vec<u8>, SendError> {
        let api: Api<Secret> = Api::namespaced(self.secrets.clone(), ns);
        let fail = |why: String| SendError::Retry { why, after: None };
        let s = tokio::time::timeout(SECRET_TIMEOUT, api.get_opt(&r.name))
            .await
            .map_err(|_| fail(format!("cannot read Secret {}: no answer", r.name)))?
            .map_err(|e| match e {
                kube::Error::Api(s) => fail(format!("cannot read Secret {}: {}", r.name, s.reason)),
                _ => fail(format!("cannot read Secret {}", r.name)),
            })?
            .ok_or_else(|| fail(format!("Secret {} does not exist", r.name)))?;
        s.data
            .and_then(|mut d| d.remove(&r.key))
            .map(|b| b.0)
            .ok_or_else(|| fail(format!("Secret {} has no key {:?}", r.name, r.key)))
    }

    async fn text_secret(&self, ns: &str, r: &SecretKeyRef) -> Result<String, SendError> {
        let b = self.secret(ns, r).await?;
        String::from_utf8(b)
            .map(|s| s.trim().to_string())
            .map_err(|_| SendError::Retry {
                why: format!("Secret {} key {:?} is not text", r.name, r.key),
                after: None,
            })
    }

    /// The channel with its credentials read.
    async fn sink(&self, ns: &str, c: &AlertChannel) -> Result<Sink, SendError> {
        if let Some(am) = &c.alertmanager {
            return Ok(Sink::Alertmanager(
                am.urls.iter().map(|u| u.0.clone()).collect(),
            ));
        }
        if let Some(s) = &c.slack {
            return Ok(Sink::Slack(
                self.text_secret(ns, &s.webhook_url_secret_ref).await?,
            ));
        }
        if let Some(w) = &c.webhook {
            let secret = match &w.signing_secret_ref {
                Some(r) => Some(self.secret(ns, r).await?),
                None => None,
            };
            return Ok(Sink::Webhook {
                url: w.url.0.clone(),
                secret,
            });
        }
        let e = c.email.as_ref().ok_or_else(|| SendError::Permanent {
            why: "the channel sets no type".into(),
            channel_gone: true,
        })?;
        let credentials = match &e.credentials_secret {
            Some(name) => {
                let key = |k: &str| SecretKeyRef {
                    name: name.clone(),
                    key: k.into(),
                };
                Some((
                    self.text_secret(ns, &key("username")).await?,
                    self.text_secret(ns, &key("password")).await?,
                ))
            }
            None => None,
        };
        let ca = match &e.ca_secret_ref {
            Some(r) => Some(self.secret(ns, r).await?),
            None => None,
        };
        Ok(Sink::Email(Email {
            host: e.smtp_host.clone(),
            port: e.smtp_port,
            security: e.security,
            from: e.from.clone(),
            to: e.to.clone(),
            credentials,
            ca,
        }))
    }
}

async fn worker(inner: Arc<Inner>, key: ChannelKey, per_minute: u32, mut rx: mpsc::Receiver<Job>) {
    let start = Instant::now();
    let mut throttle = Throttle::new(per_minute, Duration::ZERO);
    while let Some(job) = rx.recv().await {
        while let Err(wait) = throttle.take(start.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        let kind = channel_type(&job.channel);
        let count = |result: &str| {
            inner
                .metrics
                .notifications
                .with_label_values(&[kind, result])
                .inc()
        };
        if Instant::now() > job.expires {
            count("dropped");
            tracing::warn!(namespace = %key.0, policy = %key.1, channel = %key.2, alert = %super::catalog::name_str(job.message.name), "notification waited past its repeat; dropped");
            continue;
        }
        let mut result = Err(SendError::Retry {
            why: "not sent".into(),
            after: None,
        });
        for attempt in 0..ATTEMPTS {
            result = match inner.sink(&key.0, &job.channel).await {
                Ok(sink) => send::send(&inner.http, &sink, &job.message, &inner.generator).await,
                Err(e) => Err(e),
            };
            // Every try counts, so a dead channel shows as failing while it is retried.
            inner.record(&key, &result);
            match &result {
                Ok(()) | Err(SendError::Permanent { .. }) => break,
                Err(SendError::Retry { after, why }) => {
                    if attempt + 1 == ATTEMPTS {
                        break;
                    }
                    count("retried");
                    tracing::info!(namespace = %key.0, policy = %key.1, channel = %key.2, error = %why, attempt, "alert delivery failed; retrying");
                    tokio::time::sleep(after.unwrap_or_else(|| backoff(attempt, jitter()))).await;
                }
            }
        }
        match &result {
            Ok(()) => {
                count("sent");
                inner
                    .metrics
                    .delivery_latency
                    .with_label_values(&[kind])
                    .observe(job.queued.elapsed().as_secs_f64());
            }
            Err(SendError::Permanent { why, .. }) => {
                count("refused");
                tracing::warn!(namespace = %key.0, policy = %key.1, channel = %key.2, error = %why, "alert channel refused the notification");
            }
            Err(SendError::Retry { why, .. }) => {
                count("failed");
                tracing::warn!(namespace = %key.0, policy = %key.1, channel = %key.2, error = %why, "alert delivery failed after {ATTEMPTS} tries");
            }
        }
        if let Some(done) = job.done {
            let _ = done.send(result);
        }
    }
}
