//! Remediation: acting on unhealthy validators, safely. The guards are pure ([`guard`]),
//! and so is the healing plan ([`plan`]); every action goes through one door,
//! [`execute`], a thin shell around the Kubernetes API, SSH and webhooks that returns
//! what was done or a typed [`ActionError`].

pub mod guard;
pub mod plan;
pub mod ssh;
pub mod webhook;
pub mod workload;

use crate::api::{self, Chain, RemediationAction, SecretKeyRef, WorkloadTarget};
use crate::policy::SshCommand;
use guard::Trigger;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use std::time::Duration;

/// Longest wait for one Kubernetes API call of an action (reading a Secret, evicting a
/// pod): a stalled call ends instead of hanging the action.
pub const API_TIMEOUT: Duration = Duration::from_secs(30);

/// What an action acts on: the validator's `spec.target`, typed once when the spec
/// changes (timeouts parsed, exactly one kind).
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// A Pod, StatefulSet, Deployment or DaemonSet in the validator's namespace.
    Workload(WorkloadTarget),
    /// A remote machine over SSH.
    Ssh(SshTarget),
    /// An HTTP endpoint that performs the restart.
    Webhook(WebhookTarget),
}

/// `spec.target.ssh`, typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshTarget {
    /// Host name or address.
    pub host: String,
    /// SSH port.
    pub port: u16,
    /// Login user.
    pub user: String,
    /// Where the private key is.
    pub private_key: SecretKeyRef,
    /// The pinned host key line.
    pub host_key: String,
    /// Connect + handshake + authentication deadline.
    pub connect_timeout: Duration,
}

/// `spec.target.webhook`, typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookTarget {
    /// Where to POST.
    pub url: String,
    /// The signing secret, if any.
    pub signing_secret: Option<SecretKeyRef>,
    /// How long to wait for the answer.
    pub timeout: Duration,
}

impl Target {
    /// The typed target of a spec, or why it cannot be used (a sentence naming the field).
    pub fn from_spec(t: &api::Target) -> Result<Target, String> {
        let timeout = |field: &str, d: &api::Dur| {
            d.parse()
                .map_err(|e| format!("{field}: {e}"))
                .and_then(|v| match v {
                    v if v.is_zero() => Err(format!("{field} must be greater than zero")),
                    v if v > crate::policy::MAX_TIMEOUT => {
                        Err(format!("{field} must be at most 1h (it is {})", d.0))
                    }
                    v => Ok(v),
                })
        };
        match (&t.workload, &t.ssh, &t.webhook) {
            (Some(w), None, None) => Ok(Target::Workload(w.clone())),
            (None, Some(s), None) => Ok(Target::Ssh(SshTarget {
                host: s.host.clone(),
                port: s.port,
                user: s.user.clone(),
                private_key: s.private_key_secret_ref.clone(),
                host_key: s.host_key.clone(),
                connect_timeout: timeout("target.ssh.connectTimeout", &s.connect_timeout)?,
            })),
            (None, None, Some(w)) => Ok(Target::Webhook(WebhookTarget {
                url: w.url.0.clone(),
                signing_secret: w.signing_secret_ref.clone(),
                timeout: timeout("target.webhook.timeout", &w.timeout)?,
            })),
            _ => Err("target must set exactly one of workload, ssh or webhook".into()),
        }
    }
}

/// The validator an action is about.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    /// Its namespace.
    pub namespace: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its chain.
    pub chain: Chain,
    /// Its endpoints, for the webhook payload: rpc, metrics, health.
    pub endpoints: [Option<&'a str>; 3],
    /// Why it is unhealthy: the `Ready` reason and message.
    pub reason: (&'a str, &'a str),
}

/// One decided action.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// What to do.
    pub action: RemediationAction,
    /// The attempt's unique token.
    pub token: &'a str,
    /// Who asked.
    pub trigger: &'a Trigger,
    /// The validator.
    pub subject: Subject<'a>,
    /// The `ssh` action's command.
    pub ssh_command: Option<&'a SshCommand>,
    /// `remediation.allowOverlap`: may an action run a second copy of the validator before
    /// the first has stopped?
    pub allow_overlap: bool,
    /// When to try again after a PodDisruptionBudget refused an eviction.
    pub retry: Duration,
}

/// The clients an action uses.
#[derive(Clone)]
pub struct Deps {
    /// Acts on workloads; no automatic retries (a refusal is an answer).
    pub kube: Client,
    /// Reads Secrets.
    pub secrets: Client,
    /// The webhook action's HTTP client.
    pub http: reqwest::Client,
}

/// What an action did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Done {
    /// It was done; what happened, for people.
    Acted(String),
    /// Something that protects the workload (a PodDisruptionBudget) refused it for now.
    Blocked {
        /// What refused it.
        message: String,
        /// When to try again.
        retry: Duration,
    },
}

/// Why an action failed.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The policy's action does not fit the validator's target.
    #[error(
        "remediation.action {action} does not fit spec.target (workload actions need target.workload, ssh needs target.ssh, webhook needs target.webhook)"
    )]
    Mismatch {
        /// The action's API spelling.
        action: String,
    },
    /// The `ssh` action has no command (the validated policy always sets one).
    #[error("remediation.sshCommand is not set")]
    NoSshCommand,
    /// A Secret could not be read.
    #[error("cannot read Secret {name}: {reason}")]
    SecretUnreadable {
        /// The Secret.
        name: String,
        /// Why (the API's answer, or a timeout).
        reason: String,
    },
    /// A Secret lacks the key.
    #[error("Secret {name} has no key {key:?}")]
    SecretKeyMissing {
        /// The Secret.
        name: String,
        /// The key.
        key: String,
    },
    /// A pod or workload action failed.
    #[error(transparent)]
    Workload(#[from] workload::WorkloadError),
    /// The SSH command could not run.
    #[error("ssh command {name}: {source}")]
    Ssh {
        /// The command's name.
        name: String,
        /// What went wrong.
        source: ssh::SshError,
    },
    /// The SSH command ran and failed.
    #[error("ssh command {name} exited {status}: {stderr}")]
    SshExit {
        /// The command's name.
        name: String,
        /// `1`, `by signal KILL`, ...
        status: String,
        /// Its standard error.
        stderr: String,
    },
    /// The webhook failed.
    #[error(transparent)]
    Webhook(#[from] webhook::WebhookError),
}

impl From<Result<Done, ActionError>> for guard::ActionOutcome {
    fn from(r: Result<Done, ActionError>) -> Self {
        match r {
            Ok(Done::Acted(m)) => guard::ActionOutcome::Succeeded(m),
            Ok(Done::Blocked { message, retry }) => {
                guard::ActionOutcome::Blocked { message, retry }
            }
            Err(e) => guard::ActionOutcome::Failed(e.to_string()),
        }
    }
}

/// The webhook action's HTTP client: no redirects (a signed body goes where it is
/// configured to, never elsewhere, and a redirect is not a success).
pub fn webhook_client() -> reqwest::Client {
    crate::egress::client()
}

/// Performs one decided action on `target`.
pub async fn execute(req: &Request<'_>, target: &Target, deps: &Deps) -> Result<Done, ActionError> {
    use RemediationAction as A;
    match (target, req.action) {
        (Target::Workload(w), A::EvictPod | A::DeletePod | A::RolloutRestart) => {
            let ns = req.subject.namespace;
            let how = workload::How {
                token: req.token,
                retry: req.retry,
                allow_overlap: req.allow_overlap,
            };
            Ok(workload::act(&deps.kube, ns, w, req.action, &how).await?)
        }
        (Target::Webhook(w), A::Webhook) => {
            let secret = match &w.signing_secret {
                Some(r) => Some(secret(deps, req.subject.namespace, r).await?),
                None => None,
            };
            let payload = webhook::payload(req);
            let answer =
                webhook::call(&deps.http, w, secret.as_deref(), req.token, &payload).await?;
            Ok(Done::Acted(answer))
        }
        (Target::Ssh(t), A::Ssh) => {
            let command = req.ssh_command.ok_or(ActionError::NoSshCommand)?;
            let key = secret(deps, req.subject.namespace, &t.private_key).await?;
            let key = String::from_utf8_lossy(&key);
            let argv = ssh::argv(command, req, &t.host).map_err(|source| ActionError::Ssh {
                name: command.name.clone(),
                source,
            })?;
            let ssh_req = ssh::SshRequest {
                host: &t.host,
                port: t.port,
                user: &t.user,
                private_key: &key,
                host_key: &t.host_key,
                argv: &argv,
                connect_timeout: t.connect_timeout,
                command_timeout: command.timeout,
            };
            let name = command.name.clone();
            match ssh::run(&ssh_req).await {
                Ok(o) if o.success() => Ok(Done::Acted(format!(
                    "ssh command {name} exited 0: {}",
                    crate::text::printable(&o.stdout, ssh::SHOWN_OUTPUT)
                ))),
                Ok(o) => Err(ActionError::SshExit {
                    name,
                    status: o
                        .exit_status
                        .map(|s| s.to_string())
                        .or(o.exit_signal.map(|s| format!("by signal {s}")))
                        .unwrap_or_else(|| "without a status".into()),
                    stderr: crate::text::printable(&o.stderr, ssh::SHOWN_OUTPUT),
                }),
                Err(source) => Err(ActionError::Ssh { name, source }),
            }
        }
        (_, a) => Err(ActionError::Mismatch {
            action: guard::action_name(a),
        }),
    }
}

/// One key of a Secret in `ns`, within [`API_TIMEOUT`].
async fn secret(deps: &Deps, ns: &str, r: &SecretKeyRef) -> Result<Vec<u8>, ActionError> {
    let api: Api<Secret> = Api::namespaced(deps.secrets.clone(), ns);
    let unreadable = |reason: String| ActionError::SecretUnreadable {
        name: r.name.clone(),
        reason,
    };
    let s = tokio::time::timeout(API_TIMEOUT, api.get(&r.name))
        .await
        .map_err(|_| unreadable(format!("no answer within {API_TIMEOUT:?}")))?
        .map_err(|e| unreadable(e.to_string()))?;
    s.data
        .and_then(|mut d| d.remove(&r.key))
        .map(|b| b.0)
        .ok_or_else(|| ActionError::SecretKeyMissing {
            name: r.name.clone(),
            key: r.key.clone(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{HttpUrl, SshTarget as SpecSsh, Timeout, WebhookTarget as SpecHook};

    fn spec_hook(timeout: &str) -> api::Target {
        api::Target {
            workload: None,
            ssh: None,
            webhook: Some(SpecHook {
                url: HttpUrl("http://127.0.0.1:1/restart".into()),
                signing_secret_ref: None,
                timeout: Timeout::new(timeout),
            }),
        }
    }

    #[test]
    fn targets_are_typed_once() {
        match Target::from_spec(&spec_hook("15s")).unwrap() {
            Target::Webhook(w) => assert_eq!(w.timeout, Duration::from_secs(15)),
            t => panic!("{t:?}"),
        }
        assert!(
            Target::from_spec(&spec_hook("0s"))
                .unwrap_err()
                .contains("target.webhook.timeout must be greater than zero")
        );
        assert!(
            Target::from_spec(&spec_hook("2h"))
                .unwrap_err()
                .contains("at most 1h")
        );
        let ssh = api::Target {
            workload: None,
            webhook: None,
            ssh: Some(SpecSsh {
                host: "h".into(),
                port: 22,
                user: "u".into(),
                private_key_secret_ref: SecretKeyRef {
                    name: "k".into(),
                    key: "id".into(),
                },
                host_key: "ssh-ed25519 AAAA".into(),
                connect_timeout: Timeout::new("3 s"),
            }),
        };
        assert!(
            Target::from_spec(&ssh)
                .unwrap_err()
                .starts_with("target.ssh.connectTimeout:")
        );
        let none = api::Target {
            workload: None,
            ssh: None,
            webhook: None,
        };
        assert!(Target::from_spec(&none).is_err());
    }

    #[test]
    fn outcomes_keep_the_typed_message() {
        let failed: guard::ActionOutcome = Err(ActionError::SecretKeyMissing {
            name: "s".into(),
            key: "k".into(),
        })
        .into();
        assert_eq!(
            failed,
            guard::ActionOutcome::Failed("Secret s has no key \"k\"".into())
        );
        let blocked: guard::ActionOutcome = Ok(Done::Blocked {
            message: "pdb".into(),
            retry: Duration::from_secs(5),
        })
        .into();
        assert_eq!(blocked.result(), crate::api::RemediationResult::Blocked);
    }
}
