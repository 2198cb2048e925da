//! The one error type of the core, and the small set of kinds every face maps to
//! its own status codes (each face keeps exactly one table from kind to status).

use std::time::Duration;

use crate::tensor::DataType;

/// What went wrong, in terms a face can turn into a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidInput,
    /// The model (or engine) cannot do what was asked.
    Unsupported,
    NotFound,
    Conflict,
    NotReady,
    Overloaded,
    Unavailable,
    Timeout,
    TooLarge,
    /// A remote server answered with an error.
    Upstream,
    /// No credential, or one the server does not accept (401).
    Unauthorized,
    /// A valid credential whose role may not do this (403).
    Forbidden,
    Internal,
}

/// Every failure the core reports. Messages are written for the client: they say
/// what was wrong and, where it helps, what was expected.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CoreError {
    #[error("unknown datatype '{0}'; expected one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, BF16, FP32, FP64, BYTES")]
    UnknownDatatype(String),
    #[error("tensor '{name}': shape {shape:?} has a negative dimension")]
    NegativeDim { name: String, shape: Vec<i64> },
    #[error("tensor '{name}': shape {shape:?} holds {expected} elements but {got} were given")]
    ShapeMismatch {
        name: String,
        shape: Vec<i64>,
        expected: usize,
        got: usize,
    },
    #[error("tensor '{name}' has {elements} elements, more than the limit of {max}")]
    TooManyElements {
        name: String,
        elements: usize,
        max: usize,
    },
    #[error("tensor '{name}': element {index} is not a valid {datatype}: {reason}")]
    BadElement {
        name: String,
        index: usize,
        datatype: DataType,
        reason: String,
    },
    #[error("tensor '{name}': data must be an array (flat or nested) of values")]
    BadData { name: String },
    #[error("tensor '{name}': {reason}")]
    BadBinary { name: String, reason: String },
    #[error("request body: {0}")]
    BadRequest(String),
    #[error("model '{model}' has no input named '{input}'; its inputs are {expected:?}")]
    UnknownInput {
        model: String,
        input: String,
        expected: Vec<String>,
    },
    #[error("model '{model}' needs input '{input}', which the request does not give")]
    MissingInput { model: String, input: String },
    #[error("model '{model}' has no output named '{output}'; its outputs are {expected:?}")]
    UnknownOutput {
        model: String,
        output: String,
        expected: Vec<String>,
    },
    #[error("input '{input}' of model '{model}' is {expected}, but {got} was given")]
    WrongDatatype {
        model: String,
        input: String,
        expected: DataType,
        got: DataType,
    },
    #[error(
        "input '{input}' of model '{model}' has shape {got:?}, which does not fit {expected:?}"
    )]
    WrongShape {
        model: String,
        input: String,
        expected: Vec<i64>,
        got: Vec<usize>,
    },
    #[error("batch of {size} is larger than model '{model}' allows ({max})")]
    BatchTooLarge {
        model: String,
        size: usize,
        max: usize,
    },
    #[error("model '{0}' is not in the repository")]
    ModelNotFound(String),
    #[error("model '{model}' has no version {version}")]
    VersionNotFound { model: String, version: String },
    #[error("load parameter '{key}' is not supported: change the model's folder and load again")]
    UnsupportedLoadParameter { key: String },
    #[error("model '{model}' version {version} is not loaded; load it first")]
    NotLoaded { model: String, version: u64 },
    #[error("model '{model}' is unavailable: {reason}")]
    ModelUnavailable { model: String, reason: String },
    #[error("model '{model}' version {version} is already {state}")]
    BadState {
        model: String,
        version: u64,
        state: &'static str,
    },
    #[error("model '{model}' is overloaded: its queue holds {max} requests; retry later")]
    QueueFull { model: String, max: usize },
    #[error("the server's in-flight memory budget is exhausted: this request needs {needed} bytes, {used} of {limit} are in use by requests in flight; retry later")]
    Overloaded { needed: u64, used: u64, limit: u64 },
    #[error("model '{model}' cannot be loaded now: the model cache is full ({limits}) and every model in it is busy; retry later or raise the limits")]
    CacheFull { model: String, limits: String },
    #[error("request to model '{model}' passed its deadline of {deadline:?} before it finished")]
    DeadlineExceeded { model: String, deadline: Duration },
    #[error("model '{model}' failed: {reason}")]
    Backend { model: String, reason: String },
    #[error("server is shutting down")]
    ShuttingDown,
    /// A fault of the server's own (its store, a task): the details go to the
    /// log, the client gets this sentence.
    #[error("internal error: {0}")]
    Internal(String),
    #[error("image {index}: {reason}")]
    BadImage { index: usize, reason: String },
    #[error("image {index} is {width}x{height} pixels, more than the limit of {max}x{max}")]
    ImageTooLarge {
        index: usize,
        width: u32,
        height: u32,
        max: u32,
    },
    #[error("'{key}' names engine '{engine}', but model '{model}' runs on '{backend}'")]
    WrongEngine {
        key: String,
        engine: String,
        model: String,
        backend: String,
    },
    #[error("model '{model}': prompt formatting failed: {reason}")]
    PromptFormat { model: String, reason: String },
    #[error("model '{model}': the prompt is {tokens} tokens, more than the {max} allowed")]
    PromptTooLong {
        model: String,
        tokens: usize,
        max: u32,
    },
    #[error("model '{model}': cannot reach {endpoint}: {reason}")]
    Downstream {
        model: String,
        endpoint: String,
        reason: String,
    },
    #[error("model '{model}': {endpoint} answered {status}: {body}")]
    UpstreamStatus {
        model: String,
        endpoint: String,
        status: u16,
        body: String,
    },
    #[error("model '{model}' cannot do {task}: {reason}")]
    UnsupportedTask {
        model: String,
        task: String,
        reason: String,
    },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
}

impl CoreError {
    /// The kind a face maps to its status code.
    pub fn kind(&self) -> ErrorKind {
        use CoreError::*;
        match self {
            UnknownDatatype(_)
            | NegativeDim { .. }
            | ShapeMismatch { .. }
            | BadElement { .. }
            | BadData { .. }
            | BadBinary { .. }
            | BadRequest(_)
            | UnknownInput { .. }
            | MissingInput { .. }
            | UnknownOutput { .. }
            | WrongDatatype { .. }
            | WrongShape { .. }
            | BatchTooLarge { .. }
            | BadImage { .. }
            | PromptFormat { .. }
            | PromptTooLong { .. }
            | UnsupportedLoadParameter { .. } => ErrorKind::InvalidInput,
            UnsupportedTask { .. } => ErrorKind::Unsupported,
            TooManyElements { .. } | ImageTooLarge { .. } => ErrorKind::TooLarge,
            ModelNotFound(_) | VersionNotFound { .. } | WrongEngine { .. } => ErrorKind::NotFound,
            NotLoaded { .. } => ErrorKind::NotReady,
            BadState { .. } => ErrorKind::Conflict,
            QueueFull { .. } | CacheFull { .. } | Overloaded { .. } => ErrorKind::Overloaded,
            ModelUnavailable { .. } | ShuttingDown | Downstream { .. } => ErrorKind::Unavailable,
            UpstreamStatus { .. } => ErrorKind::Upstream,
            DeadlineExceeded { .. } => ErrorKind::Timeout,
            Unauthorized(_) => ErrorKind::Unauthorized,
            Forbidden(_) => ErrorKind::Forbidden,
            Backend { .. } | Internal(_) => ErrorKind::Internal,
        }
    }
}

pub type CoreResult<T> = Result<T, CoreError>;

/// The text a panic was raised with, where it has one: what a request that a
/// backend or handler panic failed is told.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}
