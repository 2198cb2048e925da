"""The clients of scripts/bench-grpc: tritonclient over gRPC and over HTTP."""

import multiprocessing as mp
import statistics
import sys
import time

import numpy as np

port, grpc_port, runs, seconds, clients = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
ROW = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)


def client(face):
    if face == "grpc":
        import tritonclient.grpc as t
        c = t.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        x = t.InferInput("X", [1, 4], "FP32")
        x.set_data_from_numpy(ROW)
    else:
        import tritonclient.http as t
        c = t.InferenceServerClient(f"127.0.0.1:{port}")
        x = t.InferInput("X", [1, 4], "FP32")
        x.set_data_from_numpy(ROW, binary_data=True)
    outputs = [t.InferRequestedOutput("label")]
    return lambda: c.infer("iris", [x], outputs=outputs)


def latencies(face, n=2000):
    call = client(face)
    for _ in range(200):
        call()
    took = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        took.append(time.perf_counter() - t0)
    took.sort()
    return took[len(took) // 2] * 1e3, took[int(len(took) * 0.99)] * 1e3


def count(face, q):
    call = client(face)
    call()
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        call()
        n += 1
    q.put(n)


def throughput(face):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=count, args=(face, q)) for _ in range(clients)]
    for p in procs:
        p.start()
    total = sum(q.get() for _ in procs)
    for p in procs:
        p.join()
    return total / seconds


def main():
    print(f"iris, one row, median of {runs} runs; {clients} client processes for throughput")
    print(f"{'face':<26} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>9}")
    results = {}
    for face, label in [("grpc", "gRPC (tritonclient.grpc)"), ("http", "HTTP (tritonclient.http)")]:
        lat = [latencies(face) for _ in range(runs)]
        rps = [throughput(face) for _ in range(runs)]
        p50 = statistics.median(l[0] for l in lat)
        p99 = statistics.median(l[1] for l in lat)
        results[face] = (p50, statistics.median(rps))
        print(f"{label:<26} {p50:>8.3f} {p99:>8.3f} {statistics.median(rps):>9.0f}")
    g, h = results["grpc"], results["http"]
    print(f"gRPC/HTTP: latency {g[0] / h[0]:.2f}x, throughput {g[1] / h[1]:.2f}x")


if __name__ == "__main__":
    main()
