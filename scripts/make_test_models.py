"""Trains and exports the tiny ONNX models of the default repository.

iris: logistic regression, X FP32 [N,4] -> label INT64 [N], probabilities FP32 [N,3].
digits: a small MLP on the 8x8 digits (pixels scaled to 0..1), input FP32 [N,64]
-> probabilities FP32 [N,10]. Seeds are fixed so the files are reproducible.
"""
import pathlib
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import to_onnx
from sklearn.datasets import load_digits, load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier


def export_iris(root: pathlib.Path) -> None:
    data = load_iris()
    model = LogisticRegression(max_iter=500, random_state=0).fit(data.data, data.target)
    onx = to_onnx(model, data.data[:1].astype(np.float32),
                  options={id(model): {"zipmap": False}}, target_opset=15)
    out = root / "iris" / "1"
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.onnx").write_bytes(onx.SerializeToString())
    (root / "iris" / "labels.txt").write_text("\n".join(data.target_names) + "\n")
    acc = model.score(data.data, data.target)
    print(f"iris: train accuracy {acc:.3f}")


def export_digits(root: pathlib.Path) -> None:
    """Exports the MLP as plain MatMul/Add/Relu/Softmax so any ONNX runtime runs it."""
    data = load_digits()
    x = data.data / 16.0
    model = MLPClassifier(hidden_layer_sizes=(32,), max_iter=400, random_state=0).fit(x, data.target)
    w1, w2 = (w.astype(np.float32) for w in model.coefs_)
    b1, b2 = (b.astype(np.float32) for b in model.intercepts_)
    nodes = [
        helper.make_node("MatMul", ["input", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["l0"]),
        helper.make_node("Add", ["l0", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "digits",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"),
         numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(b2, "b2")],
    )
    onx = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onx.ir_version = 8
    out = root / "digits" / "1"
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.onnx").write_bytes(onx.SerializeToString())
    (root / "digits" / "labels.txt").write_text("\n".join(str(d) for d in range(10)) + "\n")
    # A reference sample the tests use: the first digit image of the dataset and its class.
    np.savetxt(root / "digits" / "sample.txt", x[:1], fmt="%.4f")
    print(f"digits: train accuracy {model.score(x, data.target):.3f}, sample class {data.target[0]}")


if __name__ == "__main__":
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "models")
    export_iris(root)
    export_digits(root)
