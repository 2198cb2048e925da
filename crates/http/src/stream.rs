//! Streaming answers (SSE for TGI and OpenAI, frames of any kind): a task
//! writes frames into a bounded channel that hyper reads as the response body.
//! When the client goes away hyper drops the body, the task sees its channel
//! close, and dropping the generation frees the model's sequence slot at once.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use inferd_core::generate::Event;
use inferd_core::Generation;
use tokio::sync::mpsc;

/// Frames a slow client has not read yet; past this the producer waits.
const BUFFERED_FRAMES: usize = 64;

struct Frames(mpsc::Receiver<Bytes>);

impl futures_core::Stream for Frames {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|frame| frame.map(Ok))
    }
}

/// Where a producer writes frames.
pub struct Sink(mpsc::Sender<Bytes>);

impl Sink {
    /// False once the client has gone.
    pub async fn send(&self, frame: impl Into<Bytes>) -> bool {
        self.0.send(frame.into()).await.is_ok()
    }

    /// Sends an SSE `data:` event.
    pub async fn data(&self, json: &serde_json::Value) -> bool {
        self.send(format!("data: {json}\n\n")).await
    }

    /// The next event of a generation, or None when the client has gone (the
    /// caller then returns, dropping the generation).
    pub async fn next(&self, generation: &mut Generation) -> Option<Event> {
        tokio::select! {
            event = generation.next() => event,
            () = self.0.closed() => None,
        }
    }
}

/// A streaming response whose frames `produce` writes.
pub fn streaming<F, Fut>(content_type: &'static str, produce: F) -> Response
where
    F: FnOnce(Sink) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(BUFFERED_FRAMES);
    tokio::spawn(produce(Sink(tx)));
    (
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "no-cache"),
            // Proxies (nginx) must pass tokens on as they come.
            (
                axum::http::HeaderName::from_static("x-accel-buffering"),
                "no",
            ),
        ],
        Body::from_stream(Frames(rx)),
    )
        .into_response()
}
