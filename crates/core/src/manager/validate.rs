//! Checks a request's tensors against the model's specs, once, before they
//! reach the queue.

use crate::config::TensorSpec;
use crate::error::{CoreError, CoreResult};
use crate::tensor::Tensor;

/// Puts the request's tensors in the model's input order, checking names, types
/// and shapes; also returns the rows along dimension 0 for batching models.
pub(super) fn order_inputs(
    model: &str,
    specs: &[TensorSpec],
    mut given: Vec<Tensor>,
    batching: bool,
) -> CoreResult<(Vec<Tensor>, usize)> {
    for (i, t) in given.iter().enumerate() {
        if given[..i].iter().any(|o| o.name == t.name) {
            return Err(CoreError::BadRequest(format!(
                "input '{}' is given twice",
                t.name
            )));
        }
        if !specs.iter().any(|s| s.name == t.name) {
            return Err(CoreError::UnknownInput {
                model: model.into(),
                input: t.name.clone(),
                expected: specs.iter().map(|s| s.name.clone()).collect(),
            });
        }
    }
    let mut ordered = Vec::with_capacity(specs.len());
    for spec in specs {
        let pos = given
            .iter()
            .position(|t| t.name == spec.name)
            .ok_or_else(|| CoreError::MissingInput {
                model: model.into(),
                input: spec.name.clone(),
            })?;
        let t = given.swap_remove(pos);
        spec.check(model, &t)?;
        ordered.push(t);
    }
    let rows = if batching {
        let rows = ordered.first().map(|t| t.batch_size()).unwrap_or(1);
        if let Some(t) = ordered
            .iter()
            .find(|t| t.shape().is_empty() || t.batch_size() != rows)
        {
            return Err(CoreError::BadRequest(format!(
                "every input of a batching model needs the same size in dimension 0; '{}' has shape {:?}, expected [{rows}, ...]",
                t.name,
                t.shape()
            )));
        }
        if rows == 0 {
            return Err(CoreError::BadRequest(
                "dimension 0 (the batch) is 0: a request needs at least one row".into(),
            ));
        }
        rows
    } else {
        1
    };
    Ok((ordered, rows))
}

pub(super) fn requested_outputs(
    model: &str,
    specs: &[TensorSpec],
    wanted: Option<&[String]>,
) -> CoreResult<Option<Vec<String>>> {
    let Some(wanted) = wanted.filter(|w| !w.is_empty()) else {
        return Ok(None);
    };
    for (i, name) in wanted.iter().enumerate() {
        if wanted[..i].contains(name) {
            return Err(CoreError::BadRequest(format!(
                "output '{name}' is requested twice"
            )));
        }
        if !specs.iter().any(|s| &s.name == name) {
            return Err(CoreError::UnknownOutput {
                model: model.into(),
                output: name.clone(),
                expected: specs.iter().map(|s| s.name.clone()).collect(),
            });
        }
    }
    Ok(Some(wanted.to_vec()))
}
