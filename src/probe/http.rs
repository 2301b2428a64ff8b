//! HTTP plumbing shared by every probe: one deadline, capped incremental body reads,
//! error mapping that never leaks credentials or body excerpts, and the plain HTTP
//! health check with JSON expectations.

use std::time::Duration;

use bytes::Bytes;
use reqwest::{Response, Url};
use serde_json::Value;

use super::ProbeError;
use super::budget::{Budget, Held, ProbeHold};

/// Per-probe context: everything a request needs to stay inside the probe's budget.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub client: &'a reqwest::Client,
    /// One deadline for every request of the probe.
    pub deadline: tokio::time::Instant,
    /// The configured timeout, reported in [`ProbeError::Timeout`].
    pub timeout: Duration,
    pub max_bytes: u64,
    /// The process-wide byte budget of responses.
    pub budget: &'a Budget,
    /// Budget this probe keeps until it ends (its decoded documents).
    pub hold: &'a ProbeHold,
}

impl Ctx<'_> {
    /// Runs `fut` until the probe deadline.
    pub async fn bounded<T>(
        &self,
        fut: impl Future<Output = Result<T, ProbeError>>,
    ) -> Result<T, ProbeError> {
        tokio::time::timeout_at(self.deadline, fut)
            .await
            .unwrap_or(Err(ProbeError::Timeout(self.timeout)))
    }

    /// Takes `bytes` of the budget for the rest of the probe (waiting at most until the
    /// deadline).
    pub async fn reserve(&self, bytes: u64) -> Result<(), ProbeError> {
        let held = self
            .bounded(async { Ok(self.budget.take(bytes).await) })
            .await?;
        self.hold.keep(held);
        Ok(())
    }

    /// Checks a JSON body's shape against the limits and reserves what decoding it costs.
    pub async fn reserve_json(&self, body: &[u8]) -> Result<(), ProbeError> {
        let shape = json_shape(body)?;
        self.reserve(decoded_cost(shape, body.len())).await
    }
}

/// Parses a configured URL (once, when a probe target is built); only http and https
/// are probed. Errors never echo the URL's path or credentials.
pub fn parse_url(raw: &str) -> Result<Url, ProbeError> {
    let url = Url::parse(raw.trim()).map_err(|e| {
        ProbeError::Config(format!("`{}` is not a valid URL ({e})", redact_raw(raw)))
    })?;
    check_scheme(&url)?;
    Ok(url)
}

/// Refuses any scheme but http and https.
pub(crate) fn check_scheme(url: &Url) -> Result<(), ProbeError> {
    match url.scheme() {
        "http" | "https" => Ok(()),
        other => Err(ProbeError::Config(format!(
            "URL scheme `{other}` is not supported; use http:// or https://"
        ))),
    }
}

/// `base` with `segment` appended to its path (`http://n:26657/` + `status`).
pub(crate) fn join_path(base: &Url, segment: &str) -> Url {
    let mut url = base.clone();
    let path = format!("{}/{segment}", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url
}

/// `scheme://host:port` only: paths and queries of RPC provider URLs often carry API
/// keys, so they never appear in errors, warnings or logs.
pub(crate) fn redact(url: &Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port_or_known_default() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// Best-effort redaction of a string that failed to parse as a URL.
fn redact_raw(raw: &str) -> String {
    let cut = raw.find(['/', '?', '@']).map(|i| {
        // keep the `scheme://` part if that is where the first slash is
        if raw[i..].starts_with("//") {
            raw[i + 2..]
                .find(['/', '?', '@'])
                .map_or(raw.len(), |j| i + 2 + j)
        } else {
            i
        }
    });
    let head: String = raw[..cut.unwrap_or(raw.len())].chars().take(60).collect();
    if head.len() < raw.len() {
        format!("{head}…")
    } else {
        head
    }
}

/// The innermost cause of an error chain: reqwest's top-level message repeats the URL
/// (which may hold secrets), the root cause says what actually went wrong.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn map_send_error(e: reqwest::Error, url: &Url, ctx: &Ctx<'_>) -> ProbeError {
    let target = redact(url);
    if e.is_timeout() {
        ProbeError::Timeout(ctx.timeout)
    } else if e.is_connect() {
        ProbeError::Connect(format!(
            "cannot connect to {target}: {}; check that the node runs and the address and port are right",
            root_cause(&e)
        ))
    } else if e.is_redirect() {
        ProbeError::Connect(format!(
            "{target} redirects too often; point the probe at the final URL"
        ))
    } else if e.is_builder() {
        ProbeError::Config(format!(
            "cannot build a request for {target}: {}",
            root_cause(&e)
        ))
    } else {
        ProbeError::Connect(format!("request to {target} failed: {}", root_cause(&e)))
    }
}

/// Sends a request within the probe deadline.
pub(crate) async fn send(
    ctx: &Ctx<'_>,
    req: reqwest::RequestBuilder,
    url: &Url,
) -> Result<Response, ProbeError> {
    ctx.bounded(async { req.send().await.map_err(|e| map_send_error(e, url, ctx)) })
        .await
}

/// A response body and the budget its buffer holds (given back on drop).
pub(crate) struct Body {
    bytes: Bytes,
    _held: Held,
}

impl std::ops::Deref for Body {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Most bytes allocated for a body before any of it arrived, whatever Content-Length
/// claims: a slowloris body that announces 1 MiB holds only what it has sent.
const INITIAL_BODY_CAPACITY: u64 = 64 * 1024;

/// The capacity a body buffer of capacity `cap` grows to so that `need` bytes fit: doubling
/// (amortised copies), never past the cap on the body.
fn grown_capacity(cap: u64, need: u64, max: u64) -> u64 {
    need.max(cap.saturating_mul(2)).min(max).max(need)
}

/// Reads a body incrementally, failing as soon as it passes the size cap: a
/// misconfigured URL (an explorer page, a log stream) must not exhaust our memory. The
/// buffer's capacity is taken from the byte budget before it is allocated.
pub(crate) async fn read_body(ctx: &Ctx<'_>, mut resp: Response) -> Result<Body, ProbeError> {
    let max = ctx.max_bytes;
    if resp.content_length().is_some_and(|len| len > max) {
        return Err(ProbeError::TooLarge(max));
    }
    let target = redact(resp.url());
    ctx.bounded(async move {
        let hint = resp
            .content_length()
            .unwrap_or(16 * 1024)
            .min(max)
            .min(INITIAL_BODY_CAPACITY);
        let mut held = ctx.budget.take(hint).await;
        let mut buf = Vec::with_capacity(usize::try_from(held.bytes()).unwrap_or(0));
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    let need = (buf.len() as u64).saturating_add(chunk.len() as u64);
                    if need > max {
                        return Err(ProbeError::TooLarge(max));
                    }
                    if need > buf.capacity() as u64 {
                        let cap = grown_capacity(buf.capacity() as u64, need, max);
                        held.merge(ctx.budget.take(cap.saturating_sub(held.bytes())).await);
                        buf.reserve_exact(usize::try_from(cap).unwrap_or(usize::MAX) - buf.len());
                    }
                    buf.extend_from_slice(&chunk);
                }
                Ok(None) => {
                    return Ok(Body {
                        bytes: Bytes::from(buf),
                        _held: held,
                    });
                }
                Err(e) if e.is_timeout() => return Err(ProbeError::Timeout(ctx.timeout)),
                Err(e) => {
                    return Err(ProbeError::Connect(format!(
                        "connection to {target} broke while reading the response: {}",
                        root_cause(&e)
                    )));
                }
            }
        }
    })
    .await
}

/// A compressed body Vigil did not ask for (it sends no Accept-Encoding and decodes
/// nothing): refused before reading, so a gzip bomb is never even buffered.
fn check_encoding(resp: &Response) -> Result<(), ProbeError> {
    match resp.headers().get(reqwest::header::CONTENT_ENCODING) {
        None => Ok(()),
        Some(v) if v.as_bytes().eq_ignore_ascii_case(b"identity") => Ok(()),
        Some(v) => Err(ProbeError::Malformed(format!(
            "the node answered with Content-Encoding `{}`, which Vigil did not ask for and does not decode; turn off response compression on the endpoint",
            crate::text::printable(&String::from_utf8_lossy(v.as_bytes()), 40)
        ))),
    }
}

/// Sends and reads the whole (capped) body, returning the status code with it.
pub(crate) async fn fetch(
    ctx: &Ctx<'_>,
    req: reqwest::RequestBuilder,
    url: &Url,
) -> Result<(u16, Body), ProbeError> {
    let resp = send(ctx, req, url).await?;
    let status = resp.status().as_u16();
    check_encoding(&resp)?;
    let body = read_body(ctx, resp).await?;
    Ok((status, body))
}

/// Any 2xx passes.
pub(crate) fn require_success(status: u16) -> Result<(), ProbeError> {
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(ProbeError::Status(status))
    }
}

/// The body as UTF-8 text.
pub(crate) fn utf8(body: &[u8]) -> Result<&str, ProbeError> {
    std::str::from_utf8(body).map_err(|e| {
        ProbeError::Malformed(format!(
            "response body is not UTF-8 text (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })
}

/// Deepest JSON nesting accepted: real replies nest under 10 levels.
pub(crate) const MAX_JSON_DEPTH: u32 = 32;
/// Most JSON values (scalars, strings, keys, arrays, objects) in one document: a CometBFT
/// `/net_info` of 300 peers has about 30,000.
pub(crate) const MAX_JSON_VALUES: u64 = 100_000;
/// What one decoded JSON value costs in memory beyond its text, by estimate (a
/// `serde_json::Value` is 32 bytes, plus its slot in a growing array or map).
const JSON_VALUE_COST: u64 = 64;

/// How deep and how large a JSON document is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct JsonShape {
    pub depth: u32,
    pub values: u64,
}

/// Measures a JSON text without decoding it, and refuses it once it is deeper or larger
/// than the limits: decoding materialises every value, a few bytes of text can cost tens
/// of bytes each. Lenient: invalid JSON is left to the decoder to report.
pub(crate) fn json_shape(body: &[u8]) -> Result<JsonShape, ProbeError> {
    let mut shape = JsonShape::default();
    let (mut depth, mut in_string, mut escaped, mut in_scalar) = (0u32, false, false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        let starts_value = match b {
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(ProbeError::Malformed(format!(
                        "the JSON is nested deeper than {MAX_JSON_DEPTH} levels"
                    )));
                }
                shape.depth = shape.depth.max(depth);
                in_scalar = false;
                true
            }
            b'}' | b']' | b',' | b':' | b' ' | b'\t' | b'\r' | b'\n' => {
                if matches!(b, b'}' | b']') {
                    depth = depth.saturating_sub(1);
                }
                in_scalar = false;
                false
            }
            b'"' => {
                in_string = true;
                in_scalar = false;
                true
            }
            _ => !std::mem::replace(&mut in_scalar, true),
        };
        if starts_value {
            shape.values += 1;
            if shape.values > MAX_JSON_VALUES {
                return Err(ProbeError::Malformed(format!(
                    "the JSON has more than {MAX_JSON_VALUES} values; Vigil reads only a node's small status replies"
                )));
            }
        }
    }
    Ok(shape)
}

/// What decoding a JSON text of `len` bytes and `shape` may cost: its values plus two
/// copies of its strings (the document, and the `result` taken out of its envelope).
pub(crate) fn decoded_cost(shape: JsonShape, len: usize) -> u64 {
    shape
        .values
        .saturating_mul(JSON_VALUE_COST)
        .saturating_add((len as u64).saturating_mul(2))
}

/// The body as JSON. `what` names the expected content for the error message. Documents
/// deeper or larger than the limits are refused before they are decoded ([`json_shape`]).
pub(crate) fn json(body: &[u8], what: &str) -> Result<Value, ProbeError> {
    let text = utf8(body)?;
    if text.trim().is_empty() {
        return Err(ProbeError::Malformed(format!(
            "empty response body, expected {what}"
        )));
    }
    json_shape(body)?;
    serde_json::from_str(text).map_err(|e| {
        let hint = match text.trim_start().chars().next() {
            Some('<') => " (looks like HTML: is the URL pointing at the right port/path?)",
            _ => "",
        };
        ProbeError::Malformed(format!(
            "response body is not JSON, expected {what}: {} at line {} column {}{hint}",
            classify_json_error(&e),
            e.line(),
            e.column()
        ))
    })
}

fn classify_json_error(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Eof => "truncated document",
    }
}

/// GET `url` and decode a JSON body; non-2xx is an error.
pub(crate) async fn get_json(ctx: &Ctx<'_>, url: &Url, what: &str) -> Result<Value, ProbeError> {
    let req = ctx
        .client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json");
    let (status, body) = fetch(ctx, req, url).await?;
    require_success(status)?;
    ctx.reserve_json(&body).await?;
    json(&body, what)
}

/// Follows a dotted path (`result.sync_info.catching_up`, `peers.0.id`) into a JSON
/// value; numeric segments index arrays. An empty path is the value itself.
pub fn json_path<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(value);
    }
    path.split('.').try_fold(value, |cur, seg| match cur {
        Value::Object(map) => map.get(seg),
        Value::Array(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// Whether `actual` satisfies `expected`. Numbers compare by value (`1` == `1.0`), and a
/// string expectation matches a number or boolean with the same text, because values
/// written in YAML often arrive as strings.
pub fn json_matches(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => match (a.as_u64(), b.as_u64()) {
                (Some(x), Some(y)) => x == y,
                _ => a.as_f64() == b.as_f64(),
            },
        },
        (Value::Number(_) | Value::Bool(_), Value::String(s)) => format!("{actual}") == *s,
        _ => actual == expected,
    }
}

/// Why a reply's block height is unusable, without repeating what the node sent: missing,
/// negative, too large for 64 bits, or not a number at all (`"NaN"`, `1.5`, an object).
pub(crate) fn height_problem(v: Option<&Value>) -> &'static str {
    let digits_fit = |d: &str, radix: u32| u64::from_str_radix(d, radix).is_ok();
    match v {
        None | Some(Value::Null) => "is missing",
        Some(Value::Number(n)) if n.as_i64().is_some_and(|i| i < 0) => "is negative",
        Some(Value::Number(n)) if n.as_u64().is_some() => {
            "is not written the way the protocol writes heights"
        }
        Some(Value::Number(n)) if n.as_f64().is_some_and(|f| f.fract() == 0.0 && f > 0.0) => {
            "is too large for 64 bits"
        }
        Some(Value::String(s)) => {
            let s = s.trim();
            let (negative, s) = match s.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, s),
            };
            let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                Some(hex) => (hex, 16),
                None => (s, 10),
            };
            let numeric = !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix));
            match (numeric, negative) {
                (false, _) => "is not a number",
                (true, true) => "is negative",
                (true, false) if !digits_fit(digits, radix) => "is too large for 64 bits",
                (true, false) => "is not written the way the protocol writes heights",
            }
        }
        Some(_) => "is not a number",
    }
}

/// A reply's unusable block height as a probe error: `what` names the field.
pub(crate) fn not_a_height(what: &str, v: Option<&Value>) -> ProbeError {
    ProbeError::Malformed(match height_problem(v) {
        "is missing" => format!("{what} is missing"),
        problem => format!("{what} {problem}, not a block height"),
    })
}

/// Short, single-line rendering of a JSON value for messages.
pub(crate) fn short_json(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        let head: String = s.chars().take(77).collect();
        format!("{head}…")
    } else {
        s
    }
}

/// The JSON type of a value, for messages.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Checks `expectations` against a JSON document.
pub(crate) fn check_expectations(
    doc: &Value,
    expectations: &[(String, Value)],
) -> Result<(), ProbeError> {
    for (path, expected) in expectations {
        match json_path(doc, path) {
            None => {
                return Err(ProbeError::Expectation(format!(
                    "`{path}` is missing from the response (expected {})",
                    short_json(expected)
                )));
            }
            // What the node answered is not repeated (it may hold anything): only its type.
            Some(actual) if !json_matches(actual, expected) => {
                return Err(ProbeError::Expectation(format!(
                    "`{path}` is not {} (the node answered another {})",
                    short_json(expected),
                    json_type(actual)
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// A plain HTTP health check: GET `url`, the status must be in `expect_status` (any
/// 2xx when empty), and every JSON expectation must hold.
pub(crate) async fn health_check(
    ctx: &Ctx<'_>,
    url: &Url,
    expect_status: &[u16],
    expect_json: &[(String, Value)],
) -> Result<(), ProbeError> {
    let req = ctx.client.get(url.clone());
    let resp = send(ctx, req, url).await?;
    let status = resp.status().as_u16();
    let status_ok = if expect_status.is_empty() {
        (200..300).contains(&status)
    } else {
        expect_status.contains(&status)
    };
    if !status_ok {
        return Err(ProbeError::Status(status));
    }
    if expect_json.is_empty() {
        // Only the status matters: skip the body so a large health page cannot fail us.
        return Ok(());
    }
    check_encoding(&resp)?;
    let body = read_body(ctx, resp).await?;
    ctx.reserve_json(&body).await?;
    let doc = json(&body, "a JSON health document")?;
    check_expectations(&doc, expect_json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::test_support::fixture_json;
    use serde_json::json;

    #[test]
    fn paths_into_fixture() {
        let v = fixture_json("cometbft_status.json");
        assert_eq!(
            json_path(&v, "result.sync_info.latest_block_height"),
            Some(&json!("232"))
        );
        assert_eq!(
            json_path(&v, "result.sync_info.catching_up"),
            Some(&json!(false))
        );
        let n = fixture_json("cometbft_net_info.json");
        assert_eq!(
            json_path(&n, "result.peers.0.node_info.moniker"),
            Some(&json!("shredder"))
        );
        assert_eq!(json_path(&n, "result.peers.9"), None);
        assert_eq!(json_path(&n, "result.n_peers.x"), None);
        assert_eq!(json_path(&n, ""), Some(&n));
    }

    #[test]
    fn expectations() {
        let v = fixture_json("substrate_rpc_system_health.json");
        let ok = vec![
            ("result.isSyncing".to_owned(), json!(false)),
            ("result.peers".to_owned(), json!(50.0)),
            ("result.shouldHavePeers".to_owned(), json!("true")),
        ];
        assert_eq!(check_expectations(&v, &ok), Ok(()));
        let bad = vec![("result.peers".to_owned(), json!(0))];
        let err = check_expectations(&v, &bad).unwrap_err();
        assert_eq!(err.class(), "expectation");
        assert!(
            err.to_string()
                .contains("`result.peers` is not 0 (the node answered another number)"),
            "{err}"
        );
        assert!(!err.to_string().contains("50"), "no excerpt: {err}");
        let missing = vec![("result.nope".to_owned(), json!(1))];
        assert!(
            check_expectations(&v, &missing)
                .unwrap_err()
                .to_string()
                .contains("missing")
        );
    }

    #[test]
    fn redaction_hides_paths_and_credentials() {
        let u = parse_url("https://user:secret@rpc.example:8443/v1/APIKEY?token=x").unwrap();
        assert_eq!(redact(&u), "https://rpc.example:8443");
        let e = parse_url("htp:/x/APIKEY").unwrap_err();
        assert!(!e.to_string().contains("APIKEY"), "{e}");
        let e = parse_url("not a url/with/APIKEY").unwrap_err();
        assert!(!e.to_string().contains("APIKEY"), "{e}");
        assert_eq!(e.class(), "config");
    }

    #[test]
    fn join_keeps_base_path() {
        assert_eq!(
            join_path(&parse_url("http://n:26657/").unwrap(), "status").as_str(),
            "http://n:26657/status"
        );
        assert_eq!(
            join_path(&parse_url("http://gw/cosmos/rpc").unwrap(), "net_info").as_str(),
            "http://gw/cosmos/rpc/net_info"
        );
    }

    /// (document, Ok((depth, values)) or the error's words)
    #[test]
    fn json_shapes_and_limits() {
        let deep = format!("{}{}", "[".repeat(33), "]".repeat(33));
        let ok_deep = format!("{}{}", "[".repeat(32), "]".repeat(32));
        let wide = format!("[{}0]", "0,".repeat(MAX_JSON_VALUES as usize));
        type Want = Result<(u32, u64), &'static str>;
        let cases: Vec<(&str, Want)> = vec![
            ("{}", Ok((1, 1))),
            (r#"{"a":1,"b":[true,null,"x"]}"#, Ok((2, 8))),
            (r#"{"s":"[[[[{{{\"]]]"}"#, Ok((1, 3))),
            ("-12.5e3", Ok((0, 1))),
            (&ok_deep, Ok((32, 32))),
            (&deep, Err("nested deeper than 32 levels")),
            (&wide, Err("more than 100000 values")),
        ];
        for (doc, want) in cases {
            match (json_shape(doc.as_bytes()), want) {
                (Ok(s), Ok((d, v))) => assert_eq!((s.depth, s.values), (d, v), "{doc}"),
                (Err(e), Err(words)) => {
                    assert_eq!(e.class(), "malformed");
                    assert!(e.to_string().contains(words), "{e}");
                }
                (got, want) => panic!("{}: {got:?} != {want:?}", &doc[..doc.len().min(40)]),
            }
        }
        // The decoder refuses the same documents before decoding them.
        assert!(
            json(deep.as_bytes(), "x")
                .unwrap_err()
                .to_string()
                .contains("deeper")
        );
        assert!(json(ok_deep.as_bytes(), "x").is_ok());
        assert_eq!(
            decoded_cost(
                JsonShape {
                    depth: 2,
                    values: 10
                },
                100
            ),
            10 * JSON_VALUE_COST + 200
        );
    }

    /// (height as sent, what the message says)
    #[test]
    fn heights_that_are_not_heights() {
        let cases = [
            (None, "is missing"),
            (Some(json!(null)), "is missing"),
            (Some(json!(-5)), "is negative"),
            (Some(json!("-5")), "is negative"),
            (Some(json!("-0x5")), "is negative"),
            (Some(json!("NaN")), "is not a number"),
            (Some(json!("")), "is not a number"),
            (Some(json!(1.5)), "is not a number"),
            (Some(json!({"n": 1})), "is not a number"),
            (Some(json!(1e30)), "is too large for 64 bits"),
            (
                Some(json!("99999999999999999999999")),
                "is too large for 64 bits",
            ),
            (
                Some(json!("0x1ffffffffffffffffffff")),
                "is too large for 64 bits",
            ),
            (
                Some(json!("123")),
                "is not written the way the protocol writes heights",
            ),
        ];
        for (v, want) in cases {
            assert_eq!(height_problem(v.as_ref()), want, "{v:?}");
        }
        let e = not_a_height("`number`", Some(&json!("NaN")));
        assert_eq!(e.class(), "malformed");
        assert_eq!(
            e.to_string(),
            "unexpected response: `number` is not a number, not a block height"
        );
        assert!(
            not_a_height("`number`", None)
                .to_string()
                .ends_with("`number` is missing")
        );
    }

    /// (capacity, bytes needed, cap) -> new capacity
    #[test]
    fn body_buffers_double_up_to_the_cap() {
        for (cap, need, max, want) in [
            (0, 10, 1 << 20, 10),
            (65_536, 65_537, 1 << 20, 131_072),
            (65_536, 200_000, 1 << 20, 200_000),
            (786_432, 800_000, 1 << 20, 1 << 20),
            (1 << 20, 1 << 20, 1 << 20, 1 << 20),
        ] {
            assert_eq!(grown_capacity(cap, need, max), want, "{cap} {need} {max}");
        }
    }

    #[test]
    fn body_decoding_errors_are_malformed() {
        assert_eq!(json(b"\xff\xfe", "x").unwrap_err().class(), "malformed");
        let e = json(b"<html>nope</html>", "x").unwrap_err();
        assert!(e.to_string().contains("HTML"), "{e}");
        assert!(!e.to_string().contains("nope"), "no excerpt: {e}");
        assert_eq!(json(b"  ", "x").unwrap_err().class(), "malformed");
    }
}
