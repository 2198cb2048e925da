//! Seed 003's services through the router: the envelope on the paths a socket
//! test cannot reach cheaply (oversized bodies, no store), and that a running
//! service's model is not the model cache's to evict.

use std::time::Duration;

use axum::http::StatusCode;
use inferd_core::ManagerConfig;
use inferd_store::Store;
use serde_json::{json, Value};

use super::{get, manager, models, post, send, temp_repo};
use crate::{router, AppState, Compat};

fn app_with_store(tag: &str) -> (axum::Router, AppState) {
    let m = manager(&models(), ManagerConfig::default());
    let store = Store::open(&temp_repo(tag)).unwrap();
    let state = AppState::new(m, Compat::Kserve, 1 << 16).with_store(store);
    (router(state.clone()), state)
}

async fn wait_running(app: &axum::Router, id: &str) -> Value {
    wait_leaving(app, id, "creating").await
}

async fn wait_leaving(app: &axum::Router, id: &str, status: &str) -> Value {
    for _ in 0..600 {
        let rec = get(app, &format!("/api/v1/inference/services/{id}"))
            .await
            .json();
        if rec["data"]["status"] != status {
            return rec;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{id} never left {status}");
}

#[tokio::test]
async fn oversized_and_malformed_bodies_answer_in_the_envelope() {
    let (app, _) = app_with_store("svc-body");
    let big = "x".repeat(1 << 17);
    let a = send(&app, "POST", "/api/v1/inference/services", &[], big).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(a.json()["code"], 41301, "{}", a.json());
    let a = send(&app, "POST", "/api/v1/inference/services", &[], "{not json").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.json()["message"].as_str().unwrap().contains("line 1"),
        "{}",
        a.json()
    );
    let a = get(&app, "/api/v1/inference/services?page=0").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.json()["code"], 40001);
}

#[tokio::test]
async fn without_a_store_services_are_unavailable_not_lost() {
    let m = manager(&models(), ManagerConfig::default());
    let app = router(AppState::new(m, Compat::Kserve, 1 << 16));
    let a = post(
        &app,
        "/api/v1/inference/services",
        json!({"name": "x", "model_id": "iris"}),
    )
    .await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.json()["code"], 50301);
}

#[tokio::test]
async fn the_cache_api_cannot_evict_a_running_service() {
    let (app, _) = app_with_store("svc-cache");
    let a = post(
        &app,
        "/api/v1/inference/services",
        json!({"name": "pinned", "model_id": "iris", "memory": 1 << 26}),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.json());
    let id = a.json()["data"]["service_id"].as_str().unwrap().to_string();
    assert_eq!(wait_running(&app, &id).await["data"]["status"], "running");
    let a = post(&app, "/inference/clear-cache", json!({})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json());
    let a = send(
        &app,
        "DELETE",
        &format!("/inference/cache/models/{id}"),
        &[],
        "",
    )
    .await;
    // The cache does not hold a service's deployment: it cannot be evicted.
    assert_eq!(a.status, StatusCode::OK, "{}", a.json());
    assert_eq!(a.json()["success"], json!(false), "{}", a.json());
    let a = post(
        &app,
        &format!("/v2/repository/models/{id}/unload"),
        json!({}),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.json());
    let a = post(
        &app,
        &format!("/api/v1/inference/services/{id}/predict"),
        json!({"inputs": {"X": [[6.7, 3.0, 5.2, 2.3]]}}),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json());
    assert_eq!(a.json()["data"]["predictions"]["label"], json!([2]));
}

#[tokio::test]
async fn services_neither_fill_nor_evict_the_model_cache() {
    let (app, _) = app_with_store("svc-room");
    let a = send(
        &app,
        "PUT",
        "/inference/cache/config?max_cache_size=1",
        &[],
        "",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json());
    let a = post(
        &app,
        "/v2/models/iris/infer",
        json!({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [6.7, 3.0, 5.2, 2.3]}]}),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json());
    let before = get(&app, "/inference/cache/stats").await.json()["stats"].clone();
    for i in 0..3 {
        let a = post(
            &app,
            "/api/v1/inference/services",
            json!({"name": format!("s{i}"), "model_id": "digits", "memory": 1 << 26}),
        )
        .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.json());
        let id = a.json()["data"]["service_id"].as_str().unwrap().to_string();
        let rec = wait_running(&app, &id).await;
        assert_eq!(rec["data"]["status"], "running", "{rec}");
    }
    assert_eq!(
        get(&app, "/v2/models/iris/ready").await.status,
        StatusCode::OK
    );
    let after = get(&app, "/inference/cache/stats").await.json()["stats"].clone();
    assert_eq!(after["evictions"], before["evictions"], "{after}");
    assert_eq!(after["cached_models"], 1, "{after}");
    assert_eq!(
        after["memory_used_bytes"], before["memory_used_bytes"],
        "{after}"
    );
}

#[tokio::test]
async fn start_checks_the_memory_again() {
    let m = manager(&models(), ManagerConfig::default());
    let store = Store::open(&temp_repo("svc-start")).unwrap();
    let state = AppState::new(m, Compat::Kserve, 1 << 16)
        .with_store(store)
        .with_service_limits(crate::ServiceLimits {
            memory_bytes: Some(1 << 20),
            ..crate::ServiceLimits::default()
        });
    let app = router(state);
    let create = |name: &'static str| {
        post(
            &app,
            "/api/v1/inference/services",
            json!({"name": name, "model_id": "digits", "memory": 600_000}),
        )
    };
    let a = create("first").await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.json());
    let first = a.json()["data"]["service_id"].as_str().unwrap().to_string();
    wait_running(&app, &first).await;
    // Memory is a request: one that does not fit is a service that failed, saying why.
    let a = create("second").await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.json());
    assert_eq!(a.json()["data"]["status"], "failed", "{}", a.json());
    let second = a.json()["data"]["service_id"].as_str().unwrap().to_string();
    let rec = get(&app, &format!("/api/v1/inference/services/{second}")).await;
    assert!(rec.json()["data"]["reason"]
        .as_str()
        .unwrap()
        .contains("does not fit"));
    let stop = format!("/api/v1/inference/services/{first}/stop");
    assert_eq!(post(&app, &stop, json!({})).await.status, StatusCode::OK);
    assert_eq!(
        wait_leaving(&app, &first, "stopping").await["data"]["status"],
        "stopped"
    );
    // Once there is room, a start gives it what it asked for.
    let start = format!("/api/v1/inference/services/{second}/start");
    assert_eq!(post(&app, &start, json!({})).await.status, StatusCode::OK);
    wait_running(&app, &second).await;
    let start = format!("/api/v1/inference/services/{first}/start");
    let a = post(&app, &start, json!({})).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.json());
    assert_eq!(a.json()["code"], 40901);
    assert!(a.json()["message"]
        .as_str()
        .unwrap()
        .contains("does not fit"));
}
