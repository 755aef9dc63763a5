//! R8, the reconnect storm: many clinic devices come back online at once after a 3-day outage
//! and send their outboxes to one real `dhis2-sim` process (spawned here, HTTP over loopback)
//! that sits behind an overload limit (`--max-inflight`: a 503 with `Retry-After` beyond it,
//! as a reverse proxy in front of DHIS2 answers).
//!
//! Each device is the real core engine over its own in-memory store: one online login and a
//! download, then, offline, registrations (woman + enrollment + first visit) and value updates
//! on existing visits, some of them registrations the server must refuse (a national ID it
//! already has). All devices are released within one second and behave as the service worker
//! does: the `online` trigger's random delay, then automatic flushes (`flush_if_due`), each next
//! one when the core's backoff says it is due (after a busy or unreachable answer: as long as
//! the server asked, spread, or the jittered exponential backoff).
//!
//! Reported (stdout, and JSON with `--out`): work delivered exactly once (the server holds each
//! accepted registration once, nothing else), refused work kept on its device with reasons,
//! the server's peak in-flight requests and 503s sent, time to drain per device (p50/p95/max)
//! and the fairness ratio (slowest / median). `--check` exits non-zero on any lost,
//! duplicated or dropped work (correctness only: no timing is asserted).
//!
//! `cargo run -p tracker-offline-conformance --bin storm -- --sim target/debug/dhis2-sim
//!  --devices 50 --check`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use tracker_offline_conformance::live::{
    admin, capture, device, now_ms, rand_unit, register, Device, Loopback, Sim, ANC, OU, P,
};
use tracker_offline_core::{backoff::trigger_delay_ms, flush::FlushScope};

/// Options, `--name value`.
struct Options {
    sim: String,
    devices: usize,
    registrations: usize,
    updates: usize,
    max_inflight: usize,
    out: Option<String>,
    svg: Option<String>,
    check: bool,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let number = |name: &str, default: usize| value(name).map_or(default, |v| v.parse().expect(name));
    Options {
        sim: value("--sim").unwrap_or_else(|| "target/debug/dhis2-sim".into()),
        devices: number("--devices", 50),
        registrations: number("--registrations", 15),
        updates: number("--updates", 5),
        max_inflight: number("--max-inflight", 8),
        out: value("--out"),
        svg: value("--svg"),
        check: args.iter().any(|a| a == "--check"),
    }
}

/// The outage: registrations (one per device refused: a national ID the server has) and value
/// updates on existing visits. Returns the tracked entities the server must accept.
async fn offline_work(
    device: &Device<'_>,
    api: &str,
    index: usize,
    options: &Options,
    taken_nid: &str,
    visits: &[String],
) -> Vec<String> {
    let mut accepted = Vec::new();
    for r in 0..options.registrations {
        let nid = if r == 0 { taken_nid.to_string() } else { format!("8{index:05}{r:03}") };
        let weight = format!("{}.{}", 55 + r % 20, index % 10);
        let (tei, _, _) = register(device, api, &nid, &weight).await;
        if r != 0 {
            accepted.push(tei);
        }
    }
    for u in 0..options.updates {
        let event = &visits[(index + u) % visits.len()];
        capture(
            device,
            api,
            "PUT",
            &format!("events/{event}/DeRemarks01"),
            json!({"dataValues": [{"dataElement": "DeRemarks01", "value": format!("device {index} note {u}")}]}),
        )
        .await;
    }
    accepted
}

/// What one device did once released.
struct Drained {
    ms: u64,
    flushes: u32,
    pending: u64,
    failed: u64,
    failures_with_reasons: usize,
}

/// The device after the network is back: the `online` trigger's random delay, then flushes
/// until nothing is pending, waiting as the service worker does after a busy or unreachable
/// answer.
async fn drain(device: &Device<'_>, released: Instant) -> Drained {
    tokio::time::sleep(Duration::from_millis(trigger_delay_ms(rand_unit()))).await;
    let mut flushes = 0;
    let mut idle = 0u32;
    loop {
        // The flush of an automatic trigger: held while the device backs off (the core's
        // backoff: the server's Retry-After, or exponential with full jitter).
        let report = device.flush_if_due(FlushScope::All, now_ms(), &mut |_| {}).await.expect("flush");
        if report.stopped.as_deref() != Some("BACKING_OFF") {
            flushes += 1;
        }
        if report.remaining == 0 && report.stopped.is_none() {
            break;
        }
        // Work left that flushes neither send nor refuse: it waits for refused work (a visit of
        // a woman the server refused waits for a person to fix or discard her registration).
        // Counted below; the device is done.
        idle = if report.stopped.is_none() && report.sent == 0 && report.failed == 0 { idle + 1 } else { 0 };
        if idle >= 3 {
            break;
        }
        assert_ne!(report.stopped.as_deref(), Some("AUTH_REQUIRED"), "{report:?}");
        if std::env::var("STORM_TRACE").is_ok() {
            eprintln!(
                "{:?} {:?} {:?} sent {} remaining {}",
                report.stopped, report.retry_after_ms, report.next_try_in_ms, report.sent, report.remaining
            );
        }
        // As the page's timer does: when the core says the next try is due. (Work left without
        // a stop waits for a record refused meanwhile: a second later.)
        let wait = report.next_try_in_ms.unwrap_or(1_000).max(1);
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
    let status = device.status().await.unwrap();
    let failures = device.failures().await.unwrap();
    Drained {
        ms: released.elapsed().as_millis() as u64,
        flushes,
        pending: status.pending,
        failed: status.failed,
        failures_with_reasons: failures.iter().filter(|f| !f.reasons.is_empty()).count(),
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The drain time of every device, slowest last, with the median and p95 marked.
fn chart(sorted_ms: &[u64], result: &Value) -> String {
    let (w, h, left, bottom) = (720.0, 360.0, 60.0, 40.0);
    let max = *sorted_ms.last().unwrap_or(&1) as f64;
    let bar = (w - left - 20.0) / sorted_ms.len().max(1) as f64;
    let y = |ms: f64| h - bottom - (h - bottom - 40.0) * ms / max.max(1.0);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <text x=\"{left}\" y=\"20\">R8 reconnect storm: {} devices, {} queued writes, server limit {} in flight; time to drain per device</text>\n",
        result["devices"], result["queuedWrites"], result["maxInflight"]
    );
    for (i, ms) in sorted_ms.iter().enumerate() {
        let top = y(*ms as f64);
        out += &format!(
            "<rect x=\"{:.1}\" y=\"{top:.1}\" width=\"{:.2}\" height=\"{:.1}\" fill=\"#4a7ab5\"/>\n",
            left + i as f64 * bar,
            bar.max(0.5),
            h - bottom - top
        );
    }
    for (label, color) in [("p50", "#2a8a2a"), ("p95", "#c07000")] {
        let ms = result["drainMs"][label].as_f64().unwrap_or(0.0);
        let (line_y, right, text_x, seconds) = (y(ms), w - 20.0, w - 110.0, ms / 1000.0);
        out += &format!(
            "<line x1=\"{left}\" x2=\"{right}\" y1=\"{line_y:.1}\" y2=\"{line_y:.1}\" stroke=\"{color}\"/>\
             <text x=\"{text_x}\" y=\"{:.1}\" fill=\"{color}\">{label} {seconds:.1} s</text>\n",
            line_y - 4.0
        );
    }
    out += &format!(
        "<text x=\"{left}\" y=\"{}\">devices, fastest to slowest · max {:.1} s · fairness (max/median) {} · 503s sent {} · peak in flight {}</text>\n\
         <text x=\"4\" y=\"{:.1}\">{:.0} s</text><text x=\"4\" y=\"{}\">0 s</text>\n</svg>\n",
        h - 12.0,
        max / 1000.0,
        result["fairness"],
        result["overloadRejected"],
        result["peakInflight"],
        y(max) + 4.0,
        max / 1000.0,
        h - bottom
    );
    out
}

fn main() {
    let options = options();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let local = tokio::task::LocalSet::new();
    let failed = local.block_on(&runtime, storm(options));
    std::process::exit(i32::from(failed));
}

async fn storm(options: Options) -> bool {
    let sim = Sim::start(std::path::Path::new(&options.sim), &["--tracked-entities", "10"]);
    let addr = sim.addr;
    let api = sim.api();
    let control = Loopback::new(addr);
    // What the seed has: a national ID to collide with, visits to update, the women count.
    let teis = admin(
        &control,
        "GET",
        &format!("/api/trackedEntityInstances.json?ou={OU}&program={P}&fields=*&pageSize=50"),
        None,
    )
    .await;
    let list = teis["trackedEntityInstances"].as_array().cloned().unwrap_or_default();
    let taken_nid = list
        .iter()
        .flat_map(|t| t["attributes"].as_array().cloned().unwrap_or_default())
        .find(|a| a["attribute"] == "AtNationId1")
        .and_then(|a| a["value"].as_str().map(str::to_string))
        .expect("a seeded national ID");
    // Five visits of the seed, opened by the district so the nurses may change them.
    let events = admin(
        &control,
        "GET",
        &format!("/api/tracker/events?orgUnit={OU}&program={P}&programStage={ANC}&fields=*&pageSize=5"),
        None,
    )
    .await;
    let mut visits = Vec::new();
    for event in
        events.get("events").or_else(|| events.get("instances")).and_then(Value::as_array).cloned().unwrap_or_default()
    {
        let mut header = event.clone();
        let fields = header.as_object_mut().unwrap();
        for key in [
            "dataValues",
            "notes",
            "relationships",
            "createdAt",
            "updatedAt",
            "createdBy",
            "updatedBy",
            "storedBy",
            "completedAt",
            "completedBy",
        ] {
            fields.remove(key);
        }
        fields.insert("status".into(), json!("ACTIVE"));
        admin(&control, "POST", "/api/tracker?async=false&importStrategy=UPDATE", Some(json!({"events": [header]})))
            .await;
        visits.push(event["event"].as_str().unwrap().to_string());
    }
    assert!(!visits.is_empty(), "the seed has visits: {events}");
    let women_before = list.len();

    // Devices: one online login and a download each, then the outage and the offline work.
    let setup = Instant::now();
    // Each device's network lives as long as the program (the engines borrow it).
    let networks: Vec<&'static Loopback> =
        (0..options.devices).map(|_| &*Box::leak(Box::new(Loopback::new(addr)))).collect();
    let mut devices = Vec::new();
    let mut expected: Vec<Vec<String>> = Vec::new();
    for (i, net) in networks.iter().enumerate() {
        let device: Device<'static> = device(&api, net).await;
        net.down.set(true);
        expected.push(offline_work(&device, &api, i, &options, &taken_nid, &visits).await);
        devices.push(device);
    }
    let queued: u64 = {
        let mut n = 0;
        for d in &devices {
            n += d.status().await.unwrap().pending;
        }
        n
    };
    eprintln!(
        "{} devices ready with {queued} queued writes in {:.1} s",
        options.devices,
        setup.elapsed().as_secs_f64()
    );

    // The server comes back behind its limit; the devices are released within one second.
    admin(&control, "PUT", "/__sim/load", Some(json!({"maxInflight": options.max_inflight, "retryAfterSecs": 1})))
        .await;
    admin(&control, "DELETE", "/__sim/counters", None).await;
    let released = Instant::now();
    let mut tasks = Vec::new();
    for (device, net) in devices.into_iter().zip(networks.iter().copied()) {
        let start = Duration::from_millis((rand_unit() * 1000.0) as u64);
        tasks.push(tokio::task::spawn_local(async move {
            tokio::time::sleep(start).await;
            net.down.set(false);
            drain(&device, released).await
        }));
    }
    let mut drained = Vec::new();
    for t in tasks {
        drained.push(t.await.unwrap());
    }
    let wall_ms = released.elapsed().as_millis() as u64;
    let counters = admin(&control, "GET", "/__sim/counters", None).await;
    admin(&control, "DELETE", "/__sim/load", None).await;

    // Exactly once: the server holds every accepted registration once, and nothing more.
    let mut missing = 0usize;
    let all: Vec<String> = expected.iter().flatten().cloned().collect();
    for chunk in all.chunks(50) {
        let found = admin(&control, "GET", &format!("/api/trackedEntityInstances.json?trackedEntityInstance={}&ouMode=ACCESSIBLE&fields=trackedEntityInstance&skipPaging=true", chunk.join(";")), None).await;
        let got = found["trackedEntityInstances"].as_array().map_or(0, Vec::len);
        missing += chunk.len() - got;
    }
    let after = admin(
        &control,
        "GET",
        &format!("/api/trackedEntityInstances.json?ou={OU}&program={P}&fields=trackedEntityInstance&skipPaging=true"),
        None,
    )
    .await;
    let women_after = after["trackedEntityInstances"].as_array().map_or(0, Vec::len);
    // Registrations on the server beyond the accepted ones that arrived: duplicates.
    let delta = women_after as i64 - women_before as i64;
    let duplicated = (delta - (all.len() - missing) as i64).max(0);
    let extra_or_lost = delta - all.len() as i64;
    // Each device's refused registration (3 entries): refused, or waiting for the refused
    // woman (when a busy answer cut the flush between her and her enrollment or visit).
    let pending: u64 = drained.iter().map(|d| d.pending).sum();
    let refused: u64 = drained.iter().map(|d| d.failed).sum();
    let refused_expected = (options.devices * 3) as u64;
    let kept_with_reasons = drained
        .iter()
        .all(|d| d.failures_with_reasons as u64 == d.failed && d.failed >= 1 && d.failed + d.pending == 3);
    let mut times: Vec<u64> = drained.iter().map(|d| d.ms).collect();
    times.sort_unstable();
    let (p50, p95, max) = (percentile(&times, 0.5), percentile(&times, 0.95), *times.last().unwrap());
    let fairness = max as f64 / p50.max(1) as f64;
    let flushes: u32 = drained.iter().map(|d| d.flushes).sum();
    let result = json!({
        "devices": options.devices, "queuedWrites": queued, "maxInflight": options.max_inflight,
        "acceptedRegistrations": all.len(), "missing": missing, "duplicated": duplicated,
        "serverWomenDelta": women_after as i64 - women_before as i64,
        "waitingForRefused": pending, "refusedKept": refused, "refusedOrWaitingExpected": refused_expected,
        "refusedKeptWithReasons": kept_with_reasons,
        "peakInflight": counters["peakInflight"], "overloadRejected": counters["overloadRejected"],
        "requests": counters["total"], "flushes": flushes,
        "drainMs": {"p50": p50, "p95": p95, "max": max}, "fairness": (fairness * 100.0).round() / 100.0,
        "wallMs": wall_ms,
    });
    println!("{}", serde_json::to_string_pretty(&result).unwrap());
    if let Some(out) = &options.out {
        std::fs::write(out, serde_json::to_string_pretty(&result).unwrap() + "\n").unwrap();
    }
    if let Some(svg) = &options.svg {
        std::fs::write(svg, chart(&times, &result)).unwrap();
    }
    let mut problems: BTreeMap<&str, String> = BTreeMap::new();
    if missing != 0 || extra_or_lost != 0 {
        problems.insert("exactly once", format!("missing {missing}, server delta off by {extra_or_lost}"));
    }
    if refused + pending != refused_expected || !kept_with_reasons {
        problems.insert(
            "refused kept",
            format!("{refused} refused + {pending} waiting (expected {refused_expected} in all), with reasons: {kept_with_reasons}"),
        );
    }
    for (what, why) in &problems {
        eprintln!("FAILED {what}: {why}");
    }
    options.check && !problems.is_empty()
}
