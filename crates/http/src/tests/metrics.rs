//! `GET /metrics` in Prometheus' text format, counting what really ran.

use axum::http::StatusCode;
use serde_json::json;

use super::{app, get, post};

/// The value of the one sample line that starts with `series` (name and labels).
fn sample(text: &str, series: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"));
    line[series.len()..].trim().parse().unwrap()
}

#[tokio::test]
async fn metrics_count_requests_per_model_in_prometheus_text() {
    let app = app().await;
    let iris = json!({"inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32",
        "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]}]});
    assert_eq!(
        post(&app, "/v2/models/iris/infer", iris.clone())
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        post(&app, "/v2/models/iris/infer", iris).await.status,
        StatusCode::OK
    );
    let bad =
        json!({"inputs": [{"name": "X", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]});
    assert_eq!(
        post(&app, "/v2/models/iris/infer", bad).await.status,
        StatusCode::BAD_REQUEST
    );

    let answer = get(&app, "/metrics").await;
    assert_eq!(answer.status, StatusCode::OK);
    let ctype = answer.headers["content-type"].to_str().unwrap();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let text = String::from_utf8(answer.body.to_vec()).unwrap();
    let iris = r#"{model="iris",version="1"}"#;
    assert_eq!(
        sample(&text, &format!("nv_inference_request_success{iris}")),
        2.0
    );
    assert_eq!(
        sample(&text, &format!("nv_inference_count{iris}")),
        4.0,
        "two rows each"
    );
    assert!(
        sample(
            &text,
            &format!("nv_inference_compute_infer_duration_us{iris}")
        ) >= 0.0
    );
    assert!(sample(&text, "inferd_models_loaded") >= 4.0);
    // The scrape itself is the one request in flight; it has no body.
    assert_eq!(sample(&text, "inferd_requests_in_flight"), 1.0);
    assert_eq!(sample(&text, "inferd_inflight_bytes"), 0.0);
    assert!(sample(&text, "inferd_inflight_bytes_limit") > 0.0);
    assert!(sample(&text, &format!("inferd_model_memory_bytes{iris}")) > 0.0);

    // Every line is a comment or `name[{labels}] value`, and every series has
    // its HELP and TYPE first, as Prometheus' parser wants.
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.insert(rest.split(' ').next().unwrap().to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
        let name = series.split('{').next().unwrap();
        // A histogram's TYPE names the family its _bucket, _sum and _count share.
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "{name} has no TYPE before it");
    }
}
