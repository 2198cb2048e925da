"""Soak test: one inferd process under mixed load at saturation for a while,
watching for server errors and for memory that keeps growing.

Run through scripts/soak, which picks the binary and the Python. The load, each
kind on its own threads, every loop bounded by the deadline and every request by
a timeout, all on 127.0.0.1:

- V2 infer on iris and digits (JSON tensors);
- /inference/infer image-classification on digits (an 8x8 PNG, base64);
- /v1/embeddings on minilm;
- /v1/generate (seed 002) on smollm2, a few new tokens;
- /inference/async: submit, then poll until the job ends;
- a load/unload cycle of a small model every few seconds, with a readiness
  check after each load.

RSS is read from /proc at start (models loaded, no load yet), after the warm-up
(the first 10 % of the time, at least a minute) and at the end. The run fails on
any 5xx, any transport error (a refused or reset connection), a server that
exits, or RSS growth after warm-up of 5 % or more.
"""

import argparse
import base64
import collections
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

import requests

GROWTH_LIMIT_PCT = 5.0
REQUEST_TIMEOUT_S = 120
SHOWN_ERRORS = 5


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def png_gray(pixels, width, height):
    """A grayscale 8-bit PNG, written by hand so no imaging package is needed."""

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + bytes(pixels[y * width : (y + 1) * width]) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


# A "1" drawn dark on light paper, as the digits model's [image] section expects.
DIGIT_ONE = png_gray(
    [255 if x not in (3, 4) else 0 for y in range(8) for x in range(8)], 8, 8
)
DIGIT_B64 = base64.b64encode(DIGIT_ONE).decode()
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A soak test keeps a server busy for a long time.",
    "Memory that grows without bound is a leak.",
    "inferd serves many protocols from one binary.",
]


class Tally:
    """Counts per kind, and the first few server errors, shared by all threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ok = collections.Counter()
        self.client_errors = collections.Counter()
        self.server_errors = collections.Counter()
        self.transport_errors = collections.Counter()
        self.shown = []

    def record(self, kind, response=None, error=None):
        with self.lock:
            if error is not None:
                self.transport_errors[kind] += 1
                detail = f"{kind}: {type(error).__name__}: {error}"
            elif response.status_code >= 500:
                self.server_errors[kind] += 1
                detail = f"{kind}: {response.status_code} {response.text[:300]}"
            elif response.status_code >= 400:
                self.client_errors[kind] += 1
                detail = f"{kind}: {response.status_code} {response.text[:300]}"
            else:
                self.ok[kind] += 1
                return
            if len(self.shown) < SHOWN_ERRORS:
                self.shown.append(detail)


class Load:
    def __init__(self, base, deadline, tally, cycle_model):
        self.base = base
        self.deadline = deadline
        self.tally = tally
        self.cycle_model = cycle_model
        self.stop = threading.Event()

    def running(self):
        return not self.stop.is_set() and time.monotonic() < self.deadline

    def call(self, session, kind, method, path, **kw):
        """One request, recorded; the response, or None after a transport error."""
        try:
            r = session.request(method, self.base + path, timeout=REQUEST_TIMEOUT_S, **kw)
        except requests.RequestException as e:
            self.tally.record(kind, error=e)
            time.sleep(0.5)
            return None
        self.tally.record(kind, response=r)
        return r

    def loop(self, kind, step):
        session = requests.Session()
        i = 0
        while self.running():
            step(session, kind, i)
            i += 1

    def v2_iris(self, s, kind, i):
        rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]][: 1 + i % 2]
        body = {"inputs": [{"name": "X", "shape": [len(rows), 4], "datatype": "FP32", "data": rows}]}
        self.call(s, kind, "POST", "/v2/models/iris/infer", json=body)

    def v2_digits(self, s, kind, i):
        n = 1 + i % 8
        data = [((r * 64 + c) % 17) / 16 for r in range(n) for c in range(64)]
        body = {"inputs": [{"name": "input", "shape": [n, 64], "datatype": "FP32", "data": data}]}
        self.call(s, kind, "POST", "/v2/models/digits/infer", json=body)

    def classify(self, s, kind, i):
        body = {
            "task": "image-classification",
            "model_name": "digits",
            "data": {"images": [DIGIT_B64] * (1 + i % 4)},
            "options": {"top_k": 3},
        }
        self.call(s, kind, "POST", "/inference/infer", json=body)

    def embeddings(self, s, kind, i):
        texts = [SENTENCES[(i + k) % len(SENTENCES)] for k in range(1 + i % 4)]
        self.call(s, kind, "POST", "/v1/embeddings", json={"model": "minilm", "input": texts})

    def generate(self, s, kind, i):
        body = {
            "model_id": "smollm2",
            "inputs": SENTENCES[i % len(SENTENCES)],
            "parameters": {"max_new_tokens": 8, "do_sample": i % 2 == 0, "seed": i},
        }
        self.call(s, kind, "POST", "/v1/generate", json=body)

    def async_job(self, s, kind, i):
        body = {"task": "tensors", "model_name": "iris", "data": [[5.1, 3.5, 1.4, 0.2]]}
        r = self.call(s, kind, "POST", "/inference/async", json=body)
        if r is None or r.status_code != 202:
            time.sleep(0.2)
            return
        path = r.json()["status_url"]
        while self.running():
            p = self.call(s, kind + " poll", "GET", path)
            if p is None or p.status_code != 200:
                return
            if p.json().get("status") in ("succeeded", "failed", "cancelled"):
                if p.json()["status"] != "succeeded":
                    with self.tally.lock:
                        self.tally.shown.append(f"{kind}: job ended {p.text[:300]}")
                        self.tally.server_errors[kind + " job"] += 1
                return
            time.sleep(0.05)

    def cycle(self, s, kind, i):
        m = self.cycle_model
        self.call(s, kind + " unload", "POST", f"/v2/repository/models/{m}/unload")
        self.call(s, kind + " load", "POST", f"/v2/repository/models/{m}/load")
        self.call(s, kind + " ready", "GET", f"/v2/models/{m}/ready")
        end = time.monotonic() + 3
        while self.running() and time.monotonic() < end:
            time.sleep(0.2)


def start_server(binary, models, data_dir, log):
    port, grpc = free_port(), free_port()
    cmd = [
        binary, "serve",
        "--host", "127.0.0.1", "--port", str(port), "--grpc-port", str(grpc),
        "--models", models, "--data-dir", data_dir,
    ]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        if proc.poll() is not None:
            raise RuntimeError(f"inferd exited with {proc.returncode} while starting")
        try:
            if requests.get(base + "/v2/health/ready", timeout=2).status_code == 200:
                return proc, base
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError("inferd did not become ready in 10 minutes")


def preload(base, models):
    """Loads every model the load touches, so start RSS includes them."""
    for m in models:
        r = requests.post(f"{base}/v2/repository/models/{m}/load", timeout=600)
        if r.status_code != 200:
            raise RuntimeError(f"cannot load {m}: {r.status_code} {r.text[:300]}")


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("minutes", type=float, nargs="?", default=30.0)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--models", default="models")
    ap.add_argument("--cycle-model", default="add_sub")
    args = ap.parse_args()
    if args.minutes <= 0:
        ap.error("MINUTES must be positive")
    total = args.minutes * 60
    warmup = min(max(0.1 * total, 60.0), total / 2)

    data_dir = tempfile.mkdtemp(prefix="inferd-soak-")
    log_path = os.path.join(data_dir, "inferd.log")
    log = open(log_path, "wb")
    proc = None
    passed = False
    try:
        proc, base = start_server(args.binary, os.path.abspath(args.models), data_dir, log)
        preload(base, ["iris", "digits", "minilm", "smollm2", args.cycle_model])
        start_rss = rss_kib(proc.pid)
        print(f"inferd {args.binary} at {base}, pid {proc.pid}; {args.minutes:g} min, warm-up {warmup:.0f} s")
        print(f"RSS at start: {mib(start_rss)}", flush=True)

        tally = Tally()
        began = time.monotonic()
        load = Load(base, began + total, tally, args.cycle_model)
        kinds = [
            ("v2 iris", load.v2_iris, 2),
            ("v2 digits", load.v2_digits, 2),
            ("image-classification", load.classify, 2),
            ("embeddings", load.embeddings, 2),
            ("generate", load.generate, 2),
            ("async", load.async_job, 1),
            (f"cycle {args.cycle_model}", load.cycle, 1),
        ]
        threads = [
            threading.Thread(target=load.loop, args=(kind, step), daemon=True)
            for kind, step, n in kinds
            for _ in range(n)
        ]
        for t in threads:
            t.start()

        warm_rss = None
        peak = start_rss
        next_report = began + 60
        while time.monotonic() < began + total:
            time.sleep(1)
            if proc.poll() is not None:
                load.stop.set()
                raise RuntimeError(f"inferd exited with {proc.returncode} under load")
            now = time.monotonic()
            rss = rss_kib(proc.pid)
            peak = max(peak, rss)
            if warm_rss is None and now >= began + warmup:
                warm_rss = rss
                print(f"RSS after warm-up ({warmup:.0f} s): {mib(warm_rss)}", flush=True)
            if now >= next_report:
                with tally.lock:
                    done = sum(tally.ok.values())
                    bad = sum(tally.server_errors.values())
                print(f"  {(now - began) / 60:5.1f} min: {done} ok, {bad} 5xx, RSS {mib(rss)}", flush=True)
                next_report += 60
        end_rss = rss_kib(proc.pid)
        load.stop.set()
        for t in threads:
            t.join(timeout=REQUEST_TIMEOUT_S + 5)
        elapsed = time.monotonic() - began
        if warm_rss is None:
            warm_rss = end_rss
        growth = (end_rss - warm_rss) / warm_rss * 100

        print(f"\nrequests in {elapsed:.0f} s:")
        for kind in sorted(set(tally.ok) | set(tally.client_errors) | set(tally.server_errors) | set(tally.transport_errors)):
            print(
                f"  {kind:28} {tally.ok[kind]:7} ok  {tally.client_errors[kind]:5} 4xx"
                f"  {tally.server_errors[kind]:5} 5xx  {tally.transport_errors[kind]:5} transport"
            )
        total_ok = sum(tally.ok.values())
        n5xx = sum(tally.server_errors.values())
        ntransport = sum(tally.transport_errors.values())
        print(f"  total: {total_ok} ok ({total_ok / elapsed:.1f}/s), {sum(tally.client_errors.values())} 4xx, {n5xx} 5xx, {ntransport} transport errors")
        for line in tally.shown:
            print(f"  first errors: {line}")
        print(f"RSS: start {mib(start_rss)}, after warm-up {mib(warm_rss)}, end {mib(end_rss)}, peak {mib(peak)}")
        print(f"RSS growth after warm-up: {growth:+.2f} % (limit {GROWTH_LIMIT_PCT:g} %)")

        failed = []
        if n5xx:
            failed.append(f"{n5xx} 5xx")
        if ntransport:
            failed.append(f"{ntransport} transport errors")
        if growth >= GROWTH_LIMIT_PCT:
            failed.append(f"RSS grew {growth:.2f} %")
        if failed:
            print("SOAK FAILED: " + ", ".join(failed))
            return 1
        print("SOAK PASSED")
        passed = True
        return 0
    except Exception as e:
        print(f"SOAK FAILED: {e}")
        log.flush()
        with open(log_path, "rb") as f:
            tail = f.read()[-3000:].decode(errors="replace")
        print(f"--- last lines of {log_path} ---\n{tail}")
        return 1
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        if passed:
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            print(f"server log and data kept in {data_dir}")


if __name__ == "__main__":
    sys.exit(main())
