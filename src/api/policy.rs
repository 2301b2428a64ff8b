//! `MonitorPolicy`: how a set of validators (and pipeline runs) is judged and handled.

use super::{
    Condition, Dur, HttpUrl, SecretKeyRef, Timeout, cel_duration_is, cel_readable, cel_rule,
    push_rules,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How validators are probed and judged, how they are healed, who is told, and what the
/// advisor may spend. Validators and pipeline runs point at a policy with `policyRef`.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "vigil.dev",
    version = "v1alpha1",
    kind = "MonitorPolicy",
    plural = "monitorpolicies",
    shortname = "mpol",
    category = "vigil",
    namespaced,
    status = "MonitorPolicyStatus",
    printcolumn(
        name = "Validators",
        type_ = "integer",
        json_path = ".status.validators"
    ),
    printcolumn(name = "Healthy", type_ = "integer", json_path = ".status.healthy"),
    printcolumn(name = "Suspended", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MonitorPolicySpec {
    /// How often and how patiently validators are probed.
    #[serde(default)]
    pub probe: ProbeSpec,
    /// What counts as healthy.
    #[serde(default)]
    pub health: HealthSpec,
    /// Whether and how unhealthy validators are restarted, and the guards around it.
    #[serde(default)]
    pub remediation: RemediationSpec,
    /// The LLM (or rule-based) advisor asked for a diagnosis, within hard budgets.
    #[serde(default)]
    pub advisor: AdvisorSpec,
    /// Where notifications go and which events are sent.
    #[serde(default)]
    pub alerts: AlertsSpec,
    /// How validator duty (signing, authoring, staying in the active set) is judged, for
    /// validators with `spec.duty`.
    #[serde(default)]
    pub duty: DutySpecPolicy,
    /// Kill switch: while true Vigil keeps probing but takes no action, sends no alerts and
    /// asks no advisor for anything governed by this policy.
    #[serde(default)]
    pub suspend: bool,
}

/// How validator duty is judged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.missedInARow.all(i, i > 0) && (size(self.missedInARow) < 2 || self.missedInARow.all(i, self.missedInARow.filter(j, j == i).size() == 1))",
        "message": "duty.missedInARow tiers must be above 0 and distinct"
    },
    {
        "rule": "self.maxMissedPercent <= 100",
        "message": "duty.maxMissedPercent is a percentage: at most 100"
    }
]))]
pub struct DutySpecPolicy {
    /// Missed blocks in a row at which `Signing` turns False, one tier each: the last tier is
    /// critical, the others warnings (e.g. `[5, 25, 100]`).
    #[serde(default = "tiers")]
    #[schemars(length(min = 1, max = 8))]
    pub missed_in_a_row: Vec<u32>,
    /// Blocks in the sliding window for the missed share.
    #[serde(default = "hundred")]
    #[schemars(range(min = 10, max = 10000))]
    pub window: u64,
    /// Largest share of the window, in percent, that may be missed (a warning above it).
    #[serde(default = "five")]
    pub max_missed_percent: u32,
    /// Substrate: `Signing` turns False when no block was authored for this many expected
    /// authoring intervals (block time × validators in the set).
    #[serde(default = "three")]
    #[schemars(range(min = 1, max = 1000))]
    pub authored_within_intervals: u32,
    /// Fold `Signing` into `Ready`: a validator that does not sign is then not Ready (and
    /// counts as unhealthy for storms and alerts of `Ready`). Off: duty alerts only.
    #[serde(default)]
    pub affects_ready: bool,
    /// Restart a node whose health is fine but which does not sign. Off by default:
    /// restarting a jailed validator or one out of the active set fixes nothing, and
    /// restarting one behind a remote signer can double-sign.
    #[serde(default)]
    pub restart_when_not_signing: bool,
}

impl Default for DutySpecPolicy {
    fn default() -> Self {
        DutySpecPolicy {
            missed_in_a_row: tiers(),
            window: hundred(),
            max_missed_percent: five(),
            authored_within_intervals: three(),
            affects_ready: false,
            restart_when_not_signing: false,
        }
    }
}

fn tiers() -> Vec<u32> {
    vec![5, 25, 100]
}
/// How validators are probed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = probe_rules)]
pub struct ProbeSpec {
    /// Time between two probes of the same validator (at least 1s).
    #[serde(default = "d30s")]
    pub interval: Dur,
    /// How long one probe may take: more than 0s, at most 1h, and shorter than the interval.
    #[serde(default = "d5s")]
    pub timeout: Timeout,
    /// Consecutive bad probes before a validator is reported unhealthy.
    #[serde(default = "three")]
    #[schemars(range(min = 1, max = 1000))]
    pub failure_threshold: u32,
    /// Consecutive good probes before an unhealthy validator is reported healthy again.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 1000))]
    pub success_threshold: u32,
    /// Largest response body read from a node, in bytes (1 KiB to 4 MiB); longer bodies fail
    /// the probe. Every body in flight shares the operator's probe memory budget, so one
    /// node cannot hold much of it.
    #[serde(default = "one_mib")]
    #[schemars(range(min = 1024, max = 4194304))]
    pub max_response_bytes: u64,
}

/// The cross-field rules of `probe`. Each guards `duration()` with [`cel_readable`]: a value
/// it cannot read is reported by the field's own rules, not as an evaluation error here.
fn probe_rules(schema: &mut Schema) {
    push_rules(
        schema,
        [
            cel_rule(
                cel_duration_is("self.interval", ">= duration('1s')"),
                "probe.interval must be at least 1s",
            ),
            cel_rule(
                format!(
                    "!({}) || !({}) || duration(self.timeout) < duration(self.interval)",
                    cel_readable("self.interval"),
                    cel_readable("self.timeout")
                ),
                "probe.timeout must be shorter than probe.interval",
            ),
        ],
    );
}

impl Default for ProbeSpec {
    fn default() -> Self {
        ProbeSpec {
            interval: d30s(),
            timeout: d5s(),
            failure_threshold: three(),
            success_threshold: one(),
            max_response_bytes: one_mib(),
        }
    }
}

/// What counts as healthy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = health_rules)]
pub struct HealthSpec {
    /// Fewest connected peers that count as healthy.
    #[serde(default = "one")]
    pub min_peers: u32,
    /// Longest time the best block may stand still before `BlockProduction` turns false.
    #[serde(default = "d3m")]
    pub max_block_stall: Dur,
    /// Largest distance, in blocks, between best and finalized before `Finalizing` turns false.
    #[serde(default = "hundred")]
    pub max_finality_lag: u64,
    /// Largest distance, in blocks, behind the reference height of this policy's validators
    /// of the same chain (the fleet) before `Synced` turns false. The reference is the lower
    /// median of the top third of fresh heights, so one node reporting a wild height cannot
    /// put the others behind (in fleets of four or more).
    #[serde(default = "fifty")]
    pub max_blocks_behind: u64,
    /// Slowest acceptable probe (more than 0s); slower probes count as failures. Unset: only
    /// the timeout counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_probe_latency: Option<Dur>,
}

fn health_rules(schema: &mut Schema) {
    push_rules(
        schema,
        [cel_rule(
            format!(
                "!has(self.maxProbeLatency) || {}",
                cel_duration_is("self.maxProbeLatency", "> duration('0s')")
            ),
            "health.maxProbeLatency must be longer than 0s; leave it unset to judge probes by probe.timeout alone",
        )],
    );
}

impl Default for HealthSpec {
    fn default() -> Self {
        HealthSpec {
            min_peers: one(),
            max_block_stall: d3m(),
            max_finality_lag: hundred(),
            max_blocks_behind: fifty(),
            max_probe_latency: None,
        }
    }
}

/// Whether and how unhealthy validators are restarted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.action != 'ssh' || (has(self.sshCommand) && self.sshCommand in self.sshCommands)",
        "message": "remediation.action 'ssh' needs sshCommand naming an entry of sshCommands"
    }
]))]
#[schemars(transform = remediation_rules)]
pub struct RemediationSpec {
    /// Master switch for automatic remediation under this policy.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// What a restart means: `evictPod`, `deletePod`, `rolloutRestart`, `ssh`, `webhook` or `none`.
    #[serde(default)]
    pub action: RemediationAction,
    /// Allowed SSH commands: a name mapped to an argv list (never a shell string).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub ssh_commands: BTreeMap<String, SshCommand>,
    /// Name of the `sshCommands` entry run by the `ssh` action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub ssh_command: Option<String>,
    /// Most attempts per window before Vigil escalates instead (at least 1).
    #[serde(default = "three")]
    pub max_attempts: u32,
    /// The window `maxAttempts` counts over. It and `cooldown` cannot both be 0.
    #[serde(default = "d1h")]
    pub window: Dur,
    /// Wait after an attempt before the next one; doubles with each further attempt.
    #[serde(default = "d60s")]
    pub cooldown: Dur,
    /// Upper bound of the growing cooldown.
    #[serde(default = "d30m")]
    pub max_cooldown: Dur,
    /// Healthy time after which the attempt count is reset.
    #[serde(default = "d10m")]
    pub healthy_reset_after: Dur,
    /// Most remediations in progress at once under this policy (at least 1).
    #[serde(default = "one")]
    pub max_concurrent: u32,
    /// Storm guard: when more than this share of the fleet is unhealthy, restart nothing.
    #[serde(default = "fifty_percent")]
    #[schemars(regex(pattern = r"^([0-9]|[1-9][0-9]|100)%$"))]
    pub max_unhealthy: String,
    /// Escalate (and stop acting) after this many consecutive failed remediations (at least 1).
    #[serde(default = "five")]
    pub escalate_after: u32,
    /// Allow actions that can run a second copy of a validator before the first has stopped:
    /// deleting or evicting a pod of a Deployment (ReplicaSet), DaemonSet or other controller,
    /// and a rolloutRestart of a Deployment or DaemonSet that can surge. Off by default,
    /// because two copies signing with one key is double signing (slashing, tombstoning).
    /// Turn it on only when the node cannot double-sign, e.g. behind a remote signer with
    /// slashing protection. StatefulSet pods and bare pods are never at risk.
    #[serde(default)]
    pub allow_overlap: bool,
}

/// The rules of `remediation` beyond the field types: settings that can only be mistakes.
fn remediation_rules(schema: &mut Schema) {
    // Zero would mean "never act" (or, for escalateAfter, "escalate before acting"): a person
    // who wants that has switches that say so.
    let at_least_one = |field: &str| {
        cel_rule(
            format!("self.{field} >= 1"),
            &format!(
                "remediation.{field} must be at least 1; to stop remediation use action: none or suspend: true"
            ),
        )
    };
    push_rules(
        schema,
        [
            cel_rule(
                format!(
                    "({}) || ({})",
                    cel_duration_is("self.cooldown", "> duration('0s')"),
                    cel_duration_is("self.window", "> duration('0s')")
                ),
                "remediation.cooldown and remediation.window cannot both be 0: nothing would limit how often a node is restarted",
            ),
            at_least_one("maxAttempts"),
            at_least_one("maxConcurrent"),
            at_least_one("escalateAfter"),
        ],
    );
}

impl Default for RemediationSpec {
    fn default() -> Self {
        RemediationSpec {
            enabled: yes(),
            action: RemediationAction::default(),
            ssh_commands: BTreeMap::new(),
            ssh_command: None,
            max_attempts: three(),
            window: d1h(),
            cooldown: d60s(),
            max_cooldown: d30m(),
            healthy_reset_after: d10m(),
            max_concurrent: one(),
            max_unhealthy: fifty_percent(),
            escalate_after: five(),
            allow_overlap: false,
        }
    }
}

/// One allowed SSH command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SshCommand {
    /// The program and its arguments, each quoted separately before it reaches the remote
    /// shell. In an element, `{validator}`, `{namespace}`, `{chain}`, `{host}`, `{reason}`
    /// (why the node is unhealthy), `{token}` (the attempt's unique token) and `{request}` (the
    /// `vigil.dev/restart` value of a manual restart, else empty) are replaced; the element
    /// stays one quoted argument, so no value reaches the shell unquoted.
    #[schemars(length(min = 1, max = 64))]
    pub argv: Vec<String>,
    /// How long the command may run (more than 0s, at most 1h).
    #[serde(default = "d60s_timeout")]
    pub timeout: Timeout,
}

/// What a restart means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RemediationAction {
    /// Evict the pod through the Eviction API (respects PodDisruptionBudgets).
    EvictPod,
    /// Delete the pod.
    DeletePod,
    /// Restart the owning StatefulSet, Deployment or DaemonSet.
    RolloutRestart,
    /// Run an allow-listed command on the remote machine.
    Ssh,
    /// POST to the validator's webhook target.
    Webhook,
    /// Never act; only report.
    #[default]
    None,
}

/// The advisor asked for a diagnosis when something goes wrong.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.provider == 'rules' || has(self.apiKeySecretRef)",
        "message": "advisor providers anthropic and openai need apiKeySecretRef"
    },
    {
        "rule": "self.provider == 'rules' || has(self.model)",
        "message": "advisor providers anthropic and openai need a model"
    }
]))]
pub struct AdvisorSpec {
    /// `rules` (built-in, free), `anthropic` (Messages API) or `openai` (Chat Completions or compatible).
    #[serde(default)]
    pub provider: AdvisorProvider,
    /// Model name, e.g. `claude-sonnet-4-5` or `gpt-4o-mini`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub model: Option<String>,
    /// API base URL; unset means the provider's public endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<HttpUrl>,
    /// Secret key holding the API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeyRef>,
    /// When to ask: `onIssue`, `onEscalation` or `everyProbe`.
    #[serde(default)]
    pub mode: AdvisorMode,
    /// Role instructions added to the prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8192))]
    pub instructions: Option<String>,
    /// Hard spending limits; when one is reached the advisor is not called.
    #[serde(default)]
    pub budget: AdvisorBudget,
    /// Decisions the advisor may give (`restart`, `alert`, `investigate`, `escalate`,
    /// `wait`, `none`); an answer with any other is refused and the rules decide. Empty:
    /// every decision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 6))]
    pub allowed_actions: Vec<AdviceAction>,
    /// Lowest confidence (0 to 1) at which advice is acted on.
    #[serde(default = "seventy_percent")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_confidence: f64,
    /// Apply the recommended action automatically (within the remediation guards).
    #[serde(default)]
    pub auto_apply: bool,
    /// Remove addresses, keys and host names from what is sent to the provider.
    #[serde(default = "yes")]
    pub redact: bool,
    /// How long advice answers the same question (same fingerprint: target, failing
    /// conditions and reasons, severity, provider, model, prompt version) without a new call.
    #[serde(default = "dedup_ttl")]
    pub dedup_ttl: Dur,
    /// Longest one call to the provider may take; past it the rules decide.
    #[serde(default = "advisor_timeout")]
    pub timeout: Timeout,
    /// How long after advice its outcome (did the node recover?) is recorded.
    #[serde(default = "outcome_after")]
    pub outcome_after: Dur,
    /// Extra HTTP headers sent to the provider (e.g. an `OpenAI-Organization` or a gateway's
    /// routing header). Not for secrets: the key comes from `apiKeySecretRef`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub headers: Vec<HttpHeader>,
    /// Ask OpenAI-compatible servers for a JSON object answer (`response_format`); turn off
    /// for servers that reject it.
    #[serde(default = "yes")]
    pub json_mode: bool,
    /// Accept only the bare JSON object (no Markdown code fence around it).
    #[serde(default = "yes")]
    pub strict: bool,
    /// Add the last lines of the validator's pod log to the prompt, at most this many
    /// bytes (redacted like the rest; workload targets only). 0: no log.
    #[serde(default)]
    #[schemars(range(max = 4096))]
    pub log_tail_bytes: u32,
}

/// One extra HTTP header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpHeader {
    /// Header name.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9-]+$"))]
    pub name: String,
    /// Header value.
    #[schemars(length(max = 1024))]
    pub value: String,
}

impl Default for AdvisorSpec {
    fn default() -> Self {
        AdvisorSpec {
            provider: AdvisorProvider::default(),
            model: None,
            base_url: None,
            api_key_secret_ref: None,
            mode: AdvisorMode::default(),
            instructions: None,
            budget: AdvisorBudget::default(),
            allowed_actions: Vec::new(),
            min_confidence: seventy_percent(),
            auto_apply: false,
            redact: yes(),
            dedup_ttl: dedup_ttl(),
            timeout: advisor_timeout(),
            outcome_after: outcome_after(),
            headers: Vec::new(),
            json_mode: yes(),
            strict: yes(),
            log_tail_bytes: 0,
        }
    }
}

/// A decision of the advisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AdviceAction {
    /// Restart the node (through the remediation guards).
    Restart,
    /// Tell people (through alert routing).
    Alert,
    /// Look closer (the network, the host); nothing to do automatically.
    Investigate,
    /// Stop acting and wait for a person.
    Escalate,
    /// Give it time (syncing, catching up).
    Wait,
    /// Nothing is wrong enough to act.
    None,
}

impl AdviceAction {
    /// Every decision, in the order of the docs.
    pub const ALL: [AdviceAction; 6] = [
        AdviceAction::Restart,
        AdviceAction::Alert,
        AdviceAction::Investigate,
        AdviceAction::Escalate,
        AdviceAction::Wait,
        AdviceAction::None,
    ];

    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AdviceAction::Restart => "restart",
            AdviceAction::Alert => "alert",
            AdviceAction::Investigate => "investigate",
            AdviceAction::Escalate => "escalate",
            AdviceAction::Wait => "wait",
            AdviceAction::None => "none",
        }
    }
}

/// Advisor backends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AdvisorProvider {
    /// Built-in rules; no network, no cost.
    #[default]
    Rules,
    /// Anthropic Messages API.
    Anthropic,
    /// OpenAI Chat Completions API or a compatible server.
    Openai,
}

impl AdvisorProvider {
    /// The API spelling (also a metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            AdvisorProvider::Rules => "rules",
            AdvisorProvider::Anthropic => "anthropic",
            AdvisorProvider::Openai => "openai",
        }
    }
}

/// When the advisor is asked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AdvisorMode {
    /// On each new problem of a validator (once per distinct set of symptoms), when the
    /// first remediation did not fix it, and once per fleet incident.
    #[default]
    OnIssue,
    /// The cheap tier: the rules take the first remediation; the model is asked when that
    /// did not fix the problem, on escalation, and once per fleet incident.
    OnEscalation,
    /// After every unhealthy probe (within budget).
    EveryProbe,
}

/// Hard spending limits of the advisor, per policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdvisorBudget {
    /// Most calls per hour.
    #[serde(default = "ten")]
    pub calls_per_hour: u32,
    /// Most tokens (input + output) per day.
    #[serde(default = "tokens_per_day")]
    pub tokens_per_day: u64,
    /// Most spend per day, in US dollars, e.g. `2.50`.
    #[serde(default = "cost_per_day")]
    #[schemars(regex(pattern = r"^[0-9]{1,9}(\.[0-9]{1,6})?$"))]
    pub cost_per_day: String,
    /// Price of one million input tokens, in US dollars.
    #[serde(default = "zero_price")]
    #[schemars(regex(pattern = r"^[0-9]{1,9}(\.[0-9]{1,6})?$"))]
    pub input_price_per_million: String,
    /// Price of one million output tokens, in US dollars.
    #[serde(default = "zero_price")]
    #[schemars(regex(pattern = r"^[0-9]{1,9}(\.[0-9]{1,6})?$"))]
    pub output_price_per_million: String,
    /// Most output tokens asked for in one call.
    #[serde(default = "max_tokens")]
    #[schemars(range(min = 1, max = 65536))]
    pub max_tokens_per_call: u32,
}

impl Default for AdvisorBudget {
    fn default() -> Self {
        AdvisorBudget {
            calls_per_hour: ten(),
            tokens_per_day: tokens_per_day(),
            cost_per_day: cost_per_day(),
            input_price_per_million: zero_price(),
            output_price_per_million: zero_price(),
            max_tokens_per_call: max_tokens(),
        }
    }
}

/// Where notifications go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.channels.all(c, self.channels.exists_one(d, d.name == c.name))",
        "message": "alert channel names must be unique"
    },
    {
        "rule": "self.rules.all(r, r.channels.all(n, self.channels.exists(c, c.name == n)))",
        "message": "every channel named by an alert rule must be defined in alerts.channels"
    }
]))]
pub struct AlertsSpec {
    /// Notification channels.
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub channels: Vec<AlertChannel>,
    /// Which alerts go to which channels. Empty (with channels set): every alert of
    /// severity `warning` or above goes to every channel, each repeated at its default
    /// interval (see the alert table in the docs).
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub rules: Vec<AlertRule>,
    /// Also notify when a problem ends.
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// How long a new alert waits before its first notification, so that a burst (many
    /// validators failing at once) goes out as one grouped message.
    #[serde(default = "d10s")]
    pub group_wait: Dur,
    /// Flap damping: an alert that clears and fires again within this time neither
    /// resolves nor fires again; its resolve is sent only after it stayed clear this long.
    #[serde(default = "d2m")]
    pub flap_damping: Dur,
}

impl Default for AlertsSpec {
    fn default() -> Self {
        AlertsSpec {
            channels: Vec::new(),
            rules: Vec::new(),
            send_resolved: yes(),
            group_wait: d10s(),
            flap_damping: d2m(),
        }
    }
}

/// One notification channel: exactly one of `alertmanager`, `slack`, `webhook`, `email`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "[has(self.alertmanager), has(self.slack), has(self.webhook), has(self.email)].filter(x, x).size() == 1",
    "message": "an alert channel must set exactly one of alertmanager, slack, webhook or email"
}]))]
pub struct AlertChannel {
    /// Name used by alert rules.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Alertmanager (API v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alertmanager: Option<AlertmanagerChannel>,
    /// Slack incoming webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SlackChannel>,
    /// Generic JSON webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookChannel>,
    /// SMTP email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailChannel>,
    /// Throttle: at most this many notifications per minute go to this channel; the rest
    /// wait in its queue (a notification that would wait past its repeat is dropped, and
    /// counted).
    #[serde(default = "twenty")]
    #[schemars(range(min = 1, max = 600))]
    pub max_per_minute: u32,
}

/// Alertmanager API v2.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerChannel {
    /// Base URLs of Alertmanager, e.g. `http://alertmanager:9093`; every alert goes to each
    /// of them (an HA pair, or a cluster, gets every alert).
    #[schemars(length(min = 1, max = 8))]
    pub urls: Vec<HttpUrl>,
}

/// Slack incoming webhook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlackChannel {
    /// Secret key holding the webhook URL (it is a credential).
    pub webhook_url_secret_ref: SecretKeyRef,
}

/// Generic JSON webhook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookChannel {
    /// URL that receives the JSON notification.
    pub url: HttpUrl,
    /// Secret key whose value signs the body (HMAC-SHA256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret_ref: Option<SecretKeyRef>,
}

/// SMTP email.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmailChannel {
    /// SMTP server host.
    #[schemars(length(min = 1, max = 253))]
    pub smtp_host: String,
    /// SMTP server port.
    #[serde(default = "smtp_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub smtp_port: u16,
    /// Sender address.
    #[schemars(length(min = 3, max = 254))]
    pub from: String,
    /// Recipient addresses.
    #[schemars(length(min = 1, max = 32))]
    pub to: Vec<String>,
    /// Secret with `username` and `password` keys for SMTP auth (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub credentials_secret: Option<String>,
    /// Transport security: `starttls`, `tls` or `none`.
    #[serde(default)]
    pub security: SmtpSecurity,
    /// Secret key holding extra CA certificates (PEM) to trust for the server, besides the
    /// system's (a private CA, or a self-signed server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

/// SMTP transport security.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SmtpSecurity {
    /// Upgrade with STARTTLS.
    #[default]
    Starttls,
    /// Implicit TLS.
    Tls,
    /// Plain text (only for servers on a trusted network).
    None,
}

/// Which alerts go to which channels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertRule {
    /// Alerts this rule matches; empty matches every alert except the opt-in ones
    /// (`Advice`), which a rule must name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub alerts: Vec<AlertName>,
    /// Lowest severity sent: `info`, `warning` or `critical`.
    #[serde(default)]
    pub min_severity: Severity,
    /// Channel names.
    #[schemars(length(min = 1, max = 16))]
    pub channels: Vec<String>,
    /// While a problem lasts, notify again this often; unset: the alert's own default (see
    /// the alert table). Alertmanager channels are refreshed on their own schedule instead
    /// (Alertmanager repeats by its own `repeat_interval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_interval: Option<Dur>,
}

/// The alerts Vigil raises, by their stable name (the Alertmanager `alertname`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum AlertName {
    /// A validator is not Ready for a reason no more specific alert names.
    ValidatorNotReady,
    /// A validator does not answer its probes (`Reachable=False`).
    ValidatorUnreachable,
    /// A validator's best block stopped advancing while its chain moves on.
    BlockProductionStalled,
    /// A validator's finalized block lags its best block.
    FinalityLagging,
    /// A validator has too few peers.
    PeersLow,
    /// A validator is syncing.
    NotSynced,
    /// A validator is behind the highest block of its fleet.
    BehindFleet,
    /// Vigil cannot tell a validator's health: its answers cannot be read. Not "down".
    ProbeFailing,
    /// A validator misses blocks (or attestations, or authors none) while its node may be
    /// healthy; warning, critical at the last `duty.missedInARow` tier.
    ValidatorNotSigning,
    /// A validator is jailed, tombstoned or slashed.
    ValidatorJailed,
    /// A validator is not in the active set.
    ValidatorInactive,
    /// A remediation healed a validator.
    RemediationSucceeded,
    /// A remediation failed.
    RemediationFailed,
    /// A remediation was held back (a PodDisruptionBudget, the storm guard, a budget).
    RemediationBlocked,
    /// Vigil stopped acting on a validator and waits for a person.
    Escalated,
    /// The storm guard holds every restart under a policy.
    StormActive,
    /// A chain halted: no validator of it sees new blocks.
    ChainHalted,
    /// Most validators of a chain stalled at once.
    MassStall,
    /// The advisor's budget is spent; the built-in rules decide until it refills.
    AdvisorBudgetExhausted,
    /// The advisor's diagnosis (opt-in: only sent when a rule names it).
    Advice,
    /// Applied advice (`autoApply`) asks people to look.
    AdvisorAlert,
    /// A pipeline run failed.
    PipelineRunFailed,
    /// A pipeline run made no progress for its stall timeout.
    PipelineRunStalled,
    /// A pipeline run hit its timeout.
    PipelineRunTimedOut,
    /// A pipeline step failed.
    PipelineStepFailed,
    /// A run's archive could not be written or verified.
    ArchiveFailed,
    /// A run's archive was written and verified.
    ArchiveVerified,
    /// A test notification asked for with the `vigil.dev/test-alert` annotation (it goes to
    /// every channel, whatever the rules).
    TestAlert,
}

/// Severity of an alert event.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Severity {
    /// For the record.
    Info,
    /// Needs attention soon.
    #[default]
    Warning,
    /// Needs attention now.
    Critical,
}

/// What Vigil observed of the fleet under this policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitorPolicyStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (the policy is valid), `StormActive`, `BudgetExhausted`.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Validators that reference this policy.
    #[serde(default)]
    pub validators: u32,
    /// Of those, how many are Ready.
    #[serde(default)]
    pub healthy: u32,
    /// Of those, how many are not Ready.
    #[serde(default)]
    pub unhealthy: u32,
    /// Advisor spending, for the hard budgets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advisor_spend: Option<AdvisorSpend>,
    /// The advisor's diagnosis of the current or most recent fleet incident: one call for
    /// the whole fleet, copied to each validator it touches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_advice: Option<super::AdviceRecord>,
    /// The current or most recent fleet-wide incident (e.g. a chain halt): not a node fault,
    /// so it never triggers restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_incident: Option<FleetIncident>,
    /// Alerts of the policy itself (storm, fleet incident, budget), each listing the
    /// validators it is about.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<super::AlertRecord>,
    /// How each alert channel's deliveries went.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alert_delivery: Vec<ChannelHealth>,
    /// The last test notification asked for with the `vigil.dev/test-alert` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_test: Option<AlertTest>,
}

/// How deliveries to one alert channel went.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelHealth {
    /// Channel name.
    pub channel: String,
    /// When a notification last went through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<Time>,
    /// When one last failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Time>,
    /// Why it last failed (no URL, no credential, no response body).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_error: String,
    /// Failures in a row since the last success.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// The channel refused for good (e.g. Slack's `channel_not_found`): nothing is retried
    /// until the policy changes.
    #[serde(default)]
    pub permanent: bool,
}

/// A test notification and how each channel took it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertTest {
    /// The `vigil.dev/test-alert` value it answered (each value is honoured once).
    pub token: String,
    /// When it was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<Time>,
    /// Per channel: `Delivered`, or why not.
    #[serde(default)]
    pub results: Vec<AlertTestResult>,
}

/// How one channel took a test notification.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertTestResult {
    /// Channel name.
    pub channel: String,
    /// Delivered or not.
    pub delivered: bool,
    /// Why not (no URL, no credential, no response body).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// Advisor spending in the current hour and day.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdvisorSpend {
    /// Start of the hour the call count covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hour_start: Option<Time>,
    /// Calls made this hour.
    #[serde(default)]
    pub calls_this_hour: u32,
    /// Start of the day the token and cost totals cover (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day_start: Option<Time>,
    /// Tokens spent today.
    #[serde(default)]
    pub tokens_today: u64,
    /// Dollars spent today, as a decimal string.
    #[serde(default)]
    pub cost_today: String,
    /// The last call a budget refused, while its hour or day lasts (`BudgetExhausted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied: Option<BudgetDenial>,
}

/// A call a budget refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetDenial {
    /// The limit it would have passed.
    pub limit: BudgetLimit,
    /// When.
    pub at: Time,
}

/// One of the advisor's hard limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum BudgetLimit {
    /// `budget.callsPerHour`.
    CallsPerHour,
    /// `budget.tokensPerDay`.
    TokensPerDay,
    /// `budget.costPerDay`.
    CostPerDay,
}

/// A problem of the whole fleet of one chain rather than of one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetIncident {
    /// The chain concerned.
    pub chain: String,
    /// `ChainHalted` (no validator of the chain sees new blocks) or `MassStall` (most of them
    /// stopped advancing at once while a few still move: a common cause, not a fault of each).
    pub kind: FleetIncidentKind,
    /// When it was first seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
    /// When it ended; unset while it lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Time>,
    /// Validators affected.
    #[serde(default)]
    pub affected: u32,
    /// Validators of that chain under this policy.
    #[serde(default)]
    pub total: u32,
    /// What was seen, for people.
    #[serde(default)]
    pub message: String,
}

/// Kinds of fleet-wide incident.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FleetIncidentKind {
    /// No validator of the chain sees new blocks: the chain halted.
    ChainHalted,
    /// Most validators stopped advancing at once while a few still move: a common cause (a
    /// bad release, a partition), not a fault of each node.
    MassStall,
}

impl FleetIncidentKind {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FleetIncidentKind::ChainHalted => "ChainHalted",
            FleetIncidentKind::MassStall => "MassStall",
        }
    }
}

fn d30s() -> Dur {
    Dur::new("30s")
}
fn d5s() -> Timeout {
    Timeout::new("5s")
}
fn d60s_timeout() -> Timeout {
    Timeout::new("60s")
}
fn d60s() -> Dur {
    Dur::new("60s")
}
fn d3m() -> Dur {
    Dur::new("3m")
}
fn d10m() -> Dur {
    Dur::new("10m")
}
fn d30m() -> Dur {
    Dur::new("30m")
}
fn d1h() -> Dur {
    Dur::new("1h")
}
fn d10s() -> Dur {
    Dur::new("10s")
}
fn d2m() -> Dur {
    Dur::new("2m")
}
fn twenty() -> u32 {
    20
}
fn one() -> u32 {
    1
}
fn three() -> u32 {
    3
}
fn five() -> u32 {
    5
}
fn ten() -> u32 {
    10
}
fn fifty() -> u64 {
    50
}
fn hundred() -> u64 {
    100
}
fn one_mib() -> u64 {
    1 << 20
}
fn yes() -> bool {
    true
}
fn fifty_percent() -> String {
    "50%".into()
}
fn seventy_percent() -> f64 {
    0.7
}
fn tokens_per_day() -> u64 {
    200_000
}
fn cost_per_day() -> String {
    "5".into()
}
fn zero_price() -> String {
    "0".into()
}
fn max_tokens() -> u32 {
    1024
}
fn dedup_ttl() -> Dur {
    Dur::new("168h")
}
fn advisor_timeout() -> Timeout {
    Timeout::new("20s")
}
fn outcome_after() -> Dur {
    Dur::new("10m")
}
fn smtp_port() -> u16 {
    587
}
