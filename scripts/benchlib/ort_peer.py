#!/usr/bin/env python3
"""The embeddings peer of scripts/bench: all-MiniLM-L6-v2 run with ONNX Runtime
from PyPI (the same models/minilm/1/model.onnx inferd serves), in-process, with
nothing between the texts and the vectors but what the model needs:

  tokenization  Hugging Face `tokenizers` with models/minilm/1/tokenizer.json,
                truncation at 256 tokens (sentence-transformers' max_seq_length
                for this model, as models/minilm/model.toml's max_tokens), padding
                to the longest text of the batch
  forward       onnxruntime.InferenceSession, CPU, intra_op_num_threads = 2,
                inter_op_num_threads = 1, default graph optimizations (ALL)
  pooling       mean of the token states under the attention mask, then L2
                normalisation

  ort_peer.py MODEL_DIR SENTENCES_FILE SECONDS RUNS OUT.json

For batch sizes 1 and 32 it runs one warm-up pass, then RUNS runs of SECONDS
each, cycling through the sentences (batch 1: one at a time; batch 32: the file
cut into batches of 32), tokenization included in the timed loop as inferd's
figure includes it; sentences/s per run and their median go to OUT.json, with
the 1-minute load average read before each run, and the vector of every
sentence computed alone (no padding), for the cosine check.
Prints progress on stdout. Needs onnxruntime, tokenizers and numpy (scripts/bench
puts them in .venv-bench).
"""

import json
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

MAX_TOKENS = 256
THREADS = 2


def load_avg():
    """The 1-minute load average, read right before a measurement."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def main(model_dir, sentences_path, seconds, runs, out):
    seconds, runs = float(seconds), int(runs)
    with open(sentences_path) as f:
        sentences = [line.strip() for line in f if line.strip()]

    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        f"{model_dir}/model.onnx", options, providers=["CPUExecutionProvider"]
    )
    tokenizer = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    tokenizer.enable_truncation(MAX_TOKENS)
    tokenizer.enable_padding()  # to the longest of each batch

    def embed(texts):
        encodings = tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        hidden = session.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask})[0]
        m = mask[..., None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    result = {
        "onnxruntime": ort.__version__,
        "threads": THREADS,
        "seconds": seconds,
        "sentences": len(sentences),
        "batch": {},
    }
    for batch in (1, 32):
        batches = [sentences[i : i + batch] for i in range(0, len(sentences), batch)]
        for texts in batches[:8]:
            embed(texts)  # warm-up
        rates, loads = [], []
        for run in range(runs):
            loads.append(load_avg())
            done, i = 0, 0
            start = time.perf_counter()
            while True:
                texts = batches[i % len(batches)]
                embed(texts)
                done += len(texts)
                i += 1
                elapsed = time.perf_counter() - start
                if elapsed >= seconds:
                    break
            rates.append(done / elapsed)
            print(f"   ORT {ort.__version__}, batch {batch}, run {run + 1}/{runs}: "
                  f"{rates[-1]:.1f} sentences/s ({done} in {elapsed:.2f} s)", flush=True)
        result["batch"][str(batch)] = {
            "runs": rates, "median": statistics.median(rates), "load_avg": loads
        }

    result["vectors"] = [embed([s])[0].tolist() for s in sentences]
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    if len(sys.argv) != 6:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
