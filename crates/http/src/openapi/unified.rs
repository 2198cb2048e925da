//! The unified `/inference` API (seed 004): one infer endpoint for every
//! task, batch, async jobs, preload, the model cache, health, tasks, stats,
//! examples and streaming over WebSocket.
#![allow(dead_code)]

use std::collections::HashMap;

use axum::http::Method;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::{op, Doc};

/// What went wrong, beside the HTTP status.
#[derive(ToSchema)]
struct UnifiedErrorDetails {
    /// The HTTP status of the error.
    status: u64,
    /// What to do about it, when there is advice.
    hint: Option<String>,
}

/// The document's error object (also per item in batch and preload answers).
#[derive(ToSchema)]
struct UnifiedErrorBody {
    /// The error's class: `ValueError`, `UnsupportedTaskError`,
    /// `ModelNotFoundError`, `TimeoutError`...
    #[serde(rename = "type")]
    kind: String,
    message: String,
    /// UNSUPPORTED_TASK, MODEL_NOT_FOUND, INVALID_INPUT, INFERENCE_FAILED,
    /// RESOURCE_EXHAUSTED, TIMEOUT, UNAUTHORIZED or FORBIDDEN.
    code: String,
    details: UnifiedErrorDetails,
}

/// The unified API's error envelope.
#[derive(ToSchema)]
pub struct UnifiedError {
    /// Always false.
    success: bool,
    error: UnifiedErrorBody,
    timestamp: f64,
}

/// One request for any task.
#[derive(ToSchema)]
struct UnifiedInferRequest {
    /// `tensors`, `image-classification` (`classify`), `feature-extraction`
    /// (`embeddings`) or `text-generation` (`generate`).
    task: String,
    /// transformers (the default: the model's own backend), onnx, builtin,
    /// llama.cpp, onnxruntime, candle, tgi, openai or ollama.
    engine: Option<String>,
    /// A model name, or a cache key `engine:model_name`.
    model_name: String,
    /// By task: tensors `{"inputs": [V2 tensors]}`, `{"instances": [rows]}`
    /// or a list of rows; classification `{"image": b64}` or `{"images":
    /// [b64]}`; embeddings a string or a list of them; generation a prompt
    /// string, `{"inputs"|"prompt"|"text": str}` or `{"messages": [...]}`.
    data: Value,
    /// `timeout` (seconds), `top_k` (classification), and for generation
    /// `max_new_tokens`, `temperature`, `top_p`, `top_k`, `do_sample`,
    /// `repetition_penalty`, `seed`, `stop`, `scenario`.
    options: Option<Map<String, Value>>,
}

/// The legacy multimodal request: the task defaults to image-classification.
#[derive(ToSchema)]
struct UnifiedMultimodalRequest {
    /// image-classification when absent.
    task: Option<String>,
    engine: Option<String>,
    model_name: String,
    /// `{"image": b64}` or `{"images": [b64, ...]}` (plain base64 or a data URL).
    data: Value,
    options: Option<Map<String, Value>>,
}

#[derive(ToSchema)]
struct UnifiedInferResponse {
    success: bool,
    /// The task as resolved (its pipeline name).
    task: String,
    /// The backend that ran it.
    engine: String,
    /// The model's name as resolved.
    model_name: String,
    /// By task: `{"outputs": [tensors]}` or `{"predictions": [...]}`;
    /// `{"predictions": [{class, confidence}]}` (a list per image for
    /// several); `{"embeddings", "dimensions", "tokens"}`; `{"generated_text",
    /// "tokens", "prompt_tokens", "finish_reason", "model"}`.
    result: Value,
    /// Seconds.
    processing_time: f64,
    timestamp: f64,
}

#[derive(ToSchema)]
struct UnifiedBatchRequest {
    /// 1 to 100 requests.
    requests: Vec<UnifiedInferRequest>,
    /// Run them all at once (joined by dynamic batching) rather than in turn.
    parallel: Option<bool>,
}

#[derive(ToSchema)]
struct UnifiedBatchSummary {
    total_requests: u64,
    successful: u64,
    failed: u64,
    /// 0 to 1.
    success_rate: f64,
}

/// One request's outcome; `result` on success, the error fields on failure.
#[derive(ToSchema)]
struct UnifiedBatchItem {
    index: u64,
    success: bool,
    result: Option<Value>,
    /// The error's message.
    error: Option<String>,
    error_detail: Option<UnifiedErrorBody>,
    /// The task and model as sent (failures only).
    task: Option<String>,
    model_name: Option<String>,
}

#[derive(ToSchema)]
struct UnifiedBatchResponse {
    success: bool,
    summary: UnifiedBatchSummary,
    /// In the requests' order.
    results: Vec<UnifiedBatchItem>,
    /// Seconds.
    total_processing_time: f64,
    average_time_per_request: f64,
    parallel: bool,
    timestamp: f64,
}

#[derive(ToSchema)]
struct UnifiedJobAccepted {
    success: bool,
    job_id: String,
    /// `queued`.
    status: String,
    /// Where to poll: `/inference/async/{id}`.
    status_url: String,
    timestamp: f64,
}

#[derive(ToSchema)]
struct UnifiedJob {
    success: bool,
    job_id: String,
    /// queued, running, succeeded, failed or cancelled.
    status: String,
    task: Option<String>,
    model_name: Option<String>,
    /// The infer answer's `result`, once succeeded.
    result: Option<Value>,
    /// Once failed: the document's error object (`details` may be absent).
    error: Option<Value>,
    attempts: u64,
    /// Seconds since the epoch.
    created_at: f64,
    started_at: Option<f64>,
    finished_at: Option<f64>,
    timestamp: f64,
}

#[derive(ToSchema)]
struct UnifiedJobCancelled {
    /// True when the job is now cancelled.
    success: bool,
    job_id: String,
    /// The job's status after the cancel.
    status: Option<String>,
    timestamp: f64,
}

#[derive(ToSchema)]
struct UnifiedPreloadRequest {
    /// 1 to 100 models, each a cache key (`onnx:iris`), a model name, or
    /// `{"engine", "model_name"}`.
    models: Vec<Value>,
}

#[derive(ToSchema)]
struct UnifiedPreloadResult {
    key: String,
    loaded: bool,
    /// Whether it was in memory already (loaded ones only).
    already_loaded: Option<bool>,
    time_ms: f64,
    /// Why it did not load.
    error: Option<UnifiedErrorBody>,
}

#[derive(ToSchema)]
struct UnifiedPreloadResponse {
    /// True when every model loaded.
    success: bool,
    /// How many loaded.
    loaded: u64,
    results: Vec<UnifiedPreloadResult>,
    timestamp: f64,
}

#[derive(ToSchema)]
struct UnifiedManagerHealth {
    /// healthy or shutting_down.
    status: String,
    /// Models in the repository.
    models: u64,
    /// Model versions in memory.
    loaded: u64,
}

#[derive(ToSchema)]
struct UnifiedCacheHealth {
    status: String,
    memory_used_bytes: u64,
}

#[derive(ToSchema)]
struct UnifiedComponentHealth {
    status: String,
}

#[derive(ToSchema)]
struct UnifiedComponents {
    model_manager: UnifiedManagerHealth,
    cache: UnifiedCacheHealth,
    scheduler: UnifiedComponentHealth,
}

#[derive(ToSchema)]
struct UnifiedHealth {
    /// healthy, or shutting_down (with 503).
    status: String,
    components: UnifiedComponents,
    timestamp: f64,
}

#[derive(ToSchema)]
struct UnifiedTask {
    task: String,
    /// Whether a model present can do it.
    available: bool,
    /// The backends of those models.
    engines: Vec<String>,
    models: Vec<String>,
}

#[derive(ToSchema)]
struct UnifiedTasks {
    success: bool,
    tasks: Vec<UnifiedTask>,
    /// Every engine name a request may give.
    engines: Vec<String>,
    timestamp: f64,
}

/// Latency percentiles over the last 1024 requests; null before any.
#[derive(ToSchema)]
struct UnifiedLatency {
    p50: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
}

#[derive(ToSchema)]
struct UnifiedSeries {
    requests: u64,
    errors: u64,
    /// 0 to 1.
    error_rate: f64,
    latency_ms: UnifiedLatency,
}

#[derive(ToSchema)]
struct UnifiedStatsBody {
    total: UnifiedSeries,
    /// Keyed by task (`(unresolved)` for requests that named none known).
    by_task: HashMap<String, UnifiedSeries>,
    /// Keyed by model.
    by_model: HashMap<String, UnifiedSeries>,
}

#[derive(ToSchema)]
struct UnifiedStats {
    success: bool,
    stats: UnifiedStatsBody,
    timestamp: f64,
}

#[derive(ToSchema)]
struct UnifiedExample {
    description: String,
    /// `POST /inference/infer`.
    endpoint: String,
    /// A request that works against the models present.
    request: UnifiedInferRequest,
}

#[derive(ToSchema)]
struct UnifiedExamples {
    success: bool,
    examples: Vec<UnifiedExample>,
    timestamp: f64,
}

#[derive(ToSchema)]
struct UnifiedCleared {
    success: bool,
    message: String,
    /// Model versions removed.
    cleared: u64,
    timestamp: f64,
}

#[derive(ToSchema)]
struct UnifiedCacheStatsBody {
    hits: u64,
    misses: u64,
    /// 0 to 1.
    hit_rate: f64,
    loads: u64,
    load_failures: u64,
    evictions: u64,
    total_load_time_s: f64,
    cached_models: u64,
    /// Null when unlimited.
    max_cache_size: Option<u64>,
    memory_used_bytes: u64,
    memory_used_gb: f64,
    /// Null when unlimited.
    max_memory_gb: Option<f64>,
    /// Accesses per cache key.
    access_counts: HashMap<String, u64>,
}

#[derive(ToSchema)]
struct UnifiedCacheStats {
    success: bool,
    stats: UnifiedCacheStatsBody,
    timestamp: f64,
}

#[derive(ToSchema)]
struct UnifiedCachedModel {
    /// `engine:model_name`.
    key: String,
    model_name: String,
    engine: String,
    version: String,
    /// Seconds since the epoch.
    loaded_at: f64,
    load_time_s: f64,
    access_count: u64,
    /// Seconds since the epoch; null if never used.
    last_access: Option<f64>,
    memory_bytes: u64,
    memory_mb: f64,
}

#[derive(ToSchema)]
struct UnifiedLoadingModel {
    key: String,
    model_name: String,
    version: String,
    /// `loading`.
    status: String,
    elapsed_s: f64,
    /// The size of the files it reads.
    bytes: u64,
    /// How long its last load took, if any.
    last_load_time_s: Option<f64>,
    /// How far the load is, in words.
    progress: String,
}

#[derive(ToSchema)]
struct UnifiedCacheModels {
    success: bool,
    /// How many are in memory.
    count: u64,
    /// Least recently used first.
    models: Vec<UnifiedCachedModel>,
    /// Loads under way.
    loading: Vec<UnifiedLoadingModel>,
    timestamp: f64,
}

/// `success: false` (still 200) when the key is not in the cache.
#[derive(ToSchema)]
struct UnifiedRemoved {
    success: bool,
    message: String,
    timestamp: f64,
}

#[derive(ToSchema)]
struct UnifiedCacheConfig {
    /// 0 is no limit.
    max_cache_size: u64,
    /// 0 is no limit.
    max_memory_gb: f64,
}

#[derive(ToSchema)]
struct UnifiedConfigured {
    success: bool,
    message: String,
    /// What changed, in words.
    updates: Vec<String>,
    /// Cache keys evicted to fit the new limits.
    evicted: Vec<String>,
    /// False while busy models keep the cache above the limits.
    fits: bool,
    current_config: UnifiedCacheConfig,
    timestamp: f64,
}

pub fn docs() -> Vec<Doc> {
    vec![
        op(
            Method::POST,
            "/inference/infer",
            "Run one request of any task",
        )
        .body::<UnifiedInferRequest>()
        .ok::<UnifiedInferResponse>(),
        op(
            Method::POST,
            "/inference/infer_fixed",
            "Legacy alias of /inference/infer",
        )
        .body::<UnifiedInferRequest>()
        .ok::<UnifiedInferResponse>(),
        op(
            Method::POST,
            "/inference/infer_multimodal",
            "Legacy image request (task defaults to image-classification)",
        )
        .body::<UnifiedMultimodalRequest>()
        .ok::<UnifiedInferResponse>(),
        op(
            Method::POST,
            "/inference/batch",
            "Run 1 to 100 requests, in turn or in parallel",
        )
        .body::<UnifiedBatchRequest>()
        .ok::<UnifiedBatchResponse>(),
        op(
            Method::POST,
            "/inference/async",
            "Queue a request as a job (202 with its id)",
        )
        .body::<UnifiedInferRequest>()
        .status(202)
        .ok::<UnifiedJobAccepted>(),
        op(
            Method::GET,
            "/inference/async/{id}",
            "A job's status and result",
        )
        .ok::<UnifiedJob>(),
        op(
            Method::DELETE,
            "/inference/async/{id}",
            "Cancel a job (409 once finished)",
        )
        .ok::<UnifiedJobCancelled>(),
        op(
            Method::POST,
            "/inference/models/preload",
            "Load models into the cache",
        )
        .body::<UnifiedPreloadRequest>()
        .ok::<UnifiedPreloadResponse>(),
        op(
            Method::GET,
            "/inference/ws",
            "WebSocket: JSON requests in, token/result/error messages out",
        )
        .status(101)
        .also_as(400, "not a WebSocket upgrade request", "text/plain")
        .also_as(426, "the connection cannot be upgraded", "text/plain"),
        op(
            Method::GET,
            "/inference/health",
            "Component health: 503 while shutting down",
        )
        .ok::<UnifiedHealth>()
        .also::<UnifiedHealth>(503, "shutting down"),
        op(
            Method::GET,
            "/inference/supported-tasks",
            "The tasks, and the models and engines that can do each",
        )
        .ok::<UnifiedTasks>(),
        op(
            Method::GET,
            "/inference/stats",
            "Requests, errors and latency by task and model",
        )
        .ok::<UnifiedStats>(),
        op(
            Method::GET,
            "/inference/examples",
            "Example requests for the models present",
        )
        .ok::<UnifiedExamples>(),
        op(
            Method::POST,
            "/inference/clear-cache",
            "Unload every cached model",
        )
        .ok::<UnifiedCleared>(),
        op(
            Method::GET,
            "/inference/cache/stats",
            "Cache hits, loads, evictions and memory",
        )
        .ok::<UnifiedCacheStats>(),
        op(
            Method::GET,
            "/inference/cache/models",
            "The cached models and the loads under way",
        )
        .ok::<UnifiedCacheModels>(),
        op(
            Method::DELETE,
            "/inference/cache/models/{key}",
            "Evict a model (key `engine:model_name` or a model name)",
        )
        .ok::<UnifiedRemoved>(),
        op(
            Method::PUT,
            "/inference/cache/config",
            "Change the cache limits (may evict)",
        )
        .query("max_cache_size", "Most models in memory, 1 to 20")
        .query("max_memory_gb", "Most memory for models, 1 to 100 GB")
        .ok::<UnifiedConfigured>(),
    ]
}
