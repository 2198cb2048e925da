"""`GET /metrics` read by Prometheus' own Python parser, as a scraper would."""

import shutil
import socket
import subprocess
import time
from urllib.parse import urlparse

import pytest
import requests
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
        assert f.type in ("counter", "gauge", "histogram"), f.name


def by_sample(base_url, http):
    """Samples keyed by their own names (a histogram's `_bucket`, `_sum`, `_count`)."""
    text = http.get(f"{base_url}/metrics", timeout=10).text
    return text, {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_latency_batch_and_face_histograms_move_with_traffic(base_url, http, iris_rows):
    iris = (("model", "iris"), ("version", "1"))
    v2_ok = (("class", "2xx"), ("face", "v2"))
    v2_missing = (("class", "4xx"), ("face", "v2"))
    _, before = by_sample(base_url, http)
    body = {"inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "data": iris_rows}]}
    assert http.post(f"{base_url}/v2/models/iris/infer", json=body, timeout=10).status_code == 200
    # A model no one has: counted under its face, its name in no label.
    assert http.post(f"{base_url}/v2/models/no-such-model-7f3a/infer", json=body, timeout=10).status_code == 404
    text, after = by_sample(base_url, http)

    def moved(name, labels):
        return after.get((name, labels), 0) - before.get((name, labels), 0)

    assert moved("inferd_request_duration_seconds_count", iris) == 1
    assert moved("inferd_request_duration_seconds_bucket", tuple(sorted(iris + (("le", "+Inf"),)))) == 1
    assert moved("inferd_request_duration_seconds_sum", iris) > 0
    assert moved("inferd_batch_size_count", iris) >= 1
    assert moved("inferd_http_request_duration_seconds_count", v2_ok) >= 1
    assert moved("inferd_http_request_duration_seconds_count", v2_missing) == 1
    assert "no-such-model-7f3a" not in text
    # Buckets are cumulative and end at the count.
    buckets = sorted(
        (float(dict(k[1])["le"]), v) for k, v in after.items()
        if k[0] == "inferd_request_duration_seconds_bucket" and dict(k[1]).get("model") == "iris"
    )
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)
    assert buckets[-1][1] == after[("inferd_request_duration_seconds_count", iris)]
    for status in ["creating", "running", "failed", "stopping", "stopped"]:
        assert ("inferd_services", (("status", status),)) in after, status
    for state in ["queued", "running", "succeeded", "failed", "cancelled"]:
        assert ("inferd_async_jobs", (("state", state),)) in after, state
    assert ("inferd_queue_depth", iris) in after


def test_promtool_finds_nothing_but_tritons_names(base_url, http):
    """`promtool check metrics` lints the text; Triton's `nv_*` names break its
    naming advice by design (dashboards built for Triton read them), nothing
    else may."""
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool is not installed (Debian package prometheus; scripts/install-build-deps installs it)")
    text = http.get(f"{base_url}/metrics", timeout=10).text
    out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    problems = [l for l in (out.stdout + out.stderr).splitlines() if l.strip() and not l.startswith("nv_")]
    assert not problems, problems


def test_a_real_prometheus_scrapes_and_answers_a_query(base_url, http, tmp_path):
    prometheus = shutil.which("prometheus")
    if not prometheus:
        pytest.skip("prometheus is not installed (Debian package prometheus; scripts/install-build-deps installs it)")
    target = urlparse(base_url).netloc
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n"
        f"scrape_configs:\n  - job_name: inferd\n    static_configs:\n      - targets: ['{target}']\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [prometheus, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while True:
            try:
                r = requests.get(f"http://127.0.0.1:{port}/api/v1/query",
                                 params={"query": 'inferd_services{status="running"}'}, timeout=5)
                result = r.json()["data"]["result"] if r.status_code == 200 else []
            except requests.ConnectionError:
                result = []
            if result:
                break
            assert time.time() < deadline, "Prometheus never scraped inferd"
            time.sleep(0.5)
        assert result[0]["metric"]["job"] == "inferd"
        assert float(result[0]["value"][1]) >= 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_generation_series_count_tokens_and_the_first_ones_wait(base_url, http, llm):
    """Tokens (their rate is tokens/s), time to first token, and the decode
    slots, for the text model; one generation moves them."""
    model = (("model", llm), ("version", "1"))
    _, before = by_sample(base_url, http)
    body = {"model_id": llm, "inputs": "1, 2, 3, 4,", "parameters": {"max_new_tokens": 5, "do_sample": False}}
    r = http.post(f"{base_url}/v1/generate", json=body, timeout=120)
    assert r.status_code == 200, r.text
    tokens = r.json()["tokens"]
    _, after = by_sample(base_url, http)

    def moved(name, labels=model):
        return after.get((name, labels), 0) - before.get((name, labels), 0)

    assert moved("inferd_generated_tokens_total") == tokens
    assert moved("inferd_time_to_first_token_seconds_count") == 1
    assert moved("inferd_time_to_first_token_seconds_sum") > 0
    assert after[("inferd_generation_slots", model)] >= 1
    assert after[("inferd_generation_slots_in_use", model)] == 0, "the generation ended"
    assert after[("inferd_generations_waiting", model)] == 0
