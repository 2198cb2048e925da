"""The Open Inference Protocol (KServe V2) over raw REST, with Triton's binary
tensor extension built by hand: corner cases a client library would hide.

A binary request is a JSON header followed by the raw little-endian bytes of
each input that names a `binary_data_size`, in order; the header's length goes
in `Inference-Header-Content-Length`. Answers with binary outputs are built the
same way.

Every bad request must get a 4xx with `{"error": "..."}` that names the
problem, and must leave the server able to answer the next good request.
"""

import json
import struct
import threading
import time

import numpy as np
import pytest
import requests

from conftest import IRIS_LABELS, IRIS_ROWS

HEADER = "Inference-Header-Content-Length"

NP_TYPES = {
    "BOOL": np.bool_,
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}


# --- helpers --------------------------------------------------------------------


def iris_json_request(rows=IRIS_ROWS, **extra):
    flat = [v for row in rows for v in row]
    body = {
        "inputs": [{"name": "X", "shape": [len(rows), 4], "datatype": "FP32", "data": flat}]
    }
    body.update(extra)
    return body


def infer_url(base_url, model="iris"):
    return f"{base_url}/v2/models/{model}/infer"


def post_binary(http, url, header, *blobs, header_length=None):
    """Posts a JSON header plus raw tensor bytes, as tritonclient does."""
    head = json.dumps(header).encode()
    n = len(head) if header_length is None else header_length
    return http.post(
        url,
        data=head + b"".join(blobs),
        headers={HEADER: str(n), "Content-Type": "application/octet-stream"},
        timeout=60,
    )


def bytes_tensor(values):
    """BYTES in raw form: each element a 4-byte little-endian length + bytes."""
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


def decode_bytes_tensor(raw):
    out, i = [], 0
    while i < len(raw):
        (n,) = struct.unpack_from("<I", raw, i)
        out.append(raw[i + 4 : i + 4 + n])
        i += 4 + n
    return out


def decode_response(resp):
    """The JSON header and {name: numpy array | list of bytes} of an answer, binary or not."""
    assert resp.status_code == 200, resp.text
    content = resp.content
    n = int(resp.headers.get(HEADER, len(content)))
    header = json.loads(content[:n])
    tensors, offset = {}, n
    for out in header["outputs"]:
        size = (out.get("parameters") or {}).get("binary_data_size")
        if size is None:
            if out["datatype"] == "BYTES":
                tensors[out["name"]] = [s.encode() for s in out["data"]]
            else:
                arr = np.array(out["data"], dtype=NP_TYPES[out["datatype"]])
                tensors[out["name"]] = arr.reshape(out["shape"])
            continue
        raw = content[offset : offset + size]
        offset += size
        if out["datatype"] == "BYTES":
            tensors[out["name"]] = decode_bytes_tensor(raw)
        else:
            arr = np.frombuffer(raw, dtype=NP_TYPES[out["datatype"]])
            tensors[out["name"]] = arr.reshape(out["shape"])
    assert offset == len(content), "binary outputs do not add up to the body"
    return header, tensors


def check_iris(tensors, n=2):
    assert tensors["label"].tolist() == IRIS_LABELS[:n]
    probs = tensors["probabilities"]
    assert probs.shape == (n, 3)
    np.testing.assert_allclose(probs.sum(axis=1), np.ones(n), atol=1e-5)


def assert_good_iris_still_works(http, base_url):
    resp = http.post(infer_url(base_url), json=iris_json_request(), timeout=30)
    _, tensors = decode_response(resp)
    check_iris(tensors)


# --- health ---------------------------------------------------------------------


def test_health_live(http, base_url):
    resp = http.get(f"{base_url}/v2/health/live", timeout=10)
    assert resp.status_code == 200
    assert resp.json() == {"live": True}


def test_health_ready(http, base_url):
    resp = http.get(f"{base_url}/v2/health/ready", timeout=10)
    assert resp.status_code == 200
    assert resp.json() == {"ready": True}


def test_model_ready(http, base_url):
    resp = http.get(f"{base_url}/v2/models/iris/ready", timeout=10)
    assert resp.status_code == 200
    assert resp.json() == {"name": "iris", "ready": True}


def test_unknown_model_ready_is_404(http, base_url):
    resp = http.get(f"{base_url}/v2/models/no_such_model/ready", timeout=10)
    assert resp.status_code == 404
    assert "no_such_model" in resp.json()["error"]


def test_server_metadata(http, base_url):
    body = http.get(f"{base_url}/v2", timeout=10).json()
    assert body["name"] and body["version"]
    assert "binary_tensor_data" in body["extensions"]


# --- JSON inference -------------------------------------------------------------


def test_nested_and_flat_data_agree(http, base_url):
    flat = http.post(infer_url(base_url), json=iris_json_request(), timeout=30)
    nested_body = iris_json_request()
    nested_body["inputs"][0]["data"] = IRIS_ROWS
    nested = http.post(infer_url(base_url), json=nested_body, timeout=30)
    assert flat.status_code == nested.status_code == 200
    assert flat.json()["outputs"] == nested.json()["outputs"]
    _, tensors = decode_response(nested)
    check_iris(tensors)


def test_response_echoes_model_and_id(http, base_url):
    resp = http.post(infer_url(base_url), json=iris_json_request(id="abc-1"), timeout=30)
    body = resp.json()
    assert body["id"] == "abc-1"
    assert body["model_name"] == "iris"
    assert body["model_version"] == "1"
    outs = {o["name"]: o for o in body["outputs"]}
    assert outs["label"]["datatype"] == "INT64" and outs["label"]["shape"] == [2]
    assert outs["probabilities"]["datatype"] == "FP32"
    assert outs["probabilities"]["shape"] == [2, 3]


def test_versioned_infer(http, base_url):
    resp = http.post(f"{base_url}/v2/models/iris/versions/1/infer", json=iris_json_request(), timeout=30)
    _, tensors = decode_response(resp)
    check_iris(tensors)


def test_unknown_version_is_404(http, base_url):
    resp = http.post(f"{base_url}/v2/models/iris/versions/9/infer", json=iris_json_request(), timeout=30)
    assert resp.status_code == 404
    assert "9" in resp.json()["error"]


def test_outputs_selection(http, base_url):
    body = iris_json_request(outputs=[{"name": "label"}])
    resp = http.post(infer_url(base_url), json=body, timeout=30)
    header, tensors = decode_response(resp)
    assert [o["name"] for o in header["outputs"]] == ["label"]
    assert tensors["label"].tolist() == IRIS_LABELS


def test_empty_outputs_list_means_all_outputs(http, base_url):
    # As in Triton (and gRPC, where an empty list cannot be told from none), an
    # empty `outputs` list asks for every output.
    body = iris_json_request(outputs=[])
    header, tensors = decode_response(http.post(infer_url(base_url), json=body, timeout=30))
    assert sorted(o["name"] for o in header["outputs"]) == ["label", "probabilities"]
    check_iris(tensors)


def test_add_sub_json(http, base_url):
    a, b = list(range(16)), [2] * 16
    body = {
        "inputs": [
            {"name": "INPUT0", "shape": [16], "datatype": "INT32", "data": a},
            {"name": "INPUT1", "shape": [16], "datatype": "INT32", "data": b},
        ]
    }
    _, t = decode_response(http.post(infer_url(base_url, "add_sub"), json=body, timeout=30))
    assert t["OUTPUT0"].tolist() == [x + 2 for x in a]
    assert t["OUTPUT1"].tolist() == [x - 2 for x in a]


def test_empty_batch_is_refused(http, base_url):
    body = iris_json_request(rows=[])
    resp = http.post(infer_url(base_url), json=body, timeout=30)
    assert resp.status_code == 400, resp.text
    assert "at least one row" in resp.json()["error"]


# --- binary tensor data ---------------------------------------------------------


def test_binary_input_json_output(http, base_url):
    raw = np.array(IRIS_ROWS, dtype="<f4").tobytes()
    header = {
        "id": "bin-in",
        "inputs": [
            {"name": "X", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": len(raw)}}
        ],
    }
    resp = post_binary(http, infer_url(base_url), header, raw)
    assert HEADER.lower() not in {k.lower() for k in resp.headers}
    header, tensors = decode_response(resp)
    assert header["id"] == "bin-in"
    check_iris(tensors)


def test_binary_data_output_for_all_outputs(http, base_url):
    body = iris_json_request(parameters={"binary_data_output": True})
    resp = http.post(infer_url(base_url), json=body, timeout=30)
    assert resp.status_code == 200, resp.text
    assert int(resp.headers[HEADER]) < len(resp.content)
    header, tensors = decode_response(resp)
    sizes = {o["name"]: o["parameters"]["binary_data_size"] for o in header["outputs"]}
    assert sizes == {"label": 2 * 8, "probabilities": 2 * 3 * 4}
    assert all("data" not in o for o in header["outputs"])
    check_iris(tensors)


def test_per_output_binary_flag_overrides_request_flag(http, base_url):
    body = iris_json_request(
        parameters={"binary_data_output": True},
        outputs=[
            {"name": "label", "parameters": {"binary_data": False}},
            {"name": "probabilities"},
        ],
    )
    header, tensors = decode_response(http.post(infer_url(base_url), json=body, timeout=30))
    outs = {o["name"]: o for o in header["outputs"]}
    assert outs["label"]["data"] == IRIS_LABELS
    assert "binary_data_size" in outs["probabilities"]["parameters"]
    check_iris(tensors)


def test_binary_in_and_out_mixed_with_json_input(http, base_url):
    a = np.arange(16, dtype="<i4")
    b = np.arange(16, dtype="<i4")[::-1].copy()
    header = {
        "inputs": [
            {"name": "INPUT0", "shape": [16], "datatype": "INT32", "parameters": {"binary_data_size": 64}},
            {"name": "INPUT1", "shape": [16], "datatype": "INT32", "data": b.tolist()},
        ],
        "outputs": [
            {"name": "OUTPUT0", "parameters": {"binary_data": True}},
            {"name": "OUTPUT1", "parameters": {"binary_data": False}},
        ],
    }
    resp = post_binary(http, infer_url(base_url, "add_sub"), header, a.tobytes())
    _, t = decode_response(resp)
    assert t["OUTPUT0"].tolist() == (a + b).tolist()
    assert t["OUTPUT1"].tolist() == (a - b).tolist()


def test_binary_bytes_round_trip(http, base_url):
    values = [b"", b"abc", bytes(range(256)), "\u00e9\u2603".encode()]
    raw = bytes_tensor(values)
    header = {
        "inputs": [
            {"name": "INPUT0", "shape": [4], "datatype": "BYTES", "parameters": {"binary_data_size": len(raw)}}
        ],
        "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}],
    }
    resp = post_binary(http, infer_url(base_url, "identity"), header, raw)
    header, t = decode_response(resp)
    assert header["outputs"][0]["datatype"] == "BYTES"
    assert header["outputs"][0]["parameters"]["binary_data_size"] == len(raw)
    assert t["OUTPUT0"] == values


def test_two_binary_inputs_in_order(http, base_url):
    a = np.arange(16, dtype="<i4")
    b = np.full(16, 100, dtype="<i4")
    header = {
        "inputs": [
            {"name": "INPUT1", "shape": [16], "datatype": "INT32", "parameters": {"binary_data_size": 64}},
            {"name": "INPUT0", "shape": [16], "datatype": "INT32", "parameters": {"binary_data_size": 64}},
        ]
    }
    # INPUT1 is listed first, so its bytes come first.
    resp = post_binary(http, infer_url(base_url, "add_sub"), header, b.tobytes(), a.tobytes())
    _, t = decode_response(resp)
    assert t["OUTPUT1"].tolist() == (a - b).tolist()


# --- bad requests: each a 4xx naming the problem, and the server carries on -----


def _json(body):
    return lambda http, url: http.post(url, json=body, timeout=30)


def _raw(data, headers=None):
    hdrs = {"Content-Type": "application/json"}
    hdrs.update(headers or {})
    return lambda http, url: http.post(url, data=data, headers=hdrs, timeout=30)


def _iris_input(**changes):
    x = {"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}
    x.update(changes)
    return {"inputs": [x]}


def _binary(header, blob, header_length=None):
    return lambda http, url: post_binary(http, url, header, blob, header_length=header_length)


_RAW_X = np.array([IRIS_ROWS[0]], dtype="<f4").tobytes()


def _binary_x(size, blob=_RAW_X, datatype="FP32", shape=(1, 4), name="X"):
    header = {
        "inputs": [{"name": name, "shape": list(shape), "datatype": datatype, "parameters": {"binary_data_size": size}}]
    }
    return _binary(header, blob)


BAD_REQUESTS = [
    # (id, model, send, status, words the error must contain)
    ("malformed-json", "iris", _raw(b'{"inputs": [{"name": "X",'), 400, ["not valid"]),
    ("empty-body", "iris", _raw(b""), 400, ["empty"]),
    ("json-array-body", "iris", _raw(b"[1, 2]"), 400, []),
    ("unknown-datatype", "iris", _json(_iris_input(datatype="FP8")), 400, ["FP8"]),
    ("wrong-datatype", "iris", _json(_iris_input(datatype="INT32", data=[5, 3, 1, 0])), 400, ["INT32", "FP32"]),
    ("shape-data-mismatch", "iris", _json(_iris_input(data=[1.0, 2.0, 3.0])), 400, ["4", "3"]),
    ("too-much-data", "iris", _json(_iris_input(data=[1.0] * 8)), 400, ["8"]),
    ("negative-dim", "iris", _json(_iris_input(shape=[-1, 4])), 400, ["negative"]),
    ("wrong-shape-for-model", "iris", _json(_iris_input(shape=[2, 2])), 400, ["X"]),
    ("non-numeric-element", "iris", _json(_iris_input(data=[1.0, 2.0, 3.0, "four"])), 400, ["element 3"]),
    ("unknown-input", "iris", _json(_iris_input(name="Y")), 400, ["Y"]),
    ("missing-input", "iris", _json({"inputs": []}), 400, ["X"]),
    (
        "missing-second-input",
        "add_sub",
        _json({"inputs": [{"name": "INPUT0", "shape": [16], "datatype": "INT32", "data": list(range(16))}]}),
        400,
        ["INPUT1"],
    ),
    ("duplicate-input", "iris", _json({"inputs": _iris_input()["inputs"] * 2}), 400, ["X"]),
    ("unknown-output", "iris", _json({**_iris_input(), "outputs": [{"name": "nope"}]}), 400, ["nope"]),
    ("input-without-data", "iris", _json({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32"}]}), 400, ["X"]),
    ("batch-over-max", "iris", _json(_iris_input(shape=[65, 4], data=[0.0] * 260)), 400, ["64"]),
    ("uint8-out-of-range", "identity",
     _json({"inputs": [{"name": "INPUT0", "shape": [2], "datatype": "UINT8", "data": [1, 300]}]}), 400, ["300"]),
    ("binary-data-output-not-bool", "iris",
     _json({**_iris_input(), "parameters": {"binary_data_output": "yes"}}), 400, ["binary_data_output"]),
    ("binary-size-past-end", "iris", _binary_x(32), 400, ["binary_data_size"]),
    ("binary-size-wrong-for-shape", "iris", _binary_x(12, _RAW_X[:12]), 400, ["12"]),
    ("binary-bytes-unclaimed", "iris", _binary_x(16, _RAW_X + b"\0\0\0\0"), 400, ["4 bytes"]),
    ("header-length-past-body", "iris", _binary(_iris_input(), b"", header_length=10_000), 400, ["10000"]),
    ("header-length-not-a-number", "iris", _raw(json.dumps(_iris_input()).encode(), {HEADER: "abc"}), 400,
     ["Inference-Header-Content-Length"]),
    ("header-length-cuts-json", "iris", _binary(_iris_input(), b"", header_length=20), 400, ["not valid"]),
    (
        "bytes-length-prefix-overflow",
        "identity",
        _binary_x(7, struct.pack("<I", 1000) + b"abc", datatype="BYTES", shape=(1,), name="INPUT0"),
        400,
        ["1000"],
    ),
    (
        "bytes-truncated-length-prefix",
        "identity",
        _binary_x(8, bytes_tensor([b"ab"]) + b"\x01\x00", datatype="BYTES", shape=(2,), name="INPUT0"),
        400,
        ["truncated"],
    ),
    ("too-many-elements-json", "iris", _json(_iris_input(shape=[100_000_000, 4])), 413, ["elements"]),
    ("too-many-elements-binary", "iris", _binary_x(16, shape=(100_000_000, 4)), 413, ["elements"]),
    ("huge-dims-overflow", "identity",
     _json({"inputs": [{"name": "INPUT0", "shape": [2**62, 2**62], "datatype": "FP32", "data": [1.0]}]}), 413, []),
]


@pytest.mark.parametrize(
    "model,send,status,words",
    [pytest.param(*case[1:], id=case[0]) for case in BAD_REQUESTS],
)
def test_bad_request_is_refused_and_server_carries_on(http, base_url, model, send, status, words):
    resp = send(http, infer_url(base_url, model))
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    for w in words:
        assert w in body["error"], (w, body["error"])
    assert_good_iris_still_works(http, base_url)


def test_body_over_64_mib_is_413(base_url, http):
    # A header that claims the whole of a 65 MiB tensor: the server must refuse the
    # body by its size, before looking at it.
    size = 65 * 1024 * 1024
    header = json.dumps(
        {"inputs": [{"name": "X", "shape": [size // 16, 4], "datatype": "FP32",
                     "parameters": {"binary_data_size": size}}]}
    ).encode()
    body = header + bytes(size)
    try:
        resp = requests.post(
            infer_url(base_url),
            data=body,
            headers={HEADER: str(len(header)), "Content-Type": "application/octet-stream"},
            timeout=120,
        )
    except requests.ConnectionError as e:  # pragma: no cover - reported as a failure
        pytest.fail(f"server dropped the connection instead of answering 413: {e}")
    assert resp.status_code == 413, resp.text[:500]
    assert "limit" in resp.json()["error"]
    assert_good_iris_still_works(http, base_url)


def test_unknown_route_is_404_json(http, base_url):
    resp = http.get(f"{base_url}/v2/nothing/here", timeout=10)
    assert resp.status_code == 404
    assert "error" in resp.json()


def test_load_racing_an_unload_still_loads(http, base_url, digits_row):
    # Triton serializes load and unload of one model: a load that arrives while an
    # unload is still draining in-flight requests must load the model afterwards,
    # not fail. Requests keep `digits` busy so that unloads take a moment.
    repo = f"{base_url}/v2/repository/models/digits"
    body = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": digits_row}]}
    stop = threading.Event()

    def keep_busy():
        with requests.Session() as s:
            while not stop.is_set():
                s.post(infer_url(base_url, "digits"), json=body, timeout=30)

    busy = [threading.Thread(target=keep_busy) for _ in range(8)]
    failed_loads = []
    try:
        for t in busy:
            t.start()
        time.sleep(0.2)
        for _ in range(20):
            start = threading.Barrier(2)
            answers = {}

            def unload():
                start.wait()
                answers["unload"] = requests.post(f"{repo}/unload", timeout=60)

            def load():
                start.wait()
                time.sleep(0.001)
                answers["load"] = requests.post(f"{repo}/load", timeout=60)

            pair = [threading.Thread(target=unload), threading.Thread(target=load)]
            for t in pair:
                t.start()
            for t in pair:
                t.join()
            assert answers["unload"].status_code == 200, answers["unload"].text
            if answers["load"].status_code != 200:
                failed_loads.append(answers["load"].text)
            requests.post(f"{repo}/load", timeout=60)  # whatever happened, load again
    finally:
        stop.set()
        for t in busy:
            t.join()
        http.post(f"{repo}/load", timeout=60)
    assert http.get(f"{base_url}/v2/models/digits/ready", timeout=10).status_code == 200
    assert not failed_loads, f"{len(failed_loads)} of 20 loads failed, e.g. {failed_loads[0]}"
