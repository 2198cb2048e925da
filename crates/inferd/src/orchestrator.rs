//! `--orchestrator`: where seed-003 services run. `local` (the default) runs
//! their replicas in this process; `kubernetes` makes each one a KServe
//! InferenceService in a cluster (`inferd-kube`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use inferd_kube::{KubeSettings, Kubernetes};
use inferd_services::Services;
use inferd_store::Store;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OrchestratorKind {
    /// Replicas are worker instances in this process.
    #[default]
    Local,
    /// Each service is a KServe InferenceService (RawDeployment, runtime `inferd`).
    Kubernetes,
}

/// The orchestrator's flags; the config file takes the same keys.
#[derive(Debug, Args, Default)]
pub struct OrchestratorArgs {
    /// Where seed-003 services run: local (default) or kubernetes (KServe
    /// InferenceServices, through $KUBECONFIG or the pod's service account).
    #[arg(long, env = "INFERD_ORCHESTRATOR", value_enum)]
    pub orchestrator: Option<OrchestratorKind>,
    /// Kubeconfig to reach the cluster with (default $KUBECONFIG, ~/.kube/config,
    /// then the pod's service account).
    #[arg(long, env = "INFERD_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace of the InferenceServices (default: the kubeconfig's, or the pod's).
    #[arg(long, env = "INFERD_KUBE_NAMESPACE")]
    pub kube_namespace: Option<String>,
    /// Where KServe fetches models from, such as pvc://models or s3://bucket/models;
    /// a service's storageUri is this, then /<model>/<version>. Needed with kubernetes.
    #[arg(long, env = "INFERD_KUBE_STORAGE_URI_PREFIX")]
    pub kube_storage_uri_prefix: Option<String>,
    /// Milliseconds one call to the cluster's API may take (default 10000).
    #[arg(long, env = "INFERD_KUBE_TIMEOUT_MS")]
    pub kube_timeout_ms: Option<u64>,
    /// Milliseconds between two readings of the InferenceServices' status (default 5000).
    #[arg(long, env = "INFERD_KUBE_SYNC_MS")]
    pub kube_sync_ms: Option<u64>,
}

/// The same keys in the config file.
#[derive(Debug, Default)]
pub(crate) struct OrchestratorFile {
    pub orchestrator: Option<OrchestratorKind>,
    pub kubeconfig: Option<PathBuf>,
    pub kube_namespace: Option<String>,
    pub kube_storage_uri_prefix: Option<String>,
    pub kube_timeout_ms: Option<u64>,
    pub kube_sync_ms: Option<u64>,
}

#[derive(Debug, Clone)]
pub enum OrchestratorSettings {
    Local,
    Kubernetes { kube: KubeSettings, sync: Duration },
}

impl OrchestratorArgs {
    pub(crate) fn resolve(self, file: OrchestratorFile) -> anyhow::Result<OrchestratorSettings> {
        if self.orchestrator.or(file.orchestrator).unwrap_or_default() == OrchestratorKind::Local {
            return Ok(OrchestratorSettings::Local);
        }
        let prefix = self
            .kube_storage_uri_prefix
            .or(file.kube_storage_uri_prefix)
            .filter(|p| !p.trim().is_empty())
            .context(
                "--orchestrator kubernetes needs --kube-storage-uri-prefix: where KServe fetches \
                 models from (such as pvc://models or s3://bucket/models)",
            )?;
        Ok(OrchestratorSettings::Kubernetes {
            kube: KubeSettings {
                kubeconfig: self.kubeconfig.or(file.kubeconfig),
                namespace: self.kube_namespace.or(file.kube_namespace),
                storage_uri_prefix: prefix,
                timeout: crate::config::millis(
                    self.kube_timeout_ms.or(file.kube_timeout_ms),
                    Duration::from_secs(10),
                    "kube_timeout_ms",
                )?,
                // Filled from the store when the orchestrator is attached.
                instance: String::new(),
            },
            sync: crate::config::millis(
                self.kube_sync_ms.or(file.kube_sync_ms),
                Duration::from_secs(5),
                "kube_sync_ms",
            )?,
        })
    }
}

/// The services, placed by the chosen orchestrator, and how often to
/// reconcile them (`None`: never needed).
pub async fn attach(
    services: Services,
    settings: &OrchestratorSettings,
    store: &Store,
) -> anyhow::Result<(Services, Option<Duration>)> {
    match settings {
        OrchestratorSettings::Local => Ok((services, None)),
        OrchestratorSettings::Kubernetes { kube, sync } => {
            let kube = KubeSettings {
                instance: store
                    .instance_id()
                    .context("reading this store's instance id")?,
                ..kube.clone()
            };
            let cluster = Kubernetes::connect(&kube)
                .await
                .map_err(anyhow::Error::msg)?;
            tracing::info!(
                namespace = cluster.namespace(),
                storage = %kube.storage_uri_prefix,
                "seed-003 services run as KServe InferenceServices"
            );
            Ok((services.with_orchestrator(Arc::new(cluster)), Some(*sync)))
        }
    }
}
