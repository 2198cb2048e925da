//! The model cache routes: the manager seen as seed 004's `ModelCache`. Keys are
//! `engine:model_name` (`onnx:iris`); a bare model name is accepted too.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::Json;
use inferd_core::ErrorKind;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{now, UnifiedError};
use crate::AppState;

const GIB: f64 = (1u64 << 30) as f64;

fn epoch(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn limit_or_null<T: Into<Value>>(value: T, unlimited: bool) -> Value {
    if unlimited {
        Value::Null
    } else {
        value.into()
    }
}

pub async fn stats(State(state): State<AppState>) -> Json<Value> {
    let c = state.manager.cache_counters();
    let budget = state.manager.budget();
    let entries = state.manager.cache_entries();
    let used = state.manager.memory_used();
    let lookups = c.hits + c.misses;
    let per_model: serde_json::Map<String, Value> = entries
        .iter()
        .map(|e| (e.key.clone(), json!(e.access_count)))
        .collect();
    Json(json!({
        "success": true,
        "stats": {
            "hits": c.hits,
            "misses": c.misses,
            "hit_rate": if lookups == 0 { 0.0 } else { c.hits as f64 / lookups as f64 },
            "loads": c.loads,
            "load_failures": c.load_failures,
            "evictions": c.evictions,
            "total_load_time_s": c.load_time.as_secs_f64(),
            "cached_models": entries.len(),
            "max_cache_size": limit_or_null(budget.max_loaded_models, budget.max_loaded_models == 0),
            "memory_used_bytes": used,
            "memory_used_gb": used as f64 / GIB,
            "max_memory_gb": limit_or_null(budget.max_memory_bytes as f64 / GIB, budget.max_memory_bytes == 0),
            "access_counts": per_model,
        },
        "timestamp": now(),
    }))
}

pub async fn models(State(state): State<AppState>) -> Json<Value> {
    let models: Vec<Value> = state
        .manager
        .cache_entries()
        .into_iter()
        .map(|e| {
            json!({
                "key": e.key,
                "model_name": e.model,
                "engine": e.backend,
                "version": e.version.to_string(),
                "loaded_at": epoch(e.loaded_at),
                "load_time_s": e.load_time.as_secs_f64(),
                "access_count": e.access_count,
                "last_access": e.last_access.map(epoch),
                "memory_bytes": e.memory,
                "memory_mb": e.memory as f64 / (1u64 << 20) as f64,
            })
        })
        .collect();
    // Loads under way, with how far they are (not yet cache entries).
    let loading: Vec<Value> = state
        .manager
        .loading_entries()
        .into_iter()
        .map(|e| {
            json!({
                "key": e.key,
                "model_name": e.model,
                "version": e.version.to_string(),
                "status": "loading",
                "elapsed_s": e.elapsed.as_secs_f64(),
                "bytes": e.bytes,
                "last_load_time_s": e.last_load.map(|d| d.as_secs_f64()),
                "progress": e.describe(),
            })
        })
        .collect();
    Json(json!({
        "success": true,
        "count": models.len(),
        "models": models,
        "loading": loading,
        "timestamp": now()
    }))
}

pub async fn remove(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<Value>, UnifiedError> {
    // As the document's server: a key it does not hold, whatever the reason,
    // is `success: false` with 200; the reason is in the message.
    let message = match state.manager.evict(&key).await {
        Ok(true) => {
            return Ok(Json(
                json!({ "success": true, "message": format!("model '{key}' removed from the cache"), "timestamp": now() }),
            ))
        }
        Ok(false) => format!("model '{key}' is not in the cache"),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            format!("model '{key}' is not in the cache: {e}")
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Json(
        json!({ "success": false, "message": message, "timestamp": now() }),
    ))
}

pub async fn clear(State(state): State<AppState>) -> Json<Value> {
    let cleared = state.manager.clear_cache().await;
    Json(json!({
        "success": true,
        "message": format!("cache cleared: {cleared} model versions removed"),
        "cleared": cleared,
        "timestamp": now(),
    }))
}

#[derive(Deserialize)]
pub struct ConfigQuery {
    max_cache_size: Option<String>,
    max_memory_gb: Option<String>,
}

/// `PUT /inference/cache/config?max_cache_size=1..20&max_memory_gb=1..100`:
/// shrinking evicts least recently used idle models at once.
pub async fn config(
    State(state): State<AppState>,
    Query(q): Query<ConfigQuery>,
) -> Result<Json<Value>, UnifiedError> {
    let mut budget = state.manager.budget();
    let mut updates = Vec::new();
    if let Some(size) = &q.max_cache_size {
        let size: usize = size
            .parse()
            .ok()
            .filter(|s| (1..=20).contains(s))
            .ok_or_else(|| {
                UnifiedError::invalid(format!(
                    "max_cache_size must be an integer from 1 to 20, not '{size}'"
                ))
            })?;
        budget.max_loaded_models = size;
        updates.push(format!("max_cache_size set to {size}"));
    }
    if let Some(gb) = &q.max_memory_gb {
        let gb: f64 = gb
            .parse()
            .ok()
            .filter(|g: &f64| (1.0..=100.0).contains(g))
            .ok_or_else(|| {
                UnifiedError::invalid(format!(
                    "max_memory_gb must be a number from 1 to 100, not '{gb}'"
                ))
            })?;
        budget.max_memory_bytes = (gb * GIB) as u64;
        updates.push(format!("max_memory_gb set to {gb}"));
    }
    if updates.is_empty() {
        return Err(UnifiedError::invalid(
            "give at least one of max_cache_size and max_memory_gb",
        ));
    }
    let resized = state.manager.set_budget(budget).await;
    Ok(Json(json!({
        "success": true,
        "message": "cache configuration updated",
        "updates": updates,
        "evicted": resized.evicted,
        "fits": resized.fits,
        "current_config": {
            // Numbers, as the document answers; 0 is "no limit", as the flags say.
            "max_cache_size": budget.max_loaded_models,
            "max_memory_gb": budget.max_memory_bytes as f64 / GIB,
        },
        "timestamp": now(),
    })))
}
