//! The one table from the core's error kinds to gRPC status codes, as Triton's
//! gRPC server reports the same failures.

use inferd_core::{CoreError, ErrorKind};
use tonic::{Code, Status};

pub fn code_of(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidInput => Code::InvalidArgument,
        // gRPC's own code for a message over a size limit.
        ErrorKind::TooLarge => Code::ResourceExhausted,
        ErrorKind::Unsupported => Code::Unimplemented,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::Conflict => Code::FailedPrecondition,
        ErrorKind::NotReady | ErrorKind::Unavailable | ErrorKind::Upstream => Code::Unavailable,
        ErrorKind::Overloaded => Code::ResourceExhausted,
        ErrorKind::Timeout => Code::DeadlineExceeded,
        ErrorKind::Unauthorized => Code::Unauthenticated,
        ErrorKind::Forbidden => Code::PermissionDenied,
        ErrorKind::Internal => Code::Internal,
    }
}

pub fn from_core(e: CoreError) -> Status {
    Status::new(code_of(e.kind()), e.to_string())
}

pub fn invalid(message: impl Into<String>) -> Status {
    Status::invalid_argument(message.into())
}
