//! ZStack's async pattern for catalog changes: 202 and a job to poll, the
//! client's `X-Job-UUID`, `X-Web-Hook` callbacks to allowed hosts only (over a
//! real loopback socket), and failures kept as the job's 503.

use axum::http::StatusCode;
use inferd_core::ManagerConfig;
use inferd_store::Store;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::zstack_catalog::{app, done, refused, API};
use super::{get, manager, models, send, temp_repo};
use crate::{router, AppState, Compat};

fn create_body(name: &str) -> String {
    json!({"params": {"name": name, "framework": "onnx", "modelUuids": ["iris"]}}).to_string()
}

#[tokio::test]
async fn a_client_chosen_job_id_is_where_the_answer_waits() {
    let app = app("zs-job-id");
    let id = "0123456789abcdef0123456789abcdef";
    let headers = [("content-type", "application/json"), ("X-Job-UUID", id)];
    let accepted = send(&app, "POST", API, &headers, create_body("chosen")).await;
    assert!(accepted.json()["location"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/zstack/v1/api-jobs/{id}")));
    let answer = done(&app, accepted).await;
    assert_eq!(answer["inventory"]["name"], "chosen");
    // The same id again, a malformed one, and a job nobody made.
    let again = send(&app, "POST", API, &headers, create_body("twice")).await;
    refused(&again, StatusCode::BAD_REQUEST, "SYS.1007");
    let bad = [
        ("content-type", "application/json"),
        ("X-Job-UUID", "short"),
    ];
    let a = send(&app, "POST", API, &bad, create_body("x")).await;
    assert!(refused(&a, StatusCode::BAD_REQUEST, "SYS.1007").contains("32 hex"));
    let unknown = get(&app, &format!("/zstack/v1/api-jobs/{}", "e".repeat(32))).await;
    refused(&unknown, StatusCode::NOT_FOUND, "SYS.1003");
}

#[tokio::test]
async fn a_change_that_fails_inside_is_the_jobs_503() {
    // No store: the change itself fails (an internal error), after acceptance.
    let m = manager(&models(), ManagerConfig::default());
    let app = router(AppState::new(m, Compat::Kserve, 1 << 20));
    let json = [("content-type", "application/json")];
    let accepted = send(&app, "POST", API, &json, create_body("lost")).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    let location = accepted.json()["location"].as_str().unwrap().to_string();
    let path = &location[location.find("/zstack/").unwrap()..];
    let polled = get(&app, path).await;
    refused(&polled, StatusCode::SERVICE_UNAVAILABLE, "SYS.1000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_reach_allowed_hosts_with_zstacks_headers() {
    let receiver = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = receiver.local_addr().unwrap().port();
    let store = Store::open(&temp_repo("zs-hook")).unwrap();
    let m = manager(&models(), ManagerConfig::default());
    let mut state = AppState::new(m, Compat::Kserve, 1 << 20).with_store(store);
    state.zstack_webhook_hosts = vec![format!("127.0.0.1:{port}")];
    let app = router(state);
    let id = "abcdefabcdefabcdefabcdefabcdef01";
    let hook = format!("http://127.0.0.1:{port}/done");
    let headers = [
        ("content-type", "application/json"),
        ("X-Job-UUID", id),
        ("X-Web-Hook", hook.as_str()),
    ];
    let accepted = send(&app, "POST", API, &headers, create_body("hooked")).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    // The first call back is refused (500): ZStack's server retries.
    let mut calls = Vec::new();
    for answer in ["500 Internal Server Error", "200 OK"] {
        let (mut conn, _) =
            tokio::time::timeout(std::time::Duration::from_secs(10), receiver.accept())
                .await
                .expect("the webhook was not called")
                .unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&request).contains("\"hooked\"") {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "{}", String::from_utf8_lossy(&request));
            request.extend_from_slice(&buf[..n]);
        }
        let reply = format!("HTTP/1.1 {answer}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        conn.write_all(reply.as_bytes()).await.unwrap();
        calls.push(String::from_utf8_lossy(&request).to_lowercase());
    }
    for call in &calls {
        assert!(call.starts_with("post /done "), "{call}");
        assert!(call.contains(&format!("x-job-uuid: {id}")), "{call}");
        assert!(call.contains("x-job-success: true"), "{call}");
        assert!(call.contains("\"success\":true"), "{call}");
    }
    // A host the server was not told to call is refused before any change.
    let elsewhere = [
        ("content-type", "application/json"),
        ("X-Web-Hook", "http://169.254.169.254/latest"),
    ];
    let a = send(&app, "POST", API, &elsewhere, create_body("never")).await;
    assert!(refused(&a, StatusCode::BAD_REQUEST, "SYS.1007").contains("--zstack-webhook-hosts"));
    let names = get(&app, &format!("{API}?q=name=never")).await.json();
    assert_eq!(names["inventories"], json!([]));
}
