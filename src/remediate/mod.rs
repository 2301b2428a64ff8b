//! Remediation: acting on unhealthy validators, safely. The guards are pure
//! ([`guard`]); the actions are thin shells around the Kubernetes API, SSH and webhooks.

pub mod guard;
pub mod ssh;
pub mod webhook;
pub mod workload;
