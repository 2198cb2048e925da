//! The RPCs. Health stays open, as on the HTTP faces; metadata, configuration,
//! statistics and the index need the `read` role, inference `user`, loading and
//! unloading `admin`.

use std::sync::Arc;
use std::time::Duration;

use inferd_auth::Auth;
use inferd_core::budget::DECODE_FACTOR;
use inferd_core::{ErrorKind, InferRequest, Manager, ModelInfo};
use inferd_store::Role;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::http::HeaderMap;
use tonic::{Request, Response, Status, Streaming};

use crate::pb::grpc_inference_service_server::GrpcInferenceService;
use crate::pb::model_metadata_response::TensorMetadata;
use crate::pb::repository_index_response::ModelIndex;
use crate::pb::{self, InferParameter};
use crate::status::{from_core, invalid};
use crate::{config, tensors};

/// The extensions server metadata advertises over gRPC: exactly those served.
const EXTENSIONS: [&str; 4] = [
    "model_repository",
    "statistics",
    "model_configuration",
    "schedule_policy",
];

/// How many answers a stream may have waiting for a slow reader before the
/// next request waits too.
const STREAM_BACKLOG: usize = 16;

#[derive(Clone)]
pub struct Face {
    pub(crate) manager: Manager,
    pub(crate) auth: Option<Arc<Auth>>,
    pub(crate) max_message_bytes: usize,
}

type Answer<T> = Result<Response<T>, Status>;

impl Face {
    /// Checks the call's credential and hands back its metadata (as headers,
    /// moved, not copied) and its message.
    async fn admit<T>(
        &self,
        request: Request<T>,
        needed: Role,
        rpc: &str,
    ) -> Result<(HeaderMap, T), Status> {
        let (metadata, _, message) = request.into_parts();
        let headers = metadata.into_headers();
        if let Some(auth) = &self.auth {
            auth.authorize(&headers, needed, &format!("call {rpc}"))
                .await
                .map_err(from_core)?;
        }
        Ok((headers, message))
    }

    fn info(&self, name: &str, version: &str) -> Result<ModelInfo, Status> {
        let version = parse_version(name, version)?;
        self.manager.info(name, version).map_err(from_core)
    }

    /// One inference: the unary RPC and each message of a stream.
    async fn infer(
        &self,
        req: pb::ModelInferRequest,
        deadline: Option<Duration>,
    ) -> Result<pb::ModelInferResponse, Status> {
        if req.model_name.is_empty() {
            return Err(invalid("model_name is required"));
        }
        // tonic has decoded the message already (bounded by the message size
        // limit), so this charge bounds what the decode and the run add on top
        // of it while many calls are in flight, not the message itself.
        let _entered = self.manager.inflight().enter();
        let _charge = self
            .manager
            .inflight()
            .try_charge(req.encoded_len() as u64 * DECODE_FACTOR)
            .map_err(from_core)?;
        let version = parse_version(&req.model_name, &req.model_version)?;
        let timeout = match (timeout_param(&req.parameters)?, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut wanted = Vec::with_capacity(req.outputs.len());
        for o in &req.outputs {
            tensors::refuse_unsupported(&o.parameters, &format!("output '{}'", o.name))?;
            wanted.push(o.name.clone());
        }
        let max = self.manager.config().max_elements;
        let inputs = tensors::decode_inputs(req.inputs, req.raw_input_contents, max)?;
        let res = self
            .manager
            .infer(InferRequest {
                model: req.model_name.clone(),
                version,
                inputs,
                outputs: (!wanted.is_empty()).then_some(wanted),
                timeout,
            })
            .await
            .map_err(from_core)?;
        let (outputs, raw) = res.outputs.iter().map(tensors::encode_output).unzip();
        Ok(pb::ModelInferResponse {
            model_name: req.model_name,
            model_version: res.version.to_string(),
            id: req.id,
            parameters: Default::default(),
            outputs,
            raw_output_contents: raw,
        })
    }
}

fn parse_version(model: &str, v: &str) -> Result<Option<u64>, Status> {
    inferd_core::repository::requested_version(model, v).map_err(from_core)
}

/// Triton's schedule-policy `timeout` parameter, in microseconds.
fn timeout_param(
    params: &std::collections::HashMap<String, InferParameter>,
) -> Result<Option<Duration>, Status> {
    use pb::infer_parameter::ParameterChoice;
    let Some(p) = params.get("timeout") else {
        return Ok(None);
    };
    match p.parameter_choice {
        Some(ParameterChoice::Int64Param(us)) if us >= 0 => {
            Ok(Some(Duration::from_micros(us as u64)))
        }
        Some(ParameterChoice::Uint64Param(us)) => Ok(Some(Duration::from_micros(us))),
        _ => Err(invalid(
            "parameter 'timeout' must be a whole, non-negative number of microseconds",
        )),
    }
}

/// The call's gRPC deadline (`grpc-timeout`, which tritonclient sets from its
/// `client_timeout`), so a request the client gave up on is never computed.
/// Read as the gRPC spec writes it: at most 8 digits and one unit letter;
/// anything else is refused, not guessed at.
pub(crate) fn grpc_deadline(headers: &HeaderMap) -> Result<Option<Duration>, Status> {
    let Some(value) = headers.get("grpc-timeout") else {
        return Ok(None);
    };
    let refuse = || {
        invalid("grpc-timeout must be 1 to 8 digits and a unit (H, M, S, m, u or n), as the gRPC spec writes it")
    };
    let text = value.to_str().map_err(|_| refuse())?;
    let Some(split) = text.len().checked_sub(1).filter(|&n| (1..=8).contains(&n)) else {
        return Err(refuse());
    };
    let (digits, unit) = text.split_at(split);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(refuse());
    }
    let n: u64 = digits.parse().map_err(|_| refuse())?;
    Ok(Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return Err(refuse()),
    }))
}

fn tensor_metadata(s: &inferd_core::TensorSpec) -> TensorMetadata {
    TensorMetadata {
        name: s.name.clone(),
        datatype: s.datatype.as_str().to_string(),
        shape: s.shape_or_any(),
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for Face {
    async fn server_live(
        &self,
        _: Request<pb::ServerLiveRequest>,
    ) -> Answer<pb::ServerLiveResponse> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Answer<pb::ServerReadyResponse> {
        let ready = !self.manager.is_shutting_down();
        Ok(Response::new(pb::ServerReadyResponse { ready }))
    }

    /// An unknown model is not ready (as Triton answers), not an error.
    async fn model_ready(
        &self,
        request: Request<pb::ModelReadyRequest>,
    ) -> Answer<pb::ModelReadyResponse> {
        let req = request.into_inner();
        let version = parse_version(&req.name, &req.version)?;
        let ready = match self.manager.is_ready(&req.name, version) {
            Ok(ready) => ready,
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(e) => return Err(from_core(e)),
        };
        Ok(Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        request: Request<pb::ServerMetadataRequest>,
    ) -> Answer<pb::ServerMetadataResponse> {
        self.admit(request, Role::Read, "ServerMetadata").await?;
        Ok(Response::new(pb::ServerMetadataResponse {
            name: "inferd".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: EXTENSIONS.iter().map(|e| e.to_string()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<pb::ModelMetadataRequest>,
    ) -> Answer<pb::ModelMetadataResponse> {
        let (_, req) = self.admit(request, Role::Read, "ModelMetadata").await?;
        let info = self.info(&req.name, &req.version)?;
        Ok(Response::new(pb::ModelMetadataResponse {
            name: info.name.clone(),
            versions: info.versions.iter().map(u64::to_string).collect(),
            platform: info.config.platform.clone(),
            inputs: info.inputs.iter().map(tensor_metadata).collect(),
            outputs: info.outputs.iter().map(tensor_metadata).collect(),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<pb::ModelInferRequest>,
    ) -> Answer<pb::ModelInferResponse> {
        let (headers, req) = self.admit(request, Role::User, "ModelInfer").await?;
        let deadline = grpc_deadline(&headers)?;
        Ok(Response::new(self.infer(req, deadline).await?))
    }

    type ModelStreamInferStream = ReceiverStream<Result<pb::ModelStreamInferResponse, Status>>;

    /// Requests on one stream run one after another, each answered in order;
    /// a failed one is an `error_message` (with its id) and the stream goes on.
    /// When the client goes away the loop ends at its next answer.
    async fn model_stream_infer(
        &self,
        request: Request<Streaming<pb::ModelInferRequest>>,
    ) -> Answer<Self::ModelStreamInferStream> {
        let (_, req) = self.admit(request, Role::User, "ModelStreamInfer").await?;
        let mut incoming = req;
        let (tx, rx) = mpsc::channel(STREAM_BACKLOG);
        let face = self.clone();
        tokio::spawn(async move {
            loop {
                let req = match incoming.message().await {
                    Ok(Some(req)) => req,
                    Ok(None) => break,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                };
                let id = req.id.clone();
                let answer = match face.infer(req, None).await {
                    Ok(r) => pb::ModelStreamInferResponse {
                        error_message: String::new(),
                        infer_response: Some(r),
                    },
                    Err(status) => pb::ModelStreamInferResponse {
                        error_message: status.message().to_string(),
                        infer_response: Some(pb::ModelInferResponse {
                            id,
                            ..Default::default()
                        }),
                    },
                };
                if tx.send(Ok(answer)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn model_config(
        &self,
        request: Request<pb::ModelConfigRequest>,
    ) -> Answer<pb::ModelConfigResponse> {
        let (_, req) = self.admit(request, Role::Read, "ModelConfig").await?;
        let info = self.info(&req.name, &req.version)?;
        Ok(Response::new(pb::ModelConfigResponse {
            config: Some(config::model_config(&info)),
        }))
    }

    async fn model_statistics(
        &self,
        request: Request<pb::ModelStatisticsRequest>,
    ) -> Answer<pb::ModelStatisticsResponse> {
        let (_, req) = self.admit(request, Role::Read, "ModelStatistics").await?;
        let name = (!req.name.is_empty()).then_some(req.name.as_str());
        let version = parse_version(&req.name, &req.version)?;
        let rows = self.manager.stats(name, version).map_err(from_core)?;
        Ok(Response::new(pb::ModelStatisticsResponse {
            model_stats: rows
                .iter()
                .map(|(n, v, s)| config::statistics(n, *v, s))
                .collect(),
        }))
    }

    async fn repository_index(
        &self,
        request: Request<pb::RepositoryIndexRequest>,
    ) -> Answer<pb::RepositoryIndexResponse> {
        let (_, req) = self.admit(request, Role::Read, "RepositoryIndex").await?;
        let only_ready = req.ready;
        let models = self
            .manager
            .index()
            .into_iter()
            .filter(|e| !only_ready || e.state == "READY")
            .map(|e| ModelIndex {
                name: e.name,
                version: e.version.map(|v| v.to_string()).unwrap_or_default(),
                state: e.state.to_string(),
                reason: e.reason,
            })
            .collect();
        Ok(Response::new(pb::RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        request: Request<pb::RepositoryModelLoadRequest>,
    ) -> Answer<pb::RepositoryModelLoadResponse> {
        let (_, req) = self
            .admit(request, Role::Admin, "RepositoryModelLoad")
            .await?;
        if req.model_name.is_empty() {
            return Err(invalid("model_name is required"));
        }
        inferd_core::repository::check_load_parameters(req.parameters.keys()).map_err(from_core)?;
        self.manager
            .load(&req.model_name, None)
            .await
            .map_err(from_core)?;
        Ok(Response::new(pb::RepositoryModelLoadResponse {}))
    }

    /// In-flight requests finish before the model's memory is freed.
    async fn repository_model_unload(
        &self,
        request: Request<pb::RepositoryModelUnloadRequest>,
    ) -> Answer<pb::RepositoryModelUnloadResponse> {
        let (_, req) = self
            .admit(request, Role::Admin, "RepositoryModelUnload")
            .await?;
        if req.model_name.is_empty() {
            return Err(invalid("model_name is required"));
        }
        self.manager
            .unload(&req.model_name, None)
            .await
            .map_err(from_core)?;
        Ok(Response::new(pb::RepositoryModelUnloadResponse {}))
    }
}
