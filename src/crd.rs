//! The CustomResourceDefinitions, generated from the Rust types (`vigil crd`).

use crate::api::{MonitorPolicy, MonitoredValidator, PipelineRun};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Every CRD, with the file name it is checked in under `crds/`.
pub fn all() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        ("monitoredvalidators.yaml", tidy(MonitoredValidator::crd())),
        ("monitorpolicies.yaml", tidy(MonitorPolicy::crd())),
        ("pipelineruns.yaml", tidy(PipelineRun::crd())),
    ]
}

/// Replaces the integer formats schemars emits for unsigned Rust types (`uint32`, ...), which
/// the API server does not know, by explicit bounds: a value Vigil could not read back is
/// refused at the door instead of breaking the object later.
fn tidy(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                let max = match map.get("format").and_then(|f| f.as_str()) {
                    Some("uint8") => Some(u8::MAX as u64),
                    Some("uint16") => Some(u16::MAX as u64),
                    Some("uint32") => Some(u32::MAX as u64),
                    // int64 already bounds these; the API server rejects a maximum above it.
                    Some("uint64" | "uint") => Some(0),
                    _ => None,
                };
                if let Some(max) = max {
                    map.remove("format");
                    let tighter = map
                        .get("maximum")
                        .and_then(|m| m.as_f64())
                        .is_some_and(|m| m <= max as f64);
                    if max > 0 && !tighter {
                        map.insert("maximum".into(), max.into());
                    }
                    map.entry("minimum").or_insert(0.into());
                }
                map.values_mut().for_each(walk);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            let mut value = serde_json::to_value(&*schema).expect("schema serializes");
            walk(&mut value);
            *schema = serde_json::from_value(value).expect("schema stays valid");
        }
    }
    crd
}

/// One CRD as YAML, as written to `crds/`.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(crd)
}

/// Every CRD as one multi-document YAML stream (what `vigil crd` prints).
pub fn all_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for (_, crd) in all() {
        out.push_str("---\n");
        out.push_str(&to_yaml(&crd)?);
    }
    Ok(out)
}
