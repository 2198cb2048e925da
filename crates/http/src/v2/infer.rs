//! `POST /v2/models/{m}[/versions/{v}]/infer`: JSON tensors, and Triton's binary
//! tensor extension both ways. With `Inference-Header-Content-Length: N` the
//! first N bytes of the body are the JSON header and the rest the inputs that
//! name a `binary_data_size`, in order; outputs asked for with `binary_data`
//! (or `binary_data_output` for all) come back the same way.

use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use inferd_core::codec::{tensor_from_json, tensor_from_raw, tensor_to_json, tensor_to_raw};
use inferd_core::{CoreError, DataType, InferRequest};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{parse_version, V2Error};
use crate::body;
use crate::AppState;

/// Triton's header naming the JSON part's length in a binary request or answer.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

#[derive(Deserialize)]
struct V2InferRequest {
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<V2Input>,
    outputs: Option<Vec<V2Output>>,
}

#[derive(Deserialize)]
struct V2Input {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    data: Option<Value>,
}

#[derive(Deserialize)]
struct V2Output {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

pub async fn infer(
    state: State<AppState>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    respond(run(state, model, None, &headers, body).await)
}

pub async fn infer_version(
    state: State<AppState>,
    Path((model, v)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = match parse_version(&model, &v) {
        Ok(v) => run(state, model, v, &headers, body).await,
        Err(e) => Err(e),
    };
    respond(result)
}

fn respond(result: Result<Response, V2Error>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

fn bad(msg: impl Into<String>) -> V2Error {
    V2Error(StatusCode::BAD_REQUEST, msg.into())
}

/// Splits the body at the header length, if one is given.
fn split_body(headers: &HeaderMap, bytes: &Bytes) -> Result<(Bytes, Bytes), V2Error> {
    let Some(value) = headers.get(HEADER_LENGTH) else {
        return Ok((bytes.clone(), Bytes::new()));
    };
    let n: usize = value
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| bad("Inference-Header-Content-Length must be a non-negative integer"))?;
    if n == 0 {
        return Err(bad(
            "a raw binary request (Inference-Header-Content-Length: 0) is not supported; send a JSON header first",
        ));
    }
    if n > bytes.len() {
        return Err(bad(format!(
            "Inference-Header-Content-Length is {n}, but the body has only {} bytes",
            bytes.len()
        )));
    }
    Ok((bytes.slice(..n), bytes.slice(n..)))
}

fn flag(params: &Map<String, Value>, key: &str) -> Result<Option<bool>, V2Error> {
    match params.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(bad(format!(
            "parameter '{key}' must be true or false, got {other}"
        ))),
    }
}

fn refuse_unsupported(params: &Map<String, Value>, what: &str) -> Result<(), V2Error> {
    for key in [
        "shared_memory_region",
        "shared_memory_offset",
        "shared_memory_byte_size",
        "classification",
    ] {
        if params.contains_key(key) {
            return Err(bad(format!(
                "{what}: parameter '{key}' is not supported by this server"
            )));
        }
    }
    Ok(())
}

async fn run(
    State(state): State<AppState>,
    model: String,
    version: Option<u64>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, V2Error> {
    let bytes = body::bytes(body, state.max_body_bytes)?;
    let (header, binary) = split_body(headers, &bytes)?;
    let req: V2InferRequest = body::json(&header)?;
    let max = state.manager.config().max_elements;

    let mut offset = 0usize;
    let mut inputs = Vec::with_capacity(req.inputs.len());
    for input in &req.inputs {
        refuse_unsupported(&input.parameters, &format!("input '{}'", input.name))?;
        let datatype = DataType::parse(&input.datatype)?;
        let tensor = match input.parameters.get("binary_data_size") {
            Some(size) => {
                let size = size.as_u64().ok_or_else(|| {
                    bad(format!(
                        "input '{}': binary_data_size must be a non-negative integer",
                        input.name
                    ))
                })? as usize;
                let end = offset.checked_add(size).filter(|&e| e <= binary.len()).ok_or_else(|| {
                    bad(format!(
                        "input '{}': binary_data_size {size} runs past the {} bytes of binary data after the header",
                        input.name,
                        binary.len().saturating_sub(offset)
                    ))
                })?;
                let t = tensor_from_raw(
                    &input.name,
                    datatype,
                    &input.shape,
                    &binary[offset..end],
                    max,
                )?;
                offset = end;
                t
            }
            None => {
                let data = input.data.as_ref().ok_or_else(|| {
                    bad(format!(
                        "input '{}' has neither 'data' nor a binary_data_size",
                        input.name
                    ))
                })?;
                tensor_from_json(&input.name, datatype, &input.shape, data, max)?
            }
        };
        inputs.push(tensor);
    }
    if offset != binary.len() {
        return Err(bad(format!(
            "{} bytes of binary data follow the header but no input claims them",
            binary.len() - offset
        )));
    }

    let all_binary = flag(&req.parameters, "binary_data_output")?.unwrap_or(false);
    let timeout = match req.parameters.get("timeout") {
        None => None,
        Some(v) => Some(Duration::from_micros(v.as_u64().ok_or_else(|| {
            bad("parameter 'timeout' must be a whole number of microseconds")
        })?)),
    };
    let mut wanted = None;
    let mut binary_outputs = Vec::new();
    if let Some(outputs) = &req.outputs {
        for o in outputs {
            refuse_unsupported(&o.parameters, &format!("output '{}'", o.name))?;
            if flag(&o.parameters, "binary_data")?.unwrap_or(all_binary) {
                binary_outputs.push(o.name.clone());
            }
        }
        wanted = Some(outputs.iter().map(|o| o.name.clone()).collect());
    }

    let res = state
        .manager
        .infer(InferRequest {
            model: model.clone(),
            version,
            inputs,
            outputs: wanted,
            timeout,
        })
        .await
        .map_err(|e: CoreError| V2Error::from(e))?;

    let mut tail = Vec::new();
    let outputs: Vec<Value> = res
        .outputs
        .iter()
        .map(|t| {
            let binary = if req.outputs.is_some() {
                binary_outputs.contains(&t.name)
            } else {
                all_binary
            };
            let mut out =
                json!({ "name": t.name, "datatype": t.datatype().as_str(), "shape": t.shape() });
            if binary {
                let raw = tensor_to_raw(t);
                out["parameters"] = json!({ "binary_data_size": raw.len() });
                tail.extend_from_slice(&raw);
            } else {
                out["data"] = tensor_to_json(t);
            }
            out
        })
        .collect();
    let mut answer = json!({
        "model_name": model,
        "model_version": res.version.to_string(),
        "outputs": outputs,
    });
    if let Some(id) = req.id {
        answer["id"] = Value::String(id);
    }
    let mut body = serde_json::to_vec(&answer).expect("JSON values serialize");
    if tail.is_empty() {
        return Ok((
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response());
    }
    let json_len = body.len();
    body.extend_from_slice(&tail);
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::HeaderName::from_static(HEADER_LENGTH),
                HeaderValue::from(json_len),
            ),
        ],
        body,
    )
        .into_response())
}
