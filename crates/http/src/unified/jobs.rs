//! Async inference (`/inference/async`): a job is checked, written to the store,
//! and only then answered 202; a bounded channel feeds a few worker tasks that
//! run jobs through the same path as `/inference/infer`. At start, jobs the last
//! process left queued or running are queued again (see `Store::recover_jobs`),
//! so an accepted job is never lost; finished ones are purged after the
//! retention time.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use inferd_store::{JobRecord, JobStatus, Store, StoreError};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Mutex};

use super::request::{check, UnifiedRequest};
use super::run::{one, parse};
use super::{now, UnifiedError};
use crate::AppState;

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

/// The queue's handle in `AppState`.
pub struct JobQueue {
    store: Store,
    tx: mpsc::Sender<String>,
}

fn store_error(e: StoreError) -> UnifiedError {
    UnifiedError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "INFERENCE_FAILED",
        kind: "StoreError",
        message: e.to_string(),
        hint: None,
    }
}

/// Runs a blocking store call off the runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, UnifiedError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| UnifiedError::invalid(format!("store call stopped: {e}")))?
        .map_err(store_error)
}

/// Gives `state` a job queue over `store`, requeues what the last run left and
/// starts the workers and the purge task.
pub async fn start(
    state: AppState,
    store: Store,
    config: JobConfig,
) -> Result<AppState, StoreError> {
    let (tx, rx) = mpsc::channel(config.max_pending.max(1));
    let state = AppState {
        jobs: Some(Arc::new(JobQueue {
            store: store.clone(),
            tx: tx.clone(),
        })),
        ..state
    };
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
        tokio::spawn(worker_task(state.clone(), rx.clone()));
    }
    tokio::spawn(purge_task(store, config.retention));
    Ok(state)
}

async fn worker_task(state: AppState, rx: Arc<Mutex<mpsc::Receiver<String>>>) {
    loop {
        let Some(id) = rx.lock().await.recv().await else {
            return;
        };
        if let Err(e) = run_job(&state, &id).await {
            tracing::error!(job = %id, "job could not be recorded: {}", e.message);
        }
    }
}

async fn run_job(state: &AppState, id: &str) -> Result<(), UnifiedError> {
    let Some(queue) = state.jobs.clone() else {
        return Ok(());
    };
    let (store, job_id) = (queue.store.clone(), id.to_string());
    let started = blocking(move || store.start_job(&job_id)).await?;
    if !started {
        return Ok(());
    }
    let (store, job_id) = (queue.store.clone(), id.to_string());
    let Some(job) = blocking(move || store.job(&job_id)).await? else {
        return Ok(());
    };
    let outcome = match serde_json::from_str::<UnifiedRequest>(&job.request) {
        Ok(req) => one(state, req).await.map(|(value, ..)| value),
        Err(e) => Err(UnifiedError::invalid(format!(
            "stored request is not valid: {e}"
        ))),
    };
    let text = match &outcome {
        Ok(v) => Ok(v.to_string()),
        Err(e) => Err(e.body().to_string()),
    };
    let (store, job_id) = (queue.store.clone(), id.to_string());
    blocking(move || store.finish_job(&job_id, text.as_deref().map_err(String::as_str))).await?;
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

fn queue_full() -> UnifiedError {
    UnifiedError {
        status: StatusCode::TOO_MANY_REQUESTS,
        code: "RESOURCE_EXHAUSTED",
        kind: "ResourceExhaustedError",
        message: "the async job queue is full; retry later".into(),
        hint: None,
    }
}

fn queue(state: &AppState) -> Result<Arc<JobQueue>, UnifiedError> {
    state.jobs.clone().ok_or_else(|| UnifiedError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "RESOURCE_EXHAUSTED",
        kind: "UnavailableError",
        message: "async jobs are off: this server runs without a data directory".into(),
        hint: None,
    })
}

/// `POST /inference/async`: 202 with the job id once the job is stored.
pub async fn submit(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, UnifiedError> {
    let queue = queue(&state)?;
    let req: UnifiedRequest = parse(&state, body)?;
    let checked = check(&state, req)?;
    if queue.tx.capacity() == 0 {
        return Err(queue_full());
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let request = serde_json::to_string(&checked.req).expect("requests serialize");
    let (store, job_id) = (queue.store.clone(), id.clone());
    blocking(move || store.insert_job(&job_id, &request)).await?;
    if queue.tx.try_send(id.clone()).is_err() {
        let (store, job_id) = (queue.store.clone(), id.clone());
        blocking(move || store.cancel_job(&job_id)).await?;
        return Err(queue_full());
    }
    let body = json!({
        "success": true,
        "job_id": id,
        "status": JobStatus::Queued.as_str(),
        "status_url": format!("/inference/async/{id}"),
        "timestamp": now(),
    });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

fn job_json(job: &JobRecord) -> Value {
    let request: Value = serde_json::from_str(&job.request).unwrap_or(Value::Null);
    let parse = |text: &Option<String>| {
        text.as_deref()
            .map(|t| serde_json::from_str(t).unwrap_or(Value::Null))
    };
    json!({
        "success": true,
        "job_id": job.id,
        "status": job.status.as_str(),
        "task": request.get("task"),
        "model_name": request.get("model_name"),
        "result": parse(&job.result),
        "error": parse(&job.error),
        "attempts": job.attempts,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "timestamp": now(),
    })
}

fn unknown_job(id: &str) -> UnifiedError {
    UnifiedError {
        status: StatusCode::NOT_FOUND,
        code: "INVALID_INPUT",
        kind: "JobNotFoundError",
        message: format!("no job '{id}' (unknown, or finished and purged)"),
        hint: None,
    }
}

async fn find_job(queue: &JobQueue, id: &str) -> Result<JobRecord, UnifiedError> {
    let (store, job_id) = (queue.store.clone(), id.to_string());
    blocking(move || store.job(&job_id))
        .await?
        .ok_or_else(|| unknown_job(id))
}

pub async fn status(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, UnifiedError> {
    let job = find_job(&*queue(&state)?, &id).await?;
    Ok(Json(job_json(&job)))
}

/// `DELETE /inference/async/{id}`: cancels a queued or running job (a running
/// job's result is then discarded); a finished job is a 409.
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, UnifiedError> {
    let queue = queue(&state)?;
    let before = find_job(&queue, &id).await?;
    if before.status.is_finished() {
        return Err(UnifiedError {
            status: StatusCode::CONFLICT,
            code: "INVALID_INPUT",
            kind: "JobFinishedError",
            message: format!("job '{id}' already {}", before.status.as_str()),
            hint: None,
        });
    }
    let (store, job_id) = (queue.store.clone(), id.clone());
    let after = blocking(move || store.cancel_job(&job_id)).await?;
    Ok(Json(json!({
        "success": after == Some(JobStatus::Cancelled),
        "job_id": id,
        "status": after.map(JobStatus::as_str),
        "timestamp": now(),
    })))
}
