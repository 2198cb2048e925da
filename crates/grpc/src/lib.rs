//! The Open Inference Protocol V2 over gRPC: Triton's and KServe's
//! `inference.GRPCInferenceService`, on its own port (8001 by default, as
//! Triton). It is a face like the HTTP ones: each RPC decodes its message,
//! makes one call on the core's `Manager` and encodes the answer or the core's
//! error as a gRPC status. Credentials come in the request metadata
//! (`authorization: Bearer <key>` or `x-api-key: <key>`) and are checked by the
//! same `Auth` as the HTTP faces.

mod admission;
mod config;
mod service;
mod status;
mod tensors;

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    tonic::include_proto!("inference");
}

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use inferd_auth::Auth;
use inferd_core::Manager;
use tokio::net::TcpListener;

pub use admission::GrpcLimits;
pub use service::Face;

/// The gRPC service with inferd's limits: messages up to `max_message_bytes`
/// each way (tonic's own default, 4 MiB, would refuse ordinary image batches).
pub fn service(face: Face) -> pb::grpc_inference_service_server::GrpcInferenceServiceServer<Face> {
    let max = face.max_message_bytes;
    pb::grpc_inference_service_server::GrpcInferenceServiceServer::new(face)
        .max_decoding_message_size(max)
        .max_encoding_message_size(usize::MAX)
}

/// Everything the face needs from the server's wiring.
pub fn face(manager: Manager, auth: Option<Arc<Auth>>, max_message_bytes: usize) -> Face {
    Face {
        manager,
        auth,
        max_message_bytes,
    }
}

/// An idle connection is pinged this often, and closed when a ping goes
/// unanswered for `KEEPALIVE_TIMEOUT`: dead peers do not hold their place.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Calls in flight on one connection; a client wanting more waits for one to end.
const MAX_CONCURRENT_STREAMS: u32 = 1024;

/// Serves the face on `listener` until `shutdown` resolves, then lets the calls
/// in flight finish.
pub async fn serve(
    listener: TcpListener,
    face: Face,
    limits: GrpcLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .http2_max_header_list_size(limits.max_header_bytes)
        .add_service(service(face))
        .serve_with_incoming_shutdown(admission::admitted(listener, limits), shutdown)
        .await
}

#[cfg(test)]
mod tests;
