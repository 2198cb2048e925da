//! Who may call what. One middleware in front of every face: it reads the
//! credential (`Authorization: Bearer <key>`, `X-API-Key: <key>`, or a ZStack
//! session as `Authorization: OAuth <uuid>`), decides the role the route needs,
//! and answers 401 or 403 in the format of the face the path belongs to.
//!
//! With no key and no account in the store, a server that may run open (on
//! loopback, or started with `--insecure`) lets everything through, as a local
//! tool; the first key or account made (even by `inferd keys create` while the
//! server runs) closes it within a second, for good: revoking every key leaves
//! it closed. Keys are compared as SHA-256 digests
//! in constant time against every active key, and never logged.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use inferd_core::CoreError;
use inferd_store::{key_digest, ActiveKey, Role, Store};

use crate::{gateway, kserve_v1, openai, pinferencia, services, tgi, unified, v2, zstack};
use crate::{AppState, Compat};

/// How stale the cached key list may get: revocations and new keys made by
/// another process take effect within this.
const REFRESH: Duration = Duration::from_secs(1);

pub struct Auth {
    store: Store,
    /// Whether the server may run without credentials while none exist.
    may_run_open: bool,
    cache: Mutex<Option<Cached>>,
}

struct Cached {
    at: Instant,
    keys: Arc<Vec<ActiveKey>>,
    made: u64,
}

impl Auth {
    pub fn new(store: Store, may_run_open: bool) -> Auth {
        Auth {
            store,
            may_run_open,
            cache: Mutex::new(None),
        }
    }

    /// Active keys and how many credentials were ever made, re-read at most once per
    /// `REFRESH`.
    async fn snapshot(&self) -> Result<(Arc<Vec<ActiveKey>>, u64), CoreError> {
        if let Some(c) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            if c.at.elapsed() < REFRESH {
                return Ok((c.keys.clone(), c.made));
            }
        }
        let store = self.store.clone();
        let (keys, made) = tokio::task::spawn_blocking(move || {
            Ok::<_, inferd_store::StoreError>((store.active_keys()?, store.credentials_made()?))
        })
        .await
        .map_err(|e| internal(e.to_string()))?
        .map_err(|e| internal(e.to_string()))?;
        let keys = Arc::new(keys);
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = Some(Cached {
            at: Instant::now(),
            keys: keys.clone(),
            made,
        });
        Ok((keys, made))
    }

    /// Whether the request's credential may do what needs `needed`: the one
    /// check every face makes, HTTP and gRPC. `action` names what was asked in
    /// a 403's message.
    pub async fn authorize(
        &self,
        headers: &HeaderMap,
        needed: Role,
        action: &str,
    ) -> Result<(), CoreError> {
        match self.role(headers).await? {
            Some(role) if role >= needed => Ok(()),
            Some(role) => Err(CoreError::Forbidden(format!(
                "a '{}' credential may not {action}; it needs the '{}' role",
                role.as_str(),
                needed.as_str()
            ))),
            None => Err(CoreError::Unauthorized(
                "this server requires credentials: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>' (keys are made with `inferd keys create`)".into(),
            )),
        }
    }

    /// The role of the request's credential; `None` when it carries none.
    async fn role(&self, headers: &HeaderMap) -> Result<Option<Role>, CoreError> {
        let (keys, made) = self.snapshot().await?;
        // Open means open: whatever a client sends (the openai client always
        // sends a placeholder key) is not checked.
        if self.may_run_open && made == 0 {
            return Ok(Some(Role::Admin));
        }
        match credential(headers)? {
            None => Ok(None),
            Some(Credential::Key(key)) => {
                let digest = key_digest(&key);
                // Every key is compared, each in constant time, so timing tells
                // neither whether nor where a key matched.
                let mut found = None;
                for k in keys.iter() {
                    if constant_time_eq(&k.digest, &digest) {
                        found = Some(k.role);
                    }
                }
                found.map(Some).ok_or_else(|| {
                    CoreError::Unauthorized("the API key is not valid (unknown or revoked)".into())
                })
            }
            Some(Credential::Session(uuid)) => {
                let store = self.store.clone();
                let session = tokio::task::spawn_blocking(move || store.session(&uuid))
                    .await
                    .map_err(|e| internal(e.to_string()))?
                    .map_err(|e| internal(e.to_string()))?;
                session.map(|s| Some(s.role)).ok_or_else(|| {
                    CoreError::Unauthorized(
                        "the session is invalid, expired or logged out; log in again (PUT /zstack/v1/accounts/login)".into(),
                    )
                })
            }
        }
    }
}

/// Whether a server on `host` with no credentials may serve open.
pub fn may_run_open(host: IpAddr, insecure: bool) -> bool {
    host.is_loopback() || insecure
}

fn internal(reason: String) -> CoreError {
    CoreError::Backend {
        model: "auth".into(),
        reason,
    }
}

enum Credential {
    Key(String),
    Session(String),
}

fn credential(headers: &HeaderMap) -> Result<Option<Credential>, CoreError> {
    let text = |name| {
        headers
            .get(name)
            .map(|v| {
                v.to_str()
                    .map(str::trim)
                    .map_err(|_| CoreError::Unauthorized(format!("the {name} header is not text")))
            })
            .transpose()
    };
    if let Some(auth) = text(header::AUTHORIZATION.as_str())? {
        let (scheme, value) = auth.split_once(' ').unwrap_or((auth, ""));
        let value = value.trim();
        if value.is_empty() {
            return Err(CoreError::Unauthorized(
                "the Authorization header has no credential after its scheme".into(),
            ));
        }
        return match scheme.to_ascii_lowercase().as_str() {
            "bearer" => Ok(Some(Credential::Key(value.into()))),
            "oauth" => Ok(Some(Credential::Session(value.into()))),
            // The scheme is not echoed: a client that sent a bare key would see it.
            _ => Err(CoreError::Unauthorized(
                "the Authorization scheme is not supported; use 'Bearer <key>' or 'OAuth <session uuid>'".into(),
            )),
        };
    }
    Ok(text("x-api-key")?.map(|k| Credential::Key(k.into())))
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The role a route needs; `None` for the probes that stay open (health,
/// metrics, per-model readiness, as Triton counts it among its health APIs, login,
/// session validity) and CORS preflights.
pub fn required(method: &Method, path: &str) -> Option<Role> {
    const OPEN: [&str; 9] = [
        "",
        "/metrics",
        "/v2/health/live",
        "/v2/health/ready",
        "/v1/healthz",
        "/v2/healthz",
        "/health",
        "/health/full",
        "/inference/health",
    ];
    let path = path.trim_end_matches('/');
    let probe = OPEN.contains(&path)
        || ((path.starts_with("/v1/models/") || path.starts_with("/v2/models/"))
            && path.ends_with("/ready"));
    let read = *method == Method::GET || *method == Method::HEAD;
    if *method == Method::OPTIONS
        || (read && probe)
        || (*method == Method::PUT && path == "/zstack/v1/accounts/login")
        || (*method == Method::GET
            && path.starts_with("/zstack/v1/accounts/sessions/")
            && path.ends_with("/valid"))
    {
        return None;
    }
    let admin = |p: &str| {
        p.starts_with("/v2/repository/models/")
            || p.ends_with("/load")
            || p.ends_with("/unload")
            || p == "/inference/clear-cache"
            || p == "/inference/models/preload"
            || p.starts_with("/inference/cache/")
            || p == "/api/v1/inference/services"
            || p.ends_with("/stop")
            || p.ends_with("/start")
            || p.starts_with("/zstack/v1/ai/")
    };
    Some(match *method {
        Method::GET | Method::HEAD if path == "/inference/ws" => Role::User,
        Method::GET | Method::HEAD => Role::Read,
        Method::POST if path == "/v2/repository/index" => Role::Read,
        Method::POST if admin(path) => Role::Admin,
        Method::POST => Role::User,
        Method::DELETE if path.starts_with("/inference/async/") => Role::User,
        Method::DELETE if path.starts_with("/zstack/v1/accounts/sessions/") => Role::Read,
        _ => Role::Admin,
    })
}

/// Renders an auth failure the way the face that owns `path` renders errors.
fn face_error(compat: Compat, path: &str, e: CoreError) -> Response {
    const TGI: [&str; 5] = ["", "/generate", "/generate_stream", "/info", "/tokenize"];
    const OPENAI: [&str; 3] = ["/v1/completions", "/v1/chat/completions", "/v1/embeddings"];
    const GATEWAY: [&str; 3] = ["/v1/generate", "/health", "/health/full"];
    const PINFERENCIA_TAILS: [&str; 5] = ["/predict", "/infer", "/load", "/unload", "/ready"];
    let p = path.trim_end_matches('/');
    let pinferencia = compat == Compat::Pinferencia
        || p == "/v1/healthz"
        || p == "/v2/healthz"
        || ((p.starts_with("/v1/models/") || p.starts_with("/v2/models/"))
            && !p.contains(':')
            && PINFERENCIA_TAILS.iter().any(|t| p.ends_with(t))
            && !(p.starts_with("/v2/") && (p.ends_with("/infer") || p.ends_with("/ready"))));
    if p.starts_with("/zstack/") {
        zstack::ZsError::from(e).into_response()
    } else if p.starts_with("/api/v1/inference/services") {
        services::ServiceError::from(e).into_response()
    } else if p.starts_with("/inference") {
        unified::UnifiedError::from(e).into_response()
    } else if TGI.contains(&p) {
        tgi::TgiError::from(e).into_response()
    } else if OPENAI.contains(&p) {
        openai::OpenAiError::from(e).into_response()
    } else if GATEWAY.contains(&p) {
        gateway::GatewayError::from(e).into_response()
    } else if pinferencia {
        pinferencia::Detail::from(e).into_response()
    } else if p.starts_with("/v2") {
        v2::V2Error::from(e).into_response()
    } else {
        kserve_v1::V1Error::from(e).into_response()
    }
}

/// The middleware.
pub async fn check(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(auth) = state.auth.clone() else {
        return next.run(req).await;
    };
    let Some(needed) = required(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let action = format!("{} {}", req.method(), req.uri().path());
    let denied = match auth.authorize(req.headers(), needed, &action).await {
        Ok(()) => return next.run(req).await,
        Err(e) => e,
    };
    let mut res = face_error(state.compat, req.uri().path(), denied);
    if res.status() == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"inferd\""),
        );
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The route table, row by row: a rule written as a prefix or suffix must
    /// neither miss a route nor catch one it should not.
    #[test]
    fn each_route_needs_its_role() {
        let (get, post, put, delete, head) = (
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::HEAD,
        );
        let open: Option<Role> = None;
        let cases = [
            (&get, "/v2/health/ready", open),
            (&head, "/v2/health/live", open),
            (&get, "/v2/models/iris/ready", open),
            (&get, "/v2/models/iris/versions/1/ready", open),
            (&get, "/v1/models/iris/ready", open),
            (&get, "/inference/health", open),
            (&get, "/metrics", open),
            (&get, "/", open),
            (&post, "/", Some(Role::User)),
            (&put, "/zstack/v1/accounts/login", open),
            (&get, "/zstack/v1/accounts/sessions/abc/valid", open),
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
        ];
        for (method, path, want) in cases {
            assert_eq!(required(method, path), want, "{method} {path}");
        }
    }
}
