//! Metadata endpoints in DHIS2's shapes: `/api/programs`, `/api/programStages`,
//! `/api/trackedEntityAttributes` (with `/generate`, `/generateAndReserve`,
//! `/requiredValues`), `/api/trackedEntityTypes`, `/api/optionSets`, `/api/dataElements`,
//! `/api/organisationUnits`, `/api/programs/orgUnits`, plus empty lists of the kinds Tracker
//! Capture asks for at boot (program rules, indicators, relationship types, …).
//!
//! Lists: `{"pager":{page,pageCount,total,pageSize},"<plural>":[…]}` (no pager with
//! `paging=false`), default fields `id,displayName`; single objects: default fields `*`.
//! `filter=path:op:value` supports `eq`, `!eq`/`ne`, `in:[a,b]`, `like`/`ilike`, `null`,
//! `!null`.

use std::collections::BTreeMap;

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::Response,
    routing::get,
    Router,
};
use serde_json::{json, Map, Value};

use super::{legacy::strip_json, Params};
use crate::{
    auth::CurrentUser,
    error::{json_response, ApiError},
    fields::{FieldFilter, FilterOptions},
    model::{self, Metadata, Viewer},
    state::AppState,
    tracker::{
        query::pager_json,
        reserved::{self, GenerateError},
        store,
    },
};

/// The metadata kinds served, by path and plural key.
const KINDS: &[&str] = &[
    "programs",
    "programStages",
    "trackedEntityAttributes",
    "trackedEntityTypes",
    "optionSets",
    "dataElements",
    "organisationUnits",
    "organisationUnitLevels",
    "categoryOptions",
];

/// DHIS2's default category, category option and combination: the only ones the simulator has
/// (every program and data element uses the default combination).
const DEFAULT_CATEGORY: &str = "GLevLNI9wkl";
const DEFAULT_CATEGORY_OPTION: &str = "xYerKDKCefk";

/// Kinds answered with an empty list (the simulator has none).
const EMPTY_KINDS: &[&str] = &[
    "programRules",
    "programRuleVariables",
    "programIndicators",
    "programRuleActions",
    "relationshipTypes",
    "optionGroups",
    "trackedEntityInstanceFilters",
    "constants",
    // Asked by the Capture app at boot and for its working lists (a 404 stops its boot).
    "organisationUnitGroups",
    "programStageWorkingLists",
    "legendSets",
];

/// Names of the org unit levels, from the root down (deeper levels are "Level N").
const LEVEL_NAMES: &[&str] = &["National", "District", "Facility"];

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    let mut r = Router::new()
        .route("/programs/orgUnits", get(program_org_units))
        .route("/programs/orgUnits.json", get(program_org_units))
        .route("/trackedEntityAttributes/{id}/generate", get(generate))
        .route("/trackedEntityAttributes/{id}/generateAndReserve", get(generate_and_reserve))
        .route("/trackedEntityAttributes/{id}/requiredValues", get(required_values))
        .route("/potentialDuplicates", get(potential_duplicates))
        .route("/potentialDuplicates.json", get(potential_duplicates));
    for kind in KINDS {
        r = r
            .route(&format!("/{kind}"), get(list))
            .route(&format!("/{kind}.json"), get(list))
            .route(&format!("/{kind}/{{id}}"), get(one));
    }
    for kind in EMPTY_KINDS {
        r = r.route(&format!("/{kind}"), get(empty)).route(&format!("/{kind}.json"), get(empty));
    }
    r
}

/// The kind of a request path (`/programs.json` → `programs`).
fn kind_of(uri: &axum::http::Uri) -> String {
    let seg = uri.path().trim_start_matches('/').split('/').next().unwrap_or_default();
    strip_json(seg).to_owned()
}

/// What the user may see and do, for the `access` objects and the sharing filter.
pub fn viewer(conn: &rusqlite::Connection, md: &Metadata, user: &crate::db::User) -> Result<Viewer, ApiError> {
    let authorities = crate::db::user_roles(conn, &user.uid)?.into_iter().flat_map(|r| r.authorities).collect();
    Ok(Viewer::for_user(md, &user.uid, user.superuser, authorities))
}

/// All objects of a kind the user may read (metadata sharing), full JSON with `access`
/// computed for the user.
fn objects(conn: &rusqlite::Connection, kind: &str, user: &crate::db::User) -> Result<Vec<Value>, ApiError> {
    let md = Metadata::load(conn)?;
    let viewer = viewer(conn, &md, user)?;
    let viewer = &viewer;
    let mut ous: Vec<crate::db::OrgUnit> = store::org_units(conn)?.into_values().collect();
    ous.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(match kind {
        "programs" => md
            .programs
            .iter()
            .filter(|p| viewer.can_read(&p.sharing))
            .map(|p| model::program_json(&md, p, &ous, viewer))
            .collect(),
        "programStages" => md
            .program_stages
            .iter()
            .filter(|s| viewer.can_read(&s.sharing))
            .map(|s| model::program_stage_json(&md, s, viewer))
            .collect(),
        "trackedEntityAttributes" => md.attributes.iter().map(|a| model::attribute_json(&md, a, viewer)).collect(),
        "trackedEntityTypes" => md
            .tracked_entity_types
            .iter()
            .filter(|t| viewer.can_read(&t.sharing))
            .map(|t| model::tracked_entity_type_json(&md, t, viewer))
            .collect(),
        "optionSets" => md.option_sets.iter().map(|o| model::option_set_json(o, viewer)).collect(),
        "dataElements" => md.data_elements.iter().map(|d| model::data_element_json(&md, d, viewer)).collect(),
        "organisationUnitLevels" => {
            let deepest = ous.iter().map(|o| o.level).max().unwrap_or(0);
            (1..=deepest)
                .map(|level| {
                    let name = usize::try_from(level - 1)
                        .ok()
                        .and_then(|i| LEVEL_NAMES.get(i))
                        .map_or_else(|| format!("Level {level}"), |n| (*n).to_owned());
                    json!({
                        "id": format!("OulLevel{level:03}"),
                        "name": name,
                        "displayName": name,
                        "level": level,
                        "offlineLevels": null,
                    })
                })
                .collect()
        }
        "organisationUnits" => ous
            .iter()
            .map(|o| {
                let mut v = super::me::org_unit_json(o);
                let children: Vec<Value> =
                    ous.iter().filter(|c| c.parent.as_deref() == Some(&o.uid)).map(|c| json!({"id": c.uid})).collect();
                v["children"] = Value::Array(children);
                v["programs"] = Value::Array(
                    md.programs.iter().filter(|p| p.org_units.contains(&o.uid)).map(|p| json!({"id": p.uid})).collect(),
                );
                v["openingDate"] = json!("1990-01-01T00:00:00.000");
                // From the root down to the parent (the Capture app reads `ancestors[id,displayName]`).
                let mut ancestors = Vec::new();
                let mut parent = o.parent.as_deref();
                while let Some(p) = parent.and_then(|uid| ous.iter().find(|a| a.uid == uid)) {
                    if ancestors.len() >= ous.len() {
                        break; // a cycle in damaged data
                    }
                    ancestors.push(super::me::org_unit_json(p));
                    parent = p.parent.as_deref();
                }
                ancestors.reverse();
                v["ancestors"] = Value::Array(ancestors);
                v
            })
            .collect(),
        // Public to read and to capture data with, as DHIS2 makes the default option.
        "categoryOptions" => vec![json!({
            "id": DEFAULT_CATEGORY_OPTION,
            "name": "default",
            "displayName": "default",
            "shortName": "default",
            "code": "default",
            "categories": [{"id": DEFAULT_CATEGORY}],
            "organisationUnits": [],
            "access": {"read": true, "update": false, "externalize": false, "delete": false, "write": false,
                       "manage": false, "data": {"read": true, "write": true}},
        })],
        _ => Vec::new(),
    })
}

/// A value at a dotted path; arrays yield each element's value.
fn at_path<'v>(v: &'v Value, path: &[&str], out: &mut Vec<&'v Value>) {
    match path.split_first() {
        None => out.push(v),
        Some((head, rest)) => match v {
            Value::Array(items) => items.iter().for_each(|i| at_path(i, path, out)),
            Value::Object(m) => {
                if let Some(child) = m.get(*head) {
                    match child {
                        Value::Array(items) if !rest.is_empty() => items.iter().for_each(|i| at_path(i, rest, out)),
                        _ => at_path(child, rest, out),
                    }
                }
            }
            _ => {}
        },
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Whether `obj` passes one `filter=path:op:value`. Malformed filters are a 400.
fn passes(obj: &Value, filter: &str) -> Result<bool, ApiError> {
    let mut parts = filter.splitn(3, ':');
    let (Some(path), Some(op)) = (parts.next(), parts.next()) else {
        return Err(ApiError::BadRequest(format!("Invalid filter: {filter}")));
    };
    let value = parts.next().unwrap_or_default();
    let segs: Vec<&str> = path.split('.').collect();
    let mut found = Vec::new();
    at_path(obj, &segs, &mut found);
    let vals: Vec<String> = found.iter().filter(|v| !v.is_null()).map(|v| scalar(v)).collect();
    Ok(match op {
        "eq" => vals.iter().any(|v| v == value),
        "!eq" | "ne" | "neq" => !vals.iter().any(|v| v == value),
        "ieq" => vals.iter().any(|v| v.eq_ignore_ascii_case(value)),
        "in" | "!in" => {
            let list: Vec<&str> =
                value.trim_start_matches('[').trim_end_matches(']').split(',').map(str::trim).collect();
            let hit = vals.iter().any(|v| list.contains(&v.as_str()));
            if op == "in" {
                hit
            } else {
                !hit
            }
        }
        "like" | "ilike" | "token" => {
            let needle = value.to_lowercase();
            vals.iter().any(|v| v.to_lowercase().contains(&needle))
        }
        "gt" | "ge" | "lt" | "le" => vals.iter().any(|v| {
            let ord = match (v.parse::<f64>(), value.parse::<f64>()) {
                (Ok(a), Ok(b)) => a.partial_cmp(&b),
                _ => Some(v.as_str().cmp(value)),
            };
            matches!(
                (op, ord),
                ("gt", Some(std::cmp::Ordering::Greater))
                    | ("ge", Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal))
                    | ("lt", Some(std::cmp::Ordering::Less))
                    | ("le", Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal))
            )
        }),
        "null" => vals.is_empty(),
        "!null" => !vals.is_empty(),
        _ => return Err(ApiError::BadRequest(format!("Invalid filter operator: {op}"))),
    })
}

/// Gives every identifiable object (one with an `id`), nested ones included, the collections
/// DHIS2 always has on them, empty when the simulator has none: `translations` and
/// `attributeValues`. Asked for by name, they are `[]`, never missing (the Capture app reads
/// `option.translations.find(...)`, and stopped its boot with a TypeError without them).
fn with_identifiable_collections(value: &mut Value) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(with_identifiable_collections),
        Value::Object(obj) => {
            obj.values_mut().for_each(with_identifiable_collections);
            if obj.get("id").is_some_and(Value::is_string) {
                for key in ["translations", "attributeValues"] {
                    obj.entry(key).or_insert_with(|| Value::Array(Vec::new()));
                }
            }
        }
        _ => {}
    }
}

/// `GET /api/<kind>[.json]`.
pub async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    uri: axum::http::Uri,
    params: Params,
) -> Result<Response, ApiError> {
    let kind = kind_of(&uri);
    let k = kind.clone();
    let mut all = state.db().call(move |conn| objects(conn, &k, &user)).await?;
    all.iter_mut().for_each(with_identifiable_collections);
    let filters: Vec<&str> = params.all("filter").collect();
    let mut matched = Vec::new();
    for obj in all {
        let mut ok = true;
        for f in &filters {
            ok &= passes(&obj, f)?;
        }
        if ok {
            matched.push(obj);
        }
    }
    let paging = !params.get("paging").is_some_and(|p| p.eq_ignore_ascii_case("false"));
    let page = params.get("page").and_then(|p| p.parse::<i64>().ok()).unwrap_or(1).max(1);
    let page_size = params.get("pageSize").and_then(|p| p.parse::<i64>().ok()).unwrap_or(50).max(1);
    let total = i64::try_from(matched.len()).unwrap_or(i64::MAX);
    if paging {
        let skip = usize::try_from((page - 1).saturating_mul(page_size)).unwrap_or(usize::MAX);
        matched = matched.into_iter().skip(skip).take(usize::try_from(page_size).unwrap_or(usize::MAX)).collect();
    }
    let filter = params.fields().unwrap_or_else(|| FieldFilter::parse("id,displayName"));
    let items = filter.apply(&Value::Array(matched), &FilterOptions::default());
    let mut out = Map::new();
    if paging {
        out.insert("pager".into(), pager_json(page, total, page_size));
    }
    out.insert(kind, items);
    Ok(json_response(StatusCode::OK, &Value::Object(out)))
}

/// `GET /api/<kind>/{id}`.
pub async fn one(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    uri: axum::http::Uri,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let kind = kind_of(&uri);
    let id = strip_json(&id).to_owned();
    let k = kind.clone();
    let all = state.db().call(move |conn| objects(conn, &k, &user)).await?;
    let mut obj = all.into_iter().find(|o| o["id"] == json!(id)).ok_or_else(|| {
        let class = match kind.as_str() {
            "programs" => "Program",
            "programStages" => "ProgramStage",
            "trackedEntityAttributes" => "TrackedEntityAttribute",
            "trackedEntityTypes" => "TrackedEntityType",
            "optionSets" => "OptionSet",
            "dataElements" => "DataElement",
            "organisationUnitLevels" => "OrganisationUnitLevel",
            "categoryOptions" => "CategoryOption",
            _ => "OrganisationUnit",
        };
        ApiError::NotFound(format!("{class} with id {id} could not be found."))
    })?;
    with_identifiable_collections(&mut obj);
    Ok(super::filtered_json(&obj, &params, "*", &FilterOptions::default()))
}

/// `GET /api/<kind>` for kinds the simulator has none of.
pub async fn empty(_user: CurrentUser, uri: axum::http::Uri, params: Params) -> Response {
    let kind = kind_of(&uri);
    let mut out = Map::new();
    if !params.get("paging").is_some_and(|p| p.eq_ignore_ascii_case("false")) {
        out.insert("pager".into(), pager_json(1, 0, 50));
    }
    out.insert(kind, json!([]));
    json_response(StatusCode::OK, &Value::Object(out))
}

/// `GET /api/programs/orgUnits?programs=A,B` → `{"A": [ouIds]}` (programs the user can read).
pub async fn program_org_units(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    params: Params,
) -> Result<Response, ApiError> {
    let (md, viewer) = state
        .db()
        .call(move |conn| {
            let md = Metadata::load(conn)?;
            let viewer = viewer(conn, &md, &user)?;
            Ok((md, viewer))
        })
        .await?;
    let wanted: Vec<&str> = params.all("programs").flat_map(|p| p.split(',')).map(str::trim).collect();
    let mut out = BTreeMap::new();
    for p in md
        .programs
        .iter()
        .filter(|p| viewer.can_read(&p.sharing))
        .filter(|p| wanted.is_empty() || wanted.contains(&p.uid.as_str()))
    {
        out.insert(p.uid.clone(), json!(p.org_units));
    }
    Ok(json_response(StatusCode::OK, &json!(out)))
}

/// `GET /api/potentialDuplicates?teis=…`: the simulator flags no duplicates.
pub async fn potential_duplicates(_user: CurrentUser, params: Params) -> Response {
    let paging = !params.get("paging").is_some_and(|p| p.eq_ignore_ascii_case("false"));
    let mut out = Map::new();
    if paging {
        out.insert("pager".into(), pager_json(1, 0, 50));
    }
    out.insert("potentialDuplicates".into(), json!([]));
    json_response(StatusCode::OK, &Value::Object(out))
}

async fn reserve_values(state: &AppState, id: String, n: usize, days: i64) -> Result<Vec<Value>, ApiError> {
    state
        .db()
        .call(move |conn| {
            let md = Metadata::load(conn)?;
            let attr = md.attribute(&id).ok_or_else(|| {
                ApiError::NotFound(format!("TrackedEntityAttribute with id {id} could not be found."))
            })?;
            let tx = conn.transaction()?;
            let out = reserved::reserve(&tx, attr, n, days).map_err(|e| match e {
                GenerateError::NotGenerated => {
                    ApiError::Conflict(format!("Tracked entity attribute {id} does not have a generated text pattern"))
                }
                GenerateError::Exhausted => {
                    ApiError::Conflict(format!("Not enough values left to reserve {n} values for attribute {id}"))
                }
                GenerateError::Db(d) => ApiError::Internal(d),
            })?;
            tx.commit()?;
            Ok(out)
        })
        .await
}

fn expiration(params: &Params, default: i64) -> Result<i64, ApiError> {
    match params.get("expiration") {
        None => Ok(default),
        Some(raw) => raw.trim().parse::<i64>().map_err(|_| {
            ApiError::BadRequest(format!(
                "Value '{raw}' is not valid for parameter expiration. It should be of type Integer"
            ))
        }),
    }
}

/// `GET /api/trackedEntityAttributes/{id}/generate`: one reserved value (3 days by default).
pub async fn generate(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let days = expiration(&params, 3)?;
    let mut values = reserve_values(&state, id, 1, days).await?;
    let v = values.pop().unwrap_or(Value::Null);
    Ok(json_response(StatusCode::OK, &v))
}

/// Largest `numberToReserve`.
pub const MAX_RESERVE: usize = 10_000;

/// `GET /api/trackedEntityAttributes/{id}/generateAndReserve?numberToReserve=N`: a list
/// (60 days by default).
pub async fn generate_and_reserve(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let n = match params.get("numberToReserve") {
        None => 1,
        Some(raw) => raw.trim().parse::<usize>().map_err(|_| {
            ApiError::BadRequest(format!(
                "Value '{raw}' is not valid for parameter numberToReserve. It should be of type Integer"
            ))
        })?,
    };
    if n > MAX_RESERVE {
        return Err(ApiError::Conflict(format!("You can only reserve up to {MAX_RESERVE} values at a time")));
    }
    let days = expiration(&params, 60)?;
    let values = reserve_values(&state, id, n, days).await?;
    Ok(json_response(StatusCode::OK, &Value::Array(values)))
}

/// `GET /api/trackedEntityAttributes/{id}/requiredValues`: what `/generate` needs (nothing
/// for the simulator's sequential patterns).
pub async fn required_values(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let md = state.db().call(|conn| Ok(Metadata::load(conn)?)).await?;
    let attr = md
        .attribute(&id)
        .ok_or_else(|| ApiError::NotFound(format!("TrackedEntityAttribute with id {id} could not be found.")))?;
    if !attr.generated {
        return Err(ApiError::Conflict(format!(
            "Tracked entity attribute {id} does not have a generated text pattern"
        )));
    }
    Ok(json_response(StatusCode::OK, &json!({"REQUIRED": [], "OPTIONAL": []})))
}
