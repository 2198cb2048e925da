"""KServe V1 (TF Serving style) REST: model list, model status and `:predict`
with rows (`instances` -> `predictions`) or columns (`inputs` -> `outputs`).
Errors are `{"error": "..."}`.
"""

import pytest

from conftest import IRIS_LABELS, MODELS


def predict(http, base_url, model, body):
    return http.post(f"{base_url}/v1/models/{model}:predict", json=body, timeout=30)


def assert_error(resp, status, *words):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    for w in words:
        assert w in body["error"], (w, body)


def test_list_models(http, base_url):
    resp = http.get(f"{base_url}/v1/models", timeout=10)
    assert resp.status_code == 200
    body = resp.json()
    assert isinstance(body, dict)
    assert isinstance(body["models"], list)
    # One entry per model, seed 002's shape: {"id", "name", "status", "supports", "endpoint"}.
    ids = [m["id"] for m in body["models"]]
    for m in MODELS:
        assert m in ids


def test_model_status(http, base_url):
    resp = http.get(f"{base_url}/v1/models/iris", timeout=10)
    assert resp.status_code == 200
    body = resp.json()
    assert body["name"] == "iris"
    assert body["ready"] is True


def test_unknown_model_status_is_404(http, base_url):
    resp = http.get(f"{base_url}/v1/models/no_such_model", timeout=10)
    assert_error(resp, 404, "no_such_model")


def test_predict_instances(http, base_url, iris_rows):
    resp = predict(http, base_url, "iris", {"instances": iris_rows})
    assert resp.status_code == 200, resp.text
    predictions = resp.json()["predictions"]
    assert len(predictions) == 2
    assert [p["label"] for p in predictions] == IRIS_LABELS
    for p in predictions:
        assert len(p["probabilities"]) == 3
        assert sum(p["probabilities"]) == pytest.approx(1.0, abs=1e-5)


def test_predict_single_instance(http, base_url, iris_rows):
    resp = predict(http, base_url, "iris", {"instances": iris_rows[:1]})
    assert resp.status_code == 200, resp.text
    assert [p["label"] for p in resp.json()["predictions"]] == IRIS_LABELS[:1]


def test_predict_instances_keyed_by_input_name(http, base_url, iris_rows):
    body = {"instances": [{"X": row} for row in iris_rows]}
    resp = predict(http, base_url, "iris", body)
    assert resp.status_code == 200, resp.text
    assert [p["label"] for p in resp.json()["predictions"]] == IRIS_LABELS


def test_predict_columnar(http, base_url, iris_rows):
    resp = predict(http, base_url, "iris", {"inputs": {"X": iris_rows}})
    assert resp.status_code == 200, resp.text
    outputs = resp.json()["outputs"]
    assert outputs["label"] == IRIS_LABELS
    assert len(outputs["probabilities"]) == 2
    for row in outputs["probabilities"]:
        assert len(row) == 3
        assert sum(row) == pytest.approx(1.0, abs=1e-5)


def test_predict_signature_name_is_accepted(http, base_url, iris_rows):
    body = {"signature_name": "serving_default", "instances": iris_rows}
    resp = predict(http, base_url, "iris", body)
    assert resp.status_code == 200, resp.text


def test_predict_versioned(http, base_url, iris_rows):
    resp = http.post(
        f"{base_url}/v1/models/iris/versions/1:predict",
        json={"instances": iris_rows},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    assert [p["label"] for p in resp.json()["predictions"]] == IRIS_LABELS


def test_predict_digits(http, base_url, digits_row):
    resp = predict(http, base_url, "digits", {"instances": [digits_row]})
    assert resp.status_code == 200, resp.text
    (probs,) = resp.json()["predictions"]
    assert len(probs) == 10
    assert probs.index(max(probs)) == 0


def test_predict_multi_input_model(http, base_url):
    a = list(range(16))
    b = [1] * 16
    resp = predict(http, base_url, "add_sub", {"instances": [{"INPUT0": a, "INPUT1": b}]})
    assert resp.status_code == 200, resp.text
    (pred,) = resp.json()["predictions"]
    assert pred["OUTPUT0"] == [x + 1 for x in a]
    assert pred["OUTPUT1"] == [x - 1 for x in a]


def test_predict_strings_through_identity(http, base_url):
    resp = predict(http, base_url, "identity", {"instances": ["a", "b\u00e9"]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["predictions"] == ["a", "b\u00e9"]


def test_unknown_model_is_404(http, base_url, iris_rows):
    resp = predict(http, base_url, "no_such_model", {"instances": iris_rows})
    assert_error(resp, 404, "no_such_model")


def test_body_without_instances_or_inputs_is_400(http, base_url):
    resp = predict(http, base_url, "iris", {})
    assert_error(resp, 400, "instances")


def test_body_with_both_instances_and_inputs_is_400(http, base_url, iris_rows):
    resp = predict(http, base_url, "iris", {"instances": iris_rows, "inputs": {"X": iris_rows}})
    assert_error(resp, 400)


def test_empty_instances_is_400(http, base_url):
    resp = predict(http, base_url, "iris", {"instances": []})
    assert_error(resp, 400, "instances")


def test_wrong_row_length_is_400(http, base_url):
    resp = predict(http, base_url, "iris", {"instances": [[1.0, 2.0, 3.0]]})
    assert_error(resp, 400, "X")


def test_malformed_json_is_400(http, base_url):
    resp = http.post(
        f"{base_url}/v1/models/iris:predict",
        data=b'{"instances": [[1, 2',
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert_error(resp, 400)


def test_explain_is_not_implemented(http, base_url, iris_rows):
    resp = http.post(
        f"{base_url}/v1/models/iris:explain", json={"instances": iris_rows}, timeout=10
    )
    assert_error(resp, 501, "explain")


def test_server_still_serves_after_errors(http, base_url, iris_rows):
    predict(http, base_url, "iris", {})
    predict(http, base_url, "iris", {"instances": [["x", "y", "z", "w"]]})
    resp = predict(http, base_url, "iris", {"instances": iris_rows})
    assert resp.status_code == 200
    assert [p["label"] for p in resp.json()["predictions"]] == IRIS_LABELS


def test_unloaded_model_is_503(http, base_url, digits_row):
    try:
        resp = http.post(f"{base_url}/v2/repository/models/digits/unload", timeout=60)
        assert resp.status_code == 200, resp.text
        resp = http.get(f"{base_url}/v1/models/digits", timeout=10)
        assert_error(resp, 503, "digits")
        resp = predict(http, base_url, "digits", {"instances": [digits_row]})
        assert_error(resp, 503, "digits")
    finally:
        resp = http.post(f"{base_url}/v2/repository/models/digits/load", timeout=60)
        assert resp.status_code == 200, resp.text
    resp = predict(http, base_url, "digits", {"instances": [digits_row]})
    assert resp.status_code == 200, resp.text
