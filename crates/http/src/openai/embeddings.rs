//! `POST /v1/embeddings`.

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Json;
use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use super::OpenAiError;
use crate::body;
use crate::AppState;

/// OpenAI's own limit on inputs per request.
const MAX_INPUTS: usize = 2048;

#[derive(Deserialize)]
struct EmbeddingsRequest {
    input: Value,
    model: String,
    #[serde(default)]
    encoding_format: Option<String>,
    dimensions: Option<usize>,
    #[serde(rename = "user")]
    _user: Option<String>,
}

fn texts(input: &Value) -> Result<Vec<String>, OpenAiError> {
    let token_arrays = || {
        OpenAiError::invalid(
            "token arrays are not accepted: send the text itself (a string or a list of strings)",
            "input",
        )
    };
    match input {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if items.is_empty() => {
            Err(OpenAiError::invalid("'input' is an empty list", "input"))
        }
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(_) | Value::Array(_) => Err(token_arrays()),
                other => Err(OpenAiError::invalid(
                    format!("every input must be a string, got {other}"),
                    "input",
                )),
            })
            .collect(),
        other => Err(OpenAiError::invalid(
            format!("'input' must be a string or a list of strings, got {other}"),
            "input",
        )),
    }
}

pub(super) async fn embeddings(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, OpenAiError> {
    let bytes = body::bytes(body, state.max_body_bytes)?;
    let req: EmbeddingsRequest = body::json(&bytes)?;
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(OpenAiError::invalid(
                format!("encoding_format must be 'float' or 'base64', not '{other}'"),
                "encoding_format",
            ))
        }
    };
    let texts = texts(&req.input)?;
    if texts.len() > MAX_INPUTS {
        return Err(OpenAiError::invalid(
            format!(
                "at most {MAX_INPUTS} inputs per request, got {}",
                texts.len()
            ),
            "input",
        ));
    }
    let out = state.manager.embed(&req.model, texts, None).await?;
    let dims = out.vectors.first().map(Vec::len).unwrap_or(0);
    if let Some(d) = req.dimensions {
        if d != dims {
            return Err(OpenAiError::invalid(
                format!(
                    "model '{}' gives {dims} dimensions; 'dimensions' must be {dims} or left out",
                    req.model
                ),
                "dimensions",
            ));
        }
    }
    let data: Vec<Value> = out
        .vectors
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if base64 {
                let raw: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(raw))
            } else {
                json!(v)
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    let tokens: i64 = out.tokens.iter().sum();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": req.model,
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
    })))
}
