//! The `ImportReport` of `POST /api/tracker` as each version answers it: error and warning
//! reports, stats, the bundle report, `timingsStats`, and what `reportMode` keeps.

use serde_json::{json, Map, Value};

use super::{ErrorReport, Obj, Op, TrackerType};
use crate::{error::ApiError, tracker::validate::new_tracker::Run, version::ServerVersion};

fn error_reports(errors: &[ErrorReport], minor: u32) -> Vec<Value> {
    errors
        .iter()
        .map(|e| {
            let mut m =
                json!({"message": e.message, "errorCode": e.code, "trackerType": e.kind.as_str(), "uid": e.uid});
            if minor >= 41 {
                m["args"] = json!(e.args);
            }
            m
        })
        .collect()
}

/// `warningReports` entries (`Warning`: `warningCode`, `message`, `trackerType`, `uid`).
fn warning_reports(warnings: &[ErrorReport]) -> Vec<Value> {
    warnings
        .iter()
        .map(|w| json!({"message": w.message, "warningCode": w.code, "trackerType": w.kind.as_str(), "uid": w.uid}))
        .collect()
}

fn timings_stats(validation_secs: f64, total_secs: f64) -> Value {
    let secs = |s: f64| format!("{s:.3} sec.");
    json!({"timers": {
        "preheat": secs(0.0),
        "preprocess": secs(0.0),
        "validation": secs(validation_secs),
        "commit": secs((total_secs - validation_secs).max(0.0)),
        "totalImport": secs(total_secs),
    }})
}

/// The report of an `atomicMode=ALL` import that stopped at validation.
pub(super) fn validation_errors_report(run: &Run<'_>, bundle_size: usize, version: ServerVersion, secs: f64) -> Value {
    let mut report = json!({
        "status": "ERROR",
        "validationReport": {"errorReports": error_reports(&run.errors, version.minor),
                             "warningReports": warning_reports(&run.warnings)},
        "stats": stats(0, 0, 0, bundle_size),
    });
    if version.minor <= 40 {
        report["timingsStats"] = timings_stats(secs, secs);
    }
    report
}

/// `reportMode` of `POST /api/tracker` and `GET /api/tracker/jobs/{id}/report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportMode {
    /// Errors, warnings and (up to 2.40) `timingsStats`.
    Full,
    /// Errors only (the default): `warningReports` is `[]`.
    Errors,
    /// Errors and warnings.
    Warnings,
}

impl ReportMode {
    /// Parses `reportMode` (case-insensitive; default ERRORS; anything else a 400).
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        match raw.map(str::trim).filter(|s| !s.is_empty()).map(str::to_ascii_uppercase).as_deref() {
            None | Some("ERRORS") => Ok(ReportMode::Errors),
            Some("FULL") => Ok(ReportMode::Full),
            Some("WARNINGS") => Ok(ReportMode::Warnings),
            Some(_) => Err(ApiError::BadRequest(format!(
                "Value '{}' is not valid for parameter reportMode. Valid values are: [FULL, ERRORS, WARNINGS]",
                raw.unwrap_or_default().trim()
            ))),
        }
    }

    /// The report as `buildImportReport` shapes it (dhis2-core 2.41 DefaultTrackerImportService
    /// 166-189, 2.40 :323-345): warnings only in WARNINGS/FULL (the key stays, `[]`),
    /// `timingsStats` only in FULL.
    pub fn apply(self, report: &Value) -> Value {
        let mut out = report.clone();
        if self != ReportMode::Full {
            if let Some(m) = out.as_object_mut() {
                m.remove("timingsStats");
            }
        }
        if self == ReportMode::Errors {
            if let Some(v) = out.get_mut("validationReport").and_then(Value::as_object_mut) {
                v.insert("warningReports".into(), json!([]));
            }
        }
        out
    }
}

fn stats(created: usize, updated: usize, deleted: usize, ignored: usize) -> Value {
    json!({"created": created, "updated": updated, "deleted": deleted, "ignored": ignored,
           "total": created + updated + deleted + ignored})
}

pub(super) fn build_report(
    objs: &[Obj],
    done: &[bool],
    run: &Run<'_>,
    status: &str,
    version: ServerVersion,
    (validation_secs, total_secs): (f64, f64),
) -> Value {
    let minor = version.minor;
    let error_reports = error_reports(&run.errors, minor);
    let mut type_map = Map::new();
    let mut total = (0, 0, 0, 0);
    for kind in [TrackerType::TrackedEntity, TrackerType::Enrollment, TrackerType::Event] {
        let (mut c, mut u, mut d, mut ig) = (0, 0, 0, 0);
        let mut reports = Vec::new();
        for (o, ok) in objs.iter().zip(done).filter(|(o, _)| o.kind == kind) {
            if !*ok {
                ig += 1;
                continue;
            }
            match o.op {
                Op::Create => c += 1,
                Op::Update => u += 1,
                Op::Delete => d += 1,
            }
            let mut r = json!({"trackerType": kind.as_str(), "uid": o.uid, "errorReports": []});
            if minor <= 40 {
                r["index"] = json!(o.index);
            }
            reports.push(r);
        }
        total = (total.0 + c, total.1 + u, total.2 + d, total.3 + ig);
        type_map.insert(
            kind.as_str().into(),
            json!({"trackerType": kind.as_str(), "stats": stats(c, u, d, ig), "objectReports": reports}),
        );
    }
    type_map.insert(
        "RELATIONSHIP".into(),
        json!({"trackerType": "RELATIONSHIP", "stats": stats(0, 0, 0, 0), "objectReports": []}),
    );
    let mut bundle = json!({"typeReportMap": type_map});
    if minor <= 39 {
        bundle["status"] = json!(status);
    }
    let mut report = json!({
        "status": status,
        "validationReport": {"errorReports": error_reports, "warningReports": warning_reports(&run.warnings)},
        "stats": stats(total.0, total.1, total.2, total.3),
        "bundleReport": bundle,
    });
    if minor <= 40 {
        report["timingsStats"] = timings_stats(validation_secs, total_secs);
    }
    report
}
