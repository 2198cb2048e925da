//! The server's settings: flags (clap, each with an `INFERD_…` env var) over an
//! optional TOML file over defaults, resolved once into `Settings`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use inferd_core::manager::Budget;
use inferd_core::ManagerConfig;
use inferd_http::{Compat, JobConfig, ServiceLimits};
use serde::Deserialize;

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
    /// Port to listen on (default 8000; $PORT is honoured after INFERD_PORT; 0 picks a free port).
    #[arg(long, env = "INFERD_PORT")]
    pub port: Option<u16>,
    /// Port of the KServe V2 gRPC face, on the same address (default 8001, as Triton; 0 picks a free port).
    #[arg(long, env = "INFERD_GRPC_PORT")]
    pub grpc_port: Option<u16>,
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
    /// Deadline of a request that sets none, in milliseconds (default 60000).
    #[arg(long, env = "INFERD_DEFAULT_TIMEOUT_MS")]
    pub default_timeout_ms: Option<u64>,
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
    default_timeout_ms: Option<u64>,
    load_at_startup: Option<bool>,
    pub(crate) data_dir: Option<PathBuf>,
    job_workers: Option<usize>,
    max_pending_jobs: Option<usize>,
    job_retention_s: Option<u64>,
    insecure: Option<bool>,
    session_ttl_s: Option<u64>,
    max_service_replicas: Option<u32>,
    catalog: Option<PathBuf>,
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
        let max_elements = self
            .max_elements
            .or(file.max_elements)
            .unwrap_or(defaults.max_elements);
        if max_elements == 0 {
            anyhow::bail!("max_elements must be above 0");
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
        Ok(Settings {
            models: self
                .models
                .or(file.models)
                .unwrap_or_else(|| PathBuf::from("./models")),
            host: self
                .host
                .or(file.host)
                .unwrap_or(IpAddr::from([127, 0, 0, 1])),
            port: self.port.or(env_port).or(file.port).unwrap_or(8000),
            grpc_port: self.grpc_port.or(file.grpc_port).unwrap_or(8001),
            compat: match self.compat.or(file.compat).unwrap_or(CompatArg::Kserve) {
                CompatArg::Kserve => Compat::Kserve,
                CompatArg::Pinferencia => Compat::Pinferencia,
            },
            max_body_bytes: self
                .max_body_bytes
                .or(file.max_body_bytes)
                .unwrap_or(inferd_http::DEFAULT_MAX_BODY_BYTES),
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
        })
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
}
