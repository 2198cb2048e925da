//! Reading request bodies the same way in every face: the size limit, JSON
//! syntax and shape errors become a status and a sentence, which each face then
//! wraps in its own envelope.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::rejection::BytesRejection;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use bytes::Bytes;
use hyper::body::Frame;
use serde::de::DeserializeOwned;

use crate::inflight::Exhausted;
use crate::serve::BodyReadTimeout;

/// Why a body could not be read.
#[derive(Debug)]
pub struct BodyError {
    pub status: StatusCode,
    pub message: String,
}

/// The body's bytes, or a 413 naming the limit (or the transport's error).
pub fn bytes(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, BodyError> {
    body.map_err(|rejection| {
        if let Some(stalled) = cause::<BodyReadTimeout>(&rejection) {
            return BodyError {
                status: StatusCode::REQUEST_TIMEOUT,
                message: stalled.to_string(),
            };
        }
        let status = match cause::<DeclaredTooLarge>(&rejection) {
            Some(_) => StatusCode::PAYLOAD_TOO_LARGE,
            None => rejection.status(),
        };
        if let Some(refused) = cause::<Exhausted>(&rejection) {
            return BodyError {
                status: refused.status(),
                message: refused.to_string(),
            };
        }
        let text = rejection.body_text();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("request body is larger than the limit of {limit} bytes")
        } else {
            format!("cannot read request body: {text}")
        };
        BodyError { status, message }
    })
}

/// The first error of type `E` in the chain of causes of a failed read.
fn cause<E: std::error::Error + 'static>(rejection: &BytesRejection) -> Option<&E> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// Refuses a body whose `Content-Length` is over `limit` before a byte of it is
/// read: the handler's read fails at once, and each face answers that with its
/// own 413. The length header goes too, so nothing is reserved or charged for
/// the claim.
pub fn refuse_declared_oversize(limit: usize, mut req: Request) -> Request {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        req.headers_mut().remove(header::CONTENT_LENGTH);
        *req.body_mut() = Body::new(DeclaredTooLarge);
    }
    req
}

/// A body declared larger than the limit; reading it fails at once.
#[derive(Debug)]
struct DeclaredTooLarge;

impl std::fmt::Display for DeclaredTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the declared Content-Length is over the body limit")
    }
}

impl std::error::Error for DeclaredTooLarge {}

impl hyper::body::Body for DeclaredTooLarge {
    type Data = Bytes;
    type Error = DeclaredTooLarge;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, DeclaredTooLarge>>> {
        Poll::Ready(Some(Err(DeclaredTooLarge)))
    }
}

/// Parses JSON, reporting the line and column of a syntax error and the field of
/// a shape error. Fields the type does not know are ignored (the seed
/// documents' servers, pydantic's, do so) and named in the debug log.
pub fn json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyError> {
    if bytes.is_empty() {
        return Err(BodyError {
            status: StatusCode::BAD_REQUEST,
            message: "request body is empty; a JSON object is expected".into(),
        });
    }
    let invalid = |e: serde_json::Error| BodyError {
        status: StatusCode::BAD_REQUEST,
        message: format!("request body is not valid: {e}"),
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_ignored::deserialize(
        &mut de,
        |path| tracing::debug!(field = %path, "ignored a field the request type does not have"),
    )
    .map_err(invalid)?;
    de.end().map_err(invalid)?;
    Ok(value)
}

/// `null` reads as the field's default, as an absent field does.
pub fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(d).map(Option::unwrap_or_default)
}

/// Plain base64 or a `data:` URL, as clients send images in JSON.
pub fn base64_payload(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::Engine;
    let payload = match text.strip_prefix("data:") {
        Some(url) => url.split_once(',').map(|(_, b)| b).unwrap_or(""),
        None => text,
    };
    // MIME-style base64 wraps lines; the line breaks are not part of the data.
    let compact: String = payload
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(compact)
}

/// An answer's body that keeps `guard` alive until the answer has been sent
/// (or dropped): what a request holds (its in-flight charge, its connection's
/// busy mark) is given back only when the client has its answer.
pub(crate) struct Guarded<G> {
    inner: Body,
    _guard: G,
}

impl<G> Guarded<G> {
    pub(crate) fn new(inner: Body, guard: G) -> Guarded<G> {
        Guarded {
            inner,
            _guard: guard,
        }
    }
}

impl<G: Unpin> hyper::body::Body for Guarded<G> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
