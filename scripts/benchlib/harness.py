"""scripts/bench's settings and the machinery every section shares: servers,
load generators, helpers and the ORT venv."""

import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "scripts" / "benchlib"

SECTIONS = ["embeddings", "batching", "v2", "grpc", "llm"]
INFERD = ROOT / "target" / "release" / "inferd"
ECHO = ROOT / "target" / "release" / "bench-echo"
ORT_LIB = ROOT / "lib" / "onnxruntime" / "libonnxruntime.so"
MINILM = ROOT / "models" / "minilm"
GGUF = ROOT / "models" / "smollm2" / "1" / "SmolLM2-135M-Instruct.Q4_1.gguf"
VENV_BENCH = ROOT / ".venv-bench"
VENV_TEST = ROOT / ".venv"
IRIS_BODY = '{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}'
READY_TIMEOUT_S = 180
NEW_TOKENS = 128
LLAMACPP_NOT_BUILT = "not built (BENCH_LLAMACPP=1 builds it, ~12 min)"


class BenchError(Exception):
    """A measurement that could not be made; its row says why."""


def seconds_of(text, name):
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if not m:
        raise SystemExit(f"{name}={text!r}: expected a duration such as 10s, 2m or 10")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    return max(1, round(float(m.group(1)) * scale))


DURATION = seconds_of(os.environ.get("BENCH_DURATION", "10s"), "BENCH_DURATION")
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
LLM_DURATION = seconds_of(
    os.environ.get("BENCH_LLM_DURATION", f"{max(60, DURATION)}s"), "BENCH_LLM_DURATION"
)
CPUS = os.environ.get("BENCH_CPUS", "0,1")
SETTLE_S = float(os.environ.get("BENCH_SETTLE_S", "0"))
OUT = Path(os.environ.get("BENCH_OUT", "target/bench/table.md"))
if not OUT.is_absolute():
    OUT = ROOT / OUT
BUILD_LLAMACPP = os.environ.get("BENCH_LLAMACPP", "0") == "1"


# --- small helpers ---------------------------------------------------------------------


def log(msg=""):
    print(msg, flush=True)


def load_avg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def before_measurement():
    """Waits BENCH_SETTLE_S, then reads the 1-minute load average."""
    if SETTLE_S > 0:
        time.sleep(SETTLE_S)
    return load_avg()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_list(spec):
    cpus = set()
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-")
            cpus.update(range(int(a), int(b) + 1))
        elif part.strip():
            cpus.add(int(part))
    return cpus


SERVER_PIN = ["taskset", "-c", CPUS]
_rest = sorted(os.sched_getaffinity(0) - cpu_list(CPUS))
CLIENT_PIN = ["taskset", "-c", ",".join(map(str, _rest))] if _rest else []


# The servers are on loopback: never through a proxy the environment names.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(method, url, body=None, timeout=30):
    """(status, body bytes); never raises for an HTTP status."""
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with OPENER.open(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def post_json(url, obj, timeout=60):
    status, body = http("POST", url, json.dumps(obj), timeout)
    if status != 200:
        raise BenchError(f"POST {url} answered {status}: {body[:300].decode(errors='replace')}")
    return json.loads(body)


def median(values):
    return statistics.median(values) if values else None


def run(cmd, *, env=None, timeout=None, check=True, echo=False):
    """Runs cmd in the repository; its output is returned (stdout and stderr
    together), or with echo shown as it comes."""
    cmd = [str(c) for c in cmd]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, timeout=timeout, text=True,
        stdout=None if echo else subprocess.PIPE, stderr=None if echo else subprocess.STDOUT,
    )
    if check and proc.returncode != 0:
        raise BenchError(f"{' '.join(cmd[:3])}... exited {proc.returncode}: {(proc.stdout or '')[-800:]}")
    return proc


# --- servers ---------------------------------------------------------------------------

RUNNING = []


class Server:
    """One server process: started, waited for, stopped (SIGTERM, then a wait)."""

    def __init__(self, name, cmd, work, env=None):
        self.name, self.cmd = name, [str(c) for c in cmd]
        self.log_path = Path(work) / f"{name}.log"
        self.env = {**os.environ, **(env or {})}
        self.proc = None

    def __enter__(self):
        log(f"== {self.name}: {' '.join(self.cmd)}")
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            self.cmd, cwd=ROOT, env=self.env, stdout=self.log_file, stderr=subprocess.STDOUT
        )
        RUNNING.append(self)
        return self

    def __exit__(self, *exc):
        self.stop()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines=15):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def died(self, what):
        tail = self.log_tail()
        log(f"   {self.name} {what}; its log ends:\n{tail}")
        last = tail.splitlines()[-1] if tail else ""
        return BenchError(f"{self.name} {what}: {last[:200]}")

    def wait_until(self, ready, what, timeout=READY_TIMEOUT_S):
        """Polls ready() (True, False, or a string: a reason to give up) until True."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise self.died(f"exited (code {self.proc.returncode}) before {what}")
            try:
                verdict = ready()
            except (OSError, urllib.error.URLError, ValueError):
                verdict = False
            if verdict is True:
                return
            if isinstance(verdict, str):
                raise BenchError(f"{self.name}: {verdict}")
            if time.monotonic() > deadline:
                raise self.died(f"not {what} within {timeout} s")
            time.sleep(0.3)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                log(f"   {self.name} did not stop within 20 s of SIGTERM; killing it")
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()
        if self in RUNNING:
            RUNNING.remove(self)
        self.proc = None


def inferd(name, models, work, grpc_port=None):
    """An inferd server on free ports serving the model folder `models`."""
    port = free_port()
    grpc_port = grpc_port or free_port()
    data = Path(work) / f"data-{name}"
    cmd = SERVER_PIN + [INFERD, "serve", "--models", models, "--port", port,
                        "--grpc-port", grpc_port, "--data-dir", data]
    server = Server(name, cmd, work, env={"INFERD_ONNXRUNTIME_LIB": str(ORT_LIB)})
    server.url = f"http://127.0.0.1:{port}"
    server.grpc_port = grpc_port
    return server


def model_ready(server, model):
    """ready() for Server.wait_until: the model's ready probe, and its reason when
    the repository index says it is UNAVAILABLE."""

    def ready():
        status, _ = http("GET", f"{server.url}/v2/models/{model}/ready", timeout=5)
        if status == 200:
            return True
        status, body = http("POST", f"{server.url}/v2/repository/index", "{}", timeout=5)
        if status == 200:
            for row in json.loads(body):
                if row.get("name") == model and str(row.get("state")).upper() == "UNAVAILABLE":
                    return f"{model} is UNAVAILABLE: {row.get('reason', '')}"
        return False

    return ready


def model_folder(work, name, *models, edit=None):
    """A model repository in `work` holding symlinks to models/<m> (or, with edit,
    a copy of the model's model.toml edited by edit(text) beside symlinks to the
    rest of its folder)."""
    root = Path(work) / name
    root.mkdir()
    for m in models:
        src = ROOT / "models" / m
        if edit is None:
            (root / m).symlink_to(src)
            continue
        (root / m).mkdir()
        for entry in src.iterdir():
            if entry.name == "model.toml":
                (root / m / "model.toml").write_text(edit(entry.read_text()))
            else:
                (root / m / entry.name).symlink_to(entry)
    return root


def wait_model_idle(server, model, timeout=180):
    """Waits until the server reports no request of model in flight or waiting
    (/metrics), so that requests a load generator left behind when its run ended
    do not slow the next measurement."""
    start = time.monotonic()
    names = ("inferd_model_requests_in_flight", "inferd_generations_waiting", "inferd_queue_depth")
    while time.monotonic() - start < timeout:
        status, body = http("GET", f"{server.url}/metrics", timeout=10)
        busy = 0.0
        for line in body.decode().splitlines() if status == 200 else ():
            m = re.match(r'(\w+)\{([^}]*)\}\s+(\S+)', line)
            if m and m.group(1) in names and f'model="{model}"' in m.group(2):
                busy += float(m.group(3))
        if status == 200 and busy == 0:
            waited = time.monotonic() - start
            if waited > 1:
                log(f"   waited {waited:.1f} s for {model}'s requests in flight to end")
            return
        time.sleep(0.5)
    log(f"   WARNING: {model} still had requests in flight after {timeout} s")


# --- load generators -------------------------------------------------------------------


def wrk(url, *, threads, conns, seconds, script, env=None, timeout_s=30):
    cmd = CLIENT_PIN + ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s",
                        "--timeout", f"{timeout_s}s", "-s", str(script), url]
    proc = run(cmd, env={**os.environ, **(env or {})}, timeout=seconds + timeout_s + 60)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("BENCH ")), None)
    if line is None:
        raise BenchError(f"wrk printed no BENCH line: {proc.stdout[-500:]}")
    fields = dict(kv.split("=", 1) for kv in line.split()[1:])
    return {k: float(v) for k, v in fields.items()}


def repeat(label, once, show):
    """RUNS measurements of once() (a dict), the load average read before each;
    returns {"runs": [...], "load_avg": [...]}."""
    runs, loads = [], []
    for i in range(RUNS):
        loads.append(before_measurement())
        r = once()
        runs.append(r)
        log(f"   {label}, run {i + 1}/{RUNS} (load {loads[-1]:.2f}): {show(r)}")
    return {"runs": runs, "load_avg": loads}


def med(result, key):
    return median([r[key] for r in result["runs"]])


def wrk_repeat(label, url, *, threads, conns, script, env=None, seconds=None, timeout_s=30,
               scale=1, unit="req/s"):
    def once():
        r = wrk(url, threads=threads, conns=conns, seconds=seconds or DURATION,
                script=script, env=env, timeout_s=timeout_s)
        r["value"] = r["rps"] * scale
        if r["errors"] > 0:
            log(f"   WARNING: {label}: {r['errors']:.0f} errors (socket errors, timeouts, non-2xx)")
        return r

    result = repeat(label, once, lambda r: f"{r['value']:.1f} {unit}, p99 {r['p99_ms']:.2f} ms, "
                                           f"{r['requests']:.0f} requests, {r['errors']:.0f} errors")
    result["value"] = med(result, "value")
    result["p99_ms"] = med(result, "p99_ms")
    result["errors"] = sum(r["errors"] for r in result["runs"])
    return result


def h2load(url, body_file, seconds):
    cmd = CLIENT_PIN + ["h2load", "-c", "32", "-m", "1", "-t", "2", "-D", str(seconds),
                        "-d", str(body_file), "-H", "content-type: application/grpc",
                        "-H", "te: trailers", url]
    out = run(cmd, timeout=seconds + 120).stdout
    fin = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
    req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                    r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    if not fin or not req:
        raise BenchError(f"cannot read h2load's output: {out[-500:]}")
    elapsed = float(fin.group(1)) / (1000 if fin.group(2) == "ms" else 1)
    return {"elapsed_s": elapsed, "h2load_rps": float(fin.group(3)), "done": int(req.group(3)),
            "succeeded": int(req.group(4)), "failed": int(req.group(5)),
            "errored": int(req.group(6)), "timeout": int(req.group(7))}


def write_bodies(path, bodies):
    with open(path, "w") as f:
        for b in bodies:
            f.write(json.dumps(b, separators=(",", ":")) + "\n")
    return path


# --- venvs -----------------------------------------------------------------------------


def venv_has(venv, code):
    py = venv / "bin" / "python"
    return py.exists() and subprocess.run([py, "-c", code], cwd=ROOT, capture_output=True).returncode == 0


def ensure_ort_venv():
    """.venv-bench with onnxruntime (scripts/fetch-models' pinned version), tokenizers
    and numpy; the reason as a string when it cannot be made."""
    pin = re.search(r"onnxruntime==([0-9][0-9.]*)", (ROOT / "scripts" / "fetch-models").read_text())
    wanted = f"onnxruntime=={pin.group(1)}" if pin else "onnxruntime"
    check = "import onnxruntime, tokenizers, numpy, sys; sys.exit(%s)" % (
        f"onnxruntime.__version__ != {pin.group(1)!r}" if pin else "0")
    if venv_has(VENV_BENCH, check):
        return None
    log(f"== installing {wanted}, tokenizers and numpy into .venv-bench")
    try:
        if not (VENV_BENCH / "bin" / "python").exists():
            run([sys.executable, "-m", "venv", VENV_BENCH])
        run([VENV_BENCH / "bin" / "pip", "install", "-q", "--disable-pip-version-check",
             wanted, "tokenizers", "numpy"], timeout=1800)
    except (BenchError, subprocess.TimeoutExpired) as e:
        return f"could not install ({str(e)[:120]})"
    return None if venv_has(VENV_BENCH, check) else "could not install"
