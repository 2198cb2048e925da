//! The declarations against the real router, through `oneshot` with a key of
//! each role: every route it serves is declared, each is guarded as declared,
//! and each refusal comes in its owner's envelope under either `--compat`.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use axum::routing;
use axum::Router;
use inferd_auth::{Auth, Role};
use inferd_core::{Manager, ManagerConfig};
use inferd_store::Store;
use serde_json::Value;

use crate::routes::{Face, RouteTable};
use crate::tests::{manager, models, send, temp_repo, write_model, Answer};
use crate::{all_routes, router, AppState, Compat};

/// The real router with auth on, and a key of each role.
struct Keyed {
    app: Router,
    manager: Manager,
    read: String,
    user: String,
    admin: String,
}

fn keyed(tag: &str, compat: Compat, repo: &Path) -> Keyed {
    keyed_with(tag, compat, repo, router)
}

/// As `keyed`, with the router `build` makes of the state.
fn keyed_with(
    tag: &str,
    compat: Compat,
    repo: &Path,
    build: impl FnOnce(AppState) -> Router,
) -> Keyed {
    let store = Store::open(&temp_repo(&format!("auth-store-{tag}"))).unwrap();
    let key = |role, name| store.create_key(role, name).unwrap().1;
    let (read, user, admin) = (
        key(Role::Read, "read"),
        key(Role::User, "user"),
        key(Role::Admin, "admin"),
    );
    let manager = manager(repo, ManagerConfig::default());
    let state = AppState::new(manager.clone(), compat, 1 << 20)
        .with_auth(Arc::new(Auth::new(store, false)));
    Keyed {
        app: build(state),
        manager,
        read,
        user,
        admin,
    }
}

impl Keyed {
    async fn call(&self, method: &Method, uri: &str, key: Option<&str>) -> Answer {
        let headers: Vec<_> = key.map(|k| ("x-api-key", k)).into_iter().collect();
        send(&self.app, method.as_str(), uri, &headers, Body::empty()).await
    }

    /// The least role the middleware lets through; `None` when it needs none.
    async fn needs(&self, method: &Method, uri: &str) -> Option<Role> {
        if !refused(&self.call(method, uri, None).await) {
            return None;
        }
        for (role, key) in [
            (Role::Read, &self.read),
            (Role::User, &self.user),
            (Role::Admin, &self.admin),
        ] {
            if !refused(&self.call(method, uri, Some(key)).await) {
                return Some(role);
            }
        }
        panic!("{method} {uri} is refused even to an admin key");
    }
}

/// Whether the auth middleware refused: a handler's own 401 (a wrong ZStack
/// password) carries no challenge, and no handler says what a role may not do.
fn refused(a: &Answer) -> bool {
    (a.status == StatusCode::UNAUTHORIZED && a.headers.contains_key("www-authenticate"))
        || (a.status == StatusCode::FORBIDDEN
            && String::from_utf8_lossy(&a.body).contains("credential may not"))
}

/// A request path for a route: each `{param}` becomes `x`.
fn concrete(route: &str) -> String {
    route
        .split('/')
        .map(|s| if s.starts_with('{') { "x" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

/// The routes the router holds, read from its `Debug` form: axum has no other
/// way to list them, and this one sees routes added around `Routes` too.
fn served_routes(app: &Router) -> BTreeSet<String> {
    let text = format!("{app:?}");
    let start = text
        .find("paths: {")
        .expect("axum's Debug output no longer lists the router's paths");
    let mut rest = &text[start + "paths: {".len()..];
    let mut paths = BTreeSet::new();
    while let (Some(quote), Some(close)) = (rest.find('"'), rest.find('}')) {
        if close < quote {
            break;
        }
        let after = &rest[quote + 1..];
        let end = after.find('"').expect("a closing quote");
        paths.insert(after[..end].to_string());
        rest = &after[end + 1..];
    }
    paths
}

/// What `face` answers to a refusal with `status`.
fn in_envelope(face: Face, status: StatusCode, v: &Value) -> bool {
    let unauthorized = status == StatusCode::UNAUTHORIZED;
    let pick = |a, b| if unauthorized { a } else { b };
    match face {
        Face::KserveV1 | Face::V2 | Face::Ops => {
            v["error"].is_string() && v.as_object().is_some_and(|o| o.len() == 1)
        }
        Face::Pinferencia => v["detail"].is_string(),
        Face::Unified => {
            v["success"] == false && v["error"]["code"] == pick("UNAUTHORIZED", "FORBIDDEN")
        }
        Face::OpenAi => v["error"]["code"] == pick("invalid_api_key", "insufficient_permissions"),
        Face::Gateway => v["error_code"] == pick("UNAUTHORIZED", "FORBIDDEN"),
        Face::Tgi => v["error_type"] == pick("authentication", "authorization"),
        Face::Services => {
            v["code"] == if unauthorized { 40101 } else { 40301 } && v["data"].is_null()
        }
        Face::ZStack => v["success"] == false && v["error"]["code"] == pick("ID.1001", "ID.1002"),
        Face::ByCompat | Face::ByCompatV2 => unreachable!("owners are resolved"),
    }
}

/// The walk: every route the router serves, with every method it serves,
/// declares its access, and nothing is declared that is not served. A method
/// no route has is answered 405 with `Allow` listing what the route serves.
#[tokio::test]
async fn every_route_the_router_serves_declares_who_may_call_it() {
    let k = keyed("walk", Compat::Kserve, &models());
    let (_, table) = all_routes().into_parts();
    assert!(served_routes(&k.app).len() > 50, "too few routes read");
    assert_eq!(undeclared(&k, &table).await, Vec::<String>::new());
}

/// Each route and method `k`'s router serves that `table` does not declare,
/// and each declared one it does not serve.
async fn undeclared(k: &Keyed, table: &RouteTable) -> Vec<String> {
    let served = served_routes(&k.app);
    let declared: BTreeSet<String> = table.iter().map(|d| d.path.to_string()).collect();
    let mut wrong: Vec<String> = served
        .symmetric_difference(&declared)
        .map(|r| format!("{r}: served {}", served.contains(r)))
        .collect();
    let probe = Method::from_bytes(b"PROBE").unwrap();
    for route in served.intersection(&declared) {
        let a = k.call(&probe, &concrete(route), Some(&k.admin)).await;
        assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{route}");
        let allow = a.headers["allow"].to_str().unwrap();
        let serves: BTreeSet<&str> = allow.split(',').map(str::trim).collect();
        let mut declares: BTreeSet<&str> = table
            .iter()
            .filter(|d| d.path == route)
            .map(|d| d.method.as_str())
            .collect();
        if declares.contains("GET") {
            declares.insert("HEAD");
        }
        if serves != declares {
            wrong.push(format!("{route}: serves {serves:?}, declares {declares:?}"));
        }
    }
    wrong
}

/// The walk is not hollow: a route, or a method, registered around `Routes`
/// is found, and until declared it needs `admin`.
#[tokio::test]
async fn the_walk_finds_routes_registered_around_routes() {
    let (routes, table) = all_routes().into_parts();
    let build = |state: AppState| {
        let edge = crate::edge::Edge {
            state: state.clone(),
            table: std::sync::Arc::new(table),
        };
        routes
            .route("/v2/sneaky", routing::get(|| async { "in" }))
            .route("/v2/models/{model}", routing::delete(|| async { "gone" }))
            .layer(axum::middleware::from_fn_with_state(
                edge,
                crate::edge::inner,
            ))
            .with_state(state)
    };
    let k = keyed_with("around", Compat::Kserve, &models(), build);
    let (_, table) = all_routes().into_parts();
    let wrong = undeclared(&k, &table).await;
    assert_eq!(wrong.len(), 2, "{wrong:?}");
    assert!(wrong[0].starts_with("/v2/sneaky: served true"), "{wrong:?}");
    assert!(wrong[1].contains("DELETE"), "{wrong:?}");
    assert_eq!(k.needs(&Method::GET, "/v2/sneaky").await, Some(Role::Admin));
    assert_eq!(
        k.needs(&Method::DELETE, "/v2/models/iris").await,
        Some(Role::Admin)
    );
}

/// Each declared route lets through exactly the roles it declares.
#[tokio::test]
async fn every_declared_route_is_guarded_as_declared() {
    let k = keyed("guarded", Compat::Kserve, &models());
    let (_, table) = all_routes().into_parts();
    for d in table.iter() {
        let uri = concrete(d.path);
        assert_eq!(
            k.needs(&d.method, &uri).await,
            d.access.role(),
            "{} {}",
            d.method,
            d.path
        );
    }
}

/// The role table, row by row, on concrete paths: each must reach the route
/// it names and need the role it names.
#[tokio::test]
async fn each_route_needs_its_role() {
    let k = keyed("rows", Compat::Kserve, &models());
    let (get, post, put, delete, head, options, patch) = (
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
    );
    let open: Option<Role> = None;
    let cases = [
        (&get, "/v2/health/ready", open),
        (&head, "/v2/health/live", open),
        (&get, "/v2/models/iris/ready", open),
        (&get, "/v2/models/iris/versions/1/ready", open),
        (&get, "/v1/models/iris/ready", open),
        (&get, "/inference/health", open),
        (&get, "/health", open),
        (&options, "/health/full", open),
        (&get, "/metrics", open),
        (&get, "/", open),
        (&post, "/", Some(Role::User)),
        (&put, "/zstack/v1/accounts/login", open),
        (&get, "/zstack/v1/accounts/sessions/abc/valid", open),
        (&get, "/health/full", Some(Role::Read)),
        (&head, "/health/full", Some(Role::Read)),
        (&get, "/v1/models", Some(Role::Read)),
        (&get, "/v2/models/iris", Some(Role::Read)),
        (&get, "/v2/models/stats", Some(Role::Read)),
        (&post, "/v2/repository/index", Some(Role::Read)),
        (&get, "/zstack/v1/ai/model-services", Some(Role::Read)),
        (&get, "/api/v1/inference/services", Some(Role::Read)),
        (&post, "/v2/models/iris/infer", Some(Role::User)),
        (&post, "/v1/models/iris:predict", Some(Role::User)),
        (&post, "/v1/models/iris/predict", Some(Role::User)),
        (&post, "/inference/infer", Some(Role::User)),
        (&post, "/inference/async", Some(Role::User)),
        (&delete, "/inference/async/job-1", Some(Role::User)),
        (&get, "/inference/ws", Some(Role::User)),
        (&post, "/v1/chat/completions", Some(Role::User)),
        (
            &post,
            "/api/v1/inference/services/svc-1/predict",
            Some(Role::User),
        ),
        (&post, "/v2/repository/models/iris/load", Some(Role::Admin)),
        (&post, "/v1/models/iris/unload", Some(Role::Admin)),
        (&post, "/inference/models/preload", Some(Role::Admin)),
        (&put, "/inference/cache/config", Some(Role::Admin)),
        (
            &delete,
            "/inference/cache/models/onnx:iris",
            Some(Role::Admin),
        ),
        (&post, "/api/v1/inference/services", Some(Role::Admin)),
        (
            &post,
            "/api/v1/inference/services/svc-1/stop",
            Some(Role::Admin),
        ),
        (
            &post,
            "/api/v1/inference/services/svc-1/start",
            Some(Role::Admin),
        ),
        (
            &delete,
            "/api/v1/inference/services/svc-1",
            Some(Role::Admin),
        ),
        (&post, "/zstack/v1/ai/model-services", Some(Role::Admin)),
        (
            &put,
            "/zstack/v1/ai/model-services/u/actions",
            Some(Role::Admin),
        ),
        (&delete, "/zstack/v1/ai/model-services/u", Some(Role::Admin)),
        // A method a route does not declare needs admin; an admin gets the 405.
        (&patch, "/v2/models/iris", Some(Role::Admin)),
        (&delete, "/v2/models/iris/infer", Some(Role::Admin)),
    ];
    for (method, path, want) in cases {
        assert_eq!(k.needs(method, path).await, want, "{method} {path}");
    }
    let a = k
        .call(&Method::PATCH, "/v2/models/iris", Some(&k.admin))
        .await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
}

/// A path no route matches answers 404 to anyone, saying nothing more.
#[tokio::test]
async fn unknown_paths_are_404_without_credentials() {
    let k = keyed("unknown", Compat::Kserve, &models());
    for method in [Method::GET, Method::POST] {
        let a = k.call(&method, "/v2/no/such/route", None).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{method}");
        assert_eq!(
            a.json(),
            serde_json::json!({"error": "no route for /v2/no/such/route"})
        );
    }
    let a = k.call(&Method::GET, "/zstack/v1/nothing", None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

/// Every refusal of every declared route comes in the envelope of the face
/// that owns it, under either `--compat`; the rows pin who owns the paths two
/// faces claim.
#[tokio::test]
async fn refusals_come_in_the_owners_envelope_in_every_compat_mode() {
    let (_, table) = all_routes().into_parts();
    for compat in [Compat::Kserve, Compat::Pinferencia] {
        let k = keyed(&format!("envelope-{compat:?}"), compat, &models());
        for d in table.iter() {
            let Some(needed) = d.access.role() else {
                continue;
            };
            let uri = concrete(d.path);
            let owner = d.face.owner(compat);
            let a = k.call(&d.method, &uri, None).await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{} {uri}", d.method);
            assert!(a.headers.contains_key("www-authenticate"));
            assert!(
                in_envelope(owner, a.status, &a.json()),
                "{compat:?} {} {uri} as {owner:?}: {}",
                d.method,
                String::from_utf8_lossy(&a.body)
            );
            if needed > Role::Read {
                let a = k.call(&d.method, &uri, Some(&k.read)).await;
                assert_eq!(a.status, StatusCode::FORBIDDEN, "{} {uri}", d.method);
                assert!(
                    in_envelope(owner, a.status, &a.json()),
                    "{compat:?} {} {uri} as {owner:?}: {}",
                    d.method,
                    String::from_utf8_lossy(&a.body)
                );
            }
        }
    }

    let (get, post) = (Method::GET, Method::POST);
    let (kserve, pinf) = (Compat::Kserve, Compat::Pinferencia);
    let rows = [
        (kserve, &get, "/v1/models", Face::KserveV1),
        (kserve, &get, "/v1/models/iris", Face::KserveV1),
        (kserve, &post, "/v1/models/iris:predict", Face::KserveV1),
        (kserve, &post, "/v1/models/iris/predict", Face::Pinferencia),
        (kserve, &post, "/v2/models/iris/load", Face::Pinferencia),
        (kserve, &post, "/v2/models/iris/infer", Face::V2),
        (kserve, &post, "/", Face::Tgi),
        (kserve, &get, "/health/full", Face::Gateway),
        (kserve, &post, "/v1/chat/completions", Face::OpenAi),
        (kserve, &get, "/inference/stats", Face::Unified),
        (pinf, &get, "/v1/models", Face::Pinferencia),
        (pinf, &get, "/v2/models", Face::Pinferencia),
        (pinf, &get, "/v1/models/iris", Face::Pinferencia),
        (pinf, &post, "/v1/models/iris:predict", Face::KserveV1),
        (pinf, &get, "/v2/models/iris", Face::Pinferencia),
        (pinf, &post, "/v2/models/iris/infer", Face::Pinferencia),
        (pinf, &get, "/v2/models/iris/config", Face::V2),
        (pinf, &get, "/api/v1/inference/services", Face::Services),
    ];
    for (compat, method, path, owner) in rows {
        let k = keyed("owner-row", compat, &models());
        let a = k.call(method, path, None).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        let v = a.json();
        assert!(
            in_envelope(owner, a.status, &v),
            "{compat:?} {method} {path} wants {owner:?}: {v}"
        );
        if owner != Face::Pinferencia {
            assert!(v.get("detail").is_none(), "{compat:?} {method} {path}: {v}");
        }
    }
}

/// `/health/full` loads text models and probes remote servers: once keys
/// exist, a caller without one is refused before anything loads.
#[tokio::test]
async fn full_health_needs_a_key_and_loads_nothing_without_one() {
    let repo = temp_repo("auth-health");
    write_model(
        &repo,
        "talker",
        "backend = 'builtin'\nkind = 'identity'\ntask = 'text-generation'\n\
         [[input]]\nname = 'INPUT0'\ndatatype = 'FP32'\nshape = [-1, 2]\n\
         [[output]]\nname = 'OUTPUT0'\ndatatype = 'FP32'\nshape = [-1, 2]\n",
    );
    let k = keyed("health", Compat::Kserve, &repo);
    let talker = || {
        k.manager
            .index()
            .into_iter()
            .find(|e| e.name == "talker")
            .map(|e| (e.state, e.reason))
    };
    let before = talker();
    assert!(before.is_some(), "the text model is in the repository");

    for key in [None, Some("inferd_not_a_key")] {
        let a = k.call(&Method::GET, "/health/full", key).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{key:?}");
        assert!(in_envelope(Face::Gateway, a.status, &a.json()));
        assert_eq!(talker(), before, "a caller without a key loaded a model");
    }
    let a = k.call(&Method::GET, "/health", None).await;
    assert_eq!(a.status, StatusCode::OK, "the cheap health stays open");
    assert_eq!(talker(), before);

    let a = k.call(&Method::GET, "/health/full", Some(&k.read)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.json()["details"]["talker"].is_string(), "{}", a.json());
    assert_ne!(talker(), before, "a keyed full check loads the model");
}
