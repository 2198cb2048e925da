"""Async jobs (/inference/async) and WebSocket streaming (/inference/ws) of the
unified /inference API, driven as a client would: plain HTTP polling and the
`websockets` client."""

import json
import time

import pytest
from websockets.sync.client import connect

from conftest import IRIS_LABELS, IRIS_ROWS, JOB_WORKERS

FINISHED = ("succeeded", "failed", "cancelled")


def iris_request(rows=IRIS_ROWS):
    return {"task": "tensors", "engine": "onnx", "model_name": "iris", "data": rows}


def wait_for(http, base_url, job_id, timeout=30, statuses=FINISHED):
    deadline = time.time() + timeout
    while time.time() < deadline:
        resp = http.get(f"{base_url}/inference/async/{job_id}", timeout=10)
        assert resp.status_code == 200, resp.text
        job = resp.json()
        if job["status"] in statuses:
            return job
        time.sleep(0.05)
    pytest.fail(f"job {job_id} did not reach {statuses} in {timeout}s")


def test_an_async_job_is_accepted_then_succeeds_with_the_result(http, base_url):
    resp = http.post(f"{base_url}/inference/async", json=iris_request(), timeout=10)
    assert resp.status_code == 202, resp.text
    accepted = resp.json()
    assert accepted["success"] is True and accepted["status"] == "queued"
    assert accepted["status_url"] == f"/inference/async/{accepted['job_id']}"
    job = wait_for(http, base_url, accepted["job_id"])
    assert job["status"] == "succeeded", job
    assert [p["label"] for p in job["result"]["predictions"]] == IRIS_LABELS
    assert job["task"] == "tensors" and job["model_name"] == "iris"
    assert job["created_at"] <= job["started_at"] <= job["finished_at"]
    assert job["error"] is None


def test_a_failing_job_records_the_error_in_the_documents_shape(http, base_url):
    bad = iris_request(rows=[[1.0, 2.0, 3.0]])
    resp = http.post(f"{base_url}/inference/async", json=bad, timeout=10)
    assert resp.status_code == 202, resp.text
    job = wait_for(http, base_url, resp.json()["job_id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == "INVALID_INPUT"
    assert "does not fit" in job["error"]["message"]
    assert job["result"] is None


def test_invalid_jobs_are_refused_before_they_are_queued(http, base_url):
    resp = http.post(f"{base_url}/inference/async", json={**iris_request(), "task": "nope"}, timeout=10)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "UNSUPPORTED_TASK"
    resp = http.post(f"{base_url}/inference/async", json={**iris_request(), "model_name": "nope"}, timeout=10)
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "MODEL_NOT_FOUND"


def test_unknown_job_and_cancelling_a_finished_job(http, base_url):
    resp = http.get(f"{base_url}/inference/async/0123456789abcdef", timeout=10)
    assert resp.status_code == 404
    body = resp.json()
    assert body["success"] is False and "0123456789abcdef" in body["error"]["message"]
    assert http.delete(f"{base_url}/inference/async/0123456789abcdef", timeout=10).status_code == 404
    job_id = http.post(f"{base_url}/inference/async", json=iris_request(), timeout=10).json()["job_id"]
    wait_for(http, base_url, job_id)
    resp = http.delete(f"{base_url}/inference/async/{job_id}", timeout=10)
    assert resp.status_code == 409
    assert "already succeeded" in resp.json()["error"]["message"]


def test_a_cancelled_job_never_reports_a_result(http, slow_url):
    """On the slow server, every job worker is held by a `slow` job (each run
    takes conftest's SLOW_RUN_MS, one at a time) before the job to cancel is
    submitted, so the cancel finds it still queued; the jobs around it finish."""

    def submit(model):
        body = {"task": "tensors", "engine": "builtin", "model_name": model,
                "data": {"inputs": [{"name": "INPUT0", "shape": [1], "datatype": "BYTES", "data": [model]}]}}
        resp = http.post(f"{slow_url}/inference/async", json=body, timeout=10)
        assert resp.status_code == 202, resp.text
        return resp.json()["job_id"]

    blockers = [submit("slow") for _ in range(JOB_WORKERS)]
    for job_id in blockers:
        assert wait_for(http, slow_url, job_id, statuses=("running",))["status"] == "running"
    cancelled = submit("slow")
    resp = http.delete(f"{slow_url}/inference/async/{cancelled}", timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "cancelled"
    after = [submit("identity") for _ in range(3)]
    for job_id in blockers + after:
        job = wait_for(http, slow_url, job_id)
        assert job["status"] == "succeeded", job
    # The workers have taken every job up to the last ones and skipped this one.
    job = wait_for(http, slow_url, cancelled)
    assert job["status"] == "cancelled" and job["result"] is None and job["error"] is None, job
    assert job["started_at"] is None, job


def ws_url(base_url):
    return base_url.replace("http://", "ws://") + "/inference/ws"


def test_websocket_answers_each_request_and_echoes_ids(base_url):
    with connect(ws_url(base_url)) as ws:
        ws.send(json.dumps({**iris_request(), "id": "first"}))
        first = json.loads(ws.recv(timeout=10))
        ws.send(json.dumps({**iris_request(rows=[IRIS_ROWS[1]]), "id": 2}))
        second = json.loads(ws.recv(timeout=10))
    assert first["type"] == "result" and first["id"] == "first" and first["success"] is True
    assert [p["label"] for p in first["result"]["predictions"]] == IRIS_LABELS
    assert second["id"] == 2
    assert second["result"]["predictions"][0]["label"] == IRIS_LABELS[1]


def test_websocket_errors_arrive_as_messages_and_the_connection_stays_open(base_url):
    with connect(ws_url(base_url)) as ws:
        ws.send("{not json")
        bad_json = json.loads(ws.recv(timeout=10))
        ws.send(json.dumps({"id": "x", "task": "tensors", "model_name": "nope", "data": [[1, 2, 3, 4]]}))
        unknown = json.loads(ws.recv(timeout=10))
        ws.send(b"\x00\x01")
        binary = json.loads(ws.recv(timeout=10))
        ws.send(json.dumps(iris_request()))
        good = json.loads(ws.recv(timeout=10))
    assert bad_json["type"] == "error" and bad_json["error"]["code"] == "INVALID_INPUT"
    assert "not valid JSON" in bad_json["error"]["message"]
    assert unknown["type"] == "error" and unknown["id"] == "x"
    assert unknown["error"]["code"] == "MODEL_NOT_FOUND"
    assert "JSON text" in binary["error"]["message"]
    assert good["type"] == "result" and good["success"] is True


def test_websocket_closes_cleanly_from_the_client(base_url):
    with connect(ws_url(base_url)) as ws:
        ws.send(json.dumps(iris_request()))
        assert json.loads(ws.recv(timeout=10))["success"] is True
        ws.close()
    assert ws.close_code == 1000
