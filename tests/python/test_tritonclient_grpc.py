"""inferd seen through NVIDIA's gRPC client, tritonclient.grpc, on its gRPC port.

What a Triton user does over gRPC: health, metadata, config, inference (unary,
async and streamed), the repository, statistics, and the errors the client
raises, each with the gRPC status code Triton would give.
"""

import os
import queue

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from conftest import IRIS_LABELS, IRIS_ROWS


@pytest.fixture(scope="module")
def client():
    url = os.environ.get("INFERD_GRPC_URL")
    if not url:
        pytest.skip("INFERD_GRPC_URL is not set: give the server's gRPC host:port (--grpc-port)")
    c = grpcclient.InferenceServerClient(url=url)
    yield c
    c.close()


def iris_inputs():
    x = grpcclient.InferInput("X", [2, 4], "FP32")
    x.set_data_from_numpy(np.array(IRIS_ROWS, dtype=np.float32))
    return [x]


def check_iris(result):
    labels = result.as_numpy("label")
    probs = result.as_numpy("probabilities")
    assert labels.dtype == np.int64
    assert labels.tolist() == IRIS_LABELS
    assert probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(axis=1), [1.0, 1.0], atol=1e-5)


def status_of(excinfo):
    return excinfo.value.status()


# --- server and models ------------------------------------------------------------


def test_server_is_live_and_ready(client):
    assert client.is_server_live()
    assert client.is_server_ready()


def test_server_metadata(client):
    meta = client.get_server_metadata(as_json=True)
    assert meta["name"] == "inferd"
    assert meta["version"]
    for ext in ["model_repository", "statistics", "model_configuration"]:
        assert ext in meta["extensions"], ext


def test_model_readiness(client):
    assert client.is_model_ready("iris")
    assert client.is_model_ready("iris", "1")
    assert not client.is_model_ready("no_such_model")


def test_model_metadata(client):
    meta = client.get_model_metadata("iris", as_json=True)
    assert meta["name"] == "iris"
    assert meta["versions"] == ["1"]
    x = meta["inputs"][0]
    assert (x["name"], x["datatype"], x["shape"]) == ("X", "FP32", ["-1", "4"])
    outputs = {o["name"]: o["datatype"] for o in meta["outputs"]}
    assert outputs == {"label": "INT64", "probabilities": "FP32"}


def test_model_config(client):
    config = client.get_model_config("iris").config
    assert config.name == "iris"
    assert config.max_batch_size > 0
    assert config.input[0].name == "X"
    assert list(config.input[0].dims) == [4]
    assert grpcclient.model_config_pb2.DataType.Name(config.input[0].data_type) == "TYPE_FP32"
    assert config.instance_group[0].count >= 1
    identity = client.get_model_config("identity", as_json=True)["config"]
    assert identity["name"] == "identity"


# --- inference --------------------------------------------------------------------


def test_iris_infer(client):
    result = client.infer("iris", iris_inputs(), request_id="grpc-1")
    check_iris(result)
    response = result.get_response()
    assert response.id == "grpc-1"
    assert response.model_name == "iris"
    assert response.model_version == "1"


def test_only_requested_output(client):
    outputs = [grpcclient.InferRequestedOutput("label")]
    result = client.infer("iris", iris_inputs(), outputs=outputs)
    assert result.as_numpy("label").tolist() == IRIS_LABELS
    assert result.as_numpy("probabilities") is None


def test_digits_sample_is_zero(client, digits_row):
    x = grpcclient.InferInput("input", [1, 64], "FP32")
    x.set_data_from_numpy(np.array([digits_row], dtype=np.float32))
    probs = client.infer("digits", [x]).as_numpy("probabilities")
    assert probs.shape == (1, 10)
    assert int(probs.argmax()) == 0


def test_add_sub_int32(client):
    a = np.arange(16, dtype=np.int32)
    b = np.ones(16, dtype=np.int32)
    inputs = [grpcclient.InferInput("INPUT0", [16], "INT32"), grpcclient.InferInput("INPUT1", [16], "INT32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    result = client.infer("add_sub", inputs)
    assert result.as_numpy("OUTPUT0").tolist() == (a + b).tolist()
    assert result.as_numpy("OUTPUT1").tolist() == (a - b).tolist()


def test_bytes_round_trip_through_identity(client):
    words = np.array([b"hello", b"", "zaïre".encode(), b"\xff\x00"], dtype=np.object_)
    x = grpcclient.InferInput("INPUT0", [4], "BYTES")
    x.set_data_from_numpy(words)
    out = client.infer("identity", [x]).as_numpy("OUTPUT0")
    assert out.tolist() == words.tolist()


@pytest.mark.parametrize(
    "dtype,triton",
    [(np.float16, "FP16"), (np.float64, "FP64"), (np.int8, "INT8"), (np.uint16, "UINT16"), (np.uint64, "UINT64"), (np.bool_, "BOOL")],
)
def test_identity_keeps_datatype(client, dtype, triton):
    data = (np.arange(6).reshape(2, 3) % 2 == 0) if dtype is np.bool_ else np.arange(6, dtype=dtype).reshape(2, 3)
    x = grpcclient.InferInput("INPUT0", [2, 3], triton)
    x.set_data_from_numpy(data.astype(dtype))
    result = client.infer("identity", [x])
    out = result.as_numpy("OUTPUT0")
    assert out.dtype == dtype
    assert out.tolist() == data.tolist()


def test_message_over_grpcs_4mib_default_is_served(client):
    data = np.arange(1_500_000, dtype=np.float32)  # 6 MB
    x = grpcclient.InferInput("INPUT0", [data.size], "FP32")
    x.set_data_from_numpy(data)
    out = client.infer("identity", [x]).as_numpy("OUTPUT0")
    assert out.shape == data.shape
    assert out[-1] == data[-1]


def test_async_infer(client):
    done = queue.Queue()
    client.async_infer("iris", iris_inputs(), callback=lambda result, error: done.put((result, error)))
    result, error = done.get(timeout=30)
    assert error is None
    check_iris(result)


def test_stream_answers_every_request_and_reports_errors_in_band(client):
    answers = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        client.async_stream_infer("iris", iris_inputs(), request_id="s-1")
        bad = grpcclient.InferInput("X", [1, 3], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
        client.async_stream_infer("iris", [bad], request_id="s-2")
        client.async_stream_infer("iris", iris_inputs(), request_id="s-3")
        got = [answers.get(timeout=30) for _ in range(3)]
    finally:
        client.stop_stream()
    (first, e1), (second, e2), (third, e3) = got
    assert e1 is None and e3 is None
    check_iris(first)
    check_iris(third)
    assert first.get_response().id == "s-1"
    assert third.get_response().id == "s-3"
    assert second is None
    assert "X" in e2.message()


# --- repository and statistics ----------------------------------------------------


def test_repository_index_and_unload_then_load(client, digits_row):
    index = client.get_model_repository_index(as_json=True)["models"]
    names = {m["name"] for m in index}
    assert {"iris", "digits", "add_sub", "identity"} <= names
    client.unload_model("digits")
    try:
        assert not client.is_model_ready("digits")
        x = grpcclient.InferInput("input", [1, 64], "FP32")
        x.set_data_from_numpy(np.array([digits_row], dtype=np.float32))
        with pytest.raises(InferenceServerException) as e:
            client.infer("digits", [x])
        assert status_of(e) == "StatusCode.UNAVAILABLE"
    finally:
        client.load_model("digits")
    assert client.is_model_ready("digits")


def test_load_with_config_override_is_refused(client):
    with pytest.raises(InferenceServerException) as e:
        client.load_model("iris", config='{"max_batch_size": 2}')
    assert status_of(e) == "StatusCode.INVALID_ARGUMENT"
    assert "config" in e.value.message()


def test_statistics_count_inferences(client):
    before = client.get_inference_statistics("iris").model_stats[0].inference_count
    client.infer("iris", iris_inputs())
    stats = client.get_inference_statistics("iris", as_json=True)["model_stats"][0]
    assert stats["name"] == "iris"
    assert int(stats["inference_count"]) == before + 2
    assert int(stats["inference_stats"]["success"]["count"]) >= 1


# --- errors -----------------------------------------------------------------------


def test_unknown_model_is_not_found(client):
    with pytest.raises(InferenceServerException) as e:
        client.infer("no_such_model", iris_inputs())
    assert status_of(e) == "StatusCode.NOT_FOUND"
    assert "no_such_model" in e.value.message()


def test_wrong_datatype_is_invalid_argument(client):
    x = grpcclient.InferInput("X", [2, 4], "FP64")
    x.set_data_from_numpy(np.array(IRIS_ROWS, dtype=np.float64))
    with pytest.raises(InferenceServerException) as e:
        client.infer("iris", [x])
    assert status_of(e) == "StatusCode.INVALID_ARGUMENT"


def test_wrong_shape_is_invalid_argument(client):
    x = grpcclient.InferInput("X", [1, 8], "FP32")
    x.set_data_from_numpy(np.zeros((1, 8), dtype=np.float32))
    with pytest.raises(InferenceServerException) as e:
        client.infer("iris", [x])
    assert status_of(e) == "StatusCode.INVALID_ARGUMENT"
    assert "X" in e.value.message()


def test_unknown_output_is_refused(client):
    outputs = [grpcclient.InferRequestedOutput("nope")]
    with pytest.raises(InferenceServerException) as e:
        client.infer("iris", iris_inputs(), outputs=outputs)
    assert status_of(e) == "StatusCode.INVALID_ARGUMENT"
    assert "nope" in e.value.message()


def test_unimplemented_extension_says_so(client):
    with pytest.raises(InferenceServerException) as e:
        client.get_system_shared_memory_status()
    assert status_of(e) == "StatusCode.UNIMPLEMENTED"


def test_server_still_answers_after_errors(client):
    check_iris(client.infer("iris", iris_inputs()))
