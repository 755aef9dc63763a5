//! Metadata reads answered offline when the sealed cache holds no online answer to the same
//! URL: `organisationUnits` from the clinic's own org units (the ones the download kept: the
//! user's org units, everything below them, and their ancestors), `me` from the logged-in
//! user's profile and her `me` answers seen online, and the program metadata objects of
//! [`OBJECTS_KEPT_BY_ID`] from every online answer that held them.
//!
//! The Capture app asks for these in many shapes (`organisationUnits/{id}?fields=
//! displayName,ancestors[id,displayName]` on every form, `organisationUnits?filter=id:in:[…]`
//! for names in lists, `level=1`, `query=…&withinUserSearchHierarchy=true` for its pickers,
//! `me?fields=organisationUnits[id,path]` for its org unit selector), so an answer kept online
//! under one URL rarely serves the next. This module builds the server's answer instead: the
//! org units as DHIS2 gives them (id, names, path, level, parent, ancestors root first,
//! children), its `filter` operators on those properties, its `query`, `level` and
//! user-hierarchy switches, paging, and the `fields` selection. A request it cannot answer
//! truthfully (an unknown org unit by id, a filter on another property, another switch, a
//! field of `me` the profile does not hold) is not answered (`None`): the read then fails as
//! any read with nothing local does.
//!
//! Program metadata: the Capture app reads each program's whole metadata at boot
//! (`programs?fields=<35 fields>&filter=id:in:[…]`), then each page asks for the same program
//! again with its own selection (`programs/{id}?fields=displayIncidentDate,…`), which offline
//! misses the cache unless that page was opened online. Every online answer of a resource in
//! [`OBJECTS_KEPT_BY_ID`] is merged by `id` ([`merge_seen`]) into what is known of its
//! objects; a read by id that misses the cache is answered from them. DHIS2 leaves out fields
//! whose value is null, so a field asked and not known is left out the same way (an object
//! never seen is not answered).

use serde_json::{json, Map, Value};

use crate::{
    fields::FieldSelection,
    metadata::{ClinicMetadata, OrgUnitInfo},
    params::Target,
    profile::{OrgUnitRef, UserProfile},
};

/// What is known here of the logged-in user: her profile (from the last online login) and
/// everything the server's `me` answers told online on this device
/// ([`merge_seen`] of each, kept per user by the engine).
#[derive(Debug, Clone, Copy, Default)]
pub struct KnownUser<'a> {
    /// The profile of the session.
    pub profile: Option<&'a UserProfile>,
    /// The merged online `me` answers.
    pub seen_online: Option<&'a Value>,
}

/// Metadata resources whose objects are kept by id from every online answer (vault-wide:
/// they are in [`crate::read_cache::VAULT_WIDE_API_READS`]).
pub const OBJECTS_KEPT_BY_ID: &[&str] = &[
    "programs",
    "programStages",
    "trackedEntityTypes",
    "trackedEntityAttributes",
    "relationshipTypes",
    "optionSets",
    "dataElements",
];

/// What is known of the objects of [`OBJECTS_KEPT_BY_ID`]: resource → id → object.
pub type KnownObjects = std::collections::BTreeMap<&'static str, Map<String, Value>>;

/// How deep references are filled in an answer (a program's stage's data element's option set).
const REFERENCE_DEPTH: usize = 8;

/// The resource and the objects (each with an `id`) of an online answer to `relative` (path
/// after the API base and version) when the resource is in [`OBJECTS_KEPT_BY_ID`]: the object
/// of `resource/{id}`, or the list of `resource`.
pub fn objects_in_answer(relative: &str, body: &Value) -> Option<(&'static str, Vec<Value>)> {
    let parts = segments(relative);
    let resource = *OBJECTS_KEPT_BY_ID.iter().find(|r| Some(**r) == parts.first().copied())?;
    let with_id = |v: &&Value| v.get("id").and_then(Value::as_str).is_some();
    match parts.as_slice() {
        [_] => Some((resource, body.get(resource)?.as_array()?.iter().filter(with_id).cloned().collect())),
        [_, id] if body.get("id").and_then(Value::as_str) == Some(*id) => Some((resource, vec![body.clone()])),
        _ => None,
    }
}

/// Answers `resource/{id}` or `resource?filter=id:in:[…]` (`id:eq:`) of [`OBJECTS_KEPT_BY_ID`]
/// from `known` (id → object, merged from online answers); None when an object asked is not
/// known, or the read has other filters or switches.
/// A reference in an object (`{"id": …}` under a key naming a kept resource) is answered with
/// what is known of the object it names, its own fields first: a program read at boot with its
/// attributes' ids answers a screen asking their names.
pub fn answer_from_objects(relative: &str, target: &Target, all: &KnownObjects) -> Option<Value> {
    let parts = segments(relative);
    let resource = *OBJECTS_KEPT_BY_ID.iter().find(|r| Some(**r) == parts.first().copied())?;
    if target.params.iter().any(|(k, _)| !NEUTRAL_PARAMS.contains(&k.as_str()) && k != "filter") {
        return None;
    }
    let known = all.get(resource)?;
    let fields = |default: &str, object: &Value| {
        let mut object = object.clone();
        fill_references(&mut object, all, REFERENCE_DEPTH);
        FieldSelection::parse(target.get("fields").unwrap_or(default)).apply(&object)
    };
    match parts.as_slice() {
        [_, id] if target.get("filter").is_none() => Some(fields("*", known.get(*id)?)),
        [_] => {
            let mut ids: Vec<String> = Vec::new();
            for filter in target.all("filter") {
                let list = filter.strip_prefix("id:in:").or_else(|| filter.strip_prefix("id:eq:"))?;
                ids.extend(list.trim_start_matches('[').trim_end_matches(']').split(',').map(|s| s.trim().to_string()));
            }
            if ids.is_empty() {
                return None;
            }
            let objects: Option<Vec<Value>> =
                ids.iter().map(|id| known.get(id).map(|o| fields("id,displayName", o))).collect();
            Some(metadata_list(resource, objects?, target))
        }
        _ => None,
    }
}

/// The kept resource a metadata field refers to, by the field's name.
fn referenced_resource(key: &str) -> Option<&'static str> {
    Some(match key {
        "trackedEntityAttribute" | "trackedEntityAttributes" => "trackedEntityAttributes",
        "dataElement" | "dataElements" => "dataElements",
        "optionSet" => "optionSets",
        "trackedEntityType" => "trackedEntityTypes",
        "programStage" | "programStages" => "programStages",
        "program" => "programs",
        "relationshipType" => "relationshipTypes",
        _ => return None,
    })
}

/// Gives each reference in `value` (an object with an `id` under a key of
/// [`referenced_resource`], or such objects in a list) the fields known of that object which it
/// lacks, then does the same inside, `depth` objects deep (references may name each other).
fn fill_references(value: &mut Value, all: &KnownObjects, depth: usize) {
    if depth == 0 {
        return;
    }
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if let Some(known) = referenced_resource(key).and_then(|r| all.get(r)) {
                    let fill = |item: &mut Value| {
                        let Value::Object(reference) = item else { return };
                        let Some(object) = reference.get("id").and_then(Value::as_str).and_then(|id| known.get(id))
                        else {
                            return;
                        };
                        if let Value::Object(object) = object {
                            for (name, v) in object {
                                reference.entry(name.clone()).or_insert_with(|| v.clone());
                            }
                        }
                    };
                    match &mut *child {
                        Value::Array(items) => items.iter_mut().for_each(fill),
                        other => fill(other),
                    }
                }
                fill_references(child, all, depth - 1);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| fill_references(item, all, depth)),
        _ => {}
    }
}

/// A metadata list read with a filter `…:in:[]` (an empty list of values) matches nothing, on
/// any resource: DHIS2 answers an empty list (the Capture app's profile widget asks
/// `optionGroups?filter=optionSet.id:in:[]` when no attribute has an option set).
pub fn nothing_matches(relative: &str, target: &Target) -> Option<Value> {
    let parts = segments(relative);
    let [resource] = parts.as_slice() else { return None };
    if resource.is_empty() || !target.all("filter").iter().any(|f| f.ends_with(":in:[]")) {
        return None;
    }
    Some(metadata_list(resource, Vec::new(), target))
}

/// The path after the API base in segments, `.json` stripped from each.
fn segments(relative: &str) -> Vec<&str> {
    relative.trim_matches('/').split('/').map(|p| p.strip_suffix(".json").unwrap_or(p)).collect()
}

/// A metadata list as DHIS2 answers it: `{pager, <resource>: [...]}`, the page asked
/// (`page`, `pageSize`, 50 by default) of `items`, or all of them without a pager when
/// `paging=false`.
pub(crate) fn metadata_list(resource: &str, mut items: Vec<Value>, target: &Target) -> Value {
    let mut out = Map::new();
    if target.get("paging").is_none_or(|p| !p.eq_ignore_ascii_case("false")) {
        let total = items.len();
        let page_size = target.get("pageSize").and_then(|s| s.parse::<usize>().ok()).filter(|n| *n > 0).unwrap_or(50);
        let page_count = total.div_ceil(page_size).max(1);
        let page = target.get("page").and_then(|s| s.parse::<usize>().ok()).unwrap_or(1).clamp(1, page_count);
        items = items.into_iter().skip((page - 1) * page_size).take(page_size).collect();
        out.insert(
            "pager".into(),
            json!({"page": page, "pageCount": page_count, "total": total, "pageSize": page_size}),
        );
    }
    out.insert(resource.into(), Value::Array(items));
    Value::Object(out)
}

/// Merges `answer` (an online answer) into `known`: objects field by field, lists of objects
/// with an `id` by `id` (an item's fields merged), anything else replaced.
pub fn merge_seen(known: &mut Value, answer: &Value) {
    match (known, answer) {
        (Value::Object(k), Value::Object(a)) => {
            for (name, value) in a {
                match k.get_mut(name) {
                    Some(existing) => merge_seen(existing, value),
                    None => {
                        k.insert(name.clone(), value.clone());
                    }
                }
            }
        }
        (Value::Array(k), Value::Array(a)) if a.iter().all(|v| v.get("id").is_some()) => {
            let mut merged = Vec::with_capacity(a.len());
            for item in a {
                let mut item = item.clone();
                if let Some(old) = k.iter().find(|o| o.get("id") == item.get("id")) {
                    let mut old = old.clone();
                    merge_seen(&mut old, &item);
                    item = old;
                }
                merged.push(item);
            }
            *k = merged;
        }
        (k, a) => *k = a.clone(),
    }
}

/// Parameters that change nothing in the answer built here.
/// (`isUserDataViewFallback`, sent by the org unit tree of `@dhis2/ui`, widens who may read an
/// org unit, not what it holds.)
const NEUTRAL_PARAMS: &[&str] =
    &["fields", "paging", "page", "pageSize", "order", "translate", "locale", "isUserDataViewFallback", "_"];

/// Answers `organisationUnits`, `organisationUnits/{id}` or `me` (`relative`: the path after
/// the API base and version, `.json` allowed) from `meta` and the logged-in user's profile,
/// or None when it cannot.
pub fn answer(relative: &str, target: &Target, meta: &ClinicMetadata, user: &KnownUser<'_>) -> Option<Value> {
    let parts = segments(relative);
    match parts.as_slice() {
        ["me"] => me(target, meta, user),
        ["organisationUnits"] => list(target, meta),
        ["organisationUnits", id] => {
            if target.params.iter().any(|(k, _)| !NEUTRAL_PARAMS.contains(&k.as_str())) {
                return None;
            }
            let unit = meta.org_units.get(*id)?;
            let fields = target.get("fields").map(FieldSelection::parse).unwrap_or_else(FieldSelection::everything);
            Some(fields.apply(&full_object(unit, meta)))
        }
        _ => None,
    }
}

/// `me` from what is known of her (the server's `me` answers seen online, over what her
/// profile and the clinic's org units say), when every field asked is known (`fields` is
/// required: DHIS2's whole `me` holds much more).
fn me(target: &Target, meta: &ClinicMetadata, user: &KnownUser<'_>) -> Option<Value> {
    if target.params.iter().any(|(k, _)| !NEUTRAL_PARAMS.contains(&k.as_str())) {
        return None;
    }
    let spec = target.get("fields")?;
    let mut me = match user.profile {
        Some(profile) => from_profile(profile, meta),
        None => json!({}),
    };
    if let Some(seen) = user.seen_online {
        merge_seen(&mut me, seen);
    }
    let fields = FieldSelection::parse(spec);
    if fields.keeps_everything() || fields.included().any(|name| me.get(name).is_none()) {
        return None;
    }
    Some(fields.apply(&me))
}

fn from_profile(profile: &UserProfile, meta: &ClinicMetadata) -> Value {
    let units = |refs: &[OrgUnitRef]| -> Value {
        Value::Array(
            refs.iter()
                .map(|r| match meta.org_units.get(&r.id) {
                    Some(unit) => full_object(unit, meta),
                    None => {
                        let name = r.display_name.clone().unwrap_or_default();
                        json!({"id": r.id, "displayName": name, "name": name})
                    }
                })
                .collect(),
        )
    };
    json!({
        "id": profile.id,
        "username": profile.username,
        "displayName": profile.display_name,
        "name": profile.display_name,
        "authorities": profile.authorities,
        "organisationUnits": units(&profile.organisation_units),
        "teiSearchOrganisationUnits": units(&profile.tei_search_organisation_units),
        "userCredentials": {"username": profile.username},
    })
}

fn list(target: &Target, meta: &ClinicMetadata) -> Option<Value> {
    if meta.org_units.is_empty() {
        return None; // no clinic downloaded: an empty list would be a lie
    }
    let mut filters = Vec::new();
    for (key, value) in &target.params {
        match key.as_str() {
            "filter" => filters.push(Filter::parse(value)?),
            "level" => filters.push(Filter::parse(&format!("level:eq:{value}"))?),
            "query" if !value.is_empty() => filters.push(Filter::Query(value.to_lowercase())),
            "query" => {}
            "userOnly" | "withinUserHierarchy" | "withinUserSearchHierarchy" if value != "true" => {}
            "userOnly" => filters.push(Filter::OneOf(meta.capture_org_units.clone())),
            "withinUserHierarchy" => filters.push(Filter::Below(meta.capture_org_units.clone())),
            "withinUserSearchHierarchy" => {
                let roots =
                    if meta.search_org_units.is_empty() { &meta.capture_org_units } else { &meta.search_org_units };
                filters.push(Filter::Below(roots.clone()));
            }
            "rootJunction" if value.eq_ignore_ascii_case("AND") => {}
            other if NEUTRAL_PARAMS.contains(&other) => {}
            _ => return None,
        }
    }
    let mut units: Vec<&OrgUnitInfo> =
        meta.org_units.values().filter(|u| filters.iter().all(|f| f.matches(u))).collect();
    sort(&mut units, target.get("order"));
    // DHIS2 lists metadata with `id,displayName` unless `fields` says otherwise.
    let fields = FieldSelection::parse(target.get("fields").unwrap_or("id,displayName"));
    let items = units.into_iter().map(|u| fields.apply(&full_object(u, meta))).collect();
    Some(metadata_list("organisationUnits", items, target))
}

/// Orders by `order=property[:asc|:desc]` (displayName, name, level, path, id), by name otherwise.
fn sort(units: &mut [&OrgUnitInfo], order: Option<&str>) {
    let (property, descending) = match order.map(|o| o.split(',').next().unwrap_or(o).split(':').collect::<Vec<_>>()) {
        Some(parts) => (parts[0].to_string(), parts.get(1).is_some_and(|d| d.eq_ignore_ascii_case("desc"))),
        None => ("displayName".to_string(), false),
    };
    units.sort_unstable_by(|a, b| {
        let ordering = match property.as_str() {
            "level" => level(a).cmp(&level(b)),
            "path" => a.path.cmp(&b.path),
            "id" => a.id.cmp(&b.id),
            _ => a.display_name.to_lowercase().cmp(&b.display_name.to_lowercase()),
        }
        .then_with(|| a.id.cmp(&b.id));
        if descending {
            ordering.reverse()
        } else {
            ordering
        }
    });
}

fn level(unit: &OrgUnitInfo) -> usize {
    unit.path.split('/').filter(|p| !p.is_empty()).count().max(1)
}

/// The properties of an org unit known here, without its relatives.
fn own_object(unit: &OrgUnitInfo) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert("id".into(), json!(unit.id));
    for name in ["name", "displayName", "shortName", "displayShortName"] {
        o.insert(name.into(), json!(unit.display_name));
    }
    o.insert("path".into(), json!(unit.path));
    o.insert("level".into(), json!(level(unit)));
    o
}

/// The org unit as the server gives it: its own properties, `parent`, `ancestors` (root
/// first, those known here) and `children` (each with its own properties and `children`).
fn full_object(unit: &OrgUnitInfo, meta: &ClinicMetadata) -> Value {
    let mut o = own_object(unit);
    let ancestor_ids: Vec<&str> = unit.path.split('/').filter(|p| !p.is_empty() && *p != unit.id).collect();
    let ancestors: Vec<Value> =
        ancestor_ids.iter().filter_map(|id| meta.org_units.get(*id)).map(|a| Value::Object(own_object(a))).collect();
    if let Some(parent) = ancestor_ids.last() {
        let mut p = meta.org_units.get(*parent).map(own_object).unwrap_or_default();
        p.insert("id".into(), json!(parent));
        o.insert("parent".into(), Value::Object(p));
    }
    o.insert("ancestors".into(), Value::Array(ancestors));
    let mut children: Vec<&OrgUnitInfo> =
        meta.org_units.values().filter(|c| parent_id(c).as_deref() == Some(unit.id.as_str())).collect();
    sort(&mut children, None);
    let children = children
        .into_iter()
        .map(|c| {
            let mut child = own_object(c);
            let grandchildren: Vec<Value> = meta
                .org_units
                .values()
                .filter(|g| parent_id(g).as_deref() == Some(c.id.as_str()))
                .map(|g| json!({"id": g.id}))
                .collect();
            child.insert("children".into(), Value::Array(grandchildren));
            child.insert("parent".into(), json!({"id": unit.id}));
            Value::Object(child)
        })
        .collect();
    o.insert("children".into(), Value::Array(children));
    Value::Object(o)
}

/// One condition on an org unit.
enum Filter {
    /// `property:operator:value`.
    Property { property: Property, operator: Operator, value: String },
    /// `query=`: id, code or name containing the text (lower case).
    Query(String),
    /// One of these org units.
    OneOf(Vec<String>),
    /// One of these org units or below one.
    Below(Vec<String>),
}

#[derive(Clone, Copy)]
enum Property {
    Id,
    Name,
    Path,
    Level,
    ParentId,
}

#[derive(Clone, Copy)]
enum Operator {
    Eq,
    NotEq,
    In,
    NotIn,
    Like,
    ILike,
    StartsWith,
    EndsWith,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Filter {
    /// Parses `property:operator:value`; None for a property or operator not handled here.
    fn parse(spec: &str) -> Option<Self> {
        let mut parts = spec.splitn(3, ':');
        let property = match parts.next()? {
            "id" => Property::Id,
            "name" | "displayName" | "shortName" | "displayShortName" => Property::Name,
            "path" => Property::Path,
            "level" => Property::Level,
            "parent.id" => Property::ParentId,
            _ => return None,
        };
        let operator = match parts.next()? {
            "eq" => Operator::Eq,
            "!eq" | "ne" | "neq" => Operator::NotEq,
            "in" => Operator::In,
            "!in" => Operator::NotIn,
            "like" => Operator::Like,
            "ilike" => Operator::ILike,
            "$like" | "$ilike" => Operator::StartsWith,
            "like$" | "ilike$" => Operator::EndsWith,
            "gt" => Operator::Gt,
            "ge" => Operator::Ge,
            "lt" => Operator::Lt,
            "le" => Operator::Le,
            _ => return None,
        };
        Some(Self::Property { property, operator, value: parts.next().unwrap_or_default().to_string() })
    }

    fn matches(&self, unit: &OrgUnitInfo) -> bool {
        match self {
            Self::Query(text) => {
                unit.id.to_lowercase().contains(text) || unit.display_name.to_lowercase().contains(text)
            }
            Self::OneOf(ids) => ids.contains(&unit.id),
            Self::Below(roots) => unit.path.split('/').any(|part| roots.iter().any(|r| r == part)),
            Self::Property { property, operator, value } => {
                let actual = match property {
                    Property::Id => unit.id.clone(),
                    Property::Name => unit.display_name.clone(),
                    Property::Path => unit.path.clone(),
                    Property::Level => level(unit).to_string(),
                    Property::ParentId => parent_id(unit).unwrap_or_default(),
                };
                compare(&actual, *operator, value, matches!(property, Property::Level))
            }
        }
    }
}

fn parent_id(unit: &OrgUnitInfo) -> Option<String> {
    let parts: Vec<&str> = unit.path.split('/').filter(|p| !p.is_empty()).collect();
    parts.len().checked_sub(2).map(|i| parts[i].to_string())
}

fn compare(actual: &str, operator: Operator, expected: &str, numeric: bool) -> bool {
    let list = || expected.trim_start_matches('[').trim_end_matches(']').split(',').map(str::trim).any(|v| v == actual);
    let order = || -> Option<std::cmp::Ordering> {
        if numeric {
            Some(actual.parse::<i64>().ok()?.cmp(&expected.parse::<i64>().ok()?))
        } else {
            Some(actual.cmp(expected))
        }
    };
    match operator {
        Operator::Eq => actual == expected,
        Operator::NotEq => actual != expected,
        Operator::In => list(),
        Operator::NotIn => !list(),
        Operator::Like => actual.contains(expected),
        Operator::ILike => actual.to_lowercase().contains(&expected.to_lowercase()),
        Operator::StartsWith => actual.to_lowercase().starts_with(&expected.to_lowercase()),
        Operator::EndsWith => actual.to_lowercase().ends_with(&expected.to_lowercase()),
        Operator::Gt => order().is_some_and(|o| o.is_gt()),
        Operator::Ge => order().is_some_and(|o| o.is_ge()),
        Operator::Lt => order().is_some_and(|o| o.is_lt()),
        Operator::Le => order().is_some_and(|o| o.is_le()),
    }
}
