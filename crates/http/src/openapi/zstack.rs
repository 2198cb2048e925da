//! ZStack's face (seed 001): the model-service catalog under
//! `/zstack/v1/ai/model-services`, its async jobs under `/zstack/v1/api-jobs`,
//! and account sessions under `/zstack/v1/accounts`.
#![allow(dead_code)]

use axum::http::Method;
use serde_json::Value;
use utoipa::ToSchema;

use super::{op, Doc};

/// ZStack's `ErrorCode`.
#[derive(ToSchema)]
struct ZsErrorCode {
    /// SYS.1000 internal, SYS.1001 timeout, SYS.1002 conflict on create,
    /// SYS.1003 not found, SYS.1005 state conflict, SYS.1007 bad argument,
    /// SYS.1010 not ready, ID.1000 login failed, ID.1001 bad session or key,
    /// ID.1002 permission denied.
    code: String,
    description: String,
    /// What exactly was wrong.
    details: String,
    /// Always null.
    elaboration: Option<String>,
    /// Always null.
    opaque: Option<Value>,
    /// The error that caused this one; always null.
    cause: Option<Value>,
}

/// ZStack's error envelope.
#[derive(ToSchema)]
pub struct ZsError {
    /// Always false.
    success: bool,
    error: ZsErrorCode,
}

/// A model ↔ service binding.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
struct ZsModelServiceRef {
    uuid: String,
    /// The repository model's name.
    model_uuid: String,
    model_service_uuid: String,
}

/// What a recipe says, as stored and as set: the fields a query answers
/// (all of them unless `fields` picked some) and a create or update sets.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
struct ZsRecipe {
    description: Option<String>,
    readme: Option<String>,
    /// The service's parameters (inferd's model configuration).
    yaml: Option<String>,
    /// Non-negative.
    request_cpu: Option<i64>,
    /// Bytes, non-negative.
    request_memory: Option<i64>,
    model_center_uuid: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    framework: Option<String>,
    source: Option<String>,
    /// Bytes.
    size: Option<i64>,
    system: Option<bool>,
    has_new_version: Option<bool>,
    gpu_compute_capability: Option<String>,
    install_path: Option<String>,
    python_version: Option<String>,
    conda_version: Option<String>,
    version: Option<String>,
    start_command: Option<String>,
    container_command: Option<String>,
    container_args: Option<String>,
    support_distributed: Option<bool>,
    /// A JSON list (or object).
    cpu_architectures: Option<Value>,
    /// A JSON object (or list).
    vendor_to_spec_uuids_map: Option<Value>,
    /// A JSON list (or object).
    model_service_images: Option<Value>,
}

/// A model service: a runnable serving recipe. Every field is present (null
/// where unknown) unless `fields` picked some.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
struct ZsModelService {
    /// 32 hex digits.
    uuid: Option<String>,
    name: Option<String>,
    #[serde(flatten)]
    recipe: ZsRecipe,
    model_service_refs: Option<Vec<ZsModelServiceRef>>,
    /// Gson's form: `Jan 26, 2026 10:00:00 AM` (UTC).
    create_date: Option<String>,
    last_op_date: Option<String>,
}

/// A query's answer: `inventories`, `total` with `count=true`, both with
/// `replyWithCount=true`.
#[derive(ToSchema)]
struct ZsQueryReply {
    inventories: Option<Vec<ZsModelService>>,
    /// Matches, paging aside.
    total: Option<u64>,
    /// True.
    success: bool,
    /// Null.
    error: Option<ZsErrorCode>,
}

/// A model service's fields to set. Unknown fields are refused; null clears
/// a field; the dates are the server's.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
struct ZsModelServiceFields {
    /// On create only: 32 hex digits (one is made when absent).
    uuid: Option<String>,
    /// Required on create; non-empty.
    name: Option<String>,
    #[serde(flatten)]
    recipe: ZsRecipe,
    /// The models it serves: names, or `{"modelUuid": <name>}` objects
    /// (replaces the refs).
    model_service_refs: Option<Vec<Value>>,
    /// The same as `modelServiceRefs` (give one of the two).
    model_uuids: Option<Vec<Value>>,
}

#[derive(ToSchema)]
struct ZsCreateRequest {
    params: ZsModelServiceFields,
}

/// Runs the recipe as an inference service: the services API's create
/// fields, with the recipe's framework, cpu, memory and description by default.
#[derive(ToSchema)]
struct ZsDeployArgs {
    /// The model, one of the recipe's refs (its first when absent).
    #[serde(rename = "modelUuid")]
    model_uuid: Option<String>,
    /// The service's name, 1 to 128 characters.
    name: String,
    /// The recipe's framework, cpu, memory and description by default.
    #[serde(flatten)]
    deployment: super::services::ServicesDeployment,
}

/// Exactly one action.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
struct ZsActionRequest {
    update_model_service: Option<ZsModelServiceFields>,
    deploy_model_service: Option<ZsDeployArgs>,
}

/// Where the change's result waits (also the Location header). Send
/// `X-Job-UUID` (32 hex digits) to choose the job's id, and `X-Web-Hook` to
/// have the result POSTed to an allowed host.
#[derive(ToSchema)]
struct ZsAccepted {
    /// `http://<host>/zstack/v1/api-jobs/<uuid>`.
    location: String,
}

/// A change's answer.
#[derive(ToSchema)]
struct ZsJobResult {
    /// The model service made or changed, or the inference service deployed
    /// (the services API's record); absent after a delete.
    inventory: Option<Value>,
    /// True.
    success: bool,
    /// Null.
    error: Option<ZsErrorCode>,
}

#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
struct ZsLogin {
    account_name: String,
    /// Plain, or its SHA-512 in hex as ZStack's SDKs send it.
    password: String,
}

/// `logInByAccount`, or `logIn` as ZStack's older manual names it.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
struct ZsLoginRequest {
    log_in_by_account: Option<ZsLogin>,
    log_in: Option<ZsLogin>,
}

#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
struct ZsSession {
    /// Send it as `Authorization: OAuth <uuid>`.
    uuid: String,
    account_uuid: String,
    /// Always null.
    user_uuid: Option<String>,
    /// Gson's form, UTC.
    expired_date: String,
    create_date: String,
}

#[derive(ToSchema)]
struct ZsLoginReply {
    inventory: ZsSession,
    /// True.
    success: bool,
    /// Null.
    error: Option<ZsErrorCode>,
}

#[derive(ToSchema)]
struct ZsReply {
    /// True.
    success: bool,
    /// Null.
    error: Option<ZsErrorCode>,
}

#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
struct ZsValidReply {
    /// Whether the session exists and has not expired.
    valid_session: bool,
    success: bool,
    error: Option<ZsErrorCode>,
}

const Q: &str = "A condition `field<op>value`, repeatable (ANDed): ops !=, >=, <=, !?=, !~=, ~=, ?=, =, >, <, and `field is null`, `field not null`";
const LIMIT: &str = "Most inventories to answer (default 1000)";
const START: &str = "Inventories to skip (default 0)";
const COUNT: &str = "true: answer only the number of matches, as `total`";
const WITH_COUNT: &str = "true: answer `total` beside the inventories";
const SORT: &str = "`+field` or `-field` (ascending or descending)";
const SORT_BY: &str = "The field to sort by";
const SORT_DIRECTION: &str = "asc or desc (needs sortBy)";
const FIELDS: &str = "Comma-separated fields to keep in each inventory";
/// A query's paging, order and fields.
const PAGING: [(&str, &str); 8] = [
    ("limit", LIMIT),
    ("start", START),
    ("count", COUNT),
    ("replyWithCount", WITH_COUNT),
    ("sort", SORT),
    ("sortBy", SORT_BY),
    ("sortDirection", SORT_DIRECTION),
    ("fields", FIELDS),
];

pub fn docs() -> Vec<Doc> {
    vec![
        op(
            Method::GET,
            "/zstack/v1/ai/model-services",
            "Query the model services",
        )
        .query("q", Q)
        .queries(&PAGING)
        .ok::<ZsQueryReply>(),
        op(
            Method::POST,
            "/zstack/v1/ai/model-services",
            "Add a model service (202 and a job to poll)",
        )
        .body::<ZsCreateRequest>()
        .status(202)
        .ok::<ZsAccepted>(),
        op(
            Method::GET,
            "/zstack/v1/ai/model-services/{uuid}",
            "One model service (an empty list when unknown)",
        )
        .queries(&PAGING)
        .ok::<ZsQueryReply>(),
        op(
            Method::DELETE,
            "/zstack/v1/ai/model-services/{uuid}",
            "Delete a model service (202 and a job to poll)",
        )
        .query(
            "deleteMode",
            "Permissive or Enforcing (both delete at once)",
        )
        .status(202)
        .ok::<ZsAccepted>(),
        op(
            Method::PUT,
            "/zstack/v1/ai/model-services/{uuid}/actions",
            "Update a model service, or deploy it as an inference service (202 and a job)",
        )
        .body::<ZsActionRequest>()
        .status(202)
        .ok::<ZsAccepted>(),
        op(
            Method::GET,
            "/zstack/v1/api-jobs/{uuid}",
            "A change's result: 200, or 503 with its error; 404 once expired",
        )
        .ok::<ZsJobResult>()
        .also::<ZsError>(503, "the change failed"),
        op(
            Method::PUT,
            "/zstack/v1/accounts/login",
            "Log in with an account: a session uuid for `Authorization: OAuth <uuid>`",
        )
        .body::<ZsLoginRequest>()
        .ok::<ZsLoginReply>(),
        op(
            Method::DELETE,
            "/zstack/v1/accounts/sessions/{uuid}",
            "Log out a session",
        )
        .ok::<ZsReply>(),
        op(
            Method::GET,
            "/zstack/v1/accounts/sessions/{uuid}/valid",
            "Whether a session is valid",
        )
        .ok::<ZsValidReply>(),
    ]
}
