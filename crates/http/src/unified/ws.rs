//! Streaming over WebSocket (`GET /inference/ws`). The client sends unified
//! requests as JSON text messages, one at a time or several; each is answered
//! with a `result` message (after any `token` messages, once a task streams)
//! or an `error` message carrying the document's error object. A request may
//! carry an `id`, echoed in its answers. A bad message gets an error and the
//! connection stays open; a close from either side ends it cleanly.

use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// Tokens a slow client has not read yet; past this the generation waits.
const TOKENS_BUFFERED: usize = 64;

use super::request::UnifiedRequest;
use super::run::{one_streaming, success};
use super::{now, UnifiedError};
use crate::AppState;

/// How much one client may send in one WebSocket frame and one message (a
/// larger one closes the session with code 1009), and how long a session may
/// sit idle: an upgraded connection has left the accept loop's timeouts.
#[derive(Debug, Clone, Copy)]
pub struct WsLimits {
    pub max_message_bytes: usize,
    pub max_frame_bytes: usize,
    pub idle_timeout: Duration,
}

impl WsLimits {
    /// Messages as large as a request body, frames of at most 16 MiB.
    pub fn for_body_limit(max_body_bytes: usize) -> WsLimits {
        WsLimits {
            max_message_bytes: max_body_bytes,
            max_frame_bytes: 16 << 20,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

pub async fn upgrade(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(state.ws.max_message_bytes)
        .max_frame_size(state.ws.max_frame_bytes)
        .on_upgrade(move |socket| session(state, socket))
}

async fn session(state: AppState, mut socket: WebSocket) {
    loop {
        let Ok(next) = tokio::time::timeout(state.ws.idle_timeout, socket.recv()).await else {
            let idle = CloseFrame {
                code: 1000,
                reason: "idle: no message within the idle timeout".into(),
            };
            let _ = socket.send(Message::Close(Some(idle))).await;
            return;
        };
        let Some(received) = next else {
            return;
        };
        let message = match received {
            Ok(message) => message,
            Err(e) => {
                if let Some(limit) = over_limit(&e) {
                    let _ = socket.send(Message::Close(Some(too_big(limit)))).await;
                }
                return;
            }
        };
        let reply = match message {
            Message::Text(text) => match answer(&state, text.as_str(), &mut socket).await {
                Some(reply) => reply,
                None => return,
            },
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

/// The limit a message or frame went past, when that is why the read failed.
fn over_limit(e: &axum::Error) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cause {
        if let Some(tungstenite::Error::Capacity(c)) = err.downcast_ref::<tungstenite::Error>() {
            return Some(c.to_string());
        }
        cause = err.source();
    }
    None
}

/// Close code 1009 (message too big), with the limit in its reason (a close
/// reason holds at most 123 bytes).
fn too_big(limit: String) -> CloseFrame {
    let mut reason = format!("too big: {limit}");
    while reason.len() > 123 {
        reason.pop();
    }
    CloseFrame {
        code: 1009,
        reason: reason.into(),
    }
}

fn error_message(id: Value, e: &UnifiedError) -> Value {
    json!({ "type": "error", "id": id, "success": false, "error": e.body(), "timestamp": now() })
}

/// The reply to one message, after streaming any tokens; None once the client
/// has gone.
async fn answer(state: &AppState, text: &str, socket: &mut WebSocket) -> Option<Value> {
    let mut raw: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return Some(error_message(
                Value::Null,
                &UnifiedError::invalid(format!("message is not valid JSON: {e}")),
            ))
        }
    };
    let id = raw
        .as_object_mut()
        .and_then(|o| o.remove("id"))
        .unwrap_or(Value::Null);
    let req: UnifiedRequest = match serde_json::from_value(raw) {
        Ok(r) => r,
        Err(e) => {
            return Some(error_message(
                id,
                &UnifiedError::invalid(format!("message is not a valid request: {e}")),
            ))
        }
    };
    let started = Instant::now();
    let (tx, mut rx) = mpsc::channel::<String>(TOKENS_BUFFERED);
    let run = one_streaming(state, req, Some(&tx));
    tokio::pin!(run);
    let result = loop {
        tokio::select! {
            result = &mut run => break result,
            Some(token) = rx.recv() => {
                let message = json!({"type": "token", "id": id, "token": token});
                if socket.send(Message::Text(message.to_string().into())).await.is_err() {
                    return None;
                }
            }
        }
    };
    while let Ok(token) = rx.try_recv() {
        let message = json!({"type": "token", "id": id, "token": token});
        if socket
            .send(Message::Text(message.to_string().into()))
            .await
            .is_err()
        {
            return None;
        }
    }
    Some(match result {
        Ok(done) => {
            let mut message = success(done, started);
            message["type"] = json!("result");
            message["id"] = id;
            message
        }
        Err(e) => error_message(id, &e),
    })
}
