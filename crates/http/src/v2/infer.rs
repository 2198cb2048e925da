//! `POST /v2/models/{m}[/versions/{v}]/infer`: JSON tensors, and Triton's binary
//! tensor extension both ways. With `Inference-Header-Content-Length: N` the
//! first N bytes of the body are the JSON header and the rest the inputs that
//! name a `binary_data_size`, in order; outputs asked for with `binary_data`
//! (or `binary_data_output` for all) come back the same way. A header of 0 is
//! Triton's raw binary request: the whole body is the one input, and every
//! output comes back binary.

use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use inferd_core::codec::{
    tensor_from_flat, tensor_from_raw, tensor_to_raw, FlatData, JsonData,
    UNSUPPORTED_TENSOR_PARAMETERS,
};
use inferd_core::{CoreError, DataType, InferRequest, ModelInfo, SpecType, Tensor, TensorData};
use serde::{Deserialize, Serialize};
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
    data: Option<FlatData>,
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

/// The answer, written straight from the output tensors (fields in the order
/// a `json!` map would give them).
#[derive(Serialize)]
struct Answer<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    model_name: &'a str,
    model_version: String,
    outputs: Vec<OutputOut<'a>>,
}

#[derive(Serialize)]
struct OutputOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<JsonData<'a>>,
    datatype: &'static str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Value>,
    shape: &'a [usize],
}

/// A body split by `Inference-Header-Content-Length`.
enum Split {
    /// The JSON header and the binary data after it (empty without the header).
    Parts(Bytes, Bytes),
    /// A raw binary request (the header is 0): the body is the one input's bytes.
    Raw(Bytes),
}

fn split_body(headers: &HeaderMap, bytes: &Bytes) -> Result<Split, V2Error> {
    let Some(value) = headers.get(HEADER_LENGTH) else {
        return Ok(Split::Parts(bytes.clone(), Bytes::new()));
    };
    let n: usize = value
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| bad("Inference-Header-Content-Length must be a non-negative integer"))?;
    if n == 0 {
        return Ok(Split::Raw(bytes.clone()));
    }
    if n > bytes.len() {
        return Err(bad(format!(
            "Inference-Header-Content-Length is {n}, but the body has only {} bytes",
            bytes.len()
        )));
    }
    Ok(Split::Parts(bytes.slice(..n), bytes.slice(n..)))
}

/// The one input of a raw binary request, as Triton reads it: the model has a
/// single input of a known datatype whose shape has at most one variable
/// dimension (sized from the body), or is BYTES of shape [1] (the body is the
/// element).
fn raw_input(info: &ModelInfo, raw: &[u8], max: usize) -> Result<Tensor, V2Error> {
    let [spec] = info.inputs.as_slice() else {
        return Err(bad(format!(
            "a raw binary request needs a model with exactly one input; '{}' has {}",
            info.name,
            info.inputs.len()
        )));
    };
    let SpecType::Is(datatype) = spec.datatype else {
        return Err(bad(format!(
            "a raw binary request needs the input's datatype; '{}' takes any",
            info.name
        )));
    };
    let Some(size) = datatype.size() else {
        let element = Tensor::new(
            spec.name.clone(),
            vec![1],
            TensorData::Bytes(vec![raw.to_vec()]),
        )?;
        return Ok(element);
    };
    let shape = spec.shape_or_any();
    let fixed: i64 = shape.iter().filter(|&&d| d >= 0).product();
    let variable = shape.iter().filter(|&&d| d < 0).count();
    let elements = raw.len() / size;
    let fits = raw.len().is_multiple_of(size)
        && match variable {
            0 => elements as i64 == fixed,
            1 => fixed > 0 && elements as i64 % fixed == 0,
            _ => false,
        };
    if !fits {
        return Err(bad(format!(
            "a raw binary request of {} bytes does not fit input '{}' ({} {:?}; at most one variable dimension)",
            raw.len(),
            spec.name,
            datatype,
            shape
        )));
    }
    let shape: Vec<i64> = shape
        .iter()
        .map(|&d| if d < 0 { elements as i64 / fixed } else { d })
        .collect();
    Ok(tensor_from_raw(&spec.name, datatype, &shape, raw, max)?)
}

/// Decodes the inputs of a JSON header, taking binary ones from `binary` in
/// order; JSON data moves out of the request into the tensors.
fn decode_inputs(
    req: &mut V2InferRequest,
    binary: &[u8],
    max: usize,
) -> Result<Vec<Tensor>, V2Error> {
    let mut offset = 0usize;
    let mut inputs = Vec::with_capacity(req.inputs.len());
    for input in &mut req.inputs {
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
                let data = input.data.take().ok_or_else(|| {
                    bad(format!(
                        "input '{}' has neither 'data' nor a binary_data_size",
                        input.name
                    ))
                })?;
                tensor_from_flat(&input.name, datatype, &input.shape, data, max)?
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
    Ok(inputs)
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
    for key in UNSUPPORTED_TENSOR_PARAMETERS {
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
    let max = state.manager.config().max_elements;
    let (req, inputs) = match split_body(headers, &bytes)? {
        Split::Parts(header, binary) => {
            let mut req: V2InferRequest = body::json(&header)?;
            let inputs = decode_inputs(&mut req, &binary, max)?;
            (req, inputs)
        }
        Split::Raw(raw) => {
            let input = raw_input(&state.manager.info(&model, version)?, &raw, max)?;
            let req = V2InferRequest {
                id: None,
                parameters: Map::from_iter([("binary_data_output".to_string(), Value::Bool(true))]),
                inputs: Vec::new(),
                outputs: None,
            };
            (req, vec![input])
        }
    };

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
    let outputs: Vec<OutputOut> = res
        .outputs
        .iter()
        .map(|t| {
            let binary = if req.outputs.is_some() {
                binary_outputs.contains(&t.name)
            } else {
                all_binary
            };
            let mut out = OutputOut {
                data: None,
                datatype: t.datatype().as_str(),
                name: &t.name,
                parameters: None,
                shape: t.shape(),
            };
            if binary {
                let raw = tensor_to_raw(t);
                out.parameters = Some(json!({ "binary_data_size": raw.len() }));
                tail.extend_from_slice(&raw);
            } else {
                out.data = Some(JsonData(t.data()));
            }
            out
        })
        .collect();
    let answer = Answer {
        id: req.id,
        model_name: &model,
        model_version: res.version.to_string(),
        outputs,
    };
    let mut body = serde_json::to_vec(&answer).expect("the answer serializes");
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
