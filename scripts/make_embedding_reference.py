#!/usr/bin/env python3
"""Reference sentence embeddings for all-MiniLM-L6-v2, computed without candle.

The embed backend's test compares its vectors with these. To make that
comparison mean something, this is an independent implementation: a plain
numpy BERT forward pass (float64) over the same model.safetensors, read with
the `safetensors` package's numpy API, then mean pooling and L2 normalisation,
which is what sentence-transformers does for this model (1_Pooling/config.json:
pooling_mode_mean_tokens). Only tokenisation is shared in spirit (HF
`tokenizers` here, the Rust crate of the same project there): both read the
same tokenizer.json.

Each sentence is encoded alone, so there is no padding and the mean is over
every token. Truncation is 256 tokens, sentence-transformers' max_seq_length
for this model (tokenizer.json itself says 128, which sentence-transformers
overrides).

Usage (after scripts/fetch-models; needs `pip install numpy safetensors
tokenizers`):
    .venv/bin/python scripts/make_embedding_reference.py \
        models/minilm/1 crates/backend-embed/tests/data/minilm_reference.json
"""

import json
import math
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

MAX_TOKENS = 256

# Varied on purpose: empty, plain English, a question, accents + CJK + emoji
# (byte-level surprises), code and numbers, and one far past 256 tokens so
# truncation is exercised.
LONG = " ".join(
    f"Paragraph {i}: the committee reviewed {i * 7} proposals about rivers, "
    f"bridges and the weather in spring."
    for i in range(1, 31)
)
SENTENCES = [
    "",
    "The quick brown fox jumps over the lazy dog.",
    "How do I reset my password if I no longer have access to my email?",
    "Café déjà vu: naïve résumé 🚀🔥 — 日本語のテキストも少し。",
    'fn main() { println!("{}", 3.14159 * 2.0); } // 42 items @ $9.99',
    LONG,
]

ERF = np.vectorize(math.erf)


def layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def linear(x, w, b):
    # PyTorch stores Linear weights as [out, in].
    return x @ w.T + b


def gelu(x):
    # BERT's "gelu" is the exact erf form, not the tanh approximation.
    return 0.5 * x * (1.0 + ERF(x / math.sqrt(2.0)))


def softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def embed(weights, config, ids):
    """One unpadded sequence of token ids -> normalised mean-pooled vector."""
    p = lambda name: weights[name].astype(np.float64)  # noqa: E731
    eps = config["layer_norm_eps"]
    heads = config["num_attention_heads"]
    n = len(ids)
    x = (
        p("embeddings.word_embeddings.weight")[ids]
        + p("embeddings.position_embeddings.weight")[:n]
        + p("embeddings.token_type_embeddings.weight")[0]
    )
    x = layer_norm(x, p("embeddings.LayerNorm.weight"), p("embeddings.LayerNorm.bias"), eps)
    hidden = x.shape[-1]
    d = hidden // heads
    for i in range(config["num_hidden_layers"]):
        pre = f"encoder.layer.{i}."
        att = pre + "attention."

        def split(t):
            return t.reshape(n, heads, d).transpose(1, 0, 2)  # [heads, n, d]

        q = split(linear(x, p(att + "self.query.weight"), p(att + "self.query.bias")))
        k = split(linear(x, p(att + "self.key.weight"), p(att + "self.key.bias")))
        v = split(linear(x, p(att + "self.value.weight"), p(att + "self.value.bias")))
        scores = softmax(q @ k.transpose(0, 2, 1) / math.sqrt(d))
        ctx = (scores @ v).transpose(1, 0, 2).reshape(n, hidden)
        a = linear(ctx, p(att + "output.dense.weight"), p(att + "output.dense.bias"))
        x = layer_norm(
            a + x, p(att + "output.LayerNorm.weight"), p(att + "output.LayerNorm.bias"), eps
        )
        h = gelu(linear(x, p(pre + "intermediate.dense.weight"), p(pre + "intermediate.dense.bias")))
        o = linear(h, p(pre + "output.dense.weight"), p(pre + "output.dense.bias"))
        x = layer_norm(o + x, p(pre + "output.LayerNorm.weight"), p(pre + "output.LayerNorm.bias"), eps)
    pooled = x.mean(0)
    return pooled / max(np.linalg.norm(pooled), 1e-12)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    model_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
    config = json.loads((model_dir / "config.json").read_text())
    weights = load_file(str(model_dir / "model.safetensors"))
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(MAX_TOKENS)
    vectors, tokens = [], []
    for s in SENTENCES:
        ids = tok.encode(s).ids
        tokens.append(len(ids))
        vectors.append([round(float(v), 7) for v in embed(weights, config, ids)])
    assert max(tokens) == MAX_TOKENS, "the long sentence must be truncated"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"sentences": SENTENCES, "tokens": tokens, "vectors": vectors}, ensure_ascii=False)
        + "\n"
    )
    print(f"wrote {out}: {len(SENTENCES)} sentences, tokens {tokens}")


if __name__ == "__main__":
    main()
