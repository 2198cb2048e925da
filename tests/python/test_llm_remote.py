"""Remote text-generation backends and seed 002's remaining error codes, on a
second inferd started for this module (`INFERD_BIN`) whose repository holds:

- `remote_tgi`: backend `tgi` pointing at the first server (INFERD_URL), which
  plays the TGI server;
- `remote_openai`: backend `openai` pointing at the first server's `/v1`, model
  smollm2;
- `remote_down`: backend `tgi` on a port nobody listens on
  (-> 503 DOWNSTREAM_REQUEST_FAILED);
- `remote_500`: backend `tgi` on a tiny Python server that answers 500 to
  everything (-> 500 TGI_SERVER_ERROR);
- `slow`: the local SmolLM2 GGUF with a 200 ms timeout (-> 504 INFERENCE_TIMEOUT);
- `busy`: the local SmolLM2 GGUF with one sequence slot and room for one waiting
  request (-> 503 MODEL_OVERLOADED for the next one).

Greedy text through a remote backend must be exactly the text the first server
gives directly.
"""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from conftest import LLM, LLM_GGUF, free_port, sse_data, start_inferd

PROMPT = "The history of the Roman Empire begins"
REMOTES = ["remote_tgi", "remote_openai"]
ALL_MODELS = {"busy", "remote_500", "remote_down", "remote_openai", "remote_tgi", "slow"}


class Always500(BaseHTTPRequestHandler):
    """A "TGI server" that fails every request, after reading its body."""

    def answer(self):
        length = self.headers.get("Content-Length")
        if length:
            self.rfile.read(int(length))
        elif "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    break
                self.rfile.read(size)
                self.rfile.readline()
        body = b'{"error": "simulated failure"}'
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = answer

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def failing_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Always500)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def second(llm, base_url, failing_server, tmp_path_factory):
    """The URL of a second inferd serving the remote models; stopped at the end."""
    gguf = str(LLM_GGUF.resolve())
    yield from start_inferd(
        tmp_path_factory,
        "remote-backend",
        {
            "remote_tgi": f'backend = "tgi"\n[parameters]\nendpoint = "{base_url}"\n',
            "remote_openai": f'backend = "openai"\n[parameters]\nendpoint = "{base_url}/v1"\nmodel = "{LLM}"\n',
            "remote_down": f'backend = "tgi"\n[parameters]\nendpoint = "http://127.0.0.1:{free_port()}"\n',
            "remote_500": f'backend = "tgi"\n[parameters]\nendpoint = "{failing_server}"\n',
            "slow": f'backend = "llama.cpp"\n[parameters]\nfile = "{gguf}"\ntimeout_ms = "200"\n',
            "busy": f'backend = "llama.cpp"\n[parameters]\nfile = "{gguf}"\nslots = "1"\nmax_waiting = "1"\n'
            'max_input_tokens = "512"\nmax_total_tokens = "1024"\n',
        },
    )


def ensure_ready(url, model, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if requests.get(f"{url}/v2/models/{model}/ready", timeout=5).status_code == 200:
            return
        requests.post(f"{url}/v2/repository/models/{model}/load", json={}, timeout=timeout)
        time.sleep(0.5)
    pytest.fail(f"{model} on the second server is not ready: {requests.get(f'{url}/v2/models/{model}').text}")


def generate(url, model_id, inputs=PROMPT, scenario="base", timeout=120, **parameters):
    body = {"model_id": model_id, "inputs": inputs, "scenario": scenario, "parameters": parameters}
    return requests.post(f"{url}/v1/generate", json=body, timeout=timeout)


def answer(resp):
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert isinstance(body["generated_text"], str)
    assert isinstance(body["model"], str) and body["model"]
    assert isinstance(body["tokens"], int)
    return body


def assert_gateway_error(resp, status, code, hints=()):
    assert resp.status_code == status, (resp.status_code, resp.text)
    body = resp.json()
    assert body.get("error_code") == code, body
    assert isinstance(body.get("message"), str) and body["message"].strip(), body
    if hints:
        assert any(h.lower() in body["message"].lower() for h in hints), (hints, body)


# --- remote backends give the first server's text -------------------------------------


@pytest.mark.parametrize("remote", REMOTES)
def test_greedy_text_through_a_remote_is_the_direct_text(second, base_url, remote):
    direct = answer(generate(base_url, LLM, do_sample=False, max_new_tokens=24))
    relayed = answer(generate(second, remote, do_sample=False, max_new_tokens=24))
    assert relayed["generated_text"] == direct["generated_text"]
    assert relayed["tokens"] == direct["tokens"]


@pytest.mark.parametrize("remote", REMOTES)
def test_a_stop_sequence_through_a_remote(second, base_url, remote):
    counting = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"
    full = answer(generate(second, remote, counting, do_sample=False, max_new_tokens=30))["generated_text"]
    words = [w.strip(",.") for w in full.split()]
    stop = next((w for w in words[len(words) // 2:] if len(w) >= 2 and full.find(w) >= 3), None)
    assert stop, full
    cut = answer(generate(second, remote, counting, do_sample=False, max_new_tokens=30, stop=[stop]))
    assert cut["generated_text"] == full[: full.find(stop)]


@pytest.mark.parametrize("remote", REMOTES)
def test_chat_scenarios_through_a_remote(second, remote):
    body = answer(generate(second, remote, "What is the capital of France?", scenario="qa",
                           do_sample=False, max_new_tokens=16))
    assert body["generated_text"].strip()


@pytest.mark.parametrize("remote", REMOTES)
def test_openai_stream_through_a_remote_matches_the_unstreamed_answer(second, remote):
    body = {
        "model": remote,
        "messages": [{"role": "user", "content": "Name three famous painters."}],
        "max_tokens": 24,
        "temperature": 0,
    }
    whole = requests.post(f"{second}/v1/chat/completions", json=body, timeout=120)
    assert whole.status_code == 200, whole.text
    expected = whole.json()["choices"][0]["message"]["content"]
    assert expected.strip()
    with requests.post(
        f"{second}/v1/chat/completions", json={**body, "stream": True}, stream=True, timeout=120
    ) as resp:
        assert resp.status_code == 200, resp.text
        chunks = list(sse_data(resp))
    assert "error" not in chunks[-1], chunks[-1]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    assert text == expected


# --- health and model list ------------------------------------------------------------


def test_full_health_probes_remote_servers(second):
    body = requests.get(f"{second}/health/full", timeout=60).json()
    details = body["details"]
    assert set(details) == ALL_MODELS, body
    assert details["remote_down"] == "unhealthy", body
    assert details["remote_tgi"] == "healthy", body
    assert details["remote_openai"] == "healthy", body
    assert body["status"] == "degraded", body
    assert body["total"] == len(ALL_MODELS)
    assert body["healthy"] == sum(1 for s in details.values() if s == "healthy")


def test_health_agrees_with_the_last_full_probe(second):
    """`/health` probes nothing, but a model that failed `/health/full` is
    unhealthy there too, with the same reason, until a probe passes."""
    full = requests.get(f"{second}/health/full", timeout=60).json()
    quick = requests.get(f"{second}/health", timeout=10).json()
    assert quick["models"]["remote_down"] == "unhealthy", quick
    assert quick["reasons"]["remote_down"] == full["reasons"]["remote_down"], (quick, full)
    assert quick["status"] == full["status"] == "degraded", (quick, full)
    for name, state in full["details"].items():
        if state == "unhealthy":
            assert quick["models"][name] == "unhealthy", (name, quick)


def test_health_lists_every_text_model(second):
    body = requests.get(f"{second}/health", timeout=10).json()
    assert set(body["models"]) == ALL_MODELS, body
    assert body["total"] == len(ALL_MODELS)
    assert body["status"] in {"healthy", "degraded", "unhealthy"}


def test_model_list_names_the_remote_endpoints(second, base_url):
    entries = {m["id"]: m for m in requests.get(f"{second}/v1/models", timeout=10).json()["models"]}
    assert set(entries) == ALL_MODELS
    assert entries["remote_tgi"]["endpoint"] == base_url
    assert entries["remote_openai"]["endpoint"] == f"{base_url}/v1"
    for name in ALL_MODELS:
        assert {"completion", "instruct"} <= set(entries[name]["supports"]), entries[name]


# --- seed 002's error codes -----------------------------------------------------------


def test_unknown_model_id_and_scenario(second):
    assert_gateway_error(generate(second, "qwen2", max_new_tokens=4), 400, "MODEL_NOT_FOUND", ["qwen2"])
    assert_gateway_error(
        generate(second, "remote_tgi", scenario="poem", max_new_tokens=4), 400, "PROMPT_FORMAT_FAILED", ["poem"]
    )


def test_unreachable_remote_is_downstream_request_failed(second):
    resp = generate(second, "remote_down", do_sample=False, max_new_tokens=4)
    assert_gateway_error(resp, 503, "DOWNSTREAM_REQUEST_FAILED")
    # The gateway itself is fine: a reachable remote still answers.
    answer(generate(second, "remote_tgi", do_sample=False, max_new_tokens=2))


def test_remote_answering_500_is_tgi_server_error(second):
    resp = generate(second, "remote_500", do_sample=False, max_new_tokens=4)
    assert_gateway_error(resp, 500, "TGI_SERVER_ERROR", ["500"])


def test_a_generation_past_its_deadline_is_inference_timeout(second):
    ensure_ready(second, "slow")
    # Greedy counting never ends early, so 200 tokens take far longer than 200 ms.
    resp = generate(second, "slow", "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,", do_sample=False, max_new_tokens=200)
    assert_gateway_error(resp, 504, "INFERENCE_TIMEOUT")


class Reader(threading.Thread):
    """Reads a streaming answer to its end (or until told to stop) on its own thread."""

    def __init__(self, resp):
        super().__init__(daemon=True)
        self.resp = resp
        self.first = threading.Event()
        self.stop = threading.Event()

    def run(self):
        try:
            for chunk in sse_data(self.resp):
                if any(c.get("text") for c in chunk.get("choices", [])):
                    self.first.set()
                if self.stop.is_set():
                    break
        except requests.RequestException:
            pass
        finally:
            self.first.set()
            self.resp.close()


def test_a_full_queue_is_model_overloaded(second):
    """`busy` decodes one sequence and lets one more wait: with one streaming and
    two more arriving, one of the two must be refused at once."""
    ensure_ready(second, "busy")
    session = requests.Session()
    long_stream = session.post(
        f"{second}/v1/completions",
        json={"model": "busy", "prompt": "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,", "max_tokens": 400,
              "temperature": 0, "stream": True},
        stream=True,
        timeout=120,
    )
    assert long_stream.status_code == 200, long_stream.text
    reader = Reader(long_stream)
    reader.start()
    answers = []  # in the order they came back

    def short():
        answers.append(generate(second, "busy", "Hello", do_sample=False, max_new_tokens=4))

    threads = []
    try:
        assert reader.first.wait(timeout=60), "the long stream produced nothing"
        for _ in range(2):
            t = threading.Thread(target=short, daemon=True)
            t.start()
            threads.append(t)
            time.sleep(0.3)
        deadline = time.monotonic() + 30
        while not answers and time.monotonic() < deadline:
            time.sleep(0.05)
        assert answers, "neither request was refused while the slot was busy and one was waiting"
        assert_gateway_error(answers[0], 503, "MODEL_OVERLOADED")
    finally:
        reader.stop.set()
        reader.join(timeout=60)
        session.close()
        for t in threads:
            t.join(timeout=120)
    # Once the slot is free, the request that waited is answered.
    assert [r.status_code for r in answers] == [503, 200], [(r.status_code, r.text) for r in answers]
