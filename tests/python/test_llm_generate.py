"""Seed 002's text-generation gateway on SmolLM2-135M-Instruct (llama.cpp, Q4_1):
`POST /v1/generate` with its scenarios, parameters and error codes, `GET /health`,
`GET /health/full`, the seed's entries in `GET /v1/models`, CORS, and the unified
face's `text-generation` task on the same model.

Answers are `{"generated_text", "model", "tokens"}`; errors are
`{"error_code", "message"}`. Greedy decoding (`do_sample: false`) must give the
same text every time, alone or batched with other sequences; a fixed `seed`
must give the same sampled text every time.

The weights come from scripts/fetch-models; without them the module is skipped.
"""

import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import LLM, MODELS

# Greedy decoding continues a count for as long as it is allowed to: a prompt whose
# answer never ends early, for the tests that need exactly max_new_tokens tokens.
COUNTING = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"

# Eight different raw prompts for the batching test.
PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "def fibonacci(n):",
    "The three primary colors are",
    "Water boils at a temperature of",
    "My favourite recipe for pancakes starts with",
    "The planets of the solar system, in order, are",
    "In 1969, the first men to walk on the Moon",
]

GATEWAY_CODES = {
    "MODEL_NOT_FOUND",
    "PROMPT_FORMAT_FAILED",
    "INFERENCE_TIMEOUT",
    "DOWNSTREAM_REQUEST_FAILED",
    "TGI_SERVER_ERROR",
    "INVALID_REQUEST",
    "MODEL_OVERLOADED",
}


def generate(http, base_url, inputs, model_id=LLM, scenario=None, timeout=120, **parameters):
    body = {"model_id": model_id, "inputs": inputs}
    if scenario is not None:
        body["scenario"] = scenario
    if parameters:
        body["parameters"] = parameters
    return http.post(f"{base_url}/v1/generate", json=body, timeout=timeout)


def answer(resp):
    """A 200 answer of /v1/generate, its shape checked."""
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert isinstance(body["generated_text"], str), body
    assert isinstance(body["model"], str) and body["model"], body
    assert isinstance(body["tokens"], int) and body["tokens"] >= 0, body
    return body


def greedy(http, base_url, inputs, max_new_tokens=24, **kw):
    return answer(generate(http, base_url, inputs, do_sample=False, max_new_tokens=max_new_tokens, **kw))


def assert_gateway_error(resp, status, code, hints=()):
    """Seed 002's error: the status, `{"error_code": code, "message": ...}`, and a
    message that names the problem (any one of `hints`, case-insensitive)."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    body = resp.json()
    assert body.get("error_code") == code, body
    assert code in GATEWAY_CODES
    message = body.get("message")
    assert isinstance(message, str) and message.strip(), body
    if hints:
        assert any(h.lower() in message.lower() for h in hints), (hints, body)
    return body


def pick_stop(text):
    """A word of `text` whose first occurrence is not at its start, and the text
    before that occurrence."""
    seen = set()
    candidates = []
    for m in re.finditer(r"[A-Za-z0-9]{2,}", text):
        word = m.group()
        if word in seen:
            continue
        seen.add(word)
        at = text.find(word)
        if at >= 3:
            candidates.append((word, text[:at]))
    assert candidates, f"no usable stop word in {text!r}"
    return candidates[len(candidates) // 2]


# --- determinism ----------------------------------------------------------------------


def test_greedy_output_is_identical_run_to_run(llm, http, base_url):
    first = greedy(http, base_url, "The history of the Roman Empire begins", max_new_tokens=32)
    second = greedy(http, base_url, "The history of the Roman Empire begins", max_new_tokens=32)
    assert first["generated_text"].strip(), first
    assert 0 < first["tokens"] <= 32
    assert second["generated_text"] == first["generated_text"]
    assert second["tokens"] == first["tokens"]


def test_greedy_output_is_the_same_batched_as_alone(llm, http, base_url):
    """Eight different prompts at once share the decode loop's batch; each must
    still get exactly the text it gets alone."""
    alone = [greedy(http, base_url, p)["generated_text"] for p in PROMPTS]

    def one(prompt):
        resp = requests.post(
            f"{base_url}/v1/generate",
            json={
                "model_id": LLM,
                "inputs": prompt,
                "parameters": {"do_sample": False, "max_new_tokens": 24},
            },
            timeout=300,
        )
        return answer(resp)["generated_text"]

    with ThreadPoolExecutor(max_workers=len(PROMPTS)) as pool:
        together = list(pool.map(one, PROMPTS))
    for prompt, a, t in zip(PROMPTS, alone, together):
        assert t == a, (prompt, a, t)
    assert len(set(alone)) > 1, "different prompts should not all give the same text"


def test_the_same_seed_gives_the_same_sampled_text(llm, http, base_url):
    params = {"do_sample": True, "temperature": 1.0, "top_p": 0.95, "seed": 1234, "max_new_tokens": 24}
    prompt = "Write a short poem about the sea."
    first = answer(generate(http, base_url, prompt, **params))
    second = answer(generate(http, base_url, prompt, **params))
    assert first["generated_text"] == second["generated_text"]
    assert first["tokens"] == second["tokens"]


def test_different_seeds_give_different_samples(llm, http, base_url):
    prompt = "Write a short poem about the sea."
    texts = {
        answer(
            generate(http, base_url, prompt, do_sample=True, temperature=1.2, seed=seed, max_new_tokens=24)
        )["generated_text"]
        for seed in range(1, 6)
    }
    assert len(texts) >= 2, texts


# --- parameters -----------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 5, 17])
def test_max_new_tokens_bounds_the_answer(llm, http, base_url, n):
    body = greedy(http, base_url, COUNTING, max_new_tokens=n)
    # Counting never ends by itself, so the limit is what stops it.
    assert body["tokens"] == n, body
    assert body["generated_text"], body


def test_nulls_and_unknown_fields_read_as_pydantic_reads_them(llm, http, base_url):
    """`null` is absent and unknown fields (TGI's `details`) are ignored, as the
    document's FastAPI server does."""
    body = answer(http.post(f"{base_url}/v1/generate", json={
        "model_id": LLM, "inputs": COUNTING, "scenario": None, "parameters": None, "details": True},
        timeout=120))
    assert 0 < body["tokens"] <= 128, body
    body = answer(http.post(f"{base_url}/v1/generate", json={
        "model_id": LLM, "inputs": COUNTING,
        "parameters": {"max_new_tokens": 3, "temperature": None, "stop": None, "details": True}},
        timeout=120))
    assert body["tokens"] == 3, body


def test_defaults_without_parameters(llm, http, base_url):
    """No `parameters` at all: seed 002's defaults (sampling, 128 new tokens)."""
    body = answer(generate(http, base_url, "Tell me about the Moon."))
    assert 0 < body["tokens"] <= 128, body


def test_a_stop_sequence_ends_the_text_before_it(llm, http, base_url):
    full = greedy(http, base_url, COUNTING, max_new_tokens=40)
    stop, prefix = pick_stop(full["generated_text"])
    cut = greedy(http, base_url, COUNTING, max_new_tokens=40, stop=[stop])
    assert cut["generated_text"] == prefix, (stop, full, cut)
    assert stop not in cut["generated_text"]
    assert cut["tokens"] <= full["tokens"]


def test_the_earliest_of_several_stop_sequences_wins(llm, http, base_url):
    full = greedy(http, base_url, COUNTING, max_new_tokens=40)["generated_text"]
    stop, prefix = pick_stop(full)
    later = full[len(prefix) + len(stop):].strip()[-3:]
    stops = [s for s in [later, "never in this text", stop] if s]
    first = min(full.find(s) for s in stops if s in full)
    cut = greedy(http, base_url, COUNTING, max_new_tokens=40, stop=stops)
    assert cut["generated_text"] == full[:first], (stops, full, cut)


@pytest.mark.parametrize("scenario", ["qa", "summarize", "rewrite"])
def test_chat_scenarios_answer(llm, http, base_url, scenario):
    inputs = {
        "qa": "What are Newton's three laws of motion?",
        "summarize": (
            "Artificial intelligence is a branch of computer science that aims to build "
            "systems able to perform tasks that normally require human intelligence, such "
            "as understanding language, recognising images and making decisions."
        ),
        "rewrite": "this product are very good and everybody like it very much.",
    }[scenario]
    body = answer(generate(http, base_url, inputs, scenario=scenario, do_sample=False, max_new_tokens=32))
    assert body["generated_text"].strip(), body
    assert 0 < body["tokens"] <= 32


def test_base_scenario_is_the_default_and_differs_from_chat(llm, http, base_url):
    prompt = "What is the capital of Italy?"
    implicit = greedy(http, base_url, prompt)
    explicit = greedy(http, base_url, prompt, scenario="base")
    qa = greedy(http, base_url, prompt, scenario="qa")
    assert explicit["generated_text"] == implicit["generated_text"]
    # qa wraps the question in the chat template, so the model sees another prompt.
    assert qa["generated_text"] != implicit["generated_text"]


def test_model_is_the_real_model_name_everywhere(llm, http, base_url):
    body = greedy(http, base_url, "Hello", max_new_tokens=2)
    info = http.get(f"{base_url}/info", timeout=10)
    assert info.status_code == 200, info.text
    assert body["model"] == info.json()["model_id"]
    listed = {m["id"]: m for m in http.get(f"{base_url}/v1/models", timeout=10).json()["models"]}
    assert listed[LLM]["name"] == body["model"]


# --- errors ---------------------------------------------------------------------------


def test_unknown_model_id(llm, http, base_url):
    resp = generate(http, base_url, "Hello", model_id="qwen2", max_new_tokens=4)
    assert_gateway_error(resp, 400, "MODEL_NOT_FOUND", ["qwen2"])
    # A model that exists but writes no text is not a text model either.
    resp = generate(http, base_url, "Hello", model_id="iris", max_new_tokens=4)
    assert_gateway_error(resp, 400, "MODEL_NOT_FOUND", ["iris"])


def test_unknown_scenario(llm, http, base_url):
    resp = generate(http, base_url, "Hello", scenario="poem", max_new_tokens=4)
    assert_gateway_error(resp, 400, "PROMPT_FORMAT_FAILED", ["poem"])


GOOD = {"model_id": LLM, "inputs": "Hello", "parameters": {"do_sample": False, "max_new_tokens": 2}}


def with_params(**params):
    return {"model_id": LLM, "inputs": "Hello", "parameters": {"max_new_tokens": 4, **params}}


BAD_BODIES = {
    "temperature 3": (with_params(temperature=3), ["temperature"]),
    "temperature -1": (with_params(temperature=-1), ["temperature"]),
    "max_new_tokens -1": (with_params(max_new_tokens=-1), ["max_new_tokens", "-1"]),
    "max_new_tokens 0": (with_params(max_new_tokens=0), ["max_new_tokens"]),
    "max_new_tokens 10**9": (with_params(max_new_tokens=10**9), ["max_new_tokens", "1000000000"]),
    "max_new_tokens as a string": (with_params(max_new_tokens="16"), ["max_new_tokens", "string"]),
    "top_p 0": (with_params(top_p=0), ["top_p"]),
    "top_p 1.5": (with_params(top_p=1.5), ["top_p"]),
    "repetition_penalty 0": (with_params(repetition_penalty=0), ["repetition_penalty"]),
    "five stop sequences": (with_params(stop=["a", "b", "c", "d", "e"]), ["stop"]),
    "stop as a string of numbers": (with_params(stop="123"), ["stop", "123", "sequence"]),
    "stop as a list of numbers": (with_params(stop=[1, 2, 3]), ["stop", "integer", "string"]),
    "do_sample as a string": (with_params(do_sample="yes"), ["do_sample", "yes", "bool"]),
    "parameters as a string": (
        {"model_id": LLM, "inputs": "Hello", "parameters": "fast"},
        ["parameters", "fast"],
    ),
    "empty inputs": ({"model_id": LLM, "inputs": ""}, ["inputs"]),
    "inputs 123": ({"model_id": LLM, "inputs": 123}, ["inputs", "123"]),
    "inputs null": ({"model_id": LLM, "inputs": None}, ["inputs", "null"]),
    "inputs a list": ({"model_id": LLM, "inputs": ["a", "b"]}, ["inputs", "sequence", "array"]),
    "no inputs": ({"model_id": LLM}, ["inputs"]),
    "no model_id": ({"inputs": "Hello"}, ["model_id"]),
    "model_id 7": ({"model_id": 7, "inputs": "Hello"}, ["model_id", "7"]),
    "a prompt over the token budget": (
        {"model_id": LLM, "inputs": "hello " * 5000, "parameters": {"max_new_tokens": 4}},
        ["token"],
    ),
    "a JSON array": ([GOOD], ["sequence", "array", "object", "map"]),
}

RAW_BODIES = {
    "malformed JSON": (b'{"model_id": "smollm2", "inputs": ', ["json", "line", "column", "eof", "expected"]),
    "not JSON at all": (b"model_id=smollm2&inputs=hello", ["json", "line", "column", "expected"]),
    "empty body": (b"", ["empty", "json", "body"]),
}


def assert_still_serves(http, base_url):
    answer(http.post(f"{base_url}/v1/generate", json=GOOD, timeout=60))


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_requests_are_invalid_request(llm, http, base_url, case):
    body, hints = BAD_BODIES[case]
    resp = http.post(f"{base_url}/v1/generate", json=body, timeout=60)
    assert_gateway_error(resp, 400, "INVALID_REQUEST", hints)
    assert_still_serves(http, base_url)


@pytest.mark.parametrize("case", list(RAW_BODIES))
def test_unreadable_bodies_are_invalid_request(llm, http, base_url, case):
    raw, hints = RAW_BODIES[case]
    resp = http.post(
        f"{base_url}/v1/generate", data=raw, headers={"Content-Type": "application/json"}, timeout=60
    )
    assert_gateway_error(resp, 400, "INVALID_REQUEST", hints)
    assert_still_serves(http, base_url)


# --- CORS -----------------------------------------------------------------------------


def test_cors_headers_on_answers_and_errors(llm, http, base_url):
    origin = {"Origin": "http://example.com"}
    ok = http.post(f"{base_url}/v1/generate", json=GOOD, headers=origin, timeout=60)
    assert ok.status_code == 200, ok.text
    assert ok.headers.get("access-control-allow-origin") in ("*", "http://example.com"), ok.headers
    bad = http.post(
        f"{base_url}/v1/generate", json={**GOOD, "model_id": "nope"}, headers=origin, timeout=60
    )
    assert bad.status_code == 400
    assert bad.headers.get("access-control-allow-origin") in ("*", "http://example.com"), bad.headers
    health = http.get(f"{base_url}/health", headers=origin, timeout=10)
    assert health.headers.get("access-control-allow-origin") in ("*", "http://example.com")


def test_cors_preflight(llm, http, base_url):
    resp = http.options(
        f"{base_url}/v1/generate",
        headers={
            "Origin": "http://example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
        timeout=10,
    )
    assert resp.status_code in (200, 204), (resp.status_code, resp.text)
    assert resp.headers.get("access-control-allow-origin") in ("*", "http://example.com"), resp.headers
    methods = resp.headers.get("access-control-allow-methods", "")
    assert methods == "*" or "POST" in [m.strip().upper() for m in methods.split(",")], resp.headers
    allowed = resp.headers.get("access-control-allow-headers", "").lower()
    assert allowed == "*" or "content-type" in allowed, resp.headers


# --- health and model list ------------------------------------------------------------

STATUSES = {"healthy", "degraded", "unhealthy"}


def test_health_lists_the_text_models(llm, http, base_url):
    resp = http.get(f"{base_url}/health", timeout=10)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] in STATUSES, body
    assert isinstance(body["models"], dict)
    assert body["models"][LLM] == "healthy", body
    assert body["total"] == len(body["models"])
    assert all(isinstance(s, str) for s in body["models"].values()), body
    # Only models that write text: not the classifiers, not the embedding model.
    for other in MODELS + ["minilm"]:
        assert other not in body["models"], body


def test_full_health_probes_every_text_model(llm, http, base_url):
    resp = http.get(f"{base_url}/health/full", timeout=60)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] in STATUSES, body
    assert body["details"][LLM] == "healthy", body
    assert body["total"] == len(body["details"])
    assert body["healthy"] == sum(1 for s in body["details"].values() if s == "healthy")
    if body["healthy"] == body["total"]:
        assert body["status"] == "healthy"


def test_model_list_has_seed_002_and_openai_entries(llm, http, base_url):
    resp = http.get(f"{base_url}/v1/models", timeout=10)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    entries = {m["id"]: m for m in body["models"]}
    for name in MODELS + [LLM]:
        assert name in entries, (name, list(entries))
    for m in body["models"]:
        for field in ["id", "name", "status", "supports", "endpoint"]:
            assert field in m, (field, m)
        assert isinstance(m["supports"], list)
    smol = entries[LLM]
    assert isinstance(smol["name"], str) and smol["name"], smol
    assert smol["status"] == "healthy", smol
    assert {"completion", "instruct"} <= set(smol["supports"]), smol
    # OpenAI's view of the same models.
    assert body["object"] == "list"
    data = {d["id"]: d for d in body["data"]}
    assert set(data) == set(entries)
    for d in body["data"]:
        assert d["object"] == "model" and isinstance(d["created"], int) and isinstance(d["owned_by"], str)


# --- the unified face -----------------------------------------------------------------


def unified(http, base_url, body):
    return http.post(f"{base_url}/inference/infer", json=body, timeout=120)


def test_unified_text_generation(llm, http, base_url):
    req = {
        "task": "text-generation",
        "model_name": LLM,
        "data": "The capital of France is",
        "options": {"max_new_tokens": 16, "do_sample": False},
    }
    first = unified(http, base_url, req)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["success"] is True, body
    result = body["result"]
    assert isinstance(result["generated_text"], str) and result["generated_text"], body
    assert isinstance(result["tokens"], int) and 0 < result["tokens"] <= 16, body
    again = unified(http, base_url, req).json()
    assert again["result"]["generated_text"] == result["generated_text"]


def test_unified_text_generation_errors(llm, http, base_url):
    resp = unified(http, base_url, {"task": "text-generation", "model_name": "nope", "data": "Hi"})
    assert resp.status_code == 404, resp.text
    body = resp.json()
    assert body["success"] is False and body["error"]["code"] == "MODEL_NOT_FOUND", body
    resp = unified(
        http,
        base_url,
        {"task": "text-generation", "model_name": LLM, "data": "Hi", "options": {"max_new_tokens": 0}},
    )
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["success"] is False and body["error"]["code"] == "INVALID_INPUT", body


def test_websocket_streams_tokens_that_make_the_result(llm, base_url):
    from websockets.sync.client import connect

    req = {
        "id": "t1",
        "task": "text-generation",
        "model_name": LLM,
        "data": COUNTING,
        "options": {"max_new_tokens": 12, "do_sample": False},
    }
    with connect(base_url.replace("http://", "ws://") + "/inference/ws") as ws:
        ws.send(json.dumps(req))
        tokens = []
        while True:
            message = json.loads(ws.recv(timeout=60))
            assert message["id"] == "t1", message
            if message["type"] != "token":
                break
            tokens.append(message["token"])
    assert message["type"] == "result", message
    assert len(tokens) >= 2, tokens
    assert "".join(tokens) == message["result"]["generated_text"]


def test_v2_text_input_gives_the_greedy_text(llm, http, base_url):
    """Triton's text-model tensors: text_input BYTES -> text_output BYTES."""
    body = {"inputs": [{"name": "text_input", "shape": [2], "datatype": "BYTES", "data": [COUNTING, "The capital of France is"]}]}
    resp = http.post(f"{base_url}/v2/models/{LLM}/infer", json=body, timeout=120)
    assert resp.status_code == 200, resp.text
    out = resp.json()["outputs"][0]
    assert out["name"] == "text_output" and out["shape"] == [2]
    assert all(isinstance(t, str) and t for t in out["data"]), out
    again = http.post(f"{base_url}/v2/models/{LLM}/infer", json=body, timeout=120).json()
    assert again["outputs"][0]["data"] == out["data"]
