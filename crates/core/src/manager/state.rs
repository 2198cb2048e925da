//! The manager's plain state: every model, each version's life, the LRU clock and
//! the cache counters. No locks or threads here; the `Manager` handle holds it in
//! one mutex and the unit tests drive it directly.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::backend::LoadedModel;
use crate::config::{ModelConfig, TensorSpec};
use crate::error::{CoreError, CoreResult};
use crate::repository::RepoModel;
use crate::scheduler::Scheduler;
use crate::stats::VersionStats;

/// A model version in memory with its queue and workers. Requests hold an `Arc`
/// of it while they run, so a version is idle exactly when the manager holds
/// the only reference.
pub struct Loaded {
    pub model: Arc<dyn LoadedModel>,
    pub scheduler: Scheduler,
    pub stats: Arc<VersionStats>,
    pub memory: u64,
    pub load_time: Duration,
    pub loaded_at: SystemTime,
    /// The version this is, so a request learns it without another lookup.
    pub version: u64,
}

/// The life of one model version.
pub enum SlotState {
    /// Not in memory. `by_request`: a user unloaded it, so requests are refused
    /// until someone loads it again; otherwise (never loaded, or evicted) the
    /// first request loads it.
    Unloaded {
        by_request: bool,
    },
    Loading {
        /// The model's size on disk, held against the budget while it loads.
        reserved: u64,
        since: Instant,
    },
    Ready(Arc<Loaded>),
    Unloading,
    Unavailable(String),
}

impl SlotState {
    /// Triton's state names (UNAVAILABLE covers "not in memory"; the index's
    /// reason says why).
    pub fn name(&self) -> &'static str {
        match self {
            SlotState::Unloaded { .. } => "UNAVAILABLE",
            SlotState::Loading { .. } => "LOADING",
            SlotState::Ready(_) => "READY",
            SlotState::Unloading => "UNLOADING",
            SlotState::Unavailable(_) => "UNAVAILABLE",
        }
    }
}

pub struct Slot {
    pub state: SlotState,
    /// The LRU clock's tick at the last request.
    pub last_used: u64,
    pub last_access: Option<SystemTime>,
    pub access_count: u64,
    /// Inputs and outputs as the model reported them when it was last loaded,
    /// so metadata of a model read from its graph stays known after eviction.
    pub specs: Option<(Vec<TensorSpec>, Vec<TensorSpec>)>,
    pub stats: Arc<VersionStats>,
    /// How long its last successful load took: what a load under way is
    /// measured against.
    pub last_load: Option<Duration>,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            state: SlotState::Unloaded { by_request: false },
            last_used: 0,
            last_access: None,
            access_count: 0,
            specs: None,
            stats: Arc::default(),
            last_load: None,
        }
    }
}

pub struct ModelEntry {
    pub dir: PathBuf,
    pub config: Result<Arc<ModelConfig>, String>,
    pub versions: BTreeMap<u64, Slot>,
    /// A deployment (see `manager/deploy.rs`): kept in memory until undeployed,
    /// never evicted, not read again from a folder of its own name.
    pub deployed: bool,
}

/// Cache counters (seed 004's model cache reads these).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheCounters {
    pub hits: u64,
    pub misses: u64,
    pub loads: u64,
    pub load_failures: u64,
    pub evictions: u64,
    pub load_time: Duration,
}

/// Limits the manager keeps loaded models within (0 = no limit).
#[derive(Debug, Clone, Copy, Default)]
pub struct Budget {
    pub max_loaded_models: usize,
    pub max_memory_bytes: u64,
}

#[derive(Default)]
pub struct ManagerState {
    pub models: BTreeMap<String, ModelEntry>,
    pub counters: CacheCounters,
    /// The limits in force; the cache API changes them at run time.
    pub budget: Budget,
    clock: u64,
}

impl ManagerState {
    /// Adds or refreshes a model from its folder. Versions that stay keep their
    /// state and counters; a refresh never touches a version that is in memory.
    pub fn upsert(&mut self, repo: RepoModel) {
        let entry = self
            .models
            .entry(repo.name.clone())
            .or_insert_with(|| ModelEntry {
                dir: repo.dir.clone(),
                config: Err(String::new()),
                versions: BTreeMap::new(),
                deployed: false,
            });
        entry.config = repo.config.map(Arc::new);
        entry.versions.retain(|v, slot| {
            repo.versions.contains(v)
                || !matches!(
                    slot.state,
                    SlotState::Unloaded { .. } | SlotState::Unavailable(_)
                )
        });
        for v in repo.versions {
            entry.versions.entry(v).or_insert_with(Slot::new);
        }
    }

    pub fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// The version a request means: the one named, or the highest served.
    pub fn resolve(&self, name: &str, version: Option<u64>) -> CoreResult<u64> {
        let entry = self
            .models
            .get(name)
            .ok_or_else(|| CoreError::ModelNotFound(name.into()))?;
        if let Err(reason) = &entry.config {
            return Err(CoreError::ModelUnavailable {
                model: name.into(),
                reason: reason.clone(),
            });
        }
        match version {
            Some(v) if entry.versions.contains_key(&v) => Ok(v),
            Some(v) => Err(CoreError::VersionNotFound {
                model: name.into(),
                version: v.to_string(),
            }),
            None => entry.versions.keys().next_back().copied().ok_or_else(|| {
                CoreError::ModelUnavailable {
                    model: name.into(),
                    reason: "no versions".into(),
                }
            }),
        }
    }

    pub fn slot_mut(&mut self, name: &str, version: u64) -> Option<&mut Slot> {
        self.models.get_mut(name)?.versions.get_mut(&version)
    }

    /// Picks the least recently used idle versions to evict so that one more
    /// model of `needed` bytes fits the budget; `None` when it cannot fit even
    /// after evicting every idle model.
    pub fn pick_evictions(&self, needed: u64, budget: Budget) -> Option<Vec<(String, u64)>> {
        let (chosen, fits) = self.plan_evictions(needed, 1, budget);
        fits.then_some(chosen)
    }

    /// The idle versions to evict, least recently used first, so that the
    /// models in memory fit `budget` (after shrinking it, say), and whether
    /// they then fit: busy versions are never chosen.
    pub fn shrink_to(&self, budget: Budget) -> (Vec<(String, u64)>, bool) {
        self.plan_evictions(0, 0, budget)
    }

    fn plan_evictions(
        &self,
        needed: u64,
        adding: usize,
        budget: Budget,
    ) -> (Vec<(String, u64)>, bool) {
        let mut count = 0usize;
        let mut used = 0u64;
        let mut idle = Vec::new();
        for (name, entry) in self.models.iter().filter(|(_, e)| !e.deployed) {
            for (&v, slot) in &entry.versions {
                match &slot.state {
                    SlotState::Ready(l) => {
                        count += 1;
                        used += l.memory;
                        if Arc::strong_count(l) == 1 && l.scheduler.queue_len() == 0 {
                            idle.push((slot.last_used, name.clone(), v, l.memory));
                        }
                    }
                    SlotState::Loading { reserved, .. } => {
                        count += 1;
                        used += reserved;
                    }
                    _ => {}
                }
            }
        }
        idle.sort();
        let over = |count: usize, used: u64| {
            (budget.max_loaded_models > 0 && count + adding > budget.max_loaded_models)
                || (budget.max_memory_bytes > 0 && used + needed > budget.max_memory_bytes)
        };
        let mut chosen = Vec::new();
        let mut idle = idle.into_iter();
        while over(count, used) {
            let Some((_, name, v, memory)) = idle.next() else {
                return (chosen, false);
            };
            count -= 1;
            used -= memory;
            chosen.push((name, v));
        }
        (chosen, true)
    }

    /// Memory held by the cache's loaded (and loading) versions; deployments
    /// are accounted by the services that own them.
    pub fn memory_used(&self) -> u64 {
        self.models
            .values()
            .filter(|e| !e.deployed)
            .flat_map(|e| e.versions.values())
            .map(|s| match &s.state {
                SlotState::Ready(l) => l.memory,
                SlotState::Loading { reserved, .. } => *reserved,
                _ => 0,
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendError;
    use crate::config::TensorSpec;
    use crate::scheduler::SchedulerConfig;
    use crate::tensor::Tensor;

    struct Fake;
    impl LoadedModel for Fake {
        fn inputs(&self) -> &[TensorSpec] {
            &[]
        }
        fn outputs(&self) -> &[TensorSpec] {
            &[]
        }
        fn memory_bytes(&self) -> u64 {
            0
        }
        fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
            Ok(inputs)
        }
    }

    fn state_with(models: &[(&str, u64, u64)]) -> ManagerState {
        let mut st = ManagerState::default();
        for &(name, memory, last_used) in models {
            st.upsert(RepoModel {
                name: name.into(),
                dir: PathBuf::new(),
                config: Ok(ModelConfig::default()),
                versions: vec![1],
            });
            let stats = Arc::new(VersionStats::default());
            let loaded = Loaded {
                model: Arc::new(Fake),
                scheduler: Scheduler::start(
                    name,
                    Arc::new(Fake),
                    SchedulerConfig {
                        max_queue: 1,
                        max_batch: 0,
                        max_delay: Duration::ZERO,
                        instances: 1,
                        inline_limit: Duration::ZERO,
                    },
                    stats.clone(),
                ),
                stats,
                memory,
                load_time: Duration::ZERO,
                loaded_at: SystemTime::now(),
                version: 1,
            };
            let slot = st.slot_mut(name, 1).unwrap();
            slot.state = SlotState::Ready(Arc::new(loaded));
            slot.last_used = last_used;
        }
        st
    }

    #[test]
    fn evicts_least_recently_used_first_by_count() {
        let st = state_with(&[("a", 10, 3), ("b", 10, 1), ("c", 10, 2)]);
        let budget = Budget {
            max_loaded_models: 3,
            max_memory_bytes: 0,
        };
        assert_eq!(
            st.pick_evictions(5, budget).unwrap(),
            vec![("b".to_string(), 1)]
        );
        let budget = Budget {
            max_loaded_models: 2,
            max_memory_bytes: 0,
        };
        assert_eq!(
            st.pick_evictions(5, budget).unwrap(),
            vec![("b".to_string(), 1), ("c".to_string(), 1)]
        );
    }

    #[test]
    fn evicts_by_memory_and_never_a_busy_model() {
        let st = state_with(&[("a", 60, 1), ("b", 30, 2)]);
        let budget = Budget {
            max_loaded_models: 0,
            max_memory_bytes: 100,
        };
        assert_eq!(st.pick_evictions(10, budget).unwrap(), vec![]);
        assert_eq!(
            st.pick_evictions(20, budget).unwrap(),
            vec![("a".to_string(), 1)]
        );
        // A request holds "a": only "b" may go, which is not enough.
        let SlotState::Ready(held) = &st.models["a"].versions[&1].state else {
            unreachable!()
        };
        let _request = held.clone();
        assert_eq!(
            st.pick_evictions(20, budget).unwrap(),
            vec![("b".to_string(), 1)]
        );
        assert_eq!(st.pick_evictions(50, budget), None);
        assert_eq!(st.pick_evictions(200, budget), None);
    }

    #[test]
    fn shrinking_evicts_idle_models_oldest_first() {
        let st = state_with(&[("a", 10, 3), ("b", 10, 1), ("c", 10, 2)]);
        let one = Budget {
            max_loaded_models: 1,
            max_memory_bytes: 0,
        };
        let (chosen, fits) = st.shrink_to(one);
        assert_eq!(chosen, vec![("b".to_string(), 1), ("c".to_string(), 1)]);
        assert!(fits);
        let SlotState::Ready(held) = &st.models["b"].versions[&1].state else {
            unreachable!()
        };
        let _request = held.clone();
        let (chosen, fits) = st.shrink_to(Budget {
            max_loaded_models: 0,
            max_memory_bytes: 5,
        });
        assert_eq!(chosen, vec![("c".to_string(), 1), ("a".to_string(), 1)]);
        assert!(!fits, "b is busy, so the budget cannot be met yet");
    }

    #[test]
    fn deployments_are_outside_the_cache_budget() {
        let mut st = state_with(&[("svc", 50, 1), ("a", 10, 2)]);
        st.models.get_mut("svc").unwrap().deployed = true;
        let budget = Budget {
            max_loaded_models: 2,
            max_memory_bytes: 40,
        };
        assert_eq!(st.pick_evictions(30, budget).unwrap(), vec![]);
        assert_eq!(
            st.pick_evictions(31, budget).unwrap(),
            vec![("a".to_string(), 1)]
        );
        assert_eq!(st.memory_used(), 10);
    }

    #[test]
    fn resolve_picks_highest_version_and_reports_problems() {
        let mut st = ManagerState::default();
        st.upsert(RepoModel {
            name: "m".into(),
            dir: PathBuf::new(),
            config: Ok(ModelConfig::default()),
            versions: vec![1, 4],
        });
        st.upsert(RepoModel {
            name: "bad".into(),
            dir: PathBuf::new(),
            config: Err("broken".into()),
            versions: vec![],
        });
        assert_eq!(st.resolve("m", None).unwrap(), 4);
        assert_eq!(st.resolve("m", Some(1)).unwrap(), 1);
        assert!(matches!(
            st.resolve("m", Some(2)),
            Err(CoreError::VersionNotFound { .. })
        ));
        assert!(matches!(
            st.resolve("x", None),
            Err(CoreError::ModelNotFound(_))
        ));
        assert!(matches!(
            st.resolve("bad", None),
            Err(CoreError::ModelUnavailable { .. })
        ));
    }
}
