//! The manager seen as a model cache (seed 004): what is in memory, under which
//! key, how often it was used, and run-time control of its limits.

use std::time::{Duration, SystemTime};

use super::state::{Slot, SlotState};
use super::{Budget, Manager};
use crate::error::{CoreError, CoreResult};

/// One model version in memory.
#[derive(Debug, Clone)]
pub struct CacheEntry {
    /// `backend:name`, the key seed 004 uses.
    pub key: String,
    pub model: String,
    pub version: u64,
    pub backend: String,
    pub loaded_at: SystemTime,
    pub load_time: Duration,
    pub access_count: u64,
    pub last_access: Option<SystemTime>,
    pub memory: u64,
}

/// A version being loaded now, and how far: its backend reads the files
/// itself, so what is known is the time so far, the size of what it reads,
/// and how long its last load took.
#[derive(Debug, Clone)]
pub struct LoadingEntry {
    pub key: String,
    pub model: String,
    pub version: u64,
    pub elapsed: Duration,
    /// The version's files on disk.
    pub bytes: u64,
    pub last_load: Option<Duration>,
}

impl LoadingEntry {
    /// The slot's load, if one is under way; `backend` makes its cache key.
    pub(super) fn of(
        backend: &str,
        model: &str,
        version: u64,
        slot: &Slot,
    ) -> Option<LoadingEntry> {
        let SlotState::Loading { reserved, since } = &slot.state else {
            return None;
        };
        Some(LoadingEntry {
            key: format!("{backend}:{model}"),
            model: model.to_string(),
            version,
            elapsed: since.elapsed(),
            bytes: *reserved,
            last_load: slot.last_load,
        })
    }

    /// `loading for 3.2 s: 96.0 MB of files (its last load took 5.1 s)`.
    pub fn describe(&self) -> String {
        let last = self
            .last_load
            .map(|d| format!(" (its last load took {:.1} s)", d.as_secs_f64()))
            .unwrap_or_default();
        format!(
            "loading for {:.1} s: {:.1} MB of files{last}",
            self.elapsed.as_secs_f64(),
            self.bytes as f64 / 1e6
        )
    }
}

/// What a budget change did.
#[derive(Debug, Clone)]
pub struct Resized {
    pub evicted: Vec<String>,
    /// False when busy models keep the cache above the new limits for now;
    /// they are evicted once idle and a load needs the room.
    pub fits: bool,
}

impl Manager {
    /// Every version in memory, least recently used first (inference services'
    /// deployments are not cache entries: they stay until stopped).
    pub fn cache_entries(&self) -> Vec<CacheEntry> {
        let st = self.lock();
        let mut entries: Vec<(u64, CacheEntry)> = Vec::new();
        for (name, entry) in st.models.iter().filter(|(_, e)| !e.deployed) {
            let backend = entry
                .config
                .as_ref()
                .map(|c| c.backend.clone())
                .unwrap_or_default();
            for (&version, slot) in &entry.versions {
                if let SlotState::Ready(l) = &slot.state {
                    entries.push((
                        slot.last_used,
                        CacheEntry {
                            key: format!("{backend}:{name}"),
                            model: name.clone(),
                            version,
                            backend: backend.clone(),
                            loaded_at: l.loaded_at,
                            load_time: l.load_time,
                            access_count: slot.access_count,
                            last_access: slot.last_access,
                            memory: l.memory,
                        },
                    ));
                }
            }
        }
        entries.sort_by_key(|(tick, _)| *tick);
        entries.into_iter().map(|(_, e)| e).collect()
    }

    /// Every version being loaded now, deployments' included.
    pub fn loading_entries(&self) -> Vec<LoadingEntry> {
        let st = self.lock();
        let mut out = Vec::new();
        for (name, entry) in &st.models {
            let backend = entry
                .config
                .as_ref()
                .map(|c| c.backend.clone())
                .unwrap_or_default();
            out.extend(
                entry
                    .versions
                    .iter()
                    .filter_map(|(&v, slot)| LoadingEntry::of(&backend, name, v, slot)),
            );
        }
        out
    }

    pub fn budget(&self) -> Budget {
        self.lock().budget
    }

    /// Sets new limits and evicts least recently used idle models at once until
    /// the cache fits them.
    pub async fn set_budget(&self, budget: Budget) -> Resized {
        let (chosen, fits) = {
            let mut st = self.lock();
            st.budget = budget;
            st.shrink_to(budget)
        };
        let mut evicted = Vec::new();
        for (name, version) in chosen {
            if self.unload_as(&name, Some(version), false).await.is_ok() {
                evicted.push(name);
            }
        }
        Resized { evicted, fits }
    }

    /// Takes a model out of memory (after in-flight requests finish); unlike an
    /// unload, its next request loads it again. Accepts a model name or a
    /// `backend:name` key. Returns whether anything was in memory.
    pub async fn evict(&self, key: &str) -> CoreResult<bool> {
        let name = self.name_of_key(key)?;
        Ok(self.unload_as(&name, None, false).await? == super::Outcome::Done)
    }

    /// Evicts every model; returns how many versions were in memory.
    pub async fn clear_cache(&self) -> usize {
        let names: Vec<String> = self.cache_entries().into_iter().map(|e| e.model).collect();
        let mut cleared = 0;
        for name in names {
            if matches!(
                self.unload_as(&name, None, false).await,
                Ok(super::Outcome::Done)
            ) {
                cleared += 1;
            }
        }
        cleared
    }

    /// The model a cache key names: `backend:name` must match the model's
    /// backend; a bare name is accepted too.
    pub fn name_of_key(&self, key: &str) -> CoreResult<String> {
        let st = self.lock();
        let (backend, name) = match key.split_once(':') {
            Some((b, n)) => (Some(b), n),
            None => (None, key),
        };
        let entry = st
            .models
            .get(name)
            .filter(|e| !e.deployed)
            .ok_or_else(|| CoreError::ModelNotFound(key.into()))?;
        if let (Some(b), Ok(config)) = (backend, &entry.config) {
            if config.backend != b {
                return Err(CoreError::WrongEngine {
                    key: key.into(),
                    engine: b.into(),
                    model: name.into(),
                    backend: config.backend.clone(),
                });
            }
        }
        Ok(name.to_string())
    }
}
