"""Writes an MLServer model repository serving the same iris model as models/iris.

Trains LogisticRegression(max_iter=500, random_state=0) on load_iris, exactly as
scripts/make_test_models.py does for the ONNX export, and saves it with joblib for
MLServer's scikit-learn runtime. Layout (the folder is the first argument):

  settings.json            parallel_workers 0 (one process, as inferd), debug false
                           (MLServer's default, true, logs every request: inferd
                           does not) and host 127.0.0.1 (inferd's default)
  iris/model-settings.json implementation mlserver_sklearn.SKLearnModel
  iris/model.joblib

Ports are not written here: scripts/bench-v2 passes them as MLSERVER_*_PORT.
"""
import json
import pathlib
import sys

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression


def main(root: pathlib.Path) -> None:
    data = load_iris()
    model = LogisticRegression(max_iter=500, random_state=0).fit(data.data, data.target)
    model_dir = root / "iris"
    model_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, model_dir / "model.joblib")
    (model_dir / "model-settings.json").write_text(json.dumps({
        "name": "iris",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "1"},
    }, indent=2) + "\n")
    (root / "settings.json").write_text(json.dumps(
        {"parallel_workers": 0, "debug": False, "host": "127.0.0.1"}, indent=2) + "\n")
    print(f"iris: train accuracy {model.score(data.data, data.target):.3f}, written to {root}")


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/bench/mlserver"))
