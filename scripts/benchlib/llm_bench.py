#!/usr/bin/env python3
"""The measuring half of scripts/bench-llm (which builds, starts and stops the
servers): SmolLM2-135M-Instruct Q4_1, greedy, a fixed chat-formatted prompt.

  llm_bench.py inferd URL OUT.json          one stream at a time through TGI's
                                            POST /generate_stream: time to first
                                            token and decode tokens/s
  llm_bench.py llamacpp GGUF OUT.json       the same with llama.cpp itself
                                            (llama-cpp-python, streaming tokens)
  llm_bench.py concurrent URL OUT.json      inferd's aggregate tokens/s with N
                                            streams at once (BENCH_STREAMS)
  llm_bench.py report OUT.json...           the table and the ratios

Each figure is the median of BENCH_RUNS runs (default 3) after one warm-up.
Decode rate = (tokens - 1) / (time of last token - time of first token), so it
leaves the prompt out; TTFT runs from sending the request (or calling
llama.cpp) to receiving the first token. The HTTP side needs only the standard
library, so the llama.cpp side can run in its own virtualenv.
"""

import http.client
import json
import os
import statistics
import sys
import threading
import time
from urllib.parse import urlparse

NEW_TOKENS = int(os.environ.get("BENCH_NEW_TOKENS", "128"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
THREADS = int(os.environ.get("BENCH_THREADS", "2"))
STREAMS = [int(n) for n in os.environ.get("BENCH_STREAMS", "1,4,8").split(",")]

SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
QUESTION = "Write a detailed essay about the history of the Roman Empire, from its founding to its fall."
# Other long-answer questions, so concurrent streams are not all the same sequence.
QUESTIONS = [
    QUESTION,
    "Write a detailed essay about the history of the Ottoman Empire.",
    "Explain in detail how a steam engine works and how it changed industry.",
    "Write a long story about a dragon who learns to read.",
    "Describe in detail the water cycle and its effect on the weather.",
    "Write a detailed guide to planting and caring for a vegetable garden.",
    "Explain in detail how computers store and process information.",
    "Write a detailed essay about the history of the printing press.",
]


def chat_prompt(question):
    """SmolLM2's chat template (ChatML), as its tokenizer config renders it."""
    return (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
        f"<|im_start|>user\n{question}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


PROMPT = chat_prompt(QUESTION)


def median(values):
    return statistics.median(values) if values else float("nan")


def decode_rate(times):
    """Tokens per second after the first token, from the arrival time of each."""
    if len(times) < 2 or times[-1] <= times[0]:
        return float("nan")
    return (len(times) - 1) / (times[-1] - times[0])


# --- inferd over HTTP ------------------------------------------------------------------


def stream_once(url, prompt):
    """One /generate_stream call: (TTFT s, token arrival times, generated tokens,
    prompt tokens, total s)."""
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    body = json.dumps(
        {"inputs": prompt, "parameters": {"max_new_tokens": NEW_TOKENS, "do_sample": False}}
    )
    start = time.perf_counter()
    conn.request("POST", "/generate_stream", body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise SystemExit(f"/generate_stream answered {resp.status}: {resp.read()[:500]!r}")
    times, details = [], None
    while True:
        line = resp.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data:"):
            continue
        event = json.loads(line[5:])
        if "error" in event:
            raise SystemExit(f"the stream failed: {event}")
        times.append(time.perf_counter())
        if event.get("details"):
            details = event["details"]
            break
    conn.close()
    if details is None:
        raise SystemExit("the stream ended without its final event")
    # The last event can be an empty closing token; count what the server counted.
    return (
        times[0] - start,
        times,
        details["generated_tokens"],
        details.get("input_length"),
        times[-1] - start,
    )


def bench_inferd(url, out):
    print(f"inferd, one stream: warm-up and {RUNS} runs of {NEW_TOKENS} tokens")
    stream_once(url, PROMPT)
    ttft, rate, tokens, prompt_tokens = [], [], [], None
    for run in range(RUNS):
        first, times, generated, prompt_tokens, total = stream_once(url, PROMPT)
        ttft.append(first)
        rate.append(decode_rate(times))
        tokens.append(generated)
        print(
            f"   run {run + 1}/{RUNS}: TTFT {first * 1000:.1f} ms, decode {rate[-1]:.1f} tok/s, "
            f"{generated} tokens, {prompt_tokens} prompt tokens, {total:.2f} s"
        )
    save(out, {"kind": "inferd", "ttft_ms": median(ttft) * 1000, "decode_tps": median(rate),
               "tokens": median(tokens), "prompt_tokens": prompt_tokens})


def bench_concurrent(url, out):
    levels = {}
    for n in STREAMS:
        prompts = [chat_prompt(QUESTIONS[i % len(QUESTIONS)]) for i in range(n)]
        print(f"inferd, {n} concurrent streams: warm-up and {RUNS} runs")
        aggregate = []
        for run in range(RUNS + 1):
            results = [None] * n
            barrier = threading.Barrier(n + 1)

            def worker(i):
                barrier.wait()
                results[i] = stream_once(url, prompts[i])

            threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
            for t in threads:
                t.start()
            barrier.wait()
            start = time.perf_counter()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - start
            if any(r is None for r in results):
                raise SystemExit("a stream failed (see above)")
            generated = sum(r[2] for r in results)
            if run == 0:
                continue  # warm-up
            aggregate.append(generated / elapsed)
            print(
                f"   run {run}/{RUNS}: {generated} tokens in {elapsed:.2f} s = {aggregate[-1]:.1f} tok/s, "
                f"median TTFT {median([r[0] for r in results]) * 1000:.0f} ms"
            )
        levels[str(n)] = median(aggregate)
    save(out, {"kind": "concurrent", "aggregate_tps": levels})


# --- llama.cpp itself ------------------------------------------------------------------


def bench_llamacpp(gguf, out):
    import llama_cpp
    from llama_cpp import Llama

    llm = Llama(
        model_path=gguf,
        n_threads=THREADS,
        n_threads_batch=THREADS,
        n_ctx=2048,
        n_batch=512,
        verbose=False,
    )
    tokens = llm.tokenize(PROMPT.encode(), add_bos=True, special=True)

    def is_end(token):
        try:
            return bool(llama_cpp.llama_vocab_is_eog(llm._model.vocab, token))
        except AttributeError:
            return token == llm.token_eos()

    def once():
        llm.reset()  # no prompt reuse between runs: every run prefills the whole prompt
        start = time.perf_counter()
        times = []
        for token in llm.generate(tokens, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0):
            times.append(time.perf_counter())
            if is_end(token) or len(times) >= NEW_TOKENS:
                break
        return times[0] - start, times

    print(f"llama.cpp (llama-cpp-python {llama_cpp.__version__}), {THREADS} threads: "
          f"warm-up and {RUNS} runs of {NEW_TOKENS} tokens, {len(tokens)} prompt tokens")
    once()
    ttft, rate, counts = [], [], []
    for run in range(RUNS):
        first, times = once()
        ttft.append(first)
        rate.append(decode_rate(times))
        counts.append(len(times))
        print(f"   run {run + 1}/{RUNS}: TTFT {first * 1000:.1f} ms, decode {rate[-1]:.1f} tok/s, "
              f"{len(times)} tokens")
    save(out, {"kind": "llamacpp", "version": llama_cpp.__version__, "ttft_ms": median(ttft) * 1000,
               "decode_tps": median(rate), "tokens": median(counts), "prompt_tokens": len(tokens)})


# --- report ----------------------------------------------------------------------------


def save(path, result):
    result.update({"runs": RUNS, "new_tokens": NEW_TOKENS, "threads": THREADS})
    with open(path, "w") as f:
        json.dump(result, f)


def ratio(a, b):
    if a is None or b is None or not b or a != a or b != b:
        return "n/a"
    return f"{a / b:.2f}"


def report(paths):
    found = {}
    for p in paths:
        with open(p) as f:
            r = json.load(f)
        found[r["kind"]] = r
    inferd, llama, conc = found.get("inferd"), found.get("llamacpp"), found.get("concurrent")
    first = next(iter(found.values()))
    print()
    print(f"SmolLM2-135M-Instruct Q4_1, {first['threads']} threads, greedy, {first['new_tokens']} new tokens, "
          f"median of {first['runs']} runs after a warm-up")
    print(f"{'single stream':<44} {'TTFT ms':>9} {'decode tok/s':>13} {'tokens':>7} {'prompt':>7}")
    rows = [("inferd, POST /generate_stream", inferd)]
    if llama:
        rows.append((f"llama.cpp (llama-cpp-python {llama['version']})", llama))
    for label, r in rows:
        if r:
            print(f"{label:<44} {r['ttft_ms']:>9.1f} {r['decode_tps']:>13.1f} {r['tokens']:>7.0f} "
                  f"{r['prompt_tokens'] if r['prompt_tokens'] is not None else '?':>7}")
    if not llama:
        print(f"{'llama.cpp':<44} {'skipped (BENCH_SKIP_LLAMACPP=1)':>38}")
    if conc:
        print()
        print(f"{'inferd, concurrent streams over HTTP':<44} {'aggregate tok/s':>16}")
        for n, tps in conc["aggregate_tps"].items():
            print(f"{n + (' stream' if n == '1' else ' streams'):<44} {tps:>16.1f}")
    print()
    if inferd and llama:
        print(f"inferd / llama.cpp, single-stream decode tok/s: {ratio(inferd['decode_tps'], llama['decode_tps'])}")
        print(f"inferd / llama.cpp, time to first token:        {ratio(inferd['ttft_ms'], llama['ttft_ms'])}")
    if conc:
        levels = conc["aggregate_tps"]
        top = max(levels, key=int)
        print(f"{top} streams / 1 stream, aggregate tok/s:          {ratio(levels.get(top), levels.get('1'))}")


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "inferd" and len(args) == 2:
        bench_inferd(*args)
    elif cmd == "concurrent" and len(args) == 2:
        bench_concurrent(*args)
    elif cmd == "llamacpp" and len(args) == 2:
        bench_llamacpp(*args)
    elif cmd == "report":
        report(args)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
