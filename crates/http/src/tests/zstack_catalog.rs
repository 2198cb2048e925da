//! Seed 001's model-service catalog through the router, over the shipped
//! recipes: ZStack's reply and error shapes, the `q` language end to end, and
//! an entry's life (create, read, update, delete).

use axum::body::Body;
use axum::http::StatusCode;
use axum::Router;
use inferd_core::ManagerConfig;
use inferd_store::Store;
use serde_json::{json, Value};

use super::{get, manager, models, post, send, temp_repo, Answer};
use crate::{router, AppState, Compat};

/// Query parameters, in order.
type Pairs<'a> = &'a [(&'a str, &'a str)];

pub(super) const API: &str = "/zstack/v1/ai/model-services";
const ONNX: &str = "00000000000000000000000000000001";
const LLAMA: &str = "00000000000000000000000000000004";

fn shipped() -> Vec<Value> {
    let path = models().join("../catalog/model-services.json");
    inferd_store::read_catalog_file(&path).unwrap()
}

/// A router over a fresh store seeded with the shipped catalog.
pub(super) fn app(tag: &str) -> Router {
    let store = Store::open(&temp_repo(tag)).unwrap();
    store.seed_catalog(&shipped()).unwrap();
    let m = manager(&models(), ManagerConfig::default());
    router(AppState::new(m, Compat::Kserve, 1 << 20).with_store(store))
}

/// Percent-encodes a query value (spaces, `%`, quotes, `+`...).
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET API?…` with each pair encoded.
async fn query(app: &Router, pairs: Pairs<'_>) -> Answer {
    let qs: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect();
    get(app, &format!("{API}?{}", qs.join("&"))).await
}

/// The successful reply's body, checked for ZStack's success fields.
fn ok(a: &Answer) -> Value {
    assert_eq!(
        a.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    let body = a.json();
    assert_eq!(
        (&body["success"], &body["error"]),
        (&json!(true), &Value::Null)
    );
    body
}

fn names(body: &Value) -> Vec<&str> {
    let mut n: Vec<&str> = body["inventories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    n.sort_unstable();
    n
}

/// A change's final answer, ZStack's way: 202 with a `location`, then the
/// job's answer there (checked like `ok`).
pub(super) async fn done(app: &Router, accepted: Answer) -> Value {
    assert_eq!(
        accepted.status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&accepted.body)
    );
    let location = accepted.json()["location"].as_str().unwrap().to_string();
    assert_eq!(accepted.headers["location"], location.as_str());
    let path = location
        .split_once("/zstack/")
        .map(|(_, rest)| format!("/zstack/{rest}"))
        .unwrap();
    ok(&get(app, &path).await)
}

/// The error's details, checked for ZStack's ErrorCode shape and `code`.
pub(super) fn refused(a: &Answer, status: StatusCode, code: &str) -> String {
    assert_eq!(a.status, status, "{}", String::from_utf8_lossy(&a.body));
    let body = a.json();
    assert_eq!(body["success"], false);
    let err = body["error"].as_object().unwrap();
    let mut keys: Vec<&str> = err.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "cause",
            "code",
            "description",
            "details",
            "elaboration",
            "opaque"
        ]
    );
    assert_eq!(err["code"], code);
    err["details"].as_str().unwrap().to_string()
}

async fn put(app: &Router, uri: &str, body: Value) -> Answer {
    let json = [("content-type", "application/json")];
    send(app, "PUT", uri, &json, body.to_string()).await
}

async fn delete(app: &Router, uri: &str) -> Answer {
    send(app, "DELETE", uri, &[], Body::empty()).await
}

#[tokio::test]
async fn zstack_list_carries_every_seed_field() {
    let app = app("zs-list");
    let body = ok(&query(&app, &[]).await);
    assert!(body.get("total").is_none(), "{body}");
    let inventories = body["inventories"].as_array().unwrap();
    assert_eq!(inventories.len(), shipped().len());
    for inv in inventories {
        assert_eq!(inv.as_object().unwrap().len(), 29, "{inv}");
        assert!(inv["createDate"].as_str().unwrap().ends_with('M'), "{inv}");
        for r in inv["modelServiceRefs"].as_array().unwrap() {
            assert_eq!(r["modelServiceUuid"], inv["uuid"]);
        }
    }
}

#[tokio::test]
async fn zstack_q_conditions_are_anded() {
    let app = app("zs-q");
    let cases: &[(Pairs, &[&str])] = &[
        (
            &[("q", "name~=Remote%")],
            &[
                "Remote Ollama server",
                "Remote OpenAI-compatible server",
                "Remote TGI server",
            ],
        ),
        (&[("q", "name=Remote TGI server")], &["Remote TGI server"]),
        (&[("q", "framework=onnx")], &["ONNX model service (tract)"]),
        (
            &[("q", "system=true"), ("q", "requestMemory>=536870912")],
            &[
                "GGUF text generation (llama.cpp)",
                "Sentence embeddings (candle BERT)",
            ],
        ),
        (
            &[("q", "modelServiceRefs.modelUuid=iris")],
            &["ONNX model service (tract)"],
        ),
        (
            &[("q", "framework?=candle,llama.cpp"), ("q", "requestCpu<2")],
            &[],
        ),
        (&[("q", "modelCenterUuid not null")], &[]),
        (&[("q", "system=false")], &[]),
        (&[("q", "name=x' OR '1'='1")], &[]),
        (&[("q", "name~=%' OR 1=1 --")], &[]),
        (&[("q", "uuid=1'; DROP TABLE model_services; --")], &[]),
        (
            &[("colour", "red"), ("q", "framework=candle")],
            &["Sentence embeddings (candle BERT)"],
        ),
    ];
    for (pairs, want) in cases {
        assert_eq!(names(&ok(&query(&app, pairs).await)), *want, "{pairs:?}");
    }
    assert_eq!(names(&ok(&query(&app, &[]).await)).len(), shipped().len());
}

#[tokio::test]
async fn zstack_count_paging_fields_and_sort() {
    let app = app("zs-shape");
    let n = shipped().len() as u64;
    let counted = ok(&query(&app, &[("count", "true"), ("q", "system=true")]).await);
    assert_eq!(counted, json!({"total": n, "success": true, "error": null}));
    let page = ok(&query(
        &app,
        &[("limit", "2"), ("start", "1"), ("replyWithCount", "true")],
    )
    .await);
    assert_eq!(
        (
            page["inventories"].as_array().unwrap().len(),
            &page["total"]
        ),
        (2, &json!(n))
    );
    let shaped = ok(&query(&app, &[("fields", "uuid,name"), ("fields", "framework")]).await);
    for inv in shaped["inventories"].as_array().unwrap() {
        let mut keys: Vec<&String> = inv.as_object().unwrap().keys().collect();
        keys.sort_unstable();
        assert_eq!(keys, ["framework", "name", "uuid"]);
    }
    for (pairs, desc) in [
        (&[("sort", "-requestMemory")][..], true),
        (&[("sort", "+requestMemory")][..], false),
        (
            &[("sortBy", "requestMemory"), ("sortDirection", "desc")][..],
            true,
        ),
    ] {
        let body = ok(&query(&app, pairs).await);
        let got: Vec<i64> = body["inventories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["requestMemory"].as_i64().unwrap())
            .collect();
        let mut want = got.clone();
        want.sort_unstable_by(|a, b| if desc { b.cmp(a) } else { a.cmp(b) });
        assert_eq!(got, want, "{pairs:?}");
    }
}

#[tokio::test]
async fn zstack_get_by_uuid_is_a_one_condition_query() {
    let app = app("zs-one");
    let body = ok(&get(&app, &format!("{API}/{LLAMA}")).await);
    assert_eq!(names(&body), ["GGUF text generation (llama.cpp)"]);
    let body = ok(&get(&app, &format!("{API}/{LLAMA}?fields=uuid&q=system=false")).await);
    assert_eq!(body["inventories"], json!([{"uuid": LLAMA}]));
    let missing = ok(&get(&app, &format!("{API}/{}", "f".repeat(32))).await);
    assert_eq!(missing["inventories"], json!([]));
    let odd = ok(&get(&app, &format!("{API}/a!=b")).await);
    assert_eq!(odd["inventories"], json!([]));
}

#[tokio::test]
async fn zstack_malformed_queries_are_400_error_codes() {
    let app = app("zs-bad-q");
    let cases: &[(Pairs, &[&str])] = &[
        (
            &[("q", "name")],
            &["'name'", "doesn't contain any query operator"],
        ),
        (
            &[("q", "colour=red")],
            &["'colour=red'", "unknown field 'colour'", "framework"],
        ),
        (
            &[("q", "requestCpu>abc")],
            &["'requestCpu>abc'", "'abc' is not an integer"],
        ),
        (&[("q", "system=yes")], &["true or false"]),
        (&[("q", "=x")], &["the field name is empty"]),
        (&[("limit", "ten")], &["'limit'", "'ten'"]),
        (&[("start", "-1")], &["'start'"]),
        (&[("fields", "uuid,colour")], &["'colour'"]),
        (&[("fields", "")], &["'fields' is empty"]),
        (&[("sort", "-colour")], &["Cannot sort by 'colour'"]),
        (
            &[("sortBy", "name"), ("sortDirection", "up")],
            &["asc or desc"],
        ),
    ];
    for (pairs, needles) in cases {
        let details = refused(
            &query(&app, pairs).await,
            StatusCode::BAD_REQUEST,
            "SYS.1007",
        );
        for needle in *needles {
            assert!(details.contains(needle), "{pairs:?}: {details}");
        }
    }
}

#[tokio::test]
async fn zstack_entries_are_created_updated_and_deleted() {
    let app = app("zs-crud");
    let params = json!({"params": {"name": "mine", "framework": "onnx", "requestCpu": 2,
        "requestMemory": 1 << 20, "modelUuids": ["iris"]}, "systemTags": [], "userTags": []});
    let inv = done(&app, post(&app, API, params).await).await["inventory"].clone();
    let uuid = inv["uuid"].as_str().unwrap().to_string();
    assert_eq!(uuid.len(), 32);
    assert_eq!(inv["modelServiceRefs"][0]["modelUuid"], "iris");
    assert_eq!(
        names(&ok(&get(&app, &format!("{API}/{uuid}")).await)),
        ["mine"]
    );

    let actions = format!("{API}/{uuid}/actions");
    let update = json!({"updateModelService": {"description": "changed", "requestCpu": 4}});
    let updated = done(&app, put(&app, &actions, update).await).await["inventory"].clone();
    assert_eq!(
        (&updated["description"], &updated["requestCpu"]),
        (&json!("changed"), &json!(4))
    );
    assert_eq!(updated["name"], "mine");
    let found = ok(&query(&app, &[("q", "requestCpu=4"), ("q", "description=changed")]).await);
    assert_eq!(names(&found), ["mine"]);

    let renamed = put(&app, &actions, json!({"renameModelService": {}})).await;
    let details = refused(&renamed, StatusCode::BAD_REQUEST, "SYS.1007");
    assert!(details.contains("updateModelService"), "{details}");
    let elsewhere = format!("{API}/{}/actions", "f".repeat(32));
    let a = put(
        &app,
        &elsewhere,
        json!({"updateModelService": {"description": "x"}}),
    )
    .await;
    refused(&a, StatusCode::NOT_FOUND, "SYS.1003");

    let a = delete(&app, &format!("{API}/{uuid}?deleteMode=Sometimes")).await;
    refused(&a, StatusCode::BAD_REQUEST, "SYS.1007");
    let gone = done(
        &app,
        delete(&app, &format!("{API}/{uuid}?deleteMode=Permissive")).await,
    )
    .await;
    assert_eq!(gone, json!({"success": true, "error": null}));
    refused(
        &delete(&app, &format!("{API}/{uuid}")).await,
        StatusCode::NOT_FOUND,
        "SYS.1003",
    );
    assert_eq!(
        ok(&get(&app, &format!("{API}/{uuid}")).await)["inventories"],
        json!([])
    );
}

#[tokio::test]
async fn zstack_bad_bodies_name_the_field() {
    let app = app("zs-bad-body");
    let cases: &[(Value, &str)] = &[
        (json!({"params": {"requestCpu": 1}}), "'name' is required"),
        (
            json!({"params": {"name": "x", "requestCpu": "4"}}),
            "'requestCpu' must be an integer",
        ),
        (
            json!({"params": {"name": "x", "requestCpu": -1}}),
            "non-negative",
        ),
        (
            json!({"params": {"name": "x", "requestMemory": -5}}),
            "'requestMemory'",
        ),
        (
            json!({"params": {"name": "x", "system": "yes"}}),
            "'system' must be true or false",
        ),
        (json!({"params": {"name": "x", "uuid": "short"}}), "32 hex"),
        (
            json!({"params": {"name": 7}}),
            "'name' must be a non-empty string",
        ),
        (
            json!({"params": {"name": "x", "colour": "red"}}),
            "'colour'",
        ),
        (json!({"param": {"name": "x"}}), "'params'"),
        (json!([1, 2]), "JSON object"),
    ];
    for (body, needle) in cases {
        let details = refused(
            &post(&app, API, body.clone()).await,
            StatusCode::BAD_REQUEST,
            "SYS.1007",
        );
        assert!(details.contains(needle), "{body}: {details}");
    }
    for raw in ["{not json", ""] {
        let a = send(
            &app,
            "POST",
            API,
            &[("content-type", "application/json")],
            raw,
        )
        .await;
        refused(&a, StatusCode::BAD_REQUEST, "SYS.1007");
    }
    let a = send(&app, "PUT", &format!("{API}/{ONNX}/actions"), &[], "text").await;
    refused(&a, StatusCode::BAD_REQUEST, "SYS.1007");
    let taken = json!({"params": {"name": "twin", "uuid": ONNX}});
    refused(
        &post(&app, API, taken).await,
        StatusCode::CONFLICT,
        "SYS.1002",
    );
    assert_eq!(names(&ok(&query(&app, &[]).await)).len(), shipped().len());
}

#[tokio::test]
async fn zstack_catalog_without_a_store_is_an_internal_error() {
    let m = manager(&models(), ManagerConfig::default());
    let app = router(AppState::new(m, Compat::Kserve, 1 << 20));
    refused(
        &get(&app, API).await,
        StatusCode::INTERNAL_SERVER_ERROR,
        "SYS.1000",
    );
}

#[tokio::test]
async fn unknown_zstack_routes_and_methods_answer_in_zstack_format() {
    let app = app("zs-404");
    let missing = get(&app, "/zstack/v1/ai/models").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let v = missing.json();
    assert_eq!(v["success"], false, "{v}");
    assert_eq!(v["error"]["code"], "SYS.1008", "{v}");
    assert!(v["error"]["details"]
        .as_str()
        .unwrap()
        .contains("/zstack/v1/ai/models"));
    let wrong = send(&app, "PUT", &format!("{API}/{ONNX}"), &[], Body::empty()).await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong.json()["error"]["code"], "SYS.1008");
}
