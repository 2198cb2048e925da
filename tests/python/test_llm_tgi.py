"""Hugging Face TGI's API on SmolLM2-135M-Instruct, driven by the stock
`text_generation` client and by raw HTTP: `POST /generate`, `POST /generate_stream`
(server-sent events), `POST /` (the client's route), `GET /info`, `POST /tokenize`,
TGI's `{"error", "error_type"}` errors, and the scheduler freeing the sequence slot
of a client that goes away mid-stream.

TGI serves one model: here the repository's first text model, smollm2. Its
inputs are raw text (no chat template). With `parameters` present and no
`do_sample`, decoding is greedy, as in TGI.
"""

import threading
import time

import pytest
import requests
from text_generation import Client
from text_generation.errors import ValidationError
from text_generation.types import FinishReason

from conftest import sse_data

COUNTING = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"
PROMPT = "The history of the Roman Empire begins"


@pytest.fixture(scope="module")
def client(llm, base_url):
    return Client(base_url, timeout=120)


def raw_generate(http, base_url, inputs, timeout=120, **parameters):
    return http.post(
        f"{base_url}/generate", json={"inputs": inputs, "parameters": parameters}, timeout=timeout
    )


def streamed(base_url, inputs, **parameters):
    """The events of one /generate_stream call, read to the end."""
    with requests.post(
        f"{base_url}/generate_stream",
        json={"inputs": inputs, "parameters": parameters},
        stream=True,
        timeout=120,
    ) as resp:
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("text/event-stream"), resp.headers
        return list(sse_data(resp))


def middle_word(text):
    """A word from the second half of `text` whose first occurrence is not at its start."""
    words = [w.strip(",.") for w in text.split()]
    stop = next((w for w in words[len(words) // 2:] if len(w) >= 2 and text.find(w) >= 3), None)
    assert stop, f"no usable stop word in {text!r}"
    return stop


def assert_tgi_error(resp, status, error_type, hints=()):
    assert resp.status_code == status, (resp.status_code, resp.text)
    body = resp.json()
    assert body.get("error_type") == error_type, body
    assert isinstance(body.get("error"), str) and body["error"].strip(), body
    if hints:
        assert any(h.lower() in body["error"].lower() for h in hints), (hints, body)


# --- /info and /tokenize --------------------------------------------------------------


def test_info(client, http, base_url):
    resp = http.get(f"{base_url}/info", timeout=10)
    assert resp.status_code == 200, resp.text
    info = resp.json()
    assert isinstance(info["model_id"], str) and info["model_id"], info
    assert info["max_stop_sequences"] == 4
    assert info["max_total_tokens"] == 2048
    assert 0 < info["max_input_tokens"] < info["max_total_tokens"]


def test_tokenize_gives_spans_of_the_input(client, http, base_url):
    text = "Hello world, this is a test."
    resp = http.post(f"{base_url}/tokenize", json={"inputs": text}, timeout=10)
    assert resp.status_code == 200, resp.text
    tokens = resp.json()
    assert isinstance(tokens, list) and tokens
    for t in tokens:
        assert isinstance(t["id"], int) and isinstance(t["text"], str), t
        assert isinstance(t["start"], int) and isinstance(t["stop"], int), t
    # Special tokens (a BOS, if the model adds one) cover no text; the others tile it.
    spans = [t for t in tokens if t["stop"] > t["start"]]
    assert spans[0]["start"] == 0 and spans[-1]["stop"] == len(text), tokens
    for a, b in zip(spans, spans[1:]):
        assert a["stop"] == b["start"], tokens
    for t in spans:
        assert text[t["start"]:t["stop"]] == t["text"], t


# --- /generate ------------------------------------------------------------------------


def test_generate_with_the_client(client):
    res = client.generate(PROMPT, max_new_tokens=16)
    d = res.details
    assert res.generated_text.strip(), res
    assert 0 < d.generated_tokens <= 16
    assert d.finish_reason in (FinishReason.Length, FinishReason.EndOfSequenceToken)
    assert len(d.tokens) == d.generated_tokens
    assert "".join(t.text for t in d.tokens) == res.generated_text
    assert all(isinstance(t.id, int) for t in d.tokens)


def test_greedy_stops_at_max_new_tokens_with_finish_reason_length(client):
    for n in (1, 12):
        d = client.generate(COUNTING, max_new_tokens=n).details
        assert d.finish_reason == FinishReason.Length, d
        assert d.generated_tokens == n, d


def test_greedy_is_the_default_when_parameters_are_given(client, http, base_url):
    first = raw_generate(http, base_url, PROMPT, max_new_tokens=12)
    second = raw_generate(http, base_url, PROMPT, max_new_tokens=12)
    assert first.status_code == 200, first.text
    assert first.json() == second.json()
    assert "details" not in first.json()  # only when asked for
    assert first.json()["generated_text"] == client.generate(PROMPT, max_new_tokens=12).generated_text


def test_the_clients_route_answers_a_list(client, http, base_url):
    """`POST /` without `stream` answers `[{"generated_text": ...}]`, as TGI does
    for the Inference API; the `text_generation` client reads `payload[0]`."""
    resp = http.post(
        f"{base_url}/",
        json={"inputs": PROMPT, "parameters": {"max_new_tokens": 4, "do_sample": False}},
        timeout=60,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert isinstance(body, list) and len(body) == 1, body
    assert isinstance(body[0]["generated_text"], str)


def test_the_same_seed_gives_the_same_sample(client):
    kw = dict(do_sample=True, temperature=1.0, top_p=0.95, seed=42, max_new_tokens=20)
    first = client.generate("Write a short poem about the sea.", **kw)
    second = client.generate("Write a short poem about the sea.", **kw)
    assert first.generated_text == second.generated_text
    assert first.details.seed == 42


def test_return_full_text_prepends_the_prompt(client):
    plain = client.generate(PROMPT, max_new_tokens=8).generated_text
    full = client.generate(PROMPT, max_new_tokens=8, return_full_text=True).generated_text
    assert full == PROMPT + plain


def test_a_stop_sequence_ends_the_text_before_it(client):
    full = client.generate(COUNTING, max_new_tokens=40).generated_text
    stop = middle_word(full)
    prefix = full[: full.find(stop)]
    cut = client.generate(COUNTING, max_new_tokens=40, stop_sequences=[stop])
    assert cut.generated_text == prefix, (stop, full, cut.generated_text)
    assert stop not in cut.generated_text
    assert cut.details.finish_reason == FinishReason.StopSequence


# --- /generate_stream -----------------------------------------------------------------


def test_streamed_tokens_make_the_generated_text(client):
    whole = client.generate(PROMPT, max_new_tokens=24)
    events = list(client.generate_stream(PROMPT, max_new_tokens=24))
    assert events, "no events"
    last = events[-1]
    assert last.generated_text == whole.generated_text
    assert "".join(e.token.text for e in events) == whole.generated_text
    for e in events[:-1]:
        assert e.generated_text is None and e.details is None
    assert last.details.finish_reason == whole.details.finish_reason
    assert last.details.generated_tokens == whole.details.generated_tokens == len(events)


def test_raw_stream_events(client, base_url):
    events = streamed(base_url, COUNTING, max_new_tokens=10, do_sample=False)
    assert [e["index"] for e in events] == list(range(1, len(events) + 1)), events
    for e in events:
        assert set(e["token"]) >= {"id", "text", "logprob", "special"}, e
    for e in events[:-1]:
        assert e["generated_text"] is None and e["details"] is None, e
    last = events[-1]
    assert last["generated_text"] == "".join(e["token"]["text"] for e in events)
    d = last["details"]
    assert d["finish_reason"] == "length" and d["generated_tokens"] == 10, d
    assert isinstance(d["input_length"], int) and d["input_length"] > 0, d
    assert "seed" in d


def test_stream_with_a_stop_sequence(client, base_url):
    full = client.generate(COUNTING, max_new_tokens=30).generated_text
    stop = middle_word(full)
    events = streamed(base_url, COUNTING, max_new_tokens=30, do_sample=False, stop=[stop])
    text = "".join(e["token"]["text"] for e in events)
    assert text == events[-1]["generated_text"] == full[: full.find(stop)]
    assert events[-1]["details"]["finish_reason"] == "stop_sequence"


# --- errors ---------------------------------------------------------------------------


def test_validation_errors_raise_the_clients_exception(client):
    with pytest.raises(ValidationError) as e:
        client.generate(PROMPT, max_new_tokens=8, stop_sequences=["a", "b", "c", "d", "e"])
    assert "stop" in str(e.value)
    with pytest.raises(ValidationError):
        client.generate(PROMPT, max_new_tokens=10**9)
    with pytest.raises(ValidationError):
        client.generate("hello " * 5000, max_new_tokens=8)
    with pytest.raises(ValidationError):
        list(client.generate_stream(PROMPT, max_new_tokens=8, stop_sequences=list("abcde")))
    assert client.generate(PROMPT, max_new_tokens=2).details.generated_tokens <= 2


def with_params(**params):
    return {"inputs": PROMPT, "parameters": {"max_new_tokens": 4, **params}}


BAD_BODIES = {
    "temperature 3": (with_params(temperature=3), ["temperature"]),
    "temperature 0": (with_params(temperature=0), ["temperature"]),
    "max_new_tokens -1": (with_params(max_new_tokens=-1), ["max_new_tokens", "-1"]),
    "max_new_tokens 0": (with_params(max_new_tokens=0), ["max_new_tokens"]),
    "max_new_tokens 10**9": (with_params(max_new_tokens=10**9), ["max_new_tokens", "1000000000"]),
    "five stop sequences": (with_params(stop=["a", "b", "c", "d", "e"]), ["stop"]),
    "stop as a string of numbers": (with_params(stop="123"), ["stop", "123", "sequence"]),
    "stop as a list of numbers": (with_params(stop=[1, 2, 3]), ["stop", "integer", "string"]),
    "parameters as a string": ({"inputs": PROMPT, "parameters": "fast"}, ["parameters", "fast"]),
    "empty inputs": ({"inputs": ""}, ["inputs"]),
    "inputs 123": ({"inputs": 123}, ["inputs", "123"]),
    "inputs null": ({"inputs": None}, ["inputs", "null"]),
    "inputs a list": ({"inputs": ["a", "b"]}, ["inputs", "sequence", "array"]),
    "no inputs": ({"parameters": {"max_new_tokens": 4}}, ["inputs"]),
    "a prompt over the token budget": (
        {"inputs": "hello " * 5000, "parameters": {"max_new_tokens": 4}},
        ["token"],
    ),
}

RAW_BODIES = {
    "malformed JSON": (b'{"inputs": "Hello", "parameters": {', ["json", "line", "column", "eof", "expected"]),
    "empty body": (b"", ["empty", "json", "body"]),
}


def assert_still_serves(http, base_url):
    resp = raw_generate(http, base_url, PROMPT, max_new_tokens=2)
    assert resp.status_code == 200, resp.text
    assert isinstance(resp.json()["generated_text"], str)


@pytest.mark.parametrize("route", ["/generate", "/generate_stream"])
@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_requests_are_validation_errors(client, http, base_url, case, route):
    body, hints = BAD_BODIES[case]
    resp = http.post(f"{base_url}{route}", json=body, timeout=60)
    assert_tgi_error(resp, 422, "validation", hints)
    assert_still_serves(http, base_url)


@pytest.mark.parametrize("case", list(RAW_BODIES))
def test_unreadable_bodies_are_validation_errors(client, http, base_url, case):
    raw, hints = RAW_BODIES[case]
    resp = http.post(
        f"{base_url}/generate", data=raw, headers={"Content-Type": "application/json"}, timeout=60
    )
    assert_tgi_error(resp, 422, "validation", hints)
    assert_still_serves(http, base_url)


# --- a client that goes away frees its slot -------------------------------------------


class Stream(threading.Thread):
    """One /generate_stream call read on its own thread: when its first token
    came, whether (and when) its last event came, and a way to hang up."""

    def __init__(self, base_url, prompt, max_new_tokens):
        super().__init__(daemon=True)
        self.session = requests.Session()
        self.resp = self.session.post(
            f"{base_url}/generate_stream",
            json={"inputs": prompt, "parameters": {"max_new_tokens": max_new_tokens, "do_sample": False}},
            stream=True,
            timeout=(10, 120),
        )
        assert self.resp.status_code == 200, self.resp.text
        self.tokens = 0
        self.first_token = threading.Event()
        self.finished = threading.Event()
        self.hang_up = threading.Event()
        self.last = None
        self.failure = None

    def run(self):
        try:
            for event in sse_data(self.resp):
                if "error" in event:
                    self.failure = event
                    return
                self.tokens += 1
                self.first_token.set()
                if event.get("details") is not None:
                    self.last = event
                    self.finished.set()
                    return
                if self.hang_up.is_set():
                    return
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.failure = repr(e)
        finally:
            self.resp.close()
            self.session.close()

    def close(self, check=True):
        self.hang_up.set()
        self.join(timeout=60)
        if check:
            assert not self.is_alive(), "a stream did not hang up"


def counting_prompt(start):
    """A long prompt whose greedy continuation counts on for hundreds of tokens."""
    numbers = ", ".join(str(n) for n in range(start, start + 40))
    return f"Here are the numbers counted one by one: {numbers},"


def test_a_closed_stream_frees_its_slot_for_a_waiting_request(client, base_url):
    """The model has 8 sequence slots. Eight long streams fill them; one client
    hangs up; a ninth, short request must then get that slot and finish while
    the seven others are still streaming (without the freed slot it would wait
    for one of them to end)."""
    streams = []
    try:
        for i in range(8):
            s = Stream(base_url, counting_prompt(100 + 50 * i), max_new_tokens=400)
            s.start()
            streams.append(s)
        for s in streams:
            assert s.first_token.wait(timeout=120), "a stream produced no token"
            assert s.failure is None, s.failure
        leaving, staying = streams[0], streams[1:]
        leaving.close()
        assert not leaving.finished.is_set(), "the stream ended before the client hung up"

        ninth = requests.post(
            f"{base_url}/generate",
            json={"inputs": "Hello, my name is", "parameters": {"max_new_tokens": 8, "do_sample": False}},
            timeout=120,
        )
        ended = [s.tokens for s in staying if s.finished.is_set()]
        assert ninth.status_code == 200, ninth.text
        assert isinstance(ninth.json()["generated_text"], str)
        assert ended == [], (
            f"{len(ended)} of the 7 remaining streams had already ended when the ninth request "
            "returned, so it may have waited for their slot instead of the freed one"
        )
        for s in staying:
            assert s.failure is None, s.failure
            assert s.tokens < 400
    finally:
        for s in streams:
            s.close(check=False)
