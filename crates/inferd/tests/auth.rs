//! The security posture end to end: keys made by `inferd keys`, roles, every
//! face's 401/403, ZStack sessions, and the refusal to serve off loopback with
//! no credentials.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{http, inferd, prerequisite::missing, request, temp_dir, workspace, Server};
use serde_json::Value;

const IRIS: &str = r#"{"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}"#;

fn key(data: &Path, role: &str) -> String {
    let dir = data.to_str().unwrap();
    let (ok, out, err) = inferd(&[
        "keys",
        "create",
        "--role",
        role,
        "--name",
        role,
        "--data-dir",
        dir,
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("not shown again"), "{err}");
    out.trim().to_string()
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// A request without credentials, and what its face's 401 body must look like.
type Denial = (&'static str, &'static str, &'static str, fn(&Value) -> bool);

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

#[test]
fn keys_and_roles_guard_every_face_in_its_own_format() {
    let data = temp_dir("auth-keys");
    let admin = key(&data, "admin");
    let user = key(&data, "user");
    let read = key(&data, "read");
    let server = Server::start_with_data(&workspace().join("models"), &data, &[]);
    let a = &server.addr;

    // No credential: 401 in each face's envelope.
    let cases: [Denial; 9] = [
        ("POST", "/v2/models/iris/infer", IRIS, |v| {
            v["error"].is_string()
        }),
        (
            "POST",
            "/v1/models/iris:predict",
            r#"{"instances": [[1,2,3,4]]}"#,
            |v| v["error"].is_string(),
        ),
        (
            "POST",
            "/v1/models/iris/predict",
            r#"{"data": [[1,2,3,4]]}"#,
            |v| v["detail"].is_string(),
        ),
        ("POST", "/inference/infer", "{}", |v| {
            v["success"] == false && v["error"]["code"] == "UNAUTHORIZED"
        }),
        ("POST", "/v1/chat/completions", "{}", |v| {
            v["error"]["code"] == "invalid_api_key"
        }),
        ("POST", "/v1/generate", "{}", |v| {
            v["error_code"] == "UNAUTHORIZED"
        }),
        ("POST", "/generate", "{}", |v| {
            v["error_type"] == "authentication"
        }),
        ("GET", "/api/v1/inference/services", "", |v| {
            v["code"] == 40101 && v["data"].is_null()
        }),
        ("GET", "/zstack/v1/ai/model-services", "", |v| {
            v["success"] == false && v["error"]["code"] == "ID.1001"
        }),
    ];
    for (method, path, body, shape) in cases {
        let (status, answer) = http(a, method, path, body);
        assert_eq!(status, 401, "{method} {path}: {answer}");
        assert!(shape(&json(&answer)), "{method} {path}: {answer}");
    }

    // Probes stay open.
    for path in [
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/iris/ready",
        "/v1/healthz",
        "/health",
        "/inference/health",
    ] {
        assert_eq!(http(a, "GET", path, "").0, 200, "{path}");
    }

    // A wrong key and a malformed header are refused; both header forms work.
    let wrong = bearer(&format!("{admin}x"));
    let (status, body) = request(
        a,
        "GET",
        "/v2/models/iris",
        &[("Authorization", &wrong)],
        "",
    );
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("not valid"), "{body}");
    assert!(!body.contains(&admin), "a key must never be echoed: {body}");
    assert_eq!(
        request(
            a,
            "GET",
            "/v2/models/iris",
            &[("Authorization", "Basic abc")],
            ""
        )
        .0,
        401
    );
    assert_eq!(
        request(a, "GET", "/v2/models/iris", &[("X-API-Key", &read)], "").0,
        200
    );
    assert_eq!(
        request(
            a,
            "GET",
            "/v2/models/iris",
            &[("Authorization", &bearer(&read))],
            ""
        )
        .0,
        200
    );

    // read lists but may not infer; user infers but may not manage.
    let (status, body) = request(
        a,
        "POST",
        "/v2/models/iris/infer",
        &[("X-API-Key", &read)],
        IRIS,
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("'user'"), "{body}");
    let (status, body) = request(
        a,
        "POST",
        "/v2/models/iris/infer",
        &[("X-API-Key", &user)],
        IRIS,
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = request(
        a,
        "POST",
        "/v2/repository/models/iris/unload",
        &[("X-API-Key", &user)],
        "{}",
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        json(&body)["error"].as_str().map(|s| s.contains("admin")),
        Some(true),
        "{body}"
    );
    let (status, body) = request(
        a,
        "POST",
        "/api/v1/inference/services",
        &[("X-API-Key", &user)],
        "{}",
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(json(&body)["code"], 40301, "{body}");

    // A read key where more is needed: 403 in each face's envelope.
    let forbidden: [Denial; 8] = [
        (
            "POST",
            "/v1/models/iris:predict",
            r#"{"instances": [[1,2,3,4]]}"#,
            |v| v["error"].is_string(),
        ),
        (
            "POST",
            "/v1/models/iris/predict",
            r#"{"data": [[1,2,3,4]]}"#,
            |v| v["detail"].is_string(),
        ),
        ("POST", "/inference/infer", "{}", |v| {
            v["success"] == false && v["error"]["code"] == "FORBIDDEN"
        }),
        ("POST", "/v1/chat/completions", "{}", |v| {
            v["error"]["code"] == "insufficient_permissions"
        }),
        ("POST", "/v1/generate", "{}", |v| {
            v["error_code"] == "FORBIDDEN"
        }),
        ("POST", "/generate", "{}", |v| {
            v["error_type"] == "authorization"
        }),
        ("POST", "/zstack/v1/ai/model-services", "{}", |v| {
            v["success"] == false && v["error"]["code"] == "ID.1002"
        }),
        ("POST", "/api/v1/inference/services/svc-x/stop", "", |v| {
            v["code"] == 40301
        }),
    ];
    for (method, path, body, shape) in forbidden {
        let (status, answer) = request(a, method, path, &[("X-API-Key", &read)], body);
        assert_eq!(status, 403, "{method} {path}: {answer}");
        assert!(shape(&json(&answer)), "{method} {path}: {answer}");
    }
    let (status, body) = request(
        a,
        "POST",
        "/v2/repository/models/iris/load",
        &[("X-API-Key", &admin)],
        "{}",
    );
    assert_eq!(status, 200, "{body}");

    // A key revoked while the server runs stops working within a second.
    let (ok, list, _) = inferd(&["keys", "list", "--data-dir", data.to_str().unwrap()]);
    assert!(ok);
    let user_id = list
        .lines()
        .find(|l| l.ends_with(" user"))
        .and_then(|l| l.split_whitespace().next())
        .expect("the user key is listed")
        .to_string();
    assert!(
        !list.contains(&user),
        "keys list must not show keys: {list}"
    );
    let (ok, _, err) = inferd(&[
        "keys",
        "revoke",
        &user_id,
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    std::thread::sleep(Duration::from_millis(1300));
    let (status, body) = request(
        a,
        "POST",
        "/v2/models/iris/infer",
        &[("X-API-Key", &user)],
        IRIS,
    );
    assert_eq!(status, 401, "{body}");
    let (ok, _, err) = inferd(&[
        "keys",
        "revoke",
        &user_id,
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("no active key"), "{err}");

    // Revoking every key leaves the server closed, not open to everyone.
    for line in list
        .lines()
        .filter(|l| l.starts_with("key-") && !l.starts_with(&user_id))
    {
        let id = line.split_whitespace().next().unwrap();
        let (ok, _, err) = inferd(&["keys", "revoke", id, "--data-dir", data.to_str().unwrap()]);
        assert!(ok, "{line}: {err}");
    }
    std::thread::sleep(Duration::from_millis(1300));
    let (status, body) = http(a, "GET", "/v2/models/iris", "");
    assert_eq!(status, 401, "with every key revoked: {body}");
}

#[test]
fn zstack_sessions_log_in_expire_and_log_out() {
    let data = temp_dir("auth-sessions");
    let dir = data.to_str().unwrap();
    let (ok, _, err) = inferd(&[
        "accounts",
        "create",
        "ops",
        "--role",
        "read",
        "--password",
        "s3cret pass",
        "--data-dir",
        dir,
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = inferd(&[
        "accounts",
        "create",
        "ops",
        "--password",
        "x",
        "--data-dir",
        dir,
    ]);
    assert!(!ok && err.contains("already exists"), "{err}");
    let server = Server::start_with_data(
        &workspace().join("models"),
        &data,
        &["--session-ttl-s", "2"],
    );
    let a = &server.addr;
    let login = |password: &str| {
        http(
            a,
            "PUT",
            "/zstack/v1/accounts/login",
            &format!(r#"{{"logInByAccount": {{"accountName": "ops", "password": "{password}"}}}}"#),
        )
    };

    let (status, body) = login("wrong");
    assert_eq!(status, 401, "{body}");
    assert_eq!(json(&body)["error"]["code"], "ID.1000", "{body}");
    let (status, body) = login("s3cret pass");
    assert_eq!(status, 200, "{body}");
    let inv = &json(&body)["inventory"];
    let uuid = inv["uuid"].as_str().unwrap().to_string();
    assert_eq!(uuid.len(), 32);
    assert!(
        inv["expiredDate"].as_str().unwrap().ends_with('M'),
        "{body}"
    );
    let oauth = format!("OAuth {uuid}");
    let headers = [("Authorization", oauth.as_str())];

    assert_eq!(request(a, "GET", "/v2/models/iris", &headers, "").0, 200);
    let (status, body) = request(a, "POST", "/v2/models/iris/infer", &headers, IRIS);
    assert_eq!(status, 403, "a read account may not infer: {body}");
    let valid = |u: &str| {
        json(
            &http(
                a,
                "GET",
                &format!("/zstack/v1/accounts/sessions/{u}/valid"),
                "",
            )
            .1,
        )["validSession"]
            .clone()
    };
    assert_eq!(valid(&uuid), true);

    let (status, body) = request(
        a,
        "DELETE",
        &format!("/zstack/v1/accounts/sessions/{uuid}"),
        &headers,
        "",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(valid(&uuid), false);
    let (status, body) = request(a, "GET", "/v2/models/iris", &headers, "");
    assert_eq!(status, 401, "a logged-out session: {body}");

    let (_, body) = login("s3cret pass");
    let second = json(&body)["inventory"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let oauth = format!("OAuth {second}");
    assert_eq!(
        request(
            a,
            "GET",
            "/v2/models/iris",
            &[("Authorization", &oauth)],
            ""
        )
        .0,
        200
    );
    std::thread::sleep(Duration::from_millis(2300));
    let (status, body) = request(
        a,
        "GET",
        "/v2/models/iris",
        &[("Authorization", &oauth)],
        "",
    );
    assert_eq!(status, 401, "an expired session: {body}");
    assert!(body.contains("expired"), "{body}");
    assert_eq!(valid(&second), false);
}

#[test]
fn loopback_with_no_credentials_is_open() {
    let server = Server::start(&workspace().join("models"), &[]);
    let (status, body) = http(&server.addr, "POST", "/v2/models/iris/infer", IRIS);
    assert_eq!(status, 200, "{body}");
    // Whatever a client sends along is not checked while the server is open.
    let sent = [("Authorization", "Basic dXNlcjpwYXNz")];
    let (status, body) = request(&server.addr, "POST", "/v2/models/iris/infer", &sent, IRIS);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn off_loopback_without_keys_refuses_to_start_unless_insecure() {
    let data = temp_dir("auth-open");
    let models = workspace().join("models");
    let (m, d) = (models.to_str().unwrap(), data.to_str().unwrap());
    let (ok, _, err) = inferd(&[
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        "0",
        "--models",
        m,
        "--data-dir",
        d,
    ]);
    assert!(!ok, "it must not start");
    assert!(
        err.contains("inferd keys create") && err.contains("--insecure"),
        "{err}"
    );

    let insecure = Server::start_with_data(&models, &data, &["--host", "0.0.0.0", "--insecure"]);
    let port = insecure.addr.rsplit(':').next().unwrap().to_string();
    let local = format!("127.0.0.1:{port}");
    assert_eq!(http(&local, "POST", "/v2/models/iris/infer", IRIS).0, 200);
    drop(insecure);

    // Once a key exists the same address starts, and wants the key.
    let admin = key(&data, "admin");
    let keyed = Server::start_with_data(&models, &data, &["--host", "0.0.0.0"]);
    let port = keyed.addr.rsplit(':').next().unwrap().to_string();
    let local = format!("127.0.0.1:{port}");
    assert_eq!(http(&local, "POST", "/v2/models/iris/infer", IRIS).0, 401);
    assert_eq!(
        request(
            &local,
            "POST",
            "/v2/models/iris/infer",
            &[("X-API-Key", &admin)],
            IRIS
        )
        .0,
        200
    );
}

/// The stock clients carry keys as their users would: `openai` with
/// `api_key=`, `tritonclient` (HTTP and gRPC) with a header; a wrong key
/// raises the client's own authentication error.
#[test]
fn stock_clients_send_keys() {
    let python = workspace().join(".venv/bin/python");
    let script = r#"
import sys, openai, tritonclient.http as th, numpy as np
from tritonclient.utils import InferenceServerException
url, key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=f"http://{url}/v1", api_key=key)
assert any(m.id == "iris" for m in client.models.list().data)
bad = openai.OpenAI(base_url=f"http://{url}/v1", api_key="nope", max_retries=0)
try:
    bad.models.list()
    raise SystemExit("a wrong key was accepted")
except openai.AuthenticationError:
    pass
t = th.InferenceServerClient(url)
x = th.InferInput("X", [1, 4], "FP32")
x.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32))
out = t.infer("iris", [x], headers={"Authorization": f"Bearer {key}"})
assert out.as_numpy("label").tolist() == [0]
try:
    t.infer("iris", [x])
    raise SystemExit("no key was accepted")
except InferenceServerException as e:
    assert "credentials" in str(e), e
import tritonclient.grpc as tg
g = tg.InferenceServerClient(sys.argv[3])
gx = tg.InferInput("X", [1, 4], "FP32")
gx.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32))
out = g.infer("iris", [gx], headers={"authorization": f"Bearer {key}"})
assert out.as_numpy("label").tolist() == [0]
assert g.is_server_live(), "health needs no key"
try:
    g.infer("iris", [gx], headers={"x-api-key": "nope"})
    raise SystemExit("a wrong key was accepted over gRPC")
except InferenceServerException as e:
    assert e.status() == "StatusCode.UNAUTHENTICATED", e
print("ok")
"#;
    let has_clients = std::process::Command::new(&python)
        .args(["-c", "import openai, tritonclient.http, tritonclient.grpc"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_clients {
        missing("the Python clients are missing; run scripts/test (it installs them into .venv)");
        return;
    }
    let data = temp_dir("auth-clients");
    let user = key(&data, "user");
    let server = Server::start_with_data(&workspace().join("models"), &data, &[]);
    let out = std::process::Command::new(&python)
        .args(["-c", script, &server.addr, &user, &server.grpc_addr])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.contains("ok"), "{text}");
}

#[test]
fn key_commands_find_the_data_dir_in_the_config_file_as_serve_does() {
    let data = temp_dir("auth-config-data");
    let file = temp_dir("auth-config").join("inferd.toml");
    std::fs::write(&file, format!("data_dir = {:?}\n", data.to_str().unwrap())).unwrap();
    let (ok, key, err) = inferd(&[
        "keys",
        "create",
        "--role",
        "read",
        "--name",
        "from-config",
        "--config",
        file.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(key.trim().starts_with("inferd_"), "{key}");
    let (ok, list, err) = inferd(&["keys", "list", "--data-dir", data.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        list.contains("from-config"),
        "the key went elsewhere: {list}"
    );
}
