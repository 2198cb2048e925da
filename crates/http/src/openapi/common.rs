//! The routes two faces share (`--compat kserve`'s shapes; Pinferencia's are
//! in `pinferencia`), `/metrics`, and the `{"error"}` envelope of V2, KServe
//! V1 and the server's own pages.
//!
//! Like every file here, its types only describe the wire for the API
//! description: none is built, hence `dead_code` is allowed.
#![allow(dead_code)]

use axum::http::Method;
use serde_json::Value;
use utoipa::ToSchema;

use super::v2::{InferRequest, InferResponse, ModelMetadata, ModelReady};
use super::{op, Doc};
use crate::Compat;

/// V2's, KServe V1's and the server's own error envelope.
#[derive(ToSchema)]
pub struct Error {
    /// What was wrong.
    error: String,
}

/// KServe V1's model list, with OpenAI's `object`/`data` beside it, so one
/// answer serves both kinds of client.
#[derive(ToSchema)]
struct ModelList {
    models: Vec<Value>,
    object: String,
    data: Vec<Value>,
}

/// KServe V1's model status.
#[derive(ToSchema)]
struct ModelStatus {
    name: String,
    ready: bool,
    versions: Vec<String>,
}

pub fn docs() -> Vec<Doc> {
    let k = Compat::Kserve;
    vec![
        op(
            Method::GET,
            "/v1/models",
            "List the models (KServe V1, OpenAI, seed 002)",
        )
        .ok::<ModelList>()
        .under(k),
        op(
            Method::GET,
            "/v2/models",
            "List the models (the same answer as /v1/models)",
        )
        .ok::<ModelList>()
        .under(k),
        op(
            Method::GET,
            "/v1/models/{model}",
            "A model's status (KServe V1); 503 while not ready",
        )
        .ok::<ModelStatus>()
        .under(k),
        op(Method::GET, "/v2/models/{model}", "Model metadata (V2)")
            .ok::<ModelMetadata>()
            .under(k),
        op(
            Method::GET,
            "/v2/models/{model}/ready",
            "Model readiness (V2): 200 ready, 503 not",
        )
        .ok::<ModelReady>()
        .also::<ModelReady>(503, "not ready")
        .under(k),
        op(
            Method::GET,
            "/v2/models/{model}/versions/{version}/ready",
            "Model version readiness (V2): 200 ready, 503 not",
        )
        .ok::<ModelReady>()
        .also::<ModelReady>(503, "not ready")
        .under(k),
        op(
            Method::POST,
            "/v2/models/{model}/infer",
            "Inference (V2; Triton's binary tensors too, with Inference-Header-Content-Length)",
        )
        .body::<InferRequest>()
        .ok::<InferResponse>()
        .under(k),
        op(
            Method::POST,
            "/v2/models/{model}/versions/{version}/infer",
            "Inference on one version (V2)",
        )
        .body::<InferRequest>()
        .ok::<InferResponse>()
        .under(k),
        op(
            Method::GET,
            "/metrics",
            "Prometheus metrics (Triton's series and inferd's)",
        )
        .ok_as("text/plain"),
    ]
}
