"""inferd seen through NVIDIA's own HTTP client, tritonclient.http.

Everything here is what a Triton user would do against a Triton server: health,
metadata, config, inference with JSON and with binary tensors, the repository,
statistics, and the errors the client raises.
"""

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import IRIS_LABELS, IRIS_ROWS, MODELS


@pytest.fixture(scope="module")
def client(host_port):
    c = httpclient.InferenceServerClient(url=host_port)
    yield c
    c.close()


def iris_input(binary):
    x = httpclient.InferInput("X", [2, 4], "FP32")
    x.set_data_from_numpy(np.array(IRIS_ROWS, dtype=np.float32), binary_data=binary)
    return x


def check_iris(result):
    labels = result.as_numpy("label")
    probs = result.as_numpy("probabilities")
    assert labels.dtype == np.int64
    assert labels.tolist() == IRIS_LABELS
    assert probs.dtype == np.float32
    assert probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(axis=1), [1.0, 1.0], atol=1e-5)
    assert probs.argmax(axis=1).tolist() == IRIS_LABELS


# --- server ---------------------------------------------------------------------


def test_server_is_live_and_ready(client):
    assert client.is_server_live()
    assert client.is_server_ready()


def test_server_metadata_lists_extensions(client):
    meta = client.get_server_metadata()
    assert meta["name"]
    assert meta["version"]
    for ext in ["binary_tensor_data", "model_repository", "statistics", "model_configuration"]:
        assert ext in meta["extensions"], ext


# --- models ---------------------------------------------------------------------


def test_model_ready(client):
    assert client.is_model_ready("iris")
    assert client.is_model_ready("iris", model_version="1")


def test_unknown_model_is_not_ready(client):
    assert not client.is_model_ready("no_such_model")


def test_model_metadata(client):
    meta = client.get_model_metadata("iris")
    assert meta["name"] == "iris"
    assert "1" in meta["versions"]
    assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
    outputs = {o["name"]: o for o in meta["outputs"]}
    assert outputs["label"]["datatype"] == "INT64"
    assert outputs["label"]["shape"] == [-1]
    assert outputs["probabilities"]["datatype"] == "FP32"
    assert outputs["probabilities"]["shape"] == [-1, 3]


def test_model_config(client):
    iris = client.get_model_config("iris")
    assert iris["name"] == "iris"
    assert iris["max_batch_size"] == 64
    assert [i["name"] for i in iris["input"]] == ["X"]
    assert iris["input"][0]["data_type"] == "TYPE_FP32"
    # With batching, Triton's dims leave out the batch dimension.
    assert iris["input"][0]["dims"] == [4]

    digits = client.get_model_config("digits")
    assert digits["max_batch_size"] == 64
    assert digits["input"][0]["name"] == "input"
    assert digits["input"][0]["dims"] == [64]
    assert digits["output"][0]["dims"] == [10]

    add_sub = client.get_model_config("add_sub")
    assert add_sub["max_batch_size"] == 0
    assert add_sub["input"][0]["dims"] == [16]


# --- inference ------------------------------------------------------------------


def test_iris_json_in_json_out(client):
    outputs = [
        httpclient.InferRequestedOutput("label", binary_data=False),
        httpclient.InferRequestedOutput("probabilities", binary_data=False),
    ]
    result = client.infer("iris", [iris_input(binary=False)], outputs=outputs)
    for out in result.get_response()["outputs"]:
        assert "data" in out, "JSON output expected"
    check_iris(result)


def test_iris_binary_in_binary_out(client):
    outputs = [
        httpclient.InferRequestedOutput("label", binary_data=True),
        httpclient.InferRequestedOutput("probabilities", binary_data=True),
    ]
    result = client.infer("iris", [iris_input(binary=True)], outputs=outputs)
    for out in result.get_response()["outputs"]:
        assert "binary_data_size" in out["parameters"], "binary output expected"
    check_iris(result)


def test_iris_all_outputs_by_default(client):
    result = client.infer("iris", [iris_input(binary=True)])
    names = sorted(o["name"] for o in result.get_response()["outputs"])
    assert names == ["label", "probabilities"]
    check_iris(result)


def test_iris_only_requested_output(client):
    outputs = [httpclient.InferRequestedOutput("probabilities")]
    result = client.infer("iris", [iris_input(binary=True)], outputs=outputs)
    names = [o["name"] for o in result.get_response()["outputs"]]
    assert names == ["probabilities"]
    assert result.as_numpy("label") is None
    assert result.as_numpy("probabilities").argmax(axis=1).tolist() == IRIS_LABELS


def test_digits_sample_is_zero(client, digits_row):
    x = httpclient.InferInput("input", [1, 64], "FP32")
    x.set_data_from_numpy(np.array([digits_row], dtype=np.float32))
    probs = client.infer("digits", [x]).as_numpy("probabilities")
    assert probs.shape == (1, 10)
    assert int(probs[0].argmax()) == 0


def test_request_id_is_echoed(client):
    result = client.infer("iris", [iris_input(binary=True)], request_id="req-42")
    assert result.get_response()["id"] == "req-42"
    assert result.get_response()["model_name"] == "iris"


def test_add_sub_int32(client):
    a = np.arange(16, dtype=np.int32)
    b = np.full(16, 3, dtype=np.int32) * np.arange(16, dtype=np.int32)[::-1]
    in0 = httpclient.InferInput("INPUT0", [16], "INT32")
    in0.set_data_from_numpy(a)
    in1 = httpclient.InferInput("INPUT1", [16], "INT32")
    in1.set_data_from_numpy(b, binary_data=False)
    result = client.infer("add_sub", [in0, in1])
    sum_, diff = result.as_numpy("OUTPUT0"), result.as_numpy("OUTPUT1")
    assert sum_.dtype == np.int32 and diff.dtype == np.int32
    np.testing.assert_array_equal(sum_, a + b)
    np.testing.assert_array_equal(diff, a - b)


BYTES_VALUES = [b"hello", b"", "h\u00e9llo w\u00f6rld \u2603".encode(), b"tab\tand\nnewline"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_bytes_round_trip_through_identity(client, binary):
    data = np.array(BYTES_VALUES, dtype=np.object_).reshape(2, 2)
    x = httpclient.InferInput("INPUT0", [2, 2], "BYTES")
    x.set_data_from_numpy(data, binary_data=binary)
    out = [httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary)]
    result = client.infer("identity", [x], outputs=out)
    got = result.as_numpy("OUTPUT0")
    assert got.shape == (2, 2)
    assert result.get_response()["outputs"][0]["datatype"] == "BYTES"
    # Binary answers decode to bytes, JSON answers to str.
    as_bytes = [v if isinstance(v, bytes) else v.encode() for v in got.flatten()]
    assert as_bytes == BYTES_VALUES


def test_non_utf8_bytes_round_trip_in_binary(client):
    data = np.array([bytes(range(256)), b"\xff\xfe\x00"], dtype=np.object_)
    x = httpclient.InferInput("INPUT0", [2], "BYTES")
    x.set_data_from_numpy(data, binary_data=True)
    out = [httpclient.InferRequestedOutput("OUTPUT0", binary_data=True)]
    got = client.infer("identity", [x], outputs=out).as_numpy("OUTPUT0")
    assert got.tolist() == data.tolist()


@pytest.mark.parametrize(
    "dtype,triton",
    [(np.float64, "FP64"), (np.int8, "INT8"), (np.uint16, "UINT16"), (np.bool_, "BOOL"), (np.float16, "FP16")],
)
def test_identity_keeps_datatype(client, dtype, triton):
    data = (np.arange(6) % 2 == 0) if dtype is np.bool_ else np.arange(6).astype(dtype)
    data = data.reshape(3, 2)
    x = httpclient.InferInput("INPUT0", [3, 2], triton)
    x.set_data_from_numpy(data)
    result = client.infer("identity", [x])
    assert result.get_response()["outputs"][0]["datatype"] == triton
    got = result.as_numpy("OUTPUT0")
    assert got.dtype == data.dtype
    np.testing.assert_array_equal(got, data)


def test_concurrent_requests_get_their_own_answers(client, host_port):
    # Dynamic batching merges requests; each caller must still get its own rows.
    rng = np.random.default_rng(7)
    lows, highs = [4.3, 2.0, 1.0, 0.1], [7.9, 4.4, 6.9, 2.5]
    batches = [rng.uniform(lows, highs, size=(1 + i % 3, 4)).astype(np.float32) for i in range(60)]

    def request(rows):
        x = httpclient.InferInput("X", list(rows.shape), "FP32")
        x.set_data_from_numpy(rows)
        return x

    expected = [client.infer("iris", [request(rows)]) for rows in batches]
    with httpclient.InferenceServerClient(url=host_port, concurrency=16) as many:
        pending = [
            many.async_infer("iris", [request(rows)], request_id=str(i))
            for i, rows in enumerate(batches)
        ]
        results = [p.get_result() for p in pending]
    for i, (want, got) in enumerate(zip(expected, results)):
        assert got.get_response()["id"] == str(i)
        assert got.as_numpy("label").tolist() == want.as_numpy("label").tolist()
        np.testing.assert_allclose(
            got.as_numpy("probabilities"), want.as_numpy("probabilities"), rtol=1e-4, atol=1e-6
        )


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_request_body(client, algorithm):
    # tritonclient can compress the request (Content-Encoding: gzip|deflate), which
    # Triton decodes. A server that does not must refuse it saying so (HTTP 415),
    # not parse the compressed bytes as JSON.
    try:
        result = client.infer(
            "iris", [iris_input(binary=True)], request_compression_algorithm=algorithm
        )
    except InferenceServerException as e:
        message = str(e).lower()
        assert algorithm in message or "encoding" in message, str(e)
    else:
        check_iris(result)


def test_compressed_response_body(client):
    # Asking for a gzip answer (Accept-Encoding) must work whether or not the
    # server compresses.
    result = client.infer("iris", [iris_input(binary=True)], response_compression_algorithm="gzip")
    check_iris(result)


def test_schedule_policy_parameters(client):
    # `priority` and `timeout` (microseconds) are the schedule_policy extension.
    result = client.infer("iris", [iris_input(binary=True)], priority=1, timeout=10_000_000)
    check_iris(result)


def test_timeout_zero_means_no_timeout(client):
    # In Triton a request timeout of 0 means "no timeout", not "already expired".
    result = client.infer("iris", [iris_input(binary=True)], timeout=0)
    check_iris(result)


# --- repository and statistics --------------------------------------------------


def test_repository_index_lists_every_model_ready(client):
    index = client.get_model_repository_index()
    states = {row["name"]: row["state"] for row in index}
    for model in MODELS:
        assert states.get(model) == "READY", (model, index)


def test_unload_then_load(client, digits_row):
    x = httpclient.InferInput("input", [1, 64], "FP32")
    x.set_data_from_numpy(np.array([digits_row], dtype=np.float32))
    try:
        client.unload_model("digits")
        assert not client.is_model_ready("digits")
        with pytest.raises(InferenceServerException):
            client.infer("digits", [x])
        index = {row["name"]: row["state"] for row in client.get_model_repository_index()}
        assert index["digits"] != "READY"
        # Other models are unaffected.
        assert client.is_model_ready("iris")
    finally:
        client.load_model("digits")
    assert client.is_model_ready("digits")
    probs = client.infer("digits", [x]).as_numpy("probabilities")
    assert int(probs[0].argmax()) == 0


def test_unloaded_model_is_unavailable_in_index(client):
    # Triton's index states are UNKNOWN, READY, UNAVAILABLE, LOADING and
    # UNLOADING; an unloaded model is UNAVAILABLE with the reason "unloaded".
    try:
        client.unload_model("digits")
        rows = [r for r in client.get_model_repository_index() if r["name"] == "digits"]
        assert rows, "digits disappeared from the index"
        for row in rows:
            assert row["state"] == "UNAVAILABLE", row
            assert row["reason"], row
    finally:
        client.load_model("digits")
    assert client.is_model_ready("digits")


def test_load_with_config_override_is_refused(client):
    with pytest.raises(InferenceServerException) as e:
        client.load_model("iris", config='{"max_batch_size": 8}')
    assert "config" in str(e.value)
    assert client.is_model_ready("iris")


def test_statistics_count_inferences(client):
    def count():
        stats = client.get_inference_statistics("iris")
        rows = [s for s in stats["model_stats"] if s["name"] == "iris"]
        assert rows, stats
        return sum(int(s["inference_count"]) for s in rows), sum(
            int(s["inference_stats"]["success"]["count"]) for s in rows
        )

    before, before_ok = count()
    client.infer("iris", [iris_input(binary=True)])
    after, after_ok = count()
    # inference_count counts batch items (two rows here); success counts requests.
    assert after >= before + 2
    assert after_ok >= before_ok + 1


def test_statistics_for_all_models(client):
    stats = client.get_inference_statistics()
    names = {s["name"] for s in stats["model_stats"]}
    assert set(MODELS) <= names


# --- errors ---------------------------------------------------------------------


def test_unknown_model_raises(client):
    x = httpclient.InferInput("X", [1, 4], "FP32")
    x.set_data_from_numpy(np.zeros((1, 4), dtype=np.float32))
    with pytest.raises(InferenceServerException) as e:
        client.infer("no_such_model", [x])
    assert "no_such_model" in str(e.value)
    with pytest.raises(InferenceServerException) as e:
        client.get_model_metadata("no_such_model")
    assert "no_such_model" in str(e.value)


def test_wrong_datatype_raises(client):
    x = httpclient.InferInput("X", [1, 4], "INT32")
    x.set_data_from_numpy(np.array([[5, 3, 1, 0]], dtype=np.int32))
    with pytest.raises(InferenceServerException) as e:
        client.infer("iris", [x])
    assert "INT32" in str(e.value)
    assert "FP32" in str(e.value)


def test_wrong_shape_raises(client):
    x = httpclient.InferInput("X", [1, 5], "FP32")
    x.set_data_from_numpy(np.zeros((1, 5), dtype=np.float32))
    with pytest.raises(InferenceServerException) as e:
        client.infer("iris", [x])
    assert "X" in str(e.value)


def test_unknown_output_raises(client):
    out = [httpclient.InferRequestedOutput("nope")]
    with pytest.raises(InferenceServerException) as e:
        client.infer("iris", [iris_input(binary=True)], outputs=out)
    assert "nope" in str(e.value)


def test_batch_larger_than_max_batch_size_raises(client):
    x = httpclient.InferInput("X", [65, 4], "FP32")
    x.set_data_from_numpy(np.zeros((65, 4), dtype=np.float32))
    with pytest.raises(InferenceServerException) as e:
        client.infer("iris", [x])
    assert "64" in str(e.value)
