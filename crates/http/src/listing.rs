//! Model entries that several faces list: `GET /v1/models` answers seed 002,
//! OpenAI and KServe V1 clients at once, and seed 002's health reads the same
//! index states. Built from the repository index without loading anything.

use inferd_core::manager::IndexEntry;
use serde_json::{json, Value};

use crate::AppState;

/// A model's state as the repository index knows it, without loading
/// anything. `index` is read once per request (it rescans the repository).
pub(crate) fn indexed_status(index: &[IndexEntry], name: &str) -> (&'static str, Option<String>) {
    let rows: Vec<_> = index.iter().filter(|r| r.name == name).collect();
    if rows.iter().any(|r| r.state == "READY") {
        return ("healthy", None);
    }
    if rows.iter().any(|r| r.state == "LOADING") {
        return ("loading", None);
    }
    let broken = rows.iter().find(|r| {
        r.state == "UNAVAILABLE" && r.reason != "unloaded" && !r.reason.starts_with("not loaded")
    });
    match broken {
        Some(r) => ("unhealthy", Some(r.reason.clone())),
        None => ("unloaded", None),
    }
}

/// Seed 002's entry for a model in `GET /v1/models`; `index` is the
/// repository index, read once for the whole list.
pub(crate) fn model_entry(state: &AppState, index: &[IndexEntry], name: &str) -> Value {
    let Ok(info) = state.manager.info(name, None) else {
        return json!({"id": name, "name": name, "status": "unhealthy", "supports": [], "endpoint": null});
    };
    let text = info.config.task.as_deref() == Some(inferd_core::generate::TEXT_GENERATION);
    let loaded = state.manager.loaded_text_info(name);
    let served = loaded
        .as_ref()
        .map(|i| i.served_name.clone())
        .or_else(|| info.config.parameters.get("served_name").cloned())
        .unwrap_or_else(|| name.to_owned());
    let supports: Vec<&str> = if text {
        vec!["completion", "instruct"]
    } else {
        info.tasks()
    };
    let endpoint = info
        .config
        .parameters
        .get("endpoint")
        .cloned()
        .unwrap_or_else(|| "local".into());
    json!({
        "id": name,
        "name": served,
        "status": indexed_status(index, name).0,
        "supports": supports,
        "endpoint": endpoint,
    })
}

/// OpenAI's entry for each model, as `data` of a model list.
pub(crate) fn openai_entries(names: &[String]) -> Vec<Value> {
    names
        .iter()
        .map(|n| json!({"id": n, "object": "model", "created": 0, "owned_by": "inferd"}))
        .collect()
}
