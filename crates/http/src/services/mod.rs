//! Seed 003's inference services under `/api/v1/inference/services`: a service
//! is a deployment of one repository model with its own instances (`replicas`)
//! under a memory limit, created, listed, called, stopped, started and deleted.
//! Every answer is `{code, message, data}`: `code` 0 on success; on failure the
//! HTTP status times 100 plus a detail (40001 bad argument, 40101 no or bad
//! credential, 40301 role too low, 40401 unknown service, 40901 state or name
//! conflict, 50001 internal, 50301 unavailable, 50401 timeout). Success messages
//! are the document's own.
//!
//! The life cycle itself is the service layer's (`inferd_services`); this face
//! reads requests and renders answers.

mod manage;
mod predict;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use inferd_core::CoreError;
use serde_json::{json, Value};

use crate::body::BodyError;
use crate::routes::{Access, Face, Routes};
use crate::status::kserve_status;

pub fn routes() -> Routes {
    Routes::new(Face::Services)
        .get("/api/v1/inference/services", Access::Read, manage::list)
        .post("/api/v1/inference/services", Access::Admin, manage::create)
        .get("/api/v1/inference/services/{id}", Access::Read, manage::get)
        .delete(
            "/api/v1/inference/services/{id}",
            Access::Admin,
            manage::delete,
        )
        .post(
            "/api/v1/inference/services/{id}/stop",
            Access::Admin,
            manage::stop,
        )
        .post(
            "/api/v1/inference/services/{id}/start",
            Access::Admin,
            manage::start,
        )
        .post(
            "/api/v1/inference/services/{id}/predict",
            Access::User,
            predict::predict,
        )
}

/// A success in the document's envelope.
fn ok(status: StatusCode, message: &str, data: Option<Value>) -> Response {
    let mut body = json!({ "code": 0, "message": message });
    if let Some(data) = data {
        body["data"] = data;
    }
    (status, Json(body)).into_response()
}

#[derive(Debug)]
pub struct ServiceError {
    pub status: StatusCode,
    code: u32,
    pub message: String,
}

impl ServiceError {
    fn new(status: StatusCode, message: impl Into<String>) -> ServiceError {
        ServiceError {
            status,
            code: u32::from(status.as_u16()) * 100 + 1,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> ServiceError {
        ServiceError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        let body = json!({ "code": self.code, "message": self.message, "data": null });
        (self.status, Json(body)).into_response()
    }
}

/// KServe's statuses, in this face's envelope.
impl From<CoreError> for ServiceError {
    fn from(e: CoreError) -> ServiceError {
        ServiceError::new(kserve_status(e.kind()), e.to_string())
    }
}

impl From<inferd_services::ServiceError> for ServiceError {
    fn from(e: inferd_services::ServiceError) -> ServiceError {
        ServiceError::new(kserve_status(e.kind), e.message)
    }
}

impl From<BodyError> for ServiceError {
    fn from(e: BodyError) -> ServiceError {
        ServiceError::new(e.status, e.message)
    }
}
