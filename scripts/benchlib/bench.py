#!/usr/bin/env python3
"""scripts/bench: every performance figure of issue 15 in one run and one table.

  scripts/bench [SECTION...]      sections: embeddings batching v2 grpc llm
                                  (default: all, in that order)

Each section starts the servers it needs one at a time (a free port each, a
temporary data directory, SIGTERM and a wait before the next one), measures,
and adds rows to one table:

  figure | inferd | peer (name: value) | ratio | target | met | load avg

"load avg" is the 1-minute load average read from /proc/loadavg right before
the measurement (inferd's; "inferd / peer" when the peer was measured apart):
a figure taken on a busy machine says so. The table is printed and written as
markdown to $BENCH_OUT (default target/bench/table.md), and every raw number
(each run, each load average) as JSON beside it (table.json).

  embeddings  MiniLM (models/minilm, ONNX Runtime backend) through POST
              /v1/embeddings, one request at a time (wrk -t1 -c1), with the same
              256 sentences (scripts/benchlib/sentences.txt): E1 = 1 sentence per
              request, E32 = 32 per request (8 batches, cycled), sentences/s.
              Peer: ONNX Runtime from PyPI on the same model.onnx, in-process,
              2 intra-op threads (scripts/benchlib/ort_peer.py). Also the smallest
              cosine between inferd's vectors (sent alone and 32 at a time) and
              ORT's for the 256 sentences. Targets: E1, E32 >= 1.5x ORT; cosine
              >= 0.9999.
  batching    MiniLM with 32 connections sending one sentence each (wrk -t2 -c32):
              as shipped (dynamic batching) against a copy whose model.toml has
              max_batch_size = 0 (a second server). Target >= 3.0x.
  v2          iris, one row as V2 JSON, 32 connections (wrk -t2 -c32): inferd
              against bench-echo (axum + serde_json Value, no model) and
              bench-echo --plain (parses, answers fixed bytes). Targets: req/s >=
              0.70x bench-echo; p99 < 2 ms.
  grpc        iris, one row, ModelInfer over gRPC with h2load (-c32 -m1 -t2,
              a pre-framed body), checked first with tritonclient's gRPC client
              and afterwards against the server's success counter, against wrk
              -c32 V2 JSON on the same server. Target gRPC >= 1.0x HTTP.
  llm         SmolLM2-135M-Instruct Q4_1, greedy, 128 new tokens: one stream's
              decode tok/s and time to first token through TGI's
              /generate_stream (scripts/benchlib/llm_bench.py), against llama.cpp
              itself (llama-cpp-python in .venv-bench, when built); and aggregate
              tok/s of 8 streams against 1 through OpenAI's /v1/completions (wrk
              -t1 -c8 and -c1, usage.completion_tokens summed in Lua). Targets:
              8 streams >= 2.5x 1 stream; decode >= 0.95x llama.cpp; TTFT <= 1.1x.

Servers, the ORT peer and llama.cpp run under `taskset -c $BENCH_CPUS` (default
0,1); the load generators run on the machine's other CPUs when it has any, else
unpinned (on a 2-core machine they share the cores with the server).

Env: BENCH_DURATION (10s: each wrk/h2load run and each ORT run), BENCH_RUNS (3;
each figure is the median), BENCH_LLM_DURATION (60s, or BENCH_DURATION when
longer: each wrk run of the llm section, whose requests last seconds; stretched,
up to 300 s, when one stream decodes too slowly for each connection to finish
two requests in it), BENCH_CPUS
(0,1), BENCH_OUT (target/bench/table.md), BENCH_SETTLE_S (0: seconds to wait
before each measurement, to let the load average fall), BENCH_LLAMACPP=1 (build
llama-cpp-python into .venv-bench when missing, about 12 minutes).

The 8-stream figure: wrk counts only the requests that end inside the run, and
an LLM request lasts seconds, so tokens / duration would under-count; the
figure is the closed-loop rate instead (Little's law): connections x tokens per
completed request / mean latency of a request. tokens / duration is in the JSON.

Needs only the standard library; the ORT peer runs in .venv-bench (made on
demand with onnxruntime at scripts/fetch-models' pinned version, tokenizers and
numpy), the gRPC helper in .venv (tritonclient, from scripts/test).
"""

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "scripts" / "benchlib"
sys.path.insert(0, str(LIB))
import llm_bench  # noqa: E402  (stdlib only: its prompts and chat template)

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


def write_bodies(path, bodies):
    with open(path, "w") as f:
        for b in bodies:
            f.write(json.dumps(b, separators=(",", ":")) + "\n")
    return path


# --- the table -------------------------------------------------------------------------

ROWS = []
RAW = {}


def fmt(value, unit):
    if value is None:
        return "n/a"
    if unit == "cos":
        return f"{value:.7f}"
    if unit == "ms":
        return f"{value:.2f} ms"
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    else:
        text = f"{value:.1f}"
    return f"{text} {unit}"


def add_row(figure, inferd, unit, *, peer_name=None, peer=None, peer_note=None, on="ratio",
            op=">=", threshold=None, target=None, note=None, load=None, peer_load=None):
    """One row. on="ratio": the target is inferd / peer op threshold; on="value":
    inferd op threshold; threshold None: no target (informational)."""
    ratio = inferd / peer if inferd is not None and peer else None
    subject = ratio if on == "ratio" else inferd
    met = None
    if threshold is not None and subject is not None:
        met = {">=": subject >= threshold, "<=": subject <= threshold, "<": subject < threshold}[op]
    row = {
        "figure": figure, "unit": unit, "inferd": inferd, "inferd_note": note,
        "peer_name": peer_name, "peer": peer, "peer_note": peer_note, "ratio": ratio,
        "target": target, "target_on": on, "op": op, "threshold": threshold, "met": met,
        "load_avg": load, "peer_load_avg": peer_load,
    }
    ROWS.append(row)
    return row


def cells(row):
    inferd = fmt(row["inferd"], row["unit"]) if row["inferd"] is not None else f"n/a: {row['inferd_note']}"
    if row["inferd"] is not None and row["inferd_note"]:
        inferd += f" ({row['inferd_note']})"
    if row["peer_name"] is None:
        peer = "—"
    elif row["peer"] is not None:
        peer = f"{row['peer_name']}: {fmt(row['peer'], row['unit'])}"
    else:
        peer = f"{row['peer_name']}: {row['peer_note'] or 'n/a'}"
    ratio = f"{row['ratio']:.2f}×" if row["ratio"] is not None else "—"
    met = {True: "yes", False: "no", None: "—"}[row["met"]]
    loads = [f"{x:.2f}" for x in (row["load_avg"], row["peer_load_avg"]) if x is not None]
    return [row["figure"], inferd, peer, ratio, row["target"] or "—", met, " / ".join(loads) or "—"]


def table():
    head = ["figure", "inferd", "peer (name: value)", "ratio", "target", "met", "load avg"]
    rows = [[c.replace("|", "\\|") for c in cells(r)] for r in ROWS]
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    line = lambda cs: "| " + " | ".join(c.ljust(w) for c, w in zip(cs, widths)) + " |"
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                     + [line(r) for r in rows])


def failed_rows(rows, reason):
    """Adds each (figure, unit, kwargs) with inferd n/a because of reason."""
    for figure, unit, kw in rows:
        add_row(figure, None, unit, note=reason, **kw)


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


# --- sections --------------------------------------------------------------------------


def sentences():
    with open(LIB / "sentences.txt") as f:
        return [line.strip() for line in f if line.strip()]


def embedding_bodies(work):
    s = sentences()
    one = write_bodies(Path(work) / "embed-1.jsonl", [{"model": "minilm", "input": t} for t in s])
    batches = [s[i:i + 32] for i in range(0, len(s), 32)]
    many = write_bodies(Path(work) / "embed-32.jsonl", [{"model": "minilm", "input": b} for b in batches])
    return s, one, many


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    na = sum(x * x for x in a) ** 0.5
    nb = sum(y * y for y in b) ** 0.5
    return dot / (na * nb) if na and nb else 0.0


def section_embeddings(work):
    rows = [
        ("E1 embeddings, 1 sentence/request, sequential", "sentences/s",
         dict(on="ratio", op=">=", threshold=1.5, target="≥ 1.5× ORT")),
        ("E32 embeddings, 32 sentences/request, sequential", "sentences/s",
         dict(on="ratio", op=">=", threshold=1.5, target="≥ 1.5× ORT")),
        ("embeddings cosine vs ORT, min of 256 (alone and in 32s)", "cos",
         dict(on="value", op=">=", threshold=0.9999, target="≥ 0.9999")),
    ]
    raw = RAW.setdefault("embeddings", {})
    texts, one, many = embedding_bodies(work)
    script = LIB / "cycle.lua"
    inferd_result, inferd_error = {}, None
    models = model_folder(work, "models-embeddings", "minilm")
    try:
        with inferd("inferd-minilm", models, work) as server:
            server.wait_until(model_ready(server, "minilm"), "ready (minilm)")
            url = f"{server.url}/v1/embeddings"
            post_json(url, {"model": "minilm", "input": texts[0]})  # warm-up
            for key, bodies, scale, label in ((1, one, 1, "E1"), (32, many, 32, "E32")):
                inferd_result[key] = wrk_repeat(
                    f"inferd {label}", url, threads=1, conns=1, script=script,
                    env={"BENCH_BODIES": str(bodies)}, scale=scale, unit="sentences/s")
            alone = [post_json(url, {"model": "minilm", "input": t})["data"][0]["embedding"] for t in texts]
            batched = []
            for i in range(0, len(texts), 32):
                data = post_json(url, {"model": "minilm", "input": texts[i:i + 32]})["data"]
                batched += [d["embedding"] for d in sorted(data, key=lambda d: d["index"])]
            inferd_result["vectors"] = (alone, batched)
    except BenchError as e:
        inferd_error = str(e)
        log(f"   inferd: {inferd_error}")
    raw["inferd"] = {k: v for k, v in inferd_result.items() if k != "vectors"}

    peer, peer_note = None, None
    if not (MINILM / "1" / "model.onnx").exists():
        peer_note = "no models/minilm/1/model.onnx (scripts/fetch-models)"
    else:
        peer_note = ensure_ort_venv()
    peer_load = None
    if peer_note is None:
        out = Path(work) / "ort.json"
        peer_load = before_measurement()
        log(f"== ORT peer (load {peer_load:.2f})")
        try:
            run(SERVER_PIN + [VENV_BENCH / "bin" / "python", LIB / "ort_peer.py", MINILM / "1",
                              LIB / "sentences.txt", DURATION, RUNS, out],
                timeout=4 * RUNS * DURATION + 600, echo=True)
            with open(out) as f:
                peer = json.load(f)
        except (BenchError, subprocess.TimeoutExpired, OSError, ValueError) as e:
            peer_note = f"failed: {str(e)[:150]}"
            log(f"   ORT peer {peer_note}")
    if peer:
        raw["ort"] = {k: v for k, v in peer.items() if k != "vectors"}
        for b in ("1", "32"):
            log(f"   ORT batch {b}: median {peer['batch'][b]['median']:.1f} sentences/s")
    peer_name = f"ORT {peer['onnxruntime']}" if peer else "ORT"

    for (figure, unit, kw), key in zip(rows[:2], (1, 32)):
        r = inferd_result.get(key)
        p = peer["batch"][str(key)] if peer else None
        add_row(figure, r["value"] if r else None, unit, note=None if r else inferd_error,
                peer_name=f"{peer_name} batch {key}", peer=p["median"] if p else None,
                peer_note=peer_note, load=r["load_avg"][0] if r else None,
                peer_load=p["load_avg"][0] if p else None, **kw)
    figure, unit, kw = rows[2]
    if "vectors" in inferd_result and peer:
        alone, batched = inferd_result["vectors"]
        cos = [cosine(a, b) for a, b in zip(alone + batched, peer["vectors"] * 2)]
        raw["cosine"] = {"min_alone": min(cos[:len(alone)]), "min_in_32s": min(cos[len(alone):]),
                         "count": len(cos)}
        log(f"   cosine inferd vs ORT: min {min(cos):.7f} (alone {raw['cosine']['min_alone']:.7f}, "
            f"in 32s {raw['cosine']['min_in_32s']:.7f})")
        add_row(figure, min(cos), unit, **kw)
    else:
        add_row(figure, None, unit, note=inferd_error or peer_note or "no vectors", **kw)


def no_batching(text):
    new, n = re.subn(r"(?m)^max_batch_size\s*=.*$", "max_batch_size = 0", text)
    if n == 0:
        new = "max_batch_size = 0\n" + text
    return new


def section_batching(work):
    figure, unit = "B32 dynamic batching on/off, 32 conns × 1 sentence", "sentences/s"
    kw = dict(on="ratio", op=">=", threshold=3.0, target="≥ 3.0× off")
    raw = RAW.setdefault("batching", {})
    _, one, _ = embedding_bodies(work)
    env = {"BENCH_BODIES": str(one)}
    results = {}
    folders = {
        "on": model_folder(work, "models-batching-on", "minilm"),
        "off": model_folder(work, "models-batching-off", "minilm", edit=no_batching),
    }
    error = None
    for mode in ("on", "off"):
        try:
            with inferd(f"inferd-minilm-batching-{mode}", folders[mode], work) as server:
                server.wait_until(model_ready(server, "minilm"), "ready (minilm)")
                status, config = http("GET", f"{server.url}/v2/models/minilm/config")
                size = json.loads(config).get("max_batch_size") if status == 200 else None
                log(f"   minilm's max_batch_size: {size}")
                if (size == 0) != (mode == "off"):
                    raise BenchError(f"minilm's max_batch_size is {size} with batching {mode}")
                url = f"{server.url}/v1/embeddings"
                post_json(url, {"model": "minilm", "input": "warm up"})
                results[mode] = wrk_repeat(f"batching {mode}", url, threads=2, conns=32,
                                           script=LIB / "cycle.lua", env=env, unit="sentences/s")
        except BenchError as e:
            error = str(e)
            log(f"   batching {mode}: {error}")
    raw.update(results)
    on, off = results.get("on"), results.get("off")
    add_row(figure, on["value"] if on else None, unit, note=None if on else error,
            peer_name="batching off (max_batch_size = 0)", peer=off["value"] if off else None,
            peer_note=None if off else error, load=on["load_avg"][0] if on else None,
            peer_load=off["load_avg"][0] if off else None, **kw)


def echo_server(work, name, plain):
    port = free_port()
    # --plain is a mode the echo may not have yet; it refuses unknown arguments.
    args = ["--port", port] + (["--plain"] if plain else [])
    server = Server(name, SERVER_PIN + [ECHO] + args, work)
    server.url = f"http://127.0.0.1:{port}"
    return server


def v2_ready(server, path="/v2/models/iris/infer"):
    def ready():
        status, _ = http("POST", server.url + path, IRIS_BODY, timeout=5)
        return status == 200
    return ready


def section_v2(work):
    raw = RAW.setdefault("v2", {})
    script = LIB / "v2-infer.lua"
    results, errors = {}, {}
    runs = [("inferd", None), ("bench-echo", False), ("bench-echo --plain", True)]
    for name, plain in runs:
        try:
            if plain is None:
                server = inferd("inferd-iris", model_folder(work, "models-v2", "iris"), work)
            else:
                if not ECHO.exists():
                    raise BenchError("no target/release/bench-echo")
                server = echo_server(work, name.replace(" --", "-"), plain)
            with server:
                if plain is None:
                    server.wait_until(model_ready(server, "iris"), "ready (iris)")
                try:
                    server.wait_until(v2_ready(server), "answering", timeout=30)
                except BenchError:
                    if plain and not server.alive():
                        raise BenchError("refuses --plain (not built with it yet)")
                    raise
                results[name] = wrk_repeat(f"{name} iris", f"{server.url}/v2/models/iris/infer",
                                           threads=2, conns=32, script=script)
        except BenchError as e:
            errors[name] = str(e)
            log(f"   {name}: {e}")
    raw.update(results)
    inf, echo, plain = (results.get(n) for n, _ in runs)
    load = inf["load_avg"][0] if inf else None
    add_row("V2 iris 1 row, 32 conns, vs bench-echo", inf["value"] if inf else None, "req/s",
            note=errors.get("inferd"), peer_name="bench-echo", peer=echo["value"] if echo else None,
            peer_note=errors.get("bench-echo"), on="ratio", op=">=", threshold=0.70,
            target="≥ 0.70× bench-echo", load=load, peer_load=echo["load_avg"][0] if echo else None)
    add_row("V2 iris 1 row, 32 conns, vs plain echo", inf["value"] if inf else None, "req/s",
            note=errors.get("inferd"), peer_name="bench-echo --plain",
            peer=plain["value"] if plain else None, peer_note=errors.get("bench-echo --plain"),
            target=None, load=load, peer_load=plain["load_avg"][0] if plain else None)
    add_row("V2 iris 1 row, 32 conns, p99", inf["p99_ms"] if inf else None, "ms",
            note=errors.get("inferd"), peer_name="bench-echo", peer=echo["p99_ms"] if echo else None,
            peer_note=errors.get("bench-echo"), on="value", op="<", threshold=2.0,
            target="p99 < 2 ms", load=load, peer_load=echo["load_avg"][0] if echo else None)


def iris_counters(server):
    """(successes, failures) of iris from /metrics (every face counts there)."""
    status, body = http("GET", f"{server.url}/metrics", timeout=10)
    if status != 200:
        raise BenchError(f"GET /metrics answered {status}")
    counts = {"success": 0.0, "failure": 0.0}
    for line in body.decode().splitlines():
        m = re.match(r'nv_inference_request_(success|failure)\{([^}]*)\}\s+(\S+)', line)
        if m and 'model="iris"' in m.group(2):
            counts[m.group(1)] += float(m.group(3))
    return counts["success"], counts["failure"]


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


def section_grpc(work):
    raw = RAW.setdefault("grpc", {})
    kw = dict(on="ratio", op=">=", threshold=1.0, target="≥ 1.0× HTTP")
    figure = "gRPC iris 1 row, h2load -c32 -m1, vs HTTP V2 JSON wrk -c32"
    if not venv_has(VENV_TEST, "from tritonclient.grpc import service_pb2"):
        add_row(figure, None, "req/s", note=".venv with tritonclient missing (run scripts/test once)",
                peer_name="HTTP V2 JSON", peer_note="not measured", **kw)
        return
    body = Path(work) / "iris.grpc"
    run([VENV_TEST / "bin" / "python", LIB / "grpc_body.py", "frame", body])
    grpc_res = http_res = None
    error = None
    try:
        with inferd("inferd-iris-grpc", model_folder(work, "models-grpc", "iris"), work) as server:
            server.wait_until(model_ready(server, "iris"), "ready (iris)")
            server.wait_until(v2_ready(server), "answering")
            check = run([VENV_TEST / "bin" / "python", LIB / "grpc_body.py", "check",
                         f"127.0.0.1:{server.grpc_port}"], check=False, timeout=60)
            if check.returncode != 0:
                raise BenchError(f"the gRPC check request failed: {check.stdout[-300:]}")
            log(f"   gRPC check: {check.stdout.strip()}")
            url = f"http://127.0.0.1:{server.grpc_port}/inference.GRPCInferenceService/ModelInfer"

            def once():
                before = iris_counters(server)
                r = h2load(url, body, DURATION)
                after = iris_counters(server)
                r["server_successes"] = after[0] - before[0]
                r["server_failures"] = after[1] - before[1]
                # h2load counts HTTP 200s, and a gRPC error is a 200 too: the
                # server's own count of successful inferences decides.
                r["value"] = min(r["succeeded"], r["server_successes"]) / r["elapsed_s"]
                if r["server_failures"] or r["server_successes"] < r["succeeded"] * 0.99:
                    log(f"   WARNING: h2load says {r['succeeded']} succeeded, the server counted "
                        f"{r['server_successes']:.0f} successes and {r['server_failures']:.0f} failures")
                return r

            grpc_res = repeat("gRPC h2load", once, lambda r: (
                f"{r['value']:.1f} req/s ({r['succeeded']} succeeded per h2load, "
                f"{r['server_successes']:.0f} successes and {r['server_failures']:.0f} failures "
                f"per the server, {r['errored']} errored)"))
            grpc_res["value"] = med(grpc_res, "value")
            http_res = wrk_repeat("HTTP V2 JSON", f"{server.url}/v2/models/iris/infer",
                                  threads=2, conns=32, script=LIB / "v2-infer.lua")
    except BenchError as e:
        error = str(e)
        log(f"   grpc: {error}")
    raw.update({"grpc": grpc_res, "http": http_res})
    bad = grpc_res and any(r["server_failures"] or r["failed"] or r["errored"] for r in grpc_res["runs"])
    add_row(figure, grpc_res["value"] if grpc_res else None, "req/s",
            note=("errors: see the JSON" if bad else None) if grpc_res else error,
            peer_name="HTTP V2 JSON (same server)", peer=http_res["value"] if http_res else None,
            peer_note=None if http_res else error, load=grpc_res["load_avg"][0] if grpc_res else None,
            peer_load=http_res["load_avg"][0] if http_res else None, **kw)


def llamacpp_version():
    py = VENV_BENCH / "bin" / "python"
    if not py.exists():
        return None
    p = subprocess.run([py, "-c", "import llama_cpp; print(llama_cpp.__version__)"],
                       cwd=ROOT, capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else None


def section_llm(work):
    raw = RAW.setdefault("llm", {})
    rows = {
        "decode": ("LLM 1 stream decode, /generate_stream, 128 tokens", "tok/s",
                   dict(on="ratio", op=">=", threshold=0.95, target="≥ 0.95× llama.cpp")),
        "ttft": ("LLM 1 stream time to first token", "ms",
                 dict(on="ratio", op="<=", threshold=1.1, target="≤ 1.1× llama.cpp")),
        "streams": ("LLM 8 streams aggregate, /v1/completions (wrk -c8 vs -c1)", "tok/s",
                    dict(on="ratio", op=">=", threshold=2.5, target="≥ 2.5× 1 stream")),
    }
    env = {**os.environ, "BENCH_RUNS": str(RUNS), "BENCH_NEW_TOKENS": str(NEW_TOKENS),
           "BENCH_THREADS": "2"}
    single = None
    wrk_res = {}
    error = None
    if not GGUF.exists():
        error = "no SmolLM2 GGUF (scripts/fetch-models)"
    else:
        bodies = write_bodies(Path(work) / "completions.jsonl", [
            {"model": "smollm2", "prompt": llm_bench.chat_prompt(q), "max_tokens": NEW_TOKENS,
             "temperature": 0} for q in llm_bench.QUESTIONS])
        try:
            with inferd("inferd-smollm2", model_folder(work, "models-llm", "smollm2"), work) as server:
                server.wait_until(model_ready(server, "smollm2"), "ready (smollm2)")
                answer = post_json(f"{server.url}/v1/completions", {
                    "model": "smollm2", "prompt": "1, 2, 3,", "max_tokens": 8, "temperature": 0})
                if not answer.get("usage", {}).get("completion_tokens"):
                    raise BenchError(f"/v1/completions answered without usage: {str(answer)[:200]}")
                load = before_measurement()
                log(f"   TGI /generate_stream, one stream (load {load:.2f})")
                out = Path(work) / "inferd-llm.json"
                proc = subprocess.run(CLIENT_PIN + [sys.executable, LIB / "llm_bench.py", "inferd",
                                                    server.url, out], cwd=ROOT, env=env)
                if proc.returncode != 0:
                    raise BenchError("llm_bench.py inferd failed (see above)")
                single = json.loads(out.read_text())
                single["load_avg"] = load
                for conns in (1, 8):
                    # Long enough for each connection to finish two requests even if
                    # the streams shared the single stream's rate (no gain from
                    # batching), when the machine is slower than BENCH_LLM_DURATION
                    # allows for; at most 300 s.
                    seconds = LLM_DURATION
                    if single["decode_tps"] > 0:
                        needed = min(300, int(2 * conns * NEW_TOKENS / single["decode_tps"]) + 1)
                        if needed > seconds:
                            log(f"   {conns} stream(s): {needed} s per run instead of {seconds} s, "
                                f"at {single['decode_tps']:.1f} tok/s for one stream")
                            seconds = needed

                    def once(conns=conns, seconds=seconds):
                        r = wrk(f"{server.url}/v1/completions", threads=1, conns=conns,
                                seconds=seconds, script=LIB / "cycle.lua", timeout_s=300,
                                env={"BENCH_BODIES": str(bodies), "BENCH_COUNT_TOKENS": "1"})
                        if not r["requests"] or not r["mean_ms"]:
                            raise BenchError(f"no request of {conns} streams ended within "
                                             f"{seconds} s (raise BENCH_LLM_DURATION)")
                        # Closed loop (Little's law): conns x tokens per request / latency.
                        r["value"] = conns * (r["tokens"] / r["requests"]) / (r["mean_ms"] / 1000)
                        r["tokens_per_duration"] = r["tokens"] / r["duration_s"]
                        wait_model_idle(server, "smollm2")
                        return r

                    wrk_res[conns] = repeat(f"{conns} stream(s), wrk", once, lambda r: (
                        f"{r['value']:.1f} tok/s ({r['requests']:.0f} requests, {r['tokens']:.0f} tokens, "
                        f"mean {r['mean_ms']:.0f} ms; tokens/duration {r['tokens_per_duration']:.1f}; "
                        f"{r['errors']:.0f} errors, {r['bad']:.0f} bad)"))
                    wrk_res[conns]["value"] = med(wrk_res[conns], "value")
        except (BenchError, OSError, ValueError) as e:
            error = str(e)
            log(f"   llm: {error}")
    raw["inferd_single"] = single
    raw["wrk"] = {str(k): v for k, v in wrk_res.items()}

    llama, llama_note, llama_load = None, None, None
    version = llamacpp_version()
    if version is None and BUILD_LLAMACPP:
        log("== BENCH_LLAMACPP=1: building llama-cpp-python into .venv-bench")
        if subprocess.run([LIB / "install-llamacpp"], cwd=ROOT).returncode != 0:
            llama_note = "build failed (scripts/benchlib/install-llamacpp)"
        version = llamacpp_version()
    if version is None:
        llama_note = llama_note or LLAMACPP_NOT_BUILT
    elif not GGUF.exists():
        llama_note = "no GGUF"
    else:
        out = Path(work) / "llamacpp.json"
        llama_load = before_measurement()
        log(f"== llama.cpp {version} on CPUs {CPUS} (load {llama_load:.2f})")
        proc = subprocess.run(SERVER_PIN + [VENV_BENCH / "bin" / "python", LIB / "llm_bench.py",
                                            "llamacpp", GGUF, out], cwd=ROOT, env=env)
        if proc.returncode == 0:
            llama = json.loads(out.read_text())
        else:
            llama_note = "failed (see the log above)"
    raw["llamacpp"] = llama
    peer_name = f"llama.cpp {version}" if version else "llama.cpp"

    for key, field in (("decode", "decode_tps"), ("ttft", "ttft_ms")):
        figure, unit, kw = rows[key]
        add_row(figure, single[field] if single else None, unit, note=None if single else error,
                peer_name=peer_name, peer=llama[field] if llama else None, peer_note=llama_note,
                load=single["load_avg"] if single else None, peer_load=llama_load, **kw)
    figure, unit, kw = rows["streams"]
    one, eight = wrk_res.get(1), wrk_res.get(8)
    add_row(figure, eight["value"] if eight else None, unit, note=None if eight else error,
            peer_name="inferd 1 stream (wrk -c1)", peer=one["value"] if one else None,
            peer_note=None if one else error, load=eight["load_avg"][0] if eight else None,
            peer_load=one["load_avg"][0] if one else None, **kw)


RUNNERS = {"embeddings": section_embeddings, "batching": section_batching, "v2": section_v2,
           "grpc": section_grpc, "llm": section_llm}


# --- main ------------------------------------------------------------------------------


def git_commit():
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return sha + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv):
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    chosen = argv or SECTIONS
    unknown = [a for a in chosen if a not in SECTIONS]
    if unknown:
        print(f"unknown section(s): {' '.join(unknown)}; sections: {' '.join(SECTIONS)}", file=sys.stderr)
        return 2
    chosen = [s for s in SECTIONS if s in chosen]
    missing = [p for p in (INFERD,) if not p.exists()]
    missing += [t for t in ("wrk", "taskset") + (("h2load",) if "grpc" in chosen else ())
                if shutil.which(t) is None]
    if missing:
        print(f"missing: {', '.join(map(str, missing))} (scripts/bench builds and installs them "
              f"unless BENCH_BUILD=0)", file=sys.stderr)
        return 1
    if subprocess.run(SERVER_PIN + ["true"], capture_output=True).returncode != 0:
        print(f"cannot pin to CPUs {CPUS}: set BENCH_CPUS to CPUs of this machine", file=sys.stderr)
        return 1

    started = datetime.now(timezone.utc)
    header = [
        f"scripts/bench {' '.join(chosen)}",
        f"commit {git_commit()}; nproc {os.cpu_count()} (this process may use "
        f"{len(os.sched_getaffinity(0))}); servers on CPUs {CPUS}, load generators "
        f"{'on CPUs ' + CLIENT_PIN[2] if CLIENT_PIN else 'unpinned (sharing those CPUs)'}",
        f"{started:%Y-%m-%d %H:%M} UTC; median of {RUNS} run(s) of {DURATION} s each "
        f"(llm wrk runs: {LLM_DURATION} s); load avg at start {load_avg():.2f}",
    ]
    for line in header:
        log(line)

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    work = tempfile.mkdtemp(prefix="inferd-bench.")
    try:
        for name in chosen:
            log(f"\n##### {name}")
            RUNNERS[name](work)
    finally:
        for server in list(RUNNING):
            server.stop()
        shutil.rmtree(work, ignore_errors=True)

    text = table() + (
        "\n\nratio: inferd / peer. load avg: the 1-minute load average read right before "
        "the measurement's first run (inferd's / the peer's when that was measured apart); "
        "each run's is in the JSON.")
    log("\n" + "\n".join(header) + "\n\n" + text)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n\n".join(header) + "\n\n" + text + "\n")
    json_path = OUT.with_suffix(".json")
    json_path.write_text(json.dumps({
        "sections": chosen, "commit": git_commit(), "nproc": os.cpu_count(), "cpus": CPUS,
        "client_cpus": CLIENT_PIN[2] if CLIENT_PIN else None, "started": started.isoformat(),
        "duration_s": DURATION, "llm_duration_s": LLM_DURATION, "runs": RUNS,
        "rows": ROWS, "raw": RAW,
    }, indent=1, ensure_ascii=False))
    log(f"\nwritten: {OUT.relative_to(ROOT) if OUT.is_relative_to(ROOT) else OUT}, "
        f"{json_path.relative_to(ROOT) if json_path.is_relative_to(ROOT) else json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
