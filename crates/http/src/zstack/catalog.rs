//! The model-service catalog (seed 001): `GET /zstack/v1/ai/model-services`
//! with ZStack's query parameters, `GET …/{uuid}` (the query `uuid=<uuid>`, an
//! empty list when unknown, as ZStack answers), and admins' `POST` (`{"params":
//! …}`), `PUT …/{uuid}/actions` (`{"updateModelService": …}`, or
//! `{"deployModelService": …}` to run the recipe as a seed-003 service) and
//! `DELETE`. Changes answer ZStack's way, 202 and a job to poll (`jobs.rs`).

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use inferd_store::CatalogQuery;
use serde_json::{json, Map, Value};

use super::jobs::Job;
use super::{with_store, ZsError};
use crate::routes::{Access, Face, Routes};
use crate::service_json::{full, new_service};
use crate::status::kserve_status;
use crate::{body, AppState};

type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;

pub fn routes() -> Routes {
    Routes::new(Face::ZStack)
        .get("/zstack/v1/ai/model-services", Access::Read, list)
        .post("/zstack/v1/ai/model-services", Access::Admin, create)
        .get("/zstack/v1/ai/model-services/{uuid}", Access::Read, one)
        .delete("/zstack/v1/ai/model-services/{uuid}", Access::Admin, remove)
        .put(
            "/zstack/v1/ai/model-services/{uuid}/actions",
            Access::Admin,
            action,
        )
}

fn answer(result: Result<Value, ZsError>) -> Response {
    match result {
        Ok(mut v) => {
            v["success"] = Value::Bool(true);
            v["error"] = Value::Null;
            Json(v).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// The query the request's parameters spell; a refusal is SYS.1007 with the
/// store's text, which names the condition and why.
fn parse(p: Params) -> Result<CatalogQuery, ZsError> {
    let params = p.map(|Query(v)| v).map_err(|e| {
        ZsError::invalid_argument(format!("Invalid query parameter. {}", e.body_text()))
    })?;
    CatalogQuery::parse(&params).map_err(|e| ZsError::invalid_argument(e.to_string()))
}

async fn run_query(state: &AppState, q: CatalogQuery) -> Result<Value, ZsError> {
    let (count, with_count) = (q.count, q.reply_with_count);
    let reply = with_store(state, move |s| s.query_catalog(&q)).await?;
    Ok(if count {
        json!({ "total": reply.total })
    } else if with_count {
        json!({ "inventories": reply.inventories, "total": reply.total })
    } else {
        json!({ "inventories": reply.inventories })
    })
}

async fn list(State(state): State<AppState>, p: Params) -> Response {
    let result = async { run_query(&state, parse(p)?).await }.await;
    answer(result)
}

/// The query `uuid=<uuid>` with the request's shaping (`fields`...); its own
/// `q`s are dropped, as ZStack's handler replaces them.
async fn one(State(state): State<AppState>, Path(uuid): Path<String>, p: Params) -> Response {
    let result = async { run_query(&state, parse(p)?.only_uuid(&uuid)).await }.await;
    answer(result)
}

/// The body as a JSON object; anything else is a ZStack error (413 over the
/// size limit, 400 otherwise) rather than axum's plain-text rejection.
fn wrapped(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Map<String, Value>, ZsError> {
    let bytes = body::bytes(body, state.max_body_bytes).map_err(|e| ZsError {
        status: e.status,
        ..ZsError::invalid_argument(e.message)
    })?;
    match body::json::<Value>(&bytes).map_err(|e| ZsError::invalid_argument(e.message))? {
        Value::Object(map) => Ok(map),
        other => Err(ZsError::invalid_argument(format!(
            "the body must be a JSON object, not {other}"
        ))),
    }
}

fn object<'a>(map: &'a Map<String, Value>, key: &str) -> Result<&'a Map<String, Value>, ZsError> {
    map.get(key).and_then(Value::as_object).ok_or_else(|| {
        ZsError::invalid_argument(format!("the body must carry an object under '{key}'"))
    })
}

async fn create(
    State(state): State<AppState>,
    job: Job,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let map = wrapped(&state, body)?;
        let params = object(&map, "params")?.clone();
        let inv = with_store(&state, move |s| s.create_catalog_entry(&params)).await?;
        Ok(json!({ "inventory": inv }))
    }
    .await;
    job.accepted(&state, result)
}

async fn action(
    State(state): State<AppState>,
    job: Job,
    headers: HeaderMap,
    Path(uuid): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let map = wrapped(&state, body)?;
        let (name, args) = match map.iter().next() {
            Some((name, Value::Object(args))) if map.len() == 1 => (name.as_str(), args.clone()),
            _ => {
                return Err(ZsError::invalid_argument(
                    "the body must be one action: {\"updateModelService\": {...}} or {\"deployModelService\": {...}}",
                ))
            }
        };
        match name {
            "updateModelService" => {
                let id = uuid.clone();
                let inv = with_store(&state, move |s| s.update_catalog_entry(&id, &args))
                    .await?
                    .ok_or_else(|| ZsError::not_found(format!("no model service has the uuid {uuid}")))?;
                Ok(json!({ "inventory": inv }))
            }
            "deployModelService" => deploy(&state, &headers, &uuid, args).await,
            other => Err(ZsError::invalid_argument(format!(
                "unknown action '{other}'; this resource supports updateModelService and deployModelService"
            ))),
        }
    }
    .await;
    job.accepted(&state, result)
}

/// Runs a recipe as a seed-003 inference service in one call: the model is
/// `modelUuid` (one of the recipe's refs) or its first ref, the framework and
/// resources default to the recipe's; the rest is the services API's create.
async fn deploy(
    state: &AppState,
    headers: &HeaderMap,
    uuid: &str,
    mut args: Map<String, Value>,
) -> Result<Value, ZsError> {
    let id = uuid.to_string();
    let entry = with_store(state, move |s| s.catalog_entry(&id))
        .await?
        .ok_or_else(|| ZsError::not_found(format!("no model service has the uuid {uuid}")))?;
    let refs: Vec<String> = entry["modelServiceRefs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["modelUuid"].as_str().map(str::to_string))
        .collect();
    let model = match args.remove("modelUuid") {
        Some(Value::String(m)) if refs.is_empty() || refs.contains(&m) => m,
        Some(Value::String(m)) => {
            return Err(ZsError::invalid_argument(format!(
                "model '{m}' is not one this recipe serves ({})",
                refs.join(", ")
            )))
        }
        Some(other) => {
            return Err(ZsError::invalid_argument(format!(
                "'modelUuid' must be a string, not {other}"
            )))
        }
        None => refs.first().cloned().ok_or_else(|| {
            ZsError::invalid_argument("this recipe names no model: give 'modelUuid'")
        })?,
    };
    args.insert("model_id".into(), Value::String(model));
    for (key, from) in [
        ("framework", "framework"),
        ("cpu", "requestCpu"),
        ("memory", "requestMemory"),
    ] {
        if !args.contains_key(key) && !entry[from].is_null() {
            args.insert(key.into(), entry[from].clone());
        }
    }
    if !args.contains_key("description") {
        args.insert("description".into(), entry["description"].clone());
    }
    let limits = state.services.limits();
    let created = match new_service(&args, limits) {
        Ok(new) => state.services.create(new).await,
        Err(e) => Err(e),
    };
    let rec = created.map_err(|e| {
        let status = kserve_status(e.kind);
        ZsError {
            status,
            code: match status {
                StatusCode::CONFLICT => "SYS.1002",
                s if s.is_server_error() => "SYS.1000",
                _ => "SYS.1007",
            },
            description: "Failed to deploy the model service",
            details: e.message,
        }
    })?;
    let inventory = full(&rec, headers);
    Ok(json!({ "inventory": inventory }))
}

/// Both of ZStack's delete modes remove the entry at once: nothing depends on
/// a recipe (a deployed service keeps its own copy of what it needs).
async fn remove(
    State(state): State<AppState>,
    job: Job,
    Path(uuid): Path<String>,
    p: Params,
) -> Response {
    let id = uuid.clone();
    let result = async {
        let Query(params) = p.map_err(|e| ZsError::invalid_argument(e.body_text()))?;
        for (_, mode) in params.iter().filter(|(k, _)| k == "deleteMode") {
            if mode != "Permissive" && mode != "Enforcing" {
                return Err(ZsError::invalid_argument(format!(
                    "'deleteMode' must be Permissive or Enforcing, not '{mode}'"
                )));
            }
        }
        if with_store(&state, move |s| s.delete_catalog_entry(&id)).await? {
            Ok(json!({}))
        } else {
            Err(ZsError::not_found(format!(
                "no model service has the uuid {uuid}"
            )))
        }
    }
    .await;
    job.accepted(&state, result)
}
