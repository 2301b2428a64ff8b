//! What comes back from a language model (`vigil::advisor`): the provider's answer envelope
//! (Anthropic Messages, OpenAI Chat Completions), a failed call's status, `retry-after` and
//! error body, and the decision the model's text must be. The bytes are used as each, in
//! turn. Beyond "never panics": a decision passes only within its limits (confidence 0..1,
//! capped texts, an allowed action), strict acceptance implies lenient acceptance of the same
//! decision, narrowing the allowed actions never changes an accepted decision, and refusals
//! and failures are short ASCII sentences that never repeat the answer.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::time::Duration;
use vigil::advisor::decision::{self, Decision, EVIDENCE_LIMIT, REASONING_LIMIT, SUMMARY_LIMIT};
use vigil::advisor::wire::{self, CallError};
use vigil::api::AdviceAction;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    decide(&text);

    let doc: Option<Value> = serde_json::from_slice(data).ok();
    match wire::anthropic_answer(data) {
        Ok(a) => {
            let doc = doc
                .as_ref()
                .expect("an answer from a body that is not JSON");
            // The text blocks, joined; other blocks (tool use, thinking) are not the answer.
            let blocks = doc["content"].as_array().expect("content is a list");
            let joined: String = blocks
                .iter()
                .filter(|b| b["type"] == "text")
                .filter_map(|b| b["text"].as_str())
                .collect();
            assert_eq!(a.text, joined);
            decide(&a.text);
        }
        Err(e) => call_error(&e),
    }
    match wire::openai_answer(data) {
        Ok(a) => {
            let doc = doc
                .as_ref()
                .expect("an answer from a body that is not JSON");
            assert_eq!(
                Some(a.text.as_str()),
                doc["choices"][0]["message"]["content"].as_str()
            );
            // Cached prompt tokens are not billed twice.
            let prompt = doc["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
            assert!(a.usage.input + a.usage.cache_read <= prompt.max(a.usage.cache_read));
            decide(&a.text);
        }
        Err(e) => call_error(&e),
    }

    // A failed call: the status from the first two bytes, `retry-after` from the first line.
    let status = u16::from_le_bytes([
        data.first().copied().unwrap_or(0),
        data.get(1).copied().unwrap_or(0),
    ]);
    let retry_after = text.lines().next().unwrap_or("");
    for after in [None, Some(retry_after)] {
        let e = wire::failure(status, after, data);
        call_error(&e);
        match &e {
            CallError::Retry { after: Some(a), .. } => {
                assert!(*a <= Duration::from_secs(3600), "waits {a:?}");
                assert!(matches!(status, 429 | 503 | 529));
            }
            CallError::Retry { after: None, .. } => {
                assert!(matches!(status, 408 | 429 | 500..=599));
            }
            CallError::Refused(_) => assert!(!matches!(status, 408 | 429 | 500..=599)),
            CallError::Unreadable(_) => panic!("a failure is never unreadable"),
        }
    }
});

/// The model's text as a decision, strict and lenient, under three sets of allowed actions.
fn decide(text: &str) {
    let few = [AdviceAction::Alert, AdviceAction::Wait];
    let mut accepted: Option<Decision> = None;
    for strict in [true, false] {
        for allowed in [&[][..], &AdviceAction::ALL[..], &few[..]] {
            match decision::parse(text, strict, allowed) {
                Ok(d) => {
                    assert!((0.0..=1.0).contains(&d.confidence), "{}", d.confidence);
                    assert!(d.summary.len() <= SUMMARY_LIMIT);
                    assert!(d.reasoning.len() <= REASONING_LIMIT);
                    assert!(d.evidence.len() <= EVIDENCE_LIMIT);
                    assert!(d.evidence.iter().all(|e| e.len() <= 300));
                    assert!(allowed.is_empty() || allowed.contains(&d.action));
                    // Every acceptance of the same text is the same decision.
                    match &accepted {
                        Some(first) => assert_eq!(first, &d),
                        None => accepted = Some(d),
                    }
                }
                Err(e) => {
                    let why = e.to_string();
                    assert!(why.is_ascii() && why.len() <= 200, "{why:?}");
                    // A narrower set refuses only for the action.
                    if allowed.len() < AdviceAction::ALL.len()
                        && !allowed.is_empty()
                        && let Ok(d) = decision::parse(text, strict, &[])
                    {
                        assert!(matches!(e, decision::Refused::NotAllowed(_)), "{e:?}");
                        assert!(!allowed.contains(&d.action));
                    }
                }
            }
        }
        // Strict acceptance implies lenient acceptance: checked by the order of the loop,
        // which meets the strict decision first and compares every later one with it.
        if strict && accepted.is_some() {
            assert!(decision::parse(text, false, &[]).is_ok());
        }
    }
}

/// A call's failure is a short ASCII sentence: the status and the error's type at most.
fn call_error(e: &CallError) {
    let why = e.to_string();
    assert!(why.is_ascii() && why.len() <= 200, "{why:?}");
}
