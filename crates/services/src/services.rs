//! Seed 003's inference services: a service is a
//! deployment of one repository model with its own instances (`replicas`)
//! under a memory limit. Records live in the store; a service's model is
//! loaded in the background (`creating` → `running`, or `failed` with the
//! reason), and after a restart the services that were running are deployed
//! again. The services face and the ZStack catalog's deploy both drive it, so
//! a service made either way lives the same life.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use inferd_core::{CoreError, ErrorKind, Manager};
use inferd_store::{
    now, Admission, Restart, ServiceFilter, ServiceRecord, ServiceStatus, Store, StoreError,
};

use crate::orchestrator::{Local, Observed, Orchestrator, Phase, Progress, Refusal};

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

    fn name_taken(name: &str) -> ServiceError {
        ServiceError::conflict(format!(
            "an inference service named '{name}' already exists"
        ))
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
    /// The fields as sent, where they differ from their resolved values (a
    /// JSON object), for answers to echo.
    pub sent: Option<String>,
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
/// store, the model manager, the orchestrator and the turns.
#[derive(Clone)]
pub struct Services {
    manager: Manager,
    /// `None` on a server without a data directory, which keeps no services.
    store: Option<Store>,
    limits: ServiceLimits,
    orchestrator: Arc<dyn Orchestrator>,
    turns: Arc<Turns>,
}

impl Services {
    /// Services whose instances run in this process.
    pub fn new(manager: Manager, store: Option<Store>, limits: ServiceLimits) -> Services {
        Services {
            orchestrator: Arc::new(Local::new(manager.clone(), limits)),
            manager,
            store,
            limits,
            turns: Arc::default(),
        }
    }

    /// The same services, placed by another orchestrator.
    pub fn with_orchestrator(self, orchestrator: Arc<dyn Orchestrator>) -> Services {
        Services {
            orchestrator,
            ..self
        }
    }

    pub fn limits(&self) -> ServiceLimits {
        self.limits
    }

    pub fn orchestrator(&self) -> &dyn Orchestrator {
        self.orchestrator.as_ref()
    }

    fn memory_ceiling(&self) -> u64 {
        self.orchestrator.memory_ceiling().unwrap_or(u64::MAX)
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
            sent: new.sent,
        };
        let saved = rec.clone();
        let ceiling = self.memory_ceiling();
        match self
            .blocking(move |s| s.insert_service(&saved, ceiling))
            .await?
        {
            Admission::Admitted => {
                self.spawn_deploy(rec.clone());
                Ok(rec)
            }
            Admission::NameTaken => Err(ServiceError::name_taken(&rec.name)),
            // Memory is a request, as a cluster takes it: one that cannot be
            // given is a service that fails, saying why (a start asks again).
            Admission::NoRoom { reserved } => {
                let failed = ServiceRecord {
                    status: ServiceStatus::Failed,
                    reason: Some(format!(
                        "asks for {memory} bytes of memory, which does not fit: the server has {ceiling} bytes for services and they already hold {reserved}"
                    )),
                    ..rec
                };
                let saved = failed.clone();
                match self
                    .blocking(move |s| s.insert_service(&saved, u64::MAX))
                    .await?
                {
                    Admission::NameTaken => Err(ServiceError::name_taken(&failed.name)),
                    _ => Ok(failed),
                }
            }
        }
    }

    /// Places the service's instances, then marks it running (or failed with
    /// the reason); an orchestrator that answers `Pending` leaves it `creating`
    /// until `reconcile` sees it ready, and a transient refusal leaves it
    /// `creating` with the reason, for `reconcile` to ask again. A stop or
    /// delete that took the turn first wins: the record is read again under
    /// the turn. One that comes while a local deploy loads is undone after.
    fn spawn_deploy(&self, rec: ServiceRecord) {
        let this = self.clone();
        tokio::spawn(async move {
            let _turn = this.turns.take(&rec.id).await;
            let rec = match this.get(&rec.id).await {
                Ok(now) if now.status == ServiceStatus::Creating => now,
                _ => return,
            };
            let result = match this.orchestrator.unsatisfiable(&rec) {
                Some(reason) => Err(Refusal::fatal(reason)),
                None => this.orchestrator.deploy(&rec).await,
            };
            let (to, reason) = match &result {
                Ok(Progress::Pending) => {
                    tracing::info!(service = %rec.id, orchestrator = this.orchestrator.name(), "deployment asked for");
                    return;
                }
                Ok(Progress::Done) => (ServiceStatus::Running, None),
                Err(r) if r.transient => (ServiceStatus::Creating, Some(r.message.clone())),
                Err(r) => (ServiceStatus::Failed, Some(r.message.clone())),
            };
            let id = rec.id.clone();
            let moved = this
                .blocking(move |s| {
                    s.set_service_status(&id, &[ServiceStatus::Creating], to, reason.as_deref())
                })
                .await;
            match (&result, moved) {
                (Ok(_), Ok(true)) => {
                    tracing::info!(service = %rec.id, model = %rec.model, "running")
                }
                (Err(r), _) if r.transient => {
                    tracing::warn!(service = %rec.id, "deployment refused for now (asked again): {}", r.message)
                }
                (Err(r), _) => {
                    tracing::warn!(service = %rec.id, "deployment failed: {}", r.message)
                }
                (Ok(_), _) => this.undo(&rec.id).await,
            }
        });
    }

    /// Brings a service's instances in line with a record that moved on
    /// while they were placed: stops them, or removes them if it is gone.
    async fn undo(&self, id: &str) {
        let undone = match self.get(id).await {
            Ok(rec) => self.orchestrator.stop(&rec).await.map(drop),
            Err(_) => self.orchestrator.delete(id).await,
        };
        if let Err(e) = undone {
            tracing::warn!(service = %id, "cannot take back its instances: {e}");
        }
    }

    /// Deploys again the services that were running (or being created) when
    /// the server last stopped; says how many.
    /// With an orchestrator that observes, nothing is deployed twice: one
    /// `reconcile` brings the cluster in line with the store.
    pub async fn restore(&self) -> Result<usize, ServiceError> {
        if self.orchestrator.observes() {
            self.reconcile().await?;
            let live = |st| ServiceFilter {
                status: Some(st),
                ..ServiceFilter::default()
            };
            let (_, creating) = self.list(live(ServiceStatus::Creating), 1, 1).await?;
            let (_, running) = self.list(live(ServiceStatus::Running), 1, 1).await?;
            return Ok((creating + running) as usize);
        }
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
            ServiceStatus::Running => match self.orchestrator.served_elsewhere(&rec) {
                None => Ok(rec),
                Some(why) => Err(ServiceError::new(ErrorKind::Unavailable, why)),
            },
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

    /// `stopping` at once; the instances drain in the background, then
    /// `stopped`. A failed service stops too, so its instances (crash-looping
    /// on a cluster, say) give back what they hold.
    pub async fn stop(&self, id: &str) -> Result<(), ServiceError> {
        const FROM: &[ServiceStatus] = &[
            ServiceStatus::Creating,
            ServiceStatus::Running,
            ServiceStatus::Failed,
        ];
        let rec = self.get(id).await?;
        self.transition(id, FROM, ServiceStatus::Stopping, "stop")
            .await?;
        let this = self.clone();
        tokio::spawn(async move {
            let _turn = this.turns.take(&rec.id).await;
            match this.orchestrator.stop(&rec).await {
                Ok(Progress::Done) => {
                    let sid = rec.id.clone();
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
                    tracing::info!(service = %rec.id, "stopped");
                }
                Ok(Progress::Pending) => tracing::info!(service = %rec.id, "stop asked for"),
                Err(e) => {
                    tracing::warn!(service = %rec.id, "cannot stop yet (retried while it is stopping): {e}")
                }
            }
        });
        Ok(())
    }

    /// A stopped or failed service is deployed again, if its memory still fits.
    pub async fn start(&self, id: &str) -> Result<(), ServiceError> {
        let ceiling = self.memory_ceiling();
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
        if let Err(e) = self.orchestrator.delete(id).await {
            tracing::warn!(service = %id, "its instances are not removed yet (retried by the next reconcile): {e}");
        }
        drop(turn);
        self.turns.forget(id);
        tracing::info!(service = %id, "deleted");
        Ok(())
    }

    /// Brings the orchestrator's instances in line with the store, the source
    /// of truth, and the records' statuses in line with what it sees:
    /// a service that should run but has no instances is placed again, a stop
    /// or start that did not reach them is asked again, instances of deleted
    /// services are removed, and `creating`, `running` and `stopping` follow
    /// the phase it reports. Does nothing for an orchestrator that does not
    /// observe.
    pub async fn reconcile(&self) -> Result<(), ServiceError> {
        if !self.orchestrator.observes() {
            return Ok(());
        }
        // Observed before the records are read: every instance seen then
        // belongs to a record read now, unless that service was deleted.
        let seen = self
            .orchestrator
            .observe()
            .await
            .map_err(|e| ServiceError::new(ErrorKind::Unavailable, e))?;
        let (recs, _) = self.list(ServiceFilter::default(), 1, u64::MAX).await?;
        let known: HashSet<&str> = recs.iter().map(|r| r.id.as_str()).collect();
        for rec in &recs {
            let _turn = self.turns.take(&rec.id).await;
            // Re-read under the turn: a stop, start or delete may have come first.
            let Ok(rec) = self.get(&rec.id).await else {
                continue;
            };
            self.follow(&rec, seen.get(&rec.id)).await;
        }
        for id in seen.keys().filter(|id| !known.contains(id.as_str())) {
            match self.orchestrator.delete(id).await {
                Ok(()) => {
                    tracing::info!(service = %id, "removed the instances of a deleted service")
                }
                Err(e) => {
                    tracing::warn!(service = %id, "cannot remove the instances of a deleted service: {e}")
                }
            }
        }
        Ok(())
    }

    /// One record against what the orchestrator sees of it.
    async fn follow(&self, rec: &ServiceRecord, seen: Option<&Observed>) {
        use ServiceStatus::*;
        if rec.status == Failed {
            // Left as it failed (a start asks again), unless it recovered.
            if seen.is_some_and(|o| o.phase == Phase::Ready && !o.stop_requested) {
                self.record(rec, Running, None).await;
            }
            return;
        }
        let should_run = matches!(rec.status, Creating | Running);
        let asked = match (rec.status, seen) {
            // Should run, but has no instances or was stopped behind our back.
            (Creating | Running, o) if o.is_none_or(|o| o.stop_requested) => {
                Some(self.orchestrator.deploy(rec).await)
            }
            (Stopping | Stopped, Some(o)) if !o.stop_requested => {
                Some(self.orchestrator.stop(rec).await.map_err(Refusal::fatal))
            }
            _ => None,
        };
        let (to, reason) = match (asked, seen.map(|o| &o.phase)) {
            (Some(Err(r)), _) if should_run && r.transient => (Creating, Some(r.message)),
            (Some(Err(r)), _) if should_run => (Failed, Some(r.message)),
            (Some(Err(r)), _) => {
                tracing::warn!(service = %rec.id, "cannot stop yet: {}", r.message);
                return;
            }
            (Some(Ok(_)), _) if should_run => (Creating, None),
            (Some(Ok(_)), _) => return,
            (None, None) => (Stopped, None),
            (None, Some(Phase::Ready)) if should_run => (Running, None),
            // A failure from before the last start is the old attempt's.
            (None, Some(Phase::Failed { reason, since }))
                if should_run && since.is_none_or(|t| t >= rec.updated_at) =>
            {
                (Failed, Some(reason.clone()))
            }
            (None, Some(Phase::Failed { .. })) => return,
            (None, Some(Phase::Progressing)) if rec.status == Creating => return,
            (None, Some(Phase::Progressing)) if should_run => (Creating, None),
            (None, Some(Phase::Stopped)) if !should_run => (Stopped, None),
            (None, Some(_)) => return,
        };
        if to != rec.status || reason != rec.reason {
            self.record(rec, to, reason).await;
        }
    }

    async fn record(&self, rec: &ServiceRecord, to: ServiceStatus, reason: Option<String>) {
        let (id, from) = (rec.id.clone(), rec.status);
        let logged = reason.clone();
        match self
            .blocking(move |s| s.set_service_status(&id, &[from], to, reason.as_deref()))
            .await
        {
            Ok(true) => tracing::info!(
                service = %rec.id,
                from = from.as_str(),
                to = to.as_str(),
                reason = logged.as_deref().unwrap_or(""),
                "followed the orchestrator"
            ),
            Ok(false) => {}
            Err(e) => tracing::warn!(service = %rec.id, "cannot record its status: {}", e.message),
        }
    }

    /// Runs `reconcile` every `every`, for as long as the process lives.
    pub fn spawn_reconciler(&self, every: Duration) {
        if !self.orchestrator.observes() {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = this.reconcile().await {
                    tracing::warn!(
                        orchestrator = this.orchestrator.name(),
                        "cannot reconcile services: {}",
                        e.message
                    );
                }
            }
        });
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
