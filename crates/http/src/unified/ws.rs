//! Streaming over WebSocket (`GET /inference/ws`). The client sends unified
//! requests as JSON text messages, one at a time or several; each is answered
//! with a `result` message (after any `token` messages, once a task streams)
//! or an `error` message carrying the document's error object. A request may
//! carry an `id`, echoed in its answers. A bad message gets an error and the
//! connection stays open; a close from either side ends it cleanly.

use std::time::Instant;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use serde_json::{json, Value};

use super::request::UnifiedRequest;
use super::run::{one, success};
use super::{now, UnifiedError};
use crate::AppState;

pub async fn upgrade(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    let limit = state.max_body_bytes;
    ws.max_message_size(limit)
        .on_upgrade(move |socket| session(state, socket))
}

async fn session(state: AppState, mut socket: WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        let reply = match message {
            Message::Text(text) => answer(&state, text.as_str()).await,
            Message::Binary(_) => error_message(
                Value::Null,
                &UnifiedError::invalid("send requests as JSON text messages, not binary"),
            ),
            // The close reply is queued by the protocol layer and flushed by
            // the next read, which then ends the loop.
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => continue,
        };
        if socket
            .send(Message::Text(reply.to_string().into()))
            .await
            .is_err()
        {
            return;
        }
    }
}

fn error_message(id: Value, e: &UnifiedError) -> Value {
    json!({ "type": "error", "id": id, "success": false, "error": e.body(), "timestamp": now() })
}

async fn answer(state: &AppState, text: &str) -> Value {
    let mut raw: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return error_message(
                Value::Null,
                &UnifiedError::invalid(format!("message is not valid JSON: {e}")),
            )
        }
    };
    let id = raw
        .as_object_mut()
        .and_then(|o| o.remove("id"))
        .unwrap_or(Value::Null);
    let req: UnifiedRequest = match serde_json::from_value(raw) {
        Ok(r) => r,
        Err(e) => {
            return error_message(
                id,
                &UnifiedError::invalid(format!("message is not a valid request: {e}")),
            )
        }
    };
    let started = Instant::now();
    match one(state, req).await {
        Ok(done) => {
            let mut message = success(done, started);
            message["type"] = json!("result");
            message["id"] = id;
            message
        }
        Err(e) => error_message(id, &e),
    }
}
