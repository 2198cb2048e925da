//! inferd's persistent state: one SQLite file (`<data-dir>/inferd.db`) in WAL
//! mode, its schema made by numbered migrations run at open. WAL with
//! `synchronous = NORMAL` keeps every committed row across a crash of the
//! process (`kill -9`); only a power loss can take the last commits.
//!
//! The store is a cheap `Clone` handle over one connection behind a mutex; its
//! calls block for the length of one statement, so async callers run them with
//! `spawn_blocking`. Each kind of record has its own module (`jobs` now).

mod auth;
mod catalog;
mod jobs;
mod services;
pub mod time;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

pub use auth::{key_digest, ActiveKey, KeyInfo, Role, Session};
pub use catalog::{
    read_catalog_file, Query as CatalogQuery, QueryError as CatalogQueryError, QueryReply,
};
pub use jobs::{JobRecord, JobStatus};
pub use services::{Admission, Restart, ServiceFilter, ServiceRecord, ServiceStatus};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the database holds a status or role '{0}' this version does not know")]
    UnknownStatus(String),
    #[error("password hashing: {0}")]
    Hash(String),
    /// A request the store refuses, with why (a field's type, a missing name).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The schema, one step per entry; `user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        request TEXT NOT NULL,
        status TEXT NOT NULL,
        result TEXT,
        error TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL
    );
    CREATE INDEX jobs_status ON jobs (status, created_at);",
    // API keys (only a SHA-256 of each key is kept), ZStack accounts (argon2 PHC
    // strings) and their sessions, and seed 003's inference services.
    "CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        hash BLOB NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE TABLE accounts (
        uuid TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        password TEXT NOT NULL,
        role TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE sessions (
        uuid TEXT PRIMARY KEY,
        account_uuid TEXT NOT NULL REFERENCES accounts (uuid) ON DELETE CASCADE,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE TABLE services (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        description TEXT NOT NULL,
        workspace_id INTEGER,
        model TEXT NOT NULL,
        model_version INTEGER NOT NULL,
        framework TEXT NOT NULL,
        cpu REAL NOT NULL,
        memory INTEGER NOT NULL,
        gpu INTEGER NOT NULL,
        replicas INTEGER NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX services_created ON services (created_at, id);",
    catalog::SCHEMA,
    // Fields as the client sent them (a JSON object: `cpu: 4`, `model_version:
    // "v1.0"`), echoed back in place of the resolved values.
    "ALTER TABLE services ADD COLUMN sent TEXT;",
];

#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

/// Seconds since the epoch.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

impl Store {
    /// Opens (or creates) `<dir>/inferd.db` and brings its schema up to date.
    pub fn open(dir: &Path) -> StoreResult<Store> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
            path: dir.display().to_string(),
            source,
        })?;
        let conn = Connection::open(dir.join("inferd.db"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let done: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, step) in (0i64..).zip(MIGRATIONS).skip(done.max(0) as usize) {
            conn.execute_batch(step)?;
            conn.pragma_update(None, "user_version", i + 1)?;
        }
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
pub(crate) fn temp_store(tag: &str) -> (Store, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("inferd-store-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    (Store::open(&dir).unwrap(), dir)
}
