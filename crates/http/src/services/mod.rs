//! Seed 003's inference services under `/api/v1/inference/services`: a service
//! is a deployment of one repository model with its own instances (`replicas`)
//! under a memory limit, created, listed, called, stopped, started and deleted.
//! Every answer is `{code, message, data}`: `code` 0 on success; on failure the
//! HTTP status times 100 plus a detail (40001 bad argument, 40101 no or bad
//! credential, 40301 role too low, 40401 unknown service, 40901 state or name
//! conflict, 50001 internal, 50301 unavailable, 50401 timeout). Success messages
//! are the document's own.
//!
//! Records live in the store; a service's model is loaded in the background
//! (`creating` → `running`, or `failed` with the reason), and after a restart
//! the services that were running are deployed again.

mod manage;
mod predict;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use inferd_core::CoreError;
use inferd_store::{Store, StoreError};
use serde_json::{json, Value};

pub use manage::restore;
pub(crate) use manage::{create_from, full, spawn_deploy};

use crate::body::BodyError;
use crate::routes::{Access, Face, Routes};
use crate::AppState;

/// One turn at a time per service: its deploy, its undeploy and the status
/// change after each run in order, so a stop, start or delete never interleaves
/// with a deploy still loading (which could mark a service running while
/// nothing runs, or undeploy the newer of two attempts).
#[derive(Default)]
pub(crate) struct Turns(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl Turns {
    /// Waits for the service's turn; it lasts as long as the guard.
    pub(crate) async fn take(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let turn = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_string())
            .or_default()
            .clone();
        turn.lock_owned().await
    }

    /// Drops a deleted service's entry, so the map holds only live services.
    pub(crate) fn forget(&self, id: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

/// Limits on what a service may ask for.
#[derive(Debug, Clone, Copy)]
pub struct ServiceLimits {
    pub max_replicas: u32,
    /// The most memory services may reserve together. Fixed at start: the
    /// model cache's budget (which `/inference/cache/config` changes at run
    /// time) covers ordinary models only, so a cache resize never strands a
    /// service. `None`: this machine's physical memory.
    pub memory_bytes: Option<u64>,
}

impl Default for ServiceLimits {
    fn default() -> Self {
        ServiceLimits {
            max_replicas: 8,
            memory_bytes: None,
        }
    }
}

impl ServiceLimits {
    fn memory_ceiling(&self) -> u64 {
        self.memory_bytes
            .or_else(inferd_core::budget::physical_memory)
            .unwrap_or(u64::MAX)
    }
}

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

    fn conflict(message: impl Into<String>) -> ServiceError {
        ServiceError::new(StatusCode::CONFLICT, message)
    }

    fn unknown(id: &str) -> ServiceError {
        ServiceError::new(
            StatusCode::NOT_FOUND,
            format!("inference service '{id}' does not exist"),
        )
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
        ServiceError::new(crate::status::kserve_status(e.kind()), e.to_string())
    }
}

impl From<BodyError> for ServiceError {
    fn from(e: BodyError) -> ServiceError {
        ServiceError::new(e.status, e.message)
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> ServiceError {
        ServiceError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

/// Runs a store call off the async threads.
async fn blocking<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ServiceError> {
    let store = state.store.clone().ok_or_else(|| {
        ServiceError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this server runs without a data directory, so it keeps no services",
        )
    })?;
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| ServiceError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(ServiceError::from)
}
