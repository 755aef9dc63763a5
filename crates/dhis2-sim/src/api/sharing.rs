//! `/api/sharing?type=dataStore&id=…`: per-key sharing of dataStore entries, after DHIS2's
//! `SharingController`.
//!
//! Only `type=dataStore` is shareable here (other types: 409 `Type X is not supported.`).
//! The dataStore schema has no data sharing, so the data half of access strings is cleared;
//! users that do not exist are silently left out, and since the simulator has no user groups,
//! so are all `userGroupAccesses`, as DHIS2 does for unknown groups.

use axum::{
    body::Body,
    extract::State,
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    datastore::{self, UserAccess},
    Params,
};
use crate::{
    auth::CurrentUser,
    db,
    error::{json_response, ApiError, WebMessage},
    state::AppState,
};

/// Routes of this module (under `/api`, authenticated).
pub fn routes() -> Router<AppState> {
    Router::new().route("/sharing", get(get_sharing).post(post_sharing).put(post_sharing))
}

/// The one shareable type of the simulator.
const DATASTORE_TYPE: &str = "dataStore";

/// Whether `s` is a valid DHIS2 access string (`AccessStringHelper.isValid`): 8 characters,
/// `r`/`w` or `-` in the metadata and data pairs, `-` elsewhere.
pub fn is_valid_access(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 8
        && b.iter().enumerate().all(|(i, c)| match i {
            0 | 2 => *c == b'r' || *c == b'-',
            1 | 3 => *c == b'w' || *c == b'-',
            _ => *c == b'-',
        })
}

/// The access string with its data part cleared (dataStore entries have no data sharing).
fn without_data(s: &str) -> String {
    format!("{}------", &s[..2])
}

fn required<'a>(params: &'a Params, name: &str) -> Result<&'a str, ApiError> {
    params.get(name).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "Required request parameter '{name}' for method parameter type String is not present"
        ))
    })
}

fn check_type(kind: &str) -> Result<(), ApiError> {
    if kind == DATASTORE_TYPE {
        Ok(())
    } else {
        Err(ApiError::Conflict(format!("Type {kind} is not supported.")))
    }
}

fn not_found(kind: &str, id: &str) -> ApiError {
    ApiError::NotFound(format!("Object of type {kind} with ID {id} was not found."))
}

fn no_manage() -> ApiError {
    ApiError::Forbidden("You do not have manage access to this object.".into())
}

async fn get_sharing(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    params: Params,
) -> Result<Response, ApiError> {
    let kind = required(&params, "type")?.to_owned();
    let id = required(&params, "id")?.to_owned();
    check_type(&kind)?;
    let body = state
        .db()
        .call(move |conn| {
            let entry = datastore::entry_by_uid(conn, &id)?.filter(|e| e.owner_user.is_empty());
            let entry = entry.ok_or_else(|| not_found(&kind, &id))?;
            if !datastore::access(&entry, &user, datastore::is_superuser(conn, &user)?).read {
                return Err(no_manage());
            }
            let mut user_accesses = Vec::new();
            for a in &entry.user_accesses {
                if let Some(u) = db::user_by_uid(conn, &a.id)? {
                    user_accesses.push(json!({
                        "id": u.uid, "name": u.display_name, "displayName": u.display_name, "access": a.access
                    }));
                }
            }
            let mut object = json!({
                "id": entry.uid,
                "name": entry.key,
                "displayName": entry.key,
                "publicAccess": entry.public_access,
                "externalAccess": false,
                "userAccesses": user_accesses,
                "userGroupAccesses": [],
            });
            if let Some(owner) = entry.created_by.as_deref().map(|o| db::user_by_uid(conn, o)).transpose()?.flatten() {
                object["user"] = json!({"id": owner.uid, "name": owner.display_name});
            }
            Ok(json!({"meta": {"allowPublicAccess": true, "allowExternalAccess": false}, "object": object}))
        })
        .await?;
    let mut response = json_response(StatusCode::OK, &body);
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

#[derive(Debug, Deserialize)]
struct SharingBody {
    #[serde(default)]
    object: SharingObject,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SharingObject {
    public_access: Option<String>,
    #[serde(default)]
    user_accesses: Vec<AccessRef>,
    #[serde(default)]
    user_group_accesses: Vec<AccessRef>,
}

#[derive(Debug, Deserialize)]
struct AccessRef {
    #[serde(default)]
    id: String,
    access: Option<String>,
}

async fn post_sharing(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    params: Params,
    body: Body,
) -> Result<Response, ApiError> {
    let kind = required(&params, "type")?.to_owned();
    let id = required(&params, "id")?.to_owned();
    check_type(&kind)?;
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .map_err(|e| ApiError::BadRequest(format!("Cannot read request body: {e}")))?;
    state
        .db()
        .call(move |conn| {
            let entry = datastore::entry_by_uid(conn, &id)?.filter(|e| e.owner_user.is_empty());
            let entry = entry.ok_or_else(|| not_found(&kind, &id))?;
            if !datastore::access(&entry, &user, datastore::is_superuser(conn, &user)?).write {
                return Err(no_manage());
            }
            let parsed: SharingBody = serde_json::from_slice::<Value>(&bytes)
                .and_then(serde_json::from_value)
                .map_err(|e| ApiError::BadRequest(format!("Invalid sharing JSON: {e}")))?;
            let public = parsed.object.public_access.unwrap_or_else(|| "null".into());
            if !is_valid_access(&public) {
                return Err(ApiError::Conflict(format!("Invalid public access string: {public}")));
            }
            for g in &parsed.object.user_group_accesses {
                let access = g.access.as_deref().unwrap_or("null");
                if !is_valid_access(access) {
                    return Err(ApiError::Conflict(format!("Invalid user group access string: {access}")));
                }
            }
            let mut users = Vec::new();
            for u in &parsed.object.user_accesses {
                let access = u.access.as_deref().unwrap_or("null");
                if !is_valid_access(access) {
                    return Err(ApiError::Conflict(format!("Invalid user access string: {access}")));
                }
                if db::user_by_uid(conn, &u.id)?.is_some() && !users.iter().any(|x: &UserAccess| x.id == u.id) {
                    users.push(UserAccess { id: u.id.clone(), access: without_data(access) });
                }
            }
            datastore::set_sharing(conn, &entry.uid, &without_data(&public), &users)?;
            Ok(WebMessage::ok(StatusCode::OK, "Access control set").into_response())
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_strings() {
        for ok in ["--------", "rw------", "r-------", "rwrw----", "r-r-----"] {
            assert!(is_valid_access(ok), "{ok}");
        }
        for bad in ["", "rw", "wr------", "rw-----x", "rw-------", "RW------"] {
            assert!(!is_valid_access(bad), "{bad}");
        }
        assert_eq!(without_data("rwrw----"), "rw------");
    }
}
