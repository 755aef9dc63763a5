//! Answers made from the local copy, in the server's own shapes: a tracked entity nested as
//! the legacy API and as the tracker family give it, the grid of
//! `trackedEntityInstances/query`, the legacy pager, paging parameters and field selections.

use serde_json::{json, Map, Value};

use crate::{
    error::{CoreError, Result},
    family::{Kind, Paging},
    fields::FieldSelection,
    http::HttpResponse,
    index::IndexRow,
    local_answer::LOCAL_HEADER,
    metadata::ClinicMetadata,
    params::Target,
    query::TeiQuery,
    records::{text, Object, SyncState, TeiBundle},
};

pub(crate) fn json_response(value: &Value) -> HttpResponse {
    crate::local_answer::json_answer(200, value, LOCAL_HEADER.1)
}

pub(crate) fn selection(target: &Target) -> FieldSelection {
    target.get("fields").map(FieldSelection::parse).unwrap_or_else(FieldSelection::everything)
}

/// `/api/tracker` exports leave nested collections out unless `fields` asks (dhis2-api.md §3).
pub(crate) fn tracker_selection(target: &Target, kind: Kind) -> FieldSelection {
    match target.get("fields") {
        Some(f) => FieldSelection::parse(f),
        None => FieldSelection::parse(match kind {
            Kind::TrackedEntity => "*,!relationships,!enrollments,!events,!programOwners",
            Kind::Enrollment => "*,!relationships,!events,!attributes",
            Kind::Event => "*,!relationships",
        }),
    }
}

pub(crate) fn paging_of(q: &TeiQuery, total: usize) -> Paging {
    Paging { page: q.page, page_size: q.page_size, total, total_pages: q.total_pages, skip_paging: q.skip_paging }
}

pub(crate) fn grid(rows: &[&IndexRow], total: usize, q: &TeiQuery, meta: &ClinicMetadata) -> Value {
    let header = |name: &str, column: &str, ty: &str| json!({"name": name, "column": column, "type": ty, "hidden": false, "meta": false});
    let mut headers = vec![
        header("instance", "Instance", "java.lang.String"),
        header("created", "Created", "java.lang.String"),
        header("lastupdated", "Last updated", "java.lang.String"),
        header("ou", "Organisation unit", "java.lang.String"),
        header("ouname", "Organisation unit name", "java.lang.String"),
        header("te", "Tracked entity type", "java.lang.String"),
        header("inactive", "Inactive", "java.lang.String"),
        header("potentialduplicate", "Potential duplicate", "java.lang.String"),
    ];
    // Columns: the program's list attributes, then any other attribute asked for
    // (`attribute=`); without a program, every attribute seen.
    let mut columns: Vec<(String, String)> = Vec::new();
    if let Some(p) = q.program.as_deref().and_then(|p| meta.program(p)) {
        columns =
            p.attributes.iter().filter(|a| a.display_in_list).map(|a| (a.id.clone(), a.display_name.clone())).collect();
    } else if q.filters.is_empty() {
        for row in rows {
            for (a, _) in &row.attributes {
                if !columns.iter().any(|(c, _)| c == a) {
                    columns.push((a.clone(), String::new()));
                }
            }
        }
    }
    for f in &q.filters {
        if !columns.iter().any(|(c, _)| *c == f.attribute) {
            columns.push((f.attribute.clone(), String::new()));
        }
    }
    let mut names = Map::new();
    for (id, name) in columns.iter_mut() {
        if name.is_empty() {
            *name = meta
                .programs
                .iter()
                .flat_map(|p| p.attributes.iter())
                .find(|a| a.id == *id)
                .map(|a| a.display_name.clone())
                .unwrap_or_else(|| id.clone());
        }
        headers.push(header(id, name, "java.lang.String"));
        names.insert(id.clone(), json!(name));
    }
    for row in rows {
        if !row.org_unit.is_empty() {
            names.insert(row.org_unit.clone(), json!(meta.name_of(&row.org_unit)));
        }
    }
    let out_rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            // Grids write date-times with a space, as DHIS2's grid does.
            let mut cells = vec![
                json!(r.uid),
                json!(r.created.replacen('T', " ", 1)),
                json!(r.last_updated.replacen('T', " ", 1)),
                json!(r.org_unit),
                json!(meta.name_of(&r.org_unit)),
                json!(r.tracked_entity_type),
                json!(r.inactive.to_string()),
                json!(r.potential_duplicate.to_string()),
            ];
            for (id, _) in &columns {
                cells.push(json!(r.attribute(id).unwrap_or("")));
            }
            Value::Array(cells)
        })
        .collect();
    let mut meta_data = Map::new();
    meta_data.insert("names".into(), Value::Object(names));
    if !q.skip_paging {
        // Without totals DHIS2's Pager has total 0, page count 0, and so clamps the page to 1.
        let pager = if q.total_pages {
            json!({"page": q.page, "pageCount": total.div_ceil(q.page_size).max(1), "total": total, "pageSize": q.page_size})
        } else {
            json!({"page": 1, "pageCount": 0, "total": 0, "pageSize": q.page_size})
        };
        meta_data.insert("pager".into(), pager);
    }
    json!({
        "headers": headers,
        "metaData": meta_data,
        "width": 8 + columns.len(),
        "height": out_rows.len(),
        "headerWidth": 8 + columns.len(),
        "rows": out_rows,
        "rowContext": {},
    })
}

/// Legacy list pager: full with `totalPages=true`, else `{page,pageSize,isLastPage}`.
pub(crate) fn legacy_pager(p: &Paging) -> Value {
    if p.total_pages {
        json!({"page": p.page, "pageSize": p.page_size, "total": p.total, "pageCount": p.page_count()})
    } else {
        json!({"page": p.page, "pageSize": p.page_size, "isLastPage": p.page.saturating_mul(p.page_size) >= p.total})
    }
}

/// A tracked entity nested as the legacy API gives it. Records created on this device and not
/// yet sent get the fields the server adds to every record it stores (program ownership, empty
/// relationships and notes, org unit names, flags), so the app reads them as it reads the
/// server's; records the server sent are given as it sent them.
pub(crate) fn legacy_nested(b: &TeiBundle, program: Option<&str>, org_unit_names: &dyn Fn(&str) -> String) -> Object {
    let mut nested = b.to_nested(program);
    let local = |o: &Object, key: &str| text(o, key).is_some_and(|uid| b.state(uid) == SyncState::ToPost);
    let tei_type = nested.get("trackedEntityType").cloned().unwrap_or(Value::Null);
    let tei_uid = Value::String(b.uid().to_string());
    if let Some(Value::Array(enrollments)) = nested.get_mut("enrollments") {
        for e in enrollments.iter_mut() {
            let Value::Object(e) = e else { continue };
            if let Some(Value::Array(events)) = e.get_mut("events") {
                for ev in events.iter_mut() {
                    let Value::Object(ev) = ev else { continue };
                    if local(ev, "event") {
                        let ou = text(ev, "orgUnit").map(org_unit_names).unwrap_or_default();
                        ev.entry("orgUnitName").or_insert(Value::String(ou));
                        ev.entry("trackedEntityInstance").or_insert(tei_uid.clone());
                        for (k, v) in [
                            ("deleted", json!(false)),
                            ("followup", json!(false)),
                            ("notes", json!([])),
                            ("dataValues", json!([])),
                        ] {
                            ev.entry(k).or_insert(v);
                        }
                    }
                }
            }
            if local(e, "enrollment") {
                let ou = text(e, "orgUnit").map(org_unit_names).unwrap_or_default();
                e.entry("orgUnitName").or_insert(Value::String(ou));
                e.entry("trackedEntityType").or_insert(tei_type.clone());
                for (k, v) in [
                    ("deleted", json!(false)),
                    ("followup", json!(false)),
                    ("notes", json!([])),
                    ("attributes", json!([])),
                ] {
                    e.entry(k).or_insert(v);
                }
            }
        }
    }
    // The clinic owns what it enrolled until the server says otherwise.
    let owners = |only_local: bool| -> Vec<Value> {
        b.enrollments
            .iter()
            .filter(|e| !only_local || local(e, "enrollment"))
            .filter_map(|e| Some(json!({"ownerOrgUnit": text(e, "orgUnit")?, "program": text(e, "program")?, "trackedEntityInstance": b.uid()})))
            .collect()
    };
    if b.state(b.uid()) == SyncState::ToPost {
        nested.entry("programOwners").or_insert(Value::Array(owners(false)));
        for (k, v) in [
            ("inactive", json!(false)),
            ("deleted", json!(false)),
            ("relationships", json!([])),
            ("potentialDuplicate", json!(false)),
        ] {
            nested.entry(k).or_insert(v);
        }
    } else if !nested.contains_key("programOwners") {
        // A local enrollment of a downloaded woman.
        let owners = owners(true);
        if !owners.is_empty() {
            nested.insert("programOwners".into(), Value::Array(owners));
        }
    }
    nested
}

/// A tracked entity nested for the tracker family (in legacy names, converted by the caller):
/// the legacy nesting with what the server adds to records created here (program owners
/// above all: the Capture app's enrollment page reads them), and events with their follow-up
/// flag.
pub(crate) fn tracker_nested(b: &TeiBundle, program: Option<&str>, org_unit_names: &dyn Fn(&str) -> String) -> Object {
    let mut nested = legacy_nested(b, program, org_unit_names);
    if let Some(Value::Array(enrollments)) = nested.get_mut("enrollments") {
        for e in enrollments.iter_mut() {
            if let Some(Value::Array(events)) = e.get_mut("events") {
                for ev in events.iter_mut() {
                    if let Value::Object(o) = ev {
                        *o = b.fill_event_followup(std::mem::take(o));
                    }
                }
            }
        }
    }
    nested
}

/// The enrollment endpoints list `events` but do not fill them.
pub(crate) fn with_empty_events(mut enrollment: Object) -> Object {
    enrollment.insert("events".into(), Value::Array(vec![]));
    enrollment
}

/// `page`, `pageSize`, `totalPages`, `skipPaging`/`paging=false` of a list request.
pub(crate) fn paging_params(target: &Target) -> Result<Paging> {
    let number = |name: &str, default: usize| -> Result<usize> {
        match target.get(name) {
            None | Some("") => Ok(default),
            Some(v) => v.parse::<usize>().map_err(|_| CoreError::BadInput(format!("{name} must be a number"))),
        }
    };
    let page_size = number("pageSize", 50)?;
    if page_size == 0 {
        return Err(CoreError::BadInput("pageSize must be at least 1".into()));
    }
    Ok(Paging {
        page: number("page", 1)?.max(1),
        page_size,
        total: 0,
        total_pages: target.flag("totalPages") == Some(true),
        skip_paging: target.flag("skipPaging") == Some(true) || target.flag("paging") == Some(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the fuzz harness (tests/fuzz.rs, target `reads`): `page=18446744073709551615`
    /// on an event list overflowed the pager's last-page test.
    #[test]
    fn a_huge_page_number_is_a_last_page_not_an_overflow() {
        let p = Paging { page: usize::MAX, page_size: 50, total: 3, total_pages: false, skip_paging: false };
        assert_eq!(legacy_pager(&p)["isLastPage"], true);
    }
}
