//! Models written in Rust, for tests and demos: `identity` (returns its input,
//! any datatype and shape, BYTES included) and `add_sub` (Triton's classic
//! example: OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1, INT32 [16]).
//! `model.toml` picks one with `kind = "..."`. `[parameters] delay_ms = N` makes
//! either one sleep N ms per batch: a stand-in for a slow model in tests of
//! queues, deadlines and unloading under load; `load_delay_ms = N` makes loading
//! take N ms, so a test can find a model or deployment still loading. `fault`
//! misbehaves on request (see `fault.rs`).

mod fault;

use std::time::Duration;

use inferd_core::{
    Backend, BackendError, DataType, LoadSpec, LoadedModel, SpecType, Tensor, TensorData,
    TensorSpec,
};

#[derive(Debug, Default)]
pub struct BuiltinBackend;

impl Backend for BuiltinBackend {
    fn name(&self) -> &'static str {
        "builtin"
    }

    fn load(&self, spec: &LoadSpec<'_>) -> Result<Box<dyn LoadedModel>, BackendError> {
        let kind = spec
            .config
            .parameters
            .get("kind")
            .map(String::as_str)
            .unwrap_or(spec.name);
        let (inputs, outputs) = (spec.config.inputs.clone(), spec.config.outputs.clone());
        let delay = millis(spec, "delay_ms")?;
        std::thread::sleep(millis(spec, "load_delay_ms")?);
        match kind {
            "identity" => {
                if inputs.len() != 1 || outputs.len() != 1 {
                    return Err(BackendError::Load(
                        "identity needs exactly one input and one output".into(),
                    ));
                }
                Ok(Box::new(Identity {
                    inputs,
                    outputs,
                    delay,
                }))
            }
            "add_sub" => {
                let io_ok = inputs.len() == 2
                    && outputs.len() == 2
                    && inputs
                        .iter()
                        .chain(&outputs)
                        .all(|s| s.datatype == SpecType::Is(DataType::I32));
                if !io_ok {
                    return Err(BackendError::Load(
                        "add_sub needs two INT32 inputs and two INT32 outputs".into(),
                    ));
                }
                Ok(Box::new(AddSub {
                    inputs,
                    outputs,
                    delay,
                }))
            }
            "fault" => Ok(Box::new(fault::Fault::new(inputs, outputs)?)),
            other => Err(BackendError::Load(format!(
                "unknown builtin kind '{other}'; expected identity, add_sub or fault"
            ))),
        }
    }
}

/// A `[parameters]` duration in whole milliseconds; zero when absent.
fn millis(spec: &LoadSpec<'_>, key: &str) -> Result<Duration, BackendError> {
    match spec.config.parameters.get(key) {
        None => Ok(Duration::ZERO),
        Some(ms) => ms
            .parse()
            .map(Duration::from_millis)
            .map_err(|_| BackendError::Load(format!("{key} must be a whole number, got '{ms}'"))),
    }
}

struct Identity {
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    delay: Duration,
}

impl LoadedModel for Identity {
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }
    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }
    fn memory_bytes(&self) -> u64 {
        0
    }
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        std::thread::sleep(self.delay);
        inputs
            .into_iter()
            .map(|t| {
                let shape = t.shape().to_vec();
                Tensor::new(self.outputs[0].name.clone(), shape, t.into_data())
                    .map_err(|e| BackendError::Run(e.to_string()))
            })
            .collect()
    }
}

struct AddSub {
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    delay: Duration,
}

impl LoadedModel for AddSub {
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }
    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }
    fn memory_bytes(&self) -> u64 {
        0
    }
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        std::thread::sleep(self.delay);
        let (TensorData::I32(a), TensorData::I32(b)) = (inputs[0].data(), inputs[1].data()) else {
            return Err(BackendError::Run("add_sub takes INT32 inputs".into()));
        };
        if a.len() != b.len() {
            return Err(BackendError::Run(
                "INPUT0 and INPUT1 must have the same shape".into(),
            ));
        }
        let shape = inputs[0].shape().to_vec();
        let sum = a.iter().zip(b).map(|(x, y)| x.wrapping_add(*y)).collect();
        let diff = a.iter().zip(b).map(|(x, y)| x.wrapping_sub(*y)).collect();
        let out = |i: usize, data| {
            Tensor::new(
                self.outputs[i].name.clone(),
                shape.clone(),
                TensorData::I32(data),
            )
            .map_err(|e| BackendError::Run(e.to_string()))
        };
        Ok(vec![out(0, sum)?, out(1, diff)?])
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use inferd_core::ModelConfig;

    use super::*;

    fn load(toml: &str) -> Result<Box<dyn LoadedModel>, BackendError> {
        let config = ModelConfig::from_toml(toml).unwrap();
        BuiltinBackend.load(&LoadSpec {
            name: "m",
            version: 1,
            model_dir: Path::new("."),
            version_dir: Path::new("."),
            config: &config,
        })
    }

    #[test]
    fn add_sub_adds_and_subtracts() {
        let m = load(include_str!("../../../models/add_sub/model.toml")).unwrap();
        let a = Tensor::new("INPUT0", vec![2], TensorData::I32(vec![5, 1])).unwrap();
        let b = Tensor::new("INPUT1", vec![2], TensorData::I32(vec![2, 3])).unwrap();
        let out = m.run(vec![a, b]).unwrap();
        assert_eq!(out[0].data(), &TensorData::I32(vec![7, 4]));
        assert_eq!(out[1].data(), &TensorData::I32(vec![3, -2]));
        assert_eq!(out[1].name, "OUTPUT1");
    }

    #[test]
    fn identity_returns_bytes_unchanged() {
        let m = load(include_str!("../../../models/identity/model.toml")).unwrap();
        let t = Tensor::new(
            "INPUT0",
            vec![1, 2],
            TensorData::Bytes(vec![b"a".to_vec(), vec![0xff]]),
        )
        .unwrap();
        let out = m.run(vec![t.clone()]).unwrap();
        assert_eq!(out[0].data(), t.data());
        assert_eq!(out[0].name, "OUTPUT0");
    }

    #[test]
    fn load_delay_ms_slows_loading() {
        let toml = include_str!("../../../models/identity/model.toml");
        let started = std::time::Instant::now();
        load(&format!("{toml}\n[parameters]\nload_delay_ms = \"50\"\n")).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(50));
        let err = load(&format!("{toml}\n[parameters]\nload_delay_ms = \"soon\"\n"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("load_delay_ms must be"));
    }

    #[test]
    fn unknown_kind_is_a_load_error() {
        let err = load("backend = 'builtin'\nkind = 'nope'").err().unwrap();
        assert!(err.to_string().contains("unknown builtin kind 'nope'"));
    }
}
