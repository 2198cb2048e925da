//! Requests built to hurt: claims far beyond their data, more load than the
//! in-flight budget, backends that panic. Each gets a clear answer in its
//! face's format and the server keeps serving.

use axum::body::Body;
use axum::http::StatusCode;
use inferd_core::ManagerConfig;
use serde_json::{json, Value};

use super::{app_for, assert_still_serves, manager, post, send, temp_repo, write_model};
use crate::Compat;

const FAULT: &str = "backend = 'builtin'\nkind = 'fault'\nmax_batch_size = 0\n\
    [[input]]\nname = 'INPUT0'\ndatatype = 'BYTES'\n[[output]]\nname = 'OUTPUT0'\ndatatype = 'BYTES'\n";

/// An image model whose preprocessing makes 1024x1024 RGB floats per image.
const BIG_IMAGES: &str = "backend = 'builtin'\nkind = 'identity'\nmax_batch_size = 0\n\
    [[input]]\nname = 'INPUT0'\ndatatype = 'FP32'\n[[output]]\nname = 'OUTPUT0'\ndatatype = 'FP32'\n\
    [image]\nwidth = 1024\nheight = 1024\nchannels = 'rgb'\nlayout = 'nchw'\n";

/// The default models plus `fault` and `big_images`.
async fn app_with(tag: &str, config: ManagerConfig) -> axum::Router {
    app_and_manager(tag, config).await.0
}

async fn app_and_manager(tag: &str, config: ManagerConfig) -> (axum::Router, inferd_core::Manager) {
    let root = temp_repo(tag);
    for entry in std::fs::read_dir(super::models()).unwrap() {
        let entry = entry.unwrap();
        if entry.path().join("model.toml").is_file() {
            let name = entry.file_name();
            std::os::unix::fs::symlink(entry.path(), root.join(&name)).unwrap();
        }
    }
    write_model(&root, "fault", FAULT);
    write_model(&root, "big_images", BIG_IMAGES);
    let m = manager(&root, config);
    m.load_all().await;
    (app_for(m.clone(), Compat::Kserve), m)
}

/// The models over an in-flight budget of 4000 bytes: an iris request padded
/// to about 800 bytes (charged 4x) nearly fills it.
async fn small_budget(tag: &str) -> (axum::Router, inferd_core::Manager) {
    let config = ManagerConfig {
        max_inflight_bytes: 4000,
        ..ManagerConfig::default()
    };
    app_and_manager(tag, config).await
}

fn fault(mode: &str) -> Value {
    json!({"inputs": [{"name": "INPUT0", "shape": [1], "datatype": "BYTES", "data": [mode]}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_backend_fails_its_request_and_keeps_serving() {
    let app = app_with("fault", ManagerConfig::default()).await;
    for _ in 0..3 {
        let a = post(&app, "/v2/models/fault/infer", fault("panic")).await;
        assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
        let msg = a.json()["error"].as_str().unwrap().to_string();
        assert!(
            msg.contains("panicked") && msg.contains("fault model asked to panic"),
            "{msg}"
        );
        let a = post(&app, "/v2/models/fault/infer", fault("ok")).await;
        assert_eq!(a.status, StatusCode::OK, "the model serves after a panic");
        assert_eq!(a.json()["outputs"][0]["data"], json!(["ok"]));
    }
    let a = post(&app, "/v2/models/fault/infer", fault("error")).await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(a.json()["error"]
        .as_str()
        .unwrap()
        .contains("fault model asked to fail"));
    let ready = super::get(&app, "/v2/models/fault/ready").await;
    assert_eq!(ready.status, StatusCode::OK);
    let metrics = super::get(&app, "/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body);
    let failures = text
        .lines()
        .find(|l| l.starts_with("nv_inference_request_failure{model=\"fault\""))
        .unwrap_or_else(|| panic!("no failure series for fault:\n{text}"));
    assert!(failures.ends_with(" 4"), "3 panics and 1 error: {failures}");
    assert_still_serves(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_far_beyond_the_data_cost_nothing() {
    let app = app_with("claims", ManagerConfig::default()).await;
    // A shape of four billion elements over four numbers.
    let a = post(
        &app,
        "/v2/models/iris/infer",
        json!({"inputs": [{"name": "X", "shape": [1000000000, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}),
    )
    .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.json());
    // Within the element limit, but still four numbers: refused on the count.
    let a = post(
        &app,
        "/v2/models/iris/infer",
        json!({"inputs": [{"name": "X", "shape": [4000000, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.json()["error"].as_str().unwrap().contains("16000000"),
        "{}",
        a.json()
    );
    // Three hundred thousand empty images for a model of 1024x1024 RGB inputs:
    // refused on the count before anything is decoded or reserved.
    let images = vec![""; 300_000];
    let a = post(
        &app,
        "/inference/infer",
        json!({"task": "image-classification", "model_name": "big_images", "data": {"images": images}}),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.json());
    assert!(
        a.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 256"),
        "{}",
        a.json()
    );
    // Within the count, but 20 such images pass the element limit.
    let a = post(
        &app,
        "/inference/infer",
        json!({"task": "image-classification", "model_name": "big_images", "data": {"images": vec![""; 20]}}),
    )
    .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.json());
    // A timeout no clock can hold: served, not a panic.
    let mut req = super::iris_request();
    req["parameters"] = json!({"timeout": u64::MAX});
    let a = post(&app, "/v2/models/iris/infer", req).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json());
    assert_still_serves(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_inflight_budget_are_told_to_retry() {
    let (app, m) = small_budget("budget").await;
    let padding = " ".repeat(600);
    let big = format!("{}{padding}", super::iris_request());
    let v2 = |body: String| {
        let app = app.clone();
        async move {
            send(
                &app,
                "POST",
                "/v2/models/iris/infer",
                &[("content-type", "application/json")],
                body,
            )
            .await
        }
    };
    // Requests in flight hold most of the budget: this one must wait.
    let others = m.inflight().try_charge(2000).unwrap();
    let a = v2(big.clone()).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.json());
    assert_eq!(a.headers["retry-after"], "1");
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("in-flight memory budget"),
        "{}",
        a.json()
    );
    // Without a Content-Length the body is charged as it arrives.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big
        .clone()
        .into_bytes()
        .chunks(100)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let a = send(
        &app,
        "POST",
        "/inference/infer",
        &[("content-type", "application/json")],
        Body::from_stream(tokio_stream_of(chunks)),
    )
    .await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", a.body);
    assert_eq!(a.json()["success"], json!(false));
    assert!(a.headers.contains_key("retry-after"));
    // Once they are done it fits; the budget is whole again after each answer.
    drop(others);
    for _ in 0..3 {
        let a = v2(big.clone()).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.json());
    }
    assert_eq!(m.inflight().used(), 0);
    // A body that could never fit is too large, not a reason to retry.
    let a = v2(format!("{big}{}", " ".repeat(1000))).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.json());
    assert!(a.json()["error"]
        .as_str()
        .unwrap()
        .contains("whole in-flight memory budget"));
    assert_still_serves(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_length_holds_no_budget_until_its_bytes_arrive() {
    let (app, m) = small_budget("claimed").await;
    // A head that claims 900 bytes (3600 of budget) and sends none of them.
    let stalled = tokio::spawn({
        let app = app.clone();
        async move {
            send(
                &app,
                "POST",
                "/v2/models/iris/infer",
                &[
                    ("content-type", "application/json"),
                    ("content-length", "900"),
                ],
                Body::from_stream(Stalled),
            )
            .await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !stalled.is_finished(),
        "the stalled request waits for its body"
    );
    assert_eq!(m.inflight().used(), 0, "a claimed length holds no budget");
    for _ in 0..3 {
        let a = post(&app, "/v2/models/iris/infer", super::iris_request()).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.json());
    }
    stalled.abort();
}

/// A body whose bytes never come.
struct Stalled;

impl futures_core::Stream for Stalled {
    type Item = Result<Vec<u8>, std::io::Error>;
    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::task::Poll::Pending
    }
}

fn tokio_stream_of(
    items: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    Chunks(items.into_iter())
}

struct Chunks(std::vec::IntoIter<Result<Vec<u8>, std::io::Error>>);

impl futures_core::Stream for Chunks {
    type Item = Result<Vec<u8>, std::io::Error>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::task::Poll::Ready(self.0.next())
    }
}
