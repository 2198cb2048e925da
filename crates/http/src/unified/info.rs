//! Health, the tasks the present models can do, request statistics and
//! example requests that work against the models actually present.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use inferd_core::generate::TEXT_GENERATION;
use inferd_core::{FEATURE_EXTRACTION, IMAGE_CLASSIFICATION, TENSORS};
use serde_json::{json, Value};

use super::now;
use super::request::{ENGINES, KNOWN_TASKS};
use crate::AppState;

pub async fn health(State(state): State<AppState>) -> Response {
    let names = state.manager.model_names();
    let loaded = state.manager.cache_entries().len();
    let down = state.manager.is_shutting_down();
    let status = if down { "shutting_down" } else { "healthy" };
    let body = json!({
        "status": status,
        "components": {
            "model_manager": { "status": status, "models": names.len(), "loaded": loaded },
            "cache": { "status": "healthy", "memory_used_bytes": state.manager.memory_used() },
            "scheduler": { "status": status },
        },
        "timestamp": now(),
    });
    let code = if down {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(body)).into_response()
}

pub async fn supported_tasks(State(state): State<AppState>) -> Json<Value> {
    let infos: Vec<_> = state
        .manager
        .model_names()
        .iter()
        .filter_map(|n| state.manager.info(n, None).ok())
        .collect();
    let tasks: Vec<Value> = KNOWN_TASKS
        .iter()
        .map(|task| {
            let models: Vec<&str> = infos
                .iter()
                .filter(|i| i.tasks().contains(task))
                .map(|i| i.name.as_str())
                .collect();
            let mut engines: Vec<&str> = infos
                .iter()
                .filter(|i| i.tasks().contains(task))
                .map(|i| i.config.backend.as_str())
                .collect();
            engines.sort_unstable();
            engines.dedup();
            json!({ "task": task, "available": !models.is_empty(), "engines": engines, "models": models })
        })
        .collect();
    Json(json!({ "success": true, "tasks": tasks, "engines": ENGINES, "timestamp": now() }))
}

pub async fn stats(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "success": true, "stats": state.recorder.json(), "timestamp": now() }))
}

/// A zero-filled input of the model's own shape (variable dimensions as 1).
fn example_inputs(info: &inferd_core::ModelInfo) -> Value {
    let inputs: Vec<Value> = info
        .inputs
        .iter()
        .map(|s| {
            let shape: Vec<i64> = s.shape_or_any().iter().map(|&d| d.max(1)).collect();
            let count: i64 = shape.iter().product();
            let (datatype, zero) = match s.datatype.as_str() {
                "ANY" | "BYTES" => ("BYTES", json!("hello")),
                "BOOL" => ("BOOL", json!(false)),
                other => (other, json!(0)),
            };
            json!({ "name": s.name, "shape": shape, "datatype": datatype, "data": vec![zero; count as usize] })
        })
        .collect();
    json!({ "inputs": inputs })
}

/// A white 8x8 PNG, base64: a valid picture for any image model to resize.
const WHITE_PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAAAAADhZOFXAAAADklEQVR4nGP4DwUMlDEA98A/wbI0QbsAAAAASUVORK5CYII=";

pub async fn examples(State(state): State<AppState>) -> Json<Value> {
    let mut examples = Vec::new();
    for name in state.manager.model_names() {
        let Ok(info) = state.manager.info(&name, None) else {
            continue;
        };
        for task in info.tasks() {
            let (data, options) = match task {
                TENSORS => (example_inputs(&info), json!({})),
                IMAGE_CLASSIFICATION => (json!({ "image": WHITE_PNG }), json!({})),
                FEATURE_EXTRACTION => (
                    json!(["A model server that answers in every API its users speak."]),
                    json!({}),
                ),
                TEXT_GENERATION => (
                    json!("The capital of France is"),
                    json!({ "max_new_tokens": 16 }),
                ),
                _ => continue,
            };
            examples.push(json!({
                "description": format!("{task} with {name}"),
                "endpoint": "POST /inference/infer",
                "request": { "task": task, "engine": info.config.backend, "model_name": name, "data": data, "options": options },
            }));
        }
    }
    Json(json!({ "success": true, "examples": examples, "timestamp": now() }))
}
