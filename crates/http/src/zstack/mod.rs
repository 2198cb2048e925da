//! ZStack's REST conventions (seed 001, PROTOCOLS.md part two): the model-service
//! catalog under `/zstack/v1/ai/model-services` and account sessions under
//! `/zstack/v1/accounts`. Failures are ZStack `ErrorCode` objects in
//! `{"success": false, "error": {...}}`.

mod accounts;
mod catalog;
mod jobs;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use inferd_core::{CoreError, ErrorKind};
use inferd_store::{Store, StoreError};
use serde_json::json;

use crate::routes::Routes;
use crate::AppState;

pub fn routes() -> Routes {
    catalog::routes()
        .merge(accounts::routes())
        .merge(jobs::routes())
}

/// Runs `f` on the store off the async threads; its refusals become ZStack's
/// argument (SYS.1007) and conflict (SYS.1002) errors.
async fn with_store<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ZsError> {
    let store = state
        .store
        .clone()
        .ok_or_else(|| ZsError::internal("this server runs without a data directory"))?;
    let result = tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| ZsError::internal(e.to_string()))?;
    result.map_err(|e| match e {
        StoreError::Invalid(m) => ZsError::invalid_argument(m),
        StoreError::Conflict(m) => ZsError {
            status: StatusCode::CONFLICT,
            code: "SYS.1002",
            description: "Failed to create the resource",
            details: m,
        },
        other => ZsError::internal(other.to_string()),
    })
}

/// A ZStack error: its HTTP status and `ErrorCode` (`SYS.1007`, `ID.1001`, ...).
#[derive(Debug)]
pub struct ZsError {
    pub status: StatusCode,
    pub code: &'static str,
    pub description: &'static str,
    pub details: String,
}

impl ZsError {
    pub fn invalid_argument(details: impl Into<String>) -> ZsError {
        ZsError {
            status: StatusCode::BAD_REQUEST,
            code: "SYS.1007",
            description: "One or more API argument is invalid",
            details: details.into(),
        }
    }

    pub fn not_found(details: impl Into<String>) -> ZsError {
        ZsError {
            status: StatusCode::NOT_FOUND,
            code: "SYS.1003",
            description: "Resource not found",
            details: details.into(),
        }
    }

    pub fn internal(details: impl Into<String>) -> ZsError {
        ZsError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "SYS.1000",
            description: "An internal error happened in system",
            details: details.into(),
        }
    }
}

impl ZsError {
    /// `{"success": false, "error": ErrorCode}`.
    fn body(&self) -> serde_json::Value {
        json!({
            "success": false,
            "error": {
                "code": self.code,
                "description": self.description,
                "details": self.details,
                "elaboration": null,
                "opaque": null,
                "cause": null,
            },
        })
    }
}

impl IntoResponse for ZsError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

/// The one table from the core's error kinds to ZStack's codes.
impl From<CoreError> for ZsError {
    fn from(e: CoreError) -> ZsError {
        let details = e.to_string();
        let (status, code, description) = match e.kind() {
            ErrorKind::InvalidInput | ErrorKind::Unsupported | ErrorKind::TooLarge => (
                StatusCode::BAD_REQUEST,
                "SYS.1007",
                "One or more API argument is invalid",
            ),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "SYS.1003", "Resource not found"),
            ErrorKind::Conflict => (
                StatusCode::CONFLICT,
                "SYS.1005",
                "Unable to change the resource's state",
            ),
            ErrorKind::NotReady | ErrorKind::Unavailable | ErrorKind::Overloaded => (
                StatusCode::SERVICE_UNAVAILABLE,
                "SYS.1010",
                "The resource is not ready",
            ),
            ErrorKind::Timeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "SYS.1001",
                "The operation timeout",
            ),
            ErrorKind::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "ID.1001",
                "The session is invalid or expired",
            ),
            ErrorKind::Forbidden => (StatusCode::FORBIDDEN, "ID.1002", "Permission denied"),
            ErrorKind::Upstream | ErrorKind::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "SYS.1000",
                "An internal error happened in system",
            ),
        };
        ZsError {
            status,
            code,
            description,
            details,
        }
    }
}
