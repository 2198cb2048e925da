"""Pinferencia's REST surface: the default API (`/v1/healthz`, bare-boolean
ready/load/unload, `predict` with `data`) and the kserve flavour (`/v1/.../infer`
with `instances`, `/v2/healthz`, `/v2/models/{m}/load|unload`). Errors are
FastAPI's `{"detail": ...}`, and a body that does not validate is 422.

The load/unload tests use `digits` and always load it again before finishing.
"""

import pytest

from conftest import IRIS_LABELS

SETOSA = [5.1, 3.5, 1.4, 0.2]


def assert_detail(resp, status, detail=None):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert "detail" in body, body
    if detail is not None:
        assert body["detail"] == detail, body


@pytest.fixture
def digits_restored(http, base_url):
    """Makes sure `digits` is loaded again after the test, whatever happened."""
    yield "digits"
    if http.get(f"{base_url}/v1/models/digits/ready", timeout=10).json() is not True:
        resp = http.post(f"{base_url}/v1/models/digits/load", timeout=60)
        assert resp.status_code == 200, resp.text


# --- health and readiness -------------------------------------------------------


@pytest.mark.parametrize("prefix", ["v1", "v2"])
def test_healthz(http, base_url, prefix):
    resp = http.get(f"{base_url}/{prefix}/healthz", timeout=10)
    assert resp.status_code == 200
    assert resp.json() is True


@pytest.mark.parametrize(
    "path",
    ["/v1/models/iris/ready", "/v1/models/iris/versions/1/ready", "/v1/models/iris/versions/default/ready"],
)
def test_model_ready(http, base_url, path):
    resp = http.get(base_url + path, timeout=10)
    assert resp.status_code == 200
    assert resp.json() is True


def test_unknown_model_ready_is_404(http, base_url):
    resp = http.get(f"{base_url}/v1/models/no_such_model/ready", timeout=10)
    assert_detail(resp, 404)
    assert "Model not found" in resp.json()["detail"]


def test_unknown_version_ready_is_404(http, base_url):
    resp = http.get(f"{base_url}/v1/models/iris/versions/7/ready", timeout=10)
    assert_detail(resp, 404)


# --- default API: predict -------------------------------------------------------


def test_predict(http, base_url):
    resp = http.post(
        f"{base_url}/v1/models/iris/predict",
        json={"id": "x", "data": [SETOSA]},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["id"] == "x"
    assert body["model_name"] == "iris"
    assert body["model_version"] == "1"
    (row,) = body["data"]
    assert row["label"] == 0
    assert len(row["probabilities"]) == 3
    assert sum(row["probabilities"]) == pytest.approx(1.0, abs=1e-5)


def test_predict_without_id_omits_it(http, base_url, iris_rows):
    resp = http.post(f"{base_url}/v1/models/iris/predict", json={"data": iris_rows}, timeout=30)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert "id" not in body
    assert [r["label"] for r in body["data"]] == IRIS_LABELS


def test_predict_with_parameters(http, base_url):
    body = {"data": [SETOSA], "parameters": {"anything": 1}}
    resp = http.post(f"{base_url}/v1/models/iris/predict", json=body, timeout=30)
    assert resp.status_code == 200, resp.text
    assert "parameters" not in resp.json()


@pytest.mark.parametrize("version", ["default", "1"])
def test_versioned_predict(http, base_url, iris_rows, version):
    resp = http.post(
        f"{base_url}/v1/models/iris/versions/{version}/predict",
        json={"id": "v", "data": iris_rows},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["id"] == "v"
    assert body["model_name"] == "iris"
    assert body["model_version"] == "1"
    assert [r["label"] for r in body["data"]] == IRIS_LABELS


def test_predict_unknown_version_is_404(http, base_url):
    resp = http.post(
        f"{base_url}/v1/models/iris/versions/7/predict", json={"data": [SETOSA]}, timeout=30
    )
    assert_detail(resp, 404)


def test_predict_unknown_model_is_404(http, base_url):
    resp = http.post(
        f"{base_url}/v1/models/no_such_model/predict", json={"data": [SETOSA]}, timeout=30
    )
    assert_detail(resp, 404)


def test_predict_ignores_unknown_fields_and_takes_an_integer_id(http, base_url):
    """As Pinferencia's pydantic model: unknown fields are ignored, an integer
    `id` is read as its text."""
    resp = http.post(
        f"{base_url}/v1/models/iris/predict",
        json={"id": 7, "data": [SETOSA], "extra": 1, "parameters": None},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["id"] == "7" and resp.json()["data"][0]["label"] == 0, resp.json()
    resp = http.post(f"{base_url}/v1/models/iris/predict", json={"id": [7], "data": [SETOSA]}, timeout=30)
    assert_detail(resp, 422)
    assert "id" in str(resp.json()["detail"])


def test_predict_without_data_is_422(http, base_url):
    resp = http.post(f"{base_url}/v1/models/iris/predict", json={"id": "x"}, timeout=30)
    assert_detail(resp, 422)
    assert "data" in str(resp.json()["detail"])


def test_predict_malformed_json_is_422(http, base_url):
    resp = http.post(
        f"{base_url}/v1/models/iris/predict",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert_detail(resp, 422)


def test_predict_bad_rows_is_422(http, base_url):
    resp = http.post(
        f"{base_url}/v1/models/iris/predict", json={"data": [[1.0, 2.0]]}, timeout=30
    )
    assert_detail(resp, 422)


# --- kserve flavour: infer ------------------------------------------------------


def test_kserve_infer_unversioned(http, base_url, iris_rows):
    resp = http.post(
        f"{base_url}/v1/models/iris/infer",
        json={"id": "k", "instances": iris_rows},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["id"] == "k"
    assert body["model_name"] == "iris"
    assert "model_version" not in body
    assert [p["label"] for p in body["predictions"]] == IRIS_LABELS


@pytest.mark.parametrize("version", ["1", "default"])
def test_kserve_infer_versioned(http, base_url, iris_rows, version):
    # On the versioned path the answer names the version that served it.
    resp = http.post(
        f"{base_url}/v1/models/iris/versions/{version}/infer",
        json={"instances": iris_rows},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model_name"] == "iris"
    assert body["model_version"] == "1"
    assert "id" not in body
    assert [p["label"] for p in body["predictions"]] == IRIS_LABELS


def test_kserve_infer_columnar_inputs_are_refused(http, base_url, iris_rows):
    # Pinferencia's kserve V1 takes only `instances` (extra=forbid).
    resp = http.post(
        f"{base_url}/v1/models/iris/infer", json={"inputs": {"X": iris_rows}}, timeout=30
    )
    assert_detail(resp, 422)


def test_kserve_infer_unknown_model_is_404(http, base_url):
    resp = http.post(
        f"{base_url}/v1/models/no_such_model/infer", json={"instances": [SETOSA]}, timeout=30
    )
    assert_detail(resp, 404)


# --- load and unload ------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["v1", "v2"])
def test_load_already_loaded_is_400(http, base_url, prefix):
    resp = http.post(f"{base_url}/{prefix}/models/iris/load", timeout=60)
    assert_detail(resp, 400, "Model already loaded.")


def test_load_unknown_model_is_404(http, base_url):
    resp = http.post(f"{base_url}/v1/models/no_such_model/load", timeout=60)
    assert_detail(resp, 404)


@pytest.mark.parametrize("prefix", ["v1", "v2"])
def test_unload_predict_load(http, base_url, digits_row, digits_restored, prefix):
    models = f"{base_url}/{prefix}/models/digits"
    resp = http.post(f"{models}/unload", timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.json() is True

    resp = http.post(f"{models}/unload", timeout=60)
    assert_detail(resp, 400, "Model is not loaded.")

    resp = http.get(f"{base_url}/v1/models/digits/ready", timeout=10)
    assert resp.status_code == 200
    assert resp.json() is False

    resp = http.post(f"{base_url}/v1/models/digits/predict", json={"data": [digits_row]}, timeout=30)
    assert_detail(resp, 400, "Model is not loaded. Load the model first.")

    resp = http.post(f"{base_url}/v1/models/digits/infer", json={"instances": [digits_row]}, timeout=30)
    assert_detail(resp, 400, "Model is not loaded. Load the model first.")

    resp = http.post(f"{models}/load", timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.json() is True

    resp = http.get(f"{base_url}/v1/models/digits/ready", timeout=10)
    assert resp.json() is True
    resp = http.post(f"{base_url}/v1/models/digits/predict", json={"data": [digits_row]}, timeout=30)
    assert resp.status_code == 200, resp.text
    (probs,) = resp.json()["data"]
    assert probs.index(max(probs)) == 0


def test_versioned_unload_and_load(http, base_url, digits_restored):
    resp = http.post(f"{base_url}/v1/models/digits/versions/1/unload", timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.json() is True
    assert http.get(f"{base_url}/v1/models/digits/versions/1/ready", timeout=10).json() is False
    resp = http.post(f"{base_url}/v2/models/digits/versions/1/load", timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.json() is True
    assert http.get(f"{base_url}/v1/models/digits/versions/1/ready", timeout=10).json() is True
