//! Seed 001's ModelService fields: their API names (ZStack's camelCase, in the
//! SDK's order), columns and kinds. One table drives the schema's reads, the
//! query compiler and the validation of created and updated entries.

use rusqlite::types::Value as Sql;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int,
    Bool,
    /// A JSON list or map kept as text.
    Json,
    /// Seconds since the epoch, printed in Gson's date form.
    Date,
    /// `modelServiceRefs`: rows of their own table.
    Refs,
}

impl Kind {
    pub fn queryable(self) -> bool {
        matches!(self, Kind::Text | Kind::Int | Kind::Bool | Kind::Date)
    }

    pub fn sortable(self) -> bool {
        matches!(self, Kind::Text | Kind::Int | Kind::Bool | Kind::Date)
    }
}

#[derive(Debug, PartialEq)]
pub struct Field {
    pub api: &'static str,
    pub column: &'static str,
    pub kind: Kind,
}

const fn f(api: &'static str, column: &'static str, kind: Kind) -> Field {
    Field { api, column, kind }
}

pub static FIELDS: [Field; 29] = [
    f("uuid", "uuid", Kind::Text),
    f("name", "name", Kind::Text),
    f("description", "description", Kind::Text),
    f("readme", "readme", Kind::Text),
    f("yaml", "yaml", Kind::Text),
    f("requestCpu", "request_cpu", Kind::Int),
    f("requestMemory", "request_memory", Kind::Int),
    f("modelCenterUuid", "model_center_uuid", Kind::Text),
    f("type", "type", Kind::Text),
    f("framework", "framework", Kind::Text),
    f("source", "source", Kind::Text),
    f("size", "size", Kind::Int),
    f("system", "system", Kind::Bool),
    f("hasNewVersion", "has_new_version", Kind::Bool),
    f("gpuComputeCapability", "gpu_compute_capability", Kind::Text),
    f("installPath", "install_path", Kind::Text),
    f("pythonVersion", "python_version", Kind::Text),
    f("condaVersion", "conda_version", Kind::Text),
    f("version", "version", Kind::Text),
    f("startCommand", "start_command", Kind::Text),
    f("containerCommand", "container_command", Kind::Text),
    f("containerArgs", "container_args", Kind::Text),
    f("supportDistributed", "support_distributed", Kind::Bool),
    f("cpuArchitectures", "cpu_architectures", Kind::Json),
    f(
        "vendorToSpecUuidsMap",
        "vendor_to_spec_uuids_map",
        Kind::Json,
    ),
    f("modelServiceRefs", "", Kind::Refs),
    f("modelServiceImages", "model_service_images", Kind::Json),
    f("createDate", "create_date", Kind::Date),
    f("lastOpDate", "last_op_date", Kind::Date),
];

/// The fields stored as columns of `model_services`.
pub fn columns() -> impl Iterator<Item = &'static Field> {
    FIELDS.iter().filter(|f| !f.column.is_empty())
}

/// A field's value from API JSON, checked against its kind; `Err` says which
/// field and why. Counts (`requestCpu`, `requestMemory`, `size`) may not be
/// negative.
pub fn to_sql(field: &Field, value: &Value) -> Result<Sql, String> {
    let api = field.api;
    match (field.kind, value) {
        (_, Value::Null) => Ok(Sql::Null),
        (Kind::Text, Value::String(s)) => Ok(Sql::Text(s.clone())),
        (Kind::Int, Value::Number(n)) => match n.as_i64() {
            Some(i) if i >= 0 => Ok(Sql::Integer(i)),
            _ => Err(format!("'{api}' must be a non-negative integer, not {n}")),
        },
        (Kind::Bool, Value::Bool(b)) => Ok(Sql::Integer(i64::from(*b))),
        (Kind::Json, v @ (Value::Array(_) | Value::Object(_))) => Ok(Sql::Text(v.to_string())),
        (kind, v) => Err(format!(
            "'{api}' must be {}, not {v}",
            match kind {
                Kind::Text => "a string",
                Kind::Int => "an integer",
                Kind::Bool => "true or false",
                _ => "a list or an object",
            }
        )),
    }
}

/// A column's stored value as API JSON.
pub fn to_json(field: &Field, value: Sql) -> Value {
    match (field.kind, value) {
        (_, Sql::Null) => Value::Null,
        (Kind::Bool, Sql::Integer(i)) => Value::Bool(i != 0),
        (Kind::Int, Sql::Integer(i)) => Value::from(i),
        (Kind::Json, Sql::Text(t)) => serde_json::from_str(&t).unwrap_or(Value::Null),
        (Kind::Date, Sql::Real(secs)) => Value::String(crate::time::zstack_date(secs)),
        (_, Sql::Text(t)) => Value::String(t),
        (_, Sql::Integer(i)) => Value::from(i),
        (_, Sql::Real(r)) => Value::from(r),
        (_, Sql::Blob(_)) => Value::Null,
    }
}

/// Keeps only `keep` of an inventory's fields.
pub fn project(inventory: Value, keep: &[&str]) -> Value {
    match inventory {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| keep.contains(&k.as_str()))
                .collect::<Map<String, Value>>(),
        ),
        other => other,
    }
}
