//! A bench-only V2 "server" with no model behind it: `POST /v2/models/{model}/infer`
//! parses the body as JSON and answers a small fixed-shape V2 response built from it.
//!
//! It exists to measure the ceiling of HTTP + JSON on this machine with the same
//! stack inferd uses (axum on tokio, serde_json): `scripts/bench` runs it beside
//! inferd so that inferd's throughput reads as a fraction of what the transport
//! alone allows, which separates server overhead from model and batching costs.
//! With `--plain` it answers fixed bytes after parsing (no answer built from the
//! request): the floor under any V2 server on this stack.
//! It is not part of inferd and serves nothing else.

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

const DEFAULT_PORT: u16 = 8099;

const USAGE: &str = "usage: bench-echo [--plain] [--port N]  (or PORT=N)";

/// `--plain`, and the port from `--port N`, else `$PORT`, else 8099.
fn args() -> Result<(bool, u16), String> {
    let mut plain = false;
    let mut raw = std::env::var("PORT").ok();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--plain" => plain = true,
            "--port" => raw = Some(args.next().ok_or(USAGE)?),
            _ => return Err(USAGE.into()),
        }
    }
    let port = raw.map_or(Ok(DEFAULT_PORT), |p| {
        p.parse().map_err(|e| format!("bad port {p:?}: {e}"))
    })?;
    Ok((plain, port))
}

/// The `--plain` answer: parse, then fixed bytes.
async fn plain(body: Bytes) -> Response {
    const ANSWER: &str = r#"{"model_name":"iris","model_version":"1","outputs":[{"name":"label","datatype":"INT64","shape":[1],"data":[0]}]}"#;
    match serde_json::from_slice::<Value>(&body) {
        Ok(_) => ([(CONTENT_TYPE, "application/json")], ANSWER).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")).into_response(),
    }
}

async fn infer(Path(model): Path<String>, body: Bytes) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            let error = json!({ "error": format!("invalid JSON: {e}") });
            return (StatusCode::BAD_REQUEST, Json(error)).into_response();
        }
    };
    let mut response = json!({
        "model_name": model,
        "model_version": "1",
        "outputs": [{ "name": "label", "datatype": "INT64", "shape": [1], "data": [0] }],
    });
    if let Some(id) = request.get("id") {
        response["id"] = id.clone();
    }
    Json(response).into_response()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (plain_mode, port) = args()?;
    let route = "/v2/models/{model}/infer";
    let app = if plain_mode {
        Router::new().route(route, post(plain))
    } else {
        Router::new().route(route, post(infer))
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("bench-echo listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
