//! One way out: every outbound HTTP client of Vigil (probes, duty reads, the webhook action,
//! alert channels, LLM APIs, the S3 archive store) is built by [`builder`], so every
//! connection passes one address filter.
//!
//! The filter runs at connect time, after DNS, on the address actually connected to (a host
//! name that resolves to the cloud metadata address is caught, and so is a DNS answer that
//! changes between a check and the connect): a denied connection is closed before any
//! request byte is sent. Built-in denials: link-local addresses (169.254.0.0/16 with the
//! cloud metadata address 169.254.169.254, fe80::/10), unspecified and multicast addresses,
//! the operator's own pod addresses (`POD_IP`, so a validator cannot point Vigil at its own
//! metrics or health ports), and loopback unless the operator runs with `--allow-loopback`
//! (tests and the demo do). Cluster admins add CIDR deny and allow lists (`--egress-deny`,
//! `--egress-allow`). Clients also follow no redirects and use no proxy from the
//! environment (a proxy would hide the real destination from the filter).

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::{Connection, HttpInfo};
use ipnet::IpNet;

/// What may be connected to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Loopback addresses (127.0.0.0/8, ::1) may be reached.
    pub allow_loopback: bool,
    /// Never reached (checked after the built-in denials).
    pub deny: Vec<IpNet>,
    /// When not empty, only these are reached.
    pub allow: Vec<IpNet>,
    /// The operator's own addresses.
    pub own: Vec<IpAddr>,
}

/// Why an address is not reached.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// Link-local, e.g. the cloud metadata address.
    #[error("the egress filter denies {0}: a link-local address (cloud metadata lives there)")]
    LinkLocal(IpAddr),
    /// Unspecified, broadcast or multicast.
    #[error("the egress filter denies {0}: not a host address")]
    NotAHost(IpAddr),
    /// Loopback, without `--allow-loopback`.
    #[error(
        "the egress filter denies {0}: loopback (the operator's own pod); start the operator with --allow-loopback to allow it"
    )]
    Loopback(IpAddr),
    /// The operator's own pod address.
    #[error("the egress filter denies {0}: the operator's own address")]
    Own(IpAddr),
    /// In `--egress-deny`.
    #[error("the egress filter denies {0}: in --egress-deny {1}")]
    DenyList(IpAddr, IpNet),
    /// Not in a non-empty `--egress-allow`.
    #[error("the egress filter denies {0}: not in --egress-allow")]
    NotAllowed(IpAddr),
}

impl Policy {
    /// The policy when none was configured (library use, `vigil probe`, unit tests):
    /// loopback allowed, the built-in denials apply.
    pub fn permissive() -> Policy {
        Policy {
            allow_loopback: true,
            ..Policy::default()
        }
    }

    /// Whether `ip` may be connected to.
    pub fn check(&self, ip: IpAddr) -> Result<(), Denied> {
        // ::ffff:169.254.169.254 is 169.254.169.254.
        let ip = match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        let link_local = match ip {
            IpAddr::V4(v4) => v4.is_link_local(),
            IpAddr::V6(v6) => v6.is_unicast_link_local(),
        };
        if link_local {
            return Err(Denied::LinkLocal(ip));
        }
        let not_a_host = ip.is_unspecified()
            || ip.is_multicast()
            || matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
        if not_a_host {
            return Err(Denied::NotAHost(ip));
        }
        if self.own.contains(&ip) {
            return Err(Denied::Own(ip));
        }
        if ip.is_loopback() && !self.allow_loopback {
            return Err(Denied::Loopback(ip));
        }
        if let Some(net) = self.deny.iter().find(|n| n.contains(&ip)) {
            return Err(Denied::DenyList(ip, *net));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|n| n.contains(&ip)) {
            // Loopback allowed by flag stays allowed: tests and the demo run on it.
            if !(ip.is_loopback() && self.allow_loopback) {
                return Err(Denied::NotAllowed(ip));
            }
        }
        Ok(())
    }
}

static POLICY: OnceLock<Policy> = OnceLock::new();

/// Sets the process's policy (once, before any client connects); `false` if one was set.
pub fn configure(policy: Policy) -> bool {
    POLICY.set(policy).is_ok()
}

/// The process's policy.
pub fn policy() -> &'static Policy {
    POLICY.get_or_init(Policy::permissive)
}

/// Parses a CIDR (`10.0.0.0/8`, `fd00::/8`) or a single address.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not a CIDR such as 10.0.0.0/8 or an IP address"))
}

/// A reqwest client builder on the one egress path: the address filter, no redirects, no
/// proxy, Vigil's user agent. Callers add timeouts and pools.
pub fn builder() -> reqwest::ClientBuilder {
    builder_with(policy().clone())
}

/// [`builder`] under another policy than the process's.
pub fn builder_with(policy: Policy) -> reqwest::ClientBuilder {
    crate::probe::ensure_crypto_provider();
    reqwest::Client::builder()
        .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connector_layer(FilterLayer(Arc::new(policy)))
}

/// A client from [`builder`] as is.
pub fn client() -> reqwest::Client {
    builder().build().unwrap_or_default()
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The connector layer that checks each new connection's peer address.
#[derive(Clone, Debug)]
pub struct FilterLayer(Arc<Policy>);

impl<S> tower::Layer<S> for FilterLayer {
    type Service = Filter<S>;
    fn layer(&self, inner: S) -> Filter<S> {
        Filter(inner, self.0.clone())
    }
}

/// See [`FilterLayer`].
#[derive(Clone, Debug)]
pub struct Filter<S>(S, Arc<Policy>);

impl<S, R> tower::Service<R> for Filter<S>
where
    S: tower::Service<R>,
    S::Response: Connection + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let connecting = self.0.call(req);
        let policy = self.1.clone();
        Box::pin(async move {
            let conn = connecting.await.map_err(Into::into)?;
            let mut extras = http::Extensions::new();
            conn.connected().get_extras(&mut extras);
            let Some(info) = extras.get::<HttpInfo>() else {
                return Err("the egress filter cannot tell the peer address".into());
            };
            // Dropping the connection closes it: no request byte was sent.
            policy.check(info.remote_addr().ip())?;
            Ok(conn)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// (policy, address, allowed)
    #[test]
    fn the_address_filter() {
        let strict = Policy {
            own: vec![ip("10.1.2.3")],
            ..Policy::default()
        };
        let lists = Policy {
            allow_loopback: true,
            deny: vec![parse_net("10.96.0.0/12").unwrap()],
            allow: vec![
                parse_net("10.0.0.0/8").unwrap(),
                parse_net("fd00::/8").unwrap(),
            ],
            own: vec![],
        };
        let cases: &[(&Policy, &str, bool)] = &[
            (&strict, "169.254.169.254", false),
            (&strict, "::ffff:169.254.169.254", false),
            (&strict, "fe80::1", false),
            (&strict, "0.0.0.0", false),
            (&strict, "255.255.255.255", false),
            (&strict, "224.0.0.1", false),
            (&strict, "127.0.0.1", false),
            (&strict, "::1", false),
            (&strict, "10.1.2.3", false),
            (&strict, "10.1.2.4", true),
            (&strict, "203.0.113.7", true),
            (&strict, "2001:db8::1", true),
            (&lists, "127.0.0.1", true),
            (&lists, "10.96.0.1", false),
            (&lists, "10.1.2.3", true),
            (&lists, "192.168.1.1", false),
            (&lists, "fd00::5", true),
            (&lists, "169.254.169.254", false),
            (&Policy::permissive(), "127.0.0.1", true),
            (&Policy::permissive(), "169.254.169.254", false),
        ];
        for (p, a, ok) in cases {
            assert_eq!(p.check(ip(a)).is_ok(), *ok, "{a} under {p:?}");
        }
        assert!(
            strict
                .check(ip("127.0.0.1"))
                .unwrap_err()
                .to_string()
                .contains("--allow-loopback")
        );
    }

    #[test]
    fn nets_parse() {
        assert_eq!(parse_net("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_net("10.0.0.1").unwrap().to_string(), "10.0.0.1/32");
        assert_eq!(parse_net("::1").unwrap().to_string(), "::1/128");
        assert!(parse_net("10.0.0.0/33").is_err());
        assert!(parse_net("example.com").is_err());
    }

    /// A client of the egress path refuses a connection the filter denies, before the
    /// request: the server sees no request.
    #[tokio::test]
    async fn a_denied_connection_sends_nothing() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU32, Ordering};
        let hits = Arc::new(AtomicU32::new(0));
        let h = hits.clone();
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(move || {
                h.fetch_add(1, Ordering::Relaxed);
                async { "ok" }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        let ok = client()
            .get(format!("http://{addr}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        assert_eq!(hits.load(Ordering::Relaxed), 1);
        let strict = builder_with(Policy::default()).build().unwrap();
        let e = strict
            .get(format!("http://{addr}/"))
            .send()
            .await
            .unwrap_err();
        assert!(e.is_connect(), "{e:?}");
        let mut cause: &dyn std::error::Error = &e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        assert!(cause.to_string().contains("loopback"), "{cause}");
        assert_eq!(
            hits.load(Ordering::Relaxed),
            1,
            "the denied request never arrived"
        );
    }
}
