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

Under CI (`CI` set and not empty) a skipped test fails the run: scripts/test has
set up every client, weight and server a test needs, so a skip there could only
hide a broken setup. Run pytest with `-rs` to see each skip's reason.
"""

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]

# Two iris flowers whose classes are known: setosa (0) and virginica (2).
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
IRIS_LABELS = [0, 2]

MODELS = ["add_sub", "digits", "identity", "iris"]


def in_ci():
    return bool(os.environ.get("CI"))


# --- under CI, a skip fails the run ---------------------------------------------------

_skipped = []


def _note_skip(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        _skipped.append(f"{report.nodeid}: {reason}")


def pytest_runtest_logreport(report):
    _note_skip(report)


def pytest_collectreport(report):
    _note_skip(report)


def pytest_sessionfinish(session, exitstatus):
    if in_ci() and _skipped and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if in_ci() and _skipped:
        terminalreporter.section("skipped under CI: the run fails", red=True)
        for line in _skipped:
            terminalreporter.line(line, red=True)


# --- servers of a suite's own (INFERD_BIN) ---------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def inferd_binary(tag):
    """The `inferd` a suite starts servers of its own from (`INFERD_BIN`); a
    skip without it, which fails the run under CI."""
    binary = os.environ.get("INFERD_BIN")
    if not binary:
        pytest.skip(f"INFERD_BIN is not set: point it at a built `inferd` to run the {tag} tests")
    return binary


def stop_process(proc, grace=15):
    """SIGTERM, then SIGKILL if it is still running after `grace` s."""
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_until_up(proc, probe, what, timeout, log):
    """Polls `probe` until it answers 200; fails with `log()` if the process
    exits first or `timeout` s pass."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}:\n{log()}")
        try:
            if requests.get(probe, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not come up in {timeout} s:\n{log()}")
        time.sleep(0.2)


def start_inferd(tmp_path_factory, tag, models, args=(), timeout=60, data=None):
    """Starts `INFERD_BIN serve` on a repository of `models` ({name: model.toml
    text}, one empty version each; or {name: Path}, a model folder to copy) and a data dir of its own (or `data`, one the
    caller prepared, e.g. with API keys made before the server starts); yields its
    URL once it answers, stops it afterwards. For a generator fixture: `yield from`."""
    binary = inferd_binary(tag)
    root = tmp_path_factory.mktemp(f"{tag}-models")
    if data is None:
        data = tmp_path_factory.mktemp(f"{tag}-data")
    for name, text in models.items():
        if isinstance(text, Path):
            shutil.copytree(text, root / name)
            continue
        (root / name / "1").mkdir(parents=True)
        (root / name / "model.toml").write_text(text)
    port = free_port()
    log_path = data / "inferd.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [binary, "serve", "--models", str(root), "--port", str(port), "--grpc-port", "0",
             "--data-dir", str(data), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "INFERD_LOG": "info"},
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(proc, f"{url}/v2/health/live", f"the {tag} inferd", timeout,
                          lambda: log_path.read_text()[-3000:])
            yield url
        finally:
            stop_process(proc)


# --- a real browser: Debian's chromium driven by Playwright --------------------------------

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium through Playwright (never `playwright install`, which
    downloads a browser); a skip without either, which fails the run under CI."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: .venv/bin/pip install -r tests/python/requirements.txt")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (scripts/install-build-deps)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def foreign(urls, base):
    """The URLs that left `base`'s origin (data: URLs never reach a network)."""
    origin = urlparse(base)
    return [u for u in urls
            if not u.startswith("data:")
            and (urlparse(u).scheme, urlparse(u).netloc) != (origin.scheme, origin.netloc)]


# Builtin identity models that are slow on purpose (see crates/backend-builtin).
SLOW_RUN_MS = 1500
SLOW_LOAD_MS = 3000
JOB_WORKERS = 2
IDENTITY_TOML = """backend = "builtin"
kind = "identity"
max_batch_size = 0
[[input]]
name = "INPUT0"
datatype = "ANY"
[[output]]
name = "OUTPUT0"
datatype = "ANY"
"""


@pytest.fixture(scope="session")
def slow_url(tmp_path_factory):
    """A second inferd whose repository holds `identity`, `slow` (each run takes
    SLOW_RUN_MS) and `slow_loading` (each load takes SLOW_LOAD_MS), with
    JOB_WORKERS async-job workers: where a test must find a job still queued or
    a deployment still loading, without racing the server."""
    yield from start_inferd(
        tmp_path_factory,
        "slow",
        {
            "identity": IDENTITY_TOML,
            "slow": f'{IDENTITY_TOML}[parameters]\ndelay_ms = "{SLOW_RUN_MS}"\n',
            "slow_loading": f'{IDENTITY_TOML}[parameters]\nload_delay_ms = "{SLOW_LOAD_MS}"\n',
        },
        ["--job-workers", str(JOB_WORKERS)],
    )


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
