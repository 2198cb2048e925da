//! Bad requests across the faces: each gets its status and a message in the
//! face's own envelope that says what was wrong, and the server keeps serving.

use axum::body::Body;
use axum::http::StatusCode;
use serde_json::json;

use super::{app, assert_still_serves, send};

struct Case {
    what: &'static str,
    method: &'static str,
    uri: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: StatusCode,
    /// The envelope's key: `error` (KServe, OIP) or `detail` (Pinferencia).
    key: &'static str,
    says: &'static str,
}

fn case(
    what: &'static str,
    uri: &'static str,
    body: impl Into<Vec<u8>>,
    status: StatusCode,
    key: &'static str,
    says: &'static str,
) -> Case {
    Case {
        what,
        method: "POST",
        uri,
        headers: vec![],
        body: body.into(),
        status,
        key,
        says,
    }
}

fn v2(
    what: &'static str,
    uri: &'static str,
    body: serde_json::Value,
    status: StatusCode,
    says: &'static str,
) -> Case {
    case(what, uri, body.to_string(), status, "error", says)
}

/// A binary V2 request: JSON header, then raw bytes.
fn binary(
    what: &'static str,
    header: serde_json::Value,
    header_len: Option<String>,
    raw: &[u8],
    says: &'static str,
) -> Case {
    let json = header.to_string();
    let mut body = json.clone().into_bytes();
    body.extend_from_slice(raw);
    Case {
        headers: vec![(
            "inference-header-content-length",
            header_len.unwrap_or(json.len().to_string()),
        )],
        ..case(
            what,
            "/v2/models/identity/infer",
            body,
            StatusCode::BAD_REQUEST,
            "error",
            says,
        )
    }
}

fn cases() -> Vec<Case> {
    use StatusCode as S;
    let iris = "/v2/models/iris/infer";
    let x = |shape: serde_json::Value, dt: &str, data: serde_json::Value| json!({"inputs": [{"name": "X", "shape": shape, "datatype": dt, "data": data}]});
    let bytes_in = |size: usize| json!({"inputs": [{"name": "INPUT0", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": size}}]});
    let mut overflow = 1000u32.to_le_bytes().to_vec();
    overflow.extend_from_slice(b"abc");
    vec![
        case(
            "malformed JSON",
            iris,
            "{\"inputs\": [",
            S::BAD_REQUEST,
            "error",
            "not valid",
        ),
        case("empty body", iris, "", S::BAD_REQUEST, "error", "empty"),
        case(
            "invalid UTF-8",
            iris,
            b"{\"id\": \"\xff\xfe\", \"inputs\": []}".to_vec(),
            S::BAD_REQUEST,
            "error",
            "not valid",
        ),
        v2(
            "unknown datatype",
            iris,
            x(json!([1, 4]), "FP8", json!([1, 2, 3, 4])),
            S::BAD_REQUEST,
            "unknown datatype 'FP8'",
        ),
        v2(
            "wrong datatype",
            iris,
            x(json!([1, 4]), "INT32", json!([1, 2, 3, 4])),
            S::BAD_REQUEST,
            "is FP32, but INT32",
        ),
        v2(
            "shape/data mismatch",
            iris,
            x(json!([2, 4]), "FP32", json!([1, 2, 3, 4])),
            S::BAD_REQUEST,
            "holds 8 elements but 4",
        ),
        v2(
            "negative dimension",
            iris,
            x(json!([-1, 4]), "FP32", json!([1, 2, 3, 4])),
            S::BAD_REQUEST,
            "negative dimension",
        ),
        v2(
            "wrong inner shape",
            iris,
            x(json!([1, 3]), "FP32", json!([1, 2, 3])),
            S::BAD_REQUEST,
            "does not fit",
        ),
        v2(
            "string in FP32 data",
            iris,
            x(json!([1, 4]), "FP32", json!([1, 2, "x", 4])),
            S::BAD_REQUEST,
            "expected a number",
        ),
        v2(
            "too many elements",
            iris,
            x(json!([100_000_000, 4]), "FP32", json!([1])),
            S::PAYLOAD_TOO_LARGE,
            "more than the limit",
        ),
        v2(
            "batch above max_batch_size",
            iris,
            x(json!([65, 4]), "FP32", json!(vec![1.0; 260])),
            S::BAD_REQUEST,
            "larger than model 'iris' allows (64)",
        ),
        v2(
            "unknown model",
            "/v2/models/nope/infer",
            x(json!([1, 4]), "FP32", json!([1, 2, 3, 4])),
            S::NOT_FOUND,
            "'nope' is not in the repository",
        ),
        v2(
            "unknown version",
            "/v2/models/iris/versions/7/infer",
            x(json!([1, 4]), "FP32", json!([1, 2, 3, 4])),
            S::NOT_FOUND,
            "no version 7",
        ),
        v2(
            "version not a number",
            "/v2/models/iris/versions/latest/infer",
            x(json!([1, 4]), "FP32", json!([1, 2, 3, 4])),
            S::NOT_FOUND,
            "no version latest",
        ),
        v2(
            "unknown input",
            iris,
            json!({"inputs": [{"name": "Y", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}),
            S::BAD_REQUEST,
            "no input named 'Y'",
        ),
        v2(
            "missing input",
            "/v2/models/add_sub/infer",
            json!({"inputs": [{"name": "INPUT0", "shape": [16], "datatype": "INT32", "data": vec![1; 16]}]}),
            S::BAD_REQUEST,
            "needs input 'INPUT1'",
        ),
        v2(
            "unknown output",
            iris,
            json!({"inputs": x(json!([1, 4]), "FP32", json!([1, 2, 3, 4]))["inputs"], "outputs": [{"name": "nope"}]}),
            S::BAD_REQUEST,
            "no output named 'nope'",
        ),
        v2(
            "value out of range",
            "/v2/models/identity/infer",
            json!({"inputs": [{"name": "INPUT0", "shape": [2], "datatype": "UINT8", "data": [1, 300]}]}),
            S::BAD_REQUEST,
            "out of range",
        ),
        v2(
            "shared memory",
            iris,
            json!({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "parameters": {"shared_memory_region": "r"}}]}),
            S::BAD_REQUEST,
            "'shared_memory_region' is not supported",
        ),
        v2(
            "timeout not a number",
            iris,
            json!({"parameters": {"timeout": "soon"}, "inputs": x(json!([1, 4]), "FP32", json!([1, 2, 3, 4]))["inputs"]}),
            S::BAD_REQUEST,
            "microseconds",
        ),
        v2(
            "inputs not a list",
            iris,
            json!({"inputs": {"X": [1, 2, 3, 4]}}),
            S::BAD_REQUEST,
            "not valid",
        ),
        binary(
            "header length past the body",
            bytes_in(4),
            Some("99999".into()),
            b"",
            "only",
        ),
        binary(
            "header length not a number",
            bytes_in(4),
            Some("ten".into()),
            b"",
            "non-negative integer",
        ),
        binary(
            "binary size past the end",
            bytes_in(100),
            None,
            b"abcd",
            "runs past",
        ),
        binary(
            "BYTES length prefix overflow",
            bytes_in(7),
            None,
            &overflow,
            "claims 1000 bytes",
        ),
        binary(
            "binary bytes nobody claims",
            bytes_in(5),
            None,
            b"\x01\x00\x00\x00abcdef",
            "no input claims",
        ),
        case(
            "body over the limit",
            iris,
            vec![b' '; (1 << 20) + 1],
            S::PAYLOAD_TOO_LARGE,
            "error",
            "larger than the limit of 1048576 bytes",
        ),
        case(
            "V1: neither instances nor inputs",
            "/v1/models/iris:predict",
            "{}",
            S::BAD_REQUEST,
            "error",
            "exactly one of 'instances'",
        ),
        case(
            "V1: ragged instances",
            "/v1/models/iris:predict",
            r#"{"instances": [[1,2,3,4],[1,2]]}"#,
            S::BAD_REQUEST,
            "error",
            "rectangular",
        ),
        case(
            "V1: explain",
            "/v1/models/iris:explain",
            r#"{"instances": [[1,2,3,4]]}"#,
            S::NOT_IMPLEMENTED,
            "error",
            "':explain' is not supported",
        ),
        case(
            "V1: unknown model",
            "/v1/models/nope:predict",
            r#"{"instances": [[1]]}"#,
            S::NOT_FOUND,
            "error",
            "'nope' is not in the repository",
        ),
        case(
            "V1: no verb",
            "/v1/models/iris",
            r#"{"instances": [[1]]}"#,
            S::METHOD_NOT_ALLOWED,
            "error",
            "needs a verb",
        ),
        case(
            "Pinferencia: an id that is neither text nor a number",
            "/v1/models/iris/predict",
            r#"{"id": [1], "data": [[1,2,3,4]]}"#,
            S::UNPROCESSABLE_ENTITY,
            "detail",
            "'id' must be a string or a number",
        ),
        case(
            "Pinferencia: unknown model",
            "/v1/models/nope/predict",
            r#"{"data": [[1]]}"#,
            S::NOT_FOUND,
            "detail",
            "Model not found",
        ),
        case(
            "Pinferencia: load a missing model",
            "/v1/models/nope/load",
            "",
            S::NOT_FOUND,
            "detail",
            "Model not found",
        ),
        case(
            "Pinferencia kserve: wrong row width",
            "/v1/models/iris/infer",
            r#"{"instances": [[1,2,3]]}"#,
            S::UNPROCESSABLE_ENTITY,
            "detail",
            "does not fit",
        ),
        Case {
            method: "GET",
            ..case(
                "Pinferencia: ready of unknown model",
                "/v1/models/nope/ready",
                "",
                S::NOT_FOUND,
                "detail",
                "Model not found",
            )
        },
        Case {
            method: "GET",
            ..case(
                "no such route",
                "/v3/anything",
                "",
                S::NOT_FOUND,
                "error",
                "no route for /v3/anything",
            )
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_gets_a_clear_error_and_the_server_keeps_serving() {
    let app = app().await;
    let cases = cases();
    assert!(cases.len() >= 25);
    for c in cases {
        let headers: Vec<(&str, &str)> = c.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let a = send(&app, c.method, c.uri, &headers, Body::from(c.body)).await;
        let text = String::from_utf8_lossy(&a.body).into_owned();
        assert_eq!(a.status, c.status, "{}: {text}", c.what);
        let message = a.json()[c.key]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no '{}' in {text}", c.what, c.key))
            .to_string();
        assert!(
            message.contains(c.says),
            "{}: '{message}' should say '{}'",
            c.what,
            c.says
        );
        assert_still_serves(&app).await;
    }
}
