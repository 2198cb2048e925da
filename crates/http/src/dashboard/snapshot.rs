//! What the dashboard draws, built once a second by the sampler and shared by
//! every page: one reading of the manager and the store however many pages
//! are open, and the repository's folder scan off the async workers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use inferd_core::manager::CacheEntry;
use inferd_core::stats::StatsSnapshot;
use inferd_core::Manager;
use inferd_store::{JobStatus, ServiceStatus};
use serde_json::{json, Map, Value};

use super::history::{self, quantile_ms, History, Totals};
use crate::metrics::{text_versions, Stored};

/// Every version's counters at one reading, ordered by model and version.
pub type Rows = Vec<(String, u64, StatsSnapshot)>;

type Stats = BTreeMap<(String, u64), StatsSnapshot>;
type RecentMap = HashMap<(String, u64), history::Recent>;

/// The state every caller sees alike (the caller's role is added per
/// request), from the counters `rows` the sampler read.
pub fn build(
    manager: &Manager,
    rows: Rows,
    stored: &Stored,
    history: &History,
) -> Map<String, Value> {
    let stats: Stats = rows.into_iter().map(|(m, v, s)| ((m, v), s)).collect();
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
    let cached = manager.cache_entries();
    let mut out = Map::new();
    out.insert("time".into(), json!(crate::unix_now()));
    out.insert("uptime_s".into(), json!(history.uptime().as_secs_f64()));
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
            "models_loaded": cached.len(),
        }),
    );
    out.insert(
        "models".into(),
        Value::Array(models(manager, cached, &stats, &recent)),
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
    rows: Rows,
    store: Option<inferd_store::Store>,
    history: &Arc<History>,
) -> Map<String, Value> {
    let stored = Stored::read_store(store).await;
    let (manager, history) = (manager.clone(), history.clone());
    tokio::task::spawn_blocking(move || build(&manager, rows, &stored, &history))
        .await
        .unwrap_or_default()
}

/// Every model version of the repository, loaded or not, with its numbers.
fn models(
    manager: &Manager,
    cached: Vec<CacheEntry>,
    stats: &Stats,
    recent: &RecentMap,
) -> Vec<Value> {
    let cached: HashMap<(String, u64), _> = cached
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
    let mut index = manager.index();
    index.sort_by(|a, b| (&a.name, a.version).cmp(&(&b.name, b.version)));
    index
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
            let counters = stats.get(&key);
            let totals = counters.map(Totals::of).unwrap_or_default();
            let window = recent.get(&key);
            let latency = window.map(|r| r.totals.latency.as_slice()).unwrap_or(&[]);
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
                "rps": window.map_or(0.0, |r| r.totals.requests as f64 / r.seconds),
                "p50_ms": quantile_ms(latency, 0.5),
                "p99_ms": quantile_ms(latency, 0.99),
                "queue_depth": queues.get(&key).copied().unwrap_or(0),
                "in_flight": counters.map_or(0, StatsSnapshot::busy),
                "loading": loading.get(&key).map(|l| json!({
                    "elapsed_s": l.elapsed.as_secs_f64(),
                    "bytes": l.bytes,
                    "last_load_time_s": l.last_load.map(|d| d.as_secs_f64()),
                })),
            })
        })
        .collect()
}

/// The versions that generate text, with their recent tokens/s and time to
/// first token.
fn generation(manager: &Manager, stats: &Stats, recent: &RecentMap) -> Vec<Value> {
    let rows = stats.iter().map(|((m, v), s)| (m.as_str(), *v, s));
    text_versions(manager, rows)
        .into_iter()
        .map(|t| {
            let window = recent.get(&(t.model.to_string(), t.version));
            let first = window
                .map(|r| r.totals.first_token.as_slice())
                .unwrap_or(&[]);
            json!({
                "model": t.model,
                "version": t.version,
                "tokens_total": t.stats.generated_tokens,
                "tokens_per_s": window.map_or(0.0, |r| r.totals.tokens as f64 / r.seconds),
                "ttft_p50_ms": quantile_ms(first, 0.5),
                "ttft_p99_ms": quantile_ms(first, 0.99),
                "slots": t.slots,
                "slots_in_use": t.in_use,
                "waiting": t.waiting,
            })
        })
        .collect()
}
