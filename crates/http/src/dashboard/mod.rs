//! Seed 004's monitoring dashboard at `GET /dashboard`: one page, its script
//! and its style compiled into the binary (no CDN: it works air-gapped), and
//! the state it draws, as one JSON snapshot and as a Server-Sent Events
//! stream of them. The page sends its key in a header (SSE read with
//! `fetch`, not `EventSource`, which cannot), so no key is ever in a URL. Its
//! buttons call the V2 repository and `/inference` routes a client would, so
//! the dashboard can do nothing its caller's role may not.

mod history;
mod snapshot;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use inferd_auth::Role;
use inferd_core::CoreError;
use serde_json::{json, Map, Value};

pub use history::History;

use crate::routes::{Access, Face, Routes};
use crate::AppState;

/// Only the server's own origin: the page loads and calls nothing else.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

const PAGE: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// The page, its two assets, and the state it draws.
pub fn routes() -> Routes {
    Routes::new(Face::Ops)
        .get("/dashboard", Access::Open, page)
        .get("/dashboard/app.js", Access::Open, script)
        .get("/dashboard/app.css", Access::Open, style)
        .get("/dashboard/state", Access::Read, state)
        .get("/dashboard/events", Access::Read, events)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// An error as `{"error"}`, the envelope of the server's own routes (auth
/// refusals on them included).
pub fn refused(e: CoreError) -> Response {
    let status = crate::status::kserve_status(e.kind());
    (status, Json(json!({ "error": e.to_string() }))).into_response()
}

async fn state(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let (role, auth) = match caller(&app, &headers).await {
        Ok(c) => c,
        Err(e) => return refused(e),
    };
    let mut s = current(&app).await.as_ref().clone();
    s.insert("role".into(), json!(role.as_str()));
    s.insert("auth".into(), json!(auth));
    s.insert("history".into(), json!(app.dashboard.points()));
    Json(Value::Object(s)).into_response()
}

/// The sampler's latest snapshot; read now when it has made none yet.
async fn current(app: &AppState) -> Arc<Map<String, Value>> {
    app.start_sampling();
    match app.dashboard.latest() {
        Some(s) => s,
        None => {
            let rows = app.manager.stats(None, None).unwrap_or_default();
            Arc::new(snapshot::read(&app.manager, rows, app.store.clone(), &app.dashboard).await)
        }
    }
}

/// Each snapshot the sampler makes, as it makes it. A stream holds one of
/// `History`'s few stream permits (503 when none is left), checks its
/// caller's credential again before each event (a key revoked mid-stream ends
/// it), and ends when the server starts draining, so an open page never
/// holds a shutdown up.
async fn events(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = caller(&app, &headers).await {
        return refused(e);
    }
    let Some(permit) = app.dashboard.stream_permit() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, HeaderValue::from_static("5"))],
            Json(json!({"error": "too many dashboard streams are open; try again later"})),
        )
            .into_response();
    };
    let first = current(&app).await;
    let mut next = app.dashboard.subscribe();
    crate::stream::streaming("text/event-stream", move |sink| async move {
        let _permit = permit;
        let mut snapshot = first;
        loop {
            if app.draining.load(Ordering::Relaxed) {
                return;
            }
            let frame = match caller(&app, &headers).await {
                Ok((role, auth)) => {
                    let mut s = snapshot.as_ref().clone();
                    s.insert("role".into(), json!(role.as_str()));
                    s.insert("auth".into(), json!(auth));
                    s.insert("sample".into(), json!(app.dashboard.last_point()));
                    format!("event: state\ndata: {}\n\n", Value::Object(s))
                }
                Err(e) => {
                    let frame = format!(
                        "event: error\ndata: {}\n\n",
                        json!({"error": e.to_string()})
                    );
                    let _ = sink.send(frame).await;
                    return;
                }
            };
            if !sink.send(frame).await || next.changed().await.is_err() {
                return;
            }
            snapshot = next.borrow_and_update().clone().unwrap_or(snapshot);
        }
    })
}

/// The caller's role and whether the server asks for credentials at all.
async fn caller(app: &AppState, headers: &HeaderMap) -> Result<(Role, bool), CoreError> {
    let Some(auth) = &app.auth else {
        return Ok((Role::Admin, false));
    };
    let open = auth.runs_open().await?;
    let role = auth.role(headers).await?.ok_or_else(|| {
        CoreError::Unauthorized("the dashboard needs a credential on this server".into())
    })?;
    Ok((role, !open))
}
