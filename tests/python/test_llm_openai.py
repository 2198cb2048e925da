"""OpenAI's completions and chat completions with the stock `openai` client on
SmolLM2-135M-Instruct: answers, usage, finish reasons, stop sequences, seeds,
streaming (SSE chunks ending in `data: [DONE]`, usage with
`stream_options.include_usage`), the model routes, and errors in OpenAI's shape
`{"error": {"message", "type", "param", "code"}}` (400 for a bad request, 404 for
an unknown model).

Temperature 0 is greedy decoding, so a streamed answer must concatenate to the
very text of the same request unstreamed.
"""

import json

import pytest
import requests
from openai import BadRequestError, NotFoundError, OpenAI

from conftest import LLM

COUNTING = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"
QUESTION = [{"role": "user", "content": "Name three famous painters and one painting by each."}]


@pytest.fixture(scope="module")
def client(llm, base_url):
    return OpenAI(base_url=f"{base_url}/v1", api_key="not-needed", max_retries=0, timeout=120)


def check_usage(usage, max_tokens):
    assert usage.prompt_tokens > 0
    assert 0 < usage.completion_tokens <= max_tokens
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def chat_stream_text(client, **kw):
    """The streamed text, the finish reason and the usage of one streamed chat."""
    parts, finish, usage = [], None, None
    stream = client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw)
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            assert choice.index == 0
            if choice.delta.content:
                parts.append(choice.delta.content)
            if choice.finish_reason is not None:
                assert finish is None, "two finish reasons"
                finish = choice.finish_reason
    return "".join(parts), finish, usage


def middle_word(text):
    """A word from the second half of `text` whose first occurrence is not at its start."""
    words = [w.strip(",.!?;:") for w in text.split()]
    stop = next((w for w in words[len(words) // 2:] if len(w) >= 2 and text.find(w) >= 3), None)
    assert stop, f"no usable stop word in {text!r}"
    return stop


# --- chat -----------------------------------------------------------------------------


def test_chat_completion(client):
    res = client.chat.completions.create(model=LLM, messages=QUESTION, max_tokens=32, temperature=0)
    assert res.object == "chat.completion"
    assert isinstance(res.model, str) and res.model
    assert res.id and isinstance(res.created, int)
    assert len(res.choices) == 1
    choice = res.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    check_usage(res.usage, 32)
    if choice.finish_reason == "length":
        assert res.usage.completion_tokens == 32


def test_chat_at_temperature_0_is_deterministic(client):
    kw = dict(model=LLM, messages=QUESTION, max_tokens=24, temperature=0)
    first = client.chat.completions.create(**kw).choices[0].message.content
    second = client.chat.completions.create(**kw).choices[0].message.content
    assert first == second


def test_chat_with_a_system_message_and_history(client):
    messages = [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": [{"type": "text", "text": "And 3 + 3?"}]},
    ]
    res = client.chat.completions.create(model=LLM, messages=messages, max_tokens=16, temperature=0)
    assert res.choices[0].message.content.strip()


def test_chat_stream_concatenates_to_the_unstreamed_answer(client):
    kw = dict(model=LLM, messages=QUESTION, max_tokens=40, temperature=0)
    whole = client.chat.completions.create(**kw)
    text, finish, usage = chat_stream_text(client, **kw)
    assert text == whole.choices[0].message.content
    assert finish == whole.choices[0].finish_reason
    assert usage is not None, "include_usage asked for a usage chunk"
    assert usage.completion_tokens == whole.usage.completion_tokens
    assert usage.prompt_tokens == whole.usage.prompt_tokens


def test_chat_stop_list(client):
    kw = dict(model=LLM, messages=QUESTION, max_tokens=40, temperature=0)
    full = client.chat.completions.create(**kw).choices[0].message.content
    stop = middle_word(full)
    res = client.chat.completions.create(stop=[stop, "never in this text"], **kw)
    assert res.choices[0].message.content == full[: full.find(stop)]
    assert res.choices[0].finish_reason == "stop"


def test_chat_same_seed_same_sample(client):
    kw = dict(model=LLM, messages=QUESTION, max_tokens=24, temperature=1.0, top_p=0.95, seed=7)
    first = client.chat.completions.create(**kw).choices[0].message.content
    second = client.chat.completions.create(**kw).choices[0].message.content
    assert first == second


# --- completions ----------------------------------------------------------------------


def test_completion_stops_at_max_tokens(client):
    res = client.completions.create(model=LLM, prompt=COUNTING, max_tokens=12, temperature=0)
    assert res.object == "text_completion"
    assert isinstance(res.model, str) and res.model
    choice = res.choices[0]
    assert choice.text
    # Counting never ends by itself: the limit stops it.
    assert choice.finish_reason == "length"
    assert res.usage.completion_tokens == 12
    check_usage(res.usage, 12)


def test_completion_stream_concatenates_to_the_unstreamed_text(client):
    kw = dict(model=LLM, prompt="The history of the Roman Empire begins", max_tokens=32, temperature=0)
    whole = client.completions.create(**kw)
    parts, finish = [], None
    for chunk in client.completions.create(stream=True, **kw):
        for choice in chunk.choices:
            parts.append(choice.text or "")
            finish = choice.finish_reason or finish
    assert "".join(parts) == whole.choices[0].text
    assert finish == whole.choices[0].finish_reason


def test_completion_stop_string(client):
    full = client.completions.create(model=LLM, prompt=COUNTING, max_tokens=30, temperature=0).choices[0].text
    stop = middle_word(full)
    res = client.completions.create(model=LLM, prompt=COUNTING, max_tokens=30, temperature=0, stop=stop)
    assert res.choices[0].text == full[: full.find(stop)]
    assert stop not in res.choices[0].text
    assert res.choices[0].finish_reason == "stop"


def test_completion_same_seed_same_sample(client):
    kw = dict(model=LLM, prompt="Once upon a time", max_tokens=24, temperature=1.0, seed=99)
    assert client.completions.create(**kw).choices[0].text == client.completions.create(**kw).choices[0].text


def test_raw_stream_ends_with_done(llm, base_url):
    body = {"model": LLM, "prompt": COUNTING, "max_tokens": 4, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    with requests.post(f"{base_url}/v1/completions", json=body, stream=True, timeout=60) as resp:
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = [line.decode() for line in resp.iter_lines() if line.strip()]
    assert lines[-1] == "data: [DONE]", lines
    chunks = [json.loads(line[len("data:"):]) for line in lines[:-1]]
    assert all(c["object"] == "text_completion" for c in chunks), chunks
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4, chunks[-1]


# --- models ---------------------------------------------------------------------------


def test_model_routes(client, http, base_url):
    m = client.models.retrieve(LLM)
    assert m.id == LLM and m.object == "model"
    assert LLM in [m.id for m in client.models.list()]
    raw = http.get(f"{base_url}/v1/models/{LLM}", timeout=10)
    assert raw.status_code == 200 and raw.json()["id"] == LLM and raw.json()["object"] == "model"


# --- errors ---------------------------------------------------------------------------


def assert_openai_error(resp, status, hints=()):
    assert resp.status_code == status, (resp.status_code, resp.text)
    err = resp.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"].strip(), err
    if hints:
        assert any(h.lower() in err["message"].lower() for h in hints), (hints, err)
    return err


def test_n_above_1_is_refused(client, http, base_url):
    with pytest.raises(BadRequestError) as e:
        client.chat.completions.create(model=LLM, messages=QUESTION, max_tokens=4, n=2)
    assert e.value.status_code == 400 and e.value.param == "n"
    with pytest.raises(BadRequestError):
        client.completions.create(model=LLM, prompt="Hi", max_tokens=4, n=3)
    resp = http.post(
        f"{base_url}/v1/chat/completions",
        json={"model": LLM, "messages": QUESTION, "max_tokens": 4, "n": 2},
        timeout=60,
    )
    err = assert_openai_error(resp, 400, ["n"])
    assert err["param"] == "n"


def test_unknown_model_is_404(client):
    with pytest.raises(NotFoundError) as e:
        client.chat.completions.create(model="gpt-4o", messages=QUESTION, max_tokens=4)
    assert "gpt-4o" in str(e.value)
    with pytest.raises(NotFoundError):
        client.completions.create(model="gpt-4o", prompt="Hi", max_tokens=4)
    with pytest.raises(NotFoundError):
        client.models.retrieve("gpt-4o")


def test_a_model_that_writes_no_text_is_refused(client):
    with pytest.raises((BadRequestError, NotFoundError)):
        client.chat.completions.create(model="iris", messages=QUESTION, max_tokens=4)


BAD_CLIENT_CALLS = {
    "temperature 3": ("chat", dict(temperature=3), ["temperature"]),
    "max_tokens 0": ("chat", dict(max_tokens=0), ["max_tokens", "max_new_tokens"]),
    "max_tokens -1": ("completions", dict(max_tokens=-1), ["max_tokens", "-1"]),
    "max_tokens 10**9": ("completions", dict(max_tokens=10**9), ["max_tokens", "max_new_tokens", "1000000000"]),
    "five stop sequences": ("completions", dict(stop=["a", "b", "c", "d", "e"]), ["stop"]),
    "top_p 0": ("chat", dict(top_p=0), ["top_p"]),
    "empty prompt": ("completions", dict(prompt=""), ["prompt"]),
    "no messages": ("chat", dict(messages=[]), ["messages"]),
    "a prompt over the token budget": ("completions", dict(prompt="hello " * 5000), ["token"]),
    "a message over the token budget": (
        "chat",
        dict(messages=[{"role": "user", "content": "hello " * 5000}]),
        ["token"],
    ),
}


def good_chat(client):
    res = client.chat.completions.create(model=LLM, messages=QUESTION, max_tokens=2, temperature=0)
    assert res.choices[0].message.content is not None


@pytest.mark.parametrize("case", list(BAD_CLIENT_CALLS))
def test_bad_requests_raise_bad_request(client, case):
    route, overrides, hints = BAD_CLIENT_CALLS[case]
    if route == "chat":
        kw, create = dict(model=LLM, messages=QUESTION, max_tokens=4), client.chat.completions.create
    else:
        kw, create = dict(model=LLM, prompt="Hello", max_tokens=4), client.completions.create
    kw.update(overrides)
    with pytest.raises(BadRequestError) as e:
        create(**kw)
    assert any(h.lower() in str(e.value).lower() for h in hints), (hints, str(e.value))
    good_chat(client)


BAD_RAW = {
    "prompt 123": ("/v1/completions", {"model": LLM, "prompt": 123}, ["prompt"]),
    "prompt null": ("/v1/completions", {"model": LLM, "prompt": None}, ["prompt"]),
    "two prompts": ("/v1/completions", {"model": LLM, "prompt": ["a", "b"]}, ["prompt"]),
    "stop a number": ("/v1/completions", {"model": LLM, "prompt": "Hi", "stop": 123}, ["stop"]),
    "max_tokens a string": (
        "/v1/completions",
        {"model": LLM, "prompt": "Hi", "max_tokens": "16"},
        ["max_tokens", "string"],
    ),
    "messages a string": ("/v1/chat/completions", {"model": LLM, "messages": "Hi"}, ["messages", "sequence", "string"]),
    "no model": ("/v1/chat/completions", {"messages": QUESTION}, ["model"]),
}


@pytest.mark.parametrize("case", list(BAD_RAW))
def test_bad_raw_bodies_get_openai_errors(client, http, base_url, case):
    path, body, hints = BAD_RAW[case]
    assert_openai_error(http.post(f"{base_url}{path}", json=body, timeout=60), 400, hints)
    good_chat(client)


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions"])
def test_malformed_json_gets_an_openai_error(client, http, base_url, path):
    resp = http.post(
        f"{base_url}{path}", data=b'{"model": "smollm2", ', headers={"Content-Type": "application/json"}, timeout=60
    )
    assert_openai_error(resp, 400, ["json", "line", "column", "eof", "expected"])
    good_chat(client)
