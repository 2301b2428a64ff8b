//! Which namespaces the operator watches: all of them, or a list.
//!
//! A list is one watch per namespace, merged into one event stream that a single reflector
//! store can take. Each watch relists on its own (start, a desync), but a store swaps its
//! whole content on a relist's end, which would drop every other namespace's objects. So
//! the merge hands the store one relist (the first full listing of every namespace) and
//! turns each later per-namespace relist into plain applies plus deletes for the objects
//! that relist no longer holds.

use std::collections::BTreeSet;

use futures::{Stream, StreamExt, stream::BoxStream};
use kube::{
    Api, Client, Resource, ResourceExt,
    core::NamespaceResourceScope,
    runtime::{WatchStreamExt, watcher},
};
use serde::de::DeserializeOwned;

/// The namespaces the operator handles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace (a ClusterRole).
    Cluster,
    /// Only these namespaces, each with its own Role; never empty.
    Namespaces(Vec<String>),
}

impl Scope {
    /// From `--namespace` values: none means the whole cluster; duplicates and blanks go.
    pub fn from_args(namespaces: &[String]) -> Self {
        let list: BTreeSet<String> = namespaces
            .iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect();
        if list.is_empty() {
            Scope::Cluster
        } else {
            Scope::Namespaces(list.into_iter().collect())
        }
    }

    /// Watch events of `K` in this scope, restarted with kube's default backoff.
    pub fn watch<K>(&self, client: &Client, config: watcher::Config) -> WatchStream<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + DeserializeOwned
            + Clone
            + std::fmt::Debug
            + Send
            + 'static,
    {
        match self {
            Scope::Cluster => watcher(Api::<K>::all(client.clone()), config)
                .default_backoff()
                .boxed(),
            Scope::Namespaces(list) => {
                let streams = list.iter().enumerate().map(|(i, ns)| {
                    watcher(Api::<K>::namespaced(client.clone(), ns), config.clone())
                        .default_backoff()
                        .map(move |e| (i, e))
                        .boxed()
                });
                merge(list.clone(), futures::stream::select_all(streams)).boxed()
            }
        }
    }
}

/// Watch events as a reflector takes them.
pub type WatchStream<K> = BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>;

/// Merges the event streams of the namespaces `names` (each event tagged with its
/// namespace's index) into one stream with a single initial listing; see the module's
/// comment.
pub fn merge<K, S>(
    names: Vec<String>,
    events: S,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Send + 'static,
    S: Stream<Item = (usize, Result<watcher::Event<K>, watcher::Error>)> + Send,
{
    let mut merge = Merge::new(names);
    futures::stream::once(futures::future::ready(Ok(watcher::Event::Init))).chain(events.flat_map(
        move |(i, event)| {
            let out: Vec<_> = match event {
                Ok(event) => merge.on(i, event).into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(out)
        },
    ))
}

/// The merge's state: which names each namespace holds, as far as its events told.
struct Merge {
    namespaces: Vec<Namespace>,
    /// True once every namespace was listed once and the store got its one `InitDone`.
    listed: bool,
}

struct Namespace {
    name: String,
    /// Names present, by the events so far.
    known: BTreeSet<String>,
    /// Names listed by a relist in progress.
    relist: Option<BTreeSet<String>>,
    /// Deleted (or gone in a relist) before the one full listing: the store's relist
    /// buffer cannot drop them, so they are deleted right after it unless they came back.
    gone_early: BTreeSet<String>,
    listed_once: bool,
}

impl Merge {
    fn new(names: Vec<String>) -> Self {
        Merge {
            namespaces: names
                .into_iter()
                .map(|name| Namespace {
                    name,
                    known: BTreeSet::new(),
                    relist: None,
                    gone_early: BTreeSet::new(),
                    listed_once: false,
                })
                .collect(),
            listed: false,
        }
    }

    /// The events for the store that namespace `i`'s `event` makes.
    fn on<K>(&mut self, i: usize, event: watcher::Event<K>) -> Vec<watcher::Event<K>>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        use watcher::Event::*;
        let listed = self.listed;
        let Some(ns) = self.namespaces.get_mut(i) else {
            return Vec::new();
        };
        // Before the one full listing, everything goes into the store's relist buffer.
        let apply = |o| if listed { Apply(o) } else { InitApply(o) };
        match event {
            Init => {
                ns.relist = Some(BTreeSet::new());
                Vec::new()
            }
            InitApply(o) => {
                let name = o.name_any();
                if let Some(relist) = &mut ns.relist {
                    relist.insert(name.clone());
                }
                ns.known.insert(name);
                vec![apply(o)]
            }
            Apply(o) => {
                ns.known.insert(o.name_any());
                vec![apply(o)]
            }
            Delete(o) => {
                ns.known.remove(&o.name_any());
                if listed {
                    vec![Delete(o)]
                } else {
                    ns.gone_early.insert(o.name_any());
                    Vec::new()
                }
            }
            InitDone => {
                let relisted = ns.relist.take().unwrap_or_default();
                let gone: Vec<String> = ns.known.difference(&relisted).cloned().collect();
                ns.known = relisted;
                ns.listed_once = true;
                if listed {
                    return gone
                        .iter()
                        .filter_map(|n| tombstone(&ns.name, n).map(Delete))
                        .collect();
                }
                ns.gone_early.extend(gone);
                if !self.namespaces.iter().all(|n| n.listed_once) {
                    return Vec::new();
                }
                self.listed = true;
                let mut out = vec![InitDone];
                for ns in &mut self.namespaces {
                    for name in std::mem::take(&mut ns.gone_early) {
                        if !ns.known.contains(&name) {
                            out.extend(tombstone(&ns.name, &name).map(Delete));
                        }
                    }
                }
                out
            }
        }
    }
}

/// An object standing for `namespace/name` in a delete: only its identity is read.
fn tombstone<K>(namespace: &str, name: &str) -> Option<K>
where
    K: Resource<DynamicType = ()> + DeserializeOwned,
{
    let meta = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"name": name, "namespace": namespace},
    });
    // Every type watched here is a `DeserializeGuard` (built from metadata alone when
    // fields are missing) or has no required fields; should one not be, the object stays
    // cached until the next restart, which is said.
    serde_json::from_value(meta)
        .inspect_err(|e| {
            tracing::warn!(namespace, name, kind = %K::kind(&()), error = %e,
                "a deleted object stays cached: it cannot be named without its fields")
        })
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector::store;
    use watcher::Event::{self, *};

    fn cm(ns: &str, name: &str) -> ConfigMap {
        ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    const NS: [&str; 2] = ["a", "b"];

    /// Feeds `(namespace index, event)` through the merge into a store; returns its
    /// sorted `ns/name` content and whether it became ready.
    fn run(events: Vec<(usize, Event<ConfigMap>)>) -> (Vec<String>, bool) {
        let (reader, mut writer) = store::<ConfigMap>();
        let merged = merge(
            NS.iter().map(|s| s.to_string()).collect(),
            futures::stream::iter(events.into_iter().map(|(i, e)| (i, Ok(e)))),
        );
        let out: Vec<_> = futures::executor::block_on(merged.collect());
        for e in out {
            writer.apply_watcher_event(&e.expect("no error fed"));
        }
        let mut names: Vec<String> = reader
            .state()
            .iter()
            .map(|o| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()))
            .collect();
        names.sort();
        let ready =
            futures::executor::block_on(futures::future::poll_immediate(reader.wait_until_ready()))
                .is_some();
        (names, ready)
    }

    fn list(i: usize, names: &[&str]) -> Vec<(usize, Event<ConfigMap>)> {
        let mut v = vec![(i, Init)];
        v.extend(names.iter().map(|n| (i, InitApply(cm(NS[i], n)))));
        v.push((i, InitDone));
        v
    }

    #[test]
    fn merged_listing() {
        type Case = (
            &'static str,
            Vec<(usize, Event<ConfigMap>)>,
            &'static [&'static str],
            bool,
        );
        let cases: Vec<Case> = vec![
            (
                "one namespace listed: not ready, nothing swapped in",
                list(0, &["x"]),
                &[],
                false,
            ),
            (
                "both listed: one store with both",
                [list(0, &["x", "y"]), list(1, &["z"])].concat(),
                &["a/x", "a/y", "b/z"],
                true,
            ),
            (
                "interleaved listings",
                vec![
                    (0, Init),
                    (1, Init),
                    (1, InitApply(cm("b", "z"))),
                    (0, InitApply(cm("a", "x"))),
                    (1, InitDone),
                    (0, InitDone),
                ],
                &["a/x", "b/z"],
                true,
            ),
            (
                "a relist of one namespace leaves the other's objects",
                [list(0, &["x", "y"]), list(1, &["z"]), list(0, &["y"])].concat(),
                &["a/y", "b/z"],
                true,
            ),
            (
                "a relist adds, and applies during it count",
                [
                    list(0, &["x"]),
                    list(1, &[]),
                    vec![
                        (0, Init),
                        (0, InitApply(cm("a", "w"))),
                        (1, Apply(cm("b", "v"))),
                    ],
                ]
                .concat(),
                &["a/w", "a/x", "b/v"],
                true,
            ),
            (
                "deleted before the full listing: gone after it",
                [
                    list(0, &["x", "y"]),
                    vec![(0, Delete(cm("a", "y")))],
                    list(1, &["z"]),
                ]
                .concat(),
                &["a/x", "b/z"],
                true,
            ),
            (
                "deleted and created again before the full listing: present",
                [
                    list(0, &["x"]),
                    vec![(0, Delete(cm("a", "x"))), (0, Apply(cm("a", "x")))],
                    list(1, &[]),
                ]
                .concat(),
                &["a/x"],
                true,
            ),
            (
                "relisted without an object before the full listing: gone",
                [list(0, &["x", "y"]), list(0, &["x"]), list(1, &[])].concat(),
                &["a/x"],
                true,
            ),
            (
                "deletes after the full listing",
                [
                    list(0, &["x"]),
                    list(1, &["z"]),
                    vec![(1, Delete(cm("b", "z")))],
                ]
                .concat(),
                &["a/x"],
                true,
            ),
            (
                "an unknown index is dropped",
                [
                    list(0, &["x"]),
                    list(1, &[]),
                    vec![(7, Apply(cm("c", "q")))],
                ]
                .concat(),
                &["a/x"],
                true,
            ),
        ];
        for (what, events, want, ready) in cases {
            let (got, got_ready) = run(events);
            assert_eq!(got, want, "{what}");
            assert_eq!(got_ready, ready, "{what}");
        }
    }

    #[test]
    fn errors_pass_through() {
        let events = vec![
            (0, Ok(Init)),
            (0, Err(watcher::Error::NoResourceVersion)),
            (0, Ok(InitDone)),
        ];
        let merged = merge::<ConfigMap, _>(vec!["a".into()], futures::stream::iter(events));
        let out: Vec<_> = futures::executor::block_on(merged.collect());
        assert!(matches!(out[0], Ok(Init)));
        assert!(matches!(out[1], Err(watcher::Error::NoResourceVersion)));
        assert!(matches!(out[2], Ok(InitDone)));
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn scope_from_args() {
        assert_eq!(Scope::from_args(&[]), Scope::Cluster);
        assert_eq!(Scope::from_args(&[" ".into()]), Scope::Cluster);
        assert_eq!(
            Scope::from_args(&["b".into(), "a".into(), "b".into()]),
            Scope::Namespaces(vec!["a".into(), "b".into()])
        );
    }

    #[test]
    fn tombstones_of_guarded_custom_resources() {
        use crate::api::MonitoredValidator;
        use kube::core::DeserializeGuard;
        let t: DeserializeGuard<MonitoredValidator> = tombstone("a", "x").expect("named");
        assert_eq!(t.name_any(), "x");
        assert_eq!(t.namespace().as_deref(), Some("a"));
        let j: k8s_openapi::api::batch::v1::Job = tombstone("a", "j").expect("named");
        assert_eq!(j.name_any(), "j");
    }
}
