//! Create, list, read, stop, start and delete; deployment runs in the background.

use std::collections::HashMap;

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use inferd_core::manager::Deployment;
use inferd_store::{now, time, Admission, Restart, ServiceFilter, ServiceRecord, ServiceStatus};
use serde_json::{json, Map, Value};

use super::{blocking, ok, ServiceError};
use crate::{body, AppState};

const PATH: &str = "/api/v1/inference/services";

/// This server's own URL for calling the service, from the Host the client used.
fn endpoint_url(headers: &HeaderMap, id: &str) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}{PATH}/{id}/predict")
}

fn summary(s: &ServiceRecord, headers: &HeaderMap) -> Value {
    json!({
        "service_id": s.id,
        "name": s.name,
        "status": s.status.as_str(),
        "endpoint_url": endpoint_url(headers, &s.id),
        "replicas": s.replicas,
        "created_at": time::rfc3339(s.created_at),
    })
}

pub(crate) fn full(s: &ServiceRecord, headers: &HeaderMap) -> Value {
    let mut v = summary(s, headers);
    let extra = json!({
        "description": s.description,
        "workspace_id": s.workspace_id,
        "model_id": s.model,
        "model_version": format!("v{}", s.model_version),
        "framework": s.framework,
        "cpu": s.cpu,
        "memory": s.memory,
        "gpu": s.gpu,
        "reason": s.reason,
        "updated_at": time::rfc3339(s.updated_at),
    });
    if let (Value::Object(v), Value::Object(extra)) = (&mut v, extra) {
        v.extend(extra);
    }
    v
}

/// The fields of a create request, each checked for its JSON type and range.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn string(&self, key: &str) -> Result<Option<String>, ServiceError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(ServiceError::invalid(format!(
                "'{key}' must be a string, not {other}"
            ))),
        }
    }

    /// A name given as a string or an integer (the document's ids are numbers).
    fn name_or_number(&self, key: &str) -> Result<Option<String>, ServiceError> {
        match self.0.get(key) {
            Some(Value::Number(n)) if n.is_u64() => Ok(Some(n.to_string())),
            Some(Value::Number(n)) => Err(ServiceError::invalid(format!(
                "'{key}' must be a model name or a non-negative integer, not {n}"
            ))),
            _ => self.string(key),
        }
    }

    fn integer(&self, key: &str, min: i64, max: i64) -> Result<Option<i64>, ServiceError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) if (min..=max).contains(&i) => Ok(Some(i)),
                _ => Err(ServiceError::invalid(format!(
                    "'{key}' must be an integer from {min} to {max}, not {n}"
                ))),
            },
            Some(other) => Err(ServiceError::invalid(format!(
                "'{key}' must be an integer, not {other}"
            ))),
        }
    }

    fn number(&self, key: &str) -> Result<Option<f64>, ServiceError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(other) => Err(ServiceError::invalid(format!(
                "'{key}' must be a number, not {other}"
            ))),
        }
    }
}

/// `v1.0`, `1` or 1 → version 1.
fn parse_version(text: &str) -> Result<u64, ServiceError> {
    let t = text.trim().trim_start_matches(['v', 'V']);
    let major = t.split('.').next().unwrap_or("");
    let rest_zero = t
        .split('.')
        .skip(1)
        .all(|p| p.chars().all(|c| c == '0') && !p.is_empty());
    match major.parse::<u64>() {
        Ok(v) if rest_zero => Ok(v),
        _ => Err(ServiceError::invalid(format!(
            "'model_version' must name a repository version such as 1, \"1\" or \"v1.0\", not \"{text}\""
        ))),
    }
}

pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match create_service(&state, body).await {
        Ok(rec) => {
            let data = json!({
                "service_id": rec.id,
                "name": rec.name,
                "status": rec.status.as_str(),
                "endpoint_url": endpoint_url(&headers, &rec.id),
                "created_at": time::rfc3339(rec.created_at),
            });
            spawn_deploy(state, rec);
            ok(StatusCode::CREATED, "推理服务创建成功", Some(data))
        }
        Err(e) => e.into_response(),
    }
}

async fn create_service(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<ServiceRecord, ServiceError> {
    let bytes = body::bytes(body, state.max_body_bytes)?;
    let value: Value = body::json(&bytes)?;
    let Value::Object(map) = &value else {
        return Err(ServiceError::invalid("the body must be a JSON object"));
    };
    create_from(state, map).await
}

/// Validates a create request's fields and saves the service as `creating`
/// (the caller starts its deployment with `spawn_deploy`).
pub(crate) async fn create_from(
    state: &AppState,
    map: &Map<String, Value>,
) -> Result<ServiceRecord, ServiceError> {
    // A misspelt field ("replica": 4) must not deploy something else quietly.
    const FIELDS: [&str; 10] = [
        "name",
        "description",
        "workspace_id",
        "model_id",
        "model_version",
        "framework",
        "cpu",
        "memory",
        "gpu",
        "replicas",
    ];
    if let Some(unknown) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ServiceError::invalid(format!(
            "unknown field '{unknown}'; a service takes {}",
            FIELDS.join(", ")
        )));
    }
    let f = Fields(map);
    let name = f
        .string("name")?
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ServiceError::invalid("'name' is required (a non-empty string)"))?;
    if name.chars().count() > 128 {
        return Err(ServiceError::invalid(
            "'name' is longer than 128 characters",
        ));
    }
    let model = f.name_or_number("model_id")?.ok_or_else(|| {
        ServiceError::invalid(
            "'model_id' is required: the name of a repository model, such as \"digits\"",
        )
    })?;
    let version = match map.get("model_version") {
        Some(Value::Number(n)) => Some(parse_version(&n.to_string())?),
        _ => f
            .string("model_version")?
            .map(|v| parse_version(&v))
            .transpose()?,
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let cpu = f.number("cpu")?.unwrap_or(1.0);
    if !(cpu > 0.0 && cpu <= cpus) {
        return Err(ServiceError::invalid(format!(
            "'cpu' must be more than 0 and at most this machine's {cpus} cores, not {cpu}"
        )));
    }
    let memory = f.integer("memory", 1, i64::MAX)?.unwrap_or(1 << 30) as u64;
    let gpu = f.integer("gpu", 0, 64)?.unwrap_or(0);
    if gpu > 0 {
        return Err(ServiceError::invalid(format!(
            "'gpu' is {gpu}, but this server has no GPU: use \"gpu\": 0"
        )));
    }
    let max = state.services.max_replicas;
    let replicas = f.integer("replicas", 1, i64::from(max))?.unwrap_or(1) as u32;
    let workspace_id = f.integer("workspace_id", i64::MIN, i64::MAX)?;
    let description = f.string("description")?.unwrap_or_default();
    let manager = state.manager.clone();
    let (m, v) = (model.clone(), version);
    let version = tokio::task::spawn_blocking(move || manager.deployable_version(&m, v))
        .await
        .map_err(|e| ServiceError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ServiceError::invalid(e.to_string()))?;
    let backend = state
        .manager
        .info(&model, Some(version))
        .map(|i| i.config.backend.clone())
        .map_err(|e| ServiceError::invalid(e.to_string()))?;
    let framework = match f.string("framework")? {
        None => backend,
        Some(fw) if fw.eq_ignore_ascii_case(&backend) => backend,
        Some(fw) => {
            return Err(ServiceError::invalid(format!(
                "model '{model}' runs on '{backend}'; framework '{fw}' cannot serve it (leave 'framework' out or say '{backend}')"
            )))
        }
    };
    let id = format!("svc-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let at = now();
    let rec = ServiceRecord {
        id,
        name,
        description,
        workspace_id,
        model,
        model_version: version,
        framework,
        cpu,
        memory,
        gpu: gpu as u32,
        replicas,
        status: ServiceStatus::Creating,
        reason: None,
        created_at: at,
        updated_at: at,
    };
    let saved = rec.clone();
    let ceiling = state.services.memory_ceiling();
    match blocking(state, move |s| s.insert_service(&saved, ceiling)).await? {
        Admission::Admitted => Ok(rec),
        Admission::NameTaken => Err(ServiceError::conflict(format!(
            "an inference service named '{}' already exists",
            rec.name
        ))),
        Admission::NoRoom { reserved } => Err(ServiceError::invalid(format!(
            "'memory' {memory} does not fit: the server has {ceiling} bytes for services and they already hold {reserved}"
        ))),
    }
}

/// Loads the service's model, then marks it running (or failed with the reason).
/// A service stopped or deleted while it loads is undeployed again.
pub(crate) fn spawn_deploy(state: AppState, rec: ServiceRecord) {
    tokio::spawn(async move {
        let _turn = state.service_turns.take(&rec.id).await;
        let d = Deployment {
            name: rec.id.clone(),
            model: rec.model.clone(),
            version: Some(rec.model_version),
            instances: rec.replicas as usize,
            memory_limit: rec.memory,
        };
        let result = state.manager.deploy(&d).await;
        let id = rec.id.clone();
        let (to, reason) = match &result {
            Ok(_) => (ServiceStatus::Running, None),
            Err(e) => (ServiceStatus::Failed, Some(e.to_string())),
        };
        let moved = blocking(&state, move |s| {
            s.set_service_status(&id, &[ServiceStatus::Creating], to, reason.as_deref())
        })
        .await;
        match (&result, moved) {
            (Ok(_), Ok(true)) => tracing::info!(service = %rec.id, model = %rec.model, "running"),
            (Err(e), _) => tracing::warn!(service = %rec.id, "deployment failed: {e}"),
            (Ok(_), _) => state.manager.undeploy(&rec.id).await,
        }
    });
}

/// Deploys again the services that were running (or being created) when the
/// server last stopped.
pub async fn restore(state: &AppState) -> Result<usize, String> {
    let recs = blocking(state, |s| s.services_to_restore())
        .await
        .map_err(|e| e.message)?;
    for rec in &recs {
        let id = rec.id.clone();
        blocking(state, move |s| {
            s.set_service_status(
                &id,
                &[ServiceStatus::Running],
                ServiceStatus::Creating,
                None,
            )
        })
        .await
        .map_err(|e| e.message)?;
        spawn_deploy(state.clone(), rec.clone());
    }
    Ok(recs.len())
}

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let result = async {
        let int = |key: &str, default: u64, max: u64| -> Result<u64, ServiceError> {
            match q.get(key) {
                None => Ok(default),
                Some(v) => match v.parse::<u64>() {
                    Ok(n) if (1..=max).contains(&n) => Ok(n),
                    _ => Err(ServiceError::invalid(format!(
                        "'{key}' must be an integer from 1 to {max}, not '{v}'"
                    ))),
                },
            }
        };
        let page = int("page", 1, u32::MAX.into())?;
        let page_size = int("page_size", 20, 100)?;
        let status = q
            .get("status")
            .map(|s| {
                ServiceStatus::parse(s).ok_or_else(|| {
                    ServiceError::invalid(format!(
                        "'status' must be one of creating, running, failed, stopping, stopped, not '{s}'"
                    ))
                })
            })
            .transpose()?;
        let workspace_id = q
            .get("workspace_id")
            .map(|w| {
                w.parse::<i64>().map_err(|_| {
                    ServiceError::invalid(format!("'workspace_id' must be an integer, not '{w}'"))
                })
            })
            .transpose()?;
        let filter = ServiceFilter {
            status,
            workspace_id,
            name: q.get("name").cloned(),
        };
        let (items, total) =
            blocking(&state, move |s| s.list_services(&filter, page, page_size)).await?;
        Ok::<_, ServiceError>(json!({
            "items": items.iter().map(|s| summary(s, &headers)).collect::<Vec<_>>(),
            "pagination": {
                "page": page,
                "page_size": page_size,
                "total": total,
                "total_pages": total.div_ceil(page_size),
            },
        }))
    }
    .await;
    match result {
        Ok(data) => ok(StatusCode::OK, "success", Some(data)),
        Err(e) => e.into_response(),
    }
}

pub async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let lookup = id.clone();
    match blocking(&state, move |s| s.service(&lookup)).await {
        Ok(Some(rec)) => ok(StatusCode::OK, "success", Some(full(&rec, &headers))),
        Ok(None) => ServiceError::unknown(&id).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `stopping` at once; the instances drain in the background, then `stopped`.
pub async fn stop(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    const FROM: &[ServiceStatus] = &[ServiceStatus::Creating, ServiceStatus::Running];
    let result = transition(&state, &id, FROM, ServiceStatus::Stopping, "stop").await;
    match result {
        Ok(()) => {
            tokio::spawn(async move {
                let _turn = state.service_turns.take(&id).await;
                state.manager.undeploy(&id).await;
                let sid = id.clone();
                let _ = blocking(&state, move |s| {
                    s.set_service_status(
                        &sid,
                        &[ServiceStatus::Stopping],
                        ServiceStatus::Stopped,
                        None,
                    )
                })
                .await;
                tracing::info!(service = %id, "stopped");
            });
            ok(StatusCode::OK, "推理服务停止中", None)
        }
        Err(e) => e.into_response(),
    }
}

/// A stopped or failed service is deployed again, if its memory still fits.
pub async fn start(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let ceiling = state.services.memory_ceiling();
    let sid = id.clone();
    let admitted = match blocking(&state, move |s| s.start_service(&sid, ceiling)).await {
        Ok(Restart::Started) => Ok(()),
        Ok(Restart::InState(status)) => Err(ServiceError::conflict(format!(
            "cannot start inference service '{id}': it is {}",
            status.as_str()
        ))),
        Ok(Restart::NoRoom { reserved }) => Err(ServiceError::conflict(format!(
            "cannot start inference service '{id}': its memory does not fit now (services may hold {ceiling} bytes together and others hold {reserved}); stop another first"
        ))),
        Ok(Restart::Unknown) => Err(ServiceError::unknown(&id)),
        Err(e) => Err(e),
    };
    match admitted {
        Ok(()) => {
            let lookup = id.clone();
            match blocking(&state, move |s| s.service(&lookup)).await {
                Ok(Some(rec)) => {
                    spawn_deploy(state, rec);
                    ok(StatusCode::OK, "推理服务启动中", None)
                }
                Ok(None) => ServiceError::unknown(&id).into_response(),
                Err(e) => e.into_response(),
            }
        }
        Err(e) => e.into_response(),
    }
}

/// Moves a service between states, or says why it cannot: 404 for an unknown
/// id, 409 naming the state it is in.
async fn transition(
    state: &AppState,
    id: &str,
    from: &'static [ServiceStatus],
    to: ServiceStatus,
    verb: &str,
) -> Result<(), ServiceError> {
    let sid = id.to_string();
    let moved = blocking(state, move |s| s.set_service_status(&sid, from, to, None)).await?;
    if moved {
        return Ok(());
    }
    let sid = id.to_string();
    match blocking(state, move |s| s.service(&sid)).await? {
        None => Err(ServiceError::unknown(id)),
        Some(rec) => Err(ServiceError::conflict(format!(
            "cannot {verb} inference service '{id}': it is {}",
            rec.status.as_str()
        ))),
    }
}

/// 200 with the document's body: the document shows 204 with a body, which
/// HTTP does not allow (a 204 ends at its headers, so clients would never see
/// the body); the instances are freed before the answer.
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let sid = id.clone();
    match blocking(&state, move |s| s.delete_service(&sid)).await {
        Ok(true) => {
            let turn = state.service_turns.take(&id).await;
            state.manager.undeploy(&id).await;
            drop(turn);
            state.service_turns.forget(&id);
            tracing::info!(service = %id, "deleted");
            ok(StatusCode::OK, "推理服务删除成功", None)
        }
        Ok(false) => ServiceError::unknown(&id).into_response(),
        Err(e) => e.into_response(),
    }
}
