//! Triton's model repository, statistics and model configuration extensions.

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::Json;
use bytes::Bytes;
use inferd_core::stats::{StatsSnapshot, Timed};
use inferd_core::ModelInfo;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{parse_version, V2Error};
use crate::body;
use crate::AppState;

#[derive(Deserialize, Default)]
struct IndexRequest {
    ready: Option<bool>,
}

/// Parses an optional JSON body (Triton's clients send none, `{}` or a filter).
fn optional_json<T: for<'de> Deserialize<'de> + Default>(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, V2Error> {
    let bytes = body::bytes(body, state.max_body_bytes)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    Ok(body::json(&bytes)?)
}

/// `POST /v2/repository/index`: every model with each version's state and, for
/// unavailable ones, the reason.
pub async fn index(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, V2Error> {
    let req: IndexRequest = optional_json(&state, body)?;
    let rows: Vec<Value> = state
        .manager
        .index()
        .into_iter()
        .filter(|e| req.ready.is_none_or(|want| want == (e.state == "READY")))
        .map(|e| {
            let mut row = json!({ "name": e.name, "state": e.state, "reason": e.reason });
            if let Some(v) = e.version {
                row["version"] = Value::String(v.to_string());
            }
            row
        })
        .collect();
    Ok(Json(Value::Array(rows)))
}

#[derive(Deserialize, Default)]
struct ChangeRequest {
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// `POST /v2/repository/models/{m}/load`: loads every served version, reading the
/// model's folder again first.
pub async fn load(
    State(state): State<AppState>,
    Path(model): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, V2Error> {
    let req: ChangeRequest = optional_json(&state, body)?;
    inferd_core::repository::check_load_parameters(req.parameters.keys())?;
    state.manager.load(&model, None).await?;
    Ok(Json(json!({ "name": model, "load": true })))
}

/// `POST /v2/repository/models/{m}/unload`: in-flight requests finish first.
pub async fn unload(
    State(state): State<AppState>,
    Path(model): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, V2Error> {
    let _: ChangeRequest = optional_json(&state, body)?;
    state.manager.unload(&model, None).await?;
    Ok(Json(json!({ "name": model, "unload": true })))
}

fn timed(t: Timed) -> Value {
    json!({ "count": t.count, "ns": t.ns })
}

fn stats_json(name: &str, version: u64, s: &StatsSnapshot) -> Value {
    let zero = timed(Timed::default());
    json!({
        "name": name,
        "version": version.to_string(),
        "last_inference": s.last_inference_ms,
        "inference_count": s.inference_count,
        "execution_count": s.execution_count,
        "inference_stats": {
            "success": timed(s.success),
            "fail": timed(s.fail),
            "queue": timed(s.queue),
            "compute_input": zero,
            "compute_infer": timed(s.compute),
            "compute_output": zero,
            "cache_hit": zero,
            "cache_miss": zero,
        },
        "response_stats": {},
        "batch_stats": s.batches.iter().map(|(size, t)| json!({
            "batch_size": size,
            "compute_input": zero,
            "compute_infer": timed(*t),
            "compute_output": zero,
        })).collect::<Vec<_>>(),
        "memory_usage": [],
    })
}

fn stats_answer(
    state: &AppState,
    model: Option<&str>,
    version: Option<u64>,
) -> Result<Json<Value>, V2Error> {
    let rows = state.manager.stats(model, version)?;
    Ok(Json(json!({
        "model_stats": rows.iter().map(|(n, v, s)| stats_json(n, *v, s)).collect::<Vec<_>>(),
    })))
}

pub async fn all_stats(State(state): State<AppState>) -> Result<Json<Value>, V2Error> {
    stats_answer(&state, None, None)
}

pub async fn stats(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<Value>, V2Error> {
    stats_answer(&state, Some(&model), None)
}

pub async fn stats_version(
    State(state): State<AppState>,
    Path((model, v)): Path<(String, String)>,
) -> Result<Json<Value>, V2Error> {
    let v = parse_version(&model, &v)?;
    stats_answer(&state, Some(&model), v)
}

/// Triton's config JSON: with batching, `dims` leave out the batch dimension.
fn config_json(info: &ModelInfo) -> Value {
    let c = &info.config;
    let batching = c.max_batch_size > 0;
    let tensor = |s: &inferd_core::TensorSpec| {
        let mut dims = s.shape_or_any();
        if batching && !dims.is_empty() {
            dims.remove(0);
        }
        json!({ "name": s.name, "data_type": format!("TYPE_{}", s.datatype.as_str()), "dims": dims })
    };
    let mut config = json!({
        "name": info.name,
        "platform": c.platform,
        "backend": c.backend,
        "max_batch_size": c.max_batch_size,
        "input": info.inputs.iter().map(tensor).collect::<Vec<_>>(),
        "output": info.outputs.iter().map(tensor).collect::<Vec<_>>(),
        "instance_group": [{ "count": c.instances, "kind": "KIND_CPU" }],
        "version_policy": match &c.version_policy {
            inferd_core::config::VersionPolicy::Latest(n) => json!({ "latest": { "num_versions": n } }),
            inferd_core::config::VersionPolicy::All => json!({ "all": {} }),
            inferd_core::config::VersionPolicy::Specific(v) => json!({ "specific": { "versions": v } }),
        },
        "parameters": c.parameters.iter().map(|(k, v)| (k.clone(), json!({ "string_value": v }))).collect::<Map<_, _>>(),
    });
    if batching {
        config["dynamic_batching"] = json!({
            "max_queue_delay_microseconds": c.max_queue_delay.as_micros() as u64,
            "default_queue_policy": { "max_queue_size": c.max_queue },
        });
    }
    if let Some(labels) = &c.labels {
        config["label_filename"] = Value::String(labels.clone());
    }
    config
}

pub async fn config(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<Value>, V2Error> {
    Ok(Json(config_json(&state.manager.info(&model, None)?)))
}

pub async fn config_version(
    State(state): State<AppState>,
    Path((model, v)): Path<(String, String)>,
) -> Result<Json<Value>, V2Error> {
    let v = parse_version(&model, &v)?;
    Ok(Json(config_json(&state.manager.info(&model, v)?)))
}
