//! The Open Inference Protocol V2 over REST (KServe V2, Triton), with Triton's
//! extensions that work here: binary tensor data, the model repository,
//! statistics, model configuration and schedule policy (`timeout`). Errors are
//! `{"error": "..."}`.

pub(crate) mod infer;
mod repository;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use inferd_core::{CoreError, ModelInfo, TensorSpec};
use serde_json::{json, Value};

use crate::body::BodyError;
use crate::routes::{Access, Face, Routes};
use crate::status::kserve_status;
use crate::AppState;

/// The extensions server metadata advertises: exactly those implemented.
pub const EXTENSIONS: [&str; 5] = [
    "binary_tensor_data",
    "model_repository",
    "statistics",
    "model_configuration",
    "schedule_policy",
];

pub fn routes() -> Routes {
    Routes::new(Face::V2)
        .get("/v2", Access::Read, server_metadata)
        .get("/v2/health/live", Access::Open, live)
        .get("/v2/health/ready", Access::Open, server_ready)
        .get(
            "/v2/models/{model}/versions/{version}",
            Access::Read,
            metadata_version,
        )
        .get(
            "/v2/models/{model}/config",
            Access::Read,
            repository::config,
        )
        .get(
            "/v2/models/{model}/versions/{version}/config",
            Access::Read,
            repository::config_version,
        )
        .get("/v2/models/stats", Access::Read, repository::all_stats)
        .get("/v2/models/{model}/stats", Access::Read, repository::stats)
        .get(
            "/v2/models/{model}/versions/{version}/stats",
            Access::Read,
            repository::stats_version,
        )
        .post("/v2/repository/index", Access::Read, repository::index)
        .post(
            "/v2/repository/models/{model}/load",
            Access::Admin,
            repository::load,
        )
        .post(
            "/v2/repository/models/{model}/unload",
            Access::Admin,
            repository::unload,
        )
}

/// A V2 error: status and `{"error": message}`.
pub struct V2Error(pub StatusCode, pub String);

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<CoreError> for V2Error {
    fn from(e: CoreError) -> Self {
        V2Error(kserve_status(e.kind()), e.to_string())
    }
}

impl From<BodyError> for V2Error {
    fn from(e: BodyError) -> Self {
        V2Error(e.status, e.message)
    }
}

/// A version in a V2 path (see `repository::requested_version`).
pub fn parse_version(model: &str, v: &str) -> Result<Option<u64>, V2Error> {
    Ok(inferd_core::repository::requested_version(model, v)?)
}

async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "inferd",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": EXTENSIONS,
    }))
}

async fn live() -> Json<Value> {
    Json(json!({ "live": true }))
}

async fn server_ready(State(state): State<AppState>) -> Response {
    let ready = !state.manager.is_shutting_down()
        && !state.draining.load(std::sync::atomic::Ordering::Relaxed);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "ready": ready }))).into_response()
}

fn spec_json(s: &TensorSpec) -> Value {
    json!({ "name": s.name, "datatype": s.datatype.as_str(), "shape": s.shape_or_any() })
}

fn metadata_json(info: &ModelInfo) -> Value {
    json!({
        "name": info.name,
        "versions": info.versions.iter().map(u64::to_string).collect::<Vec<_>>(),
        "platform": info.config.platform,
        "inputs": info.inputs.iter().map(spec_json).collect::<Vec<_>>(),
        "outputs": info.outputs.iter().map(spec_json).collect::<Vec<_>>(),
    })
}

pub(crate) async fn metadata(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<Value>, V2Error> {
    Ok(Json(metadata_json(&state.manager.info(&model, None)?)))
}

async fn metadata_version(
    State(state): State<AppState>,
    Path((model, v)): Path<(String, String)>,
) -> Result<Json<Value>, V2Error> {
    let v = parse_version(&model, &v)?;
    Ok(Json(metadata_json(&state.manager.info(&model, v)?)))
}

pub(crate) async fn ready(state: State<AppState>, Path(model): Path<String>) -> Response {
    ready_answer(state, &model, None)
}

pub(crate) async fn ready_version(
    state: State<AppState>,
    Path((model, v)): Path<(String, String)>,
) -> Response {
    match parse_version(&model, &v) {
        Ok(v) => ready_answer(state, &model, v),
        Err(e) => e.into_response(),
    }
}

/// `{"name", "ready"}`, with 503 when not ready: clients such as tritonclient
/// read only the status.
fn ready_answer(State(state): State<AppState>, model: &str, v: Option<u64>) -> Response {
    match state.manager.is_ready(model, v) {
        Ok(ready) => {
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (status, Json(json!({ "name": model, "ready": ready }))).into_response()
        }
        Err(e) => V2Error::from(e).into_response(),
    }
}
