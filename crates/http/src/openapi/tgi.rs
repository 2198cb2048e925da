//! Hugging Face TGI's API: `POST /generate`, `POST /generate_stream`, `POST /`
//! (either, by `stream`), `GET /info` and `POST /tokenize`, serving the first
//! text model of the repository by name.
#![allow(dead_code)]

use axum::http::Method;
use serde_json::Value;
use utoipa::ToSchema;

use super::{op, Doc};

/// TGI's error envelope (422 for a request it refuses).
#[derive(ToSchema)]
pub struct TgiError {
    /// What was wrong.
    error: String,
    /// `validation`, `overloaded`, `timeout`, `unhealthy`, `generation`,
    /// `authentication` or `authorization`.
    error_type: String,
}

#[derive(ToSchema)]
struct TgiGenerateRequest {
    /// The prompt; not empty.
    inputs: String,
    parameters: Option<crate::tgi::Parameters>,
    /// Read by `POST /` only: server-sent events instead of a JSON list.
    #[serde(default)]
    stream: bool,
}

#[derive(ToSchema)]
struct TgiToken {
    id: u64,
    /// What this token adds to the text.
    text: String,
    /// Null when not finite.
    logprob: Option<f64>,
    special: bool,
}

#[derive(ToSchema)]
struct TgiDetails {
    /// `length`, `eos_token` or `stop_sequence`.
    finish_reason: String,
    generated_tokens: u64,
    /// The seed sampling used; null for greedy decoding.
    seed: Option<u64>,
    /// Always empty.
    prefill: Vec<Value>,
    tokens: Vec<TgiToken>,
}

/// A generation; the token counts are also in the `x-prompt-tokens` and
/// `x-generated-tokens` headers.
#[derive(ToSchema)]
struct TgiGenerateResponse {
    generated_text: String,
    /// Only with `parameters.details: true`.
    details: Option<TgiDetails>,
}

#[derive(ToSchema)]
struct TgiInfo {
    /// The model's own name.
    model_id: String,
    /// Always null.
    model_sha: Option<String>,
    /// Always null.
    model_dtype: Option<String>,
    model_device_type: String,
    /// `text-generation`.
    model_pipeline_tag: String,
    max_concurrent_requests: u64,
    max_best_of: u64,
    max_stop_sequences: u64,
    max_input_tokens: u64,
    max_total_tokens: u64,
    max_batch_size: u64,
    validation_workers: u64,
    max_client_batch_size: u64,
    /// `inferd`.
    router: String,
    /// inferd's version.
    version: String,
    /// Always null.
    sha: Option<String>,
    /// Always null.
    docker_label: Option<String>,
}

#[derive(ToSchema)]
struct TgiTokenizeRequest {
    inputs: String,
}

#[derive(ToSchema)]
struct TgiTokenSpan {
    id: u64,
    text: String,
    /// Byte offset of the token's start in `inputs`.
    start: u64,
    /// Byte offset just past its end.
    stop: u64,
}

pub fn docs() -> Vec<Doc> {
    vec![
        op(
            Method::POST,
            "/",
            "Generate: a one-element list, or server-sent events with `stream: true`",
        )
        .body::<TgiGenerateRequest>()
        .ok_list::<TgiGenerateResponse>(),
        op(Method::POST, "/generate", "Generate text")
            .body::<TgiGenerateRequest>()
            .ok::<TgiGenerateResponse>(),
        op(
            Method::POST,
            "/generate_stream",
            "Generate text as server-sent events: one per token, the last with the whole text and details",
        )
        .body::<TgiGenerateRequest>()
        .ok_as("text/event-stream"),
        op(Method::GET, "/info", "The served model and the server's limits").ok::<TgiInfo>(),
        op(Method::POST, "/tokenize", "Split text into the model's tokens")
            .body::<TgiTokenizeRequest>()
            .ok_list::<TgiTokenSpan>(),
    ]
}
