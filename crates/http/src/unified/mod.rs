//! The unified `/inference` API (seed 004): one infer endpoint for every task,
//! batch, preload, the model cache, health, tasks, stats and examples. Errors are
//! `{"success": false, "error": {type, message, code, details}, "timestamp"}`
//! with the document's codes.

mod cache;
mod info;
mod jobs;
mod request;
mod run;
mod stats;
mod text;
mod ws;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use inferd_core::{CoreError, ErrorKind};
use serde_json::{json, Value};

pub use jobs::start as start_jobs;
pub use stats::Recorder;
pub use ws::WsLimits;

use crate::body::BodyError;
use crate::routes::{Access, Face, Routes};

pub fn routes() -> Routes {
    Routes::new(Face::Unified)
        .post("/inference/infer", Access::User, run::infer)
        .post("/inference/infer_fixed", Access::User, run::infer)
        .post(
            "/inference/infer_multimodal",
            Access::User,
            run::infer_multimodal,
        )
        .post("/inference/batch", Access::User, run::batch)
        .post("/inference/async", Access::User, jobs::submit)
        .get("/inference/async/{id}", Access::Read, jobs::status)
        .delete("/inference/async/{id}", Access::User, jobs::cancel)
        .post("/inference/models/preload", Access::Admin, run::preload)
        .get("/inference/ws", Access::User, ws::upgrade)
        .get("/inference/health", Access::Open, info::health)
        .get(
            "/inference/supported-tasks",
            Access::Read,
            info::supported_tasks,
        )
        .get("/inference/stats", Access::Read, info::stats)
        .get("/inference/examples", Access::Read, info::examples)
        .post("/inference/clear-cache", Access::Admin, cache::clear)
        .get("/inference/cache/stats", Access::Read, cache::stats)
        .get("/inference/cache/models", Access::Read, cache::models)
        .delete(
            "/inference/cache/models/{key}",
            Access::Admin,
            cache::remove,
        )
        .put("/inference/cache/config", Access::Admin, cache::config)
}

/// Seconds since the epoch, as the document's `timestamp` fields carry them.
pub(crate) use crate::unix_now as now;

/// An error in the document's envelope.
#[derive(Debug, Clone)]
pub struct UnifiedError {
    pub status: StatusCode,
    pub code: &'static str,
    pub kind: &'static str,
    pub message: String,
    pub hint: Option<&'static str>,
}

impl UnifiedError {
    pub fn invalid(message: impl Into<String>) -> Self {
        UnifiedError {
            status: StatusCode::BAD_REQUEST,
            code: "INVALID_INPUT",
            kind: "ValueError",
            message: message.into(),
            hint: None,
        }
    }

    pub fn unsupported(message: impl Into<String>) -> Self {
        UnifiedError {
            status: StatusCode::BAD_REQUEST,
            code: "UNSUPPORTED_TASK",
            kind: "UnsupportedTaskError",
            message: message.into(),
            hint: Some(
                "check the task and engine; GET /inference/supported-tasks lists what works",
            ),
        }
    }

    /// The `error` object (also used per item in batch answers).
    pub fn body(&self) -> Value {
        let mut details = json!({ "status": self.status.as_u16() });
        if let Some(hint) = self.hint {
            details["hint"] = Value::String(hint.into());
        }
        json!({ "type": self.kind, "message": self.message, "code": self.code, "details": details })
    }
}

impl IntoResponse for UnifiedError {
    fn into_response(self) -> Response {
        let body = json!({ "success": false, "error": self.body(), "timestamp": now() });
        (self.status, Json(body)).into_response()
    }
}

impl From<CoreError> for UnifiedError {
    fn from(e: CoreError) -> Self {
        let (status, code, kind, hint) = match e.kind() {
            ErrorKind::InvalidInput => {
                (StatusCode::BAD_REQUEST, "INVALID_INPUT", "ValueError", None)
            }
            ErrorKind::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "INVALID_INPUT",
                "ValueError",
                None,
            ),
            ErrorKind::Unsupported => (
                StatusCode::BAD_REQUEST,
                "UNSUPPORTED_TASK",
                "UnsupportedTaskError",
                Some("check the task and engine; GET /inference/supported-tasks lists what works"),
            ),
            ErrorKind::NotFound => (
                StatusCode::NOT_FOUND,
                "MODEL_NOT_FOUND",
                "ModelNotFoundError",
                Some("GET /inference/supported-tasks lists the models present"),
            ),
            ErrorKind::Overloaded => (
                StatusCode::TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                "ResourceExhaustedError",
                None,
            ),
            ErrorKind::Timeout => (StatusCode::GATEWAY_TIMEOUT, "TIMEOUT", "TimeoutError", None),
            ErrorKind::NotReady | ErrorKind::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "INFERENCE_FAILED",
                "ModelUnavailableError",
                Some("load the model (POST /inference/models/preload) and retry"),
            ),
            ErrorKind::Conflict => (StatusCode::CONFLICT, "INVALID_INPUT", "ConflictError", None),
            ErrorKind::Upstream => (
                StatusCode::BAD_GATEWAY,
                "INFERENCE_FAILED",
                "UpstreamError",
                None,
            ),
            ErrorKind::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "AuthenticationError",
                Some("send an API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"),
            ),
            ErrorKind::Forbidden => (StatusCode::FORBIDDEN, "FORBIDDEN", "PermissionError", None),
            ErrorKind::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "INFERENCE_FAILED",
                "InferenceError",
                None,
            ),
        };
        UnifiedError {
            status,
            code,
            kind,
            message: e.to_string(),
            hint,
        }
    }
}

impl From<BodyError> for UnifiedError {
    fn from(e: BodyError) -> Self {
        UnifiedError {
            status: e.status,
            code: "INVALID_INPUT",
            kind: "ValueError",
            message: e.message,
            hint: None,
        }
    }
}
