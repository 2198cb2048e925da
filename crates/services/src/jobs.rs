//! The durable async job queue: a job is written to the store before it is
//! acknowledged, a bounded channel feeds a few worker tasks, and at start the
//! jobs the last process left queued or running are queued again (see
//! `Store::recover_jobs`), so an accepted job is never lost; finished ones are
//! purged after the retention time. What a job *is* belongs to the face that
//! accepted it: the queue stores its request text and hands it back to that
//! face's `JobRunner`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use inferd_store::{now, JobRecord, JobStatus, Store, StoreError};
use tokio::sync::{mpsc, Mutex};

/// How the job queue runs.
#[derive(Debug, Clone, Copy)]
pub struct JobConfig {
    pub workers: usize,
    pub max_pending: usize,
    pub retention: Duration,
    /// A job the server crashed under this many times is failed, not rerun.
    pub max_attempts: u32,
}

impl Default for JobConfig {
    fn default() -> Self {
        JobConfig {
            workers: 2,
            max_pending: 1000,
            retention: Duration::from_secs(24 * 3600),
            max_attempts: 3,
        }
    }
}

/// A job's end: the result's text, or the error's text, each as the face
/// will show it.
pub type JobOutcome = Result<String, String>;

/// Runs a stored request; given to the queue by the face whose requests it
/// stores.
pub trait JobRunner: Send + Sync + 'static {
    fn run(&self, request: String) -> Pin<Box<dyn Future<Output = JobOutcome> + Send + '_>>;
}

/// Why a job call failed.
#[derive(Debug)]
pub enum JobError {
    /// `max_pending` jobs wait already.
    Full,
    NotFound,
    /// A finished job cannot be cancelled.
    Finished(JobStatus),
    Store(String),
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobError::Full => f.write_str("the async job queue is full; retry later"),
            JobError::NotFound => f.write_str("no such job (unknown, or finished and purged)"),
            JobError::Finished(status) => write!(f, "the job already {}", status.as_str()),
            JobError::Store(e) => f.write_str(e),
        }
    }
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> JobError {
        JobError::Store(e.to_string())
    }
}

/// The queue's handle; clones share it.
#[derive(Clone)]
pub struct Jobs {
    store: Store,
    tx: mpsc::Sender<String>,
}

/// The workers of a queue opened but not yet started: started once the face
/// that runs the jobs exists (it holds the `Jobs` handle itself).
pub struct Workers {
    store: Store,
    config: JobConfig,
    tx: mpsc::Sender<String>,
    rx: mpsc::Receiver<String>,
}

/// Runs a blocking store call off the runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, JobError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| JobError::Store(format!("store call stopped: {e}")))?
        .map_err(JobError::from)
}

impl Jobs {
    /// A queue over `store`; nothing runs until `Workers::start`.
    pub fn open(store: Store, config: JobConfig) -> (Jobs, Workers) {
        let (tx, rx) = mpsc::channel(config.max_pending.max(1));
        let jobs = Jobs {
            store: store.clone(),
            tx: tx.clone(),
        };
        (
            jobs,
            Workers {
                store,
                config,
                tx,
                rx,
            },
        )
    }

    /// Stores the request as a queued job and returns its id, or `Full`.
    pub async fn submit(&self, request: String) -> Result<String, JobError> {
        if self.tx.capacity() == 0 {
            return Err(JobError::Full);
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (store, job_id) = (self.store.clone(), id.clone());
        blocking(move || store.insert_job(&job_id, &request)).await?;
        if self.tx.try_send(id.clone()).is_err() {
            let (store, job_id) = (self.store.clone(), id.clone());
            blocking(move || store.cancel_job(&job_id)).await?;
            return Err(JobError::Full);
        }
        Ok(id)
    }

    pub async fn get(&self, id: &str) -> Result<JobRecord, JobError> {
        let (store, job_id) = (self.store.clone(), id.to_string());
        blocking(move || store.job(&job_id))
            .await?
            .ok_or(JobError::NotFound)
    }

    /// Cancels a queued or running job (a running job's result is then
    /// discarded); says the status it ended in.
    pub async fn cancel(&self, id: &str) -> Result<Option<JobStatus>, JobError> {
        let before = self.get(id).await?;
        if before.status.is_finished() {
            return Err(JobError::Finished(before.status));
        }
        let (store, job_id) = (self.store.clone(), id.to_string());
        blocking(move || store.cancel_job(&job_id)).await
    }
}

impl Workers {
    /// Requeues what the last run left, then starts the workers (each running
    /// jobs through `runner`) and the purge task.
    pub async fn start(self, runner: Arc<dyn JobRunner>) -> Result<(), StoreError> {
        let Workers {
            store,
            config,
            tx,
            rx,
        } = self;
        let recovered = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.recover_jobs(config.max_attempts))
                .await
                .expect("recovery does not panic")?
        };
        if !recovered.is_empty() {
            tracing::info!("requeueing {} jobs left by the last run", recovered.len());
        }
        tokio::spawn(async move {
            for id in recovered {
                if tx.send(id).await.is_err() {
                    return;
                }
            }
        });
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..config.workers.max(1) {
            tokio::spawn(worker_task(store.clone(), runner.clone(), rx.clone()));
        }
        tokio::spawn(purge_task(store, config.retention));
        Ok(())
    }
}

async fn worker_task(
    store: Store,
    runner: Arc<dyn JobRunner>,
    rx: Arc<Mutex<mpsc::Receiver<String>>>,
) {
    loop {
        let Some(id) = rx.lock().await.recv().await else {
            return;
        };
        if let Err(e) = run_job(&store, &*runner, &id).await {
            tracing::error!(job = %id, "job could not be recorded: {e}");
        }
    }
}

async fn run_job(store: &Store, runner: &dyn JobRunner, id: &str) -> Result<(), JobError> {
    let (s, job_id) = (store.clone(), id.to_string());
    if !blocking(move || s.start_job(&job_id)).await? {
        return Ok(());
    }
    let (s, job_id) = (store.clone(), id.to_string());
    let Some(job) = blocking(move || s.job(&job_id)).await? else {
        return Ok(());
    };
    let outcome = runner.run(job.request).await;
    let (s, job_id) = (store.clone(), id.to_string());
    blocking(move || s.finish_job(&job_id, outcome.as_deref().map_err(String::as_str))).await?;
    Ok(())
}

async fn purge_task(store: Store, retention: Duration) {
    let mut tick =
        tokio::time::interval(Duration::from_secs(60).min(retention.max(Duration::from_secs(1))));
    loop {
        tick.tick().await;
        let store = store.clone();
        let before = now() - retention.as_secs_f64();
        match tokio::task::spawn_blocking(move || store.purge_jobs(before)).await {
            Ok(Ok(n)) if n > 0 => tracing::info!("purged {n} finished jobs"),
            Ok(Err(e)) => tracing::warn!("purging finished jobs failed: {e}"),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers each request with its own text reversed; "fail" fails.
    struct Reverse;

    impl JobRunner for Reverse {
        fn run(&self, request: String) -> Pin<Box<dyn Future<Output = JobOutcome> + Send + '_>> {
            Box::pin(async move {
                match request.as_str() {
                    "fail" => Err("asked to fail".to_string()),
                    text => Ok(text.chars().rev().collect()),
                }
            })
        }
    }

    fn store(tag: &str) -> Store {
        let dir = std::env::temp_dir().join(format!("inferd-jobs-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Store::open(&dir).unwrap()
    }

    async fn finished(jobs: &Jobs, id: &str) -> JobRecord {
        for _ in 0..200 {
            let job = jobs.get(id).await.unwrap();
            if job.status.is_finished() {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("job {id} did not finish");
    }

    #[tokio::test]
    async fn jobs_run_through_the_runner_and_keep_their_outcome() {
        let (jobs, workers) = Jobs::open(store("run"), JobConfig::default());
        workers.start(Arc::new(Reverse)).await.unwrap();
        let ok = jobs.submit("abc".into()).await.unwrap();
        let bad = jobs.submit("fail".into()).await.unwrap();
        let done = finished(&jobs, &ok).await;
        assert_eq!(done.status, JobStatus::Succeeded);
        assert_eq!(done.result.as_deref(), Some("cba"));
        let failed = finished(&jobs, &bad).await;
        assert_eq!(failed.status, JobStatus::Failed);
        assert_eq!(failed.error.as_deref(), Some("asked to fail"));
        assert!(matches!(
            jobs.cancel(&ok).await,
            Err(JobError::Finished(JobStatus::Succeeded))
        ));
        assert!(matches!(jobs.get("nope").await, Err(JobError::NotFound)));
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_keeps_what_it_accepted() {
        let config = JobConfig {
            max_pending: 2,
            ..JobConfig::default()
        };
        let (jobs, workers) = Jobs::open(store("full"), config);
        let first = jobs.submit("one".into()).await.unwrap();
        let second = jobs.submit("two".into()).await.unwrap();
        assert!(matches!(
            jobs.submit("three".into()).await,
            Err(JobError::Full)
        ));
        assert_eq!(jobs.get(&first).await.unwrap().status, JobStatus::Queued);
        assert_eq!(
            jobs.cancel(&first).await.unwrap(),
            Some(JobStatus::Cancelled)
        );
        workers.start(Arc::new(Reverse)).await.unwrap();
        assert_eq!(
            finished(&jobs, &second).await.result.as_deref(),
            Some("owt")
        );
        assert_eq!(jobs.get(&first).await.unwrap().status, JobStatus::Cancelled);
    }
}
