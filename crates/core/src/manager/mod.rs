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

mod state;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;

pub use state::{Budget, CacheCounters, Loaded, ManagerState, SlotState};

use crate::backend::{Backend, LoadSpec};
use crate::config::{ModelConfig, TensorSpec};
use crate::error::{CoreError, CoreResult};
use crate::repository::{self, folder_bytes};
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::stats::StatsSnapshot;
use crate::tensor::Tensor;

/// Limits and defaults, from the server's config.
#[derive(Debug, Clone, Copy)]
pub struct ManagerConfig {
    pub budget: Budget,
    /// Largest number of elements one tensor may hold.
    pub max_elements: usize,
    /// Deadline of a request that names none.
    pub default_timeout: Duration,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            budget: Budget::default(),
            max_elements: 1 << 24,
            default_timeout: Duration::from_secs(60),
        }
    }
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
    shutting_down: std::sync::atomic::AtomicBool,
}

enum Step {
    Ready(Arc<Loaded>),
    Wait,
    Load(LoadPlan),
}

struct LoadPlan {
    name: String,
    version: u64,
    dir: PathBuf,
    config: Arc<ModelConfig>,
    evicted: Vec<Arc<Loaded>>,
}

impl Manager {
    /// Reads the repository (a missing folder is an empty repository, logged).
    pub fn new(root: &Path, backends: Vec<Arc<dyn Backend>>, config: ManagerConfig) -> Manager {
        let mut state = ManagerState::default();
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

    pub fn model_names(&self) -> Vec<String> {
        self.lock().models.keys().cloned().collect()
    }

    /// Loads every served version of every model, logging each, within the
    /// budget. Failures mark the model unavailable and are logged.
    pub async fn load_all(&self) {
        for name in self.model_names() {
            let started = Instant::now();
            match self.load(&name, None).await {
                Ok(_) => {
                    tracing::info!(model = %name, "loaded in {:.1} ms", started.elapsed().as_secs_f64() * 1e3)
                }
                Err(e) => tracing::warn!(model = %name, "not loaded: {e}"),
            }
        }
    }

    /// Loads a model (every served version) or one version. The folder is read
    /// again first, as Triton's explicit load does, so a fixed `model.toml` or a
    /// new model folder is picked up.
    pub async fn load(&self, name: &str, version: Option<u64>) -> CoreResult<Outcome> {
        self.wait_for_unloads(name).await;
        let versions = {
            let mut st = self.lock();
            let busy = st.models.get(name).is_some_and(|e| {
                e.versions.values().any(|s| {
                    !matches!(
                        s.state,
                        SlotState::Unloaded { .. } | SlotState::Unavailable(_)
                    )
                })
            });
            if !busy {
                let repo = repository::read_model(&self.inner.root, name);
                if repo.config.is_err() && !st.models.contains_key(name) && !repo.dir.is_dir() {
                    return Err(CoreError::ModelNotFound(name.into()));
                }
                st.upsert(repo);
            }
            let v = st.resolve(name, version)?;
            let entry = &st.models[name];
            let targets: Vec<u64> = match version {
                Some(_) => vec![v],
                None => entry.versions.keys().copied().collect(),
            };
            if targets
                .iter()
                .all(|v| matches!(entry.versions[v].state, SlotState::Ready(_)))
            {
                return Ok(Outcome::AlreadyThere);
            }
            for v in &targets {
                let slot = st.slot_mut(name, *v).expect("resolved version");
                if matches!(
                    slot.state,
                    SlotState::Unavailable(_) | SlotState::Unloaded { .. }
                ) {
                    slot.state = SlotState::Unloaded { by_request: false };
                }
            }
            targets
        };
        for v in versions {
            self.ready(name, Some(v), true).await?;
        }
        Ok(Outcome::Done)
    }

    /// Waits until no version of the model is being unloaded, so a load that
    /// follows an unload runs after it, as Triton orders them.
    async fn wait_for_unloads(&self, name: &str) {
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let unloading = self.lock().models.get(name).is_some_and(|e| {
                e.versions
                    .values()
                    .any(|s| matches!(s.state, SlotState::Unloading))
            });
            if !unloading {
                return;
            }
            notified.await;
        }
    }

    /// Unloads a model (every version) or one version; in-flight requests finish
    /// first, new ones are refused until the model is loaded again.
    pub async fn unload(&self, name: &str, version: Option<u64>) -> CoreResult<Outcome> {
        let draining = {
            let mut st = self.lock();
            let v = st.resolve(name, version)?;
            let targets: Vec<u64> = match version {
                Some(_) => vec![v],
                None => st.models[name].versions.keys().copied().collect(),
            };
            let mut draining = Vec::new();
            for v in targets {
                let slot = st.slot_mut(name, v).expect("resolved version");
                match std::mem::replace(&mut slot.state, SlotState::Unloading) {
                    SlotState::Ready(loaded) => {
                        loaded.scheduler.close();
                        draining.push((v, loaded));
                    }
                    SlotState::Loading { reserved } => slot.state = SlotState::Loading { reserved },
                    SlotState::Unloaded { .. }
                    | SlotState::Unavailable(_)
                    | SlotState::Unloading => {
                        slot.state = SlotState::Unloaded { by_request: true };
                    }
                }
            }
            draining
        };
        if draining.is_empty() {
            return Ok(Outcome::AlreadyThere);
        }
        for (v, loaded) in draining {
            while Arc::strong_count(&loaded) > 1 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            drop(loaded);
            if let Some(slot) = self.lock().slot_mut(name, v) {
                slot.state = SlotState::Unloaded { by_request: true };
            }
            tracing::info!(model = %name, version = v, "unloaded");
        }
        self.inner.changed.notify_waiters();
        Ok(Outcome::Done)
    }

    /// The ready version a request will use, loading it if it was never loaded
    /// or was evicted (`autoload`), waiting if another request is loading it.
    async fn ready(
        &self,
        name: &str,
        version: Option<u64>,
        autoload: bool,
    ) -> CoreResult<Arc<Loaded>> {
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let step = self.next_step(name, version, autoload)?;
            match step {
                Step::Ready(l) => return Ok(l),
                Step::Wait => notified.await,
                Step::Load(plan) => return self.run_load(plan).await,
            }
        }
    }

    fn next_step(&self, name: &str, version: Option<u64>, autoload: bool) -> CoreResult<Step> {
        if self
            .inner
            .shutting_down
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Err(CoreError::ShuttingDown);
        }
        let mut st = self.lock();
        let v = st.resolve(name, version)?;
        let tick = st.tick();
        let entry = &st.models[name];
        let config = entry.config.clone().expect("resolve checked the config");
        let dir = entry.dir.clone();
        let slot = st.slot_mut(name, v).expect("resolved version");
        match &slot.state {
            SlotState::Ready(l) => {
                let l = l.clone();
                slot.last_used = tick;
                slot.access_count += 1;
                st.counters.hits += 1;
                Ok(Step::Ready(l))
            }
            SlotState::Loading { .. } | SlotState::Unloading => Ok(Step::Wait),
            SlotState::Unavailable(reason) => Err(CoreError::ModelUnavailable {
                model: name.into(),
                reason: reason.clone(),
            }),
            SlotState::Unloaded { by_request } if *by_request || !autoload => {
                Err(CoreError::NotLoaded {
                    model: name.into(),
                    version: v,
                })
            }
            SlotState::Unloaded { .. } => {
                let needed = folder_bytes(&dir.join(v.to_string()));
                let evict = st
                    .pick_evictions(needed, self.inner.config.budget)
                    .ok_or_else(|| CoreError::OutOfMemory {
                        model: name.into(),
                        needed,
                        budget: self.inner.config.budget.max_memory_bytes,
                    })?;
                st.counters.misses += 1;
                let mut evicted = Vec::new();
                for (ename, ev) in evict {
                    let slot = st.slot_mut(&ename, ev).expect("picked from state");
                    if let SlotState::Ready(l) = std::mem::replace(
                        &mut slot.state,
                        SlotState::Unloaded { by_request: false },
                    ) {
                        l.scheduler.close();
                        evicted.push(l);
                    }
                    st.counters.evictions += 1;
                    tracing::info!(model = %ename, version = ev, "evicted (least recently used)");
                }
                let slot = st.slot_mut(name, v).expect("resolved version");
                slot.state = SlotState::Loading { reserved: needed };
                slot.last_used = tick;
                slot.access_count += 1;
                Ok(Step::Load(LoadPlan {
                    name: name.into(),
                    version: v,
                    dir,
                    config,
                    evicted,
                }))
            }
        }
    }

    async fn run_load(&self, plan: LoadPlan) -> CoreResult<Arc<Loaded>> {
        drop(plan.evicted);
        let backend = self
            .inner
            .backends
            .get(plan.config.backend.as_str())
            .cloned();
        let stats = self
            .lock()
            .slot_mut(&plan.name, plan.version)
            .map(|s| s.stats.clone())
            .unwrap_or_default();
        let started = Instant::now();
        let (name, version, dir, config) = (
            plan.name.clone(),
            plan.version,
            plan.dir.clone(),
            plan.config.clone(),
        );
        let result = tokio::task::spawn_blocking(move || {
            let backend = backend
                .ok_or_else(|| format!("no backend named '{}' in this build", config.backend))?;
            let version_dir = dir.join(version.to_string());
            let spec = LoadSpec {
                name: &name,
                version,
                model_dir: &dir,
                version_dir: &version_dir,
                config: &config,
            };
            let model: Arc<dyn crate::backend::LoadedModel> =
                backend.load(&spec).map_err(|e| e.to_string())?.into();
            let scheduler = Scheduler::start(
                &name,
                model.clone(),
                SchedulerConfig {
                    max_queue: config.max_queue,
                    max_batch: config.max_batch_size,
                    max_delay: config.max_queue_delay,
                    instances: config.instances,
                },
                stats.clone(),
            );
            Ok::<_, String>(Loaded {
                memory: model.memory_bytes(),
                model,
                scheduler,
                stats,
                load_time: Duration::ZERO,
                loaded_at: SystemTime::now(),
            })
        })
        .await
        .unwrap_or_else(|e| Err(format!("loader panicked: {e}")));
        let took = started.elapsed();
        let outcome = {
            let mut st = self.lock();
            st.counters.load_time += took;
            let outcome = match result {
                Ok(mut loaded) => {
                    st.counters.loads += 1;
                    loaded.load_time = took;
                    Ok(Arc::new(loaded))
                }
                Err(reason) => {
                    st.counters.load_failures += 1;
                    Err(reason)
                }
            };
            if let Some(slot) = st.slot_mut(&plan.name, plan.version) {
                slot.state = match &outcome {
                    Ok(l) => SlotState::Ready(l.clone()),
                    Err(reason) => SlotState::Unavailable(reason.clone()),
                };
            }
            outcome
        };
        self.inner.changed.notify_waiters();
        outcome.map_err(|reason| CoreError::ModelUnavailable {
            model: plan.name,
            reason,
        })
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
        let deadline = started + timeout;
        let expired = || CoreError::DeadlineExceeded {
            model: req.model.clone(),
            deadline: timeout,
        };
        let loaded =
            tokio::time::timeout_at(deadline.into(), self.ready(&req.model, req.version, true))
                .await
                .map_err(|_| expired())??;
        let version = self.resolve(&req.model, req.version)?;
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
            let rx = loaded.scheduler.submit(inputs, rows, deadline, timeout)?;
            let outputs = tokio::time::timeout_at(deadline.into(), rx)
                .await
                .map_err(|_| expired())?
                .map_err(|_| CoreError::ShuttingDown)??;
            Ok(match keep {
                None => outputs,
                Some(names) => names
                    .iter()
                    .filter_map(|n| outputs.iter().find(|t| &t.name == n).cloned())
                    .collect(),
            })
        }
        .await;
        loaded
            .stats
            .record_request(result.is_ok(), started.elapsed());
        Ok(InferResponse {
            model: req.model,
            version,
            outputs: result?,
        })
    }

    fn resolve(&self, name: &str, version: Option<u64>) -> CoreResult<u64> {
        self.lock().resolve(name, version)
    }

    /// Metadata of a model version (inputs and outputs as the loaded model
    /// reports them, else as its config declares them).
    pub fn info(&self, name: &str, version: Option<u64>) -> CoreResult<ModelInfo> {
        let st = self.lock();
        let v = st.resolve(name, version)?;
        let entry = &st.models[name];
        let config = entry.config.clone().expect("resolve checked the config");
        let (inputs, outputs, ready) = match &entry.versions[&v].state {
            SlotState::Ready(l) => (l.model.inputs().to_vec(), l.model.outputs().to_vec(), true),
            _ => (config.inputs.clone(), config.outputs.clone(), false),
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
        for (name, entry) in &st.models {
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

/// Puts the request's tensors in the model's input order, checking names, types
/// and shapes; also returns the rows along dimension 0 for batching models.
fn order_inputs(
    model: &str,
    specs: &[TensorSpec],
    mut given: Vec<Tensor>,
    batching: bool,
) -> CoreResult<(Vec<Tensor>, usize)> {
    for (i, t) in given.iter().enumerate() {
        if given[..i].iter().any(|o| o.name == t.name) {
            return Err(CoreError::BadRequest(format!(
                "input '{}' is given twice",
                t.name
            )));
        }
        if !specs.iter().any(|s| s.name == t.name) {
            return Err(CoreError::UnknownInput {
                model: model.into(),
                input: t.name.clone(),
                expected: specs.iter().map(|s| s.name.clone()).collect(),
            });
        }
    }
    let mut ordered = Vec::with_capacity(specs.len());
    for spec in specs {
        let pos = given
            .iter()
            .position(|t| t.name == spec.name)
            .ok_or_else(|| CoreError::MissingInput {
                model: model.into(),
                input: spec.name.clone(),
            })?;
        let t = given.swap_remove(pos);
        spec.check(model, &t)?;
        ordered.push(t);
    }
    let rows = if batching {
        let rows = ordered.first().map(|t| t.batch_size()).unwrap_or(1);
        if let Some(t) = ordered
            .iter()
            .find(|t| t.shape().is_empty() || t.batch_size() != rows)
        {
            return Err(CoreError::BadRequest(format!(
                "every input of a batching model needs the same size in dimension 0; '{}' has shape {:?}, expected [{rows}, ...]",
                t.name,
                t.shape()
            )));
        }
        if rows == 0 {
            return Err(CoreError::BadRequest(
                "dimension 0 (the batch) is 0: a request needs at least one row".into(),
            ));
        }
        rows
    } else {
        1
    };
    Ok((ordered, rows))
}

fn requested_outputs(
    model: &str,
    specs: &[TensorSpec],
    wanted: Option<&[String]>,
) -> CoreResult<Option<Vec<String>>> {
    let Some(wanted) = wanted.filter(|w| !w.is_empty()) else {
        return Ok(None);
    };
    for (i, name) in wanted.iter().enumerate() {
        if wanted[..i].contains(name) {
            return Err(CoreError::BadRequest(format!(
                "output '{name}' is requested twice"
            )));
        }
        if !specs.iter().any(|s| &s.name == name) {
            return Err(CoreError::UnknownOutput {
                model: model.into(),
                output: name.clone(),
                expected: specs.iter().map(|s| s.name.clone()).collect(),
            });
        }
    }
    Ok(Some(wanted.to_vec()))
}
