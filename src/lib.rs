//! Vigil: a Kubernetes operator that watches blockchain validators and pipeline runs.

pub mod advisor;
pub mod alert;
pub mod api;
pub mod archive;
pub mod conditions;
pub mod controller;
pub mod crd;
pub mod duration;
pub mod duty;
pub mod events;
pub mod fleet;
pub mod health;
pub mod inspect;
pub mod leader;
pub mod metrics;
pub mod monitor;
pub mod notice;
pub mod operator;
pub mod pipeline;
pub mod policy;
pub mod probe;
pub mod remediate;
pub mod server;
pub mod status;
pub mod telemetry;
pub mod text;
