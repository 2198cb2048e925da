"""Shared fixtures for the interop tests.

These tests talk to an inferd server that is already running and serving the
repository in ./models (iris, digits, add_sub, identity). Point them at it with
INFERD_URL, for example:

    inferd serve --models models --port 18123 --grpc-port 18124 &
    INFERD_URL=http://127.0.0.1:18123 INFERD_GRPC_URL=127.0.0.1:18124 \
        .venv/bin/python -m pytest tests/python --ignore=tests/python/test_kserve_client.py
    INFERD_URL=... INFERD_GRPC_URL=... .venv/bin/python -m pytest tests/python/test_kserve_client.py

(kserve and tritonclient.grpc cannot be imported into one process, hence two runs.)

Tests that unload a model load it again before they finish, so the server is
left as it was found.
"""

import json
import os
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]

# Two iris flowers whose classes are known: setosa (0) and virginica (2).
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
IRIS_LABELS = [0, 2]

MODELS = ["add_sub", "digits", "identity", "iris"]


@pytest.fixture(scope="session")
def base_url():
    """The running server's base URL, without a trailing slash."""
    url = os.environ.get("INFERD_URL")
    if not url:
        pytest.skip(
            "INFERD_URL is not set: start `inferd serve --models models` and set "
            "INFERD_URL=http://HOST:PORT to run the interop tests"
        )
    url = url.rstrip("/")
    try:
        requests.get(f"{url}/v2/health/live", timeout=5)
    except requests.RequestException as e:
        pytest.fail(f"no inferd server answers at INFERD_URL={url}: {e}")
    return url


@pytest.fixture(scope="session")
def host_port(base_url):
    """`host:port` of the server, the form tritonclient wants (no scheme)."""
    return urlparse(base_url).netloc


@pytest.fixture(scope="session")
def http():
    """One keep-alive HTTP session for the whole run."""
    with requests.Session() as s:
        yield s


@pytest.fixture(scope="session")
def iris_rows():
    return [list(r) for r in IRIS_ROWS]


@pytest.fixture(scope="session")
def digits_row():
    """The 64 pixels of models/digits/sample.txt, an image of a 0."""
    text = (REPO_ROOT / "models" / "digits" / "sample.txt").read_text()
    row = [float(x) for x in text.split()]
    assert len(row) == 64
    return row


# --- text generation (SmolLM2, scripts/fetch-models) ---------------------------------

LLM = "smollm2"
LLM_GGUF = REPO_ROOT / "models" / LLM / "1" / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def llm(base_url, http):
    """The name of the served SmolLM2 model, once it is loaded: skips when its
    weights were never fetched, loads it again when an earlier test evicted it."""
    ready = http.get(f"{base_url}/v2/models/{LLM}/ready", timeout=10)
    if ready.status_code != 200:
        if not LLM_GGUF.is_file():
            pytest.skip(f"{LLM} is not ready ({ready.text.strip()}); run scripts/fetch-models")
        http.post(f"{base_url}/v2/repository/models/{LLM}/load", json={}, timeout=120)
        ready = http.get(f"{base_url}/v2/models/{LLM}/ready", timeout=10)
        if ready.status_code != 200:
            pytest.fail(f"{LLM} has its weights but is not ready: {ready.status_code} {ready.text}")
    return LLM


def sse_data(resp):
    """The JSON payloads of a server-sent-event response, as they arrive
    (`data:{...}` and `data: {...}` alike); stops at OpenAI's `data: [DONE]`."""
    for raw in resp.iter_lines():
        line = raw.decode("utf-8")
        if not line.startswith("data:"):
            continue  # blank separators, `:` keep-alive comments, `event:` lines
        payload = line[len("data:"):].strip()
        if payload == "[DONE]":
            return
        yield json.loads(payload)
