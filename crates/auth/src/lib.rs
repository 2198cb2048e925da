//! Who may call what, for every face: the credential a request carries
//! (`Authorization: Bearer <key>`, `X-API-Key: <key>`, or a ZStack session as
//! `Authorization: OAuth <uuid>`) and whether its role is enough. The HTTP
//! faces and the gRPC face share one `Auth`, so one key cache serves both and
//! neither face depends on the other. It reads `http` headers (tonic hands
//! gRPC metadata over as the same type) and answers with core errors that
//! each face renders in its own envelope.
//!
//! With no key and no account in the store, a server that may run open (on
//! loopback, or started with `--insecure`) lets everything through, as a local
//! tool; the first key or account made (even by `inferd keys create` while the
//! server runs) closes it within a second, for good: revoking every key leaves
//! it closed. Keys are compared as SHA-256 digests in constant time against
//! every active key, and never logged.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{header, HeaderMap};
use inferd_core::CoreError;
use inferd_store::{key_digest, ActiveKey, Store};

pub use inferd_store::Role;

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
        .map_err(internal)?
        .map_err(internal)?;
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
    /// a 403's message. Fails with `Unauthorized` (no, unknown or malformed
    /// credential), `Forbidden` (a role below `needed`) or an internal error
    /// when the store cannot be read.
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

    /// Whether the server serves without credentials now (none were ever made
    /// and it may run open).
    pub async fn runs_open(&self) -> Result<bool, CoreError> {
        let (_, made) = self.snapshot().await?;
        Ok(self.may_run_open && made == 0)
    }

    /// The role of the request's credential; `None` when it carries none.
    pub async fn role(&self, headers: &HeaderMap) -> Result<Option<Role>, CoreError> {
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
                    .map_err(internal)?
                    .map_err(internal)?;
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

/// A credential lookup that failed on the server's side: the cause is
/// logged, not sent to a caller who has not yet proven who they are.
fn internal(cause: impl std::fmt::Display) -> CoreError {
    tracing::error!("credential store: {cause}");
    CoreError::Internal("the credentials could not be checked; see the server log".into())
}

#[derive(Debug, PartialEq, Eq)]
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

#[cfg(test)]
mod tests {
    use inferd_core::ErrorKind;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn credentials_are_read_from_either_header() {
        let key = |k: &str| Some(Credential::Key(k.into()));
        let read = |pairs: &[(&'static str, &str)]| credential(&headers(pairs)).ok().flatten();
        assert_eq!(read(&[("authorization", "Bearer abc")]), key("abc"));
        assert_eq!(read(&[("authorization", "bearer  abc ")]), key("abc"));
        assert_eq!(read(&[("x-api-key", "abc")]), key("abc"));
        assert_eq!(
            read(&[("authorization", "OAuth 0123")]),
            Some(Credential::Session("0123".into()))
        );
        assert_eq!(read(&[]), None);
        for bad in ["Basic abc", "Bearer", "Bearer   ", "abc"] {
            let e = credential(&headers(&[("authorization", bad)])).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unauthorized, "{bad}");
            assert!(!e.to_string().contains("abc"), "echoed: {e}");
        }
    }

    #[tokio::test]
    async fn roles_are_ordered_and_open_ends_with_the_first_key() {
        let dir = std::env::temp_dir().join(format!("inferd-auth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir).unwrap();
        let auth = Auth::new(store.clone(), true);
        let none = HeaderMap::new();
        assert!(auth.authorize(&none, Role::Admin, "manage").await.is_ok());

        let (_, user) = store.create_key(Role::User, "user").unwrap();
        let auth = Auth::new(store, true);
        let e = auth.authorize(&none, Role::Read, "list").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthorized);
        let with_user = headers(&[("x-api-key", &user)]);
        assert!(auth
            .authorize(&with_user, Role::User, "infer")
            .await
            .is_ok());
        let e = auth
            .authorize(&with_user, Role::Admin, "unload")
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Forbidden);
        assert!(e.to_string().contains("'admin'"), "{e}");
        let wrong = headers(&[("x-api-key", "inferd_wrong")]);
        let e = auth
            .authorize(&wrong, Role::Read, "list")
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthorized);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
