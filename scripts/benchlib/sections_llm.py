"""scripts/bench's llm section: SmolLM2 streams through inferd against
llama.cpp, and 8 streams against 1."""

import json
import os
import subprocess
import sys
from pathlib import Path

import llm_bench  # stdlib only: its prompts and chat template
from harness import (BUILD_LLAMACPP, CLIENT_PIN, CPUS, GGUF, LIB, LLAMACPP_NOT_BUILT,
                     LLM_DURATION, NEW_TOKENS, ROOT, RUNS, SERVER_PIN, VENV_BENCH,
                     BenchError, before_measurement, inferd, log, med, model_folder,
                     model_ready, post_json, repeat, wait_model_idle, wrk, write_bodies)
from report import RAW, add_row


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
