//! Reading request bodies the same way in every face: the size limit, JSON
//! syntax and shape errors become a status and a sentence, which each face then
//! wraps in its own envelope.

use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use bytes::Bytes;
use serde::de::DeserializeOwned;

/// Why a body could not be read.
#[derive(Debug)]
pub struct BodyError {
    pub status: StatusCode,
    pub message: String,
}

/// The body's bytes, or a 413 naming the limit (or the transport's error).
pub fn bytes(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, BodyError> {
    body.map_err(|rejection| {
        let status = rejection.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("request body is larger than the limit of {limit} bytes")
        } else {
            format!("cannot read request body: {}", rejection.body_text())
        };
        BodyError { status, message }
    })
}

/// Parses JSON, reporting the line and column of a syntax error and the field of
/// a shape error.
pub fn json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyError> {
    if bytes.is_empty() {
        return Err(BodyError {
            status: StatusCode::BAD_REQUEST,
            message: "request body is empty; a JSON object is expected".into(),
        });
    }
    serde_json::from_slice(bytes).map_err(|e| BodyError {
        status: StatusCode::BAD_REQUEST,
        message: format!("request body is not valid: {e}"),
    })
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
