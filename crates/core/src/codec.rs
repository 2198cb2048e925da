//! Conversions between tensors and the two data forms the protocols carry: JSON
//! arrays (flat or nested, OIP V2 `data`, V1 `instances`) and the little-endian raw
//! form (Triton's binary extension). Every conversion checks element counts, value
//! ranges and the element limit, so a face never has to.

use half::{bf16, f16};
use serde_json::Value;

use crate::error::{CoreError, CoreResult};
pub use crate::flat::FlatData;
use crate::tensor::{checked_shape, element_count, DataType, Tensor, TensorData};

/// Triton's tensor parameters this server does not implement (shared memory,
/// classification): every V2 face refuses a request that names one rather
/// than answer something other than what was asked.
pub const UNSUPPORTED_TENSOR_PARAMETERS: [&str; 4] = [
    "shared_memory_region",
    "shared_memory_offset",
    "shared_memory_byte_size",
    "classification",
];

/// A wire shape as sizes, with its element count, refused before any data is
/// read when it is negative or holds more than `max_elements` (an overflowing
/// product counts as too many).
pub fn bounded_shape(
    name: &str,
    shape: &[i64],
    max_elements: usize,
) -> CoreResult<(Vec<usize>, usize)> {
    let dims = checked_shape(name, shape)?;
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .unwrap_or(usize::MAX);
    if count > max_elements {
        return Err(CoreError::TooManyElements {
            name: name.to_string(),
            elements: count,
            max: max_elements,
        });
    }
    Ok((dims, count))
}

/// Builds a tensor from a JSON array whose nesting is ignored (OIP allows flat or
/// nested data); the element count must match `shape`.
pub fn tensor_from_json(
    name: &str,
    datatype: DataType,
    shape: &[i64],
    data: &Value,
    max_elements: usize,
) -> CoreResult<Tensor> {
    tensor_from_flat(
        name,
        datatype,
        shape,
        FlatData::from_value(data),
        max_elements,
    )
}

/// Builds a tensor from leaves parsed straight from the body. Nothing is sized
/// from `shape` before the leaves are counted: a shape claiming a billion
/// elements over four numbers costs four numbers.
pub fn tensor_from_flat(
    name: &str,
    datatype: DataType,
    shape: &[i64],
    data: FlatData,
    max_elements: usize,
) -> CoreResult<Tensor> {
    let (dims, expected) = bounded_shape(name, shape, max_elements)?;
    if !data.is_array() && !dims.is_empty() {
        return Err(CoreError::BadData { name: name.into() });
    }
    if data.len() != expected {
        return Err(CoreError::ShapeMismatch {
            name: name.to_string(),
            shape: shape.to_vec(),
            expected,
            got: data.len(),
        });
    }
    Tensor::new(name, dims, data.into_data(name, datatype)?)
}

/// Builds a tensor from rows (V1 `instances`, TF Serving's row form): the shape is
/// `[rows] + the nesting of each row`, which must be rectangular.
pub fn tensor_from_rows(
    name: &str,
    datatype: DataType,
    rows: &[Value],
    max_elements: usize,
) -> CoreResult<Tensor> {
    let all = Value::Array(rows.to_vec());
    let shape = nested_shape(&all).ok_or_else(|| {
        CoreError::BadRequest(format!(
            "input '{name}': instances must be rectangular (every row the same nesting and length)"
        ))
    })?;
    let shape: Vec<i64> = shape.into_iter().map(|d| d as i64).collect();
    tensor_from_json(name, datatype, &shape, &all, max_elements)
}

/// The shape of a rectangular nested array, `None` when ragged.
pub fn nested_shape(v: &Value) -> Option<Vec<usize>> {
    match v {
        Value::Array(items) => {
            let mut inner: Option<Vec<usize>> = None;
            for item in items {
                let s = nested_shape(item)?;
                match &inner {
                    None => inner = Some(s),
                    Some(prev) if *prev != s => return None,
                    Some(_) => {}
                }
            }
            let mut shape = vec![items.len()];
            shape.extend(inner.unwrap_or_default());
            Some(shape)
        }
        _ => Some(vec![]),
    }
}

/// A tensor's elements written as a flat JSON array without building a tree
/// first (an answer of millions of numbers would cost 32 bytes a number as
/// `Value`s). BYTES become strings (invalid UTF-8 replaced, since JSON cannot
/// carry it: use binary output for that).
pub struct JsonData<'a>(pub &'a TensorData);

impl serde::Serialize for JsonData<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        fn all<S: serde::Serializer, T: serde::Serialize>(
            s: S,
            items: impl ExactSizeIterator<Item = T>,
        ) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            let mut seq = s.serialize_seq(Some(items.len()))?;
            for item in items {
                seq.serialize_element(&item)?;
            }
            seq.end()
        }
        match self.0 {
            TensorData::Bool(v) => all(s, v.iter()),
            TensorData::U8(v) => all(s, v.iter()),
            TensorData::U16(v) => all(s, v.iter()),
            TensorData::U32(v) => all(s, v.iter()),
            TensorData::U64(v) => all(s, v.iter()),
            TensorData::I8(v) => all(s, v.iter()),
            TensorData::I16(v) => all(s, v.iter()),
            TensorData::I32(v) => all(s, v.iter()),
            TensorData::I64(v) => all(s, v.iter()),
            TensorData::F16(v) => all(s, v.iter().map(|x| x.to_f32())),
            TensorData::BF16(v) => all(s, v.iter().map(|x| x.to_f32())),
            TensorData::F32(v) => all(s, v.iter()),
            TensorData::F64(v) => all(s, v.iter()),
            TensorData::Bytes(v) => all(s, v.iter().map(|x| String::from_utf8_lossy(x))),
        }
    }
}

/// The tensor as a list of rows, each nested to the inner shape (V1 `predictions`).
/// A tensor of rank 0 or 1 gives its bare elements.
pub fn tensor_to_rows(tensor: &Tensor) -> Vec<Value> {
    let shape = tensor.shape();
    if shape.len() <= 1 {
        return data_to_values(tensor.data(), 0, tensor.data().len());
    }
    let row = element_count(&shape[1..]);
    (0..shape[0])
        .map(|r| nest(tensor.data(), r * row, &shape[1..]))
        .collect()
}

/// The whole tensor nested to its shape (a bare value for a scalar).
pub fn tensor_to_nested(tensor: &Tensor) -> Value {
    if tensor.shape().is_empty() {
        return data_to_values(tensor.data(), 0, 1)
            .pop()
            .unwrap_or(Value::Null);
    }
    nest(tensor.data(), 0, tensor.shape())
}

/// Guesses the datatype of untyped JSON data (V1 rows for a model that takes
/// any type): booleans, strings, integers or other numbers.
pub fn guess_datatype(v: &Value) -> DataType {
    match v {
        Value::Array(items) => items.first().map(guess_datatype).unwrap_or(DataType::F32),
        Value::Bool(_) => DataType::Bool,
        Value::String(_) => DataType::Bytes,
        Value::Number(n) if n.is_i64() || n.is_u64() => DataType::I64,
        _ => DataType::F32,
    }
}

fn nest(data: &TensorData, start: usize, shape: &[usize]) -> Value {
    if shape.len() == 1 {
        return Value::Array(data_to_values(data, start, start + shape[0]));
    }
    let step = element_count(&shape[1..]);
    Value::Array(
        (0..shape[0])
            .map(|i| nest(data, start + i * step, &shape[1..]))
            .collect(),
    )
}

fn data_to_values(data: &TensorData, start: usize, end: usize) -> Vec<Value> {
    match data {
        TensorData::Bool(v) => v[start..end].iter().map(|&x| Value::from(x)).collect(),
        TensorData::U8(v) => v[start..end].iter().map(|&x| Value::from(x)).collect(),
        TensorData::U16(v) => v[start..end].iter().map(|&x| Value::from(x)).collect(),
        TensorData::U32(v) => v[start..end].iter().map(|&x| Value::from(x)).collect(),
        TensorData::U64(v) => v[start..end].iter().map(|&x| Value::from(x)).collect(),
        TensorData::I8(v) => v[start..end].iter().map(|&x| Value::from(x)).collect(),
        TensorData::I16(v) => v[start..end].iter().map(|&x| Value::from(x)).collect(),
        TensorData::I32(v) => v[start..end].iter().map(|&x| Value::from(x)).collect(),
        TensorData::I64(v) => v[start..end].iter().map(|&x| Value::from(x)).collect(),
        TensorData::F16(v) => v[start..end]
            .iter()
            .map(|&x| Value::from(x.to_f32()))
            .collect(),
        TensorData::BF16(v) => v[start..end]
            .iter()
            .map(|&x| Value::from(x.to_f32()))
            .collect(),
        TensorData::F32(v) => v[start..end].iter().map(|&x| Value::from(x)).collect(),
        TensorData::F64(v) => v[start..end].iter().map(|&x| Value::from(x)).collect(),
        TensorData::Bytes(v) => v[start..end]
            .iter()
            .map(|x| Value::from(String::from_utf8_lossy(x).into_owned()))
            .collect(),
    }
}

/// Decodes the raw little-endian form. BYTES elements are each a 4-byte
/// little-endian length followed by that many bytes.
pub fn tensor_from_raw(
    name: &str,
    datatype: DataType,
    shape: &[i64],
    raw: &[u8],
    max_elements: usize,
) -> CoreResult<Tensor> {
    let (dims, count) = bounded_shape(name, shape, max_elements)?;
    let bad = |reason: String| CoreError::BadBinary {
        name: name.to_string(),
        reason,
    };
    let data = match datatype.size() {
        Some(size) => {
            if raw.len() != count * size {
                return Err(bad(format!(
                    "{} bytes given, but shape {:?} of {} needs {}",
                    raw.len(),
                    shape,
                    datatype,
                    count * size
                )));
            }
            fixed_from_le(datatype, raw)
        }
        None => {
            // Each element needs at least its 4-byte prefix: the claim alone sizes nothing.
            let mut items = Vec::with_capacity(count.min(raw.len() / 4));
            let mut rest = raw;
            while !rest.is_empty() {
                let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(|| {
                    bad(format!(
                        "BYTES element {} has a truncated length prefix",
                        items.len()
                    ))
                })?;
                let len = u32::from_le_bytes(*len) as usize;
                if len > tail.len() {
                    return Err(bad(format!(
                        "BYTES element {} claims {} bytes but only {} remain",
                        items.len(),
                        len,
                        tail.len()
                    )));
                }
                items.push(tail[..len].to_vec());
                rest = &tail[len..];
            }
            if items.len() != count {
                return Err(bad(format!(
                    "{} BYTES elements given, but shape {:?} needs {}",
                    items.len(),
                    shape,
                    count
                )));
            }
            TensorData::Bytes(items)
        }
    };
    Tensor::new(name, dims, data)
}

fn fixed_from_le(datatype: DataType, raw: &[u8]) -> TensorData {
    macro_rules! le {
        ($var:ident, $t:ty, $n:expr) => {
            TensorData::$var(
                raw.chunks_exact($n)
                    .map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk size")))
                    .collect(),
            )
        };
    }
    match datatype {
        DataType::Bool => TensorData::Bool(raw.iter().map(|&b| b != 0).collect()),
        DataType::U8 => TensorData::U8(raw.to_vec()),
        DataType::I8 => TensorData::I8(raw.iter().map(|&b| b as i8).collect()),
        DataType::U16 => le!(U16, u16, 2),
        DataType::I16 => le!(I16, i16, 2),
        DataType::F16 => le!(F16, f16, 2),
        DataType::BF16 => le!(BF16, bf16, 2),
        DataType::U32 => le!(U32, u32, 4),
        DataType::I32 => le!(I32, i32, 4),
        DataType::F32 => le!(F32, f32, 4),
        DataType::U64 => le!(U64, u64, 8),
        DataType::I64 => le!(I64, i64, 8),
        DataType::F64 => le!(F64, f64, 8),
        DataType::Bytes => unreachable!("BYTES has no fixed size"),
    }
}

/// Encodes the raw little-endian form (the inverse of `tensor_from_raw`).
pub fn tensor_to_raw(tensor: &Tensor) -> Vec<u8> {
    macro_rules! le {
        ($v:expr, $n:expr) => {{
            let mut out = Vec::with_capacity($v.len() * $n);
            for x in $v {
                out.extend_from_slice(&x.to_le_bytes());
            }
            out
        }};
    }
    match tensor.data() {
        TensorData::Bool(v) => v.iter().map(|&b| b as u8).collect(),
        TensorData::U8(v) => v.clone(),
        TensorData::I8(v) => v.iter().map(|&b| b as u8).collect(),
        TensorData::U16(v) => le!(v, 2),
        TensorData::I16(v) => le!(v, 2),
        TensorData::F16(v) => le!(v, 2),
        TensorData::BF16(v) => le!(v, 2),
        TensorData::U32(v) => le!(v, 4),
        TensorData::I32(v) => le!(v, 4),
        TensorData::F32(v) => le!(v, 4),
        TensorData::U64(v) => le!(v, 8),
        TensorData::I64(v) => le!(v, 8),
        TensorData::F64(v) => le!(v, 8),
        TensorData::Bytes(v) => {
            let mut out = Vec::with_capacity(v.iter().map(|b| b.len() + 4).sum());
            for b in v {
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                out.extend_from_slice(b);
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn flat_and_nested_json_give_the_same_tensor() {
        let flat =
            tensor_from_json("x", DataType::F32, &[2, 2], &json!([1, 2, 3, 4]), 100).unwrap();
        let nested =
            tensor_from_json("x", DataType::F32, &[2, 2], &json!([[1, 2], [3, 4]]), 100).unwrap();
        assert_eq!(flat, nested);
        assert_eq!(
            serde_json::to_value(JsonData(flat.data())).unwrap(),
            json!([1.0, 2.0, 3.0, 4.0])
        );
        assert_eq!(
            tensor_to_rows(&flat),
            vec![json!([1.0, 2.0]), json!([3.0, 4.0])]
        );
    }

    #[test]
    fn every_datatype_round_trips_through_json_and_raw() {
        for dt in DataType::ALL {
            let data = match dt {
                DataType::Bool => json!([true, false]),
                DataType::Bytes => json!(["héllo", ""]),
                DataType::I8 | DataType::I16 | DataType::I32 | DataType::I64 => json!([-3, 5]),
                _ => json!([1, 2]),
            };
            let t = tensor_from_json("x", dt, &[2], &data, 10).unwrap();
            assert_eq!(t.datatype(), dt);
            let raw = tensor_to_raw(&t);
            let back = tensor_from_raw("x", dt, &[2], &raw, 10).unwrap();
            assert_eq!(back, t, "{dt}");
            let json = serde_json::to_value(JsonData(t.data())).unwrap();
            let again = tensor_from_json("x", dt, &[2], &json, 10).unwrap();
            assert_eq!(again, t, "{dt}");
            // The V1 rows of a vector are its bare elements: the same text.
            assert_eq!(json, Value::Array(tensor_to_rows(&t)), "{dt}");
        }
    }

    #[test]
    fn bad_elements_say_where_and_why() {
        let err = tensor_from_json("x", DataType::U8, &[2], &json!([1, 300]), 10).unwrap_err();
        assert!(
            err.to_string().contains("element 1") && err.to_string().contains("out of range"),
            "{err}"
        );
        let err = tensor_from_json("x", DataType::F32, &[1], &json!([1e39]), 10).unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
        let err = tensor_from_json("x", DataType::I32, &[1], &json!(["a"]), 10).unwrap_err();
        assert!(err.to_string().contains("expected an integer"), "{err}");
        let err = tensor_from_json("x", DataType::F32, &[3], &json!([1, 2]), 10).unwrap_err();
        assert!(matches!(
            err,
            CoreError::ShapeMismatch {
                expected: 3,
                got: 2,
                ..
            }
        ));
        let err = tensor_from_json("x", DataType::F32, &[1000, 1000], &json!([1]), 10).unwrap_err();
        assert!(matches!(err, CoreError::TooManyElements { .. }));
        let err = tensor_from_json("x", DataType::F32, &[-1], &json!([1]), 10).unwrap_err();
        assert!(matches!(err, CoreError::NegativeDim { .. }));
    }

    #[test]
    fn raw_bytes_length_prefix_is_checked() {
        let mut raw = 100u32.to_le_bytes().to_vec();
        raw.extend_from_slice(b"abc");
        let err = tensor_from_raw("s", DataType::Bytes, &[1], &raw, 10).unwrap_err();
        assert!(err.to_string().contains("claims 100 bytes"), "{err}");
        let err = tensor_from_raw("f", DataType::F32, &[2], &[0; 7], 10).unwrap_err();
        assert!(err.to_string().contains("7 bytes given"), "{err}");
    }

    #[test]
    fn rows_infer_their_shape_and_refuse_ragged_input() {
        let t = tensor_from_rows("x", DataType::I64, &[json!([1, 2]), json!([3, 4])], 10).unwrap();
        assert_eq!(t.shape(), &[2, 2]);
        assert!(tensor_from_rows("x", DataType::I64, &[json!([1, 2]), json!([3])], 10).is_err());
    }
}
