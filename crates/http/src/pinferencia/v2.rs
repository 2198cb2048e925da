//! Pinferencia's kserve V2 scheme, on `/v2/models/{m}[/versions/{v}]/infer`
//! under `--compat pinferencia`: inputs may leave out `name`, `shape` and
//! `datatype` (one input is the model's input as sent; several are named), an
//! integer `id` is its text, and errors are FastAPI's `{"detail"}`. Outputs
//! keep OIP's datatype names (Pinferencia's numpy names are not copied).

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{id_text, kserve_answer, respond, version, Detail};
use crate::{body, rows, AppState};

#[derive(Deserialize)]
struct Request {
    #[serde(default, deserialize_with = "id_text")]
    id: Option<String>,
    inputs: Vec<Input>,
}

/// `datatype` and `parameters` are read from the model instead, as
/// Pinferencia ignores them. A `shape` with flat `data` (an OIP client's
/// request) nests the data by it; without one the data is taken as sent.
#[derive(Deserialize)]
struct Input {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    shape: Option<Vec<usize>>,
    data: Value,
}

impl Input {
    fn data(&self) -> Value {
        match (&self.shape, &self.data) {
            (Some(shape), Value::Array(flat))
                if shape.len() > 1
                    && !flat.iter().any(Value::is_array)
                    && shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
                        == Some(flat.len()) =>
            {
                nest(flat, shape)
            }
            _ => self.data.clone(),
        }
    }
}

/// `flat` (whose length is the product of `shape`) as nested arrays.
fn nest(flat: &[Value], shape: &[usize]) -> Value {
    match shape {
        [] | [_] => Value::Array(flat.to_vec()),
        [_, inner @ ..] => {
            let step = inner.iter().product::<usize>().max(1);
            Value::Array(flat.chunks(step).map(|c| nest(c, inner)).collect())
        }
    }
}

pub async fn infer_v2(
    state: State<AppState>,
    Path(model): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    respond(run(state, model, None, false, body).await)
}

pub async fn infer_v2_version(
    state: State<AppState>,
    Path((model, v)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = match version(&model, &v) {
        Ok(v) => run(state, model, v, true, body).await,
        Err(e) => Err(e),
    };
    respond(result)
}

async fn run(
    State(state): State<AppState>,
    model: String,
    v: Option<u64>,
    versioned: bool,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, Detail> {
    let bytes = body::bytes(body, state.max_body_bytes)?;
    let req: Request = body::json(&bytes)?;
    let info = state.manager.info_loaded(&model, v).await?;
    let columns: Map<String, Value> = match req.inputs.as_slice() {
        [] => {
            return Err(Detail(
                StatusCode::UNPROCESSABLE_ENTITY,
                "'inputs' must hold at least one input".into(),
            ))
        }
        // One input is the model's one input, whatever it is called.
        [one] if info.inputs.len() == 1 => {
            Map::from_iter([(info.inputs[0].name.clone(), one.data())])
        }
        many => many
            .iter()
            .map(|i| {
                i.name.clone().map(|n| (n, i.data())).ok_or_else(|| {
                    Detail(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Input name should be provided given multiple inputs.".into(),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let max = state.manager.config().max_elements;
    let plan = rows::from_columns(&info, &Value::Object(columns), max)?;
    let answer = rows::run(&state.manager, &model, v, plan).await?;
    let out = json!({ "model_name": model, "outputs": answer.tensors() });
    Ok(kserve_answer(
        out,
        versioned.then_some(answer.version),
        req.id,
    ))
}
