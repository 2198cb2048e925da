//! ZStack's REST query language (PROTOCOLS.md part two §1.3) over the catalog's
//! fields, compiled to SQL with bound parameters only: a value is never part of
//! the SQL text, so `name=x' OR '1'='1` matches nothing instead of everything.
//!
//! Each `q` is split on the first operator of ZStack's fixed order that it
//! contains (`!=` before `=`, `!~=` before `~=`...), at that operator's first
//! occurrence; the field is trimmed, the value is not. `f=null` and `f!=null`
//! are the null tests too. LIKE is SQLite's, case-insensitive for ASCII like
//! MySQL's default collation. Dates are not query fields (ZStack compares them
//! as SQL timestamps; we print them in Gson's form, which does not order).

use rusqlite::types::Value as Sql;

use super::fields::{Field, Kind, FIELDS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Ne,
    Ge,
    Le,
    NotIn,
    NotLike,
    Like,
    In,
    Eq,
    Gt,
    Lt,
    IsNull,
    NotNull,
}

/// ZStack's matching order, with each operator's REST token.
const ORDER: [(&str, Op); 10] = [
    ("!=", Op::Ne),
    (">=", Op::Ge),
    ("<=", Op::Le),
    ("!?=", Op::NotIn),
    ("!~=", Op::NotLike),
    ("~=", Op::Like),
    ("?=", Op::In),
    ("=", Op::Eq),
    (">", Op::Gt),
    ("<", Op::Lt),
];

const OPERATORS: &str = "[!=, >=, <=, !?=, !~=, ~=, ?=, =, >, <, is null, not null]";

/// Where a condition applies: a column of the entry, or a field of its
/// `modelServiceRefs` (a condition on any one ref).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Column(&'static Field),
    Ref(&'static str),
}

#[derive(Debug, Clone, PartialEq)]
struct Cond {
    target: Target,
    op: Op,
    values: Vec<Sql>,
}

/// A parsed query: conditions, paging and shaping.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    conds: Vec<Cond>,
    pub limit: u64,
    pub start: u64,
    /// Only the number of matches.
    pub count: bool,
    /// Matches and their number.
    pub reply_with_count: bool,
    sort: Option<(&'static Field, bool)>,
    /// Inventory fields to keep; `None` keeps every one.
    pub fields: Option<Vec<&'static str>>,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            conds: Vec::new(),
            limit: 1000,
            start: 0,
            count: false,
            reply_with_count: false,
            sort: None,
            fields: None,
        }
    }
}

fn queryable() -> String {
    let names: Vec<&str> = FIELDS
        .iter()
        .filter(|f| f.kind.queryable())
        .map(|f| f.api)
        .collect();
    format!(
        "{}, modelServiceRefs.modelUuid, modelServiceRefs.uuid",
        names.join(", ")
    )
}

fn target(cond: &str, name: &str) -> Result<Target, String> {
    if let Some(sub) = name.strip_prefix("modelServiceRefs.") {
        return match sub {
            "modelUuid" => Ok(Target::Ref("model_uuid")),
            "uuid" => Ok(Target::Ref("uuid")),
            _ => Err(format!(
                "Invalid query parameter. The '{cond}' names '{name}'; a ref's queryable fields are modelUuid and uuid"
            )),
        };
    }
    FIELDS
        .iter()
        .find(|f| f.api == name && f.kind.queryable())
        .map(Target::Column)
        .ok_or_else(|| {
            format!(
                "Invalid query parameter. The '{cond}' names the unknown field '{name}'; queryable fields are [{}]",
                queryable()
            )
        })
}

fn typed(cond: &str, target: Target, op: Op, text: &str) -> Result<Sql, String> {
    let kind = match target {
        Target::Column(f) => f.kind,
        Target::Ref(_) => Kind::Text,
    };
    if matches!(op, Op::Like | Op::NotLike) && kind != Kind::Text {
        return Err(format!(
            "Invalid query parameter. The '{cond}' uses LIKE on a field that is not text"
        ));
    }
    match kind {
        Kind::Int => text.parse::<i64>().map(Sql::Integer).map_err(|_| {
            format!("Invalid query parameter. The '{cond}': '{text}' is not an integer")
        }),
        Kind::Bool => match text {
            "true" => Ok(Sql::Integer(1)),
            "false" => Ok(Sql::Integer(0)),
            _ => Err(format!(
                "Invalid query parameter. The '{cond}': '{text}' is not true or false"
            )),
        },
        _ => Ok(Sql::Text(text.to_string())),
    }
}

fn condition(cond: &str) -> Result<Cond, String> {
    let Some((token, mut op)) = ORDER.iter().copied().find(|(t, _)| cond.contains(t)) else {
        for (suffix, op) in [(" is null", Op::IsNull), (" not null", Op::NotNull)] {
            if let Some(name) = cond.strip_suffix(suffix) {
                let target = target(cond, name.trim())?;
                return Ok(Cond {
                    target,
                    op,
                    values: Vec::new(),
                });
            }
        }
        return Err(format!(
            "Invalid query parameter. The '{cond}' in the parameter[q] doesn't contain any query operator. Valid query operators are {OPERATORS}"
        ));
    };
    let (name, value) = cond.split_once(token).expect("contains the token");
    let name = name.trim();
    if name.is_empty() || value.is_empty() {
        return Err(format!(
            "Invalid query parameter. The '{cond}' in the parameter[q] is not a key-value pair split by {token}"
        ));
    }
    let target = target(cond, name)?;
    if value == "null" && matches!(op, Op::Eq | Op::Ne) {
        op = if op == Op::Eq {
            Op::IsNull
        } else {
            Op::NotNull
        };
        return Ok(Cond {
            target,
            op,
            values: Vec::new(),
        });
    }
    let values = if matches!(op, Op::In | Op::NotIn) {
        value
            .split(',')
            .map(|v| typed(cond, target, op, v))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![typed(cond, target, op, value)?]
    };
    Ok(Cond { target, op, values })
}

fn integer(name: &str, text: &str) -> Result<u64, String> {
    text.parse::<u64>().map_err(|_| {
        format!("Invalid query parameter. '{name}' must be a non-negative integer, not '{text}'")
    })
}

fn flag(name: &str, text: &str) -> Result<bool, String> {
    match text {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!(
            "Invalid query parameter. '{name}' must be true or false, not '{text}'"
        )),
    }
}

fn sort_field(text: &str) -> Result<&'static Field, String> {
    FIELDS
        .iter()
        .find(|f| f.api == text && f.kind.sortable())
        .ok_or_else(|| {
            format!(
                "Invalid query parameter. Cannot sort by '{text}'; sortable fields are [{}]",
                queryable_sortable()
            )
        })
}

fn queryable_sortable() -> String {
    FIELDS
        .iter()
        .filter(|f| f.kind.sortable())
        .map(|f| f.api)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Query {
    /// Parses the request's query parameters (repeated `q` and `fields`
    /// allowed); unknown parameters are ignored, as ZStack does.
    pub fn parse(params: &[(String, String)]) -> Result<Query, String> {
        let mut q = Query::default();
        let (mut sort_by, mut direction) = (None, None);
        for (name, value) in params {
            match name.as_str() {
                "q" => q.conds.push(condition(value)?),
                "limit" => q.limit = integer(name, value)?,
                "start" => q.start = integer(name, value)?,
                "count" => q.count = flag(name, value)?,
                "replyWithCount" => q.reply_with_count = flag(name, value)?,
                "sort" => {
                    let (field, desc) = match value.as_bytes().first() {
                        Some(b'-') => (&value[1..], true),
                        Some(b'+') => (&value[1..], false),
                        _ => (value.as_str(), false),
                    };
                    q.sort = Some((sort_field(field)?, desc));
                }
                "sortBy" => sort_by = Some(sort_field(value)?),
                "sortDirection" => {
                    direction = Some(match value.as_str() {
                        "asc" => false,
                        "desc" => true,
                        _ => {
                            return Err(format!(
                                "Invalid query parameter. 'sortDirection' must be asc or desc, not '{value}'"
                            ))
                        }
                    })
                }
                "fields" => {
                    let list = q.fields.get_or_insert_with(Vec::new);
                    for f in value.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                        let known = FIELDS.iter().find(|k| k.api == f).ok_or_else(|| {
                            format!("Invalid query parameter. 'fields' names the unknown field '{f}'")
                        })?;
                        list.push(known.api);
                    }
                }
                _ => {}
            }
        }
        if q.fields.as_ref().is_some_and(Vec::is_empty) {
            return Err("Invalid query parameter. 'fields' is empty".into());
        }
        if let Some(field) = sort_by {
            q.sort = Some((field, direction.unwrap_or(false)));
        } else if direction.is_some() {
            return Err("Invalid query parameter. 'sortDirection' needs 'sortBy'".into());
        }
        Ok(q)
    }

    /// The one-condition query `uuid=<uuid>` (what `GET …/{uuid}` is).
    pub fn by_uuid(uuid: &str) -> Query {
        let field = FIELDS.iter().find(|f| f.api == "uuid").expect("uuid field");
        Query {
            conds: vec![Cond {
                target: Target::Column(field),
                op: Op::Eq,
                values: vec![Sql::Text(uuid.to_string())],
            }],
            ..Query::default()
        }
    }

    /// `WHERE …` (empty without conditions), `ORDER BY …`, and the values to
    /// bind in order.
    pub fn sql(&self) -> (String, String, Vec<Sql>) {
        let mut clauses = Vec::new();
        let mut values = Vec::new();
        for c in &self.conds {
            let marks = vec!["?"; c.values.len()].join(", ");
            let test = |col: &str| match c.op {
                Op::Ne => format!("{col} != ?"),
                Op::Ge => format!("{col} >= ?"),
                Op::Le => format!("{col} <= ?"),
                Op::Gt => format!("{col} > ?"),
                Op::Lt => format!("{col} < ?"),
                Op::Eq => format!("{col} = ?"),
                Op::Like => format!("{col} LIKE ?"),
                Op::NotLike => format!("{col} NOT LIKE ?"),
                Op::In => format!("{col} IN ({marks})"),
                Op::NotIn => format!("{col} NOT IN ({marks})"),
                Op::IsNull => format!("{col} IS NULL"),
                Op::NotNull => format!("{col} IS NOT NULL"),
            };
            clauses.push(match c.target {
                Target::Column(f) => test(&format!("s.{}", f.column)),
                Target::Ref(col) => match c.op {
                    Op::IsNull => "NOT EXISTS (SELECT 1 FROM model_service_refs r WHERE r.model_service_uuid = s.uuid)".to_string(),
                    Op::NotNull => "EXISTS (SELECT 1 FROM model_service_refs r WHERE r.model_service_uuid = s.uuid)".to_string(),
                    _ => format!(
                        "EXISTS (SELECT 1 FROM model_service_refs r WHERE r.model_service_uuid = s.uuid AND {})",
                        test(&format!("r.{col}"))
                    ),
                },
            });
            values.extend(c.values.iter().cloned());
        }
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", clauses.join(" AND "))
        };
        let order = match self.sort {
            Some((f, desc)) => format!(
                " ORDER BY s.{} {}, s.uuid",
                f.column,
                if desc { "DESC" } else { "ASC" }
            ),
            None => " ORDER BY s.create_date, s.uuid".to_string(),
        };
        (filter, order, values)
    }
}
