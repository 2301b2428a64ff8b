//! The custom resources of Vigil (`vigil.dev/v1alpha1`) and the small value types they share.
//!
//! Every field carries a doc comment: it becomes `kubectl explain` text. Validation that a
//! person can get wrong lives in the schema (types, bounds) and in CEL rules with messages
//! written for people, so the API server rejects bad objects before Vigil ever sees them.

// Several `printcolumn(type_ = ...)` entries of one derive look like repeated attributes to
// clippy; they are distinct columns.
#[allow(clippy::duplicated_attributes)]
mod pipeline;
#[allow(clippy::duplicated_attributes)]
mod policy;
#[allow(clippy::duplicated_attributes)]
mod validator;

pub use pipeline::*;
pub use policy::*;
pub use validator::*;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// The API group of every Vigil resource.
pub const GROUP: &str = "vigil.dev";

/// A Go-style duration string such as `30s`, `5m` or `1h30m`, at most 30 days: the
/// durations of a MonitorPolicy.
///
/// Kept as the string the user wrote (so `kubectl get -o yaml` shows it back unchanged);
/// [`Dur::parse`] turns it into a [`std::time::Duration`]. The bounded kinds [`Timeout`] and
/// [`LongDur`] differ only in their schema and dereference to a `Dur` for parsing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Dur(pub String);

/// A timeout of one probe, SSH connection or command, or webhook call: more than zero
/// (zero would fail every attempt) and at most one hour.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timeout(pub Dur);

/// A duration of a PipelineRun (run and step timeouts, stall timeout, time to live): runs
/// may legitimately take days, so the bound is one year rather than 30 days.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LongDur(pub Dur);

/// The regular expression the API server checks durations against (Go's `time.ParseDuration`
/// syntax without a sign, which is also what CEL's `duration()` accepts; `0` alone is zero,
/// as in Go).
pub const DURATION_PATTERN: &str = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$";

/// Longest duration string the schema accepts.
pub const DURATION_MAX_LENGTH: usize = 64;

/// Per unit of a duration: its spellings, its length in nanoseconds, and the most integer
/// digits a component in that unit may have for CEL's `duration()` to be called on it (see
/// [`readable_pattern`]).
const READABLE_DIGITS: [(&str, u128, usize); 6] = [
    ("h", 3_600_000_000_000, 5),
    ("m", 60_000_000_000, 7),
    ("s", 1_000_000_000, 9),
    ("ms", 1_000_000, 12),
    ("us|µs", 1_000, 15),
    ("ns", 1, 18),
];

/// The durations that CEL's `duration()` reads without overflowing Go's 64-bit nanoseconds
/// (about 292 years): past that it fails with an evaluation error instead of a message for
/// people. Each unit gets as many digits as keep one component under 280,000 hours, so that
/// even [`DURATION_MAX_LENGTH`] characters of such components stay below the limit, while
/// every value up to a year still fits in any single unit (`8760h`, `31536000000ms`).
/// Anything [`DURATION_PATTERN`] accepts but this refuses is over every bound.
fn readable_pattern() -> String {
    let units: Vec<String> = READABLE_DIGITS
        .iter()
        .map(|(unit, _, digits)| format!(r"[0-9]{{1,{digits}}}(\.[0-9]+)?({unit})"))
        .collect();
    format!("^(0|(0*({}))+)$", units.join("|"))
}

/// A regular expression as a single-quoted CEL string literal.
fn cel_literal(pattern: &str) -> String {
    format!("'{}'", pattern.replace('\\', "\\\\"))
}

/// CEL: the string `expr` is a duration that `duration()` can read (so a rule may call it).
pub(crate) fn cel_readable(expr: &str) -> String {
    format!(
        "{expr}.size() <= {DURATION_MAX_LENGTH} && {expr}.matches({})",
        cel_literal(&readable_pattern())
    )
}

/// CEL: `expr` is not a readable duration, or it satisfies `cmp` (e.g. `> duration('0s')`).
/// Unreadable values are left to the type's own rules, which say what is wrong with them.
pub(crate) fn cel_duration_is(expr: &str, cmp: &str) -> String {
    format!("!({}) || duration({expr}) {cmp}", cel_readable(expr))
}

/// One `x-kubernetes-validations` entry.
pub(crate) fn cel_rule(rule: String, message: &str) -> serde_json::Value {
    serde_json::json!({ "rule": rule, "message": message })
}

/// Appends rules to a schema's `x-kubernetes-validations` (for `#[schemars(transform)]`:
/// unlike `extend`, it keeps rules already there).
pub(crate) fn push_rules(schema: &mut Schema, rules: impl IntoIterator<Item = serde_json::Value>) {
    let entry = schema
        .ensure_object()
        .entry("x-kubernetes-validations")
        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    if let serde_json::Value::Array(list) = entry {
        list.extend(rules);
    }
}

/// The schema of a duration string at most `max` long (a Go duration, and its text for
/// people), optionally refusing zero.
fn duration_schema(max: &str, max_text: &str, nonzero: bool) -> Schema {
    let syntax = format!("self.matches({})", cel_literal(DURATION_PATTERN));
    // The bound also catches the values too large for `duration()` to read at all, such as
    // `99999999999999999999h`: they are over every bound, and say so.
    let bound = format!(
        "!{syntax} || ({} && duration(self) <= duration('{max}'))",
        cel_readable("self")
    );
    let mut rules = vec![
        cel_rule(syntax, "must be a duration such as 500ms, 30s, 5m or 1h30m"),
        cel_rule(bound, &format!("must be at most {max_text}")),
    ];
    if nonzero {
        rules.push(cel_rule(
            cel_duration_is("self", "> duration('0s')"),
            "must be longer than 0s (a zero timeout fails every attempt)",
        ));
    }
    let mut schema = json_schema!({
        "type": "string",
        "maxLength": DURATION_MAX_LENGTH,
    });
    push_rules(&mut schema, rules);
    schema
}

impl Dur {
    /// A duration from its string form.
    pub fn new(s: impl Into<String>) -> Self {
        Dur(s.into())
    }

    /// The string as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses the duration; the schema already guarantees the syntax for stored objects.
    pub fn parse(&self) -> Result<std::time::Duration, crate::duration::DurationError> {
        crate::duration::parse(&self.0)
    }
}

impl Timeout {
    /// A timeout from its string form.
    pub fn new(s: impl Into<String>) -> Self {
        Timeout(Dur::new(s))
    }
}

impl LongDur {
    /// A duration from its string form.
    pub fn new(s: impl Into<String>) -> Self {
        LongDur(Dur::new(s))
    }
}

// The bounded kinds are durations with a tighter schema: `timeout.parse()` and passing
// `&timeout` where a `&Dur` is expected keep working.
impl std::ops::Deref for Timeout {
    type Target = Dur;
    fn deref(&self) -> &Dur {
        &self.0
    }
}

impl std::ops::Deref for LongDur {
    type Target = Dur;
    fn deref(&self) -> &Dur {
        &self.0
    }
}

impl JsonSchema for Dur {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        duration_schema("720h", "720h (30 days)", false)
    }
}

impl JsonSchema for Timeout {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Timeout".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        duration_schema("1h", "1h", true)
    }
}

impl JsonSchema for LongDur {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "LongDuration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        duration_schema("8760h", "8760h (365 days)", false)
    }
}

/// An absolute `http://` or `https://` URL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HttpUrl(pub String);

impl HttpUrl {
    /// The URL as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl JsonSchema for HttpUrl {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "HttpUrl".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "maxLength": 2048,
            "x-kubernetes-validations": [{
                "rule": "isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHost() != ''",
                "message": "must be an absolute http:// or https:// URL, e.g. http://10.0.0.5:9944"
            }]
        })
    }
}

/// A reference to one key of a Secret in the same namespace as the referring object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret (same namespace).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A reference to a MonitorPolicy in the same namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRef {
    /// Name of the MonitorPolicy (same namespace).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Standard `metav1.Condition`; Vigil keeps `lastTransitionTime` when the status does not change.
pub type Condition = k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_durations_cannot_overflow_cel() {
        // A component of `digits` digits (and any fraction) is below 10^digits units and
        // takes at least digits + unit characters: the most nanoseconds per character, times
        // the longest string, must stay below Go's limit.
        let worst = READABLE_DIGITS
            .iter()
            .map(|(unit, nanos, digits)| {
                let chars = digits + unit.split('|').map(|u| u.chars().count()).min().unwrap();
                10u128.pow(*digits as u32) * nanos / chars as u128
            })
            .max()
            .unwrap();
        assert!(worst * DURATION_MAX_LENGTH as u128 <= i64::MAX as u128);
    }

    #[test]
    fn every_bound_fits_the_readable_digits_of_every_unit() {
        // Otherwise a valid value such as `31536000000ms` would be refused as too large.
        for bound in ["1h", "720h", "8760h"] {
            let nanos = crate::duration::parse(bound).unwrap().as_nanos();
            for (unit, unit_nanos, digits) in READABLE_DIGITS {
                let written = (nanos / unit_nanos).to_string();
                assert!(written.len() <= digits, "{bound} in {unit} is {written}");
            }
        }
    }
}
