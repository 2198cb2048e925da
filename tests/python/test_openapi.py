"""The API description: GET /openapi.json is a valid OpenAPI 3.1 document
(openapi-spec-validator) naming every face's routes, credentials and error
envelope; Swagger UI at /docs renders it in a real browser from the server
alone; and schemathesis, run against a server of this suite's own, finds no
5xx and no answer that breaks its documented schema, status or media type.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, foreign, start_inferd

# One route of each face, with the envelope its errors come in.
ENVELOPES = {
    ("/v2/models/{model}/infer", "post"): "Error",
    ("/v1/models/{model}", "post"): "Error",
    ("/v1/models/{model}/predict", "post"): "Detail",
    ("/inference/infer", "post"): "UnifiedError",
    ("/v1/generate", "post"): "GatewayError",
    ("/generate", "post"): "TgiError",
    ("/v1/chat/completions", "post"): "OpenAiError",
    ("/api/v1/inference/services", "post"): "ServiceError",
    ("/zstack/v1/ai/model-services", "get"): "ZsError",
}


@pytest.fixture(scope="module")
def spec(base_url, http):
    r = http.get(f"{base_url}/openapi.json", timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


def test_the_document_validates(spec):
    try:
        from openapi_spec_validator import validate
    except ImportError:
        pytest.skip("openapi-spec-validator is not installed: pip install -r tests/python/requirements.txt")
    validate(spec)
    assert spec["openapi"] == "3.1.0"


def test_every_face_is_described_with_its_envelope_and_credentials(spec):
    paths = spec["paths"]
    for (path, method), envelope in ENVELOPES.items():
        op = paths[path][method]
        assert op["summary"], path
        default = op["responses"]["default"]["content"]["application/json"]["schema"]
        assert default == {"$ref": f"#/components/schemas/{envelope}"}, (path, default)
        assert envelope in spec["components"]["schemas"]
    infer = paths["/v2/models/{model}/infer"]["post"]
    assert infer["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/InferRequest")
    assert [p["name"] for p in infer["parameters"]] == ["model"]
    assert {"bearer": []} in infer["security"] and {"apiKey": []} in infer["security"]
    assert "security" not in paths["/v2/health/live"]["get"]
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer",
                                 "description": schemes["bearer"]["description"]}
    assert schemes["apiKey"]["in"] == "header" and schemes["apiKey"]["name"] == "X-API-Key"
    operations = sum(len(item) for item in paths.values())
    assert operations >= 90, operations
    ids = [op["operationId"] for item in paths.values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_swagger_ui_renders_the_document_offline(browser, base_url, spec, tmp_path):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    urls, errors = [], []
    page.on("request", lambda r: urls.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{base_url}/docs")
        assert page.url == f"{base_url}/docs/"
        page.wait_for_selector(".opblock", timeout=20_000)
        shown = page.locator(".opblock").count()
        documented = sum(len(item) for item in spec["paths"].values())
        assert shown == documented, (shown, documented)
        assert page.locator(".info .title").inner_text().startswith("inferd")
        page.screenshot(path=str(tmp_path / "docs.png"))
    finally:
        context.close()
    assert not errors, errors
    assert not foreign(urls, base_url), foreign(urls, base_url)


# The committed models: the fuzzer needs real ones to reach past 404, and none of
# the fetched weights (a generation per fuzzed request would take minutes).
FUZZED_MODELS = ["iris", "digits", "add_sub", "identity"]


@pytest.fixture(scope="module")
def fuzzed_url(tmp_path_factory):
    yield from start_inferd(tmp_path_factory, "openapi",
                            {m: REPO_ROOT / "models" / m for m in FUZZED_MODELS})


def schemathesis():
    exe = Path(sys.executable).parent / "schemathesis"
    if not exe.exists():
        pytest.skip("schemathesis is not installed: pip install -r tests/python/requirements.txt")
    return str(exe)


# The operations that unload models or empty the cache: fuzzed last, on their own,
# so that the rest never meet a model unloaded by the fuzzer (whose 503 "not
# loaded; load it first" is the protocols' answer, not a server error).
STATE_CHANGING = "unload|cache"
# The two endless streams: the dashboard's events and the WebSocket.
ENDLESS = "^/(dashboard/events|inference/ws)$"


def fuzz(url, cwd, *select):
    """One schemathesis run over the operations `select` picks; its summary,
    with the operations tested and the cases generated."""
    cmd = [
        schemathesis(), "--config-file", str(REPO_ROOT / "tests" / "python" / "schemathesis.toml"),
        "run", f"{url}/openapi.json",
        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                    "response_schema_conformance",
        *select,
        "--max-examples", "10", "--workers", "1", "--request-timeout", "20",
        "--seed", "1", "--no-shrink",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=600)
    report = out.stdout + out.stderr
    summary = report[report.rfind("SUMMARY"):] if "SUMMARY" in report else report[-3000:]
    print(summary)
    assert out.returncode == 0, report[-12000:]
    tested = re.search(r"Tested: (\d+)", report)
    cases = re.search(r"(\d+) generated, \1 passed", report)
    assert tested and cases, summary
    return int(tested.group(1)), int(cases.group(1))


def test_schemathesis_finds_no_server_error_and_no_schema_break(fuzzed_url, tmp_path):
    """Every documented operation but the endless streams, positive, negative
    and edge cases, then the stateful phase; checked for 5xx, undocumented
    statuses and media types, and answers that break their schema."""
    ops, cases = fuzz(fuzzed_url, tmp_path, "--exclude-path-regex", f"{ENDLESS}|{STATE_CHANGING}")
    assert ops >= 80 and cases > 1000, (ops, cases)
    ops, cases = fuzz(fuzzed_url, tmp_path, "--include-path-regex", STATE_CHANGING)
    assert ops >= 8, ops
