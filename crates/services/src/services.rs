//! Seed 003's inference services: a service is a
//! deployment of one repository model with its own instances (`replicas`)
//! under a memory limit. Records live in the store; a service's model is
//! loaded in the background (`creating` → `running`, or `failed` with the
//! reason), and after a restart the services that were running are deployed
//! again. The services face and the ZStack catalog's deploy both drive it, so
//! a service made either way lives the same life.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use inferd_core::manager::Deployment;
use inferd_core::{CoreError, ErrorKind, Manager};
use inferd_store::{
    now, Admission, Restart, ServiceFilter, ServiceRecord, ServiceStatus, Store, StoreError,
};

/// Limits on what a service may ask for.
#[derive(Debug, Clone, Copy)]
pub struct ServiceLimits {
    pub max_replicas: u32,
    /// The most memory services may reserve together. Fixed at start: the
    /// model cache's budget (which `/inference/cache/config` changes at run
    /// time) covers ordinary models only, so a cache resize never strands a
    /// service. `None`: this machine's physical memory.
    pub memory_bytes: Option<u64>,
}

impl Default for ServiceLimits {
    fn default() -> Self {
        ServiceLimits {
            max_replicas: 8,
            memory_bytes: None,
        }
    }
}

impl ServiceLimits {
    fn memory_ceiling(&self) -> u64 {
        self.memory_bytes
            .or_else(inferd_core::budget::physical_memory)
            .unwrap_or(u64::MAX)
    }
}

/// Why a service call failed: a kind each face maps to its own status, and a
/// sentence for the caller.
#[derive(Debug)]
pub struct ServiceError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ServiceError {
    pub fn invalid(message: impl Into<String>) -> ServiceError {
        ServiceError::new(ErrorKind::InvalidInput, message)
    }

    fn new(kind: ErrorKind, message: impl Into<String>) -> ServiceError {
        ServiceError {
            kind,
            message: message.into(),
        }
    }

    fn conflict(message: impl Into<String>) -> ServiceError {
        ServiceError::new(ErrorKind::Conflict, message)
    }

    fn unknown(id: &str) -> ServiceError {
        ServiceError::new(
            ErrorKind::NotFound,
            format!("inference service '{id}' does not exist"),
        )
    }
}

impl From<CoreError> for ServiceError {
    fn from(e: CoreError) -> ServiceError {
        ServiceError::new(e.kind(), e.to_string())
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> ServiceError {
        ServiceError::new(ErrorKind::Internal, e.to_string())
    }
}

/// A create request whose fields a face has already read and range-checked.
#[derive(Debug, Clone)]
pub struct NewService {
    pub name: String,
    pub description: String,
    pub workspace_id: Option<i64>,
    pub model: String,
    /// `None`: the model's default version.
    pub version: Option<u64>,
    /// `None`: the model's own backend.
    pub framework: Option<String>,
    pub cpu: f64,
    pub memory: u64,
    pub gpu: u32,
    pub replicas: u32,
}

/// One turn at a time per service: its deploy, its undeploy and the status
/// change after each run in order, so a stop, start or delete never interleaves
/// with a deploy still loading (which could mark a service running while
/// nothing runs, or undeploy the newer of two attempts).
#[derive(Default)]
struct Turns(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl Turns {
    /// Waits for the service's turn; it lasts as long as the guard.
    async fn take(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let turn = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_string())
            .or_default()
            .clone();
        turn.lock_owned().await
    }

    /// Drops a deleted service's entry, so the map holds only live services.
    fn forget(&self, id: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

/// The inference services of one server. Cheap to clone: clones share the
/// store, the model manager and the turns.
#[derive(Clone)]
pub struct Services {
    manager: Manager,
    /// `None` on a server without a data directory, which keeps no services.
    store: Option<Store>,
    limits: ServiceLimits,
    turns: Arc<Turns>,
}

impl Services {
    pub fn new(manager: Manager, store: Option<Store>, limits: ServiceLimits) -> Services {
        Services {
            manager,
            store,
            limits,
            turns: Arc::default(),
        }
    }

    pub fn limits(&self) -> ServiceLimits {
        self.limits
    }

    /// Runs a store call off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ServiceError> {
        let store = self.store.clone().ok_or_else(|| {
            ServiceError::new(
                ErrorKind::Unavailable,
                "this server runs without a data directory, so it keeps no services",
            )
        })?;
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| ServiceError::new(ErrorKind::Internal, e.to_string()))?
            .map_err(ServiceError::from)
    }

    /// Saves the service as `creating` once its model, version, framework and
    /// memory check out, and starts its deployment in the background.
    pub async fn create(&self, new: NewService) -> Result<ServiceRecord, ServiceError> {
        let manager = self.manager.clone();
        let (m, v) = (new.model.clone(), new.version);
        let version = tokio::task::spawn_blocking(move || manager.deployable_version(&m, v))
            .await
            .map_err(|e| ServiceError::new(ErrorKind::Internal, e.to_string()))?
            .map_err(|e| ServiceError::invalid(e.to_string()))?;
        let model = new.model;
        let backend = self
            .manager
            .info(&model, Some(version))
            .map(|i| i.config.backend.clone())
            .map_err(|e| ServiceError::invalid(e.to_string()))?;
        // A framework this model does not run on is recorded as asked; the
        // deployment then fails saying why, as a cluster's would.
        let framework = match new.framework {
            Some(fw) if !fw.eq_ignore_ascii_case(&backend) => fw,
            _ => backend,
        };
        let id = format!("svc-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let at = now();
        let memory = new.memory;
        let rec = ServiceRecord {
            id,
            name: new.name,
            description: new.description,
            workspace_id: new.workspace_id,
            model,
            model_version: version,
            framework,
            cpu: new.cpu,
            memory,
            gpu: new.gpu,
            replicas: new.replicas,
            status: ServiceStatus::Creating,
            reason: None,
            created_at: at,
            updated_at: at,
        };
        let saved = rec.clone();
        let ceiling = self.limits.memory_ceiling();
        match self.blocking(move |s| s.insert_service(&saved, ceiling)).await? {
            Admission::Admitted => {
                self.spawn_deploy(rec.clone());
                Ok(rec)
            }
            Admission::NameTaken => Err(ServiceError::conflict(format!(
                "an inference service named '{}' already exists",
                rec.name
            ))),
            Admission::NoRoom { reserved } => Err(ServiceError::invalid(format!(
                "'memory' {memory} does not fit: the server has {ceiling} bytes for services and they already hold {reserved}"
            ))),
        }
    }

    /// Loads the service's model, then marks it running (or failed with the
    /// reason). A service stopped or deleted while it loads is undeployed again.
    fn spawn_deploy(&self, rec: ServiceRecord) {
        let this = self.clone();
        tokio::spawn(async move {
            let _turn = this.turns.take(&rec.id).await;
            let d = Deployment {
                name: rec.id.clone(),
                model: rec.model.clone(),
                version: Some(rec.model_version),
                instances: rec.replicas as usize,
                memory_limit: rec.memory,
            };
            let result = match this.unsatisfiable(&rec) {
                Some(reason) => Err(reason),
                None => this.manager.deploy(&d).await.map_err(|e| e.to_string()),
            };
            let id = rec.id.clone();
            let (to, reason) = match &result {
                Ok(_) => (ServiceStatus::Running, None),
                Err(e) => (ServiceStatus::Failed, Some(e.clone())),
            };
            let moved = this
                .blocking(move |s| {
                    s.set_service_status(&id, &[ServiceStatus::Creating], to, reason.as_deref())
                })
                .await;
            match (&result, moved) {
                (Ok(_), Ok(true)) => {
                    tracing::info!(service = %rec.id, model = %rec.model, "running")
                }
                (Err(e), _) => tracing::warn!(service = %rec.id, "deployment failed: {e}"),
                (Ok(_), _) => this.manager.undeploy(&rec.id).await,
            }
        });
    }

    /// Why this server cannot run the service as asked, if it cannot: a GPU
    /// it does not have, or a framework its model does not run on.
    fn unsatisfiable(&self, rec: &ServiceRecord) -> Option<String> {
        if rec.gpu > 0 {
            return Some(format!(
                "asks for {} GPU(s), but this server has none",
                rec.gpu
            ));
        }
        let backend = self
            .manager
            .info(&rec.model, Some(rec.model_version))
            .map(|i| i.config.backend.clone())
            .ok()?;
        (!rec.framework.eq_ignore_ascii_case(&backend)).then(|| {
            format!(
                "model '{}' runs on '{backend}'; framework '{}' cannot serve it",
                rec.model, rec.framework
            )
        })
    }

    /// Deploys again the services that were running (or being created) when
    /// the server last stopped; says how many.
    pub async fn restore(&self) -> Result<usize, ServiceError> {
        let recs = self.blocking(|s| s.services_to_restore()).await?;
        for rec in &recs {
            let id = rec.id.clone();
            self.blocking(move |s| {
                s.set_service_status(
                    &id,
                    &[ServiceStatus::Running],
                    ServiceStatus::Creating,
                    None,
                )
            })
            .await?;
            self.spawn_deploy(rec.clone());
        }
        Ok(recs.len())
    }

    /// One page of the services that pass `filter`, and how many pass it.
    pub async fn list(
        &self,
        filter: ServiceFilter,
        page: u64,
        page_size: u64,
    ) -> Result<(Vec<ServiceRecord>, u64), ServiceError> {
        self.blocking(move |s| s.list_services(&filter, page, page_size))
            .await
    }

    pub async fn get(&self, id: &str) -> Result<ServiceRecord, ServiceError> {
        let lookup = id.to_string();
        self.blocking(move |s| s.service(&lookup))
            .await?
            .ok_or_else(|| ServiceError::unknown(id))
    }

    /// The service, if it can answer calls now; otherwise a conflict that says
    /// what the caller must wait for or do.
    pub async fn running(&self, id: &str) -> Result<ServiceRecord, ServiceError> {
        let rec = self.get(id).await?;
        match rec.status {
            ServiceStatus::Running => Ok(rec),
            ServiceStatus::Stopped | ServiceStatus::Stopping => {
                Err(ServiceError::conflict(format!(
                "inference service '{id}' is {}; start it (POST .../{id}/start) before calling it",
                rec.status.as_str()
            )))
            }
            ServiceStatus::Creating => Err(ServiceError::conflict(format!(
                "inference service '{id}' is still being created; retry when its status is running"
            ))),
            ServiceStatus::Failed => Err(ServiceError::conflict(format!(
                "inference service '{id}' failed to deploy: {}",
                rec.reason.unwrap_or_default()
            ))),
        }
    }

    /// `stopping` at once; the instances drain in the background, then `stopped`.
    pub async fn stop(&self, id: &str) -> Result<(), ServiceError> {
        const FROM: &[ServiceStatus] = &[ServiceStatus::Creating, ServiceStatus::Running];
        self.transition(id, FROM, ServiceStatus::Stopping, "stop")
            .await?;
        let this = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            let _turn = this.turns.take(&id).await;
            this.manager.undeploy(&id).await;
            let sid = id.clone();
            let _ = this
                .blocking(move |s| {
                    s.set_service_status(
                        &sid,
                        &[ServiceStatus::Stopping],
                        ServiceStatus::Stopped,
                        None,
                    )
                })
                .await;
            tracing::info!(service = %id, "stopped");
        });
        Ok(())
    }

    /// A stopped or failed service is deployed again, if its memory still fits.
    pub async fn start(&self, id: &str) -> Result<(), ServiceError> {
        let ceiling = self.limits.memory_ceiling();
        let sid = id.to_string();
        match self.blocking(move |s| s.start_service(&sid, ceiling)).await? {
            Restart::Started => {}
            Restart::InState(status) => {
                return Err(ServiceError::conflict(format!(
                    "cannot start inference service '{id}': it is {}",
                    status.as_str()
                )))
            }
            Restart::NoRoom { reserved } => {
                return Err(ServiceError::conflict(format!(
                    "cannot start inference service '{id}': its memory does not fit now (services may hold {ceiling} bytes together and others hold {reserved}); stop another first"
                )))
            }
            Restart::Unknown => return Err(ServiceError::unknown(id)),
        }
        let rec = self.get(id).await?;
        self.spawn_deploy(rec);
        Ok(())
    }

    /// Deletes the record, then frees the instances (after a deploy still
    /// loading) before it returns.
    pub async fn delete(&self, id: &str) -> Result<(), ServiceError> {
        let sid = id.to_string();
        if !self.blocking(move |s| s.delete_service(&sid)).await? {
            return Err(ServiceError::unknown(id));
        }
        let turn = self.turns.take(id).await;
        self.manager.undeploy(id).await;
        drop(turn);
        self.turns.forget(id);
        tracing::info!(service = %id, "deleted");
        Ok(())
    }

    /// Moves a service between states, or says why it cannot: unknown id, or a
    /// conflict naming the state it is in.
    async fn transition(
        &self,
        id: &str,
        from: &'static [ServiceStatus],
        to: ServiceStatus,
        verb: &str,
    ) -> Result<(), ServiceError> {
        let sid = id.to_string();
        if self
            .blocking(move |s| s.set_service_status(&sid, from, to, None))
            .await?
        {
            return Ok(());
        }
        let rec = self.get(id).await?;
        Err(ServiceError::conflict(format!(
            "cannot {verb} inference service '{id}': it is {}",
            rec.status.as_str()
        )))
    }
}
