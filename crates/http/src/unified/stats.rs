//! Request counts, errors and latency percentiles per task and model for
//! `GET /inference/stats`. Each series keeps its last `WINDOW` latencies, so
//! memory stays bounded however long the server runs.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

const WINDOW: usize = 1024;

#[derive(Default)]
struct Series {
    requests: u64,
    errors: u64,
    latencies_ms: VecDeque<f64>,
}

impl Series {
    fn add(&mut self, ok: bool, took: Duration) {
        self.requests += 1;
        if !ok {
            self.errors += 1;
        }
        if self.latencies_ms.len() == WINDOW {
            self.latencies_ms.pop_front();
        }
        self.latencies_ms.push_back(took.as_secs_f64() * 1e3);
    }

    fn json(&self) -> Value {
        let mut sorted: Vec<f64> = self.latencies_ms.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let pct = |p: f64| -> Value {
            if sorted.is_empty() {
                return Value::Null;
            }
            let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
            json!(sorted[i])
        };
        json!({
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": if self.requests == 0 { 0.0 } else { self.errors as f64 / self.requests as f64 },
            "latency_ms": { "p50": pct(50.0), "p95": pct(95.0), "p99": pct(99.0) },
        })
    }
}

/// The face's own request statistics.
#[derive(Default)]
pub struct Recorder {
    series: Mutex<BTreeMap<(String, String), Series>>,
}

impl Recorder {
    pub fn record(&self, task: &str, model: &str, ok: bool, took: Duration) {
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        series
            .entry((task.to_string(), model.to_string()))
            .or_default()
            .add(ok, took);
    }

    /// Totals, and per task and per model.
    pub fn json(&self) -> Value {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let mut by_task: BTreeMap<String, Series> = BTreeMap::new();
        let mut by_model: BTreeMap<String, Series> = BTreeMap::new();
        let mut total = Series::default();
        for ((task, model), s) in series.iter() {
            for target in [
                by_task.entry(task.clone()).or_default(),
                by_model.entry(model.clone()).or_default(),
                &mut total,
            ] {
                target.requests += s.requests;
                target.errors += s.errors;
                target.latencies_ms.extend(s.latencies_ms.iter().copied());
            }
        }
        json!({
            "total": total.json(),
            "by_task": by_task.iter().map(|(k, s)| (k.clone(), s.json())).collect::<serde_json::Map<_, _>>(),
            "by_model": by_model.iter().map(|(k, s)| (k.clone(), s.json())).collect::<serde_json::Map<_, _>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_errors_per_task_and_model() {
        let r = Recorder::default();
        for ms in 1..=100 {
            r.record("tensors", "iris", ms != 100, Duration::from_millis(ms));
        }
        r.record(
            "image-classification",
            "digits",
            true,
            Duration::from_millis(5),
        );
        let j = r.json();
        assert_eq!(j["by_model"]["iris"]["requests"], 100);
        assert_eq!(j["by_model"]["iris"]["errors"], 1);
        assert_eq!(
            j["by_model"]["iris"]["latency_ms"]["p50"]
                .as_f64()
                .unwrap()
                .round(),
            51.0
        );
        assert_eq!(j["by_task"]["image-classification"]["requests"], 1);
        assert_eq!(j["total"]["requests"], 101);
    }
}
