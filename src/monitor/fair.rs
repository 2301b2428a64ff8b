//! Probe slots shared fairly between namespaces.
//!
//! At most `concurrency` probes run at once. While slots are free, any probe takes one; once
//! probes wait, each freed slot goes to the namespace with the fewest probes in flight
//! (the longest-waiting probe first among equals). So one namespace whose nodes hold every
//! probe until its timeout (slowloris, black holes) cannot starve the others: their probes
//! get the next slots freed, while the busy namespace still uses whatever nobody else wants.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// The slots; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct FairSlots {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    free: usize,
    running: HashMap<String, usize>,
    /// Waiting probes per namespace: (arrival number, wake-up).
    waiting: HashMap<String, VecDeque<(u64, oneshot::Sender<()>)>>,
    arrivals: u64,
}

/// Which namespace gets a freed slot: among those with probes waiting, `(namespace, probes
/// in flight, arrival of its longest-waiting probe)`, the one with the fewest in flight,
/// then the one waiting longest.
pub fn pick<'a>(waiting: impl IntoIterator<Item = (&'a str, usize, u64)>) -> Option<&'a str> {
    waiting
        .into_iter()
        .min_by_key(|(_, running, first)| (*running, *first))
        .map(|(ns, _, _)| ns)
}

/// A slot held; freed on drop.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<FairSlots>,
    namespace: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release(&self.namespace);
    }
}

/// A probe waiting for a slot. If it is dropped (cancelled) after a slot was handed to it,
/// the slot is passed on.
struct Waiting {
    rx: Option<oneshot::Receiver<()>>,
    slots: Arc<FairSlots>,
    namespace: String,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if rx.try_recv().is_ok() {
                self.slots.release(&self.namespace);
            }
        }
    }
}

impl FairSlots {
    /// `concurrency` slots (at least one).
    pub fn new(concurrency: usize) -> Arc<FairSlots> {
        Arc::new(FairSlots {
            state: Mutex::new(State {
                free: concurrency.max(1),
                ..State::default()
            }),
        })
    }

    /// Probes of `namespace` in flight now.
    #[cfg(test)]
    pub fn running(&self, namespace: &str) -> usize {
        let st = self.state.lock().expect("slots");
        st.running.get(namespace).copied().unwrap_or(0)
    }

    /// Waits for a slot for a probe of `namespace`.
    pub async fn acquire(self: &Arc<Self>, namespace: &str) -> Slot {
        let rx = {
            let mut st = self.state.lock().expect("slots");
            if st.free > 0 && st.waiting.is_empty() {
                st.free -= 1;
                *st.running.entry(namespace.to_string()).or_default() += 1;
                return Slot {
                    slots: self.clone(),
                    namespace: namespace.to_string(),
                };
            }
            let (tx, rx) = oneshot::channel();
            st.arrivals += 1;
            let n = st.arrivals;
            st.waiting
                .entry(namespace.to_string())
                .or_default()
                .push_back((n, tx));
            rx
        };
        let mut waiting = Waiting {
            rx: Some(rx),
            slots: self.clone(),
            namespace: namespace.to_string(),
        };
        let granted = match waiting.rx.as_mut() {
            Some(rx) => rx.await.is_ok(),
            None => false,
        };
        // The slot is ours now (the sender only drops unsent with the whole `FairSlots`).
        waiting.rx = None;
        debug_assert!(granted);
        Slot {
            slots: self.clone(),
            namespace: namespace.to_string(),
        }
    }

    fn release(&self, namespace: &str) {
        let mut st = self.state.lock().expect("slots");
        if let Some(n) = st.running.get_mut(namespace) {
            *n -= 1;
            if *n == 0 {
                st.running.remove(namespace);
            }
        }
        loop {
            let next = {
                let State {
                    running, waiting, ..
                } = &*st;
                pick(waiting.iter().filter_map(|(ns, q)| {
                    let (first, _) = q.front()?;
                    Some((ns.as_str(), running.get(ns).copied().unwrap_or(0), *first))
                }))
                .map(str::to_string)
            };
            let Some(ns) = next else {
                st.free += 1;
                return;
            };
            let tx = match st.waiting.get_mut(&ns) {
                Some(q) => {
                    let tx = q.pop_front().map(|(_, tx)| tx);
                    if q.is_empty() {
                        st.waiting.remove(&ns);
                    }
                    tx
                }
                None => None,
            };
            // A waiter that was cancelled before its turn is skipped.
            if let Some(tx) = tx
                && tx.send(()).is_ok()
            {
                *st.running.entry(ns).or_default() += 1;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// (waiting namespaces as (name, in flight, first arrival), chosen)
    #[test]
    fn a_freed_slot_goes_to_the_least_served_namespace() {
        type Waiting<'a> = &'a [(&'a str, usize, u64)];
        let cases: &[(Waiting, Option<&str>)] = &[
            (&[], None),
            (&[("a", 5, 1)], Some("a")),
            (&[("hostile", 500, 1), ("honest", 3, 9)], Some("honest")),
            (&[("a", 2, 7), ("b", 2, 4)], Some("b")),
            (&[("a", 0, 7), ("b", 1, 4), ("c", 0, 9)], Some("a")),
        ];
        for (waiting, want) in cases {
            assert_eq!(pick(waiting.iter().copied()), *want, "{waiting:?}");
        }
    }

    async fn soon<T>(f: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::time::timeout(Duration::from_millis(50), f)
            .await
            .ok()
    }

    #[tokio::test]
    async fn a_namespace_holding_every_slot_does_not_starve_another() {
        let s = FairSlots::new(3);
        let hostile: Vec<Slot> =
            futures::future::join_all((0..3).map(|_| s.acquire("hostile"))).await;
        assert_eq!(s.running("hostile"), 3);
        // More hostile probes queue first, then an honest one.
        let s2 = s.clone();
        let queued_hostile = tokio::spawn(async move { s2.acquire("hostile").await });
        tokio::task::yield_now().await;
        let s3 = s.clone();
        let honest = tokio::spawn(async move { s3.acquire("honest").await });
        tokio::task::yield_now().await;
        assert_eq!(s.running("honest"), 0, "no slot is free");
        let mut hostile = hostile;
        drop(hostile.pop());
        let honest = honest.await.unwrap();
        assert_eq!(
            s.running("honest"),
            1,
            "the freed slot went to the honest namespace"
        );
        assert_eq!(s.running("hostile"), 2);
        drop(hostile.pop());
        let q = queued_hostile.await.unwrap();
        assert_eq!(s.running("hostile"), 2);
        drop((honest, q, hostile));
        assert_eq!(s.running("hostile") + s.running("honest"), 0);
        // All three slots are free again.
        let all = futures::future::join_all((0..3).map(|_| s.acquire("x"))).await;
        assert_eq!(all.len(), 3);
    }

    #[tokio::test]
    async fn a_cancelled_waiter_passes_its_slot_on() {
        let s = FairSlots::new(1);
        let held = s.acquire("a").await;
        assert!(
            soon(s.acquire("b")).await.is_none(),
            "cancelled while waiting"
        );
        let s2 = s.clone();
        let c = tokio::spawn(async move { s2.acquire("c").await });
        tokio::task::yield_now().await;
        drop(held);
        let c = c.await.unwrap();
        assert_eq!(s.running("c"), 1);
        drop(c);
        assert!(
            soon(s.acquire("d")).await.is_some(),
            "the slot is free again"
        );
    }
}
