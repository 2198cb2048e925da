//! OpenAPI 3.1 for every REST face, at `GET /openapi.json`, with Swagger UI
//! at `/docs`. The document is built from the route table, so every route
//! the server serves is in it with the method, path parameters, credential
//! and error envelope its declaration gives; what a route takes and answers
//! comes from its `Doc` in this module's per-face files, whose schemas are
//! utoipa derives. A test walks the table and the docs both ways, so a route
//! without a doc (or a doc without a route) fails the build's tests.

mod common;
mod gateway;
mod kserve_v1;
mod openai;
mod ops;
mod pinferencia;
mod services;
mod tgi;
mod unified;
mod v2;
mod zstack;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::{ResponseBuilder, ResponsesBuilder};
use utoipa::openapi::schema::{ComponentsBuilder, Object, Schema, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Paths, Ref, RefOr, Required,
};
use utoipa::ToSchema;

use crate::routes::{Access, Face, RouteTable};
use crate::{AppState, Compat};

/// Component schemas gathered while building. A name must be one type
/// only: two faces' types of one name are recorded as a clash (a test
/// fails on any).
#[derive(Default)]
pub struct Schemas {
    named: BTreeMap<String, RefOr<Schema>>,
    clashes: Vec<String>,
}

/// Puts a type's schema (and those it refers to) into `Schemas`; kept as a
/// plain function so a `Doc` can hold it.
pub type SchemaFn = fn(&mut Schemas) -> RefOr<Schema>;

fn register<T: ToSchema>(into: &mut Schemas) -> RefOr<Schema> {
    let name = T::name().into_owned();
    let mut nested = Vec::new();
    T::schemas(&mut nested);
    nested.push((name.clone(), T::schema()));
    for (n, schema) in nested {
        if let Some(before) = into.named.insert(n.clone(), schema.clone()) {
            if serde_json::to_value(&before).ok() != serde_json::to_value(&schema).ok() {
                into.clashes.push(n);
            }
        }
    }
    RefOr::Ref(Ref::from_schema_name(name))
}

fn register_list<T: ToSchema>(into: &mut Schemas) -> RefOr<Schema> {
    let item = register::<T>(into);
    RefOr::T(Schema::Array(utoipa::openapi::schema::Array::new(item)))
}

/// What a body is.
#[derive(Clone, Copy)]
enum Content {
    Json(SchemaFn),
    /// Another media type, any content.
    Other(&'static str),
    None,
}

/// What one route takes and answers, written for the API description.
#[derive(Clone)]
pub struct Doc {
    method: Method,
    path: &'static str,
    summary: &'static str,
    body: Content,
    body_required: bool,
    ok_status: u16,
    ok: Content,
    /// Answers beside the success and the face's errors (a status, what it
    /// means, its body).
    also: Vec<(u16, &'static str, Content)>,
    query: Vec<(&'static str, &'static str, bool)>,
    /// Only under this `--compat` (the routes two faces share).
    compat: Option<Compat>,
}

/// A route's doc: `op(Method::GET, "/v2", "Server metadata")`.
pub fn op(method: Method, path: &'static str, summary: &'static str) -> Doc {
    Doc {
        method,
        path,
        summary,
        body: Content::None,
        body_required: false,
        ok_status: 200,
        ok: Content::None,
        also: Vec::new(),
        query: Vec::new(),
        compat: None,
    }
}

impl Doc {
    /// Takes a JSON body of `T`.
    pub fn body<T: ToSchema>(mut self) -> Doc {
        self.body = Content::Json(register::<T>);
        self.body_required = true;
        self
    }

    /// Takes a JSON body of `T`, or none.
    pub fn optional_body<T: ToSchema>(mut self) -> Doc {
        self.body = Content::Json(register::<T>);
        self.body_required = false;
        self
    }

    /// Answers `T` in JSON.
    pub fn ok<T: ToSchema>(mut self) -> Doc {
        self.ok = Content::Json(register::<T>);
        self
    }

    /// Answers a JSON array of `T`.
    pub fn ok_list<T: ToSchema>(mut self) -> Doc {
        self.ok = Content::Json(register_list::<T>);
        self
    }

    /// Answers a body of another media type (`text/plain`, `text/event-stream`).
    pub fn ok_as(mut self, media_type: &'static str) -> Doc {
        self.ok = Content::Other(media_type);
        self
    }

    /// Succeeds with `status` rather than 200.
    pub fn status(mut self, status: u16) -> Doc {
        self.ok_status = status;
        self
    }

    /// Also answers `status` with a JSON `T` (a 503 that is an answer, not an
    /// error: readiness).
    pub fn also<T: ToSchema>(mut self, status: u16, means: &'static str) -> Doc {
        self.also
            .push((status, means, Content::Json(register::<T>)));
        self
    }

    /// Also answers `status` with a body of another media type.
    pub fn also_as(mut self, status: u16, means: &'static str, media: &'static str) -> Doc {
        self.also.push((status, means, Content::Other(media)));
        self
    }

    /// Takes an optional query parameter.
    pub fn query(mut self, name: &'static str, description: &'static str) -> Doc {
        self.query.push((name, description, false));
        self
    }

    /// Takes each of `params` (name, description) as an optional query parameter.
    pub fn queries(mut self, params: &[(&'static str, &'static str)]) -> Doc {
        for (name, description) in params {
            self.query.push((name, description, false));
        }
        self
    }

    /// Only under `compat` (a shared route answers in one face's shape).
    pub fn under(mut self, compat: Compat) -> Doc {
        self.compat = Some(compat);
        self
    }
}

/// Every doc, each face's from its own file.
fn docs() -> Vec<Doc> {
    [
        common::docs(),
        v2::docs(),
        kserve_v1::docs(),
        pinferencia::docs(),
        unified::docs(),
        gateway::docs(),
        tgi::docs(),
        openai::docs(),
        services::docs(),
        zstack::docs(),
        ops::docs(),
    ]
    .concat()
}

/// The envelope a face answers errors in.
fn envelope(face: Face) -> SchemaFn {
    match face {
        Face::V2 | Face::KserveV1 | Face::Ops | Face::ByCompat | Face::ByCompatV2 => {
            register::<common::Error>
        }
        Face::Pinferencia => register::<pinferencia::Detail>,
        Face::Unified => register::<unified::UnifiedError>,
        Face::OpenAi => register::<openai::OpenAiError>,
        Face::Gateway => register::<gateway::GatewayError>,
        Face::Tgi => register::<tgi::TgiError>,
        Face::Services => register::<services::ServiceError>,
        Face::ZStack => register::<zstack::ZsError>,
    }
}

fn http_method(m: &Method) -> HttpMethod {
    match *m {
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::DELETE => HttpMethod::Delete,
        Method::OPTIONS => HttpMethod::Options,
        Method::PATCH => HttpMethod::Patch,
        Method::HEAD => HttpMethod::Head,
        _ => HttpMethod::Get,
    }
}

fn content(body: Content, schemas: &mut Schemas) -> Option<(String, utoipa::openapi::Content)> {
    match body {
        Content::Json(schema) => Some((
            "application/json".into(),
            ContentBuilder::new().schema(Some(schema(schemas))).build(),
        )),
        // No schema: an event stream or a page is not one JSON value.
        Content::Other(media) => Some((media.into(), ContentBuilder::new().build())),
        Content::None => None,
    }
}

fn response(means: &str, body: Content, schemas: &mut Schemas) -> utoipa::openapi::Response {
    let mut r = ResponseBuilder::new().description(means);
    if let Some((media, c)) = content(body, schemas) {
        r = r.content(media, c);
    }
    r.build()
}

/// The path parameters of an axum route (`{model}`), in order.
fn path_parameters(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|p| p.trim_start_matches('*'))
        .collect()
}

/// An operation id from the method and path: `post_v2_models_model_infer`.
fn operation_id(method: &Method, path: &str) -> String {
    let mut id = method.as_str().to_ascii_lowercase();
    for part in path.split(|c: char| !c.is_ascii_alphanumeric()) {
        if !part.is_empty() {
            id.push('_');
            id.push_str(part);
        }
    }
    // `/docs` and `/docs/` are two routes.
    if path.len() > 1 && path.ends_with('/') {
        id.push_str("_index");
    }
    id
}

/// The document for a server under `compat`.
pub fn document(table: &RouteTable, compat: Compat) -> OpenApi {
    build(table, compat).0
}

/// The document and the schema names that clashed while building it.
fn build(table: &RouteTable, compat: Compat) -> (OpenApi, Vec<String>) {
    let docs: Vec<Doc> = docs()
        .into_iter()
        .filter(|d| d.compat.is_none_or(|c| c == compat))
        .collect();
    let mut schemas = Schemas::default();
    let mut paths = Paths::new();
    for declared in table.iter() {
        let Some(doc) = docs
            .iter()
            .find(|d| d.method == declared.method && d.path == declared.path)
        else {
            continue;
        };
        let face = declared.face.owner(compat);
        let mut op = OperationBuilder::new()
            .summary(Some(doc.summary))
            .operation_id(Some(operation_id(&doc.method, doc.path)))
            .tag(face.name());
        for name in path_parameters(doc.path) {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(Object::with_type(Type::String))),
            );
        }
        for (name, description, required) in &doc.query {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(*name)
                    .parameter_in(ParameterIn::Query)
                    .description(Some(*description))
                    .required(if *required {
                        Required::True
                    } else {
                        Required::False
                    })
                    .schema(Some(Object::with_type(Type::String))),
            );
        }
        if let Some((media, c)) = content(doc.body, &mut schemas) {
            op = op.request_body(Some(
                RequestBodyBuilder::new()
                    .content(media, c)
                    .required(Some(if doc.body_required {
                        Required::True
                    } else {
                        Required::False
                    }))
                    .build(),
            ));
        }
        let errors = envelope(face);
        let mut responses = ResponsesBuilder::new().response(
            doc.ok_status.to_string(),
            response("success", doc.ok, &mut schemas),
        );
        for (status, means, body) in &doc.also {
            responses =
                responses.response(status.to_string(), response(means, *body, &mut schemas));
        }
        let refused = response(
            "an error in this face's envelope: 400 bad input, 401/403 credentials, 404 unknown, 413 too large, 503 not ready or overloaded, 504 timed out",
            Content::Json(errors),
            &mut schemas,
        );
        op = op.responses(responses.response("default", refused).build());
        if declared.access != Access::Open {
            op = op.securities(Some([
                SecurityRequirement::new("bearer", Vec::<String>::new()),
                SecurityRequirement::new("apiKey", Vec::<String>::new()),
                SecurityRequirement::new("zstackSession", Vec::<String>::new()),
            ]));
        }
        // OpenAPI has no catch-all parameter: axum's `{*file}` is `{file}`.
        let path = doc.path.replace("{*", "{");
        paths.add_path_operation(path, vec![http_method(&doc.method)], op.build());
    }
    let components = ComponentsBuilder::new()
        .schemas_from_iter(schemas.named)
        .security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key made with `inferd keys create`"))
                    .build(),
            ),
        )
        .security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "The same API key, in its own header",
            ))),
        )
        .security_scheme(
            "zstackSession",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`OAuth <session uuid>` from PUT /zstack/v1/accounts/login",
            ))),
        )
        .build();
    let doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("inferd")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Every REST face of this server: Open Inference Protocol V2 (KServe V2, Triton's extensions), KServe V1, Pinferencia, the unified /inference API, the text-generation gateway, TGI, OpenAI, inference services and ZStack's model-service catalog. Routes needing a credential say so; a server with no keys made serves them open on loopback.",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(components))
        .build();
    (doc, schemas.clashes)
}

/// The document, rendered once when the router is built.
#[derive(Clone, Default)]
pub struct Published(Arc<std::sync::OnceLock<bytes::Bytes>>);

impl Published {
    pub fn set(&self, doc: &OpenApi) {
        let json = serde_json::to_vec(doc).expect("the OpenAPI document serialises");
        let _ = self.0.set(json.into());
    }
}

async fn openapi_json(State(app): State<AppState>) -> Response {
    let body = app.openapi.0.get().cloned().unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// Swagger UI's configuration: our document, and no call to swagger.io's
/// validator (the page must work offline).
fn swagger_config() -> Arc<utoipa_swagger_ui::Config<'static>> {
    Arc::new(utoipa_swagger_ui::Config::from("/openapi.json").validator_url("none"))
}

async fn swagger_file(file: &str) -> Response {
    match utoipa_swagger_ui::serve(file, swagger_config()) {
        // Never gzipped: that needs the crate's `gzip` feature, not built.
        Ok(Some(f)) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::try_from(f.content_type)
                        .unwrap_or(HeaderValue::from_static("application/octet-stream")),
                ),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
                (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            ],
            f.bytes.into_owned(),
        )
            .into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"error": format!("no file /docs/{file}")})),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(serde_json::json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

/// The document and Swagger UI, open like the health probes: they describe
/// the API, not what it serves.
pub fn routes() -> crate::routes::Routes {
    crate::routes::Routes::new(Face::Ops)
        .get("/openapi.json", Access::Open, openapi_json)
        .get("/docs", Access::Open, docs_page)
        .get("/docs/", Access::Open, docs_index)
        .get("/docs/{*file}", Access::Open, docs_file)
}

/// `/docs` itself: its relative links need the trailing slash.
async fn docs_page() -> Response {
    (
        StatusCode::PERMANENT_REDIRECT,
        [(header::LOCATION, HeaderValue::from_static("/docs/"))],
    )
        .into_response()
}

async fn docs_index() -> Response {
    swagger_file("index.html").await
}

async fn docs_file(Path(file): Path<String>) -> Response {
    swagger_file(&file).await
}

#[cfg(test)]
mod tests;
