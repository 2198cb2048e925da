//! `GET /metrics`: Prometheus' text format, read from the manager's counters
//! at scrape time (nothing is kept twice). Per-model series carry Triton's
//! names and `model`/`version` labels, so dashboards built for Triton's
//! metrics port work unchanged; the model cache and the process have
//! `inferd_` and `process_` series. Open like the health probes.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use inferd_core::stats::{StatsSnapshot, LATENCY_BUCKETS};
use inferd_core::Manager;
use inferd_store::{JobStatus, ServiceStatus};

use crate::AppState;

/// Prometheus' text exposition format, version 0.0.4.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&StatsSnapshot) -> u64,
);

/// Triton's per-model series: name, type, help, value.
const PER_MODEL: [Series; 7] = [
    (
        "nv_inference_request_success",
        "counter",
        "Successful inference requests",
        |s| s.success.count,
    ),
    (
        "nv_inference_request_failure",
        "counter",
        "Failed inference requests",
        |s| s.fail.count,
    ),
    (
        "nv_inference_count",
        "counter",
        "Inferences performed (a batch of n rows counts n)",
        |s| s.inference_count,
    ),
    (
        "nv_inference_exec_count",
        "counter",
        "Model executions (batches run)",
        |s| s.execution_count,
    ),
    (
        "nv_inference_request_duration_us",
        "counter",
        "Cumulative request time, queue and compute, in microseconds",
        |s| (s.success.ns + s.fail.ns) / 1000,
    ),
    (
        "nv_inference_queue_duration_us",
        "counter",
        "Cumulative time requests waited in the model's queue, in microseconds",
        |s| s.queue.ns / 1000,
    ),
    (
        "nv_inference_compute_infer_duration_us",
        "counter",
        "Cumulative model compute time, in microseconds",
        |s| s.compute.ns / 1000,
    ),
];

/// A label value with Prometheus' three escapes.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// Resident memory from `/proc/self/statm` (pages), where the OS has it.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Counts the store keeps: services by status and async jobs by state.
#[derive(Default)]
pub struct Stored {
    pub services: Vec<(String, u64)>,
    pub jobs: Vec<(String, u64)>,
}

impl Stored {
    pub async fn read(state: &AppState) -> Stored {
        Stored::read_store(state.store.clone()).await
    }

    pub async fn read_store(store: Option<inferd_store::Store>) -> Stored {
        let Some(store) = store else {
            return Stored::default();
        };
        tokio::task::spawn_blocking(move || Stored {
            services: store.service_counts().unwrap_or_default(),
            jobs: store.job_counts().unwrap_or_default(),
        })
        .await
        .unwrap_or_default()
    }
}

/// A model version's labels.
fn model_labels(model: &str, version: u64) -> String {
    format!("model=\"{}\",version=\"{version}\"", label(model))
}

/// One histogram's series: `buckets` per bucket (not cumulative) under
/// `bounds`, the last above them all.
fn histogram(
    out: &mut String,
    name: &str,
    labels: &str,
    bounds: &[f64],
    buckets: &[u64],
    sum: f64,
) {
    let mut total = 0;
    for (bound, n) in bounds.iter().zip(buckets) {
        total += n;
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {total}");
    }
    total += buckets.get(bounds.len()).copied().unwrap_or(0);
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {total}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
    let _ = writeln!(out, "{name}_count{{{labels}}} {total}");
}

/// Batch sizes' bucket bounds.
const BATCH_BOUNDS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

/// Latency, batch and queue series per model version, per face, and the
/// store's counts; every label value is a repository name, a face, or a
/// fixed word.
fn render_load(
    out: &mut String,
    state: &AppState,
    rows: &[(String, u64, StatsSnapshot)],
    stored: &Stored,
) {
    header(
        out,
        "inferd_request_duration_seconds",
        "histogram",
        "Inference request latency per model version, queue and compute",
    );
    for (model, version, s) in rows {
        let labels = model_labels(model, *version);
        let sum = (s.success.ns + s.fail.ns) as f64 / 1e9;
        histogram(
            out,
            "inferd_request_duration_seconds",
            &labels,
            &LATENCY_BUCKETS,
            &s.latency,
            sum,
        );
    }
    header(
        out,
        "inferd_batch_size",
        "histogram",
        "Rows per batch the model ran",
    );
    for (model, version, s) in rows {
        let labels = model_labels(model, *version);
        let mut buckets = vec![0; BATCH_BOUNDS.len() + 1];
        let mut sum = 0.0;
        for (&size, t) in &s.batches {
            let at = BATCH_BOUNDS
                .iter()
                .position(|&b| size as f64 <= b)
                .unwrap_or(BATCH_BOUNDS.len());
            buckets[at] += t.count;
            sum += (size as u64 * t.count) as f64;
        }
        histogram(
            out,
            "inferd_batch_size",
            &labels,
            &BATCH_BOUNDS,
            &buckets,
            sum,
        );
    }
    header(
        out,
        "inferd_queue_depth",
        "gauge",
        "Requests waiting in a loaded model version's queue",
    );
    for (model, version, depth) in state.manager.queue_depths() {
        let _ = writeln!(
            out,
            "inferd_queue_depth{{{}}} {depth}",
            model_labels(&model, version)
        );
    }
    header(
        out,
        "inferd_model_requests_in_flight",
        "gauge",
        "Requests a model version is answering now: queued or running, generations included",
    );
    for (model, version, s) in rows {
        let _ = writeln!(
            out,
            "inferd_model_requests_in_flight{{{}}} {}",
            model_labels(model, *version),
            s.busy()
        );
    }
    header(
        out,
        "inferd_http_request_duration_seconds",
        "histogram",
        "Time each face takes to an answer's head, by status class",
    );
    for ((face, class), h) in state.face_latency.snapshot() {
        let labels = format!("face=\"{face}\",class=\"{class}\"");
        histogram(
            out,
            "inferd_http_request_duration_seconds",
            &labels,
            &LATENCY_BUCKETS,
            &h.buckets,
            h.sum,
        );
    }
    header(
        out,
        "inferd_services",
        "gauge",
        "Seed-003 inference services by status",
    );
    for status in ServiceStatus::ALL {
        let n = stored
            .services
            .iter()
            .find(|(s, _)| s == status.as_str())
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "inferd_services{{status=\"{}\"}} {n}", status.as_str());
    }
    header(
        out,
        "inferd_async_jobs",
        "gauge",
        "Async /inference jobs kept, by state",
    );
    for job in JobStatus::ALL {
        let n = stored
            .jobs
            .iter()
            .find(|(s, _)| s == job.as_str())
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "inferd_async_jobs{{state=\"{}\"}} {n}", job.as_str());
    }
}

/// A version that generates text (loaded now, or that has generated) and
/// its decode slots: what `/metrics` and the dashboard both show of it.
pub struct TextVersion<'a> {
    pub model: &'a str,
    pub version: u64,
    pub stats: &'a StatsSnapshot,
    pub slots: u64,
    pub in_use: u64,
    pub waiting: u64,
}

/// The versions of `rows` that generate text, in `rows`' order.
pub fn text_versions<'a>(
    manager: &Manager,
    rows: impl IntoIterator<Item = (&'a str, u64, &'a StatsSnapshot)>,
) -> Vec<TextVersion<'a>> {
    rows.into_iter()
        .filter_map(|(model, version, stats)| {
            let slots = manager.loaded_text_info(model).map(|i| i.slots);
            if slots.is_none() && stats.generated_tokens == 0 {
                return None;
            }
            let slots = slots.unwrap_or(0) as u64;
            let in_use = stats.generations.min(slots);
            Some(TextVersion {
                model,
                version,
                stats,
                slots,
                in_use,
                waiting: stats.generations - in_use,
            })
        })
        .collect()
}

/// Generation series: tokens (a rate of them is tokens/s), time to the first
/// token, and the decode slots in use and the generations waiting.
fn render_generation(out: &mut String, state: &AppState, rows: &[(String, u64, StatsSnapshot)]) {
    let text = text_versions(
        &state.manager,
        rows.iter().map(|(m, v, s)| (m.as_str(), *v, s)),
    );
    header(
        out,
        "inferd_generated_tokens_total",
        "counter",
        "Tokens generated",
    );
    for t in &text {
        let _ = writeln!(
            out,
            "inferd_generated_tokens_total{{{}}} {}",
            model_labels(t.model, t.version),
            t.stats.generated_tokens
        );
    }
    header(
        out,
        "inferd_time_to_first_token_seconds",
        "histogram",
        "From a generation's start to its first token",
    );
    for t in &text {
        let labels = model_labels(t.model, t.version);
        let sum = t.stats.first_token_ns as f64 / 1e9;
        histogram(
            out,
            "inferd_time_to_first_token_seconds",
            &labels,
            &LATENCY_BUCKETS,
            &t.stats.first_token,
            sum,
        );
    }
    type Gauge = fn(&TextVersion) -> u64;
    let gauges: [(&str, &str, Gauge); 3] = [
        (
            "inferd_generation_slots",
            "Sequences the model decodes together",
            |t| t.slots,
        ),
        (
            "inferd_generation_slots_in_use",
            "Slots decoding a generation now",
            |t| t.in_use,
        ),
        (
            "inferd_generations_waiting",
            "Generations waiting for a slot",
            |t| t.waiting,
        ),
    ];
    for (name, help, value) in gauges {
        header(out, name, "gauge", help);
        for t in &text {
            let _ = writeln!(
                out,
                "{name}{{{}}} {}",
                model_labels(t.model, t.version),
                value(t)
            );
        }
    }
}

pub fn render(state: &AppState, stored: &Stored) -> String {
    let mut out = String::new();
    let rows = state.manager.stats(None, None).unwrap_or_default();
    render_load(&mut out, state, &rows, stored);
    render_generation(&mut out, state, &rows);
    for (name, kind, help, value) in PER_MODEL {
        header(&mut out, name, kind, help);
        for (model, version, s) in &rows {
            let _ = writeln!(
                out,
                "{name}{{model=\"{}\",version=\"{version}\"}} {}",
                label(model),
                value(s)
            );
        }
    }
    let cache = state.manager.cache_counters();
    let entries = state.manager.cache_entries();
    for (name, help, v) in [
        (
            "inferd_model_cache_hits_total",
            "Requests that found their model loaded",
            cache.hits,
        ),
        (
            "inferd_model_cache_misses_total",
            "Requests that had to load their model",
            cache.misses,
        ),
        ("inferd_model_loads_total", "Model loads", cache.loads),
        (
            "inferd_model_load_failures_total",
            "Model loads that failed",
            cache.load_failures,
        ),
        (
            "inferd_model_evictions_total",
            "Models evicted to stay within the cache's limits",
            cache.evictions,
        ),
    ] {
        single(&mut out, name, "counter", help, v);
    }
    single(
        &mut out,
        "inferd_model_load_seconds_total",
        "counter",
        "Time spent loading models",
        cache.load_time.as_secs_f64(),
    );
    single(
        &mut out,
        "inferd_models_loaded",
        "gauge",
        "Model versions in the cache",
        entries.len(),
    );
    header(
        &mut out,
        "inferd_model_memory_bytes",
        "gauge",
        "Memory each loaded model version holds (its backend's measure)",
    );
    for e in &entries {
        let _ = writeln!(
            out,
            "inferd_model_memory_bytes{{model=\"{}\",version=\"{}\"}} {}",
            label(&e.model),
            e.version,
            e.memory
        );
    }
    single(
        &mut out,
        "inferd_memory_used_bytes",
        "gauge",
        "Memory all loaded models hold together",
        state.manager.memory_used(),
    );
    let inflight = state.manager.inflight();
    for (name, help, v) in [
        (
            "inferd_requests_in_flight",
            "Requests being answered now, every face (HTTP and gRPC) together",
            inflight.requests(),
        ),
        (
            "inferd_inflight_bytes",
            "Bytes of request data charged to the in-flight budget now",
            inflight.used(),
        ),
        (
            "inferd_inflight_bytes_limit",
            "The in-flight budget (--max-inflight-bytes)",
            inflight.limit(),
        ),
    ] {
        single(&mut out, name, "gauge", help, v);
    }
    if let Some(rss) = resident_bytes() {
        single(
            &mut out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory of the inferd process",
            rss,
        );
    }
    out
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let stored = Stored::read(&state).await;
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        render(&state, &stored),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_are_escaped() {
        assert_eq!(super::label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
