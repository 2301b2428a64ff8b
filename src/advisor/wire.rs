//! The providers' wire formats, pure: the request body of Anthropic's Messages API (the
//! stable system prompt and instructions marked for prompt caching) and of OpenAI-style
//! Chat Completions (JSON mode where the server supports it), and reading their answers:
//! the text, the usage (cache reads and writes included), and how a failure is classed
//! (`retry-after` on 429, 503 and 529; 500 worth another try; other 4xx final). Nothing
//! from an error body is kept but its type.

use super::budget::Usage;
use serde_json::{Value, json};
use std::time::Duration;

/// The `anthropic-version` header value.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// What one request says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompt {
    /// The stable part: how to answer (the decision schema). Cached by Anthropic.
    pub system: String,
    /// The policy's role instructions (stable per policy; cached too).
    pub instructions: String,
    /// This call's context (redacted).
    pub context: String,
    /// Most output tokens.
    pub max_tokens: u32,
}

/// The Anthropic Messages API body.
pub fn anthropic_request(model: &str, p: &Prompt) -> Value {
    let mut system = vec![json!({"type": "text", "text": p.system})];
    if !p.instructions.is_empty() {
        system.push(json!({"type": "text", "text": p.instructions}));
    }
    // The cache breakpoint goes on the last stable block: everything before it is reused.
    if let Some(last) = system.last_mut() {
        last["cache_control"] = json!({"type": "ephemeral"});
    }
    json!({
        "model": model,
        "max_tokens": p.max_tokens,
        "system": system,
        "messages": [{"role": "user", "content": p.context}],
    })
}

/// The Chat Completions body; `json_mode` asks for a JSON object answer.
pub fn openai_request(model: &str, p: &Prompt, json_mode: bool) -> Value {
    let mut system = p.system.clone();
    if !p.instructions.is_empty() {
        system.push_str("\n\n");
        system.push_str(&p.instructions);
    }
    let mut body = json!({
        "model": model,
        "max_tokens": p.max_tokens,
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": p.context},
        ],
    });
    if json_mode {
        body["response_format"] = json!({"type": "json_object"});
    }
    body
}

/// A provider's answer: its text and what it cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The model's text.
    pub text: String,
    /// Tokens billed.
    pub usage: Usage,
    /// The model that answered.
    pub model: String,
}

/// Why a call gave no answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Worth another try, after `after` when the provider said so.
    #[error("{why}")]
    Retry {
        /// What happened (the status and the error type).
        why: String,
        /// `retry-after`.
        after: Option<Duration>,
    },
    /// Final: the request or the key is refused.
    #[error("{0}")]
    Refused(String),
    /// The answer could not be read.
    #[error("the provider's answer could not be read ({0})")]
    Unreadable(String),
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// Reads a 2xx Anthropic answer.
pub fn anthropic_answer(body: &[u8]) -> Result<Answer, CallError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|_| CallError::Unreadable("not JSON".into()))?;
    let text = v["content"]
        .as_array()
        .map(|blocks| {
            blocks
                .iter()
                .filter(|b| b["type"] == "text")
                .filter_map(|b| b["text"].as_str())
                .collect::<Vec<_>>()
                .join("")
        })
        .ok_or_else(|| CallError::Unreadable("no content".into()))?;
    let us = &v["usage"];
    Ok(Answer {
        text,
        usage: Usage {
            input: u(&us["input_tokens"]),
            output: u(&us["output_tokens"]),
            cache_read: u(&us["cache_read_input_tokens"]),
            cache_write: u(&us["cache_creation_input_tokens"]),
        },
        model: v["model"].as_str().unwrap_or_default().to_string(),
    })
}

/// Reads a 2xx Chat Completions answer (cached prompt tokens count as cache reads).
pub fn openai_answer(body: &[u8]) -> Result<Answer, CallError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|_| CallError::Unreadable("not JSON".into()))?;
    let text = v["choices"][0]["message"]["content"]
        .as_str()
        .ok_or_else(|| CallError::Unreadable("no choices[0].message.content".into()))?
        .to_string();
    let us = &v["usage"];
    let cached = u(&us["prompt_tokens_details"]["cached_tokens"]);
    Ok(Answer {
        text,
        usage: Usage {
            input: u(&us["prompt_tokens"]).saturating_sub(cached),
            output: u(&us["completion_tokens"]),
            cache_read: cached,
            cache_write: 0,
        },
        model: v["model"].as_str().unwrap_or_default().to_string(),
    })
}

/// Classes a failed call by its status, `retry-after` (seconds) and body (only the
/// error's `type` is read, never its message).
pub fn failure(status: u16, retry_after: Option<&str>, body: &[u8]) -> CallError {
    let after = retry_after
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(3600.0)));
    let kind = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v["error"]["type"]
                .as_str()
                .filter(|t| {
                    t.len() <= 64 && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                })
                .map(String::from)
        })
        .map(|t| format!(" ({t})"))
        .unwrap_or_default();
    match status {
        429 | 503 | 529 => CallError::Retry {
            why: format!("the provider answered {status}{kind}"),
            after,
        },
        500..=599 | 408 => CallError::Retry {
            why: format!("the provider answered {status}{kind}"),
            after: None,
        },
        _ => CallError::Refused(format!("the provider refused the request: {status}{kind}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::probe::test_support::fixture_bytes as fixture;

    fn prompt() -> Prompt {
        Prompt {
            system: "Answer with one JSON object.".into(),
            instructions: "You watch the Polkadot validators of team A.".into(),
            context: "val-1: Reachable=False".into(),
            max_tokens: 400,
        }
    }

    #[test]
    fn requests_carry_the_prompt_and_cache_the_stable_part() {
        let a = anthropic_request("claude-sonnet-4-5", &prompt());
        assert_eq!(a["max_tokens"], 400);
        assert_eq!(a["system"][1]["cache_control"]["type"], "ephemeral");
        assert!(a["system"][0].get("cache_control").is_none());
        assert_eq!(a["messages"][0]["content"], "val-1: Reachable=False");
        let o = openai_request("gpt-4o-mini", &prompt(), true);
        assert_eq!(o["response_format"]["type"], "json_object");
        assert!(
            o["messages"][0]["content"]
                .as_str()
                .unwrap()
                .ends_with("team A.")
        );
        assert!(
            openai_request("llama", &prompt(), false)
                .get("response_format")
                .is_none()
        );
    }

    #[test]
    fn answers_from_real_bodies() {
        let a = anthropic_answer(&fixture("anthropic_messages_success.json")).unwrap();
        assert!(a.text.starts_with("Hello!"));
        assert_eq!((a.usage.input, a.usage.output), (10, 25));
        assert_eq!(a.model, "claude-sonnet-4-20250514");
        let o = openai_answer(&fixture("openai_chat_completion_success.json")).unwrap();
        assert_eq!(
            (o.usage.input, o.usage.output, o.usage.cache_read),
            (23, 29, 0)
        );
        assert!(matches!(
            anthropic_answer(b"{\"content\": 3"),
            Err(CallError::Unreadable(_))
        ));
        assert!(matches!(
            openai_answer(b"{}"),
            Err(CallError::Unreadable(_))
        ));
    }

    #[test]
    fn failures_from_real_bodies() {
        // (status, retry-after, body, worth a retry, seconds to wait)
        type Case = (u16, Option<&'static str>, &'static str, bool, Option<u64>);
        let cases: &[Case] = &[
            (
                429,
                Some("7"),
                "anthropic_error_429_rate_limit.json",
                true,
                Some(7),
            ),
            (529, None, "anthropic_error_529_overloaded.json", true, None),
            (
                500,
                Some("3"),
                "anthropic_error_500_api_error.json",
                true,
                None,
            ),
            (
                404,
                None,
                "anthropic_error_404_docs_example.json",
                false,
                None,
            ),
            (
                429,
                Some("1"),
                "openai_error_429_rate_limit_requests.json",
                true,
                Some(1),
            ),
            (500, None, "openai_error_500_server_error.json", true, None),
        ];
        for (status, after, file, retry, secs) in cases {
            let e = failure(*status, *after, &fixture(file));
            match &e {
                CallError::Retry { after, .. } => {
                    assert!(*retry, "{file}: {e}");
                    assert_eq!(after.map(|d| d.as_secs()), *secs, "{file}");
                }
                CallError::Refused(_) => assert!(!*retry, "{file}: {e}"),
                CallError::Unreadable(_) => panic!("{file}: {e}"),
            }
            // Only the error type is kept, never the message (it may echo the request).
            assert!(!e.to_string().contains("organization"), "{file}: {e}");
        }
        let e = failure(529, None, &fixture("anthropic_error_529_overloaded.json"));
        assert_eq!(
            e.to_string(),
            "the provider answered 529 (overloaded_error)"
        );
    }
}
