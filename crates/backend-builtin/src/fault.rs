//! `fault`: a model that misbehaves on request, so tests can prove a backend's
//! panic, error, stall or malformed answer stays inside the request that
//! caused it. The first element of its BYTES input picks what happens:
//! `ok` echoes the input, `panic` panics, `error` fails, `sleep:MS` sleeps MS
//! milliseconds (at most a minute) then echoes, and `bad-shape` answers one
//! element more than it was given.

use std::time::Duration;

use inferd_core::{BackendError, DataType, LoadedModel, SpecType, Tensor, TensorData, TensorSpec};

/// The longest `sleep:MS` a request may ask for.
const MAX_SLEEP: Duration = Duration::from_secs(60);

pub(crate) struct Fault {
    pub(crate) inputs: Vec<TensorSpec>,
    pub(crate) outputs: Vec<TensorSpec>,
}

impl Fault {
    pub(crate) fn new(
        inputs: Vec<TensorSpec>,
        outputs: Vec<TensorSpec>,
    ) -> Result<Fault, BackendError> {
        let bytes = |s: &[TensorSpec]| {
            s.len() == 1 && matches!(s[0].datatype, SpecType::Is(DataType::Bytes))
        };
        if !bytes(&inputs) || !bytes(&outputs) {
            return Err(BackendError::Load(
                "fault needs exactly one BYTES input and one BYTES output".into(),
            ));
        }
        Ok(Fault { inputs, outputs })
    }
}

impl LoadedModel for Fault {
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
        let input = inputs
            .into_iter()
            .next()
            .ok_or_else(|| BackendError::Run("fault takes one input".into()))?;
        let TensorData::Bytes(items) = input.data() else {
            return Err(BackendError::Run("fault takes a BYTES input".into()));
        };
        let mode = items
            .first()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .unwrap_or_default();
        let name = self.outputs[0].name.clone();
        let echo = |t: Tensor| {
            let shape = t.shape().to_vec();
            Tensor::new(name.clone(), shape, t.into_data())
                .map_err(|e| BackendError::Run(e.to_string()))
        };
        match mode.as_str() {
            "ok" => Ok(vec![echo(input)?]),
            "panic" => panic!("fault model asked to panic"),
            "error" => Err(BackendError::Run("fault model asked to fail".into())),
            "bad-shape" => {
                let mut more = items.clone();
                more.push(b"extra".to_vec());
                let n = more.len();
                Ok(vec![Tensor::new(name, vec![n], TensorData::Bytes(more))
                    .map_err(|e| BackendError::Run(e.to_string()))?])
            }
            other => match other.strip_prefix("sleep:").map(str::parse::<u64>) {
                Some(Ok(ms)) => {
                    std::thread::sleep(Duration::from_millis(ms).min(MAX_SLEEP));
                    Ok(vec![echo(input)?])
                }
                _ => Err(BackendError::Run(format!(
                    "unknown fault mode '{other}'; expected ok, panic, error, sleep:MS or bad-shape"
                ))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault() -> Fault {
        let spec = |name: &str| TensorSpec {
            name: name.into(),
            datatype: SpecType::Is(DataType::Bytes),
            shape: None,
        };
        Fault::new(vec![spec("INPUT0")], vec![spec("OUTPUT0")]).unwrap()
    }

    fn run(mode: &str) -> Result<Vec<Tensor>, BackendError> {
        let t = Tensor::new(
            "INPUT0",
            vec![1],
            TensorData::Bytes(vec![mode.as_bytes().to_vec()]),
        )
        .unwrap();
        fault().run(vec![t])
    }

    #[test]
    fn each_mode_does_what_it_says() {
        assert_eq!(run("ok").unwrap()[0].shape(), &[1]);
        assert_eq!(run("sleep:1").unwrap()[0].name, "OUTPUT0");
        assert!(run("error")
            .unwrap_err()
            .to_string()
            .contains("asked to fail"));
        assert_eq!(run("bad-shape").unwrap()[0].shape(), &[2]);
        assert!(run("dance")
            .unwrap_err()
            .to_string()
            .contains("unknown fault mode"));
        let panicked = std::panic::catch_unwind(|| run("panic"));
        assert!(panicked.is_err());
    }
}
