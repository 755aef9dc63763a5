//! User and system settings, instance-wide custom script and style, and the small endpoints
//! the DHIS2 header bar calls: `/api/userSettings`, `/api/systemSettings`,
//! `/api/files/script|style`, `POST /api/i18n`, `/api/apps`, `/api/staticContent/{key}`.
//!
//! User settings live in the `user_settings` table (one row per user and key); system
//! settings, including `keyCustomJs` and `keyCustomCss` behind `/api/files/*`, in `settings`.
//!
//! About 600 lines: the header bar's small endpoints are one family (each reads or writes a
//! setting) and share their checks; no part of it stands alone.

use axum::{
    body::Body,
    extract::{Path, Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Map, Value};

use super::Params;
use crate::{
    auth::{self, CurrentUser},
    db,
    error::{json_response, ApiError, WebMessage},
    state::AppState,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS user_settings (
    user_uid TEXT NOT NULL,
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (user_uid, key)
);
";

/// Creates this module's table if missing (called where the database is opened).
pub fn create_tables(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

/// User settings every user has unless changed (DHIS2's `UserSettingKey` defaults).
pub const USER_SETTING_DEFAULTS: &[(&str, &str)] = &[
    ("keyUiLocale", "\"en\""),
    ("keyDbLocale", "\"en\""),
    ("keyStyle", "\"light_blue/light_blue.css\""),
    ("keyAnalysisDisplayProperty", "\"name\""),
    ("keyMessageEmailNotification", "true"),
    ("keyMessageSmsNotification", "true"),
];

/// System settings the simulator answers (DHIS2's defaults, calendar ISO 8601).
pub const SYSTEM_SETTING_DEFAULTS: &[(&str, &str)] = &[
    ("keyCalendar", "\"iso8601\""),
    ("keyDateFormat", "\"yyyy-MM-dd\""),
    ("keyGoogleMapsApiKey", "\"\""),
    ("keyBingMapsApiKey", "\"\""),
    ("applicationTitle", "\"DHIS2 simulator (tracker-offline)\""),
    ("keyApplicationTitle", "\"DHIS2 simulator (tracker-offline)\""),
    ("keyUiLocale", "\"en\""),
    ("keyDbLocale", "\"en\""),
    ("keyStyle", "\"light_blue/light_blue.css\""),
    ("keyAnalysisDisplayProperty", "\"name\""),
    ("keyCacheStrategy", "\"NO_CACHE\""),
    ("keyHideUnapprovedDataInAnalytics", "false"),
    ("keyAllowObjectAssignment", "false"),
    // Off by default, as DHIS2's `SettingKey.LOCK_MULTIPLE_FAILED_LOGINS` (see `auth::LoginLockout`).
    (KEY_LOCK_MULTIPLE_FAILED_LOGINS, "false"),
    // DHIS2's default (`SettingKey.HELP_PAGE_LINK`). The d2-ui header bar waits for it: d2's
    // `systemSettings.get` never settles when the request fails, and the bar stays hidden.
    ("helpPageLink", "\"https://dhis2.github.io/dhis2-docs/master/en/user/html/dhis2_user_manual_en.html\""),
];

/// English strings of DHIS2's `i18n_global.properties` (2.40) for the keys the d2-ui header bar
/// asks `POST /api/i18n` for (its menus, profile items and d2's schema names). Other keys
/// translate to themselves, as DHIS2 does for keys it has no string for.
pub const I18N_STRINGS: &[(&str, &str)] = &[
    ("settings", "Settings"),
    ("profile", "Profile"),
    ("account", "Account"),
    ("help", "Help"),
    ("log_out", "Log out"),
    ("about_dhis2", "About DHIS 2"),
    ("category_option", "Category option"),
    ("category", "Category"),
    ("category_combo", "Category combination"),
    ("category_option_combo", "Category option combination"),
    ("category_option_group", "Category option group"),
    ("category_option_group_set", "Category option group set"),
    ("data_element", "Data element"),
    ("data_element_group", "Data element group"),
    ("data_element_group_set", "Data element group set"),
    ("data_set", "Data set"),
    ("indicator", "Indicator"),
    ("indicator_type", "Indicator type"),
    ("indicator_group", "Indicator group"),
    ("indicator_group_set", "Indicator group set"),
    ("program_indicator", "Program indicator"),
    ("program_indicator_group", "Program indicator group"),
    ("organisation_unit", "Organisation unit"),
    ("organisation_unit_group", "Organisation unit group"),
    ("organisation_unit_group_set", "Organisation unit group set"),
    ("organisation_unit_level", "Organisation unit level"),
    ("program", "Program"),
    ("tracked_entity_attribute", "Tracked entity attribute"),
    ("tracked_entity_attribute_group", "Tracked entity attribute group"),
    ("relationship_type", "Relationship type"),
    ("tracked_entity", "Tracked entity"),
    ("program_rule", "Program rule"),
    ("program_rule_variable", "Program rule variable"),
    ("validation_rule", "Validation rule"),
    ("validation_rule_group", "Validation rule group"),
    ("validation_notification_template", "Validation notification template"),
    ("constant", "Constant"),
    ("attribute", "Attribute"),
    ("option_set", "Option set"),
    ("legend_set", "Legend set"),
    ("predictor", "Predictor"),
    ("push_analysis", "Push analysis"),
    ("external_map_layer", "External map layer"),
    ("data_approval_level", "Data approval level"),
    ("data_approval_workflow", "Data approval workflow"),
    ("general_settings", "General settings"),
    ("analytics_settings", "Analytics settings"),
    ("server_settings", "Server settings"),
    ("appearance_settings", "Appearance settings"),
    ("email_settings", "Email settings"),
    ("messaging_settings", "Messaging settings"),
    ("access_settings", "Access settings"),
    ("calendar_settings", "Calendar settings"),
    ("import_settings", "Import settings"),
    ("synchronization_settings", "Synchronization settings"),
    ("system_monitoring_settings", "System monitoring settings"),
    ("oauth2_clients", "OAuth2 clients"),
    ("no_results_found", "No results found"),
    ("manage_my_apps", "Manage my apps"),
    ("app_search_placeholder", "Search apps"),
];

/// System setting that turns on the temporary lockout after failed logins (DHIS2's
/// "Lock user account temporarily after multiple failed login attempts").
pub const KEY_LOCK_MULTIPLE_FAILED_LOGINS: &str = "keyLockMultipleFailedLogins";

/// The authority system setting writes need (or `ALL`).
pub const SYSTEM_SETTING_AUTHORITY: &str = "F_SYSTEM_SETTING";

/// System setting keys of the custom script and style (`/api/files/*`).
pub const KEY_CUSTOM_JS: &str = "keyCustomJs";
/// See [`KEY_CUSTOM_JS`].
pub const KEY_CUSTOM_CSS: &str = "keyCustomCss";

/// The authority `/api/files/*` writes need (or `ALL`).
pub const CUSTOM_JS_CSS_AUTHORITY: &str = "F_INSERT_CUSTOM_JS_CSS";

/// Routes of this module that need an authenticated user (under `/api`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/userSettings", get(user_settings))
        .route("/userSettings.json", get(user_settings))
        .route("/userSettings/{key}", get(user_setting).post(set_user_setting).delete(delete_user_setting))
        .route("/systemSettings", get(system_settings))
        .route("/systemSettings.json", get(system_settings))
        .route("/systemSettings/{key}", get(system_setting).post(set_system_setting).delete(delete_system_setting))
        .route("/i18n", post(i18n))
}

/// Routes of this module that need no login (under `/api`): `/api/staticContent/{key}`, as
/// DHIS2's security config permits it (the login page shows the logos).
pub fn public_routes() -> Router<AppState> {
    Router::new().route("/staticContent/{key}", get(static_content))
}

/// `/api/files/script` and `/api/files/style`, with their own authentication: an
/// unauthenticated request is a 401 WebMessage, never the login redirect, because they are
/// loaded by `<script>` and `<link>` tags where an HTML page would break the document.
/// `/api/files/style/external` needs no login, as in DHIS2.
pub fn files_routes(state: AppState) -> Router<AppState> {
    let protected = Router::new()
        .route("/files/script", get(get_script).post(post_script).delete(delete_script))
        .route("/files/style", get(get_style).post(post_style).delete(delete_style))
        .layer(middleware::from_fn_with_state(state, auth::require_auth))
        .layer(middleware::from_fn(as_xhr));
    Router::new().route("/files/style/external", get(get_style)).merge(protected)
}

/// Marks a request as XHR so that [`auth::require_auth`] answers 401, not a redirect.
async fn as_xhr(mut req: Request, next: Next) -> Response {
    req.headers_mut().insert("x-requested-with", HeaderValue::from_static("XMLHttpRequest"));
    next.run(req).await
}

fn parse_setting(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
}

/// The stored user settings of a user, raw.
fn stored_user_settings(conn: &Connection, user_uid: &str) -> rusqlite::Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare_cached("SELECT key, value FROM user_settings WHERE user_uid = ?1 ORDER BY key")?;
    let rows = stmt.query_map([user_uid], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// All settings of a user: defaults overridden by stored values.
fn all_user_settings(conn: &Connection, user_uid: &str) -> rusqlite::Result<Map<String, Value>> {
    let mut out: Map<String, Value> =
        USER_SETTING_DEFAULTS.iter().map(|(k, v)| ((*k).to_owned(), parse_setting(v))).collect();
    for (k, v) in stored_user_settings(conn, user_uid)? {
        out.insert(k, parse_setting(&v));
    }
    Ok(out)
}

fn select_keys(all: Map<String, Value>, params: &Params) -> Map<String, Value> {
    let keys: Vec<&str> =
        params.all("key").flat_map(|k| k.split(',')).map(str::trim).filter(|k| !k.is_empty()).collect();
    if keys.is_empty() {
        return all;
    }
    all.into_iter().filter(|(k, _)| keys.contains(&k.as_str())).collect()
}

fn no_cache(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    response
}

fn text_response(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A setting value as DHIS2 writes it in a `text/plain` answer (strings without quotes).
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `GET /api/userSettings[.json]?key=…`: `{key: value}` for the asked keys that have a value.
async fn user_settings(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    params: Params,
) -> Result<Response, ApiError> {
    let all = state.db().call(move |conn| Ok(all_user_settings(conn, &user.uid)?)).await?;
    Ok(no_cache(json_response(StatusCode::OK, &Value::Object(select_keys(all, &params)))))
}

/// `GET /api/userSettings/{key}`: the value as `text/plain`; 404 when the user has none.
async fn user_setting(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let k = key.clone();
    let all = state.db().call(move |conn| Ok(all_user_settings(conn, &user.uid)?)).await?;
    match all.get(&k).filter(|v| !v.is_null()) {
        Some(v) => Ok(no_cache(text_response(StatusCode::OK, "text/plain;charset=UTF-8", plain(v)))),
        None => Err(ApiError::NotFound(format!("User setting not found for key: {key}"))),
    }
}

/// `POST /api/userSettings/{key}` with `?value=` or the body as the value.
async fn set_user_setting(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(key): Path<String>,
    params: Params,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .map_err(|e| ApiError::BadRequest(format!("Cannot read request body: {e}")))?;
    let value = match params.get("value") {
        Some(v) => v.to_owned(),
        None => String::from_utf8_lossy(&bytes).into_owned(),
    };
    if value.trim().is_empty() {
        return Err(ApiError::Conflict("You need to specify a new value".into()));
    }
    // Store JSON as it came; anything else as a JSON string.
    let stored = if serde_json::from_str::<Value>(&value).is_ok() { value } else { json!(value).to_string() };
    state
        .db()
        .call(move |conn| {
            conn.execute(
                "INSERT INTO user_settings (user_uid, key, value) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(user_uid, key) DO UPDATE SET value = excluded.value",
                params![user.uid, key, stored],
            )?;
            Ok(())
        })
        .await?;
    Ok(WebMessage::ok(StatusCode::OK, "User setting saved").into_response())
}

/// `DELETE /api/userSettings/{key}`: back to the default.
async fn delete_user_setting(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    state
        .db()
        .call(move |conn| {
            conn.execute("DELETE FROM user_settings WHERE user_uid = ?1 AND key = ?2", params![user.uid, key])?;
            Ok(())
        })
        .await?;
    Ok(StatusCode::OK.into_response())
}

/// The system settings: defaults overridden by the values stored through
/// `POST /api/systemSettings/{key}` (kept in the `settings` table under their key).
fn all_system_settings(conn: &Connection) -> rusqlite::Result<Map<String, Value>> {
    let mut out = Map::new();
    for (key, default) in SYSTEM_SETTING_DEFAULTS {
        let value = db::get_setting(conn, key)?.unwrap_or_else(|| (*default).to_owned());
        out.insert((*key).to_owned(), parse_setting(&value));
    }
    Ok(out)
}

/// Whether `keyLockMultipleFailedLogins` is on.
pub fn lock_multiple_failed_logins(conn: &Connection) -> rusqlite::Result<bool> {
    Ok(db::get_setting(conn, KEY_LOCK_MULTIPLE_FAILED_LOGINS)?.is_some_and(|v| v == "true"))
}

/// `GET /api/systemSettings[.json]?key=…`: `{key: value}`.
async fn system_settings(
    State(state): State<AppState>,
    _user: CurrentUser,
    params: Params,
) -> Result<Response, ApiError> {
    let all = state.db().call(|conn| Ok(all_system_settings(conn)?)).await?;
    Ok(no_cache(json_response(StatusCode::OK, &Value::Object(select_keys(all, &params)))))
}

/// Whether a request's `Accept` header asks for `text/plain` before JSON or HTML (the two
/// `produces` of DHIS2's `SystemSettingController.getSystemSetting…`). Without either, JSON.
fn prefers_plain_text(headers: &HeaderMap) -> bool {
    let accept = headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
    for range in accept.split(',') {
        let mime = range.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match mime.as_str() {
            "text/plain" => return true,
            "application/json" | "text/html" => return false,
            _ => {}
        }
    }
    false
}

/// `GET /api/systemSettings/{key}`: as DHIS2, the value as `text/plain` when the client asks
/// for it (d2's `system.settings.get` does), else `{key: value}`. A key without a value (or
/// unknown) is an empty string, never a 404.
async fn system_setting(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let json_suffix = key.ends_with(".json");
    let key = super::legacy::strip_json(&key).to_owned();
    let mut all = state.db().call(|conn| Ok(all_system_settings(conn)?)).await?;
    let value = all.remove(&key).filter(|v| !v.is_null()).unwrap_or_else(|| json!(""));
    Ok(if !json_suffix && prefers_plain_text(&headers) {
        no_cache(text_response(StatusCode::OK, "text/plain;charset=UTF-8", plain(&value)))
    } else {
        no_cache(json_response(StatusCode::OK, &json!({ key: value })))
    })
}

/// The error for a key the simulator does not know: 409 `Key is not supported: k` up to 2.41
/// (`SystemSettingController`), 404 `Setting does not exist: k` on 2.42
/// (`SystemSettingsController.checkKeyExists`).
fn unknown_setting(state: &AppState, key: &str) -> ApiError {
    if state.version().minor >= 42 {
        ApiError::NotFound(format!("Setting does not exist: {key}"))
    } else {
        ApiError::Conflict(format!("Key is not supported: {key}"))
    }
}

/// Checks a write's authority (`ALL` or `F_SYSTEM_SETTING`) and key; returns the key's default.
async fn check_setting_write(state: &AppState, user: db::User, key: &str) -> Result<&'static str, ApiError> {
    let allowed = state.db().call(move |conn| Ok(has_authority(conn, &user, SYSTEM_SETTING_AUTHORITY)?)).await?;
    if !allowed {
        return Err(ApiError::Forbidden(format!(
            "Access is denied, requires one Authority from [{SYSTEM_SETTING_AUTHORITY}]"
        )));
    }
    SYSTEM_SETTING_DEFAULTS.iter().find(|(k, _)| *k == key).map(|(_, d)| *d).ok_or_else(|| unknown_setting(state, key))
}

/// `POST /api/systemSettings/{key}` with `?value=` or the value as the body (text, or JSON as
/// 2.42 takes it): 200 WebMessage `System setting 'k' set to value 'v'.` Needs `ALL` or
/// `F_SYSTEM_SETTING`; only the keys the simulator answers can be set. Booleans must be `true`
/// or `false`.
async fn set_system_setting(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(key): Path<String>,
    params: Params,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let default = check_setting_write(&state, user, &key).await?;
    let raw = match params.get("value") {
        Some(v) => v.to_owned(),
        None => {
            let text = body_text(body).await?;
            let is_json = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json"));
            match serde_json::from_str::<Value>(&text) {
                Ok(Value::String(s)) if is_json => s,
                Ok(other) if is_json => other.to_string(),
                _ => text,
            }
        }
    };
    if raw.is_empty() {
        return Err(ApiError::Conflict("Value must be specified as query param or as payload".into()));
    }
    let (stored, shown) = match parse_setting(default) {
        Value::Bool(_) => match raw.trim().to_ascii_lowercase().as_str() {
            b @ ("true" | "false") => (b.to_owned(), b.to_owned()),
            _ => return Err(ApiError::BadRequest(format!("Not a valid value for setting {key}: {raw}"))),
        },
        _ => (json!(raw).to_string(), raw),
    };
    let message = format!("System setting '{key}' set to value '{shown}'.");
    state.db().call(move |conn| Ok(db::set_setting(conn, &key, &stored)?)).await?;
    Ok(WebMessage::ok(StatusCode::OK, message).into_response())
}

/// `DELETE /api/systemSettings/{key}`: back to the default, 204.
async fn delete_system_setting(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    check_setting_write(&state, user, &key).await?;
    state.db().call(move |conn| Ok(db::delete_setting(conn, &key)?)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The logos of `/api/staticContent/{key}` and where DHIS2 keeps their defaults.
const STATIC_CONTENT: &[(&str, &str)] = &[
    ("logo_banner", "/dhis-web-commons/css/light_blue/logo_banner.png"),
    ("logo_front", "/dhis-web-commons/security/logo_front.png"),
];

/// `GET /api/staticContent/{key}` (`logo_banner`, `logo_front`): no custom logo is ever set,
/// so, as DHIS2's `StaticContentController`, a 302 to the default image of the style
/// (`light_blue`). Other keys: 404 `Key does not exist.`
async fn static_content(Path(key): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    let (_, path) = STATIC_CONTENT
        .iter()
        .find(|(k, _)| *k == key)
        .ok_or_else(|| ApiError::NotFound("Key does not exist.".into()))?;
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let location = HeaderValue::from_str(&format!("http://{host}{path}"))
        .map_err(|_| ApiError::BadRequest("Invalid Host header".into()))?;
    let mut response = StatusCode::FOUND.into_response();
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}

/// `POST /api/i18n` with a JSON list of keys: `{key: translation}`, English from
/// [`I18N_STRINGS`]; other keys translate to themselves, as DHIS2 does for unknown keys.
async fn i18n(_user: CurrentUser, body: Body) -> Result<Response, ApiError> {
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .map_err(|e| ApiError::BadRequest(format!("Cannot read request body: {e}")))?;
    let keys: Vec<String> = if bytes.is_empty() {
        Vec::new()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest(format!("Invalid JSON: {e}")))?
    };
    let out: Map<String, Value> = keys
        .into_iter()
        .map(|k| {
            let text =
                I18N_STRINGS.iter().find(|(key, _)| *key == k).map_or_else(|| k.clone(), |(_, v)| (*v).to_owned());
            (k, Value::String(text))
        })
        .collect();
    Ok(json_response(StatusCode::OK, &Value::Object(out)))
}

// ---------------------------------------------------------------------------------------------
// /api/files/script and /api/files/style
// ---------------------------------------------------------------------------------------------

/// Content type of `/api/files/script` (DHIS2's `ContextUtils.CONTENT_TYPE_JAVASCRIPT`).
pub const CONTENT_TYPE_JAVASCRIPT: &str = "application/javascript; charset=UTF-8";
/// Content type of `/api/files/style` (`ContextUtils.CONTENT_TYPE_CSS`).
pub const CONTENT_TYPE_CSS: &str = "text/css; charset=UTF-8";

async fn get_custom(state: &AppState, key: &'static str, content_type: &'static str) -> Result<Response, ApiError> {
    let content = state.db().call(move |conn| Ok(db::get_setting(conn, key)?)).await?;
    // DHIS2 answers 200 with an empty body when nothing is set.
    let mut response = text_response(StatusCode::OK, content_type, content.unwrap_or_default());
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

fn has_authority(conn: &Connection, user: &db::User, authority: &str) -> rusqlite::Result<bool> {
    Ok(user.superuser
        || db::user_roles(conn, &user.uid)?
            .iter()
            .flat_map(|r| r.authorities.iter())
            .any(|a| a == "ALL" || a == authority))
}

async fn set_custom(
    state: &AppState,
    user: db::User,
    key: &'static str,
    value: Option<String>,
) -> Result<(), ApiError> {
    state
        .db()
        .call(move |conn| {
            if !has_authority(conn, &user, CUSTOM_JS_CSS_AUTHORITY)? {
                return Err(ApiError::Forbidden(format!(
                    "Access is denied, requires one Authority from [{CUSTOM_JS_CSS_AUTHORITY}]"
                )));
            }
            match value {
                Some(v) => db::set_setting(conn, key, &v)?,
                None => db::delete_setting(conn, key)?,
            }
            Ok(())
        })
        .await
}

async fn body_text(body: Body) -> Result<String, ApiError> {
    let bytes = axum::body::to_bytes(body, 8 << 20)
        .await
        .map_err(|e| ApiError::BadRequest(format!("Cannot read request body: {e}")))?;
    String::from_utf8(bytes.to_vec()).map_err(|_| ApiError::BadRequest("The body is not UTF-8 text".into()))
}

async fn get_script(State(state): State<AppState>, _user: CurrentUser) -> Result<Response, ApiError> {
    get_custom(&state, KEY_CUSTOM_JS, CONTENT_TYPE_JAVASCRIPT).await
}

async fn get_style(State(state): State<AppState>) -> Result<Response, ApiError> {
    get_custom(&state, KEY_CUSTOM_CSS, CONTENT_TYPE_CSS).await
}

async fn post_script(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    body: Body,
) -> Result<Response, ApiError> {
    let text = body_text(body).await?;
    set_custom(&state, user, KEY_CUSTOM_JS, Some(text)).await?;
    Ok(WebMessage::ok(StatusCode::OK, "Custom script created").into_response())
}

async fn post_style(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    body: Body,
) -> Result<Response, ApiError> {
    let text = body_text(body).await?;
    set_custom(&state, user, KEY_CUSTOM_CSS, Some(text)).await?;
    Ok(WebMessage::ok(StatusCode::OK, "Custom style created").into_response())
}

async fn delete_script(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> Result<Response, ApiError> {
    set_custom(&state, user, KEY_CUSTOM_JS, None).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_style(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> Result<Response, ApiError> {
    set_custom(&state, user, KEY_CUSTOM_CSS, None).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Sets the custom script or style at start-up (`--files-script`, `--files-style`).
pub fn store_custom(conn: &Connection, script: Option<&str>, style: Option<&str>) -> rusqlite::Result<()> {
    if let Some(s) = script {
        db::set_setting(conn, KEY_CUSTOM_JS, s)?;
    }
    if let Some(s) = style {
        db::set_setting(conn, KEY_CUSTOM_CSS, s)?;
    }
    Ok(())
}

/// A stored user setting, raw (for tests and tools).
pub fn user_setting_raw(conn: &Connection, user_uid: &str, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM user_settings WHERE user_uid = ?1 AND key = ?2", params![user_uid, key], |r| {
        r.get(0)
    })
    .optional()
}
