//! Pinferencia: its default API (health, bare-boolean ready/load/unload,
//! `predict` with `data`), its kserve flavour (`infer` with `instances`, V2
//! `infer` with loose `inputs`), and the shared model routes in its shapes
//! under `--compat pinferencia`.
#![allow(dead_code)]

use axum::http::Method;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::{op, Doc};
use crate::Compat;

/// Pinferencia's error envelope (FastAPI's): 422 for a body that does not
/// validate, 404 for an unknown model or version, 400 for a model not loaded
/// (or already loaded, or not loaded when unloading).
#[derive(ToSchema)]
pub struct Detail {
    /// What was wrong, as one sentence.
    detail: String,
}

/// One version of a model, as Pinferencia lists it.
#[derive(ToSchema)]
struct PinferenciaVersion {
    /// The version number, as text.
    name: String,
    /// The model's name.
    display_name: String,
    /// Always empty.
    description: String,
    /// The model's platform (`onnxruntime_onnx`, …); empty when unknown.
    platform: String,
    /// Always `cpu`.
    device: String,
    /// Always empty.
    task: String,
    /// Always empty.
    input_type: String,
    /// Always empty.
    output_type: String,
}

/// One model in Pinferencia's model list.
#[derive(ToSchema)]
struct PinferenciaModel {
    name: String,
    /// Empty when the model's versions cannot be read.
    versions: Vec<PinferenciaVersion>,
    /// Always empty.
    platform: String,
}

/// The default API's prediction request. Unknown fields are ignored.
#[derive(ToSchema)]
struct PinferenciaPredictRequest {
    /// A string or a number (answered as its text).
    id: Option<Value>,
    /// Accepted and ignored.
    parameters: Option<Map<String, Value>>,
    /// An array is rows (one per instance: a value for a one-input model, an
    /// object keyed by input name otherwise); an object is whole tensors keyed
    /// by input name.
    data: Value,
}

#[derive(ToSchema)]
struct PinferenciaPredictResponse {
    /// The request's `id`, as text; absent when it had none.
    id: Option<String>,
    model_name: String,
    /// The version that answered.
    model_version: String,
    /// Rows in, an array of predictions out (one per row: a value, or an
    /// object keyed by output name); whole tensors in, the one output's tensor
    /// or an object of them keyed by output name.
    data: Value,
}

/// The kserve flavour's V1 request. Unknown fields are ignored.
#[derive(ToSchema)]
struct PinferenciaInferRequest {
    /// A string or a number (answered as its text).
    id: Option<Value>,
    /// Accepted and ignored.
    parameters: Option<Map<String, Value>>,
    /// The rows: each a value (a one-input model) or an object keyed by input
    /// name. At least one.
    instances: Vec<Value>,
}

#[derive(ToSchema)]
struct PinferenciaInferResponse {
    /// The request's `id`, as text; absent when it had none.
    id: Option<String>,
    model_name: String,
    /// The version that answered; only on the `/versions/{version}` path.
    model_version: Option<String>,
    /// One per row: a value (one output) or an object keyed by output name.
    predictions: Vec<Value>,
}

/// One input of Pinferencia's V2 request: only `data` is needed.
#[derive(ToSchema)]
struct PinferenciaV2Input {
    /// Needed when several inputs are sent; a lone input of a one-input model
    /// is that input, whatever its name.
    name: Option<String>,
    /// With flat `data`, nests it by this shape (as OIP clients send it).
    shape: Option<Vec<u64>>,
    /// Ignored: read from the model.
    datatype: Option<String>,
    /// Ignored.
    parameters: Option<Map<String, Value>>,
    /// The tensor, nested or flat.
    data: Value,
}

/// Pinferencia's kserve V2 request. Unknown fields are ignored.
#[derive(ToSchema)]
struct PinferenciaV2Request {
    /// A string or a number (answered as its text).
    id: Option<Value>,
    /// At least one.
    inputs: Vec<PinferenciaV2Input>,
}

#[derive(ToSchema)]
struct PinferenciaV2Output {
    name: String,
    shape: Vec<u64>,
    /// OIP's names: BOOL, UINT8…UINT64, INT8…INT64, FP16, FP32, FP64, BYTES.
    datatype: String,
    /// Nested as `shape` (a bare value for a scalar).
    data: Value,
}

#[derive(ToSchema)]
struct PinferenciaV2Response {
    /// The request's `id`, as text; absent when it had none.
    id: Option<String>,
    model_name: String,
    /// The version that answered; only on the `/versions/{version}` path.
    model_version: Option<String>,
    outputs: Vec<PinferenciaV2Output>,
}

/// Ready, load and unload, on both `/v1` and `/v2`, with and without a version.
fn model_ops(ops: &mut Vec<Doc>) {
    let ready = [
        (
            "/v1/models/{model}/ready",
            "Whether a model is ready: true or false",
        ),
        (
            "/v1/models/{model}/versions/{version}/ready",
            "Whether a model version is ready (`default` is the served one)",
        ),
    ];
    for (path, summary) in ready {
        ops.push(op(Method::GET, path, summary).ok::<bool>());
    }
    let change = [
        (
            "/v1/models/{model}/load",
            "Load a model: true, or 400 if loaded",
        ),
        (
            "/v1/models/{model}/versions/{version}/load",
            "Load a model version: true, or 400 if loaded",
        ),
        (
            "/v1/models/{model}/unload",
            "Unload a model: true, or 400 if not loaded",
        ),
        (
            "/v1/models/{model}/versions/{version}/unload",
            "Unload a model version: true, or 400 if not loaded",
        ),
        (
            "/v2/models/{model}/load",
            "Load a model: true, or 400 if loaded",
        ),
        (
            "/v2/models/{model}/versions/{version}/load",
            "Load a model version: true, or 400 if loaded",
        ),
        (
            "/v2/models/{model}/unload",
            "Unload a model: true, or 400 if not loaded",
        ),
        (
            "/v2/models/{model}/versions/{version}/unload",
            "Unload a model version: true, or 400 if not loaded",
        ),
    ];
    for (path, summary) in change {
        ops.push(op(Method::POST, path, summary).ok::<bool>());
    }
}

pub fn docs() -> Vec<Doc> {
    let p = Compat::Pinferencia;
    let mut docs = vec![
        op(
            Method::GET,
            "/v1/healthz",
            "Liveness: true, or false with 503 while shutting down",
        )
        .ok::<bool>()
        .also::<bool>(503, "shutting down"),
        op(
            Method::GET,
            "/v2/healthz",
            "Liveness (kserve flavour): true, or 503 false",
        )
        .ok::<bool>()
        .also::<bool>(503, "shutting down"),
        op(
            Method::POST,
            "/v1/models/{model}/predict",
            "Predict (default API): `data` in, `data` out",
        )
        .body::<PinferenciaPredictRequest>()
        .ok::<PinferenciaPredictResponse>(),
        op(
            Method::POST,
            "/v1/models/{model}/versions/{version}/predict",
            "Predict on one version (default API)",
        )
        .body::<PinferenciaPredictRequest>()
        .ok::<PinferenciaPredictResponse>(),
        op(
            Method::POST,
            "/v1/models/{model}/infer",
            "Infer (kserve flavour V1): `instances` → `predictions`",
        )
        .body::<PinferenciaInferRequest>()
        .ok::<PinferenciaInferResponse>(),
        op(
            Method::POST,
            "/v1/models/{model}/versions/{version}/infer",
            "Infer on one version (kserve flavour V1)",
        )
        .body::<PinferenciaInferRequest>()
        .ok::<PinferenciaInferResponse>(),
        op(
            Method::GET,
            "/v1/models",
            "List the models with their versions (Pinferencia)",
        )
        .ok_list::<PinferenciaModel>()
        .under(p),
        op(
            Method::GET,
            "/v2/models",
            "List the models (the same answer as /v1/models)",
        )
        .ok_list::<PinferenciaModel>()
        .under(p),
        op(
            Method::GET,
            "/v1/models/{model}",
            "A model's versions (Pinferencia)",
        )
        .ok_list::<PinferenciaVersion>()
        .under(p),
        op(
            Method::GET,
            "/v2/models/{model}",
            "A model's versions (the same answer as /v1)",
        )
        .ok_list::<PinferenciaVersion>()
        .under(p),
        op(
            Method::GET,
            "/v2/models/{model}/ready",
            "Whether a model is ready: true or false",
        )
        .ok::<bool>()
        .under(p),
        op(
            Method::GET,
            "/v2/models/{model}/versions/{version}/ready",
            "Whether a model version is ready: true or false",
        )
        .ok::<bool>()
        .under(p),
        op(
            Method::POST,
            "/v2/models/{model}/infer",
            "Infer (Pinferencia's kserve V2): loose `inputs` → `outputs`",
        )
        .body::<PinferenciaV2Request>()
        .ok::<PinferenciaV2Response>()
        .under(p),
        op(
            Method::POST,
            "/v2/models/{model}/versions/{version}/infer",
            "Infer on one version (Pinferencia's kserve V2)",
        )
        .body::<PinferenciaV2Request>()
        .ok::<PinferenciaV2Response>()
        .under(p),
    ];
    model_ops(&mut docs);
    docs
}
