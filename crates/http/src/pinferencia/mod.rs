//! Pinferencia's two API flavours (seed 000): the default API (`/v1/healthz`,
//! bare-boolean ready/load/unload, `predict` with `data`) and the kserve flavour
//! (`/v1/.../infer` with `instances` → `predictions`, `/v2/healthz`,
//! `/v2/models/{m}/load|unload`). Errors are FastAPI's `{"detail": "..."}`.
//! None of Pinferencia's bugs are copied: unknown models are 404, a failed load is
//! an error, not `200 false`.

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use inferd_core::{CoreError, ErrorKind, Outcome};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::body::{self, BodyError};
use crate::routes::{Access, Face, Routes};
use crate::{rows, AppState};

mod v2;

pub use v2::{infer_v2, infer_v2_version};

pub fn routes() -> Routes {
    Routes::new(Face::Pinferencia)
        .get("/v1/healthz", Access::Open, healthz)
        .get("/v2/healthz", Access::Open, healthz)
        .get("/v1/models/{model}/ready", Access::Open, ready)
        .get(
            "/v1/models/{model}/versions/{version}/ready",
            Access::Open,
            ready_version,
        )
        .post("/v1/models/{model}/load", Access::Admin, load)
        .post(
            "/v1/models/{model}/versions/{version}/load",
            Access::Admin,
            load_version,
        )
        .post("/v1/models/{model}/unload", Access::Admin, unload)
        .post(
            "/v1/models/{model}/versions/{version}/unload",
            Access::Admin,
            unload_version,
        )
        .post("/v2/models/{model}/load", Access::Admin, load)
        .post(
            "/v2/models/{model}/versions/{version}/load",
            Access::Admin,
            load_version,
        )
        .post("/v2/models/{model}/unload", Access::Admin, unload)
        .post(
            "/v2/models/{model}/versions/{version}/unload",
            Access::Admin,
            unload_version,
        )
        .post("/v1/models/{model}/predict", Access::User, predict)
        .post(
            "/v1/models/{model}/versions/{version}/predict",
            Access::User,
            predict_version,
        )
        .post("/v1/models/{model}/infer", Access::User, infer)
        .post(
            "/v1/models/{model}/versions/{version}/infer",
            Access::User,
            infer_version,
        )
}

/// `{"detail": message}` with FastAPI's statuses (422 for a body that does not
/// validate).
pub struct Detail(StatusCode, String);

impl IntoResponse for Detail {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "detail": self.1 }))).into_response()
    }
}

impl From<CoreError> for Detail {
    fn from(e: CoreError) -> Self {
        let (status, message) = match e.kind() {
            ErrorKind::InvalidInput | ErrorKind::Unsupported => {
                (StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, format!("Model not found. {e}")),
            ErrorKind::NotReady => (
                StatusCode::BAD_REQUEST,
                "Model is not loaded. Load the model first.".into(),
            ),
            ErrorKind::Conflict => (StatusCode::BAD_REQUEST, e.to_string()),
            ErrorKind::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
            ErrorKind::Overloaded | ErrorKind::Unavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            ErrorKind::Timeout => (StatusCode::GATEWAY_TIMEOUT, e.to_string()),
            ErrorKind::Upstream => (StatusCode::BAD_GATEWAY, e.to_string()),
            ErrorKind::Unauthorized => (StatusCode::UNAUTHORIZED, e.to_string()),
            ErrorKind::Forbidden => (StatusCode::FORBIDDEN, e.to_string()),
            ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
        Detail(status, message)
    }
}

impl From<BodyError> for Detail {
    fn from(e: BodyError) -> Self {
        let status = if e.status == StatusCode::BAD_REQUEST {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            e.status
        };
        Detail(status, e.message)
    }
}

/// Pinferencia's version names: `default` (or nothing) is the served default.
pub(super) fn version(model: &str, v: &str) -> Result<Option<u64>, Detail> {
    match v {
        "default" | "" => Ok(None),
        v => v.parse().map(Some).map_err(|_| {
            Detail::from(CoreError::VersionNotFound {
                model: model.into(),
                version: v.into(),
            })
        }),
    }
}

async fn healthz(State(state): State<AppState>) -> Response {
    if state.manager.is_shutting_down() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(false)).into_response();
    }
    Json(true).into_response()
}

pub async fn ready(
    state: State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<bool>, Detail> {
    is_ready(state, &model, None)
}

pub async fn ready_version(
    state: State<AppState>,
    Path((model, v)): Path<(String, String)>,
) -> Result<Json<bool>, Detail> {
    let v = version(&model, &v)?;
    is_ready(state, &model, v)
}

fn is_ready(
    State(state): State<AppState>,
    model: &str,
    v: Option<u64>,
) -> Result<Json<bool>, Detail> {
    Ok(Json(state.manager.is_ready(model, v)?))
}

async fn load(state: State<AppState>, Path(model): Path<String>) -> Result<Json<bool>, Detail> {
    change(state, &model, None, true).await
}

async fn load_version(
    state: State<AppState>,
    Path((model, v)): Path<(String, String)>,
) -> Result<Json<bool>, Detail> {
    let v = version(&model, &v)?;
    change(state, &model, v, true).await
}

async fn unload(state: State<AppState>, Path(model): Path<String>) -> Result<Json<bool>, Detail> {
    change(state, &model, None, false).await
}

async fn unload_version(
    state: State<AppState>,
    Path((model, v)): Path<(String, String)>,
) -> Result<Json<bool>, Detail> {
    let v = version(&model, &v)?;
    change(state, &model, v, false).await
}

async fn change(
    State(state): State<AppState>,
    model: &str,
    v: Option<u64>,
    load: bool,
) -> Result<Json<bool>, Detail> {
    let outcome = if load {
        state.manager.load(model, v).await?
    } else {
        state.manager.unload(model, v).await?
    };
    match (outcome, load) {
        (Outcome::Done, _) => Ok(Json(true)),
        (Outcome::AlreadyThere, true) => Err(Detail(
            StatusCode::BAD_REQUEST,
            "Model already loaded.".into(),
        )),
        (Outcome::AlreadyThere, false) => Err(Detail(
            StatusCode::BAD_REQUEST,
            "Model is not loaded.".into(),
        )),
    }
}

/// Liberal as Pinferencia's pydantic models: unknown fields are ignored, and
/// an integer `id` reads as its text.
#[derive(Deserialize)]
struct PredictRequest {
    #[serde(default, deserialize_with = "id_text")]
    id: Option<String>,
    #[serde(rename = "parameters")]
    _parameters: Option<Map<String, Value>>,
    data: Value,
}

#[derive(Deserialize)]
struct InferRequest {
    #[serde(default, deserialize_with = "id_text")]
    id: Option<String>,
    #[serde(rename = "parameters")]
    _parameters: Option<Map<String, Value>>,
    instances: Vec<Value>,
}

pub(super) fn id_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => {
            return Err(serde::de::Error::custom(format!(
                "'id' must be a string or a number, not {other}"
            )))
        }
    })
}

async fn predict(
    state: State<AppState>,
    Path(model): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    respond(predict_with(state, model, None, body).await)
}

async fn predict_version(
    state: State<AppState>,
    Path((model, v)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = match version(&model, &v) {
        Ok(v) => predict_with(state, model, v, body).await,
        Err(e) => Err(e),
    };
    respond(result)
}

async fn infer(
    state: State<AppState>,
    Path(model): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    respond(infer_with(state, model, None, false, body).await)
}

async fn infer_version(
    state: State<AppState>,
    Path((model, v)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = match version(&model, &v) {
        Ok(v) => infer_with(state, model, v, true, body).await,
        Err(e) => Err(e),
    };
    respond(result)
}

pub(super) fn respond(result: Result<Value, Detail>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Default API: `data` is the model's input as rows (or an object of inputs).
async fn predict_with(
    State(state): State<AppState>,
    model: String,
    v: Option<u64>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, Detail> {
    let bytes = body::bytes(body, state.max_body_bytes)?;
    let req: PredictRequest = body::json(&bytes)?;
    let info = state.manager.info_loaded(&model, v).await?;
    let max = state.manager.config().max_elements;
    let plan = match &req.data {
        Value::Array(rows) => rows::from_instances(&info, rows, max)?,
        other => rows::from_columns(&info, other, max)?,
    };
    let columnar = !req.data.is_array();
    let answer = rows::run(&state.manager, &model, v, plan).await?;
    let data = if columnar {
        answer.columns()
    } else {
        Value::Array(answer.predictions())
    };
    let mut out = json!({
        "model_name": model,
        "model_version": answer.version.to_string(),
        "data": data,
    });
    if let Some(id) = req.id {
        out["id"] = Value::String(id);
    }
    Ok(out)
}

/// kserve flavour V1: `instances` → `predictions`; `model_version` only on the
/// versioned path, as Pinferencia does.
async fn infer_with(
    State(state): State<AppState>,
    model: String,
    v: Option<u64>,
    versioned: bool,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, Detail> {
    let bytes = body::bytes(body, state.max_body_bytes)?;
    let req: InferRequest = body::json(&bytes)?;
    let info = state.manager.info_loaded(&model, v).await?;
    let plan = rows::from_instances(&info, &req.instances, state.manager.config().max_elements)?;
    let answer = rows::run(&state.manager, &model, v, plan).await?;
    let out = json!({ "model_name": model, "predictions": answer.predictions() });
    Ok(kserve_answer(
        out,
        versioned.then_some(answer.version),
        req.id,
    ))
}

/// The kserve flavour's answer: `model_version` only on a versioned path,
/// `id` only when the request had one, as Pinferencia does.
pub(super) fn kserve_answer(mut out: Value, version: Option<u64>, id: Option<String>) -> Value {
    if let Some(v) = version {
        out["model_version"] = Value::String(v.to_string());
    }
    if let Some(id) = id {
        out["id"] = Value::String(id);
    }
    out
}

fn model_version_json(state: &AppState, model: &str, v: u64) -> Value {
    let info = state.manager.info(model, Some(v)).ok();
    json!({
        "name": v.to_string(),
        "display_name": model,
        "description": "",
        "platform": info.as_ref().map(|i| i.config.platform.clone()).unwrap_or_default(),
        "device": "cpu",
        "task": "",
        "input_type": "",
        "output_type": "",
    })
}

fn versions_json(state: &AppState, model: &str) -> Result<Vec<Value>, CoreError> {
    let info = state.manager.info(model, None)?;
    Ok(info
        .versions
        .iter()
        .map(|&v| model_version_json(state, model, v))
        .collect())
}

/// `GET /v1/models` under `--compat pinferencia`: `[{"name", "versions"}]`.
pub async fn list(State(state): State<AppState>) -> Json<Value> {
    let models: Vec<Value> = state
        .manager
        .model_names()
        .into_iter()
        .map(|name| {
            let versions = versions_json(&state, &name).unwrap_or_default();
            json!({ "name": name, "versions": versions, "platform": "" })
        })
        .collect();
    Json(Value::Array(models))
}

/// `GET /v1/models/{m}` under `--compat pinferencia`: the version list.
pub async fn versions(State(state): State<AppState>, Path(model): Path<String>) -> Response {
    match versions_json(&state, &model) {
        Ok(v) => Json(Value::Array(v)).into_response(),
        Err(e) => Detail::from(e).into_response(),
    }
}
