//! OpenAI's embeddings API (`POST /v1/embeddings`), so the stock `openai`
//! client can embed with any model that declares `task = "feature-extraction"`.
//! Errors are `{"error": {message, type, param, code}}`. (`GET /v1/models` is
//! shared with KServe V1 and answered in `kserve_v1`, whose object carries
//! OpenAI's `object`/`data`.)

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use bytes::Bytes;
use inferd_core::{CoreError, ErrorKind};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::body::{self, BodyError};
use crate::AppState;

/// OpenAI's own limit on inputs per request.
const MAX_INPUTS: usize = 2048;

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/embeddings", post(embeddings))
}

pub struct OpenAiError {
    status: StatusCode,
    message: String,
    kind: &'static str,
    param: Option<&'static str>,
    code: Option<&'static str>,
}

impl OpenAiError {
    fn invalid(message: impl Into<String>, param: &'static str) -> Self {
        OpenAiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: Some(param),
            code: None,
        }
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}});
        (self.status, Json(body)).into_response()
    }
}

impl From<CoreError> for OpenAiError {
    fn from(e: CoreError) -> Self {
        let (status, kind, code) = match e.kind() {
            ErrorKind::InvalidInput | ErrorKind::Unsupported => {
                (StatusCode::BAD_REQUEST, "invalid_request_error", None)
            }
            ErrorKind::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error", None),
            ErrorKind::NotFound => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("model_not_found"),
            ),
            ErrorKind::Overloaded => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                Some("overloaded"),
            ),
            ErrorKind::Timeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "timeout_error",
                Some("timeout"),
            ),
            ErrorKind::NotReady | ErrorKind::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                Some("model_unavailable"),
            ),
            ErrorKind::Conflict => (StatusCode::CONFLICT, "invalid_request_error", None),
            ErrorKind::Upstream => (StatusCode::BAD_GATEWAY, "server_error", Some("upstream_error")),
            ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "server_error", None),
        };
        OpenAiError {
            status,
            message: e.to_string(),
            kind,
            param: None,
            code,
        }
    }
}

impl From<BodyError> for OpenAiError {
    fn from(e: BodyError) -> Self {
        OpenAiError {
            status: e.status,
            message: e.message,
            kind: "invalid_request_error",
            param: None,
            code: None,
        }
    }
}

#[derive(Deserialize)]
struct EmbeddingsRequest {
    input: Value,
    model: String,
    #[serde(default)]
    encoding_format: Option<String>,
    dimensions: Option<usize>,
    #[serde(rename = "user")]
    _user: Option<String>,
}

fn texts(input: &Value) -> Result<Vec<String>, OpenAiError> {
    let token_arrays = || {
        OpenAiError::invalid(
            "token arrays are not accepted: send the text itself (a string or a list of strings)",
            "input",
        )
    };
    match input {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if items.is_empty() => {
            Err(OpenAiError::invalid("'input' is an empty list", "input"))
        }
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(_) | Value::Array(_) => Err(token_arrays()),
                other => Err(OpenAiError::invalid(
                    format!("every input must be a string, got {other}"),
                    "input",
                )),
            })
            .collect(),
        other => Err(OpenAiError::invalid(
            format!("'input' must be a string or a list of strings, got {other}"),
            "input",
        )),
    }
}

async fn embeddings(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, OpenAiError> {
    let bytes = body::bytes(body, state.max_body_bytes)?;
    let req: EmbeddingsRequest = body::json(&bytes)?;
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(OpenAiError::invalid(
                format!("encoding_format must be 'float' or 'base64', not '{other}'"),
                "encoding_format",
            ))
        }
    };
    let texts = texts(&req.input)?;
    if texts.len() > MAX_INPUTS {
        return Err(OpenAiError::invalid(
            format!(
                "at most {MAX_INPUTS} inputs per request, got {}",
                texts.len()
            ),
            "input",
        ));
    }
    let out = state.manager.embed(&req.model, texts, None).await?;
    let dims = out.vectors.first().map(Vec::len).unwrap_or(0);
    if let Some(d) = req.dimensions {
        if d != dims {
            return Err(OpenAiError::invalid(
                format!(
                    "model '{}' gives {dims} dimensions; 'dimensions' must be {dims} or left out",
                    req.model
                ),
                "dimensions",
            ));
        }
    }
    let data: Vec<Value> = out
        .vectors
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if base64 {
                let raw: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(raw))
            } else {
                json!(v)
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    let tokens: i64 = out.tokens.iter().sum();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": req.model,
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
    })))
}
