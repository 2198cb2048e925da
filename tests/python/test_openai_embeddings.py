"""OpenAI's embeddings API with the stock `openai` client, on the real
all-MiniLM-L6-v2 (`scripts/fetch-models`), and the unified feature-extraction task
on the same model."""

import base64
import math

import numpy as np
import pytest
from openai import BadRequestError, NotFoundError, OpenAI


@pytest.fixture(scope="module")
def client(base_url, http):
    # Earlier suites may have unloaded or evicted it: load it as a user would.
    # Only a load that fails (no weights) skips, and under CI a skip fails.
    load = http.post(f"{base_url}/v2/repository/models/minilm/load", timeout=120)
    ready = http.get(f"{base_url}/v2/models/minilm/ready", timeout=10)
    if ready.status_code != 200:
        pytest.skip(f"minilm does not load ({load.text}); run scripts/fetch-models")
    return OpenAI(base_url=f"{base_url}/v1", api_key="not-needed")


def cosine(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_one_string_gives_a_unit_vector_and_usage(client):
    res = client.embeddings.create(model="minilm", input="A man is eating food.")
    assert res.object == "list" and res.model == "minilm"
    assert len(res.data) == 1 and res.data[0].index == 0
    vec = res.data[0].embedding
    assert len(vec) == 384
    assert math.isclose(np.linalg.norm(vec), 1.0, rel_tol=1e-4)
    assert res.usage.prompt_tokens > 0 and res.usage.total_tokens == res.usage.prompt_tokens


def test_similar_sentences_are_closer_than_unrelated_ones(client):
    texts = ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply today."]
    res = client.embeddings.create(model="minilm", input=texts)
    v = [d.embedding for d in res.data]
    assert [d.index for d in res.data] == [0, 1, 2]
    assert cosine(v[0], v[1]) > 0.5 > cosine(v[0], v[2])


def test_base64_encoding_decodes_to_the_same_floats(client):
    plain = client.embeddings.create(model="minilm", input="hello world", encoding_format="float")
    packed = client.embeddings.create(model="minilm", input="hello world", encoding_format="base64")
    as_floats = packed.data[0].embedding
    if isinstance(as_floats, str):
        as_floats = np.frombuffer(base64.b64decode(as_floats), dtype="<f4").tolist()
    assert np.allclose(as_floats, plain.data[0].embedding, atol=1e-6)


def test_more_texts_than_a_batch_keep_their_order(client):
    texts = [f"sentence number {i}" for i in range(70)]
    res = client.embeddings.create(model="minilm", input=texts)
    assert [d.index for d in res.data] == list(range(70))
    alone = client.embeddings.create(model="minilm", input=texts[41]).data[0].embedding
    assert cosine(alone, res.data[41].embedding) > 0.99999


def test_openai_errors_come_in_openais_shape(client):
    with pytest.raises(NotFoundError) as e:
        client.embeddings.create(model="nope", input="x")
    assert "nope" in str(e.value)
    with pytest.raises(BadRequestError) as e:
        client.embeddings.create(model="iris", input="x")
    assert "feature-extraction" in str(e.value)
    with pytest.raises(BadRequestError) as e:
        client.embeddings.create(model="minilm", input="x", dimensions=12)
    assert "384" in str(e.value)


def test_unified_feature_extraction_matches_the_openai_route(client, base_url, http):
    text = "Embeddings through the unified API."
    res = http.post(
        f"{base_url}/inference/infer",
        json={"task": "feature-extraction", "engine": "onnxruntime", "model_name": "minilm", "data": [text]},
        timeout=30,
    )
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["success"] is True and body["result"]["dimensions"] == 384
    via_openai = client.embeddings.create(model="minilm", input=text).data[0].embedding
    assert cosine(body["result"]["embeddings"][0], via_openai) > 0.99999
