//! Seed 002's text-generation gateway: `POST /v1/generate`, `GET /health`,
//! `GET /health/full`, and the CORS preflights of each. (Its entries in `GET
//! /v1/models` are in `common`.)
#![allow(dead_code)]

use std::collections::BTreeMap;

use axum::http::Method;
use utoipa::ToSchema;

use super::{op, Doc};

/// Seed 002's error envelope.
#[derive(ToSchema)]
pub struct GatewayError {
    /// `INVALID_REQUEST`, `MODEL_NOT_FOUND`, `PROMPT_FORMAT_FAILED`,
    /// `PAYLOAD_TOO_LARGE`, `REQUEST_TIMEOUT`, `MODEL_OVERLOADED`,
    /// `MODEL_UNAVAILABLE`, `INFERENCE_TIMEOUT`, `DOWNSTREAM_REQUEST_FAILED`,
    /// `TGI_SERVER_ERROR`, `INFERENCE_FAILED`, `UNAUTHORIZED` or `FORBIDDEN`.
    error_code: String,
    /// What was wrong.
    message: String,
}

/// Sampling; an absent field takes seed 002's default.
#[derive(ToSchema)]
struct GatewayParameters {
    /// 1 to 4096 (default 128).
    max_new_tokens: Option<u32>,
    /// 0 to 2 (default 0.7).
    temperature: Option<f64>,
    /// In (0, 1] (default 0.9).
    top_p: Option<f64>,
    /// 0 (the default) is off.
    top_k: Option<u32>,
    /// Default true; false is greedy.
    do_sample: Option<bool>,
    /// Greater than 0 (default 1, off).
    repetition_penalty: Option<f64>,
    seed: Option<u64>,
    /// Up to 4 non-empty strings; the text ends before the first match.
    stop: Option<Vec<String>>,
}

/// Unknown fields are ignored.
#[derive(ToSchema)]
struct GatewayGenerateRequest {
    /// A text model of this server.
    model_id: String,
    /// The raw input; not blank.
    inputs: String,
    /// One of the model's prompt scenarios (default `base`).
    scenario: Option<String>,
    parameters: Option<GatewayParameters>,
}

#[derive(ToSchema)]
struct GatewayGenerateResponse {
    generated_text: String,
    /// The model's own name (its served name), not necessarily `model_id`.
    model: String,
    /// Tokens generated.
    tokens: u64,
}

/// Every text model's state as the repository index knows it.
#[derive(ToSchema)]
struct GatewayHealth {
    /// `healthy` (none unhealthy), `degraded` or `unhealthy` (all).
    status: String,
    /// How many text models.
    total: u64,
    /// Each model's `healthy`, `loading`, `unloaded` or `unhealthy`.
    models: BTreeMap<String, String>,
    /// Why each unhealthy model is.
    reasons: BTreeMap<String, String>,
}

/// Every text model checked now: loaded if needed, remote servers probed.
#[derive(ToSchema)]
struct GatewayHealthFull {
    /// `healthy` (none unhealthy), `degraded` or `unhealthy` (all).
    status: String,
    /// How many models were checked.
    total: u64,
    /// How many passed.
    healthy: u64,
    /// Each model's `healthy` or `unhealthy`.
    details: BTreeMap<String, String>,
    /// Why each unhealthy model is.
    reasons: BTreeMap<String, String>,
}

pub fn docs() -> Vec<Doc> {
    let preflight = "CORS preflight: the CORS headers, no body";
    vec![
        op(
            Method::POST,
            "/v1/generate",
            "Generate text from a model's prompt scenario",
        )
        .body::<GatewayGenerateRequest>()
        .ok::<GatewayGenerateResponse>(),
        op(Method::OPTIONS, "/v1/generate", preflight),
        op(
            Method::GET,
            "/health",
            "Text models' health as it stands, loading nothing",
        )
        .ok::<GatewayHealth>(),
        op(Method::OPTIONS, "/health", preflight),
        op(
            Method::GET,
            "/health/full",
            "Text models' health checked now (loads models, probes remote servers)",
        )
        .ok::<GatewayHealthFull>(),
        op(Method::OPTIONS, "/health/full", preflight),
    ]
}
