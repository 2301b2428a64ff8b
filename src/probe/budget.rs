//! The process-wide memory budget of probe responses: a semaphore counted in bytes.
//!
//! Every response body takes permits as it grows (its buffer's capacity, so a slowloris
//! body holds only what it has sent) and gives them back when it is dropped; decoding takes
//! more for what the decoded form costs, until the probe ends. With the per-scrape and
//! per-document limits (see `http::json_shape` and `prom::parse_limited`), this bounds the
//! memory all probes in flight can hold at once, whatever the nodes send: a body that
//! cannot get its bytes waits, and fails with a timeout at the probe deadline.

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Default budget: an eighth of the 256 MiB the chart gives the operator pod (what is not
/// counted here, the HTTP client's own buffers and the allocator's slack, took about as much
/// again under 20 hostile validators: tests/hostile_nodes.rs).
pub const DEFAULT_BUDGET_BYTES: u64 = 32 << 20;
/// Smallest budget: one body of the largest `maxResponseBytes` (4 MiB) and its decoding.
pub const MIN_BUDGET_BYTES: u64 = 16 << 20;
/// Largest budget (the semaphore counts bytes in a `u32` per acquisition).
pub const MAX_BUDGET_BYTES: u64 = 4 << 30;

static PROCESS: std::sync::OnceLock<Budget> = std::sync::OnceLock::new();

/// Sets the budget of every [`super::Prober`] built from now on (once, at start-up, from
/// `--probe-memory-budget`); `false` if one was set.
pub fn configure(bytes: u64) -> bool {
    PROCESS.set(Budget::new(bytes)).is_ok()
}

/// The process's budget: one for all probers, so that all probes share it.
pub fn process() -> Budget {
    PROCESS.get_or_init(Budget::default).clone()
}

/// A byte budget shared by every probe of a [`super::Prober`] (and its clones).
#[derive(Clone, Debug)]
pub struct Budget {
    sem: Arc<Semaphore>,
    total: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(DEFAULT_BUDGET_BYTES)
    }
}

impl Budget {
    /// A budget of `bytes`, clamped to 16 MiB..4 GiB.
    pub fn new(bytes: u64) -> Budget {
        let total = bytes.clamp(MIN_BUDGET_BYTES, MAX_BUDGET_BYTES);
        Budget {
            sem: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// The whole budget in bytes.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes not held by any response now.
    pub fn available(&self) -> u64 {
        self.sem.available_permits() as u64
    }

    /// Waits for `bytes` (at most the whole budget, so one large request can always
    /// proceed once it is alone). Callers bound the wait by the probe deadline.
    pub(crate) async fn take(&self, bytes: u64) -> Held {
        let n = clamp_request(bytes, self.total);
        if n == 0 {
            return Held::default();
        }
        match self.sem.clone().acquire_many_owned(n).await {
            Ok(p) => Held(Some(p)),
            // The semaphore is never closed.
            Err(_) => Held::default(),
        }
    }
}

/// What one acquisition asks of the semaphore: at most the whole budget.
fn clamp_request(bytes: u64, total: u64) -> u32 {
    u32::try_from(bytes.min(total)).unwrap_or(u32::MAX)
}

/// Permits held; given back on drop.
#[derive(Debug, Default)]
pub(crate) struct Held(Option<OwnedSemaphorePermit>);

impl Held {
    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.0.as_ref().map_or(0, |p| p.num_permits() as u64)
    }

    /// Adds `other`'s permits to these.
    pub fn merge(&mut self, other: Held) {
        match (&mut self.0, other.0) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
    }
}

/// Permits one probe holds until it ends: the decoded documents of its replies live that
/// long.
#[derive(Debug, Default)]
pub(crate) struct ProbeHold(Mutex<Held>);

impl ProbeHold {
    pub fn keep(&self, held: Held) {
        if let Ok(mut mine) = self.0.lock() {
            mine.merge(held);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_clamped_to_the_budget() {
        // (bytes asked, budget) -> permits asked
        let cases = [
            (0, 64 << 20, 0),
            (4096, 64 << 20, 4096),
            (100 << 20, 64 << 20, 64 << 20),
            (u64::MAX, MAX_BUDGET_BYTES, u32::MAX),
        ];
        for (bytes, total, want) in cases {
            assert_eq!(clamp_request(bytes, total), want, "{bytes} of {total}");
        }
        assert_eq!(Budget::new(1).total(), MIN_BUDGET_BYTES);
        assert_eq!(Budget::new(u64::MAX).total(), MAX_BUDGET_BYTES);
    }

    #[tokio::test]
    async fn permits_come_back_on_drop_and_a_full_budget_waits() {
        let b = Budget::new(MIN_BUDGET_BYTES);
        let mut h = b.take(1 << 20).await;
        h.merge(b.take(2 << 20).await);
        assert_eq!(h.bytes(), 3 << 20);
        assert_eq!(b.available(), MIN_BUDGET_BYTES - (3 << 20));
        drop(h);
        assert_eq!(b.available(), MIN_BUDGET_BYTES);
        let whole = b.take(u64::MAX).await;
        assert_eq!(whole.bytes(), MIN_BUDGET_BYTES);
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), b.take(1)).await;
        assert!(
            waiting.is_err(),
            "an exhausted budget makes the next body wait"
        );
        drop(whole);
        assert_eq!(b.take(1).await.bytes(), 1);
    }
}
