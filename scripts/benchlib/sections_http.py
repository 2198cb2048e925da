"""scripts/bench's iris sections: V2 JSON against bench-echo, and gRPC against
HTTP on the same server."""

import re
from pathlib import Path

from harness import (DURATION, ECHO, IRIS_BODY, LIB, SERVER_PIN, VENV_TEST, BenchError,
                     Server, free_port, h2load, http, inferd, log, med, model_folder,
                     model_ready, repeat, run, venv_has, wrk_repeat)
from report import RAW, add_row


def echo_server(work, name, plain):
    port = free_port()
    # --plain is a mode the echo may not have yet; it refuses unknown arguments.
    args = ["--port", port] + (["--plain"] if plain else [])
    server = Server(name, SERVER_PIN + [ECHO] + args, work)
    server.url = f"http://127.0.0.1:{port}"
    return server


def v2_ready(server, path="/v2/models/iris/infer"):
    def ready():
        status, _ = http("POST", server.url + path, IRIS_BODY, timeout=5)
        return status == 200
    return ready


def section_v2(work):
    raw = RAW.setdefault("v2", {})
    script = LIB / "v2-infer.lua"
    results, errors = {}, {}
    runs = [("inferd", None), ("bench-echo", False), ("bench-echo --plain", True)]
    for name, plain in runs:
        try:
            if plain is None:
                server = inferd("inferd-iris", model_folder(work, "models-v2", "iris"), work)
            else:
                if not ECHO.exists():
                    raise BenchError("no target/release/bench-echo")
                server = echo_server(work, name.replace(" --", "-"), plain)
            with server:
                if plain is None:
                    server.wait_until(model_ready(server, "iris"), "ready (iris)")
                try:
                    server.wait_until(v2_ready(server), "answering", timeout=30)
                except BenchError:
                    if plain and not server.alive():
                        raise BenchError("refuses --plain (not built with it yet)")
                    raise
                results[name] = wrk_repeat(f"{name} iris", f"{server.url}/v2/models/iris/infer",
                                           threads=2, conns=32, script=script)
        except BenchError as e:
            errors[name] = str(e)
            log(f"   {name}: {e}")
    raw.update(results)
    inf, echo, plain = (results.get(n) for n, _ in runs)
    load = inf["load_avg"][0] if inf else None
    add_row("V2 iris 1 row, 32 conns, vs bench-echo", inf["value"] if inf else None, "req/s",
            note=errors.get("inferd"), peer_name="bench-echo", peer=echo["value"] if echo else None,
            peer_note=errors.get("bench-echo"), on="ratio", op=">=", threshold=0.70,
            target="≥ 0.70× bench-echo", load=load, peer_load=echo["load_avg"][0] if echo else None)
    add_row("V2 iris 1 row, 32 conns, vs plain echo", inf["value"] if inf else None, "req/s",
            note=errors.get("inferd"), peer_name="bench-echo --plain",
            peer=plain["value"] if plain else None, peer_note=errors.get("bench-echo --plain"),
            target=None, load=load, peer_load=plain["load_avg"][0] if plain else None)
    add_row("V2 iris 1 row, 32 conns, p99", inf["p99_ms"] if inf else None, "ms",
            note=errors.get("inferd"), peer_name="bench-echo", peer=echo["p99_ms"] if echo else None,
            peer_note=errors.get("bench-echo"), on="value", op="<", threshold=2.0,
            target="p99 < 2 ms", load=load, peer_load=echo["load_avg"][0] if echo else None)


def iris_counters(server):
    """(successes, failures) of iris from /metrics (every face counts there)."""
    status, body = http("GET", f"{server.url}/metrics", timeout=10)
    if status != 200:
        raise BenchError(f"GET /metrics answered {status}")
    counts = {"success": 0.0, "failure": 0.0}
    for line in body.decode().splitlines():
        m = re.match(r'nv_inference_request_(success|failure)\{([^}]*)\}\s+(\S+)', line)
        if m and 'model="iris"' in m.group(2):
            counts[m.group(1)] += float(m.group(3))
    return counts["success"], counts["failure"]


def section_grpc(work):
    raw = RAW.setdefault("grpc", {})
    kw = dict(on="ratio", op=">=", threshold=1.0, target="≥ 1.0× HTTP")
    figure = "gRPC iris 1 row, h2load -c32 -m1, vs HTTP V2 JSON wrk -c32"
    if not venv_has(VENV_TEST, "from tritonclient.grpc import service_pb2"):
        add_row(figure, None, "req/s", note=".venv with tritonclient missing (run scripts/test once)",
                peer_name="HTTP V2 JSON", peer_note="not measured", **kw)
        return
    body = Path(work) / "iris.grpc"
    run([VENV_TEST / "bin" / "python", LIB / "grpc_body.py", "frame", body])
    grpc_res = http_res = None
    error = None
    try:
        with inferd("inferd-iris-grpc", model_folder(work, "models-grpc", "iris"), work) as server:
            server.wait_until(model_ready(server, "iris"), "ready (iris)")
            server.wait_until(v2_ready(server), "answering")
            check = run([VENV_TEST / "bin" / "python", LIB / "grpc_body.py", "check",
                         f"127.0.0.1:{server.grpc_port}"], check=False, timeout=60)
            if check.returncode != 0:
                raise BenchError(f"the gRPC check request failed: {check.stdout[-300:]}")
            log(f"   gRPC check: {check.stdout.strip()}")
            url = f"http://127.0.0.1:{server.grpc_port}/inference.GRPCInferenceService/ModelInfer"

            def once():
                before = iris_counters(server)
                r = h2load(url, body, DURATION)
                after = iris_counters(server)
                r["server_successes"] = after[0] - before[0]
                r["server_failures"] = after[1] - before[1]
                # h2load counts HTTP 200s, and a gRPC error is a 200 too: the
                # server's own count of successful inferences decides.
                r["value"] = min(r["succeeded"], r["server_successes"]) / r["elapsed_s"]
                if r["server_failures"] or r["server_successes"] < r["succeeded"] * 0.99:
                    log(f"   WARNING: h2load says {r['succeeded']} succeeded, the server counted "
                        f"{r['server_successes']:.0f} successes and {r['server_failures']:.0f} failures")
                return r

            grpc_res = repeat("gRPC h2load", once, lambda r: (
                f"{r['value']:.1f} req/s ({r['succeeded']} succeeded per h2load, "
                f"{r['server_successes']:.0f} successes and {r['server_failures']:.0f} failures "
                f"per the server, {r['errored']} errored)"))
            grpc_res["value"] = med(grpc_res, "value")
            http_res = wrk_repeat("HTTP V2 JSON", f"{server.url}/v2/models/iris/infer",
                                  threads=2, conns=32, script=LIB / "v2-infer.lua")
    except BenchError as e:
        error = str(e)
        log(f"   grpc: {error}")
    raw.update({"grpc": grpc_res, "http": http_res})
    bad = grpc_res and any(r["server_failures"] or r["failed"] or r["errored"] for r in grpc_res["runs"])
    add_row(figure, grpc_res["value"] if grpc_res else None, "req/s",
            note=("errors: see the JSON" if bad else None) if grpc_res else error,
            peer_name="HTTP V2 JSON (same server)", peer=http_res["value"] if http_res else None,
            peer_note=None if http_res else error, load=grpc_res["load_avg"][0] if grpc_res else None,
            peer_load=http_res["load_avg"][0] if http_res else None, **kw)
