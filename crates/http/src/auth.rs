//! The auth middleware in front of every HTTP face. It runs after routing, so
//! it knows which route matched: the access that route declared (see
//! `routes`) decides, and its owner's envelope renders the 401 or 403. A path
//! that matches no route needs nothing: the 404 fallback reads no model and
//! says nothing but that the path is unknown. The credential itself is checked
//! by `inferd_auth::Auth`, which the gRPC face shares.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use inferd_auth::Auth;
use inferd_core::CoreError;

use crate::routes::{Face, RouteTable};
use crate::Compat;
use crate::{
    dashboard, gateway, kserve_v1, openai, pinferencia, services, tgi, unified, v2, zstack,
};

/// What the middleware reads: the credentials, the routes' declarations, and
/// the `--compat` mode that decides who owns the shared routes.
#[derive(Clone)]
pub struct Guard {
    /// `None` lets every request through (face tests).
    auth: Option<Arc<Auth>>,
    compat: Compat,
    table: Arc<RouteTable>,
}

impl Guard {
    pub fn new(auth: Option<Arc<Auth>>, compat: Compat, table: Arc<RouteTable>) -> Guard {
        Guard {
            auth,
            compat,
            table,
        }
    }
}

/// The middleware.
pub async fn check(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    let Some(auth) = &guard.auth else {
        return next.run(req).await;
    };
    let Some(route) = req.extensions().get::<MatchedPath>() else {
        return next.run(req).await;
    };
    let (access, face) = guard.table.access(req.method(), route.as_str());
    let Some(needed) = access.role() else {
        return next.run(req).await;
    };
    let action = format!("{} {}", req.method(), req.uri().path());
    match auth.authorize(req.headers(), needed, &action).await {
        Ok(()) => next.run(req).await,
        Err(denied) => refusal(face.owner(guard.compat), denied),
    }
}

/// An auth failure as `face` renders errors; a 401 also names the scheme.
fn refusal(face: Face, e: CoreError) -> Response {
    let mut res = match face {
        Face::ZStack => zstack::ZsError::from(e).into_response(),
        Face::Services => services::ServiceError::from(e).into_response(),
        Face::Unified => unified::UnifiedError::from(e).into_response(),
        Face::Tgi => tgi::TgiError::from(e).into_response(),
        Face::OpenAi => openai::OpenAiError::from(e).into_response(),
        Face::Gateway => gateway::GatewayError::from(e).into_response(),
        Face::Pinferencia => pinferencia::Detail::from(e).into_response(),
        Face::V2 => v2::V2Error::from(e).into_response(),
        Face::Ops => dashboard::refused(e),
        Face::KserveV1 | Face::ByCompat | Face::ByCompatV2 => {
            kserve_v1::V1Error::from(e).into_response()
        }
    };
    if res.status() == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"inferd\""),
        );
    }
    res
}

#[cfg(test)]
mod tests;
