//! `POST /inference/infer` (and its legacy aliases), `/batch` and
//! `/models/preload`.

use std::time::Instant;

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Json;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::request::{check, execute, UnifiedRequest};
use super::{now, UnifiedError};
use crate::{body, AppState};

/// The most requests one batch may hold (the document's limit).
pub const MAX_BATCH: usize = 100;

/// What one request gave: the result, the task, the engine and the model name
/// it resolved to.
pub(super) type Done = (Value, String, String, String);

/// Checks and runs one request, recording it in the face's statistics under
/// the task and model it resolved to (or as sent, when it did not resolve).
pub(super) async fn one(state: &AppState, req: UnifiedRequest) -> Result<Done, UnifiedError> {
    one_streaming(state, req, None).await
}

/// As `one`; a text generation also sends each token's text to `tokens`.
pub(super) async fn one_streaming(
    state: &AppState,
    req: UnifiedRequest,
    tokens: Option<&mpsc::Sender<String>>,
) -> Result<Done, UnifiedError> {
    let started = Instant::now();
    // Requests that do not resolve are counted under one series each for an
    // unknown task or model, so invented names cannot grow the statistics.
    let (mut task, mut model) = ("(unresolved)".to_string(), "(unresolved)".to_string());
    let result = async {
        let checked = check(state, req)?;
        task = checked.task.to_string();
        model = checked.req.model_name.clone();
        let value = execute(state, &checked, tokens).await?;
        Ok((
            value,
            task.clone(),
            checked.info.config.backend.clone(),
            model.clone(),
        ))
    }
    .await;
    state
        .recorder
        .record(&task, &model, result.is_ok(), started.elapsed());
    result
}

pub(super) fn parse<T: for<'de> Deserialize<'de>>(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, UnifiedError> {
    let bytes = body::bytes(body, state.max_body_bytes)?;
    Ok(body::json(&bytes)?)
}

pub async fn infer(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, UnifiedError> {
    let started = Instant::now();
    let req: UnifiedRequest = parse(&state, body)?;
    answer(&state, req, started).await
}

async fn answer(
    state: &AppState,
    req: UnifiedRequest,
    started: Instant,
) -> Result<Json<Value>, UnifiedError> {
    Ok(Json(success(one(state, req).await?, started)))
}

/// The document's answer to one successful request.
pub(super) fn success((result, task, engine, model): Done, started: Instant) -> Value {
    json!({
        "success": true,
        "task": task,
        "engine": engine,
        "model_name": model,
        "result": result,
        "processing_time": started.elapsed().as_secs_f64(),
        "timestamp": now(),
    })
}

/// The legacy multimodal route: an image with optional text; the image decides
/// the task (image-classification) unless one is named.
pub async fn infer_multimodal(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, UnifiedError> {
    let mut raw: Value = parse(&state, body)?;
    let Some(fields) = raw.as_object_mut() else {
        return Err(UnifiedError::invalid("request body must be a JSON object"));
    };
    fields
        .entry("task")
        .or_insert_with(|| Value::String("image-classification".into()));
    let req: UnifiedRequest = serde_json::from_value(raw)
        .map_err(|e| UnifiedError::invalid(format!("request body is not valid: {e}")))?;
    answer(&state, req, Instant::now()).await
}

#[derive(Deserialize)]
struct BatchRequest {
    requests: Vec<UnifiedRequest>,
    #[serde(default, deserialize_with = "crate::body::null_as_default")]
    parallel: bool,
}

fn item(index: usize, task: String, model: String, result: Result<Done, UnifiedError>) -> Value {
    match result {
        Ok((value, ..)) => json!({ "index": index, "success": true, "result": value }),
        // The document's `error` is the message; the structured error (code,
        // type, details) rides beside it.
        Err(e) => json!({
            "index": index,
            "success": false,
            "error": e.message,
            "error_detail": e.body(),
            "task": task,
            "model_name": model,
        }),
    }
}

/// Up to 100 requests, one after another or (`parallel`) all at once through
/// the scheduler, so that dynamic batching joins them.
pub async fn batch(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, UnifiedError> {
    let started = Instant::now();
    let req: BatchRequest = parse(&state, body)?;
    let n = req.requests.len();
    if n == 0 || n > MAX_BATCH {
        return Err(UnifiedError::invalid(format!(
            "a batch holds 1 to {MAX_BATCH} requests, not {n}"
        )));
    }
    let mut results = Vec::with_capacity(n);
    if req.parallel {
        let mut set = tokio::task::JoinSet::new();
        for (i, r) in req.requests.into_iter().enumerate() {
            let state = state.clone();
            set.spawn(async move {
                let (task, model) = (r.task.clone(), r.model_name.clone());
                (i, item(i, task, model, one(&state, r).await))
            });
        }
        while let Some(done) = set.join_next().await {
            results.push(
                done.map_err(|e| UnifiedError::invalid(format!("a batch item stopped: {e}")))?,
            );
        }
        results.sort_by_key(|(i, _)| *i);
    } else {
        for (i, r) in req.requests.into_iter().enumerate() {
            let (task, model) = (r.task.clone(), r.model_name.clone());
            results.push((i, item(i, task, model, one(&state, r).await)));
        }
    }
    let results: Vec<Value> = results.into_iter().map(|(_, v)| v).collect();
    let ok = results.iter().filter(|r| r["success"] == true).count();
    let total = started.elapsed().as_secs_f64();
    Ok(Json(json!({
        "success": true,
        "summary": {
            "total_requests": n,
            "successful": ok,
            "failed": n - ok,
            "success_rate": ok as f64 / n as f64,
        },
        "results": results,
        "total_processing_time": total,
        "average_time_per_request": total / n as f64,
        "parallel": req.parallel,
        "timestamp": now(),
    })))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PreloadItem {
    Key(String),
    Named {
        engine: Option<String>,
        model_name: String,
    },
}

#[derive(Deserialize)]
struct PreloadRequest {
    models: Vec<PreloadItem>,
}

/// Loads the named models into the cache; reports each: loaded, how long it
/// took, or why not.
pub async fn preload(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, UnifiedError> {
    let req: PreloadRequest = parse(&state, body)?;
    if req.models.is_empty() || req.models.len() > MAX_BATCH {
        return Err(UnifiedError::invalid(format!(
            "'models' must name 1 to {MAX_BATCH} models"
        )));
    }
    let mut results = Vec::with_capacity(req.models.len());
    for m in req.models {
        let key = match m {
            PreloadItem::Key(k) => k,
            PreloadItem::Named {
                engine: Some(e),
                model_name,
            } if e != "transformers" => format!("{e}:{model_name}"),
            PreloadItem::Named { model_name, .. } => model_name,
        };
        let started = Instant::now();
        let outcome = match state.manager.name_of_key(&key) {
            Ok(name) => state.manager.load(&name, None).await,
            Err(e) => Err(e),
        };
        let ms = started.elapsed().as_secs_f64() * 1e3;
        results.push(match outcome {
            Ok(o) => json!({
                "key": key,
                "loaded": true,
                "already_loaded": o == inferd_core::Outcome::AlreadyThere,
                "time_ms": ms,
            }),
            Err(e) => json!({ "key": key, "loaded": false, "time_ms": ms, "error": UnifiedError::from(e).body() }),
        });
    }
    let loaded = results.iter().filter(|r| r["loaded"] == true).count();
    Ok(Json(json!({
        "success": loaded == results.len(),
        "loaded": loaded,
        "results": results,
        "timestamp": now(),
    })))
}
