//! Row-style payloads (KServe V1 and TF Serving `instances`, columnar `inputs`,
//! Pinferencia's `data`) to tensors and back, using the model's own input specs
//! for names and datatypes. Shared by the V1 and Pinferencia faces.
//!
//! A row is one instance. For a model whose inputs carry a batch dimension the
//! rows are stacked into one request; for a model without one (`add_sub`'s
//! `[16]`) each row is its own request, answered in order.

use inferd_core::codec::{
    guess_datatype, nested_shape, tensor_from_json, tensor_to_nested, tensor_to_rows,
};
use inferd_core::{
    CoreError, CoreResult, InferRequest, Manager, ModelInfo, SpecType, Tensor, TensorSpec,
};
use serde_json::{Map, Value};

/// The requests a payload becomes.
pub struct Plan {
    runs: Vec<Vec<Tensor>>,
    batched: bool,
}

/// What the model answered, per run.
pub struct Answer {
    pub version: u64,
    runs: Vec<Vec<Tensor>>,
    batched: bool,
}

fn rank(v: &Value) -> usize {
    nested_shape(v).map(|s| s.len()).unwrap_or(0)
}

fn tensor_for(spec: &TensorSpec, value: &Value, max: usize) -> CoreResult<Tensor> {
    let datatype = match spec.datatype {
        SpecType::Is(d) => d,
        SpecType::Any => guess_datatype(value),
    };
    let shape = nested_shape(value).ok_or_else(|| {
        CoreError::BadRequest(format!(
            "input '{}' is not rectangular (rows of different lengths)",
            spec.name
        ))
    })?;
    let shape: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    tensor_from_json(&spec.name, datatype, &shape, value, max)
}

fn single_input(info: &ModelInfo) -> CoreResult<&TensorSpec> {
    match info.inputs.as_slice() {
        [one] => Ok(one),
        _ => Err(CoreError::BadRequest(format!(
            "model '{}' has {} inputs ({:?}): give each instance as an object keyed by input name",
            info.name,
            info.inputs.len(),
            info.inputs.iter().map(|s| &s.name).collect::<Vec<_>>()
        ))),
    }
}

/// Plans `instances`: a list of rows, each a value (one-input models) or an
/// object keyed by input name.
pub fn from_instances(info: &ModelInfo, instances: &[Value], max: usize) -> CoreResult<Plan> {
    if instances.is_empty() {
        return Err(CoreError::BadRequest(
            "no rows given (empty instances or data); give at least one row".into(),
        ));
    }
    let keyed = instances.iter().all(Value::is_object) && info.inputs.len() > 1
        || instances.iter().all(|i| {
            i.as_object()
                .is_some_and(|o| info.inputs.iter().any(|s| o.contains_key(&s.name)))
        });
    let column = |spec: &TensorSpec| -> CoreResult<Vec<Value>> {
        if !keyed {
            return Ok(instances.to_vec());
        }
        instances
            .iter()
            .enumerate()
            .map(|(i, inst)| {
                inst.get(&spec.name).cloned().ok_or_else(|| {
                    CoreError::BadRequest(format!(
                        "instance {i} has no value for input '{}'",
                        spec.name
                    ))
                })
            })
            .collect()
    };
    let specs: Vec<&TensorSpec> = if keyed {
        for inst in instances {
            if let Some(extra) = inst.as_object().and_then(|o| {
                o.keys()
                    .find(|k| !info.inputs.iter().any(|s| &s.name == *k))
            }) {
                return Err(CoreError::UnknownInput {
                    model: info.name.clone(),
                    input: extra.clone(),
                    expected: info.inputs.iter().map(|s| s.name.clone()).collect(),
                });
            }
        }
        info.inputs.iter().collect()
    } else {
        vec![single_input(info)?]
    };
    let first = column(specs[0])?;
    let row_rank = rank(&first[0]);
    let batched = specs[0]
        .shape
        .as_ref()
        .is_none_or(|s| s.len() == row_rank + 1);
    let runs = if batched {
        let inputs = specs
            .iter()
            .map(|spec| tensor_for(spec, &Value::Array(column(spec)?), max))
            .collect::<CoreResult<Vec<_>>>()?;
        vec![inputs]
    } else {
        (0..instances.len())
            .map(|i| {
                specs
                    .iter()
                    .map(|spec| tensor_for(spec, &column(spec)?[i], max))
                    .collect::<CoreResult<Vec<_>>>()
            })
            .collect::<CoreResult<Vec<_>>>()?
    };
    Ok(Plan { runs, batched })
}

/// Plans a columnar payload: a list (the rows of a one-input model) or an object
/// of whole tensors keyed by input name.
pub fn from_columns(info: &ModelInfo, columns: &Value, max: usize) -> CoreResult<Plan> {
    match columns {
        Value::Array(rows) => from_instances(info, rows, max),
        Value::Object(map) => {
            let mut inputs = Vec::with_capacity(map.len());
            for (name, value) in map {
                let spec = info
                    .inputs
                    .iter()
                    .find(|s| &s.name == name)
                    .ok_or_else(|| CoreError::UnknownInput {
                        model: info.name.clone(),
                        input: name.clone(),
                        expected: info.inputs.iter().map(|s| s.name.clone()).collect(),
                    })?;
                inputs.push(tensor_for(spec, value, max)?);
            }
            Ok(Plan {
                runs: vec![inputs],
                batched: false,
            })
        }
        _ => Err(CoreError::BadRequest(
            "the model's input must be a list of rows or an object keyed by input name".into(),
        )),
    }
}

/// Runs every request of a plan, in order.
pub async fn run(
    manager: &Manager,
    model: &str,
    version: Option<u64>,
    plan: Plan,
) -> CoreResult<Answer> {
    let mut runs = Vec::with_capacity(plan.runs.len());
    let mut served = 0;
    for inputs in plan.runs {
        let res = manager
            .infer(InferRequest {
                model: model.to_string(),
                version,
                inputs,
                outputs: None,
                timeout: None,
            })
            .await?;
        served = res.version;
        runs.push(res.outputs);
    }
    Ok(Answer {
        version: served,
        runs,
        batched: plan.batched,
    })
}

impl Answer {
    /// One prediction per row: the output's row, or an object of every output's
    /// row when the model has several.
    pub fn predictions(&self) -> Vec<Value> {
        if self.batched {
            let outputs = &self.runs[0];
            if let [one] = outputs.as_slice() {
                return tensor_to_rows(one);
            }
            let per_output: Vec<(String, Vec<Value>)> = outputs
                .iter()
                .map(|t| (t.name.clone(), tensor_to_rows(t)))
                .collect();
            let rows = per_output.first().map(|(_, r)| r.len()).unwrap_or(0);
            (0..rows)
                .map(|i| {
                    Value::Object(
                        per_output
                            .iter()
                            .map(|(name, r)| {
                                (name.clone(), r.get(i).cloned().unwrap_or(Value::Null))
                            })
                            .collect(),
                    )
                })
                .collect()
        } else {
            self.runs.iter().map(|outputs| whole(outputs)).collect()
        }
    }

    /// The columnar answer: one output's tensor, or an object of them.
    pub fn columns(&self) -> Value {
        whole(&self.runs[0])
    }

    /// The columnar answer as V2 output objects (`name`, `shape`,
    /// `datatype`, nested `data`).
    pub fn tensors(&self) -> Vec<Value> {
        self.runs[0]
            .iter()
            .map(|t| {
                serde_json::json!({
                    "name": t.name,
                    "shape": t.shape(),
                    "datatype": t.datatype().as_str(),
                    "data": tensor_to_nested(t),
                })
            })
            .collect()
    }
}

fn whole(outputs: &[Tensor]) -> Value {
    if let [one] = outputs {
        return tensor_to_nested(one);
    }
    Value::Object(
        outputs
            .iter()
            .map(|t| (t.name.clone(), tensor_to_nested(t)))
            .collect::<Map<String, Value>>(),
    )
}
