//! `POST /{id}/predict`: `{"inputs": {"image": <base64>}}` through the classify
//! task (seed 003's example), `{"inputs": {"text": ...}}` through embedding or
//! generation by the model's task, and otherwise `{"inputs": {<input>: <nested
//! array>, ...}}` as whole tensors. Only a running service answers.

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use inferd_core::generate::{GenerateRequest, Prompt, Sampling, TEXT_GENERATION};
use inferd_core::{ModelInfo, FEATURE_EXTRACTION, IMAGE_CLASSIFICATION};
use serde_json::{json, Map, Value};

use super::{ok, ServiceError};
use crate::{body, rows, AppState};

pub async fn predict(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match run(&state, &id, body).await {
        Ok(data) => ok(StatusCode::OK, "success", Some(data)),
        Err(e) => e.into_response(),
    }
}

async fn run(
    state: &AppState,
    id: &str,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, ServiceError> {
    let bytes = body::bytes(body, state.max_body_bytes)?;
    state.services.running(id).await?;
    let req: Value = body::json(&bytes)?;
    let inputs = match req.get("inputs") {
        Some(Value::Object(map)) => map,
        Some(other) => {
            return Err(ServiceError::invalid(format!(
                "'inputs' must be an object (such as {{\"image\": \"<base64>\"}}), not {other}"
            )))
        }
        None => return Err(ServiceError::invalid("the body needs 'inputs'")),
    };
    let params = req.get("parameters").and_then(Value::as_object);
    let info = state.manager.info_loaded(id, None).await?;
    let tasks = info.tasks();
    if inputs.contains_key("image") && tasks.contains(&IMAGE_CLASSIFICATION) {
        classify(state, id, &inputs["image"], params).await
    } else if inputs.contains_key("text") && tasks.contains(&FEATURE_EXTRACTION) {
        let texts = texts(&inputs["text"])?;
        let out = state.manager.embed(id, texts, None).await?;
        Ok(
            json!({ "predictions": out.vectors.iter().map(|v| json!({ "embedding": v })).collect::<Vec<_>>() }),
        )
    } else if inputs.contains_key("text") && tasks.contains(&TEXT_GENERATION) {
        generate(state, id, &inputs["text"], params).await
    } else {
        tensors(state, id, &info, inputs).await
    }
}

fn texts(v: &Value) -> Result<Vec<String>, ServiceError> {
    let bad = || ServiceError::invalid("'inputs.text' must be a string or a list of strings");
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string).ok_or_else(bad))
            .collect(),
        _ => Err(bad()),
    }
}

/// One image gives a list of `{class, confidence}`; a list of images, a list
/// of such lists.
async fn classify(
    state: &AppState,
    id: &str,
    image: &Value,
    params: Option<&Map<String, Value>>,
) -> Result<Value, ServiceError> {
    let (texts, many) = match image {
        Value::String(s) => (vec![s.as_str()], false),
        Value::Array(items) => (
            items
                .iter()
                .map(|i| {
                    i.as_str().ok_or_else(|| {
                        ServiceError::invalid("'inputs.image' must be base64 text or a list of it")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            true,
        ),
        _ => {
            return Err(ServiceError::invalid(
                "'inputs.image' must be base64 text (PNG or JPEG bytes) or a list of it",
            ))
        }
    };
    let images = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            body::base64_payload(t).map_err(|e| {
                ServiceError::invalid(format!("inputs.image[{i}] is not valid base64: {e}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let k = match params.and_then(|p| p.get("top_k")) {
        None => 5,
        Some(v) => v
            .as_u64()
            .filter(|k| (1..=1000).contains(k))
            .ok_or_else(|| {
                ServiceError::invalid("'parameters.top_k' must be an integer from 1 to 1000")
            })? as usize,
    };
    let (_, labels) = state.manager.classify(id, None, images, k, None).await?;
    let lists: Vec<Value> = labels
        .iter()
        .map(|ls| {
            ls.iter()
                .map(|l| json!({ "class": l.class, "confidence": l.confidence }))
                .collect()
        })
        .collect();
    Ok(json!({ "predictions": if many { Value::Array(lists) } else { lists[0].clone() } }))
}

async fn generate(
    state: &AppState,
    id: &str,
    text: &Value,
    params: Option<&Map<String, Value>>,
) -> Result<Value, ServiceError> {
    let prompt = text.as_str().ok_or_else(|| {
        ServiceError::invalid("'inputs.text' must be a string for text generation")
    })?;
    let mut sampling = Sampling::default();
    if let Some(n) = params.and_then(|p| p.get("max_new_tokens")) {
        sampling.max_new_tokens =
            n.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    ServiceError::invalid("'parameters.max_new_tokens' must be a positive integer")
                })?;
    }
    sampling.validate()?;
    let req = GenerateRequest {
        prompt: Prompt::Text(prompt.to_string()),
        sampling,
    };
    let out = state.manager.generate(id, req).await?.collect().await?;
    Ok(json!({ "predictions": [{ "generated_text": out.text, "tokens": out.tokens.len() }] }))
}

async fn tensors(
    state: &AppState,
    id: &str,
    info: &ModelInfo,
    inputs: &Map<String, Value>,
) -> Result<Value, ServiceError> {
    let max = state.manager.config().max_elements;
    let plan = rows::from_columns(info, &Value::Object(inputs.clone()), max)?;
    let answer = rows::run(&state.manager, id, None, plan).await?;
    Ok(json!({ "predictions": answer.columns() }))
}
