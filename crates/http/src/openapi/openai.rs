//! OpenAI's API: embeddings, completions and chat completions at `/v1/...` and
//! again under KServe's `/openai` prefix, and `/openai/v1/models`. (`GET
//! /v1/models` is shared with KServe V1 and seed 002: see `common`.)
#![allow(dead_code)]

use axum::http::Method;
use serde_json::Value;
use utoipa::ToSchema;

use super::{op, Doc};

/// OpenAI's error envelope.
#[derive(ToSchema)]
pub struct OpenAiError {
    error: OpenAiErrorDetail,
}

#[derive(ToSchema)]
struct OpenAiErrorDetail {
    /// What was wrong.
    message: String,
    /// `invalid_request_error`, `rate_limit_error`, `timeout_error` or
    /// `server_error`.
    #[serde(rename = "type")]
    kind: String,
    /// The request field at fault, when one is.
    param: Option<String>,
    /// `model_not_found`, `overloaded`, `timeout`, `model_unavailable`,
    /// `upstream_error`, `invalid_api_key`, `insufficient_permissions`, or null.
    code: Option<String>,
}

#[derive(ToSchema)]
struct OpenAiEmbeddingsRequest {
    /// A string or a list of 1 to 2048 strings; token arrays are refused.
    input: Value,
    /// A model whose task is `feature-extraction`.
    model: String,
    /// `float` (the default) or `base64` (little-endian f32s).
    encoding_format: Option<String>,
    /// Must equal the model's own dimensions when given.
    dimensions: Option<u64>,
    /// Accepted and ignored.
    user: Option<String>,
}

#[derive(ToSchema)]
struct OpenAiEmbedding {
    /// `embedding`.
    object: String,
    /// The input's position in the request.
    index: u64,
    /// A list of numbers, or a base64 string with `encoding_format: base64`.
    embedding: Value,
}

#[derive(ToSchema)]
struct OpenAiEmbeddingsUsage {
    prompt_tokens: i64,
    total_tokens: i64,
}

#[derive(ToSchema)]
struct OpenAiEmbeddings {
    /// `list`.
    object: String,
    /// One per input, in order.
    data: Vec<OpenAiEmbedding>,
    model: String,
    usage: OpenAiEmbeddingsUsage,
}

#[derive(ToSchema)]
struct OpenAiStreamOptions {
    /// Send a last chunk with `usage` (and no choices) before `[DONE]`.
    #[serde(default)]
    include_usage: bool,
}

/// Sampling fields both text routes take. Parameters inferd cannot honour
/// are refused with the parameter named, never ignored.
#[derive(ToSchema)]
struct OpenAiSampling {
    /// A text model's name; `tgi` names the model the TGI face serves.
    model: String,
    /// 1 to 4096 (default 128).
    max_tokens: Option<u32>,
    /// Preferred to `max_tokens` when both are given.
    max_completion_tokens: Option<u32>,
    /// 0 to 2 (default 1); 0 is greedy.
    temperature: Option<f64>,
    /// In (0, 1] (default 1).
    top_p: Option<f64>,
    /// Only 1.
    n: Option<u32>,
    /// A string or a list of up to 4 non-empty strings.
    stop: Option<Value>,
    /// Answer server-sent events (`chat.completion.chunk` or
    /// `text_completion` chunks, then `data: [DONE]`) instead of JSON.
    #[serde(default)]
    stream: bool,
    stream_options: Option<OpenAiStreamOptions>,
    seed: Option<u64>,
    /// Only 0.
    frequency_penalty: Option<f64>,
    /// Only 0.
    presence_penalty: Option<f64>,
    /// Only false or null.
    logprobs: Option<Value>,
    /// Only null.
    logit_bias: Option<Value>,
    /// vLLM's extra: 0 is off.
    top_k: Option<u32>,
    /// vLLM's extra: greater than 0 (default 1, off).
    repetition_penalty: Option<f64>,
}

#[derive(ToSchema)]
struct OpenAiCompletionRequest {
    /// One non-empty string (or a list holding one).
    prompt: Value,
    /// Refused when given.
    suffix: Option<String>,
    /// Only false.
    echo: Option<bool>,
    #[serde(flatten)]
    sampling: OpenAiSampling,
}

#[derive(ToSchema)]
struct OpenAiChatMessage {
    /// `system`, `user`, `assistant`…
    role: String,
    /// A string, a list of `{"type": "text", "text": ...}` parts, or null.
    content: Option<Value>,
}

#[derive(ToSchema)]
struct OpenAiResponseFormat {
    /// Only `text`.
    #[serde(rename = "type")]
    kind: String,
}

#[derive(ToSchema)]
struct OpenAiChatRequest {
    /// At least one.
    messages: Vec<OpenAiChatMessage>,
    /// Only null.
    tools: Option<Value>,
    response_format: Option<OpenAiResponseFormat>,
    #[serde(flatten)]
    sampling: OpenAiSampling,
}

#[derive(ToSchema)]
struct OpenAiUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

#[derive(ToSchema)]
struct OpenAiCompletionChoice {
    /// Always 0.
    index: u64,
    text: String,
    /// `stop` or `length`.
    finish_reason: String,
    /// Always null.
    logprobs: Option<Value>,
}

/// A completion (without `stream`).
#[derive(ToSchema)]
struct OpenAiCompletion {
    /// `cmpl-` and a UUID.
    id: String,
    /// `text_completion`.
    object: String,
    /// Unix seconds.
    created: u64,
    /// The `model` the request named.
    model: String,
    /// Always null.
    system_fingerprint: Option<String>,
    /// Always one.
    choices: Vec<OpenAiCompletionChoice>,
    usage: OpenAiUsage,
}

#[derive(ToSchema)]
struct OpenAiAssistantMessage {
    /// `assistant`.
    role: String,
    content: String,
}

#[derive(ToSchema)]
struct OpenAiChatChoice {
    /// Always 0.
    index: u64,
    message: OpenAiAssistantMessage,
    /// `stop` or `length`.
    finish_reason: String,
    /// Always null.
    logprobs: Option<Value>,
}

/// A chat completion (without `stream`).
#[derive(ToSchema)]
struct OpenAiChatCompletion {
    /// `chatcmpl-` and a UUID.
    id: String,
    /// `chat.completion`.
    object: String,
    /// Unix seconds.
    created: u64,
    /// The `model` the request named.
    model: String,
    /// Always null.
    system_fingerprint: Option<String>,
    /// Always one.
    choices: Vec<OpenAiChatChoice>,
    usage: OpenAiUsage,
}

#[derive(ToSchema)]
struct OpenAiModel {
    id: String,
    /// `model`.
    object: String,
    /// Always 0.
    created: u64,
    /// `inferd`.
    owned_by: String,
}

#[derive(ToSchema)]
struct OpenAiModelList {
    /// `list`.
    object: String,
    data: Vec<OpenAiModel>,
}

/// The three POST routes under one prefix.
fn text_routes(
    embeddings: &'static str,
    completions: &'static str,
    chat: &'static str,
) -> Vec<Doc> {
    vec![
        op(Method::POST, embeddings, "Embeddings of one text or a list")
            .body::<OpenAiEmbeddingsRequest>()
            .ok::<OpenAiEmbeddings>(),
        op(
            Method::POST,
            completions,
            "Text completion (server-sent events with `stream: true`)",
        )
        .body::<OpenAiCompletionRequest>()
        .ok::<OpenAiCompletion>(),
        op(
            Method::POST,
            chat,
            "Chat completion (server-sent events with `stream: true`)",
        )
        .body::<OpenAiChatRequest>()
        .ok::<OpenAiChatCompletion>(),
    ]
}

pub fn docs() -> Vec<Doc> {
    [
        text_routes("/v1/embeddings", "/v1/completions", "/v1/chat/completions"),
        text_routes(
            "/openai/v1/embeddings",
            "/openai/v1/completions",
            "/openai/v1/chat/completions",
        ),
        vec![
            op(Method::GET, "/openai/v1/models", "List the models (OpenAI)")
                .ok::<OpenAiModelList>(),
        ],
    ]
    .concat()
}
