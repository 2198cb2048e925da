//! Charges every request's body to the server's in-flight memory budget
//! (`InflightBudget`) while the request lives, answer included. The charge
//! follows the bytes that arrived (after decompression), never the length a
//! client claims: a head that declares 64 MiB and sends nothing holds nothing.
//! The declared length only refuses at once a body that could never fit.
//! Past the budget the read fails with `Exhausted`, which `body::bytes` turns
//! into a 503 (or 413) that each face renders in its own format; every 503 and
//! 429 then gets a `Retry-After`.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use inferd_core::budget::{Charge, InflightBudget, DECODE_FACTOR};
use inferd_core::CoreError;

use crate::body::Guarded;
use crate::AppState;

/// Seconds a client is told to wait before retrying an overloaded server.
const RETRY_AFTER_S: &str = "1";

type Held = Arc<Mutex<Option<Charge>>>;

pub async fn charge(state: &AppState, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .map(|n| n.min(state.max_body_bytes as u64));
    let held: Held = Arc::default();
    let entered = state.manager.inflight().enter();
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
    Response::from_parts(parts, Body::new(Guarded::new(body, (held, entered))))
}

/// The request body, charged as it arrives.
struct Charged {
    inner: Body,
    budget: InflightBudget,
    held: Held,
    declared: Option<u64>,
    received: u64,
}

/// A body the budget refused; `body::bytes` finds it in the read's causes.
#[derive(Debug)]
pub(crate) enum Exhausted {
    /// The body alone is over the whole budget: no wait lets it in (413).
    NeverFits { limit: u64 },
    /// Requests in flight hold the budget: retry later (503).
    Busy { detail: String },
}

impl Exhausted {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Exhausted::NeverFits { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Exhausted::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl std::fmt::Display for Exhausted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exhausted::NeverFits { limit } => write!(
                f,
                "request body is larger than the whole in-flight memory budget ({limit} bytes \
                 at {DECODE_FACTOR}x the body; --max-inflight-bytes raises it)"
            ),
            Exhausted::Busy { detail } => write!(
                f,
                "the server's in-flight memory budget is exhausted ({detail}); retry later"
            ),
        }
    }
}

impl std::error::Error for Exhausted {}

impl Charged {
    /// Refuses a body whose declared or received size is over the budget.
    fn check_fits(&self) -> Result<(), Exhausted> {
        let limit = self.budget.limit();
        let total = self.received.max(self.declared.unwrap_or(0));
        if total.saturating_mul(DECODE_FACTOR) > limit {
            return Err(Exhausted::NeverFits { limit });
        }
        Ok(())
    }

    /// Charges `bytes` more of body, `DECODE_FACTOR` times over.
    fn take(&mut self, bytes: u64) -> Result<(), Exhausted> {
        let cost = bytes.saturating_mul(DECODE_FACTOR);
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let result = match held.as_mut() {
            Some(charge) => charge.grow(cost),
            None => self.budget.try_charge(cost).map(|c| *held = Some(c)),
        };
        result.map_err(|e| Exhausted::Busy {
            detail: match e {
                CoreError::Overloaded { used, limit, .. } => {
                    format!("{used} of {limit} bytes are in use by requests in flight")
                }
                other => other.to_string(),
            },
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
        if self.received == 0 {
            if let Err(e) = self.check_fits() {
                return Poll::Ready(Some(Err(axum::Error::new(e))));
            }
        }
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        if let Some(data) = frame.data_ref() {
            let len = data.len() as u64;
            self.received = self.received.saturating_add(len);
            if let Err(e) = self.check_fits().and_then(|()| self.take(len)) {
                return Poll::Ready(Some(Err(axum::Error::new(e))));
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
