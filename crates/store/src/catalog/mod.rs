//! Seed 001's model-service catalog: serving recipes (what inferd can run, and
//! how), queried with ZStack's `q` language, seeded once from a file shipped in
//! the repository, and changed by admins. Inventories are JSON objects in
//! ZStack's camelCase with every field present (null where unknown).

mod fields;
mod query;

use rusqlite::types::Value as Sql;
use rusqlite::{params, params_from_iter, OptionalExtension, Transaction};
use serde_json::{Map, Value};

pub use query::{Query, QueryError};

use crate::{now, Store, StoreError, StoreResult};
use fields::{columns, project, to_json, to_sql, Kind, FIELDS};

/// The tables; a migration step of the store.
pub const SCHEMA: &str = "CREATE TABLE model_services (
        uuid TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        description TEXT, readme TEXT, yaml TEXT,
        request_cpu INTEGER, request_memory INTEGER,
        model_center_uuid TEXT, type TEXT, framework TEXT, source TEXT,
        size INTEGER, system INTEGER, has_new_version INTEGER,
        gpu_compute_capability TEXT, install_path TEXT, python_version TEXT,
        conda_version TEXT, version TEXT, start_command TEXT, container_command TEXT,
        container_args TEXT, support_distributed INTEGER, cpu_architectures TEXT,
        vendor_to_spec_uuids_map TEXT, model_service_images TEXT,
        create_date REAL NOT NULL, last_op_date REAL NOT NULL
    );
    CREATE TABLE model_service_refs (
        uuid TEXT PRIMARY KEY,
        model_uuid TEXT NOT NULL,
        model_service_uuid TEXT NOT NULL
    );
    CREATE INDEX model_service_refs_service ON model_service_refs (model_service_uuid);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);";

/// The answer to a query.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryReply {
    pub inventories: Vec<Value>,
    /// How many entries match, paging aside.
    pub total: u64,
}

fn new_uuid() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Columns to set, and the models to link when the refs are given.
type Changes = (Vec<(&'static str, Sql)>, Option<Vec<String>>);

/// The columns to set and the refs to write, from an API object. `create`
/// allows `uuid` (32 hex digits) and needs `name`. Unknown keys are refused
/// (ZStack's Gson would drop them) so that a misspelt field is not lost.
fn values(map: &Map<String, Value>, create: bool) -> Result<Changes, String> {
    let mut set = Vec::new();
    let mut refs = None;
    if map.contains_key("modelUuids") && map.contains_key("modelServiceRefs") {
        return Err("give 'modelUuids' or 'modelServiceRefs', not both".into());
    }
    for (key, value) in map {
        if key == "modelUuids" {
            refs = Some(model_refs(key, value)?);
            continue;
        }
        let field = FIELDS
            .iter()
            .find(|f| f.api == key)
            .ok_or_else(|| format!("'{key}' is not a field of a model service"))?;
        match field.kind {
            Kind::Date => return Err(format!("'{key}' is set by the server")),
            Kind::Refs => refs = Some(model_refs(key, value)?),
            _ if field.api == "uuid" => {
                let ok = create
                    && value
                        .as_str()
                        .is_some_and(|u| u.len() == 32 && u.bytes().all(|b| b.is_ascii_hexdigit()));
                if !ok {
                    return Err(if create {
                        format!("'uuid' must be 32 hex digits, not {value}")
                    } else {
                        "'uuid' cannot be changed".into()
                    });
                }
                set.push(("uuid", to_sql(field, value)?));
            }
            _ if field.api == "name" => match value.as_str().map(str::trim) {
                Some(n) if !n.is_empty() => set.push(("name", Sql::Text(n.to_string()))),
                _ => return Err(format!("'name' must be a non-empty string, not {value}")),
            },
            _ => set.push((field.column, to_sql(field, value)?)),
        }
    }
    if create && !set.iter().any(|(c, _)| *c == "name") {
        return Err("'name' is required".into());
    }
    Ok((set, refs))
}

/// The models to link, from `modelServiceRefs` (`[{"modelUuid": "iris"}]`)
/// or its shorthand `modelUuids` (`["iris"]`); either takes either form.
fn model_refs(key: &str, value: &Value) -> Result<Vec<String>, String> {
    let bad = || {
        format!("'{key}' must be a list of model names or of {{\"modelUuid\": <model>}} objects")
    };
    value
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|r| {
            r.as_str()
                .or_else(|| r.get("modelUuid").and_then(Value::as_str))
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .ok_or_else(bad)
        })
        .collect()
}

fn write_refs(tx: &Transaction<'_>, service: &str, models: &[String]) -> rusqlite::Result<()> {
    tx.execute(
        "DELETE FROM model_service_refs WHERE model_service_uuid = ?1",
        [service],
    )?;
    for m in models {
        tx.execute(
            "INSERT INTO model_service_refs (uuid, model_uuid, model_service_uuid) VALUES (?1, ?2, ?3)",
            params![new_uuid(), m, service],
        )?;
    }
    Ok(())
}

fn insert(tx: &Transaction<'_>, map: &Map<String, Value>) -> StoreResult<String> {
    let (mut set, refs) = values(map, true).map_err(StoreError::Invalid)?;
    let uuid = match set.iter().find(|(c, _)| *c == "uuid") {
        Some((_, Sql::Text(u))) => u.to_ascii_lowercase(),
        _ => {
            let u = new_uuid();
            set.push(("uuid", Sql::Text(u.clone())));
            u
        }
    };
    set.retain(|(c, _)| *c != "uuid");
    set.push(("uuid", Sql::Text(uuid.clone())));
    let at = now();
    set.push(("create_date", Sql::Real(at)));
    set.push(("last_op_date", Sql::Real(at)));
    let cols: Vec<&str> = set.iter().map(|(c, _)| *c).collect();
    let marks = vec!["?"; cols.len()].join(", ");
    let sql = format!(
        "INSERT INTO model_services ({}) VALUES ({marks})",
        cols.join(", ")
    );
    match tx.execute(&sql, params_from_iter(set.into_iter().map(|(_, v)| v))) {
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            return Err(StoreError::Conflict(format!(
                "a model service with uuid {uuid} already exists"
            )))
        }
        other => other?,
    };
    write_refs(tx, &uuid, &refs.unwrap_or_default())?;
    Ok(uuid)
}

impl Store {
    /// Runs a query: the page of inventories it selects and the total match count.
    pub fn query_catalog(&self, q: &Query) -> StoreResult<QueryReply> {
        let (filter, order, values) = q.sql();
        let conn = self.lock();
        let total: i64 = conn.query_row(
            &format!("SELECT COUNT(*) FROM model_services s{filter}"),
            params_from_iter(values.iter()),
            |r| r.get(0),
        )?;
        if q.count {
            return Ok(QueryReply {
                inventories: Vec::new(),
                total: total as u64,
            });
        }
        let cols: Vec<String> = columns().map(|f| format!("s.{}", f.column)).collect();
        let mut bound = values;
        bound.push(Sql::Integer(q.limit.min(i64::MAX as u64) as i64));
        bound.push(Sql::Integer(q.start.min(i64::MAX as u64) as i64));
        let mut stmt = conn.prepare(&format!(
            "SELECT {} FROM model_services s{filter}{order} LIMIT ? OFFSET ?",
            cols.join(", ")
        ))?;
        let rows = stmt.query_map(params_from_iter(bound.iter()), |r| {
            let mut inv = Map::new();
            for (i, f) in columns().enumerate() {
                inv.insert(f.api.to_string(), to_json(f, r.get::<_, Sql>(i)?));
            }
            Ok(inv)
        })?;
        let mut inventories = Vec::new();
        let mut refs = conn.prepare(
            "SELECT uuid, model_uuid FROM model_service_refs WHERE model_service_uuid = ?1 ORDER BY rowid",
        )?;
        for row in rows {
            let mut inv = row?;
            let uuid = inv["uuid"].as_str().unwrap_or_default().to_string();
            let list: Vec<Value> = refs
                .query_map([&uuid], |r| {
                    Ok(serde_json::json!({
                        "uuid": r.get::<_, String>(0)?,
                        "modelUuid": r.get::<_, String>(1)?,
                        "modelServiceUuid": uuid,
                    }))
                })?
                .collect::<rusqlite::Result<_>>()?;
            inv.insert("modelServiceRefs".into(), Value::Array(list));
            let inv = Value::Object(inv);
            inventories.push(match &q.fields {
                Some(keep) => project(inv, keep),
                None => inv,
            });
        }
        Ok(QueryReply {
            inventories,
            total: total as u64,
        })
    }

    /// One entry's inventory.
    pub fn catalog_entry(&self, uuid: &str) -> StoreResult<Option<Value>> {
        Ok(self.query_catalog(&Query::by_uuid(uuid))?.inventories.pop())
    }

    /// Adds an entry from API fields (`StoreError::Invalid` says which field is
    /// wrong); returns its inventory.
    pub fn create_catalog_entry(&self, map: &Map<String, Value>) -> StoreResult<Value> {
        let uuid = {
            let mut conn = self.lock();
            let tx = conn.transaction()?;
            let uuid = insert(&tx, map)?;
            tx.commit()?;
            uuid
        };
        self.catalog_entry(&uuid)?
            .ok_or_else(|| StoreError::Invalid("the entry vanished".into()))
    }

    /// Changes the given fields of an entry; `None` when there is no such entry.
    pub fn update_catalog_entry(
        &self,
        uuid: &str,
        map: &Map<String, Value>,
    ) -> StoreResult<Option<Value>> {
        let (set, refs) = values(map, false).map_err(StoreError::Invalid)?;
        {
            let mut conn = self.lock();
            let tx = conn.transaction()?;
            let mut assigns: Vec<String> = set.iter().map(|(c, _)| format!("{c} = ?")).collect();
            assigns.push("last_op_date = ?".into());
            let mut bound: Vec<Sql> = set.into_iter().map(|(_, v)| v).collect();
            bound.push(Sql::Real(now()));
            bound.push(Sql::Text(uuid.to_string()));
            let n = tx.execute(
                &format!(
                    "UPDATE model_services SET {} WHERE uuid = ?",
                    assigns.join(", ")
                ),
                params_from_iter(bound),
            )?;
            if n == 0 {
                return Ok(None);
            }
            if let Some(models) = refs {
                write_refs(&tx, uuid, &models)?;
            }
            tx.commit()?;
        }
        self.catalog_entry(uuid)
    }

    /// Removes an entry and its refs; false when there was none.
    pub fn delete_catalog_entry(&self, uuid: &str) -> StoreResult<bool> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "DELETE FROM model_service_refs WHERE model_service_uuid = ?1",
            [uuid],
        )?;
        let n = tx.execute("DELETE FROM model_services WHERE uuid = ?1", [uuid])?;
        tx.commit()?;
        Ok(n == 1)
    }

    /// Adds the shipped recipes the first time the store is opened with them;
    /// never again (so entries an admin deleted stay deleted). Returns how many
    /// were added.
    pub fn seed_catalog(&self, entries: &[Value]) -> StoreResult<usize> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let seeded: Option<String> = tx
            .query_row(
                "SELECT value FROM meta WHERE key = 'catalog_seeded'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        if seeded.is_some() {
            return Ok(0);
        }
        for (i, e) in entries.iter().enumerate() {
            let map = e.as_object().ok_or_else(|| {
                StoreError::Invalid(format!("catalog entry {i} is not an object"))
            })?;
            insert(&tx, map).map_err(|e| StoreError::Invalid(format!("catalog entry {i}: {e}")))?;
        }
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('catalog_seeded', ?1)",
            [now().to_string()],
        )?;
        tx.commit()?;
        Ok(entries.len())
    }
}

/// Reads the shipped catalog file: a JSON list of entries in API form.
pub fn read_catalog_file(path: &std::path::Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests;
