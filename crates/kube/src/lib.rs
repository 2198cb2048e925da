//! The `kubernetes` orchestrator: each seed-003 service is a KServe
//! `InferenceService` (RawDeployment, runtime `inferd`), made, patched and
//! deleted through the cluster's API with the standard kubeconfig or the
//! in-cluster account. The store stays the source of truth; the service layer
//! asks `observe` on a timer and follows what KServe reports.
//!
//! KServe's facts relied on (v0.15 and later): the `serving.kserve.io/stop`
//! annotation scales a service to nothing and sets its `Stopped` condition;
//! `Ready` says it answers; `status.modelStatus.transitionStatus` is
//! `BlockedByFailedLoad` or `InvalidSpec` when it cannot run, with the cause
//! in `lastFailureInfo`.

mod manifest;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use inferd_services::{Later, Observed, Orchestrator, Progress, Refusal};
use inferd_store::ServiceRecord;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde_json::json;

pub use manifest::{model_format, STOP_ANNOTATION};

/// The label every InferenceService made here carries, so `observe` lists
/// only those and never touches anyone else's.
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "inferd");

/// The label naming the store (`KubeSettings::instance`) a resource belongs to.
const INSTANCE: &str = "inferd.io/instance";

/// What `--kube-*` flags say.
#[derive(Debug, Clone)]
pub struct KubeSettings {
    /// `None`: `$KUBECONFIG`, `~/.kube/config`, then the in-cluster account.
    pub kubeconfig: Option<PathBuf>,
    /// `None`: the kubeconfig context's namespace (or the pod's own).
    pub namespace: Option<String>,
    /// Where models are, for KServe's storage initializer: the storageUri is
    /// this, then `/<model>/<version>`.
    pub storage_uri_prefix: String,
    /// The longest one API call may take.
    pub timeout: Duration,
    /// This server's store's id (`Store::instance_id`), on every
    /// InferenceService it makes: `observe` sees only those.
    pub instance: String,
}

pub struct Kubernetes {
    api: Api<DynamicObject>,
    namespace: String,
    storage_uri_prefix: String,
    timeout: Duration,
    instance: String,
}

fn inference_services() -> ApiResource {
    ApiResource {
        group: "serving.kserve.io".into(),
        version: "v1beta1".into(),
        api_version: "serving.kserve.io/v1beta1".into(),
        kind: "InferenceService".into(),
        plural: "inferenceservices".into(),
    }
}

impl Kubernetes {
    /// A client from the given kubeconfig, else `$KUBECONFIG` (or
    /// `~/.kube/config`), else the pod's service account.
    pub async fn connect(settings: &KubeSettings) -> Result<Kubernetes, String> {
        let mut config = match &settings.kubeconfig {
            Some(path) => {
                let file = Kubeconfig::read_from(path)
                    .map_err(|e| format!("cannot read the kubeconfig {}: {e}", path.display()))?;
                kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                    .await
                    .map_err(|e| format!("cannot use the kubeconfig {}: {e}", path.display()))?
            }
            None => kube::Config::infer().await.map_err(|e| {
                format!("no kubeconfig and no in-cluster account to reach the cluster with: {e}")
            })?,
        };
        // Each call is bounded by `timeout` as a whole (`call`), which says so
        // in words; the client's own read timeout would end it first with
        // only "client error (SendRequest)".
        config.connect_timeout = Some(settings.timeout);
        let namespace = settings
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config)
            .map_err(|e| format!("cannot make a client for the cluster: {e}"))?;
        Ok(Kubernetes::new(client, namespace, settings))
    }

    pub fn new(client: Client, namespace: String, settings: &KubeSettings) -> Kubernetes {
        Kubernetes {
            api: Api::namespaced_with(client, &namespace, &inference_services()),
            namespace,
            storage_uri_prefix: settings.storage_uri_prefix.clone(),
            timeout: settings.timeout,
            instance: settings.instance.clone(),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// One API call under the timeout, its failure as a sentence for the
    /// service's reason or the log.
    async fn call<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(kube::Error::Api(status))) => Err(Failure {
                code: status.code,
                message: format!(
                    "the cluster refused to {what}: {} {}: {}",
                    status.code, status.reason, status.message
                ),
            }),
            Ok(Err(e)) => Err(Failure {
                code: 0,
                message: format!("cannot reach the cluster to {what}: {e}"),
            }),
            Err(_) => Err(Failure {
                code: 0,
                message: format!(
                    "the cluster did not answer within {} ms when asked to {what}",
                    self.timeout.as_millis()
                ),
            }),
        }
    }

    async fn merge(&self, name: &str, what: &str, patch: serde_json::Value) -> Result<(), Failure> {
        self.call(
            what,
            self.api
                .patch(name, &PatchParams::default(), &Patch::Merge(patch)),
        )
        .await
        .map(drop)
    }
}

/// A failed API call: the HTTP status when the cluster answered (0 when it
/// did not), and what to tell.
struct Failure {
    code: u16,
    message: String,
}

impl Failure {
    /// No answer, too many requests, or the API server's own failure may pass;
    /// a refusal (403, 422, ...) will not.
    fn refusal(self) -> Refusal {
        let transient = self.code == 0 || self.code == 429 || self.code >= 500;
        Refusal {
            message: if transient {
                format!("{} (asked again shortly)", self.message)
            } else {
                self.message
            },
            transient,
        }
    }
}

impl Orchestrator for Kubernetes {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn memory_ceiling(&self) -> Option<u64> {
        None
    }

    /// The cluster's scheduler and KServe judge GPUs and formats, and say
    /// so in the InferenceService's status.
    fn unsatisfiable(&self, _rec: &ServiceRecord) -> Option<String> {
        None
    }

    /// Creates the InferenceService, or (after a stop, a failure or a
    /// restart) patches the one there to the record and clears its stop.
    fn deploy<'a>(&'a self, rec: &'a ServiceRecord) -> Later<'a, Result<Progress, Refusal>> {
        Box::pin(async move {
            let body = manifest::inference_service(
                rec,
                &self.namespace,
                &self.storage_uri_prefix,
                &self.instance,
            );
            let object: DynamicObject = serde_json::from_value(body.clone())
                .map_err(|e| Refusal::fatal(format!("cannot write the InferenceService: {e}")))?;
            let what = format!("create InferenceService '{}'", rec.id);
            match self
                .call(&what, self.api.create(&PostParams::default(), &object))
                .await
            {
                Ok(_) => Ok(Progress::Pending),
                Err(r) if r.code == 409 => {
                    let patch = json!({"metadata": {"labels": body["metadata"]["labels"],
                        "annotations": body["metadata"]["annotations"]}, "spec": body["spec"]});
                    let what = format!("update InferenceService '{}'", rec.id);
                    self.merge(&rec.id, &what, patch)
                        .await
                        .map(|()| Progress::Pending)
                        .map_err(Failure::refusal)
                }
                Err(r) => Err(r.refusal()),
            }
        })
    }

    fn stop<'a>(&'a self, rec: &'a ServiceRecord) -> Later<'a, Result<Progress, String>> {
        Box::pin(async move {
            let patch = json!({"metadata": {"annotations": {STOP_ANNOTATION: "true"}}});
            let what = format!("stop InferenceService '{}'", rec.id);
            match self.merge(&rec.id, &what, patch).await {
                Ok(()) => Ok(Progress::Pending),
                // Nothing to stop: nothing runs.
                Err(r) if r.code == 404 => Ok(Progress::Done),
                Err(r) => Err(r.message),
            }
        })
    }

    fn delete<'a>(&'a self, id: &'a str) -> Later<'a, Result<(), String>> {
        Box::pin(async move {
            let what = format!("delete InferenceService '{id}'");
            match self
                .call(&what, self.api.delete(id, &DeleteParams::background()))
                .await
            {
                Ok(_) => Ok(()),
                Err(r) if r.code == 404 => Ok(()),
                Err(r) => Err(r.message),
            }
        })
    }

    fn observes(&self) -> bool {
        true
    }

    fn observe(&self) -> Later<'_, Result<HashMap<String, Observed>, String>> {
        Box::pin(async move {
            let selector = format!(
                "{}={},{INSTANCE}={}",
                MANAGED_BY.0, MANAGED_BY.1, self.instance
            );
            let what = format!("list InferenceServices in namespace '{}'", self.namespace);
            let list = self
                .call(
                    &what,
                    self.api.list(&ListParams::default().labels(&selector)),
                )
                .await
                .map_err(|r| match r.code {
                    404 => format!(
                        "{}; is KServe installed (its InferenceService resource is missing)?",
                        r.message
                    ),
                    _ => r.message,
                })?;
            Ok(list
                .items
                .iter()
                .filter_map(|o| Some((o.metadata.name.clone()?, manifest::observed(o))))
                .collect())
        })
    }

    fn served_elsewhere(&self, rec: &ServiceRecord) -> Option<String> {
        Some(format!(
            "inference service '{}' runs on the cluster as InferenceService '{}' in namespace '{}'; \
             call it through KServe (POST /v2/models/{}/infer on its URL, `kubectl get isvc {} -n {}`)",
            rec.id, rec.id, self.namespace, rec.id, rec.id, self.namespace
        ))
    }
}

impl std::fmt::Debug for Kubernetes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubernetes")
            .field("namespace", &self.namespace)
            .field("storage_uri_prefix", &self.storage_uri_prefix)
            .finish()
    }
}
