//! ZStack sessions: log in with an account (made by `inferd accounts create`),
//! use `Authorization: OAuth <session uuid>`, check or end the session. The
//! password may be plain or the SHA-512 hex ZStack's SDKs send. Wrong
//! credentials answer 401 with `ID.1000` (ZStack itself uses 503 for every
//! failed API call; a 401 says what happened to any HTTP client).

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use inferd_store::time;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use super::{with_store, ZsError};
use crate::routes::{Access, Face, Routes};
use crate::{body, AppState};

pub fn routes() -> Routes {
    Routes::new(Face::ZStack)
        .put("/zstack/v1/accounts/login", Access::Open, login)
        .delete("/zstack/v1/accounts/sessions/{uuid}", Access::Read, logout)
        .get(
            "/zstack/v1/accounts/sessions/{uuid}/valid",
            Access::Open,
            valid,
        )
}

/// Each password check is an argon2 hash (about 19 MiB and tens of
/// milliseconds): at most this many run at once, so a flood of logins, which
/// need no credential, cannot take the memory or the blocking threads every
/// other store call needs. The others wait their turn, for up to `LOGIN_WAIT`.
const CONCURRENT_LOGINS: usize = 2;
const LOGIN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
static LOGINS: Semaphore = Semaphore::const_new(CONCURRENT_LOGINS);

async fn login(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    let result = async {
        let bytes = body::bytes(body, state.max_body_bytes).map_err(|e| ZsError {
            status: e.status,
            ..ZsError::invalid_argument(e.message)
        })?;
        let v: Value =
            body::json(&bytes).map_err(|e| ZsError::invalid_argument(e.message))?;
        // `logIn` is the key in ZStack's older REST manual.
        let msg = v
            .get("logInByAccount")
            .or_else(|| v.get("logIn"))
            .and_then(Value::as_object)
            .ok_or_else(|| {
                ZsError::invalid_argument(
                    "the body must be {\"logInByAccount\": {\"accountName\": ..., \"password\": ...}}",
                )
            })?;
        let field = |k: &str| {
            msg.get(k).and_then(Value::as_str).map(str::to_string).ok_or_else(|| {
                ZsError::invalid_argument(format!("logInByAccount.{k} is required (a string)"))
            })
        };
        let (name, password) = (field("accountName")?, field("password")?);
        let ttl = state.session_ttl.as_secs_f64();
        let _turn = tokio::time::timeout(LOGIN_WAIT, LOGINS.acquire())
            .await
            .map_err(|_| ZsError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "SYS.1010",
                description: "The resource is not ready",
                details: "too many logins at once; try again shortly".into(),
            })?
            .map_err(|e| ZsError::internal(e.to_string()))?;
        let session = with_store(&state, move |s| s.log_in(&name, &password, ttl)).await?;
        let session = session.ok_or(ZsError {
            status: StatusCode::UNAUTHORIZED,
            code: "ID.1000",
            description: "Authentication failed",
            details: "wrong account name or password".into(),
        })?;
        Ok::<_, ZsError>(json!({
            "inventory": {
                "uuid": session.uuid,
                "accountUuid": session.account_uuid,
                "userUuid": null,
                "expiredDate": time::zstack_date(session.expires_at),
                "createDate": time::zstack_date(session.created_at),
            },
            "success": true,
            "error": null,
        }))
    }
    .await;
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn logout(State(state): State<AppState>, Path(uuid): Path<String>) -> Response {
    match with_store(&state, move |s| s.log_out(&uuid)).await {
        Ok(_) => Json(json!({"success": true, "error": null})).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `validSession`, as ZStack's `APIValidateSessionReply` names it.
async fn valid(State(state): State<AppState>, Path(uuid): Path<String>) -> Response {
    match with_store(&state, move |s| s.session(&uuid)).await {
        Ok(s) => Json(json!({"validSession": s.is_some(), "success": true, "error": null}))
            .into_response(),
        Err(e) => e.into_response(),
    }
}
