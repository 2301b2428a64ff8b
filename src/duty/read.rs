//! Bounded reads of the JSON REST APIs that duty asks (Cosmos SDK REST, the Ethereum beacon
//! API), and the two errors every duty parser and reader returns.
//!
//! Errors never carry a response body, a URL's path or query (API keys live there) or its
//! credentials: they name the endpoint as `scheme://host:port`, the HTTP status, or which
//! field was wrong.

use reqwest::Url;
use std::time::Duration;

/// Outer bound on one request, answer included, when the client sets no shorter timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an answer could not be understood. Names the field (as a JSON path) and what was
/// wrong with it, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The body is not JSON (or nests deeper than the JSON reader allows).
    #[error("the answer is not valid JSON ({0})")]
    NotJson(String),
    /// A field the answer must have is absent (or `null`).
    #[error("the answer has no `{0}`")]
    Missing(&'static str),
    /// A field has the wrong JSON type.
    #[error("`{field}` in the answer is not {expected}")]
    WrongType {
        /// Where the field is.
        field: &'static str,
        /// What it should be ("a string", "a decimal number", ...).
        expected: &'static str,
    },
    /// A field has the right type but a value that cannot be meant.
    #[error("`{field}` in the answer is not valid: {why}")]
    Invalid {
        /// Where the field is.
        field: &'static str,
        /// Why it is refused (never the value itself).
        why: &'static str,
    },
}

/// Why a duty endpoint could not be read. Messages say what to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DutyReadError {
    /// No connection could be made, it broke, or the URL cannot be used; names the
    /// endpoint as `scheme://host:port` and the cause.
    #[error("{0}")]
    Unreachable(String),
    /// No complete answer in time.
    #[error(
        "the endpoint did not answer in time; it may be overloaded or stalled, or a firewall drops the packets"
    )]
    Timeout,
    /// The endpoint answered with a status outside 2xx.
    #[error("the endpoint answered HTTP {0}{reason}; check the URL and the address asked for", reason = status_reason(*.0))]
    Status(u16),
    /// The answer was longer than the cap (the value is the cap in bytes).
    #[error(
        "the answer is larger than the {0}-byte limit; check that the URL points at the node's REST API"
    )]
    TooLarge(usize),
    /// The answer was not what the API documents.
    #[error("unexpected answer: {0}")]
    Malformed(String),
}

impl From<ParseError> for DutyReadError {
    fn from(e: ParseError) -> Self {
        DutyReadError::Malformed(e.to_string())
    }
}

fn status_reason(code: u16) -> String {
    reqwest::StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(|r| format!(" ({r})"))
        .unwrap_or_default()
}

/// `scheme://host:port` of a URL: what errors may say about an endpoint.
pub fn redact(url: &Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port_or_known_default() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// Parses a configured base URL (http or https only).
pub fn base_url(raw: &str) -> Result<Url, DutyReadError> {
    let url = Url::parse(raw.trim()).map_err(|_| {
        DutyReadError::Unreachable(
            "the endpoint is not a valid URL; write it as http://host:port or https://host"
                .to_string(),
        )
    })?;
    match url.scheme() {
        "http" | "https" if url.has_host() => Ok(url),
        _ => Err(DutyReadError::Unreachable(
            "the endpoint must be an http:// or https:// URL with a host".to_string(),
        )),
    }
}

/// `base` with path `segments` appended, each percent-encoded as one segment (an address
/// can never add a path of its own); the base's query (an API key) is kept.
pub fn join(base: &Url, segments: &[&str]) -> Result<Url, DutyReadError> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| {
            DutyReadError::Unreachable(format!(
                "{} cannot take a path; write the endpoint as http://host:port",
                redact(base)
            ))
        })?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// GETs `url` and returns its body, at most `max_bytes` long.
pub async fn get_json_capped(
    client: &reqwest::Client,
    url: &Url,
    max_bytes: usize,
) -> Result<Vec<u8>, DutyReadError> {
    let req = client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json");
    send_capped(req, url, max_bytes).await
}

/// POSTs `body` as JSON to `url` and returns the answer's body, at most `max_bytes` long.
pub async fn post_json_capped(
    client: &reqwest::Client,
    url: &Url,
    body: &serde_json::Value,
    max_bytes: usize,
) -> Result<Vec<u8>, DutyReadError> {
    let req = client
        .post(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .json(body);
    send_capped(req, url, max_bytes).await
}

async fn send_capped(
    req: reqwest::RequestBuilder,
    url: &Url,
    max_bytes: usize,
) -> Result<Vec<u8>, DutyReadError> {
    let work = async {
        let mut resp = req.send().await.map_err(|e| send_error(&e, url))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(DutyReadError::Status(status));
        }
        let cap = u64::try_from(max_bytes).unwrap_or(u64::MAX);
        if resp.content_length().is_some_and(|n| n > cap) {
            return Err(DutyReadError::TooLarge(max_bytes));
        }
        let hint = resp
            .content_length()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(16 * 1024)
            .min(max_bytes)
            .min(1 << 20);
        let mut buf = Vec::with_capacity(hint);
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if buf.len().saturating_add(chunk.len()) > max_bytes {
                        return Err(DutyReadError::TooLarge(max_bytes));
                    }
                    buf.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(buf),
                Err(e) if e.is_timeout() => return Err(DutyReadError::Timeout),
                Err(e) => {
                    return Err(DutyReadError::Unreachable(format!(
                        "the connection to {} broke while reading the answer{}",
                        redact(url),
                        cause(&e, url)
                    )));
                }
            }
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, work)
        .await
        .unwrap_or(Err(DutyReadError::Timeout))
}

fn send_error(e: &reqwest::Error, url: &Url) -> DutyReadError {
    let target = redact(url);
    if e.is_timeout() {
        DutyReadError::Timeout
    } else if e.is_connect() {
        DutyReadError::Unreachable(format!(
            "cannot connect to {target}{}; check that the node runs and the address and port are right",
            cause(e, url)
        ))
    } else if e.is_redirect() {
        DutyReadError::Unreachable(format!(
            "{target} redirects; point the endpoint at the final URL"
        ))
    } else {
        DutyReadError::Unreachable(format!("the request to {target} failed{}", cause(e, url)))
    }
}

/// `": <innermost cause>"`: reqwest's own message repeats the whole URL, the innermost
/// cause says what went wrong. Dropped if it would still show the URL or its credentials.
fn cause(e: &(dyn std::error::Error + 'static), url: &Url) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    let text = cur.to_string();
    let leaks = text.contains("://")
        || (!url.username().is_empty() && text.contains(url.username()))
        || url.password().is_some_and(|p| text.contains(p))
        || url.query().is_some_and(|q| text.contains(q));
    if leaks || text.is_empty() {
        String::new()
    } else {
        let short: String = text.chars().take(200).collect();
        format!(": {short}")
    }
}

/// Parses a body as JSON (serde_json's depth limit keeps hostile nesting from the stack).
/// The error says where the JSON broke, never what it held.
pub fn json(body: &[u8]) -> Result<serde_json::Value, ParseError> {
    serde_json::from_slice(body).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Eof => "it ends too early",
            serde_json::error::Category::Syntax => "a syntax error",
            serde_json::error::Category::Data => "a value out of range",
            serde_json::error::Category::Io => "it could not be read",
        };
        if body.is_empty() {
            ParseError::NotJson("the body is empty".to_string())
        } else {
            ParseError::NotJson(format!("{what} at line {} column {}", e.line(), e.column()))
        }
    })
}

/// A required field: absent and `null` are both missing.
pub fn field<'a>(
    v: &'a serde_json::Value,
    key: &str,
    path: &'static str,
) -> Result<&'a serde_json::Value, ParseError> {
    match v.get(key) {
        None | Some(serde_json::Value::Null) => Err(ParseError::Missing(path)),
        Some(x) => Ok(x),
    }
}

/// An object field.
pub fn object<'a>(
    v: &'a serde_json::Value,
    key: &str,
    path: &'static str,
) -> Result<&'a serde_json::Value, ParseError> {
    let x = field(v, key, path)?;
    if x.is_object() {
        Ok(x)
    } else {
        Err(ParseError::WrongType {
            field: path,
            expected: "an object",
        })
    }
}

/// A boolean field.
pub fn boolean(v: &serde_json::Value, key: &str, path: &'static str) -> Result<bool, ParseError> {
    field(v, key, path)?.as_bool().ok_or(ParseError::WrongType {
        field: path,
        expected: "true or false",
    })
}

/// A string field.
pub fn string<'a>(
    v: &'a serde_json::Value,
    key: &str,
    path: &'static str,
) -> Result<&'a str, ParseError> {
    field(v, key, path)?.as_str().ok_or(ParseError::WrongType {
        field: path,
        expected: "a string",
    })
}

/// A non-negative integer, as the APIs write them (a decimal string) or as a JSON number;
/// past `u64::MAX` it saturates. For amounts and counters, where "more than anyone has" is
/// the truth that matters.
pub fn u64_saturating(v: &serde_json::Value, path: &'static str) -> Result<u64, ParseError> {
    uint(v, path, true)
}

/// A non-negative integer that must fit in 64 bits (an index, a slot): a larger one is
/// refused, since no chain has one.
pub fn u64_exact(v: &serde_json::Value, path: &'static str) -> Result<u64, ParseError> {
    uint(v, path, false)
}

fn uint(v: &serde_json::Value, path: &'static str, saturate: bool) -> Result<u64, ParseError> {
    let too_big = || {
        if saturate {
            Ok(u64::MAX)
        } else {
            Err(ParseError::Invalid {
                field: path,
                why: "it is larger than 64 bits",
            })
        }
    };
    match v {
        serde_json::Value::String(s) => {
            if s.is_empty() || s.len() > 1000 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseError::Invalid {
                    field: path,
                    why: "it is not a whole non-negative decimal number",
                });
            }
            match s.parse::<u64>() {
                Ok(n) => Ok(n),
                Err(_) => too_big(),
            }
        }
        serde_json::Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Ok(u)
            } else if n.as_i64().is_some() {
                Err(ParseError::Invalid {
                    field: path,
                    why: "it is negative",
                })
            } else {
                // A float (`3.2e1`, or a whole number past 2^64, which JSON cannot write
                // otherwise without quotes).
                match n.as_f64() {
                    Some(f) if f.is_finite() && f >= 0.0 && f.fract() == 0.0 => {
                        if f < 18_446_744_073_709_551_616.0 {
                            Ok(f as u64)
                        } else {
                            too_big()
                        }
                    }
                    _ => Err(ParseError::Invalid {
                        field: path,
                        why: "it is not a whole non-negative number",
                    }),
                }
            }
        }
        serde_json::Value::Null => Err(ParseError::Missing(path)),
        _ => Err(ParseError::WrongType {
            field: path,
            expected: "a decimal number",
        }),
    }
}

/// A loopback HTTP server for the duty readers' tests.
#[cfg(test)]
pub(crate) mod testing {
    use axum::Router;
    use std::time::Duration;

    /// Serves `app` on 127.0.0.1 (a free port) until the test ends; returns its base URL.
    pub async fn serve(app: Router) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        format!("http://{addr}")
    }

    /// A client as the operator builds one: no redirects, a short timeout.
    pub fn client(timeout: Duration) -> reqwest::Client {
        crate::probe::ensure_crypto_provider();
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .build()
            .unwrap()
    }

    /// A body of `n` bytes sent in 1 KiB chunks without a Content-Length.
    pub fn streamed(n: usize) -> axum::body::Body {
        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = (0..n.div_ceil(1024))
            .map(|i| Ok(bytes::Bytes::from(vec![b' '; (n - i * 1024).min(1024)])))
            .collect();
        axum::body::Body::from_stream(futures::stream::iter(chunks))
    }

    /// A dead endpoint: a port that was free a moment ago.
    pub fn dead() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        drop(l);
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_as_the_apis_write_them() {
        type Want = Result<u64, ()>;
        let cases: &[(serde_json::Value, Want, Want)] = &[
            // (value, saturating, exact)
            (json!("0"), Ok(0), Ok(0)),
            (json!("32000000000"), Ok(32_000_000_000), Ok(32_000_000_000)),
            (json!(42), Ok(42), Ok(42)),
            (json!("18446744073709551615"), Ok(u64::MAX), Ok(u64::MAX)),
            (json!("99999999999999999999999"), Ok(u64::MAX), Err(())),
            (json!(1e30), Ok(u64::MAX), Err(())),
            (json!("-1"), Err(()), Err(())),
            (json!(-1), Err(()), Err(())),
            (json!(1.5), Err(()), Err(())),
            (json!("1.5"), Err(()), Err(())),
            (json!(""), Err(()), Err(())),
            (json!(" 1"), Err(()), Err(())),
            (json!("0x10"), Err(()), Err(())),
            (json!(true), Err(()), Err(())),
            (json!([1]), Err(()), Err(())),
            (json!(null), Err(()), Err(())),
        ];
        for (v, sat, exact) in cases {
            assert_eq!(u64_saturating(v, "x").map_err(|_| ()), *sat, "{v}");
            assert_eq!(u64_exact(v, "x").map_err(|_| ()), *exact, "{v}");
        }
        let long = serde_json::Value::String("9".repeat(5000));
        assert_eq!(
            u64_saturating(&long, "x"),
            Err(ParseError::Invalid {
                field: "x",
                why: "it is not a whole non-negative decimal number"
            })
        );
    }

    #[test]
    fn json_errors_say_where_not_what() {
        let e = json(b"{\"secret\": tru").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        assert!(matches!(json(b""), Err(ParseError::NotJson(_))));
        assert!(matches!(json(b"<html>"), Err(ParseError::NotJson(_))));
        let deep = "[".repeat(100_000);
        assert!(matches!(json(deep.as_bytes()), Err(ParseError::NotJson(_))));
        let deep_obj = "{\"a\":".repeat(50_000);
        assert!(matches!(
            json(deep_obj.as_bytes()),
            Err(ParseError::NotJson(_))
        ));
    }

    #[test]
    fn urls_keep_the_query_and_encode_segments() {
        let base = base_url("https://user:pw@api.example:1317/lcd/?key=abc").unwrap();
        let u = join(&base, &["cosmos", "x", "a/b?c"]).unwrap();
        assert_eq!(u.path(), "/lcd/cosmos/x/a%2Fb%3Fc");
        assert_eq!(u.query(), Some("key=abc"));
        assert_eq!(redact(&u), "https://api.example:1317");
        for bad in ["", "not a url", "ftp://h/", "unix:/run/x", "mailto:a@b"] {
            let e = base_url(bad).unwrap_err();
            assert!(matches!(e, DutyReadError::Unreachable(_)), "{bad}");
        }
    }

    #[test]
    fn error_messages_are_sentences() {
        assert_eq!(
            DutyReadError::Status(404).to_string(),
            "the endpoint answered HTTP 404 (Not Found); check the URL and the address asked for"
        );
        assert!(DutyReadError::TooLarge(10).to_string().contains("10-byte"));
        let e: DutyReadError = ParseError::Missing("data.index").into();
        assert_eq!(
            e.to_string(),
            "unexpected answer: the answer has no `data.index`"
        );
    }

    #[tokio::test]
    async fn capped_reads_over_loopback() {
        use axum::{
            Router,
            http::StatusCode,
            routing::{get, post},
        };
        let app = Router::new()
            .route("/ok", get(|| async { r#"{"a":1}"# }))
            .route("/echo", post(|b: String| async move { b }))
            .route("/big", get(|| async { "x".repeat(5000) }))
            .route("/streamed", get(|| async { testing::streamed(5000) }))
            .route("/exact", get(|| async { testing::streamed(100) }))
            .route(
                "/fail",
                get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "secret body") }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            );
        let base = testing::serve(app).await;
        let c = testing::client(Duration::from_secs(2));
        let at = |p: &str| base_url(&format!("{base}{p}?key=hush")).unwrap();
        assert_eq!(
            get_json_capped(&c, &at("/ok"), 100).await.unwrap(),
            br#"{"a":1}"#
        );
        let body = serde_json::json!(["7"]);
        assert_eq!(
            post_json_capped(&c, &at("/echo"), &body, 100)
                .await
                .unwrap(),
            br#"["7"]"#
        );
        assert_eq!(
            get_json_capped(&c, &at("/big"), 4096).await,
            Err(DutyReadError::TooLarge(4096))
        );
        assert_eq!(
            get_json_capped(&c, &at("/streamed"), 4096).await,
            Err(DutyReadError::TooLarge(4096))
        );
        assert_eq!(
            get_json_capped(&c, &at("/exact"), 100).await.unwrap().len(),
            100
        );
        assert_eq!(
            get_json_capped(&c, &at("/exact"), 99).await,
            Err(DutyReadError::TooLarge(99))
        );
        let e = get_json_capped(&c, &at("/fail"), 100).await.unwrap_err();
        assert_eq!(e, DutyReadError::Status(500));
        assert!(!e.to_string().contains("secret"));
        let quick = testing::client(Duration::from_millis(200));
        assert_eq!(
            get_json_capped(&quick, &at("/slow"), 100).await,
            Err(DutyReadError::Timeout)
        );
        let dead =
            base_url(&format!("{}/x?key=hush", testing::dead()).replace("http://", "http://u:pw@"))
                .unwrap();
        let e = get_json_capped(&c, &dead, 100).await.unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, DutyReadError::Unreachable(_)), "{e:?}");
        assert!(
            text.contains("cannot connect to http://127.0.0.1:"),
            "{text}"
        );
        for secret in ["pw", "hush", "/x", "u:"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}
