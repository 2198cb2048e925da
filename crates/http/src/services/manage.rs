//! Create, list, read, stop, start and delete, through the service layer.

use std::collections::HashMap;

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use inferd_store::{time, ServiceFilter, ServiceStatus};
use serde_json::{json, Value};

use super::{ok, ServiceError};
use crate::service_json::{endpoint_url, full, new_service, summary};
use crate::{body, AppState};

pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let created = async {
        let bytes = body::bytes(body, state.max_body_bytes)?;
        let value: Value = body::json(&bytes)?;
        let Value::Object(map) = &value else {
            return Err(ServiceError::invalid("the body must be a JSON object"));
        };
        let new = new_service(map, state.services.limits())?;
        Ok(state.services.create(new).await?)
    }
    .await;
    match created {
        Ok(rec) => {
            let data = json!({
                "service_id": rec.id,
                "name": rec.name,
                "status": rec.status.as_str(),
                "endpoint_url": endpoint_url(&headers, &rec.id),
                "created_at": time::rfc3339(rec.created_at),
            });
            ok(StatusCode::CREATED, "推理服务创建成功", Some(data))
        }
        Err(e) => e.into_response(),
    }
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
        let (items, total) = state.services.list(filter, page, page_size).await?;
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
    match state.services.get(&id).await {
        Ok(rec) => ok(StatusCode::OK, "success", Some(full(&rec, &headers))),
        Err(e) => ServiceError::from(e).into_response(),
    }
}

/// `stopping` at once; the instances drain in the background, then `stopped`.
pub async fn stop(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.services.stop(&id).await {
        Ok(()) => ok(StatusCode::OK, "推理服务停止中", None),
        Err(e) => ServiceError::from(e).into_response(),
    }
}

/// A stopped or failed service is deployed again, if its memory still fits.
pub async fn start(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.services.start(&id).await {
        Ok(()) => ok(StatusCode::OK, "推理服务启动中", None),
        Err(e) => ServiceError::from(e).into_response(),
    }
}

/// 200 with the document's body: the document shows 204 with a body, which
/// HTTP does not allow (a 204 ends at its headers, so clients would never see
/// the body); the instances are freed before the answer.
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.services.delete(&id).await {
        Ok(()) => ok(StatusCode::OK, "推理服务删除成功", None),
        Err(e) => ServiceError::from(e).into_response(),
    }
}
