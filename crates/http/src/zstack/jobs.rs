//! ZStack's async pattern for changes (PROTOCOLS.md 1.5): a create, update,
//! delete or deploy answers 202 with `{"location": ".../zstack/v1/api-jobs/<uuid>"}`;
//! `GET` on it gives the change's own answer (200, or 503 with the error), 404
//! once expired. `X-Job-UUID` picks the id; `X-Web-Hook` has the result POSTed
//! to a URL with `X-Job-UUID` and `X-Job-Success`, retried 15 times 2 s apart.
//!
//! Changes here are quick, so each job has ended before its 202 is sent, and a
//! change refused for its arguments answers its 4xx at once, as ZStack's own
//! parameter checks do. Webhooks go only to hosts `--zstack-webhook-hosts`
//! allows (ZStack's pattern would otherwise let any caller make the server
//! request any URL), and only admins, who alone make changes, may poll.

use std::time::Duration;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use inferd_services::Finished;
use serde_json::{json, Value};

use super::ZsError;
use crate::routes::{Access, Face, Routes};
use crate::AppState;

const JOBS: &str = "/zstack/v1/api-jobs";
const WEBHOOK_TRIES: u32 = 15;
const WEBHOOK_PAUSE: Duration = Duration::from_secs(2);

pub fn routes() -> Routes {
    Routes::new(Face::ZStack).get("/zstack/v1/api-jobs/{uuid}", Access::Admin, poll)
}

/// A change's job, an extractor checked before the change is made: bad
/// `X-Job-UUID` or `X-Web-Hook` headers refuse the request with nothing
/// changed.
pub struct Job {
    id: String,
    hook: Option<reqwest::Url>,
    /// The Host the client used, for the location it is told to poll.
    host: String,
}

impl FromRequestParts<AppState> for Job {
    type Rejection = ZsError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Job, ZsError> {
        let headers = &parts.headers;
        let text = |name: &str| -> Result<Option<&str>, ZsError> {
            headers
                .get(name)
                .map(|v| {
                    v.to_str().map_err(|_| {
                        ZsError::invalid_argument(format!("the {name} header is not text"))
                    })
                })
                .transpose()
        };
        let id = match text("X-Job-UUID")? {
            Some(id) if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) => {
                id.to_ascii_lowercase()
            }
            Some(id) => {
                return Err(ZsError::invalid_argument(format!(
                    "X-Job-UUID must be 32 hex digits without dashes, not '{id}'"
                )))
            }
            None => uuid::Uuid::new_v4().simple().to_string(),
        };
        let hook = text("X-Web-Hook")?
            .map(|url| webhook(state, url))
            .transpose()?;
        let host = text(header::HOST.as_str())
            .ok()
            .flatten()
            .unwrap_or("localhost")
            .to_string();
        Ok(Job { id, hook, host })
    }
}

impl Job {
    /// Keeps the change's answer for polling, sends it to the webhook, and
    /// answers 202 with where to poll.
    pub fn accepted(self, state: &AppState, result: Result<Value, ZsError>) -> Response {
        let finished = match result {
            Ok(mut v) => {
                v["success"] = Value::Bool(true);
                v["error"] = Value::Null;
                Finished {
                    success: true,
                    body: v.to_string(),
                }
            }
            // Refused for its arguments or state: the answer comes at once.
            Err(e) if e.status.is_client_error() => return e.into_response(),
            Err(e) => Finished {
                success: false,
                body: e.body().to_string(),
            },
        };
        if state.api_results.keep(&self.id, finished.clone()).is_err() {
            return ZsError::invalid_argument(format!(
                "X-Job-UUID {} names a job that exists already",
                self.id
            ))
            .into_response();
        }
        if let Some(hook) = self.hook {
            tokio::spawn(deliver(hook, self.id.clone(), finished));
        }
        let location = format!("http://{}{JOBS}/{}", self.host, self.id);
        (
            StatusCode::ACCEPTED,
            [(header::LOCATION, location.clone())],
            Json(json!({ "location": location })),
        )
            .into_response()
    }
}

/// The webhook URL, if its host is one `--zstack-webhook-hosts` allows.
fn webhook(state: &AppState, url: &str) -> Result<reqwest::Url, ZsError> {
    let parsed = reqwest::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| {
            ZsError::invalid_argument(format!("X-Web-Hook must be an http(s) URL, not '{url}'"))
        })?;
    let host = parsed.host_str().unwrap_or_default();
    let with_port = format!("{host}:{}", parsed.port_or_known_default().unwrap_or(80));
    let allowed = state
        .zstack_webhook_hosts
        .iter()
        .any(|a| a.eq_ignore_ascii_case(host) || a.eq_ignore_ascii_case(&with_port));
    if !allowed {
        return Err(ZsError::invalid_argument(format!(
            "X-Web-Hook host '{with_port}' is not allowed: the server's --zstack-webhook-hosts lists the hosts it calls back"
        )));
    }
    Ok(parsed)
}

/// POSTs the result with ZStack's headers until a 2xx, at most 15 times.
async fn deliver(url: reqwest::Url, id: String, finished: Finished) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build();
    let Ok(client) = client else {
        tracing::warn!(job = %id, "webhook client could not be built");
        return;
    };
    for attempt in 1..=WEBHOOK_TRIES {
        let sent = client
            .post(url.clone())
            .header("X-Job-UUID", &id)
            .header("X-Job-Success", finished.success.to_string())
            .header(header::CONTENT_TYPE, "application/json")
            .body(finished.body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => tracing::debug!(job = %id, attempt, "webhook answered {}", r.status()),
            Err(e) => tracing::debug!(job = %id, attempt, "webhook failed: {e}"),
        }
        tokio::time::sleep(WEBHOOK_PAUSE).await;
    }
    tracing::warn!(job = %id, "webhook {url} refused the result {WEBHOOK_TRIES} times; given up");
}

/// 200 with the change's answer, 503 with its error, 404 when unknown or expired.
async fn poll(State(state): State<AppState>, Path(uuid): Path<String>) -> Response {
    match state.api_results.get(&uuid.to_ascii_lowercase()) {
        Some(done) => {
            let status = if done.success {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                done.body,
            )
                .into_response()
        }
        None => {
            ZsError::not_found(format!("the job {uuid} is unknown or has expired")).into_response()
        }
    }
}
