//! Credentials: API keys, ZStack accounts and their sessions.
//!
//! A key is shown once, when it is made; the store keeps only its SHA-256, so a
//! copy of the database does not hand out working keys (keys are 256 random bits,
//! so a fast hash is enough; a slow one would cost every request). Account
//! passwords are short and human, so they get argon2. ZStack's clients send the
//! SHA-512 hex of the password rather than the password, so the argon2 input is
//! always that hex: a plain password from curl is hashed to it first.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand_core::{OsRng, RngCore};
use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256, Sha512};

use crate::{now, Store, StoreError, StoreResult};

/// What a credential may do; each role can do what the ones below it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Lists and reads.
    Read,
    /// Runs inference.
    User,
    /// Manages models, services, the catalog and the cache.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "read" => Some(Role::Read),
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

fn role_of(s: String) -> StoreResult<Role> {
    Role::parse(&s).ok_or(StoreError::UnknownStatus(s))
}

/// An API key as `inferd keys list` shows it (never the key itself).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_at: f64,
    pub revoked_at: Option<f64>,
}

/// A key the server accepts: the digest it compares against, and its role.
#[derive(Debug, Clone)]
pub struct ActiveKey {
    pub id: String,
    pub digest: [u8; 32],
    pub role: Role,
}

/// A ZStack login session.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub uuid: String,
    pub account_uuid: String,
    pub role: Role,
    pub created_at: f64,
    pub expires_at: f64,
}

/// SHA-256 of a presented key, the form keys are stored and compared in.
pub fn key_digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-512 hex a ZStack client sends for `password`; a value that already
/// is one (128 hex digits) is taken as sent.
fn zstack_password(password: &str) -> String {
    if password.len() == 128 && password.bytes().all(|b| b.is_ascii_hexdigit()) {
        return password.to_ascii_lowercase();
    }
    Sha512::digest(password.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Store {
    /// Makes a key; returns its record and the key, which is not stored.
    pub fn create_key(&self, role: Role, name: &str) -> StoreResult<(KeyInfo, String)> {
        let key = format!("inferd_{}", random_hex(32));
        let info = KeyInfo {
            id: format!("key-{}", &random_hex(6)),
            name: name.to_string(),
            role,
            created_at: now(),
            revoked_at: None,
        };
        self.lock().execute(
            "INSERT INTO api_keys (id, name, role, hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                info.id,
                info.name,
                role.as_str(),
                &key_digest(&key)[..],
                info.created_at
            ],
        )?;
        Ok((info, key))
    }

    pub fn list_keys(&self) -> StoreResult<Vec<KeyInfo>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT id, name, role, created_at, revoked_at FROM api_keys ORDER BY created_at, id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, f64>(3)?,
                r.get::<_, Option<f64>>(4)?,
            ))
        })?;
        rows.map(|row| {
            let (id, name, role, created_at, revoked_at) = row?;
            Ok(KeyInfo {
                id,
                name,
                role: role_of(role)?,
                created_at,
                revoked_at,
            })
        })
        .collect()
    }

    /// Revokes a key by id; false when no active key has that id.
    pub fn revoke_key(&self, id: &str) -> StoreResult<bool> {
        let n = self.lock().execute(
            "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, now()],
        )?;
        Ok(n == 1)
    }

    pub fn active_keys(&self) -> StoreResult<Vec<ActiveKey>> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare("SELECT id, hash, role FROM api_keys WHERE revoked_at IS NULL")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        rows.filter_map(|row| match row {
            Ok((id, hash, role)) => {
                let digest = <[u8; 32]>::try_from(hash.as_slice()).ok()?;
                Some(role_of(role).map(|role| ActiveKey { id, digest, role }))
            }
            Err(e) => Some(Err(e.into())),
        })
        .collect()
    }

    /// Accounts plus every key ever made, revoked ones too: once this is not
    /// zero the server never runs open again, so revoking a leaked last key
    /// closes the server instead of opening it to everyone.
    pub fn credentials_made(&self) -> StoreResult<u64> {
        let n: i64 = self.lock().query_row(
            "SELECT (SELECT COUNT(*) FROM accounts) + (SELECT COUNT(*) FROM api_keys)",
            [],
            |r| r.get(0),
        )?;
        Ok(n.max(0) as u64)
    }

    /// Creates an account; `None` when the name is taken.
    pub fn create_account(
        &self,
        name: &str,
        password: &str,
        role: Role,
    ) -> StoreResult<Option<String>> {
        let salt = SaltString::generate(&mut OsRng);
        let hash = Argon2::default()
            .hash_password(zstack_password(password).as_bytes(), &salt)
            .map_err(|e| StoreError::Hash(e.to_string()))?
            .to_string();
        let uuid = uuid::Uuid::new_v4().simple().to_string();
        let n = self.lock().execute(
            "INSERT OR IGNORE INTO accounts (uuid, name, password, role, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![uuid, name, hash, role.as_str(), now()],
        )?;
        Ok((n == 1).then_some(uuid))
    }

    /// Checks a password (plain, or the SHA-512 hex ZStack clients send) and
    /// opens a session of `ttl_s` seconds; `None` for a wrong name or password.
    pub fn log_in(&self, name: &str, password: &str, ttl_s: f64) -> StoreResult<Option<Session>> {
        let found: Option<(String, String, String)> = self
            .lock()
            .query_row(
                "SELECT uuid, password, role FROM accounts WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        // An unknown name still costs one hash, so timing does not tell names apart.
        let (account_uuid, stored, role) = found.unwrap_or_default();
        let parsed = PasswordHash::new(&stored).ok();
        let given = zstack_password(password);
        let ok = match &parsed {
            Some(hash) => Argon2::default()
                .verify_password(given.as_bytes(), hash)
                .is_ok(),
            None => {
                let salt = SaltString::generate(&mut OsRng);
                let _ = Argon2::default().hash_password(given.as_bytes(), &salt);
                false
            }
        };
        if !ok {
            return Ok(None);
        }
        let created_at = now();
        let session = Session {
            uuid: uuid::Uuid::new_v4().simple().to_string(),
            account_uuid,
            role: role_of(role)?,
            created_at,
            expires_at: created_at + ttl_s,
        };
        let conn = self.lock();
        // Expired sessions go as new ones come, so the table stays the size of
        // the sessions in use.
        conn.execute("DELETE FROM sessions WHERE expires_at <= ?1", [created_at])?;
        conn.execute(
            "INSERT INTO sessions (uuid, account_uuid, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![session.uuid, session.account_uuid, session.created_at, session.expires_at],
        )?;
        Ok(Some(session))
    }

    /// A session that has not expired or been logged out.
    pub fn session(&self, uuid: &str) -> StoreResult<Option<Session>> {
        let found: Option<(String, String, f64, f64)> = self
            .lock()
            .query_row(
                "SELECT s.account_uuid, a.role, s.created_at, s.expires_at
                 FROM sessions s JOIN accounts a ON a.uuid = s.account_uuid
                 WHERE s.uuid = ?1 AND s.expires_at > ?2",
                params![uuid, now()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        found
            .map(|(account_uuid, role, created_at, expires_at)| {
                Ok(Session {
                    uuid: uuid.to_string(),
                    account_uuid,
                    role: role_of(role)?,
                    created_at,
                    expires_at,
                })
            })
            .transpose()
    }

    /// Ends a session (and drops expired ones); false when it was not open.
    pub fn log_out(&self, uuid: &str) -> StoreResult<bool> {
        let conn = self.lock();
        conn.execute("DELETE FROM sessions WHERE expires_at <= ?1", [now()])?;
        Ok(conn.execute("DELETE FROM sessions WHERE uuid = ?1", [uuid])? == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::temp_store;

    #[test]
    fn keys_are_stored_as_digests_and_revocable() {
        let (store, dir) = temp_store("keys");
        let (info, key) = store.create_key(Role::User, "ci").unwrap();
        assert!(key.starts_with("inferd_") && key.len() == 7 + 64);
        let active = store.active_keys().unwrap();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].digest, key_digest(&key));
        assert_eq!(active[0].role, Role::User);
        assert!(store.revoke_key(&info.id).unwrap());
        assert!(!store.revoke_key(&info.id).unwrap());
        assert!(store.active_keys().unwrap().is_empty());
        assert!(store.list_keys().unwrap()[0].revoked_at.is_some());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn accounts_log_in_with_plain_or_sha512_passwords() {
        let (store, dir) = temp_store("accounts");
        assert!(store
            .create_account("admin", "s3cret", Role::Admin)
            .unwrap()
            .is_some());
        assert!(store
            .create_account("admin", "other", Role::Read)
            .unwrap()
            .is_none());
        assert!(store.log_in("admin", "wrong", 60.0).unwrap().is_none());
        assert!(store.log_in("nobody", "s3cret", 60.0).unwrap().is_none());
        let s = store.log_in("admin", "s3cret", 60.0).unwrap().unwrap();
        assert_eq!(s.role, Role::Admin);
        let hex = zstack_password("s3cret");
        assert!(store
            .log_in("admin", &hex.to_uppercase(), 60.0)
            .unwrap()
            .is_some());
        assert_eq!(store.session(&s.uuid).unwrap().unwrap().uuid, s.uuid);
        assert!(store.log_out(&s.uuid).unwrap());
        assert!(store.session(&s.uuid).unwrap().is_none());
        let expired = store.log_in("admin", "s3cret", -1.0).unwrap().unwrap();
        assert!(store.session(&expired.uuid).unwrap().is_none());
        let _ = std::fs::remove_dir_all(dir);
    }
}
