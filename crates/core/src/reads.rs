//! Reads answered by the service worker when the server cannot be reached: what each GET
//! under the API base means, the answer from the local copy in the server's own shape (both
//! API families), and the sealed cache of every other API GET seen online.
//!
//! # Whose a cached read is
//!
//! Every decision about a read (its route, whether it is cached, under which key, for whom)
//! is taken on its path without the API version segment ([`unversioned`]): DHIS2 answers
//! `/api/40/me` as `/api/me`, and the Capture app always asks with a version. A cached read
//! is kept **per user** (its key names the logged-in user, so a shift change offline never
//! shows the next nurse what the server told the previous one) unless its resource is in
//! [`VAULT_WIDE_API_READS`]: the program metadata every user of the clinic reads alike
//! (programs and their stages, sections, rules, indicators; tracked entity types and
//! attributes; option sets; data elements and category combos; relationship types, constants,
//! org unit levels, legend sets, attributes, schemas), kept once for the vault so a nurse new
//! to the device can open the app offline. Not on the list, so per user: `me` and everything
//! under it, `userSettings`, `userDataStore`, `dataStore` (sharing is per key),
//! `messageConversations`, `organisationUnits` (`userOnly`, `withinUserHierarchy`),
//! `system/info` and `systemSettings` (DHIS2 hides sensitive fields from non-superusers),
//! `apps`, working lists and filters (shared per user), and every resource not named, known
//! or not. `{resource}/orgUnits` of a listed resource is per user too (DHIS2's
//! `programs/orgUnits` answers only the org units of the current user's scope).
//!
//! Keys are the request's method, path without the version and query (without jQuery's
//! cache buster), prefixed with `user:{username}` when per user. A read kept before this rule
//! under a versioned path (`GET /api/40/me?…`, vault-wide) is never looked up again: it
//! simply misses, and the next online answer is kept under the new key.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::{
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

fn strip_json(segment: &str) -> &str {
    segment.strip_suffix(".json").unwrap_or(segment)
}

/// A path relative to the API base without its API version segment: `40/me` -> `me`,
/// `41` -> ``, `me` -> `me`. DHIS2 serves `/api/{version}/…` (versions 28 to 42 today) as
/// `/api/…`; any first segment of exactly two digits is taken as a version, so that later
/// versions are too. Every decision about a read starts from this path.
pub fn unversioned(relative: &str) -> &str {
    let (first, rest) = relative.split_once('/').unwrap_or((relative, ""));
    if first.len() == 2 && first.bytes().all(|b| b.is_ascii_digit()) {
        rest
    } else {
        relative
    }
}

/// Who a cached API read belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheScope {
    /// Kept for the logged-in user only (the default).
    User,
    /// Kept once for every user of the vault (metadata of [`VAULT_WIDE_API_READS`]).
    Vault,
}

/// The scope of a cached read by its path relative to the API base, version stripped or
/// not: per user unless its resource is in [`VAULT_WIDE_API_READS`] (and it is not that
/// resource's per-user `orgUnits` association).
pub fn cache_scope(relative: &str) -> CacheScope {
    let mut parts = unversioned(relative).split('/').map(strip_json);
    let resource = parts.next().unwrap_or_default();
    if VAULT_WIDE_API_READS.contains(&resource) && parts.next() != Some("orgUnits") {
        CacheScope::Vault
    } else {
        CacheScope::User
    }
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

/// A response kept in the sealed cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CachedResponse {
    status: u16,
    content_type: String,
    body: crate::register::Bytes,
}

fn json_response(value: &Value) -> HttpResponse {
    crate::local_answer::json_answer(200, value, LOCAL_HEADER.1)
}

fn selection(target: &Target) -> FieldSelection {
    target.get("fields").map(FieldSelection::parse).unwrap_or_else(FieldSelection::everything)
}

/// `/api/tracker` exports leave nested collections out unless `fields` asks (dhis2-api.md §3).
fn tracker_selection(target: &Target, kind: Kind) -> FieldSelection {
    match target.get("fields") {
        Some(f) => FieldSelection::parse(f),
        None => FieldSelection::parse(match kind {
            Kind::TrackedEntity => "*,!relationships,!enrollments,!events,!programOwners",
            Kind::Enrollment => "*,!relationships,!events,!attributes",
            Kind::Event => "*,!relationships",
        }),
    }
}

fn paging_of(q: &TeiQuery, total: usize) -> Paging {
    Paging { page: q.page, page_size: q.page_size, total, total_pages: q.total_pages, skip_paging: q.skip_paging }
}

fn grid(rows: &[&IndexRow], total: usize, q: &TeiQuery, meta: &ClinicMetadata) -> Value {
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
fn legacy_pager(p: &Paging) -> Value {
    if p.total_pages {
        json!({"page": p.page, "pageSize": p.page_size, "total": p.total, "pageCount": p.page_count()})
    } else {
        json!({"page": p.page, "pageSize": p.page_size, "isLastPage": p.page.saturating_mul(p.page_size) >= p.total})
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
            .lock()
            .map(|c| c.metadata.org_units.iter().map(|(id, o)| (id.clone(), o.display_name.clone())).collect())
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
            let clinic = self.clinic.lock().map_err(|_| CoreError::Storage("clinic lock poisoned".into()))?;
            if !scope.sees(text(&bundle.tei, "orgUnit").unwrap_or_default(), &clinic.metadata) {
                return Ok(None);
            }
        }
        Ok(Some(bundle))
    }

    fn matching_rows(&self, q: &TeiQuery) -> Result<(Vec<IndexRow>, usize, ClinicMetadata)> {
        let scope = self.user_scope();
        let clinic = self.clinic.lock().map_err(|_| CoreError::Storage("clinic lock poisoned".into()))?;
        if let Some(outside) = q.outside_scope(&clinic.metadata, scope.as_ref()) {
            return Err(CoreError::Conflict(format!("Organisation unit is not part of the search scope: {outside}")));
        }
        let (rows, total) = q.run_within(&clinic.index, &clinic.metadata, scope.as_ref());
        Ok((rows.into_iter().cloned().collect(), total, clinic.metadata.clone()))
    }

    /// Every bundle of tracked entities matching the child filter's TEI (or all, when none).
    async fn bundles_for(&self, filter: &ChildFilter) -> Result<Vec<TeiBundle>> {
        // In the server's order (the order the download received them).
        let uids: Vec<String> = match &filter.tei {
            Some(t) => vec![t.clone()],
            None => {
                let clinic = self.clinic.lock().map_err(|_| CoreError::Storage("clinic lock poisoned".into()))?;
                let mut rows: Vec<&IndexRow> = clinic.index.rows().collect();
                rows.sort_by(|a, b| a.ordinal.cmp(&b.ordinal).then_with(|| a.uid.cmp(&b.uid)));
                rows.into_iter().map(|r| r.uid.clone()).collect()
            }
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
        self.clinic.lock().ok().and_then(|c| c.index.owner(record_uid).map(str::to_string))
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
            let minor = self.clinic.lock().map(|c| c.metadata.minor_version()).unwrap_or(40);
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
                    let clinic = self.clinic.lock().map_err(|_| CoreError::Storage("clinic lock poisoned".into()))?;
                    let answer = crate::metadata_answers::answer(relative, &target, &clinic.metadata, &user);
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
                let minor = self.clinic.lock().map(|c| c.metadata.minor_version()).unwrap_or(40);
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
                    let minor = self.clinic.lock().map(|c| c.metadata.minor_version()).unwrap_or(40);
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
                let minor = self.clinic.lock().map(|c| c.metadata.minor_version()).unwrap_or(40);
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

    /// Keeps a successful online GET answer, sealed, to serve it offline later. Tracker data
    /// routes are answered from the local copy instead and are not cached.
    pub async fn cache_response(&self, url: &str, status: u16, content_type: &str, body: &[u8]) -> Result<bool> {
        self.cache_read("GET", url, &[], status, content_type, body).await
    }

    /// Keeps an online answer to a read ([`Engine::is_server_read`] or an API GET), sealed,
    /// under the request's method, URL and body (and the user, for per-user reads).
    pub async fn cache_read(
        &self,
        method: &str,
        url: &str,
        request_body: &[u8],
        status: u16,
        content_type: &str,
        body: &[u8],
    ) -> Result<bool> {
        let Some(slot) = self.cache_slot(method, url, request_body) else { return Ok(false) };
        if !(status == 200 || status == 404 && slot.keeps_not_found) || !self.vault.is_unlocked() {
            return Ok(false);
        }
        let entry =
            CachedResponse { status, content_type: content_type.into(), body: crate::register::Bytes(body.to_vec()) };
        let bytes = serde_json::to_vec(&entry).map_err(|e| CoreError::BadInput(e.to_string()))?;
        self.vault.put_record(StoreName::Cache, &slot.id, &bytes).await?;
        if status == 200 && method.eq_ignore_ascii_case("GET") && self.is_me_read(url) {
            self.remember_me(body).await?;
        }
        if status == 200 && method.eq_ignore_ascii_case("GET") {
            self.remember_objects(url, body).await?;
        }
        Ok(true)
    }

    /// The record holding the objects of one resource of
    /// [`crate::metadata_answers::OBJECTS_KEPT_BY_ID`] seen online (vault-wide, sealed).
    fn objects_seen_id(resource: &str) -> String {
        format!("objects seen online\n{resource}")
    }

    /// Merges the objects of an online answer into what is known of their resource's objects.
    async fn remember_objects(&self, url: &str, body: &[u8]) -> Result<()> {
        let target = Target::parse(url);
        let Some(relative) = target.relative_to(&self.api_path()).map(unversioned) else { return Ok(()) };
        if !crate::metadata_answers::OBJECTS_KEPT_BY_ID.iter().any(|r| relative.starts_with(r)) {
            return Ok(());
        }
        let Ok(answer) = serde_json::from_slice::<Value>(body) else { return Ok(()) };
        let Some((resource, objects)) = crate::metadata_answers::objects_in_answer(relative, &answer) else {
            return Ok(());
        };
        if objects.is_empty() {
            return Ok(());
        }
        let id = Self::objects_seen_id(resource);
        let _held = self.seen_merge.lock().await;
        // A damaged record is only a lost convenience: it is rebuilt from this answer on.
        let mut known = match self.vault.get_record(StoreName::Cache, &id).await? {
            Some(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(map)) => map,
                _ => Map::new(),
            },
            None => Map::new(),
        };
        for object in objects {
            let Some(uid) = object.get("id").and_then(Value::as_str).map(str::to_string) else { continue };
            match known.get_mut(&uid) {
                Some(existing) => crate::metadata_answers::merge_seen(existing, &object),
                None => {
                    known.insert(uid, object);
                }
            }
        }
        let bytes = serde_json::to_vec(&known).map_err(|e| CoreError::BadInput(e.to_string()))?;
        self.vault.put_record(StoreName::Cache, &id, &bytes).await
    }

    fn is_me_read(&self, url: &str) -> bool {
        Target::parse(url).relative_to(&self.api_path()).map(unversioned).map(strip_json) == Some("me")
    }

    /// The record holding everything the server's `me` answers online told about the
    /// logged-in user (per user, sealed like every cached read).
    fn me_seen_id(&self) -> Option<String> {
        Some(format!("user:{}\nme seen online", self.vault.session_info()?.username))
    }

    /// Merges an online `me` answer into what is known of her `me` (fields of every answer
    /// kept, the latest winning; lists of objects merged by `id`), so that offline a `me` read
    /// with another field selection can be answered ([`crate::metadata_answers`]).
    async fn remember_me(&self, body: &[u8]) -> Result<()> {
        let Ok(answer @ Value::Object(_)) = serde_json::from_slice::<Value>(body) else { return Ok(()) };
        let Some(id) = self.me_seen_id() else { return Ok(()) };
        let _held = self.seen_merge.lock().await;
        let mut known = self.me_seen_online(&id).await?.unwrap_or_else(|| json!({}));
        crate::metadata_answers::merge_seen(&mut known, &answer);
        let bytes = serde_json::to_vec(&known).map_err(|e| CoreError::BadInput(e.to_string()))?;
        self.vault.put_record(StoreName::Cache, &id, &bytes).await
    }

    async fn me_seen_online(&self, id: &str) -> Result<Option<Value>> {
        Ok(match self.vault.get_record(StoreName::Cache, id).await? {
            // A damaged record is only a lost convenience: it is overwritten at the next `me`.
            Some(bytes) => serde_json::from_slice(&bytes).ok(),
            None => None,
        })
    }

    /// Whether a request is a read the worker answers network first and, offline, from the
    /// local copy or the sealed cache: see [`is_server_read`].
    pub fn is_server_read(&self, method: &str, url: &str) -> bool {
        is_server_read(&self.api_path(), method, url)
    }

    /// Answers a read from the local copy or the sealed cache: API GETs as
    /// [`Engine::answer_offline`], server pages from the cache. `Ok(None)`: nothing local.
    pub async fn answer_read_offline(
        &self,
        method: &str,
        url: &str,
        request_body: &[u8],
    ) -> Result<Option<HttpResponse>> {
        if Target::parse(url).relative_to(&self.api_path()).is_some() && method.eq_ignore_ascii_case("GET") {
            return self.answer_offline(url).await;
        }
        match self.cache_slot(method, url, request_body) {
            Some(slot) => self.cached_entry(&slot.id).await,
            None => Ok(None),
        }
    }

    /// Where a cacheable read is kept, or None when it is not one (tracker data routes, writes,
    /// pages outside the server, per-user reads while locked).
    fn cache_slot(&self, method: &str, url: &str, request_body: &[u8]) -> Option<CacheSlot> {
        if !self.is_server_read(method, url) {
            return None;
        }
        let mut target = Target::parse(url);
        let api = self.api_path();
        let (per_user, keeps_not_found) = match target.relative_to(&api) {
            Some(relative) => {
                let stripped = unversioned(relative);
                if !matches!(route(stripped), ReadRoute::Cached | ReadRoute::RequiredValues(_)) {
                    return None;
                }
                let first = stripped.split('/').next().map(strip_json).unwrap_or_default();
                // Key-value reads answer 404 for a key never set; the app expects that answer.
                let key_value = matches!(first, "dataStore" | "userDataStore" | "userSettings" | "systemSettings")
                    && stripped.contains('/');
                let decision = (cache_scope(stripped) == CacheScope::User, key_value);
                // The key is the path without the version: `/api/40/programs` is `/api/programs`.
                if stripped.len() != relative.len() {
                    target.path = format!("{api}/{stripped}");
                }
                decision
            }
            // Server pages carry the user's org unit tree, menu and selection.
            None => (true, false),
        };
        let mut id = format!("{} {}", method.to_ascii_uppercase(), cache_id(&target).trim_start_matches("GET "));
        if !request_body.is_empty() {
            id.push('\n');
            id.push_str(&String::from_utf8_lossy(request_body));
        }
        if per_user {
            let user = self.vault.session_info()?.username;
            id = format!("user:{user}\n{id}");
        }
        Some(CacheSlot { id, keeps_not_found })
    }

    async fn cached_response(&self, url: &str) -> Result<Option<HttpResponse>> {
        match self.cache_slot("GET", url, &[]) {
            Some(slot) => self.cached_entry(&slot.id).await,
            None => Ok(None),
        }
    }

    async fn cached_entry(&self, id: &str) -> Result<Option<HttpResponse>> {
        let Some(bytes) = self.vault.get_record(StoreName::Cache, id).await? else { return Ok(None) };
        let entry: CachedResponse =
            serde_json::from_slice(&bytes).map_err(|e| CoreError::StorageCorrupt(format!("cached response: {e}")))?;
        Ok(Some(HttpResponse {
            status: entry.status,
            headers: vec![("content-type".into(), entry.content_type), (LOCAL_HEADER.0.into(), "cache".into())],
            body: entry.body.0,
        }))
    }
}

/// The answer offline to a read never seen online, where the server's answer is known without
/// asking: a key (or a whole namespace) of the dataStore, userDataStore or user settings that
/// this device never read is taken as unset (404, as the server answers for a key never set
/// or a namespace never used; the entries query `dataStore/{namespace}?fields=…` of an unused
/// namespace is an empty list, as the server answers it; the app then uses its defaults), and
/// potential duplicates are those the server reported (none known), and a user's saved working
/// lists never read on this device are none (the app shows its default working list).
fn offline_default(relative: &str, target: &Target) -> Option<HttpResponse> {
    let parts: Vec<&str> = relative.trim_matches('/').split('/').map(strip_json).collect();
    let mut answer = match parts.as_slice() {
        ["dataStore" | "userDataStore", namespace, key] => {
            not_found(format!("Key '{key}' not found in namespace '{namespace}'"))
        }
        ["dataStore" | "userDataStore", _] if target.get("fields").is_some() => {
            let paging = !target.get("paging").is_some_and(|p| p.eq_ignore_ascii_case("false"));
            let page_size = target.get("pageSize").and_then(|p| p.parse::<usize>().ok()).filter(|n| *n > 0);
            match (target.flag("headless") == Some(true), paging) {
                (true, _) => json_response(&json!([])),
                (false, true) => {
                    json_response(&json!({"pager": {"page": 1, "pageSize": page_size.unwrap_or(50)}, "entries": []}))
                }
                (false, false) => json_response(&json!({"entries": []})),
            }
        }
        ["dataStore" | "userDataStore", namespace] => not_found(format!("Namespace not found: '{namespace}'")),
        ["userSettings", key] => not_found(format!("User setting not found for key: {key}")),
        ["potentialDuplicates"] => json_response(&json!({"potentialDuplicates": []})),
        // A user's saved working lists (shared per user), never read online on this device:
        // none known (the app shows its default list; a failed read shows no list at all).
        [resource @ ("trackedEntityInstanceFilters" | "programStageWorkingLists" | "eventFilters")] => {
            json_response(&crate::metadata_answers::metadata_list(resource, Vec::new(), target))
        }
        _ => return None,
    };
    answer.headers.retain(|(k, _)| k != LOCAL_HEADER.0);
    answer.headers.push((LOCAL_HEADER.0.into(), "default".into()));
    Some(answer)
}

/// API resources (first segment after the version, `.json` stripped) whose cached answers are
/// kept once for the vault and served to any user who logs in on the device: the program
/// metadata the clinic's users share (see the module doc). Every other cached read is kept
/// per user. Add a resource here only when its answer does not depend on who asks.
pub const VAULT_WIDE_API_READS: &[&str] = &[
    "programs",
    "programStages",
    "programStageSections",
    "programSections",
    "programStageDataElements",
    "programTrackedEntityAttributes",
    "programRules",
    "programRuleVariables",
    "programRuleActions",
    "programIndicators",
    "trackedEntityTypes",
    "trackedEntityAttributes",
    "relationshipTypes",
    "optionSets",
    "options",
    "optionGroups",
    "dataElements",
    "categoryCombos",
    "categories",
    "categoryOptionCombos",
    "constants",
    "organisationUnitLevels",
    "legendSets",
    "attributes",
    "schemas",
];

/// Folders of server pages (outside the API) that Tracker Capture reads: the org unit tree,
/// selection actions, header menu and form templates. Not the login/logout pages.
const SERVER_READ_FOLDERS: &[&str] = &["dhis-web-commons", "dhis-web-commons-ajax-json", "dhis-web-commons-ajax"];

/// API resources read with a POST: `i18n` (translations of the keys in the body).
const API_READS_BY_POST: &[&str] = &["i18n"];

/// Whether a request outside the tracker data routes is a read the worker answers network
/// first and, offline, from the sealed cache, for the API at `api_path` (`/api`,
/// `/dhis/api`): any GET under the API base, and the server pages Tracker Capture reads
/// outside it (`dhis-web-commons*`, including the org unit tree it fetches with a POST).
pub fn is_server_read(api_path: &str, method: &str, url: &str) -> bool {
    let target = Target::parse(url);
    let get = method.eq_ignore_ascii_case("GET");
    let post = method.eq_ignore_ascii_case("POST");
    if let Some(relative) = target.relative_to(api_path) {
        let first = unversioned(relative).split('/').next().map(strip_json).unwrap_or_default();
        return get || post && API_READS_BY_POST.contains(&first);
    }
    // The selection actions (`ouwt/setorgunit.action`) only touch the server session.
    server_page(&target, &server_root(api_path)).is_some() && (get || post)
}

/// The server root an API path lives under (`/dhis/api` -> `/dhis`, `/api` -> ``).
fn server_root(api_path: &str) -> String {
    api_path.strip_suffix("/api").unwrap_or(api_path).to_string()
}

/// The page of a URL under the server root's `dhis-web-commons*` folders, if it is one.
fn server_page<'t>(target: &'t Target, server_root: &str) -> Option<&'t str> {
    let page = target.relative_to(server_root)?;
    let folder = page.split('/').next().unwrap_or_default();
    SERVER_READ_FOLDERS.contains(&folder).then_some(page)
}

/// Where a cacheable read is kept.
struct CacheSlot {
    /// Record id in the cache store (hashed with the vault's key before it is stored).
    id: String,
    /// Whether a 404 answer is kept too (key-value reads).
    keeps_not_found: bool,
}

/// A tracked entity nested as the legacy API gives it. Records created on this device and not
/// yet sent get the fields the server adds to every record it stores (program ownership, empty
/// relationships and notes, org unit names, flags), so the app reads them as it reads the
/// server's; records the server sent are given as it sent them.
fn legacy_nested(b: &TeiBundle, program: Option<&str>, org_unit_names: &dyn Fn(&str) -> String) -> Object {
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
fn tracker_nested(b: &TeiBundle, program: Option<&str>, org_unit_names: &dyn Fn(&str) -> String) -> Object {
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
fn with_empty_events(mut enrollment: Object) -> Object {
    enrollment.insert("events".into(), Value::Array(vec![]));
    enrollment
}

/// `page`, `pageSize`, `totalPages`, `skipPaging`/`paging=false` of a list request.
fn paging_params(target: &Target) -> Result<Paging> {
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

/// Cache key of a GET: path and query as sent, without jQuery's cache buster (`_=<time>`).
fn cache_id(target: &Target) -> String {
    let query: Vec<String> = target.params.iter().filter(|(k, _)| k != "_").map(|(k, v)| format!("{k}={v}")).collect();
    format!("GET {}?{}", target.path, query.join("&"))
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

    #[test]
    fn the_version_segment_is_two_digits_first() {
        assert_eq!(unversioned("40/me"), "me");
        assert_eq!(unversioned("28/programs.json"), "programs.json");
        assert_eq!(unversioned("41"), "");
        assert_eq!(unversioned("42/"), "");
        assert_eq!(unversioned("me"), "me");
        assert_eq!(unversioned("me/40"), "me/40");
        assert_eq!(unversioned("4/me"), "4/me");
        assert_eq!(unversioned("400/me"), "400/me");
        assert_eq!(unversioned("4a/me"), "4a/me");
        assert_eq!(unversioned(""), "");
    }

    #[test]
    fn cached_reads_are_per_user_unless_allow_listed_metadata() {
        for user in [
            "me",
            "40/me",
            "me/authorization",
            "userSettings",
            "41/userDataStore/a/b",
            "dataStore/a/b",
            "messageConversations",
            "organisationUnits",
            "system/info",
            "systemSettings",
            "programs/orgUnits",
            "40/programs/orgUnits.json",
            "unknownThing",
            "",
            "40",
        ] {
            assert_eq!(cache_scope(user), CacheScope::User, "{user}");
        }
        for shared in [
            "programs",
            "40/programs.json",
            "programs/PrMchProg01",
            "41/optionSets",
            "trackedEntityTypes.json",
            "trackedEntityAttributes/AtNationId1/requiredValues",
            "programRules",
        ] {
            assert_eq!(cache_scope(shared), CacheScope::Vault, "{shared}");
        }
    }
}
