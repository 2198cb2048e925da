"""scripts/bench's MiniLM sections: embeddings (inferd against ONNX Runtime)
and dynamic batching on/off."""

import json
import re
import subprocess
from pathlib import Path

from harness import (DURATION, LIB, MINILM, RUNS, SERVER_PIN, VENV_BENCH, BenchError,
                     before_measurement, ensure_ort_venv, http, inferd, log, model_folder,
                     model_ready, post_json, run, wrk_repeat, write_bodies)
from report import RAW, add_row


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
