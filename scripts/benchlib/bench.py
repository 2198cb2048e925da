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
import shutil
import signal
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

# harness, report and the section modules (and llm_bench) are beside this script.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (CLIENT_PIN, CPUS, DURATION, INFERD, LLM_DURATION, OUT, ROOT,  # noqa: E402
                     RUNNING, RUNS, SECTIONS, SERVER_PIN, load_avg, log)
from report import RAW, ROWS, table  # noqa: E402
from sections_embeddings import section_batching, section_embeddings  # noqa: E402
from sections_http import section_grpc, section_v2  # noqa: E402
from sections_llm import section_llm  # noqa: E402

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
