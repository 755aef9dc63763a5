//! App Management as DHIS2 2.41 does it (dhis2-core 2.41.9: `AppController`,
//! `JCloudsAppStorageService`, `AppOverrideFilter`, `App`): `POST /api/apps` installs an app zip,
//! `GET /api/apps` lists, `DELETE /api/apps/{key}` removes; installed apps are served at
//! `/api/apps/{key}/`, and an app whose key is a bundled app's (`tracker-capture`, `capture`, …)
//! overrides it at `/dhis-web-{key}/` (where `/api/apps/{key}/` then redirects).
//!
//! What DHIS2 does and the simulator does too:
//! - the key is the manifest's `short_name` (else its `name`), "URL friendly"
//!   (`App.getUrlFriendlyName`): trimmed, characters other than letters, digits, spaces and `-`
//!   dropped, spaces to `-`, case kept;
//! - the zip may hold the app at its root or inside one top-level folder; it is unpacked into
//!   `apps/<zip file name without extension>` (persisted in the data folder, found again at
//!   start-up), replacing any other folder of the same key;
//! - at most 10,000 entries, each compressed at most 100 to 1 (`ZipFileUtils.validateZip`);
//! - failures are `409` WebMessages with DHIS2's texts: a file that is not a zip, a zip without
//!   `manifest.webapp` or a manifest that is not JSON give "Manifest file missing from zip file"
//!   (the reader's `IOException`); an entry escaping the folder (zip slip) "Zip file could not be
//!   read"; a `namespace` another app uses "Namespace defined in manifest is already in use";
//! - `manifest.webapp` is answered with `activities.dhis.href` set to the server's base URL when
//!   the zip says `"*"` `index.html` has `__DHIS2_BASE_URL__` replaced (on `/api/apps/` only);
//! - install and delete need `ALL` or `M_dhis-web-app-management`, and answer 204.
//!
//! Differences: where DHIS2 fails with a 500 (a zip without `manifest.webapp`, a manifest
//! without `version` or `activities.dhis`, by reading of its code) the simulator answers 409 with
//! the matching text; the app's own access rule (`M_<key>`) is not checked; unpacked files are
//! also limited in total ([`MAX_UNPACKED_BYTES`]).

use std::{
    collections::BTreeMap,
    io::{Cursor, Read},
    path::{Component, Path, PathBuf},
    sync::RwLock,
};

use axum::{
    extract::{DefaultBodyLimit, Multipart, Path as UrlPath, Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::get,
    Router,
};
use serde_json::{json, Value};

use crate::{
    auth::CurrentUser,
    db,
    error::{json_response, ApiError},
    state::AppState,
};

/// The bundled apps of DHIS2 2.41 (`AppManager.BUNDLED_APPS`): an installed app with one of
/// these keys overrides it at `/dhis-web-{key}/`.
pub const BUNDLED_APPS: &[&str] = &[
    "aggregate-data-entry",
    "app-management",
    "cache-cleaner",
    "capture",
    "dashboard",
    "data-administration",
    "data-visualizer",
    "data-quality",
    "datastore",
    "event-reports",
    "event-visualizer",
    "import-export",
    "interpretation",
    "login",
    "maintenance",
    "maps",
    "menu-management",
    "messaging",
    "pivot",
    "reports",
    "scheduler",
    "settings",
    "sms-configuration",
    "tracker-capture",
    "translations",
    "usage-analytics",
    "user",
    "user-profile",
    "approval",
    "dataentry",
    "maintenance-mobile",
];

/// The authority App Management needs (or `ALL`).
pub const APP_MANAGEMENT_AUTHORITY: &str = "M_dhis-web-app-management";

/// The largest upload taken (DHIS2 sets no limit; axum's default of 2 MB is too small for an app).
pub const MAX_UPLOAD_BYTES: usize = 256 * 1024 * 1024;

/// The most entries an app zip may hold (`ZipFileUtils.MAX_ENTRIES`).
pub const MAX_ENTRIES: usize = 10_000;

/// The most an entry may be compressed (`ZipFileUtils.MAX_COMPRESSION_RATIO`): size / compressed size.
pub const MAX_COMPRESSION_RATIO: u64 = 100;

/// The most an app zip may unpack to (DHIS2 refuses zip bombs as "Zip file could not be read").
pub const MAX_UNPACKED_BYTES: u64 = 512 * 1024 * 1024;

/// DHIS2's texts (`i18n_global.properties`) for the install failures.
const MISSING_MANIFEST: &str = "Manifest file missing from zip file";
const INVALID_ZIP: &str = "Zip file could not be read";
const NAMESPACE_TAKEN: &str = "Namespace defined in manifest is already in use";
const INSTALLATION_FAILED: &str = "App could not be installed on file system";

/// One installed app.
#[derive(Debug, Clone)]
pub struct InstalledApp {
    /// The URL friendly `short_name`.
    pub key: String,
    /// The folder under `apps/` it was unpacked into.
    pub folder: String,
    /// `manifest.webapp` as installed.
    pub manifest: Value,
    /// Where its files are.
    pub dir: PathBuf,
}

impl InstalledApp {
    /// Whether it overrides a bundled app (served at `/dhis-web-{key}/`).
    pub fn is_bundled(&self) -> bool {
        BUNDLED_APPS.contains(&self.key.as_str())
    }

    /// `App.getBaseUrl()`: where it is served.
    pub fn base_url(&self, context: &str) -> String {
        if self.is_bundled() {
            format!("{context}/dhis-web-{}", self.key)
        } else {
            format!("{context}/api/apps/{}", self.key)
        }
    }

    fn namespace(&self) -> Option<&str> {
        self.manifest.pointer("/activities/dhis/namespace").and_then(Value::as_str).filter(|n| !n.is_empty())
    }

    /// The manifest as DHIS2 answers it: `activities.dhis.href` becomes the server's base URL
    /// when it is `"*"`, or always on `/api/apps/` (2.41.5+).
    fn served_manifest(&self, context: &str, any_href: bool) -> Value {
        let mut manifest = self.manifest.clone();
        if let Some(href) = manifest.pointer_mut("/activities/dhis/href") {
            if any_href || href == "*" {
                *href = Value::String(context.to_owned());
            }
        }
        manifest
    }

    fn to_json(&self, context: &str) -> Value {
        let text = |k: &str| self.manifest.get(k).cloned().unwrap_or(Value::Null);
        let base = self.base_url(context);
        let launch = self.manifest.get("launch_path").and_then(Value::as_str).unwrap_or("index.html");
        json!({
            "key": self.key,
            "name": text("name"),
            "short_name": text("short_name"),
            "version": text("version"),
            "description": text("description"),
            "appType": self.manifest.get("appType").cloned().unwrap_or(json!("APP")),
            "appState": "OK",
            "folderName": format!("apps/{}", self.folder),
            "bundled": self.is_bundled(),
            "baseUrl": base,
            "launchUrl": format!("{base}/{}", launch.trim_start_matches('/')),
            "activities": self.served_manifest(context, false).get("activities").cloned().unwrap_or(Value::Null),
        })
    }
}

/// The installed apps and where they are kept.
#[derive(Debug, Default)]
pub struct InstalledApps {
    root: RwLock<Option<PathBuf>>,
    apps: RwLock<BTreeMap<String, InstalledApp>>,
}

impl InstalledApps {
    /// Keeps apps under `root` (`<data>/apps`) and finds the ones installed there before.
    pub fn load(&self, root: PathBuf) -> std::io::Result<()> {
        std::fs::create_dir_all(&root)?;
        let mut found = BTreeMap::new();
        for entry in std::fs::read_dir(&root)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !entry.file_type()?.is_dir() {
                continue;
            }
            let Ok(text) = std::fs::read(entry.path().join("manifest.webapp")) else { continue };
            let Ok(manifest) = serde_json::from_slice::<Value>(&text) else { continue };
            if let Some(key) = url_friendly_key(&manifest) {
                found.insert(key.clone(), InstalledApp { key, folder: name, manifest, dir: entry.path() });
            }
        }
        *self.apps.write().unwrap_or_else(std::sync::PoisonError::into_inner) = found;
        *self.root.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(root);
        Ok(())
    }

    /// The app installed under `key`.
    pub fn get(&self, key: &str) -> Option<InstalledApp> {
        self.apps.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(key).cloned()
    }

    /// Every installed app, by key.
    pub fn all(&self) -> Vec<InstalledApp> {
        self.apps.read().unwrap_or_else(std::sync::PoisonError::into_inner).values().cloned().collect()
    }

    fn root(&self) -> Result<PathBuf, ApiError> {
        self.root
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or_else(|| ApiError::Conflict(INSTALLATION_FAILED.into()))
    }

    /// Unpacks and installs an app zip (see the module doc for the rules).
    pub fn install(&self, zip_bytes: &[u8], file_name: &str) -> Result<InstalledApp, ApiError> {
        let root = self.root()?;
        let folder = folder_name(file_name).ok_or_else(|| ApiError::Conflict(INSTALLATION_FAILED.into()))?;
        let mut archive =
            zip::ZipArchive::new(Cursor::new(zip_bytes)).map_err(|_| ApiError::Conflict(MISSING_MANIFEST.into()))?;
        let top = top_level_folder(&mut archive);
        let manifest_name = format!("{}manifest.webapp", top.as_deref().map(|t| format!("{t}/")).unwrap_or_default());
        let manifest: Value = {
            let mut entry = archive.by_name(&manifest_name).map_err(|_| ApiError::Conflict(MISSING_MANIFEST.into()))?;
            let mut text = Vec::new();
            entry.read_to_end(&mut text).map_err(|_| ApiError::Conflict(MISSING_MANIFEST.into()))?;
            serde_json::from_slice(&text).map_err(|_| ApiError::Conflict(MISSING_MANIFEST.into()))?
        };
        let key = url_friendly_key(&manifest).ok_or_else(|| ApiError::Conflict(INSTALLATION_FAILED.into()))?;
        if manifest.get("version").is_none_or(Value::is_null)
            || !manifest.pointer("/activities/dhis").is_some_and(Value::is_object)
        {
            return Err(ApiError::Conflict(INSTALLATION_FAILED.into()));
        }
        if archive.len() > MAX_ENTRIES {
            return Err(ApiError::Conflict(INVALID_ZIP.into()));
        }
        let candidate = InstalledApp { key: key.clone(), folder: folder.clone(), manifest, dir: root.join(&folder) };
        if let Some(namespace) = candidate.namespace() {
            let taken = self.all().into_iter().any(|a| a.key != key && a.namespace() == Some(namespace));
            if taken {
                return Err(ApiError::Conflict(NAMESPACE_TAKEN.into()));
            }
        }

        // Unpack beside, then swap in: a failed install leaves the installed version alone.
        let staging = root.join(format!(".installing-{folder}"));
        let _ = std::fs::remove_dir_all(&staging);
        let unpacked = unpack(&mut archive, top.as_deref(), &staging);
        if let Err(error) = unpacked {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(error);
        }
        let previous: Vec<InstalledApp> = self.all().into_iter().filter(|a| a.key == key).collect();
        let mut apps = self.apps.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        for old in previous.iter().filter(|old| old.folder != folder) {
            let _ = std::fs::remove_dir_all(&old.dir);
        }
        let _ = std::fs::remove_dir_all(&candidate.dir);
        std::fs::rename(&staging, &candidate.dir)
            .map_err(|e| ApiError::Internal(format!("{INSTALLATION_FAILED}: {e}")))?;
        apps.insert(key, candidate.clone());
        Ok(candidate)
    }

    /// Removes the app installed under `key`.
    pub fn delete(&self, key: &str) -> Result<(), ApiError> {
        let mut apps = self.apps.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let app = apps.remove(key).ok_or_else(|| ApiError::NotFound(format!("App does not exist: {key}")))?;
        std::fs::remove_dir_all(&app.dir).map_err(|e| ApiError::Internal(format!("could not delete {key}: {e}")))?;
        Ok(())
    }
}

/// `App.getUrlFriendlyName()` of the manifest's `short_name` (its `name` when there is none).
pub fn url_friendly_key(manifest: &Value) -> Option<String> {
    let short = manifest.get("short_name").or_else(|| manifest.get("name"))?.as_str()?.trim();
    let kept: String = short.chars().filter(|c| c.is_ascii_alphanumeric() || c.is_whitespace() || *c == '-').collect();
    let key = kept.split_whitespace().collect::<Vec<_>>().join("-");
    (!key.is_empty()).then_some(key)
}

/// The folder an upload is unpacked into: its file name without the extension.
fn folder_name(file_name: &str) -> Option<String> {
    let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
    let stem = base.rsplit_once('.').map_or(base, |(stem, _)| stem);
    let ok = !stem.is_empty()
        && !stem.starts_with('.')
        && stem.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    ok.then(|| stem.to_owned())
}

/// The one folder every entry is inside, when the app is packed in a folder.
fn top_level_folder<R: Read + std::io::Seek>(archive: &mut zip::ZipArchive<R>) -> Option<String> {
    let mut top: Option<String> = None;
    for name in archive.file_names() {
        let (first, rest) = name.split_once('/')?;
        if rest.is_empty() && !name.ends_with('/') {
            return None;
        }
        match &top {
            None => top = Some(first.to_owned()),
            Some(t) if t == first => {}
            Some(_) => return None,
        }
    }
    top.filter(|t| archive.by_name(&format!("{t}/manifest.webapp")).is_ok())
}

/// Writes the archive's files under `dir` (a zip slip or bomb is "Zip file could not be read").
fn unpack<R: Read + std::io::Seek>(
    archive: &mut zip::ZipArchive<R>,
    top: Option<&str>,
    dir: &Path,
) -> Result<(), ApiError> {
    let invalid = || ApiError::Conflict(INVALID_ZIP.into());
    let mut total = 0u64;
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(|_| invalid())?;
        let name = entry.name().to_owned();
        let inner = match top {
            Some(t) => name.strip_prefix(&format!("{t}/")).ok_or_else(invalid)?.to_owned(),
            None => name.clone(),
        };
        if inner.is_empty() {
            continue;
        }
        let relative = Path::new(&inner);
        if entry.enclosed_name().is_none() || relative.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(invalid());
        }
        let target = dir.join(relative);
        if entry.is_dir() {
            std::fs::create_dir_all(&target).map_err(|_| invalid())?;
            continue;
        }
        if entry.compressed_size() > 0 && entry.size() > entry.compressed_size().saturating_mul(MAX_COMPRESSION_RATIO) {
            return Err(invalid());
        }
        total = total.saturating_add(entry.size());
        if total > MAX_UNPACKED_BYTES {
            return Err(invalid());
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|_| invalid())?;
        }
        let mut bytes = Vec::new();
        entry.by_ref().take(MAX_UNPACKED_BYTES + 1).read_to_end(&mut bytes).map_err(|_| invalid())?;
        if bytes.len() as u64 > MAX_UNPACKED_BYTES {
            return Err(invalid());
        }
        std::fs::write(&target, bytes).map_err(|_| invalid())?;
    }
    Ok(())
}

/// A 302 to `location`, as the servlet's `sendRedirect`.
fn found(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => (StatusCode::FOUND, [(header::LOCATION, value)]).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The server's base URL as the request saw it (DHIS2's context path).
fn context_of(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    format!("http://{host}")
}

/// `ALL` or [`APP_MANAGEMENT_AUTHORITY`], else 403 as Spring's `@PreAuthorize`.
async fn require_app_management(state: &AppState, user: db::User) -> Result<(), ApiError> {
    let allowed = state
        .db()
        .call(move |conn| {
            Ok(user.superuser
                || db::user_roles(conn, &user.uid)?
                    .iter()
                    .flat_map(|r| r.authorities.iter())
                    .any(|a| a == "ALL" || a == APP_MANAGEMENT_AUTHORITY))
        })
        .await?;
    if allowed {
        Ok(())
    } else {
        Err(ApiError::Forbidden("Access is denied".into()))
    }
}

/// Routes under `/api` (behind authentication).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/apps", get(list).post(install).layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES)))
        .route("/apps.json", get(list))
        .route("/apps/{key}", get(redirect_to_folder).delete(delete))
        .route("/apps/{key}/", get(serve_installed))
        .route("/apps/{key}/{*path}", get(serve_installed))
}

/// `GET /api/apps`: the installed apps, then the static `--app` folders.
async fn list(State(state): State<AppState>, _user: CurrentUser, headers: HeaderMap) -> Response {
    let context = context_of(&headers);
    let installed = state.installed_apps().all();
    let mut list: Vec<Value> = installed.iter().map(|a| a.to_json(&context)).collect();
    for (name, _) in state.apps() {
        if installed.iter().any(|a| a.key == name) {
            continue;
        }
        list.push(json!({
            "key": name,
            "name": name,
            "displayName": name,
            "folderName": name,
            "appType": "APP",
            "appState": "OK",
            "version": "",
            "isBundledApp": false,
            "baseUrl": format!("{context}/{name}"),
            "launchUrl": format!("{context}/{name}/index.html"),
        }));
    }
    json_response(StatusCode::OK, &Value::Array(list))
}

/// `POST /api/apps`: multipart, the zip in part `file`.
async fn install(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    mut multipart: Multipart,
) -> Result<Response, ApiError> {
    require_app_management(&state, user).await?;
    let mut upload = None;
    while let Some(field) = multipart.next_field().await.map_err(|e| ApiError::BadRequest(e.body_text()))? {
        if field.name() == Some("file") {
            let file_name = field.file_name().unwrap_or("app.zip").to_owned();
            let bytes = field.bytes().await.map_err(|e| ApiError::BadRequest(e.body_text()))?;
            upload = Some((file_name, bytes));
        }
    }
    let (file_name, bytes) =
        upload.ok_or_else(|| ApiError::BadRequest("Required request part 'file' is not present".into()))?;
    let installed = tokio::task::spawn_blocking(move || state.installed_apps().install(&bytes, &file_name))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    tracing::info!(key = %installed.key, folder = %installed.folder, "app installed");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /api/apps/{key}`.
async fn delete(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    UrlPath(key): UrlPath<String>,
) -> Result<Response, ApiError> {
    require_app_management(&state, user).await?;
    state.installed_apps().delete(&key)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn redirect_to_folder(UrlPath(key): UrlPath<String>) -> Response {
    found(&format!("/api/apps/{key}/"))
}

/// `GET /api/apps/{key}/**` (`AppController.renderApp`).
async fn serve_installed(
    State(state): State<AppState>,
    _user: CurrentUser,
    req: Request,
) -> Result<Response, ApiError> {
    // Inside `/api`'s router the path has lost its `/api`.
    let path = req.uri().path().to_owned();
    let rest = path.strip_prefix("/api").unwrap_or(&path).strip_prefix("/apps/").unwrap_or_default();
    let (key, resource) = rest.split_once('/').unwrap_or((rest, ""));
    let app = state.installed_apps().get(key).ok_or_else(|| ApiError::NotFound(format!("App '{key}' not found.")))?;
    let context = context_of(req.headers());
    if app.is_bundled() {
        let query = req.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
        return Ok(found(&format!("{}/{resource}{query}", app.base_url(&context))));
    }
    Ok(serve_resource(&app, resource, &context, req, true).await)
}

/// Routes outside `/api` for the overridden bundled apps (`AppOverrideFilter`); the caller puts
/// them behind authentication, as DHIS2's bundled apps are.
pub fn override_routes() -> Router<AppState> {
    let mut router = Router::new();
    for key in BUNDLED_APPS {
        let slash = format!("/dhis-web-{key}/");
        router = router
            .route(&format!("/dhis-web-{key}"), get(move || async move { Redirect::permanent(&slash) }))
            .route(&format!("/dhis-web-{key}/"), get(serve_override))
            .route(&format!("/dhis-web-{key}/{{*path}}"), get(serve_override));
    }
    router
}

async fn serve_override(State(state): State<AppState>, _user: CurrentUser, req: Request) -> Result<Response, ApiError> {
    let path = req.uri().path().to_owned();
    let rest = path.strip_prefix("/dhis-web-").unwrap_or_default();
    let (key, resource) = rest.split_once('/').unwrap_or((rest, ""));
    // The simulator has no bundled apps of its own to fall back to.
    let app = state
        .installed_apps()
        .get(key)
        .ok_or_else(|| ApiError::NotFound(format!("No handler found for GET {path}")))?;
    let context = context_of(req.headers());
    if resource == "index.action" {
        let launch = app.manifest.get("launch_path").and_then(Value::as_str).unwrap_or("index.html");
        return Ok(found(&format!("{}/{launch}", app.base_url(&context))));
    }
    let resource = if resource.is_empty() { "/" } else { resource };
    Ok(serve_resource(&app, resource, &context, req, false).await)
}

/// One file of an installed app, with DHIS2's special cases: the manifest (href filled in),
/// `index.html` (`__DHIS2_BASE_URL__` filled in, `/api/apps/` only), a folder (its
/// `index.html`), a folder without its slash (redirect), nothing (404).
async fn serve_resource(app: &InstalledApp, resource: &str, context: &str, req: Request, api_path: bool) -> Response {
    use tower::ServiceExt;
    let resource = resource.trim_start_matches('/');
    if resource == "manifest.webapp" {
        return json_response(StatusCode::OK, &app.served_manifest(context, api_path));
    }
    let file = if resource.is_empty() || resource.ends_with('/') {
        format!("{resource}index.html")
    } else {
        resource.to_owned()
    };
    let relative = Path::new(&file);
    if relative.components().any(|c| !matches!(c, Component::Normal(_))) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let full = app.dir.join(relative);
    if full.is_dir() {
        return found(&format!("{}/{resource}/", app.base_url(context)));
    }
    if api_path && file.ends_with("index.html") {
        let Ok(text) = std::fs::read_to_string(&full) else { return StatusCode::NOT_FOUND.into_response() };
        let html =
            text.replace("__DHIS2_BASE_URL__", context).replace("__DHIS2_APP_ROOT_URL__", &app.base_url(context));
        return ([(header::CONTENT_TYPE, "text/html")], html).into_response();
    }
    let (mut parts, body) = req.into_parts();
    if let Ok(uri) = format!("/{file}").parse() {
        parts.uri = uri;
    }
    let served = tower_http::services::ServeFile::new(&full).oneshot(Request::from_parts(parts, body)).await;
    let mut response = match served {
        Ok(r) => r.map(axum::body::Body::new),
        Err(e) => match e {},
    };
    if response.status().is_success() {
        if let Some(mime) = crate::forced_content_type(&file) {
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_url_friendly_short_name() {
        assert_eq!(url_friendly_key(&json!({"short_name": " Tracker  Capture! "})).as_deref(), Some("Tracker-Capture"));
        assert_eq!(url_friendly_key(&json!({"short_name": "tracker-capture"})).as_deref(), Some("tracker-capture"));
        assert_eq!(url_friendly_key(&json!({"name": "My app"})).as_deref(), Some("My-app"));
        assert_eq!(url_friendly_key(&json!({"version": "1"})), None);
        assert_eq!(url_friendly_key(&json!({"short_name": "!!"})), None);
    }

    #[test]
    fn the_folder_is_the_file_name_without_its_extension() {
        assert_eq!(folder_name("tracker-capture-0.2.0.zip").as_deref(), Some("tracker-capture-0.2.0"));
        assert_eq!(folder_name("C:\\x\\app.zip").as_deref(), Some("app"));
        assert_eq!(folder_name("../.zip"), None);
    }
}
