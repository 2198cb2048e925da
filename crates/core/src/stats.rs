//! Per model-version counters in Triton's statistics shape. Written with atomics
//! from the request path and the workers; read as a snapshot by the faces.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A count and the total time it took, in nanoseconds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Timed {
    pub count: u64,
    pub ns: u64,
}

#[derive(Debug, Default)]
struct TimedCell {
    count: AtomicU64,
    ns: AtomicU64,
}

impl TimedCell {
    fn add(&self, n: u64, d: Duration) {
        self.count.fetch_add(n, Relaxed);
        self.ns.fetch_add(d.as_nanos() as u64, Relaxed);
    }
    fn get(&self) -> Timed {
        Timed {
            count: self.count.load(Relaxed),
            ns: self.ns.load(Relaxed),
        }
    }
}

/// Live counters of one model version. They outlive loads and unloads.
#[derive(Debug, Default)]
pub struct VersionStats {
    success: TimedCell,
    fail: TimedCell,
    queue: TimedCell,
    compute: TimedCell,
    inference_count: AtomicU64,
    execution_count: AtomicU64,
    last_inference_ms: AtomicU64,
    batches: Mutex<BTreeMap<usize, Timed>>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub success: Timed,
    pub fail: Timed,
    pub queue: Timed,
    pub compute: Timed,
    /// Requests' rows run (a batch of 3 rows counts 3).
    pub inference_count: u64,
    /// Batches run by the backend.
    pub execution_count: u64,
    pub last_inference_ms: u64,
    /// Per batch size: how many batches of that size ran and their compute time.
    pub batches: BTreeMap<usize, Timed>,
}

impl VersionStats {
    pub fn record_request(&self, ok: bool, took: Duration) {
        if ok {
            self.success.add(1, took);
        } else {
            self.fail.add(1, took);
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        self.last_inference_ms.store(now, Relaxed);
    }

    /// One batch ran: `rows` rows from `requests` requests that waited `queued` in all.
    pub fn record_batch(&self, requests: u64, rows: usize, queued: Duration, compute: Duration) {
        self.queue.add(requests, queued);
        self.compute.add(requests, compute);
        self.inference_count.fetch_add(rows as u64, Relaxed);
        self.execution_count.fetch_add(1, Relaxed);
        let mut batches = self.batches.lock().unwrap_or_else(|p| p.into_inner());
        let entry = batches.entry(rows).or_default();
        entry.count += 1;
        entry.ns += compute.as_nanos() as u64;
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            success: self.success.get(),
            fail: self.fail.get(),
            queue: self.queue.get(),
            compute: self.compute.get(),
            inference_count: self.inference_count.load(Relaxed),
            execution_count: self.execution_count.load(Relaxed),
            last_inference_ms: self.last_inference_ms.load(Relaxed),
            batches: self
                .batches
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}
