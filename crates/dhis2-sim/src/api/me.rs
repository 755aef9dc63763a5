//! `GET /api/me`: the current user, in the shape of DHIS2's `MeDto`.
//!
//! The handler builds the full object (org units and roles expanded) and the `fields` filter
//! trims it; without `fields` references are ids only (`"organisationUnits":[{"id":"…"}]`).
//! `userCredentials` exists up to 2.41 and is gone in 2.42.
//!
//! `PUT /api/me/changePassword` (`MeController.changePassword`): `{"oldPassword", "newPassword"}`,
//! 202 with no body; 409 WebMessage when either is missing or the old one is wrong; the new
//! password replaces the old at once and every session of the user ends.

use std::collections::BTreeSet;

use axum::{
    body::Body,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, put},
    Json, Router,
};
use serde_json::{json, Value};

use super::{filtered_json, Params};
use crate::{
    auth::CurrentUser,
    db::{self, OrgUnit, OrgUnitKind, User, UserRole},
    error::{json_response, ApiError},
    fields::FilterOptions,
    model::Metadata,
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
        .route("/me/changePassword", put(change_password))
        .route("/me/authorization/{authority}", get(has_authority))
        .route("/me/dashboard", get(dashboard))
}

/// `/api/me/dashboard`: the header bar's unread counts (the simulator has no messages).
async fn dashboard(_user: CurrentUser) -> Json<Value> {
    Json(json!({"unreadInterpretations": 0, "unreadMessageConversations": 0}))
}

/// Everything `/api/me` is built from, loaded in one go.
struct MeData {
    user: User,
    capture: Vec<OrgUnit>,
    view: Vec<OrgUnit>,
    search: Vec<OrgUnit>,
    roles: Vec<UserRole>,
    /// Every org unit (for `children`), sorted by path.
    all_org_units: Vec<OrgUnit>,
    metadata: Metadata,
}

async fn load(state: &AppState, user: User) -> Result<MeData, ApiError> {
    state
        .db()
        .call(move |conn| {
            let mut all_org_units: Vec<OrgUnit> = crate::tracker::store::org_units(conn)?.into_values().collect();
            all_org_units.sort_by(|a, b| a.path.cmp(&b.path));
            Ok(MeData {
                capture: db::user_org_units(conn, &user.uid, OrgUnitKind::Capture)?,
                view: db::user_org_units(conn, &user.uid, OrgUnitKind::View)?,
                search: db::user_org_units(conn, &user.uid, OrgUnitKind::Search)?,
                roles: db::user_roles(conn, &user.uid)?,
                all_org_units,
                metadata: Metadata::load(conn)?,
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
        // Program access moved to sharing in DHIS2 2.29; roles keep an empty list.
        "programs": [],
    })
}

/// An org unit with its `children` (two levels deep, each with its own children) and the
/// `programs` assigned to it, as Tracker Capture asks `/api/me` for them.
fn org_unit_tree_json(o: &OrgUnit, all: &[OrgUnit], md: &Metadata, depth: usize) -> Value {
    let mut v = org_unit_json(o);
    v["programs"] = Value::Array(
        md.programs.iter().filter(|p| p.org_units.contains(&o.uid)).map(|p| json!({"id": p.uid})).collect(),
    );
    let children = all.iter().filter(|c| c.parent.as_deref() == Some(o.uid.as_str()));
    v["children"] = Value::Array(if depth == 0 {
        children.map(|c| json!({"id": c.uid})).collect()
    } else {
        children.map(|c| org_unit_tree_json(c, all, md, depth - 1)).collect()
    });
    v
}

/// The full `/api/me` object for a version.
fn me_json(data: &MeData, state: &AppState) -> Value {
    let u = &data.user;
    let roles: Vec<Value> = data.roles.iter().map(role_json).collect();
    let ous = |list: &[OrgUnit]| -> Vec<Value> {
        list.iter().map(|o| org_unit_tree_json(o, &data.all_org_units, &data.metadata, 2)).collect()
    };
    let groups: Vec<Value> = data
        .metadata
        .user_groups
        .iter()
        .filter(|g| g.members.contains(&u.uid))
        .map(|g| json!({"id": g.uid, "name": g.name, "displayName": g.name}))
        .collect();
    let viewer = crate::model::Viewer::for_user(&data.metadata, &u.uid, u.superuser, authorities(u, &data.roles));
    let programs: Vec<Value> =
        data.metadata.programs.iter().filter(|p| viewer.can_read_data(&p.sharing)).map(|p| json!(p.uid)).collect();
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
        "programs": programs,
        "dataSets": [],
        "userGroups": groups,
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

/// Lengths DHIS2's password validation accepts (`PasswordValidationService`: 8 to 72 characters
/// by default; its other rules, digits, letters, special characters, are not checked here).
const PASSWORD_LENGTHS: std::ops::RangeInclusive<usize> = 8..=72;

/// `PUT /api/me/changePassword`: see the module doc.
pub async fn change_password(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .map_err(|e| ApiError::BadRequest(format!("Cannot read request body: {e}")))?;
    let body: serde_json::Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest(format!("Invalid JSON body: {e}")))?;
    let field = |name: &str| body.get(name).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
    let (Some(old), Some(new)) = (field("oldPassword"), field("newPassword")) else {
        return Err(ApiError::Conflict("OldPassword and newPassword must be provided".into()));
    };
    let stored = user.password_hash.clone();
    let valid = tokio::task::spawn_blocking(move || crate::auth::verify_password(&old, &stored))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if !valid {
        return Err(ApiError::Conflict("OldPassword is incorrect".into()));
    }
    if !PASSWORD_LENGTHS.contains(&new.chars().count()) {
        return Err(ApiError::Conflict("Password must have at least 8, and at most 72 characters".into()));
    }
    let hash = tokio::task::spawn_blocking(move || crate::auth::hash_password(&new))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let uid = user.uid.clone();
    state.db().call(move |conn| Ok(db::set_user_password_hash(conn, &uid, &hash)?)).await?;
    state.sessions().remove_user(&user.uid);
    Ok(StatusCode::ACCEPTED.into_response())
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
