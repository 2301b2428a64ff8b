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

/// Why a webhook call did not count as done.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// It answered, but not 2xx.
    #[error("Webhook answered {status}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The start of its answer.
        body: String,
    },
    /// No answer in time.
    #[error("Webhook did not answer within {}", crate::duration::format(*.0))]
    Timeout(Duration),
    /// The request could not be sent.
    #[error("Webhook call failed: {0}")]
    Send(reqwest::Error),
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
        "endpoints": {"rpc": rpc, "metrics": metrics, "health": health},
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
        Ok(resp) => {
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            let body: String = text.chars().take(200).collect();
            Err(WebhookError::Status {
                status,
                body: body.trim().to_string(),
            })
        }
        Err(e) if e.is_timeout() => Err(WebhookError::Timeout(target.timeout)),
        Err(e) => Err(WebhookError::Send(e)),
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
}
