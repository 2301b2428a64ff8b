//! `MonitoredValidator`: one node to watch, and how to act on it.

use super::{AdvisorProvider, Condition, HttpUrl, PolicyRef, SecretKeyRef, Severity, Timeout};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One blockchain node (or plain service) that Vigil probes, judges and, if allowed, heals.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "vigil.dev",
    version = "v1alpha1",
    kind = "MonitoredValidator",
    plural = "monitoredvalidators",
    shortname = "mv",
    category = "vigil",
    namespaced,
    status = "MonitoredValidatorStatus",
    printcolumn(name = "Chain", type_ = "string", json_path = ".spec.chain"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Best", type_ = "integer", json_path = ".status.facts.bestBlock"),
    printcolumn(name = "Peers", type_ = "integer", json_path = ".status.facts.peers"),
    printcolumn(name = "Restarts", type_ = "integer", json_path = ".status.remediation.totalActions"),
    printcolumn(name = "Advice", type_ = "string", json_path = ".status.advice.action", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.spec.chain != 'tcp' || has(self.spec.endpoints.tcp)").message("chain 'tcp' needs spec.endpoints.tcp (host:port)"),
    validation = Rule::new("!(self.spec.chain in ['substrate', 'ethereum', 'cosmos']) || has(self.spec.endpoints.rpc)").message("chains substrate, ethereum and cosmos need spec.endpoints.rpc"),
    validation = Rule::new("self.spec.chain != 'http' || has(self.spec.endpoints.health) || has(self.spec.endpoints.rpc)").message("chain 'http' needs spec.endpoints.health (or rpc)")
)]
#[serde(rename_all = "camelCase")]
pub struct MonitoredValidatorSpec {
    /// How to probe the node: `substrate` (JSON-RPC + Prometheus), `ethereum` (JSON-RPC),
    /// `cosmos` (CometBFT RPC), `http` (status code, optional JSON expectations) or `tcp` (connect).
    pub chain: Chain,
    /// Where the node answers.
    pub endpoints: Endpoints,
    /// What an `http` probe expects of the response (ignored for other chains).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpExpectations>,
    /// Prefix of the node's Prometheus metric names when a fork renames them
    /// (e.g. `polkadot` for `polkadot_block_height`). Empty: the standard names, matched by suffix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub metrics_prefix: Option<String>,
    /// How to act on the node when it must be restarted. Without a target Vigil only watches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// The MonitorPolicy (same namespace) that says how this node is judged and handled.
    pub policy_ref: PolicyRef,
    /// Stop acting on this node (restarts, webhooks, advice); it is still probed and reported.
    #[serde(default)]
    pub suspend: bool,
    /// The validator this node runs, as its chain knows it: its duty (signing, authoring
    /// blocks, staying in the active set) is tracked as the `Signing` condition. Unset: only
    /// the node's health is watched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duty: Option<DutySpec>,
}

/// Who the validator is on its chain, and where its duty is read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.consensusAddress) || has(self.account) || has(self.beaconValidator)",
        "message": "duty needs the validator's identity: consensusAddress (cosmos), account (substrate) or beaconValidator (ethereum)"
    }
]))]
pub struct DutySpec {
    /// Cosmos: the validator's consensus address, hex (as in CometBFT's commits) or bech32
    /// (`...valcons1...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[0-9A-Za-z]+$"))]
    pub consensus_address: Option<String>,
    /// Cosmos: the operator address (`...valoper1...`), to read jailed / bonded from the
    /// Cosmos SDK REST API (`endpoints.api`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[0-9a-z]+$"))]
    pub operator_address: Option<String>,
    /// Substrate: the validator's stash or authority account (SS58).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[0-9A-Za-z]+$"))]
    pub account: Option<String>,
    /// Ethereum: the beacon validator index or its 0x public key (with `endpoints.beacon`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 98),
        regex(pattern = r"^([0-9]+|0x[0-9a-fA-F]{96})$")
    )]
    pub beacon_validator: Option<String>,
    /// Where duty is read (blocks and their signatures): default the node's own RPC. Point
    /// it at a sentry or another node: a dead validator cannot report its own misses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc: Option<HttpUrl>,
}

/// How a node is probed.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Chain {
    /// Substrate / Polkadot SDK node: JSON-RPC (`system_health`, `system_syncState`, ...) and metrics.
    Substrate,
    /// Ethereum execution client: `eth_blockNumber`, `eth_syncing`, `net_peerCount`.
    Ethereum,
    /// Cosmos / CometBFT node: `/status` and `/net_info`.
    Cosmos,
    /// Any HTTP service: status code and latency, optional JSON field expectations.
    Http,
    /// Any TCP service: the port accepts a connection.
    Tcp,
}

impl Chain {
    /// The lowercase name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Chain::Substrate => "substrate",
            Chain::Ethereum => "ethereum",
            Chain::Cosmos => "cosmos",
            Chain::Http => "http",
            Chain::Tcp => "tcp",
        }
    }
}

/// Where a node answers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    /// JSON-RPC URL (Substrate `:9944`, Ethereum `:8545`) or CometBFT RPC URL (`:26657`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc: Option<HttpUrl>,
    /// Prometheus text endpoint (Substrate `:9615/metrics`, CometBFT `:26660/metrics`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<HttpUrl>,
    /// Plain HTTP health URL (e.g. Substrate `/health/readiness`); 2xx means healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HttpUrl>,
    /// `host:port` for the `tcp` chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 261),
        regex(pattern = r"^[^\s:/]+:[0-9]{1,5}$|^\[[0-9a-fA-F:.]+\]:[0-9]{1,5}$")
    )]
    pub tcp: Option<String>,
    /// Cosmos SDK REST API (`:1317`): jailed, tombstoned and bonded status of the validator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<HttpUrl>,
    /// Ethereum beacon node REST API (`:5052`): the validator's status and liveness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beacon: Option<HttpUrl>,
}

/// What an `http` probe expects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpExpectations {
    /// Status codes that count as healthy; empty means any 2xx.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub expected_status: Vec<u16>,
    /// JSON fields the body must contain, each a dotted path with the expected value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub json_fields: Vec<JsonFieldExpectation>,
}

/// One JSON field expectation of an `http` probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JsonFieldExpectation {
    /// Dotted path into the JSON body, e.g. `result.sync_info.catching_up`.
    #[schemars(length(min = 1, max = 256))]
    pub path: String,
    /// The value the field must equal, written as JSON (`false`, `"ok"`, `3`).
    #[schemars(length(max = 1024))]
    pub equals: String,
}

/// How to act on a node: exactly one of `workload`, `ssh` or `webhook`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "[has(self.workload), has(self.ssh), has(self.webhook)].filter(x, x).size() == 1",
    "message": "target must set exactly one of workload, ssh or webhook"
}]))]
pub struct Target {
    /// A Pod, StatefulSet, Deployment or DaemonSet in the validator's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadTarget>,
    /// A remote machine reached over SSH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshTarget>,
    /// An HTTP endpoint that performs the restart (a cloud API, a runbook runner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookTarget>,
}

/// A workload in the cluster, by name or by pod selector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.name) != has(self.selector)",
    "message": "workload target needs exactly one of name or selector"
}]))]
pub struct WorkloadTarget {
    /// Kind of the workload: `Pod`, `StatefulSet`, `Deployment` or `DaemonSet`.
    pub kind: WorkloadKind,
    /// Name of the workload (same namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub name: Option<String>,
    /// Selects the node's pod(s) by label instead of by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// Kinds of workload a validator can run as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum WorkloadKind {
    /// A bare Pod.
    Pod,
    /// An apps/v1 StatefulSet.
    StatefulSet,
    /// An apps/v1 Deployment.
    Deployment,
    /// An apps/v1 DaemonSet.
    DaemonSet,
}

/// A remote machine reached over SSH. The host key is pinned: no trust on first use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.hostKey.matches('^(ssh-ed25519|ssh-rsa|rsa-sha2-256|rsa-sha2-512|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521) [A-Za-z0-9+/]+={0,3}( .*)?$')",
    "message": "ssh target needs hostKey: the server's pinned public host key, e.g. 'ssh-ed25519 AAAAC3Nz...' (from ssh-keyscan); trust on first use is not supported"
}]))]
pub struct SshTarget {
    /// Host name or IP address of the machine.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// SSH port.
    #[serde(default = "default_ssh_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// Login user.
    #[schemars(length(min = 1, max = 64))]
    pub user: String,
    /// Secret key holding the OpenSSH private key used to log in.
    pub private_key_secret_ref: SecretKeyRef,
    /// The server's public host key as one `known_hosts`-style line without the host name,
    /// e.g. `ssh-ed25519 AAAAC3Nz...`. A different key makes Vigil refuse to connect.
    #[serde(default)]
    #[schemars(length(max = 16384))]
    pub host_key: String,
    /// How long to wait for the connection and handshake (more than 0s, at most 1h).
    #[serde(default = "default_ssh_connect_timeout")]
    pub connect_timeout: Timeout,
}

fn default_ssh_port() -> u16 {
    22
}
fn default_ssh_connect_timeout() -> Timeout {
    Timeout::new("10s")
}

/// An HTTP endpoint that performs the restart when POSTed to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookTarget {
    /// URL that receives a JSON POST describing the target and the reason.
    pub url: HttpUrl,
    /// Secret key whose value signs the body (HMAC-SHA256, header `X-Vigil-Signature`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret_ref: Option<SecretKeyRef>,
    /// How long to wait for the answer (more than 0s, at most 1h); a 2xx answer in time
    /// means done.
    #[serde(default = "default_webhook_timeout")]
    pub timeout: Timeout,
}

fn default_webhook_timeout() -> Timeout {
    Timeout::new("10s")
}

/// What Vigil observed of the node, and what it did about it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitoredValidatorStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (summary), `Reachable`, `Synced`, `BlockProduction`, `Finalizing`,
    /// `PeersHealthy`, `Remediating`, `Escalated`.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Chain facts as of the last status write: refreshed with every change of a condition,
    /// and every `--facts-refresh` of the operator otherwise (block heights alone do not
    /// cause writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<ChainFacts>,
    /// The last probe: when, how long, and what went wrong if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe: Option<ProbeRecord>,
    /// Probes in a row that judged the node unhealthy or could not reach it, as of the last
    /// status write (counts alone do not cause writes).
    #[serde(default)]
    pub consecutive_failures: u32,
    /// Probes in a row that judged the node healthy, as of the last status write.
    #[serde(default)]
    pub consecutive_successes: u32,
    /// Remediation bookkeeping; it lives here so that a restart or a new leader never acts twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation: Option<RemediationStatus>,
    /// The last diagnosis from the advisor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advice: Option<AdviceRecord>,
    /// Earlier diagnoses, newest last: the latest of each question (at most 8, without
    /// reasoning and evidence), with their outcomes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub advice_history: Vec<AdviceRecord>,
    /// Alerts sent for this node and whether they are still firing (for repeat and resolve).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<AlertRecord>,
    /// The validator's duty as last written (with `spec.duty`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duty: Option<DutyFacts>,
}

/// What the chain says of the validator's duty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DutyFacts {
    /// Last height (block, or epoch for a beacon validator) the validator signed or attested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_signed_height: Option<u64>,
    /// Blocks (or epochs) missed in a row up to the latest one read.
    #[serde(default)]
    pub missed_in_a_row: u64,
    /// Missed within the window.
    #[serde(default)]
    pub missed_in_window: u64,
    /// Blocks (or epochs) in the window read so far.
    #[serde(default)]
    pub window: u64,
    /// Missed while more than 2/3 of the voting power signed (this validator's own fault).
    #[serde(default)]
    pub solo_missed_in_window: u64,
    /// In the active validator set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// Jailed (Cosmos).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jailed: Option<bool>,
    /// Tombstoned (Cosmos; permanent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tombstoned: Option<bool>,
    /// Slashed (Ethereum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slashed: Option<bool>,
    /// Voting power (Cosmos) or effective balance in gwei (Ethereum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voting_power: Option<u64>,
    /// Blocks authored so far as the node counts them (Substrate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks_authored: Option<u64>,
    /// When the validator last authored a block (Substrate) or signed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_authored_time: Option<Time>,
    /// The chain's own word for the validator's state (e.g. `active_ongoing`,
    /// `BOND_STATUS_BONDED`), at most 64 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub state: Option<String>,
}

/// Chain facts read from the node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChainFacts {
    /// Best (head) block height.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_block: Option<u64>,
    /// Finalized block height.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalized_block: Option<u64>,
    /// Highest block the node knows of on the network (sync target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_block: Option<u64>,
    /// Connected peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<u32>,
    /// Whether the node reports that it is syncing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syncing: Option<bool>,
    /// Node software version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Chain or network name reported by the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// When the best block last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_best_block_change: Option<Time>,
}

/// One probe's outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeRecord {
    /// When the probe ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    /// How long the probe took, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Why the probe failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Remediation bookkeeping of one validator.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemediationStatus {
    /// Attempts made in the current window.
    #[serde(default)]
    pub attempts_in_window: u32,
    /// When the current attempt window started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start: Option<Time>,
    /// Remediations performed over the object's lifetime.
    #[serde(default)]
    pub total_actions: u32,
    /// Attempts in a row that did not heal the node (failed, or still unhealthy when their
    /// cooldown ended); `escalateAfter` of them escalate.
    #[serde(default)]
    pub failed_attempts: u32,
    /// The last action taken (`evictPod`, `rolloutRestart`, `ssh:<command>`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_action: Option<String>,
    /// When the last action was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_action_time: Option<Time>,
    /// No new attempt before this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_until: Option<Time>,
    /// An action that was decided and recorded but whose result is not yet known. Its token
    /// makes the action idempotent across crashes and leader changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<RemediationRecord>,
    /// The last `vigil.dev/restart` annotation token that was honoured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_restart_token: Option<String>,
    /// The last `vigil.dev/ack` annotation token that was honoured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ack_token: Option<String>,
    /// The last applied advice (its fingerprint and time) that healing has handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_advice_token: Option<String>,
    /// The most recent actions, newest last (bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub history: Vec<RemediationRecord>,
}

/// One remediation action.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemediationRecord {
    /// Unique token of this action (also sent to webhooks and set on restarted templates).
    pub token: String,
    /// The action (`evictPod`, `deletePod`, `rolloutRestart`, `ssh:<command>`, `webhook`).
    pub action: String,
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    /// `InFlight` (decided and recorded, result not known yet), `Succeeded`, `Failed`,
    /// `Blocked` (refused by a PodDisruptionBudget; retried, not counted), `DryRun`, or
    /// `Interrupted` (Vigil stopped while it ran; never repeated).
    #[serde(default)]
    pub result: RemediationResult,
    /// What happened, for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Who asked: `policy` or `manual`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub trigger: String,
    /// Whether the node was healthy again afterwards; unset until that is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
}

/// How a remediation action ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RemediationResult {
    /// Decided and recorded; the result is not known yet.
    #[default]
    InFlight,
    /// Done (the API accepted it, the command exited 0, the webhook answered 2xx).
    Succeeded,
    /// It failed; counts as a failed attempt.
    Failed,
    /// Refused by a PodDisruptionBudget; retried, not counted as an attempt.
    Blocked,
    /// Dry-run: decided and recorded, nothing done.
    DryRun,
    /// Vigil stopped while it ran; never repeated.
    Interrupted,
}

impl RemediationResult {
    /// The API spelling (also a metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            RemediationResult::InFlight => "InFlight",
            RemediationResult::Succeeded => "Succeeded",
            RemediationResult::Failed => "Failed",
            RemediationResult::Blocked => "Blocked",
            RemediationResult::DryRun => "DryRun",
            RemediationResult::Interrupted => "Interrupted",
        }
    }
}

/// One diagnosis from the advisor.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdviceRecord {
    /// When the advice was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    /// Fingerprint of the question it answered (same fingerprint within `dedupTtl`: no new
    /// call).
    #[serde(default)]
    pub fingerprint: String,
    /// The advisor that answered: `rules`, `anthropic` or `openai`.
    #[serde(default)]
    pub provider: AdvisorProvider,
    /// Model that answered.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    /// How this advice came about.
    #[serde(default)]
    pub source: AdviceSource,
    /// Why the rules answered rather than the model (mode, budget, provider failing, answer
    /// refused), or what the advice was reused from.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// Recommended action: `restart`, `alert`, `investigate`, `escalate`, `wait` or `none`.
    #[serde(default)]
    pub action: String,
    /// Confidence between 0 and 1.
    #[serde(default)]
    pub confidence: f64,
    /// One-paragraph diagnosis.
    #[serde(default)]
    pub summary: String,
    /// Why.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reasoning: String,
    /// What the diagnosis rests on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub evidence: Vec<String>,
    /// Input tokens spent (cache reads and writes included).
    #[serde(default)]
    pub input_tokens: u64,
    /// Output tokens spent.
    #[serde(default)]
    pub output_tokens: u64,
    /// What the call cost, in US dollars.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cost: String,
    /// Whether Vigil acted on it (`autoApply`).
    #[serde(default)]
    pub applied: bool,
    /// Why it was or was not acted on.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub applied_note: String,
    /// Whether the node recovered afterwards: `Pending` (not known yet), `Recovered` or
    /// `NotRecovered`.
    #[serde(default)]
    pub outcome: AdviceOutcome,
    /// When the outcome was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome_time: Option<Time>,
}

/// How a piece of advice came about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AdviceSource {
    /// The built-in rules decided.
    #[default]
    Rules,
    /// A model answered this question.
    Model,
    /// Earlier advice with the same fingerprint answered it (no call).
    Reused,
    /// One call answered several validators with the same symptoms.
    Batch,
    /// The fleet incident's one call answered it.
    Fleet,
}

/// Whether a node recovered after advice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AdviceOutcome {
    /// Not known yet.
    #[default]
    Pending,
    /// The node was healthy again afterwards.
    Recovered,
    /// The node stayed unhealthy.
    NotRecovered,
}

/// State of one alert of this object, so that repeats and resolves survive restarts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertRecord {
    /// Stable identity of the alert: a hash of its labels.
    pub fingerprint: String,
    /// The alert.
    pub name: super::AlertName,
    /// What inside the object it is about, when there can be several (a step's name).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subject: String,
    /// How urgent it is: `info`, `warning` or `critical`.
    #[serde(default)]
    pub severity: Severity,
    /// What was seen (at most 256 bytes).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// For an event read from status, which one it tells (an action's token, an archive's
    /// time): each is told once, and a newer one starts a new record.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event: String,
    /// When the problem started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firing_since: Option<Time>,
    /// When the problem stopped; it resolves once it stayed clear for the flap damping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleared_at: Option<Time>,
    /// When it was resolved (and the resolve sent, where `sendResolved` asks for it). A
    /// resolved record is kept a while for people to read, then dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Time>,
    /// When each channel was last notified (recorded before sending, so that a restart
    /// never sends again inside the repeat interval).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sent: Vec<ChannelSent>,
}

/// When one channel was last notified of an alert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelSent {
    /// Channel name.
    pub channel: String,
    /// When Vigil decided to tell it (with the fingerprint and the state, the key a
    /// receiver can deduplicate on: `toldAt` in the webhook body).
    pub at: Time,
    /// Decided and recorded but not yet handed over: the channel has not confirmed it (or
    /// given up after its retries). A process that finds it so after a restart sends it
    /// again, so a crash never loses a notification (at least once).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
}
