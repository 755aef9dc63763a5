//! The sim's router as an HTTP client of the core (in process, no sockets), with a switch to
//! play an outage.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::cell::{Cell, RefCell};

use axum::{body::Body, http::Request, Router};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use tracker_offline_core::{
    download::DownloadOptions,
    engine::{Engine, EngineConfig},
    http::{HttpClient, HttpRequest, HttpResponse},
    kdf::RustPbkdf2,
    random::OsRandom,
    store::MemoryStore,
    vault::VaultPolicy,
    CoreError,
};

pub const NOW: i64 = 1_780_000_000_000;

pub const BASE: &str = "http://sim.test/api";
pub const OU: &str = "OuBaniNaim1";
pub const P: &str = "PrMchProg01";
pub const NID: &str = "AtNationId1";
pub const FIRST: &str = "AtFirstNam1";

/// The sim's router as an HTTP client of the core.
pub struct InProcess {
    pub router: RefCell<Router>,
    pub cookie: RefCell<Option<String>>,
    pub down: Cell<bool>,
    /// Plays an answer lost after the server committed: requests reach the sim, their answers
    /// are dropped.
    pub drop_answers: Cell<bool>,
    /// The same, only for writes (POST/PUT) whose path starts with this.
    pub drop_write_answers_on: RefCell<Option<String>>,
}

impl InProcess {
    /// Plays an outage: every request fails as a network error.
    pub fn set_down(&self, down: bool) {
        self.down.set(down);
    }

    /// Answers lost after the server did the work (see [`InProcess::drop_answers`]).
    pub fn drop_answers(&self, drop: bool) {
        self.drop_answers.set(drop);
    }

    /// Answers to writes under `path` lost after the server did the work.
    pub fn drop_write_answers_on(&self, path: Option<&str>) {
        *self.drop_write_answers_on.borrow_mut() = path.map(str::to_string);
    }

    /// The server is upgraded (or restarted) on the same data: another sim over `dir`.
    pub fn upgrade(&self, version: &str, dir: &std::path::Path) {
        *self.router.borrow_mut() = sim(version, dir, 0).router.into_inner();
    }
}

impl HttpClient for &InProcess {
    async fn send(&self, request: HttpRequest) -> tracker_offline_core::Result<HttpResponse> {
        if self.down.get() {
            return Err(CoreError::ServerUnreachable("Failed to fetch".into()));
        }
        let path = request.url.strip_prefix("http://sim.test").unwrap_or(&request.url).to_string();
        let drop_this = matches!(request.method.as_str(), "POST" | "PUT")
            && self.drop_write_answers_on.borrow().as_deref().is_some_and(|p| path.starts_with(p));
        let mut builder = Request::builder().method(request.method.as_str()).uri(path).header("Host", "sim.test");
        for (k, v) in &request.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        if let Some(c) = self.cookie.borrow().as_ref() {
            builder = builder.header("Cookie", c.as_str());
        }
        let req = builder
            .body(Body::from(request.body.clone().unwrap_or_default()))
            .map_err(|e| CoreError::BadInput(e.to_string()))?;
        let router = self.router.borrow().clone();
        let response = router.oneshot(req).await.map_err(|e| CoreError::ServerUnreachable(e.to_string()))?;
        let status = response.status().as_u16();
        if self.drop_answers.get() || drop_this {
            return Err(CoreError::ServerUnreachable("connection reset after the server answered".into()));
        }
        if let Some(c) = response.headers().get("set-cookie").and_then(|v| v.to_str().ok()) {
            *self.cookie.borrow_mut() = c.split(';').next().map(str::to_string);
        }
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_ascii_lowercase(), v.to_str().unwrap_or_default().to_string()))
            .collect();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| CoreError::ServerUnreachable(e.to_string()))?
            .to_bytes()
            .to_vec();
        Ok(HttpResponse { status, headers, body })
    }
}

pub fn sim(version: &str, dir: &std::path::Path, tracked_entities: usize) -> InProcess {
    let config = dhis2_sim::Config {
        data_dir: dir.to_owned(),
        seed: dhis2_sim::SeedMode::Demo,
        www: None,
        version: version.parse().expect("version"),
        faults: Default::default(),
        tracked_entities,
    };
    InProcess {
        router: RefCell::new(dhis2_sim::build_app(&config).expect("sim")),
        cookie: RefCell::new(None),
        down: Cell::new(false),
        drop_answers: Cell::new(false),
        drop_write_answers_on: RefCell::new(None),
    }
}

pub type TestEngine<'a> = Engine<MemoryStore, RustPbkdf2, OsRandom, &'a InProcess>;

/// nurse1 logged in online, with the clinic downloaded.
pub async fn logged_in_with_copy(server: &InProcess) -> TestEngine<'_> {
    let policy = VaultPolicy { iterations: 1_000, ..VaultPolicy::default() };
    let engine =
        Engine::new(EngineConfig::new(BASE, policy).unwrap(), MemoryStore::new(), RustPbkdf2, OsRandom, server);
    engine.login("nurse1", "Nurse1!clinic", NOW).await.unwrap();
    engine.download(DownloadOptions::default(), NOW, &mut |_| {}).await.unwrap();
    engine
}

/// GET on the sim as admin.
pub async fn get(server: &InProcess, path: &str) -> (u16, Value) {
    let request = HttpRequest {
        opens_session: false,
        method: "GET".into(),
        url: format!("http://sim.test{path}"),
        headers: vec![
            ("Authorization".into(), "Basic YWRtaW46ZGlzdHJpY3Q=".into()),
            ("X-Requested-With".into(), "XMLHttpRequest".into()),
        ],
        body: None,
    };
    let r = (&server).send(request).await.unwrap();
    (r.status, serde_json::from_slice(&r.body).unwrap_or(Value::Null))
}

/// A write on the sim as admin (the district's data manager working online).
pub async fn send_as_admin(server: &InProcess, method: &str, path: &str, body: Value) -> (u16, Value) {
    let request = HttpRequest {
        opens_session: false,
        method: method.into(),
        url: format!("http://sim.test{path}"),
        headers: vec![
            ("Authorization".into(), "Basic YWRtaW46ZGlzdHJpY3Q=".into()),
            ("X-Requested-With".into(), "XMLHttpRequest".into()),
            ("Content-Type".into(), "application/json".into()),
        ],
        body: Some(body.to_string().into_bytes()),
    };
    let r = (&server).send(request).await.unwrap();
    (r.status, serde_json::from_slice(&r.body).unwrap_or(Value::Null))
}
