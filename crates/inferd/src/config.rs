//! The server's settings: flags (clap, each with an `INFERD_…` env var) over an
//! optional TOML file over defaults, resolved once into `Settings`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use inferd_core::manager::Budget;
use inferd_core::ManagerConfig;
use inferd_http::{Compat, ConnectionLimits, JobConfig, ServiceLimits, WsLimits};
use serde::Deserialize;

use crate::orchestrator::{
    OrchestratorArgs, OrchestratorFile, OrchestratorKind, OrchestratorSettings,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompatArg {
    /// `GET /v1/models` and `GET /v1/models/{m}` answer objects (KServe V1, OpenAI).
    Kserve,
    /// Those routes answer Pinferencia's arrays.
    Pinferencia,
}

/// `inferd serve` flags. Every one is optional here so that the config file can
/// fill what neither a flag nor an env var set.
#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// Model repository: one folder per model (default ./models).
    #[arg(long, env = "INFERD_MODELS")]
    pub models: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1).
    #[arg(long, env = "INFERD_HOST")]
    pub host: Option<IpAddr>,
    /// Port to listen on (default 8000, or KServe's 8080 with --model_dir; $PORT is
    /// honoured after INFERD_PORT; 0 picks a free port).
    #[arg(long, visible_alias = "http_port", env = "INFERD_PORT")]
    pub port: Option<u16>,
    /// Port of the KServe V2 gRPC face, on the same address (default 8001, as Triton,
    /// or KServe's 8081 with --model_dir; 0 picks a free port).
    #[arg(long, visible_alias = "grpc_port", env = "INFERD_GRPC_PORT")]
    pub grpc_port: Option<u16>,
    /// KServe's container contract: serve the model KServe unpacked here (a bare
    /// model.onnx, .gguf or sentence-transformers export, one model folder, or a
    /// whole repository) instead of --models; the address then defaults to 0.0.0.0.
    #[arg(long = "model_dir", env = "INFERD_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
    /// The name the --model_dir model answers to (KServe passes the InferenceService's; default "model").
    #[arg(long = "model_name", env = "INFERD_MODEL_NAME")]
    pub model_name: Option<String>,
    /// TOML file with any of these settings as keys (snake_case).
    #[arg(long, env = "INFERD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Shape of `GET /v1/models[/{m}]`: kserve (objects, default) or pinferencia (arrays).
    #[arg(long, env = "INFERD_COMPAT", value_enum)]
    pub compat: Option<CompatArg>,
    /// Most model versions in memory at once; least recently used idle ones are evicted (0 = no limit).
    #[arg(long, env = "INFERD_MAX_LOADED_MODELS")]
    pub max_loaded_models: Option<usize>,
    /// Memory budget for loaded models in bytes (0 = no limit).
    #[arg(long, env = "INFERD_MAX_MEMORY_BYTES")]
    pub max_memory_bytes: Option<u64>,
    /// Largest request body in bytes (default 64 MiB); larger bodies get 413.
    #[arg(long, env = "INFERD_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Largest number of elements in one tensor (default 16777216).
    #[arg(long, env = "INFERD_MAX_ELEMENTS")]
    pub max_elements: Option<usize>,
    /// Bytes of request data in flight at once, decoding included (default a quarter
    /// of physical memory, at least 256 MiB); past it requests get 503 and Retry-After.
    #[arg(long, env = "INFERD_MAX_INFLIGHT_BYTES")]
    pub max_inflight_bytes: Option<u64>,
    /// Most images, texts or batch items in one request when the model declares no
    /// max_batch_size (default 256).
    #[arg(long, env = "INFERD_MAX_BATCH_ITEMS")]
    pub max_batch_items: Option<usize>,
    /// Deadline of a request that sets none, in milliseconds (default 60000).
    #[arg(long, env = "INFERD_DEFAULT_TIMEOUT_MS")]
    pub default_timeout_ms: Option<u64>,
    /// Runs of a compute-only model predicted to take at most this many
    /// microseconds run on the request's thread, skipping the hand-off to a
    /// worker (default 50; 0 hands every run to a worker; at most 1000).
    #[arg(long, env = "INFERD_INLINE_RUN_US")]
    pub inline_run_us: Option<u64>,
    /// Load every model at start (default true); otherwise each loads on first use.
    #[arg(long, env = "INFERD_LOAD_AT_STARTUP")]
    pub load_at_startup: Option<bool>,
    /// Where state that must survive a restart lives (SQLite; default ./data).
    #[arg(long, env = "INFERD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Tasks running async jobs (default 2).
    #[arg(long, env = "INFERD_JOB_WORKERS")]
    pub job_workers: Option<usize>,
    /// Most async jobs waiting at once; more get 429 (default 1000).
    #[arg(long, env = "INFERD_MAX_PENDING_JOBS")]
    pub max_pending_jobs: Option<usize>,
    /// Seconds a finished async job's result is kept (default 86400).
    #[arg(long, env = "INFERD_JOB_RETENTION_S")]
    pub job_retention_s: Option<u64>,
    /// Serve without credentials on a non-loopback address while no API key or
    /// account exists (otherwise such a start is refused).
    #[arg(long, env = "INFERD_INSECURE")]
    pub insecure: bool,
    /// Seconds a ZStack login session lasts (default 7200).
    #[arg(long, env = "INFERD_SESSION_TTL_S")]
    pub session_ttl_s: Option<u64>,
    /// Most replicas one inference service may ask for (default 8).
    #[arg(long, env = "INFERD_MAX_SERVICE_REPLICAS")]
    pub max_service_replicas: Option<u32>,
    /// Model-service recipes the catalog is seeded with at first start
    /// (default ./catalog/model-services.json).
    #[arg(long, env = "INFERD_CATALOG")]
    pub catalog: Option<PathBuf>,
    /// ONNX Runtime's shared library, for models with `backend = "onnxruntime"`
    /// (default ./lib/onnxruntime/libonnxruntime.so, where scripts/fetch-models puts it).
    #[arg(long, env = "INFERD_ONNXRUNTIME_LIB")]
    pub onnxruntime_lib: Option<PathBuf>,
    /// Milliseconds a request head may take, from its first byte (or from the
    /// connection's start) to its end (default 10000); a slower client is disconnected.
    #[arg(long, env = "INFERD_HEADER_READ_TIMEOUT_MS")]
    pub header_read_timeout_ms: Option<u64>,
    /// Milliseconds a request body may stall before its next chunk (default 30000);
    /// a stalled body gets 408.
    #[arg(long, env = "INFERD_BODY_READ_TIMEOUT_MS")]
    pub body_read_timeout_ms: Option<u64>,
    /// Milliseconds an idle keep-alive connection is kept open (default 75000).
    #[arg(long, env = "INFERD_KEEP_ALIVE_TIMEOUT_MS")]
    pub keep_alive_timeout_ms: Option<u64>,
    /// Milliseconds a client may stop taking the bytes of an answer (a stream
    /// included) before its connection is closed (default 30000).
    #[arg(long, env = "INFERD_SEND_TIMEOUT_MS")]
    pub send_timeout_ms: Option<u64>,
    /// Milliseconds between SIGTERM and the end of accepting (default 0): readiness
    /// answers 503 at once while requests are still taken, so a load balancer (a
    /// Kubernetes Service) stops routing here before the port closes.
    #[arg(long, env = "INFERD_DRAIN_DELAY_MS")]
    pub drain_delay_ms: Option<u64>,
    /// Hosts (`host` or `host:port`, comma-separated) a ZStack `X-Web-Hook` may
    /// name; the server calls back no other (default none: webhooks are refused).
    #[arg(long, env = "INFERD_ZSTACK_WEBHOOK_HOSTS", value_delimiter = ',')]
    pub zstack_webhook_hosts: Vec<String>,
    /// Largest request head (request line and headers) in bytes (default 65536);
    /// a larger one gets 431. Also the gRPC header list limit.
    #[arg(long, env = "INFERD_MAX_HEADER_BYTES")]
    pub max_header_bytes: Option<usize>,
    /// Most headers in one request (default 128); more get 431.
    #[arg(long, env = "INFERD_MAX_HEADERS")]
    pub max_headers: Option<usize>,
    /// Most connections open at once on each port (default 4096); the next HTTP
    /// connection gets 503 "too many connections", the next gRPC one is closed.
    #[arg(long, env = "INFERD_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Largest WebSocket message on /inference/ws in bytes (default --max-body-bytes).
    #[arg(long, env = "INFERD_WS_MAX_MESSAGE_BYTES")]
    pub ws_max_message_bytes: Option<usize>,
    /// Largest WebSocket frame on /inference/ws in bytes (default 16777216).
    #[arg(long, env = "INFERD_WS_MAX_FRAME_BYTES")]
    pub ws_max_frame_bytes: Option<usize>,
    /// Milliseconds an /inference/ws session may wait for the client's next
    /// message before it is closed (default 300000).
    #[arg(long, env = "INFERD_WS_IDLE_TIMEOUT_MS")]
    pub ws_idle_timeout_ms: Option<u64>,
    #[command(flatten)]
    pub orchestrator: OrchestratorArgs,
}

/// The config file's keys: the same names as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    models: Option<PathBuf>,
    host: Option<IpAddr>,
    port: Option<u16>,
    grpc_port: Option<u16>,
    compat: Option<CompatArg>,
    max_loaded_models: Option<usize>,
    max_memory_bytes: Option<u64>,
    max_body_bytes: Option<usize>,
    max_elements: Option<usize>,
    max_inflight_bytes: Option<u64>,
    max_batch_items: Option<usize>,
    default_timeout_ms: Option<u64>,
    inline_run_us: Option<u64>,
    load_at_startup: Option<bool>,
    pub(crate) data_dir: Option<PathBuf>,
    job_workers: Option<usize>,
    max_pending_jobs: Option<usize>,
    job_retention_s: Option<u64>,
    insecure: Option<bool>,
    session_ttl_s: Option<u64>,
    max_service_replicas: Option<u32>,
    catalog: Option<PathBuf>,
    onnxruntime_lib: Option<PathBuf>,
    header_read_timeout_ms: Option<u64>,
    body_read_timeout_ms: Option<u64>,
    keep_alive_timeout_ms: Option<u64>,
    send_timeout_ms: Option<u64>,
    drain_delay_ms: Option<u64>,
    zstack_webhook_hosts: Option<Vec<String>>,
    max_header_bytes: Option<usize>,
    max_headers: Option<usize>,
    max_connections: Option<usize>,
    ws_max_message_bytes: Option<usize>,
    ws_max_frame_bytes: Option<usize>,
    ws_idle_timeout_ms: Option<u64>,
    orchestrator: Option<OrchestratorKind>,
    kubeconfig: Option<PathBuf>,
    kube_namespace: Option<String>,
    kube_storage_uri_prefix: Option<String>,
    kube_timeout_ms: Option<u64>,
    kube_sync_ms: Option<u64>,
}

impl FileConfig {
    /// The file's settings, or none without a file; the key commands read the
    /// same file `serve` does, so they find the same data directory.
    pub(crate) fn read(path: Option<&Path>) -> anyhow::Result<FileConfig> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// Settings after layering, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub models: PathBuf,
    /// KServe's `--model_name` and `--model_dir`, which replace `models`.
    pub kserve: Option<(String, PathBuf)>,
    pub host: IpAddr,
    pub port: u16,
    pub grpc_port: u16,
    pub compat: Compat,
    pub max_body_bytes: usize,
    pub load_at_startup: bool,
    pub manager: ManagerConfig,
    pub data_dir: PathBuf,
    pub jobs: JobConfig,
    pub insecure: bool,
    pub session_ttl: Duration,
    pub services: ServiceLimits,
    pub catalog: PathBuf,
    pub onnxruntime_lib: PathBuf,
    pub connections: ConnectionLimits,
    pub ws: WsLimits,
    /// From SIGTERM to the end of accepting, with readiness 503.
    pub drain_delay: Duration,
    pub zstack_webhook_hosts: Vec<String>,
    pub orchestrator: OrchestratorSettings,
}

impl ServeArgs {
    pub fn resolve(self) -> anyhow::Result<Settings> {
        let file = FileConfig::read(self.config.as_deref())?;
        let env_port = std::env::var("PORT")
            .ok()
            .map(|p| p.parse::<u16>().context("$PORT is not a port number"))
            .transpose()?;
        let defaults = ManagerConfig::default();
        let timeout_ms = self
            .default_timeout_ms
            .or(file.default_timeout_ms)
            .unwrap_or(60_000);
        if timeout_ms == 0 {
            anyhow::bail!("default_timeout_ms must be above 0");
        }
        let inline_run = self
            .inline_run_us
            .or(file.inline_run_us)
            .map_or(defaults.inline_run, Duration::from_micros);
        if inline_run > Duration::from_millis(1) {
            anyhow::bail!(
                "inline_run_us must be at most 1000 (a runtime thread is held that long)"
            );
        }
        let max_elements = self
            .max_elements
            .or(file.max_elements)
            .unwrap_or(defaults.max_elements);
        if max_elements == 0 {
            anyhow::bail!("max_elements must be above 0");
        }
        let max_inflight_bytes = self
            .max_inflight_bytes
            .or(file.max_inflight_bytes)
            .unwrap_or(defaults.max_inflight_bytes);
        let max_batch_items = self
            .max_batch_items
            .or(file.max_batch_items)
            .unwrap_or(defaults.max_batch_items);
        if max_inflight_bytes == 0 || max_batch_items == 0 {
            anyhow::bail!("max_inflight_bytes and max_batch_items must be above 0");
        }
        let session_ttl_s = self.session_ttl_s.or(file.session_ttl_s).unwrap_or(7200);
        let max_replicas = self
            .max_service_replicas
            .or(file.max_service_replicas)
            .unwrap_or(8);
        if session_ttl_s == 0 || max_replicas == 0 {
            anyhow::bail!("session_ttl_s and max_service_replicas must be above 0");
        }
        let max_memory_bytes = self.max_memory_bytes.or(file.max_memory_bytes).unwrap_or(0);
        let max_body_bytes = self
            .max_body_bytes
            .or(file.max_body_bytes)
            .unwrap_or(inferd_http::DEFAULT_MAX_BODY_BYTES);
        let drain_delay =
            Duration::from_millis(self.drain_delay_ms.or(file.drain_delay_ms).unwrap_or(0));
        if drain_delay > Duration::from_secs(3600) {
            anyhow::bail!("drain_delay_ms must be at most 3600000 (an hour)");
        }
        let connections = connection_limits(&self, &file)?;
        let ws = ws_limits(&self, &file, max_body_bytes)?;
        let kserve = match (self.model_dir.clone(), self.model_name.clone()) {
            (Some(dir), name) => Some((
                name.unwrap_or_else(|| crate::kserve::DEFAULT_NAME.to_string()),
                dir,
            )),
            (None, Some(_)) => anyhow::bail!("--model_name needs --model_dir (the model to serve)"),
            (None, None) => None,
        };
        // Run as KServe runs a container: all interfaces, KServe's ports.
        let (host, port, grpc_port) = match kserve {
            Some(_) => (
                IpAddr::from([0, 0, 0, 0]),
                crate::kserve::HTTP_PORT,
                crate::kserve::GRPC_PORT,
            ),
            None => (IpAddr::from([127, 0, 0, 1]), 8000, 8001),
        };
        Ok(Settings {
            models: self
                .models
                .or(file.models)
                .unwrap_or_else(|| PathBuf::from("./models")),
            kserve,
            host: self.host.or(file.host).unwrap_or(host),
            port: self.port.or(env_port).or(file.port).unwrap_or(port),
            grpc_port: self.grpc_port.or(file.grpc_port).unwrap_or(grpc_port),
            compat: match self.compat.or(file.compat).unwrap_or(CompatArg::Kserve) {
                CompatArg::Kserve => Compat::Kserve,
                CompatArg::Pinferencia => Compat::Pinferencia,
            },
            max_body_bytes,
            load_at_startup: self
                .load_at_startup
                .or(file.load_at_startup)
                .unwrap_or(true),
            manager: ManagerConfig {
                budget: Budget {
                    max_loaded_models: self
                        .max_loaded_models
                        .or(file.max_loaded_models)
                        .unwrap_or(0),
                    max_memory_bytes,
                },
                max_elements,
                default_timeout: Duration::from_millis(timeout_ms),
                max_batch_items,
                max_inflight_bytes,
                inline_run,
            },
            data_dir: self
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./data")),
            jobs: JobConfig {
                workers: self.job_workers.or(file.job_workers).unwrap_or(2).max(1),
                max_pending: self
                    .max_pending_jobs
                    .or(file.max_pending_jobs)
                    .unwrap_or(1000)
                    .max(1),
                retention: Duration::from_secs(
                    self.job_retention_s
                        .or(file.job_retention_s)
                        .unwrap_or(86_400),
                ),
                ..JobConfig::default()
            },
            insecure: self.insecure || file.insecure.unwrap_or(false),
            session_ttl: Duration::from_secs(session_ttl_s),
            services: ServiceLimits {
                max_replicas,
                memory_bytes: (max_memory_bytes > 0).then_some(max_memory_bytes),
            },
            catalog: self
                .catalog
                .or(file.catalog)
                .unwrap_or_else(|| PathBuf::from("./catalog/model-services.json")),
            onnxruntime_lib: self
                .onnxruntime_lib
                .or(file.onnxruntime_lib)
                .unwrap_or_else(|| PathBuf::from(inferd_backend_embed::DEFAULT_ONNXRUNTIME_LIB)),
            connections,
            ws,
            drain_delay,
            zstack_webhook_hosts: if self.zstack_webhook_hosts.is_empty() {
                file.zstack_webhook_hosts.unwrap_or_default()
            } else {
                self.zstack_webhook_hosts
            },
            orchestrator: self.orchestrator.resolve(OrchestratorFile {
                orchestrator: file.orchestrator,
                kubeconfig: file.kubeconfig,
                kube_namespace: file.kube_namespace,
                kube_storage_uri_prefix: file.kube_storage_uri_prefix,
                kube_timeout_ms: file.kube_timeout_ms,
                kube_sync_ms: file.kube_sync_ms,
            })?,
        })
    }
}

/// The most `--max-header-bytes` may raise a request head to: hyper buffers a
/// head whole, so this bounds one connection's read buffer.
const MAX_HEADER_BYTES: usize = 16 << 20;

/// What one client may hold of the server.
fn connection_limits(args: &ServeArgs, file: &FileConfig) -> anyhow::Result<ConnectionLimits> {
    let d = ConnectionLimits::default();
    Ok(ConnectionLimits {
        header_read_timeout: millis(
            args.header_read_timeout_ms.or(file.header_read_timeout_ms),
            d.header_read_timeout,
            "header_read_timeout_ms",
        )?,
        body_read_timeout: millis(
            args.body_read_timeout_ms.or(file.body_read_timeout_ms),
            d.body_read_timeout,
            "body_read_timeout_ms",
        )?,
        keep_alive_timeout: millis(
            args.keep_alive_timeout_ms.or(file.keep_alive_timeout_ms),
            d.keep_alive_timeout,
            "keep_alive_timeout_ms",
        )?,
        send_timeout: millis(
            args.send_timeout_ms.or(file.send_timeout_ms),
            d.send_timeout,
            "send_timeout_ms",
        )?,
        max_header_bytes: match positive(
            args.max_header_bytes.or(file.max_header_bytes),
            d.max_header_bytes,
            "max_header_bytes",
        )? {
            n if n > MAX_HEADER_BYTES => {
                anyhow::bail!("max_header_bytes must be at most {MAX_HEADER_BYTES} (16 MiB)")
            }
            n => n,
        },
        max_headers: positive(
            args.max_headers.or(file.max_headers),
            d.max_headers,
            "max_headers",
        )?,
        max_connections: positive(
            args.max_connections.or(file.max_connections),
            d.max_connections,
            "max_connections",
        )?,
    })
}

/// `/inference/ws` limits: messages default to the body limit.
fn ws_limits(
    args: &ServeArgs,
    file: &FileConfig,
    max_body_bytes: usize,
) -> anyhow::Result<WsLimits> {
    let d = WsLimits::for_body_limit(max_body_bytes);
    Ok(WsLimits {
        max_message_bytes: positive(
            args.ws_max_message_bytes.or(file.ws_max_message_bytes),
            d.max_message_bytes,
            "ws_max_message_bytes",
        )?,
        max_frame_bytes: positive(
            args.ws_max_frame_bytes.or(file.ws_max_frame_bytes),
            d.max_frame_bytes,
            "ws_max_frame_bytes",
        )?,
        idle_timeout: millis(
            args.ws_idle_timeout_ms.or(file.ws_idle_timeout_ms),
            d.idle_timeout,
            "ws_idle_timeout_ms",
        )?,
    })
}

/// A setting in milliseconds (flag or file key, else `default`); 0 is
/// refused, and so is more than a day, which no client-facing wait needs and
/// which keeps every `Instant + timeout` far from the clock's end.
pub(crate) fn millis(set: Option<u64>, default: Duration, name: &str) -> anyhow::Result<Duration> {
    const DAY_MS: u64 = 24 * 3600 * 1000;
    let value = set.map(Duration::from_millis).unwrap_or(default);
    if value.is_zero() || value > Duration::from_millis(DAY_MS) {
        anyhow::bail!("{name} must be between 1 and {DAY_MS} (a day)");
    }
    Ok(value)
}

/// A count or size (flag or file key, else `default`); 0 is refused.
fn positive(set: Option<usize>, default: usize, name: &str) -> anyhow::Result<usize> {
    match set.unwrap_or(default) {
        0 => anyhow::bail!("{name} must be above 0"),
        n => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let dir = std::env::temp_dir().join(format!("inferd-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("inferd.toml");
        std::fs::write(
            &file,
            "port = 9001\ngrpc_port = 9002\nmax_loaded_models = 3\ncompat = 'pinferencia'\n",
        )
        .unwrap();
        let s = ServeArgs {
            config: Some(file.clone()),
            max_loaded_models: Some(5),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(s.manager.budget.max_loaded_models, 5);
        assert_eq!(s.grpc_port, 9002);
        assert_eq!(s.compat, Compat::Pinferencia);
        assert_eq!(s.max_body_bytes, 64 << 20);
        std::fs::write(&file, "prot = 1\n").unwrap();
        let err = ServeArgs {
            config: Some(file),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(format!("{err:#}").contains("prot"), "{err:#}");
    }

    #[test]
    fn transport_limits_layer_like_the_rest_and_refuse_zero() {
        let file = std::env::temp_dir().join(format!(
            "inferd-config-transport-{}.toml",
            std::process::id()
        ));
        std::fs::write(
            &file,
            "header_read_timeout_ms = 500\nmax_connections = 7\nmax_body_bytes = 1000\n",
        )
        .unwrap();
        let s = ServeArgs {
            config: Some(file.clone()),
            max_connections: Some(9),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(
            s.connections.header_read_timeout,
            Duration::from_millis(500)
        );
        assert_eq!(s.connections.max_connections, 9);
        assert_eq!(s.connections.body_read_timeout, Duration::from_secs(30));
        assert_eq!(s.connections.max_headers, 128);
        assert_eq!(s.ws.max_message_bytes, 1000, "defaults to the body limit");
        assert_eq!(s.ws.max_frame_bytes, 16 << 20);
        let err = ServeArgs {
            config: Some(file.clone()),
            keep_alive_timeout_ms: Some(0),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("keep_alive_timeout_ms"), "{err}");
        // Values that would overflow a deadline or a buffer size are refused.
        for (args, name) in [
            (
                ServeArgs {
                    keep_alive_timeout_ms: Some(u64::MAX),
                    ..Default::default()
                },
                "keep_alive_timeout_ms",
            ),
            (
                ServeArgs {
                    max_header_bytes: Some(usize::MAX),
                    ..Default::default()
                },
                "max_header_bytes",
            ),
        ] {
            let err = ServeArgs {
                config: Some(file.clone()),
                ..args
            }
            .resolve()
            .unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
        let _ = std::fs::remove_file(file);
    }
}
