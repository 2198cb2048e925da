//! Runs ONNX models with tract (pure Rust, builds offline, no system library).
//!
//! tract refuses graphs whose input dimensions are unknown, so every input fact is
//! set before optimisation: from `model.toml` when it declares inputs, otherwise
//! from the graph, with each unknown or named dimension turned into a symbol. The
//! first dimension's symbol is shared by all inputs, so one optimised plan serves
//! every batch size. Inputs and outputs of a model without a config are read back
//! from the typed graph (Triton's auto-complete).

use std::path::Path;
use std::sync::Arc;

use inferd_core::{
    Backend, BackendError, DataType, LoadSpec, LoadedModel, SpecType, Tensor, TensorData,
    TensorSpec,
};
use tract_onnx::prelude::{
    Datum, DatumType, Framework, InferenceFact, InferenceModelExt, TDim, TValue,
    Tensor as TractTensor, TypedRunnableModel,
};
use tract_onnx::tract_core::model::IntoRunnable;
use tract_onnx::tract_hir::infer::Factoid;

#[derive(Debug, Default)]
pub struct OnnxBackend;

impl Backend for OnnxBackend {
    fn name(&self) -> &'static str {
        "onnx"
    }

    fn load(&self, spec: &LoadSpec<'_>) -> Result<Box<dyn LoadedModel>, BackendError> {
        let path = spec.version_dir.join("model.onnx");
        let model = OnnxModel::load(&path, &spec.config.inputs, &spec.config.outputs)
            .map_err(|e| BackendError::Load(format!("{}: {e:#}", path.display())))?;
        Ok(Box::new(model))
    }
}

struct OnnxModel {
    plan: Arc<TypedRunnableModel>,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    memory: u64,
}

type Fallible<T> = tract_onnx::prelude::TractResult<T>;

impl OnnxModel {
    fn load(
        path: &Path,
        declared_in: &[TensorSpec],
        declared_out: &[TensorSpec],
    ) -> Fallible<OnnxModel> {
        let memory = std::fs::metadata(path)?.len();
        let mut model = tract_onnx::onnx().model_for_path(path)?;
        let batch = model.sym("N");
        let input_names: Vec<String> = model
            .input_outlets()?
            .iter()
            .map(|o| model.node(o.node).name.clone())
            .collect();
        let output_names: Vec<String> = model
            .output_outlets()?
            .iter()
            .map(|&o| {
                model
                    .outlet_label(o)
                    .unwrap_or(&model.node(o.node).name)
                    .to_string()
            })
            .collect();
        for (i, name) in input_names.iter().enumerate() {
            let fact = model.input_fact(i)?.clone();
            let declared = declared_in.iter().find(|s| &s.name == name);
            let dt = match declared.map(|s| s.datatype) {
                Some(SpecType::Is(d)) => to_tract_type(d)?,
                _ => fact.datum_type.concretize().ok_or_else(|| {
                    anyhow_msg(format!(
                        "input '{name}' has no known datatype; declare it in model.toml"
                    ))
                })?,
            };
            let dims: Vec<TDim> = match declared.and_then(|s| s.shape.clone()) {
                Some(shape) => shape
                    .iter()
                    .enumerate()
                    .map(|(d, &n)| {
                        if n < 0 {
                            symbol(&model, &batch, d, i)
                        } else {
                            TDim::from(n)
                        }
                    })
                    .collect(),
                None => fact
                    .shape
                    .dims()
                    .enumerate()
                    .map(|(d, f)| match f.concretize() {
                        Some(dim) if dim.to_i64().is_ok() => dim,
                        _ => symbol(&model, &batch, d, i),
                    })
                    .collect(),
            };
            model.set_input_fact(i, InferenceFact::dt_shape(dt, dims))?;
        }
        let typed = model.into_optimized()?;
        let spec_of = |name: &str, dt: DatumType, shape: &[TDim]| -> Fallible<TensorSpec> {
            Ok(TensorSpec {
                name: name.to_string(),
                datatype: SpecType::Is(from_tract_type(dt)?),
                shape: Some(shape.iter().map(|d| d.to_i64().unwrap_or(-1)).collect()),
            })
        };
        let mut inputs = Vec::new();
        for (i, name) in input_names.iter().enumerate() {
            let fact = typed.input_fact(i)?;
            inputs.push(spec_of(name, fact.datum_type, fact.shape.dims())?);
        }
        let mut outputs = Vec::new();
        for (i, name) in output_names.iter().enumerate() {
            let fact = typed.output_fact(i)?;
            outputs.push(spec_of(name, fact.datum_type, fact.shape.dims())?);
        }
        if !declared_out.is_empty() {
            for d in declared_out {
                if !outputs.iter().any(|o| o.name == d.name) {
                    return Err(anyhow_msg(format!(
                        "model.toml declares output '{}', which the graph does not have ({:?})",
                        d.name, output_names
                    )));
                }
            }
        }
        let plan = typed.into_runnable()?;
        Ok(OnnxModel {
            plan,
            inputs,
            outputs,
            memory,
        })
    }
}

/// The shared batch symbol for dimension 0, a fresh one elsewhere.
fn symbol(
    model: &tract_onnx::prelude::InferenceModel,
    batch: &tract_onnx::prelude::Symbol,
    dim: usize,
    input: usize,
) -> TDim {
    if dim == 0 {
        TDim::Sym(batch.clone())
    } else {
        TDim::Sym(model.sym(&format!("d{input}_{dim}")))
    }
}

fn anyhow_msg(msg: String) -> tract_onnx::prelude::TractError {
    tract_onnx::prelude::TractError::msg(msg)
}

fn to_tract_type(d: DataType) -> Fallible<DatumType> {
    Ok(match d {
        DataType::Bool => DatumType::Bool,
        DataType::U8 => DatumType::U8,
        DataType::U16 => DatumType::U16,
        DataType::U32 => DatumType::U32,
        DataType::U64 => DatumType::U64,
        DataType::I8 => DatumType::I8,
        DataType::I16 => DatumType::I16,
        DataType::I32 => DatumType::I32,
        DataType::I64 => DatumType::I64,
        DataType::F16 => DatumType::F16,
        DataType::F32 => DatumType::F32,
        DataType::F64 => DatumType::F64,
        DataType::BF16 | DataType::Bytes => {
            return Err(anyhow_msg(format!(
                "the onnx backend does not take {d} tensors"
            )))
        }
    })
}

fn from_tract_type(d: DatumType) -> Fallible<DataType> {
    Ok(match d {
        DatumType::Bool => DataType::Bool,
        DatumType::U8 => DataType::U8,
        DatumType::U16 => DataType::U16,
        DatumType::U32 => DataType::U32,
        DatumType::U64 => DataType::U64,
        DatumType::I8 => DataType::I8,
        DatumType::I16 => DataType::I16,
        DatumType::I32 => DataType::I32,
        DatumType::I64 => DataType::I64,
        DatumType::F16 => DataType::F16,
        DatumType::F32 => DataType::F32,
        DatumType::F64 => DataType::F64,
        other => {
            return Err(anyhow_msg(format!(
                "the onnx backend does not serve {other:?} tensors"
            )))
        }
    })
}

fn to_tract(t: &Tensor) -> Fallible<TractTensor> {
    let shape = t.shape();
    match t.data() {
        TensorData::Bool(v) => TractTensor::from_shape(shape, v),
        TensorData::U8(v) => TractTensor::from_shape(shape, v),
        TensorData::U16(v) => TractTensor::from_shape(shape, v),
        TensorData::U32(v) => TractTensor::from_shape(shape, v),
        TensorData::U64(v) => TractTensor::from_shape(shape, v),
        TensorData::I8(v) => TractTensor::from_shape(shape, v),
        TensorData::I16(v) => TractTensor::from_shape(shape, v),
        TensorData::I32(v) => TractTensor::from_shape(shape, v),
        TensorData::I64(v) => TractTensor::from_shape(shape, v),
        TensorData::F16(v) => TractTensor::from_shape(shape, v),
        TensorData::F32(v) => TractTensor::from_shape(shape, v),
        TensorData::F64(v) => TractTensor::from_shape(shape, v),
        TensorData::BF16(_) | TensorData::Bytes(_) => Err(anyhow_msg(format!(
            "the onnx backend does not take {} tensors",
            t.datatype()
        ))),
    }
}

fn from_tract(name: &str, t: &TractTensor) -> Fallible<Tensor> {
    fn vec<T: Datum + Clone>(t: &TractTensor) -> Fallible<Vec<T>> {
        Ok(t.try_as_plain_ram()?.as_slice::<T>()?.to_vec())
    }
    let data = match t.datum_type() {
        DatumType::Bool => TensorData::Bool(vec(t)?),
        DatumType::U8 => TensorData::U8(vec(t)?),
        DatumType::U16 => TensorData::U16(vec(t)?),
        DatumType::U32 => TensorData::U32(vec(t)?),
        DatumType::U64 => TensorData::U64(vec(t)?),
        DatumType::I8 => TensorData::I8(vec(t)?),
        DatumType::I16 => TensorData::I16(vec(t)?),
        DatumType::I32 => TensorData::I32(vec(t)?),
        DatumType::I64 => TensorData::I64(vec(t)?),
        DatumType::F16 => TensorData::F16(vec(t)?),
        DatumType::F32 => TensorData::F32(vec(t)?),
        DatumType::F64 => TensorData::F64(vec(t)?),
        other => {
            return Err(anyhow_msg(format!(
                "output '{name}' has unsupported type {other:?}"
            )))
        }
    };
    Tensor::new(name, t.shape().to_vec(), data).map_err(|e| anyhow_msg(e.to_string()))
}

impl LoadedModel for OnnxModel {
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }
    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }
    fn memory_bytes(&self) -> u64 {
        self.memory
    }
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        let run = || -> Fallible<Vec<Tensor>> {
            let values = inputs
                .iter()
                .map(|t| to_tract(t).map(TValue::from))
                .collect::<Fallible<Vec<_>>>()?;
            let result = self.plan.run(values.into_iter().collect())?;
            result
                .iter()
                .zip(&self.outputs)
                .map(|(v, spec)| from_tract(&spec.name, v))
                .collect()
        };
        run().map_err(|e| BackendError::Run(format!("{e:#}")))
    }
    /// tract runs a plan on the calling thread, with no locks or I/O.
    fn runs_inline(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use inferd_core::ModelConfig;

    use super::*;

    fn models() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
    }

    fn load(name: &str, config: &ModelConfig) -> Box<dyn LoadedModel> {
        let dir = models().join(name);
        OnnxBackend
            .load(&LoadSpec {
                name,
                version: 1,
                model_dir: &dir,
                version_dir: &dir.join("1"),
                config,
            })
            .unwrap()
    }

    #[test]
    fn iris_specs_come_from_the_graph_and_any_batch_runs() {
        let m = load("iris", &ModelConfig::default());
        assert_eq!(m.inputs()[0].name, "X");
        assert_eq!(m.inputs()[0].shape, Some(vec![-1, 4]));
        let names: Vec<_> = m.outputs().iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["label", "probabilities"]);
        assert_eq!(m.outputs()[0].datatype, SpecType::Is(DataType::I64));
        for rows in [1usize, 3] {
            let x = Tensor::new(
                "X",
                vec![rows, 4],
                TensorData::F32([5.1, 3.5, 1.4, 0.2].repeat(rows)),
            )
            .unwrap();
            let out = m.run(vec![x]).unwrap();
            assert_eq!(out[0].data(), &TensorData::I64(vec![0; rows]), "setosa");
            assert_eq!(out[1].shape(), &[rows, 3]);
        }
    }

    #[test]
    fn digits_classifies_its_sample() {
        let text = std::fs::read_to_string(models().join("digits/sample.txt")).unwrap();
        let pixels: Vec<f32> = text
            .split_whitespace()
            .map(|s| s.parse().unwrap())
            .collect();
        let config = ModelConfig::from_toml(
            &std::fs::read_to_string(models().join("digits/model.toml")).unwrap(),
        )
        .unwrap();
        let m = load("digits", &config);
        let out = m
            .run(vec![Tensor::new(
                "input",
                vec![1, 64],
                TensorData::F32(pixels),
            )
            .unwrap()])
            .unwrap();
        let TensorData::F32(p) = out[0].data() else {
            panic!()
        };
        let best = p
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(best, 0);
    }
}
