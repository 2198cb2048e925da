//! Queues, deadlines, batching, loading and eviction, seen through the V2 face
//! with a slow builtin model standing in for a heavy one.

use std::time::Duration;

use axum::http::StatusCode;
use inferd_core::manager::Budget;
use inferd_core::ManagerConfig;
use serde_json::json;

use super::{
    app_for, get, manager, models, post, slow_identity, slow_request, temp_repo, write_model,
};
use crate::Compat;

fn slow_app(
    tag: &str,
    delay_ms: u64,
    extra: &str,
    config: ManagerConfig,
) -> (axum::Router, inferd_core::Manager) {
    let root = temp_repo(tag);
    write_model(&root, "slow", &slow_identity(delay_ms, extra));
    let m = manager(&root, config);
    (app_for(m.clone(), Compat::Kserve), m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_at_once_with_overload() {
    let (app, _) = slow_app("queue", 400, "max_queue = 1", ManagerConfig::default());
    let running = tokio::spawn({
        let app = app.clone();
        async move { post(&app, "/v2/models/slow/infer", slow_request(None)).await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let queued = tokio::spawn({
        let app = app.clone();
        async move { post(&app, "/v2/models/slow/infer", slow_request(None)).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = std::time::Instant::now();
    let refused = post(&app, "/v2/models/slow/infer", slow_request(None)).await;
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "refused at once, not after a wait"
    );
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.json()["error"]
        .as_str()
        .unwrap()
        .contains("overloaded"));
    assert_eq!(running.await.unwrap().status, StatusCode::OK);
    assert_eq!(queued.await.unwrap().status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_deadline_gets_a_timeout_and_is_not_run() {
    let (app, m) = slow_app("deadline", 300, "", ManagerConfig::default());
    let first = tokio::spawn({
        let app = app.clone();
        async move { post(&app, "/v2/models/slow/infer", slow_request(None)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Queued behind a 300 ms job with a 50 ms deadline: answered 504, dropped before it runs.
    let late = post(&app, "/v2/models/slow/infer", slow_request(Some(50_000))).await;
    assert_eq!(late.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(late.json()["error"].as_str().unwrap().contains("deadline"));
    assert_eq!(first.await.unwrap().status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stats = m.stats(Some("slow"), None).unwrap();
    assert_eq!(stats[0].2.execution_count, 1, "the expired job never ran");
    assert_eq!(stats[0].2.fail.count, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unloading_under_load_finishes_in_flight_requests_then_refuses() {
    let (app, _) = slow_app("unload", 300, "", ManagerConfig::default());
    assert_eq!(
        post(&app, "/v2/repository/models/slow/load", json!({}))
            .await
            .status,
        StatusCode::OK
    );
    let in_flight = tokio::spawn({
        let app = app.clone();
        async move { post(&app, "/v2/models/slow/infer", slow_request(None)).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let unload = post(&app, "/v2/repository/models/slow/unload", json!({})).await;
    assert_eq!(unload.status, StatusCode::OK);
    let done = in_flight.await.unwrap();
    assert_eq!(
        done.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&done.body)
    );
    let refused = post(&app, "/v2/models/slow/infer", slow_request(None)).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.json()["error"]
        .as_str()
        .unwrap()
        .contains("load it first"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_load_a_model_once() {
    let (app, m) = slow_app("once", 0, "", ManagerConfig::default());
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                post(&app, "/v2/models/slow/infer", slow_request(None))
                    .await
                    .status
            })
        })
        .collect();
    for c in calls {
        assert_eq!(c.await.unwrap(), StatusCode::OK);
    }
    let counters = m.cache_counters();
    assert_eq!(counters.loads, 1);
    assert_eq!(counters.misses, 1);
    assert_eq!(counters.hits, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_batching_joins_concurrent_requests() {
    let (app, m) = slow_app(
        "batch",
        50,
        "max_batch_size = 8\nmax_queue_delay_ms = 30",
        ManagerConfig::default(),
    );
    let calls: Vec<_> = (0..8)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                let req = json!({"inputs": [{"name": "INPUT0", "shape": [1, 2], "datatype": "FP32", "data": [i, i]}]});
                post(&app, "/v2/models/slow/infer", req).await.json()
            })
        })
        .collect();
    for (i, c) in calls.into_iter().enumerate() {
        let out = c.await.unwrap();
        assert_eq!(
            out["outputs"][0]["data"],
            json!([i as f32, i as f32]),
            "each request gets its own rows back"
        );
    }
    let s = &m.stats(Some("slow"), None).unwrap()[0].2;
    assert_eq!(s.inference_count, 8);
    assert!(
        s.execution_count <= 4,
        "8 requests ran in {} batches",
        s.execution_count
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_least_recently_used_idle_model_is_evicted_and_reloads_on_use() {
    let config = ManagerConfig {
        budget: Budget {
            max_loaded_models: 2,
            max_memory_bytes: 0,
        },
        ..ManagerConfig::default()
    };
    let m = manager(&models(), config);
    let app = app_for(m.clone(), Compat::Kserve);
    let add_sub = json!({"inputs": [
        {"name": "INPUT0", "shape": [16], "datatype": "INT32", "data": vec![1; 16]},
        {"name": "INPUT1", "shape": [16], "datatype": "INT32", "data": vec![1; 16]}
    ]});
    let digits = json!({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": vec![0.0; 64]}]});
    assert_eq!(
        post(&app, "/v2/models/iris/infer", super::iris_request())
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        post(&app, "/v2/models/digits/infer", digits.clone())
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        post(&app, "/v2/models/iris/infer", super::iris_request())
            .await
            .status,
        StatusCode::OK
    );
    // digits is now the least recently used: loading add_sub evicts it.
    assert_eq!(
        post(&app, "/v2/models/add_sub/infer", add_sub).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&app, "/v2/models/digits/ready").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get(&app, "/v2/models/iris/ready").await.status,
        StatusCode::OK
    );
    let c = m.cache_counters();
    assert_eq!((c.loads, c.evictions, c.misses, c.hits), (3, 1, 3, 1));
    // An evicted model is not unloaded by a user: the next request loads it again.
    assert_eq!(
        post(&app, "/v2/models/digits/infer", digits).await.status,
        StatusCode::OK
    );
    assert_eq!(m.cache_counters().evictions, 2);
}
