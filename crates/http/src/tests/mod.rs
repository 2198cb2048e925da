//! Face tests through `oneshot`: the real router over real models, no socket.

mod bad_inputs;
mod dashboard;
mod flows;
mod hostile;
mod metrics;
mod openai;
mod scheduling;
mod services;
mod zstack_catalog;
mod zstack_jobs;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use inferd_backend_builtin::BuiltinBackend;
use inferd_backend_onnx::OnnxBackend;
use inferd_core::{Manager, ManagerConfig};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::{router, AppState, Compat};

/// The embedded default repository.
pub fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

pub fn manager(root: &Path, config: ManagerConfig) -> Manager {
    Manager::new(
        root,
        vec![Arc::new(OnnxBackend), Arc::new(BuiltinBackend)],
        config,
    )
}

pub fn app_for(manager: Manager, compat: Compat) -> Router {
    router(AppState::new(manager, compat, 1 << 20))
}

/// The default models, all loaded, with a 1 MiB body limit.
pub async fn app() -> Router {
    let m = manager(&models(), ManagerConfig::default());
    m.load_all().await;
    app_for(m, Compat::Kserve)
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

pub async fn send(
    app: &Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: impl Into<Body>,
) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = app
        .clone()
        .oneshot(req.body(body.into()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = if uri.starts_with("/dashboard/events") {
        stream_for_a_while(res.into_body()).await
    } else {
        res.into_body().collect().await.unwrap().to_bytes()
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// The dashboard's event stream, which never ends by itself: its frames
/// for 2 s.
async fn stream_for_a_while(mut body: Body) -> Bytes {
    let mut out = Vec::new();
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    while let Ok(Some(frame)) = tokio::time::timeout_at(until, body.frame()).await {
        if let Ok(data) = frame.unwrap().into_data() {
            out.extend_from_slice(&data);
        }
    }
    out.into()
}

pub async fn get(app: &Router, uri: &str) -> Answer {
    send(app, "GET", uri, &[], Body::empty()).await
}

pub async fn post(app: &Router, uri: &str, body: Value) -> Answer {
    send(
        app,
        "POST",
        uri,
        &[("content-type", "application/json")],
        body.to_string(),
    )
    .await
}

/// One iris row as a V2 request.
pub fn iris_request() -> Value {
    json!({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]})
}

/// Checks that the server still answers a good request correctly.
pub async fn assert_still_serves(app: &Router) {
    let a = post(app, "/v2/models/iris/infer", iris_request()).await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    assert_eq!(a.json()["outputs"][0]["data"], json!([0]));
}

/// A fresh repository folder under the temp dir.
pub fn temp_repo(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("inferd-http-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a model folder with a `model.toml`.
pub fn write_model(root: &Path, name: &str, toml: &str) {
    std::fs::create_dir_all(root.join(name)).unwrap();
    std::fs::write(root.join(name).join("model.toml"), toml).unwrap();
}

/// A builtin identity over FP32 rows that sleeps `delay_ms` per batch.
pub fn slow_identity(delay_ms: u64, extra: &str) -> String {
    format!(
        "backend = 'builtin'\nkind = 'identity'\n{extra}\n[parameters]\ndelay_ms = {delay_ms}\n\
         [[input]]\nname = 'INPUT0'\ndatatype = 'FP32'\nshape = [-1, 2]\n\
         [[output]]\nname = 'OUTPUT0'\ndatatype = 'FP32'\nshape = [-1, 2]\n"
    )
}

pub fn slow_request(timeout_us: Option<u64>) -> Value {
    let mut req = json!({"inputs": [{"name": "INPUT0", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]});
    if let Some(t) = timeout_us {
        req["parameters"] = json!({ "timeout": t });
    }
    req
}
