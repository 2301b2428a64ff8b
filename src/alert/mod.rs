//! Alerts: what fires (read from status, so a restart sees the same), whom to tell and
//! when (pure decisions), and delivering it to Alertmanager, Slack, a webhook or email.
//!
//! - [`catalog`]: the alert table and what fires for a validator, a policy or a run;
//! - [`decide`]: routing, grouping, repeat, flap damping and resolve over the records kept
//!   in status.

pub mod catalog;
pub mod decide;
pub mod deliver;
pub mod message;
pub mod notify;
pub mod send;
pub mod throttle;
