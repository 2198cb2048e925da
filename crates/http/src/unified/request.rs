//! One unified request: `{task, engine, model_name, data, options}`, checked
//! against what the named model can do, then run through the core.

use std::time::Duration;

use inferd_core::codec::{tensor_from_flat, FlatData, JsonData};
use inferd_core::generate::TEXT_GENERATION;
use inferd_core::{
    DataType, InferRequest, ModelInfo, FEATURE_EXTRACTION, IMAGE_CLASSIFICATION, TENSORS,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::UnifiedError;
use crate::{rows, AppState};

/// Engines a request may name. `transformers` means "the local backend for
/// this task", as seed 004's clients use it.
pub const ENGINES: [&str; 9] = [
    "transformers",
    "onnx",
    "builtin",
    "llama.cpp",
    "onnxruntime",
    "candle",
    "tgi",
    "openai",
    "ollama",
];

/// Tasks by their Hugging Face pipeline names; the ones without a backend in
/// this build are known but answered as unsupported.
pub const KNOWN_TASKS: [&str; 4] = [
    TENSORS,
    IMAGE_CLASSIFICATION,
    FEATURE_EXTRACTION,
    TEXT_GENERATION,
];

/// Liberal as seed 004's pydantic model: unknown fields are ignored and
/// `null` is absent.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct UnifiedRequest {
    pub task: String,
    #[serde(default = "default_engine", deserialize_with = "engine_or_default")]
    pub engine: String,
    pub model_name: String,
    pub data: Option<Value>,
    #[serde(default, deserialize_with = "crate::body::null_as_default")]
    pub options: Map<String, Value>,
}

fn default_engine() -> String {
    "transformers".into()
}

fn engine_or_default<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_else(default_engine))
}

/// A request whose task, engine and model fit together.
pub struct Checked {
    pub req: UnifiedRequest,
    pub task: &'static str,
    pub info: ModelInfo,
}

fn task_name(task: &str) -> Option<&'static str> {
    match task {
        "tensors" | "tensor" => Some(TENSORS),
        "image-classification" | "classify" => Some(IMAGE_CLASSIFICATION),
        "feature-extraction" | "embeddings" | "embedding" => Some(FEATURE_EXTRACTION),
        "text-generation" | "generate" => Some(TEXT_GENERATION),
        _ => None,
    }
}

/// Checks task, engine and model (cheap, no inference).
pub fn check(state: &AppState, req: UnifiedRequest) -> Result<Checked, UnifiedError> {
    let task = task_name(&req.task).ok_or_else(|| {
        UnifiedError::unsupported(format!(
            "unknown task '{}'; known tasks are {KNOWN_TASKS:?}",
            req.task
        ))
    })?;
    if !ENGINES.contains(&req.engine.as_str()) {
        return Err(UnifiedError::unsupported(format!(
            "unknown engine '{}'; engines are {ENGINES:?}",
            req.engine
        )));
    }
    let name = state.manager.name_of_key(&req.model_name)?;
    let info = state.manager.info(&name, None)?;
    if req.engine != "transformers" && req.engine != info.config.backend {
        return Err(UnifiedError::unsupported(format!(
            "engine '{}' cannot run model '{}': it runs on '{}'",
            req.engine, name, info.config.backend
        )));
    }
    if !info.tasks().contains(&task) {
        return Err(UnifiedError::unsupported(format!(
            "model '{name}' cannot do {task}; it can do {:?}",
            info.tasks()
        )));
    }
    Ok(Checked {
        req: UnifiedRequest {
            model_name: name,
            ..req
        },
        task,
        info,
    })
}

fn timeout(options: &Map<String, Value>) -> Result<Option<Duration>, UnifiedError> {
    match options.get("timeout") {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|s| s.is_finite() && *s > 0.0 && *s <= 3600.0)
            .map(|s| Some(Duration::from_secs_f64(s)))
            .ok_or_else(|| {
                UnifiedError::invalid("options.timeout must be a number of seconds in (0, 3600]")
            }),
    }
}

/// Runs a checked request; the value is the document's `result`.
/// A text generation also sends each token's text to `tokens`, when given.
pub async fn execute(
    state: &AppState,
    c: &Checked,
    tokens: Option<&mpsc::Sender<String>>,
) -> Result<Value, UnifiedError> {
    let data = c
        .req
        .data
        .as_ref()
        .ok_or_else(|| UnifiedError::invalid("'data' is missing"))?;
    let timeout = timeout(&c.req.options)?;
    match c.task {
        TENSORS => tensors(state, c, data, timeout).await,
        IMAGE_CLASSIFICATION => classify(state, c, data, timeout).await,
        FEATURE_EXTRACTION => embed(state, c, data, timeout).await,
        TEXT_GENERATION => super::text::generate(state, c, data, tokens).await,
        other => Err(UnifiedError::unsupported(format!(
            "no model in this build can do {other}"
        ))),
    }
}

#[derive(Deserialize)]
struct TensorIn {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    data: FlatData,
}

/// `tensors`: `{"inputs": [V2 tensors]}` → `{"outputs": [...]}`, or rows
/// (`[...]` or `{"instances": [...]}`) → `{"predictions": [...]}`.
async fn tensors(
    state: &AppState,
    c: &Checked,
    data: &Value,
    timeout: Option<Duration>,
) -> Result<Value, UnifiedError> {
    let max = state.manager.config().max_elements;
    let model = &c.req.model_name;
    if let Some(inputs) = data.get("inputs") {
        // Read from the tree in place: no copy of it, and typed leaves, not Values.
        let inputs = Vec::<TensorIn>::deserialize(inputs).map_err(|e| {
            UnifiedError::invalid(format!(
                "data.inputs must be a list of {{name, shape, datatype, data}}: {e}"
            ))
        })?;
        let tensors = inputs
            .into_iter()
            .map(|t| {
                tensor_from_flat(
                    &t.name,
                    DataType::parse(&t.datatype)?,
                    &t.shape,
                    t.data,
                    max,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let res = state
            .manager
            .infer(InferRequest {
                model: model.clone(),
                version: None,
                inputs: tensors,
                outputs: None,
                timeout,
            })
            .await?;
        let outputs: Vec<Value> = res
            .outputs
            .iter()
            .map(|t| json!({"name": t.name, "datatype": t.datatype().as_str(), "shape": t.shape(), "data": JsonData(t.data())}))
            .collect();
        return Ok(json!({ "outputs": outputs }));
    }
    let rows_value = data.get("instances").unwrap_or(data);
    let Some(list) = rows_value.as_array() else {
        return Err(UnifiedError::invalid(
            "tensors data must be {\"inputs\": [tensors]}, {\"instances\": [rows]} or a list of rows",
        ));
    };
    let info = state.manager.info_loaded(model, None).await?;
    let plan = rows::from_instances(&info, list, max)?;
    let answer = rows::run(&state.manager, model, None, plan).await?;
    Ok(json!({ "predictions": answer.predictions() }))
}

/// `feature-extraction`: a string, a list of strings, or `{"inputs": ...}` /
/// `{"texts": [...]}` → `{"embeddings": [[...]], "dimensions", "tokens"}`.
async fn embed(
    state: &AppState,
    c: &Checked,
    data: &Value,
    timeout: Option<Duration>,
) -> Result<Value, UnifiedError> {
    let payload = data
        .get("inputs")
        .or_else(|| data.get("texts"))
        .unwrap_or(data);
    let texts: Vec<String> = match payload {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    UnifiedError::invalid(format!("text {i} must be a string, got {v}"))
                })
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(UnifiedError::invalid(format!(
                "feature-extraction data must be a string or a list of strings, got {other}"
            )))
        }
    };
    let out = state
        .manager
        .embed(&c.req.model_name, texts, timeout)
        .await?;
    Ok(json!({
        "embeddings": out.vectors,
        "dimensions": out.vectors.first().map(Vec::len).unwrap_or(0),
        "tokens": out.tokens,
    }))
}

/// Accepts plain base64 or a `data:` URL.
fn decode_base64(index: usize, text: &str) -> Result<Vec<u8>, UnifiedError> {
    crate::body::base64_payload(text)
        .map_err(|e| UnifiedError::invalid(format!("image {index} is not valid base64: {e}")))
}

/// `image-classification`: `{"image": b64}` or `{"images": [b64, ...]}`, options
/// `top_k` (default 5) → `{"predictions": [{class, confidence}]}` (a list per
/// image when several are given).
async fn classify(
    state: &AppState,
    c: &Checked,
    data: &Value,
    timeout: Option<Duration>,
) -> Result<Value, UnifiedError> {
    let k = match c.req.options.get("top_k") {
        None => 5,
        Some(v) => v
            .as_u64()
            .filter(|k| (1..=1000).contains(k))
            .ok_or_else(|| {
                UnifiedError::invalid("options.top_k must be an integer from 1 to 1000")
            })? as usize,
    };
    let (texts, single): (Vec<&Value>, bool) = match (data.get("image"), data.get("images")) {
        (Some(one), None) => (vec![one], true),
        (None, Some(Value::Array(many))) => (many.iter().collect(), false),
        _ => {
            return Err(UnifiedError::invalid(
                "image-classification data must be {\"image\": <base64>} or {\"images\": [<base64>, ...]}",
            ))
        }
    };
    let images = texts
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let text = v.as_str().ok_or_else(|| {
                UnifiedError::invalid(format!("image {i} must be a base64 string"))
            })?;
            decode_base64(i, text)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (_, labels) = state
        .manager
        .classify(&c.req.model_name, None, images, k, timeout)
        .await?;
    let render = |ranked: &Vec<inferd_core::classify::Label>| -> Value {
        ranked
            .iter()
            .map(|l| json!({"class": l.class, "confidence": l.confidence}))
            .collect()
    };
    Ok(if single {
        json!({ "predictions": render(&labels[0]) })
    } else {
        json!({ "predictions": labels.iter().map(render).collect::<Vec<_>>() })
    })
}
