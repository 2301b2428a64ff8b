//! Acting on a validator that runs in the cluster: evict or delete its pod, or restart the
//! StatefulSet, Deployment or DaemonSet that owns it.
//!
//! Signing safety: a validator must never run twice with one key. A StatefulSet creates a
//! pod's replacement (same name, same volume) only once the old pod is gone, and a bare pod
//! is not replaced at all, so both are safe. A ReplicaSet (a Deployment's) starts the
//! replacement as soon as the old pod is terminating, and a surging rollout starts the new
//! pod before the old one stops: for a few seconds two copies can sign. Vigil refuses such
//! actions unless the policy says `allowOverlap: true` ([`overlap_risk`], [`rollout_risk`]).

use super::Done;
use crate::api::{RemediationAction, WorkloadKind, WorkloadTarget};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, EvictParams, ListParams, Patch, PatchParams, Preconditions};
use kube::{Api, Client, ResourceExt};
use std::time::Duration;

/// The pod-template annotation a `rolloutRestart` sets; its value is the attempt's token, so
/// each attempt changes the template exactly once (and repeating an attempt changes nothing).
pub const RESTARTED_AT_ANNOTATION: &str = "vigil.dev/restartedAt";

/// Why a pod or workload action failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// An API call failed (or did not answer within [`super::API_TIMEOUT`]).
    #[error("{what} failed: {reason}")]
    Api {
        /// What was asked, e.g. `reading StatefulSet v`.
        what: String,
        /// The API's answer.
        reason: String,
    },
    /// The target's selector cannot be used.
    #[error("{0}")]
    Selector(String),
    /// The selector matched no live pod.
    #[error("no running pod matches {0}")]
    NoPod(String),
    /// The selector matched several pods.
    #[error(
        "{n} pods match {what}; a validator must map to exactly one pod (name it, or narrow the selector)"
    )]
    ManyPods {
        /// How many.
        n: usize,
        /// What matched them.
        what: String,
    },
    /// Nothing to restart or refused by what the workload is.
    #[error("{0}")]
    Unrestartable(String),
    /// Refused: the action could run two copies of the validator at once.
    #[error(
        "refused: {0}, so two copies of the validator could sign with one key (double signing). Run it as a StatefulSet, or set remediation.allowOverlap: true if it cannot double-sign (e.g. a remote signer with slashing protection)"
    )]
    OverlapRisk(String),
}

/// How an action is to be done.
#[derive(Clone, Copy, Debug)]
pub struct How<'a> {
    /// The attempt's token (the rollout annotation's value).
    pub token: &'a str,
    /// When to try again after a PodDisruptionBudget refused an eviction.
    pub retry: Duration,
    /// `remediation.allowOverlap`.
    pub allow_overlap: bool,
}

/// Why deleting or evicting a pod with these owner references could let a replacement
/// start while it still runs; None when it cannot (a StatefulSet's pod, a bare pod).
pub fn overlap_risk(pod: &str, refs: &[OwnerReference]) -> Option<String> {
    match controller_of(refs) {
        None | Some(("StatefulSet", _)) => None,
        Some(("ReplicaSet", rs)) => Some(format!(
            "pod {pod} belongs to ReplicaSet {rs} (a Deployment), which starts its replacement while it is still stopping"
        )),
        Some((kind, name)) => Some(format!(
            "pod {pod} belongs to {kind} {name}, which may start its replacement while it is still stopping"
        )),
    }
}

/// Why a rollout restart of this workload could start the new pod before the old one has
/// stopped; None when it cannot. `strategy` is the Deployment's `strategy.type` or the
/// DaemonSet's `updateStrategy.type`, `max_surge` its rolling update's `maxSurge`.
pub fn rollout_risk(
    kind: WorkloadKind,
    name: &str,
    strategy: Option<&str>,
    max_surge: Option<&IntOrString>,
) -> Option<String> {
    let surges = |default_surges: bool| match max_surge {
        None => default_surges,
        Some(IntOrString::Int(n)) => *n != 0,
        Some(IntOrString::String(s)) => !matches!(s.trim(), "0" | "0%"),
    };
    let risky = match kind {
        WorkloadKind::StatefulSet | WorkloadKind::Pod => false,
        // Deployments surge by 25% unless told otherwise; Recreate stops the old pod first.
        WorkloadKind::Deployment => strategy != Some("Recreate") && surges(true),
        // DaemonSets replace in place (maxSurge 0) unless told otherwise.
        WorkloadKind::DaemonSet => strategy != Some("OnDelete") && surges(false),
    };
    risky.then(|| {
        format!(
            "a rollout of {kind:?} {name} can start the new pod before the old one stops (maxSurge is not 0)"
        )
    })
}

/// Runs an API call of an action within [`super::API_TIMEOUT`].
async fn call<T>(
    what: impl FnOnce() -> String,
    fut: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, WorkloadError> {
    match tokio::time::timeout(super::API_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(WorkloadError::Api {
            what: what(),
            reason: e.to_string(),
        }),
        Err(_) => Err(WorkloadError::Api {
            what: what(),
            reason: format!("no answer within {:?}", super::API_TIMEOUT),
        }),
    }
}

/// Turns a label selector into the `labelSelector` query syntax.
pub fn selector_string(sel: &LabelSelector) -> Result<String, WorkloadError> {
    let mut parts = Vec::new();
    for (k, v) in sel.match_labels.iter().flatten() {
        parts.push(format!("{k}={v}"));
    }
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            op => {
                return Err(WorkloadError::Selector(format!(
                    "unknown selector operator {op:?}"
                )));
            }
        });
    }
    if parts.is_empty() {
        return Err(WorkloadError::Selector(
            "the selector is empty: it would match every pod".into(),
        ));
    }
    Ok(parts.join(","))
}

/// Picks the one live pod of a validator out of the pods a selector matched.
pub fn the_pod(pods: Vec<Pod>, what: &str) -> Result<Pod, WorkloadError> {
    let live: Vec<Pod> = pods
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    match live.len() {
        1 => Ok(live.into_iter().next().expect("one pod")),
        0 => Err(WorkloadError::NoPod(what.to_string())),
        n => Err(WorkloadError::ManyPods {
            n,
            what: what.to_string(),
        }),
    }
}

/// The workload that owns a pod: (kind, name), following a ReplicaSet to its Deployment.
pub fn controller_of(refs: &[OwnerReference]) -> Option<(&str, &str)> {
    refs.iter()
        .find(|r| r.controller == Some(true))
        .map(|r| (r.kind.as_str(), r.name.as_str()))
}

async fn selector_of(
    client: &Client,
    ns: &str,
    t: &WorkloadTarget,
) -> Result<LabelSelector, WorkloadError> {
    let name = t.name.as_deref().unwrap_or_default();
    let reading = |kind: &'static str| move || format!("reading {kind} {name}");
    let selector = match t.kind {
        WorkloadKind::StatefulSet => call(
            reading("StatefulSet"),
            Api::<StatefulSet>::namespaced(client.clone(), ns).get(name),
        )
        .await?
        .spec
        .map(|s| s.selector),
        WorkloadKind::Deployment => call(
            reading("Deployment"),
            Api::<Deployment>::namespaced(client.clone(), ns).get(name),
        )
        .await?
        .spec
        .map(|s| s.selector),
        WorkloadKind::DaemonSet => call(
            reading("DaemonSet"),
            Api::<DaemonSet>::namespaced(client.clone(), ns).get(name),
        )
        .await?
        .spec
        .map(|s| s.selector),
        WorkloadKind::Pod => None,
    };
    selector
        .ok_or_else(|| WorkloadError::Selector(format!("{:?} {name} has no pod selector", t.kind)))
}

/// The validator's pod.
pub(crate) async fn resolve_pod(
    client: &Client,
    ns: &str,
    t: &WorkloadTarget,
) -> Result<Pod, WorkloadError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let (selector, what) = match (&t.kind, &t.name, &t.selector) {
        (WorkloadKind::Pod, Some(name), _) => {
            return call(|| format!("reading pod {name}"), pods.get(name)).await;
        }
        (_, _, Some(sel)) => (sel.clone(), "the target's selector".to_string()),
        (kind, Some(name), None) => (
            selector_of(client, ns, t).await?,
            format!("{kind:?} {name}"),
        ),
        (_, None, None) => {
            return Err(WorkloadError::Selector(
                "the workload target names no pod and has no selector".into(),
            ));
        }
    };
    let lp = ListParams::default().labels(&selector_string(&selector)?);
    let list = call(|| "listing pods".to_string(), pods.list(&lp)).await?;
    the_pod(list.items, &what)
}

/// The workload a `rolloutRestart` restarts: the target itself, or the owner of its pod.
async fn resolve_owner(
    client: &Client,
    ns: &str,
    t: &WorkloadTarget,
) -> Result<(WorkloadKind, String), WorkloadError> {
    if let (
        WorkloadKind::StatefulSet | WorkloadKind::Deployment | WorkloadKind::DaemonSet,
        Some(name),
    ) = (t.kind, &t.name)
    {
        return Ok((t.kind, name.clone()));
    }
    let pod = resolve_pod(client, ns, t).await?;
    let refs = pod.metadata.owner_references.clone().unwrap_or_default();
    match controller_of(&refs) {
        Some(("StatefulSet", n)) => Ok((WorkloadKind::StatefulSet, n.into())),
        Some(("DaemonSet", n)) => Ok((WorkloadKind::DaemonSet, n.into())),
        Some(("ReplicaSet", rs)) => {
            let rs = call(
                || format!("reading ReplicaSet {rs}"),
                Api::<ReplicaSet>::namespaced(client.clone(), ns).get(rs),
            )
            .await?;
            match controller_of(rs.metadata.owner_references.as_deref().unwrap_or_default()) {
                Some(("Deployment", d)) => Ok((WorkloadKind::Deployment, d.into())),
                _ => Err(WorkloadError::Unrestartable(format!(
                    "ReplicaSet {} has no owning Deployment to restart",
                    rs.name_any()
                ))),
            }
        }
        Some((kind, n)) => Err(WorkloadError::Unrestartable(format!(
            "pod {} is owned by {kind} {n}, which Vigil cannot restart",
            pod.name_any()
        ))),
        None => Err(WorkloadError::Unrestartable(format!(
            "pod {} has no owning workload to restart; use evictPod or deletePod",
            pod.name_any()
        ))),
    }
}

/// Runs a pod or workload action. `retry` is when to try again after a PodDisruptionBudget
/// refused an eviction.
pub async fn act(
    client: &Client,
    ns: &str,
    target: &WorkloadTarget,
    action: RemediationAction,
    how: &How<'_>,
) -> Result<Done, WorkloadError> {
    let retry = how.retry;
    match action {
        RemediationAction::EvictPod | RemediationAction::DeletePod => {
            let pod = resolve_pod(client, ns, target).await?;
            let name = pod.name_any();
            let refs = pod.metadata.owner_references.as_deref().unwrap_or_default();
            if let Some(risk) = overlap_risk(&name, refs).filter(|_| !how.allow_overlap) {
                return Err(WorkloadError::OverlapRisk(risk));
            }
            let uid = pod.uid();
            let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
            // The UID precondition makes sure it is this pod, not a replacement of the
            // same name, that goes.
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            if action == RemediationAction::EvictPod {
                let ep = EvictParams {
                    delete_options: Some(dp),
                    ..EvictParams::default()
                };
                let evicted = tokio::time::timeout(super::API_TIMEOUT, pods.evict(&name, &ep));
                match evicted.await {
                    Ok(Ok(_)) => Ok(Done::Acted(format!("Evicted pod {name}"))),
                    Ok(Err(kube::Error::Api(s))) if s.code == 429 => Ok(Done::Blocked {
                        message: format!(
                            "Eviction of pod {name} refused by a PodDisruptionBudget: {}",
                            s.message
                        ),
                        retry,
                    }),
                    Ok(Err(e)) => Err(WorkloadError::Api {
                        what: format!("Eviction of pod {name}"),
                        reason: e.to_string(),
                    }),
                    Err(_) => Err(WorkloadError::Api {
                        what: format!("Eviction of pod {name}"),
                        reason: format!("no answer within {:?}", super::API_TIMEOUT),
                    }),
                }
            } else {
                call(|| format!("Deleting pod {name}"), pods.delete(&name, &dp)).await?;
                Ok(Done::Acted(format!("Deleted pod {name}")))
            }
        }
        RemediationAction::RolloutRestart => {
            let (kind, name) = resolve_owner(client, ns, target).await?;
            rollout_restart(client, ns, kind, &name, how).await
        }
        other => Err(WorkloadError::Unrestartable(format!(
            "{other:?} is not a workload action"
        ))),
    }
}

async fn rollout_restart(
    client: &Client,
    ns: &str,
    kind: WorkloadKind,
    name: &str,
    how: &How<'_>,
) -> Result<Done, WorkloadError> {
    let token = how.token;
    let refuse = |risk: Option<String>| match risk.filter(|_| !how.allow_overlap) {
        Some(risk) => Err(WorkloadError::OverlapRisk(risk)),
        None => Ok(()),
    };
    let patch = serde_json::json!({
        "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: token}}}}
    });
    let pp = PatchParams::default();
    let restarting = || format!("Restarting {kind:?} {name}");
    match kind {
        WorkloadKind::Deployment => {
            let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
            let d = call(|| format!("reading Deployment {name}"), api.get(name)).await?;
            let spec = d.spec.unwrap_or_default();
            let strategy = spec.strategy.as_ref();
            refuse(rollout_risk(
                kind,
                name,
                strategy.and_then(|s| s.type_.as_deref()),
                strategy
                    .and_then(|s| s.rolling_update.as_ref())
                    .and_then(|r| r.max_surge.as_ref()),
            ))?;
            if spec.paused == Some(true) {
                return Err(WorkloadError::Unrestartable(format!(
                    "Deployment {name} is paused (spec.paused): a restart would not roll out; resume it or use evictPod"
                )));
            }
            let current = spec
                .template
                .metadata
                .as_ref()
                .and_then(|m| m.annotations.as_ref())
                .and_then(|a| a.get(RESTARTED_AT_ANNOTATION));
            if current.map(String::as_str) == Some(token) {
                return Ok(Done::Acted(format!(
                    "Deployment {name} already restarted by this attempt"
                )));
            }
            call(restarting, api.patch(name, &pp, &Patch::Merge(&patch))).await?;
        }
        WorkloadKind::StatefulSet => {
            let api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
            call(restarting, api.patch(name, &pp, &Patch::Merge(&patch))).await?;
        }
        WorkloadKind::DaemonSet => {
            let api: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
            let ds = call(|| format!("reading DaemonSet {name}"), api.get(name)).await?;
            let strategy = ds.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
            refuse(rollout_risk(
                kind,
                name,
                strategy.and_then(|s| s.type_.as_deref()),
                strategy
                    .and_then(|s| s.rolling_update.as_ref())
                    .and_then(|r| r.max_surge.as_ref()),
            ))?;
            call(restarting, api.patch(name, &pp, &Patch::Merge(&patch))).await?;
        }
        WorkloadKind::Pod => {
            return Err(WorkloadError::Unrestartable(
                "a bare pod cannot be rolled out".into(),
            ));
        }
    }
    Ok(Done::Acted(format!(
        "Restarted {kind:?} {name} (pod template annotation {RESTARTED_AT_ANNOTATION}={token})"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        LabelSelectorRequirement, ObjectMeta, Time,
    };

    #[test]
    fn selectors_become_query_strings() {
        let sel = LabelSelector {
            match_labels: Some([("app".to_string(), "node".to_string())].into()),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["a".into(), "b".into()]),
                },
                LabelSelectorRequirement {
                    key: "canary".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        };
        assert_eq!(
            selector_string(&sel).unwrap(),
            "app=node,tier in (a,b),!canary"
        );
        assert!(
            selector_string(&LabelSelector::default())
                .unwrap_err()
                .to_string()
                .contains("every pod")
        );
    }

    fn pod(name: &str, terminating: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                deletion_timestamp: terminating.then_some(Time(jiff::Timestamp::UNIX_EPOCH)),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn exactly_one_live_pod() {
        assert_eq!(
            the_pod(vec![pod("a", false), pod("b", true)], "x")
                .unwrap()
                .name_any(),
            "a"
        );
        assert!(
            the_pod(vec![], "StatefulSet v")
                .unwrap_err()
                .to_string()
                .contains("no running pod matches StatefulSet v")
        );
        assert!(
            the_pod(vec![pod("a", false), pod("b", false)], "x")
                .unwrap_err()
                .to_string()
                .contains("2 pods")
        );
    }

    #[test]
    fn owners_are_followed() {
        let r = |kind: &str, controller| OwnerReference {
            kind: kind.into(),
            name: "w".into(),
            controller: Some(controller),
            ..Default::default()
        };
        assert_eq!(
            controller_of(&[r("ConfigMap", false), r("StatefulSet", true)]),
            Some(("StatefulSet", "w"))
        );
        assert_eq!(controller_of(&[r("ReplicaSet", false)]), None);
    }

    #[test]
    fn only_actions_that_can_run_two_copies_are_risky() {
        let owner = |kind: &str, controller| OwnerReference {
            kind: kind.into(),
            name: "w".into(),
            controller: Some(controller),
            ..Default::default()
        };
        // (owner references, risky?)
        let pods: [(Vec<OwnerReference>, bool); 6] = [
            (vec![], false),
            (vec![owner("StatefulSet", true)], false),
            (vec![owner("ReplicaSet", true)], true),
            (vec![owner("DaemonSet", true)], true),
            (vec![owner("ValidatorSet", true)], true),
            // Only the controller counts.
            (vec![owner("ReplicaSet", false)], false),
        ];
        for (refs, risky) in pods {
            let r = overlap_risk("p", &refs);
            assert_eq!(r.is_some(), risky, "{refs:?}: {r:?}");
        }
        let rs = overlap_risk("p", &[owner("ReplicaSet", true)]).unwrap();
        assert!(rs.contains("ReplicaSet w"), "{rs}");

        let int = |n| Some(IntOrString::Int(n));
        let text = |s: &str| Some(IntOrString::String(s.into()));
        use WorkloadKind::{DaemonSet as Ds, Deployment as Dep, StatefulSet as Sts};
        // (kind, strategy type, maxSurge, risky?)
        let rollouts: [(WorkloadKind, Option<&str>, Option<IntOrString>, bool); 12] = [
            (Dep, None, None, true),
            (Dep, Some("RollingUpdate"), None, true),
            (Dep, Some("RollingUpdate"), int(1), true),
            (Dep, Some("RollingUpdate"), text("25%"), true),
            (Dep, Some("RollingUpdate"), int(0), false),
            (Dep, Some("RollingUpdate"), text("0%"), false),
            (Dep, Some("Recreate"), None, false),
            (Ds, None, None, false),
            (Ds, Some("RollingUpdate"), int(1), true),
            (Ds, Some("OnDelete"), int(1), false),
            (Sts, Some("RollingUpdate"), int(1), false),
            (Sts, None, None, false),
        ];
        for (kind, strategy, surge, risky) in rollouts {
            let r = rollout_risk(kind, "w", strategy, surge.as_ref());
            assert_eq!(r.is_some(), risky, "{kind:?} {strategy:?} {surge:?}: {r:?}");
        }
        let e = WorkloadError::OverlapRisk(rs).to_string();
        assert!(
            e.starts_with("refused: pod p belongs to ReplicaSet w"),
            "{e}"
        );
        assert!(e.contains("allowOverlap: true"), "{e}");
    }
}
