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

/// Upper bounds, in seconds, of the request-latency histogram's buckets: from
/// a microsecond model's answer to a long generation.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

/// Live counters of one model version. They outlive loads and unloads.
#[derive(Debug, Default)]
pub struct VersionStats {
    /// Requests by the first bucket whose bound holds their duration; the
    /// last cell counts the ones above every bound.
    latency: [AtomicU64; LATENCY_BUCKETS.len() + 1],
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
    /// Requests per latency bucket (not cumulative), as `LATENCY_BUCKETS`,
    /// then the ones above the last bound.
    pub latency: Vec<u64>,
}

impl VersionStats {
    pub fn record_request(&self, ok: bool, took: Duration) {
        let secs = took.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|&bound| secs <= bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency[bucket].fetch_add(1, Relaxed);
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
            latency: self.latency.iter().map(|c| c.load(Relaxed)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_land_in_the_bucket_that_holds_them() {
        let s = VersionStats::default();
        s.record_request(true, Duration::from_micros(300));
        s.record_request(false, Duration::from_millis(1));
        s.record_request(true, Duration::from_secs(120));
        let l = s.snapshot().latency;
        assert_eq!(l.len(), LATENCY_BUCKETS.len() + 1);
        assert_eq!((l[0], l[1], l[LATENCY_BUCKETS.len()]), (1, 1, 1));
        assert_eq!(l.iter().sum::<u64>(), 3);
    }
}
