"""`GET /metrics` read by Prometheus' own Python parser, as a scraper would."""

from prometheus_client.parser import text_string_to_metric_families


def scrape(base_url, http):
    r = http.get(f"{base_url}/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    # Keyed by family: the parser names a counter's samples `<family>_total`
    # (OpenMetrics' rule) even where, as in Triton's names, the text has none.
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(family.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_an_inference_moves_its_models_counters(base_url, http, iris_rows):
    iris = (("model", "iris"), ("version", "1"))
    before = scrape(base_url, http)
    body = {"inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "data": iris_rows}]}
    assert http.post(f"{base_url}/v2/models/iris/infer", json=body, timeout=10).status_code == 200
    after = scrape(base_url, http)

    def moved(name):
        return after[(name, iris)] - before.get((name, iris), 0)

    assert moved("nv_inference_request_success") == 1
    assert moved("nv_inference_count") == 2
    assert moved("nv_inference_request_duration_us") > 0
    assert after[("inferd_model_cache_hits", ())] >= before[("inferd_model_cache_hits", ())]
    assert after[("inferd_models_loaded", ())] >= 1
    assert after[("process_resident_memory_bytes", ())] > 1 << 20


def test_every_family_has_help_and_a_type(base_url, http):
    text = http.get(f"{base_url}/metrics", timeout=10).text
    families = list(text_string_to_metric_families(text))
    assert {f.name for f in families} >= {
        "nv_inference_request_success",
        "nv_inference_request_failure",
        "nv_inference_exec_count",
        "nv_inference_queue_duration_us",
        "inferd_model_memory_bytes",
    }
    for f in families:
        assert f.documentation, f.name
        assert f.type in ("counter", "gauge"), f.name
