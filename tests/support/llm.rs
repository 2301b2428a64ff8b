//! A local LLM provider for the tests, on a loopback port: Anthropic's Messages API
//! (`POST /v1/messages`) or OpenAI's Chat Completions (`POST /v1/chat/completions`). Every
//! answer is built from the bodies and headers captured from the real APIs in
//! `../shared/fixtures/real-payloads/` (see `SOURCES.md` there): a success is the captured
//! success body with only the text, the usage and the model replaced; an error is the
//! captured error body, verbatim. It records every request and follows a FIFO script.

use serde_json::{Value, json};
use std::collections::VecDeque;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/real-payloads/"
);

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}{name}"))
        .unwrap_or_else(|e| panic!("fixture {FIXTURES}{name}: {e}"))
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// Which provider the server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Anthropic,
    Openai,
}

/// What the server does with the next request (a FIFO script; when the script is empty it
/// uses the default behaviour). Refused requests (no key, no `model`, ...) are answered with
/// the provider's error and do not use up the script.
#[derive(Clone, Debug)]
pub enum Behave {
    /// 200 with this assistant text and usage (input, output, cache_read, cache_write).
    /// OpenAI: `prompt_tokens` = input + cache_read, `prompt_tokens_details.cached_tokens` =
    /// cache_read (so a reader that subtracts cached tokens gets `input` back); cache_write
    /// has no OpenAI field.
    Answer {
        text: String,
        input: u64,
        output: u64,
        cache_read: u64,
        cache_write: u64,
    },
    /// The captured error body for this status (429, 500, 529 for Anthropic; 429, 500 for
    /// OpenAI; for 503 the 529/500 body of the flavor, other 5xx the 500 body; 4xx a body of
    /// the provider's error shape), with `retry-after: <secs>` when Some.
    Error {
        status: u16,
        retry_after: Option<u64>,
    },
    /// Wait this long, then behave as the inner behaviour (a slow answer; the request is
    /// recorded at once).
    Slow(Duration, Box<Behave>),
    /// A 200 whose body is the success body cut off in the middle (truncated JSON on the
    /// wire, with a Content-Length equal to the truncated length).
    TruncatedBody,
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct LlmRequest {
    pub method: String,
    pub path: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    /// The JSON body; a body that is not JSON is kept as a JSON string of its text.
    pub body: Value,
}

impl LlmRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// All text the model would see: the system prompt (a string or an array of text
    /// blocks) and every message's content, joined with newlines.
    pub fn prompt_text(&self) -> String {
        fn texts(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::String(s) => out.push(s.clone()),
                Value::Array(blocks) => blocks
                    .iter()
                    .filter_map(|b| b["text"].as_str())
                    .for_each(|t| out.push(t.to_string())),
                _ => {}
            }
        }
        let mut out = Vec::new();
        texts(&self.body["system"], &mut out);
        for m in self.body["messages"].as_array().into_iter().flatten() {
            texts(&m["content"], &mut out);
        }
        out.join("\n")
    }
}

/// A valid advisor decision, compact and without a code fence.
pub fn decision_json(action: &str, confidence: f64, summary: &str) -> String {
    let s = |t: &str| Value::from(t).to_string();
    format!(
        "{{\"action\":{},\"confidence\":{},\"summary\":{},\"reasoning\":{},\"evidence\":[{}]}}",
        s(action),
        json!(confidence),
        s(summary),
        s(&format!("The test provider answers {action}.")),
        s("the context sent with the request"),
    )
}

fn default_answer() -> Behave {
    Behave::Answer {
        text: decision_json("investigate", 0.8, "The node needs a closer look."),
        input: 1200,
        output: 80,
        cache_read: 0,
        cache_write: 0,
    }
}

struct State {
    requests: Vec<LlmRequest>,
    script: VecDeque<Behave>,
    default: Behave,
}

/// A running provider; its threads end with the test process.
pub struct LlmServer {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub base_url: String,
    state: Arc<Mutex<State>>,
}

#[allow(dead_code)]
impl LlmServer {
    pub fn start(flavor: Flavor) -> LlmServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            requests: Vec::new(),
            script: VecDeque::new(),
            default: default_answer(),
        }));
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                // Each request on its own thread: a slow answer blocks no other.
                std::thread::spawn(move || serve(flavor, conn, &st));
            }
        });
        LlmServer { base_url, state }
    }

    /// The behaviour once the script is empty (initially a valid decision).
    pub fn set_default(&self, b: Behave) {
        self.state.lock().unwrap().default = b;
    }

    /// Appends to the script.
    pub fn push(&self, b: Behave) {
        self.state.lock().unwrap().script.push_back(b);
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<LlmRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn count(&self) -> usize {
        self.state.lock().unwrap().requests.len()
    }
}

fn serve(flavor: Flavor, mut conn: TcpStream, state: &Mutex<State>) {
    let Some(req) = read_request(&mut conn) else {
        return;
    };
    let refused = refuse(flavor, &req);
    // Recorded before any delay; the script is taken under the same lock, so that the n-th
    // recorded request gets the n-th behaviour.
    let reply = {
        let mut st = state.lock().unwrap();
        st.requests.push(req.clone());
        refused.ok_or_else(|| st.script.pop_front().unwrap_or_else(|| st.default.clone()))
    };
    let model = req.body["model"].as_str().unwrap_or_default();
    let (status, headers, body) = reply.unwrap_or_else(|b| respond(flavor, model, b));
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let _ = write!(
        conn,
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    let _ = conn.write_all(&body);
    let _ = conn.flush();
}

/// Status, extra headers, body.
type Reply = (u16, Vec<(String, String)>, Vec<u8>);

/// An answer with the captured headers of the flavor.
fn reply(flavor: Flavor, status: u16, body: String) -> Reply {
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    (status, headers(flavor, status, &v), body.into_bytes())
}

/// The answer a behaviour gives (after its delays).
fn respond(flavor: Flavor, model: &str, behave: Behave) -> Reply {
    match behave {
        Behave::Slow(d, inner) => {
            std::thread::sleep(d);
            respond(flavor, model, *inner)
        }
        Behave::Answer {
            text,
            input,
            output,
            cache_read,
            cache_write,
        } => success(
            flavor,
            model,
            &text,
            [input, output, cache_read, cache_write],
        ),
        Behave::Error {
            status,
            retry_after,
        } => error(flavor, status, retry_after),
        Behave::TruncatedBody => {
            let (s, h, mut b) = respond(flavor, model, default_answer());
            b.truncate(b.len() / 2);
            (s, h, b)
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        529 => "Overloaded",
        _ => "Error",
    }
}

/// The provider's own refusal of a malformed request (checked in the provider's order).
fn refuse(flavor: Flavor, req: &LlmRequest) -> Option<Reply> {
    let (method, path, body) = (req.method.as_str(), req.path.as_str(), &req.body);
    let unset = |h: &str| req.header(h).is_none_or(|v| v.trim().is_empty());
    let lacks = |fields: &[&'static str]| fields.iter().copied().find(|f| body.get(f).is_none());
    let bad = "invalid_request_error";
    let field = lacks(&["model", "max_tokens", "messages"]);
    let url = format!("Invalid URL ({method} {path})");
    let served = method == "POST" && matches!(path, "/v1/chat/completions" | "/chat/completions");
    let required = format!("{}: Field required", field.unwrap_or_default());
    let key = req
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "));
    let (status, kind, message) = match flavor {
        Flavor::Anthropic if path != "/v1/messages" => (404, "not_found_error", "Not Found"),
        Flavor::Anthropic if method != "POST" => (405, bad, "Method Not Allowed"),
        Flavor::Anthropic if unset("x-api-key") => (401, "authentication_error", NO_X_API_KEY),
        Flavor::Anthropic if unset("anthropic-version") => (400, bad, NO_VERSION),
        Flavor::Anthropic if !body.is_object() => (400, bad, "The request body is not valid JSON."),
        Flavor::Anthropic if field.is_some() => (400, bad, required.as_str()),
        Flavor::Openai if !served => (404, bad, url.as_str()),
        Flavor::Openai if key.is_none_or(|k| k.trim().is_empty()) => (401, bad, NO_KEY),
        Flavor::Openai if !body.is_object() => (400, bad, NOT_JSON),
        Flavor::Openai if lacks(&["model"]).is_some() => (400, bad, NO_MODEL),
        Flavor::Openai if lacks(&["messages"]).is_some() => (400, bad, NO_MESSAGES),
        _ => return None,
    };
    let body = shaped_error(flavor, kind, message).to_string();
    Some(reply(flavor, status, body))
}

const NO_X_API_KEY: &str = "x-api-key header is required";
const NO_VERSION: &str = "anthropic-version: header is required";
const NO_MODEL: &str = "you must provide a model parameter";
const NO_MESSAGES: &str = "Missing required parameter: 'messages'.";
const NO_KEY: &str = "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (i.e. YOUR_KEY), when using HTTP Basic auth. You can obtain an API key from https://platform.openai.com/account/api-keys.";
const NOT_JSON: &str = "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)";

/// An error body of the provider's captured shape, with this type and message.
fn shaped_error(flavor: Flavor, kind: &str, message: &str) -> Value {
    match flavor {
        Flavor::Anthropic => {
            let mut v = fixture_json("anthropic_error_404_docs_example.json");
            v["error"] = json!({"type": kind, "message": message});
            v
        }
        Flavor::Openai => {
            let mut v = fixture_json("openai_error_500_server_error.json");
            v["error"]["message"] = json!(message);
            v["error"]["type"] = json!(kind);
            if message == NO_MESSAGES {
                v["error"]["param"] = json!("messages");
                v["error"]["code"] = json!("missing_required_parameter");
            }
            v
        }
    }
}

/// The captured success body with the model, the text and the usage replaced.
fn success(flavor: Flavor, model: &str, text: &str, usage: [u64; 4]) -> Reply {
    let [input, output, read, write] = usage;
    let mut v;
    match flavor {
        Flavor::Anthropic => {
            v = fixture_json("anthropic_messages_success.json");
            v["content"][0]["text"] = json!(text);
            let u = &mut v["usage"];
            u["input_tokens"] = json!(input);
            u["output_tokens"] = json!(output);
            u["cache_read_input_tokens"] = json!(read);
            u["cache_creation_input_tokens"] = json!(write);
        }
        Flavor::Openai => {
            v = fixture_json("openai_chat_completion_success.json");
            v["choices"][0]["message"]["content"] = json!(text);
            let u = &mut v["usage"];
            u["prompt_tokens"] = json!(input + read);
            u["completion_tokens"] = json!(output);
            u["total_tokens"] = json!(input + read + output);
            u["prompt_tokens_details"]["cached_tokens"] = json!(read);
        }
    }
    v["model"] = json!(model);
    reply(flavor, 200, v.to_string())
}

/// The captured error body for `status`, verbatim.
fn error(flavor: Flavor, status: u16, retry_after: Option<u64>) -> Reply {
    let file = match (flavor, status) {
        (Flavor::Anthropic, 429) => Some("anthropic_error_429_rate_limit.json"),
        (Flavor::Anthropic, 503 | 529) => Some("anthropic_error_529_overloaded.json"),
        (Flavor::Anthropic, 500..=599) => Some("anthropic_error_500_api_error.json"),
        (Flavor::Openai, 429) => Some("openai_error_429_rate_limit_requests.json"),
        (Flavor::Openai, 500..=599) => Some("openai_error_500_server_error.json"),
        _ => None,
    };
    let kind = match (flavor, status) {
        (Flavor::Anthropic, 401) => "authentication_error",
        (Flavor::Anthropic, 404) => "not_found_error",
        (Flavor::Anthropic, 500..) => "api_error",
        _ => "invalid_request_error",
    };
    let body = file.map_or_else(
        || shaped_error(flavor, kind, reason(status)).to_string(),
        fixture,
    );
    let mut r = reply(flavor, status, body);
    r.1.extend(retry_after.map(|s| ("retry-after".to_string(), s.to_string())));
    r
}

/// The captured response headers: Anthropic's `anthropic-ratelimit-*` (and
/// `x-should-retry` on a 429) from the 2025 dump, and `request-id` (the body's
/// `request_id` when it has one, as the real API does; else the 2024 dump's); OpenAI's
/// `x-ratelimit-*`. Never `retry-after`: only a behaviour asks for it.
fn headers(flavor: Flavor, status: u16, body: &Value) -> Vec<(String, String)> {
    let (file, prefix) = match flavor {
        Flavor::Anthropic => ("anthropic_429_headers_coday.txt", "anthropic-ratelimit-"),
        Flavor::Openai => ("openai_ratelimit_headers_openwebui.txt", "x-ratelimit-"),
    };
    let anthropic = flavor == Flavor::Anthropic;
    let keep =
        |k: &str| k.starts_with(prefix) || (anthropic && status == 429 && k == "x-should-retry");
    let mut h: Vec<_> = dump(file).into_iter().filter(|(k, _)| keep(k)).collect();
    if anthropic {
        let old = dump("anthropic_429_headers_sdk_ts_357.txt");
        let old = old
            .into_iter()
            .find(|(k, _)| k == "request-id")
            .map(|(_, v)| v);
        let id = body["request_id"].as_str().map(String::from).or(old);
        h.extend(id.map(|v| ("request-id".to_string(), v)));
    }
    h
}

/// The headers of a dump: `name: value` lines, or a JS object literal (`'name': 'value',`).
fn dump(name: &str) -> Vec<(String, String)> {
    fn unquote(s: &str) -> String {
        let s = s.trim().trim_end_matches(',');
        s.trim().trim_matches('\'').to_string()
    }
    fixture(name)
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (unquote(k).to_ascii_lowercase(), unquote(v)))
        .filter(|(k, v)| !v.is_empty() && !v.ends_with('{') && k != "status")
        .collect()
}

/// A request as the receiver reads it, with its body as JSON (or a JSON string of the
/// raw text when it is not JSON).
fn read_request(conn: &mut TcpStream) -> Option<LlmRequest> {
    let r = super::receiver::read_request(conn)?;
    let body = serde_json::from_slice(&r.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&r.body).into_owned()));
    Some(LlmRequest {
        method: r.method,
        path: r.path,
        headers: r.headers,
        body,
    })
}
