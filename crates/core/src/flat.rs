//! JSON tensor data parsed straight into typed leaves. A `serde_json::Value`
//! tree costs 32 bytes a number plus a vector per nested array, so a 48 MiB
//! body of numbers became several hundred MB before a tensor existed; here a
//! number costs 8 bytes and nesting costs nothing (OIP V2 ignores it).
//! Leaves of mixed kinds are not refused while parsing: the first stray leaf
//! is remembered so the conversion can name the element and what was wrong,
//! exactly as for a tree.

use std::fmt;

use half::{bf16, f16};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{CoreError, CoreResult};
use crate::tensor::{DataType, TensorData};

/// The leaves of one JSON tensor, in order, with their nesting dropped.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FlatData {
    leaves: Leaves,
    /// Whether the data was an array (a bare value is a scalar tensor).
    array: bool,
    /// Leaves seen, the stray one included.
    count: usize,
    /// The first leaf whose kind differs from the first leaf's, and its index.
    stray: Option<(usize, String)>,
}

#[derive(Debug, Default, Clone, PartialEq)]
enum Leaves {
    #[default]
    Empty,
    Bools(Vec<bool>),
    Ints(Vec<i64>),
    /// Integers of which one is above `i64::MAX` (a UINT64 tensor).
    Wide(Vec<i128>),
    /// Numbers of which one is not an integer: element `first_float` of the
    /// data, `values[at]`.
    Floats {
        values: Vec<f64>,
        first_float: usize,
        at: usize,
    },
    Strings(Vec<String>),
}

/// One scalar as the JSON parser hands it over.
enum Leaf {
    Bool(bool),
    Int(i64),
    Wide(u64),
    Float(f64),
    Str(String),
    /// null, or an object: always refused, so only its text is kept.
    Other(&'static str),
}

impl Leaves {
    /// The integers read so far, as floats, followed by the first non-integer
    /// `f` (element `index` of the data).
    fn floats(mut values: Vec<f64>, f: f64, index: usize) -> Leaves {
        let at = values.len();
        values.push(f);
        Leaves::Floats {
            values,
            first_float: index,
            at,
        }
    }

    /// Appends `leaf` (element `index` of the data), or gives it back when its
    /// kind differs from the others.
    fn push(&mut self, index: usize, leaf: Leaf) -> Result<(), Leaf> {
        match (&mut *self, leaf) {
            (Leaves::Empty, Leaf::Bool(b)) => *self = Leaves::Bools(vec![b]),
            (Leaves::Empty, Leaf::Int(n)) => *self = Leaves::Ints(vec![n]),
            (Leaves::Empty, Leaf::Wide(n)) => *self = Leaves::Wide(vec![i128::from(n)]),
            (Leaves::Empty, Leaf::Float(f)) => *self = Leaves::floats(Vec::new(), f, index),
            (Leaves::Empty, Leaf::Str(s)) => *self = Leaves::Strings(vec![s]),
            (Leaves::Bools(v), Leaf::Bool(b)) => v.push(b),
            (Leaves::Strings(v), Leaf::Str(s)) => v.push(s),
            (Leaves::Ints(v), Leaf::Int(n)) => v.push(n),
            (Leaves::Ints(v), Leaf::Wide(n)) => {
                let mut wide: Vec<i128> = v.iter().map(|&x| i128::from(x)).collect();
                wide.push(i128::from(n));
                *self = Leaves::Wide(wide);
            }
            (Leaves::Ints(v), Leaf::Float(f)) => {
                *self = Leaves::floats(v.iter().map(|&x| x as f64).collect(), f, index)
            }
            (Leaves::Wide(v), Leaf::Int(n)) => v.push(i128::from(n)),
            (Leaves::Wide(v), Leaf::Wide(n)) => v.push(i128::from(n)),
            (Leaves::Wide(v), Leaf::Float(f)) => {
                *self = Leaves::floats(v.iter().map(|&x| x as f64).collect(), f, index)
            }
            (Leaves::Floats { values, .. }, Leaf::Int(n)) => values.push(n as f64),
            (Leaves::Floats { values, .. }, Leaf::Wide(n)) => values.push(n as f64),
            (Leaves::Floats { values, .. }, Leaf::Float(f)) => values.push(f),
            (_, leaf) => return Err(leaf),
        }
        Ok(())
    }

    /// The JSON text of leaf `i`, for error messages.
    fn text(&self, i: usize) -> String {
        match self {
            Leaves::Empty => "nothing".into(),
            Leaves::Bools(v) => v[i].to_string(),
            Leaves::Ints(v) => v[i].to_string(),
            Leaves::Wide(v) => v[i].to_string(),
            Leaves::Floats { values, .. } => float_text(values[i]),
            Leaves::Strings(v) => Value::from(v[i].as_str()).to_string(),
        }
    }
}

fn float_text(f: f64) -> String {
    serde_json::Number::from_f64(f)
        .map(|n| n.to_string())
        .unwrap_or_else(|| f.to_string())
}

impl Leaf {
    fn text(&self) -> String {
        match self {
            Leaf::Bool(b) => b.to_string(),
            Leaf::Int(n) => n.to_string(),
            Leaf::Wide(n) => n.to_string(),
            Leaf::Float(f) => float_text(*f),
            Leaf::Str(s) => Value::from(s.as_str()).to_string(),
            Leaf::Other(what) => (*what).into(),
        }
    }
}

impl FlatData {
    /// How many leaves the data holds.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the data was written as an array rather than a bare value.
    pub fn is_array(&self) -> bool {
        self.array
    }

    fn add(&mut self, leaf: Leaf) {
        let index = self.count;
        self.count += 1;
        if let Err(leaf) = self.leaves.push(index, leaf) {
            if self.stray.is_none() {
                self.stray = Some((index, leaf.text()));
            }
        }
    }

    /// The leaves of a parsed tree (faces that must keep a tree, V1 rows).
    pub fn from_value(v: &Value) -> FlatData {
        let mut flat = FlatData {
            array: v.is_array(),
            ..FlatData::default()
        };
        flat.walk(v);
        flat
    }

    fn walk(&mut self, v: &Value) {
        match v {
            Value::Array(items) => items.iter().for_each(|item| self.walk(item)),
            Value::Bool(b) => self.add(Leaf::Bool(*b)),
            Value::Number(n) => self.add(number_leaf(n)),
            Value::String(s) => self.add(Leaf::Str(s.clone())),
            Value::Null => self.add(Leaf::Other("null")),
            Value::Object(_) => self.add(Leaf::Other("an object")),
        }
    }

    /// The elements as `datatype`, each checked: a wrong kind or an out-of-range
    /// value names its index. Consumes the leaves so that strings move into
    /// the tensor instead of being copied beside them.
    pub fn into_data(self, name: &str, datatype: DataType) -> CoreResult<TensorData> {
        let bad = |index: usize, reason: String| CoreError::BadElement {
            name: name.to_string(),
            index,
            datatype,
            reason,
        };
        let expected = match datatype {
            DataType::Bool => "true or false",
            DataType::Bytes => "a string",
            DataType::F16 | DataType::BF16 | DataType::F32 | DataType::F64 => "a number",
            _ => "an integer",
        };
        let wrong_kind =
            |index: usize, text: String| bad(index, format!("expected {expected}, got {text}"));
        let kind_fits = match (&self.leaves, datatype) {
            (Leaves::Empty, _) => true,
            (Leaves::Bools(_), DataType::Bool) | (Leaves::Strings(_), DataType::Bytes) => true,
            (Leaves::Ints(_) | Leaves::Wide(_) | Leaves::Floats { .. }, d) => {
                d != DataType::Bool && d != DataType::Bytes
            }
            _ => false,
        };
        if !kind_fits {
            // The first leaf sets the kind, unless a stray one came before it.
            return Err(match &self.stray {
                Some((0, text)) => wrong_kind(0, text.clone()),
                _ => wrong_kind(0, self.leaves.text(0)),
            });
        }
        // Of a stray leaf and a float among integers, the first is reported.
        let float_at = match (&self.leaves, datatype) {
            (
                Leaves::Floats {
                    first_float, at, ..
                },
                d,
            ) if !matches!(
                d,
                DataType::F16 | DataType::BF16 | DataType::F32 | DataType::F64
            ) =>
            {
                Some((*first_float, self.leaves.text(*at)))
            }
            _ => None,
        };
        let first_wrong = match (&self.stray, float_at) {
            (Some(s), Some(f)) => Some(if s.0 < f.0 { s.clone() } else { f }),
            (Some(s), None) => Some(s.clone()),
            (None, f) => f,
        };
        if let Some((index, text)) = first_wrong {
            return Err(wrong_kind(index, text));
        }
        macro_rules! ints {
            ($var:ident, $t:ty) => {{
                let convert = |i: usize, n: i128| {
                    <$t>::try_from(n).map_err(|_| bad(i, format!("{n} is out of range")))
                };
                let data = match &self.leaves {
                    Leaves::Ints(v) => v
                        .iter()
                        .enumerate()
                        .map(|(i, &n)| convert(i, i128::from(n)))
                        .collect::<CoreResult<Vec<$t>>>()?,
                    Leaves::Wide(v) => v
                        .iter()
                        .enumerate()
                        .map(|(i, &n)| convert(i, n))
                        .collect::<CoreResult<Vec<$t>>>()?,
                    _ => Vec::new(),
                };
                TensorData::$var(data)
            }};
        }
        // A finite JSON number that overflows the narrower type is refused rather
        // than silently turned into infinity.
        macro_rules! floats {
            ($var:ident, $conv:expr, $finite:expr) => {{
                let convert = |i: usize, f: f64| {
                    let x = $conv(f);
                    if $finite(x) {
                        Ok(x)
                    } else {
                        Err(bad(i, format!("{} is out of range", self.leaves.text(i))))
                    }
                };
                let data = match &self.leaves {
                    Leaves::Ints(v) => v
                        .iter()
                        .enumerate()
                        .map(|(i, &n)| convert(i, n as f64))
                        .collect::<CoreResult<Vec<_>>>()?,
                    Leaves::Wide(v) => v
                        .iter()
                        .enumerate()
                        .map(|(i, &n)| convert(i, n as f64))
                        .collect::<CoreResult<Vec<_>>>()?,
                    Leaves::Floats { values, .. } => values
                        .iter()
                        .enumerate()
                        .map(|(i, &f)| convert(i, f))
                        .collect::<CoreResult<Vec<_>>>()?,
                    _ => Vec::new(),
                };
                TensorData::$var(data)
            }};
        }
        let data = match datatype {
            DataType::Bool => TensorData::Bool(match self.leaves {
                Leaves::Bools(v) => v,
                _ => Vec::new(),
            }),
            DataType::Bytes => TensorData::Bytes(match self.leaves {
                Leaves::Strings(v) => v.into_iter().map(String::into_bytes).collect(),
                _ => Vec::new(),
            }),
            DataType::U8 => ints!(U8, u8),
            DataType::U16 => ints!(U16, u16),
            DataType::U32 => ints!(U32, u32),
            DataType::U64 => ints!(U64, u64),
            DataType::I8 => ints!(I8, i8),
            DataType::I16 => ints!(I16, i16),
            DataType::I32 => ints!(I32, i32),
            DataType::I64 => ints!(I64, i64),
            DataType::F16 => floats!(F16, f16::from_f64, |x: f16| x.is_finite()),
            DataType::BF16 => floats!(BF16, bf16::from_f64, |x: bf16| x.is_finite()),
            DataType::F32 => floats!(F32, |f| f as f32, |x: f32| x.is_finite()),
            DataType::F64 => floats!(F64, |f| f, |x: f64| x.is_finite()),
        };
        Ok(data)
    }
}

fn number_leaf(n: &serde_json::Number) -> Leaf {
    if let Some(i) = n.as_i64() {
        Leaf::Int(i)
    } else if let Some(u) = n.as_u64() {
        Leaf::Wide(u)
    } else {
        Leaf::Float(n.as_f64().unwrap_or(f64::NAN))
    }
}

impl<'de> Deserialize<'de> for FlatData {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<FlatData, D::Error> {
        let mut flat = FlatData::default();
        d.deserialize_any(Top(&mut flat))?;
        Ok(flat)
    }
}

/// The outermost value: records whether it is an array, then collects leaves.
struct Top<'a>(&'a mut FlatData);

/// Any value below the top: arrays recurse (the JSON parser bounds the depth),
/// scalars become leaves.
struct Nested<'a>(&'a mut FlatData);

macro_rules! scalar_visits {
    () => {
        fn visit_bool<E>(self, v: bool) -> Result<(), E> {
            self.0.add(Leaf::Bool(v));
            Ok(())
        }
        fn visit_i64<E>(self, v: i64) -> Result<(), E> {
            self.0.add(Leaf::Int(v));
            Ok(())
        }
        fn visit_u64<E>(self, v: u64) -> Result<(), E> {
            self.0.add(match i64::try_from(v) {
                Ok(i) => Leaf::Int(i),
                Err(_) => Leaf::Wide(v),
            });
            Ok(())
        }
        fn visit_f64<E>(self, v: f64) -> Result<(), E> {
            self.0.add(Leaf::Float(v));
            Ok(())
        }
        fn visit_str<E>(self, v: &str) -> Result<(), E> {
            self.0.add(Leaf::Str(v.to_string()));
            Ok(())
        }
        fn visit_string<E>(self, v: String) -> Result<(), E> {
            self.0.add(Leaf::Str(v));
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            self.0.add(Leaf::Other("null"));
            Ok(())
        }
        fn visit_none<E>(self) -> Result<(), E> {
            self.0.add(Leaf::Other("null"));
            Ok(())
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            self.0.add(Leaf::Other("an object"));
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element_seed(Nested(&mut *self.0))?.is_some() {}
            Ok(())
        }
    };
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tensor data: an array (flat or nested) or a single value")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.array = true;
        while seq.next_element_seed(Nested(&mut *self.0))?.is_some() {}
        Ok(())
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        Nested(self.0).visit_bool(v)
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        Nested(self.0).visit_i64(v)
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        Nested(self.0).visit_u64(v)
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        Nested(self.0).visit_f64(v)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        Nested(self.0).visit_str(v)
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<(), E> {
        Nested(self.0).visit_string(v)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Nested(self.0).visit_unit()
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        Nested(self.0).visit_map(map)
    }
}

impl<'de> Visitor<'de> for Nested<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a tensor element")
    }
    scalar_visits!();
}

impl<'de> DeserializeSeed<'de> for Nested<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> FlatData {
        let parsed: FlatData = serde_json::from_str(text).unwrap();
        let tree: Value = serde_json::from_str(text).unwrap();
        assert_eq!(parsed, FlatData::from_value(&tree), "{text}");
        parsed
    }

    #[test]
    fn nesting_is_dropped_and_kinds_are_kept() {
        let d = parse("[[1, 2], [3, 4]]");
        assert_eq!(d.len(), 4);
        assert!(d.is_array());
        assert_eq!(
            d.clone().into_data("x", DataType::I32).unwrap(),
            TensorData::I32(vec![1, 2, 3, 4])
        );
        assert_eq!(
            d.into_data("x", DataType::F32).unwrap(),
            TensorData::F32(vec![1.0, 2.0, 3.0, 4.0])
        );
        let scalar = parse("7");
        assert!(!scalar.is_array());
        let big = parse("[1, 18446744073709551615]");
        assert_eq!(
            big.into_data("x", DataType::U64).unwrap(),
            TensorData::U64(vec![1, u64::MAX])
        );
    }

    #[test]
    fn wrong_kinds_name_the_first_bad_element() {
        let msg = |text: &str, dt| parse(text).into_data("x", dt).unwrap_err().to_string();
        assert!(
            msg("[1, 2.5]", DataType::I32).contains("element 1"),
            "{}",
            msg("[1, 2.5]", DataType::I32)
        );
        assert!(msg("[1, 2.5]", DataType::I32).contains("expected an integer, got 2.5"));
        assert!(msg("[1, \"a\"]", DataType::F32).contains("got \"a\""));
        assert!(msg("[1, \"a\", 2.5]", DataType::I32).contains("element 1"));
        assert!(msg("[1, 7, \"a\", 2.5]", DataType::F32).contains("element 2"));
        assert!(msg("[1.5, \"a\"]", DataType::I32).contains("element 0"));
        assert!(msg("[\"a\", 1, 2.5]", DataType::I32).contains("element 0"));
        assert_eq!(parse("[1, \"a\", 2]").len(), 3);
        assert!(msg("[null, \"a\"]", DataType::F32).contains("got null"));
        assert!(msg("[1, null]", DataType::F32).contains("got null"));
        assert!(msg("[1, {\"a\": 1}]", DataType::F32).contains("got an object"));
        assert!(msg("[true]", DataType::F32).contains("expected a number, got true"));
        assert!(msg("[300]", DataType::U8).contains("300 is out of range"));
        assert!(msg("[1e300]", DataType::F32).contains("out of range"));
        assert!(msg("[1]", DataType::Bytes).contains("expected a string, got 1"));
    }

    #[test]
    fn deep_nesting_is_refused_by_the_parser() {
        let deep = "[".repeat(100_000);
        assert!(serde_json::from_str::<FlatData>(&deep).is_err());
    }
}
