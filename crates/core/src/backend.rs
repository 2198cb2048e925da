//! The seam between the core and the code that runs models. A backend turns a
//! model folder into a loaded model; a loaded model runs one batch at a time on the
//! scheduler's worker threads, never on the async runtime, and never sees HTTP or
//! the queue.

use std::path::Path;

use crate::config::{ModelConfig, TensorSpec};
use crate::generate::Generator;
use crate::tensor::Tensor;

/// What went wrong inside a backend.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("cannot load: {0}")]
    Load(String),
    #[error("{0}")]
    Run(String),
}

/// What a backend needs to load one version of a model.
#[derive(Debug, Clone, Copy)]
pub struct LoadSpec<'a> {
    pub name: &'a str,
    pub version: u64,
    /// The model's folder (where `model.toml` and labels live).
    pub model_dir: &'a Path,
    /// The version's folder (`<model_dir>/<version>`); it may not exist for
    /// models that have no files, such as builtin ones.
    pub version_dir: &'a Path,
    pub config: &'a ModelConfig,
}

/// One way of running models (ONNX through tract, builtin Rust functions, ...).
pub trait Backend: Send + Sync {
    /// The name `model.toml` uses in `backend = "..."`.
    fn name(&self) -> &'static str;

    /// Loads a model version. Slow and blocking: the manager calls it on a
    /// blocking thread.
    fn load(&self, spec: &LoadSpec<'_>) -> Result<Box<dyn LoadedModel>, BackendError>;
}

/// A model in memory, ready to run.
pub trait LoadedModel: Send + Sync {
    /// Inputs as the model really has them (for models without a declared
    /// config, read from the model file).
    fn inputs(&self) -> &[TensorSpec];
    fn outputs(&self) -> &[TensorSpec];
    /// An estimate of the memory the model holds, for the manager's budget.
    fn memory_bytes(&self) -> u64;
    /// Runs one batch. `inputs` come in the order of `inputs()`, already checked
    /// against the specs; the result holds every output, in the order of `outputs()`.
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError>;
    /// Models that write text also stream tokens through this (the tensor path
    /// above then takes and gives whole texts).
    fn generator(&self) -> Option<&dyn Generator> {
        None
    }
    /// Whether a run only computes, in time that grows with its inputs (no
    /// sleeping, waiting on a lock or the network). Only such a model may run
    /// a request on the calling thread when its runs take microseconds
    /// (`SchedulerConfig::inline_limit`): handing those to a worker thread
    /// costs more than the run.
    fn runs_inline(&self) -> bool {
        false
    }
}
