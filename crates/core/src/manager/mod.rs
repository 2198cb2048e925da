//! The model manager: which models exist, which versions are in memory, and the
//! one entry point (`infer`) every face calls.
//!
//! Concurrency design: a cheap `Clone` handle over one `Mutex<ManagerState>`
//! (plain state, see `state.rs`) and one `Notify`. The lock is held only for
//! bookkeeping, never across a load or an inference. A version being loaded is
//! marked `Loading` under the lock, so a second request for it waits on the
//! `Notify` instead of loading it again; loads run on blocking threads. Requests
//! hold an `Arc<Loaded>` while they run: unloading closes the queue, waits for
//! those references to go, then frees the model, and eviction only takes versions
//! nobody holds.

mod cache;
mod deploy;
mod lifecycle;
mod state;
mod tasks;
mod text;
mod validate;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

pub use cache::{CacheEntry, LoadingEntry, Resized};
pub use deploy::{Deployed, Deployment};
pub use state::{Budget, CacheCounters, Loaded, ManagerState, SlotState};
pub use tasks::{Embeddings, FEATURE_EXTRACTION, IMAGE_CLASSIFICATION, TENSORS};
pub use text::{Collected, Generation, TextModel};

use validate::{order_inputs, requested_outputs};

use crate::backend::Backend;
use crate::budget::InflightBudget;
use crate::config::{ModelConfig, TensorSpec};
use crate::error::{CoreError, CoreResult};
use crate::repository;
use crate::scheduler::Submitted;
use crate::stats::{StatsSnapshot, VersionStats};
use crate::tensor::Tensor;

/// Limits and defaults, from the server's config.
#[derive(Debug, Clone, Copy)]
pub struct ManagerConfig {
    pub budget: Budget,
    /// Largest number of elements one tensor may hold.
    pub max_elements: usize,
    /// Deadline of a request that names none.
    pub default_timeout: Duration,
    /// Most images, texts or items one request's list may hold when the model
    /// declares no `max_batch_size`.
    pub max_batch_items: usize,
    /// Bytes of request data that may be in flight at once (`InflightBudget`).
    pub max_inflight_bytes: u64,
    /// Runs predicted to take at most this long run on the request's own
    /// thread (`scheduler`'s doc says when); zero sends every run to a worker.
    pub inline_run: Duration,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            budget: Budget::default(),
            max_elements: 1 << 24,
            default_timeout: Duration::from_secs(60),
            max_batch_items: 256,
            max_inflight_bytes: InflightBudget::default_limit(),
            inline_run: DEFAULT_INLINE_RUN,
        }
    }
}

/// Under tokio's guideline for work between two awaits (10–100 µs), so a
/// runtime thread is never held long enough to delay other connections.
pub const DEFAULT_INLINE_RUN: Duration = Duration::from_micros(50);

/// The instant `timeout` after `start`, with the timeout held to a year: a
/// client may ask for any number, and `Instant + Duration` panics past the
/// clock's end.
pub fn deadline_after(start: Instant, timeout: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(365 * 24 * 3600);
    start + timeout.min(FAR)
}

/// One inference, already decoded by a face.
#[derive(Debug, Clone)]
pub struct InferRequest {
    pub model: String,
    pub version: Option<u64>,
    pub inputs: Vec<Tensor>,
    /// Outputs to return, by name; `None` returns them all.
    pub outputs: Option<Vec<String>>,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct InferResponse {
    pub model: String,
    pub version: u64,
    pub outputs: Vec<Tensor>,
}

/// What a model looks like to clients.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub name: String,
    pub version: u64,
    pub versions: Vec<u64>,
    pub config: Arc<ModelConfig>,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    pub ready: bool,
}

/// One row of the repository index.
#[derive(Debug, Clone)]
pub struct IndexEntry {
    pub name: String,
    pub version: Option<u64>,
    pub state: &'static str,
    pub reason: String,
}

/// Whether a load or unload changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    AlreadyThere,
}

#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    backends: HashMap<&'static str, Arc<dyn Backend>>,
    state: Mutex<ManagerState>,
    changed: Notify,
    config: ManagerConfig,
    budget: InflightBudget,
    shutting_down: std::sync::atomic::AtomicBool,
}

impl Manager {
    /// Reads the repository (a missing folder is an empty repository, logged).
    pub fn new(root: &Path, backends: Vec<Arc<dyn Backend>>, config: ManagerConfig) -> Manager {
        let mut state = ManagerState::default();
        state.budget = config.budget;
        match repository::scan(root) {
            Ok(models) => models.into_iter().for_each(|m| state.upsert(m)),
            Err(e) => tracing::warn!("cannot read model repository {}: {e}", root.display()),
        }
        Manager {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                backends: backends.into_iter().map(|b| (b.name(), b)).collect(),
                state: Mutex::new(state),
                changed: Notify::new(),
                config,
                budget: InflightBudget::new(config.max_inflight_bytes),
                shutting_down: Default::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ManagerState> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn config(&self) -> &ManagerConfig {
        &self.inner.config
    }

    /// The one in-flight budget every face charges requests to.
    pub fn inflight(&self) -> &InflightBudget {
        &self.inner.budget
    }

    /// The most items (images, texts, batch entries) one request may send to
    /// `model`: its own batch size when it declares one, else the server's limit.
    pub fn max_items(&self, model: &ModelInfo) -> usize {
        match model.config.max_batch_size {
            0 => self.inner.config.max_batch_items,
            n => n,
        }
    }

    /// The repository's models (deployments are not among them).
    pub fn model_names(&self) -> Vec<String> {
        self.lock()
            .models
            .iter()
            .filter(|(_, e)| !e.deployed)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Runs one inference: finds (or loads) the version, checks the inputs
    /// against its specs, queues it and waits within the request's deadline.
    pub async fn infer(&self, req: InferRequest) -> CoreResult<InferResponse> {
        let started = Instant::now();
        // 0 means "no timeout of its own" (Triton's reading): the server's default.
        let timeout = req
            .timeout
            .filter(|t| !t.is_zero())
            .unwrap_or(self.inner.config.default_timeout);
        let deadline = deadline_after(started, timeout);
        let expired = || CoreError::DeadlineExceeded {
            model: req.model.clone(),
            deadline: timeout,
        };
        // In flight from here: a request waiting for its model to load counts.
        let stats = self.version_stats(&req.model, req.version);
        let busy = stats.as_deref().map(VersionStats::begin);
        let loaded =
            tokio::time::timeout_at(deadline.into(), self.ready(&req.model, req.version, true))
                .await
                .map_err(|_| expired())??;
        let version = loaded.version;
        let result = async {
            let (inputs, rows) = order_inputs(
                &req.model,
                loaded.model.inputs(),
                req.inputs,
                loaded.scheduler.batches(),
            )?;
            let max_batch = loaded.scheduler.max_batch();
            if loaded.scheduler.batches() && rows > max_batch {
                return Err(CoreError::BatchTooLarge {
                    model: req.model.clone(),
                    size: rows,
                    max: max_batch,
                });
            }
            let keep =
                requested_outputs(&req.model, loaded.model.outputs(), req.outputs.as_deref())?;
            let outputs = match loaded.scheduler.submit(inputs, rows, deadline, timeout)? {
                // Past its deadline it fails as a queued job would, even if it ran.
                Submitted::Ran(_) if Instant::now() >= deadline => return Err(expired()),
                Submitted::Ran(reply) => reply?,
                Submitted::Queued(rx) => tokio::time::timeout_at(deadline.into(), rx)
                    .await
                    .map_err(|_| expired())?
                    .map_err(|_| CoreError::ShuttingDown)??,
            };
            Ok(match keep {
                None => outputs,
                Some(names) => names
                    .iter()
                    .filter_map(|n| outputs.iter().find(|t| &t.name == n).cloned())
                    .collect(),
            })
        }
        .await;
        drop(busy);
        loaded
            .stats
            .record_request(result.is_ok(), started.elapsed());
        Ok(InferResponse {
            model: req.model,
            version,
            outputs: result?,
        })
    }

    /// Metadata of a model version (inputs and outputs as the loaded model
    /// reports them, else as its config declares them).
    pub fn info(&self, name: &str, version: Option<u64>) -> CoreResult<ModelInfo> {
        let st = self.lock();
        let v = st.resolve(name, version)?;
        let entry = &st.models[name];
        let config = entry.config.clone().expect("resolve checked the config");
        let slot = &entry.versions[&v];
        let (inputs, outputs, ready) = match (&slot.state, &slot.specs) {
            (SlotState::Ready(l), _) => {
                (l.model.inputs().to_vec(), l.model.outputs().to_vec(), true)
            }
            (_, Some((i, o))) => (i.clone(), o.clone(), false),
            (_, None) => (config.inputs.clone(), config.outputs.clone(), false),
        };
        Ok(ModelInfo {
            name: name.into(),
            version: v,
            versions: entry.versions.keys().copied().collect(),
            config,
            inputs,
            outputs,
            ready,
        })
    }

    /// Like `info`, but a model whose inputs are known only from its file (no
    /// `model.toml` specs, never loaded) is loaded first, so row-style faces
    /// can map rows to its inputs.
    pub async fn info_loaded(&self, name: &str, version: Option<u64>) -> CoreResult<ModelInfo> {
        let info = self.info(name, version)?;
        if !info.inputs.is_empty() || info.ready {
            return Ok(info);
        }
        drop(self.ready(name, version, true).await?);
        self.info(name, version)
    }

    /// Whether a model version answers requests now.
    pub fn is_ready(&self, name: &str, version: Option<u64>) -> CoreResult<bool> {
        let st = self.lock();
        let v = st.resolve(name, version)?;
        Ok(matches!(
            st.models[name].versions[&v].state,
            SlotState::Ready(_)
        ))
    }

    /// Every model in the repository (read again, so new folders show) with the
    /// state of each version.
    pub fn index(&self) -> Vec<IndexEntry> {
        let mut st = self.lock();
        if let Ok(models) = repository::scan(&self.inner.root) {
            for m in models {
                if !st.models.contains_key(&m.name) {
                    st.upsert(m);
                }
            }
        }
        let mut rows = Vec::new();
        for (name, entry) in st.models.iter().filter(|(_, e)| !e.deployed) {
            if let Err(reason) = &entry.config {
                rows.push(IndexEntry {
                    name: name.clone(),
                    version: None,
                    state: "UNAVAILABLE",
                    reason: reason.clone(),
                });
                continue;
            }
            for (&v, slot) in &entry.versions {
                let reason = match &slot.state {
                    SlotState::Unavailable(r) => r.clone(),
                    SlotState::Unloaded { by_request: true } => "unloaded".into(),
                    SlotState::Unloaded { by_request: false } => {
                        "not loaded yet: loads on first request".into()
                    }
                    SlotState::Loading { .. } => LoadingEntry::of("", name, v, slot)
                        .map(|e| e.describe())
                        .unwrap_or_default(),
                    _ => String::new(),
                };
                rows.push(IndexEntry {
                    name: name.clone(),
                    version: Some(v),
                    state: slot.state.name(),
                    reason,
                });
            }
        }
        rows
    }

    /// Counters per model version, optionally narrowed to a model or a version.
    pub fn stats(
        &self,
        name: Option<&str>,
        version: Option<u64>,
    ) -> CoreResult<Vec<(String, u64, StatsSnapshot)>> {
        let st = self.lock();
        if let Some(n) = name {
            st.resolve(n, version)?;
        }
        Ok(st
            .models
            .iter()
            .filter(|(n, _)| name.is_none_or(|want| want == n.as_str()))
            .flat_map(|(n, e)| {
                e.versions
                    .iter()
                    .filter(move |(v, _)| version.is_none_or(|want| want == **v))
                    .map(move |(v, slot)| (n.clone(), *v, slot.stats.snapshot()))
            })
            .collect())
    }

    /// The counters of the version `version` names, loaded or not.
    fn version_stats(&self, name: &str, version: Option<u64>) -> Option<Arc<VersionStats>> {
        let st = self.lock();
        let v = st.resolve(name, version).ok()?;
        Some(st.models.get(name)?.versions.get(&v)?.stats.clone())
    }

    /// Requests waiting in each loaded version's queue now.
    pub fn queue_depths(&self) -> Vec<(String, u64, usize)> {
        let st = self.lock();
        st.models
            .iter()
            .flat_map(|(n, e)| {
                e.versions
                    .iter()
                    .filter_map(move |(v, slot)| match &slot.state {
                        SlotState::Ready(l) => Some((n.clone(), *v, l.scheduler.queue_len())),
                        _ => None,
                    })
            })
            .collect()
    }

    pub fn cache_counters(&self) -> CacheCounters {
        self.lock().counters.clone()
    }

    pub fn memory_used(&self) -> u64 {
        self.lock().memory_used()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.inner
            .shutting_down
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Refuses new requests, lets queued ones finish, and stops the workers.
    pub fn shutdown(&self) {
        self.inner
            .shutting_down
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let loaded: Vec<Arc<Loaded>> = {
            let mut st = self.lock();
            st.models
                .values_mut()
                .flat_map(|e| e.versions.values_mut())
                .filter_map(|s| {
                    match std::mem::replace(&mut s.state, SlotState::Unloaded { by_request: false })
                    {
                        SlotState::Ready(l) => Some(l),
                        _ => None,
                    }
                })
                .collect()
        };
        for l in loaded {
            match Arc::try_unwrap(l) {
                Ok(l) => l.scheduler.join(),
                Err(l) => l.scheduler.close(),
            }
        }
    }
}
