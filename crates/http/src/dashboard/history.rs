//! The dashboard's memory of the last minutes. The core keeps only totals
//! since start; rates and recent percentiles are differences between two
//! readings, so a sampler reads the totals once a second and keeps the
//! whole-server points for the charts and a few seconds of per-model totals
//! for the tables. Its size is fixed: `POINTS` points and `WINDOW` readings.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use inferd_core::stats::{StatsSnapshot, LATENCY_BUCKETS};
use inferd_core::Manager;
use inferd_store::Store;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

/// Five minutes of one point a second.
const POINTS: usize = 300;
/// Seconds of per-model readings the tables' rates and percentiles span.
pub const WINDOW: usize = 10;
/// Event streams open at once: each is a task and a connection held open.
const STREAMS: usize = 32;

/// One second of the whole server.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Unix seconds at the end of the second.
    pub t: f64,
    pub rps: f64,
    pub errors_per_s: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub tokens_per_s: f64,
}

/// A model version's totals at one reading.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub requests: u64,
    pub errors: u64,
    pub latency: Vec<u64>,
    pub tokens: u64,
    pub first_token: Vec<u64>,
}

impl Totals {
    /// A version's counters as the dashboard reads them.
    pub fn of(s: &StatsSnapshot) -> Totals {
        Totals {
            requests: s.success.count + s.fail.count,
            errors: s.fail.count,
            latency: s.latency.clone(),
            tokens: s.generated_tokens,
            first_token: s.first_token.clone(),
        }
    }

    /// What happened between `earlier` and this reading. Counters that went
    /// down were started again (a version's slot made anew), so everything
    /// since is what they hold now, as Prometheus' `rate()` reads a reset.
    pub fn since(&self, earlier: Option<&Totals>) -> Totals {
        let reset = |e: &Totals| {
            self.requests < e.requests
                || self.tokens < e.tokens
                || self.latency.iter().zip(&e.latency).any(|(n, t)| n < t)
                || self
                    .first_token
                    .iter()
                    .zip(&e.first_token)
                    .any(|(n, t)| n < t)
        };
        let Some(e) = earlier.filter(|e| !reset(e)) else {
            return self.clone();
        };
        let minus = |now: &[u64], then: &[u64]| -> Vec<u64> {
            now.iter()
                .enumerate()
                .map(|(i, n)| n.saturating_sub(then.get(i).copied().unwrap_or(0)))
                .collect()
        };
        Totals {
            requests: self.requests.saturating_sub(e.requests),
            errors: self.errors.saturating_sub(e.errors),
            latency: minus(&self.latency, &e.latency),
            tokens: self.tokens.saturating_sub(e.tokens),
            first_token: minus(&self.first_token, &e.first_token),
        }
    }

    fn add(&mut self, other: &Totals) {
        let plus = |into: &mut Vec<u64>, from: &[u64]| {
            into.resize(into.len().max(from.len()), 0);
            for (a, b) in into.iter_mut().zip(from) {
                *a += b;
            }
        };
        self.requests += other.requests;
        self.errors += other.errors;
        self.tokens += other.tokens;
        plus(&mut self.latency, &other.latency);
        plus(&mut self.first_token, &other.first_token);
    }
}

/// The `q` quantile of a histogram of `LATENCY_BUCKETS` counts, in
/// milliseconds, interpolated within its bucket as Prometheus'
/// `histogram_quantile` does; `None` for an empty one. Past the last bound
/// it answers that bound.
pub fn quantile_ms(buckets: &[u64], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &n) in buckets.iter().enumerate() {
        if n > 0 && (below + n) as f64 >= rank {
            let Some(&upper) = LATENCY_BUCKETS.get(i) else {
                break;
            };
            let lower = if i == 0 { 0.0 } else { LATENCY_BUCKETS[i - 1] };
            let within = (rank - below as f64) / n as f64;
            return Some((lower + (upper - lower) * within) * 1000.0);
        }
        below += n;
    }
    LATENCY_BUCKETS.last().map(|b| b * 1000.0)
}

type Key = (String, u64);

struct Reading {
    t: f64,
    totals: HashMap<Key, Totals>,
}

#[derive(Default)]
struct Kept {
    points: VecDeque<Point>,
    readings: VecDeque<Reading>,
}

/// The sampler's findings, shared by every dashboard request.
pub struct History {
    kept: Mutex<Kept>,
    started: AtomicBool,
    /// When the server was made, for its uptime.
    born: Instant,
    /// The latest snapshot of what the page draws (no caller's role in it).
    latest: watch::Sender<Option<Arc<Map<String, Value>>>>,
    streams: Arc<Semaphore>,
}

impl Default for History {
    fn default() -> History {
        History {
            kept: Mutex::default(),
            started: AtomicBool::new(false),
            born: Instant::now(),
            latest: watch::Sender::new(None),
            streams: Arc::new(Semaphore::new(STREAMS)),
        }
    }
}

/// A model version's recent window: what happened over the last readings.
pub struct Recent {
    pub seconds: f64,
    pub totals: Totals,
}

impl History {
    /// Starts the sampler once (later calls do nothing): each second it
    /// reads the counters, then makes the snapshot every page is sent. It
    /// holds the history weakly and ends when the server drops it.
    pub fn start(self: &Arc<History>, manager: &Manager, store: Option<Store>) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let history: Weak<History> = Arc::downgrade(self);
        let manager = manager.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(history) = history.upgrade() else {
                    return;
                };
                // One reading of the counters serves the history and the snapshot.
                let rows = manager.stats(None, None).unwrap_or_default();
                history.sample(&rows);
                let snapshot = super::snapshot::read(&manager, rows, store.clone(), &history).await;
                history.latest.send_replace(Some(Arc::new(snapshot)));
            }
        });
    }

    /// The latest snapshot, once the sampler has made one.
    pub fn latest(&self) -> Option<Arc<Map<String, Value>>> {
        self.latest.borrow().clone()
    }

    /// Wakes at each new snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Map<String, Value>>>> {
        self.latest.subscribe()
    }

    /// A place for one more event stream, while fewer than `STREAMS` are open.
    pub fn stream_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.streams.clone().try_acquire_owned().ok()
    }

    /// Keeps the totals of one reading of the counters.
    pub fn sample(&self, rows: &super::snapshot::Rows) {
        let totals: HashMap<Key, Totals> = rows
            .iter()
            .map(|(m, v, s)| ((m.clone(), *v), Totals::of(s)))
            .collect();
        let t = crate::unix_now();
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(last) = kept.readings.back() {
            let seconds = (t - last.t).max(1e-3);
            let mut second = Totals::default();
            for (key, now) in &totals {
                second.add(&now.since(last.totals.get(key)));
            }
            let point = Point {
                t,
                rps: second.requests as f64 / seconds,
                errors_per_s: second.errors as f64 / seconds,
                p50_ms: quantile_ms(&second.latency, 0.5),
                p99_ms: quantile_ms(&second.latency, 0.99),
                tokens_per_s: second.tokens as f64 / seconds,
            };
            if kept.points.len() == POINTS {
                kept.points.pop_front();
            }
            kept.points.push_back(point);
        }
        if kept.readings.len() > WINDOW {
            kept.readings.pop_front();
        }
        kept.readings.push_back(Reading { t, totals });
    }

    /// Since the server was made.
    pub fn uptime(&self) -> Duration {
        self.born.elapsed()
    }

    /// Every point kept, oldest first.
    pub fn points(&self) -> Vec<Point> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.points.iter().cloned().collect()
    }

    /// The newest point.
    pub fn last_point(&self) -> Option<Point> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.points.back().cloned()
    }

    /// Each model version's activity from the oldest reading kept to the
    /// newest (about `WINDOW` seconds).
    pub fn recent(&self) -> HashMap<Key, Recent> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let (Some(first), Some(last)) = (kept.readings.front(), kept.readings.back()) else {
            return HashMap::new();
        };
        let seconds = (last.t - first.t).max(1.0);
        last.totals
            .iter()
            .map(|(key, now)| {
                let totals = now.since(first.totals.get(key));
                (key.clone(), Recent { seconds, totals })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_their_bucket() {
        let mut b = vec![0; LATENCY_BUCKETS.len() + 1];
        assert_eq!(quantile_ms(&b, 0.5), None);
        // 10 requests, all between 0.5 ms and 1 ms.
        b[1] = 10;
        let p50 = quantile_ms(&b, 0.5).unwrap();
        assert!((p50 - 0.75).abs() < 1e-9, "{p50}");
        // One slow one past every bound answers the last bound.
        b[LATENCY_BUCKETS.len()] = 1;
        assert_eq!(quantile_ms(&b, 1.0), Some(60_000.0));
    }

    #[test]
    fn differences_read_a_counter_started_again_as_all_new() {
        let then = Totals {
            requests: 5,
            latency: vec![5],
            ..Totals::default()
        };
        let now = Totals {
            requests: 7,
            latency: vec![7, 1],
            ..Totals::default()
        };
        let d = now.since(Some(&then));
        assert_eq!((d.requests, d.latency), (2, vec![2, 1]));
        // A counter that went down was started again: all it holds is new.
        let d = then.since(Some(&now));
        assert_eq!((d.requests, d.latency), (5, vec![5]));
    }
}
