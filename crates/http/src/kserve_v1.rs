//! KServe V1 (TF Serving's REST shape): model status and `:predict` with rows
//! (`instances` → `predictions`) or columns (`inputs` → `outputs`). Errors are
//! `{"error": "..."}` with KServe's statuses.

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use inferd_core::CoreError;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::body::{self, BodyError};
use crate::routes::{Access, Face, Routes};
use crate::{rows, AppState};

pub fn routes() -> Routes {
    Routes::new(Face::KserveV1)
        .get("/", Access::Open, alive)
        .post("/v1/models/{model}", Access::User, predict)
        .post(
            "/v1/models/{model}/versions/{version}",
            Access::User,
            predict_version,
        )
}

/// KServe's liveness at the root, which its V1 client's `is_server_live` reads
/// (`POST /` is TGI's).
async fn alive() -> Json<Value> {
    Json(json!({ "status": "alive" }))
}

/// A V1 error: status and `{"error": message}`.
pub struct V1Error(StatusCode, String);

impl IntoResponse for V1Error {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<CoreError> for V1Error {
    fn from(e: CoreError) -> Self {
        let status = crate::status::kserve_status(e.kind());
        V1Error(status, e.to_string())
    }
}

impl From<BodyError> for V1Error {
    fn from(e: BodyError) -> Self {
        V1Error(e.status, e.message)
    }
}

/// `GET /v1/models`: KServe's `models` list, plus OpenAI's `object`/`data` so one
/// answer serves both kinds of client.
/// One object for three clients: seed 002's `models` entries, OpenAI's
/// `object`/`data` list; KServe V1 clients read the `id`s.
pub async fn list(State(state): State<AppState>) -> Json<Value> {
    let names = state.manager.model_names();
    let data = crate::listing::openai_entries(&names);
    let index = state.manager.index();
    let models: Vec<Value> = names
        .iter()
        .map(|n| crate::listing::model_entry(&state, &index, n))
        .collect();
    Json(json!({ "models": models, "object": "list", "data": data }))
}

/// `GET /v1/models/{m}`: `{"name", "ready"}`; 503 while not ready, as KServe.
pub async fn status(State(state): State<AppState>, Path(model): Path<String>) -> Response {
    match state.manager.info(&model, None) {
        Ok(info) if info.ready => Json(json!({
            "name": model,
            "ready": true,
            "id": model,
            "object": "model",
            "created": 0,
            "owned_by": "inferd",
            "versions": info.versions.iter().map(u64::to_string).collect::<Vec<_>>(),
        }))
        .into_response(),
        Ok(_) => V1Error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("Model with name {model} is not ready."),
        )
        .into_response(),
        Err(e) => V1Error::from(e).into_response(),
    }
}

#[derive(Deserialize)]
struct PredictRequest {
    instances: Option<Vec<Value>>,
    inputs: Option<Value>,
    #[serde(rename = "signature_name")]
    _signature_name: Option<String>,
}

async fn predict(
    state: State<AppState>,
    Path(target): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some((model, verb)) = target.rsplit_once(':') else {
        return V1Error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("POST /v1/models/{target} needs a verb: /v1/models/{target}:predict"),
        )
        .into_response();
    };
    run(state, model, None, verb, body).await
}

async fn predict_version(
    state: State<AppState>,
    Path((model, target)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some((version, verb)) = target.rsplit_once(':') else {
        return V1Error(
            StatusCode::NOT_FOUND,
            format!("no route for version '{target}'; use :predict"),
        )
        .into_response();
    };
    let version = match version.parse::<u64>() {
        Ok(v) => Some(v),
        Err(_) => {
            return V1Error::from(CoreError::VersionNotFound {
                model: model.clone(),
                version: version.into(),
            })
            .into_response()
        }
    };
    run(state, &model, version, verb, body).await
}

async fn run(
    State(state): State<AppState>,
    model: &str,
    version: Option<u64>,
    verb: &str,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        if verb != "predict" {
            return Err(V1Error(
                StatusCode::NOT_IMPLEMENTED,
                format!("':{verb}' is not supported; use ':predict'"),
            ));
        }
        let bytes = body::bytes(body, state.max_body_bytes)?;
        let req: PredictRequest = body::json(&bytes)?;
        let info = state.manager.info_loaded(model, version).await?;
        let max = state.manager.config().max_elements;
        let (plan, columnar) = match (&req.instances, &req.inputs) {
            (Some(rows), None) => (rows::from_instances(&info, rows, max)?, false),
            (None, Some(cols)) => (rows::from_columns(&info, cols, max)?, true),
            _ => {
                return Err(V1Error(
                    StatusCode::BAD_REQUEST,
                    "the body needs exactly one of 'instances' (rows) or 'inputs' (columns)".into(),
                ))
            }
        };
        let answer = rows::run(&state.manager, model, version, plan).await?;
        Ok(if columnar {
            json!({ "outputs": answer.columns() })
        } else {
            json!({ "predictions": answer.predictions() })
        })
    }
    .await;
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}
