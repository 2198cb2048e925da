//! ZStack's REST query language (PROTOCOLS.md part two §1.3) over the catalog's
//! fields, compiled to SQL with bound parameters only: a value is never part of
//! the SQL text, so `name=x' OR '1'='1` matches nothing instead of everything.
//!
//! Each `q` is split on the first operator of ZStack's fixed order that it
//! contains (`!=` before `=`, `!~=` before `~=`...), at that operator's first
//! occurrence; the field is trimmed, the value is not. `f=null` and `f!=null`
//! are the null tests too. LIKE is SQLite's, case-insensitive for ASCII like
//! MySQL's default collation. Dates are not query fields (ZStack compares them
//! as SQL timestamps; we print them in Gson's form, which does not order), but
//! they sort. Every refusal is a [`QueryError`] whose text names the condition
//! or parameter and why, in ZStack's "Invalid query parameter." wording.

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

/// Most `q` conditions in one query. SQLite nests each AND one level deeper and
/// refuses an expression deeper than 1000, so a long enough query string would
/// otherwise reach the database and fail there as a server error.
pub const MAX_CONDITIONS: usize = 100;
/// Most values bound by one query's conditions (`?=` lists included), well
/// under SQLite's 32766 bound parameters per statement.
pub const MAX_VALUES: usize = 1000;

/// Why a query's parameters were refused; one variant per rule. The text is
/// what a client sees (ZStack sends it as the 400's message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("Invalid query parameter. The '{cond}' in the parameter[q] doesn't contain any query operator. Valid query operators are {OPERATORS}")]
    NoOperator { cond: String },
    #[error("Invalid query parameter. The '{cond}' in the parameter[q] is not a key-value pair split by {op}: the field name is empty")]
    EmptyField { cond: String, op: &'static str },
    #[error("Invalid query parameter. The '{cond}' in the parameter[q] is not a key-value pair split by {op}: the value is empty")]
    EmptyValue { cond: String, op: &'static str },
    #[error("Invalid query parameter. The '{cond}' names the unknown field '{field}'; queryable fields are [{valid}]", valid = queryable())]
    UnknownField { cond: String, field: String },
    #[error("Invalid query parameter. The '{cond}' names '{field}'; a ref's queryable fields are modelUuid and uuid")]
    UnknownRefField { cond: String, field: String },
    #[error("Invalid query parameter. The '{cond}': '{value}' is not an integer")]
    NotAnInteger { cond: String, value: String },
    #[error("Invalid query parameter. The '{cond}': '{value}' is not a date (milliseconds since the epoch, 'yyyy-MM-dd HH:mm:ss' or 'yyyy-MM-dd', UTC)")]
    NotADate { cond: String, value: String },
    #[error("Invalid query parameter. The '{cond}': '{value}' is not true or false")]
    NotABoolean { cond: String, value: String },
    #[error("Invalid query parameter. The '{cond}' uses LIKE on a field that is not text")]
    LikeOnNonText { cond: String },
    #[error("Invalid query parameter. '{param}' must be a non-negative integer, not '{value}'")]
    BadInteger { param: &'static str, value: String },
    #[error("Invalid query parameter. '{param}' must be true or false, not '{value}'")]
    BadFlag { param: &'static str, value: String },
    #[error("Invalid query parameter. Cannot sort by '{field}'; sortable fields are [{valid}]", valid = sortable())]
    UnknownSortField { field: String },
    #[error("Invalid query parameter. 'sortDirection' must be asc or desc, not '{value}'")]
    BadSortDirection { value: String },
    #[error("Invalid query parameter. 'sortDirection' needs 'sortBy'")]
    DirectionWithoutSortBy,
    #[error("Invalid query parameter. 'fields' is empty")]
    EmptyFields,
    #[error("Invalid query parameter. 'fields' names the unknown field '{field}'; fields are [{valid}]", valid = all_fields())]
    UnknownProjection { field: String },
    #[error("Invalid query parameter. At most {max} conditions in the parameter[q] are allowed")]
    TooManyConditions { max: usize },
    #[error("Invalid query parameter. The conditions in the parameter[q] hold {count} values; at most {max} are allowed")]
    TooManyValues { count: usize, max: usize },
}

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

fn names(keep: impl Fn(&Field) -> bool) -> String {
    FIELDS
        .iter()
        .filter(|f| keep(f))
        .map(|f| f.api)
        .collect::<Vec<_>>()
        .join(", ")
}

fn queryable() -> String {
    format!(
        "{}, modelServiceRefs.modelUuid, modelServiceRefs.uuid",
        names(|f| f.kind.queryable())
    )
}

fn sortable() -> String {
    names(|f| f.kind.sortable())
}

fn all_fields() -> String {
    names(|_| true)
}

fn target(cond: &str, name: &str) -> Result<Target, QueryError> {
    if let Some(sub) = name.strip_prefix("modelServiceRefs.") {
        return match sub {
            "modelUuid" => Ok(Target::Ref("model_uuid")),
            "uuid" => Ok(Target::Ref("uuid")),
            _ => Err(QueryError::UnknownRefField {
                cond: cond.into(),
                field: name.into(),
            }),
        };
    }
    FIELDS
        .iter()
        .find(|f| f.api == name && f.kind.queryable())
        .map(Target::Column)
        .ok_or_else(|| QueryError::UnknownField {
            cond: cond.into(),
            field: name.into(),
        })
}

fn typed(cond: &str, target: Target, op: Op, text: &str) -> Result<Sql, QueryError> {
    let kind = match target {
        Target::Column(f) => f.kind,
        Target::Ref(_) => Kind::Text,
    };
    if matches!(op, Op::Like | Op::NotLike) && kind != Kind::Text {
        return Err(QueryError::LikeOnNonText { cond: cond.into() });
    }
    match kind {
        Kind::Int => text
            .parse::<i64>()
            .map(Sql::Integer)
            .map_err(|_| QueryError::NotAnInteger {
                cond: cond.into(),
                value: text.into(),
            }),
        Kind::Date => {
            crate::time::parse_date(text)
                .map(Sql::Real)
                .ok_or_else(|| QueryError::NotADate {
                    cond: cond.into(),
                    value: text.into(),
                })
        }
        Kind::Bool => match text {
            "true" => Ok(Sql::Integer(1)),
            "false" => Ok(Sql::Integer(0)),
            _ => Err(QueryError::NotABoolean {
                cond: cond.into(),
                value: text.into(),
            }),
        },
        _ => Ok(Sql::Text(text.to_string())),
    }
}

/// `name is null` / `name not null`, ZStack's REST spelling of the null tests.
fn null_test(cond: &str) -> Result<Cond, QueryError> {
    for (suffix, op) in [(" is null", Op::IsNull), (" not null", Op::NotNull)] {
        if let Some(name) = cond.strip_suffix(suffix) {
            let name = name.trim();
            if name.is_empty() {
                return Err(QueryError::EmptyField {
                    cond: cond.into(),
                    op: suffix.trim_start(),
                });
            }
            return Ok(Cond {
                target: target(cond, name)?,
                op,
                values: Vec::new(),
            });
        }
    }
    Err(QueryError::NoOperator { cond: cond.into() })
}

fn condition(cond: &str) -> Result<Cond, QueryError> {
    let Some((token, op)) = ORDER.iter().copied().find(|(t, _)| cond.contains(t)) else {
        return null_test(cond);
    };
    let (name, value) = cond.split_once(token).expect("contains the token");
    let name = name.trim();
    if name.is_empty() {
        return Err(QueryError::EmptyField {
            cond: cond.into(),
            op: token,
        });
    }
    if value.is_empty() {
        return Err(QueryError::EmptyValue {
            cond: cond.into(),
            op: token,
        });
    }
    let target = target(cond, name)?;
    let (op, values) = match op {
        Op::Eq if value == "null" => (Op::IsNull, Vec::new()),
        Op::Ne if value == "null" => (Op::NotNull, Vec::new()),
        Op::In | Op::NotIn => (
            op,
            value
                .split(',')
                .map(|v| typed(cond, target, op, v))
                .collect::<Result<_, _>>()?,
        ),
        _ => (op, vec![typed(cond, target, op, value)?]),
    };
    Ok(Cond { target, op, values })
}

fn integer(param: &'static str, text: &str) -> Result<u64, QueryError> {
    text.parse::<u64>().map_err(|_| QueryError::BadInteger {
        param,
        value: text.into(),
    })
}

fn flag(param: &'static str, text: &str) -> Result<bool, QueryError> {
    match text {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(QueryError::BadFlag {
            param,
            value: text.into(),
        }),
    }
}

fn sort_field(text: &str) -> Result<&'static Field, QueryError> {
    FIELDS
        .iter()
        .find(|f| f.api == text && f.kind.sortable())
        .ok_or_else(|| QueryError::UnknownSortField { field: text.into() })
}

/// `sort=+f`, `sort=-f` or `sort=f`. A leading space is `+` too: an unescaped
/// `+` in a URL's query decodes to a space, and `curl '...?sort=+name'` is
/// what people type.
fn sort(value: &str) -> Result<(&'static Field, bool), QueryError> {
    let (field, desc) = match value.as_bytes().first() {
        Some(b'-') => (&value[1..], true),
        Some(b'+' | b' ') => (&value[1..], false),
        _ => (value, false),
    };
    Ok((sort_field(field)?, desc))
}

fn direction(value: &str) -> Result<bool, QueryError> {
    match value {
        "asc" => Ok(false),
        "desc" => Ok(true),
        _ => Err(QueryError::BadSortDirection {
            value: value.into(),
        }),
    }
}

fn projection(list: &mut Vec<&'static str>, value: &str) -> Result<(), QueryError> {
    for f in value.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        let known = FIELDS
            .iter()
            .find(|k| k.api == f)
            .ok_or_else(|| QueryError::UnknownProjection { field: f.into() })?;
        list.push(known.api);
    }
    Ok(())
}

impl Query {
    /// Parses the request's query parameters (repeated `q` and `fields`
    /// allowed); unknown parameters are ignored, as ZStack does.
    pub fn parse(params: &[(String, String)]) -> Result<Query, QueryError> {
        let mut q = Query::default();
        let (mut sort_by, mut desc) = (None, None);
        for (name, value) in params {
            match name.as_str() {
                "q" if q.conds.len() == MAX_CONDITIONS => {
                    return Err(QueryError::TooManyConditions {
                        max: MAX_CONDITIONS,
                    })
                }
                "q" => q.conds.push(condition(value)?),
                "limit" => q.limit = integer("limit", value)?,
                "start" => q.start = integer("start", value)?,
                "count" => q.count = flag("count", value)?,
                "replyWithCount" => q.reply_with_count = flag("replyWithCount", value)?,
                "sort" => q.sort = Some(sort(value)?),
                "sortBy" => sort_by = Some(sort_field(value)?),
                "sortDirection" => desc = Some(direction(value)?),
                "fields" => projection(q.fields.get_or_insert_with(Vec::new), value)?,
                _ => {}
            }
        }
        if q.fields.as_ref().is_some_and(Vec::is_empty) {
            return Err(QueryError::EmptyFields);
        }
        let count = q.conds.iter().map(|c| c.values.len()).sum();
        if count > MAX_VALUES {
            return Err(QueryError::TooManyValues {
                count,
                max: MAX_VALUES,
            });
        }
        match (sort_by, desc) {
            (Some(field), desc) => q.sort = Some((field, desc.unwrap_or(false))),
            (None, Some(_)) => return Err(QueryError::DirectionWithoutSortBy),
            (None, None) => {}
        }
        Ok(q)
    }

    /// The one-condition query `uuid=<uuid>` (what `GET …/{uuid}` is).
    pub fn by_uuid(uuid: &str) -> Query {
        Query::default().only_uuid(uuid)
    }

    /// This query's shaping with its conditions replaced by `uuid=<uuid>`: a
    /// uuid from a path is bound as it is, never parsed as a condition.
    pub fn only_uuid(self, uuid: &str) -> Query {
        let field = FIELDS.iter().find(|f| f.api == "uuid").expect("uuid field");
        Query {
            conds: vec![Cond {
                target: Target::Column(field),
                op: Op::Eq,
                values: vec![Sql::Text(uuid.to_string())],
            }],
            ..self
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
