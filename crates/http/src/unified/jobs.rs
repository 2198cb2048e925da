//! Async inference (`/inference/async`): a job is checked, handed to the
//! service layer's durable queue (`inferd_services::Jobs`), and only then
//! answered 202; the queue runs it later through the same path as
//! `/inference/infer` (`Runner`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use inferd_services::{JobConfig, JobError, JobOutcome, JobRunner, Jobs};
use inferd_store::{JobRecord, JobStatus, Store, StoreError};
use serde_json::{json, Value};

use super::request::{check, UnifiedRequest};
use super::run::{one, parse};
use super::{now, UnifiedError};
use crate::AppState;

/// Gives `state` a job queue over `store`, requeues what the last run left and
/// starts the workers and the purge task.
pub async fn start(
    mut state: AppState,
    store: Store,
    config: JobConfig,
) -> Result<AppState, StoreError> {
    let (jobs, workers) = Jobs::open(store, config);
    state.jobs = Some(jobs);
    workers.start(Arc::new(Runner(state.clone()))).await?;
    Ok(state)
}

/// Runs a stored `/inference` request as `/inference/infer` would.
struct Runner(AppState);

impl JobRunner for Runner {
    fn run(&self, request: String) -> Pin<Box<dyn Future<Output = JobOutcome> + Send + '_>> {
        Box::pin(async move {
            let outcome = match serde_json::from_str::<UnifiedRequest>(&request) {
                Ok(req) => one(&self.0, req).await.map(|(value, ..)| value),
                Err(e) => Err(UnifiedError::invalid(format!(
                    "stored request is not valid: {e}"
                ))),
            };
            outcome
                .map(|v| v.to_string())
                .map_err(|e| e.body().to_string())
        })
    }
}

/// The queue's errors in this face's envelope; `id` names the job asked about.
fn job_error(e: JobError, id: &str) -> UnifiedError {
    let (status, code, kind, message) = match e {
        JobError::Full => (
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            "ResourceExhaustedError",
            "the async job queue is full; retry later".to_string(),
        ),
        JobError::NotFound => (
            StatusCode::NOT_FOUND,
            "INVALID_INPUT",
            "JobNotFoundError",
            format!("no job '{id}' (unknown, or finished and purged)"),
        ),
        JobError::Finished(status) => (
            StatusCode::CONFLICT,
            "INVALID_INPUT",
            "JobFinishedError",
            format!("job '{id}' already {}", status.as_str()),
        ),
        JobError::Store(message) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "INFERENCE_FAILED",
            "StoreError",
            message,
        ),
    };
    UnifiedError {
        status,
        code,
        kind,
        message,
        hint: None,
    }
}

fn queue(state: &AppState) -> Result<&Jobs, UnifiedError> {
    state.jobs.as_ref().ok_or_else(|| UnifiedError {
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
    let jobs = queue(&state)?;
    let req: UnifiedRequest = parse(&state, body)?;
    let checked = check(&state, req)?;
    let request = serde_json::to_string(&checked.req).expect("requests serialize");
    let id = jobs.submit(request).await.map_err(|e| job_error(e, ""))?;
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

pub async fn status(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, UnifiedError> {
    let job = queue(&state)?
        .get(&id)
        .await
        .map_err(|e| job_error(e, &id))?;
    Ok(Json(job_json(&job)))
}

/// `DELETE /inference/async/{id}`: cancels a queued or running job (a running
/// job's result is then discarded); a finished job is a 409.
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, UnifiedError> {
    let after = queue(&state)?
        .cancel(&id)
        .await
        .map_err(|e| job_error(e, &id))?;
    Ok(Json(json!({
        "success": after == Some(JobStatus::Cancelled),
        "job_id": id,
        "status": after.map(JobStatus::as_str),
        "timestamp": now(),
    })))
}
