//! Seed 003's services survive the process: running ones come back up after a
//! `kill -9` and a restart, stopped ones stay stopped.

mod common;

use std::time::{Duration, Instant};

use common::{http, temp_dir, workspace, Server};
use serde_json::Value;

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn create(addr: &str, name: &str) -> String {
    let body =
        format!(r#"{{"name": "{name}", "model_id": "iris", "replicas": 2, "memory": 104857600}}"#);
    let (status, answer) = http(addr, "POST", "/api/v1/inference/services", &body);
    assert_eq!(status, 201, "{answer}");
    json(&answer)["data"]["service_id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn status_of(addr: &str, id: &str) -> String {
    let (code, body) = http(addr, "GET", &format!("/api/v1/inference/services/{id}"), "");
    assert_eq!(code, 200, "{body}");
    json(&body)["data"]["status"].as_str().unwrap().to_string()
}

fn wait_for(addr: &str, id: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = status_of(addr, id);
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{id} stayed {now}, wanted {want}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn predict(addr: &str, id: &str) -> (u16, String) {
    let body = r#"{"inputs": {"X": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}}"#;
    http(
        addr,
        "POST",
        &format!("/api/v1/inference/services/{id}/predict"),
        body,
    )
}

#[test]
fn running_services_come_back_after_a_restart_and_stopped_ones_do_not() {
    let models = workspace().join("models");
    let data = temp_dir("services");
    let args = ["--load-at-startup", "false"];
    let mut first = Server::start_with_data(&models, &data, &args);
    let running = create(&first.addr, "kept running");
    let stopped = create(&first.addr, "kept stopped");
    wait_for(&first.addr, &running, "running");
    wait_for(&first.addr, &stopped, "running");
    let (code, body) = predict(&first.addr, &running);
    assert_eq!(code, 200, "{body}");
    let labels = json(&body)["data"]["predictions"]["label"].clone();
    assert_eq!(labels, serde_json::json!([0, 2]), "{body}");
    let (code, body) = http(
        &first.addr,
        "POST",
        &format!("/api/v1/inference/services/{stopped}/stop"),
        "",
    );
    assert_eq!(code, 200, "{body}");
    wait_for(&first.addr, &stopped, "stopped");
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    let second = Server::start_with_data(&models, &data, &args);
    wait_for(&second.addr, &running, "running");
    let (code, body) = predict(&second.addr, &running);
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["data"]["predictions"]["label"], labels);
    assert_eq!(status_of(&second.addr, &stopped), "stopped");
    let (code, body) = predict(&second.addr, &stopped);
    assert_eq!(code, 409, "{body}");
    // Services are deployments, not repository models: the repository's index
    // does not list them.
    let (_, index) = http(&second.addr, "POST", "/v2/repository/index", "{}");
    assert!(!index.contains("svc-"), "{index}");
}
