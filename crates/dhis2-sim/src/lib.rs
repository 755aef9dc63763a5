//! `dhis2-sim`: a native HTTP server that stands in for a DHIS2 server in tests and the demo.
//!
//! It is an independent reading of the DHIS2 Web API contract (see `docs/dhis2-api.md`) and
//! shares no code with `tracker-offline-core`. [`build_app`] gives the [`Router`] (tests drive
//! it with `tower::ServiceExt::oneshot`); [`run`] binds a socket and serves it until SIGINT or
//! SIGTERM.

pub mod api;
pub mod auth;
pub mod commons;
pub mod db;
pub mod error;
pub mod faults;
pub mod fields;
pub mod generate;
pub mod load;
pub mod model;
pub mod resources;
pub mod seed;
pub mod state;
pub mod tracker;
pub mod uid;
pub mod version;

use std::{
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use axum::{
    extract::Request,
    http::{header, HeaderName, HeaderValue},
    middleware::{self, Next},
    response::{Html, IntoResponse, Response},
    routing::get,
    Router,
};
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer},
    services::ServeDir,
};

pub use error::{ApiError, SimError, WebMessage};
pub use seed::SeedMode;
pub use state::AppState;
pub use version::ServerVersion;

/// What the simulator serves and where it keeps its data.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory of the SQLite file (created if missing).
    pub data_dir: PathBuf,
    /// Data to seed into an empty database.
    pub seed: SeedMode,
    /// Static files served at `/` (the demo app), if any.
    pub www: Option<PathBuf>,
    /// DHIS2 version to answer as.
    pub version: ServerVersion,
    /// Fault injection and the `/__sim` admin API (off by default).
    pub faults: faults::FaultsConfig,
    /// With the demo seed: how many generated tracked entities the database should hold.
    pub tracked_entities: usize,
}

impl Config {
    /// A config with the data in `data_dir`, no seed, no static files, version 2.40.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            seed: SeedMode::None,
            www: None,
            version: ServerVersion::default(),
            faults: Default::default(),
            tracked_entities: 0,
        }
    }
}

/// What the simulator serves beyond [`Config`]: static apps and the instance's custom script
/// and style. (Kept apart from `Config` so that code building a `Config` literal keeps
/// compiling.)
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// Static folders served at `/NAME/` (`--app NAME=DIR`), in order.
    pub apps: Vec<(String, PathBuf)>,
    /// Custom script stored at start-up, served by `/api/files/script` (`--files-script`).
    pub files_script: Option<String>,
    /// Custom style stored at start-up, served by `/api/files/style` (`--files-style`).
    pub files_style: Option<String>,
}

/// Parses `NAME=DIR` (the `--app` flag). The name is one path segment of letters, digits,
/// `-`, `_` and `.`, and not `api`, `icons` or `dhis-web-commons*` (the simulator's own), nor
/// a bundled app's folder (`dhis-web-capture`: App Management serves an installed zip there).
pub fn parse_app(spec: &str) -> Result<(String, PathBuf), String> {
    let (name, dir) = spec.split_once('=').ok_or_else(|| format!("expected NAME=DIR, got '{spec}'"))?;
    let name = name.trim().trim_matches('/');
    let ok = !name.is_empty()
        && name != "api"
        && name != "__sim"
        && name != "icons"
        && !name.starts_with("dhis-web-commons")
        // A bundled app's folder is App Management's: install the app's zip (`POST /api/apps`).
        && !api::apps::BUNDLED_APPS.iter().any(|key| name.strip_prefix("dhis-web-") == Some(key))
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name != "."
        && name != "..";
    if !ok {
        return Err(format!(
            "invalid app name '{name}' (one path segment, not api, icons, dhis-web-commons* or a bundled app's \
             dhis-web-<key>: install that app's zip through POST /api/apps)"
        ));
    }
    if dir.is_empty() {
        return Err(format!("no directory given for app '{name}'"));
    }
    Ok((name.to_owned(), PathBuf::from(dir)))
}

/// Opens the database, applies the seed and builds the application.
pub fn build_app(config: &Config) -> Result<Router, SimError> {
    build_app_with(config, &Extras::default())
}

/// [`build_app`] with static apps and custom script/style.
pub fn build_app_with(config: &Config, extras: &Extras) -> Result<Router, SimError> {
    let state = open_state(config)?;
    if extras.files_script.is_some() || extras.files_style.is_some() {
        api::settings::store_custom(&state.db().lock(), extras.files_script.as_deref(), extras.files_style.as_deref())?;
    }
    Ok(router_with_apps(state, config.www.as_deref(), &extras.apps))
}

/// Opens the database, applies the seed and returns the state (for callers that want to
/// reach the database directly as well as serve it).
pub fn open_state(config: &Config) -> Result<AppState, SimError> {
    let db = db::Db::open(&config.data_dir)?;
    {
        let mut conn = db.lock();
        if seed::apply(&mut conn, config.seed)? {
            tracing::info!("seeded {:?} data", config.seed);
        }
        if config.seed == SeedMode::Demo && config.tracked_entities > 0 {
            generate::ensure(&mut conn, config.tracked_entities)?;
        }
    }
    api::datastore::create_tables(&db.lock())?;
    api::settings::create_tables(&db.lock())?;
    let state = AppState::new(db, config.version)?;
    state.installed_apps().load(config.data_dir.join("apps"))?;
    state.faults().configure(&config.faults);
    Ok(state)
}

/// The application over a state: `/api` (auth where DHIS2 needs it), optional static files,
/// permissive CORS with credentials, and panics turned into 500 WebMessages.
pub fn router(state: AppState, www: Option<&Path>) -> Router {
    router_with_apps(state, www, &[])
}

/// [`router`] plus static apps served at `/NAME/` (`/NAME` redirects there).
pub fn router_with_apps(state: AppState, www: Option<&Path>, apps: &[(String, PathBuf)]) -> Router {
    state.set_apps(apps.to_vec());
    let protected = api::protected_routes()
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), auth::require_auth));
    let api = api::public_routes()
        .merge(api::settings::public_routes())
        .merge(api::settings::files_routes(state.clone()))
        .merge(protected)
        .layer(middleware::from_fn(faults::mark_route));

    let mut app = Router::new().nest("/api", api.clone());
    // Every API resource is also served under an API version, `/api/41/me` as `/api/me`: the
    // app platform's app-runtime (the Capture app) asks for everything this way, with the
    // server's own minor version. The versions accepted: the oldest DHIS2 still names
    // ([`version::OLDEST_API_VERSION`]) up to the server's; a later one is a 404.
    for v in version::OLDEST_API_VERSION..=state.version().minor {
        app = app.nest(&format!("/api/{v}"), api.clone());
    }
    let mut app = app
        .merge(commons::routes(state.clone()))
        .merge(resources::routes(state.clone()))
        .route(auth::LOGIN_PAGE, get(login_page))
        .merge(api::apps::override_routes().layer(middleware::from_fn_with_state(state.clone(), auth::require_auth)));
    for (name, dir) in apps {
        app = app.merge(static_app(name, dir));
    }
    app = match www {
        Some(dir) => app.fallback_service(
            tower::ServiceBuilder::new()
                .layer(middleware::from_fn(static_content_type))
                .service(ServeDir::new(dir).append_index_html_on_directories(true)),
        ),
        None => app.fallback(api::not_found),
    };
    app.layer(middleware::from_fn_with_state(state.clone(), faults::middleware))
        .layer(cors_layer())
        .layer(CatchPanicLayer::custom(|_panic: Box<dyn std::any::Any + Send>| {
            ApiError::Internal("Internal server error".into()).into_response()
        }))
        .with_state(state)
}

/// Permissive CORS for tests: the request's origin is echoed and credentials allowed;
/// `Retry-After` is exposed.
pub fn cors_layer() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
        .allow_credentials(true)
        .allow_methods(AllowMethods::mirror_request())
        .allow_headers(AllowHeaders::list([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("x-requested-with"),
        ]))
        // So that a page on another origin can read how long an overload 503 asks it to wait.
        .expose_headers([header::RETRY_AFTER])
        .max_age(Duration::from_secs(3600))
}

/// The content type forced for a static path, whatever the MIME database says.
pub(crate) fn forced_content_type(path: &str) -> Option<&'static str> {
    let path = path.to_ascii_lowercase();
    if path.ends_with(".wasm") {
        Some("application/wasm")
    } else if path.ends_with(".js") || path.ends_with(".mjs") {
        Some("text/javascript")
    } else {
        None
    }
}

/// Serves `.wasm` as `application/wasm` and `.js`/`.mjs` as `text/javascript`, whatever the
/// MIME database says.
async fn static_content_type(req: Request, next: Next) -> Response {
    let forced = forced_content_type(req.uri().path());
    let mut response = next.run(req).await;
    if let Some(mime) = forced {
        if response.status().is_success() {
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
        }
    }
    response
}

/// The routes of one static app: `DIR` at `/NAME/`, `index.html` for directories, `/NAME`
/// redirected to `/NAME/`. No authentication, like `--www`. A service worker inside the folder
/// can register with scope `/NAME/` (its default scope), no header needed.
fn static_app(name: &str, dir: &Path) -> Router<AppState> {
    let prefix = format!("/{name}");
    let target = format!("{prefix}/");
    let serve = {
        let dir = dir.to_owned();
        let prefix = prefix.clone();
        move |req: Request| {
            let dir = dir.clone();
            let prefix = prefix.clone();
            async move { serve_app_file(&dir, &prefix, req).await }
        }
    };
    Router::new()
        .route(&prefix, get(move || async move { axum::response::Redirect::permanent(&target) }))
        .route(&format!("{prefix}/"), get(serve.clone()))
        .route(&format!("{prefix}/{{*path}}"), get(serve))
}

async fn serve_app_file(dir: &Path, prefix: &str, req: Request) -> Response {
    use tower::ServiceExt;
    let (mut parts, body) = req.into_parts();
    let full = parts.uri.path().to_owned();
    let inner = full.strip_prefix(prefix).unwrap_or("/");
    let inner = if inner.is_empty() { "/" } else { inner };
    let pq = match parts.uri.query() {
        Some(q) => format!("{inner}?{q}"),
        None => inner.to_owned(),
    };
    if let Ok(uri) = pq.parse() {
        parts.uri = uri;
    }
    let req = Request::from_parts(parts, body);
    let served = ServeDir::new(dir).append_index_html_on_directories(true).oneshot(req).await;
    let mut response = match served {
        Ok(r) => r.map(axum::body::Body::new),
        Err(e) => match e {},
    };
    if response.status().is_success() {
        if let Some(mime) = forced_content_type(&full) {
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
        }
    }
    // ServeDir's redirects (a directory without its slash) know only the inner path.
    if let Some(loc) = response.headers().get(header::LOCATION).and_then(|l| l.to_str().ok()) {
        if loc.starts_with('/') {
            if let Ok(v) = HeaderValue::from_str(&format!("{prefix}{loc}")) {
                response.headers_mut().insert(header::LOCATION, v);
            }
        }
    }
    if response.status() == axum::http::StatusCode::NOT_FOUND {
        return ApiError::NotFound(format!("No handler found for GET {full}")).into_response();
    }
    response
}

/// A stand-in for the DHIS2 login page, target of the 302 for unauthenticated requests.
async fn login_page() -> Html<&'static str> {
    Html(
        "<!doctype html><html><head><title>DHIS 2 (simulator)</title></head><body>\
         <h1>dhis2-sim</h1><p>This simulator has no login form; use HTTP Basic \
         authentication on <code>/api</code>.</p></body></html>",
    )
}

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Interface to bind, e.g. `127.0.0.1`.
    pub host: String,
    /// Port; 0 picks a free one.
    pub port: u16,
    /// Application config.
    pub config: Config,
    /// Static apps and custom script/style.
    pub extras: Extras,
}

/// Binds, prints `dhis2-sim listening on http://HOST:PORT` to stdout, and serves until
/// SIGINT/SIGTERM (then lets open requests finish for up to 5 seconds).
pub async fn run(opts: ServeOptions) -> Result<(), SimError> {
    let app = build_app_with(&opts.config, &opts.extras)?;
    let listener = tokio::net::TcpListener::bind((opts.host.as_str(), opts.port)).await?;
    let addr: SocketAddr = listener.local_addr()?;
    let host = if opts.host.contains(':') { format!("[{}]", opts.host) } else { opts.host.clone() };
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "dhis2-sim listening on http://{host}:{}", addr.port())?;
        out.flush()?;
    }
    tracing::info!(version = %opts.config.version, data = %opts.config.data_dir.display(), "started");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signal = async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    };
    let app = app.into_make_service_with_connect_info::<faults::ConnHandle>();
    let serve = axum::serve(faults::FaultListener(listener), app).with_graceful_shutdown(signal);
    let grace = async move {
        let mut rx = stop_rx;
        let _ = rx.wait_for(|stopped| *stopped).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    };
    tokio::select! {
        result = serve => result?,
        () = grace => tracing::warn!("shutdown grace period over; closing open connections"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
