//! Seed 004's monitoring dashboard at `GET /dashboard`: one page, its script
//! and its style compiled into the binary (no CDN: it works air-gapped), and
//! the state it draws, as one JSON snapshot and as a Server-Sent Events
//! stream of them. The page sends its key in a header (SSE read with
//! `fetch`, not `EventSource`, which cannot), so no key is ever in a URL. Its
//! buttons call the V2 repository and `/inference` routes a client would, so
//! the dashboard can do nothing its caller's role may not.

mod history;

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use inferd_auth::Role;
use inferd_core::CoreError;
use inferd_store::{JobStatus, ServiceStatus};
use serde_json::{json, Map, Value};

pub use history::History;
use history::{quantile_ms, Totals};

use crate::metrics::Stored;
use crate::routes::{Access, Face, Routes};
use crate::AppState;

/// Only the server's own origin: the page loads and calls nothing else.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

const PAGE: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// How often the stream sends a snapshot.
const EVERY: Duration = Duration::from_secs(1);

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

/// An error as `{"error"}`, the envelope of the server's own routes.
pub fn refused(e: CoreError) -> Response {
    let status = crate::status::kserve_status(e.kind());
    (status, Json(json!({ "error": e.to_string() }))).into_response()
}

async fn state(State(app): State<AppState>, headers: HeaderMap) -> Response {
    app.dashboard.start(&app.manager);
    match snapshot(&app, &headers).await {
        Ok(mut s) => {
            s.insert("history".into(), json!(app.dashboard.points()));
            Json(Value::Object(s)).into_response()
        }
        Err(e) => refused(e),
    }
}

async fn events(State(app): State<AppState>, headers: HeaderMap) -> Response {
    app.dashboard.start(&app.manager);
    if let Err(e) = snapshot(&app, &headers).await {
        return refused(e);
    }
    crate::stream::streaming("text/event-stream", move |sink| async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let frame = match snapshot(&app, &headers).await {
                Ok(mut s) => {
                    s.insert("sample".into(), json!(app.dashboard.last_point()));
                    format!("event: state\ndata: {}\n\n", Value::Object(s))
                }
                // A key revoked mid-stream ends the stream with the reason.
                Err(e) => {
                    let frame = format!(
                        "event: error\ndata: {}\n\n",
                        json!({"error": e.to_string()})
                    );
                    let _ = sink.send(frame).await;
                    return;
                }
            };
            if !sink.send(frame).await {
                return;
            }
        }
    })
}

pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
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

/// Everything the page draws but the history.
async fn snapshot(app: &AppState, headers: &HeaderMap) -> Result<Map<String, Value>, CoreError> {
    let (role, auth) = caller(app, headers).await?;
    let stored = Stored::read(app).await;
    let stats: HashMap<(String, u64), _> = app
        .manager
        .stats(None, None)
        .unwrap_or_default()
        .into_iter()
        .map(|(m, v, s)| ((m, v), s))
        .collect();
    let recent = app.dashboard.recent();
    let counts = |kept: &[(String, u64)], names: &mut dyn Iterator<Item = &'static str>| {
        names
            .map(|name| {
                let n = kept.iter().find(|(s, _)| s == name).map_or(0, |(_, n)| *n);
                (name.to_string(), json!(n))
            })
            .collect::<Map<String, Value>>()
    };
    let c = app.manager.cache_counters();
    let budget = app.manager.budget();
    let lookups = c.hits + c.misses;
    let inflight = app.manager.inflight();
    let mut out = Map::new();
    out.insert("time".into(), json!(unix_now()));
    out.insert(
        "uptime_s".into(),
        json!(app.dashboard.uptime().as_secs_f64()),
    );
    out.insert("role".into(), json!(role.as_str()));
    out.insert("auth".into(), json!(auth));
    out.insert("models".into(), Value::Array(models(app, &stats, &recent)));
    out.insert(
        "cache".into(),
        json!({
            "hits": c.hits,
            "misses": c.misses,
            "hit_rate": (lookups > 0).then(|| c.hits as f64 / lookups as f64),
            "evictions": c.evictions,
            "loads": c.loads,
            "load_failures": c.load_failures,
            "memory_used_bytes": app.manager.memory_used(),
            "memory_limit_bytes": (budget.max_memory_bytes > 0).then_some(budget.max_memory_bytes),
            "max_models": (budget.max_loaded_models > 0).then_some(budget.max_loaded_models),
            "models_loaded": app.manager.cache_entries().len(),
        }),
    );
    out.insert(
        "inflight".into(),
        json!({
            "requests": inflight.requests(),
            "bytes": inflight.used(),
            "bytes_limit": inflight.limit(),
        }),
    );
    out.insert(
        "generation".into(),
        Value::Array(generation(app, &stats, &recent)),
    );
    out.insert(
        "jobs".into(),
        Value::Object(counts(
            &stored.jobs,
            &mut JobStatus::ALL.iter().map(|j| j.as_str()),
        )),
    );
    out.insert(
        "services".into(),
        Value::Object(counts(
            &stored.services,
            &mut ServiceStatus::ALL.iter().map(|s| s.as_str()),
        )),
    );
    Ok(out)
}

type Stats = HashMap<(String, u64), inferd_core::stats::StatsSnapshot>;
type RecentMap = HashMap<(String, u64), history::Recent>;

/// Every model version of the repository, loaded or not, with its numbers.
fn models(app: &AppState, stats: &Stats, recent: &RecentMap) -> Vec<Value> {
    let cached: HashMap<(String, u64), _> = app
        .manager
        .cache_entries()
        .into_iter()
        .map(|e| ((e.model.clone(), e.version), e))
        .collect();
    let loading: HashMap<(String, u64), _> = app
        .manager
        .loading_entries()
        .into_iter()
        .map(|e| ((e.model.clone(), e.version), e))
        .collect();
    let queues: HashMap<(String, u64), usize> = app
        .manager
        .queue_depths()
        .into_iter()
        .map(|(m, v, d)| ((m, v), d))
        .collect();
    let mut rows: Vec<Value> = app
        .manager
        .index()
        .into_iter()
        .map(|entry| {
            let key = (entry.name.clone(), entry.version.unwrap_or(0));
            let cache = cached.get(&key);
            let backend = match cache {
                Some(e) => Some(e.backend.clone()),
                None => app
                    .manager
                    .info(&entry.name, entry.version)
                    .ok()
                    .map(|i| i.config.backend.clone()),
            };
            let totals = stats.get(&key).map(Totals::of).unwrap_or_default();
            let window = recent.get(&key);
            let rps = window.map_or(0.0, |r| r.totals.requests as f64 / r.seconds);
            let latency = window.map(|r| r.totals.latency.as_slice()).unwrap_or(&[]);
            let in_flight = stats.get(&key).map_or(0, |s| s.in_flight + s.generations);
            json!({
                "name": entry.name,
                "version": entry.version,
                "state": entry.state,
                "reason": entry.reason,
                "backend": backend,
                "memory_bytes": cache.map(|e| e.memory),
                "load_time_s": cache.map(|e| e.load_time.as_secs_f64()),
                "requests_total": totals.requests,
                "errors_total": totals.errors,
                "rps": rps,
                "p50_ms": quantile_ms(latency, 0.5),
                "p99_ms": quantile_ms(latency, 0.99),
                "queue_depth": queues.get(&key).copied().unwrap_or(0),
                "in_flight": in_flight,
                "loading": loading.get(&key).map(|l| json!({
                    "elapsed_s": l.elapsed.as_secs_f64(),
                    "bytes": l.bytes,
                    "last_load_time_s": l.last_load.map(|d| d.as_secs_f64()),
                })),
            })
        })
        .collect();
    rows.sort_by(|a, b| {
        (a["name"].as_str(), a["version"].as_u64())
            .cmp(&(b["name"].as_str(), b["version"].as_u64()))
    });
    rows
}

/// The versions that generate text (loaded now, or that have generated).
fn generation(app: &AppState, stats: &Stats, recent: &RecentMap) -> Vec<Value> {
    let mut rows: Vec<Value> = stats
        .iter()
        .filter_map(|((model, version), s)| {
            let slots = app.manager.loaded_text_info(model).map(|i| i.slots);
            if slots.is_none() && s.generated_tokens == 0 {
                return None;
            }
            let slots = slots.unwrap_or(0) as u64;
            let in_use = s.generations.min(slots);
            let window = recent.get(&(model.clone(), *version));
            let first = window
                .map(|r| r.totals.first_token.as_slice())
                .unwrap_or(&[]);
            Some(json!({
                "model": model,
                "version": version,
                "tokens_total": s.generated_tokens,
                "tokens_per_s": window.map_or(0.0, |r| r.totals.tokens as f64 / r.seconds),
                "ttft_p50_ms": quantile_ms(first, 0.5),
                "ttft_p99_ms": quantile_ms(first, 0.99),
                "slots": slots,
                "slots_in_use": in_use,
                "waiting": s.generations - in_use,
            }))
        })
        .collect();
    rows.sort_by(|a, b| a["model"].as_str().cmp(&b["model"].as_str()));
    rows
}
