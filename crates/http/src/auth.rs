//! The auth check in front of every HTTP face (`edge::inner` calls it). It
//! runs after routing, so it knows which route matched: the access that route declared (see
//! `routes`) decides, and its owner's envelope renders the 401 or 403. A path
//! that matches no route needs nothing: the 404 fallback reads no model and
//! says nothing but that the path is unknown. The credential itself is checked
//! by `inferd_auth::Auth`, which the gRPC face shares.

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use inferd_auth::Auth;
use inferd_core::CoreError;

use crate::routes::{Access, Face};
use crate::{
    dashboard, gateway, kserve_v1, openai, pinferencia, services, tgi, unified, v2, zstack,
};

/// Lets a request through, or answers why not. `auth` is `None` when the
/// server has no keys (face tests); `route` is the access the matched route
/// declared and the face that owns it under `--compat`, `None` when no route
/// matched. It takes the head's parts, not the request: a reference to the
/// body would make the future not `Send`.
pub async fn admit(
    auth: Option<&Auth>,
    route: Option<(Access, Face)>,
    (method, uri, headers): (&Method, &Uri, &HeaderMap),
) -> Result<(), Response> {
    let (Some(auth), Some((access, face))) = (auth, route) else {
        return Ok(());
    };
    let Some(needed) = access.role() else {
        return Ok(());
    };
    let action = format!("{method} {}", uri.path());
    auth.authorize(headers, needed, &action)
        .await
        .map_err(|denied| refusal(face, denied))
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
