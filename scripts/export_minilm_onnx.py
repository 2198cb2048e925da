#!/usr/bin/env python3
"""Writes all-MiniLM-L6-v2 as an fp32 ONNX graph for the ONNX Runtime backend.

Why: the model repository ships the Hugging Face weights (model.safetensors +
config.json, fetched from PyPI by scripts/fetch-models), not an ONNX file, and
no ONNX export of them is published where a package registry can reach it.
Exporting with torch would need torch and transformers (gigabytes) for a graph
of a few hundred nodes, so this script writes the BERT encoder directly with
the `onnx` package and numpy. It reads model.safetensors itself (8-byte
little-endian header length, a JSON header of name -> dtype/shape/data_offsets,
then the raw little-endian data), so the `safetensors` package is not needed.

What it writes: one self-contained .onnx file (opset 12, IR version 7) with
  inputs   input_ids          INT64 [batch, sequence]
           attention_mask     INT64 [batch, sequence]  (1 = token, 0 = padding)
  output   last_hidden_state  FP32  [batch, sequence, hidden]
The output is the encoder's token states; mean pooling under the mask and L2
normalisation are the server's job, as sentence-transformers does them for
this model. There is no token_type_ids input: sentence embedding always uses
type 0, so the type-0 row is added into the word-embedding table here (the
same float32 sum HF computes first: word + type, then + position). The pooler
is not exported. The bytes are a pure function of the input files (fixed node
and tensor names, no timestamps), so the file's sha256 can be pinned.

Fusion: the graph is laid out like a torch.onnx export of HF BertModel, so that
ONNX Runtime's in-session graph optimizer (level EXTENDED or ALL, the default)
rewrites each layer into one Attention (com.microsoft; it takes the 2-D mask
as is, so any padding layout stays exact), BiasGelu and fused
LayerNormalization. Choices that matter, found by reading ORT's fusion passes
and checking the optimized graph (SessionOptions.optimized_model_filepath):
  - opset 12. ORT's C++ AttentionFusion matches the mask chain only with
    Unsqueeze-1/11 (axes as an attribute), Cast-9 and Add/Mul/Sub-7/13, so an
    opset 13+ graph keeps its unfused attention. At opset 12 LayerNorm is the
    torch decomposition (ReduceMean, Sub, Pow, ReduceMean, Add eps, Sqrt, Div,
    Mul, Add); ORT's LayerNormFusion folds it back into one op.
  - position embeddings: position ids are a Slice of a constant [1, max_pos]
    range (up to the length from Shape(input_ids)), then a Gather of the
    position table, as HF's `self.position_ids[:, :seq_len]`. A Range + Gather
    variant crashed ORT's optimizer in an earlier draft.
  - attention mask: HF's get_extended_attention_mask, i.e. Unsqueeze(axes=1) ->
    Unsqueeze(axes=2) -> Cast(float) -> Sub(1, .) -> Mul(., -10000) -> Add onto
    the scores. ORT wants exactly that chain: two separate Unsqueezes, the
    constant 1 as Sub's first input, exactly -10000 as Mul's second.
  - scores: MatMul(q, k^T) then Div by sqrt(head_dim) (not a Mul by its
    inverse, nor a pre-scaled q), Softmax(axis=3); q/v Transpose perm
    (0,2,1,3), k perm (0,2,3,1); the Reshapes take constant shapes
    [0, 0, heads, head_dim] and [0, 0, hidden].
  - Linear layers are MatMul by the transposed [in, out] weight, then Add with
    the bias as second input; the residual Add takes the sublayer output first.
  - GELU is the exact erf form (config hidden_act "gelu"), written as torch
    exports it: Div(x, sqrt 2) -> Erf -> Add 1 -> Mul x -> Mul 0.5.
What the in-session optimizer cannot do with a symbolic sequence length is
SkipLayerNormalization (its pass wants every dim but the batch known) and
EmbedLayerNormalization (wants token_type_ids or the Range pattern); ORT's
offline tool, onnxruntime.transformers.optimizer (model_type "bert"), fuses
this graph completely (EmbedLayerNormalization 1, Attention 6,
SkipLayerNormalization 12, BiasGelu 6).

Usage (needs `pip install onnx numpy`):
    python scripts/export_minilm_onnx.py models/minilm/1 models/minilm/1/model.onnx
"""

import json
import math
import os
import struct
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 12
IR_VERSION = 7  # the IR version that came with opset 12; ORT 1.x loads it
MASK_FILL = -10000.0  # ORT's AttentionFusion checks for this exact value

SAFETENSORS_DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "?",
}


def read_safetensors(path):
    """name -> numpy array, from a .safetensors file (no `safetensors` package)."""
    data = Path(path).read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    base = 8 + header_len
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in SAFETENSORS_DTYPES:
            raise SystemExit(f"{path}: {name} has unsupported dtype {info['dtype']}")
        dtype = np.dtype(SAFETENSORS_DTYPES[info["dtype"]])
        start, end = info["data_offsets"]
        arr = np.frombuffer(data, dtype=dtype, count=(end - start) // dtype.itemsize, offset=base + start)
        tensors[name] = arr.reshape(info["shape"]).astype(dtype.newbyteorder("="))
    return tensors


class Builder:
    """Collects nodes and initializers; every node's output is named after it."""

    def __init__(self):
        self.nodes = []
        self.initializers = []

    def const(self, name, array):
        # np.array keeps 0-d scalars 0-d (np.ascontiguousarray would make them [1]).
        self.initializers.append(numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def op(self, op_type, inputs, name, **attrs):
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attrs))
        return name


def build(model_dir):
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    if config.get("hidden_act") != "gelu":
        raise SystemExit(f"hidden_act {config.get('hidden_act')!r}: only the exact erf 'gelu' is written")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise SystemExit("only absolute position embeddings are written")
    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    head_dim = hidden // heads
    eps = float(config["layer_norm_eps"])
    max_pos = config["max_position_embeddings"]

    weights = read_safetensors(model_dir / "model.safetensors")
    # Some checkpoints prefix every name with the architecture ("bert.").
    if "embeddings.word_embeddings.weight" not in weights:
        weights = {k.split(".", 1)[1]: v for k, v in weights.items() if k.startswith("bert.")}

    def w(name):
        return weights[name].astype(np.float32)

    b = Builder()
    b.const("const.zero_i64", np.array([0], dtype=np.int64))
    b.const("const.one_i64", np.array([1], dtype=np.int64))
    b.const("const.index1", np.array(1, dtype=np.int64))
    b.const("const.one", np.array(1.0, dtype=np.float32))
    b.const("const.two", np.array(2.0, dtype=np.float32))
    b.const("const.half", np.array(0.5, dtype=np.float32))
    b.const("const.eps", np.array(eps, dtype=np.float32))
    b.const("const.sqrt2", np.array(math.sqrt(2.0), dtype=np.float32))
    b.const("const.sqrt_head_dim", np.array(math.sqrt(head_dim), dtype=np.float32))
    b.const("const.mask_fill", np.array(MASK_FILL, dtype=np.float32))
    b.const("const.split_heads", np.array([0, 0, heads, head_dim], dtype=np.int64))
    b.const("const.merge_heads", np.array([0, 0, hidden], dtype=np.int64))

    def linear(inp, prefix):
        # PyTorch's Linear stores [out, in]; MatMul wants [in, out].
        b.const(prefix + ".weight", w(prefix + ".weight").T)
        b.const(prefix + ".bias", w(prefix + ".bias"))
        mm = b.op("MatMul", [inp, prefix + ".weight"], prefix + ".matmul")
        return b.op("Add", [mm, prefix + ".bias"], prefix + ".add")

    def layer_norm(inp, prefix):
        # torch's decomposition before opset 17; ORT's LayerNormFusion folds it.
        b.const(prefix + ".weight", w(prefix + ".weight"))
        b.const(prefix + ".bias", w(prefix + ".bias"))
        mean = b.op("ReduceMean", [inp], prefix + ".mean", axes=[-1])
        d = b.op("Sub", [inp, mean], prefix + ".centered")
        sq = b.op("Pow", [d, "const.two"], prefix + ".square")
        var = b.op("ReduceMean", [sq], prefix + ".var", axes=[-1])
        var = b.op("Add", [var, "const.eps"], prefix + ".var_eps")
        std = b.op("Sqrt", [var], prefix + ".std")
        n = b.op("Div", [d, std], prefix + ".normed")
        n = b.op("Mul", [n, prefix + ".weight"], prefix + ".scaled")
        return b.op("Add", [n, prefix + ".bias"], prefix + ".shifted")

    # --- embeddings: (word + type 0) + position, LayerNorm -------------------
    word = w("embeddings.word_embeddings.weight") + w("embeddings.token_type_embeddings.weight")[0]
    b.const("embeddings.word_embeddings.weight", word)
    b.const("embeddings.position_embeddings.weight", w("embeddings.position_embeddings.weight"))
    b.const("embeddings.position_ids", np.arange(max_pos, dtype=np.int64).reshape(1, max_pos))
    words = b.op("Gather", ["embeddings.word_embeddings.weight", "input_ids"], "embeddings.word_gather", axis=0)
    shape = b.op("Shape", ["input_ids"], "embeddings.input_shape")
    seq = b.op("Gather", [shape, "const.index1"], "embeddings.seq_len", axis=0)
    seq = b.op("Unsqueeze", [seq], "embeddings.seq_len_1d", axes=[0])
    pos_ids = b.op(
        "Slice",
        ["embeddings.position_ids", "const.zero_i64", seq, "const.one_i64", "const.one_i64"],
        "embeddings.position_ids_slice",
    )
    pos = b.op("Gather", ["embeddings.position_embeddings.weight", pos_ids], "embeddings.position_gather", axis=0)
    x = layer_norm(b.op("Add", [words, pos], "embeddings.add"), "embeddings.LayerNorm")

    # --- extended attention mask: (1 - mask[:, None, None, :]) * -10000 ------
    m = b.op("Unsqueeze", ["attention_mask"], "mask.unsqueeze1", axes=[1])
    m = b.op("Unsqueeze", [m], "mask.unsqueeze2", axes=[2])
    m = b.op("Cast", [m], "mask.cast", to=TensorProto.FLOAT)
    m = b.op("Sub", ["const.one", m], "mask.sub")
    mask = b.op("Mul", [m, "const.mask_fill"], "mask.mul")

    # --- encoder layers --------------------------------------------------------
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        att = p + "attention."

        def split_heads(t, name, perm):
            r = b.op("Reshape", [t, "const.split_heads"], name + ".reshape")
            return b.op("Transpose", [r], name + ".transpose", perm=perm)

        q = split_heads(linear(x, att + "self.query"), att + "self.query", [0, 2, 1, 3])
        k = split_heads(linear(x, att + "self.key"), att + "self.key", [0, 2, 3, 1])
        v = split_heads(linear(x, att + "self.value"), att + "self.value", [0, 2, 1, 3])
        scores = b.op("MatMul", [q, k], att + "self.scores")
        scores = b.op("Div", [scores, "const.sqrt_head_dim"], att + "self.scale")
        scores = b.op("Add", [scores, mask], att + "self.mask_add")
        probs = b.op("Softmax", [scores], att + "self.softmax", axis=3)
        ctx = b.op("MatMul", [probs, v], att + "self.context")
        ctx = b.op("Transpose", [ctx], att + "self.context.transpose", perm=[0, 2, 1, 3])
        ctx = b.op("Reshape", [ctx, "const.merge_heads"], att + "self.context.reshape")
        a = b.op("Add", [linear(ctx, att + "output.dense"), x], att + "output.residual")
        x = layer_norm(a, att + "output.LayerNorm")

        h = linear(x, p + "intermediate.dense")
        g = b.op("Div", [h, "const.sqrt2"], p + "intermediate.gelu.div")
        g = b.op("Erf", [g], p + "intermediate.gelu.erf")
        g = b.op("Add", [g, "const.one"], p + "intermediate.gelu.add")
        g = b.op("Mul", [h, g], p + "intermediate.gelu.mul")
        g = b.op("Mul", [g, "const.half"], p + "intermediate.gelu.half")
        o = b.op("Add", [linear(g, p + "output.dense"), x], p + "output.residual")
        x = layer_norm(o, p + "output.LayerNorm")

    # The last LayerNorm's final Add writes the graph output under its public name.
    assert b.nodes[-1].output[0] == x
    b.nodes[-1].output[0] = "last_hidden_state"

    graph = helper.make_graph(
        b.nodes,
        "all-MiniLM-L6-v2",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", hidden])],
        initializer=b.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="inferd scripts/export_minilm_onnx.py",
        producer_version="1",
        ir_version=IR_VERSION,
    )
    onnx.checker.check_model(model)
    return model


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    model_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
    data = build(model_dir).SerializeToString()
    out.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target, then rename, so a failure never leaves half a model.
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    print(f"wrote {out}: {len(data)} bytes")


if __name__ == "__main__":
    main()
