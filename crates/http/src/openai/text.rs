//! `POST /v1/completions` and `POST /v1/chat/completions`, streamed (SSE chunks
//! ending in `data: [DONE]`) or not. Parameters OpenAI has and inferd cannot
//! honour (`n` > 1, penalties, logprobs, tools, `suffix`) are refused with the
//! parameter named, never silently ignored. vLLM's extras `top_k` and
//! `repetition_penalty` are accepted, as clients pass them in `extra_body`.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use inferd_core::generate::{ChatMessage, Event, GenerateRequest, Prompt, Sampling};
use serde::Deserialize;
use serde_json::{json, Value};

use super::OpenAiError;
use crate::body;
use crate::stream::{streaming, Sink};
use crate::AppState;

/// What both routes share.
#[derive(Deserialize)]
struct Common {
    model: String,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    n: Option<u32>,
    stop: Option<Value>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    seed: Option<u64>,
    frequency_penalty: Option<f32>,
    presence_penalty: Option<f32>,
    logprobs: Option<Value>,
    logit_bias: Option<Value>,
    top_k: Option<u32>,
    repetition_penalty: Option<f32>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Deserialize)]
struct ChatBody {
    messages: Vec<Message>,
    tools: Option<Value>,
    response_format: Option<Value>,
    #[serde(flatten)]
    common: Common,
}

#[derive(Deserialize)]
struct Message {
    role: String,
    content: Option<Value>,
}

#[derive(Deserialize)]
struct CompletionBody {
    prompt: Value,
    suffix: Option<String>,
    echo: Option<bool>,
    #[serde(flatten)]
    common: Common,
}

fn refuse(param: &'static str, why: &str) -> OpenAiError {
    OpenAiError::invalid(format!("'{param}' {why}"), param)
}

impl Common {
    fn sampling(&self) -> Result<Sampling, OpenAiError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(refuse(
                "n",
                "must be 1: inferd returns one choice per request",
            ));
        }
        for (param, v) in [
            ("frequency_penalty", self.frequency_penalty),
            ("presence_penalty", self.presence_penalty),
        ] {
            if v.is_some_and(|v| v != 0.0) {
                return Err(refuse(param, "is not supported; use repetition_penalty"));
            }
        }
        if self
            .logprobs
            .as_ref()
            .is_some_and(|v| !v.is_null() && *v != json!(false))
        {
            return Err(refuse("logprobs", "is not supported"));
        }
        if self.logit_bias.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(refuse("logit_bias", "is not supported"));
        }
        let stop = match &self.stop {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| refuse("stop", "must be a string or a list of strings"))?,
            Some(_) => return Err(refuse("stop", "must be a string or a list of strings")),
        };
        let temperature = self.temperature.unwrap_or(1.0);
        let s = Sampling {
            max_new_tokens: self
                .max_completion_tokens
                .or(self.max_tokens)
                .unwrap_or(Sampling::default().max_new_tokens),
            temperature,
            top_p: self.top_p.unwrap_or(1.0),
            top_k: self.top_k.unwrap_or(0),
            do_sample: temperature > 0.0,
            repetition_penalty: self.repetition_penalty.unwrap_or(1.0),
            seed: self.seed,
            stop,
        };
        s.validate()?;
        Ok(s)
    }

    fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage)
    }
}

fn text_of(content: Option<Value>) -> Result<String, OpenAiError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s),
        // Content parts: text ones are joined; images cannot be read here.
        Some(Value::Array(parts)) => parts
            .iter()
            .map(
                |p| match (p.get("type").and_then(Value::as_str), p.get("text")) {
                    (Some("text"), Some(Value::String(t))) => Ok(t.as_str()),
                    _ => Err(refuse(
                        "messages",
                        "content parts must be {\"type\": \"text\", \"text\": ...}",
                    )),
                },
            )
            .collect::<Result<Vec<_>, _>>()
            .map(|t| t.concat()),
        Some(_) => Err(refuse(
            "messages",
            "content must be a string or a list of parts",
        )),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Which route: chat messages come back as `message`/`delta`, completions as
/// `text`.
#[derive(Clone, Copy)]
enum Kind {
    Chat,
    Completion,
}

impl Kind {
    fn object(self, chunk: bool) -> &'static str {
        match (self, chunk) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Completion, _) => "text_completion",
        }
    }

    fn choice(self, text: &str, finish: Option<&str>, chunk: bool) -> Value {
        match (self, chunk) {
            (Kind::Chat, false) => {
                json!({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish, "logprobs": null})
            }
            (Kind::Chat, true) => {
                let delta = if finish.is_some() {
                    json!({})
                } else {
                    json!({"content": text})
                };
                json!({"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null})
            }
            (Kind::Completion, _) => {
                json!({"index": 0, "text": text, "finish_reason": finish, "logprobs": null})
            }
        }
    }
}

pub(super) async fn chat(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OpenAiError> {
    let bytes = body::bytes(body, state.max_body_bytes)?;
    let req: ChatBody = body::json(&bytes)?;
    if req.tools.as_ref().is_some_and(|t| !t.is_null()) {
        return Err(refuse("tools", "are not supported"));
    }
    if let Some(format) = &req.response_format {
        if format.get("type").and_then(Value::as_str) != Some("text") {
            return Err(refuse("response_format", "must be {\"type\": \"text\"}"));
        }
    }
    if req.messages.is_empty() {
        return Err(refuse("messages", "must hold at least one message"));
    }
    let messages = req
        .messages
        .into_iter()
        .map(|m| {
            Ok(ChatMessage {
                role: m.role,
                content: text_of(m.content)?,
            })
        })
        .collect::<Result<Vec<_>, OpenAiError>>()?;
    run(
        state,
        Kind::Chat,
        Prompt::Chat(messages),
        req.common,
        "chatcmpl",
    )
    .await
}

pub(super) async fn completions(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OpenAiError> {
    let bytes = body::bytes(body, state.max_body_bytes)?;
    let req: CompletionBody = body::json(&bytes)?;
    if req.suffix.is_some() {
        return Err(refuse("suffix", "is not supported"));
    }
    if req.echo == Some(true) {
        return Err(refuse("echo", "is not supported"));
    }
    let prompt = match req.prompt {
        Value::String(s) => s,
        Value::Array(items) if items.len() == 1 && items[0].is_string() => {
            items[0].as_str().unwrap_or_default().to_owned()
        }
        Value::Array(_) => {
            return Err(refuse(
                "prompt",
                "must be one string: send one request per prompt",
            ))
        }
        _ => return Err(refuse("prompt", "must be a string")),
    };
    if prompt.is_empty() {
        return Err(refuse("prompt", "must not be empty"));
    }
    run(
        state,
        Kind::Completion,
        Prompt::Text(prompt),
        req.common,
        "cmpl",
    )
    .await
}

async fn run(
    state: AppState,
    kind: Kind,
    prompt: Prompt,
    common: Common,
    id_prefix: &str,
) -> Result<Response, OpenAiError> {
    let sampling = common.sampling()?;
    // TGI's OpenAI routes serve their one model whatever `model` says, and TGI
    // clients (inferd's own tgi backend among them) send "tgi": it names the
    // model the TGI face serves.
    let name = match common.model.as_str() {
        "tgi" => state.manager.text_model_names().into_iter().next(),
        other => Some(other.to_owned()),
    }
    .unwrap_or_default();
    let model = state.manager.text_model(&name).await?;
    let mut generation = model.start(GenerateRequest { prompt, sampling })?;
    let id = format!("{id_prefix}-{}", uuid::Uuid::new_v4().simple());
    let created = now();
    let name = common.model.clone();
    if !common.stream {
        let done = generation.collect().await?;
        let f = &done.finished;
        return Ok(Json(json!({
            "id": id,
            "object": kind.object(false),
            "created": created,
            "model": name,
            "system_fingerprint": null,
            "choices": [kind.choice(&done.text, Some(f.reason.openai()), false)],
            "usage": usage(f.prompt_tokens, f.generated_tokens),
        }))
        .into_response());
    }
    let include_usage = common.include_usage();
    Ok(streaming(
        "text/event-stream",
        move |sink: Sink| async move {
            let chunk = |choices: Value| json!({"id": id, "object": kind.object(true), "created": created, "model": name, "system_fingerprint": null, "choices": choices});
            if let Kind::Chat = kind {
                let first = json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null, "logprobs": null}]);
                if !sink.data(&chunk(first)).await {
                    return;
                }
            }
            while let Some(event) = sink.next(&mut generation).await {
                match event {
                    Event::Token(t) if t.text.is_empty() => {}
                    Event::Token(t) => {
                        if !sink
                            .data(&chunk(json!([kind.choice(&t.text, None, true)])))
                            .await
                        {
                            return;
                        }
                    }
                    Event::Done(f) => {
                        let last = chunk(json!([kind.choice("", Some(f.reason.openai()), true)]));
                        sink.data(&last).await;
                        if include_usage {
                            let mut u = chunk(json!([]));
                            u["usage"] = usage(f.prompt_tokens, f.generated_tokens);
                            sink.data(&u).await;
                        }
                        sink.send("data: [DONE]\n\n").await;
                        return;
                    }
                    Event::Failed(e) => {
                        sink.data(&OpenAiError::from(e).json()).await;
                        sink.send("data: [DONE]\n\n").await;
                        return;
                    }
                }
            }
        },
    ))
}

fn usage(prompt: u32, completion: u32) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}
