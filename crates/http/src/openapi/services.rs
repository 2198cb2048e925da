//! Seed 003's inference services under `/api/v1/inference/services`: every
//! answer is `{code, message, data}`, `code` 0 on success.
#![allow(dead_code)]

use axum::http::Method;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::{op, Doc};

/// The services API's error envelope.
#[derive(ToSchema)]
pub struct ServiceError {
    /// The HTTP status times 100 plus 1: 40001 bad argument, 40101 no or bad
    /// credential, 40301 role too low, 40401 unknown service, 40901 state or
    /// name conflict, 41301 too large, 50001 internal, 50201 upstream,
    /// 50301 unavailable, 50401 timeout.
    code: u64,
    message: String,
    /// Always null.
    data: Value,
}

/// What a deployment asks for beside its name and model; ZStack's
/// `deployModelService` takes the same.
#[derive(ToSchema)]
pub struct ServicesDeployment {
    description: Option<String>,
    workspace_id: Option<i64>,
    /// A repository version: 1, "1" or "v1.0"; the newest when absent.
    model_version: Option<Value>,
    /// The model's framework (`onnx`, `pytorch`...); checked against the model.
    framework: Option<String>,
    /// Cores requested (above 0; default 1).
    cpu: Option<f64>,
    /// Memory limit in bytes (default 1 GiB).
    memory: Option<i64>,
    /// GPUs, 0 to 64 (default 0).
    gpu: Option<i64>,
    /// Instances, 1 to the server's limit (default 1).
    replicas: Option<i64>,
}

/// A new service: a deployment of one repository model.
#[derive(ToSchema)]
struct ServicesCreateRequest {
    /// 1 to 128 characters.
    name: String,
    /// The repository model: its name, or a non-negative integer.
    model_id: Value,
    #[serde(flatten)]
    deployment: ServicesDeployment,
}

#[derive(ToSchema)]
struct ServicesCreated {
    service_id: String,
    name: String,
    /// `creating` at first.
    status: String,
    /// Where to call it: `http://<host>/api/v1/inference/services/<id>/predict`.
    endpoint_url: String,
    /// RFC 3339, UTC.
    created_at: String,
}

#[derive(ToSchema)]
struct ServicesCreateReply {
    /// 0.
    code: u64,
    message: String,
    data: ServicesCreated,
}

/// A service in a list.
#[derive(ToSchema)]
struct ServicesSummary {
    service_id: String,
    name: String,
    /// creating, running, failed, stopping or stopped.
    status: String,
    endpoint_url: String,
    replicas: u64,
    /// RFC 3339, UTC.
    created_at: String,
}

#[derive(ToSchema)]
struct ServicesPagination {
    page: u64,
    page_size: u64,
    /// Services matching the filters.
    total: u64,
    total_pages: u64,
}

#[derive(ToSchema)]
struct ServicesPage {
    items: Vec<ServicesSummary>,
    pagination: ServicesPagination,
}

#[derive(ToSchema)]
struct ServicesListReply {
    /// 0.
    code: u64,
    message: String,
    data: ServicesPage,
}

/// A service's whole record.
#[derive(ToSchema)]
struct ServicesRecord {
    #[serde(flatten)]
    summary: ServicesSummary,
    description: String,
    workspace_id: Option<i64>,
    /// The repository model's name.
    model_id: String,
    /// `v<n>`, or the value as it was sent (a string or a number).
    model_version: Value,
    framework: String,
    /// Cores requested.
    cpu: f64,
    /// Memory limit in bytes.
    memory: u64,
    gpu: u64,
    /// Why it failed, when it did.
    reason: Option<String>,
    /// RFC 3339, UTC.
    updated_at: String,
}

#[derive(ToSchema)]
struct ServicesGetReply {
    /// 0.
    code: u64,
    message: String,
    data: ServicesRecord,
}

/// A success with no data.
#[derive(ToSchema)]
struct ServicesAck {
    /// 0.
    code: u64,
    message: String,
}

#[derive(ToSchema)]
struct ServicesPredictRequest {
    /// `{"image": b64 or [b64]}` for a classifier, `{"text": str or [str]}`
    /// for an embedding or generation model, otherwise `{<input name>:
    /// <nested array>}` as whole tensors (or a list of rows).
    inputs: Map<String, Value>,
    /// `top_k` (classification, 1 to 1000, default 5), `max_new_tokens`
    /// (generation).
    parameters: Option<Map<String, Value>>,
}

#[derive(ToSchema)]
struct ServicesPredictions {
    /// By the model: `[{class, confidence}]` (a list of them per image for
    /// several), `[{embedding}]`, `[{generated_text, tokens}]`, or the
    /// outputs as nested arrays (an object by output name for several).
    predictions: Value,
}

#[derive(ToSchema)]
struct ServicesPredictReply {
    /// 0.
    code: u64,
    message: String,
    data: ServicesPredictions,
}

pub fn docs() -> Vec<Doc> {
    vec![
        op(
            Method::GET,
            "/api/v1/inference/services",
            "List the inference services, a page at a time",
        )
        .query("page", "Page number, from 1 (default 1)")
        .query("page_size", "Services per page, 1 to 100 (default 20)")
        .query(
            "status",
            "Only services in this status: creating, running, failed, stopping or stopped",
        )
        .query(
            "workspace_id",
            "Only services of this workspace (an integer)",
        )
        .query("name", "Only services whose name contains this text")
        .ok::<ServicesListReply>(),
        op(
            Method::POST,
            "/api/v1/inference/services",
            "Create an inference service (201; it deploys in the background)",
        )
        .body::<ServicesCreateRequest>()
        .status(201)
        .ok::<ServicesCreateReply>(),
        op(
            Method::GET,
            "/api/v1/inference/services/{id}",
            "An inference service's record",
        )
        .ok::<ServicesGetReply>(),
        op(
            Method::DELETE,
            "/api/v1/inference/services/{id}",
            "Delete an inference service (its instances are freed first)",
        )
        .ok::<ServicesAck>(),
        op(
            Method::POST,
            "/api/v1/inference/services/{id}/stop",
            "Stop an inference service (stopping at once, then stopped)",
        )
        .ok::<ServicesAck>(),
        op(
            Method::POST,
            "/api/v1/inference/services/{id}/start",
            "Start a stopped or failed inference service again",
        )
        .ok::<ServicesAck>(),
        op(
            Method::POST,
            "/api/v1/inference/services/{id}/predict",
            "Call a running inference service",
        )
        .body::<ServicesPredictRequest>()
        .ok::<ServicesPredictReply>(),
    ]
}
