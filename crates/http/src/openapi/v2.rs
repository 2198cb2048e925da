//! The Open Inference Protocol V2 (KServe V2) with Triton's extensions: its
//! own routes; the ones Pinferencia shares are in `common`.
#![allow(dead_code)]

use axum::http::Method;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::{op, Doc};

#[derive(ToSchema)]
struct ServerMetadata {
    name: String,
    version: String,
    /// Triton's extensions this server implements.
    extensions: Vec<String>,
}

#[derive(ToSchema)]
struct Live {
    live: bool,
}

#[derive(ToSchema)]
struct ServerReady {
    ready: bool,
}

#[derive(ToSchema)]
pub struct ModelReady {
    name: String,
    ready: bool,
}

#[derive(ToSchema)]
struct TensorMetadata {
    name: String,
    /// BOOL, UINT8…UINT64, INT8…INT64, FP16, FP32, FP64, BYTES.
    datatype: String,
    /// -1 marks a variable dimension.
    shape: Vec<i64>,
}

#[derive(ToSchema)]
pub struct ModelMetadata {
    name: String,
    versions: Vec<String>,
    platform: String,
    inputs: Vec<TensorMetadata>,
    outputs: Vec<TensorMetadata>,
}

#[derive(ToSchema)]
struct RequestInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    /// `binary_data_size` marks an input sent as raw bytes after the JSON.
    parameters: Option<Map<String, Value>>,
    /// The elements, flat or nested as `shape`, in row-major order; BYTES
    /// elements are strings.
    #[schema(value_type = Option<Object>)]
    data: Option<Value>,
}

#[derive(ToSchema)]
struct RequestOutput {
    name: String,
    /// `binary_data: true` asks for this output as raw bytes.
    parameters: Option<Map<String, Value>>,
}

#[derive(ToSchema)]
pub struct InferRequest {
    id: Option<String>,
    /// `timeout` (µs), `binary_data_output`, `priority`.
    parameters: Option<Map<String, Value>>,
    inputs: Vec<RequestInput>,
    /// Which outputs to answer (all when absent).
    outputs: Option<Vec<RequestOutput>>,
}

#[derive(ToSchema)]
struct ResponseOutput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    parameters: Option<Map<String, Value>>,
    /// Flat, row-major; absent for an output sent as raw bytes.
    #[schema(value_type = Option<Vec<Object>>)]
    data: Option<Value>,
}

#[derive(ToSchema)]
pub struct InferResponse {
    id: Option<String>,
    model_name: String,
    model_version: String,
    outputs: Vec<ResponseOutput>,
}

/// Triton's repository index filter.
#[derive(ToSchema)]
struct IndexRequest {
    /// Only the versions ready (true) or not (false).
    ready: Option<bool>,
}

#[derive(ToSchema)]
struct IndexRow {
    name: String,
    /// Absent for a model whose configuration cannot be read.
    version: Option<String>,
    /// READY, LOADING, UNLOADED or UNAVAILABLE.
    state: String,
    /// Why it is not ready; how far a load is.
    reason: String,
}

#[derive(ToSchema)]
struct ChangeRequest {
    /// Triton's load parameters; none is supported but an empty map.
    parameters: Option<Map<String, Value>>,
}

#[derive(ToSchema)]
struct Loaded {
    name: String,
    load: bool,
}

#[derive(ToSchema)]
struct Unloaded {
    name: String,
    unload: bool,
}

/// Triton's model configuration (`model_config.proto` as JSON).
#[derive(ToSchema)]
struct ModelConfig {
    name: String,
    platform: String,
    backend: String,
    max_batch_size: u64,
    input: Vec<Value>,
    output: Vec<Value>,
}

/// Triton's statistics extension.
#[derive(ToSchema)]
struct ModelStats {
    model_stats: Vec<Value>,
}

pub fn docs() -> Vec<Doc> {
    vec![
        op(Method::GET, "/v2", "Server metadata and extensions").ok::<ServerMetadata>(),
        op(Method::GET, "/v2/health/live", "Liveness").ok::<Live>(),
        op(
            Method::GET,
            "/v2/health/ready",
            "Readiness: 503 while draining",
        )
        .ok::<ServerReady>()
        .also::<ServerReady>(503, "draining or shutting down"),
        op(
            Method::GET,
            "/v2/models/{model}/versions/{version}",
            "Model version metadata",
        )
        .ok::<ModelMetadata>(),
        op(
            Method::GET,
            "/v2/models/{model}/config",
            "Triton's model configuration",
        )
        .ok::<ModelConfig>(),
        op(
            Method::GET,
            "/v2/models/{model}/versions/{version}/config",
            "Triton's model configuration of one version",
        )
        .ok::<ModelConfig>(),
        op(
            Method::GET,
            "/v2/models/stats",
            "Statistics of every model version",
        )
        .ok::<ModelStats>(),
        op(
            Method::GET,
            "/v2/models/{model}/stats",
            "A model's statistics",
        )
        .ok::<ModelStats>(),
        op(
            Method::GET,
            "/v2/models/{model}/versions/{version}/stats",
            "A model version's statistics",
        )
        .ok::<ModelStats>(),
        op(
            Method::POST,
            "/v2/repository/index",
            "Every model, each version's state and why",
        )
        .optional_body::<IndexRequest>()
        .ok_list::<IndexRow>(),
        op(
            Method::POST,
            "/v2/repository/models/{model}/load",
            "Load a model's versions",
        )
        .optional_body::<ChangeRequest>()
        .ok::<Loaded>(),
        op(
            Method::POST,
            "/v2/repository/models/{model}/unload",
            "Unload a model (requests in flight finish first)",
        )
        .optional_body::<ChangeRequest>()
        .ok::<Unloaded>(),
    ]
}
