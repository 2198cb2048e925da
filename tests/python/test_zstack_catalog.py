"""Seed 001's model-service catalog over plain HTTP, ZStack's way.

The server under test was started on a fresh data directory, so the catalog
holds the recipes shipped in catalog/model-services.json. Entries these tests
create are deleted again.
"""

import json
import time
import uuid
from pathlib import Path

import pytest

from conftest import REPO_ROOT

SHIPPED = json.loads((Path(REPO_ROOT) / "catalog" / "model-services.json").read_text())
SEED_FIELDS = [
    "uuid", "name", "description", "readme", "yaml", "requestCpu", "requestMemory",
    "modelCenterUuid", "type", "framework", "source", "size", "system", "hasNewVersion",
    "gpuComputeCapability", "installPath", "pythonVersion", "condaVersion", "version",
    "startCommand", "containerCommand", "containerArgs", "supportDistributed",
    "cpuArchitectures", "vendorToSpecUuidsMap", "modelServiceRefs", "modelServiceImages",
    "createDate", "lastOpDate",
]


@pytest.fixture
def api(base_url):
    return f"{base_url}/zstack/v1/ai/model-services"


def query(http, api, *conds, **params):
    r = http.get(api, params=[("q", c) for c in conds] + list(params.items()), timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True and body["error"] is None
    return body


def names(body):
    return sorted(i["name"] for i in body["inventories"])


def shipped_names(pred):
    return sorted(e["name"] for e in SHIPPED if pred(e))


def test_every_shipped_recipe_has_every_seed_field(http, api):
    body = query(http, api, "system=true")
    assert len(body["inventories"]) >= len(SHIPPED)
    for inv in body["inventories"]:
        assert sorted(inv) == sorted(SEED_FIELDS), inv
        for ref in inv["modelServiceRefs"]:
            assert ref["modelServiceUuid"] == inv["uuid"] and len(ref["uuid"]) == 32


def test_like_in_and_not_in(http, api):
    assert names(query(http, api, "name~=Remote%", "system=true")) == shipped_names(
        lambda e: e["name"].startswith("Remote"))
    assert names(query(http, api, "framework?=onnx,candle")) == shipped_names(
        lambda e: e["framework"] in ("onnx", "candle"))
    got = names(query(http, api, "framework!?=tgi,openai,ollama", "system=true"))
    assert got == shipped_names(lambda e: e["framework"] not in ("tgi", "openai", "ollama"))


def test_numeric_comparisons_and_refs(http, api):
    got = names(query(http, api, "requestMemory>=536870912", "system=true"))
    assert got == shipped_names(lambda e: e["requestMemory"] >= 536870912)
    got = names(query(http, api, "modelServiceRefs.modelUuid=digits"))
    assert got == ["ONNX model service (tract)"]


def test_count_reply_with_count_paging_fields_and_sort(http, api):
    total = query(http, api, "system=true", count="true")
    assert "inventories" not in total and total["total"] == len(SHIPPED)
    page = query(http, api, "system=true", limit="2", start="1", replyWithCount="true")
    assert len(page["inventories"]) == 2 and page["total"] == len(SHIPPED)
    shaped = query(http, api, "system=true", fields="uuid,name")
    assert all(sorted(i) == ["name", "uuid"] for i in shaped["inventories"])
    up = [i["requestMemory"] for i in query(http, api, "system=true", sort="+requestMemory")["inventories"]]
    down = [i["requestMemory"] for i in query(http, api, "system=true", sortBy="requestMemory",
                                               sortDirection="desc")["inventories"]]
    assert up == sorted(up) and down == sorted(down, reverse=True)


def test_dates_are_query_fields_in_zstacks_forms(http, api):
    """The shipped recipes were made when the store was; none before 2000, all
    before tomorrow, in milliseconds or Java's Timestamp form."""
    everything = names(query(http, api, "system=true"))
    assert names(query(http, api, "system=true", "createDate>2000-01-01 00:00:00")) == everything
    assert names(query(http, api, "createDate<2000-01-01")) == []
    tomorrow_ms = int((time.time() + 86400) * 1000)
    assert names(query(http, api, "system=true", f"lastOpDate<{tomorrow_ms}")) == everything


def test_get_by_uuid_is_a_one_condition_query(http, api):
    first = SHIPPED[0]
    body = http.get(f"{api}/{first['uuid']}", timeout=10).json()
    assert [i["name"] for i in body["inventories"]] == [first["name"]]
    missing = http.get(f"{api}/{'f' * 32}", timeout=10)
    assert missing.status_code == 200 and missing.json()["inventories"] == []


@pytest.mark.parametrize("cond,why", [
    ("name", "doesn't contain any query operator"),
    ("colour=red", "unknown field 'colour'"),
    ("requestCpu>abc", "is not an integer"),
    ("createDate>last week", "is not a date"),
    ("name=", "not a key-value pair"),
])
def test_malformed_q_is_a_400_error_code(http, api, cond, why):
    r = http.get(api, params={"q": cond}, timeout=10)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["success"] is False
    err = body["error"]
    assert err["code"] == "SYS.1007" and why in err["details"] and cond in err["details"]
    assert set(err) == {"code", "description", "details", "elaboration", "opaque", "cause"}


def test_a_condition_value_keeps_its_spaces_and_commas(http, api):
    assert names(query(http, api, "name=Remote TGI server")) == ["Remote TGI server"]
    assert query(http, api, "name= Remote TGI server")["inventories"] == []
    assert names(query(http, api, "name?=Remote TGI server,Remote Ollama server")) == [
        "Remote Ollama server", "Remote TGI server"]
    assert names(query(http, api, "name~=Remote_TGI%")) == ["Remote TGI server"]


def test_non_integer_limit_and_sql_looking_values(http, api):
    r = http.get(api, params={"limit": "ten"}, timeout=10)
    assert r.status_code == 400 and "'limit'" in r.json()["error"]["details"]
    assert query(http, api, "name=x' OR '1'='1")["inventories"] == []
    assert query(http, api, "name~=%' OR 1=1 --")["inventories"] == []


def job(http, accepted):
    """A change's final answer, ZStack's way: 202 with a location, polled."""
    assert accepted.status_code == 202, accepted.text
    location = accepted.json()["location"]
    assert accepted.headers["Location"] == location and "/zstack/v1/api-jobs/" in location
    return http.get(location, timeout=10)


def test_create_update_and_delete_zstacks_way(http, api):
    name = f"py-{uuid.uuid4().hex[:8]}"
    r = http.post(api, json={"params": {"name": name, "framework": "onnx", "requestCpu": 1,
                                        "requestMemory": 1 << 20, "modelServiceRefs": ["iris"]},
                             "systemTags": [], "userTags": []}, timeout=10)
    r = job(http, r)
    assert r.status_code == 200, r.text
    inv = r.json()["inventory"]
    try:
        assert inv["name"] == name and inv["system"] is None
        assert names(query(http, api, f"name={name}")) == [name]
        one = http.get(f"{api}/{inv['uuid']}", params={"fields": "uuid,modelServiceRefs"}, timeout=10)
        assert one.status_code == 200, one.text
        [got] = one.json()["inventories"]
        assert sorted(got) == ["modelServiceRefs", "uuid"]
        assert [r["modelUuid"] for r in got["modelServiceRefs"]] == ["iris"]
        r = http.put(f"{api}/{inv['uuid']}/actions",
                     json={"updateModelService": {"description": "updated", "requestCpu": 2}}, timeout=10)
        r = job(http, r)
        assert r.status_code == 200, r.text
        assert r.json()["inventory"]["description"] == "updated"
        assert query(http, api, f"uuid={inv['uuid']}", "requestCpu=2")["inventories"]
        bad = http.put(f"{api}/{inv['uuid']}/actions", json={"renameModelService": {}}, timeout=10)
        assert bad.status_code == 400 and "updateModelService" in bad.json()["error"]["details"]
    finally:
        r = job(http, http.delete(f"{api}/{inv['uuid']}", timeout=10))
    assert r.status_code == 200 and r.json() == {"success": True, "error": None}
    assert http.delete(f"{api}/{inv['uuid']}", timeout=10).status_code == 404
    assert query(http, api, f"name={name}")["inventories"] == []


@pytest.mark.parametrize("params,why", [
    ({"requestCpu": 1}, "'name' is required"),
    ({"name": "x", "requestCpu": "4"}, "must be an integer"),
    ({"name": "x", "requestMemory": -5}, "non-negative"),
    ({"name": "x", "system": "yes"}, "true or false"),
])
def test_bad_entries_are_refused(http, api, params, why):
    r = http.post(api, json={"params": params}, timeout=10)
    assert r.status_code == 400, r.text
    assert why in r.json()["error"]["details"]
    r = http.post(api, data="not json", timeout=10)
    assert r.status_code == 400 and r.json()["error"]["code"] == "SYS.1007"


def test_a_recipe_deploys_as_a_running_service(http, api, base_url):
    name = f"from-catalog-{uuid.uuid4().hex[:8]}"
    r = http.put(f"{api}/{SHIPPED[0]['uuid']}/actions",
                 json={"deployModelService": {"name": name, "modelUuid": "iris", "memory": 1 << 27}},
                 timeout=10)
    r = job(http, r)
    assert r.status_code == 200, r.text
    svc = r.json()["inventory"]
    assert svc["model_id"] == "iris" and svc["framework"] == "onnx"
    try:
        import time
        deadline = time.time() + 30
        while True:
            rec = http.get(f"{base_url}/api/v1/inference/services/{svc['service_id']}", timeout=10).json()
            if rec["data"]["status"] != "creating" or time.time() > deadline:
                break
            time.sleep(0.05)
        assert rec["data"]["status"] == "running", rec
        out = http.post(svc["endpoint_url"], json={"inputs": {"X": [[5.1, 3.5, 1.4, 0.2]]}}, timeout=10)
        assert out.status_code == 200 and out.json()["data"]["predictions"]["label"] == [0], out.text
        wrong = http.put(f"{api}/{SHIPPED[0]['uuid']}/actions",
                         json={"deployModelService": {"name": name + "x", "modelUuid": "smollm2"}}, timeout=10)
        assert wrong.status_code == 400 and "not one this recipe serves" in wrong.json()["error"]["details"]
    finally:
        http.delete(f"{base_url}/api/v1/inference/services/{svc['service_id']}", timeout=10)
