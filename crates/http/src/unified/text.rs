//! `text-generation` in the unified API: `data` is the prompt (a string,
//! `{"inputs"|"prompt"|"text": str}`, or `{"messages": [{role, content}]}`),
//! `options` the sampling parameters and `scenario` (seed 002's names).
//! Over WebSocket the tokens also stream as `token` messages.

use inferd_core::generate::{
    scenario_prompt, ChatMessage, Event, GenerateRequest, Prompt, Sampling,
};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::request::Checked;
use super::UnifiedError;
use crate::AppState;

fn option<T: serde::de::DeserializeOwned>(
    options: &Map<String, Value>,
    key: &str,
) -> Result<Option<T>, UnifiedError> {
    match options.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| UnifiedError::invalid(format!("options.{key}: {e}"))),
    }
}

fn sampling(options: &Map<String, Value>) -> Result<Sampling, UnifiedError> {
    let d = Sampling::default();
    let s = Sampling {
        max_new_tokens: option(options, "max_new_tokens")?.unwrap_or(d.max_new_tokens),
        temperature: option(options, "temperature")?.unwrap_or(d.temperature),
        top_p: option(options, "top_p")?.unwrap_or(d.top_p),
        top_k: option(options, "top_k")?.unwrap_or(d.top_k),
        do_sample: option(options, "do_sample")?.unwrap_or(d.do_sample),
        repetition_penalty: option(options, "repetition_penalty")?.unwrap_or(d.repetition_penalty),
        seed: option(options, "seed")?,
        stop: option(options, "stop")?.unwrap_or_default(),
    };
    s.validate()?;
    Ok(s)
}

fn prompt(state: &AppState, c: &Checked, data: &Value) -> Result<Prompt, UnifiedError> {
    if let Some(messages) = data.get("messages") {
        let messages: Vec<ChatMessage> = serde_json::from_value(messages.clone()).map_err(|e| {
            UnifiedError::invalid(format!("data.messages must be [{{role, content}}]: {e}"))
        })?;
        if messages.is_empty() {
            return Err(UnifiedError::invalid("data.messages is empty"));
        }
        return Ok(Prompt::Chat(messages));
    }
    let text = ["inputs", "prompt", "text"]
        .iter()
        .find_map(|k| data.get(k))
        .unwrap_or(data);
    let Some(text) = text.as_str().filter(|t| !t.trim().is_empty()) else {
        return Err(UnifiedError::invalid(
            "text-generation data must be a non-empty string, {\"inputs\": str} or {\"messages\": [...]}",
        ));
    };
    let scenario: String = option(&c.req.options, "scenario")?.unwrap_or_else(|| "base".into());
    let model = &c.req.model_name;
    let config = state.manager.info(model, None)?.config;
    Ok(scenario_prompt(model, &config.scenarios, &scenario, text)?)
}

/// Runs a generation; each token's text also goes to `tokens` when given.
pub(super) async fn generate(
    state: &AppState,
    c: &Checked,
    data: &Value,
    tokens: Option<&mpsc::Sender<String>>,
) -> Result<Value, UnifiedError> {
    let req = GenerateRequest {
        prompt: prompt(state, c, data)?,
        sampling: sampling(&c.req.options)?,
    };
    let model = state.manager.text_model(&c.req.model_name).await?;
    let mut generation = model.start(req)?;
    let mut text = String::new();
    while let Some(event) = generation.next().await {
        match event {
            Event::Token(t) => {
                if let Some(tx) = tokens.filter(|_| !t.text.is_empty()) {
                    // A client that left stops the generation with it.
                    if tx.send(t.text.clone()).await.is_err() {
                        break;
                    }
                }
                text.push_str(&t.text);
            }
            Event::Done(f) => {
                return Ok(json!({
                    "generated_text": text,
                    "tokens": f.generated_tokens,
                    "prompt_tokens": f.prompt_tokens,
                    "finish_reason": f.reason.tgi(),
                    "model": model.info().served_name,
                }))
            }
            Event::Failed(e) => return Err(e.into()),
        }
    }
    Err(UnifiedError::invalid("the client went away"))
}
