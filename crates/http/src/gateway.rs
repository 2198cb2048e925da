//! Seed 002's text-generation gateway: `POST /v1/generate` (model id, raw
//! input, scenario, sampling parameters), `GET /health`, `GET /health/full`, and
//! the seed's entries in `GET /v1/models`. Errors are `{error_code, message}`
//! with the document's statuses; every route answers CORS requests, as the
//! document promises browsers.

use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use inferd_core::generate::{scenario_prompt, GenerateRequest, Sampling};
use inferd_core::{CoreError, ErrorKind};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tower_http::cors::CorsLayer;

use crate::body::{self, BodyError};
use crate::listing::indexed_status;
use crate::routes::{Access, Face, Routes};
use crate::AppState;

/// A remote backend that does not answer its probe within this is unhealthy.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

pub fn routes() -> Routes {
    // The layer answers preflights only for methods a route has, so each route
    // takes OPTIONS too (the layer replies before the handler runs); browsers
    // send preflights without credentials, so they are open.
    let preflight = || async { StatusCode::NO_CONTENT };
    Routes::new(Face::Gateway)
        .post("/v1/generate", Access::User, generate)
        .options("/v1/generate", Access::Open, preflight)
        .get("/health", Access::Open, health)
        .options("/health", Access::Open, preflight)
        // It loads models and calls remote servers: only for credentials.
        .get("/health/full", Access::Read, health_full)
        .options("/health/full", Access::Open, preflight)
        .layer(CorsLayer::permissive())
}

pub struct GatewayError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl GatewayError {
    fn invalid(message: impl Into<String>) -> Self {
        GatewayError {
            status: StatusCode::BAD_REQUEST,
            code: "INVALID_REQUEST",
            message: message.into(),
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let body = json!({"error_code": self.code, "message": self.message});
        (self.status, Json(body)).into_response()
    }
}

impl From<BodyError> for GatewayError {
    fn from(e: BodyError) -> Self {
        let code = match e.status {
            StatusCode::PAYLOAD_TOO_LARGE => "PAYLOAD_TOO_LARGE",
            StatusCode::REQUEST_TIMEOUT => "REQUEST_TIMEOUT",
            _ => "INVALID_REQUEST",
        };
        GatewayError {
            status: e.status,
            code,
            message: e.message,
        }
    }
}

impl From<CoreError> for GatewayError {
    fn from(e: CoreError) -> Self {
        use StatusCode as S;
        let (status, code) = match &e {
            CoreError::ModelNotFound(_)
            | CoreError::VersionNotFound { .. }
            | CoreError::UnsupportedTask { .. } => (S::BAD_REQUEST, "MODEL_NOT_FOUND"),
            CoreError::PromptFormat { .. } => (S::BAD_REQUEST, "PROMPT_FORMAT_FAILED"),
            CoreError::DeadlineExceeded { .. } => (S::GATEWAY_TIMEOUT, "INFERENCE_TIMEOUT"),
            CoreError::Downstream { .. } => (S::SERVICE_UNAVAILABLE, "DOWNSTREAM_REQUEST_FAILED"),
            CoreError::UpstreamStatus { .. } => (S::INTERNAL_SERVER_ERROR, "TGI_SERVER_ERROR"),
            _ => match e.kind() {
                ErrorKind::InvalidInput | ErrorKind::Unsupported | ErrorKind::Conflict => {
                    (S::BAD_REQUEST, "INVALID_REQUEST")
                }
                ErrorKind::TooLarge => (S::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"),
                ErrorKind::NotFound => (S::BAD_REQUEST, "MODEL_NOT_FOUND"),
                ErrorKind::Overloaded => (S::SERVICE_UNAVAILABLE, "MODEL_OVERLOADED"),
                ErrorKind::NotReady | ErrorKind::Unavailable => {
                    (S::SERVICE_UNAVAILABLE, "MODEL_UNAVAILABLE")
                }
                ErrorKind::Timeout => (S::GATEWAY_TIMEOUT, "INFERENCE_TIMEOUT"),
                ErrorKind::Upstream => (S::INTERNAL_SERVER_ERROR, "TGI_SERVER_ERROR"),
                ErrorKind::Unauthorized => (S::UNAUTHORIZED, "UNAUTHORIZED"),
                ErrorKind::Forbidden => (S::FORBIDDEN, "FORBIDDEN"),
                ErrorKind::Internal => (S::INTERNAL_SERVER_ERROR, "INFERENCE_FAILED"),
            },
        };
        GatewayError {
            status,
            code,
            message: e.to_string(),
        }
    }
}

/// Liberal as the document's pydantic model: unknown fields (TGI's
/// `details`, say) are ignored and `null` is absent.
#[derive(Deserialize)]
struct GenerateBody {
    model_id: String,
    inputs: String,
    #[serde(default)]
    scenario: Option<String>,
    #[serde(default, deserialize_with = "body::null_as_default")]
    parameters: Parameters,
}

/// Seed 002's parameters (with its defaults), plus the usual `top_k`,
/// `repetition_penalty` and `seed`.
#[derive(Deserialize, Default)]
struct Parameters {
    max_new_tokens: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<u32>,
    do_sample: Option<bool>,
    repetition_penalty: Option<f32>,
    seed: Option<u64>,
    stop: Option<Vec<String>>,
}

impl Parameters {
    fn sampling(self) -> Sampling {
        let d = Sampling::default();
        Sampling {
            max_new_tokens: self.max_new_tokens.unwrap_or(d.max_new_tokens),
            temperature: self.temperature.unwrap_or(d.temperature),
            top_p: self.top_p.unwrap_or(d.top_p),
            top_k: self.top_k.unwrap_or(d.top_k),
            do_sample: self.do_sample.unwrap_or(d.do_sample),
            repetition_penalty: self.repetition_penalty.unwrap_or(d.repetition_penalty),
            seed: self.seed,
            stop: self.stop.unwrap_or_default(),
        }
    }
}

async fn generate(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, GatewayError> {
    let bytes = body::bytes(body, state.max_body_bytes)?;
    let req: GenerateBody = body::json(&bytes)?;
    if req.inputs.trim().is_empty() {
        return Err(GatewayError::invalid("'inputs' must be a non-empty string"));
    }
    let sampling = req.parameters.sampling();
    sampling.validate()?;
    let names = state.manager.text_model_names();
    if !names.contains(&req.model_id) {
        return Err(GatewayError {
            status: StatusCode::BAD_REQUEST,
            code: "MODEL_NOT_FOUND",
            message: format!(
                "model_id '{}' is not supported; text models here are {names:?}",
                req.model_id
            ),
        });
    }
    let model = state.manager.text_model(&req.model_id).await?;
    let config = state
        .manager
        .info(&req.model_id, Some(model.version()))?
        .config;
    let prompt = scenario_prompt(
        &req.model_id,
        &config.scenarios,
        req.scenario.as_deref().unwrap_or("base"),
        &req.inputs,
    )?;
    let done = model
        .start(GenerateRequest { prompt, sampling })?
        .collect()
        .await?;
    Ok(Json(json!({
        "generated_text": done.text,
        "model": model.info().served_name,
        "tokens": done.finished.generated_tokens,
    })))
}

fn overall(statuses: &Map<String, Value>) -> &'static str {
    let bad = statuses.values().filter(|s| *s == "unhealthy").count();
    match bad {
        0 => "healthy",
        n if n == statuses.len() => "unhealthy",
        _ => "degraded",
    }
}

/// `GET /health`: every text model's state as it stands, loading nothing. A
/// model that failed its last `/health/full` probe (a remote server that was
/// down, say) stays unhealthy here until a probe passes, so the two agree.
async fn health(State(state): State<AppState>) -> Json<Value> {
    let mut models = Map::new();
    let mut reasons = Map::new();
    let index = state.manager.index();
    let failed = state
        .failed_probes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for name in state.manager.text_model_names() {
        let (status, reason) = match (indexed_status(&index, &name), failed.get(&name)) {
            (("unhealthy", reason), _) => ("unhealthy", reason),
            (_, Some(reason)) => ("unhealthy", Some(reason.clone())),
            ((status, _), None) => (status, None),
        };
        if let Some(reason) = reason {
            reasons.insert(name.clone(), json!(reason));
        }
        models.insert(name, json!(status));
    }
    Json(json!({
        "status": overall(&models),
        "total": models.len(),
        "models": models,
        "reasons": reasons,
    }))
}

/// `GET /health/full`: checks every text model now, loading it if needed and
/// probing remote servers, all at once; `reasons` says why one is unhealthy.
/// Once keys exist it needs one (`read`): the auth middleware refuses anyone
/// else before this runs, so no caller without a key can force loads.
async fn health_full(State(state): State<AppState>) -> Json<Value> {
    let names = state.manager.text_model_names();
    let index = state.manager.index();
    let probes = names.iter().map(|name| {
        let state = state.clone();
        let name = name.clone();
        let known = indexed_status(&index, &name);
        tokio::spawn(async move {
            if let ("unhealthy", reason) = known {
                return (name, reason);
            }
            let checked = tokio::time::timeout(PROBE_TIMEOUT, async {
                let model = state
                    .manager
                    .text_model(&name)
                    .await
                    .map_err(|e| e.to_string())?;
                model.probe().await
            })
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {PROBE_TIMEOUT:?}")));
            (name, checked.err())
        })
    });
    let mut details = Map::new();
    let mut reasons = Map::new();
    for probe in probes.collect::<Vec<_>>() {
        let Ok((name, failure)) = probe.await else {
            continue;
        };
        match failure {
            None => {
                details.insert(name, json!("healthy"));
            }
            Some(reason) => {
                details.insert(name.clone(), json!("unhealthy"));
                reasons.insert(name, json!(reason));
            }
        }
    }
    {
        let mut failed = state
            .failed_probes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        failed.retain(|name, _| !details.contains_key(name));
        failed.extend(
            reasons
                .iter()
                .map(|(name, why)| (name.clone(), why.as_str().unwrap_or_default().to_string())),
        );
    }
    let healthy = details.values().filter(|s| *s == "healthy").count();
    Json(json!({
        "status": overall(&details),
        "total": details.len(),
        "healthy": healthy,
        "details": details,
        "reasons": reasons,
    }))
}
