//! The server's own pages: the dashboard, its state and stream, the API
//! description and Swagger UI.
#![allow(dead_code)]

use axum::http::Method;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::{op, Doc};

/// Everything the dashboard draws, at one moment.
#[derive(ToSchema)]
struct DashboardState {
    /// Unix seconds.
    time: f64,
    /// Seconds since the server started.
    uptime_s: f64,
    /// The caller's role: read, user or admin (admin on an open server).
    role: String,
    /// Whether the server asks for credentials.
    auth: bool,
    /// Every model version: state, backend, memory, load time, requests,
    /// errors, req/s and p50/p99 over the last 10 s, queue and in flight.
    models: Vec<Map<String, Value>>,
    /// Hits, misses, hit rate, evictions, loads, memory used and limits.
    cache: Map<String, Value>,
    /// Requests in flight and their bytes against the budget.
    inflight: Map<String, Value>,
    /// Text models: tokens, tokens/s, time to first token, slots, waiting.
    generation: Vec<Map<String, Value>>,
    /// Async jobs by state.
    jobs: Map<String, Value>,
    /// Inference services by status.
    services: Map<String, Value>,
    /// One point a second over the last 5 minutes (`/dashboard/state` only).
    history: Option<Vec<Map<String, Value>>>,
}

pub fn docs() -> Vec<Doc> {
    vec![
        op(Method::GET, "/dashboard", "The monitoring dashboard (HTML)").ok_as("text/html"),
        op(Method::GET, "/dashboard/app.js", "The dashboard's script").ok_as("text/javascript"),
        op(Method::GET, "/dashboard/app.css", "The dashboard's style").ok_as("text/css"),
        op(
            Method::GET,
            "/dashboard/state",
            "What the dashboard draws, with the last 5 minutes",
        )
        .ok::<DashboardState>(),
        op(
            Method::GET,
            "/dashboard/events",
            "The same state every second, as Server-Sent Events (`event: state`)",
        )
        .ok_as("text/event-stream"),
        op(Method::GET, "/openapi.json", "This document").ok_as("application/json"),
        op(Method::GET, "/docs", "Swagger UI (redirects to /docs/)").status(308),
        op(Method::GET, "/docs/", "Swagger UI").ok_as("text/html"),
        op(Method::GET, "/docs/{*file}", "Swagger UI's files").ok_as("application/octet-stream"),
    ]
}
