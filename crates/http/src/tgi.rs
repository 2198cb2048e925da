//! Hugging Face TGI's API, so the `text-generation` client and TGI-speaking
//! gateways can use inferd: `POST /generate`, `POST /generate_stream` (SSE),
//! `POST /` (either, by `stream`), `GET /info`, `POST /tokenize`. TGI serves one
//! model; here it is the first text model of the repository by name. Errors are
//! TGI's `{error, error_type}`.

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use inferd_core::generate::{Event, GenerateRequest, Prompt, Sampling, Token, MAX_STOP_SEQUENCES};
use inferd_core::{Collected, CoreError, ErrorKind, TextModel};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::body::{self, BodyError};
use crate::routes::{Access, Face, Routes};
use crate::stream::{streaming, Sink};
use crate::AppState;

pub fn routes() -> Routes {
    Routes::new(Face::Tgi)
        .post("/", Access::User, compat)
        .post("/generate", Access::User, generate)
        .post("/generate_stream", Access::User, generate_stream)
        .get("/info", Access::Read, info)
        .post("/tokenize", Access::User, tokenize)
}

pub struct TgiError {
    status: StatusCode,
    error: String,
    error_type: &'static str,
}

impl TgiError {
    fn validation(error: impl Into<String>) -> Self {
        TgiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            error: error.into(),
            error_type: "validation",
        }
    }

    fn json(&self) -> Value {
        json!({"error": self.error, "error_type": self.error_type})
    }
}

impl IntoResponse for TgiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.json())).into_response()
    }
}

impl From<BodyError> for TgiError {
    fn from(e: BodyError) -> Self {
        TgiError {
            // TGI answers malformed requests with 422; a body too large or
            // too slow keeps its own status.
            status: if e.status == StatusCode::BAD_REQUEST {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                e.status
            },
            error: e.message,
            error_type: "validation",
        }
    }
}

impl From<CoreError> for TgiError {
    fn from(e: CoreError) -> Self {
        use StatusCode as S;
        let (status, error_type) = match e.kind() {
            ErrorKind::InvalidInput | ErrorKind::Unsupported => {
                (S::UNPROCESSABLE_ENTITY, "validation")
            }
            ErrorKind::TooLarge => (S::PAYLOAD_TOO_LARGE, "validation"),
            ErrorKind::NotFound => (S::NOT_FOUND, "validation"),
            ErrorKind::Overloaded => (S::TOO_MANY_REQUESTS, "overloaded"),
            ErrorKind::Timeout => (S::GATEWAY_TIMEOUT, "timeout"),
            ErrorKind::NotReady | ErrorKind::Unavailable => (S::SERVICE_UNAVAILABLE, "unhealthy"),
            ErrorKind::Conflict => (S::CONFLICT, "validation"),
            ErrorKind::Upstream => (S::BAD_GATEWAY, "generation"),
            ErrorKind::Unauthorized => (S::UNAUTHORIZED, "authentication"),
            ErrorKind::Forbidden => (S::FORBIDDEN, "authorization"),
            ErrorKind::Internal => (S::FAILED_DEPENDENCY, "generation"),
        };
        TgiError {
            status,
            error: e.to_string(),
            error_type,
        }
    }
}

/// TGI's `GenerateParameters`. Features inferd lacks are refused when asked
/// for (`best_of` > 1, `frequency_penalty` ≠ 0, `typical_p`, `truncate`,
/// `watermark`, `decoder_input_details`, `top_n_tokens` > 0, `grammar`,
/// `adapter_id`), never silently ignored. Its schema in /openapi.json is
/// this type's.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[schema(as = TgiParameters)]
pub(crate) struct Parameters {
    best_of: Option<u32>,
    /// Greater than 0, at most 2 (default 1).
    temperature: Option<f32>,
    /// Greater than 0 (default 1, off).
    repetition_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    /// 0 is off.
    top_k: Option<u32>,
    /// In (0, 1] (default 1).
    top_p: Option<f32>,
    typical_p: Option<f32>,
    /// Default false (true when `parameters` is absent altogether).
    do_sample: Option<bool>,
    /// 1 to 4096 (default 128).
    max_new_tokens: Option<u32>,
    /// Prefix the answer with the prompt.
    #[serde(default)]
    return_full_text: Option<bool>,
    /// Up to 4 non-empty strings.
    #[serde(default)]
    stop: Vec<String>,
    truncate: Option<u32>,
    #[serde(default)]
    watermark: bool,
    /// Answer `details` (finish reason, tokens, seed).
    #[serde(default)]
    details: bool,
    #[serde(default)]
    decoder_input_details: bool,
    seed: Option<u64>,
    top_n_tokens: Option<u32>,
    grammar: Option<Value>,
    adapter_id: Option<String>,
}

#[derive(Deserialize)]
struct GenerateBody {
    inputs: String,
    parameters: Option<Parameters>,
    #[serde(default)]
    stream: bool,
}

struct Checked {
    req: GenerateRequest,
    details: bool,
    full_text: Option<String>,
}

fn check(body: GenerateBody) -> Result<Checked, TgiError> {
    if body.inputs.is_empty() {
        return Err(TgiError::validation("`inputs` cannot be empty"));
    }
    // TGI: without `parameters` sampling is on; with them, it is off unless asked.
    let sample_by_default = body.parameters.is_none();
    let p = body.parameters.unwrap_or_default();
    let refuse = |what: &str| {
        Err(TgiError::validation(format!(
            "{what} is not supported by inferd"
        )))
    };
    if p.best_of.is_some_and(|b| b > 1) {
        return refuse("`best_of` > 1");
    }
    if p.frequency_penalty.is_some_and(|f| f != 0.0) {
        return refuse("`frequency_penalty`");
    }
    if p.typical_p.is_some() {
        return refuse("`typical_p`");
    }
    if p.truncate.is_some() {
        return refuse("`truncate`");
    }
    if p.watermark {
        return refuse("`watermark`");
    }
    if p.decoder_input_details {
        return refuse("`decoder_input_details`");
    }
    if p.top_n_tokens.is_some_and(|n| n > 0) {
        return refuse("`top_n_tokens`");
    }
    if p.grammar.as_ref().is_some_and(|g| !g.is_null()) {
        return refuse("`grammar`");
    }
    if p.adapter_id.is_some() {
        return refuse("`adapter_id`");
    }
    if p.temperature.is_some_and(|t| t <= 0.0) {
        return Err(TgiError::validation(
            "`temperature` must be strictly positive",
        ));
    }
    if p.stop.len() > MAX_STOP_SEQUENCES {
        return Err(TgiError::validation(format!(
            "`stop` supports up to {MAX_STOP_SEQUENCES} stop sequences. Given: {}",
            p.stop.len()
        )));
    }
    let sampling = Sampling {
        max_new_tokens: p
            .max_new_tokens
            .unwrap_or(Sampling::default().max_new_tokens),
        temperature: p.temperature.unwrap_or(1.0),
        top_p: p.top_p.unwrap_or(1.0),
        top_k: p.top_k.unwrap_or(0),
        do_sample: p.do_sample.unwrap_or(sample_by_default),
        repetition_penalty: p.repetition_penalty.unwrap_or(1.0),
        seed: p.seed,
        stop: p.stop,
    };
    sampling.validate()?;
    Ok(Checked {
        full_text: p
            .return_full_text
            .unwrap_or(false)
            .then(|| body.inputs.clone()),
        req: GenerateRequest {
            prompt: Prompt::Text(body.inputs),
            sampling,
        },
        details: p.details,
    })
}

/// The model TGI's routes serve.
async fn served(state: &AppState) -> Result<TextModel, TgiError> {
    let name = state
        .manager
        .text_model_names()
        .into_iter()
        .next()
        .ok_or_else(|| TgiError {
            status: StatusCode::NOT_FOUND,
            error: "this server has no text-generation model".into(),
            error_type: "validation",
        })?;
    Ok(state.manager.text_model(&name).await?)
}

fn token_json(t: &Token) -> Value {
    json!({"id": t.id, "text": t.text, "logprob": t.logprob, "special": t.special})
}

fn details_json(done: &Collected) -> Value {
    let f = &done.finished;
    json!({
        "finish_reason": f.reason.tgi(),
        "generated_tokens": f.generated_tokens,
        "seed": f.seed,
        "prefill": [],
        "tokens": done.tokens.iter().map(token_json).collect::<Vec<_>>(),
    })
}

async fn read(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<GenerateBody, TgiError> {
    let bytes = body::bytes(body, state.max_body_bytes)?;
    Ok(body::json(&bytes)?)
}

async fn compat(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    match read(&state, body).await {
        Ok(b) if b.stream => stream(state, b).await.into_response(),
        // TGI answers its root route with a list, which its client reads.
        Ok(b) => match run(state, b).await {
            Ok((headers, answer)) => (headers, Json(json!([answer]))).into_response(),
            Err(e) => e.into_response(),
        },
        Err(e) => e.into_response(),
    }
}

async fn generate(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    match read(&state, body).await {
        Ok(b) => match run(state, b).await {
            Ok((headers, answer)) => (headers, Json(answer)).into_response(),
            Err(e) => e.into_response(),
        },
        Err(e) => e.into_response(),
    }
}

async fn generate_stream(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match read(&state, body).await {
        Ok(b) => stream(state, b).await.into_response(),
        Err(e) => e.into_response(),
    }
}

type Answer = ([(&'static str, String); 2], Value);

async fn run(state: AppState, body: GenerateBody) -> Result<Answer, TgiError> {
    let checked = check(body)?;
    let model = served(&state).await?;
    let done = model.start(checked.req)?.collect().await?;
    let text = match checked.full_text {
        Some(prompt) => prompt + &done.text,
        None => done.text.clone(),
    };
    let mut answer = json!({"generated_text": text});
    if checked.details {
        answer["details"] = details_json(&done);
    }
    let headers = [
        ("x-prompt-tokens", done.finished.prompt_tokens.to_string()),
        (
            "x-generated-tokens",
            done.finished.generated_tokens.to_string(),
        ),
    ];
    Ok((headers, answer))
}

/// Token events as they come; the last one carries the whole text and the
/// details. Engines mark their last token, so only it waits for `Done`; for a
/// stream whose end is learnt after its last token (some remote servers) an
/// empty special token closes it.
async fn stream(state: AppState, body: GenerateBody) -> Result<Response, TgiError> {
    let checked = check(body)?;
    let model = served(&state).await?;
    let mut generation = model.start(checked.req)?;
    let prefix = checked.full_text.unwrap_or_default();
    Ok(streaming(
        "text/event-stream",
        move |sink: Sink| async move {
            let mut text = prefix;
            let mut last: Option<Token> = None;
            let mut index = 0u32;
            let frame = |v: Value| format!("data:{v}\n\n");
            while let Some(event) = sink.next(&mut generation).await {
                match event {
                    Event::Token(t) if t.last => {
                        text.push_str(&t.text);
                        last = Some(t);
                    }
                    Event::Token(t) => {
                        text.push_str(&t.text);
                        index += 1;
                        let v = json!({"index": index, "token": token_json(&t), "top_tokens": null, "generated_text": null, "details": null});
                        if !sink.send(frame(v)).await {
                            return;
                        }
                    }
                    Event::Done(f) => {
                        let last = last.take().unwrap_or(Token {
                            id: 0,
                            text: String::new(),
                            logprob: 0.0,
                            special: true,
                            last: true,
                        });
                        let v = json!({
                            "index": index + 1,
                            "token": token_json(&last),
                            "top_tokens": null,
                            "generated_text": text,
                            "details": {
                                "finish_reason": f.reason.tgi(),
                                "generated_tokens": f.generated_tokens,
                                "seed": f.seed,
                                "input_length": f.prompt_tokens,
                            },
                        });
                        sink.send(frame(v)).await;
                        return;
                    }
                    Event::Failed(e) => {
                        sink.send(frame(TgiError::from(e).json())).await;
                        return;
                    }
                }
            }
        },
    ))
}

async fn info(State(state): State<AppState>) -> Result<Json<Value>, TgiError> {
    let model = served(&state).await?;
    let i = model.info();
    Ok(Json(json!({
        "model_id": i.served_name,
        "model_sha": null,
        "model_dtype": null,
        "model_device_type": "cpu",
        "model_pipeline_tag": "text-generation",
        "max_concurrent_requests": i.slots + i.max_waiting,
        "max_best_of": 1,
        "max_stop_sequences": MAX_STOP_SEQUENCES,
        "max_input_tokens": i.max_input_tokens,
        "max_total_tokens": i.max_total_tokens,
        "max_batch_size": i.slots,
        "validation_workers": 1,
        "max_client_batch_size": 1,
        "router": "inferd",
        "version": env!("CARGO_PKG_VERSION"),
        "sha": null,
        "docker_label": null,
    })))
}

#[derive(Deserialize)]
struct TokenizeBody {
    inputs: String,
}

async fn tokenize(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, TgiError> {
    let bytes = body::bytes(body, state.max_body_bytes)?;
    let req: TokenizeBody = body::json(&bytes)?;
    let model = served(&state).await?;
    let tokens = model.tokenize(&req.inputs)?;
    Ok(Json(json!(tokens
        .iter()
        .map(|t| json!({"id": t.id, "text": t.text, "start": t.start, "stop": t.stop}))
        .collect::<Vec<_>>())))
}
