//! What one validator is probed, judged and healed with: built once from its spec and its
//! validated policy whenever either changes (URLs parsed, timeouts typed), never per probe.

use crate::api::{Chain, MonitoredValidator};
use crate::health::Limits;
use crate::policy::{Policy, SshCommand};
use crate::probe::{ProbeKind, ProbeOptions, ProbeTarget, parse_url};
use crate::remediate::{Target, guard::Rules};
use kube::Resource;
use std::time::Duration;

/// How one validator is probed and judged.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Chain.
    pub chain: Chain,
    /// Where and what to ask (URLs parsed).
    pub target: ProbeTarget,
    /// Probe timeout and body cap.
    pub options: ProbeOptions,
    /// Health thresholds.
    pub limits: Limits,
    /// Probe interval.
    pub interval: Duration,
    /// Policy name (fleet membership).
    pub policy: String,
    /// Generation of the validator this config was built from.
    pub generation: Option<i64>,
    /// How the validator is healed.
    pub heal: Heal,
    /// Its duty, with `spec.duty`.
    pub duty: Option<Duty>,
}

/// Who the validator is on its chain and how its duty is judged.
#[derive(Clone, Debug, PartialEq)]
pub struct Duty {
    /// Cosmos consensus address, uppercase hex.
    pub consensus: Option<String>,
    /// The consensus address as given (bech32 or hex), for the Cosmos SDK REST API.
    pub consensus_given: Option<String>,
    /// Cosmos operator address (`...valoper1...`).
    pub operator: Option<String>,
    /// Cosmos SDK REST API (`endpoints.api`).
    pub api: Option<String>,
    /// Ethereum beacon node (`endpoints.beacon`) and the validator's index or pubkey.
    pub beacon: Option<(String, String)>,
    /// Where blocks and their signatures are read (duty RPC, else the node's RPC).
    pub rpc: Option<String>,
    /// The policy's thresholds.
    pub thresholds: crate::duty::judge::Thresholds,
}

/// How one validator is healed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Heal {
    /// The policy's remediation rules.
    pub rules: Rules,
    /// What to act on (typed), if anything.
    pub target: Option<Target>,
    /// The validator's `spec.suspend`.
    pub suspended: bool,
    /// The `ssh` action's command.
    pub ssh_command: Option<SshCommand>,
    /// The policy's `remediation.allowOverlap`.
    pub allow_overlap: bool,
}

fn probe_kind(chain: Chain) -> ProbeKind {
    match chain {
        Chain::Substrate => ProbeKind::Substrate,
        Chain::Ethereum => ProbeKind::Ethereum,
        Chain::Cosmos => ProbeKind::Cosmos,
        Chain::Http => ProbeKind::Http,
        Chain::Tcp => ProbeKind::Tcp,
    }
}

impl Config {
    /// The config of a validator under a validated policy, or why this validator cannot be
    /// probed (a sentence naming the field).
    pub fn new(mv: &MonitoredValidator, policy: &Policy) -> Result<Config, String> {
        let e = &mv.spec.endpoints;
        let url = |field: &str, u: &Option<crate::api::HttpUrl>| {
            u.as_ref()
                .map(|u| parse_url(u.as_str()).map_err(|e| format!("{field}: {e}")))
                .transpose()
        };
        let http = mv.spec.http.clone().unwrap_or_default();
        let mut expect_json = Vec::new();
        for f in &http.json_fields {
            let v = serde_json::from_str(&f.equals)
                .map_err(|e| format!("http.jsonFields {:?}: equals is not JSON: {e}", f.path))?;
            expect_json.push((f.path.clone(), v));
        }
        let target = ProbeTarget {
            kind: probe_kind(mv.spec.chain),
            rpc: url("endpoints.rpc", &e.rpc)?,
            metrics: url("endpoints.metrics", &e.metrics)?,
            health: url("endpoints.health", &e.health)?,
            tcp: e.tcp.clone(),
            expect_status: http.expected_status,
            expect_json,
            metrics_prefix: mv.spec.metrics_prefix.clone(),
        };
        target.validate().map_err(|e| e.to_string())?;
        let heal_target = mv.spec.target.as_ref().map(Target::from_spec).transpose()?;
        let duty = match &mv.spec.duty {
            None => None,
            Some(d) => Some(Duty {
                consensus: d
                    .consensus_address
                    .as_deref()
                    .map(crate::duty::address::consensus_hex)
                    .transpose()
                    .map_err(|e| format!("duty.consensusAddress: {e}"))?,
                consensus_given: d.consensus_address.clone(),
                operator: d.operator_address.clone(),
                api: url("endpoints.api", &e.api)?
                    .map(|u| u.as_str().trim_end_matches('/').to_string()),
                beacon: match (url("endpoints.beacon", &e.beacon)?, &d.beacon_validator) {
                    (Some(u), Some(id)) => {
                        Some((u.as_str().trim_end_matches('/').to_string(), id.clone()))
                    }
                    _ => None,
                },
                rpc: url("duty.rpc", &d.rpc)?
                    .or(target.rpc.clone())
                    .map(|u| u.as_str().trim_end_matches('/').to_string()),
                thresholds: policy.duty.clone(),
            }),
        };
        Ok(Config {
            chain: mv.spec.chain,
            target,
            options: policy.probe.options,
            limits: policy.limits.clone(),
            interval: policy.probe.interval,
            policy: mv.spec.policy_ref.name.clone(),
            generation: mv.meta().generation,
            heal: Heal {
                rules: policy.remediation.rules.clone(),
                target: heal_target,
                suspended: mv.spec.suspend,
                ssh_command: policy.remediation.ssh_command.clone(),
                allow_overlap: policy.remediation.allow_overlap,
            },
            duty,
        })
    }

    /// The config of a validator that is not probed (its policy is missing or invalid):
    /// it only carries the generation its status is written for.
    pub fn blocked(generation: Option<i64>) -> Config {
        Config {
            chain: Chain::Tcp,
            target: ProbeTarget::new(ProbeKind::Tcp),
            options: ProbeOptions::default(),
            limits: Limits {
                min_peers: 0,
                max_block_stall: Duration::from_secs(60),
                max_finality_lag: 0,
                max_blocks_behind: 0,
                max_probe_latency: None,
                failure_threshold: 1,
                success_threshold: 1,
            },
            interval: Duration::from_secs(3600),
            policy: String::new(),
            generation,
            heal: Heal::default(),
            duty: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MonitorPolicySpec;

    fn validator(yaml: &str) -> MonitoredValidator {
        let spec = serde_yaml::from_str(yaml).unwrap();
        MonitoredValidator::new("v", spec)
    }

    #[test]
    fn endpoints_are_parsed_once_into_the_target() {
        let policy = crate::policy::validate(&MonitorPolicySpec::default()).unwrap();
        let mv = validator(
            "{chain: substrate, endpoints: {rpc: 'http://127.0.0.1:9944', metrics: 'http://127.0.0.1:9615/metrics'}, policyRef: {name: p}}",
        );
        let c = Config::new(&mv, &policy).unwrap();
        assert_eq!(c.target.rpc.as_ref().unwrap().port(), Some(9944));
        assert_eq!(c.target.metrics.as_ref().unwrap().path(), "/metrics");
        assert_eq!(c.interval, Duration::from_secs(30));
        let bad = validator(
            "{chain: substrate, endpoints: {rpc: 'ws://127.0.0.1:9944'}, policyRef: {name: p}}",
        );
        let why = Config::new(&bad, &policy).unwrap_err();
        assert!(why.starts_with("endpoints.rpc:"), "{why}");
        let bad_json = validator(
            "{chain: http, endpoints: {health: 'http://h/x'}, http: {jsonFields: [{path: a, equals: 'not json'}]}, policyRef: {name: p}}",
        );
        assert!(
            Config::new(&bad_json, &policy)
                .unwrap_err()
                .contains("equals is not JSON")
        );
        let slow_hook = validator(
            "{chain: tcp, endpoints: {tcp: 'h:1'}, target: {webhook: {url: 'http://h/r', timeout: 2h}}, policyRef: {name: p}}",
        );
        assert!(
            Config::new(&slow_hook, &policy)
                .unwrap_err()
                .contains("at most 1h")
        );
    }
}
