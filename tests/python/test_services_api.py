"""Seed 003's inference services over plain HTTP: the life cycle, pagination
arithmetic, predict on real digits, and bad inputs. Every service a test makes
is deleted again, and counts are taken in a workspace of the test's own."""

import random
import threading
import time
import uuid

import pytest

from test_inference import _digits, digit_png_b64, first_index_of

PATH = "/api/v1/inference/services"


@pytest.fixture
def svc(base_url, http):
    """Creates services and deletes them all at the end of the test."""
    made = []

    def create(**fields):
        body = {"name": f"py-{uuid.uuid4().hex[:10]}", "model_id": "digits", "memory": 1 << 27}
        body.update(fields)
        r = http.post(f"{base_url}{PATH}", json=body, timeout=10)
        if r.status_code == 201:
            made.append(r.json()["data"]["service_id"])
        return r

    yield create
    for sid in made:
        http.delete(f"{base_url}{PATH}/{sid}", timeout=10)


def record(http, base_url, sid):
    r = http.get(f"{base_url}{PATH}/{sid}", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def wait_status(http, base_url, sid, want, timeout=30):
    deadline = time.time() + timeout
    while True:
        rec = record(http, base_url, sid)
        if rec["status"] == want:
            return rec
        assert time.time() < deadline, f"{sid} is {rec['status']}, wanted {want}: {rec}"
        time.sleep(0.05)


def predict(http, base_url, sid, body):
    return http.post(f"{base_url}{PATH}/{sid}/predict", json=body, timeout=30)


def test_life_cycle(http, base_url, svc):
    r = svc(description="digits", workspace_id=456, model_version="v1.0", framework="onnx",
            cpu=1, gpu=0, replicas=2)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["code"] == 0 and body["message"] == "推理服务创建成功"
    data = body["data"]
    sid = data["service_id"]
    assert sid.startswith("svc-") and data["status"] == "creating" and data["created_at"].endswith("Z")
    rec = wait_status(http, base_url, sid, "running")
    for key, want in [("description", "digits"), ("workspace_id", 456), ("model_id", "digits"),
                      ("model_version", "v1"), ("framework", "onnx"), ("cpu", 1), ("memory", 1 << 27),
                      ("gpu", 0), ("replicas", 2)]:
        assert rec[key] == want, (key, rec)
    assert rec["endpoint_url"].endswith(f"{PATH}/{sid}/predict")

    r = http.post(f"{base_url}{PATH}/{sid}/stop", timeout=10)
    assert r.status_code == 200 and r.json() == {"code": 0, "message": "推理服务停止中"}
    wait_status(http, base_url, sid, "stopped")
    r = predict(http, base_url, sid, {"inputs": {"image": digit_png_b64(0)}})
    assert r.status_code == 409 and r.json()["code"] == 40901 and "start it" in r.json()["message"]
    assert http.post(f"{base_url}{PATH}/{sid}/stop", timeout=10).status_code == 409

    assert http.post(f"{base_url}{PATH}/{sid}/start", timeout=10).status_code == 200
    wait_status(http, base_url, sid, "running")
    assert predict(http, base_url, sid, {"inputs": {"image": digit_png_b64(0)}}).status_code == 200

    r = http.delete(f"{base_url}{PATH}/{sid}", timeout=10)
    assert r.status_code == 200 and r.json() == {"code": 0, "message": "推理服务删除成功"}
    r = http.get(f"{base_url}{PATH}/{sid}", timeout=10)
    assert r.status_code == 404 and r.json()["code"] == 40401 and r.json()["data"] is None
    assert http.delete(f"{base_url}{PATH}/{sid}", timeout=10).status_code == 404


def test_predict_classifies_real_digits(http, base_url, svc):
    sid = svc().json()["data"]["service_id"]
    wait_status(http, base_url, sid, "running")
    for digit in (0, 3, 7):
        r = predict(http, base_url, sid, {"inputs": {"image": digit_png_b64(first_index_of(digit))}})
        assert r.status_code == 200, r.text
        preds = r.json()["data"]["predictions"]
        assert len(preds) == 5 and preds[0]["class"] == str(digit), preds
        conf = [p["confidence"] for p in preds]
        assert conf == sorted(conf, reverse=True) and sum(conf) <= 1.0001
    r = predict(http, base_url, sid, {"inputs": {"image": [digit_png_b64(first_index_of(1)),
                                                           digit_png_b64(first_index_of(2))]},
                                      "parameters": {"top_k": 2}})
    lists = r.json()["data"]["predictions"]
    assert [[p["class"] for p in ps][0] for ps in lists] == ["1", "2"] and len(lists[0]) == 2
    pixels = (_digits().images[first_index_of(4)] / 16.0).reshape(1, 64).tolist()
    r = predict(http, base_url, sid, {"inputs": {"input": pixels}})
    assert r.status_code == 200, r.text
    probs = r.json()["data"]["predictions"][0]
    assert max(range(10), key=lambda i: probs[i]) == 4


@pytest.mark.parametrize("count", [0, 1, 20, 21, 45])
def test_pagination_arithmetic(http, base_url, svc, count):
    ws = random.randint(10**9, 2 * 10**9)
    for _ in range(count):
        assert svc(workspace_id=ws, model_id="iris").status_code == 201

    def page(n, size=None):
        params = {"workspace_id": ws, "page": n}
        if size:
            params["page_size"] = size
        r = http.get(f"{base_url}{PATH}", params=params, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()["data"]

    first = page(1)
    pages = -(-count // 20)
    assert first["pagination"] == {"page": 1, "page_size": 20, "total": count, "total_pages": pages}
    assert len(first["items"]) == min(count, 20)
    if pages:
        assert len(page(pages)["items"]) == count - 20 * (pages - 1)
    assert page(pages + 1)["items"] == []
    if count:
        whole = page(1, 100)
        assert len(whole["items"]) == count and whole["pagination"]["total_pages"] == 1
        ids = [i["service_id"] for i in whole["items"]]
        assert len(set(ids)) == count


def test_filters(http, base_url, svc):
    ws = random.randint(10**9, 2 * 10**9)
    tag = uuid.uuid4().hex[:8]
    a = svc(workspace_id=ws, name=f"alpha-{tag}", model_id="iris").json()["data"]["service_id"]
    svc(workspace_id=ws, name=f"beta-{tag}", model_id="iris")
    wait_status(http, base_url, a, "running")
    http.post(f"{base_url}{PATH}/{a}/stop", timeout=10)
    wait_status(http, base_url, a, "stopped")
    got = http.get(f"{base_url}{PATH}", params={"workspace_id": ws, "status": "stopped"}, timeout=10).json()
    assert [i["service_id"] for i in got["data"]["items"]] == [a]
    got = http.get(f"{base_url}{PATH}", params={"name": f"beta-{tag}"}, timeout=10).json()
    assert [i["name"] for i in got["data"]["items"]] == [f"beta-{tag}"]


def test_concurrent_creates_of_one_name_make_one_service(http, base_url, svc):
    name = f"race-{uuid.uuid4().hex[:8]}"
    codes = []
    threads = [threading.Thread(target=lambda: codes.append(svc(name=name, model_id="iris").status_code))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [201] + [409] * 7


def test_a_model_bigger_than_its_memory_fails_with_the_reason(http, base_url, svc):
    sid = svc(memory=1).json()["data"]["service_id"]
    rec = wait_status(http, base_url, sid, "failed")
    assert "bytes" in rec["reason"], rec
    r = predict(http, base_url, sid, {"inputs": {"image": digit_png_b64(0)}})
    assert r.status_code == 409 and "failed to deploy" in r.json()["message"]


@pytest.mark.parametrize("fields,why", [
    ({"name": 5}, "'name' must be a string"),
    ({"name": ""}, "'name' is required"),
    ({"cpu": "4"}, "'cpu' must be a number"),
    ({"cpu": -1}, "'cpu' must be more than 0"),
    ({"memory": "1GB"}, "'memory' must be an integer"),
    ({"memory": -5}, "'memory' must be an integer from 1"),
    ({"replicas": "2"}, "'replicas' must be an integer"),
    ({"replicas": 0}, "'replicas' must be an integer from 1 to"),
    ({"replicas": 1000}, "'replicas' must be an integer from 1 to"),
    ({"gpu": 1}, "no GPU"),
    ({"model_id": 789}, "'789' is not in the repository"),
    ({"model_id": "nope"}, "'nope' is not in the repository"),
    ({"model_version": "v9"}, "no version 9"),
    ({"model_version": "latest"}, "'model_version' must name"),
    ({"framework": "pytorch"}, "runs on 'onnx'"),
    ({"workspace_id": "ws"}, "'workspace_id' must be an integer"),
])
def test_bad_fields_are_400_with_the_reason(http, base_url, svc, fields, why):
    r = svc(**fields)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == 40001 and body["data"] is None and why in body["message"], body


def test_bad_bodies_and_unknown_ids(http, base_url, svc):
    for raw in ["not json", "[1, 2]", ""]:
        r = http.post(f"{base_url}{PATH}", data=raw, timeout=10)
        assert r.status_code == 400 and r.json()["code"] == 40001, raw
    for bad in ["0", "101", "x"]:
        r = http.get(f"{base_url}{PATH}", params={"page_size": bad}, timeout=10)
        assert r.status_code == 400 and "page_size" in r.json()["message"]
    assert http.get(f"{base_url}{PATH}", params={"status": "sleeping"}, timeout=10).status_code == 400
    for method, suffix in [("GET", ""), ("POST", "/stop"), ("POST", "/start"), ("POST", "/predict")]:
        r = http.request(method, f"{base_url}{PATH}/svc-000000000000{suffix}", json={"inputs": {}}, timeout=10)
        assert r.status_code == 404 and r.json()["code"] == 40401, (method, suffix, r.text)
    sid = svc().json()["data"]["service_id"]
    wait_status(http, base_url, sid, "running")
    for body, why in [({}, "needs 'inputs'"), ({"inputs": [1]}, "'inputs' must be an object"),
                      ({"inputs": {"image": "@@not base64@@"}}, "not valid base64"),
                      ({"inputs": {"image": 7}}, "'inputs.image' must be base64"),
                      ({"inputs": {"image": "aGVsbG8="}}, "image 0")]:
        r = predict(http, base_url, sid, body)
        assert r.status_code == 400 and why in r.json()["message"], (body, r.text)
    assert predict(http, base_url, sid, {"inputs": {"image": digit_png_b64(0)}}).status_code == 200
