//! A loopback Kubernetes API server that keeps InferenceServices in memory,
//! for the `kubernetes` orchestrator's tests: create (409 when the name is
//! taken), get, list by label, JSON merge patch and delete, in the API
//! server's own JSON (Status objects for errors). The test plays KServe's
//! controller by writing statuses, and can make the next call of a method fail
//! with a code or go unanswered.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

const COLLECTION: &str = "/apis/serving.kserve.io/v1beta1/namespaces/{ns}/inferenceservices";

/// What the next call of a method gets instead of an answer.
#[derive(Clone, Copy)]
pub enum Fault {
    Status(u16),
    /// No answer for a minute: longer than any client timeout in the tests.
    Silence,
}

#[derive(Default)]
struct Cluster {
    objects: BTreeMap<String, Value>,
    faults: VecDeque<(Method, Fault)>,
    version: u64,
}

#[derive(Clone, Default)]
pub struct FakeKube {
    cluster: Arc<Mutex<Cluster>>,
    pub addr: Option<SocketAddr>,
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code});
    (StatusCode::from_u16(code).unwrap(), Json(body)).into_response()
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

impl FakeKube {
    /// Serves on a free loopback port from its own runtime thread.
    pub fn start() -> FakeKube {
        let mut fake = FakeKube::default();
        let app = Router::new()
            .route(COLLECTION, get(list).post(create))
            .route(
                &format!("{COLLECTION}/{{name}}"),
                get(read).patch(patch).delete(delete),
            )
            .with_state(fake.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        fake.addr = Some(rx.recv().unwrap());
        fake
    }

    /// A kubeconfig whose current context is this server and `namespace`.
    pub fn kubeconfig(&self, dir: &Path, namespace: &str) -> std::path::PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
             clusters:\n- name: fake\n  cluster:\n    server: http://{}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {namespace}\n\
             users:\n- name: fake\n  user: {{}}\n",
            self.addr.unwrap()
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cluster> {
        self.cluster.lock().unwrap()
    }

    pub fn object(&self, name: &str) -> Option<Value> {
        self.lock().objects.get(name).cloned()
    }

    /// Plays KServe's controller: replaces the object's status.
    pub fn set_status(&self, name: &str, status: Value) {
        self.lock().objects.get_mut(name).expect("no such object")["status"] = status;
    }

    /// Changes an object behind inferd's back (as `kubectl` would).
    pub fn edit(&self, name: &str, patch: Value) {
        merge(
            self.lock().objects.get_mut(name).expect("no such object"),
            &patch,
        );
    }

    pub fn insert(&self, object: Value) {
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        self.lock().objects.insert(name, object);
    }

    pub fn remove(&self, name: &str) {
        self.lock().objects.remove(name);
    }

    pub fn fail_next(&self, method: Method, fault: Fault) {
        self.lock().faults.push_back((method, fault));
    }

    /// The fault queued for this method, if any; a silence is served here.
    async fn fault(&self, method: Method) -> Option<Response> {
        let fault = {
            let mut c = self.lock();
            let i = c.faults.iter().position(|(m, _)| *m == method)?;
            c.faults.remove(i)?.1
        };
        match fault {
            Fault::Status(code) => Some(status(
                code,
                StatusCode::from_u16(code)
                    .unwrap()
                    .canonical_reason()
                    .unwrap_or("Failure")
                    .replace(' ', "")
                    .as_str(),
                "injected by the test",
            )),
            Fault::Silence => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Some(status(504, "Timeout", "too late"))
            }
        }
    }
}

async fn list(State(fake): State<FakeKube>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    if let Some(r) = fake.fault(Method::GET).await {
        return r;
    }
    let wanted: Vec<(String, String)> = q
        .get("labelSelector")
        .map(|s| {
            s.split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default();
    let c = fake.lock();
    let items: Vec<&Value> = c
        .objects
        .values()
        .filter(|o| {
            wanted
                .iter()
                .all(|(k, v)| o["metadata"]["labels"][k] == v.as_str())
        })
        .collect();
    Json(
        json!({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceServiceList",
        "metadata": {"resourceVersion": c.version.to_string()}, "items": items}),
    )
    .into_response()
}

async fn create(
    State(fake): State<FakeKube>,
    UrlPath(ns): UrlPath<String>,
    Json(mut object): Json<Value>,
) -> Response {
    if let Some(r) = fake.fault(Method::POST).await {
        return r;
    }
    let Some(name) = object["metadata"]["name"].as_str().map(str::to_string) else {
        return status(422, "Invalid", "metadata.name: Required value");
    };
    let mut c = fake.lock();
    if c.objects.contains_key(&name) {
        let msg = format!("inferenceservices.serving.kserve.io \"{name}\" already exists");
        return status(409, "AlreadyExists", &msg);
    }
    c.version += 1;
    object["metadata"]["namespace"] = json!(ns);
    object["metadata"]["resourceVersion"] = json!(c.version.to_string());
    c.objects.insert(name, object.clone());
    (StatusCode::CREATED, Json(object)).into_response()
}

fn not_found(name: &str) -> Response {
    let msg = format!("inferenceservices.serving.kserve.io \"{name}\" not found");
    status(404, "NotFound", &msg)
}

async fn read(
    State(fake): State<FakeKube>,
    UrlPath((_, name)): UrlPath<(String, String)>,
) -> Response {
    match fake.object(&name) {
        Some(o) => Json(o).into_response(),
        None => not_found(&name),
    }
}

async fn patch(
    State(fake): State<FakeKube>,
    UrlPath((_, name)): UrlPath<(String, String)>,
    headers: axum::http::HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(r) = fake.fault(Method::PATCH).await {
        return r;
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok())
        != Some("application/merge-patch+json")
    {
        return status(415, "UnsupportedMediaType", "only merge patches here");
    }
    let mut c = fake.lock();
    c.version += 1;
    let version = c.version;
    match c.objects.get_mut(&name) {
        Some(o) => {
            merge(o, &body);
            o["metadata"]["resourceVersion"] = json!(version.to_string());
            Json(o.clone()).into_response()
        }
        None => not_found(&name),
    }
}

async fn delete(
    State(fake): State<FakeKube>,
    UrlPath((_, name)): UrlPath<(String, String)>,
) -> Response {
    if let Some(r) = fake.fault(Method::DELETE).await {
        return r;
    }
    match fake.lock().objects.remove(&name) {
        Some(o) => Json(o).into_response(),
        None => not_found(&name),
    }
}
