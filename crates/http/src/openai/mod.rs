//! OpenAI's API, so the stock `openai` client works against inferd:
//! embeddings with any model that declares `task = "feature-extraction"`
//! (`embeddings.rs`), completions and chat completions with any text model
//! (`text.rs`). Errors are `{"error": {message, type, param, code}}`.
//! (`GET /v1/models` and `/v1/models/{id}` are shared with KServe V1 and seed
//! 002, answered in `lib.rs` with one object that carries every shape;
//! `/openai/v1/models` is OpenAI's alone.)

mod embeddings;
mod text;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use inferd_core::{CoreError, ErrorKind};
use serde_json::{json, Value};

use crate::body::BodyError;
use crate::listing::openai_entries;
use crate::routes::{Access, Face, Routes};
use crate::AppState;

/// At `/v1/...`, and again under KServe's `/openai` prefix, where KServe's
/// own LLM runtimes answer OpenAI clients.
pub fn routes() -> Routes {
    Routes::new(Face::OpenAi)
        .post("/v1/embeddings", Access::User, embeddings::embeddings)
        .post("/v1/completions", Access::User, text::completions)
        .post("/v1/chat/completions", Access::User, text::chat)
        .post(
            "/openai/v1/embeddings",
            Access::User,
            embeddings::embeddings,
        )
        .post("/openai/v1/completions", Access::User, text::completions)
        .post("/openai/v1/chat/completions", Access::User, text::chat)
        .get("/openai/v1/models", Access::Read, models)
}

/// OpenAI's model list (`GET /v1/models` answers the same `data` beside the
/// other faces' fields).
async fn models(State(state): State<AppState>) -> Json<Value> {
    let data = openai_entries(&state.manager.model_names());
    Json(json!({ "object": "list", "data": data }))
}

pub struct OpenAiError {
    status: StatusCode,
    message: String,
    kind: &'static str,
    param: Option<&'static str>,
    code: Option<&'static str>,
}

impl OpenAiError {
    pub(super) fn invalid(message: impl Into<String>, param: &'static str) -> Self {
        OpenAiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: Some(param),
            code: None,
        }
    }
}

impl OpenAiError {
    fn json(&self) -> serde_json::Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let body = self.json();
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
            ErrorKind::Upstream => (
                StatusCode::BAD_GATEWAY,
                "server_error",
                Some("upstream_error"),
            ),
            ErrorKind::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                Some("invalid_api_key"),
            ),
            ErrorKind::Forbidden => (
                StatusCode::FORBIDDEN,
                "invalid_request_error",
                Some("insufficient_permissions"),
            ),
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
