//! What an advisor may answer, pure: the strict decision object
//! `{action, confidence, summary, reasoning, evidence[]}` and its parser. Anything else is
//! refused with a reason that names what was wrong (never the answer's text): prose, a code
//! fence, truncated JSON, a missing field, an unknown action, a confidence outside 0..1, or
//! an action the policy does not allow. Whatever a node, a log or a name says inside the
//! prompt, the answer can never widen what may be done: only the allowed actions pass.

use crate::api::AdviceAction;
use serde::Deserialize;

/// Longest summary kept (bytes).
pub const SUMMARY_LIMIT: usize = 500;
/// Longest reasoning kept (bytes).
pub const REASONING_LIMIT: usize = 2000;
/// Most evidence items kept.
pub const EVIDENCE_LIMIT: usize = 8;

/// A validated decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// What to do.
    pub action: AdviceAction,
    /// How sure, 0 to 1.
    pub confidence: f64,
    /// One paragraph for people.
    pub summary: String,
    /// Why.
    pub reasoning: String,
    /// What it rests on.
    pub evidence: Vec<String>,
}

/// Why an answer was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not a JSON object at all (prose, or cut off).
    #[error("the answer is not a JSON object ({0})")]
    NotJson(String),
    /// Wrapped in a Markdown code fence while strict mode is on.
    #[error("the answer is wrapped in a code fence; strict mode wants the bare JSON object")]
    CodeFence,
    /// A field is missing or of the wrong type.
    #[error("the answer's JSON does not match the decision schema ({0})")]
    Schema(String),
    /// The confidence is not a number in 0..1.
    #[error("confidence must be between 0 and 1")]
    Confidence,
    /// The action is not one this policy allows.
    #[error("action {0} is not allowed by the policy's advisor.allowedActions")]
    NotAllowed(&'static str),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    action: AdviceAction,
    confidence: f64,
    summary: String,
    reasoning: String,
    #[serde(default)]
    evidence: Vec<String>,
}

fn cap(s: &str, limit: usize) -> String {
    crate::text::cap(s.trim(), limit)
}

/// Parses an answer. With `strict`, only the bare object is accepted; without, one code
/// fence around it is tolerated. `allowed` empty allows every action.
pub fn parse(text: &str, strict: bool, allowed: &[AdviceAction]) -> Result<Decision, Refused> {
    let mut body = text.trim();
    if body.starts_with("```") {
        if strict {
            return Err(Refused::CodeFence);
        }
        body = body
            .trim_start_matches("```json")
            .trim_start_matches("```")
            .trim_end_matches("```")
            .trim();
    }
    if !body.starts_with('{') {
        return Err(Refused::NotJson("it does not start with {".into()));
    }
    let wire: Wire = serde_json::from_str(body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            Refused::NotJson(format!(
                "{:?} at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ))
        } else {
            // serde names the field or the unknown variant, never the value.
            Refused::Schema(schema_reason(&e))
        }
    })?;
    if !(0.0..=1.0).contains(&wire.confidence) || wire.confidence.is_nan() {
        return Err(Refused::Confidence);
    }
    if !allowed.is_empty() && !allowed.contains(&wire.action) {
        return Err(Refused::NotAllowed(wire.action.as_str()));
    }
    Ok(Decision {
        action: wire.action,
        confidence: wire.confidence,
        summary: cap(&wire.summary, SUMMARY_LIMIT),
        reasoning: cap(&wire.reasoning, REASONING_LIMIT),
        evidence: wire
            .evidence
            .iter()
            .take(EVIDENCE_LIMIT)
            .map(|e| cap(e, 300))
            .collect(),
    })
}

/// serde's message without any quoted value from the answer: an unknown action is named
/// by the schema, not echoed.
fn schema_reason(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    if msg.starts_with("unknown variant") {
        let allowed = crate::api::AdviceAction::ALL
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        return format!("action must be one of {allowed}");
    }
    if msg.starts_with("unknown field") {
        return "it has fields the schema does not define".into();
    }
    for field in ["action", "confidence", "summary", "reasoning", "evidence"] {
        if msg.contains(&format!("`{field}`")) {
            return if msg.starts_with("missing field") {
                format!("missing field {field}")
            } else {
                format!("field {field} has the wrong type")
            };
        }
    }
    "wrong types".into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use AdviceAction as A;

    const OK: &str = r#"{"action":"restart","confidence":0.8,"summary":"Node is down","reasoning":"No answer for 3 probes; peers fine","evidence":["Reachable=False"]}"#;

    #[test]
    fn answers_are_strict() {
        let d = parse(OK, true, &[]).unwrap();
        assert_eq!((d.action, d.confidence), (A::Restart, 0.8));
        assert_eq!(d.evidence, ["Reachable=False"]);
        let fenced = format!("```json\n{OK}\n```");
        let cases: Vec<(&str, String, bool, Vec<A>, Refused)> = vec![
            ("prose", "I think you should restart it.".into(), true, vec![], Refused::NotJson("it does not start with {".into())),
            ("code fence, strict", fenced.clone(), true, vec![], Refused::CodeFence),
            ("truncated", OK[..40].to_string(), true, vec![], Refused::NotJson(String::new())),
            ("missing field", r#"{"action":"wait","confidence":0.5,"summary":"s"}"#.into(), true, vec![], Refused::Schema("missing field reasoning".into())),
            ("unknown action", r#"{"action":"rm -rf","confidence":0.5,"summary":"s","reasoning":"r"}"#.into(), true, vec![], Refused::Schema(String::new())),
            ("confidence out of range", r#"{"action":"wait","confidence":7,"summary":"s","reasoning":"r"}"#.into(), true, vec![], Refused::Confidence),
            ("extra fields", r#"{"action":"wait","confidence":0.5,"summary":"s","reasoning":"r","run":"curl x"}"#.into(), true, vec![], Refused::Schema("it has fields the schema does not define".into())),
            ("not allowed", OK.into(), true, vec![A::Alert, A::Wait], Refused::NotAllowed("restart")),
        ];
        for (what, text, strict, allowed, want) in cases {
            let got = parse(&text, strict, &allowed).unwrap_err();
            assert_eq!(
                std::mem::discriminant(&got),
                std::mem::discriminant(&want),
                "{what}: {got:?}"
            );
            if let (Refused::Schema(g), Refused::Schema(w)) = (&got, &want)
                && !w.is_empty()
            {
                assert_eq!(g, w, "{what}");
            }
            // The refusal never repeats the answer.
            assert!(
                !got.to_string().contains("rm -rf") && !got.to_string().contains("curl"),
                "{what}: {got}"
            );
        }
        // Lenient: one fence is tolerated.
        assert_eq!(parse(&fenced, false, &[]).unwrap().action, A::Restart);
    }

    #[test]
    fn long_fields_are_capped() {
        let long = format!(
            r#"{{"action":"wait","confidence":0.5,"summary":"{}","reasoning":"r","evidence":[{}]}}"#,
            "é".repeat(1000),
            vec!["\"e\""; 20].join(",")
        );
        let d = parse(&long, true, &[]).unwrap();
        assert!(d.summary.len() <= SUMMARY_LIMIT + 3);
        assert_eq!(d.evidence.len(), EVIDENCE_LIMIT);
    }
}
