//! End to end: the real binary on a real socket (port 0), driven by the clients
//! people use (`tritonclient`, plain HTTP from Python) and by signals.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{http, prerequisite::missing, temp_dir, workspace, Server};

#[test]
fn python_clients_pass_against_the_default_models() {
    let python = workspace().join(".venv/bin/python");
    let has_clients = Command::new(&python)
        .args(["-c", "import tritonclient.http, pytest, numpy, requests"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_clients {
        missing("the Python clients are missing; run scripts/test (it installs them into .venv)");
        return;
    }
    let server = Server::start(&workspace().join("models"), &[]);
    // kserve and tritonclient.grpc cannot share a process (both register the
    // `inference.*` protobuf messages), so KServe's client runs in a pytest of
    // its own.
    const KSERVE: &str = "tests/python/test_kserve_client.py";
    let ignore = format!("--ignore={KSERVE}");
    for args in [&["tests/python", ignore.as_str()][..], &[KSERVE][..]] {
        let out = Command::new(&python)
            // `-rs` lists every skip with its reason; under CI, conftest.py fails
            // a run that skipped anything.
            .args(["-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"])
            .args(args)
            .current_dir(workspace())
            .env("INFERD_URL", server.url())
            .env("INFERD_GRPC_URL", &server.grpc_addr)
            // The remote-backend tests start a second server that routes to this one.
            .env("INFERD_BIN", env!("CARGO_BIN_EXE_inferd"))
            .output()
            .expect("running pytest");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("{text}");
        assert!(
            out.status.success(),
            "the Python interop tests {args:?} failed:\n{text}"
        );
    }
}

#[test]
fn sigterm_finishes_in_flight_requests_then_exits_zero() {
    let root = slow_repo(700);
    let mut server = Server::start(&root, &["--drain-delay-ms", "400"]);
    let addr = server.addr.clone();
    let in_flight = std::thread::spawn(move || {
        http(
            &addr,
            "POST",
            "/v2/models/slow/infer",
            r#"{"inputs":[{"name":"INPUT0","shape":[2],"datatype":"FP32","data":[1,2]}]}"#,
        )
    });
    std::thread::sleep(Duration::from_millis(200));
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    // Within the drain delay: not ready, yet still alive and serving.
    let (ready, _) = http(&server.addr, "GET", "/v2/health/ready", "");
    assert_eq!(ready, 503, "readiness after SIGTERM");
    let (live, _) = http(&server.addr, "GET", "/v2/health/live", "");
    assert_eq!(live, 200, "liveness after SIGTERM");
    let (status, body) = in_flight.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"data\":[1.0,2.0]"), "{body}");
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "inferd exited with {exit}");
}

/// A repository with one builtin model that sleeps `delay_ms` per request.
fn slow_repo(delay_ms: u64) -> PathBuf {
    let root = temp_dir("slow");
    std::fs::create_dir_all(root.join("slow")).unwrap();
    std::fs::write(
        root.join("slow/model.toml"),
        format!(
            "backend = 'builtin'\nkind = 'identity'\n[parameters]\ndelay_ms = {delay_ms}\n\
             [[input]]\nname = 'INPUT0'\ndatatype = 'FP32'\n[[output]]\nname = 'OUTPUT0'\ndatatype = 'FP32'\n"
        ),
    )
    .unwrap();
    root
}

fn json_field(body: &str, key: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v[key].as_str().unwrap_or_default().to_string()
}

#[test]
fn accepted_async_jobs_survive_kill_9_and_all_finish_after_a_restart() {
    let models = slow_repo(20);
    let data = temp_dir("jobs");
    let mut first = Server::start_with_data(&models, &data, &["--job-workers", "2"]);
    let mut ids = Vec::new();
    for i in 0..200 {
        let body = format!(
            r#"{{"task":"tensors","model_name":"slow","data":{{"inputs":[{{"name":"INPUT0","shape":[1],"datatype":"FP32","data":[{i}]}}]}}}}"#
        );
        let (status, answer) = http(&first.addr, "POST", "/inference/async", &body);
        assert_eq!(status, 202, "{answer}");
        ids.push((i, json_field(&answer, "job_id")));
    }
    std::thread::sleep(Duration::from_millis(400));
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    let second = Server::start_with_data(&models, &data, &["--job-workers", "2"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut pending = ids.clone();
    while !pending.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} jobs never finished",
            pending.len()
        );
        std::thread::sleep(Duration::from_millis(200));
        pending.retain(|(i, id)| {
            let (status, body) = http(&second.addr, "GET", &format!("/inference/async/{id}"), "");
            assert_eq!(status, 200, "job {id} is missing after the restart: {body}");
            match json_field(&body, "status").as_str() {
                "succeeded" => {
                    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                    assert_eq!(
                        v["result"]["outputs"][0]["data"][0], *i as f64,
                        "job {i} got another job's answer"
                    );
                    false
                }
                "failed" => {
                    assert!(body.contains("message"), "a failed job says why: {body}");
                    false
                }
                _ => true,
            }
        });
    }
}

#[test]
fn help_explains_every_setting() {
    let out = Command::new(env!("CARGO_BIN_EXE_inferd"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--models",
        "--host",
        "--port",
        "--grpc-port",
        "--config",
        "--compat",
        "--max-loaded-models",
        "--max-memory-bytes",
        "--max-body-bytes",
        "--max-elements",
        "--default-timeout-ms",
        "--load-at-startup",
        "--data-dir",
        "--job-workers",
        "--max-pending-jobs",
        "--job-retention-s",
        "--insecure",
        "--session-ttl-s",
        "--max-service-replicas",
        "--catalog",
        "--header-read-timeout-ms",
        "--body-read-timeout-ms",
        "--keep-alive-timeout-ms",
        "--send-timeout-ms",
        "--drain-delay-ms",
        "--ws-idle-timeout-ms",
        "--zstack-webhook-hosts",
        "--model_dir",
        "--model_name",
        "--http_port",
        "--grpc_port",
        "--max-header-bytes",
        "--max-headers",
        "--max-connections",
        "--ws-max-message-bytes",
        "--ws-max-frame-bytes",
        "--max-inflight-bytes",
        "--max-batch-items",
        "INFERD_MODELS",
    ] {
        assert!(
            help.contains(flag),
            "--help does not mention {flag}:\n{help}"
        );
    }
}

#[test]
fn a_broken_config_file_stops_start_up_with_a_clear_message() {
    let file = std::env::temp_dir().join(format!("inferd-e2e-config-{}.toml", std::process::id()));
    std::fs::write(&file, "max_body_bytes = 'big'\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_inferd"))
        .args(["serve", "--port", "0", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_body_bytes"), "{err}");
    let _ = std::fs::remove_file(&file);
}

#[test]
fn serves_on_a_socket_with_the_default_models() {
    let server = Server::start(&workspace().join("models"), &["--compat", "pinferencia"]);
    let (status, body) = http(&server.addr, "GET", "/v1/models", "");
    assert_eq!(status, 200);
    assert!(
        body.starts_with('['),
        "pinferencia compat answers an array: {body}"
    );
    let (status, body) = http(
        &server.addr,
        "POST",
        "/v2/models/iris/infer",
        r#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[6.7,3.0,5.2,2.3]}]}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"data\":[2]"), "{body}");
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.write_all(b"garbage\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let (status, _) = http(&server.addr, "GET", "/v2/health/ready", "");
    assert_eq!(status, 200, "still serving after a malformed request line");
}
