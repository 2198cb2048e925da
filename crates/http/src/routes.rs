//! Routes that say who may call them. Every face registers its routes through
//! `Routes`, whose only way to add one takes the access it needs beside the
//! handler, so the role is written where the route is; the table it builds is
//! what the auth middleware reads, keyed by the route axum matched rather than
//! by guessing from the path. Each route also records the face that owns it,
//! whose envelope renders its 401 and 403.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::extract::Request;
use axum::handler::Handler;
use axum::http::Method;
use axum::response::IntoResponse;
use axum::routing::{self, MethodRouter, Route};
use axum::Router;
use inferd_auth::Role;
use tower::{Layer, Service};

use crate::{AppState, Compat};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, with or without a credential: the health probes, metrics,
    /// ZStack login and session validity, CORS preflights.
    Open,
    /// Lists and reads.
    Read,
    /// Also infers.
    User,
    /// Also manages models, caches, services and the catalog.
    Admin,
}

impl Access {
    /// The least role that may call; `None` when no credential is needed.
    pub fn role(self) -> Option<Role> {
        match self {
            Access::Open => None,
            Access::Read => Some(Role::Read),
            Access::User => Some(Role::User),
            Access::Admin => Some(Role::Admin),
        }
    }
}

/// The face whose error envelope answers a route's refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    KserveV1,
    Pinferencia,
    V2,
    Unified,
    OpenAi,
    Gateway,
    Tgi,
    ZStack,
    Services,
    /// The model list and status that KServe V1 and Pinferencia both claim:
    /// `--compat` picks which one answers them, so it picks whose errors too.
    ByCompat,
    /// The /v2 routes OIP V2 and Pinferencia's kserve API both claim.
    ByCompatV2,
    /// The server's own pages: the dashboard and the API description.
    Ops,
}

impl Face {
    /// Every face, in declaration order (`face as usize` indexes it).
    pub const ALL: [Face; 12] = [
        Face::KserveV1,
        Face::Pinferencia,
        Face::V2,
        Face::Unified,
        Face::OpenAi,
        Face::Gateway,
        Face::Tgi,
        Face::ZStack,
        Face::Services,
        Face::ByCompat,
        Face::ByCompatV2,
        Face::Ops,
    ];

    /// Its `face` label in `/metrics`.
    pub fn name(self) -> &'static str {
        match self {
            Face::KserveV1 => "kserve_v1",
            Face::Pinferencia => "pinferencia",
            Face::V2 => "v2",
            Face::Unified => "inference",
            Face::OpenAi => "openai",
            Face::Gateway => "generate",
            Face::Tgi => "tgi",
            Face::ZStack => "zstack",
            Face::Services => "services",
            Face::ByCompat | Face::ByCompatV2 => "shared",
            Face::Ops => "ops",
        }
    }

    /// The face that answers under `compat`.
    pub fn owner(self, compat: Compat) -> Face {
        match (self, compat) {
            (Face::ByCompat, Compat::Kserve) => Face::KserveV1,
            (Face::ByCompat | Face::ByCompatV2, Compat::Pinferencia) => Face::Pinferencia,
            (Face::ByCompatV2, Compat::Kserve) => Face::V2,
            (face, _) => face,
        }
    }
}

/// One method on one route, as declared.
#[derive(Debug, Clone)]
pub struct Declared {
    pub method: Method,
    /// The route as axum spells it (`/v2/models/{model}/infer`).
    pub path: &'static str,
    pub access: Access,
    pub face: Face,
}

/// A face's routes and what each declares.
pub struct Routes {
    face: Face,
    router: Router<AppState>,
    declared: Vec<Declared>,
}

impl Routes {
    /// Routes owned by `face`.
    pub fn new(face: Face) -> Routes {
        Routes {
            face,
            router: Router::new(),
            declared: Vec::new(),
        }
    }

    /// `GET` (and so `HEAD`) on `path` runs `handler` for callers with `access`.
    pub fn get<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Routes {
        self.add(Method::GET, path, access, routing::get(handler))
    }

    pub fn post<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Routes {
        self.add(Method::POST, path, access, routing::post(handler))
    }

    pub fn put<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Routes {
        self.add(Method::PUT, path, access, routing::put(handler))
    }

    pub fn delete<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Routes {
        self.add(Method::DELETE, path, access, routing::delete(handler))
    }

    pub fn options<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Routes {
        self.add(Method::OPTIONS, path, access, routing::options(handler))
    }

    fn add(
        mut self,
        method: Method,
        path: &'static str,
        access: Access,
        handler: MethodRouter<AppState>,
    ) -> Routes {
        self.router = self.router.route(path, handler);
        self.declared.push(Declared {
            method,
            path,
            access,
            face: self.face,
        });
        self
    }

    /// Adds another face's routes; each keeps its own owner.
    pub fn merge(mut self, other: Routes) -> Routes {
        self.router = self.router.merge(other.router);
        self.declared.extend(other.declared);
        self
    }

    /// Wraps the routes added so far in `layer`, as `Router::layer` does.
    pub fn layer<L>(mut self, layer: L) -> Routes
    where
        L: Layer<Route> + Clone + Send + Sync + 'static,
        L::Service: Service<Request> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as Service<Request>>::Error: Into<Infallible> + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        self.router = self.router.layer(layer);
        self
    }

    /// The router, and the table the auth middleware reads.
    pub fn into_parts(self) -> (Router<AppState>, RouteTable) {
        let mut by_path: HashMap<&'static str, Vec<Declared>> = HashMap::new();
        for d in self.declared {
            by_path.entry(d.path).or_default().push(d);
        }
        (self.router, RouteTable { by_path })
    }
}

/// What every route declared, by the path axum matched.
#[derive(Debug)]
pub struct RouteTable {
    by_path: HashMap<&'static str, Vec<Declared>>,
}

impl RouteTable {
    /// The declaration of `method` on the matched route `path`; `HEAD` falls
    /// back to `GET`, which axum serves it with.
    pub fn find(&self, method: &Method, path: &str) -> Option<&Declared> {
        let on = self.by_path.get(path)?;
        let exact = |m: &Method| on.iter().find(|d| d.method == *m);
        match exact(method) {
            None if *method == Method::HEAD => exact(&Method::GET),
            found => found,
        }
    }

    /// Who may call `method` on the matched route `path`, and whose envelope
    /// refuses it. A method the route does not declare (axum answers it 405,
    /// unless it was registered around `Routes`) needs `admin`, in the
    /// envelope of the face that owns the path.
    pub fn access(&self, method: &Method, path: &str) -> (Access, Face) {
        if let Some(d) = self.find(method, path) {
            return (d.access, d.face);
        }
        let face = self
            .by_path
            .get(path)
            .and_then(|on| on.first())
            .map_or(Face::KserveV1, |d| d.face);
        (Access::Admin, face)
    }

    /// Every declaration: the API description and the tests that walk the router.
    pub fn iter(&self) -> impl Iterator<Item = &Declared> {
        self.by_path.values().flatten()
    }
}
