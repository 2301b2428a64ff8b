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

/// A Go-style duration string such as `30s`, `5m` or `1h30m`.
///
/// Kept as the string the user wrote (so `kubectl get -o yaml` shows it back unchanged);
/// [`Dur::parse`] turns it into a [`std::time::Duration`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Dur(pub String);

/// The regular expression the API server checks durations against (Go's `time.ParseDuration`
/// syntax without a sign, which is also what CEL's `duration()` accepts).
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

impl Dur {
    /// A duration from its string form.
    pub fn new(s: impl Into<String>) -> Self {
        Dur(s.into())
    }

    /// Parses the duration; the schema already guarantees the syntax for stored objects.
    pub fn parse(&self) -> Result<std::time::Duration, crate::duration::DurationError> {
        crate::duration::parse(&self.0)
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
        json_schema!({
            "type": "string",
            "maxLength": 64,
            "x-kubernetes-validations": [{
                "rule": format!("self.matches('{}')", DURATION_PATTERN.replace('\\', "\\\\")),
                "message": "must be a duration such as 500ms, 30s, 5m or 1h30m"
            }]
        })
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
