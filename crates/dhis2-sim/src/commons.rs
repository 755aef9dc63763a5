//! The Struts-era endpoints outside `/api` that the legacy web apps (Tracker Capture and its
//! org unit tree, `ouwt.js`) still call, in the shapes of DHIS2's Velocity templates:
//!
//! - `POST|GET /dhis-web-commons-ajax-json/getOrganisationUnitTree.action`
//!   (`jsonOrganisationUnitTree.vm`, `…Partial.vm`): `versionOnly`, `parentId`, `leafId`,
//!   `byName`.
//! - `/dhis-web-commons/ouwt/{clearselected,setorgunit,addorgunit,getselected}.action`: the
//!   server-side tree selection, per user, in memory.
//! - `/dhis-web-commons/menu/getModules.action`: `{"modules":[…]}` (the apps of `--app`).
//!
//! All need a logged-in user (a session cookie or Basic); unauthenticated requests get what
//! `/api` gives them (401 for XHR, else a redirect to the login page).

use axum::{
    body::Body,
    extract::{Query, Request, State},
    http::{header, HeaderValue, StatusCode, Uri},
    middleware,
    response::{IntoResponse, Response},
    routing::{any, get},
    Router,
};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::{
    auth::{self, CurrentUser},
    db::{self, OrgUnit, OrgUnitKind, User},
    error::{json_response, ApiError},
    state::AppState,
    tracker::store,
};

/// The routes of this module, with authentication.
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/dhis-web-commons-ajax-json/getOrganisationUnitTree.action", any(org_unit_tree))
        .route("/dhis-web-commons/ouwt/clearselected.action", any(clear_selected))
        .route("/dhis-web-commons/ouwt/setorgunit.action", any(set_org_unit))
        .route("/dhis-web-commons/ouwt/addorgunit.action", any(add_org_unit))
        .route("/dhis-web-commons/ouwt/getselected.action", any(get_selected))
        .route("/dhis-web-commons/menu/getModules.action", get(modules).post(modules))
        .layer(middleware::from_fn_with_state(state, auth::require_auth))
}

/// The query and form-body parameters of a Struts action, in order.
async fn action_params(req: Request) -> Result<(CurrentUser, Vec<(String, String)>), ApiError> {
    let (parts, body) = req.into_parts();
    let user = parts.extensions.get::<CurrentUser>().cloned().ok_or(ApiError::Unauthorized)?;
    let mut out: Vec<(String, String)> =
        Query::<Vec<(String, String)>>::try_from_uri(&parts.uri).map(|q| q.0).unwrap_or_default();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .map_err(|e| ApiError::BadRequest(format!("Cannot read request body: {e}")))?;
    if !bytes.is_empty() {
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(uri) = format!("/?{}", text.trim()).parse::<Uri>() {
            out.extend(Query::<Vec<(String, String)>>::try_from_uri(&uri).map(|q| q.0).unwrap_or_default());
        }
    }
    Ok((user, out))
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

/// The tree's version: a hash of the org units, so it changes when they do and not otherwise.
fn tree_version(all: &[OrgUnit]) -> String {
    let mut h = Sha256::new();
    for o in all {
        h.update(o.uid.as_bytes());
        h.update(o.name.as_bytes());
        h.update(o.parent.as_deref().unwrap_or("").as_bytes());
        h.update(o.last_updated.as_bytes());
    }
    let d = hex::encode(h.finalize());
    format!("{}-{}-{}-{}-{}", &d[0..8], &d[8..12], &d[12..16], &d[16..20], &d[20..32])
}

fn children<'a>(all: &'a [OrgUnit], uid: &'a str) -> impl Iterator<Item = &'a OrgUnit> + 'a {
    all.iter().filter(move |c| c.parent.as_deref() == Some(uid))
}

/// One org unit as the tree templates write it: `{id, n, sn, code, l, path, pid, c, g}`
/// (`l` only in the full tree).
fn tree_unit(o: &OrgUnit, all: &[OrgUnit], with_level: bool) -> Value {
    let mut v = Map::new();
    v.insert("id".into(), json!(o.uid));
    v.insert("n".into(), json!(o.name));
    v.insert("sn".into(), json!(o.short_name));
    v.insert("odate".into(), json!("1990-01-01"));
    if let Some(code) = &o.code {
        v.insert("code".into(), json!(code));
    }
    if with_level {
        v.insert("l".into(), json!(o.level));
    }
    v.insert("path".into(), json!(o.path));
    if let Some(p) = &o.parent {
        v.insert("pid".into(), json!(p));
    }
    let mut kids: Vec<&OrgUnit> = children(all, &o.uid).collect();
    kids.sort_by(|a, b| a.name.cmp(&b.name));
    v.insert("c".into(), json!(kids.iter().map(|c| c.uid.as_str()).collect::<Vec<_>>()));
    v.insert("g".into(), json!([]));
    Value::Object(v)
}

/// A unit, its children, and each ancestor with its children (`leafId`, `byName`).
fn with_ancestry<'a>(all: &'a [OrgUnit], leaf: &'a OrgUnit) -> Vec<&'a OrgUnit> {
    let mut units = vec![leaf];
    units.extend(children(all, &leaf.uid));
    let mut cur = leaf.parent.as_deref().and_then(|p| all.iter().find(|o| o.uid == p));
    while let Some(o) = cur {
        units.push(o);
        units.extend(children(all, &o.uid));
        cur = o.parent.as_deref().and_then(|p| all.iter().find(|x| x.uid == p));
    }
    units
}

struct TreeData {
    all: Vec<OrgUnit>,
    roots: Vec<OrgUnit>,
}

fn load_tree(conn: &rusqlite::Connection, user: &User) -> Result<TreeData, ApiError> {
    let mut all: Vec<OrgUnit> = store::org_units(conn)?.into_values().collect();
    all.sort_by(|a, b| a.path.cmp(&b.path));
    let mut roots = db::user_org_units(conn, &user.uid, OrgUnitKind::Capture)?;
    if roots.is_empty() && user.superuser {
        roots = all.iter().filter(|o| o.parent.is_none()).cloned().collect();
    }
    roots.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(TreeData { all, roots })
}

/// `getOrganisationUnitTree.action`, after `GetOrganisationUnitTreeAction`: the user's capture
/// org units are the roots (all real roots for a superuser without any).
async fn org_unit_tree(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (CurrentUser(user), params) = action_params(req).await?;
    let username = user.username.clone();
    let data = state.db().call(move |conn| load_tree(conn, &user)).await?;
    let version = tree_version(&data.all);
    let roots: Vec<&str> = data.roots.iter().map(|o| o.uid.as_str()).collect();
    let mut out = Map::new();
    out.insert("version".into(), json!(version));
    out.insert("username".into(), json!(username));

    // Partial answers: no realRoot, no levels.
    let partial = |units: Vec<&OrgUnit>| -> Response {
        let mut out = out.clone();
        out.insert("roots".into(), json!(roots));
        let mut map = Map::new();
        for o in units {
            map.entry(o.uid.clone()).or_insert_with(|| tree_unit(o, &data.all, false));
        }
        out.insert("organisationUnits".into(), Value::Object(map));
        json_response(StatusCode::OK, &Value::Object(out))
    };
    let all = &data.all;
    if let Some(name) = param(&params, "byName") {
        if let Some(o) = all.iter().find(|o| o.name == name) {
            return Ok(partial(with_ancestry(all, o)));
        }
    }
    if let Some(leaf) = param(&params, "leafId") {
        return Ok(partial(all.iter().find(|o| o.uid == leaf).map(|o| with_ancestry(all, o)).unwrap_or_default()));
    }
    if let Some(parent) = param(&params, "parentId") {
        return Ok(partial(children(&data.all, parent).collect()));
    }

    let version_only = param(&params, "versionOnly").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let real_root = data.roots.iter().any(|r| r.parent.is_none());
    out.insert("realRoot".into(), json!(real_root));
    out.insert("sortBy".into(), json!("name"));
    out.insert("roots".into(), json!(roots));
    if !version_only {
        let mut map = Map::new();
        for root in &data.roots {
            let prefix = format!("{}/", root.path);
            for o in data.all.iter().filter(|o| o.uid == root.uid || o.path.starts_with(&prefix)) {
                map.insert(o.uid.clone(), tree_unit(o, &data.all, true));
            }
        }
        out.insert("organisationUnits".into(), Value::Object(map));
    }
    Ok(json_response(StatusCode::OK, &Value::Object(out)))
}

/// `{"selectedUnits":[{id,name}]}` (`responseSelect.vm`).
async fn selection_json(state: &AppState, user_uid: &str) -> Result<Response, ApiError> {
    let selected = state.ou_selection(user_uid);
    let units = state
        .db()
        .call(move |conn| {
            let mut out = Vec::new();
            for uid in selected {
                if let Some(o) = db::org_unit_by_uid(conn, &uid)? {
                    out.push(json!({"id": o.uid, "name": o.name}));
                }
            }
            Ok(out)
        })
        .await?;
    Ok(json_response(StatusCode::OK, &json!({ "selectedUnits": units })))
}

/// `clearselected.action`: clears the selection; answers `responseSuccess.vm` (XML).
async fn clear_selected(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (CurrentUser(user), _) = action_params(req).await?;
    state.set_ou_selection(&user.uid, Vec::new());
    let mut response = (
        StatusCode::OK,
        Body::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<message type=\"success\"></message>"),
    )
        .into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml;charset=UTF-8"));
    Ok(response)
}

/// `setorgunit.action?id=…`: selects one org unit (unknown ids select nothing).
async fn set_org_unit(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (CurrentUser(user), params) = action_params(req).await?;
    let selected: Vec<String> = param(&params, "id").map(|id| vec![id.to_owned()]).unwrap_or_default();
    state.set_ou_selection(&user.uid, selected);
    selection_json(&state, &user.uid).await
}

/// `addorgunit.action?id=a&id=b`: adds to the selection.
async fn add_org_unit(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (CurrentUser(user), params) = action_params(req).await?;
    let mut selected = state.ou_selection(&user.uid);
    for (_, id) in params.iter().filter(|(k, v)| k == "id" && !v.is_empty()) {
        if !selected.contains(id) {
            selected.push(id.clone());
        }
    }
    state.set_ou_selection(&user.uid, selected);
    selection_json(&state, &user.uid).await
}

/// `getselected.action`: the selection.
async fn get_selected(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (CurrentUser(user), _) = action_params(req).await?;
    selection_json(&state, &user.uid).await
}

/// `menu/getModules.action`: the apps served with `--app` (`jsonModules.vm`).
async fn modules(State(state): State<AppState>, _user: CurrentUser) -> Response {
    let modules: Vec<Value> = state
        .apps()
        .iter()
        .map(|(name, _)| {
            json!({
                "name": name,
                "namespace": format!("/{name}"),
                "defaultAction": format!("../{name}/index.html"),
                "displayName": name,
                "icon": "../icons/program.png",
                "description": "",
            })
        })
        .collect();
    json_response(StatusCode::OK, &json!({ "modules": modules }))
}
