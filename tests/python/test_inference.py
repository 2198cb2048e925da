"""The unified `/inference` API (seed 004): one `infer` endpoint for every task,
`batch`, `models/preload`, health, supported tasks, statistics, examples and the
model cache (`cache/stats`, `cache/models`, `DELETE cache/models/{key}`,
`PUT cache/config`, `clear-cache`), plus the legacy `infer_fixed` and
`infer_multimodal` routes.

Every answer carries `success` and `timestamp`; every error is
`{"success": false, "error": {type, message, code, details}, "timestamp"}` with
the document's codes (UNSUPPORTED_TASK 400, MODEL_NOT_FOUND 404, INVALID_INPUT
400/413, INFERENCE_FAILED 500/503, RESOURCE_EXHAUSTED 429, TIMEOUT 504).

Images are built by hand (zlib + struct; no Pillow): scikit-learn's 8x8 digits
(0..16, bright ink) become PNGs of dark ink on light paper,
pixel = 255 - v * 255 / 16, which `digits` must classify as the digit drawn.

Tests that change the cache (evict, shrink, clear) put it back before they
finish: `max_cache_size` back to 20 (the server starts unlimited, reported as
null, and the API cannot set "unlimited" again) and every model loaded again.
"""

import base64
import struct
import time
import uuid
import zlib
from functools import lru_cache

import numpy as np
import pytest

from conftest import IRIS_LABELS, IRIS_ROWS, LLM_GGUF, MODELS, REPO_ROOT

ERROR_CODES = {
    "UNSUPPORTED_TASK",
    "MODEL_NOT_FOUND",
    "INVALID_INPUT",
    "INFERENCE_FAILED",
    "RESOURCE_EXHAUSTED",
    "TIMEOUT",
}

CACHE_KEYS = {
    "iris": "onnx:iris",
    "digits": "onnx:digits",
    "add_sub": "builtin:add_sub",
    "identity": "builtin:identity",
}

IRIS_V2 = {
    "task": "tensors",
    "engine": "onnx",
    "model_name": "iris",
    "data": {
        "inputs": [
            {"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}
        ]
    },
}
IRIS_ROWS_REQ = {"task": "tensors", "model_name": "iris", "data": [list(r) for r in IRIS_ROWS]}
ADD_SUB_V2 = {
    "task": "tensors",
    "engine": "builtin",
    "model_name": "add_sub",
    "data": {
        "inputs": [
            {"name": "INPUT0", "shape": [16], "datatype": "INT32", "data": list(range(16))},
            {"name": "INPUT1", "shape": [16], "datatype": "INT32", "data": [1] * 16},
        ]
    },
}


# --- images, built by hand ------------------------------------------------------


def _chunk(kind, data):
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png(pixels, color_type=0):
    """An 8-bit PNG of a uint8 array: [H, W] gray (0) or [H, W, 3] RGB (2)."""
    a = np.ascontiguousarray(pixels, dtype=np.uint8)
    h, w = a.shape[:2]
    raw = b"".join(b"\x00" + a[i].tobytes() for i in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )


@lru_cache(maxsize=1)
def huge_png_b64(side=10000):
    """A real, complete side x side grayscale PNG: every row filter 0 and black
    pixels; ~100 MB of pixels that compress to ~100 KB."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    parts = [comp.compress(row) for _ in range(side)]
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", b"".join(parts))
        + _chunk(b"IEND", b"")
    )
    return base64.b64encode(data).decode()


@lru_cache(maxsize=1)
def _digits():
    from sklearn.datasets import load_digits

    return load_digits()


def digit_pixels(i):
    """load_digits().images[i] as dark ink on light paper, uint8 [8, 8]."""
    d = _digits()
    return np.round(255.0 - d.images[i] * 255.0 / 16.0).astype(np.uint8)


def digit_png_b64(i):
    return base64.b64encode(png(digit_pixels(i))).decode()


def first_index_of(digit):
    d = _digits()
    return int(np.flatnonzero(d.target == digit)[0])


# --- helpers --------------------------------------------------------------------


def url(base_url, path):
    return f"{base_url}/inference{path}"


def infer(http, base_url, body, route="/infer", timeout=60):
    return http.post(url(base_url, route), json=body, timeout=timeout)


def classify_body(data, top_k=None, engine=None):
    body = {"task": "image-classification", "model_name": "digits", "data": data}
    if engine is not None:
        body["engine"] = engine
    if top_k is not None:
        body["options"] = {"top_k": top_k}
    return body


def assert_timestamp(body):
    ts = body.get("timestamp")
    assert isinstance(ts, (int, float)) and not isinstance(ts, bool), body
    assert abs(ts - time.time()) < 300, (ts, time.time())


def assert_ok(resp):
    """A 200 answer in the document's success shape; returns its JSON."""
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["success"] is True, body
    assert_timestamp(body)
    return body


def assert_error_object(err, code, *words):
    assert isinstance(err, dict), err
    assert set(err) >= {"type", "message", "code", "details"}, err
    assert err["code"] == code, err
    assert err["code"] in ERROR_CODES
    assert isinstance(err["type"], str) and err["type"], err
    assert isinstance(err["message"], str) and err["message"], err
    assert isinstance(err["details"], dict), err
    for w in words:
        assert w.lower() in err["message"].lower(), (w, err["message"])


def assert_error(resp, status, code, *words):
    """A failed answer in the document's error envelope."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["success"] is False, body
    assert_timestamp(body)
    assert_error_object(body["error"], code, *words)
    if "status" in body["error"]["details"]:
        assert body["error"]["details"]["status"] == status, body
    return body["error"]


def assert_still_serving(http, base_url):
    """After a bad request, a good one still succeeds."""
    body = assert_ok(infer(http, base_url, IRIS_V2))
    labels = [o for o in body["result"]["outputs"] if o["name"] == "label"][0]
    assert labels["data"] == [0]


def cache_keys(http, base_url):
    body = assert_ok(http.get(url(base_url, "/cache/models"), timeout=10))
    return [m["key"] for m in body["models"]]


def cache_stats(http, base_url):
    return assert_ok(http.get(url(base_url, "/cache/stats"), timeout=10))["stats"]


def preload_all(http, base_url):
    body = assert_ok(
        http.post(
            url(base_url, "/models/preload"),
            json={"models": [CACHE_KEYS[m] for m in MODELS]},
            timeout=60,
        )
    )
    assert body["loaded"] == len(MODELS), body


@pytest.fixture
def cache_restored(http, base_url):
    """Puts the cache back after a test that evicts or resizes: a limit big
    enough for every model, and every model loaded."""
    yield
    r = http.put(url(base_url, "/cache/config"), params={"max_cache_size": 20}, timeout=30)
    assert r.status_code == 200, r.text
    preload_all(http, base_url)


# --- POST /inference/infer: tensors ---------------------------------------------


def test_tensors_v2_inputs(http, base_url):
    body = assert_ok(infer(http, base_url, IRIS_V2))
    assert body["task"] == "tensors"
    assert body["engine"] == "onnx"
    assert body["model_name"] == "iris"
    assert isinstance(body["processing_time"], float) and body["processing_time"] >= 0
    outputs = {o["name"]: o for o in body["result"]["outputs"]}
    assert set(outputs) == {"label", "probabilities"}
    assert outputs["label"]["datatype"] == "INT64"
    assert outputs["label"]["shape"] == [1]
    assert outputs["label"]["data"] == [0]
    probs = outputs["probabilities"]
    assert probs["datatype"] == "FP32" and probs["shape"] == [1, 3]
    assert sum(probs["data"]) == pytest.approx(1.0, abs=1e-5)


def test_tensors_v2_two_rows(http, base_url):
    req = {
        "task": "tensors",
        "engine": "onnx",
        "model_name": "iris",
        "data": {
            "inputs": [
                {
                    "name": "X",
                    "shape": [2, 4],
                    "datatype": "FP32",
                    "data": [v for row in IRIS_ROWS for v in row],
                }
            ]
        },
    }
    outputs = {o["name"]: o for o in assert_ok(infer(http, base_url, req))["result"]["outputs"]}
    assert outputs["label"]["data"] == IRIS_LABELS
    assert outputs["probabilities"]["shape"] == [2, 3]


def test_tensors_rows(http, base_url):
    body = assert_ok(infer(http, base_url, IRIS_ROWS_REQ))
    assert body["engine"] == "onnx"  # the default engine resolves to the model's backend
    predictions = body["result"]["predictions"]
    assert [p["label"] for p in predictions] == IRIS_LABELS
    for p in predictions:
        assert len(p["probabilities"]) == 3
        assert sum(p["probabilities"]) == pytest.approx(1.0, abs=1e-5)


def test_tensors_instances(http, base_url, iris_rows):
    req = {"task": "tensors", "model_name": "iris", "data": {"instances": iris_rows}}
    predictions = assert_ok(infer(http, base_url, req))["result"]["predictions"]
    assert [p["label"] for p in predictions] == IRIS_LABELS


def test_tensors_digits_rows(http, base_url, digits_row):
    req = {"task": "tensors", "model_name": "digits", "data": [digits_row]}
    predictions = assert_ok(infer(http, base_url, req))["result"]["predictions"]
    assert len(predictions) == 1
    scores = predictions[0]
    if isinstance(scores, dict):
        scores = scores["probabilities"]
    assert len(scores) == 10
    assert int(np.argmax(scores)) == 0  # sample.txt is a 0


@pytest.mark.parametrize("engine", ["onnx", "transformers", None])
def test_tensors_engines(http, base_url, engine):
    req = dict(IRIS_ROWS_REQ)
    if engine is not None:
        req["engine"] = engine
    body = assert_ok(infer(http, base_url, req))
    assert body["engine"] == "onnx"
    assert [p["label"] for p in body["result"]["predictions"]] == IRIS_LABELS


def test_tensors_cache_key_as_model_name(http, base_url):
    req = dict(IRIS_ROWS_REQ, model_name="onnx:iris")
    body = assert_ok(infer(http, base_url, req))
    assert body["model_name"] == "iris"
    assert [p["label"] for p in body["result"]["predictions"]] == IRIS_LABELS


def test_tensors_builtin_add_sub(http, base_url):
    outputs = {o["name"]: o for o in assert_ok(infer(http, base_url, ADD_SUB_V2))["result"]["outputs"]}
    assert outputs["OUTPUT0"]["data"] == [i + 1 for i in range(16)]
    assert outputs["OUTPUT1"]["data"] == [i - 1 for i in range(16)]
    assert outputs["OUTPUT0"]["datatype"] == "INT32"


def test_tensors_builtin_identity_bytes(http, base_url):
    req = {
        "task": "tensors",
        "engine": "builtin",
        "model_name": "identity",
        "data": {"inputs": [{"name": "INPUT0", "shape": [2], "datatype": "BYTES", "data": ["a", "bé"]}]},
    }
    out = assert_ok(infer(http, base_url, req))["result"]["outputs"][0]
    assert out["name"] == "OUTPUT0"
    assert out["datatype"] == "BYTES"
    assert out["data"] == ["a", "bé"]


def test_wrong_engine_for_model_is_unsupported(http, base_url):
    req = dict(IRIS_ROWS_REQ, engine="builtin")
    err = assert_error(infer(http, base_url, req), 400, "UNSUPPORTED_TASK", "builtin", "iris")
    assert "hint" in err["details"]
    assert_still_serving(http, base_url)


# --- POST /inference/infer: image-classification ---------------------------------


@pytest.mark.parametrize("digit", range(10))
def test_classify_real_digits(http, base_url, digit):
    i = first_index_of(digit)
    body = assert_ok(infer(http, base_url, classify_body({"image": digit_png_b64(i)}, top_k=3)))
    assert body["task"] == "image-classification"
    assert body["model_name"] == "digits"
    assert body["engine"] == "onnx"
    preds = body["result"]["predictions"]
    assert len(preds) == 3
    assert preds[0]["class"] == str(digit), preds
    confidences = [p["confidence"] for p in preds]
    assert confidences == sorted(confidences, reverse=True)
    assert all(0.0 <= c <= 1.0 for c in confidences)
    assert len({p["class"] for p in preds}) == 3


@pytest.mark.parametrize("digit", [1, 4, 7])
def test_classify_more_samples_of_a_digit(http, base_url, digit):
    """Several different drawings of the same digit, each classified right."""
    d = _digits()
    indices = [int(i) for i in np.flatnonzero(d.target == digit)[1:4]]
    images = [digit_png_b64(i) for i in indices]
    preds = assert_ok(infer(http, base_url, classify_body({"images": images}, top_k=1)))["result"]["predictions"]
    assert [p[0]["class"] for p in preds] == [str(digit)] * len(indices), (indices, preds)


@pytest.mark.parametrize("k", [1, 2, 5, 10])
def test_classify_top_k(http, base_url, k):
    preds = assert_ok(
        infer(http, base_url, classify_body({"image": digit_png_b64(first_index_of(8))}, top_k=k))
    )["result"]["predictions"]
    assert len(preds) == k
    assert preds[0]["class"] == "8"
    confidences = [p["confidence"] for p in preds]
    assert confidences == sorted(confidences, reverse=True)
    if k == 10:
        assert sorted(p["class"] for p in preds) == [str(i) for i in range(10)]
        assert sum(confidences) == pytest.approx(1.0, abs=1e-3)


def test_classify_top_k_default_is_5(http, base_url):
    preds = assert_ok(infer(http, base_url, classify_body({"image": digit_png_b64(0)})))["result"]["predictions"]
    assert len(preds) == 5


def test_classify_top_k_larger_than_classes(http, base_url):
    preds = assert_ok(infer(http, base_url, classify_body({"image": digit_png_b64(0)}, top_k=50)))["result"][
        "predictions"
    ]
    assert len(preds) == 10


def test_classify_several_images(http, base_url):
    digits = [3, 0, 9, 5, 2, 6]
    images = [digit_png_b64(first_index_of(d)) for d in digits]
    preds = assert_ok(infer(http, base_url, classify_body({"images": images}, top_k=2)))["result"]["predictions"]
    assert isinstance(preds, list) and len(preds) == len(digits)
    for digit, ranked in zip(digits, preds):
        assert isinstance(ranked, list) and len(ranked) == 2
        assert ranked[0]["class"] == str(digit)
        assert ranked[0]["confidence"] >= ranked[1]["confidence"]


def test_classify_one_image_in_a_list_is_still_a_list(http, base_url):
    preds = assert_ok(infer(http, base_url, classify_body({"images": [digit_png_b64(7)]}, top_k=1)))["result"][
        "predictions"
    ]
    assert len(preds) == 1 and isinstance(preds[0], list)
    assert preds[0][0]["class"] == "7"


def test_classify_data_url(http, base_url):
    data_url = "data:image/png;base64," + digit_png_b64(first_index_of(4))
    preds = assert_ok(infer(http, base_url, classify_body({"image": data_url}, top_k=1)))["result"]["predictions"]
    assert preds[0]["class"] == "4"


def test_classify_rgb_and_larger_images(http, base_url):
    """An RGB picture, and one drawn at 32x32: both become 8x8 gray."""
    i = first_index_of(3)
    rgb = np.stack([digit_pixels(i)] * 3, axis=-1)
    big = np.kron(digit_pixels(i), np.ones((4, 4), dtype=np.uint8))
    images = [base64.b64encode(png(rgb, color_type=2)).decode(), base64.b64encode(png(big)).decode()]
    preds = assert_ok(infer(http, base_url, classify_body({"images": images}, top_k=1)))["result"]["predictions"]
    assert [p[0]["class"] for p in preds] == ["3", "3"]


def test_classify_mime_wrapped_base64(http, base_url):
    """base64 wrapped at 76 columns, as `base64 digit.png` (coreutils) and Python's
    base64.encodebytes write it; Python's b64decode, which a seed-style server
    uses, accepts it."""
    wrapped = base64.encodebytes(png(digit_pixels(first_index_of(6)))).decode()
    assert "\n" in wrapped.strip()
    resp = infer(http, base_url, classify_body({"image": wrapped}, top_k=1))
    assert_ok(resp)
    assert resp.json()["result"]["predictions"][0]["class"] == "6"


@pytest.mark.parametrize("engine", ["onnx", "transformers"])
def test_classify_engines(http, base_url, engine):
    body = assert_ok(infer(http, base_url, classify_body({"image": digit_png_b64(2)}, top_k=1, engine=engine)))
    assert body["result"]["predictions"][0]["class"] == "2"


def test_classify_task_alias_and_options_timeout(http, base_url):
    body = {
        "task": "image-classification",
        "model_name": "digits",
        "data": {"image": digit_png_b64(1)},
        "options": {"top_k": 1, "timeout": 30},
    }
    assert assert_ok(infer(http, base_url, body))["result"]["predictions"][0]["class"] == "1"


# --- legacy routes ----------------------------------------------------------------


def test_infer_fixed_is_infer(http, base_url):
    body = assert_ok(infer(http, base_url, IRIS_ROWS_REQ, route="/infer_fixed"))
    assert [p["label"] for p in body["result"]["predictions"]] == IRIS_LABELS
    body = assert_ok(infer(http, base_url, classify_body({"image": digit_png_b64(5)}, top_k=1), route="/infer_fixed"))
    assert body["result"]["predictions"][0]["class"] == "5"


def test_infer_multimodal_defaults_to_image_classification(http, base_url):
    req = {"model_name": "digits", "data": {"image": digit_png_b64(first_index_of(9))}, "options": {"top_k": 2}}
    body = assert_ok(infer(http, base_url, req, route="/infer_multimodal"))
    assert body["task"] == "image-classification"
    preds = body["result"]["predictions"]
    assert len(preds) == 2 and preds[0]["class"] == "9"


def test_infer_multimodal_keeps_a_named_task(http, base_url):
    body = assert_ok(infer(http, base_url, IRIS_V2, route="/infer_multimodal"))
    assert body["task"] == "tensors"


def test_infer_multimodal_errors_use_the_envelope(http, base_url):
    resp = http.post(url(base_url, "/infer_multimodal"), json=[1, 2], timeout=10)
    assert_error(resp, 400, "INVALID_INPUT", "object")
    resp = infer(http, base_url, {"model_name": "iris", "data": {"image": digit_png_b64(0)}}, route="/infer_multimodal")
    assert_error(resp, 400, "UNSUPPORTED_TASK", "iris", "image-classification")
    assert_still_serving(http, base_url)


# --- POST /inference/batch ----------------------------------------------------------


def _batch_items():
    return [
        IRIS_ROWS_REQ,
        {"task": "tensors", "model_name": "nope", "data": [[1, 2, 3, 4]]},
        classify_body({"image": digit_png_b64(first_index_of(7))}, top_k=1),
        ADD_SUB_V2,
        {"task": "tensors", "engine": "builtin", "model_name": "iris", "data": [[1, 2, 3, 4]]},
    ]


@pytest.mark.parametrize("parallel", [False, True])
def test_batch(http, base_url, parallel):
    items = _batch_items()
    resp = http.post(url(base_url, "/batch"), json={"requests": items, "parallel": parallel}, timeout=60)
    body = assert_ok(resp)
    assert body["parallel"] is parallel
    s = body["summary"]
    assert s["total_requests"] == 5
    assert s["successful"] == 3
    assert s["failed"] == 2
    assert s["success_rate"] == pytest.approx(0.6)
    assert body["total_processing_time"] >= 0
    assert body["average_time_per_request"] == pytest.approx(body["total_processing_time"] / 5)
    results = body["results"]
    assert [r["index"] for r in results] == list(range(5))
    assert [r["success"] for r in results] == [True, False, True, True, False]
    assert [p["label"] for p in results[0]["result"]["predictions"]] == IRIS_LABELS
    assert results[2]["result"]["predictions"][0]["class"] == "7"
    assert results[3]["result"]["outputs"][0]["data"] == [i + 1 for i in range(16)]
    nope = results[1]
    assert nope["task"] == "tensors" and nope["model_name"] == "nope"
    # The document's `error` is the message; the structured error is beside it.
    assert_error_object(nope["error_detail"], "MODEL_NOT_FOUND", "nope")
    assert nope["error"] == nope["error_detail"]["message"]
    wrong = results[4]
    assert wrong["task"] == "tensors" and wrong["model_name"] == "iris"
    assert_error_object(wrong["error_detail"], "UNSUPPORTED_TASK", "builtin")
    assert isinstance(wrong["error"], str) and "builtin" in wrong["error"]


def test_batch_defaults_to_sequential(http, base_url):
    body = assert_ok(http.post(url(base_url, "/batch"), json={"requests": [IRIS_V2]}, timeout=30))
    assert body["parallel"] is False
    assert body["summary"] == {"total_requests": 1, "successful": 1, "failed": 0, "success_rate": 1.0}


def test_batch_of_100_parallel(http, base_url):
    items = [classify_body({"image": digit_png_b64(first_index_of(i % 10))}, top_k=1) for i in range(100)]
    body = assert_ok(http.post(url(base_url, "/batch"), json={"requests": items, "parallel": True}, timeout=120))
    assert body["summary"]["successful"] == 100
    assert [r["result"]["predictions"][0]["class"] for r in body["results"]] == [str(i % 10) for i in range(100)]


@pytest.mark.parametrize("n", [0, 101])
def test_batch_size_limits(http, base_url, n):
    resp = http.post(url(base_url, "/batch"), json={"requests": [IRIS_V2] * n, "parallel": True}, timeout=60)
    assert_error(resp, 400, "INVALID_INPUT", "100", str(n))
    assert_still_serving(http, base_url)


# --- POST /inference/models/preload -------------------------------------------------


def test_preload_known_and_already_loaded(http, base_url):
    preload_all(http, base_url)
    body = assert_ok(
        http.post(url(base_url, "/models/preload"), json={"models": ["onnx:iris", "digits"]}, timeout=60)
    )
    assert body["loaded"] == 2
    by_key = {r["key"]: r for r in body["results"]}
    assert set(by_key) == {"onnx:iris", "digits"}
    for r in by_key.values():
        assert r["loaded"] is True
        assert r["already_loaded"] is True
        assert r["time_ms"] >= 0


def test_preload_after_eviction(http, base_url, cache_restored):
    assert_ok(http.delete(url(base_url, "/cache/models/onnx:digits"), timeout=30))
    assert "onnx:digits" not in cache_keys(http, base_url)
    body = assert_ok(http.post(url(base_url, "/models/preload"), json={"models": ["onnx:digits"]}, timeout=60))
    (r,) = body["results"]
    assert r["loaded"] is True and r["already_loaded"] is False
    assert "onnx:digits" in cache_keys(http, base_url)


def test_preload_object_form(http, base_url):
    models = [{"engine": "onnx", "model_name": "iris"}, {"engine": "transformers", "model_name": "add_sub"}, {"model_name": "identity"}]
    body = assert_ok(http.post(url(base_url, "/models/preload"), json={"models": models}, timeout=60))
    assert body["loaded"] == 3
    assert [r["key"] for r in body["results"]] == ["onnx:iris", "add_sub", "identity"]


def test_preload_unknown_gives_an_error_entry(http, base_url):
    resp = http.post(
        url(base_url, "/models/preload"),
        json={"models": ["onnx:iris", "nope", "builtin:iris"]},
        timeout=60,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["success"] is False
    assert_timestamp(body)
    assert body["loaded"] == 1
    ok, nope, wrong = body["results"]
    assert ok["key"] == "onnx:iris" and ok["loaded"] is True
    assert nope["key"] == "nope" and nope["loaded"] is False
    assert_error_object(nope["error"], "MODEL_NOT_FOUND", "nope")
    assert wrong["key"] == "builtin:iris" and wrong["loaded"] is False
    assert_error_object(wrong["error"], "MODEL_NOT_FOUND", "iris")


@pytest.mark.parametrize("models", [[], "iris"])
def test_preload_bad_bodies(http, base_url, models):
    resp = http.post(url(base_url, "/models/preload"), json={"models": models}, timeout=10)
    assert_error(resp, 400, "INVALID_INPUT")


# --- health, tasks, stats, examples ----------------------------------------------------


def test_health(http, base_url):
    resp = http.get(url(base_url, "/health"), timeout=10)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "healthy"
    assert_timestamp(body)
    comps = body["components"]
    assert {"model_manager", "cache", "scheduler"} <= set(comps)
    assert all(c["status"] == "healthy" for c in comps.values())
    assert comps["model_manager"]["models"] >= len(MODELS)
    assert 0 <= comps["model_manager"]["loaded"] <= comps["model_manager"]["models"]


def test_supported_tasks(http, base_url):
    body = assert_ok(http.get(url(base_url, "/supported-tasks"), timeout=10))
    tasks = {t["task"]: t for t in body["tasks"]}
    assert tasks["tensors"]["available"] is True
    assert set(MODELS) <= set(tasks["tensors"]["models"])
    assert {"onnx", "builtin"} <= set(tasks["tensors"]["engines"])
    ic = tasks["image-classification"]
    assert ic["available"] is True
    assert ic["models"] == ["digits"]
    assert ic["engines"] == ["onnx"]
    # text-generation is served by smollm2 once scripts/fetch-models has run
    tg = tasks["text-generation"]
    assert tg["available"] is ("smollm2" in tg["models"])
    assert set(tg["models"]) <= {"smollm2"}
    assert tg["engines"] in ([], ["llama.cpp"])
    # feature-extraction is served by minilm once scripts/fetch-models has run
    fe = tasks["feature-extraction"]
    assert fe["available"] is ("minilm" in fe["models"])
    assert set(fe["models"]) <= {"minilm"}
    assert {"onnx", "builtin", "transformers"} <= set(body["engines"])


def test_unavailable_tasks_are_refused(http, base_url):
    for task in ["feature-extraction", "text-generation"]:
        resp = infer(http, base_url, {"task": task, "model_name": "iris", "data": {"inputs": "hello"}})
        assert_error(resp, 400, "UNSUPPORTED_TASK", task)
    assert_still_serving(http, base_url)


def test_stats_grow(http, base_url):
    before = assert_ok(http.get(url(base_url, "/stats"), timeout=10))["stats"]
    for _ in range(3):
        assert_ok(infer(http, base_url, IRIS_ROWS_REQ))
    assert_ok(infer(http, base_url, classify_body({"image": digit_png_b64(0)})))
    assert infer(http, base_url, dict(IRIS_ROWS_REQ, data="bad")).status_code == 400
    after = assert_ok(http.get(url(base_url, "/stats"), timeout=10))["stats"]

    def get(stats, *path):
        node = stats
        for p in path:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        return node if node != {} else 0

    assert get(after, "total", "requests") >= get(before, "total", "requests") + 5
    assert get(after, "total", "errors") >= get(before, "total", "errors") + 1
    assert get(after, "by_model", "iris", "requests") >= get(before, "by_model", "iris", "requests") + 4
    assert get(after, "by_model", "iris", "errors") >= get(before, "by_model", "iris", "errors") + 1
    assert get(after, "by_task", "image-classification", "requests") >= get(
        before, "by_task", "image-classification", "requests"
    ) + 1
    for series in [after["total"], after["by_model"]["iris"], after["by_task"]["tensors"]]:
        lat = series["latency_ms"]
        assert isinstance(lat["p50"], (int, float)) and lat["p50"] > 0
        assert lat["p50"] <= lat["p95"] <= lat["p99"]
        assert 0.0 <= series["error_rate"] <= 1.0


def test_stats_do_not_grow_per_unknown_model_name(http, base_url):
    """Statistics must stay bounded: a series per model name a client invents
    (every request with a new bogus name) grows the server's memory forever."""
    names = [f"no_such_model_{uuid.uuid4().hex}" for _ in range(20)]
    for n in names:
        assert infer(http, base_url, {"task": "tensors", "model_name": n, "data": [[1, 2, 3, 4]]}).status_code == 404
    stats = assert_ok(http.get(url(base_url, "/stats"), timeout=10))["stats"]
    invented = [n for n in names if n in stats["by_model"]]
    assert invented == [], f"{len(invented)} invented model names kept as series in /inference/stats by_model"


def _check_examples(http, base_url):
    body = assert_ok(http.get(url(base_url, "/examples"), timeout=10))
    examples = body["examples"]
    covered = {(e["request"]["task"], e["request"]["model_name"]) for e in examples}
    assert {("tensors", m) for m in MODELS} <= covered
    assert ("image-classification", "digits") in covered
    # Every task a present model can do, the fetched weights' included.
    if (REPO_ROOT / "models" / "minilm" / "1").is_dir():
        assert ("feature-extraction", "minilm") in covered
    if LLM_GGUF.is_file():
        assert ("text-generation", "smollm2") in covered
    failures = []
    for e in examples:
        assert e["endpoint"] == "POST /inference/infer"
        assert e["description"]
        resp = infer(http, base_url, e["request"])
        if resp.status_code != 200 or resp.json().get("success") is not True:
            failures.append((e["description"], e["request"], resp.status_code, resp.text[:300]))
    assert failures == []


def test_examples_all_work(http, base_url):
    preload_all(http, base_url)
    _check_examples(http, base_url)


def test_examples_work_when_models_are_not_in_memory(http, base_url, cache_restored):
    """The examples are for "the models present", loaded or not: a model evicted
    from the cache still answers (it reloads), so its example must still work."""
    assert_ok(http.post(url(base_url, "/clear-cache"), timeout=60))
    _check_examples(http, base_url)


# --- the model cache ----------------------------------------------------------------


def test_cache_stats_fields(http, base_url):
    s = cache_stats(http, base_url)
    for f in ["hits", "misses", "evictions", "loads", "cached_models", "memory_used_bytes"]:
        assert isinstance(s[f], int) and s[f] >= 0, (f, s)
    lookups = s["hits"] + s["misses"]
    assert s["hit_rate"] == pytest.approx(s["hits"] / lookups if lookups else 0.0)
    assert 0.0 <= s["hit_rate"] <= 1.0
    # unlimited at start (null); 1..20 once set through the API
    assert s["max_cache_size"] is None or 1 <= s["max_cache_size"] <= 20
    assert s["max_memory_gb"] is None or 1.0 <= s["max_memory_gb"] <= 100.0
    assert isinstance(s["access_counts"], dict)


def test_cache_models(http, base_url):
    preload_all(http, base_url)
    body = assert_ok(http.get(url(base_url, "/cache/models"), timeout=10))
    assert body["count"] == len(body["models"])
    by_key = {m["key"]: m for m in body["models"]}
    assert set(CACHE_KEYS.values()) <= set(by_key)
    iris = by_key["onnx:iris"]
    assert iris["model_name"] == "iris" and iris["engine"] == "onnx"
    for f in ["loaded_at", "load_time_s", "access_count", "last_access", "memory_bytes"]:
        assert f in iris, f
    assert iris["memory_bytes"] > 0
    count = iris["access_count"]
    assert_ok(infer(http, base_url, IRIS_V2))
    after = {m["key"]: m for m in assert_ok(http.get(url(base_url, "/cache/models"), timeout=10))["models"]}
    assert after["onnx:iris"]["access_count"] > count
    assert after["onnx:iris"]["last_access"] >= iris["last_access"]


def test_cache_hits_grow(http, base_url):
    preload_all(http, base_url)
    before = cache_stats(http, base_url)
    assert_ok(infer(http, base_url, IRIS_V2))
    after = cache_stats(http, base_url)
    assert after["hits"] > before["hits"]
    assert after["misses"] == before["misses"]


def test_cache_delete_then_reload(http, base_url, cache_restored):
    preload_all(http, base_url)
    before = cache_stats(http, base_url)
    resp = http.delete(url(base_url, "/cache/models/onnx:digits"), timeout=30)
    body = assert_ok(resp)
    assert "onnx:digits" in body["message"]
    keys = cache_keys(http, base_url)
    assert "onnx:digits" not in keys
    assert "onnx:iris" in keys
    mid = cache_stats(http, base_url)
    assert mid["evictions"] == before["evictions"] + 1
    assert "onnx:digits" not in mid["access_counts"]

    preds = assert_ok(infer(http, base_url, classify_body({"image": digit_png_b64(first_index_of(2))}, top_k=1)))[
        "result"
    ]["predictions"]
    assert preds[0]["class"] == "2"
    after = cache_stats(http, base_url)
    assert after["misses"] == mid["misses"] + 1
    assert after["loads"] == mid["loads"] + 1
    assert "onnx:digits" in cache_keys(http, base_url)


def test_cache_delete_bare_name(http, base_url, cache_restored):
    preload_all(http, base_url)
    assert_ok(http.delete(url(base_url, "/cache/models/identity"), timeout=30))
    assert "builtin:identity" not in cache_keys(http, base_url)


def test_cache_delete_not_cached(http, base_url, cache_restored):
    assert_ok(http.delete(url(base_url, "/cache/models/onnx:digits"), timeout=30))
    resp = http.delete(url(base_url, "/cache/models/onnx:digits"), timeout=30)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["success"] is False
    assert "onnx:digits" in body["message"]
    assert_timestamp(body)


@pytest.mark.parametrize("key", ["onnx:nope", "nope", "builtin:digits"])
def test_cache_delete_unknown_key(http, base_url, key):
    """As the document: a key the cache does not hold is 200 `success: false`."""
    resp = http.delete(url(base_url, f"/cache/models/{key}"), timeout=10)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["success"] is False and key in body["message"], body
    assert key.split(":")[-1] in body["message"].split(": ", 1)[1], body
    assert_still_serving(http, base_url)


def test_cache_config_shrink_evicts_lru(http, base_url, cache_restored):
    preload_all(http, base_url)
    for req in [ADD_SUB_V2, IRIS_V2]:
        assert_ok(infer(http, base_url, req))
    assert_ok(infer(http, base_url, classify_body({"image": digit_png_b64(0)})))  # digits: most recent
    before = cache_stats(http, base_url)

    resp = http.put(url(base_url, "/cache/config"), params={"max_cache_size": 1}, timeout=60)
    body = assert_ok(resp)
    assert body["current_config"]["max_cache_size"] == 1
    assert body["updates"] and "max_cache_size" in body["updates"][0]
    # every other model goes (minilm too, when it is present)
    assert {"add_sub", "identity", "iris"} <= set(body["evicted"])
    assert "digits" not in body["evicted"]
    assert cache_keys(http, base_url) == ["onnx:digits"]
    s = cache_stats(http, base_url)
    assert s["max_cache_size"] == 1
    assert s["cached_models"] == 1
    assert s["evictions"] == before["evictions"] + len(body["evicted"])

    # an evicted model still answers, and takes the only place
    body = assert_ok(infer(http, base_url, IRIS_V2))
    assert [o for o in body["result"]["outputs"] if o["name"] == "label"][0]["data"] == [0]
    assert cache_keys(http, base_url) == ["onnx:iris"]
    outputs = assert_ok(infer(http, base_url, ADD_SUB_V2))["result"]["outputs"]
    assert outputs[0]["data"] == [i + 1 for i in range(16)]
    assert cache_keys(http, base_url) == ["builtin:add_sub"]
    # one after another, a sequential batch over every model works at size 1
    batch = [IRIS_V2, classify_body({"image": digit_png_b64(first_index_of(5))}, top_k=1), ADD_SUB_V2] * 3
    body = assert_ok(http.post(url(base_url, "/batch"), json={"requests": batch}, timeout=120))
    assert body["summary"]["successful"] == len(batch), body["results"]


def test_cache_limit_errors_name_the_limit(http, base_url, cache_restored):
    """With max_cache_size=1 and two models busy at once, a load that cannot make
    room may be refused (RESOURCE_EXHAUSTED, 429), but the message must name
    the limit that was hit, not a memory budget the model fits in many times."""
    assert_ok(http.put(url(base_url, "/cache/config"), params={"max_cache_size": 1}, timeout=60))
    items = [IRIS_V2, classify_body({"image": digit_png_b64(first_index_of(5))}, top_k=1)] * 10
    errors = []
    for _ in range(3):
        body = assert_ok(http.post(url(base_url, "/batch"), json={"requests": items, "parallel": True}, timeout=120))
        errors += [r["error_detail"] for r in body["results"] if not r["success"]]
    for err in errors:
        assert err["code"] == "RESOURCE_EXHAUSTED", err
        assert err["details"]["status"] == 429, err
        msg = err["message"].lower()
        assert "cache" in msg or "max_cache_size" in msg or "models in memory" in msg or "loaded models" in msg, msg
        assert "memory budget" not in msg, msg


def test_rows_to_an_evicted_model(http, base_url, cache_restored):
    """The README's own row request to iris, sent after iris left the cache: it
    must reload iris and answer, as V2-style inputs do."""
    assert_ok(http.delete(url(base_url, "/cache/models/onnx:iris"), timeout=30))
    assert "onnx:iris" not in cache_keys(http, base_url)
    resp = infer(http, base_url, {"task": "tensors", "model_name": "iris", "data": [[6.7, 3.0, 5.2, 2.3]]})
    body = assert_ok(resp)
    assert [p["label"] for p in body["result"]["predictions"]] == [2]


def test_cache_config_both_limits(http, base_url, cache_restored):
    # 100 GB: the models here are a few KiB, so this limit changes nothing
    resp = http.put(url(base_url, "/cache/config"), params={"max_cache_size": 20, "max_memory_gb": 100}, timeout=30)
    body = assert_ok(resp)
    assert len(body["updates"]) == 2
    assert body["current_config"] == {"max_cache_size": 20, "max_memory_gb": 100.0}
    assert body["evicted"] == []
    s = cache_stats(http, base_url)
    assert s["max_cache_size"] == 20
    assert s["max_memory_gb"] == pytest.approx(100.0)


@pytest.mark.parametrize(
    "params,word",
    [
        ({"max_cache_size": 0}, "max_cache_size"),
        ({"max_cache_size": 21}, "max_cache_size"),
        ({"max_cache_size": "abc"}, "max_cache_size"),
        ({"max_cache_size": 1.5}, "max_cache_size"),
        ({"max_memory_gb": 0.5}, "max_memory_gb"),
        ({"max_memory_gb": 101}, "max_memory_gb"),
        ({"max_memory_gb": "abc"}, "max_memory_gb"),
        ({}, "max_cache_size"),
    ],
)
def test_cache_config_out_of_range(http, base_url, params, word):
    before = cache_stats(http, base_url)
    resp = http.put(url(base_url, "/cache/config"), params=params, timeout=10)
    assert_error(resp, 400, "INVALID_INPUT", word)
    after = cache_stats(http, base_url)
    assert after["max_cache_size"] == before["max_cache_size"]
    assert after["max_memory_gb"] == before["max_memory_gb"]
    assert_still_serving(http, base_url)


def test_clear_cache_then_requests_work(http, base_url, cache_restored):
    preload_all(http, base_url)
    body = assert_ok(http.post(url(base_url, "/clear-cache"), timeout=60))
    assert body["cleared"] >= len(MODELS)
    assert cache_keys(http, base_url) == []
    health = http.get(url(base_url, "/health"), timeout=10).json()
    assert health["status"] == "healthy" and health["components"]["model_manager"]["loaded"] == 0
    assert_still_serving(http, base_url)
    preds = assert_ok(infer(http, base_url, classify_body({"image": digit_png_b64(first_index_of(8))}, top_k=1)))[
        "result"
    ]["predictions"]
    assert preds[0]["class"] == "8"
    assert assert_ok(infer(http, base_url, ADD_SUB_V2))["result"]["outputs"][0]["data"][0] == 1
    assert set(cache_keys(http, base_url)) == {"onnx:iris", "onnx:digits", "builtin:add_sub"}


# --- bad inputs -------------------------------------------------------------------------

GOOD_IMAGE = {"image": "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAAAAADhZOFXAAAADklEQVR4nGP4DwUMlDEA98A/wbI0QbsAAAAASUVORK5CYII="}

BAD_INFER = [
    # (id, body, status, code, words the message must hold)
    ("unknown task", {"task": "translate", "model_name": "iris", "data": [[1, 2, 3, 4]]}, 400, "UNSUPPORTED_TASK", ["translate"]),
    ("unknown engine", dict(IRIS_ROWS_REQ, engine="vllm"), 400, "UNSUPPORTED_TASK", ["vllm"]),
    ("engine cannot run model", dict(IRIS_ROWS_REQ, engine="ollama"), 400, "UNSUPPORTED_TASK", ["ollama", "iris"]),
    ("model cannot do task", {"task": "image-classification", "model_name": "iris", "data": GOOD_IMAGE}, 400, "UNSUPPORTED_TASK", ["iris", "image-classification"]),
    ("missing data", {"task": "tensors", "model_name": "iris"}, 400, "INVALID_INPUT", ["data"]),
    ("string instead of rows", {"task": "tensors", "model_name": "iris", "data": "5.1,3.5,1.4,0.2"}, 400, "INVALID_INPUT", ["rows"]),
    ("wrong row width", {"task": "tensors", "model_name": "iris", "data": [[1, 2, 3]]}, 400, "INVALID_INPUT", ["X"]),
    ("strings in FP32 rows", {"task": "tensors", "model_name": "iris", "data": [["a", "b", "c", "d"]]}, 400, "INVALID_INPUT", ["FP32"]),
    ("unknown datatype", {"task": "tensors", "model_name": "iris", "data": {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP99", "data": [1, 2, 3, 4]}]}}, 400, "INVALID_INPUT", ["FP99"]),
    ("invalid base64", classify_body({"image": "!!!not base64!!!"}), 400, "INVALID_INPUT", ["base64"]),
    ("not an image", classify_body({"image": base64.b64encode(b"hello, I am plain text, not a picture").decode()}), 400, "INVALID_INPUT", ["image", "PNG"]),
    ("image not a string", classify_body({"images": [GOOD_IMAGE["image"], 42]}), 400, "INVALID_INPUT", ["image 1"]),
    ("no images", classify_body({"images": []}), 400, "INVALID_INPUT", ["image"]),
    ("image and images", classify_body({"image": GOOD_IMAGE["image"], "images": [GOOD_IMAGE["image"]]}), 400, "INVALID_INPUT", ["image"]),
    ("unknown model", {"task": "tensors", "model_name": "nope", "data": [[1, 2, 3, 4]]}, 404, "MODEL_NOT_FOUND", ["nope"]),
    ("engine key mismatch", {"task": "tensors", "model_name": "builtin:iris", "data": [[1, 2, 3, 4]]}, 404, "MODEL_NOT_FOUND", ["iris"]),
    ("missing task", {"model_name": "iris", "data": [[1, 2, 3, 4]]}, 400, "INVALID_INPUT", ["task"]),
    ("model_name not a string", {"task": "tensors", "model_name": 5, "data": [[1, 2, 3, 4]]}, 400, "INVALID_INPUT", ["string"]),
    ("top_k 0", classify_body(GOOD_IMAGE, top_k=0), 400, "INVALID_INPUT", ["top_k"]),
    ("top_k string", classify_body(GOOD_IMAGE, top_k="3"), 400, "INVALID_INPUT", ["top_k"]),
    ("timeout negative", dict(IRIS_ROWS_REQ, options={"timeout": -1}), 400, "INVALID_INPUT", ["timeout"]),
    ("timeout zero", dict(IRIS_ROWS_REQ, options={"timeout": 0}), 400, "INVALID_INPUT", ["timeout"]),
    ("timeout string", dict(IRIS_ROWS_REQ, options={"timeout": "soon"}), 400, "INVALID_INPUT", ["timeout"]),
]


@pytest.mark.parametrize("body,status,code,words", [c[1:] for c in BAD_INFER], ids=[c[0] for c in BAD_INFER])
def test_bad_infer(http, base_url, body, status, code, words):
    assert_error(infer(http, base_url, body), status, code, *words)
    assert_still_serving(http, base_url)


def test_huge_image_is_413(http, base_url):
    resp = infer(http, base_url, classify_body({"image": huge_png_b64()}))
    assert_error(resp, 413, "INVALID_INPUT", "10000x10000")
    assert_still_serving(http, base_url)


@pytest.mark.parametrize(
    "raw,word",
    [("{bad json", "body"), ('{"task": "tensors",', "body"), ("", "empty"), ("[1, 2]", "body")],
    ids=["malformed", "truncated", "empty", "array"],
)
def test_malformed_body(http, base_url, raw, word):
    resp = http.post(url(base_url, "/infer"), data=raw, headers={"Content-Type": "application/json"}, timeout=10)
    assert_error(resp, 400, "INVALID_INPUT", word)
    resp = http.post(url(base_url, "/batch"), data=raw or "{", headers={"Content-Type": "application/json"}, timeout=10)
    assert_error(resp, 400, "INVALID_INPUT", "body")
    assert_still_serving(http, base_url)


def test_unknown_fields_and_nulls_read_as_pydantic_reads_them(http, base_url):
    """Seed 004's server ignores unknown fields and reads `null` as absent."""
    resp = http.post(url(base_url, "/batch"), json={"requests": [IRIS_V2], "paralel": True, "parallel": None},
                     timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.json()["results"][0]["success"] is True, resp.json()
    resp = infer(http, base_url, dict(IRIS_ROWS_REQ, prompt="hi", options=None, engine=None))
    assert resp.status_code == 200, resp.text
    assert resp.json()["success"] is True, resp.json()


def test_deadline_passed_is_timeout(http, base_url):
    body = classify_body({"image": digit_png_b64(0)})
    body["options"] = {"timeout": 1e-9}
    assert_error(infer(http, base_url, body), 504, "TIMEOUT", "deadline")
    assert_still_serving(http, base_url)
