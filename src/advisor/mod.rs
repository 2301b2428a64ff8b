//! The advisor: a diagnosis for an unhealthy validator, from the built-in rules or a
//! language model, inside hard budgets. This part holds the pure decisions:
//!
//! - [`rules`]: the deterministic advisor (symptom class → decision with its reasoning),
//!   the default and the fallback whenever a model is slow, failing or out of budget;
//! - [`decision`]: the strict decision object a model must answer, and its parser;
//! - [`budget`]: checking a call against the budget before it is made, accounting it after;
//! - [`redact`]: masking addresses, hosts, URLs, keys and secrets in prompts, consistently;
//! - [`wire`]: the Anthropic and OpenAI request bodies, answers and failure classes;
//! - [`gate`]: the question's fingerprint (dedup) and the per-provider circuit breaker;
//! - [`when`]: who answers (model, rules, nobody) by `advisor.mode` and what happened;
//! - [`plan`]: one validator's moment, fingerprint, who answers, outcome, applying;
//! - [`simulate`]: a month of advice and its cost, through this same code (`advisor-cost`);
//! - [`context`]: the prompt (redacted, bounded) and its token estimate.
//!
//! The I/O: [`call`] (one provider call: timeouts, retries, breaker, in-flight bound) and
//! [`task`] (the loop that asks, reserves the budget, records and applies advice).

pub mod budget;
pub mod call;
pub mod context;
pub mod decision;
pub mod gate;
pub mod plan;
pub mod redact;
pub mod rules;
pub mod simulate;
pub mod task;
pub mod when;
pub mod wire;
