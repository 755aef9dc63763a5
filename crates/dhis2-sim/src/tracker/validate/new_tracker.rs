//! The new tracker's validation (`POST /api/tracker`): every object of a flattened bundle
//! checked with DHIS2's error codes (`ValidationCode`, core@HEAD), the children of a failed
//! creation marked E5000; no write. What a valid object then does is `bundle::commit`'s.

use std::collections::{HashMap, HashSet};

use rusqlite::Connection;
use serde_json::Value;

use crate::{
    db::OrgUnit,
    error::ApiError,
    model::Metadata,
    tracker::{
        bundle::{ErrorReport, ImportParams, Obj, Op, TrackerType},
        dates,
        import::{text, Strategy},
        scope::UserScope,
        store,
    },
    uid,
};

use super::{
    codes,
    values::{self, ValueProblem},
};

/// One validation run: what the checks read, and the errors and warnings they found.
pub(crate) struct Run<'a> {
    conn: &'a Connection,
    md: &'a Metadata,
    user: &'a UserScope,
    ous: &'a HashMap<String, OrgUnit>,
    authorities: &'a [String],
    params: ImportParams,
    /// The errors found.
    pub errors: Vec<ErrorReport>,
    /// The warnings found.
    pub warnings: Vec<ErrorReport>,
}

impl<'a> Run<'a> {
    /// A run with no finding yet.
    pub(crate) fn new(
        conn: &'a Connection,
        md: &'a Metadata,
        user: &'a UserScope,
        ous: &'a HashMap<String, OrgUnit>,
        authorities: &'a [String],
        params: ImportParams,
    ) -> Self {
        Self { conn, md, user, ous, authorities, params, errors: Vec::new(), warnings: Vec::new() }
    }

    fn warn(&mut self, o: &Obj, code: &'static str, args: &[&str]) {
        self.warnings.push(ErrorReport {
            code,
            message: codes::message(code, args),
            kind: o.kind,
            uid: o.uid.clone(),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
        });
    }

    fn err(&mut self, o: &Obj, code: &'static str, args: &[&str]) {
        self.errors.push(ErrorReport {
            code,
            message: codes::message(code, args),
            kind: o.kind,
            uid: o.uid.clone(),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
        });
    }

    /// Reports a value problem with its error code.
    fn problem(&mut self, o: &Obj, problem: &ValueProblem) {
        let (code, args) = problem.error_code();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.err(o, code, &args);
    }

    /// A property the object must have: `code` (with the property's name) when it is absent.
    fn required(&mut self, o: &Obj, given: Option<String>, code: &'static str, property: &str) -> Option<String> {
        if given.is_none() {
            self.err(o, code, &[property]);
        }
        given
    }

    /// What a UID the object names was found to be: `code` (with the UID) when nothing.
    fn known<T>(&mut self, o: &Obj, found: Option<T>, code: &'static str, uid: &str) -> Option<T> {
        if found.is_none() {
            self.err(o, code, &[uid]);
        }
        found
    }

    /// Capture scope for an org unit and, when the object moves from a stored one, for that one
    /// too (E1000 for each that fails; the stored one is checked only when the new one passes).
    fn capture_move(&mut self, o: &Obj, ou: &str, stored: Option<&str>) {
        if self.capture(o, ou) {
            if let Some(from) = stored.filter(|from| *from != ou) {
                self.capture(o, from);
            }
        }
    }

    fn has_authority(&self, a: &str) -> bool {
        self.user.superuser || self.authorities.iter().any(|x| x == a || x == "ALL")
    }

    fn capture(&mut self, o: &Obj, ou: &str) -> bool {
        let ok = self.ous.get(ou).is_some_and(|x| self.user.can_capture(&x.path));
        if !ok {
            let user = self.user.username.clone();
            self.err(o, "E1000", &[&user, ou]);
        }
        ok
    }

    /// Resolves the object's operation against the database; `Err(())` when an existence
    /// error was reported.
    fn resolve(&mut self, o: &mut Obj, exists: Option<bool>) -> Result<(), ()> {
        let (dup, missing, deleted) = match o.kind {
            TrackerType::TrackedEntity => ("E1002", "E1063", "E1114"),
            TrackerType::Enrollment => ("E1080", "E1081", "E1113"),
            TrackerType::Event => ("E1030", "E1032", "E1082"),
        };
        let uid = o.uid.clone();
        o.existed = exists.is_some();
        if !uid::is_valid(&uid) {
            self.err(o, "E1048", &[&uid, &uid]);
            return Err(());
        }
        let strategy = self.params.strategy;
        o.op = match (strategy, exists) {
            (Strategy::Create, Some(_)) => {
                self.err(o, dup, &[&uid]);
                return Err(());
            }
            (_, Some(true)) => {
                self.err(o, deleted, &[&uid]);
                return Err(());
            }
            (Strategy::Update | Strategy::Delete, None) => {
                self.err(o, missing, &[&uid]);
                return Err(());
            }
            (Strategy::Delete, Some(false)) => Op::Delete,
            (Strategy::Update | Strategy::CreateAndUpdate, Some(false)) => Op::Update,
            (Strategy::Create | Strategy::CreateAndUpdate, None) => Op::Create,
        };
        Ok(())
    }

    fn check_attributes(
        &mut self,
        o: &Obj,
        te_id: Option<i64>,
        seen_unique: &mut HashMap<(String, String), String>,
    ) -> Result<(), ApiError> {
        for a in o.v.get("attributes").and_then(Value::as_array).cloned().unwrap_or_default() {
            let Some(attr) = text(&a, "attribute") else {
                self.problem(o, &ValueProblem::AttributeMissing);
                continue;
            };
            let Some(meta) = self.md.attribute(&attr) else {
                self.problem(o, &ValueProblem::AttributeUnknown { attribute: attr });
                continue;
            };
            let Some(value) = text(&a, "value") else { continue };
            if let Some(problem) = values::attribute_value(self.conn, self.md, meta, &value, te_id)? {
                self.problem(o, &problem);
                continue;
            }
            if meta.unique {
                let te_uid =
                    o.parent.clone().filter(|_| o.kind == TrackerType::Enrollment).unwrap_or_else(|| o.uid.clone());
                let in_bundle = seen_unique.get(&(attr.clone(), value.clone())).filter(|t| **t != te_uid).cloned();
                if in_bundle.is_some() {
                    self.problem(o, &ValueProblem::AttributeNotUnique { attribute: attr, value });
                    continue;
                }
                seen_unique.insert((attr, value), te_uid);
            }
        }
        Ok(())
    }
}

/// What the validation knows about the bundle's objects.
#[derive(Default)]
struct BundleIndex {
    /// UIDs of objects that failed (own errors or E5000).
    failed: HashSet<String>,
    /// UIDs of all objects in the payload.
    in_payload: HashSet<String>,
    /// Tracked entity attributes in the bundle by TE UID (non-null values).
    te_attrs: HashMap<String, HashSet<String>>,
    /// Program of each enrollment in the bundle.
    enrollment_program: HashMap<String, String>,
    /// Active enrollments created in the bundle: (TE, program).
    active: HashSet<(String, String)>,
    /// Events created in the bundle in a non-repeatable stage: (enrollment, stage).
    non_repeatable: HashSet<(String, String)>,
}

fn attr_set(v: &Value) -> HashSet<String> {
    v.get("attributes")
        .and_then(Value::as_array)
        .map(|l| l.iter().filter(|a| text(a, "value").is_some()).filter_map(|a| text(a, "attribute")).collect())
        .unwrap_or_default()
}

/// Validates one tracked entity; returns `true` when it has no error.
fn validate_te(run: &mut Run<'_>, o: &mut Obj, seen: &mut HashMap<(String, String), String>) -> Result<bool, ApiError> {
    let before = run.errors.len();
    let stored = store::te_by_uid(run.conn, &o.uid)?;
    if run.resolve(o, stored.as_ref().map(|t| t.deleted)).is_err() {
        return Ok(false);
    }
    if o.op == Op::Delete {
        if let Some(te) = &stored {
            if run.capture(o, &te.org_unit) {
                let has_children =
                    !store::enrollments_where(run.conn, "e.te_id = ?1 AND e.deleted = 0", &[&te.id])?.is_empty();
                if has_children && !run.has_authority("F_TEI_CASCADE_DELETE") {
                    let user = run.user.username.clone();
                    run.err(o, "E1100", &[&user, &te.uid]);
                }
            }
        }
        return Ok(run.errors.len() == before);
    }
    match text(&o.v, "trackedEntityType") {
        None => run.err(o, "E1121", &["trackedEntityType"]),
        Some(t) if run.md.tracked_entity_type(&t).is_none() => run.err(o, "E1005", &[&t]),
        Some(_) => {}
    }
    match text(&o.v, "orgUnit") {
        None => run.err(o, "E1121", &["orgUnit"]),
        Some(ou) if !run.ous.contains_key(&ou) => run.err(o, "E1049", &[&ou]),
        Some(ou) => {
            run.capture_move(o, &ou, stored.as_ref().map(|t| t.org_unit.as_str()));
        }
    }
    run.check_attributes(o, stored.as_ref().map(|t| t.id), seen)?;
    Ok(run.errors.len() == before)
}

/// The notes of an enrollment or event: a malformed note UID is E1048 (2.41 ValidationUtils
/// `validateNotesUid`, :268; a missing one is generated by `BodyConverter`); a note whose UID is
/// already stored is warning E1119 and is not added again (`validateNotes`, :102-117).
fn check_notes(run: &mut Run<'_>, o: &Obj) -> Result<(), ApiError> {
    let notes = o.v.get("notes").and_then(Value::as_array).cloned().unwrap_or_default();
    for n in &notes {
        let Some(note_uid) = text(n, "note") else { continue };
        if !uid::is_valid(&note_uid) {
            run.err(o, "E1048", &[&note_uid, &note_uid]);
            continue;
        }
        if text(n, "value").is_some() && store::note_exists(run.conn, &note_uid)? {
            run.warn(o, "E1119", &[&note_uid]);
        }
    }
    Ok(())
}

fn validate_enrollment(
    run: &mut Run<'_>,
    o: &mut Obj,
    idx: &BundleIndex,
    seen: &mut HashMap<(String, String), String>,
) -> Result<bool, ApiError> {
    let before = run.errors.len();
    let stored = store::enrollment_by_uid(run.conn, &o.uid)?;
    if run.resolve(o, stored.as_ref().map(|e| e.deleted)).is_err() {
        return Ok(false);
    }
    check_notes(run, o)?;
    let user = run.user.username.clone();
    if o.op == Op::Delete {
        if let Some(e) = &stored {
            if run.capture(o, &e.org_unit) {
                let n = store::events_where(run.conn, "v.enrollment_id = ?1 AND v.deleted = 0", &[&e.id])?.len();
                if n > 0 && !run.has_authority("F_ENROLLMENT_CASCADE_DELETE") {
                    run.err(o, "E1103", &[&user, &e.uid]);
                }
            }
        }
        return Ok(run.errors.len() == before);
    }
    let Some(te_uid) = text(&o.v, "trackedEntity").or_else(|| stored.as_ref().map(|e| e.te_uid.clone())) else {
        run.err(o, "E1122", &["trackedEntity"]);
        return Ok(false);
    };
    let te_row = store::te_by_uid(run.conn, &te_uid)?.filter(|t| !t.deleted);
    if te_row.is_none() && !idx.in_payload.contains(&te_uid) {
        run.err(o, "E1068", &[&te_uid]);
    }
    let program = run.required(o, text(&o.v, "program"), "E1122", "program").and_then(|p| {
        let found = run.md.program(&p).cloned();
        run.known(o, found, "E1069", &p)
    });
    let ou = run.required(o, text(&o.v, "orgUnit"), "E1122", "orgUnit").and_then(|ou| {
        let found = run.ous.contains_key(&ou).then(|| ou.clone());
        run.known(o, found, "E1070", &ou)
    });
    if text(&o.v, "enrolledAt").and_then(|d| dates::normalise(&d)).is_none() {
        run.err(o, "E1025", &[]);
    }
    if let (Some(p), Some(ou)) = (&program, &ou) {
        if p.program_type != "WITH_REGISTRATION" {
            run.err(o, "E1014", &[&p.uid]);
        } else if !p.org_units.is_empty() && !p.org_units.contains(ou) {
            run.err(o, "E1041", &[ou, &p.uid]);
        }
        run.capture_move(o, ou, stored.as_ref().map(|e| e.org_unit.as_str()));
        let status = text(&o.v, "status").unwrap_or_else(|| "ACTIVE".into()).to_ascii_uppercase();
        if let Some(te) = &te_row {
            if !super::owns(run.conn, run.user, run.ous, te.id, &te.org_unit, p)? {
                run.err(o, "E1102", &[&user, &te.uid, &p.uid]);
            }
            if o.op == Op::Create && status == "ACTIVE" {
                let others = store::enrollments_where(
                    run.conn,
                    "e.te_id = ?1 AND e.program = ?2 AND e.deleted = 0",
                    &[&te.id, &p.uid],
                )?;
                if others.iter().any(|e| e.status == "ACTIVE") {
                    run.err(o, "E1015", &[&te.uid, &p.uid]);
                } else if p.only_enroll_once && others.iter().any(|e| e.status != "CANCELLED") {
                    run.err(o, "E1016", &[&te.uid, &p.uid]);
                }
            }
        }
        if o.op == Op::Create && status == "ACTIVE" && idx.active.contains(&(te_uid.clone(), p.uid.clone())) {
            run.err(o, "E1015", &[&te_uid, &p.uid]);
        }
        if o.op == Op::Create {
            let mut present: HashSet<String> = attr_set(&o.v);
            if let Some(te) = &te_row {
                present.extend(store::attribute_values(run.conn, te.id)?.into_iter().map(|a| a.0));
            }
            if let Some(a) = idx.te_attrs.get(&te_uid) {
                present.extend(a.iter().cloned());
            }
            for pa in p.attributes.iter().filter(|pa| pa.mandatory) {
                if !present.contains(&pa.attribute) {
                    run.err(o, "E1018", &[&pa.attribute, &p.uid, &o.uid.clone()]);
                }
            }
        }
    }
    run.check_attributes(o, te_row.as_ref().map(|t| t.id), seen)?;
    Ok(run.errors.len() == before)
}

fn validate_event(run: &mut Run<'_>, o: &mut Obj, idx: &BundleIndex) -> Result<bool, ApiError> {
    let before = run.errors.len();
    let stored = store::event_by_uid(run.conn, &o.uid)?;
    if run.resolve(o, stored.as_ref().map(|e| e.deleted)).is_err() {
        return Ok(false);
    }
    check_notes(run, o)?;
    let user = run.user.username.clone();
    if o.op == Op::Delete {
        if let Some(e) = &stored {
            run.capture(o, &e.org_unit);
        }
        return Ok(run.errors.len() == before);
    }
    let given_stage = text(&o.v, "programStage").or_else(|| stored.as_ref().map(|e| e.program_stage.clone()));
    let stage = run.required(o, given_stage, "E1123", "programStage").and_then(|s| {
        let found = run.md.stage(&s).cloned();
        run.known(o, found, "E1013", &s)
    });
    let program = text(&o.v, "program").or_else(|| stage.as_ref().map(|s| s.program.clone())).and_then(|p| {
        let found = run.md.program(&p).cloned();
        run.known(o, found, "E1010", &p)
    });
    if let (Some(s), Some(p)) = (&stage, &program) {
        if s.program != p.uid {
            run.err(o, "E1089", &[&o.uid.clone(), &s.uid, &p.uid]);
        }
    }
    let ou = run.required(o, text(&o.v, "orgUnit"), "E1123", "orgUnit").and_then(|ou| {
        let found = run.ous.contains_key(&ou).then(|| ou.clone());
        run.known(o, found, "E1011", &ou)
    });
    let status = text(&o.v, "status").unwrap_or_else(|| "ACTIVE".into()).to_ascii_uppercase();
    let scheduled = matches!(status.as_str(), "SCHEDULE" | "OVERDUE" | "SKIPPED");
    if !scheduled && text(&o.v, "occurredAt").and_then(|d| dates::normalise(&d)).is_none() {
        run.err(o, "E1031", &[]);
    }
    if status == "SCHEDULE" && text(&o.v, "scheduledAt").and_then(|d| dates::normalise(&d)).is_none() {
        run.err(o, "E1050", &[]);
    }
    if let Some(ou) = &ou {
        if let Some(p) = &program {
            if !p.org_units.is_empty() && !p.org_units.contains(ou) {
                run.err(o, "E1029", &[ou, &p.uid]);
            }
        }
        run.capture_move(o, ou, stored.as_ref().map(|e| e.org_unit.as_str()));
    }
    // The enrollment: stored, or created in this bundle.
    let enrollment_uid = text(&o.v, "enrollment").or_else(|| stored.as_ref().and_then(|e| e.enrollment_uid.clone()));
    let enrollment = match &enrollment_uid {
        Some(e) => store::enrollment_by_uid(run.conn, e)?.filter(|e| !e.deleted),
        None => None,
    };
    let bundle_program = enrollment_uid.as_ref().and_then(|e| idx.enrollment_program.get(e)).cloned();
    if enrollment.is_none() && bundle_program.is_none() {
        let uid = o.uid.clone();
        run.err(o, "E1033", &[&uid]);
    }
    if let (Some(p), Some(ep)) = (&program, enrollment.as_ref().map(|e| e.program.clone()).or(bundle_program)) {
        if ep != p.uid {
            run.err(o, "E1079", &[&o.uid.clone(), &p.uid, enrollment_uid.as_deref().unwrap_or_default()]);
        }
    }
    if let (Some(p), Some(e)) = (&program, &enrollment) {
        if let Some(te) = store::te_by_uid(run.conn, &e.te_uid)? {
            if !super::owns(run.conn, run.user, run.ous, te.id, &te.org_unit, p)? {
                run.err(o, "E1102", &[&user, &te.uid, &p.uid]);
            }
        }
    }
    if let (Some(s), Some(e), Op::Create) = (&stage, &enrollment_uid, o.op) {
        // Two events of a non-repeatable stage in one bundle: the second is E1039 too.
        if !s.repeatable && idx.non_repeatable.contains(&(e.clone(), s.uid.clone())) {
            run.err(o, "E1039", &[&s.uid]);
        }
    }
    if let (Some(s), Some(e), Op::Create) = (&stage, &enrollment, o.op) {
        if !s.repeatable {
            let n = store::events_where(
                run.conn,
                "v.enrollment_id = ?1 AND v.program_stage = ?2 AND v.deleted = 0",
                &[&e.id, &s.uid],
            )?
            .len();
            if n > 0 {
                run.err(o, "E1039", &[&s.uid]);
            }
        }
    }
    if let Some(ev) = &stored {
        if ev.status == "COMPLETED" && status != "COMPLETED" && !run.has_authority("F_UNCOMPLETE_EVENT") {
            run.err(o, "E1083", &[&user]);
        }
    }
    if let Some(s) = &stage {
        for dv in o.v.get("dataValues").and_then(Value::as_array).cloned().unwrap_or_default() {
            if let Err(problem) = values::data_value(run.md, s, &dv) {
                run.problem(o, &problem);
            }
        }
    }
    Ok(run.errors.len() == before)
}

/// Validates every object of a flattened bundle, in order (tracked entities, enrollments,
/// events); returns which are valid. The errors and warnings are the run's.
pub(crate) fn validate_bundle(run: &mut Run<'_>, objs: &mut [Obj]) -> Result<Vec<bool>, ApiError> {
    let mut idx = BundleIndex::default();
    let mut seen = HashMap::new();
    let mut valid = vec![false; objs.len()];
    for o in objs.iter() {
        idx.in_payload.insert(o.uid.clone());
        match o.kind {
            TrackerType::TrackedEntity => {
                idx.te_attrs.insert(o.uid.clone(), attr_set(&o.v));
            }
            TrackerType::Enrollment => {
                if let Some(p) = text(&o.v, "program") {
                    idx.enrollment_program.insert(o.uid.clone(), p);
                }
            }
            TrackerType::Event => {}
        }
    }
    for (i, o) in objs.iter_mut().enumerate() {
        let ok = match o.kind {
            TrackerType::TrackedEntity => validate_te(run, o, &mut seen)?,
            TrackerType::Enrollment => {
                // E5000: the TE it references is created in this bundle and failed.
                let parent_failed = o.parent.as_ref().is_some_and(|p| idx.failed.contains(p));
                if parent_failed {
                    let ok = validate_enrollment(run, o, &idx, &mut seen)?;
                    if ok {
                        let parent = o.parent.clone().unwrap_or_default();
                        let uid = o.uid.clone();
                        run.err(o, "E5000", &["enrollment", &uid, "trackedEntity", &parent]);
                    }
                    false
                } else {
                    validate_enrollment(run, o, &idx, &mut seen)?
                }
            }
            TrackerType::Event => {
                let parent_failed = o.parent.as_ref().is_some_and(|p| idx.failed.contains(p));
                if parent_failed {
                    let ok = validate_event(run, o, &idx)?;
                    if ok {
                        let parent = o.parent.clone().unwrap_or_default();
                        let uid = o.uid.clone();
                        run.err(o, "E5000", &["event", &uid, "enrollment", &parent]);
                    }
                    false
                } else {
                    validate_event(run, o, &idx)?
                }
            }
        };
        valid[i] = ok;
        if ok {
            if let (TrackerType::Enrollment, Some(p)) = (o.kind, text(&o.v, "program")) {
                let status = text(&o.v, "status").unwrap_or_else(|| "ACTIVE".into());
                if o.op == Op::Create && status.eq_ignore_ascii_case("ACTIVE") {
                    if let Some(t) = &o.parent {
                        idx.active.insert((t.clone(), p));
                    }
                }
            }
            if let (TrackerType::Event, Op::Create) = (o.kind, o.op) {
                let stage = text(&o.v, "programStage").and_then(|s| run.md.stage(&s));
                if let (Some(e), Some(s)) = (text(&o.v, "enrollment"), stage.filter(|s| !s.repeatable)) {
                    idx.non_repeatable.insert((e, s.uid.clone()));
                }
            }
        } else if !o.existed {
            // A failed creation: its children get E5000.
            idx.failed.insert(o.uid.clone());
        }
    }
    Ok(valid)
}
