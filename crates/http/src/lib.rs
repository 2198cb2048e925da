//! The HTTP faces. Each module is one protocol: it decodes its wire format, makes
//! one core call and renders the answer or the error in its own envelope. Faces
//! never call each other; what two faces share (request bodies, V1-style rows)
//! lives in `body`, `listing`, `rows`, `service_json` and `status`, and what
//! has a life cycle (services) in the service layer below (`inferd_services`).

mod auth;
mod body;
mod dashboard;
mod edge;
mod gateway;
mod inflight;
mod kserve_v1;
mod latency;
mod listing;
mod metrics;
mod openai;
mod openapi;
mod pinferencia;
mod routes;
mod rows;
mod serve;
mod service_json;
mod services;
mod status;
mod stream;
mod tgi;
mod unified;
mod v2;
mod zstack;

pub use inferd_services::JobConfig;
pub use inferd_services::ServiceLimits;
pub use serve::{serve, ConnectionLimits};
pub use unified::{start_jobs, WsLimits};

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use inferd_auth::Auth;
use inferd_core::Manager;
use inferd_services::{Jobs, Results, Services};
use inferd_store::Store;
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::decompression::RequestDecompressionLayer;

use crate::routes::{Access, Face, Routes};

/// Which shape answers the routes that Pinferencia and KServe V1 both claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compat {
    /// One object that serves KServe V1 clients (and OpenAI's list shape).
    #[default]
    Kserve,
    /// Pinferencia's bare JSON arrays.
    Pinferencia,
}

/// What every handler needs. Every extractor and middleware layer clones it,
/// so a clone is one reference count: the fields live behind an `Arc` and are
/// written copy-on-write (`DerefMut`), which only setup does.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl std::ops::DerefMut for AppState {
    fn deref_mut(&mut self) -> &mut Shared {
        Arc::make_mut(&mut self.0)
    }
}

/// The fields of [`AppState`].
#[derive(Clone)]
pub struct Shared {
    pub manager: Manager,
    pub compat: Compat,
    /// Request bodies above this are refused with 413 in the face's format.
    pub max_body_bytes: usize,
    /// The `/inference` face's request statistics.
    recorder: Arc<unified::Recorder>,
    /// Async jobs; `None` until `start_jobs` gives the server a store.
    jobs: Option<Jobs>,
    /// What must survive a restart (services, the catalog, keys and sessions);
    /// `None` in face tests that need none of it.
    store: Option<Store>,
    /// Who may call what; `None` lets every request through (face tests).
    auth: Option<Arc<Auth>>,
    /// Seed 003's inference services (over `store`).
    pub services: Services,
    /// How long a ZStack login session lasts.
    pub session_ttl: std::time::Duration,
    /// Frame and message limits of `/inference/ws`.
    pub ws: WsLimits,
    /// Set when the server starts draining (SIGTERM): readiness turns 503 at
    /// once, so a load balancer stops sending while requests in flight finish.
    pub draining: Arc<AtomicBool>,
    /// Hosts (`host` or `host:port`) ZStack's `X-Web-Hook` may call back.
    pub zstack_webhook_hosts: Vec<String>,
    /// Answers of accepted ZStack changes, for `GET /zstack/v1/api-jobs/{uuid}`.
    api_results: Arc<Results>,
    /// Why each text model failed the last `/health/full` probe, so `/health`
    /// (which loads and probes nothing) tells the same.
    failed_probes: Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>,
    /// Answer latency by face, for `/metrics`.
    face_latency: Arc<latency::FaceLatency>,
    /// The last minutes of traffic, for the dashboard.
    dashboard: Arc<dashboard::History>,
    /// `/openapi.json`, rendered from the route table when the router is built.
    openapi: openapi::Published,
}

impl AppState {
    pub fn new(manager: Manager, compat: Compat, max_body_bytes: usize) -> AppState {
        AppState(Arc::new(Shared {
            services: Services::new(manager.clone(), None, ServiceLimits::default()),
            manager,
            compat,
            max_body_bytes,
            recorder: Arc::default(),
            jobs: None,
            store: None,
            auth: None,
            session_ttl: std::time::Duration::from_secs(7200),
            ws: WsLimits::for_body_limit(max_body_bytes),
            draining: Arc::default(),
            zstack_webhook_hosts: Vec::new(),
            // ZStack keeps a job about two days; at most 10000 are kept here.
            api_results: Arc::new(Results::new(Duration::from_secs(2 * 86_400), 10_000)),
            failed_probes: Arc::default(),
            face_latency: Arc::default(),
            dashboard: Arc::default(),
            openapi: openapi::Published::default(),
        }))
    }

    /// The same `Auth` may serve the gRPC face too: one key cache for both.
    pub fn with_auth(mut self, auth: Arc<Auth>) -> AppState {
        self.auth = Some(auth);
        self
    }

    pub fn with_store(mut self, store: Store) -> AppState {
        self.services = Services::new(
            self.manager.clone(),
            Some(store.clone()),
            self.services.limits(),
        );
        self.store = Some(store);
        self
    }

    /// Starts the dashboard's once-a-second reading of the counters, so its
    /// charts cover the minutes before the page was opened.
    pub fn start_sampling(&self) {
        self.dashboard.start(&self.manager, self.store.clone());
    }

    pub fn with_service_limits(mut self, limits: ServiceLimits) -> AppState {
        self.services = Services::new(self.manager.clone(), self.store.clone(), limits);
        self
    }
}

pub const DEFAULT_MAX_BODY_BYTES: usize = 64 << 20;

/// Seconds since the epoch: seed 004's `timestamp`s, the dashboard's times.
pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// Every face on one router.
pub fn router(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    let (routes, table) = all_routes().into_parts();
    state.openapi.set(&openapi::document(&table, state.compat));
    let edge = edge::Edge {
        state: state.clone(),
        table: Arc::new(table),
    };
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(edge, edge::inner))
        .layer(DefaultBodyLimit::max(limit))
        // gzip and deflate bodies, both ways, as Triton's clients send and accept them.
        // The body limit applies to the decoded body, so a small bomb cannot grow past it.
        .layer(RequestDecompressionLayer::new())
        // Before decompression, which drops a compressed body's length header.
        .layer(axum::middleware::from_fn_with_state(limit, edge::outer))
        .layer(CompressionLayer::new())
        // A handler that panics answers 500 and leaves the connection and the
        // server serving; the panic is logged with its message.
        .layer(CatchPanicLayer::custom(handler_panicked))
        .with_state(state)
}

/// Every face's routes, each with the access it needs and the face that owns it.
fn all_routes() -> Routes {
    Routes::new(Face::ByCompat)
        .get("/v1/models", Access::Read, list_models)
        .get("/v2/models", Access::Read, list_models)
        .get("/v1/models/{model}", Access::Read, model_status)
        .merge(shared_v2_routes())
        .merge(Routes::new(Face::KserveV1).get("/metrics", Access::Open, metrics::metrics))
        .merge(pinferencia::routes())
        .merge(kserve_v1::routes())
        .merge(v2::routes())
        .merge(unified::routes())
        .merge(openai::routes())
        .merge(gateway::routes())
        .merge(tgi::routes())
        .merge(zstack::routes())
        .merge(services::routes())
        .merge(dashboard::routes())
        .merge(openapi::routes())
}

/// Pinferencia answers the model list with an array, KServe and OpenAI clients
/// expect an object: `compat` picks, per server.
async fn list_models(state: State<AppState>) -> Response {
    match state.compat {
        Compat::Kserve => kserve_v1::list(state).await.into_response(),
        Compat::Pinferencia => pinferencia::list(state).await.into_response(),
    }
}

async fn model_status(state: State<AppState>, model: Path<String>) -> Response {
    match state.compat {
        Compat::Kserve => kserve_v1::status(state, model).await,
        Compat::Pinferencia => pinferencia::versions(state, model).await,
    }
}

/// The /v2 routes Pinferencia's kserve API shares with OIP V2: its shapes
/// (version lists, bare booleans, FastAPI errors) under `--compat pinferencia`.
fn shared_v2_routes() -> Routes {
    Routes::new(Face::ByCompatV2)
        .get("/v2/models/{model}", Access::Read, v2_model)
        .get("/v2/models/{model}/ready", Access::Open, v2_ready)
        .get(
            "/v2/models/{model}/versions/{version}/ready",
            Access::Open,
            v2_ready_version,
        )
        .post("/v2/models/{model}/infer", Access::User, v2_infer)
        .post(
            "/v2/models/{model}/versions/{version}/infer",
            Access::User,
            v2_infer_version,
        )
}

async fn v2_model(state: State<AppState>, model: Path<String>) -> Response {
    match state.compat {
        Compat::Kserve => v2::metadata(state, model).await.into_response(),
        Compat::Pinferencia => pinferencia::versions(state, model).await,
    }
}

async fn v2_ready(state: State<AppState>, model: Path<String>) -> Response {
    match state.compat {
        Compat::Kserve => v2::ready(state, model).await,
        Compat::Pinferencia => pinferencia::ready(state, model).await.into_response(),
    }
}

async fn v2_ready_version(state: State<AppState>, at: Path<(String, String)>) -> Response {
    match state.compat {
        Compat::Kserve => v2::ready_version(state, at).await,
        Compat::Pinferencia => pinferencia::ready_version(state, at).await.into_response(),
    }
}

async fn v2_infer(
    state: State<AppState>,
    model: Path<String>,
    headers: axum::http::HeaderMap,
    body: Result<bytes::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    match state.compat {
        Compat::Kserve => v2::infer::infer(state, model, headers, body).await,
        Compat::Pinferencia => pinferencia::infer_v2(state, model, body).await,
    }
}

async fn v2_infer_version(
    state: State<AppState>,
    at: Path<(String, String)>,
    headers: axum::http::HeaderMap,
    body: Result<bytes::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    match state.compat {
        Compat::Kserve => v2::infer::infer_version(state, at, headers, body).await,
        Compat::Pinferencia => pinferencia::infer_v2_version(state, at, body).await,
    }
}

/// ZStack's paths answer in ZStack's error format, like every other failure
/// under them; the rest in KServe's `{"error"}`.
fn zstack_refusal(status: StatusCode, uri: &Uri, details: &str) -> Option<Response> {
    uri.path().starts_with("/zstack/").then(|| {
        zstack::ZsError {
            status,
            code: "SYS.1008",
            description: "The API is not recognized",
            details: details.to_string(),
        }
        .into_response()
    })
}

fn handler_panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = inferd_core::error::panic_message(&*panic);
    tracing::error!("a request handler panicked: {message}");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({ "error": "internal error: the request's handler failed; the server goes on serving" })),
    )
        .into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let message = format!("{method} is not allowed on {}", uri.path());
    if let Some(r) = zstack_refusal(StatusCode::METHOD_NOT_ALLOWED, &uri, &message) {
        return r;
    }
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({ "error": message })),
    )
        .into_response()
}

async fn not_found(uri: Uri) -> Response {
    let message = format!("no api mapping to {}", uri.path());
    if let Some(r) = zstack_refusal(StatusCode::NOT_FOUND, &uri, &message) {
        return r;
    }
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": format!("no route for {}", uri.path())})),
    )
        .into_response()
}

#[cfg(test)]
mod tests;
