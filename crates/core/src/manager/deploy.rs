//! Deployments: a repository model served under a name of its own (a seed-003
//! inference service) with its own instances and queue. A deployment is loaded
//! on purpose and kept: the LRU never evicts it, and the repository's listings
//! do not show it (it is not a folder of the repository).

use super::Manager;
use crate::error::{CoreError, CoreResult};
use crate::repository;

/// What to deploy.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// The name it serves under; must not be a repository model's.
    pub name: String,
    pub model: String,
    /// `None`: the highest version the model's policy serves.
    pub version: Option<u64>,
    /// Workers taking from its queue.
    pub instances: usize,
    /// Most memory the loaded model may take, in bytes.
    pub memory_limit: u64,
}

/// What a finished deployment holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deployed {
    pub version: u64,
    pub memory: u64,
}

impl Manager {
    /// The version a deployment of `model` would run, checked against the
    /// repository as it is on disk now.
    pub fn deployable_version(&self, model: &str, version: Option<u64>) -> CoreResult<u64> {
        let repo = repository::read_model(&self.inner.root, model);
        if !repo.dir.is_dir() {
            return Err(CoreError::ModelNotFound(model.into()));
        }
        if let Err(reason) = &repo.config {
            return Err(CoreError::ModelUnavailable {
                model: model.into(),
                reason: reason.clone(),
            });
        }
        match version {
            None => repo
                .versions
                .last()
                .copied()
                .ok_or_else(|| CoreError::ModelUnavailable {
                    model: model.into(),
                    reason: "no versions".into(),
                }),
            Some(v) if repo.versions.contains(&v) => Ok(v),
            Some(v) => Err(CoreError::VersionNotFound {
                model: model.into(),
                version: format!("{v} (it serves {:?})", repo.versions),
            }),
        }
    }

    /// Loads `d.model` under `d.name` with `d.instances` workers; fails (and
    /// leaves nothing loaded) when the model needs more than `d.memory_limit`.
    pub async fn deploy(&self, d: &Deployment) -> CoreResult<Deployed> {
        let version = self.deployable_version(&d.model, d.version)?;
        {
            let mut st = self.lock();
            if st.models.get(&d.name).is_some_and(|e| !e.deployed) {
                return Err(CoreError::BadRequest(format!(
                    "'{}' is a repository model's name; a deployment needs its own",
                    d.name
                )));
            }
            let mut repo = repository::read_model(&self.inner.root, &d.model);
            repo.name = d.name.clone();
            repo.versions = vec![version];
            if let Ok(config) = &mut repo.config {
                config.instances = d.instances.max(1);
            }
            st.upsert(repo);
            if let Some(entry) = st.models.get_mut(&d.name) {
                entry.deployed = true;
            }
        }
        let loaded = match self.ready(&d.name, Some(version), true).await {
            Ok(l) => l,
            Err(e) => {
                self.undeploy(&d.name).await;
                return Err(e);
            }
        };
        let memory = loaded.memory;
        drop(loaded);
        if memory > d.memory_limit {
            self.undeploy(&d.name).await;
            return Err(CoreError::ModelUnavailable {
                model: d.model.clone(),
                reason: format!(
                    "it takes {memory} bytes loaded, more than the {} bytes of memory asked for",
                    d.memory_limit
                ),
            });
        }
        Ok(Deployed { version, memory })
    }

    /// Frees a deployment's instances (after its in-flight requests) and forgets
    /// it; a name that is not a deployment is left alone.
    pub async fn undeploy(&self, name: &str) {
        let deployed = self.lock().models.get(name).is_some_and(|e| e.deployed);
        if !deployed {
            return;
        }
        let _ = self.unload_as(name, None, true).await;
        let mut st = self.lock();
        let idle = st.models.get(name).is_some_and(|e| {
            e.versions.values().all(|s| {
                matches!(
                    s.state,
                    super::SlotState::Unloaded { .. } | super::SlotState::Unavailable(_)
                )
            })
        });
        if idle {
            st.models.remove(name);
        }
    }
}
