//! A real `dhis2-sim` process and the HTTP the core speaks to it over loopback: what the
#![allow(clippy::expect_used)]
//! reconnect storm (`src/bin/storm.rs`) and the tests against a live server
//! (`tests/live_sim.rs`) drive real core engines with.

use std::{
    cell::Cell,
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{json, Value};
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

/// The demo clinic (Bani Naim), its MCH program and the ANC visit stage.
pub const OU: &str = "OuBaniNaim1";
/// The MCH program of the demo seed.
pub const P: &str = "PrMchProg01";
/// The ANC visit stage of [`P`].
pub const ANC: &str = "PsAncVisit1";

/// Basic `admin:district`, the demo seed's superuser.
pub const ADMIN_BASIC: &str = "Basic YWRtaW46ZGlzdHJpY3Q=";

/// Wall-clock milliseconds since the epoch (what the service worker passes the core).
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A uniform random number in [0, 1) from the OS.
pub fn rand_unit() -> f64 {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).expect("getrandom");
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// A device's network: HTTP/1.1 over loopback to the sim, one connection per request (no
/// cookie kept: every request carries the engine's own authentication); `down` plays an outage.
/// Needs a `tokio::task::LocalSet` (connections are driven with `spawn_local`).
pub struct Loopback {
    /// Where the sim listens (changed when it is restarted elsewhere).
    pub addr: Cell<SocketAddr>,
    /// An outage: every request fails as a network error.
    pub down: Cell<bool>,
}

impl Loopback {
    /// A network to the sim at `addr`, up.
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr: Cell::new(addr), down: Cell::new(false) }
    }

    async fn exchange(&self, request: HttpRequest) -> tracker_offline_core::Result<HttpResponse> {
        let unreachable = |e: &dyn std::fmt::Display| CoreError::ServerUnreachable(e.to_string());
        let addr = self.addr.get();
        let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| unreachable(&e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(&e))?;
        tokio::task::spawn_local(connection);
        let path = request
            .url
            .split_once("://")
            .map_or(request.url.as_str(), |(_, rest)| rest.find('/').map_or("/", |i| &rest[i..]));
        let mut builder =
            hyper::Request::builder().method(request.method.as_str()).uri(path).header("host", addr.to_string());
        for (k, v) in &request.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let body = Full::new(Bytes::from(request.body.clone().unwrap_or_default()));
        let request = builder.body(body).map_err(|e| CoreError::BadInput(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(|e| unreachable(&e))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect();
        let body = response.into_body().collect().await.map_err(|e| unreachable(&e))?.to_bytes().to_vec();
        Ok(HttpResponse { status, headers, body })
    }
}

impl HttpClient for &Loopback {
    async fn send(&self, request: HttpRequest) -> tracker_offline_core::Result<HttpResponse> {
        if self.down.get() {
            return Err(CoreError::ServerUnreachable("offline".into()));
        }
        // As the browser binding does: no answer within 15 s is a network failure.
        tokio::time::timeout(Duration::from_secs(15), self.exchange(request))
            .await
            .unwrap_or_else(|_| Err(CoreError::ServerUnreachable("timeout".into())))
    }
}

/// The `dhis2-sim` binary: `$DHIS2_SIM_BIN`, else the workspace's `target/debug/dhis2-sim`
/// (`$CARGO_TARGET_DIR` respected), built with `cargo build -p dhis2-sim` when missing.
pub fn sim_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(bin) = std::env::var_os("DHIS2_SIM_BIN") {
                return PathBuf::from(bin);
            }
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace.join("target"), PathBuf::from);
            let binary = target.join("debug").join(format!("dhis2-sim{}", std::env::consts::EXE_SUFFIX));
            if !binary.exists() {
                let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
                let status = Command::new(cargo)
                    .args(["build", "-q", "-p", "dhis2-sim"])
                    .current_dir(&workspace)
                    .status()
                    .expect("run cargo build -p dhis2-sim");
                assert!(status.success(), "cargo build -p dhis2-sim failed");
            }
            binary
        })
        .clone()
}

/// A `dhis2-sim` process over its own data directory, killed when dropped.
pub struct Sim {
    child: Option<Child>,
    binary: PathBuf,
    args: Vec<String>,
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub url: String,
    /// Where it listens.
    pub addr: SocketAddr,
    data: tempfile::TempDir,
}

impl Sim {
    /// Starts `binary` on a free loopback port with the demo seed, `--faults` and `extra` flags
    /// (e.g. `--tracked-entities 10`, `--version 2.41`).
    pub fn start(binary: &Path, extra: &[&str]) -> Sim {
        let data = tempfile::tempdir().expect("tempdir");
        let args: Vec<String> = ["--host", "127.0.0.1", "--seed", "demo", "--faults"]
            .iter()
            .chain(extra)
            .map(|s| (*s).to_string())
            .collect();
        let (child, addr) = spawn(binary, &args, 0, data.path());
        Sim { child: Some(child), binary: binary.to_owned(), args, url: format!("http://{addr}"), addr, data }
    }

    /// `{url}/api`.
    pub fn api(&self) -> String {
        format!("{}/api", self.url)
    }

    /// Kills the process at once (SIGKILL: no graceful shutdown, open requests get no answer).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same data and the same port (its fault rules, request
    /// log and sessions, kept in memory, are gone).
    pub fn restart(&mut self) {
        self.kill();
        // The port was just freed; another process could take it in between (unlikely on
        // loopback): then a few tries.
        let mut tries = 0;
        loop {
            match std::panic::catch_unwind(|| spawn(&self.binary, &self.args, self.addr.port(), self.data.path())) {
                Ok((child, addr)) => {
                    assert_eq!(addr, self.addr);
                    self.child = Some(child);
                    return;
                }
                Err(e) if tries >= 20 => std::panic::resume_unwind(e),
                Err(_) => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Spawns the sim and waits for its `listening on` line.
fn spawn(binary: &Path, args: &[String], port: u16, data: &Path) -> (Child, SocketAddr) {
    let mut child = Command::new(binary)
        .args(args)
        .args(["--port", &port.to_string()])
        .arg("--data")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e} (build it: cargo build -p dhis2-sim)", binary.display()));
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let url = loop {
        let Some(Ok(line)) = lines.next() else {
            let status = child.wait();
            panic!("dhis2-sim exited before listening ({status:?}; port {port} taken?)");
        };
        if let Some(i) = line.find("listening on ") {
            break line[i + "listening on ".len()..].trim().to_string();
        }
    };
    std::thread::spawn(move || lines.for_each(drop)); // keep its stdout drained
    let addr = url.trim_start_matches("http://").trim_end_matches('/').parse().expect("listening address");
    (child, addr)
}

/// One call as the sim's admin: its `/__sim` API or `/api` (`path` from `/`). The status and
/// the JSON answer (`Null` when it is not JSON).
pub async fn admin_call(http: &Loopback, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    call_as(http, ADMIN_BASIC, method, path, body).await
}

/// One call with the `Authorization` header `authorization` (e.g. [`basic`]), no cookie:
/// the status and the JSON answer (`Null` when it is not JSON).
pub async fn call_as(
    http: &Loopback,
    authorization: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let response = http
        .send(HttpRequest {
            opens_session: false,
            method: method.into(),
            url: path.into(),
            headers: vec![
                ("Authorization".into(), authorization.into()),
                ("Content-Type".into(), "application/json".into()),
            ],
            body: body.map(|b| b.to_string().into_bytes()),
        })
        .await
        .expect("the sim answers");
    (response.status, serde_json::from_slice(&response.body).unwrap_or(Value::Null))
}

/// `Basic <base64(user:password)>`.
pub fn basic(user: &str, password: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = format!("{user}:{password}").into_bytes();
    let mut out = String::from("Basic ");
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() { char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]) } else { '=' });
        }
    }
    out
}

/// [`admin_call`], the answer only.
pub async fn admin(http: &Loopback, method: &str, path: &str, body: Option<Value>) -> Value {
    admin_call(http, method, path, body).await.1
}

/// A device: the real core engine over an in-memory store, talking to the sim over loopback.
pub type Device<'a> = Engine<MemoryStore, RustPbkdf2, OsRandom, &'a Loopback>;

/// nurse1's password in the demo seed.
pub const NURSE1_PASSWORD: &str = "Nurse1!clinic";

/// A device of nurse1 (cheap vault policy) with one online login and the clinic downloaded.
pub async fn device<'a>(api: &str, net: &'a Loopback) -> Device<'a> {
    device_over(api, net, MemoryStore::new()).await
}

/// [`device`] over `store` (a clone shares its data: a test can damage what the device stored).
pub async fn device_over<'a>(api: &str, net: &'a Loopback, store: MemoryStore) -> Device<'a> {
    let policy = VaultPolicy { iterations: 1_000, ..VaultPolicy::default() };
    let config = EngineConfig::new(api, policy).expect("engine config");
    let device = Engine::new(config, store, RustPbkdf2, OsRandom, net);
    device.login("nurse1", NURSE1_PASSWORD, now_ms()).await.expect("login");
    device.download(DownloadOptions::default(), now_ms(), &mut |_| {}).await.expect("download");
    device
}

/// One write the app makes (`path` under `api`), captured by the core; its answer as JSON.
pub async fn capture(device: &Device<'_>, api: &str, method: &str, path: &str, body: Value) -> Value {
    let prepared = device
        .prepare_write(method, &format!("{api}/{path}"), "application/json", body.to_string().as_bytes())
        .expect("prepare_write");
    let answer = device.capture_write(&prepared, now_ms()).await.expect("capture_write");
    serde_json::from_slice(&answer.body).unwrap_or(Value::Null)
}

/// The UID a legacy import answer gave the first record.
pub fn reference(answer: &Value) -> String {
    answer["response"]["importSummaries"][0]["reference"].as_str().expect("a reference in the answer").to_string()
}

/// Tracker Capture's registration (offline or not): the woman with national ID `nid`, her MCH
/// enrollment and a first ANC visit with her weight, each a call of its own. The UIDs of the
/// tracked entity, enrollment and event.
pub async fn register(device: &Device<'_>, api: &str, nid: &str, weight: &str) -> (String, String, String) {
    let woman = json!([{"attribute": "AtNationId1", "value": nid}, {"attribute": "AtFirstNam1", "value": "Noor"},
        {"attribute": "AtLastName1", "value": "Jaber"}, {"attribute": "AtBirthDat1", "value": "1994-02-03"}]);
    let tei = reference(
        &capture(
            device,
            api,
            "POST",
            "trackedEntityInstances",
            json!({"trackedEntityType": "TetPerson01", "orgUnit": OU, "attributes": woman}),
        )
        .await,
    );
    let enrollment = reference(
        &capture(
            device,
            api,
            "POST",
            "enrollments",
            json!({"trackedEntityInstance": tei, "program": P, "orgUnit": OU,
            "status": "ACTIVE", "enrollmentDate": "2026-11-28", "incidentDate": "2026-11-28"}),
        )
        .await,
    );
    let event = reference(
        &capture(
            device,
            api,
            "POST",
            "events.json",
            json!({"events": [{"trackedEntityInstance": tei, "program": P,
            "programStage": ANC, "enrollment": enrollment, "orgUnit": OU, "status": "ACTIVE", "eventDate": "2026-11-28",
            "dataValues": [{"dataElement": "DeWeightKg1", "value": weight}]}]}),
        )
        .await,
    );
    (tei, enrollment, event)
}

#[cfg(test)]
mod tests {
    #[test]
    fn basic_encodes_as_base64() {
        assert_eq!(super::basic("admin", "district"), super::ADMIN_BASIC);
        assert_eq!(super::basic("ab", "c"), "Basic YWI6Yw==");
        assert_eq!(super::basic("a", "b"), "Basic YTpi");
        assert_eq!(super::basic("nurse1", "Nurse1!clinic"), "Basic bnVyc2UxOk51cnNlMSFjbGluaWM=");
    }
}
