//! KServe's container contract: `inferd serve --model_name=N --model_dir=DIR
//! --http_port=P --grpc_port=G`, as a `ServingRuntime` starts it, serves the
//! model in DIR (bare, as KServe's storage initializer leaves it) under N in
//! KServe's protocols, OpenAI's paths under `/openai` included.

mod common;

use std::path::{Path, PathBuf};

use common::prerequisite::missing;
use common::{http, temp_dir, workspace, Server};
use serde_json::{json, Value};

/// inferd as a KServe runtime would run it, on free ports, serving `dir`.
fn kserve_serve(name: &str, dir: &Path) -> Server {
    let data = temp_dir("kserve-data");
    let args = [
        format!("--model_name={name}"),
        format!("--model_dir={}", dir.display()),
        "--http_port=0".into(),
        "--grpc_port=0".into(),
        "--host=127.0.0.1".into(),
        format!("--data-dir={}", data.display()),
    ];
    Server::serve(&args)
}

/// A folder holding only the files of `from` (no model.toml), as KServe's
/// storage initializer unpacks a model.
fn bare_copy(tag: &str, from: &Path) -> PathBuf {
    let dir = temp_dir(tag);
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::os::unix::fs::symlink(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    dir
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn a_bare_onnx_file_serves_under_the_runtime_s_name() {
    let dir = bare_copy("kserve-onnx", &workspace().join("models/iris/1"));
    let server = kserve_serve("flowers", &dir);
    let (status, body) = http(&server.addr, "GET", "/v2/health/ready", "");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(&server.addr, "GET", "/v2/models/flowers/ready", "");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(&server.addr, "GET", "/v1/models/flowers", "");
    assert_eq!(
        (status, json_of(&body)["ready"].clone()),
        (200, json!(true)),
        "{body}"
    );
    // The graph's own tensors (auto-complete): X FP32 [-1,4] -> label, probabilities.
    let req = json!({"inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32",
        "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]}], "outputs": [{"name": "label"}]});
    let (status, body) = http(
        &server.addr,
        "POST",
        "/v2/models/flowers/infer",
        &req.to_string(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        json_of(&body)["outputs"][0]["data"],
        json!([0, 2]),
        "{body}"
    );
    let (status, body) = http(
        &server.addr,
        "POST",
        "/v1/models/flowers:predict",
        r#"{"instances": [[5.1, 3.5, 1.4, 0.2]]}"#,
    );
    assert_eq!(status, 200, "{body}");
    // Only the named model is served.
    let (status, _) = http(&server.addr, "GET", "/v2/models/iris/ready", "");
    assert_eq!(status, 404);
}

#[test]
fn a_bare_gguf_answers_openai_clients_under_the_openai_prefix() {
    let gguf = workspace().join("models/smollm2/1");
    if !gguf.join("SmolLM2-135M-Instruct.Q4_1.gguf").is_file() {
        return missing("SmolLM2's weights: run scripts/fetch-models");
    }
    let server = kserve_serve("chat", &bare_copy("kserve-gguf", &gguf));
    let req = json!({"model": "chat", "max_tokens": 4, "temperature": 0,
        "messages": [{"role": "user", "content": "Say hi"}]});
    let (status, body) = http(
        &server.addr,
        "POST",
        "/openai/v1/chat/completions",
        &req.to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let answer = json_of(&body);
    assert_eq!(answer["object"], "chat.completion", "{body}");
    assert!(
        answer["usage"]["completion_tokens"].as_u64().unwrap() >= 1,
        "{body}"
    );
    let (status, body) = http(&server.addr, "GET", "/openai/v1/models", "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_of(&body)["data"][0]["id"], "chat", "{body}");
}

#[test]
fn a_sentence_transformers_export_embeds_under_the_openai_prefix() {
    let export = workspace().join("models/minilm/1");
    if !export.join("model.safetensors").is_file() {
        return missing("MiniLM's weights: run scripts/fetch-models");
    }
    let server = kserve_serve("embedder", &bare_copy("kserve-st", &export));
    let req = json!({"model": "embedder", "input": ["a cat", "a dog"]});
    let (status, body) = http(
        &server.addr,
        "POST",
        "/openai/v1/embeddings",
        &req.to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let answer = json_of(&body);
    assert_eq!(answer["data"].as_array().map(Vec::len), Some(2), "{body}");
    assert_eq!(
        answer["data"][0]["embedding"].as_array().map(Vec::len),
        Some(384),
        "{body}"
    );
}

#[test]
fn a_model_name_without_a_model_dir_is_refused() {
    let (ok, _, err) = common::inferd(&["serve", "--model_name=m"]);
    assert!(!ok);
    assert!(err.contains("--model_name needs --model_dir"), "{err}");
}
