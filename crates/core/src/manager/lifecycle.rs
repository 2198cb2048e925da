//! Loading, unloading and eviction: the life of a model version (see the
//! concurrency design at the top of `manager/mod.rs`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::state::{Budget, Loaded, SlotState};
use super::{LoadingEntry, Manager, Outcome};
use crate::backend::LoadSpec;
use crate::config::ModelConfig;
use crate::error::{CoreError, CoreResult};
use crate::repository::{self, folder_bytes};
use crate::scheduler::{Scheduler, SchedulerConfig};

/// How often a load under way is logged, after the first such wait.
const LOAD_LOG_EVERY: Duration = Duration::from_secs(5);

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
            let deployed = st.models.get(name).is_some_and(|e| e.deployed);
            // A name that is not a plain folder name is no model: refused before
            // the filesystem is asked, so a load can neither reach outside the
            // repository nor tell which outside folders exist.
            if !repository::is_plain_name(name) && !st.models.contains_key(name) {
                return Err(CoreError::ModelNotFound(name.into()));
            }
            if !busy && !deployed {
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
        if self.lock().models.get(name).is_some_and(|e| e.deployed) {
            return Err(CoreError::BadRequest(format!(
                "'{name}' is an inference service: stop it with POST /api/v1/inference/services/{name}/stop"
            )));
        }
        self.unload_as(name, version, true).await
    }

    /// Takes versions out of memory. `by_request`: a user unloaded them, so
    /// requests are refused until a load; otherwise it is an eviction and the
    /// next request loads them again.
    pub(super) async fn unload_as(
        &self,
        name: &str,
        version: Option<u64>,
        by_request: bool,
    ) -> CoreResult<Outcome> {
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
                    loading @ SlotState::Loading { .. } => slot.state = loading,
                    SlotState::Unloading => {}
                    SlotState::Unloaded { by_request: was } => {
                        slot.state = SlotState::Unloaded {
                            by_request: was || by_request,
                        };
                    }
                    SlotState::Unavailable(reason) if !by_request => {
                        slot.state = SlotState::Unavailable(reason)
                    }
                    SlotState::Unavailable(_) => {
                        slot.state = SlotState::Unloaded { by_request: true }
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
            let mut st = self.lock();
            if !by_request {
                st.counters.evictions += 1;
            }
            if let Some(slot) = st.slot_mut(name, v) {
                slot.state = SlotState::Unloaded { by_request };
            }
            drop(st);
            let what = if by_request { "unloaded" } else { "evicted" };
            tracing::info!(model = %name, version = v, "{what}");
        }
        self.inner.changed.notify_waiters();
        Ok(Outcome::Done)
    }

    /// The ready version a request will use, loading it if it was never loaded
    /// or was evicted (`autoload`), waiting if another request is loading it.
    pub(super) async fn ready(
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
        // A deployment is not a cache entry: its use is no cache hit or miss,
        // and it was admitted against the services' own memory reservation,
        // so it neither evicts cache entries nor counts as one.
        let deployed = entry.deployed;
        let slot = st.slot_mut(name, v).expect("resolved version");
        match &slot.state {
            SlotState::Ready(l) => {
                let l = l.clone();
                slot.last_used = tick;
                slot.last_access = Some(SystemTime::now());
                slot.access_count += 1;
                if !deployed {
                    st.counters.hits += 1;
                }
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
                let budget = if deployed {
                    Budget::default()
                } else {
                    st.budget
                };
                let evict = st.pick_evictions(needed, budget).ok_or_else(|| {
                    // Name only the limits that refuse it: a count limit of 1
                    // must not read as a memory budget the model fits in.
                    let b = st.budget;
                    let refuses = |only: Budget| st.pick_evictions(needed, only).is_none();
                    let mut limits = Vec::new();
                    let by_count = Budget {
                        max_memory_bytes: 0,
                        ..b
                    };
                    let by_memory = Budget {
                        max_loaded_models: 0,
                        ..b
                    };
                    if b.max_loaded_models > 0 && refuses(by_count) {
                        limits.push(format!("max_loaded_models {}", b.max_loaded_models));
                    }
                    if b.max_memory_bytes > 0 && (limits.is_empty() || refuses(by_memory)) {
                        limits.push(format!(
                            "memory budget {} bytes, this model needs about {needed}",
                            b.max_memory_bytes
                        ));
                    }
                    CoreError::CacheFull {
                        model: name.into(),
                        limits: limits.join("; "),
                    }
                })?;
                if !deployed {
                    st.counters.misses += 1;
                }
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
                slot.state = SlotState::Loading {
                    reserved: needed,
                    since: Instant::now(),
                };
                slot.last_used = tick;
                slot.last_access = Some(SystemTime::now());
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
        let inline_limit = self.inner.config.inline_run;
        let (name, version, dir, config) = (
            plan.name.clone(),
            plan.version,
            plan.dir.clone(),
            plan.config.clone(),
        );
        let mut loading = tokio::task::spawn_blocking(move || {
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
                    inline_limit,
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
                version,
            })
        });
        // A load that takes more than a moment says how far it is, in the log.
        let mut ticks = tokio::time::interval_at((started + LOAD_LOG_EVERY).into(), LOAD_LOG_EVERY);
        let result = loop {
            tokio::select! {
                done = &mut loading => {
                    break done.unwrap_or_else(|e| Err(format!("loader panicked: {e}")));
                }
                _ = ticks.tick() => {
                    let now = self
                        .lock()
                        .slot_mut(&plan.name, plan.version)
                        .and_then(|slot| LoadingEntry::of("", &plan.name, plan.version, slot));
                    if let Some(e) = now {
                        tracing::info!(model = %plan.name, version = plan.version, "{}", e.describe());
                    }
                }
            }
        };
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
                    Ok(l) => {
                        slot.last_load = Some(took);
                        slot.specs = Some((l.model.inputs().to_vec(), l.model.outputs().to_vec()));
                        SlotState::Ready(l.clone())
                    }
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
}
