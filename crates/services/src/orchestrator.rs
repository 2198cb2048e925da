//! Where a service's instances run. `Services` keeps the records and their
//! life cycle; an orchestrator only places and removes instances, and (when
//! they run somewhere it must ask about) says what it sees of them. Two exist:
//! `Local`, this process's model manager, and the kubernetes one in
//! `inferd-kube`, which makes each service a KServe InferenceService.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use inferd_core::manager::Deployment;
use inferd_core::Manager;
use inferd_store::ServiceRecord;

use crate::ServiceLimits;

/// An orchestrator's answer, later: trait objects cannot have `async fn`s.
pub type Later<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How far a deploy or stop got before it returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The service is in the asked state now.
    Done,
    /// Asked for; `observe` will say when it is reached.
    Pending,
}

/// Why a deploy did not happen. A transient refusal (the API did not answer,
/// was overloaded or failed inside) leaves the service `creating` with the
/// reason and is asked again at the next reconcile; any other fails it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
    pub transient: bool,
}

impl Refusal {
    pub fn fatal(message: impl Into<String>) -> Refusal {
        Refusal {
            message: message.into(),
            transient: false,
        }
    }
}

/// What an orchestrator sees of one service's instances.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// Being placed, pulled or loaded.
    Progressing,
    /// Answering calls.
    Ready,
    /// Cannot run, and says why; `since` (seconds since the epoch, when
    /// known) tells a failure of the current attempt from one before a start.
    Failed { reason: String, since: Option<f64> },
    /// Nothing runs, as asked.
    Stopped,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub phase: Phase,
    /// Whether it was asked to stop (which may not have happened yet).
    pub stop_requested: bool,
}

pub trait Orchestrator: Send + Sync + 'static {
    /// Its `--orchestrator` name.
    fn name(&self) -> &'static str;

    /// The most memory services may reserve together, if it is this
    /// orchestrator's to limit (a cluster's scheduler limits its own).
    fn memory_ceiling(&self) -> Option<u64>;

    /// Why the service as asked cannot run here, if it cannot; the service is
    /// created and then fails with this reason, as a cluster's pod would.
    fn unsatisfiable(&self, rec: &ServiceRecord) -> Option<String>;

    /// Places the service's instances (again, after a stop or a failure).
    fn deploy<'a>(&'a self, rec: &'a ServiceRecord) -> Later<'a, Result<Progress, Refusal>>;

    /// Stops its instances, keeping what a start needs.
    fn stop<'a>(&'a self, rec: &'a ServiceRecord) -> Later<'a, Result<Progress, String>>;

    /// Removes every trace of the service; one already gone is no error.
    fn delete<'a>(&'a self, id: &'a str) -> Later<'a, Result<(), String>>;

    /// Whether `observe` must be asked: an orchestrator whose deploy and stop
    /// answer `Done` knows everything when they return.
    fn observes(&self) -> bool {
        false
    }

    /// Every service it holds instances of, by id, and their phase.
    fn observe(&self) -> Later<'_, Result<HashMap<String, Observed>, String>> {
        Box::pin(async { Ok(HashMap::new()) })
    }

    /// Why a call to a running service cannot be answered by this process,
    /// if it cannot (its instances run elsewhere).
    fn served_elsewhere(&self, rec: &ServiceRecord) -> Option<String> {
        let _ = rec;
        None
    }
}

/// Replicas are worker instances of this process's model manager.
pub struct Local {
    manager: Manager,
    limits: ServiceLimits,
}

impl Local {
    pub fn new(manager: Manager, limits: ServiceLimits) -> Local {
        Local { manager, limits }
    }
}

impl Orchestrator for Local {
    fn name(&self) -> &'static str {
        "local"
    }

    fn memory_ceiling(&self) -> Option<u64> {
        self.limits
            .memory_bytes
            .or_else(inferd_core::budget::physical_memory)
    }

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

    fn deploy<'a>(&'a self, rec: &'a ServiceRecord) -> Later<'a, Result<Progress, Refusal>> {
        Box::pin(async move {
            let d = Deployment {
                name: rec.id.clone(),
                model: rec.model.clone(),
                version: Some(rec.model_version),
                instances: rec.replicas as usize,
                memory_limit: rec.memory,
            };
            self.manager
                .deploy(&d)
                .await
                .map(|_| Progress::Done)
                .map_err(|e| Refusal::fatal(e.to_string()))
        })
    }

    fn stop<'a>(&'a self, rec: &'a ServiceRecord) -> Later<'a, Result<Progress, String>> {
        Box::pin(async move {
            self.manager.undeploy(&rec.id).await;
            Ok(Progress::Done)
        })
    }

    fn delete<'a>(&'a self, id: &'a str) -> Later<'a, Result<(), String>> {
        Box::pin(async move {
            self.manager.undeploy(id).await;
            Ok(())
        })
    }
}
