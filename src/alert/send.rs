//! Sending one message to one channel: the wire calls (Alertmanager, Slack, webhook,
//! SMTP) and how each answer is classed (done, try again, or refused for good). Errors name
//! what failed in words a person can act on, never a URL, a credential or a response body.

use super::message::{self, Message};
use crate::api::SmtpSecurity;
use jiff::Timestamp;
use std::time::Duration;

/// Longest wait for one call.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// A firing alert posted to Alertmanager ends this long after it was sent unless Vigil
/// refreshes it first (four refresh intervals, as Prometheus does with its resend delay).
pub const ALERTMANAGER_AHEAD: Duration = Duration::from_secs(4 * 60);

/// A channel with its credentials read.
pub enum Sink {
    /// Alertmanager API v2 base URLs.
    Alertmanager(Vec<String>),
    /// A Slack incoming webhook URL.
    Slack(String),
    /// A generic webhook and its signing secret.
    Webhook {
        /// Where to POST.
        url: String,
        /// HMAC-SHA256 key.
        secret: Option<Vec<u8>>,
    },
    /// An SMTP server.
    Email(Email),
}

/// An SMTP channel with its credentials read.
pub struct Email {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Transport security.
    pub security: SmtpSecurity,
    /// Sender.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Username and password.
    pub credentials: Option<(String, String)>,
    /// Extra trusted CA certificates (PEM).
    pub ca: Option<Vec<u8>>,
}

/// Why a send did not go through.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth another try (later, or after `after` when the server said so).
    #[error("{why}")]
    Retry {
        /// What happened.
        why: String,
        /// The server's `Retry-After`.
        after: Option<Duration>,
    },
    /// Refused for good: trying again cannot help.
    #[error("{why}")]
    Permanent {
        /// What happened.
        why: String,
        /// The channel itself is gone or disabled (not only this message refused).
        channel_gone: bool,
    },
}

fn retry(why: impl Into<String>) -> SendError {
    SendError::Retry {
        why: why.into(),
        after: None,
    }
}

fn permanent(why: impl Into<String>, channel_gone: bool) -> SendError {
    SendError::Permanent {
        why: why.into(),
        channel_gone,
    }
}

/// A transport error in words, without the URL.
fn transport(what: &str, e: reqwest::Error) -> SendError {
    if e.is_timeout() {
        return retry(format!("{what}: no answer within {SEND_TIMEOUT:?}"));
    }
    let e = e.without_url();
    let mut why = format!("{what}: {e}");
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        why.push_str(": ");
        why.push_str(&s.to_string());
        src = s.source();
    }
    retry(why)
}

/// Classes an HTTP status the usual way: 2xx done, 408/429/5xx again, other 4xx refused.
fn by_status(what: &str, status: reqwest::StatusCode) -> Result<(), SendError> {
    let code = status.as_u16();
    match code {
        200..=299 => Ok(()),
        408 | 429 | 500..=599 => Err(retry(format!("{what} answered {code}"))),
        _ => Err(permanent(format!("{what} refused it ({code})"), false)),
    }
}

fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let secs: u64 = v.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(3600)))
}

/// Sends `m` to `sink`. `generator` is the base of Alertmanager's `generatorURL`.
pub async fn send(
    http: &reqwest::Client,
    sink: &Sink,
    m: &Message,
    generator: &str,
) -> Result<(), SendError> {
    let now = Timestamp::now();
    match sink {
        Sink::Alertmanager(urls) => {
            let body = message::alertmanager(m, now, ALERTMANAGER_AHEAD, generator);
            let mut failed = Vec::new();
            // Every instance gets every alert; the first error is reported after all were tried.
            for (i, url) in urls.iter().enumerate() {
                let what = format!("Alertmanager urls[{i}]");
                let endpoint = format!("{}/api/v2/alerts", url.trim_end_matches('/'));
                let r = match http
                    .post(endpoint)
                    .timeout(SEND_TIMEOUT)
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(resp) => by_status(&what, resp.status()),
                    Err(e) => Err(transport(&what, e)),
                };
                if let Err(e) = r {
                    failed.push(e);
                }
            }
            // Refused by one instance is refused for good; otherwise try all again.
            match failed
                .iter()
                .find(|e| matches!(e, SendError::Permanent { .. }))
            {
                Some(e) => Err(e.clone()),
                None => failed.into_iter().next().map_or(Ok(()), Err),
            }
        }
        Sink::Slack(url) => {
            let body = message::slack(m);
            let resp = http
                .post(url)
                .timeout(SEND_TIMEOUT)
                .json(&body)
                .send()
                .await
                .map_err(|e| transport("Slack", e))?;
            let status = resp.status();
            let after = retry_after(resp.headers());
            let text = resp.text().await.unwrap_or_default();
            slack_answer(status.as_u16(), &text, after)
        }
        Sink::Webhook { url, secret } => {
            let body = message::webhook(m, now).to_string().into_bytes();
            let mut req = http
                .post(url)
                .timeout(SEND_TIMEOUT)
                .header(reqwest::header::CONTENT_TYPE, "application/json");
            if let Some(s) = secret {
                req = req.header(
                    crate::remediate::webhook::SIGNATURE_HEADER,
                    crate::remediate::webhook::signature(s, &body),
                );
            }
            let resp = req
                .body(body)
                .send()
                .await
                .map_err(|e| transport("Webhook", e))?;
            by_status("Webhook", resp.status())
        }
        Sink::Email(e) => email(e, m).await,
    }
}

/// Slack's answer: `ok`, a rate limit, or one of its error tokens (a known token is named;
/// anything else is not repeated).
pub fn slack_answer(status: u16, body: &str, after: Option<Duration>) -> Result<(), SendError> {
    let token = body.trim();
    if status == 200 && (token == "ok" || token.starts_with("{\"ok\":true")) {
        return Ok(());
    }
    if status == 429 {
        return Err(SendError::Retry {
            why: "Slack rate limit (429)".into(),
            after,
        });
    }
    const GONE: [&str; 6] = [
        "channel_not_found",
        "no_service",
        "no_team",
        "team_disabled",
        "invalid_token",
        "channel_is_archived",
    ];
    const REFUSED: [&str; 4] = [
        "invalid_payload",
        "no_text",
        "action_prohibited",
        "posting_to_general_channel_denied",
    ];
    if let Some(t) = GONE.iter().find(|t| token.contains(**t)) {
        return Err(permanent(
            format!(
                "Slack refused it for good: {t} (the webhook or its channel is gone; fix the Secret)"
            ),
            true,
        ));
    }
    if let Some(t) = REFUSED.iter().find(|t| token.contains(**t)) {
        return Err(permanent(format!("Slack refused the message: {t}"), false));
    }
    match status {
        200 => Err(retry("Slack answered 200 without ok")),
        500..=599 => Err(retry(format!("Slack answered {status}"))),
        403 | 404 | 410 => Err(permanent(format!("Slack refused it ({status})"), true)),
        _ => Err(permanent(format!("Slack refused it ({status})"), false)),
    }
}

async fn email(e: &Email, m: &Message) -> Result<(), SendError> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message as Mail, Tokio1Executor};

    let (subject, body) = message::email(m);
    let mut mail = Mail::builder().subject(subject).from(
        e.from
            .parse()
            .map_err(|_| permanent("email: from is not an address", true))?,
    );
    for to in &e.to {
        mail = mail.to(to
            .parse()
            .map_err(|_| permanent(format!("email: {to:?} is not an address"), true))?);
    }
    let mail = mail
        .header(lettre::message::header::ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|err| permanent(format!("email: {err}"), false))?;

    let tls = || -> Result<TlsParameters, SendError> {
        let mut b = TlsParameters::builder(e.host.clone());
        if let Some(pem) = &e.ca {
            let cert = Certificate::from_pem(pem)
                .map_err(|_| permanent("email: the CA Secret holds no PEM certificate", true))?;
            b = b.add_root_certificate(cert);
        }
        b.build_rustls()
            .map_err(|err| permanent(format!("email: TLS setup: {err}"), true))
    };
    // The egress filter, as for HTTP: lettre dials by itself, so the name is resolved here,
    // checked, and the server reached at that very address (TLS still verifies the name).
    let addr = smtp_address(&e.host, e.port).await?;
    let mut t = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addr.ip().to_string())
        .port(e.port)
        .timeout(Some(SEND_TIMEOUT))
        .tls(match e.security {
            SmtpSecurity::Starttls => Tls::Required(tls()?),
            SmtpSecurity::Tls => Tls::Wrapper(tls()?),
            SmtpSecurity::None => Tls::None,
        });
    if let Some((user, pass)) = &e.credentials {
        t = t.credentials(Credentials::new(user.clone(), pass.clone()));
    }
    let t = t.build();
    match tokio::time::timeout(SEND_TIMEOUT * 3, t.send(mail)).await {
        Err(_) => Err(retry(format!(
            "email: no answer within {:?}",
            SEND_TIMEOUT * 3
        ))),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) if err.is_permanent() => {
            let code = err.status().map(|c| c.to_string()).unwrap_or_default();
            Err(permanent(
                format!("email: the server refused it ({code})"),
                false,
            ))
        }
        Ok(Err(err)) => Err(retry(format!("email: {}", smtp_error(&err)))),
    }
}

/// The first address of `host` the egress filter lets through: a denial is permanent (the
/// channel points somewhere Vigil may not go), a name that does not resolve is retried.
async fn smtp_address(host: &str, port: u16) -> Result<std::net::SocketAddr, SendError> {
    let addrs: Vec<std::net::SocketAddr> =
        tokio::time::timeout(SEND_TIMEOUT, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| {
                retry(format!(
                    "email: resolving the SMTP host took over {SEND_TIMEOUT:?}"
                ))
            })?
            .map_err(|_| retry("email: the SMTP host does not resolve"))?
            .collect();
    let policy = crate::egress::policy();
    let mut denied = None;
    for a in addrs {
        match policy.check(a.ip()) {
            Ok(()) => return Ok(a),
            Err(d) => denied = denied.or(Some(d)),
        }
    }
    Err(match denied {
        Some(d) => permanent(format!("email: {d}"), true),
        None => retry("email: the SMTP host resolves to no address"),
    })
}

/// An SMTP error in words (lettre's own text holds no credential).
fn smtp_error(err: &lettre::transport::smtp::Error) -> String {
    let mut why = err.to_string();
    let mut src = std::error::Error::source(err);
    while let Some(s) = src {
        why.push_str(": ");
        why.push_str(&s.to_string());
        src = s.source();
    }
    why
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::probe::test_support::fixture_text as fixture;

    #[test]
    fn slack_answers_from_real_bodies() {
        let ok = fixture("slack_webhook_response_ok.txt");
        assert_eq!(slack_answer(200, &ok, None), Ok(()));
        let cases: &[(&str, u16, &str, bool)] = &[
            (
                "slack_webhook_response_400_invalid_payload.txt",
                400,
                "invalid_payload",
                false,
            ),
            (
                "slack_webhook_response_404_channel_not_found.txt",
                404,
                "channel_not_found",
                true,
            ),
            (
                "slack_webhook_response_no_service.txt",
                404,
                "no_service",
                true,
            ),
        ];
        for (file, status, token, gone) in cases {
            let body = fixture(file);
            match slack_answer(*status, &body, None) {
                Err(SendError::Permanent { why, channel_gone }) => {
                    assert!(why.contains(token), "{file}: {why}");
                    assert_eq!(channel_gone, *gone, "{file}");
                }
                other => panic!("{file}: {other:?}"),
            }
        }
        assert_eq!(
            slack_answer(429, "", Some(Duration::from_secs(7))),
            Err(SendError::Retry {
                why: "Slack rate limit (429)".into(),
                after: Some(Duration::from_secs(7))
            })
        );
        assert!(matches!(
            slack_answer(503, "", None),
            Err(SendError::Retry { .. })
        ));
        // An unknown body is not repeated anywhere.
        match slack_answer(400, "secret-ish text", None) {
            Err(e) => assert!(!e.to_string().contains("secret"), "{e}"),
            Ok(()) => panic!("400 is not ok"),
        }
    }

    #[test]
    fn statuses_are_classed() {
        use reqwest::StatusCode as S;
        assert_eq!(by_status("x", S::ACCEPTED), Ok(()));
        for s in [S::TOO_MANY_REQUESTS, S::BAD_GATEWAY, S::REQUEST_TIMEOUT] {
            assert!(
                matches!(by_status("x", s), Err(SendError::Retry { .. })),
                "{s}"
            );
        }
        for s in [S::BAD_REQUEST, S::UNAUTHORIZED, S::NOT_FOUND] {
            assert!(
                matches!(by_status("x", s), Err(SendError::Permanent { .. })),
                "{s}"
            );
        }
    }
}
