//! What a user of each face does, answered as that face's clients expect.

use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use inferd_core::ManagerConfig;
use serde_json::{json, Value};

use super::{
    app, app_for, get, iris_request, manager, models, post, send, slow_identity, temp_repo,
    write_model,
};
use crate::Compat;

#[tokio::test]
async fn v2_server_and_model_metadata() {
    let app = app().await;
    let meta = get(&app, "/v2").await.json();
    assert_eq!(meta["name"], "inferd");
    assert!(meta["extensions"]
        .as_array()
        .unwrap()
        .contains(&json!("binary_tensor_data")));
    assert_eq!(
        get(&app, "/v2/health/live").await.json(),
        json!({"live": true})
    );
    assert_eq!(get(&app, "/v2/health/ready").await.status, StatusCode::OK);
    let iris = get(&app, "/v2/models/iris").await.json();
    assert_eq!(
        iris["inputs"],
        json!([{"name": "X", "datatype": "FP32", "shape": [-1, 4]}])
    );
    assert_eq!(iris["outputs"][1]["name"], "probabilities");
    assert_eq!(
        get(&app, "/v2/models/iris/versions/1/ready").await.json(),
        json!({"name": "iris", "ready": true})
    );
    let config = get(&app, "/v2/models/digits/config").await.json();
    assert_eq!(config["max_batch_size"], 64);
    assert_eq!(config["input"][0]["dims"], json!([64]));
    assert_eq!(config["input"][0]["data_type"], "TYPE_FP32");
}

#[tokio::test]
async fn v2_infer_echoes_id_selects_outputs_and_reads_nested_data() {
    let app = app().await;
    let req = json!({
        "id": "r-1",
        "inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}],
        "outputs": [{"name": "label"}]
    });
    let a = post(&app, "/v2/models/iris/infer", req).await.json();
    assert_eq!(a["id"], "r-1");
    assert_eq!(a["model_version"], "1");
    assert_eq!(
        a["outputs"],
        json!([{"name": "label", "datatype": "INT64", "shape": [2], "data": [0, 2]}])
    );
    let sums = post(
        &app,
        "/v2/models/add_sub/infer",
        json!({"inputs": [
            {"name": "INPUT0", "shape": [16], "datatype": "INT32", "data": (0..16).collect::<Vec<i32>>()},
            {"name": "INPUT1", "shape": [16], "datatype": "INT32", "data": vec![1; 16]}
        ]}),
    )
    .await
    .json();
    assert_eq!(
        sums["outputs"][0]["data"],
        json!((1..17).collect::<Vec<i32>>())
    );
    assert_eq!(
        sums["outputs"][1]["data"],
        json!((-1..15).collect::<Vec<i32>>())
    );
}

#[tokio::test]
async fn v2_binary_tensors_round_trip_through_identity() {
    let app = app().await;
    let header = json!({
        "inputs": [{"name": "INPUT0", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 12}}],
        "parameters": {"binary_data_output": true}
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    for s in [&b"abc"[..], &[0xff]] {
        body.extend_from_slice(&(s.len() as u32).to_le_bytes());
        body.extend_from_slice(s);
    }
    let len = header.len().to_string();
    let a = send(
        &app,
        "POST",
        "/v2/models/identity/infer",
        &[("inference-header-content-length", &len)],
        Body::from(body.clone()),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let json_len: usize = a.headers["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let head: Value = serde_json::from_slice(&a.body[..json_len]).unwrap();
    assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], 12);
    assert_eq!(head["outputs"][0]["datatype"], "BYTES");
    assert_eq!(
        &a.body[json_len..],
        &body[header.len()..],
        "bytes, invalid UTF-8 included, come back unchanged"
    );
}

#[tokio::test]
async fn kserve_v1_rows_and_columns() {
    let app = app().await;
    let status = get(&app, "/v1/models/iris").await.json();
    assert_eq!(
        (status["name"].clone(), status["ready"].clone()),
        (json!("iris"), json!(true))
    );
    let list = get(&app, "/v1/models").await.json();
    // One object for KServe V1, seed 002 (entries with id, status, supports)
    // and OpenAI (object/data) clients.
    let iris = list["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "iris")
        .expect("iris is listed");
    assert_eq!(iris["status"], "healthy");
    assert_eq!(iris["supports"], json!(["tensors"]));
    assert_eq!(list["object"], "list");
    assert!(list["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == "iris"));
    let rows = post(
        &app,
        "/v1/models/iris:predict",
        json!({"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}),
    )
    .await
    .json();
    assert_eq!(rows["predictions"][0]["label"], 0);
    assert_eq!(rows["predictions"][1]["label"], 2);
    let cols = post(
        &app,
        "/v1/models/iris/versions/1:predict",
        json!({"inputs": {"X": [[6.7, 3.0, 5.2, 2.3]]}}),
    )
    .await
    .json();
    assert_eq!(cols["outputs"]["label"], json!([2]));
}

#[tokio::test]
async fn pinferencia_default_and_kserve_flavours() {
    let app = app().await;
    assert_eq!(get(&app, "/v1/healthz").await.json(), json!(true));
    assert_eq!(get(&app, "/v2/healthz").await.json(), json!(true));
    assert_eq!(
        get(&app, "/v1/models/iris/versions/default/ready")
            .await
            .json(),
        json!(true)
    );
    let p = post(
        &app,
        "/v1/models/iris/predict",
        json!({"id": "p", "data": [[5.1, 3.5, 1.4, 0.2]]}),
    )
    .await
    .json();
    assert_eq!(p["id"], "p");
    assert_eq!(p["model_name"], "iris");
    assert_eq!(p["model_version"], "1");
    assert_eq!(p["data"][0]["label"], 0);
    let per_row = post(
        &app,
        "/v1/models/add_sub/versions/1/predict",
        json!({"data": [{"INPUT0": vec![2; 16], "INPUT1": vec![1; 16]}, {"INPUT0": vec![0; 16], "INPUT1": vec![5; 16]}]}),
    )
    .await
    .json();
    assert_eq!(per_row["data"][0]["OUTPUT0"], json!(vec![3; 16]));
    assert_eq!(per_row["data"][1]["OUTPUT1"], json!(vec![-5; 16]));
    let k = post(
        &app,
        "/v1/models/iris/infer",
        json!({"instances": [[6.7, 3.0, 5.2, 2.3]]}),
    )
    .await
    .json();
    assert_eq!(k["predictions"][0]["label"], 2);
    assert!(k.get("model_version").is_none());

    let again = post(&app, "/v1/models/iris/load", json!({})).await;
    assert_eq!(
        (again.status, again.json()),
        (
            StatusCode::BAD_REQUEST,
            json!({"detail": "Model already loaded."})
        )
    );
    assert_eq!(
        post(&app, "/v2/models/digits/unload", json!({}))
            .await
            .json(),
        json!(true)
    );
    let twice = post(&app, "/v1/models/digits/unload", json!({})).await;
    assert_eq!(twice.json(), json!({"detail": "Model is not loaded."}));
    let refused = post(
        &app,
        "/v1/models/digits/predict",
        json!({"data": [vec![0.0; 64]]}),
    )
    .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        refused.json()["detail"],
        "Model is not loaded. Load the model first."
    );
    assert_eq!(
        get(&app, "/v1/models/digits/ready").await.json(),
        json!(false)
    );
    assert_eq!(
        post(&app, "/v1/models/digits/versions/1/load", json!({}))
            .await
            .json(),
        json!(true)
    );
    assert_eq!(
        get(&app, "/v1/models/digits/ready").await.json(),
        json!(true)
    );
}

#[tokio::test]
async fn compat_pinferencia_answers_arrays() {
    let m = manager(&models(), ManagerConfig::default());
    m.load_all().await;
    let app = app_for(m, Compat::Pinferencia);
    let list = get(&app, "/v1/models").await.json();
    let iris = list
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "iris")
        .unwrap();
    assert_eq!(iris["versions"][0]["name"], "1");
    let versions = get(&app, "/v1/models/iris").await.json();
    assert_eq!(versions[0]["platform"], "onnx_onnxv1");

    // Its kserve API's /v2 shapes: version lists, bare booleans, `default`.
    assert_eq!(get(&app, "/v2/models/iris").await.json(), versions);
    assert_eq!(get(&app, "/v2/models/iris/ready").await.json(), json!(true));
    assert_eq!(
        get(&app, "/v2/models/iris/versions/default/ready")
            .await
            .json(),
        json!(true)
    );
    let missing = get(&app, "/v2/models/nope/ready").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.json()["detail"].is_string(), "{:?}", missing.json());

    // One input without name, shape or datatype; an integer id.
    let bare = json!({"id": 7, "inputs": [{"data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}]});
    let a = post(&app, "/v2/models/iris/infer", bare.clone())
        .await
        .json();
    assert_eq!(a["id"], "7");
    assert_eq!(a["model_name"], "iris");
    assert!(a.get("model_version").is_none(), "{a}");
    let label = a["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "label")
        .unwrap();
    assert_eq!(
        (&label["data"], &label["shape"], &label["datatype"]),
        (&json!([0, 2]), &json!([2]), &json!("INT64"))
    );
    let a = post(&app, "/v2/models/iris/versions/default/infer", bare)
        .await
        .json();
    assert_eq!(a["model_version"], "1");
    // An OIP client's flat data with its shape is nested by the shape.
    let oip = json!({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32",
        "data": [6.7, 3.0, 5.2, 2.3]}]});
    let a = post(&app, "/v2/models/iris/infer", oip).await.json();
    let label = a["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "label")
        .unwrap();
    assert_eq!(label["data"], json!([2]), "{a}");
    // Several inputs need names, in FastAPI's error shape.
    let two = json!({"inputs": [{"data": [1]}, {"data": [2]}]});
    let r = post(&app, "/v2/models/add_sub/infer", two).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.json()["detail"].as_str().unwrap().contains("name"));
}

#[tokio::test]
async fn repository_index_shows_broken_models_and_autocompletes_bare_onnx() {
    let root = temp_repo("index");
    write_model(&root, "broken", "max_batch_size = 'many'");
    std::fs::create_dir_all(root.join("bare/3")).unwrap();
    std::fs::copy(
        models().join("iris/1/model.onnx"),
        root.join("bare/3/model.onnx"),
    )
    .unwrap();
    let m = manager(&root, ManagerConfig::default());
    m.load_all().await;
    let app = app_for(m, Compat::Kserve);
    let index = post(&app, "/v2/repository/index", json!({})).await.json();
    let broken = index
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "broken")
        .unwrap();
    assert_eq!(broken["state"], "UNAVAILABLE");
    assert!(
        broken["reason"]
            .as_str()
            .unwrap()
            .contains("line 1 (`max_batch_size = 'many'`)"),
        "{broken}"
    );
    let meta = get(&app, "/v2/models/bare").await.json();
    assert_eq!(meta["versions"], json!(["3"]));
    assert_eq!(meta["inputs"][0]["shape"], json!([-1, 4]));
    let a = post(&app, "/v2/models/bare/infer", iris_request()).await;
    assert_eq!(a.json()["outputs"][0]["data"], json!([0]));
    let broken = post(&app, "/v2/models/broken/infer", iris_request()).await;
    assert_eq!(broken.status, StatusCode::SERVICE_UNAVAILABLE);

    // A new folder shows in the index and loads through the repository API.
    write_model(&root, "later", "backend = 'builtin'\nkind = 'identity'\n[[input]]\nname='INPUT0'\ndatatype='ANY'\n[[output]]\nname='OUTPUT0'\ndatatype='ANY'");
    let index = post(&app, "/v2/repository/index", json!({"ready": false}))
        .await
        .json();
    assert!(
        index
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "later"),
        "{index}"
    );
    let load = post(&app, "/v2/repository/models/later/load", json!({})).await;
    assert_eq!(load.json(), json!({"name": "later", "load": true}));
    let unload = post(&app, "/v2/repository/models/later/unload", json!({})).await;
    assert_eq!(unload.json(), json!({"name": "later", "unload": true}));
    let ready = get(&app, "/v2/models/later/ready").await;
    assert_eq!(
        (ready.status, ready.json()["ready"].clone()),
        (StatusCode::SERVICE_UNAVAILABLE, json!(false))
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// Iris runs in microseconds: once its runs have measured that, a request that
/// finds nothing queued runs on its own thread and Triton's queue time stops
/// growing. With inline runs off, every run is handed to a worker and queues.
#[tokio::test]
async fn microsecond_runs_skip_the_queue_unless_inline_runs_are_off() {
    // The limit's maximum: a debug build's first, cold runs are slow.
    for (inline_run, inline) in [(Duration::from_millis(1), true), (Duration::ZERO, false)] {
        let config = ManagerConfig {
            inline_run,
            ..ManagerConfig::default()
        };
        let app = app_for(manager(&models(), config), Compat::Kserve);
        let queue_ns = |stats: Value| {
            stats["model_stats"][0]["inference_stats"]["queue"]["ns"]
                .as_u64()
                .unwrap()
        };
        let infer = || post(&app, "/v2/models/iris/infer", iris_request());
        for _ in 0..20 {
            assert_eq!(infer().await.status, StatusCode::OK);
        }
        // Counted request by request: a run slowed past the limit by a loaded
        // machine may go to a worker now and then.
        let mut skipped = 0;
        for _ in 0..10 {
            let before = queue_ns(get(&app, "/v2/models/iris/stats").await.json());
            let answer = infer().await;
            assert_eq!(answer.status, StatusCode::OK);
            assert_eq!(answer.json()["outputs"][0]["data"], json!([0]));
            let after = queue_ns(get(&app, "/v2/models/iris/stats").await.json());
            skipped += usize::from(after == before);
        }
        if inline {
            assert!(skipped >= 8, "only {skipped} of 10 runs skipped the queue");
        } else {
            assert_eq!(skipped, 0, "with inline runs off, every run queues");
        }
    }
}

#[tokio::test]
async fn statistics_count_requests_and_batches() {
    let app = app().await;
    for _ in 0..3 {
        post(&app, "/v2/models/iris/infer", iris_request()).await;
    }
    let s = get(&app, "/v2/models/iris/stats").await.json();
    let iris = &s["model_stats"][0];
    assert_eq!(iris["name"], "iris");
    assert_eq!(iris["inference_count"], 3);
    assert_eq!(iris["inference_stats"]["success"]["count"], 3);
    assert!(iris["last_inference"].as_u64().unwrap() > 0);
    let all = get(&app, "/v2/models/stats").await.json();
    let names: Vec<&str> = all["model_stats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    for model in ["add_sub", "digits", "identity", "iris"] {
        assert!(names.contains(&model), "{names:?}");
    }
    assert_eq!(
        get(&app, "/v2/models/nope/stats").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_raw_binary_request_is_the_one_input_and_answers_binary() {
    let app = app().await;
    let rows: Vec<u8> = [5.1f32, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]
        .iter()
        .flat_map(|f| f.to_le_bytes())
        .collect();
    let header = [("inference-header-content-length", "0")];
    let a = send(
        &app,
        "POST",
        "/v2/models/iris/infer",
        &header,
        Body::from(rows),
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    let json_len: usize = a.headers["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let head: Value = serde_json::from_slice(&a.body[..json_len]).unwrap();
    assert_eq!(head["outputs"][0]["shape"], json!([2]));
    let labels: Vec<i64> = a.body[json_len..json_len + 16]
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(labels, [0, 2]);
    let uneven = send(
        &app,
        "POST",
        "/v2/models/iris/infer",
        &header,
        Body::from(vec![0u8; 12]),
    )
    .await;
    assert_eq!(uneven.status, StatusCode::BAD_REQUEST);
    assert!(uneven.json()["error"]
        .as_str()
        .unwrap()
        .contains("does not fit input 'X'"));
    let two_inputs = send(
        &app,
        "POST",
        "/v2/models/add_sub/infer",
        &header,
        Body::from(vec![0u8; 64]),
    )
    .await;
    assert!(two_inputs.json()["error"]
        .as_str()
        .unwrap()
        .contains("exactly one input"));
}

/// Starts loading `model` in the background.
fn load_in_background(app: &axum::Router, model: &str) -> tokio::task::JoinHandle<super::Answer> {
    let (app, path) = (app.clone(), format!("/v2/repository/models/{model}/load"));
    tokio::spawn(async move { post(&app, &path, json!({})).await })
}

/// `model`'s repository index row, once it is LOADING.
async fn loading_row(app: &axum::Router, model: &str) -> Value {
    loop {
        let index = post(app, "/v2/repository/index", json!({})).await.json();
        let row = index
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == model)
            .cloned()
            .unwrap();
        if row["state"] == "LOADING" {
            return row;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_load_under_way_says_how_far_it_is() {
    let root = temp_repo("progress");
    write_model(
        &root,
        "slow",
        &slow_identity(0, "").replace("delay_ms = 0", "delay_ms = 0\nload_delay_ms = 1500"),
    );
    std::fs::create_dir_all(root.join("slow/1")).unwrap();
    std::fs::write(root.join("slow/1/weights.bin"), vec![0u8; 2_000_000]).unwrap();
    let m = manager(&root, ManagerConfig::default());
    let app = app_for(m, Compat::Kserve);
    let loader = load_in_background(&app, "slow");
    let row = loading_row(&app, "slow").await;
    let reason = row["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("loading for") && reason.contains("2.0 MB"),
        "{reason}"
    );
    let cache = get(&app, "/inference/cache/models").await.json();
    let loading = &cache["loading"][0];
    assert_eq!(loading["model_name"], "slow", "{cache}");
    assert_eq!(loading["status"], "loading");
    assert!(loading["bytes"].as_u64().unwrap() >= 2_000_000, "{loading}");
    assert!(loading["last_load_time_s"].is_null(), "{loading}");
    assert_eq!(loader.await.unwrap().status, StatusCode::OK);
    assert_eq!(
        get(&app, "/inference/cache/models").await.json()["loading"],
        json!([])
    );
    // The next load is measured against this one.
    post(&app, "/v2/repository/models/slow/unload", json!({})).await;
    let again = load_in_background(&app, "slow");
    let reason = loading_row(&app, "slow").await["reason"].clone();
    assert!(
        reason.as_str().unwrap().contains("its last load took 1."),
        "{reason}"
    );
    assert_eq!(again.await.unwrap().status, StatusCode::OK);
}
