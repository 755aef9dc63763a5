//! Measurement, not a gate: generate 50,000 tracked entities and time `query.json` pages.
//! Run with `cargo test -p dhis2-sim --release --test perf -- --ignored --nocapture`.

#![allow(clippy::expect_used, clippy::panic)]

mod common;

use std::time::Instant;

use axum::http::StatusCode;
use common::*;
use dhis2_sim::seed::*;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "measurement; run in release"]
async fn fifty_thousand_tracked_entities() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), "2.40");
    cfg.tracked_entities = 50_000;
    let started = Instant::now();
    let app = dhis2_sim::build_app(&cfg).expect("app");
    println!("generate 50,000 TEIs (with enrollments, events, values): {:?}", started.elapsed());

    let uris = [
        format!("/api/trackedEntityInstances/query.json?ou={OU_BANI_NAIM}&ouMode=SELECTED&program={PROGRAM_MCH}&pageSize=50&page=1&totalPages=false"),
        format!("/api/trackedEntityInstances/query.json?ou={OU_BANI_NAIM}&ouMode=SELECTED&program={PROGRAM_MCH}&pageSize=50&page=1&totalPages=true"),
        format!("/api/trackedEntityInstances/query.json?ou={OU_BANI_NAIM}&ouMode=SELECTED&program={PROGRAM_MCH}&pageSize=50&page=500&totalPages=false"),
        format!("/api/trackedEntityInstances/query.json?ouMode=ACCESSIBLE&program={PROGRAM_MCH}&attribute={ATTR_FIRST_NAME}:LIKE:amal&pageSize=50&page=1"),
        format!("/api/trackedEntityInstances/query.json?ouMode=ACCESSIBLE&program={PROGRAM_MCH}&attribute={ATTR_NATIONAL_ID}:EQ:400000170&pageSize=50&page=1"),
        format!("/api/trackedEntityInstances/query.json?ou={OU_BANI_NAIM}&program={PROGRAM_MCH}&order={ATTR_LAST_NAME}:asc&pageSize=50&page=1"),
    ];
    for uri in &uris {
        // Warm once, then take the best and the median of 10.
        let resp = send(&app, get_as(uri, NURSE1_USERNAME, NURSE1_PASSWORD)).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let mut times = Vec::new();
        let mut rows = 0;
        for _ in 0..10 {
            let t = Instant::now();
            let resp = send(&app, get_as(uri, NURSE1_USERNAME, NURSE1_PASSWORD)).await;
            let v = body_json(resp).await;
            times.push(t.elapsed());
            rows = v["rows"].as_array().map_or(0, Vec::len);
        }
        times.sort();
        println!("{:>8.1?} best {:>8.1?} median  rows={rows:<3} {uri}", times[0], times[5]);
    }
}
