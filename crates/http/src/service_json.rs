//! Seed 003's service JSON, shared by the two faces that make services: the
//! services API's create and the ZStack catalog's deploy take the same fields
//! and answer with the same service object.

use axum::http::{header, HeaderMap};
use inferd_services::{NewService, ServiceError, ServiceLimits};
use inferd_store::{time, ServiceRecord};
use serde_json::{json, Map, Value};

const PATH: &str = "/api/v1/inference/services";

/// This server's own URL for calling the service, from the Host the client used.
pub(crate) fn endpoint_url(headers: &HeaderMap, id: &str) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}{PATH}/{id}/predict")
}

pub(crate) fn summary(s: &ServiceRecord, headers: &HeaderMap) -> Value {
    json!({
        "service_id": s.id,
        "name": s.name,
        "status": s.status.as_str(),
        "endpoint_url": endpoint_url(headers, &s.id),
        "replicas": s.replicas,
        "created_at": time::rfc3339(s.created_at),
    })
}

pub(crate) fn full(s: &ServiceRecord, headers: &HeaderMap) -> Value {
    let mut v = summary(s, headers);
    let mut extra = json!({
        "description": s.description,
        "workspace_id": s.workspace_id,
        "model_id": s.model,
        "model_version": format!("v{}", s.model_version),
        "framework": s.framework,
        "cpu": s.cpu,
        "memory": s.memory,
        "gpu": s.gpu,
        "reason": s.reason,
        "updated_at": time::rfc3339(s.updated_at),
    });
    // A whole number of cores reads back as an integer (a Go `int` decodes it).
    if s.cpu.fract() == 0.0 && s.cpu < 1e15 {
        extra["cpu"] = json!(s.cpu as u64);
    }
    let sent = s.sent.as_deref().and_then(|t| serde_json::from_str(t).ok());
    if let (Value::Object(extra), Some(Value::Object(sent))) = (&mut extra, sent) {
        extra.extend(sent);
    }
    if let (Value::Object(v), Value::Object(extra)) = (&mut v, extra) {
        v.extend(extra);
    }
    v
}

/// The fields of a create request, each checked for its JSON type and range.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn string(&self, key: &str) -> Result<Option<String>, ServiceError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(ServiceError::invalid(format!(
                "'{key}' must be a string, not {other}"
            ))),
        }
    }

    /// A name given as a string or an integer (the document's ids are numbers).
    fn name_or_number(&self, key: &str) -> Result<Option<String>, ServiceError> {
        match self.0.get(key) {
            Some(Value::Number(n)) if n.is_u64() => Ok(Some(n.to_string())),
            Some(Value::Number(n)) => Err(ServiceError::invalid(format!(
                "'{key}' must be a model name or a non-negative integer, not {n}"
            ))),
            _ => self.string(key),
        }
    }

    fn integer(&self, key: &str, min: i64, max: i64) -> Result<Option<i64>, ServiceError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) if (min..=max).contains(&i) => Ok(Some(i)),
                _ => Err(ServiceError::invalid(format!(
                    "'{key}' must be an integer from {min} to {max}, not {n}"
                ))),
            },
            Some(other) => Err(ServiceError::invalid(format!(
                "'{key}' must be an integer, not {other}"
            ))),
        }
    }

    fn number(&self, key: &str) -> Result<Option<f64>, ServiceError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(other) => Err(ServiceError::invalid(format!(
                "'{key}' must be a number, not {other}"
            ))),
        }
    }
}

/// `cpu`, `model_version` and `framework` as the client wrote them (`4`,
/// `"v1.0"`, `"ONNX"`), to echo instead of the resolved `4.0`, `"v1"`, `"onnx"`.
fn as_sent(map: &Map<String, Value>) -> Option<String> {
    let sent: Map<String, Value> = ["cpu", "model_version", "framework"]
        .into_iter()
        .filter_map(|k| Some((k.to_string(), map.get(k).filter(|v| !v.is_null())?.clone())))
        .collect();
    (!sent.is_empty()).then(|| Value::Object(sent).to_string())
}

/// `v1.0`, `1` or 1 → version 1.
fn parse_version(text: &str) -> Result<u64, ServiceError> {
    let t = text.trim().trim_start_matches(['v', 'V']);
    let major = t.split('.').next().unwrap_or("");
    let rest_zero = t
        .split('.')
        .skip(1)
        .all(|p| p.chars().all(|c| c == '0') && !p.is_empty());
    match major.parse::<u64>() {
        Ok(v) if rest_zero => Ok(v),
        _ => Err(ServiceError::invalid(format!(
            "'model_version' must name a repository version such as 1, \"1\" or \"v1.0\", not \"{text}\""
        ))),
    }
}

/// Reads a create request's fields, each checked for its JSON type and
/// range; what needs the repository or the store is the service layer's check.
pub(crate) fn new_service(
    map: &Map<String, Value>,
    limits: ServiceLimits,
) -> Result<NewService, ServiceError> {
    // Unknown fields are ignored, as the document's server (pydantic) does.
    const FIELDS: [&str; 10] = [
        "name",
        "description",
        "workspace_id",
        "model_id",
        "model_version",
        "framework",
        "cpu",
        "memory",
        "gpu",
        "replicas",
    ];
    for unknown in map.keys().filter(|k| !FIELDS.contains(&k.as_str())) {
        tracing::debug!(field = %unknown, "ignored an unknown field of a service");
    }
    let f = Fields(map);
    let name = f
        .string("name")?
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ServiceError::invalid("'name' is required (a non-empty string)"))?;
    if name.chars().count() > 128 {
        return Err(ServiceError::invalid(
            "'name' is longer than 128 characters",
        ));
    }
    let model = f.name_or_number("model_id")?.ok_or_else(|| {
        ServiceError::invalid(
            "'model_id' is required: the name of a repository model, such as \"digits\"",
        )
    })?;
    let version = match map.get("model_version") {
        Some(Value::Number(n)) => Some(parse_version(&n.to_string())?),
        _ => f
            .string("model_version")?
            .map(|v| parse_version(&v))
            .transpose()?,
    };
    // Resources are requests, as a cluster takes them: more cores than this
    // machine has is recorded (cpu is not enforced); a GPU it cannot give
    // fails the service after it is created, with the reason.
    let cpu = f.number("cpu")?.unwrap_or(1.0);
    if !(cpu > 0.0 && cpu.is_finite()) {
        return Err(ServiceError::invalid(format!(
            "'cpu' must be a number of cores above 0, not {cpu}"
        )));
    }
    let memory = f.integer("memory", 1, i64::MAX)?.unwrap_or(1 << 30) as u64;
    let gpu = f.integer("gpu", 0, 64)?.unwrap_or(0);
    let max = limits.max_replicas;
    let replicas = f.integer("replicas", 1, i64::from(max))?.unwrap_or(1) as u32;
    Ok(NewService {
        name,
        description: f.string("description")?.unwrap_or_default(),
        workspace_id: f.integer("workspace_id", i64::MIN, i64::MAX)?,
        model,
        version,
        framework: f.string("framework")?,
        cpu,
        memory,
        gpu: gpu as u32,
        replicas,
        sent: as_sent(map),
    })
}
