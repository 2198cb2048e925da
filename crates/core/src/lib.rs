//! inferd's core: tensors, model configs, the repository, the manager (load,
//! unload, LRU eviction) and the scheduler (bounded queues, deadlines, dynamic
//! batching). It knows nothing of HTTP, RPC or SQL; faces translate into it.

pub mod backend;
pub mod budget;
pub mod classify;
pub mod codec;
pub mod config;
pub mod error;
mod flat;
pub mod generate;
pub mod manager;
pub mod repository;
pub mod scheduler;
pub mod stats;
pub mod tensor;

pub use backend::{Backend, BackendError, LoadSpec, LoadedModel};
pub use config::{ModelConfig, SpecType, TensorSpec};
pub use error::{CoreError, CoreResult, ErrorKind};
pub use manager::{
    Collected, Generation, InferRequest, InferResponse, Manager, ManagerConfig, ModelInfo, Outcome,
    TextModel, FEATURE_EXTRACTION, IMAGE_CLASSIFICATION, TENSORS,
};
pub use tensor::{DataType, Tensor, TensorData};
