//! Static resources of DHIS2's `dhis-web-commons-resources` that the d2-ui header bar loads,
//! and the Spring Security logout URL its profile menu links to:
//!
//! - `/icons/{program,function-profile,function-account,function-about-dhis2,usersettings}.png`
//!   (the app and profile menu icons; behind the login, as on DHIS2);
//! - `/dhis-web-commons/css/light_blue/logo_banner.png` (where `/api/staticContent/logo_banner`
//!   redirects), `/dhis-web-commons/security/logo_front.png` and
//!   `/dhis-web-commons/css/themes/light_blue/light_blue.css` (public, as on DHIS2);
//! - `/dhis-web-commons-security/logout.action` (any method, no login needed): ends the
//!   session of the request's `JSESSIONID`, deletes the cookie and redirects to `/`, as
//!   DHIS2's `logoutUrl(…).logoutSuccessUrl("/").deleteCookies("JSESSIONID")`.
//!
//! The files are DHIS2's own (2.40.0, BSD-3-Clause, see `assets/dhis-web-commons-resources/LICENSE`).

use axum::{
    extract::{Path, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    middleware,
    response::{IntoResponse, Response},
    routing::{any, get},
    Router,
};

use crate::{auth, error::ApiError, state::AppState};

/// The Spring Security logout URL of DHIS2 (the header bar's "Log out" link).
pub const LOGOUT_PATH: &str = "/dhis-web-commons-security/logout.action";

macro_rules! asset {
    ($path:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/dhis-web-commons-resources/", $path))
    };
}

/// The icons under `/icons/`: file name and PNG bytes.
pub const ICONS: &[(&str, &[u8])] = &[
    ("program.png", asset!("icons/program.png")),
    ("function-profile.png", asset!("icons/function-profile.png")),
    ("function-account.png", asset!("icons/function-account.png")),
    ("function-about-dhis2.png", asset!("icons/function-about-dhis2.png")),
    ("usersettings.png", asset!("icons/usersettings.png")),
];

/// Public files: path, content type, bytes.
const PUBLIC_FILES: &[(&str, &str, &[u8])] = &[
    (
        "/dhis-web-commons/css/light_blue/logo_banner.png",
        "image/png",
        asset!("dhis-web-commons/css/light_blue/logo_banner.png"),
    ),
    ("/dhis-web-commons/security/logo_front.png", "image/png", asset!("dhis-web-commons/security/logo_front.png")),
    (
        "/dhis-web-commons/css/themes/light_blue/light_blue.css",
        "text/css;charset=UTF-8",
        asset!("dhis-web-commons/css/themes/light_blue/light_blue.css"),
    ),
];

/// The routes of this module (the icons with authentication, the rest without).
pub fn routes(state: AppState) -> Router<AppState> {
    let mut router = Router::new()
        .route("/icons/{file}", get(icon))
        .layer(middleware::from_fn_with_state(state, auth::require_auth))
        .route(LOGOUT_PATH, any(logout));
    for (path, content_type, bytes) in PUBLIC_FILES {
        router = router.route(path, get(move || async move { file_response(content_type, bytes) }));
    }
    router
}

fn file_response(content_type: &'static str, bytes: &'static [u8]) -> Response {
    let mut response = (StatusCode::OK, bytes).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

async fn icon(Path(file): Path<String>) -> Result<Response, ApiError> {
    ICONS
        .iter()
        .find(|(name, _)| *name == file)
        .map(|(_, bytes)| file_response("image/png", bytes))
        .ok_or_else(|| ApiError::NotFound(format!("No handler found for GET /icons/{file}")))
}

/// `/dhis-web-commons-security/logout.action`: ends the session(s) of the request's cookies,
/// deletes `JSESSIONID` and sends the browser to `/` (302). Without a session it does the same.
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    for id in auth::session_cookies(&headers) {
        state.sessions().remove(&id);
    }
    let mut response = StatusCode::FOUND.into_response();
    response.headers_mut().insert(header::LOCATION, HeaderValue::from_static("/"));
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("JSESSIONID=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:10 GMT; Path=/"),
    );
    response
}
