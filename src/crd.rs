//! The CustomResourceDefinitions, generated from the Rust types (`vigil crd`).

use crate::api::{MonitorPolicy, MonitoredValidator, PipelineRun};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Every CRD, with the file name it is checked in under `crds/`.
pub fn all() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        ("monitoredvalidators.yaml", MonitoredValidator::crd()),
        ("monitorpolicies.yaml", MonitorPolicy::crd()),
        ("pipelineruns.yaml", PipelineRun::crd()),
    ]
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
