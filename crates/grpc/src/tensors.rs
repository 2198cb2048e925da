//! Tensors between the wire and the core. Inputs come as `raw_input_contents`
//! (one little-endian blob per input, what tritonclient sends) or as typed
//! `contents`; outputs always go back raw, as Triton answers, which every client
//! reads and which costs no per-element copy into protobuf's repeated fields.

use inferd_core::codec::{
    bounded_shape, tensor_from_raw, tensor_to_raw, UNSUPPORTED_TENSOR_PARAMETERS,
};
use inferd_core::{DataType, Tensor, TensorData};
use tonic::Status;

use crate::pb::model_infer_request::InferInputTensor;
use crate::pb::model_infer_response::InferOutputTensor;
use crate::pb::{InferParameter, InferTensorContents};
use crate::status::{from_core, invalid};

/// The request's inputs, moved out of it (raw blobs are not copied twice).
pub fn decode_inputs(
    inputs: Vec<InferInputTensor>,
    raw: Vec<Vec<u8>>,
    max_elements: usize,
) -> Result<Vec<Tensor>, Status> {
    if !raw.is_empty() && raw.len() != inputs.len() {
        return Err(invalid(format!(
            "raw_input_contents has {} entries but the request has {} inputs: give one per input, in order",
            raw.len(),
            inputs.len()
        )));
    }
    let mut raw = raw.into_iter();
    inputs
        .into_iter()
        .map(|input| {
            refuse_unsupported(&input.parameters, &format!("input '{}'", input.name))?;
            let datatype = DataType::parse(&input.datatype).map_err(from_core)?;
            match raw.next() {
                Some(bytes) => {
                    if input.contents.is_some_and(|c| filled(&c).is_some()) {
                        return Err(invalid(format!(
                            "input '{}' has both typed contents and raw_input_contents; send one form",
                            input.name
                        )));
                    }
                    tensor_from_raw(&input.name, datatype, &input.shape, &bytes, max_elements)
                        .map_err(from_core)
                }
                None => typed(input, datatype, max_elements),
            }
        })
        .collect()
}

pub fn refuse_unsupported(
    params: &std::collections::HashMap<String, InferParameter>,
    what: &str,
) -> Result<(), Status> {
    for key in UNSUPPORTED_TENSOR_PARAMETERS {
        if params.contains_key(key) {
            return Err(invalid(format!(
                "{what}: parameter '{key}' is not supported by this server"
            )));
        }
    }
    Ok(())
}

/// The name of the first typed field that holds data, if any.
fn filled(c: &InferTensorContents) -> Option<&'static str> {
    [
        ("bool_contents", c.bool_contents.is_empty()),
        ("int_contents", c.int_contents.is_empty()),
        ("int64_contents", c.int64_contents.is_empty()),
        ("uint_contents", c.uint_contents.is_empty()),
        ("uint64_contents", c.uint64_contents.is_empty()),
        ("fp32_contents", c.fp32_contents.is_empty()),
        ("fp64_contents", c.fp64_contents.is_empty()),
        ("bytes_contents", c.bytes_contents.is_empty()),
    ]
    .into_iter()
    .find(|(_, empty)| !empty)
    .map(|(name, _)| name)
}

/// The typed field that carries `datatype`'s elements.
fn field_for(datatype: DataType) -> Option<&'static str> {
    Some(match datatype {
        DataType::Bool => "bool_contents",
        DataType::I8 | DataType::I16 | DataType::I32 => "int_contents",
        DataType::I64 => "int64_contents",
        DataType::U8 | DataType::U16 | DataType::U32 => "uint_contents",
        DataType::U64 => "uint64_contents",
        DataType::F32 => "fp32_contents",
        DataType::F64 => "fp64_contents",
        DataType::Bytes => "bytes_contents",
        DataType::F16 | DataType::BF16 => return None,
    })
}

fn typed(input: InferInputTensor, datatype: DataType, max: usize) -> Result<Tensor, Status> {
    let name = input.name;
    let (shape, _) = bounded_shape(&name, &input.shape, max).map_err(from_core)?;
    let Some(field) = field_for(datatype) else {
        return Err(invalid(format!(
            "input '{name}' is {}, which has no typed contents field: send it in raw_input_contents",
            datatype.as_str()
        )));
    };
    let c = input.contents.unwrap_or_default();
    if let Some(used) = filled(&c).filter(|&used| used != field) {
        return Err(invalid(format!(
            "input '{name}' is {} and so belongs in {field}, but its data is in {used}",
            datatype.as_str()
        )));
    }
    let data = match datatype {
        DataType::Bool => TensorData::Bool(c.bool_contents),
        DataType::I8 => TensorData::I8(narrow(&name, c.int_contents)?),
        DataType::I16 => TensorData::I16(narrow(&name, c.int_contents)?),
        DataType::I32 => TensorData::I32(c.int_contents),
        DataType::I64 => TensorData::I64(c.int64_contents),
        DataType::U8 => TensorData::U8(narrow(&name, c.uint_contents)?),
        DataType::U16 => TensorData::U16(narrow(&name, c.uint_contents)?),
        DataType::U32 => TensorData::U32(c.uint_contents),
        DataType::U64 => TensorData::U64(c.uint64_contents),
        DataType::F32 => TensorData::F32(c.fp32_contents),
        DataType::F64 => TensorData::F64(c.fp64_contents),
        DataType::Bytes => TensorData::Bytes(c.bytes_contents),
        DataType::F16 | DataType::BF16 => unreachable!("refused above: no typed field"),
    };
    Tensor::new(name, shape, data).map_err(from_core)
}

/// INT8/INT16 travel as int32 and UINT8/UINT16 as uint32: a value out of the
/// narrower type's range is the client's error, not something to wrap.
fn narrow<W: Copy + std::fmt::Display, N: TryFrom<W>>(
    name: &str,
    wide: Vec<W>,
) -> Result<Vec<N>, Status> {
    wide.into_iter()
        .map(|v| {
            N::try_from(v).map_err(|_| {
                invalid(format!(
                    "input '{name}': {v} does not fit its datatype ({})",
                    std::any::type_name::<N>()
                ))
            })
        })
        .collect()
}

/// An output's metadata and its raw bytes (for `raw_output_contents`).
pub fn encode_output(t: &Tensor) -> (InferOutputTensor, Vec<u8>) {
    let meta = InferOutputTensor {
        name: t.name.clone(),
        datatype: t.datatype().as_str().to_string(),
        shape: t.shape().iter().map(|&d| d as i64).collect(),
        parameters: Default::default(),
        contents: None,
    };
    (meta, tensor_to_raw(t))
}
