//! KServe V1 (TF Serving's REST shape): liveness at `/` and `:predict`. Its
//! model list and status are shared with Pinferencia, in `common`; its errors
//! are `common::Error`.
#![allow(dead_code)]

use axum::http::Method;
use serde_json::Value;
use utoipa::ToSchema;

use super::{op, Doc};

#[derive(ToSchema)]
struct KserveV1Alive {
    /// Always `alive`.
    status: String,
}

/// Exactly one of `instances` (rows) and `inputs` (columns). Unknown fields
/// are ignored.
#[derive(ToSchema)]
struct KserveV1PredictRequest {
    /// The rows: each a value (a one-input model) or an object keyed by input
    /// name. At least one.
    instances: Option<Vec<Value>>,
    /// Whole tensors: an object keyed by input name, or a list of rows of a
    /// one-input model.
    inputs: Option<Value>,
    /// Accepted and ignored.
    signature_name: Option<String>,
}

/// `predictions` answers `instances`; `outputs` answers `inputs`.
#[derive(ToSchema)]
struct KserveV1PredictResponse {
    /// One per row: a value (one output) or an object keyed by output name.
    predictions: Option<Vec<Value>>,
    /// The one output's tensor, or an object of them keyed by output name.
    outputs: Option<Value>,
}

pub fn docs() -> Vec<Doc> {
    vec![
        op(Method::GET, "/", "Liveness (KServe V1)").ok::<KserveV1Alive>(),
        op(
            Method::POST,
            "/v1/models/{model}",
            "Predict (KServe V1): the path's last segment is `<model>:predict`",
        )
        .body::<KserveV1PredictRequest>()
        .ok::<KserveV1PredictResponse>(),
        op(
            Method::POST,
            "/v1/models/{model}/versions/{version}",
            "Predict on one version (KServe V1): the last segment is `<version>:predict`",
        )
        .body::<KserveV1PredictRequest>()
        .ok::<KserveV1PredictResponse>(),
    ]
}
