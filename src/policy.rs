//! A MonitorPolicy validated once into typed values: durations as [`Duration`], prices as
//! exact amounts, percentages as numbers, cross-field limits checked. The policy controller,
//! the monitor, healing, and (later) alerts and the advisor all consume this one [`Policy`],
//! so a policy that any of them would refuse shows `Ready=False InvalidSpec` itself, and
//! every validator under it shows the same message. Nothing substitutes a default at action
//! time.
//!
//! The CRD schema refuses most mistakes at admission (with CEL); this step repeats the
//! checks that matter for safety, because objects stored before a schema change, or written
//! with an older CRD, never passed them.

use crate::api::{
    AdviceAction, AdvisorMode, AdvisorProvider, AlertChannel, AlertName, Dur, HttpUrl,
    MonitorPolicySpec, RemediationAction, SecretKeyRef, Severity,
};
use crate::health::Limits;
use crate::probe::ProbeOptions;
use crate::remediate::guard::Rules;
use std::fmt;
use std::time::Duration;

/// Longest policy duration (`remediation.window`, `health.maxBlockStall`, ...): 30 days.
pub const MAX_POLICY_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);
/// Longest timeout of a probe, an SSH command or a webhook: 1 hour.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// Largest `probe.maxResponseBytes`: 4 MiB, an eighth of the default probe memory budget
/// (a refused batch fans out into six single calls of that size).
pub const MAX_RESPONSE_BYTES: u64 = 4 << 20;

/// A validated MonitorPolicy.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// How validators are probed.
    pub probe: Probe,
    /// What counts as healthy (with the probe thresholds).
    pub limits: Limits,
    /// How validators are healed.
    pub remediation: Remediation,
    /// The advisor and its budget.
    pub advisor: Advisor,
    /// Where notifications go.
    pub alerts: Alerts,
    /// How validator duty is judged.
    pub duty: crate::duty::judge::Thresholds,
    /// The kill switch.
    pub suspend: bool,
}

/// `probe`, typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Time between two probes of a validator.
    pub interval: Duration,
    /// Timeout and body cap of one probe.
    pub options: ProbeOptions,
}

/// `remediation`, typed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Remediation {
    /// The guards' settings.
    pub rules: Rules,
    /// The command the `ssh` action runs (set exactly when the action is `ssh`, or when
    /// `sshCommand` names one).
    pub ssh_command: Option<SshCommand>,
    /// `allowOverlap`: actions that may run two copies of a validator at once are allowed.
    pub allow_overlap: bool,
}

/// One allow-listed SSH command, typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshCommand {
    /// Its name in `remediation.sshCommands`.
    pub name: String,
    /// Program and arguments, with placeholders.
    pub argv: Vec<String>,
    /// How long it may run.
    pub timeout: Duration,
}

/// `advisor`, typed.
#[derive(Clone, Debug, PartialEq)]
pub struct Advisor {
    /// Backend.
    pub provider: AdvisorProvider,
    /// Model (required for hosted providers).
    pub model: Option<String>,
    /// API base URL; unset means the provider's public endpoint.
    pub base_url: Option<HttpUrl>,
    /// Secret key holding the API key.
    pub api_key: Option<SecretKeyRef>,
    /// When to ask.
    pub mode: AdvisorMode,
    /// Role instructions.
    pub instructions: Option<String>,
    /// Hard limits.
    pub budget: Budget,
    /// Decisions the advisor may give (empty: all).
    pub allowed_actions: Vec<AdviceAction>,
    /// Lowest confidence acted on, 0 to 1.
    pub min_confidence: f64,
    /// Apply the recommended action automatically.
    pub auto_apply: bool,
    /// Redact addresses, keys and host names from prompts.
    pub redact: bool,
    /// How long advice answers the same question without a new call.
    pub dedup_ttl: Duration,
    /// Longest one call may take.
    pub timeout: Duration,
    /// When after advice its outcome is recorded.
    pub outcome_after: Duration,
    /// Extra request headers (name, value).
    pub headers: Vec<(String, String)>,
    /// Ask OpenAI-compatible servers for JSON mode.
    pub json_mode: bool,
    /// Only the bare JSON object is accepted.
    pub strict: bool,
    /// Bytes of pod log tail in the prompt (0: none).
    pub log_tail_bytes: u32,
}

/// `advisor.budget`, typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Most calls per hour.
    pub calls_per_hour: u32,
    /// Most tokens per day.
    pub tokens_per_day: u64,
    /// Most spend per day.
    pub cost_per_day: Usd,
    /// Price of a million input tokens.
    pub input_price_per_million: Usd,
    /// Price of a million output tokens.
    pub output_price_per_million: Usd,
    /// Most output tokens asked for in one call.
    pub max_tokens_per_call: u32,
}

/// An amount of US dollars, exact to a millionth (no floating point in budgets).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd {
    /// Millionths of a dollar.
    pub micros: u64,
}

impl Usd {
    /// Parses `12`, `2.50` or `0.000003` (at most 6 decimals).
    pub fn parse(s: &str) -> Result<Usd, String> {
        let bad = || format!("{s:?} is not an amount of dollars such as 2.50");
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
        if !digits(int) || (s.contains('.') && !digits(frac)) || frac.len() > 6 {
            return Err(bad());
        }
        let whole: u64 = int.parse().map_err(|_| bad())?;
        let frac_micros: u64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<6}").parse().map_err(|_| bad())?
        };
        whole
            .checked_mul(1_000_000)
            .and_then(|m| m.checked_add(frac_micros))
            .map(|micros| Usd { micros })
            .ok_or_else(bad)
    }
}

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, frac) = (self.micros / 1_000_000, self.micros % 1_000_000);
        if frac == 0 {
            return write!(f, "{whole}");
        }
        let frac = format!("{frac:06}");
        write!(f, "{whole}.{}", frac.trim_end_matches('0'))
    }
}

/// `alerts`, typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alerts {
    /// Channels, as written (credentials stay Secret references; URLs checked).
    pub channels: Vec<AlertChannel>,
    /// The rules in force: as written, or the default rule when channels are set without
    /// rules (every alert of severity `warning` or above to every channel).
    pub rules: Vec<AlertRule>,
    /// Notify when a problem ends.
    pub send_resolved: bool,
    /// How long a new alert waits before its first notification (grouping).
    pub group_wait: Duration,
    /// How long an alert must stay clear before it resolves.
    pub flap_damping: Duration,
}

/// One alert rule, typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertRule {
    /// Alerts matched (empty: all but the opt-in ones).
    pub alerts: Vec<AlertName>,
    /// Lowest severity sent.
    pub min_severity: Severity,
    /// Channel names (each defined in `channels`).
    pub channels: Vec<String>,
    /// Repeat while the problem lasts; `None`: the alert's own default.
    pub repeat_interval: Option<Duration>,
}

/// Everything wrong with a policy, each a sentence naming its field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problems(pub Vec<String>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("; "))
    }
}

impl std::error::Error for Problems {}

/// Collects problems while fields are read.
#[derive(Default)]
struct Check(Vec<String>);

impl Check {
    fn problem(&mut self, p: impl Into<String>) {
        self.0.push(p.into());
    }

    /// A duration at most `max`; zero allowed unless `nonzero`.
    fn duration(&mut self, field: &str, d: &Dur, max: Duration, nonzero: bool) -> Duration {
        match d.parse() {
            Ok(v) if v > max => {
                self.problem(format!(
                    "{field} must be at most {} (it is {})",
                    crate::duration::format(max),
                    d.0
                ));
                v
            }
            Ok(v) if nonzero && v.is_zero() => {
                self.problem(format!("{field} must be greater than zero"));
                v
            }
            Ok(v) => v,
            Err(e) => {
                self.problem(format!("{field}: {e}"));
                Duration::ZERO
            }
        }
    }

    /// A count that must be at least one, with what to do instead of zero.
    fn at_least_one(&mut self, field: &str, v: u32) {
        if v == 0 {
            self.problem(format!(
                "{field} must be at least 1; to stop remediation use action: none or suspend: true"
            ));
        }
    }

    fn usd(&mut self, field: &str, s: &str) -> Usd {
        Usd::parse(s).unwrap_or_else(|e| {
            self.problem(format!("{field}: {e}"));
            Usd::default()
        })
    }
}

/// Parses `NN%` (0 to 100).
fn percent(s: &str) -> Option<u32> {
    let n: u32 = s.strip_suffix('%')?.parse().ok()?;
    (n <= 100).then_some(n)
}

/// Validates a policy spec into a [`Policy`], or every problem found.
pub fn validate(spec: &MonitorPolicySpec) -> Result<Policy, Problems> {
    let mut c = Check::default();
    let p = &spec.probe;
    let interval = c.duration("probe.interval", &p.interval, MAX_POLICY_DURATION, false);
    let timeout = c.duration("probe.timeout", &p.timeout, MAX_TIMEOUT, true);
    if interval < Duration::from_secs(1) {
        c.problem("probe.interval must be at least 1s");
    }
    if timeout >= interval {
        c.problem("probe.timeout must be shorter than probe.interval");
    }
    if p.failure_threshold == 0 || p.success_threshold == 0 {
        c.problem("probe.failureThreshold and probe.successThreshold must be at least 1");
    }
    if p.max_response_bytes > MAX_RESPONSE_BYTES {
        c.problem(format!(
            "probe.maxResponseBytes must be at most {MAX_RESPONSE_BYTES} (4 MiB)"
        ));
    }

    let h = &spec.health;
    let limits = Limits {
        min_peers: h.min_peers,
        max_block_stall: c.duration(
            "health.maxBlockStall",
            &h.max_block_stall,
            MAX_POLICY_DURATION,
            false,
        ),
        max_finality_lag: h.max_finality_lag,
        max_blocks_behind: h.max_blocks_behind,
        max_probe_latency: h
            .max_probe_latency
            .as_ref()
            .map(|l| c.duration("health.maxProbeLatency", l, MAX_TIMEOUT, true)),
        failure_threshold: p.failure_threshold,
        success_threshold: p.success_threshold,
    };

    let r = &spec.remediation;
    let window = c.duration("remediation.window", &r.window, MAX_POLICY_DURATION, false);
    let cooldown = c.duration(
        "remediation.cooldown",
        &r.cooldown,
        MAX_POLICY_DURATION,
        false,
    );
    let max_cooldown = c.duration(
        "remediation.maxCooldown",
        &r.max_cooldown,
        MAX_POLICY_DURATION,
        false,
    );
    let healthy_reset_after = c.duration(
        "remediation.healthyResetAfter",
        &r.healthy_reset_after,
        MAX_POLICY_DURATION,
        false,
    );
    if cooldown.is_zero() && window.is_zero() {
        c.problem(
            "remediation.cooldown and remediation.window cannot both be zero: nothing would limit restarts",
        );
    }
    if cooldown > max_cooldown {
        c.problem("remediation.cooldown must not exceed remediation.maxCooldown");
    }
    c.at_least_one("remediation.maxAttempts", r.max_attempts);
    c.at_least_one("remediation.maxConcurrent", r.max_concurrent);
    c.at_least_one("remediation.escalateAfter", r.escalate_after);
    let max_unhealthy_percent = percent(&r.max_unhealthy).unwrap_or_else(|| {
        c.problem(format!(
            "remediation.maxUnhealthy {:?} is not a percentage such as 50%",
            r.max_unhealthy
        ));
        0
    });
    let mut commands = Vec::new();
    for (name, cmd) in &r.ssh_commands {
        let timeout = c.duration(
            &format!("remediation.sshCommands.{name}.timeout"),
            &cmd.timeout,
            MAX_TIMEOUT,
            true,
        );
        if cmd.argv.is_empty() {
            c.problem(format!(
                "remediation.sshCommands.{name}.argv needs a program"
            ));
        }
        if let Err(why) = crate::remediate::ssh::check_argv(&cmd.argv) {
            c.problem(format!("remediation.sshCommands.{name}.{why}"));
        }
        commands.push(SshCommand {
            name: name.clone(),
            argv: cmd.argv.clone(),
            timeout,
        });
    }
    let ssh_command = match (&r.ssh_command, r.action) {
        (Some(name), _) => {
            let found = commands.into_iter().find(|c| &c.name == name);
            if found.is_none() {
                c.problem(format!(
                    "remediation.sshCommand {name:?} is not in remediation.sshCommands"
                ));
            }
            found
        }
        (None, RemediationAction::Ssh) => {
            c.problem("remediation.action ssh needs remediation.sshCommand");
            None
        }
        (None, _) => None,
    };
    let remediation = Remediation {
        rules: Rules {
            enabled: r.enabled,
            action: r.action,
            max_attempts: r.max_attempts,
            window,
            cooldown,
            max_cooldown,
            healthy_reset_after,
            max_concurrent: r.max_concurrent,
            max_unhealthy_percent,
            escalate_after: r.escalate_after,
            policy_suspended: spec.suspend,
            duty_restart: spec.duty.restart_when_not_signing,
        },
        ssh_command,
        allow_overlap: r.allow_overlap,
    };

    let a = &spec.advisor;
    let hosted = a.provider != AdvisorProvider::Rules;
    if hosted && a.api_key_secret_ref.is_none() {
        c.problem("advisor providers anthropic and openai need apiKeySecretRef");
    }
    if hosted && a.model.as_deref().is_none_or(str::is_empty) {
        c.problem("advisor providers anthropic and openai need a model");
    }
    if !(0.0..=1.0).contains(&a.min_confidence) {
        c.problem("advisor.minConfidence must be between 0 and 1");
    }
    let b = &a.budget;
    let budget = Budget {
        calls_per_hour: b.calls_per_hour,
        tokens_per_day: b.tokens_per_day,
        cost_per_day: c.usd("advisor.budget.costPerDay", &b.cost_per_day),
        input_price_per_million: c.usd(
            "advisor.budget.inputPricePerMillion",
            &b.input_price_per_million,
        ),
        output_price_per_million: c.usd(
            "advisor.budget.outputPricePerMillion",
            &b.output_price_per_million,
        ),
        max_tokens_per_call: b.max_tokens_per_call,
    };
    let advisor = Advisor {
        provider: a.provider,
        model: a.model.clone(),
        base_url: a.base_url.clone(),
        api_key: a.api_key_secret_ref.clone(),
        mode: a.mode,
        instructions: a.instructions.clone(),
        budget,
        allowed_actions: a.allowed_actions.clone(),
        min_confidence: a.min_confidence,
        auto_apply: a.auto_apply,
        redact: a.redact,
        dedup_ttl: c.duration("advisor.dedupTtl", &a.dedup_ttl, MAX_POLICY_DURATION, false),
        timeout: c.duration("advisor.timeout", &a.timeout, MAX_TIMEOUT, true),
        outcome_after: c.duration(
            "advisor.outcomeAfter",
            &a.outcome_after,
            MAX_POLICY_DURATION,
            true,
        ),
        headers: a
            .headers
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect(),
        json_mode: a.json_mode,
        strict: a.strict,
        log_tail_bytes: a.log_tail_bytes.min(4096),
    };
    for h in &a.headers {
        let n = h.name.to_ascii_lowercase();
        if matches!(
            n.as_str(),
            "authorization" | "x-api-key" | "host" | "content-length"
        ) {
            c.problem(format!(
                "advisor.headers: {} is set by Vigil (the key comes from apiKeySecretRef)",
                h.name
            ));
        }
    }

    let al = &spec.alerts;
    for (i, ch) in al.channels.iter().enumerate() {
        if al.channels[..i].iter().any(|d| d.name == ch.name) {
            c.problem(format!("alert channel name {:?} is used twice", ch.name));
        }
        if ch.name == crate::alert::decide::LOG_CHANNEL {
            c.problem(format!(
                "alerts.channels[{i}]: the name {:?} is reserved for the audit log, which gets every alert",
                ch.name
            ));
        }
        let set = [
            ch.alertmanager.is_some(),
            ch.slack.is_some(),
            ch.webhook.is_some(),
            ch.email.is_some(),
        ];
        if set.iter().filter(|x| **x).count() != 1 {
            c.problem(format!(
                "alerts.channels[{i}] must set exactly one of alertmanager, slack, webhook or email"
            ));
        }
        let url = |field: String, u: &HttpUrl| {
            reqwest::Url::parse(u.as_str())
                .err()
                .map(|e| format!("{field}: {e}"))
        };
        if let Some(am) = &ch.alertmanager {
            if am.urls.is_empty() {
                c.problem(format!(
                    "alerts.channels[{i}].alertmanager.urls must not be empty"
                ));
            }
            for (j, u) in am.urls.iter().enumerate() {
                c.0.extend(url(
                    format!("alerts.channels[{i}].alertmanager.urls[{j}]"),
                    u,
                ));
            }
        }
        if let Some(w) = &ch.webhook {
            c.0.extend(url(format!("alerts.channels[{i}].webhook.url"), &w.url));
        }
        if ch.max_per_minute == 0 {
            c.problem(format!(
                "alerts.channels[{i}].maxPerMinute must be at least 1"
            ));
        }
    }
    let mut rules = Vec::new();
    for (i, rule) in al.rules.iter().enumerate() {
        for name in &rule.channels {
            if !al.channels.iter().any(|ch| &ch.name == name) {
                c.problem(format!(
                    "alerts.rules[{i}] names channel {name:?}, which alerts.channels does not define"
                ));
            }
        }
        rules.push(AlertRule {
            alerts: rule.alerts.clone(),
            min_severity: rule.min_severity,
            channels: rule.channels.clone(),
            repeat_interval: rule.repeat_interval.as_ref().map(|d| {
                c.duration(
                    &format!("alerts.rules[{i}].repeatInterval"),
                    d,
                    MAX_POLICY_DURATION,
                    true,
                )
            }),
        });
    }
    if rules.is_empty() && !al.channels.is_empty() {
        rules.push(AlertRule {
            alerts: Vec::new(),
            min_severity: Severity::Warning,
            channels: al.channels.iter().map(|ch| ch.name.clone()).collect(),
            repeat_interval: None,
        });
    }
    let alerts = Alerts {
        channels: al.channels.clone(),
        rules,
        send_resolved: al.send_resolved,
        group_wait: c.duration("alerts.groupWait", &al.group_wait, MAX_TIMEOUT, false),
        flap_damping: c.duration(
            "alerts.flapDamping",
            &al.flap_damping,
            MAX_POLICY_DURATION,
            false,
        ),
    };

    if !c.0.is_empty() {
        return Err(Problems(c.0));
    }
    Ok(Policy {
        probe: Probe {
            interval,
            options: ProbeOptions {
                timeout,
                max_response_bytes: p.max_response_bytes,
            },
        },
        limits,
        remediation,
        advisor,
        alerts,
        duty: crate::duty::judge::Thresholds::from_spec(&spec.duty),
        suspend: spec.suspend,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AlertRule as SpecRule, SshCommand as SpecSsh, Timeout};

    fn problems_of(edit: impl FnOnce(&mut MonitorPolicySpec)) -> Vec<String> {
        let mut spec = MonitorPolicySpec::default();
        edit(&mut spec);
        match validate(&spec) {
            Ok(_) => Vec::new(),
            Err(p) => p.0,
        }
    }

    #[test]
    fn defaults_are_valid_and_typed() {
        let p = validate(&MonitorPolicySpec::default()).unwrap();
        assert_eq!(p.probe.interval, Duration::from_secs(30));
        assert_eq!(p.probe.options.timeout, Duration::from_secs(5));
        assert_eq!(p.remediation.rules.max_unhealthy_percent, 50);
        assert_eq!(p.remediation.rules.cooldown, Duration::from_secs(60));
        assert_eq!(p.advisor.budget.cost_per_day, Usd { micros: 5_000_000 });
        assert_eq!(p.limits.max_block_stall, Duration::from_secs(180));
    }

    /// One row per rule: what is changed, and a piece of the message that must say why.
    #[test]
    fn every_rule_names_its_field() {
        type Edit = fn(&mut MonitorPolicySpec);
        let cases: &[(&str, Edit, &str)] = &[
            (
                "timeout not below interval",
                |s| s.probe.timeout = Timeout::new("30s"),
                "probe.timeout must be shorter than probe.interval",
            ),
            (
                "zero timeout",
                |s| s.probe.timeout = Timeout::new("0s"),
                "probe.timeout must be greater than zero",
            ),
            (
                "sub-second interval",
                |s| {
                    s.probe.interval = Dur::new("500ms");
                    s.probe.timeout = Timeout::new("100ms");
                },
                "probe.interval must be at least 1s",
            ),
            (
                "timeout above an hour",
                |s| {
                    s.probe.interval = Dur::new("3h");
                    s.probe.timeout = Timeout::new("2h");
                },
                "probe.timeout must be at most 1h",
            ),
            (
                "zero max probe latency",
                |s| s.health.max_probe_latency = Some(Dur::new("0")),
                "health.maxProbeLatency must be greater than zero",
            ),
            (
                "oversized bodies",
                |s| s.probe.max_response_bytes = 8 << 20,
                "probe.maxResponseBytes must be at most 4194304",
            ),
            (
                "zero cooldown and window",
                |s| {
                    s.remediation.cooldown = Dur::new("0s");
                    s.remediation.window = Dur::new("0s");
                },
                "cannot both be zero",
            ),
            (
                "cooldown above max",
                |s| s.remediation.cooldown = Dur::new("2h"),
                "must not exceed remediation.maxCooldown",
            ),
            (
                "zero attempts",
                |s| s.remediation.max_attempts = 0,
                "remediation.maxAttempts must be at least 1; to stop remediation use action: none",
            ),
            (
                "zero concurrency",
                |s| s.remediation.max_concurrent = 0,
                "remediation.maxConcurrent must be at least 1",
            ),
            (
                "zero escalation",
                |s| s.remediation.escalate_after = 0,
                "remediation.escalateAfter must be at least 1",
            ),
            (
                "window above 30 days",
                |s| s.remediation.window = Dur::new("721h"),
                "remediation.window must be at most 720h",
            ),
            (
                "huge number",
                |s| s.health.max_block_stall = Dur::new("99999999999999999999h"),
                "health.maxBlockStall: duration",
            ),
            (
                "unparsable",
                |s| s.remediation.window = Dur::new("3 days"),
                "remediation.window:",
            ),
            (
                "not a percentage",
                |s| s.remediation.max_unhealthy = "150%".into(),
                "remediation.maxUnhealthy",
            ),
            (
                "ssh without command",
                |s| s.remediation.action = RemediationAction::Ssh,
                "needs remediation.sshCommand",
            ),
            (
                "ssh command unknown",
                |s| s.remediation.ssh_command = Some("reboot".into()),
                "\"reboot\" is not in remediation.sshCommands",
            ),
            (
                "ssh timeout above an hour",
                |s| {
                    s.remediation.ssh_commands.insert(
                        "r".into(),
                        SpecSsh {
                            argv: vec!["true".into()],
                            timeout: Timeout::new("2h"),
                        },
                    );
                },
                "remediation.sshCommands.r.timeout must be at most 1h",
            ),
            (
                "a placeholder in a shell script",
                |s| {
                    s.remediation.ssh_commands.insert(
                        "r".into(),
                        SpecSsh {
                            argv: vec!["sh".into(), "-c".into(), "restart {validator}".into()],
                            timeout: Timeout::new("1m"),
                        },
                    );
                },
                "remediation.sshCommands.r.argv[2] is the script of -c and holds {validator}",
            ),
            (
                "hosted advisor without key",
                |s| {
                    s.advisor.provider = AdvisorProvider::Anthropic;
                    s.advisor.model = Some("m".into());
                },
                "need apiKeySecretRef",
            ),
            (
                "bad price",
                |s| s.advisor.budget.cost_per_day = "1.2345678".into(),
                "advisor.budget.costPerDay",
            ),
            (
                "rule names a missing channel",
                |s| {
                    s.alerts.rules.push(SpecRule {
                        alerts: vec![],
                        min_severity: Severity::Warning,
                        channels: vec!["pager".into()],
                        repeat_interval: Some(Dur::new("1h")),
                    })
                },
                "names channel \"pager\"",
            ),
        ];
        for (what, edit, needle) in cases {
            let problems = problems_of(*edit);
            assert!(
                problems.iter().any(|p| p.contains(needle)),
                "{what}: {problems:?} does not say {needle:?}"
            );
        }
    }

    #[test]
    fn limits_are_inclusive() {
        assert!(
            problems_of(|s| {
                s.remediation.window = Dur::new("720h");
                s.remediation.max_cooldown = Dur::new("720h");
                s.probe.max_response_bytes = MAX_RESPONSE_BYTES;
                s.probe.interval = Dur::new("2h");
                s.probe.timeout = Timeout::new("1h");
            })
            .is_empty()
        );
    }

    #[test]
    fn dollars_are_exact() {
        assert_eq!(Usd::parse("2.50"), Ok(Usd { micros: 2_500_000 }));
        assert_eq!(Usd::parse("0.000003"), Ok(Usd { micros: 3 }));
        assert_eq!(Usd::parse("7"), Ok(Usd { micros: 7_000_000 }));
        for bad in [
            "",
            ".5",
            "1.",
            "-2",
            "1.2345678",
            "1e3",
            "99999999999999999999",
        ] {
            assert!(Usd::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Usd { micros: 2_500_000 }.to_string(), "2.5");
        assert_eq!(Usd { micros: 7_000_000 }.to_string(), "7");
    }
}
