//! `ImportSummary` / `ImportSummaries` of the legacy tracker importer (`dxf2/importsummary`)
//! and the WebMessage they travel in (`WebMessageUtils.importSummary[ies]`): SUCCESS → 200
//! `OK`; WARNING → 409 `WARNING`; ERROR → 409 `ERROR`.

use axum::{http::StatusCode, response::Response};
use serde_json::{json, Map, Value};

use crate::error::WebMessage;

/// `ImportStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ImportStatus {
    /// Everything imported.
    Success,
    /// Imported with conflicts.
    Warning,
    /// Not imported.
    Error,
}

impl ImportStatus {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            ImportStatus::Success => "SUCCESS",
            ImportStatus::Warning => "WARNING",
            ImportStatus::Error => "ERROR",
        }
    }
}

/// One object's import result.
#[derive(Debug, Clone)]
pub struct ImportSummary {
    /// Status.
    pub status: ImportStatus,
    /// Description (errors without conflicts, deletion notes).
    pub description: Option<String>,
    /// `importCount.imported`.
    pub imported: u32,
    /// `importCount.updated`.
    pub updated: u32,
    /// `importCount.deleted`.
    pub deleted: u32,
    /// `importCount.ignored`.
    pub ignored: u32,
    /// Conflicts: `(object, value)`.
    pub conflicts: Vec<(String, String)>,
    /// UID of the object.
    pub reference: Option<String>,
    /// Link to the object.
    pub href: Option<String>,
    /// Nested enrollment results (TEI imports).
    pub enrollments: Option<ImportSummaries>,
    /// Nested event results (enrollment imports).
    pub events: Option<ImportSummaries>,
}

impl ImportSummary {
    /// A SUCCESS summary with no counts yet.
    pub fn new(reference: Option<String>) -> Self {
        Self {
            status: ImportStatus::Success,
            description: None,
            imported: 0,
            updated: 0,
            deleted: 0,
            ignored: 0,
            conflicts: Vec::new(),
            reference,
            href: None,
            enrollments: None,
            events: None,
        }
    }

    /// An ERROR summary, one ignored object, with a description.
    pub fn error(reference: Option<String>, description: impl Into<String>) -> Self {
        let mut s = Self::new(reference);
        s.status = ImportStatus::Error;
        s.description = Some(description.into());
        s.ignored = 1;
        s
    }

    /// An ERROR summary, one ignored object, with conflicts.
    pub fn conflicts(reference: Option<String>, conflicts: Vec<(String, String)>) -> Self {
        let mut s = Self::new(reference);
        s.status = ImportStatus::Error;
        s.ignored = 1;
        s.conflicts = conflicts;
        s
    }

    /// The JSON object.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("responseType".into(), json!("ImportSummary"));
        m.insert("status".into(), json!(self.status.as_str()));
        if let Some(d) = &self.description {
            m.insert("description".into(), json!(d));
        }
        m.insert(
            "importCount".into(),
            json!({"imported": self.imported, "updated": self.updated, "ignored": self.ignored, "deleted": self.deleted}),
        );
        m.insert(
            "conflicts".into(),
            Value::Array(self.conflicts.iter().map(|(o, v)| json!({"object": o, "value": v})).collect()),
        );
        if let Some(r) = &self.reference {
            m.insert("reference".into(), json!(r));
        }
        if let Some(h) = &self.href {
            m.insert("href".into(), json!(h));
        }
        if let Some(e) = &self.enrollments {
            m.insert("enrollments".into(), e.to_json(None));
        }
        if let Some(e) = &self.events {
            m.insert("events".into(), e.to_json(None));
        }
        Value::Object(m)
    }

    /// The WebMessage of a single summary (PUT, DELETE).
    pub fn web_message(&self) -> WebMessage {
        envelope(self.status, false).with_response(self.to_json())
    }
}

/// A list of import summaries with totals.
#[derive(Debug, Clone, Default)]
pub struct ImportSummaries {
    /// The summaries, in input order.
    pub summaries: Vec<ImportSummary>,
}

impl ImportSummaries {
    /// Adds a summary.
    pub fn push(&mut self, s: ImportSummary) {
        self.summaries.push(s);
    }

    /// The highest status (SUCCESS when empty).
    pub fn status(&self) -> ImportStatus {
        self.summaries.iter().map(|s| s.status).max().unwrap_or(ImportStatus::Success)
    }

    /// The JSON object; `import_options` is echoed at the top when given.
    pub fn to_json(&self, import_options: Option<&Value>) -> Value {
        let sum = |f: fn(&ImportSummary) -> u32| self.summaries.iter().map(f).sum::<u32>();
        let (imported, updated, deleted, ignored) =
            (sum(|s| s.imported), sum(|s| s.updated), sum(|s| s.deleted), sum(|s| s.ignored));
        let mut m = Map::new();
        m.insert("responseType".into(), json!("ImportSummaries"));
        m.insert("status".into(), json!(self.status().as_str()));
        m.insert("imported".into(), json!(imported));
        m.insert("updated".into(), json!(updated));
        m.insert("deleted".into(), json!(deleted));
        m.insert("ignored".into(), json!(ignored));
        if let Some(o) = import_options {
            m.insert("importOptions".into(), o.clone());
        }
        m.insert("importSummaries".into(), Value::Array(self.summaries.iter().map(ImportSummary::to_json).collect()));
        m.insert("total".into(), json!(imported + updated + deleted + ignored));
        Value::Object(m)
    }

    /// The WebMessage of a POST; `always_created` gives the 201 of `POST /api/enrollments`
    /// (2.37–2.41), whatever the status.
    pub fn web_message(&self, import_options: &Value, always_created: bool) -> WebMessage {
        envelope(self.status(), always_created).with_response(self.to_json(Some(import_options)))
    }
}

fn envelope(status: ImportStatus, always_created: bool) -> WebMessage {
    let mut wm = match status {
        ImportStatus::Success => WebMessage::ok(StatusCode::OK, "Import was successful."),
        ImportStatus::Warning => WebMessage {
            status: StatusCode::CONFLICT,
            outcome: "WARNING",
            message: Some("One or more conflicts encountered, please check import summary.".into()),
            response: None,
        },
        ImportStatus::Error => {
            WebMessage::error(StatusCode::CONFLICT, "An error occurred, please check import summary.")
        }
    };
    if always_created {
        wm.status = StatusCode::CREATED;
    }
    wm
}

/// The `importOptions` object DHIS2 echoes in import responses.
pub fn import_options(strategy: &str, dry_run: bool) -> Value {
    json!({
        "idSchemes": {},
        "dryRun": dry_run,
        "async": false,
        "importStrategy": strategy,
        "mergeMode": "REPLACE",
        "reportMode": "FULL",
        "skipExistingCheck": false,
        "sharing": false,
        "skipNotifications": false,
        "skipAudit": false,
        "datasetAllowsPeriods": false,
        "strictPeriods": false,
        "strictDataElements": false,
        "strictCategoryOptionCombos": false,
        "strictAttributeOptionCombos": false,
        "strictOrganisationUnits": false,
        "requireCategoryOptionCombo": false,
        "requireAttributeOptionCombo": false,
        "skipPatternValidation": false,
        "ignoreEmptyCollection": false,
        "force": false,
        "firstRowIsHeader": true,
        "skipLastUpdated": false,
        "mergeDataValues": false,
        "skipCache": false,
    })
}

/// Turns a WebMessage into a response.
pub fn respond(wm: WebMessage) -> Response {
    axum::response::IntoResponse::into_response(wm)
}
