//! Charges every request's body to the server's in-flight memory budget
//! (`InflightBudget`) while the request lives, answer included. The charge is
//! taken when a handler first reads the body, before a byte of it is read:
//! from `Content-Length` when the client declared one, else frame by frame as
//! the (possibly decompressed) body arrives. Past the budget the read fails
//! with `BUDGET_EXHAUSTED` in its message, which `body::bytes` turns into a 503
//! that each face renders in its own format; every 503 and 429 then gets a
//! `Retry-After`.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use inferd_core::budget::{Charge, InflightBudget, DECODE_FACTOR};
use inferd_core::CoreError;

use crate::body::Guarded;
use crate::AppState;

/// Words in every over-budget message, by which `body::bytes` recognises it.
pub const BUDGET_EXHAUSTED: &str = "the server's in-flight memory budget is exhausted";

/// Words of the refusal of a body no wait would let in: a 413, not a retry.
pub const NEVER_FITS: &str = "is larger than the whole in-flight memory budget";

/// Seconds a client is told to wait before retrying an overloaded server.
const RETRY_AFTER_S: &str = "1";

type Held = Arc<Mutex<Option<Charge>>>;

pub async fn charge(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .map(|n| n.min(state.max_body_bytes as u64));
    let held: Held = Arc::default();
    let (parts, body) = req.into_parts();
    let body = Body::new(Charged {
        inner: body,
        budget: state.manager.inflight().clone(),
        held: held.clone(),
        declared,
        received: 0,
    });
    let res = next.run(Request::from_parts(parts, body)).await;
    let (mut parts, body) = res.into_parts();
    let busy = matches!(
        parts.status,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
    );
    if busy && !parts.headers.contains_key(header::RETRY_AFTER) {
        parts
            .headers
            .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_S));
    }
    Response::from_parts(parts, Body::new(Guarded::new(body, held)))
}

/// The request body, charged before it is read.
struct Charged {
    inner: Body,
    budget: InflightBudget,
    held: Held,
    declared: Option<u64>,
    received: u64,
}

#[derive(Debug)]
struct Exhausted(String);

impl std::fmt::Display for Exhausted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Exhausted {}

impl Charged {
    /// Charges `bytes` more of body, `DECODE_FACTOR` times over.
    fn take(&mut self, bytes: u64) -> Result<(), Exhausted> {
        let cost = bytes.saturating_mul(DECODE_FACTOR);
        let limit = self.budget.limit();
        let total = self.received.max(self.declared.unwrap_or(0));
        if total.saturating_mul(DECODE_FACTOR) > limit {
            return Err(Exhausted(format!(
                "request body {NEVER_FITS} ({limit} bytes at {DECODE_FACTOR}x the body; \
                 --max-inflight-bytes raises it)"
            )));
        }
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let result = match held.as_mut() {
            Some(charge) => charge.grow(cost),
            None => self.budget.try_charge(cost).map(|c| *held = Some(c)),
        };
        result.map_err(|e| {
            let detail = match e {
                CoreError::Overloaded { used, limit, .. } => {
                    format!("{used} of {limit} bytes are in use by requests in flight")
                }
                other => other.to_string(),
            };
            Exhausted(format!("{BUDGET_EXHAUSTED} ({detail}); retry later"))
        })
    }
}

impl http_body::Body for Charged {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let first = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none();
        if first {
            let upfront = self.declared.unwrap_or(0);
            if let Err(e) = self.take(upfront) {
                return Poll::Ready(Some(Err(axum::Error::new(e))));
            }
        }
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        if let Some(data) = frame.data_ref() {
            let before = self.received;
            self.received = before.saturating_add(data.len() as u64);
            // Only what passes the declared length (a lying or absent one) is new.
            let covered = self.declared.unwrap_or(0);
            let extra = self.received.saturating_sub(covered.max(before));
            if extra > 0 {
                if let Err(e) = self.take(extra) {
                    return Poll::Ready(Some(Err(axum::Error::new(e))));
                }
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
