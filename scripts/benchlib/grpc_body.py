#!/usr/bin/env python3
"""The gRPC side of scripts/bench, run with .venv's Python (tritonclient.grpc):

  grpc_body.py frame OUT        writes one iris row as a ModelInferRequest in a
                                gRPC frame (flag byte 0, 4-byte big-endian
                                length, the message), the body h2load posts
  grpc_body.py check HOST:PORT  sends that request once with tritonclient's gRPC
                                client and prints the answer as JSON; exits
                                non-zero when it is not status OK with one label

The request is what tritonclient itself sends for the row: the input as
raw_input_contents (little-endian FP32), no outputs named (all come back).
"""

import json
import struct
import sys

import numpy as np

ROW = [5.1, 3.5, 1.4, 0.2]


def frame(out):
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name="iris")
    tensor = request.inputs.add()
    tensor.name = "X"
    tensor.datatype = "FP32"
    tensor.shape.extend([1, 4])
    request.raw_input_contents.append(np.array([ROW], dtype="<f4").tobytes())
    message = request.SerializeToString()
    with open(out, "wb") as f:
        f.write(b"\x00" + struct.pack(">I", len(message)) + message)
    print(json.dumps({"bytes": 5 + len(message)}))


def check(url):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    x = grpcclient.InferInput("X", [1, 4], "FP32")
    x.set_data_from_numpy(np.array([ROW], dtype=np.float32))
    answer = client.infer("iris", [x], client_timeout=10)
    label = answer.as_numpy("label")
    print(json.dumps({"label": label.tolist() if label is not None else None}))
    if label is None or label.shape != (1,):
        raise SystemExit("the gRPC answer has no one-row label")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "frame":
        frame(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "check":
        check(sys.argv[2])
    else:
        raise SystemExit(__doc__)
