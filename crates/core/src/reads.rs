//! Reads answered by the service worker when the server cannot be reached: what each GET
//! under the API base means, the answer from the local copy in the server's own shape (both
//! API families), and the sealed cache of every other API GET seen online.
//!
//!
//! Split by job: [`crate::api_path`] reads a path under the API base,
//! [`crate::read_shapes`] writes answers in the server's shapes, [`crate::read_cache`] keeps
//! and finds the sealed answers seen online (and says whose each one is).

use serde_json::{json, Map, Value};

use crate::{
    api_path::{strip_json, unversioned},
    clinic::{bundle_id, parse_bundle},
    engine::Engine,
    error::{CoreError, Result},
    family::{convert, tracker_envelope, Kind, Naming, Paging},
    fields::FieldSelection,
    http::{HttpClient, HttpResponse},
    index::IndexRow,
    kdf::PasswordKdf,
    metadata::ClinicMetadata,
    params::{base_path, Target},
    query::TeiQuery,
    random::RandomSource,
    read_cache::offline_default,
    read_shapes::{
        grid, json_response, legacy_nested, legacy_pager, paging_of, paging_params, selection, tracker_nested,
        tracker_selection, with_empty_events,
    },
    records::{text, Object, SyncState, TeiBundle},
    scope::UserScope,
    store::{KvStore, StoreName},
};

/// Default `fields` of the legacy event list (DHIS2 `EventController.getEvents`).
pub const LEGACY_EVENT_LIST_FIELDS: &str = "event,uid,program,programStage,programType,status,assignedUser,orgUnit,\
orgUnitName,eventDate,created,lastUpdated,followup,deleted,dataValues";

use crate::local_answer::not_found;
/// Header every answer from the local copy carries.
pub use crate::local_answer::LOCAL_HEADER;

/// What a GET under the API base asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadRoute {
    /// `trackedEntityInstances/query.json` (grid), or `/count.json` when `count`.
    LegacyGrid {
        /// Only the count.
        count: bool,
    },
    /// `trackedEntityInstances(.json)` list.
    LegacyTeiList,
    /// `trackedEntityInstances/{uid}(.json)`.
    LegacyTei(String),
    /// `events(.json)` list.
    LegacyEvents,
    /// `events/{uid}(.json)`.
    LegacyEvent(String),
    /// `enrollments(.json)` list.
    LegacyEnrollments,
    /// `enrollments/{uid}(.json)`.
    LegacyEnrollment(String),
    /// `tracker/{trackedEntities|enrollments|events}[/{uid}]`.
    Tracker(Kind, Option<String>),
    /// `tracker/relationships`: those of one record (`trackedEntity=`, `enrollment=` or `event=`).
    TrackerRelationships,
    /// `trackedEntityAttributes/{id}/generate`: a value from the reserved pool.
    Generate(String),
    /// `trackedEntityAttributes/{id}/requiredValues`: what `generate` needs.
    RequiredValues(String),
    /// Any other GET: the sealed response cache.
    Cached,
}

/// Classifies a GET by its path relative to the API base (`trackedEntityInstances/x.json`);
/// versioned paths like `40/trackedEntityInstances` mean the same.
pub fn route(relative: &str) -> ReadRoute {
    let parts: Vec<&str> = unversioned(relative.trim_start_matches('/')).trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["trackedEntityInstances", "query.json" | "query"] => ReadRoute::LegacyGrid { count: false },
        ["trackedEntityInstances", "count.json" | "count"] => ReadRoute::LegacyGrid { count: true },
        [t] if strip_json(t) == "trackedEntityInstances" => ReadRoute::LegacyTeiList,
        ["trackedEntityInstances", uid] => ReadRoute::LegacyTei(strip_json(uid).into()),
        [e] if strip_json(e) == "events" => ReadRoute::LegacyEvents,
        ["events", uid] => ReadRoute::LegacyEvent(strip_json(uid).into()),
        [e] if strip_json(e) == "enrollments" => ReadRoute::LegacyEnrollments,
        ["enrollments", uid] => ReadRoute::LegacyEnrollment(strip_json(uid).into()),
        ["trackedEntityAttributes", id, g] if strip_json(g) == "generate" => ReadRoute::Generate((*id).to_string()),
        ["trackedEntityAttributes", id, r] if strip_json(r) == "requiredValues" => {
            ReadRoute::RequiredValues((*id).to_string())
        }
        ["tracker", r] if strip_json(r) == "relationships" => ReadRoute::TrackerRelationships,
        ["tracker", c] | ["tracker", c, _] => {
            let kind = match strip_json(c) {
                "trackedEntities" => Kind::TrackedEntity,
                "enrollments" => Kind::Enrollment,
                "events" => Kind::Event,
                _ => return ReadRoute::Cached,
            };
            ReadRoute::Tracker(kind, parts.get(2).map(|u| strip_json(u).to_string()))
        }
        _ => ReadRoute::Cached,
    }
}

/// Filters for enrollment and event lists.
struct ChildFilter {
    tei: Option<String>,
    program: Option<String>,
    program_stage: Option<String>,
    status: Option<String>,
    org_units: Vec<String>,
    uids: Option<Vec<String>>,
}

impl ChildFilter {
    fn from(target: &Target, kind: Kind) -> Self {
        let list = |v: &str| v.split([';', ',']).filter(|s| !s.is_empty()).map(str::to_string).collect::<Vec<_>>();
        let (status_key, uid_keys): (&str, &[&str]) = match kind {
            Kind::Event => ("status", &["event", "events"]),
            _ => ("programStatus", &["enrollment", "enrollments"]),
        };
        Self {
            tei: target.get("trackedEntityInstance").or_else(|| target.get("trackedEntity")).map(str::to_string),
            program: target.get("program").map(str::to_string),
            program_stage: target.get("programStage").map(str::to_string),
            status: target
                .get(status_key)
                .or_else(|| target.get("status"))
                .or_else(|| target.get("eventStatus"))
                .map(|s| s.to_ascii_uppercase()),
            org_units: ["orgUnit", "ou", "orgUnits"].iter().flat_map(|k| target.all(k)).flat_map(list).collect(),
            uids: uid_keys.iter().find_map(|k| target.get(k)).map(list),
        }
    }

    fn matches(&self, r: &Object, uid_key: &str) -> bool {
        let eq = |want: &Option<String>, key: &str| want.as_ref().is_none_or(|w| text(r, key) == Some(w.as_str()));
        eq(&self.tei, "trackedEntityInstance")
            && eq(&self.program, "program")
            && eq(&self.program_stage, "programStage")
            && eq(&self.status, "status")
            && (self.org_units.is_empty() || self.org_units.iter().any(|o| text(r, "orgUnit") == Some(o.as_str())))
            && self.uids.as_ref().is_none_or(|u| u.iter().any(|x| text(r, uid_key) == Some(x.as_str())))
    }
}

impl<S: KvStore, K: PasswordKdf, R: RandomSource, H: HttpClient> Engine<S, K, R, H> {
    /// Display names of the clinic's org units (empty when unknown).
    fn org_unit_names(&self) -> impl Fn(&str) -> String {
        let names: std::collections::HashMap<String, String> = self
            .clinic
            .read(|c| c.metadata.org_units.iter().map(|(id, o)| (id.clone(), o.display_name.clone())).collect())
            .unwrap_or_default();
        move |id: &str| names.get(id).cloned().unwrap_or_default()
    }

    /// The API-base path (`/api`) requests are matched against.
    pub fn api_path(&self) -> String {
        base_path(&self.config.api_base)
    }

    /// The logged-in user's org units, which every offline read is limited to (None when her
    /// profile names none: a session without a profile, or a user with no org unit, whose
    /// scope is unknown here).
    fn user_scope(&self) -> Option<UserScope> {
        let profile = self.vault.session_info()?.profile?;
        Some(UserScope::of(&profile)).filter(|scope| !scope.roots().is_empty())
    }

    /// A tracked entity with its enrollments and events, if the logged-in user's org units see
    /// it (one outside them reads as absent, as the server would not show it to her).
    async fn bundle(&self, tei_uid: &str) -> Result<Option<TeiBundle>> {
        let bundle = match self.vault.get_record(StoreName::Records, &bundle_id(tei_uid)).await? {
            Some(bytes) => parse_bundle(&bytes)?,
            None => return Ok(None),
        };
        if let Some(scope) = self.user_scope() {
            let org_unit = text(&bundle.tei, "orgUnit").unwrap_or_default();
            if !self.clinic.read(|clinic| scope.sees(org_unit, &clinic.metadata))? {
                return Ok(None);
            }
        }
        Ok(Some(bundle))
    }

    fn matching_rows(&self, q: &TeiQuery) -> Result<(Vec<IndexRow>, usize, ClinicMetadata)> {
        let scope = self.user_scope();
        self.clinic.read(|clinic| {
            if let Some(outside) = q.outside_scope(&clinic.metadata, scope.as_ref()) {
                return Err(CoreError::Conflict(format!(
                    "Organisation unit is not part of the search scope: {outside}"
                )));
            }
            let (rows, total) = q.run_within(&clinic.index, &clinic.metadata, scope.as_ref());
            Ok((rows.into_iter().cloned().collect(), total, clinic.metadata.clone()))
        })?
    }

    /// Every bundle of tracked entities matching the child filter's TEI (or all, when none).
    async fn bundles_for(&self, filter: &ChildFilter) -> Result<Vec<TeiBundle>> {
        // In the server's order (the order the download received them).
        let uids: Vec<String> = match &filter.tei {
            Some(t) => vec![t.clone()],
            None => self.clinic.read(|clinic| {
                let mut rows: Vec<&IndexRow> = clinic.index.rows().collect();
                rows.sort_unstable_by(|a, b| a.ordinal.cmp(&b.ordinal).then_with(|| a.uid.cmp(&b.uid)));
                rows.into_iter().map(|r| r.uid.clone()).collect()
            })?,
        };
        let mut out = Vec::new();
        for uid in uids {
            if let Some(b) = self.bundle(&uid).await? {
                out.push(b);
            }
        }
        Ok(out)
    }

    /// Whether the record a `tracker/relationships` read names is known to have none: made on
    /// this device and named by no unsent write kept as written (relationships are kept so), or
    /// the server's copy lists none. Anything else (relationships the local copy holds, a record not in it, no
    /// record named) is not answered here.
    async fn relationships_known_none(&self, target: &Target) -> Result<bool> {
        let asked = [("trackedEntity", Kind::TrackedEntity), ("enrollment", Kind::Enrollment), ("event", Kind::Event)]
            .into_iter()
            .find_map(|(param, kind)| target.get(param).map(|uid| (kind, uid.to_string())));
        let Some((kind, uid)) = asked else { return Ok(false) };
        let owner = if kind == Kind::TrackedEntity { Some(uid.clone()) } else { self.owner_of(&uid) };
        let Some(bundle) = (match owner {
            Some(owner) => self.bundle(&owner).await?,
            None => None,
        }) else {
            return Ok(false);
        };
        Ok(match bundle.record(kind, &uid).map(|r| r.get("relationships")) {
            Some(Some(Value::Array(list))) => list.is_empty(),
            // Made here, and no unsent write (relationships are kept as written) names it.
            Some(None) if bundle.state(&uid) == SyncState::ToPost => {
                !self.outbox_entries().await?.iter().any(|e| match &e.payload {
                    crate::outbox::EntryPayload::Raw { body, .. } => {
                        String::from_utf8_lossy(&body.0).contains(uid.as_str())
                    }
                    _ => false,
                })
            }
            _ => false,
        })
    }

    fn owner_of(&self, record_uid: &str) -> Option<String> {
        self.clinic.owner_of(record_uid)
    }

    /// Answers a GET from the local copy or the sealed cache. `Ok(None)`: nothing local can
    /// answer it.
    pub async fn answer_offline(&self, url: &str) -> Result<Option<HttpResponse>> {
        let target = Target::parse(url);
        let api_path = self.api_path();
        let Some(relative) = target.relative_to(&api_path) else { return Ok(None) };
        let route = route(relative);
        if !matches!(route, ReadRoute::Cached | ReadRoute::Generate(_) | ReadRoute::RequiredValues(_)) {
            self.ensure_clinic_loaded().await?;
        }
        match self.answer_route(&route, &target, url).await {
            Err(CoreError::Conflict(message)) => {
                let body =
                    json!({"httpStatus": "Conflict", "httpStatusCode": 409, "status": "ERROR", "message": message});
                let mut r = json_response(&body);
                r.status = 409;
                Ok(Some(r))
            }
            other => other,
        }
    }

    async fn answer_route(&self, route: &ReadRoute, target: &Target, url: &str) -> Result<Option<HttpResponse>> {
        let mut target = target.clone();
        if let ReadRoute::Tracker(..) = route {
            // Paging switches of the tracker family by version: `skipPaging` up to 2.41,
            // `paging=false` from 2.41.
            let minor = self.clinic.minor_version().unwrap_or(40);
            target.params.retain(|(k, _)| !(minor <= 40 && k == "paging" || minor >= 42 && k == "skipPaging"));
        }
        let fields = selection(&target);
        let value = match route.clone() {
            ReadRoute::Cached => {
                if let Some(answer) = self.cached_response(url).await? {
                    return Ok(Some(answer));
                }
                let Some(relative) = target.relative_to(&self.api_path()).map(unversioned) else { return Ok(None) };
                if (relative.starts_with("organisationUnits") || relative.starts_with("me")) && self.vault.is_unlocked()
                {
                    self.ensure_clinic_loaded().await?;
                    let profile = self.vault.session_info().and_then(|s| s.profile);
                    let seen = match self.me_seen_id() {
                        Some(id) if strip_json(relative) == "me" => self.me_seen_online(&id).await?,
                        _ => None,
                    };
                    let user =
                        crate::metadata_answers::KnownUser { profile: profile.as_ref(), seen_online: seen.as_ref() };
                    let answer = self
                        .clinic
                        .read(|clinic| crate::metadata_answers::answer(relative, &target, &clinic.metadata, &user))?;
                    return Ok(answer.map(|v| json_response(&v)));
                }
                if crate::metadata_answers::OBJECTS_KEPT_BY_ID.iter().any(|r| relative.starts_with(*r)) {
                    let mut known = crate::metadata_answers::KnownObjects::new();
                    for resource in crate::metadata_answers::OBJECTS_KEPT_BY_ID {
                        if let Some(bytes) =
                            self.vault.get_record(StoreName::Cache, &Self::objects_seen_id(resource)).await?
                        {
                            if let Ok(Value::Object(objects)) = serde_json::from_slice::<Value>(&bytes) {
                                known.insert(resource, objects);
                            }
                        }
                    }
                    if known.keys().any(|r| relative.starts_with(*r)) {
                        let answer = crate::metadata_answers::answer_from_objects(relative, &target, &known);
                        return Ok(answer.map(|v| json_response(&v)));
                    }
                }
                if let Some(empty) = crate::metadata_answers::nothing_matches(relative, &target) {
                    return Ok(Some(json_response(&empty)));
                }
                return Ok(offline_default(relative, &target));
            }
            ReadRoute::Generate(attribute) => return self.generate_offline(&attribute).await,
            ReadRoute::RequiredValues(attribute) => match self.required_values_offline(&attribute).await? {
                Some(answer) => return Ok(Some(answer)),
                None => return self.cached_response(url).await,
            },

            ReadRoute::LegacyGrid { count } => {
                let q = TeiQuery::from_target(&target)?;
                let (rows, total, meta) = self.matching_rows(&q)?;
                if count {
                    return Ok(Some(json_response(&json!(total))));
                }
                let refs: Vec<&IndexRow> = rows.iter().collect();
                grid(&refs, total, &q, &meta)
            }
            ReadRoute::LegacyTeiList => {
                let meta_names = self.org_unit_names();
                let q = TeiQuery::from_target(&target)?;
                let (rows, total, _) = self.matching_rows(&q)?;
                let mut items = Vec::new();
                for row in &rows {
                    if let Some(b) = self.bundle(&row.uid).await? {
                        items.push(fields.apply(&Value::Object(legacy_nested(&b, q.program.as_deref(), &meta_names))));
                    }
                }
                let mut out = Map::new();
                if q.total_pages && !q.skip_paging {
                    out.insert("pager".into(), legacy_pager(&paging_of(&q, total)));
                }
                out.insert("trackedEntityInstances".into(), Value::Array(items));
                Value::Object(out)
            }
            ReadRoute::LegacyTei(uid) => match self.bundle(&uid).await? {
                Some(b) => {
                    let names = self.org_unit_names();
                    fields.apply(&Value::Object(legacy_nested(&b, target.get("program"), &names)))
                }
                None => return Ok(Some(not_found(format!("TrackedEntityInstance not found for ID {uid}")))),
            },
            ReadRoute::LegacyEvents | ReadRoute::LegacyEnrollments => {
                let kind = if *route == ReadRoute::LegacyEvents { Kind::Event } else { Kind::Enrollment };
                let (items, paging) = self.child_list(&target, kind).await?;
                // The event list's default fields are DHIS2's narrow list (EventController).
                let fields = match (kind, target.get("fields")) {
                    (Kind::Event, None) => FieldSelection::parse(LEGACY_EVENT_LIST_FIELDS),
                    _ => fields,
                };
                let items: Vec<Value> = items.into_iter().map(|o| fields.apply(&Value::Object(o))).collect();
                let mut out = Map::new();
                if !paging.skip_paging {
                    out.insert("pager".into(), legacy_pager(&paging));
                }
                out.insert(if kind == Kind::Event { "events" } else { "enrollments" }.into(), Value::Array(items));
                Value::Object(out)
            }
            ReadRoute::LegacyEvent(uid) | ReadRoute::LegacyEnrollment(uid) => {
                let kind = if matches!(route, ReadRoute::LegacyEvent(_)) { Kind::Event } else { Kind::Enrollment };
                match self.child(&uid, kind).await? {
                    Some(o) => fields.apply(&Value::Object(o)),
                    None => return Ok(Some(not_found(format!("{uid} not found")))),
                }
            }
            ReadRoute::Tracker(kind, Some(uid)) => {
                let minor = self.clinic.minor_version().unwrap_or(40);
                let record = match kind {
                    Kind::TrackedEntity => {
                        let names = self.org_unit_names();
                        self.bundle(&uid).await?.map(|b| tracker_nested(&b, target.get("program"), &names))
                    }
                    Kind::Event => match self.owner_of(&uid) {
                        Some(owner) => self.bundle(&owner).await?.and_then(|b| {
                            b.events
                                .iter()
                                .find(|e| text(e, "event") == Some(uid.as_str()))
                                .cloned()
                                .map(|e| b.fill_event_followup(e))
                        }),
                        None => None,
                    },
                    other => self.child(&uid, other).await?,
                };
                match record {
                    Some(o) => tracker_selection(&target, kind).apply(&Value::Object(convert(
                        kind,
                        &o,
                        Naming::Tracker { minor },
                    ))),
                    None => return Ok(Some(not_found(format!("{uid} not found")))),
                }
            }
            ReadRoute::TrackerRelationships => match self.relationships_known_none(&target).await? {
                true => {
                    let minor = self.clinic.minor_version().unwrap_or(40);
                    let number = |name: &str, default: usize| {
                        target.get(name).and_then(|v| v.parse::<usize>().ok()).filter(|n| *n > 0).unwrap_or(default)
                    };
                    let paging = Paging {
                        page: number("page", 1),
                        page_size: number("pageSize", 50),
                        total: 0,
                        total_pages: target.flag("totalPages") == Some(true),
                        skip_paging: target.flag("paging") == Some(false) || target.flag("skipPaging") == Some(true),
                    };
                    crate::family::tracker_list_envelope(minor, "relationships", Vec::new(), paging, url)
                }
                false => return Ok(None),
            },
            ReadRoute::Tracker(kind, None) => {
                let minor = self.clinic.minor_version().unwrap_or(40);
                let (items, paging) = match kind {
                    Kind::TrackedEntity => {
                        let q = TeiQuery::from_target(&target)?;
                        let (rows, total, _) = self.matching_rows(&q)?;
                        let names = self.org_unit_names();
                        let mut items = Vec::new();
                        for row in &rows {
                            if let Some(b) = self.bundle(&row.uid).await? {
                                items.push(tracker_nested(&b, q.program.as_deref(), &names));
                            }
                        }
                        (items, paging_of(&q, total))
                    }
                    Kind::Event => {
                        let (items, paging) = self.child_list(&target, Kind::Event).await?;
                        let mut filled = Vec::new();
                        for ev in items {
                            let owner = text(&ev, "trackedEntityInstance").map(str::to_string);
                            filled.push(match owner {
                                Some(o) => match self.bundle(&o).await? {
                                    Some(b) => b.fill_event_followup(ev),
                                    None => ev,
                                },
                                None => ev,
                            });
                        }
                        (filled, paging)
                    }
                    other => self.child_list(&target, other).await?,
                };
                let sel = tracker_selection(&target, kind);
                let items = items
                    .iter()
                    .map(|o| sel.apply(&Value::Object(convert(kind, o, Naming::Tracker { minor }))))
                    .collect();
                tracker_envelope(minor, kind, items, paging, url)
            }
        };
        Ok(Some(json_response(&value)))
    }

    async fn child(&self, uid: &str, kind: Kind) -> Result<Option<Object>> {
        let Some(owner) = self.owner_of(uid) else { return Ok(None) };
        let Some(b) = self.bundle(&owner).await? else { return Ok(None) };
        // Enrollments come without their events, as the server's enrollment endpoints give them.
        Ok(match kind {
            Kind::Event => b.events.into_iter().find(|e| text(e, "event") == Some(uid)),
            _ => b.enrollments.into_iter().find(|e| text(e, "enrollment") == Some(uid)).map(with_empty_events),
        })
    }

    async fn child_list(&self, target: &Target, kind: Kind) -> Result<(Vec<Object>, Paging)> {
        let filter = ChildFilter::from(target, kind);
        let mut items: Vec<Object> = Vec::new();
        // Server order: tracked entities in download order, records in the order received.
        // Enrollments come without their events, as the server's enrollment endpoints give them.
        for b in self.bundles_for(&filter).await? {
            match kind {
                Kind::Event => items.extend(b.events.into_iter().filter(|e| filter.matches(e, "event"))),
                _ => items.extend(
                    b.enrollments.into_iter().filter(|e| filter.matches(e, "enrollment")).map(with_empty_events),
                ),
            }
        }
        let mut paging = paging_params(target)?;
        paging.total = items.len();
        if !paging.skip_paging {
            let start = (paging.page - 1).saturating_mul(paging.page_size);
            items = items.into_iter().skip(start).take(paging.page_size).collect();
        }
        Ok((items, paging))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("trackedEntityInstances/query.json"), ReadRoute::LegacyGrid { count: false });
        assert_eq!(route("trackedEntityInstances/count.json"), ReadRoute::LegacyGrid { count: true });
        assert_eq!(route("trackedEntityInstances/PQfMcpmXeFE.json"), ReadRoute::LegacyTei("PQfMcpmXeFE".into()));
        assert_eq!(route("trackedEntityInstances"), ReadRoute::LegacyTeiList);
        assert_eq!(route("events.json"), ReadRoute::LegacyEvents);
        assert_eq!(route("40/events/EvAncVisit1"), ReadRoute::LegacyEvent("EvAncVisit1".into()));
        assert_eq!(route("enrollments"), ReadRoute::LegacyEnrollments);
        assert_eq!(route("tracker/trackedEntities"), ReadRoute::Tracker(Kind::TrackedEntity, None));
        assert_eq!(route("tracker/events/EvAncVisit1"), ReadRoute::Tracker(Kind::Event, Some("EvAncVisit1".into())));
        assert_eq!(route("me"), ReadRoute::Cached);
        assert_eq!(route("programs.json"), ReadRoute::Cached);
        assert_eq!(route("tracker/jobs/abc"), ReadRoute::Cached);
        assert_eq!(route("/41/tracker/events"), ReadRoute::Tracker(Kind::Event, None));
    }
}
