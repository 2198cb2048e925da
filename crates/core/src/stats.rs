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
    /// Generations by the bucket of their first token's wait, as `latency`.
    first_token: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    first_token_ns: AtomicU64,
    generated_tokens: AtomicU64,
    /// Generations started and not yet ended (decoding or waiting for a slot).
    generations: AtomicU64,
    /// Tensor requests accepted and not yet answered (queued or running).
    in_flight: AtomicU64,
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
    /// Generations per time-to-first-token bucket, as `latency`, and their
    /// total wait.
    pub first_token: Vec<u64>,
    pub first_token_ns: u64,
    pub generated_tokens: u64,
    /// Generations under way now.
    pub generations: u64,
    /// Tensor requests queued or running now.
    pub in_flight: u64,
}

/// The bucket of `LATENCY_BUCKETS` that holds `took` (the last one, past
/// them all, when none does).
pub fn latency_bucket(took: Duration) -> usize {
    let secs = took.as_secs_f64();
    LATENCY_BUCKETS
        .iter()
        .position(|&bound| secs <= bound)
        .unwrap_or(LATENCY_BUCKETS.len())
}

impl VersionStats {
    pub fn record_request(&self, ok: bool, took: Duration) {
        self.latency[latency_bucket(took)].fetch_add(1, Relaxed);
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

    /// A generation's first token came `after` its start.
    pub fn record_first_token(&self, after: Duration) {
        self.first_token[latency_bucket(after)].fetch_add(1, Relaxed);
        self.first_token_ns
            .fetch_add(after.as_nanos() as u64, Relaxed);
    }

    pub fn record_token(&self) {
        self.generated_tokens.fetch_add(1, Relaxed);
    }

    /// Counts a tensor request as in flight until the guard drops, which a
    /// request its client abandoned does too.
    pub fn begin(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(&self.in_flight)
    }

    pub fn generation_started(&self) {
        self.generations.fetch_add(1, Relaxed);
    }

    pub fn generation_ended(&self) {
        self.generations.fetch_sub(1, Relaxed);
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
            first_token: self.first_token.iter().map(|c| c.load(Relaxed)).collect(),
            first_token_ns: self.first_token_ns.load(Relaxed),
            generated_tokens: self.generated_tokens.load(Relaxed),
            generations: self.generations.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
        }
    }
}

impl StatsSnapshot {
    /// Requests the version is answering now: tensor requests waiting for a
    /// load, queued or running, and generations.
    pub fn busy(&self) -> u64 {
        self.in_flight + self.generations
    }
}

/// A request in flight; see `VersionStats::begin`.
pub struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
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
