"""The monitoring dashboard at /dashboard, driven in a real browser: Debian's
chromium (/usr/bin/chromium, `apt-get install chromium`) through Playwright for
Python (never `playwright install`: no downloaded browser).

The page must render every model, stay on the server's origin, show numbers
that move with traffic, unload and load a model with its buttons, and, on a
server with keys, ask for a key, keep it in sessionStorage only (never in a URL)
and show each role only what it may do.

Each test leaves a full-page screenshot in its pytest tmp_path; with
INFERD_DASHBOARD_SCREENSHOT set to a path, the traffic test also writes one
there (1280 wide) for the README.
"""

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from conftest import IDENTITY_TOML, IRIS_ROWS, foreign, inferd_binary, start_inferd

WAIT_MS = 10_000  # the page gets a state event a second; 10 s is ample
VIEWPORT = {"width": 1280, "height": 900}


def expect(*args, **kwargs):
    from playwright.sync_api import expect as pw_expect

    return pw_expect(*args, **kwargs)


class Tab:
    """A fresh browser context and page that records console errors, uncaught
    exceptions and the URL of every request the page makes."""

    def __init__(self, browser, base, shots):
        self.base = base
        self.shots = shots
        self.context = browser.new_context(viewport=VIEWPORT)
        self.page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.errors, self.urls = [], []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.on("request", lambda r: self.urls.append(r.url))

    def open(self):
        self.page.goto(f"{self.base}/dashboard")
        return self.page

    def live(self):
        """Waits for the first event of the stream: the page is drawn and following."""
        expect(self.page.locator("#live")).to_have_text("Live")

    def shot(self, name):
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)

    def foreign_urls(self):
        """Requests that left the server's origin (data: URLs never reach a network)."""
        return foreign(self.urls, self.base)

    def close(self):
        self.context.close()


@pytest.fixture
def tab(browser, base_url, tmp_path):
    t = Tab(browser, base_url, tmp_path)
    yield t
    try:
        t.shot("end")
    finally:
        t.close()


def row(page, model):
    return page.locator(f'#models tr[data-model="{model}"]').first


def cell(page, model, field):
    return row(page, model).locator(f'[data-field="{field}"]')


def wait_for(check, what, timeout=10):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


# --- the shared server (INFERD_URL) -----------------------------------------------------


def test_page_renders_every_model_from_its_own_origin(tab, base_url, http):
    page_resp = http.get(f"{base_url}/dashboard", timeout=10)
    assert page_resp.status_code == 200
    assert "default-src 'self'" in page_resp.headers.get("content-security-policy", "")

    index = http.post(f"{base_url}/v2/repository/index", json={}, timeout=10)
    assert index.status_code == 200, index.text
    names = sorted({m["name"] for m in index.json()})
    assert names

    page = tab.open()
    tab.live()
    for name in names:
        expect(row(page, name)).to_be_visible()
    shown = page.locator("#models tbody tr[data-model]").evaluate_all("rows => rows.map(r => r.dataset.model)")
    assert sorted(set(shown)) == names

    for heading in ["Models", "Model cache", "In flight", "Generation", "Async jobs", "Services", "Last 5 minutes"]:
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
    for chart in ["throughput", "latency", "tokens"]:
        expect(page.locator(f'svg[data-chart="{chart}"]')).to_be_visible()
    expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible()
    tab.shot("rendered")

    # Everything the page fetched (itself, its script and style, the state and
    # the stream) came from the server, and nothing went wrong in the console
    # (a CSP violation would be an error there).
    assert any(u.endswith("/dashboard/events") for u in tab.urls), tab.urls
    assert tab.foreign_urls() == []
    assert tab.errors == []


def test_numbers_move_after_traffic(tab, base_url, http):
    page = tab.open()
    tab.live()
    requests_cell = cell(page, "iris", "requests_total")
    expect(requests_cell).to_have_attribute("data-value", re.compile(r"^\d+$"))
    before = int(requests_cell.get_attribute("data-value"))

    body = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": IRIS_ROWS[0]}]}
    for _ in range(20):
        r = http.post(f"{base_url}/v2/models/iris/infer", json=body, timeout=10)
        assert r.status_code == 200, r.text

    page.wait_for_function(
        """([before]) => {
            const row = document.querySelector('#models tr[data-model="iris"]');
            const raw = (f) => row.querySelector(`[data-field="${f}"]`).dataset.value;
            const value = (f) => Number(raw(f) || 0);
            return value('requests_total') >= before + 20 && value('rps') > 0 && raw('p50_ms') !== '';
        }""",
        arg=[before],
        timeout=WAIT_MS,
    )

    # The throughput chart's requests/s line rises above its zero line somewhere.
    page.wait_for_function(
        """() => {
            const chart = document.querySelector('svg[data-chart="throughput"]');
            const zero = Math.max(...[...chart.querySelectorAll('line.grid')].map(l => Number(l.getAttribute('y1'))));
            const ys = [...chart.querySelectorAll('[data-series="rps"]')].flatMap(e => e.tagName === 'circle'
                ? [Number(e.getAttribute('cy'))]
                : e.getAttribute('points').trim().split(/\\s+/).map(p => Number(p.split(',')[1])));
            return ys.some(y => y < zero);
        }""",
        timeout=WAIT_MS,
    )
    tab.shot("after-traffic")
    readme_shot = os.environ.get("INFERD_DASHBOARD_SCREENSHOT")
    if readme_shot:
        Path(readme_shot).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=readme_shot, full_page=True)
    assert tab.errors == []
    assert tab.foreign_urls() == []


def test_unload_and_load_buttons(tab, base_url, http):
    """Unloads digits on the shared server and loads it again before it ends,
    as the suite's other unloading tests do (the suite runs one test at a time)."""

    def repository_state():
        index = http.post(f"{base_url}/v2/repository/index", json={}, timeout=10)
        assert index.status_code == 200, index.text
        row = next(m for m in index.json() if m["name"] == "digits")
        return row["state"], row["reason"]

    def ready():
        return http.get(f"{base_url}/v2/models/digits/ready", timeout=10).status_code == 200

    assert ready(), "digits must be ready before the test"
    page = tab.open()
    tab.live()
    state = cell(page, "digits", "state")
    expect(state).to_have_attribute("data-value", "READY")
    try:
        page.get_by_role("button", name="Unload digits", exact=True).click()
        wait_for(lambda: not ready(), "digits to be unloaded")
        # Triton's words for a model unloaded on request.
        assert repository_state() == ("UNAVAILABLE", "unloaded")
        expect(page.get_by_role("button", name="Load digits", exact=True)).to_be_enabled()
        expect(state).not_to_have_attribute("data-value", "READY")
        tab.shot("unloaded")

        page.get_by_role("button", name="Load digits", exact=True).click()
        expect(state).to_have_attribute("data-value", "READY", timeout=30_000)
        expect(page.get_by_role("button", name="Unload digits", exact=True)).to_be_visible()
        assert ready() and repository_state() == ("READY", "")
    finally:
        if not ready():  # leave the server as found
            http.post(f"{base_url}/v2/repository/models/digits/load", timeout=60)
    expect(page.get_by_role("alert")).to_be_empty()
    assert tab.errors == []


# --- a server of its own, with keys -----------------------------------------------------


def make_key(binary, data, role):
    """`inferd keys create` prints the key alone on stdout (its label on stderr)."""
    out = subprocess.run([binary, "keys", "create", "--role", role, "--name", f"dashboard-{role}",
                          "--data-dir", str(data)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip()
    assert key and len(key.split()) == 1, out.stdout
    return key


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """A server holding the builtin identity model whose data dir has a read key
    and an admin key before it starts, so it requires credentials."""
    binary = inferd_binary("dashboard")
    data = tmp_path_factory.mktemp("dashboard-keyed-data")
    keys = {role: make_key(binary, data, role) for role in ("read", "admin")}
    # start_inferd yields once; the loop resumes it (stopping the server) at teardown.
    for url in start_inferd(tmp_path_factory, "dashboard-keyed", {"identity": IDENTITY_TOML}, data=data):
        yield url, keys


def sign_in(page, key):
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in", exact=True).click()


def stored(page):
    return page.evaluate("() => ({session: {...sessionStorage}, local: {...localStorage}})")


def test_keys_roles_and_sign_out(browser, keyed, tmp_path):
    url, keys = keyed
    tab = Tab(browser, url, tmp_path)
    try:
        page = tab.open()
        expect(page.get_by_label("API key")).to_be_visible()
        expect(page.locator("#models")).to_be_hidden()
        assert page.locator("#models tr[data-model]").count() == 0
        tab.shot("1-key-form")

        sign_in(page, keys["read"])
        expect(row(page, "identity")).to_be_visible()
        tab.live()
        expect(page.locator("#role")).to_have_text("Signed in as read")
        assert page.locator("#models button").count() == 0
        for action in ("Load", "Unload", "Preload"):
            expect(page.get_by_role("button", name=f"{action} identity", exact=True)).to_have_count(0)
        assert list(stored(page)["session"].values()) == [keys["read"]]
        assert stored(page)["local"] == {}
        tab.shot("2-read")

        page.get_by_role("button", name="Sign out", exact=True).click()
        expect(page.get_by_label("API key")).to_be_visible()
        expect(page.locator("#models")).to_be_hidden()
        assert stored(page)["session"] == {}

        # A key the server refuses is dropped and asked for again.
        sign_in(page, "inferd_not-a-key")
        expect(page.locator("#signin-error")).to_contain_text("not accepted")
        assert stored(page)["session"] == {}

        sign_in(page, keys["admin"])
        expect(page.locator("#role")).to_have_text("Signed in as admin")
        expect(page.get_by_role("button", name="Unload identity", exact=True)).to_be_visible()
        expect(page.get_by_role("button", name="Preload identity", exact=True)).to_be_visible()
        tab.live()
        tab.shot("3-admin")

        for key in [*keys.values(), "inferd_not-a-key"]:
            assert not [u for u in tab.urls if key in u], "a key went into a URL"
        assert tab.foreign_urls() == []
        # The browser itself logs each refused request (the probe before signing
        # in, the wrong key); anything else is the page's fault.
        assert [e for e in tab.errors if "status of 401" not in e] == []
    finally:
        try:
            tab.shot("end")
        finally:
            tab.close()
