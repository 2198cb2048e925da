//! Named, typed, shaped tensors: the one data form every face converts into and
//! every backend consumes. Holds the Open Inference Protocol datatypes, the
//! little-endian raw form (Triton's binary extension, gRPC raw contents) and the
//! dimension-0 concatenation and split that dynamic batching needs.

use std::fmt;

use half::{bf16, f16};

use crate::error::{CoreError, CoreResult};

/// The Open Inference Protocol datatypes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F16,
    BF16,
    F32,
    F64,
    Bytes,
}

impl DataType {
    pub const ALL: [DataType; 14] = [
        DataType::Bool,
        DataType::U8,
        DataType::U16,
        DataType::U32,
        DataType::U64,
        DataType::I8,
        DataType::I16,
        DataType::I32,
        DataType::I64,
        DataType::F16,
        DataType::BF16,
        DataType::F32,
        DataType::F64,
        DataType::Bytes,
    ];

    /// The protocol's spelling (`FP32`, `BYTES`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::U8 => "UINT8",
            DataType::U16 => "UINT16",
            DataType::U32 => "UINT32",
            DataType::U64 => "UINT64",
            DataType::I8 => "INT8",
            DataType::I16 => "INT16",
            DataType::I32 => "INT32",
            DataType::I64 => "INT64",
            DataType::F16 => "FP16",
            DataType::BF16 => "BF16",
            DataType::F32 => "FP32",
            DataType::F64 => "FP64",
            DataType::Bytes => "BYTES",
        }
    }

    /// Parses the protocol's spelling; Triton's config spelling (`TYPE_FP32`,
    /// `TYPE_STRING`) is accepted too, since users paste it from config.pbtxt.
    pub fn parse(s: &str) -> CoreResult<DataType> {
        let upper = s.trim().to_ascii_uppercase();
        let name = upper.strip_prefix("TYPE_").unwrap_or(&upper);
        let name = if name == "STRING" { "BYTES" } else { name };
        DataType::ALL
            .into_iter()
            .find(|d| d.as_str() == name)
            .ok_or_else(|| CoreError::UnknownDatatype(s.to_string()))
    }

    /// Bytes per element in the raw form; `None` for BYTES, whose elements vary.
    pub fn size(self) -> Option<usize> {
        Some(match self {
            DataType::Bool | DataType::U8 | DataType::I8 => 1,
            DataType::U16 | DataType::I16 | DataType::F16 | DataType::BF16 => 2,
            DataType::U32 | DataType::I32 | DataType::F32 => 4,
            DataType::U64 | DataType::I64 | DataType::F64 => 8,
            DataType::Bytes => return None,
        })
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The elements of a tensor, flat and row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    Bool(Vec<bool>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bytes(Vec<Vec<u8>>),
}

/// Applies one expression to the vector inside any variant.
#[macro_export]
macro_rules! each_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            $crate::tensor::TensorData::Bool($v) => $body,
            $crate::tensor::TensorData::U8($v) => $body,
            $crate::tensor::TensorData::U16($v) => $body,
            $crate::tensor::TensorData::U32($v) => $body,
            $crate::tensor::TensorData::U64($v) => $body,
            $crate::tensor::TensorData::I8($v) => $body,
            $crate::tensor::TensorData::I16($v) => $body,
            $crate::tensor::TensorData::I32($v) => $body,
            $crate::tensor::TensorData::I64($v) => $body,
            $crate::tensor::TensorData::F16($v) => $body,
            $crate::tensor::TensorData::BF16($v) => $body,
            $crate::tensor::TensorData::F32($v) => $body,
            $crate::tensor::TensorData::F64($v) => $body,
            $crate::tensor::TensorData::Bytes($v) => $body,
        }
    };
}

/// Same as `each_data`, but the body builds a new `TensorData` of the same variant.
macro_rules! map_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Bool($v) => TensorData::Bool($body),
            TensorData::U8($v) => TensorData::U8($body),
            TensorData::U16($v) => TensorData::U16($body),
            TensorData::U32($v) => TensorData::U32($body),
            TensorData::U64($v) => TensorData::U64($body),
            TensorData::I8($v) => TensorData::I8($body),
            TensorData::I16($v) => TensorData::I16($body),
            TensorData::I32($v) => TensorData::I32($body),
            TensorData::I64($v) => TensorData::I64($body),
            TensorData::F16($v) => TensorData::F16($body),
            TensorData::BF16($v) => TensorData::BF16($body),
            TensorData::F32($v) => TensorData::F32($body),
            TensorData::F64($v) => TensorData::F64($body),
            TensorData::Bytes($v) => TensorData::Bytes($body),
        }
    };
}

impl TensorData {
    pub fn datatype(&self) -> DataType {
        match self {
            TensorData::Bool(_) => DataType::Bool,
            TensorData::U8(_) => DataType::U8,
            TensorData::U16(_) => DataType::U16,
            TensorData::U32(_) => DataType::U32,
            TensorData::U64(_) => DataType::U64,
            TensorData::I8(_) => DataType::I8,
            TensorData::I16(_) => DataType::I16,
            TensorData::I32(_) => DataType::I32,
            TensorData::I64(_) => DataType::I64,
            TensorData::F16(_) => DataType::F16,
            TensorData::BF16(_) => DataType::BF16,
            TensorData::F32(_) => DataType::F32,
            TensorData::F64(_) => DataType::F64,
            TensorData::Bytes(_) => DataType::Bytes,
        }
    }

    pub fn len(&self) -> usize {
        each_data!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An empty vector of the given type with room for `capacity` elements.
    pub fn with_capacity(datatype: DataType, capacity: usize) -> TensorData {
        match datatype {
            DataType::Bool => TensorData::Bool(Vec::with_capacity(capacity)),
            DataType::U8 => TensorData::U8(Vec::with_capacity(capacity)),
            DataType::U16 => TensorData::U16(Vec::with_capacity(capacity)),
            DataType::U32 => TensorData::U32(Vec::with_capacity(capacity)),
            DataType::U64 => TensorData::U64(Vec::with_capacity(capacity)),
            DataType::I8 => TensorData::I8(Vec::with_capacity(capacity)),
            DataType::I16 => TensorData::I16(Vec::with_capacity(capacity)),
            DataType::I32 => TensorData::I32(Vec::with_capacity(capacity)),
            DataType::I64 => TensorData::I64(Vec::with_capacity(capacity)),
            DataType::F16 => TensorData::F16(Vec::with_capacity(capacity)),
            DataType::BF16 => TensorData::BF16(Vec::with_capacity(capacity)),
            DataType::F32 => TensorData::F32(Vec::with_capacity(capacity)),
            DataType::F64 => TensorData::F64(Vec::with_capacity(capacity)),
            DataType::Bytes => TensorData::Bytes(Vec::with_capacity(capacity)),
        }
    }

    /// Appends `other`, which must hold the same datatype (checked by callers).
    fn extend_from(&mut self, other: &TensorData) {
        macro_rules! ext {
            ($($var:ident),*) => {
                match (self, other) {
                    $((TensorData::$var(a), TensorData::$var(b)) => a.extend_from_slice(b),)*
                    (a, b) => unreachable!("concatenating {} with {}", a.datatype(), b.datatype()),
                }
            };
        }
        ext!(Bool, U8, U16, U32, U64, I8, I16, I32, I64, F16, BF16, F32, F64, Bytes)
    }

    fn slice(&self, start: usize, end: usize) -> TensorData {
        map_data!(self, v => v[start..end].to_vec())
    }
}

/// A named tensor. Its shape always matches its element count (checked by `new`).
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    shape: Vec<usize>,
    data: TensorData,
}

impl Tensor {
    /// Checks the element count against the shape.
    pub fn new(name: impl Into<String>, shape: Vec<usize>, data: TensorData) -> CoreResult<Tensor> {
        let name = name.into();
        let expected = element_count(&shape);
        if expected != data.len() {
            return Err(CoreError::ShapeMismatch {
                name,
                shape: shape.iter().map(|&d| d as i64).collect(),
                expected,
                got: data.len(),
            });
        }
        Ok(Tensor { name, shape, data })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn data(&self) -> &TensorData {
        &self.data
    }

    pub fn into_data(self) -> TensorData {
        self.data
    }

    pub fn datatype(&self) -> DataType {
        self.data.datatype()
    }

    /// The size of dimension 0, the batch dimension of batching models.
    pub fn batch_size(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }

    /// Joins tensors of one name along dimension 0. They must share datatype and
    /// inner shape, which the scheduler checks before it groups requests.
    pub fn concat(parts: &[&Tensor]) -> Tensor {
        let first = parts[0];
        if parts.len() == 1 {
            return first.clone();
        }
        let total: usize = parts.iter().map(|t| t.data.len()).sum();
        let mut data = TensorData::with_capacity(first.datatype(), total);
        for part in parts {
            data.extend_from(&part.data);
        }
        let mut shape = first.shape.clone();
        shape[0] = parts.iter().map(|t| t.batch_size()).sum();
        Tensor {
            name: first.name.clone(),
            shape,
            data,
        }
    }

    /// Splits along dimension 0 into pieces of the given batch sizes, the inverse
    /// of `concat`. Fails when the sizes do not add up to dimension 0.
    pub fn split(&self, sizes: &[usize]) -> CoreResult<Vec<Tensor>> {
        if self.shape.is_empty() || sizes.iter().sum::<usize>() != self.shape[0] {
            return Err(CoreError::Backend {
                model: String::new(),
                reason: format!(
                    "output '{}' of shape {:?} cannot be split into batches {:?}",
                    self.name, self.shape, sizes
                ),
            });
        }
        let row = element_count(&self.shape[1..]);
        let mut start = 0;
        Ok(sizes
            .iter()
            .map(|&n| {
                let mut shape = self.shape.clone();
                shape[0] = n;
                let data = self.data.slice(start * row, (start + n) * row);
                start += n;
                Tensor {
                    name: self.name.clone(),
                    shape,
                    data,
                }
            })
            .collect())
    }
}

/// The product of the dimensions (1 for a scalar).
pub fn element_count(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Turns protocol dimensions (signed on the wire) into sizes, refusing negatives.
pub fn checked_shape(name: &str, shape: &[i64]) -> CoreResult<Vec<usize>> {
    shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| CoreError::NegativeDim {
            name: name.to_string(),
            shape: shape.to_vec(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datatype_names_round_trip_and_accept_triton_config_spelling() {
        for d in DataType::ALL {
            assert_eq!(DataType::parse(d.as_str()).unwrap(), d);
        }
        assert_eq!(DataType::parse("TYPE_STRING").unwrap(), DataType::Bytes);
        assert_eq!(DataType::parse("fp32").unwrap(), DataType::F32);
        assert!(DataType::parse("FP8").is_err());
    }

    #[test]
    fn new_checks_element_count() {
        let err = Tensor::new("x", vec![2, 3], TensorData::F32(vec![0.0; 5])).unwrap_err();
        assert!(err.to_string().contains("6 elements but 5"), "{err}");
        let scalar = Tensor::new("s", vec![], TensorData::I64(vec![7])).unwrap();
        assert_eq!(scalar.batch_size(), 1);
    }

    #[test]
    fn concat_and_split_are_inverse() {
        let a = Tensor::new("x", vec![1, 2], TensorData::I32(vec![1, 2])).unwrap();
        let b = Tensor::new("x", vec![2, 2], TensorData::I32(vec![3, 4, 5, 6])).unwrap();
        let joined = Tensor::concat(&[&a, &b]);
        assert_eq!(joined.shape(), &[3, 2]);
        assert_eq!(joined.data(), &TensorData::I32(vec![1, 2, 3, 4, 5, 6]));
        let parts = joined.split(&[1, 2]).unwrap();
        assert_eq!(parts, vec![a, b]);
        assert!(joined.split(&[1, 1]).is_err());
    }

    #[test]
    fn negative_dims_are_refused() {
        assert!(checked_shape("x", &[1, -1]).is_err());
        assert_eq!(checked_shape("x", &[2, 3]).unwrap(), vec![2, 3]);
    }
}
