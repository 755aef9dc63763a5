//! `GET /api/me`: the current user, in the shape of DHIS2's `MeDto`.
//!
//! The handler builds the full object (org units and roles expanded) and the `fields` filter
//! trims it; without `fields` references are ids only (`"organisationUnits":[{"id":"…"}]`).
//! `userCredentials` exists up to 2.41 and is gone in 2.42.

use std::collections::BTreeSet;

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::Response,
    routing::get,
    Router,
};
use serde_json::{json, Value};

use super::{filtered_json, Params};
use crate::{
    auth::CurrentUser,
    db::{self, OrgUnit, OrgUnitKind, User, UserRole},
    error::{json_response, ApiError},
    fields::FilterOptions,
    state::AppState,
};

/// Object keys of `/api/me` that are embedded, not references.
const EMBEDDED: &[&str] = &["userCredentials", "settings"];

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/me", get(me))
        .route("/me.json", get(me))
        .route("/me/authorization", get(authorization))
        .route("/me/authorization/{authority}", get(has_authority))
}

/// Everything `/api/me` is built from, loaded in one go.
struct MeData {
    user: User,
    capture: Vec<OrgUnit>,
    view: Vec<OrgUnit>,
    search: Vec<OrgUnit>,
    roles: Vec<UserRole>,
}

async fn load(state: &AppState, user: User) -> Result<MeData, ApiError> {
    state
        .db()
        .call(move |conn| {
            Ok(MeData {
                capture: db::user_org_units(conn, &user.uid, OrgUnitKind::Capture)?,
                view: db::user_org_units(conn, &user.uid, OrgUnitKind::View)?,
                search: db::user_org_units(conn, &user.uid, OrgUnitKind::Search)?,
                roles: db::user_roles(conn, &user.uid)?,
                user,
            })
        })
        .await
}

/// The user's authorities: those of the roles, plus `ALL` for a superuser; sorted, unique.
fn authorities(user: &User, roles: &[UserRole]) -> Vec<String> {
    let mut set: BTreeSet<String> = roles.iter().flat_map(|r| r.authorities.iter().cloned()).collect();
    if user.superuser {
        set.insert("ALL".into());
    }
    set.into_iter().collect()
}

/// An org unit as a full JSON object (the `fields` filter trims it).
pub fn org_unit_json(o: &OrgUnit) -> Value {
    let mut v = json!({
        "id": o.uid,
        "name": o.name,
        "displayName": o.name,
        "shortName": o.short_name,
        "displayShortName": o.short_name,
        "level": o.level,
        "path": o.path,
        "created": o.created,
        "lastUpdated": o.last_updated,
    });
    if let Some(code) = &o.code {
        v["code"] = json!(code);
    }
    if let Some(parent) = &o.parent {
        v["parent"] = json!({ "id": parent });
    }
    v
}

fn role_json(r: &UserRole) -> Value {
    json!({
        "id": r.uid,
        "name": r.name,
        "displayName": r.name,
        "authorities": r.authorities,
    })
}

/// The full `/api/me` object for a version.
fn me_json(data: &MeData, state: &AppState) -> Value {
    let u = &data.user;
    let roles: Vec<Value> = data.roles.iter().map(role_json).collect();
    let ous = |list: &[OrgUnit]| -> Vec<Value> { list.iter().map(org_unit_json).collect() };
    let mut v = json!({
        "id": u.uid,
        "username": u.username,
        "displayName": u.display_name,
        "name": u.display_name,
        "firstName": u.first_name,
        "surname": u.surname,
        "created": u.created,
        "lastUpdated": u.last_updated,
        "organisationUnits": ous(&data.capture),
        "dataViewOrganisationUnits": ous(&data.view),
        "teiSearchOrganisationUnits": ous(&data.search),
        "userRoles": roles,
        "authorities": authorities(u, &data.roles),
        "programs": [],
        "dataSets": [],
        "userGroups": [],
        "settings": {
            "keyUiLocale": "en",
            "keyDbLocale": "en",
            "keyStyle": "light_blue/light_blue.css",
        },
    });
    if state.version().has_user_credentials() {
        v["userCredentials"] = json!({
            "id": u.uid,
            "username": u.username,
            "disabled": u.disabled,
            "externalAuth": false,
            "twoFA": false,
            "userRoles": roles,
        });
    }
    v
}

/// `GET /api/me` and `/api/me.json`.
pub async fn me(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    params: Params,
) -> Result<Response, ApiError> {
    let data = load(&state, user).await?;
    Ok(filtered_json(&me_json(&data, &state), &params, "*", &FilterOptions { embedded: EMBEDDED }))
}

/// `GET /api/me/authorization`: the list of the user's authorities.
pub async fn authorization(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Response, ApiError> {
    let data = load(&state, user).await?;
    Ok(json_response(StatusCode::OK, &json!(authorities(&data.user, &data.roles))))
}

/// `GET /api/me/authorization/{authority}`: `true` or `false` (`ALL` grants everything).
pub async fn has_authority(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(authority): Path<String>,
) -> Result<Response, ApiError> {
    let data = load(&state, user).await?;
    let all = authorities(&data.user, &data.roles);
    let has = all.iter().any(|a| a == "ALL" || *a == authority);
    Ok(json_response(StatusCode::OK, &json!(has)))
}
