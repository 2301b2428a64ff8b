//! When each validator is probed. Each has a fixed phase inside its interval (a stable hash
//! of its name, so load spreads evenly and stays put across restarts and versions). The
//! next due time is the previous one plus the interval, so slow probes never make the
//! schedule drift; a probe still running when its next turn comes is skipped (counted),
//! never stacked. At most `concurrency` probes run at once. On stop, probes and actions in
//! flight are given a deadline to finish.

use super::{Key, Monitor};
use std::cmp::Reverse;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Longest a stop waits for probes and actions in flight (an action still running then
/// is recorded `Interrupted`).
pub const STOP_DEADLINE: Duration = Duration::from_secs(3);

/// A validator's offset inside its interval: FNV-1a of `namespace/name`, which (unlike
/// the standard library's hasher) is the same in every process and every build.
pub fn phase(key: &Key, interval: Duration) -> Duration {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.0.bytes().chain([b'/']).chain(key.1.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let ms = interval.as_millis().clamp(1, u128::from(u64::MAX)) as u64;
    Duration::from_millis(h % ms)
}

/// Whether a validator whose status was last written at `last` is due a facts refresh at
/// `now` (both measured from one epoch): once in each `every`-long period, at the
/// validator's own `offset` into it ([`phase`]). Validators written at the same moment (a
/// fleet created together, or found after a restart) so refresh spread over the period
/// instead of all in one probe round: at 10,000 validators that round was 10,000 status
/// writes queued at once, and the memory of the queue stayed with the allocator.
pub fn refresh_due(last: Duration, now: Duration, every: Duration, offset: Duration) -> bool {
    let period = every.as_nanos().max(1);
    let slot = |t: Duration| (t.as_nanos() + offset.as_nanos()) / period;
    slot(now) > slot(last)
}

/// Counts tasks in flight, wakes a waiter when none is left, and cancels the rest at a
/// stop's deadline (so that nothing outlives the stop holding the monitor, its notice
/// senders or its view of the lease).
pub struct Tracker {
    running: Arc<(AtomicUsize, Notify)>,
    cancel: tokio::sync::watch::Sender<bool>,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker {
            running: Arc::default(),
            cancel: tokio::sync::watch::Sender::new(false),
        }
    }
}

/// Held by a task while it runs.
pub struct Running(Arc<(AtomicUsize, Notify)>);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.0.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.1.notify_waiters();
        }
    }
}

impl Tracker {
    /// Marks one task as running until the guard drops.
    pub fn enter(&self) -> Running {
        self.running.0.fetch_add(1, Ordering::AcqRel);
        Running(self.running.clone())
    }

    /// Spawns `fut` as a tracked task; [`Tracker::cancel`] drops it wherever it is.
    pub fn spawn(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        let guard = self.enter();
        let mut cancelled = self.cancel.subscribe();
        tokio::spawn(async move {
            tokio::select! {
                _ = fut => {}
                _ = cancelled.wait_for(|c| *c) => {}
            }
            drop(guard);
        });
    }

    /// Cancels every tracked task, now and from now on.
    pub fn cancel(&self) {
        self.cancel.send_replace(true);
    }

    /// Tasks running now.
    pub fn running(&self) -> usize {
        self.running.0.load(Ordering::Acquire)
    }

    /// Waits until no task runs, or `deadline`; true when none runs.
    pub async fn idle(&self, deadline: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.running.1.notified();
                if self.running() == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(deadline, wait).await.is_ok()
    }
}

impl Monitor {
    /// Runs the schedule until `stop` resolves, then waits (up to [`STOP_DEADLINE`]) for
    /// the probes and actions in flight, and records an action that did not finish as
    /// `Interrupted`.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let next = {
                let st = self.state.lock().expect("monitor state");
                st.heap.peek().map(|Reverse((due, _))| *due)
            };
            let sleep = async {
                match next {
                    Some(due) => tokio::time::sleep_until(due).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut stop => break,
                _ = self.wake.notified() => continue,
                _ = sleep => {}
            }
            self.start_due_probes();
        }
        if !self.tasks.idle(STOP_DEADLINE).await {
            tracing::warn!(
                running = self.tasks.running(),
                "probes or actions still running at the stop deadline"
            );
            self.interrupt_actions().await;
            self.tasks.cancel();
            self.tasks.idle(Duration::from_secs(1)).await;
        }
    }

    fn start_due_probes(self: &Arc<Self>) {
        let now = Instant::now();
        let mut st = self.state.lock().expect("monitor state");
        while let Some(Reverse((due, _))) = st.heap.peek() {
            if *due > now {
                break;
            }
            let Some(Reverse((due, key))) = st.heap.pop() else {
                break;
            };
            let Some(e) = st.entries.get_mut(&key) else {
                continue;
            };
            if e.blocked || e.next_due != due {
                continue; // superseded by a rescheduling
            }
            let interval = e.config.interval;
            let mut next = due + interval;
            while next <= now {
                next += interval; // fell behind by a whole interval: skip, don't burst
            }
            e.next_due = next;
            let running = e.running;
            let config = e.config.clone();
            st.heap.push(Reverse((next, key.clone())));
            if running {
                self.metrics.probes_skipped.inc();
                continue;
            }
            if let Some(e) = st.entries.get_mut(&key) {
                e.running = true;
            }
            let me = self.clone();
            self.tasks
                .spawn(async move { me.probe_one(key, config, due).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshes_come_once_per_period_at_the_validators_phase() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // (last, now, every, offset, due)
        let table = [
            // Offset 0: the period's boundaries are multiples of it.
            (s(0), s(59), s(60), s(0), false),
            (s(0), s(60), s(60), s(0), true),
            (s(61), s(119), s(60), s(0), false),
            (s(61), s(120), s(60), s(0), true),
            // Offset 15 s: the boundaries move 15 s earlier (45 s, 105 s, ...).
            (s(0), s(44), s(60), s(15), false),
            (s(0), s(45), s(60), s(15), true),
            (s(45), s(104), s(60), s(15), false),
            (s(45), s(105), s(60), s(15), true),
            // Once per period, even when the last write was just before the boundary.
            (ms(44_999), s(45), s(60), s(15), true),
            // Several periods missed (no probe ran): one refresh, not several.
            (s(0), s(600), s(60), s(15), true),
            // A clock that did not move, or a last write "after" now: never due.
            (s(10), s(10), s(60), s(15), false),
            (s(20), s(10), s(60), s(15), false),
            // A zero period cannot divide by zero (the caller skips it anyway).
            (s(0), s(1), s(0), s(0), true),
        ];
        for (last, now, every, offset, due) in table {
            assert_eq!(
                refresh_due(last, now, every, offset),
                due,
                "last {last:?} now {now:?} every {every:?} offset {offset:?}"
            );
        }
    }

    #[test]
    fn a_fleet_written_at_once_refreshes_spread_over_the_period() {
        // 10,000 validators all written at 0; a probe of each every 10 s; refresh 10 m.
        let every = Duration::from_secs(600);
        let keys: Vec<Key> = (0..10_000)
            .map(|i| ("ns".to_string(), format!("val-{i}")))
            .collect();
        let mut last = vec![Duration::ZERO; keys.len()];
        let mut per_round = Vec::new();
        for round in 1..=120u64 {
            let now = Duration::from_secs(round * 10);
            let mut due = 0;
            for (k, l) in keys.iter().zip(last.iter_mut()) {
                if refresh_due(*l, now, every, phase(k, every)) {
                    *l = now;
                    due += 1;
                }
            }
            per_round.push(due);
        }
        // Every validator refreshes once in each period...
        assert_eq!(per_round[..60].iter().sum::<usize>(), 10_000);
        assert_eq!(per_round[60..].iter().sum::<usize>(), 10_000);
        // ...about 10,000 / 60 per probe round, never the whole fleet in one.
        let most = *per_round.iter().max().unwrap();
        assert!(most < 300, "{most} refreshes in one round: {per_round:?}");
    }

    #[test]
    fn phases_are_stable_and_spread() {
        let key = |n: &str| ("ns".to_string(), n.to_string());
        let i = Duration::from_secs(10);
        // The same in every process and build: a restart keeps the schedule.
        assert_eq!(phase(&key("val-0"), i), phase(&key("val-0"), i));
        assert_eq!(
            phase(&key("val-0"), i),
            Duration::from_millis(fnv("ns/val-0") % 10_000)
        );
        let phases: std::collections::HashSet<_> = (0..100)
            .map(|n| phase(&key(&format!("val-{n}")), i))
            .collect();
        assert!(phases.len() > 90, "spread over the interval");
        assert!(phases.iter().all(|p| *p < i));
    }

    fn fnv(s: &str) -> u64 {
        s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }

    #[tokio::test]
    async fn a_stop_waits_for_tasks_up_to_a_deadline() {
        let t = Tracker::default();
        assert!(t.idle(Duration::from_millis(10)).await);
        t.spawn(async { tokio::time::sleep(Duration::from_millis(50)).await });
        assert_eq!(t.running(), 1);
        assert!(t.idle(Duration::from_secs(5)).await, "it finished in time");
        t.spawn(async { tokio::time::sleep(Duration::from_secs(60)).await });
        assert!(
            !t.idle(Duration::from_millis(50)).await,
            "the deadline ends the wait"
        );
    }
}
