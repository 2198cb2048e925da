//! The OpenAI embeddings face's refusals, in OpenAI's error envelope (the
//! happy path runs against the real MiniLM in the Python `openai` client tests).

use axum::http::StatusCode;
use serde_json::json;

use super::{app, post};

#[tokio::test]
async fn embeddings_refusals_use_openais_error_shape() {
    let app = app().await;
    let cases = [
        (
            json!({"model": "nope", "input": "hi"}),
            StatusCode::NOT_FOUND,
            Some("model_not_found"),
            "'nope' is not in the repository",
        ),
        (
            json!({"model": "iris", "input": "hi"}),
            StatusCode::BAD_REQUEST,
            None,
            "does not declare task",
        ),
        (
            json!({"model": "iris", "input": [1, 2, 3]}),
            StatusCode::BAD_REQUEST,
            None,
            "token arrays are not accepted",
        ),
        (
            json!({"model": "iris", "input": []}),
            StatusCode::BAD_REQUEST,
            None,
            "empty list",
        ),
        (
            json!({"model": "iris", "input": {"a": 1}}),
            StatusCode::BAD_REQUEST,
            None,
            "string or a list of strings",
        ),
        (
            json!({"model": "iris", "input": "hi", "encoding_format": "hex"}),
            StatusCode::BAD_REQUEST,
            None,
            "'float' or 'base64'",
        ),
        (
            json!({"input": "hi"}),
            StatusCode::BAD_REQUEST,
            None,
            "missing field `model`",
        ),
    ];
    for (body, status, code, says) in cases {
        let a = post(&app, "/v1/embeddings", body.clone()).await;
        assert_eq!(
            a.status,
            status,
            "{body}: {}",
            String::from_utf8_lossy(&a.body)
        );
        let err = &a.json()["error"];
        assert!(
            err["message"].as_str().unwrap().contains(says),
            "{body}: {err}"
        );
        assert_eq!(err["code"].as_str(), code, "{body}: {err}");
        assert!(err["type"].is_string());
    }
}
