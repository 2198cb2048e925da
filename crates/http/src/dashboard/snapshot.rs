//! What the dashboard draws, built once a second by the sampler and shared by
//! every page: one reading of the manager and the store however many pages
//! are open, and the repository's folder scan off the async workers.

use std::collections::HashMap;
use std::sync::Arc;

use inferd_core::Manager;
use inferd_store::{JobStatus, ServiceStatus};
use serde_json::{json, Map, Value};

use super::history::{self, quantile_ms, History, Totals};
use crate::metrics::Stored;

/// The state every caller sees alike (the caller's role is added per request).
pub fn build(manager: &Manager, stored: &Stored, history: &History) -> Map<String, Value> {
    let stats: HashMap<(String, u64), _> = manager
        .stats(None, None)
        .unwrap_or_default()
        .into_iter()
        .map(|(m, v, s)| ((m, v), s))
        .collect();
    let recent = history.recent();
    let counts = |kept: &[(String, u64)], names: &mut dyn Iterator<Item = &'static str>| {
        names
            .map(|name| {
                let n = kept.iter().find(|(s, _)| s == name).map_or(0, |(_, n)| *n);
                (name.to_string(), json!(n))
            })
            .collect::<Map<String, Value>>()
    };
    let c = manager.cache_counters();
    let budget = manager.budget();
    let lookups = c.hits + c.misses;
    let inflight = manager.inflight();
    let mut out = Map::new();
    out.insert("time".into(), json!(super::unix_now()));
    out.insert("uptime_s".into(), json!(history.uptime().as_secs_f64()));
    out.insert(
        "models".into(),
        Value::Array(models(manager, &stats, &recent)),
    );
    out.insert(
        "cache".into(),
        json!({
            "hits": c.hits,
            "misses": c.misses,
            "hit_rate": (lookups > 0).then(|| c.hits as f64 / lookups as f64),
            "evictions": c.evictions,
            "loads": c.loads,
            "load_failures": c.load_failures,
            "memory_used_bytes": manager.memory_used(),
            "memory_limit_bytes": (budget.max_memory_bytes > 0).then_some(budget.max_memory_bytes),
            "max_models": (budget.max_loaded_models > 0).then_some(budget.max_loaded_models),
            "models_loaded": manager.cache_entries().len(),
        }),
    );
    out.insert(
        "inflight".into(),
        json!({
            "requests": inflight.requests(),
            "bytes": inflight.used(),
            "bytes_limit": inflight.limit(),
        }),
    );
    out.insert(
        "generation".into(),
        Value::Array(generation(manager, &stats, &recent)),
    );
    out.insert(
        "jobs".into(),
        Value::Object(counts(
            &stored.jobs,
            &mut JobStatus::ALL.iter().map(|j| j.as_str()),
        )),
    );
    out.insert(
        "services".into(),
        Value::Object(counts(
            &stored.services,
            &mut ServiceStatus::ALL.iter().map(|s| s.as_str()),
        )),
    );
    out
}

/// `build`, with the store read first and the manager's part (whose index
/// reads the repository's folders) on a blocking thread.
pub async fn read(
    manager: &Manager,
    store: Option<inferd_store::Store>,
    history: &Arc<History>,
) -> Map<String, Value> {
    let stored = Stored::read_store(store).await;
    let (manager, history) = (manager.clone(), history.clone());
    tokio::task::spawn_blocking(move || build(&manager, &stored, &history))
        .await
        .unwrap_or_default()
}

type Stats = HashMap<(String, u64), inferd_core::stats::StatsSnapshot>;
type RecentMap = HashMap<(String, u64), history::Recent>;

/// Every model version of the repository, loaded or not, with its numbers.
fn models(manager: &Manager, stats: &Stats, recent: &RecentMap) -> Vec<Value> {
    let cached: HashMap<(String, u64), _> = manager
        .cache_entries()
        .into_iter()
        .map(|e| ((e.model.clone(), e.version), e))
        .collect();
    let loading: HashMap<(String, u64), _> = manager
        .loading_entries()
        .into_iter()
        .map(|e| ((e.model.clone(), e.version), e))
        .collect();
    let queues: HashMap<(String, u64), usize> = manager
        .queue_depths()
        .into_iter()
        .map(|(m, v, d)| ((m, v), d))
        .collect();
    let mut rows: Vec<Value> = manager
        .index()
        .into_iter()
        .map(|entry| {
            let key = (entry.name.clone(), entry.version.unwrap_or(0));
            let cache = cached.get(&key);
            let backend = match cache {
                Some(e) => Some(e.backend.clone()),
                None => manager
                    .info(&entry.name, entry.version)
                    .ok()
                    .map(|i| i.config.backend.clone()),
            };
            let totals = stats.get(&key).map(Totals::of).unwrap_or_default();
            let window = recent.get(&key);
            let rps = window.map_or(0.0, |r| r.totals.requests as f64 / r.seconds);
            let latency = window.map(|r| r.totals.latency.as_slice()).unwrap_or(&[]);
            let in_flight = stats.get(&key).map_or(0, |s| s.in_flight + s.generations);
            json!({
                "name": entry.name,
                "version": entry.version,
                "state": entry.state,
                "reason": entry.reason,
                "backend": backend,
                "memory_bytes": cache.map(|e| e.memory),
                "load_time_s": cache.map(|e| e.load_time.as_secs_f64()),
                "requests_total": totals.requests,
                "errors_total": totals.errors,
                "rps": rps,
                "p50_ms": quantile_ms(latency, 0.5),
                "p99_ms": quantile_ms(latency, 0.99),
                "queue_depth": queues.get(&key).copied().unwrap_or(0),
                "in_flight": in_flight,
                "loading": loading.get(&key).map(|l| json!({
                    "elapsed_s": l.elapsed.as_secs_f64(),
                    "bytes": l.bytes,
                    "last_load_time_s": l.last_load.map(|d| d.as_secs_f64()),
                })),
            })
        })
        .collect();
    rows.sort_by(|a, b| {
        (a["name"].as_str(), a["version"].as_u64())
            .cmp(&(b["name"].as_str(), b["version"].as_u64()))
    });
    rows
}

/// The versions that generate text (loaded now, or that have generated).
fn generation(manager: &Manager, stats: &Stats, recent: &RecentMap) -> Vec<Value> {
    let mut rows: Vec<Value> = stats
        .iter()
        .filter_map(|((model, version), s)| {
            let slots = manager.loaded_text_info(model).map(|i| i.slots);
            if slots.is_none() && s.generated_tokens == 0 {
                return None;
            }
            let slots = slots.unwrap_or(0) as u64;
            let in_use = s.generations.min(slots);
            let window = recent.get(&(model.clone(), *version));
            let first = window
                .map(|r| r.totals.first_token.as_slice())
                .unwrap_or(&[]);
            Some(json!({
                "model": model,
                "version": version,
                "tokens_total": s.generated_tokens,
                "tokens_per_s": window.map_or(0.0, |r| r.totals.tokens as f64 / r.seconds),
                "ttft_p50_ms": quantile_ms(first, 0.5),
                "ttft_p99_ms": quantile_ms(first, 0.99),
                "slots": slots,
                "slots_in_use": in_use,
                "waiting": s.generations - in_use,
            }))
        })
        .collect();
    rows.sort_by(|a, b| {
        (a["model"].as_str(), a["version"].as_u64())
            .cmp(&(b["model"].as_str(), b["version"].as_u64()))
    });
    rows
}
