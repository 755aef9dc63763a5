//! A write's effect on the local copy: the bundles it changes (a registration, an enrollment,
//! an event, a value, a note, a status, a delete) and the records it touches, which the next
//! flush sends in their current local state.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{
    error::{CoreError, Result},
    family::Kind,
    records::{text, Object, SyncState, TeiBundle},
    writes::{bad, Mutation, PreparedWrite},
};

/// A record touched by a write: sent at the next flush in its current local state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Touch {
    /// Record kind (stored as `tei`, `enrollment` or `event`).
    pub kind: Kind,
    /// Record UID.
    pub uid: String,
    /// Owning tracked entity.
    pub tei: String,
    /// The record was deleted.
    pub deleted: bool,
}

/// Applies a mutation to the bundles it concerns. `bundle_of(tei)` gives a loaded bundle (or
/// None if unknown); `owner_of(uid)` the tracked entity of an enrollment or event. Returns the
/// changed bundles and the touched records; an Err means the write cannot be applied locally
/// (it is then queued raw).
pub fn apply_mutation(
    prepared: &PreparedWrite,
    author: &str,
    now: &str,
    bundle_of: &mut dyn FnMut(&str) -> Option<TeiBundle>,
    owner_of: &dyn Fn(&str) -> Option<String>,
) -> Result<(Vec<TeiBundle>, Vec<Touch>)> {
    let mut changed: Vec<TeiBundle> = Vec::new();
    let mut touches: Vec<Touch> = Vec::new();
    // Works on `changed` first so several records of one bundle accumulate.
    let mut take = |tei: &str, changed: &mut Vec<TeiBundle>| -> Option<TeiBundle> {
        if let Some(i) = changed.iter().position(|b| b.uid() == tei) {
            return Some(changed.remove(i));
        }
        bundle_of(tei)
    };
    let touch =
        |kind: Kind, uid: &str, tei: &str, deleted: bool| Touch { kind, uid: uid.into(), tei: tei.into(), deleted };
    let mark = |b: &mut TeiBundle, uid: &str| {
        let next = if b.state(uid) == SyncState::ToPost { SyncState::ToPost } else { SyncState::ToUpdate };
        b.sync.insert(uid.to_string(), next);
    };
    let not_local = |what: &str, uid: &str| CoreError::BadInput(format!("{what} {uid} is not in the local copy"));

    let upsert_enrollment = |b: &mut TeiBundle, mut e: Object, touches: &mut Vec<Touch>| -> Result<()> {
        let uid = text(&e, "enrollment").unwrap_or_default().to_string();
        let tei = b.uid().to_string();
        let nested = e.remove("events");
        e.insert("trackedEntityInstance".into(), Value::String(tei.clone()));
        e.insert("lastUpdated".into(), Value::String(now.into()));
        match b.enrollments.iter_mut().find(|x| text(x, "enrollment") == Some(uid.as_str())) {
            Some(existing) => {
                for (k, v) in e {
                    existing.insert(k, v);
                }
                mark(b, &uid);
            }
            None => {
                e.entry("created").or_insert_with(|| Value::String(now.into()));
                e.entry("status").or_insert_with(|| json!("ACTIVE"));
                b.enrollments.push(e);
                b.sync.insert(uid.clone(), SyncState::ToPost);
            }
        }
        touches.push(touch(Kind::Enrollment, &uid, &tei, false));
        if let Some(Value::Array(events)) = nested {
            for ev in events {
                if let Value::Object(mut ev) = ev {
                    ev.entry("enrollment").or_insert_with(|| Value::String(uid.clone()));
                    upsert_event(b, ev, author, now, touches, &mark);
                }
            }
        }
        Ok(())
    };

    match &prepared.mutation {
        Mutation::Raw => return Err(CoreError::BadInput("not a tracker write".into())),
        Mutation::Teis { teis, replace } => {
            for t in teis {
                let mut t = t.clone();
                let uid = text(&t, "trackedEntityInstance").unwrap_or_default().to_string();
                let nested = t.remove("enrollments");
                let mut b = match take(&uid, &mut changed) {
                    Some(mut b) => {
                        for (k, v) in t {
                            if k != "attributes" || *replace {
                                b.tei.insert(k, v);
                            } else if let Value::Array(new_attrs) = v {
                                merge_attributes(&mut b.tei, new_attrs);
                            }
                        }
                        mark(&mut b, &uid);
                        b
                    }
                    None => {
                        t.entry("created").or_insert_with(|| Value::String(now.into()));
                        let mut b = TeiBundle { tei: t, ..Default::default() };
                        b.sync.insert(uid.clone(), SyncState::ToPost);
                        b
                    }
                };
                b.tei.insert("lastUpdated".into(), Value::String(now.into()));
                touches.push(touch(Kind::TrackedEntity, &uid, &uid, false));
                if let Some(Value::Array(list)) = nested {
                    for e in list {
                        if let Value::Object(e) = e {
                            upsert_enrollment(&mut b, e, &mut touches)?;
                        }
                    }
                }
                changed.push(b);
            }
        }
        Mutation::Enrollments(list) => {
            for e in list {
                let tei = text(e, "trackedEntityInstance")
                    .map(str::to_string)
                    .or_else(|| text(e, "enrollment").and_then(owner_of))
                    .ok_or_else(|| bad("enrollment without trackedEntityInstance"))?;
                let mut b = take(&tei, &mut changed).ok_or_else(|| not_local("tracked entity", &tei))?;
                upsert_enrollment(&mut b, e.clone(), &mut touches)?;
                changed.push(b);
            }
        }
        Mutation::Events(list) => {
            for ev in list {
                let uid = text(ev, "event").unwrap_or_default().to_string();
                let tei = text(ev, "trackedEntityInstance")
                    .map(str::to_string)
                    .or_else(|| owner_of(&uid))
                    .or_else(|| text(ev, "enrollment").and_then(owner_of))
                    .ok_or_else(|| not_local("event", &uid))?;
                let mut b = take(&tei, &mut changed).ok_or_else(|| not_local("tracked entity", &tei))?;
                upsert_event(&mut b, ev.clone(), author, now, &mut touches, &mark);
                changed.push(b);
            }
        }
        Mutation::EventValue { event, .. } | Mutation::EventDate { event, .. } | Mutation::EventNote { event, .. } => {
            // A change to one event of a known bundle: value, date or note.
            let tei = owner_of(event).ok_or_else(|| not_local("event", event))?;
            let mut b = take(&tei, &mut changed).ok_or_else(|| not_local("tracked entity", &tei))?;
            let ev = b
                .events
                .iter_mut()
                .find(|e| text(e, "event") == Some(event.as_str()))
                .ok_or_else(|| not_local("event", event))?;
            match &prepared.mutation {
                Mutation::EventValue { value, .. } => set_data_value(ev, value, author, now),
                Mutation::EventDate { date, .. } => {
                    ev.insert("eventDate".into(), Value::String(date.clone()));
                }
                Mutation::EventNote { value, note, .. } => {
                    if let Value::Array(list) = ev.entry("notes").or_insert_with(|| json!([])) {
                        list.push(json!({"note": note, "value": value, "storedBy": author, "storedDate": now}));
                    }
                }
                _ => {}
            }
            ev.insert("lastUpdated".into(), Value::String(now.into()));
            mark(&mut b, event);
            touches.push(touch(Kind::Event, event, &tei, false));
            changed.push(b);
        }
        Mutation::EnrollmentStatus { enrollment, status } => {
            let tei = owner_of(enrollment).ok_or_else(|| not_local("enrollment", enrollment))?;
            let mut b = take(&tei, &mut changed).ok_or_else(|| not_local("tracked entity", &tei))?;
            let e = b
                .enrollments
                .iter_mut()
                .find(|e| text(e, "enrollment") == Some(enrollment.as_str()))
                .ok_or_else(|| not_local("enrollment", enrollment))?;
            e.insert("status".into(), Value::String(status.clone()));
            if status == "COMPLETED" {
                e.insert("completedDate".into(), Value::String(now.into()));
            }
            e.insert("lastUpdated".into(), Value::String(now.into()));
            mark(&mut b, enrollment);
            touches.push(touch(Kind::Enrollment, enrollment, &tei, false));
            changed.push(b);
        }
        Mutation::Delete { kind, uid } => {
            let tei = match kind {
                Kind::TrackedEntity => uid.clone(),
                _ => owner_of(uid).ok_or_else(|| not_local("record", uid))?,
            };
            let mut b = take(&tei, &mut changed).ok_or_else(|| not_local("tracked entity", &tei))?;
            match kind {
                Kind::Event => b.events.retain(|e| text(e, "event") != Some(uid.as_str())),
                Kind::Enrollment => {
                    b.enrollments.retain(|e| text(e, "enrollment") != Some(uid.as_str()));
                    b.events.retain(|e| text(e, "enrollment") != Some(uid.as_str()));
                }
                Kind::TrackedEntity => {
                    b.tei.insert("deleted".into(), Value::Bool(true));
                }
            }
            // Sent even for a record never sent (its create's answer may have been lost after
            // the server committed); the flush counts "does not exist" as done.
            b.sync.remove(uid);
            touches.push(touch(*kind, uid, &tei, true));
            changed.push(b);
        }
        Mutation::TrackerImport { teis, enrollments, events, delete, .. } => {
            if *delete {
                return Err(bad("tracker deletes are queued raw"));
            }
            // Flat lists: events name their tracked entity through an enrollment of the same payload.
            let mut events = events.clone();
            for ev in &mut events {
                if text(ev, "trackedEntityInstance").is_none() {
                    let tei = text(ev, "enrollment")
                        .and_then(|en| enrollments.iter().find(|e| text(e, "enrollment") == Some(en)))
                        .and_then(|e| text(e, "trackedEntityInstance"))
                        .map(str::to_string);
                    if let Some(tei) = tei {
                        ev.insert("trackedEntityInstance".into(), Value::String(tei));
                    }
                }
            }
            let pending: std::cell::RefCell<Vec<TeiBundle>> = std::cell::RefCell::new(std::mem::take(&mut changed));
            let mut sub = prepared.clone();
            for mutation in [
                Mutation::Teis { teis: teis.clone(), replace: false },
                Mutation::Enrollments(enrollments.clone()),
                Mutation::Events(events),
            ] {
                let empty = match &mutation {
                    Mutation::Teis { teis, .. } => teis.is_empty(),
                    Mutation::Enrollments(l) | Mutation::Events(l) => l.is_empty(),
                    _ => true,
                };
                if empty {
                    continue;
                }
                sub.mutation = mutation;
                let mut lookup = |tei: &str| -> Option<TeiBundle> {
                    let mut p = pending.borrow_mut();
                    match p.iter().position(|b| b.uid() == tei) {
                        Some(i) => Some(p.remove(i)),
                        None => bundle_of(tei),
                    }
                };
                let owner = |uid: &str| -> Option<String> {
                    pending
                        .borrow()
                        .iter()
                        .find(|b| {
                            b.enrollments.iter().any(|e| text(e, "enrollment") == Some(uid))
                                || b.events.iter().any(|e| text(e, "event") == Some(uid))
                        })
                        .map(|b| b.uid().to_string())
                        .or_else(|| owner_of(uid))
                };
                let (bundles, t) = apply_mutation(&sub, author, now, &mut lookup, &owner)?;
                pending.borrow_mut().extend(bundles);
                touches.extend(t);
            }
            changed = pending.into_inner();
        }
    }
    Ok((changed, touches))
}

pub(crate) fn merge_attributes(tei: &mut Object, new_attrs: Vec<Value>) {
    let mut current = tei.get("attributes").and_then(Value::as_array).cloned().unwrap_or_default();
    for a in new_attrs {
        let id = a.get("attribute").and_then(Value::as_str).map(str::to_string);
        match current.iter_mut().find(|c| c.get("attribute").and_then(Value::as_str).map(str::to_string) == id) {
            Some(c) => *c = a,
            None => current.push(a),
        }
    }
    tei.insert("attributes".into(), Value::Array(current));
}

pub(crate) fn set_data_value(ev: &mut Object, value: &Object, author: &str, now: &str) {
    let de = text(value, "dataElement").unwrap_or_default().to_string();
    let empty = match value.get("value") {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        _ => false,
    };
    let list = ev.entry("dataValues").or_insert_with(|| json!([]));
    let Value::Array(list) = list else { return };
    list.retain(|v| v.get("dataElement").and_then(Value::as_str) != Some(de.as_str()));
    if !empty {
        let mut v = value.clone();
        v.insert("storedBy".into(), Value::String(author.into()));
        v.insert("lastUpdated".into(), Value::String(now.into()));
        v.entry("created").or_insert_with(|| Value::String(now.into()));
        list.push(Value::Object(v));
    }
}

pub(crate) fn upsert_event(
    b: &mut TeiBundle,
    mut ev: Object,
    author: &str,
    now: &str,
    touches: &mut Vec<Touch>,
    mark: &dyn Fn(&mut TeiBundle, &str),
) {
    let uid = text(&ev, "event").unwrap_or_default().to_string();
    let tei = b.uid().to_string();
    ev.insert("trackedEntityInstance".into(), Value::String(tei.clone()));
    ev.insert("storedBy".into(), Value::String(author.into()));
    ev.insert("lastUpdated".into(), Value::String(now.into()));
    if let Some(Value::Array(values)) = ev.get_mut("dataValues") {
        for v in values.iter_mut() {
            if let Value::Object(v) = v {
                v.entry("storedBy").or_insert_with(|| Value::String(author.into()));
            }
        }
    }
    // An event without its enrollment belongs, as on the server, to the woman's enrollment in
    // its program (the legacy PUT of a whole event does not repeat it).
    if !ev.contains_key("enrollment") {
        let program = text(&ev, "program").map(str::to_string);
        let known =
            b.events.iter().find(|x| text(x, "event") == Some(uid.as_str())).and_then(|x| x.get("enrollment").cloned());
        let by_program = || {
            let mut of_program =
                b.enrollments.iter().filter(|e| program.is_some() && text(e, "program") == program.as_deref());
            let all: Vec<&Object> = of_program.by_ref().collect();
            all.iter()
                .find(|e| text(e, "status") == Some("ACTIVE"))
                .or(all.last())
                .and_then(|e| e.get("enrollment").cloned())
        };
        if let Some(enrollment) = known.or_else(by_program) {
            ev.insert("enrollment".into(), enrollment);
        }
    }
    match b.events.iter_mut().find(|x| text(x, "event") == Some(uid.as_str())) {
        Some(existing) => {
            let created = existing.get("created").cloned();
            *existing = ev;
            if let Some(c) = created {
                existing.entry("created").or_insert(c);
            }
            mark(b, &uid);
        }
        None => {
            ev.entry("created").or_insert_with(|| Value::String(now.into()));
            b.events.push(ev);
            b.sync.insert(uid.clone(), SyncState::ToPost);
        }
    }
    touches.push(Touch { kind: Kind::Event, uid, tei, deleted: false });
}
