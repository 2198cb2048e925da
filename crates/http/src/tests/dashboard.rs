//! The dashboard's state and event stream: numbers that follow traffic, a
//! stream that ends when the server drains (so an open page never holds a
//! shutdown up), and a bound on how many streams are open.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use inferd_core::ManagerConfig;
use serde_json::Value;
use tower::ServiceExt;

use super::{get, iris_request, manager, models, post};
use crate::{router, AppState, Compat};

async fn loaded_state() -> AppState {
    let m = manager(&models(), ManagerConfig::default());
    m.load_all().await;
    AppState::new(m, Compat::Kserve, 1 << 20)
}

/// The next `event: state` of a stream, as JSON; `None` once it ended.
async fn next_state(body: &mut Body) -> Option<Value> {
    let mut text = String::new();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("no event within 5 s")?
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&frame.into_data().unwrap()));
        if let Some(data) = text
            .strip_prefix("event: state\ndata: ")
            .and_then(|rest| rest.strip_suffix("\n\n"))
        {
            return Some(serde_json::from_str(data).unwrap());
        }
    }
}

/// Opens the dashboard's event stream on `app`.
async fn open_stream(app: &axum::Router) -> axum::response::Response {
    app.clone()
        .oneshot(
            Request::get("/dashboard/events")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap()
}

fn iris_requests(state: &Value) -> u64 {
    state["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "iris")
        .map(|m| m["requests_total"].as_u64().unwrap())
        .unwrap()
}

#[tokio::test]
async fn the_stream_follows_traffic_and_ends_when_the_server_drains() {
    let state = loaded_state().await;
    let draining = state.draining.clone();
    let app = router(state);
    let res = open_stream(&app).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    let first = next_state(&mut body).await.unwrap();
    assert_eq!(first["role"], "admin");
    assert_eq!(iris_requests(&first), 0);
    for _ in 0..3 {
        assert_eq!(
            post(&app, "/v2/models/iris/infer", iris_request())
                .await
                .status,
            StatusCode::OK
        );
    }
    let (mut seen, mut sampled) = (0, false);
    for _ in 0..6 {
        let s = next_state(&mut body).await.unwrap();
        seen = iris_requests(&s);
        // The sampler's first reading makes no point (a rate needs two), so an
        // event of that tick has a null sample: wait for the next.
        sampled = s["sample"]["t"].as_f64().is_some_and(|t| t > 0.0);
        if seen == 3 && sampled {
            break;
        }
    }
    assert_eq!(seen, 3, "the stream never showed the 3 requests");
    assert!(sampled, "the stream's events never carried a sample point");
    let snapshot = get(&app, "/dashboard/state").await.json();
    assert_eq!(iris_requests(&snapshot), 3);
    assert!(!snapshot["history"].as_array().unwrap().is_empty());

    draining.store(true, Ordering::Relaxed);
    let mut ended = false;
    for _ in 0..3 {
        if next_state(&mut body).await.is_none() {
            ended = true;
            break;
        }
    }
    assert!(ended, "the stream went on after the server began draining");
}

#[tokio::test]
async fn streams_past_the_bound_are_refused_with_503() {
    let app = router(loaded_state().await);
    let mut open = Vec::new();
    loop {
        let res = open_stream(&app).await;
        if res.status() != StatusCode::OK {
            assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(res.headers()["retry-after"], "5");
            break;
        }
        open.push(res);
        assert!(open.len() <= 32, "more than 32 streams were let open");
    }
    assert_eq!(open.len(), 32);
    // A stream closed frees its place (its task sees it at its next event).
    drop(open.pop());
    for _ in 0..50 {
        let res = open_stream(&app).await;
        if res.status() == StatusCode::OK {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("a closed stream's place was not freed within 5 s");
}
