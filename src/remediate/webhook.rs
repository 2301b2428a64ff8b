//! The `webhook` action: POST a JSON description of the target and the reason to an HTTP
//! endpoint that performs the restart (a cloud API, a runbook runner). The body is signed with
//! HMAC-SHA256 so the receiver can tell it comes from Vigil; the attempt's token travels along
//! so a receiver can drop a repeated delivery.

use super::{Request, WebhookTarget};
use std::time::Duration;

/// Header with `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "X-Vigil-Signature";
/// Header with the attempt's token (an idempotency key).
pub const TOKEN_HEADER: &str = "X-Vigil-Token";

/// `sha256=<hex>` of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, body);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in tag.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Why a webhook call did not count as done. No variant carries the URL (its query may hold
/// a token) or any of the answer's text.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// It answered, but not 2xx (its body is not read).
    #[error("Webhook answered HTTP {0}{note}", note = redirect_note(*.0))]
    Status(u16),
    /// No answer in time.
    #[error("Webhook did not answer within {}", crate::duration::format(*.0))]
    Timeout(Duration),
    /// The request could not be sent: what failed, without the URL.
    #[error("Webhook call failed: {0}")]
    Send(String),
}

fn redirect_note(status: u16) -> &'static str {
    if (300..400).contains(&status) {
        " (a redirect, which Vigil does not follow: configure the final URL)"
    } else {
        ""
    }
}

/// `scheme://host[:port]` of an endpoint URL: where the node is, without a path, query or
/// user info (which may carry API keys).
fn origin(url: &str) -> Option<String> {
    let u = reqwest::Url::parse(url).ok()?;
    let host = u.host_str()?;
    Some(match u.port() {
        Some(p) => format!("{}://{host}:{p}", u.scheme()),
        None => format!("{}://{host}", u.scheme()),
    })
}

/// The JSON body that describes the attempt: its token, who asked, the validator, and why.
pub fn payload(req: &Request<'_>) -> serde_json::Value {
    let s = &req.subject;
    let [rpc, metrics, health] = s.endpoints;
    serde_json::json!({
        "token": req.token,
        "action": "restart",
        "trigger": req.trigger.as_str(),
        "validator": {"namespace": s.namespace, "name": s.name, "chain": s.chain.as_str()},
        "endpoints": {
            "rpc": rpc.and_then(origin),
            "metrics": metrics.and_then(origin),
            "health": health.and_then(origin),
        },
        "reason": s.reason.0,
        "message": s.reason.1,
        "time": jiff::Timestamp::now().to_string(),
    })
}

/// POSTs `payload` to the target within its timeout; a 2xx answer in time means done.
pub async fn call(
    client: &reqwest::Client,
    target: &WebhookTarget,
    secret: Option<&[u8]>,
    token: &str,
    payload: &serde_json::Value,
) -> Result<String, WebhookError> {
    let body = payload.to_string().into_bytes();
    let mut req = client
        .post(&target.url)
        .timeout(target.timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(TOKEN_HEADER, token);
    if let Some(secret) = secret {
        req = req.header(SIGNATURE_HEADER, signature(secret, &body));
    }
    match req.body(body).send().await {
        Ok(resp) if resp.status().is_success() => {
            Ok(format!("Webhook answered {}", resp.status().as_u16()))
        }
        Ok(resp) => Err(WebhookError::Status(resp.status().as_u16())),
        Err(e) if e.is_timeout() => Err(WebhookError::Timeout(target.timeout)),
        Err(e) => Err(WebhookError::Send(send_failure(&e))),
    }
}

/// What went wrong sending, in words that hold no URL.
fn send_failure(e: &reqwest::Error) -> String {
    let what = if e.is_connect() {
        "cannot connect"
    } else if e.is_builder() {
        "the URL cannot be used"
    } else if e.is_request() {
        "the request was not accepted"
    } else {
        "the exchange broke"
    };
    // The innermost cause says why (refused, no route, TLS); reqwest's own text names the URL.
    let mut cur: &dyn std::error::Error = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    if std::ptr::addr_eq(cur as *const _, e as *const _) {
        what.to_string()
    } else {
        format!("{what}: {}", crate::text::printable(&cur.to_string(), 200))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_rfc_4231_vector() {
        // RFC 4231 test case 2.
        let sig = signature(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn endpoints_are_reduced_to_their_origin() {
        let cases = [
            (
                "https://rpc.example.com/v1/APIKEY123",
                Some("https://rpc.example.com"),
            ),
            (
                "http://u:pw@10.0.0.1:9944/?token=t",
                Some("http://10.0.0.1:9944"),
            ),
            ("http://[::1]:26657/", Some("http://[::1]:26657")),
            ("not a url", None),
        ];
        for (url, want) in cases {
            assert_eq!(origin(url).as_deref(), want, "{url}");
        }
    }

    /// A receiver that redirects, answers 500 with a secret in its body, or is not there:
    /// the call fails, follows nothing, and its error holds neither the URL nor the body.
    #[tokio::test]
    async fn failures_say_what_went_wrong_without_url_or_answer() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU32, Ordering};
        let followed = Arc::new(AtomicU32::new(0));
        let f = followed.clone();
        let app = axum::Router::new()
            .route(
                "/moved",
                axum::routing::post(|| async {
                    (
                        axum::http::StatusCode::TEMPORARY_REDIRECT,
                        [("location", "/elsewhere")],
                    )
                }),
            )
            .route(
                "/elsewhere",
                axum::routing::post(move || {
                    f.fetch_add(1, Ordering::Relaxed);
                    async { "ok" }
                }),
            )
            .route(
                "/broken",
                axum::routing::post(|| async {
                    (
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        "db password hunter2",
                    )
                }),
            );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        crate::probe::ensure_crypto_provider();
        let client = crate::remediate::webhook_client();
        let target = |path: &str| WebhookTarget {
            url: format!("http://{addr}{path}?token=SECRET-TOKEN"),
            timeout: Duration::from_secs(5),
            signing_secret: None,
        };
        let call = |t: WebhookTarget| {
            let client = client.clone();
            async move { call(&client, &t, None, "tok", &serde_json::json!({})).await }
        };
        let e = call(target("/moved")).await.unwrap_err().to_string();
        assert!(e.contains("307") && e.contains("does not follow"), "{e}");
        assert_eq!(
            followed.load(Ordering::Relaxed),
            0,
            "a redirect is not followed"
        );
        let e = call(target("/broken")).await.unwrap_err().to_string();
        assert_eq!(e, "Webhook answered HTTP 500");
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let e = call(WebhookTarget {
            url: format!("http://{dead_addr}/x?token=SECRET-TOKEN"),
            ..target("/x")
        })
        .await
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("Webhook call failed: cannot connect"), "{e}");
        assert!(!e.contains("SECRET") && !e.contains("127.0.0.1"), "{e}");
    }
}
