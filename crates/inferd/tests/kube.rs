//! `--orchestrator kubernetes` against a loopback Kubernetes API server: a
//! seed-003 service made through the API becomes a KServe InferenceService,
//! follows the status KServe writes, stops and starts through KServe's stop
//! annotation, is deleted with it, survives the API's refusals and silences
//! as reasons, and a restart brings the cluster back in line with the store.

mod common;
mod kube {
    pub mod fake;
}

use std::path::Path;
use std::time::{Duration, Instant};

use axum::http::Method;
use common::{http, inferd, temp_dir, workspace, Server};
use kube::fake::{FakeKube, Fault};
use serde_json::{json, Value};

const STOP: &str = "serving.kserve.io/stop";

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn serve(fake: &FakeKube, data: &Path, timeout_ms: u64) -> Server {
    serve_syncing(fake, data, timeout_ms, 100)
}

fn serve_syncing(fake: &FakeKube, data: &Path, timeout_ms: u64, sync_ms: u64) -> Server {
    let config = fake.kubeconfig(data, "ml");
    Server::start_with_data(
        &workspace().join("models"),
        data,
        &[
            "--orchestrator",
            "kubernetes",
            "--kubeconfig",
            config.to_str().unwrap(),
            "--kube-storage-uri-prefix",
            "pvc://models/",
            "--kube-sync-ms",
            &sync_ms.to_string(),
            "--kube-timeout-ms",
            &timeout_ms.to_string(),
        ],
    )
}

/// The document's own create example, on the repository's iris model.
fn create(addr: &str, name: &str) -> String {
    let body = json!({"name": name, "model_id": "iris", "framework": "onnx", "cpu": 4,
        "memory": 17179869184u64, "gpu": 1, "replicas": 2});
    let (status, answer) = http(
        addr,
        "POST",
        "/api/v1/inference/services",
        &body.to_string(),
    );
    assert_eq!(status, 201, "{answer}");
    json_of(&answer)["data"]["service_id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn service(addr: &str, id: &str) -> Value {
    let (code, body) = http(addr, "GET", &format!("/api/v1/inference/services/{id}"), "");
    assert_eq!(code, 200, "{body}");
    json_of(&body)["data"].clone()
}

/// Polls until `check` holds, or fails saying what was last seen.
fn until<T: std::fmt::Debug>(
    what: &str,
    mut seen: impl FnMut() -> T,
    check: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = seen();
        if check(&now) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "waited for {what}; last saw {now:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_status(addr: &str, id: &str, want: &str) -> Value {
    until(
        &format!("{id} to be {want}"),
        || service(addr, id),
        |s| s["status"] == want,
    )
}

fn annotation(fake: &FakeKube, id: &str) -> Option<String> {
    fake.object(id)?["metadata"]["annotations"][STOP]
        .as_str()
        .map(str::to_string)
}

/// `METHOD /api/v1/inference/services/{id}{tail}`, which must answer 200.
fn act(addr: &str, method: &str, id: &str, tail: &str) {
    let (code, body) = http(
        addr,
        method,
        &format!("/api/v1/inference/services/{id}{tail}"),
        "",
    );
    assert_eq!(code, 200, "{method} {id}{tail}: {body}");
}

fn until_annotation(fake: &FakeKube, id: &str, want: &str) {
    until(
        &format!("{id}'s stop annotation to be {want}"),
        || annotation(fake, id),
        |a| a.as_deref() == Some(want),
    );
}

fn ready(ready: bool) -> Value {
    json!({"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]})
}

#[test]
fn a_service_is_an_inference_service_that_follows_kserve() {
    let fake = FakeKube::start();
    let data = temp_dir("kube");
    let server = serve(&fake, &data, 10_000);
    let addr = server.addr.clone();

    let id = create(&addr, "flowers");
    let isvc = until("the InferenceService", || fake.object(&id), Option::is_some).unwrap();
    assert_eq!(isvc["metadata"]["namespace"], "ml", "{isvc}");
    assert_eq!(
        isvc["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "inferd"
    );
    assert_eq!(
        isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"],
        "RawDeployment"
    );
    let predictor = &isvc["spec"]["predictor"];
    assert_eq!(
        (&predictor["minReplicas"], &predictor["maxReplicas"]),
        (&json!(2), &json!(2))
    );
    let model = &predictor["model"];
    assert_eq!(model["runtime"], "inferd");
    assert_eq!(model["modelFormat"]["name"], "onnx");
    assert_eq!(model["storageUri"], "pvc://models/iris/1");
    // A GPU this machine lacks is the cluster's to give: passed on, not refused.
    assert_eq!(
        model["resources"]["limits"],
        json!({"cpu": "4", "memory": "17179869184", "nvidia.com/gpu": "1"})
    );

    // Not ready yet: still creating, however often the status is read.
    fake.set_status(&id, ready(false));
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(service(&addr, &id)["status"], "creating");
    fake.set_status(&id, ready(true));
    wait_status(&addr, &id, "running");
    let (code, body) = http(
        &addr,
        "POST",
        &format!("/api/v1/inference/services/{id}/predict"),
        r#"{"inputs": {"X": [[5.1, 3.5, 1.4, 0.2]]}}"#,
    );
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("InferenceService") && body.contains("ml"),
        "{body}"
    );

    // Stop: the annotation, then KServe's Stopped condition.
    act(&addr, "POST", &id, "/stop");
    until_annotation(&fake, &id, "true");
    assert_eq!(service(&addr, &id)["status"], "stopping");
    fake.set_status(
        &id,
        json!({"conditions": [{"type": "Stopped", "status": "True"},
        {"type": "Ready", "status": "False"}]}),
    );
    wait_status(&addr, &id, "stopped");

    // Start: the resource exists (409 on create), so it is patched back to running.
    act(&addr, "POST", &id, "/start");
    until_annotation(&fake, &id, "false");
    fake.set_status(&id, ready(true));
    wait_status(&addr, &id, "running");

    // KServe cannot load it: failed, with KServe's reason.
    std::thread::sleep(Duration::from_millis(1100));
    let failure = json!({"conditions": [{"type": "Ready", "status": "False"}],
        "modelStatus": {"transitionStatus": "BlockedByFailedLoad",
            "lastFailureInfo": {"reason": "ModelLoadFailed", "message": "no model.onnx under /mnt/models",
                "time": inferd_store::time::rfc3339(inferd_store::now())}}});
    fake.set_status(&id, failure);
    let failed = wait_status(&addr, &id, "failed");
    assert!(
        failed
            .to_string()
            .contains("no model.onnx under /mnt/models"),
        "{failed}"
    );

    // A start rolls the pods (a new deployed-at) and the old failure is not
    // taken for the new attempt's.
    let rolled = |isvc: Option<Value>| isvc.unwrap()["spec"]["predictor"]["annotations"].clone();
    let before = rolled(fake.object(&id));
    std::thread::sleep(Duration::from_millis(1100));
    act(&addr, "POST", &id, "/start");
    until(
        "a new deployed-at",
        || rolled(fake.object(&id)),
        |a| *a != before,
    );
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(service(&addr, &id)["status"], "creating");
    fake.set_status(&id, ready(true));
    wait_status(&addr, &id, "running");

    act(&addr, "DELETE", &id, "");
    assert!(
        fake.object(&id).is_none(),
        "deleted service's InferenceService remains"
    );
}

#[test]
fn the_api_s_refusals_and_silences_become_reasons() {
    let fake = FakeKube::start();
    let data = temp_dir("kube-errors");
    // Readings a second apart, so a transient reason can be seen before the retry.
    let server = serve_syncing(&fake, &data, 500, 1000);
    let addr = server.addr.clone();

    // Refused: failed for good, with the cluster's answer; a stop still works.
    fake.fail_next(Method::POST, Fault::Status(403));
    let denied = create(&addr, "denied");
    let failed = wait_status(&addr, &denied, "failed");
    assert!(failed.to_string().contains("403"), "{failed}");
    act(&addr, "POST", &denied, "/stop");
    wait_status(&addr, &denied, "stopped");

    // The API server's own failure, and no answer at all: still creating,
    // with the reason, and asked again until the cluster takes it.
    for (fault, said) in [
        (Fault::Status(500), "500"),
        (Fault::Silence, "within 500 ms"),
    ] {
        fake.fail_next(Method::POST, fault);
        let id = create(&addr, &format!("retried-{said}").replace(' ', "-"));
        let seen = until(
            &format!("{id} creating with the reason '{said}'"),
            || service(&addr, &id),
            |s| s["reason"].as_str().is_some_and(|r| r.contains(said)),
        );
        assert_eq!(seen["status"], "creating", "{seen}");
        until("the InferenceService", || fake.object(&id), Option::is_some);
        fake.set_status(&id, ready(true));
        wait_status(&addr, &id, "running");
    }

    // A delete the cluster refuses: the record goes, and the next reconcile
    // removes what is left on the cluster.
    let gone = create(&addr, "gone");
    until(
        "the InferenceService",
        || fake.object(&gone),
        Option::is_some,
    );
    fake.fail_next(Method::DELETE, Fault::Status(500));
    act(&addr, "DELETE", &gone, "");
    until("the orphan removed", || fake.object(&gone), Option::is_none);

    // A reading the cluster refuses changes nothing, and the next one follows.
    let watched = create(&addr, "watched");
    until(
        "the InferenceService",
        || fake.object(&watched),
        Option::is_some,
    );
    fake.fail_next(Method::GET, Fault::Status(403));
    fake.set_status(&watched, ready(true));
    wait_status(&addr, &watched, "running");
}

#[test]
fn a_restart_brings_the_cluster_back_in_line_with_the_store() {
    let fake = FakeKube::start();
    let data = temp_dir("kube-restart");
    let mut server = serve(&fake, &data, 10_000);
    let addr = server.addr.clone();
    let lost = create(&addr, "lost");
    let paused = create(&addr, "paused");
    for id in [&lost, &paused] {
        until("the InferenceService", || fake.object(id), Option::is_some);
        fake.set_status(id, ready(true));
        wait_status(&addr, id, "running");
    }
    act(&addr, "POST", &paused, "/stop");
    until_annotation(&fake, &paused, "true");
    fake.set_status(
        &paused,
        json!({"conditions": [{"type": "Stopped", "status": "True"}]}),
    );
    wait_status(&addr, &paused, "stopped");
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    // While inferd is down: one InferenceService is lost, the stopped one is
    // started by hand, one appears that no service of this inferd's owns, and
    // one of another inferd's (another store) in the same namespace.
    let labels = fake.object(&lost).unwrap()["metadata"]["labels"].clone();
    assert!(labels["inferd.io/instance"].is_string(), "{labels}");
    fake.remove(&lost);
    fake.edit(
        &paused,
        json!({"metadata": {"annotations": {STOP: "false"}}}),
    );
    fake.insert(
        json!({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": "svc-000000000000", "namespace": "ml", "labels": labels}}),
    );
    fake.insert(
        json!({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": "svc-111111111111", "namespace": "ml",
            "labels": {"app.kubernetes.io/managed-by": "inferd", "inferd.io/instance": "another"}}}),
    );
    fake.insert(
        json!({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": "someone-else", "namespace": "ml"}}),
    );

    let server = serve(&fake, &data, 10_000);
    let addr = server.addr.clone();
    // Running in the store: made again, and creating until KServe says ready.
    let back = until(
        "the lost InferenceService made again",
        || fake.object(&lost),
        Option::is_some,
    )
    .unwrap();
    assert_eq!(
        back["spec"]["predictor"]["model"]["storageUri"],
        "pvc://models/iris/1"
    );
    assert_eq!(service(&addr, &lost)["status"], "creating");
    // Stopped in the store: stopped again.
    until_annotation(&fake, &paused, "true");
    assert_eq!(service(&addr, &paused)["status"], "stopped");
    // Ours without a record: removed; someone else's: left alone.
    until(
        "the orphan removed",
        || fake.object("svc-000000000000"),
        Option::is_none,
    );
    assert!(fake.object("someone-else").is_some());
    assert!(fake.object("svc-111111111111").is_some());
}

#[test]
fn kubernetes_needs_to_know_where_kserve_finds_models() {
    let data = temp_dir("kube-flags");
    let serve = |extra: &[&str]| {
        let mut args = vec!["serve", "--port", "0", "--grpc-port", "0", "--data-dir"];
        args.push(data.to_str().unwrap());
        args.extend(["--orchestrator", "kubernetes"]);
        args.extend(extra);
        inferd(&args)
    };
    let (ok, _, err) = serve(&[]);
    assert!(!ok);
    assert!(err.contains("--kube-storage-uri-prefix"), "{err}");
    let missing = data.join("no-such-kubeconfig");
    let (ok, _, err) = serve(&[
        "--kube-storage-uri-prefix",
        "pvc://models",
        "--kubeconfig",
        missing.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("kubeconfig"), "{err}");
}
