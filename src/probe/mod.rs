//! Probe clients: ask a blockchain node how it is doing and turn the answers into facts.
//!
//! A [`Prober`] holds shared HTTP clients (connections kept across probes for TLS and named
//! hosts, per probe for plain HTTP to addresses) and runs
//! a [`ProbeTarget`] under [`ProbeOptions`]: one deadline for every request of the
//! probe, and a cap on every response body. The result is an [`Observation`] (facts that
//! could be read, plus warnings for partial failures) or a [`ProbeError`] saying why no
//! facts could be had at all.
//!
//! Supported kinds:
//! - **Substrate**: one batched JSON-RPC POST, then the finalized header; Prometheus
//!   metrics (`*_block_height{status=…}`, peers, major-sync) fill gaps.
//! - **Ethereum**: one batched JSON-RPC POST (`eth_blockNumber`, `eth_syncing`, …).
//! - **Cosmos**: CometBFT `GET /status` and `GET /net_info`, concurrently.
//! - **Http**: status code and JSON expectations of a health URL.
//! - **Tcp**: a connect within the deadline.
//!
//! For chain kinds, RPC facts win over metrics facts; metrics only fill gaps. If the RPC
//! fails but the metrics give a block height, the observation comes from the metrics
//! with a warning, so "the RPC port is closed" is not mistaken for "the node is down".

use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub mod budget;
mod cosmos;
mod ethereum;
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod jsonrpc;
mod metrics;
pub mod prom;
mod substrate;
mod tcp;

#[cfg(test)]
pub(crate) mod test_support;

pub use budget::Budget;
pub use http::{json_matches, json_path, parse_url};
pub use reqwest::Url;

use http::Ctx;

/// Default cap on a response body.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 1024 * 1024;
/// Default whole-probe timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest accepted timeout; larger values are clamped (a probe that waits longer than
/// this is not a probe).
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
/// Most warnings kept per observation, and most characters per warning.
const MAX_WARNINGS: usize = 16;
const MAX_WARNING_CHARS: usize = 300;

/// Which protocol to speak to the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    /// Substrate / Polkadot SDK node: JSON-RPC (`:9944`) and Prometheus (`:9615`).
    Substrate,
    /// Ethereum execution client: JSON-RPC (`:8545`).
    Ethereum,
    /// CometBFT / Tendermint node: HTTP RPC (`:26657`) and Prometheus (`:26660`).
    Cosmos,
    /// Any HTTP health endpoint.
    Http,
    /// A bare TCP port.
    Tcp,
}

impl ProbeKind {
    /// Lower-case name, as used in configuration and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Substrate => "substrate",
            ProbeKind::Ethereum => "ethereum",
            ProbeKind::Cosmos => "cosmos",
            ProbeKind::Http => "http",
            ProbeKind::Tcp => "tcp",
        }
    }
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to probe and how to judge it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeTarget {
    /// Protocol to speak.
    pub kind: ProbeKind,
    /// RPC base URL: JSON-RPC endpoint (Substrate, Ethereum) or CometBFT RPC base
    /// (`/status` and `/net_info` are appended). For `Http`, used when `health` is unset.
    /// URLs are parsed once, when the target is built ([`parse_url`]), never per probe.
    pub rpc: Option<Url>,
    /// Prometheus metrics URL (chain kinds).
    pub metrics: Option<Url>,
    /// Health URL. For `Http` this is the probe; for chain kinds it is checked alongside
    /// and sets [`Observation::health_ok`].
    pub health: Option<Url>,
    /// `host:port`. For `Tcp` this is the probe; for chain kinds it is checked alongside
    /// (a failure is a warning).
    pub tcp: Option<String>,
    /// Accepted HTTP statuses of the health URL; empty means any 2xx.
    pub expect_status: Vec<u16>,
    /// `(dotted path, expected value)` pairs the health URL's JSON body must satisfy,
    /// e.g. `("result.sync_info.catching_up", false)`. See [`json_matches`].
    pub expect_json: Vec<(String, serde_json::Value)>,
    /// Metric name prefix (`polkadot`, `cometbft`, …). Unset: well-known prefixes, then
    /// any single-word prefix. Set to `""` for unprefixed names.
    pub metrics_prefix: Option<String>,
}

impl ProbeTarget {
    /// A target of `kind` with nothing configured yet.
    pub fn new(kind: ProbeKind) -> Self {
        ProbeTarget {
            kind,
            rpc: None,
            metrics: None,
            health: None,
            tcp: None,
            expect_status: Vec::new(),
            expect_json: Vec::new(),
            metrics_prefix: None,
        }
    }

    /// Checks the configuration without any network traffic (and without parsing: the
    /// URLs are parsed already): the endpoints the kind needs are set, URLs are http or
    /// https, `tcp` is `host:port`, and expected statuses are real HTTP statuses.
    pub fn validate(&self) -> Result<(), ProbeError> {
        for url in [&self.rpc, &self.metrics, &self.health]
            .into_iter()
            .flatten()
        {
            http::check_scheme(url)?;
        }
        if let Some(addr) = &self.tcp {
            tcp::validate(addr.trim())?;
        }
        if let Some(bad) = self
            .expect_status
            .iter()
            .find(|s| !(100..=599).contains(*s))
        {
            return Err(ProbeError::Config(format!(
                "expected status {bad} is not an HTTP status (100-599)"
            )));
        }
        let missing = match self.kind {
            ProbeKind::Substrate | ProbeKind::Ethereum | ProbeKind::Cosmos
                if self.rpc.is_none() && self.metrics.is_none() =>
            {
                Some("an rpc or metrics URL")
            }
            ProbeKind::Http if self.health.is_none() && self.rpc.is_none() => {
                Some("a health (or rpc) URL")
            }
            ProbeKind::Tcp if self.tcp.is_none() => Some("a tcp host:port"),
            _ => None,
        };
        match missing {
            Some(what) => Err(ProbeError::Config(format!(
                "a {} probe needs {what}",
                self.kind
            ))),
            None => Ok(()),
        }
    }
}

/// Budget of one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeOptions {
    /// One deadline for all requests of the probe (clamped to 24 h).
    pub timeout: Duration,
    /// Cap on each response body; a larger body fails with [`ProbeError::TooLarge`].
    pub max_response_bytes: u64,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            timeout: DEFAULT_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// The facts one probe could establish. `None` means "not known", never "zero".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    /// Best (head) block height.
    pub best_block: Option<u64>,
    /// Finalized block height (CometBFT: equal to the best block, finality is instant).
    pub finalized_block: Option<u64>,
    /// Height the node is syncing towards, when it reports one.
    pub target_block: Option<u64>,
    /// Connected peers.
    pub peers: Option<u32>,
    /// Whether the node says it is (major-)syncing / catching up.
    pub syncing: Option<bool>,
    /// Node software version.
    pub version: Option<String>,
    /// Chain name or id (`Polkadot`, `cosmoshub-4`, Ethereum chain id in decimal).
    pub network: Option<String>,
    /// Result of the health URL check, when one was configured (`Http`/`Tcp` probes
    /// set `Some(true)` on success).
    pub health_ok: Option<bool>,
    /// Blocks this node authored since it started (Substrate
    /// `*_proposer_block_constructed_count`), for validator duty.
    pub authored: Option<u64>,
    /// Whether the node runs as an authority (Substrate `*_node_roles` has bit 4), for duty.
    pub authority: Option<bool>,
    /// The node's own validator and the last height it signed (CometBFT's
    /// `consensus_validator_last_signed_height`, address uppercase hex), for duty.
    pub last_signed: Option<(String, u64)>,
    /// Wall time of the whole probe.
    pub latency: Duration,
    /// Partial failures that did not prevent the observation, e.g. "metrics: …" while
    /// the RPC answered. At most 16, each at most 300 characters.
    pub warnings: Vec<String>,
}

impl Observation {
    /// Records a partial failure.
    pub(crate) fn warn(&mut self, msg: impl Into<String>) {
        let msg = msg.into();
        tracing::debug!(warning = %msg, "probe warning");
        if self.warnings.len() >= MAX_WARNINGS {
            return;
        }
        let msg = if msg.chars().count() > MAX_WARNING_CHARS {
            let mut s: String = msg.chars().take(MAX_WARNING_CHARS - 1).collect();
            s.push('…');
            s
        } else {
            msg
        };
        self.warnings.push(msg);
    }

    /// Fills the facts this observation lacks from `other` (which ranks lower).
    pub(crate) fn fill_gaps(&mut self, other: Observation) {
        self.best_block = self.best_block.or(other.best_block);
        self.finalized_block = self.finalized_block.or(other.finalized_block);
        self.target_block = self.target_block.or(other.target_block);
        self.peers = self.peers.or(other.peers);
        self.syncing = self.syncing.or(other.syncing);
        self.version = self.version.take().or(other.version);
        self.network = self.network.take().or(other.network);
        self.health_ok = self.health_ok.or(other.health_ok);
        self.authored = self.authored.or(other.authored);
        self.authority = self.authority.or(other.authority);
        self.last_signed = self.last_signed.take().or(other.last_signed);
        for w in other.warnings {
            self.warn(w);
        }
    }
}

/// Why a probe produced no observation. Messages say what to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// The probe deadline passed before the node answered.
    #[error(
        "no complete answer within the {0:?} probe timeout; the node may be overloaded or stalled, or a firewall drops the packets"
    )]
    Timeout(Duration),
    /// The connection could not be made or broke; the message names the endpoint
    /// (scheme, host and port only) and the cause.
    #[error("{0}")]
    Connect(String),
    /// The endpoint answered with an HTTP status outside the accepted set.
    #[error("endpoint answered HTTP {0}{reason}; check the URL path and the node's RPC/metrics settings", reason = status_reason(*.0))]
    Status(u16),
    /// A response body was larger than the configured cap (the value is the cap).
    #[error(
        "response is larger than the {0}-byte limit; check that the URL points at the node's API, or raise the response size limit"
    )]
    TooLarge(u64),
    /// The answer could not be understood (not UTF-8, not JSON, missing fields).
    #[error("unexpected response: {0}")]
    Malformed(String),
    /// The node answered with a JSON-RPC error.
    #[error("node answered JSON-RPC error {code}: {message}")]
    Rpc {
        /// JSON-RPC error code (or a gateway's HTTP-like status code).
        code: i64,
        /// The node's message, shortened to one line.
        message: String,
    },
    /// The health endpoint answered, but not as expected.
    #[error("health expectation not met: {0}")]
    Expectation(String),
    /// The probe target itself is invalid (missing or unparsable endpoint).
    #[error("probe target is misconfigured: {0}")]
    Config(String),
}

fn status_reason(code: u16) -> String {
    let name = reqwest::StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    if (300..400).contains(&code) {
        format!(
            "{name}, a redirect: Vigil does not follow redirects, point the endpoint at its final URL"
        )
    } else {
        name
    }
}

impl ProbeError {
    /// A short, stable class for metric labels.
    pub fn class(&self) -> &'static str {
        match self {
            ProbeError::Timeout(_) => "timeout",
            ProbeError::Connect(_) => "connect",
            ProbeError::Status(_) => "http",
            ProbeError::TooLarge(_) => "tooLarge",
            ProbeError::Malformed(_) => "malformed",
            ProbeError::Rpc { .. } => "rpc",
            ProbeError::Expectation(_) => "expectation",
            ProbeError::Config(_) => "config",
        }
    }
}

/// Runs probes. Cheap to clone; clones share the connection pools.
#[derive(Debug, Clone)]
pub struct Prober {
    /// Keeps connections from one probe to the next: for TLS endpoints and host names, a
    /// new connection would cost a handshake or a DNS lookup on every probe.
    client: reqwest::Client,
    /// For plain `http://` endpoints at IP addresses: a connection serves the requests of
    /// one probe and closes soon after. An idle HTTP/1 connection holds about 30 KiB in the
    /// client (buffers, dispatch channel), 300 MiB for 10,000 nodes, while a new
    /// connection to an address costs only a TCP handshake.
    ephemeral: reqwest::Client,
    /// Bytes of response bodies and decoded replies all probes may hold at once.
    budget: Budget,
}

/// How long an `ephemeral` connection stays open unused: long enough for the next request
/// of the same probe, far shorter than any probe interval.
const EPHEMERAL_IDLE: Duration = Duration::from_millis(500);

impl Default for Prober {
    fn default() -> Self {
        Self::new()
    }
}

impl Prober {
    /// A prober with a client tuned for polling many nodes.
    ///
    /// # Panics
    /// If the HTTP client cannot be built (as `reqwest::Client::new` does); use
    /// [`Prober::try_new`] to handle that instead.
    pub fn new() -> Self {
        match Self::try_new() {
            Ok(p) => p,
            Err(e) => panic!("cannot build the probe HTTP client: {e}"),
        }
    }

    /// A prober with a client tuned for polling many nodes, or why none can be built.
    pub fn try_new() -> Result<Self, ProbeError> {
        ensure_crypto_provider();
        let build = |idle: Duration| {
            crate::egress::builder()
                .user_agent(concat!("vigil-probe/", env!("CARGO_PKG_VERSION")))
                // Many hosts, a few requests each per poll: a small idle pool per host.
                .pool_max_idle_per_host(4)
                .pool_idle_timeout(idle)
                .tcp_nodelay(true)
                .tcp_keepalive(Duration::from_secs(30))
                // No redirects (the egress path's default): a probe reads the URL it was
                // given, never another host (an open redirect must not turn Vigil into a
                // proxy into the cluster or the cloud metadata).
                .build()
                .map_err(|e| ProbeError::Config(format!("cannot build the HTTP client: {e}")))
        };
        Ok(Prober {
            // Longer than a poll interval, so that connections get reused.
            client: build(Duration::from_secs(90))?,
            ephemeral: build(EPHEMERAL_IDLE)?,
            budget: budget::process(),
        })
    }

    /// A prober using a caller-built client (custom TLS roots, proxies, …) for every probe.
    pub fn with_client(client: reqwest::Client) -> Self {
        Prober {
            ephemeral: client.clone(),
            client,
            budget: budget::process(),
        }
    }

    /// This prober with its own byte budget instead of the process's.
    pub fn with_budget(mut self, budget: Budget) -> Self {
        self.budget = budget;
        self
    }

    /// The byte budget of this prober's probes.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Probes `target` within `options`. Never panics on anything a node sends.
    pub async fn probe(
        &self,
        target: &ProbeTarget,
        options: &ProbeOptions,
    ) -> Result<Observation, ProbeError> {
        target.validate()?;
        let started = Instant::now();
        let timeout = options.timeout.min(MAX_TIMEOUT);
        let now = tokio::time::Instant::now();
        let hold = budget::ProbeHold::default();
        let ctx = Ctx {
            client: if reconnect_is_cheap(target) {
                &self.ephemeral
            } else {
                &self.client
            },
            deadline: now + timeout,
            timeout,
            max_bytes: options.max_response_bytes,
            budget: &self.budget,
            hold: &hold,
        };
        // Every request is bounded by the deadline already; this outer bound is a safety
        // net so a probe can never outlive its budget by more than the grace.
        let grace = Duration::from_millis(100);
        let result = tokio::time::timeout_at(ctx.deadline + grace, run(&ctx, target))
            .await
            .unwrap_or(Err(ProbeError::Timeout(timeout)));
        let latency = started.elapsed();
        match &result {
            Ok(_) => tracing::debug!(kind = %target.kind, ?latency, "probe ok"),
            Err(e) => {
                tracing::debug!(kind = %target.kind, ?latency, class = e.class(), error = %e, "probe failed")
            }
        }
        result.map(|mut obs| {
            obs.latency = latency;
            obs
        })
    }
}

/// Whether every URL of `target` is plain `http://` to an IP address: then a connection per
/// probe costs less than keeping one open per node (see [`Prober`]).
fn reconnect_is_cheap(target: &ProbeTarget) -> bool {
    [&target.rpc, &target.metrics, &target.health]
        .into_iter()
        .flatten()
        .all(|url| {
            url.scheme() == "http"
                && url.host_str().is_some_and(|h| {
                    h.trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<std::net::IpAddr>()
                        .is_ok()
                })
        })
}

/// reqwest is built without a bundled TLS provider (the main binary installs ring);
/// make sure one exists so building a client cannot panic in other entry points
/// (tests, tools). Installing fails only if another thread won the race: fine.
pub fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

async fn run(ctx: &Ctx<'_>, t: &ProbeTarget) -> Result<Observation, ProbeError> {
    match t.kind {
        ProbeKind::Http => {
            // validate() guarantees one of the two.
            let url = t.health.as_ref().or(t.rpc.as_ref()).ok_or_else(|| {
                ProbeError::Config("an http probe needs a health (or rpc) URL".into())
            })?;
            http::health_check(ctx, url, &t.expect_status, &t.expect_json).await?;
            Ok(Observation {
                health_ok: Some(true),
                ..Observation::default()
            })
        }
        ProbeKind::Tcp => {
            tcp::connect(ctx, t.tcp.as_deref().unwrap_or_default()).await?;
            Ok(Observation {
                health_ok: Some(true),
                ..Observation::default()
            })
        }
        ProbeKind::Substrate | ProbeKind::Ethereum | ProbeKind::Cosmos => chain(ctx, t).await,
    }
}

/// A chain probe: RPC, metrics, health and TCP checks all at once.
async fn chain(ctx: &Ctx<'_>, t: &ProbeTarget) -> Result<Observation, ProbeError> {
    let family = match t.kind {
        ProbeKind::Ethereum => &metrics::ETHEREUM,
        ProbeKind::Cosmos => &metrics::COSMOS,
        _ => &metrics::SUBSTRATE,
    };
    let rpc = async {
        let url = t.rpc.as_ref()?;
        Some(match t.kind {
            ProbeKind::Ethereum => ethereum::rpc(ctx, url).await,
            ProbeKind::Cosmos => cosmos::rpc(ctx, url).await,
            _ => substrate::rpc(ctx, url).await,
        })
    };
    let scrape = async {
        let url = t.metrics.as_ref()?;
        Some(metrics::scrape(ctx, url, family, t.metrics_prefix.as_deref()).await)
    };
    let health = async {
        let url = t.health.as_ref()?;
        Some(http::health_check(ctx, url, &t.expect_status, &t.expect_json).await)
    };
    let port = async {
        let addr = t.tcp.as_deref()?;
        Some(tcp::connect(ctx, addr).await)
    };
    let (rpc, scrape, health, port) = tokio::join!(rpc, scrape, health, port);

    let mut obs = combine(rpc, scrape)?;
    match health {
        Some(Ok(())) => obs.health_ok = Some(true),
        Some(Err(e)) => {
            obs.health_ok = Some(false);
            obs.warn(format!("health: {e}"));
        }
        None => {}
    }
    if let Some(Err(e)) = port {
        obs.warn(format!("tcp: {e}"));
    }
    Ok(obs)
}

/// RPC facts win; metrics fill gaps, or stand in (with a warning) when the RPC failed.
fn combine(
    rpc: Option<Result<Observation, ProbeError>>,
    scrape: Option<Result<Observation, ProbeError>>,
) -> Result<Observation, ProbeError> {
    match (rpc, scrape) {
        (Some(Ok(mut obs)), scrape) => {
            match scrape {
                Some(Ok(m)) => obs.fill_gaps(m),
                Some(Err(e)) => obs.warn(format!("metrics: {e}")),
                None => {}
            }
            Ok(obs)
        }
        // A successful scrape always carries a block height (see metrics::scrape).
        (Some(Err(e)), Some(Ok(mut m))) => {
            m.warn(format!("rpc: {e}"));
            Ok(m)
        }
        (Some(Err(e)), _) => Err(e),
        (None, Some(scrape)) => scrape,
        (None, None) => Err(ProbeError::Config("no rpc or metrics URL to probe".into())),
    }
}

#[cfg(test)]
mod tests {

    #[tokio::test]
    async fn redirects_are_not_followed() {
        // A health URL that redirects to the cloud metadata address.
        let app = axum::Router::new().route(
            "/health",
            axum::routing::get(|| async {
                (
                    axum::http::StatusCode::FOUND,
                    [("location", "http://169.254.169.254/latest/meta-data/")],
                )
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        let mut t = ProbeTarget::new(ProbeKind::Http);
        t.health = Some(Url::parse(&format!("http://{addr}/health")).unwrap());
        let e = Prober::new()
            .probe(&t, &ProbeOptions::default())
            .await
            .unwrap_err();
        assert_eq!(e, ProbeError::Status(302));
        assert!(e.to_string().contains("does not follow redirects"), "{e}");
    }
    use super::*;

    #[test]
    fn connections_are_kept_only_where_a_new_one_is_costly() {
        let target = |rpc: &str, metrics: Option<&str>| ProbeTarget {
            rpc: Some(parse_url(rpc).unwrap()),
            metrics: metrics.map(|m| parse_url(m).unwrap()),
            ..ProbeTarget::new(ProbeKind::Substrate)
        };
        assert!(reconnect_is_cheap(&target("http://127.20.0.1:9944", None)));
        assert!(reconnect_is_cheap(&target(
            "http://[::1]:9944",
            Some("http://10.0.0.7:9615/metrics")
        )));
        // TLS handshakes and DNS lookups are worth saving.
        assert!(!reconnect_is_cheap(&target("https://10.0.0.7:9944", None)));
        assert!(!reconnect_is_cheap(&target(
            "http://validator-0.svc:9944",
            None
        )));
        assert!(!reconnect_is_cheap(&target(
            "http://10.0.0.7:9944",
            Some("https://10.0.0.7:9615/metrics")
        )));
        assert!(reconnect_is_cheap(&ProbeTarget {
            tcp: Some("validator-0:30333".into()),
            ..ProbeTarget::new(ProbeKind::Tcp)
        }));
    }

    #[test]
    fn classes_and_messages() {
        let cases = [
            (ProbeError::Timeout(Duration::from_secs(5)), "timeout", "5s"),
            (
                ProbeError::Connect("cannot connect to x".into()),
                "connect",
                "cannot connect",
            ),
            (
                ProbeError::Status(503),
                "http",
                "HTTP 503 (Service Unavailable)",
            ),
            (ProbeError::Status(599), "http", "HTTP 599;"),
            (ProbeError::TooLarge(1024), "tooLarge", "1024-byte limit"),
            (
                ProbeError::Malformed("x".into()),
                "malformed",
                "unexpected response: x",
            ),
            (
                ProbeError::Rpc {
                    code: -32601,
                    message: "Method not found".into(),
                },
                "rpc",
                "-32601: Method not found",
            ),
            (
                ProbeError::Expectation("e".into()),
                "expectation",
                "not met: e",
            ),
            (ProbeError::Config("c".into()), "config", "misconfigured: c"),
        ];
        for (err, class, text) in cases {
            assert_eq!(err.class(), class);
            assert!(err.to_string().contains(text), "{err}");
        }
    }

    #[test]
    fn validation() {
        let mut t = ProbeTarget::new(ProbeKind::Substrate);
        assert_eq!(t.validate().unwrap_err().class(), "config");
        t.metrics = Some(parse_url("http://127.0.0.1:9615/metrics").unwrap());
        assert!(t.validate().is_ok());
        assert!(
            parse_url("ws://127.0.0.1:9944")
                .unwrap_err()
                .to_string()
                .contains("ws")
        );
        t.rpc = Some(Url::parse("ws://127.0.0.1:9944").unwrap());
        assert!(t.validate().unwrap_err().to_string().contains("ws"));
        t.rpc = None;
        t.tcp = Some("nope".into());
        assert!(t.validate().is_err());
        t.tcp = None;
        t.expect_status = vec![200, 42];
        assert!(t.validate().unwrap_err().to_string().contains("42"));

        assert!(ProbeTarget::new(ProbeKind::Http).validate().is_err());
        assert!(ProbeTarget::new(ProbeKind::Tcp).validate().is_err());
        let cosmos = ProbeTarget {
            rpc: Some(parse_url("http://127.0.0.1:26657").unwrap()),
            ..ProbeTarget::new(ProbeKind::Cosmos)
        };
        assert!(cosmos.validate().is_ok());
    }

    #[test]
    fn warnings_are_capped() {
        let mut o = Observation::default();
        for i in 0..40 {
            o.warn(format!("{i} {}", "x".repeat(1000)));
        }
        assert_eq!(o.warnings.len(), MAX_WARNINGS);
        assert!(
            o.warnings
                .iter()
                .all(|w| w.chars().count() <= MAX_WARNING_CHARS)
        );
    }

    #[test]
    fn combine_prefers_rpc_and_falls_back_to_metrics() {
        let rpc = Observation {
            best_block: Some(10),
            peers: Some(3),
            ..Observation::default()
        };
        let met = Observation {
            best_block: Some(9),
            finalized_block: Some(8),
            peers: Some(4),
            ..Observation::default()
        };
        let o = combine(Some(Ok(rpc.clone())), Some(Ok(met.clone()))).unwrap();
        assert_eq!(
            (o.best_block, o.finalized_block, o.peers),
            (Some(10), Some(8), Some(3))
        );

        let o = combine(Some(Ok(rpc)), Some(Err(ProbeError::Status(404)))).unwrap();
        assert!(o.warnings[0].starts_with("metrics: endpoint answered HTTP 404"));

        let o = combine(Some(Err(ProbeError::Status(500))), Some(Ok(met))).unwrap();
        assert_eq!(o.best_block, Some(9));
        assert!(o.warnings[0].starts_with("rpc: "));

        let e = combine(
            Some(Err(ProbeError::Status(500))),
            Some(Err(ProbeError::Status(404))),
        )
        .unwrap_err();
        assert_eq!(e, ProbeError::Status(500));
        assert_eq!(combine(None, None).unwrap_err().class(), "config");
    }

    #[test]
    fn kind_serde_names() {
        let k: ProbeKind = serde_json::from_str("\"cosmos\"").unwrap();
        assert_eq!(k, ProbeKind::Cosmos);
        assert_eq!(serde_json::to_string(&ProbeKind::Tcp).unwrap(), "\"tcp\"");
        assert_eq!(ProbeKind::Substrate.to_string(), "substrate");
    }
}
