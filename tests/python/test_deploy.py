"""The Kubernetes manifests in deploy/ (issue 13): every overlay renders with
`kubectl kustomize`, the core kinds pass `kubernetes-validate --strict`, the
KServe runtime keeps KServe's container contract, and the arguments each
manifest gives inferd really start it: the rendered args are run against the
built binary (ports swapped for free ones), which must then answer its probes.
"""

import shutil
import subprocess

import pytest
import requests
import yaml

from conftest import REPO_ROOT, free_port, inferd_binary, stop_process, wait_until_up

OVERLAYS = ["kserve", "examples", "standalone", "keda", "orchestrator"]
CORE_KINDS = {"Deployment", "Service", "HorizontalPodAutoscaler", "ServiceAccount", "Role", "RoleBinding",
              "PersistentVolumeClaim"}
K8S_VERSION = "1.33.0"


def render(overlay):
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl is not installed: the deploy/ manifests cannot be rendered")
    out = subprocess.run([kubectl, "kustomize", str(REPO_ROOT / "deploy" / overlay)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def one(docs, kind):
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, [d["kind"] for d in docs]
    return found[0]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_and_its_core_kinds_validate(overlay):
    import kubernetes_validate

    docs = render(overlay)
    assert docs, f"deploy/{overlay} renders nothing"
    for doc in docs:
        if doc["kind"] in CORE_KINDS:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_kserve_runtime_keeps_kserves_container_contract():
    runtime = one(render("kserve"), "ClusterServingRuntime")
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1"
    spec = runtime["spec"]
    assert {"v1", "v2", "grpc-v2"} <= set(spec["protocolVersions"])
    formats = {f["name"] for f in spec["supportedModelFormats"]}
    assert {"onnx", "gguf", "sentence-transformers"} <= formats
    assert spec["annotations"]["prometheus.kserve.io/path"] == "/metrics"
    (container,) = spec["containers"]
    assert container["name"] == "kserve-container"
    args = container["args"]
    for arg in ["--model_name={{.Name}}", "--model_dir=/mnt/models", "--http_port=8080", "--grpc_port=8081"]:
        assert arg in args, args
    assert container["ports"][0]["containerPort"] == 8080
    for probe, path in [("readinessProbe", "/v2/health/ready"), ("livenessProbe", "/v2/health/live"),
                        ("startupProbe", "/v2/health/live")]:
        assert container[probe]["httpGet"] == {"path": path, "port": 8080}, probe
    security = container["securityContext"]
    assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # A read-only root needs --data-dir on a volume.
    data_dir = next(a.split("=", 1)[1] for a in args if a.startswith("--data-dir="))
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert data_dir in mounts, (data_dir, mounts)
    assert mounts[data_dir] in {v["name"] for v in spec["volumes"]}


def test_example_inference_services_run_on_the_runtime():
    docs = render("examples")
    formats = {f["name"] for f in one(docs, "ClusterServingRuntime")["spec"]["supportedModelFormats"]}
    services = [d for d in docs if d["kind"] == "InferenceService"]
    assert {s["metadata"]["name"] for s in services} == {"iris", "smollm2", "minilm"}
    for s in services:
        model = s["spec"]["predictor"]["model"]
        assert model["runtime"] == "inferd" and model["modelFormat"]["name"] in formats, s
        assert s["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"


def test_the_keda_overlay_scales_on_a_gauge_inferd_exports(base_url):
    docs = render("keda")
    assert not [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"], "KEDA makes its own HPA"
    (trigger,) = one(docs, "ScaledObject")["spec"]["triggers"]
    query = trigger["metadata"]["query"]
    metric = query.split("(", 1)[1].split("{", 1)[0]
    text = requests.get(f"{base_url}/metrics", timeout=10).text
    assert f"# TYPE {metric} gauge" in text, metric


def serves_iris(args, port, log_path):
    """Runs `inferd ARGS` until its readiness answers 200, checks that iris is
    ready there, and stops it."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([inferd_binary("deploy"), *args], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_up(proc, f"http://127.0.0.1:{port}/v2/health/ready", f"inferd {' '.join(args)}", 60,
                      lambda: log_path.read_text(errors="replace")[-2000:])
        ready = requests.get(f"http://127.0.0.1:{port}/v2/models/iris/ready", timeout=10)
        assert ready.status_code == 200, ready.text
    finally:
        stop_process(proc)


def swap(args, replacements):
    """The args with each `--flag=value` whose flag is in `replacements` given the new value."""
    out = []
    for a in args:
        flag = a.split("=", 1)[0]
        out.append(f"{flag}={replacements[flag]}" if flag in replacements else a)
    return out


def test_the_runtime_args_start_inferd_on_a_bare_model(tmp_path):
    (container,) = one(render("kserve"), "ClusterServingRuntime")["spec"]["containers"]
    model_dir = tmp_path / "mnt-models"
    model_dir.mkdir()
    shutil.copy(REPO_ROOT / "models" / "iris" / "1" / "model.onnx", model_dir / "model.onnx")
    http, grpc = free_port(), free_port()
    args = [a.replace("{{.Name}}", "iris") for a in container["args"]]
    args = swap(args, {"--model_dir": model_dir, "--http_port": http, "--grpc_port": grpc,
                       "--data-dir": tmp_path / "data"}) + ["--host=127.0.0.1"]
    serves_iris(args, http, tmp_path / "inferd.log")


def test_the_standalone_args_start_inferd_on_the_image_models(tmp_path):
    (container,) = one(render("standalone"), "Deployment")["spec"]["template"]["spec"]["containers"]
    http, grpc = free_port(), free_port()
    args = swap(container["args"], {"--models": REPO_ROOT / "models",
                                    "--catalog": REPO_ROOT / "catalog" / "model-services.json",
                                    "--data-dir": tmp_path / "data", "--host": "127.0.0.1",
                                    "--port": http, "--grpc-port": grpc})
    serves_iris(args, http, tmp_path / "inferd.log")


def test_the_orchestrator_overlay_may_manage_inference_services_and_nothing_else(tmp_path):
    docs = render("orchestrator")
    one(docs, "ClusterServingRuntime")
    assert not [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"], "one writer: its store"
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    pod = deployment["spec"]["template"]["spec"]
    account = pod["serviceAccountName"]
    assert one(docs, "ServiceAccount")["metadata"]["name"] == account
    binding = one(docs, "RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account}]
    role = one(docs, "Role")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    (rule,) = role["rules"]
    assert rule["apiGroups"] == ["serving.kserve.io"] and rule["resources"] == ["inferenceservices"]
    # What the orchestrator calls: create, get/list, merge patch, delete.
    assert {"create", "get", "list", "patch", "delete"} <= set(rule["verbs"]), rule
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert one(docs, "PersistentVolumeClaim")["metadata"]["name"] in claims
    (container,) = pod["containers"]
    assert "--orchestrator=kubernetes" in container["args"]
    # The args start the binary; no cluster answers here, so the services
    # are not reconciled, but the server comes up and serves its models.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        f"apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster:\n"
        f"    server: http://127.0.0.1:{free_port()}\ncontexts:\n- name: c\n  context:\n    cluster: c\n"
        f"    user: u\nusers:\n- name: u\n  user: {{}}\n")
    http, grpc = free_port(), free_port()
    args = swap(container["args"], {"--models": REPO_ROOT / "models",
                                    "--catalog": REPO_ROOT / "catalog" / "model-services.json",
                                    "--data-dir": tmp_path / "data", "--host": "127.0.0.1",
                                    "--port": http, "--grpc-port": grpc})
    serves_iris(args + [f"--kubeconfig={kubeconfig}", "--kube-timeout-ms=1000"], http, tmp_path / "inferd.log")
