//! The work every route shares, as two middlewares instead of five: each axum
//! `from_fn` layer boxes a clone of the service below it and its future on
//! every request, which was a measurable part of a microsecond model's
//! request. `outer` runs before the body is decompressed, `inner` after
//! routing (it needs the matched route) and decompression (it charges the
//! bytes that arrive decoded).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::routes::RouteTable;
use crate::{auth, body, inflight, zstack_refusal, AppState};

/// A path whose percent-escapes decode to invalid UTF-8 names nothing here,
/// and is refused in JSON up front, where the path extractors would answer
/// plain text. A body declared over the limit is marked to fail when read
/// (`body::refuse_declared_oversize`), before decompression drops its length.
pub async fn outer(State(limit): State<usize>, req: Request, next: Next) -> Response {
    if percent_encoding::percent_decode_str(req.uri().path())
        .decode_utf8()
        .is_err()
    {
        let message = "the request path is not valid UTF-8 once its %-escapes are decoded";
        if let Some(r) = zstack_refusal(StatusCode::BAD_REQUEST, req.uri(), message) {
            return r;
        }
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response();
    }
    next.run(body::refuse_declared_oversize(limit, req)).await
}

/// What `inner` reads: the server and the routes' declarations.
#[derive(Clone)]
pub struct Edge {
    pub state: AppState,
    pub table: Arc<RouteTable>,
}

/// Times the request for its face (a refusal included: it is an answer its
/// face gave), checks its credentials against the access its route declared,
/// and charges its body to the in-flight budget (after auth, so a caller
/// without credentials is refused before it is charged).
pub async fn inner(State(edge): State<Edge>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| {
        let (access, face) = edge.table.access(req.method(), p.as_str());
        (access, face.owner(edge.state.compat))
    });
    let started = Instant::now();
    let head = (req.method(), req.uri(), req.headers());
    let res = match auth::admit(edge.state.auth.as_deref(), route, head).await {
        Ok(()) => inflight::charge(&edge.state, req, next).await,
        Err(refusal) => refusal,
    };
    edge.state
        .face_latency
        .record(route.map(|(_, face)| face), res.status(), started.elapsed());
    res
}
