//! One call to a provider, the thin I/O around [`wire`]: the request with its headers, a
//! timeout per request, a capped body, retries with exponential backoff and jitter (the
//! provider's `retry-after` honoured on 429, 503 and 529) inside an overall deadline, a
//! circuit breaker per provider endpoint, and at most a fixed number of calls in flight.
//! The API key goes in a header and nowhere else: errors say what happened, never the key,
//! the URL's query or the provider's message.

use super::gate::{Breaker, Gate};
use super::wire::{self, Answer, CallError, Prompt};
use crate::alert::throttle::{backoff, jitter};
use crate::api::AdvisorProvider;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Largest answer body read.
const BODY_LIMIT: usize = 1 << 20;
/// Attempts of one call (the first and its retries).
const TRIES: u32 = 3;
/// Failures in a row that open a provider's breaker, and for how long.
const OPEN_AFTER: u32 = 3;
const COOL_OFF: Duration = Duration::from_secs(60);

/// Where and how to call.
#[derive(Clone)]
pub struct Provider {
    /// `anthropic` or `openai`.
    pub kind: AdvisorProvider,
    /// The API base URL (`https://api.anthropic.com`, or an OpenAI-compatible `…/v1`).
    pub base_url: String,
    /// The API key.
    pub key: String,
    /// Extra headers from the policy.
    pub headers: Vec<(String, String)>,
    /// The model.
    pub model: String,
    /// Ask for a JSON object answer (OpenAI-compatible servers).
    pub json_mode: bool,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("kind", &self.kind)
            .field("model", &self.model)
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Provider {
    /// The public endpoint of a provider when the policy sets no base URL.
    pub fn default_base(kind: AdvisorProvider) -> &'static str {
        match kind {
            AdvisorProvider::Openai => "https://api.openai.com/v1",
            _ => "https://api.anthropic.com",
        }
    }

    fn endpoint(&self) -> String {
        let base = self.base_url.trim_end_matches('/');
        match self.kind {
            AdvisorProvider::Openai => format!("{base}/chat/completions"),
            _ => format!("{base}/v1/messages"),
        }
    }
}

/// The callers' shared parts: one HTTP client, the breakers, the in-flight bound.
pub struct Caller {
    http: reqwest::Client,
    breakers: Mutex<HashMap<String, Breaker>>,
    in_flight: Semaphore,
    start: Instant,
}

/// How a call went, attempt by attempt (for the metrics).
#[derive(Debug)]
pub struct Call {
    /// The answer, or why none.
    pub result: Result<Answer, CallError>,
    /// Attempts made (0 when the breaker held the call back).
    pub attempts: u32,
}

impl Caller {
    /// At most `in_flight` calls at once, over `http`.
    pub fn new(http: reqwest::Client, in_flight: usize) -> Caller {
        Caller {
            http,
            breakers: Mutex::new(HashMap::new()),
            in_flight: Semaphore::new(in_flight.max(1)),
            start: Instant::now(),
        }
    }

    fn gate(&self, key: &str) -> Gate {
        let now = self.start.elapsed();
        let mut b = self.breakers.lock().expect("breakers");
        b.entry(key.to_string())
            .or_insert_with(|| Breaker::new(OPEN_AFTER, COOL_OFF))
            .gate(now)
    }

    fn record(&self, key: &str, ok: bool) {
        let now = self.start.elapsed();
        let mut b = self.breakers.lock().expect("breakers");
        if let Some(b) = b.get_mut(key) {
            b.record(ok, now);
        }
    }

    /// Asks `p` with `prompt`: each attempt bounded by `timeout`, all of them by twice that.
    pub async fn ask(&self, p: &Provider, prompt: &Prompt, timeout: Duration) -> Call {
        let deadline = Instant::now() + timeout * 2;
        let Ok(_permit) = self.in_flight.acquire().await else {
            return Call {
                result: Err(CallError::Refused("the advisor is shutting down".into())),
                attempts: 0,
            };
        };
        let key = format!("{:?} {}", p.kind, p.base_url);
        let mut attempts = 0;
        let mut last: Option<String> = None;
        loop {
            if self.gate(&key) == Gate::Open {
                let why = match &last {
                    // This call's own failures opened it: say what they were.
                    Some(w) => format!("{w}; the provider's circuit breaker is now open"),
                    None => {
                        "the provider failed repeatedly; its circuit breaker is open for now".into()
                    }
                };
                return Call {
                    result: Err(CallError::Retry { why, after: None }),
                    attempts,
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            attempts += 1;
            let result = self.once(p, prompt, timeout.min(left)).await;
            // A refusal of the request (4xx) says nothing about the provider's health.
            self.record(&key, !matches!(result, Err(CallError::Retry { .. })));
            let Err(CallError::Retry { why, after }) = &result else {
                return Call { result, attempts };
            };
            last = Some(why.clone());
            let wait = after.unwrap_or_else(|| backoff(attempts - 1, jitter()));
            let left = deadline.saturating_duration_since(Instant::now());
            if attempts >= TRIES || wait + Duration::from_secs(1) > left {
                let why = match after {
                    Some(a) if *a > left => {
                        format!("{why}; retry-after {}s is past the deadline", a.as_secs())
                    }
                    _ => format!("{why} ({attempts} attempt(s))"),
                };
                return Call {
                    result: Err(CallError::Retry { why, after: *after }),
                    attempts,
                };
            }
            tokio::time::sleep(wait).await;
        }
    }

    async fn once(
        &self,
        p: &Provider,
        prompt: &Prompt,
        timeout: Duration,
    ) -> Result<Answer, CallError> {
        let mut req = self.http.post(p.endpoint()).timeout(timeout);
        let body = match p.kind {
            AdvisorProvider::Openai => {
                req = req.bearer_auth(&p.key);
                wire::openai_request(&p.model, prompt, p.json_mode)
            }
            _ => {
                req = req
                    .header("x-api-key", &p.key)
                    .header("anthropic-version", wire::ANTHROPIC_VERSION);
                wire::anthropic_request(&p.model, prompt)
            }
        };
        for (k, v) in &p.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = req
            .json(&body)
            .send()
            .await
            .map_err(|e| transport(&e, timeout))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let body = read_capped(resp, timeout).await?;
        if !(200..300).contains(&status) {
            return Err(wire::failure(status, retry_after.as_deref(), &body));
        }
        match p.kind {
            AdvisorProvider::Openai => wire::openai_answer(&body),
            _ => wire::anthropic_answer(&body),
        }
    }
}

/// A transport failure in words that carry no URL (reqwest's Display includes it).
fn transport(e: &reqwest::Error, timeout: Duration) -> CallError {
    let why = if e.is_timeout() {
        format!("no answer within {}s", timeout.as_secs_f64())
    } else if e.is_connect() {
        "could not connect to the provider".to_string()
    } else {
        "the request to the provider failed".to_string()
    };
    CallError::Retry { why, after: None }
}

async fn read_capped(resp: reqwest::Response, timeout: Duration) -> Result<Vec<u8>, CallError> {
    let mut resp = resp;
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport(&e, timeout))? {
        if out.len() + chunk.len() > BODY_LIMIT {
            return Err(CallError::Unreadable(
                "the answer is larger than 1 MiB".into(),
            ));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
