"""inferd seen through KServe's own Python clients (kserve 0.21): the V1 and V2
REST client and the V2 gRPC client, as a KServe user would call a predictor.

kserve and tritonclient.grpc both register the `inference.*` protobuf messages
in the process-wide descriptor pool, so one Python process cannot import both:
this file runs in a pytest of its own (the e2e test runs it apart)."""

import asyncio
import os

import grpc
import httpx
import numpy as np
import pytest
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig

from conftest import IRIS_LABELS, IRIS_ROWS


def run(coro):
    return asyncio.run(coro)


def iris_request(binary=False):
    x = InferInput(name="X", shape=[2, 4], datatype="FP32")
    x.set_data_from_numpy(np.array(IRIS_ROWS, dtype=np.float32), binary_data=binary)
    return InferRequest(model_name="iris", infer_inputs=[x], request_id="kserve-1")


def labels(response):
    out = {o.name: o for o in response.outputs}
    return out["label"].as_numpy().tolist()


@pytest.fixture(scope="module")
def grpc_url():
    url = os.environ.get("INFERD_GRPC_URL")
    if not url:
        pytest.skip("INFERD_GRPC_URL is not set: give the server's gRPC host:port")
    return url


def test_v1_rest_health_and_predict(base_url):
    async def go():
        c = InferenceRESTClient(RESTConfig(protocol="v1"))
        try:
            assert await c.is_server_live(base_url)
            assert await c.is_model_ready(base_url, "iris")
            with pytest.raises(httpx.HTTPStatusError) as e:  # as KServe's own server answers
                await c.is_model_ready(base_url, "no_such_model")
            assert e.value.response.status_code == 404
            out = await c.infer(base_url, {"instances": IRIS_ROWS}, model_name="iris")
            assert [p["label"] for p in out["predictions"]] == IRIS_LABELS
        finally:
            await c.close()

    run(go())


@pytest.mark.parametrize("binary", [False, True])
def test_v2_rest_infer_json_and_binary(base_url, binary):
    async def go():
        c = InferenceRESTClient(RESTConfig(protocol="v2"))
        try:
            assert await c.is_server_live(base_url)
            assert await c.is_server_ready(base_url)
            assert await c.is_model_ready(base_url, "iris")
            res = await c.infer(base_url, iris_request(binary), model_name="iris")
            assert res.id == "kserve-1"
            assert res.model_name == "iris"
            assert labels(res) == IRIS_LABELS
        finally:
            await c.close()

    run(go())


def test_v2_rest_errors_raise_with_the_servers_message(base_url):
    async def go():
        c = InferenceRESTClient(RESTConfig(protocol="v2"))
        try:
            with pytest.raises(httpx.HTTPStatusError) as e:
                await c.infer(base_url, iris_request(), model_name="no_such_model")
            assert e.value.response.status_code == 404
            assert "no_such_model" in str(e.value)
        finally:
            await c.close()

    run(go())


def test_v2_grpc_health_and_infer(grpc_url):
    async def go():
        c = InferenceGRPCClient(url=grpc_url)
        try:
            assert await c.is_server_live()
            assert await c.is_server_ready()
            assert await c.is_model_ready("iris")
            res = await c.infer(iris_request())
            assert res.id == "kserve-1"
            assert labels(res) == IRIS_LABELS
            probs = {o.name: o for o in res.outputs}["probabilities"].as_numpy()
            np.testing.assert_allclose(probs.sum(axis=1), [1.0, 1.0], atol=1e-5)
        finally:
            await c.close()

    run(go())


def test_v2_grpc_unknown_model_is_not_found(grpc_url):
    async def go():
        c = InferenceGRPCClient(url=grpc_url, retries=2)
        try:
            req = iris_request()
            req.model_name = "no_such_model"
            with pytest.raises(grpc.RpcError) as e:
                await c.infer(req)
            assert e.value.code() == grpc.StatusCode.NOT_FOUND
        finally:
            await c.close()

    run(go())
