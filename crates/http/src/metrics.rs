//! `GET /metrics`: Prometheus' text format, read from the manager's counters
//! at scrape time (nothing is kept twice). Per-model series carry Triton's
//! names and `model`/`version` labels, so dashboards built for Triton's
//! metrics port work unchanged; the model cache and the process have
//! `inferd_` and `process_` series. Open like the health probes.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use inferd_core::stats::StatsSnapshot;

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

pub fn render(state: &AppState) -> String {
    let mut out = String::new();
    let rows = state.manager.stats(None, None).unwrap_or_default();
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
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render(&state))
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_are_escaped() {
        assert_eq!(super::label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
