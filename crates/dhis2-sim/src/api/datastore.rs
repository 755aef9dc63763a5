//! `/api/dataStore` and `/api/userDataStore`, after DHIS2's `DatastoreController`,
//! `UserDatastoreController` and `DefaultDatastoreService`.
//!
//! Both stores live in one SQLite table (`datastore_entries`, `owner_user = ''` for the shared
//! dataStore, the user's UID for a userDataStore). Values are stored as compact JSON text.
//! DataStore entries carry per-key sharing (see `api/sharing.rs`): new keys are public
//! read/write (`rw------`). Writes are always checked against it; reads only on server versions
//! that check them ([`ServerVersion::enforces_datastore_read_sharing`]). Superusers bypass
//! sharing, and may use another user's userDataStore with `?username=`. POST creates (409 if
//! the key exists); PUT updates, and creates a missing key only where DHIS2's does
//! ([`ServerVersion::datastore_put_creates`]: 404 before 2.39.3 and in 2.40.0). No dataStore
//! request can carry sharing: a new key is public until `/api/sharing` changes it.
//!
//! About 880 lines, 55 of them tests: the two stores are one set of handlers (a userDataStore
//! is the dataStore of one owner), with DHIS2's per-version differences beside each rule.
//!
//! [`ServerVersion::enforces_datastore_read_sharing`]: crate::version::ServerVersion::enforces_datastore_read_sharing
//! [`ServerVersion::datastore_put_creates`]: crate::version::ServerVersion::datastore_put_creates

use axum::{
    body::Body,
    extract::{Path, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::Params;
use crate::{
    auth::CurrentUser,
    db::{self, User},
    error::{json_response, ApiError, WebMessage},
    state::AppState,
    uid,
};

/// Largest value accepted (DHIS2 has no documented limit; this keeps memory bounded).
const MAX_VALUE_BYTES: usize = 64 << 20;

/// Access string of new entries: public metadata read and write.
pub const DEFAULT_PUBLIC_ACCESS: &str = "rw------";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS datastore_entries (
    uid                 TEXT PRIMARY KEY,
    owner_user          TEXT NOT NULL DEFAULT '',
    namespace           TEXT NOT NULL,
    key                 TEXT NOT NULL,
    value               TEXT NOT NULL,
    encrypted           INTEGER NOT NULL DEFAULT 0,
    created             TEXT NOT NULL,
    last_updated        TEXT NOT NULL,
    created_by          TEXT,
    last_updated_by     TEXT,
    public_access       TEXT NOT NULL DEFAULT 'rw------',
    user_accesses       TEXT NOT NULL DEFAULT '[]',
    user_group_accesses TEXT NOT NULL DEFAULT '[]',
    UNIQUE (owner_user, namespace, key)
);
";

/// Creates this module's table if missing (called where the database is opened).
pub fn create_tables(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

/// Routes of this module (under `/api`, authenticated).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/dataStore", get(ds_namespaces))
        .route("/dataStore/{namespace}", get(ds_keys).delete(ds_delete_namespace))
        .route("/dataStore/{namespace}/{key}", get(ds_get).post(ds_post).put(ds_put).delete(ds_delete))
        .route("/dataStore/{namespace}/{key}/metaData", get(ds_metadata))
        .route("/userDataStore", get(uds_namespaces))
        .route("/userDataStore/{namespace}", get(uds_keys).delete(uds_delete_namespace))
        .route("/userDataStore/{namespace}/{key}", get(uds_get).post(uds_post).put(uds_put).delete(uds_delete))
}

/// One user's access to an entry (`userAccesses`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserAccess {
    /// User UID.
    pub id: String,
    /// Access string, e.g. `rw------`.
    pub access: String,
}

/// A row of `datastore_entries`.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// UID (`id` in `metaData` and in `/api/sharing`).
    pub uid: String,
    /// `''` for the dataStore, else the user UID of a userDataStore.
    pub owner_user: String,
    /// Namespace.
    pub namespace: String,
    /// Key.
    pub key: String,
    /// Value, compact JSON.
    pub value: String,
    /// Stored with `?encrypt=true`.
    pub encrypted: bool,
    /// Creation time.
    pub created: String,
    /// Last update time.
    pub last_updated: String,
    /// UID of the creator (the sharing owner).
    pub created_by: Option<String>,
    /// UID of the last writer.
    pub last_updated_by: Option<String>,
    /// Public access string.
    pub public_access: String,
    /// Per-user access.
    pub user_accesses: Vec<UserAccess>,
}

const COLUMNS: &str = "uid, owner_user, namespace, key, value, encrypted, created, last_updated, created_by, \
                       last_updated_by, public_access, user_accesses";

fn entry_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    let accesses: String = r.get(11)?;
    Ok(Entry {
        uid: r.get(0)?,
        owner_user: r.get(1)?,
        namespace: r.get(2)?,
        key: r.get(3)?,
        value: r.get(4)?,
        encrypted: r.get(5)?,
        created: r.get(6)?,
        last_updated: r.get(7)?,
        created_by: r.get(8)?,
        last_updated_by: r.get(9)?,
        public_access: r.get(10)?,
        user_accesses: serde_json::from_str(&accesses).unwrap_or_default(),
    })
}

/// The entry with this UID (either store).
pub fn entry_by_uid(conn: &Connection, uid: &str) -> rusqlite::Result<Option<Entry>> {
    conn.query_row(&format!("SELECT {COLUMNS} FROM datastore_entries WHERE uid = ?1"), [uid], entry_from_row).optional()
}

/// The entry of `owner_user` at `namespace`/`key`.
pub fn entry(conn: &Connection, owner_user: &str, namespace: &str, key: &str) -> rusqlite::Result<Option<Entry>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM datastore_entries WHERE owner_user = ?1 AND namespace = ?2 AND key = ?3"),
        params![owner_user, namespace, key],
        entry_from_row,
    )
    .optional()
}

/// Replaces the sharing of an entry.
pub fn set_sharing(conn: &Connection, uid: &str, public_access: &str, users: &[UserAccess]) -> rusqlite::Result<()> {
    let users = serde_json::to_string(users).unwrap_or_else(|_| "[]".into());
    conn.execute(
        "UPDATE datastore_entries SET public_access = ?2, user_accesses = ?3 WHERE uid = ?1",
        params![uid, public_access, users],
    )?;
    Ok(())
}

fn namespaces(conn: &Connection, owner_user: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt =
        conn.prepare("SELECT DISTINCT namespace FROM datastore_entries WHERE owner_user = ?1 ORDER BY namespace")?;
    let rows = stmt.query_map([owner_user], |r| r.get(0))?;
    rows.collect()
}

fn keys(
    conn: &Connection,
    owner_user: &str,
    namespace: &str,
    updated_after: Option<&str>,
) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT key FROM datastore_entries WHERE owner_user = ?1 AND namespace = ?2 \
         AND (?3 IS NULL OR last_updated >= ?3) ORDER BY key",
    )?;
    let rows = stmt.query_map(params![owner_user, namespace, updated_after], |r| r.get(0))?;
    rows.collect()
}

fn entries_in(conn: &Connection, owner_user: &str, namespace: &str) -> rusqlite::Result<Vec<Entry>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM datastore_entries WHERE owner_user = ?1 AND namespace = ?2 ORDER BY key"
    ))?;
    let rows = stmt.query_map(params![owner_user, namespace], entry_from_row)?;
    rows.collect()
}

fn namespace_used(conn: &Connection, owner_user: &str, namespace: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM datastore_entries WHERE owner_user = ?1 AND namespace = ?2)",
        params![owner_user, namespace],
        |r| r.get(0),
    )
}

fn insert(conn: &Connection, e: &Entry) -> rusqlite::Result<()> {
    let users = serde_json::to_string(&e.user_accesses).unwrap_or_else(|_| "[]".into());
    conn.execute(
        &format!(
            "INSERT INTO datastore_entries ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
        ),
        params![
            e.uid,
            e.owner_user,
            e.namespace,
            e.key,
            e.value,
            e.encrypted,
            e.created,
            e.last_updated,
            e.created_by,
            e.last_updated_by,
            e.public_access,
            users
        ],
    )?;
    Ok(())
}

fn update_value(conn: &Connection, uid: &str, value: &str, user_uid: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE datastore_entries SET value = ?2, last_updated = ?3, last_updated_by = ?4 WHERE uid = ?1",
        params![uid, value, db::now_timestamp(), user_uid],
    )?;
    Ok(())
}

fn delete_entry(conn: &Connection, uid: &str) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM datastore_entries WHERE uid = ?1", [uid])?;
    Ok(())
}

fn delete_namespace(conn: &Connection, owner_user: &str, namespace: &str) -> rusqlite::Result<()> {
    conn.execute(
        "DELETE FROM datastore_entries WHERE owner_user = ?1 AND namespace = ?2",
        params![owner_user, namespace],
    )?;
    Ok(())
}

/// Whether the user is a superuser (flag or a role with authority `ALL`).
pub fn is_superuser(conn: &Connection, user: &User) -> rusqlite::Result<bool> {
    if user.superuser {
        return Ok(true);
    }
    Ok(db::user_roles(conn, &user.uid)?.iter().any(|r| r.authorities.iter().any(|a| a == "ALL")))
}

/// The ACL of an entry for one user, as DHIS2's `AclService` decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// May read.
    pub read: bool,
    /// May write (update, delete, manage sharing).
    pub write: bool,
}

/// What `user` may do with `entry` (owner and superusers may do everything).
pub fn access(entry: &Entry, user: &User, superuser: bool) -> Access {
    if superuser || entry.created_by.as_deref() == Some(user.uid.as_str()) {
        return Access { read: true, write: true };
    }
    let grants = |access: &str, pos: usize, c: u8| access.as_bytes().get(pos) == Some(&c);
    let mine = entry.user_accesses.iter().filter(|a| a.id == user.uid);
    let mut read = grants(&entry.public_access, 0, b'r');
    let mut write = grants(&entry.public_access, 1, b'w');
    for a in mine {
        read |= grants(&a.access, 0, b'r');
        write |= grants(&a.access, 1, b'w');
    }
    Access { read: read || write, write }
}

fn access_denied(namespace: &str, key: &str) -> ApiError {
    ApiError::Forbidden(format!("Access denied for key '{key}' in namespace '{namespace}'"))
}

fn key_not_found(namespace: &str, key: &str) -> ApiError {
    ApiError::NotFound(format!("Key '{key}' not found in namespace '{namespace}'"))
}

fn namespace_not_found(namespace: &str) -> ApiError {
    ApiError::NotFound(format!("Namespace not found: '{namespace}'"))
}

/// An error or a ready response (for the 415 that [`ApiError`] has no variant for).
enum Failure {
    Api(ApiError),
    Response(Response),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Api(e)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self {
            Failure::Api(e) => e.into_response(),
            Failure::Response(r) => r,
        }
    }
}

/// Reads a JSON value body as DHIS2 does: `application/json` only (415 otherwise, as Spring's
/// `consumes`), valid JSON (400 `Invalid JSON value for key 'k'`). Returns compact JSON text.
async fn json_value(headers: &HeaderMap, body: Body, key: &str) -> Result<String, Failure> {
    json_body(headers, body, key).await?.map_err(Failure::Api)
}

/// [`json_value`] in two stages: the outer error (415, unreadable body) comes before the
/// handler runs; the inner one (invalid JSON) only where the handler parses the value.
async fn json_body(headers: &HeaderMap, body: Body, key: &str) -> Result<Result<String, ApiError>, Failure> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let is_json = content_type.is_some_and(|ct| {
        let mime = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
    });
    if !is_json {
        let shown = content_type.unwrap_or("application/octet-stream");
        let message = format!("Content type '{shown}' not supported");
        return Err(Failure::Response(WebMessage::error(StatusCode::UNSUPPORTED_MEDIA_TYPE, message).into_response()));
    }
    let bytes = axum::body::to_bytes(body, MAX_VALUE_BYTES)
        .await
        .map_err(|e| ApiError::BadRequest(format!("Cannot read request body: {e}")))?;
    Ok(serde_json::from_slice::<Value>(&bytes)
        .map(|value| serde_json::to_string(&value).unwrap_or_else(|_| "null".into()))
        .map_err(|_| ApiError::BadRequest(format!("Invalid JSON value for key '{key}'"))))
}

/// A stored JSON value as a 200 `application/json` response.
fn raw_json(value: String) -> Response {
    let mut response = (StatusCode::OK, value).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json;charset=UTF-8"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn list_json(items: &[String]) -> Response {
    let mut response = json_response(StatusCode::OK, &json!(items));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn new_entry(owner_user: &str, namespace: &str, key: &str, value: String, encrypted: bool, user: &User) -> Entry {
    let now = db::now_timestamp();
    Entry {
        uid: uid::generate(),
        owner_user: owner_user.to_owned(),
        namespace: namespace.to_owned(),
        key: key.to_owned(),
        value,
        encrypted,
        created: now.clone(),
        last_updated: now,
        created_by: Some(user.uid.clone()),
        last_updated_by: Some(user.uid.clone()),
        public_access: DEFAULT_PUBLIC_ACCESS.to_owned(),
        user_accesses: Vec::new(),
    }
}

/// A 201 `OK` WebMessage.
fn created(message: String) -> Response {
    WebMessage { status: StatusCode::CREATED, outcome: "OK", message: Some(message), response: None }.into_response()
}

fn flag(params: &Params, name: &str) -> bool {
    params.get(name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

// ----------------------------------------------------------------------------------------------
// /api/dataStore
// ----------------------------------------------------------------------------------------------

/// A dataStore entry the current user may read (404 if missing, 403 if reads are checked and
/// sharing denies it).
fn readable_entry(
    conn: &Connection,
    state_enforces: bool,
    user: &User,
    ns: &str,
    key: &str,
) -> Result<Entry, ApiError> {
    let e = entry(conn, "", ns, key)?.ok_or_else(|| key_not_found(ns, key))?;
    if state_enforces && !access(&e, user, is_superuser(conn, user)?).read {
        return Err(access_denied(ns, key));
    }
    Ok(e)
}

async fn ds_namespaces(State(state): State<AppState>) -> Result<Response, ApiError> {
    let list = state.db().call(|conn| Ok(namespaces(conn, "")?)).await?;
    Ok(list_json(&list))
}

async fn ds_keys(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(ns): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    if let Some(fields) = params.get("fields").map(str::to_owned) {
        return ds_entries(state, user, ns, &fields, &params).await;
    }
    let updated_after = params.get("lastUpdated").map(str::to_owned);
    let list = state
        .db()
        .call(move |conn| {
            let list = keys(conn, "", &ns, updated_after.as_deref())?;
            if list.is_empty() && !namespace_used(conn, "", &ns)? {
                return Err(namespace_not_found(&ns));
            }
            Ok(list)
        })
        .await?;
    Ok(list_json(&list))
}

/// The entries query (`GET /api/dataStore/{namespace}?fields=…`, DHIS2 2.39+): every entry
/// the user may read, as `{key, <field>: <value at that path>}` (`.` is the whole value, named
/// `value`), in `{pager, entries}` (`paging=false`: no pager; `headless=true`: the list
/// alone). Unlike the key list, a namespace never used answers an empty list, not a 404 (the
/// Capture app reads `dataStore/capture?fields=.` on every enrollment page and relies on it).
async fn ds_entries(
    state: AppState,
    user: User,
    ns: String,
    fields: &str,
    params: &Params,
) -> Result<Response, ApiError> {
    let enforce = state.version().enforces_datastore_read_sharing();
    let entries = state
        .db()
        .call(move |conn| {
            let superuser = is_superuser(conn, &user)?;
            Ok(entries_in(conn, "", &ns)?
                .into_iter()
                .filter(|e| !enforce || access(e, &user, superuser).read)
                .collect::<Vec<_>>())
        })
        .await?;
    let paths: Vec<&str> = fields.split(',').map(str::trim).filter(|f| !f.is_empty()).collect();
    let page_size = params.get("pageSize").and_then(|p| p.parse::<usize>().ok()).filter(|n| *n > 0).unwrap_or(50);
    let page = params.get("page").and_then(|p| p.parse::<usize>().ok()).filter(|n| *n > 0).unwrap_or(1);
    let paging = !params.get("paging").is_some_and(|p| p.eq_ignore_ascii_case("false"));
    let shown: Vec<Value> = entries
        .iter()
        .skip(if paging { (page - 1) * page_size } else { 0 })
        .take(if paging { page_size } else { usize::MAX })
        .map(|e| {
            let value: Value = serde_json::from_str(&e.value).unwrap_or(Value::Null);
            let mut out = serde_json::Map::new();
            out.insert("key".into(), json!(e.key));
            for path in &paths {
                if *path == "." {
                    out.insert("value".into(), value.clone());
                } else {
                    let pointer = format!("/{}", path.replace('.', "/"));
                    out.insert((*path).to_string(), value.pointer(&pointer).cloned().unwrap_or(Value::Null));
                }
            }
            Value::Object(out)
        })
        .collect();
    let body = if flag(params, "headless") {
        Value::Array(shown)
    } else if paging {
        json!({"pager": {"page": page, "pageSize": page_size}, "entries": shown})
    } else {
        json!({"entries": shown})
    };
    Ok(json_response(StatusCode::OK, &body))
}

async fn ds_delete_namespace(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(ns): Path<String>,
) -> Result<Response, ApiError> {
    state
        .db()
        .call(move |conn| {
            let entries = entries_in(conn, "", &ns)?;
            if entries.is_empty() {
                return Err(namespace_not_found(&ns));
            }
            let superuser = is_superuser(conn, &user)?;
            if let Some(denied) = entries.iter().find(|e| !access(e, &user, superuser).write) {
                return Err(access_denied(&ns, &denied.key));
            }
            delete_namespace(conn, "", &ns)?;
            Ok(WebMessage::ok(StatusCode::OK, format!("Namespace deleted: '{ns}'")).into_response())
        })
        .await
}

async fn ds_get(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((ns, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let enforce = state.version().enforces_datastore_read_sharing();
    let e = state.db().call(move |conn| readable_entry(conn, enforce, &user, &ns, &key)).await?;
    Ok(raw_json(e.value))
}

async fn ds_metadata(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((ns, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let enforce = state.version().enforces_datastore_read_sharing();
    let body = state
        .db()
        .call(move |conn| {
            let e = readable_entry(conn, enforce, &user, &ns, &key)?;
            let superuser = is_superuser(conn, &user)?;
            metadata_json(conn, &e, &user, superuser)
        })
        .await?;
    Ok(json_response(StatusCode::OK, &body))
}

/// A user reference as DHIS2 embeds it (`createdBy`, `lastUpdatedBy`, `user`).
fn user_ref(conn: &Connection, uid: Option<&str>) -> Result<Value, ApiError> {
    let Some(uid) = uid else {
        return Ok(Value::Null);
    };
    Ok(match db::user_by_uid(conn, uid)? {
        Some(u) => json!({"id": u.uid, "code": null, "name": u.display_name, "displayName": u.display_name,
                          "username": u.username}),
        None => json!({ "id": uid }),
    })
}

/// `GET …/metaData`: the entry without its value, with sharing and the caller's access
/// (DHIS2 nulls `value` there and omits nulls).
fn metadata_json(conn: &Connection, e: &Entry, user: &User, superuser: bool) -> Result<Value, ApiError> {
    let a = access(e, user, superuser);
    let owner = user_ref(conn, e.created_by.as_deref())?;
    let users: serde_json::Map<String, Value> =
        e.user_accesses.iter().map(|u| (u.id.clone(), json!({"access": u.access, "id": u.id}))).collect();
    let mut body = json!({
        "created": e.created,
        "lastUpdated": e.last_updated,
        "createdBy": owner,
        "lastUpdatedBy": user_ref(conn, e.last_updated_by.as_deref())?,
        "user": owner,
        "sharing": {
            "owner": e.created_by,
            "external": false,
            "users": users,
            "userGroups": {},
            "public": e.public_access,
        },
        "namespace": e.namespace,
        "key": e.key,
        "encrypted": e.encrypted,
        "id": e.uid,
        "access": {
            "manage": a.write, "externalize": false, "write": a.write, "read": a.read,
            "update": a.write, "delete": a.write,
        },
        "favorite": false,
        "favorites": [],
        "translations": [],
        "attributeValues": [],
    });
    strip_nulls(&mut body);
    Ok(body)
}

fn strip_nulls(v: &mut Value) {
    if let Value::Object(map) = v {
        map.retain(|_, x| !x.is_null());
        map.values_mut().for_each(strip_nulls);
    }
}

async fn ds_post(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((ns, key)): Path<(String, String)>,
    params: Params,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Failure> {
    let value = json_value(&headers, body, &key).await?;
    let encrypt = flag(&params, "encrypt");
    let enforce = state.version().enforces_datastore_read_sharing();
    Ok(state.db().call(move |conn| create_ds(conn, enforce, &user, &ns, &key, value, encrypt)).await?)
}

/// `addEntry`: 409 if the key exists (after the read check), else 201.
fn create_ds(
    conn: &Connection,
    enforce: bool,
    user: &User,
    ns: &str,
    key: &str,
    value: String,
    encrypt: bool,
) -> Result<Response, ApiError> {
    if let Some(existing) = entry(conn, "", ns, key)? {
        if enforce && !access(&existing, user, is_superuser(conn, user)?).read {
            return Err(access_denied(ns, key));
        }
        return Err(ApiError::Conflict(format!("Key '{key}' already exists in namespace '{ns}'")));
    }
    insert(conn, &new_entry("", ns, key, value, encrypt, user))?;
    Ok(created(format!("Key created: '{key}'")))
}

async fn ds_put(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((ns, key)): Path<(String, String)>,
    params: Params,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Failure> {
    let value = json_body(&headers, body, &key).await?;
    let encrypt = flag(&params, "encrypt");
    let enforce = state.version().enforces_datastore_read_sharing();
    let creates = state.version().datastore_put_creates();
    Ok(state
        .db()
        .call(move |conn| {
            let tx = conn.transaction()?;
            let response = match entry(&tx, "", &ns, &key)? {
                // Before 2.39.3 / 2.40.1 the key is looked up first: 404 whatever the body.
                None if !creates => return Err(key_not_found(&ns, &key)),
                None => create_ds(&tx, enforce, &user, &ns, &key, value?, encrypt)?,
                Some(e) => {
                    let value = value?;
                    let a = access(&e, &user, is_superuser(&tx, &user)?);
                    if (enforce && !a.read) || !a.write {
                        return Err(access_denied(&ns, &key));
                    }
                    update_value(&tx, &e.uid, &value, &user.uid)?;
                    WebMessage::ok(StatusCode::OK, format!("Key updated: '{key}'")).into_response()
                }
            };
            tx.commit()?;
            Ok(response)
        })
        .await?)
}

async fn ds_delete(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((ns, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let enforce = state.version().enforces_datastore_read_sharing();
    state
        .db()
        .call(move |conn| {
            let e = readable_entry(conn, enforce, &user, &ns, &key)?;
            if !access(&e, &user, is_superuser(conn, &user)?).write {
                return Err(access_denied(&ns, &key));
            }
            delete_entry(conn, &e.uid)?;
            Ok(WebMessage::ok(StatusCode::OK, format!("Key '{key}' deleted from namespace '{ns}'")).into_response())
        })
        .await
}

// ----------------------------------------------------------------------------------------------
// /api/userDataStore
// ----------------------------------------------------------------------------------------------

/// The user whose store is addressed: the caller, or with `?username=` (superusers only) another.
fn store_user(conn: &Connection, caller: &User, params: &Params) -> Result<User, ApiError> {
    let Some(username) = params.get("username").filter(|u| !u.trim().is_empty()) else {
        return Ok(caller.clone());
    };
    if !is_superuser(conn, caller)? {
        return Err(ApiError::Conflict(
            "Only superusers can read or write other users data using the `username` parameter.".into(),
        ));
    }
    db::user_by_username(conn, username)?
        .ok_or_else(|| ApiError::Conflict(format!("No user with username {username} exists.")))
}

/// Runs `work` on the userDataStore the request addresses (see [`store_user`]): `work` gets
/// the owner of that store.
async fn in_user_store<T, F>(state: &AppState, caller: User, params: Params, work: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Connection, &User) -> Result<T, ApiError> + Send + 'static,
{
    state
        .db()
        .call(move |conn| {
            let owner = store_user(conn, &caller, &params)?;
            work(conn, &owner)
        })
        .await
}

/// The entry `ns`/`key` of `owner`'s userDataStore, else 404.
fn user_entry(conn: &Connection, owner: &User, ns: &str, key: &str) -> Result<Entry, ApiError> {
    entry(conn, &owner.uid, ns, key)?.ok_or_else(|| key_not_found(ns, key))
}

async fn uds_namespaces(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    params: Params,
) -> Result<Response, ApiError> {
    let list = in_user_store(&state, user, params, |conn, owner| Ok(namespaces(conn, &owner.uid)?)).await?;
    Ok(list_json(&list))
}

async fn uds_keys(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(ns): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let list = in_user_store(&state, user, params, move |conn, owner| {
        let list = keys(conn, &owner.uid, &ns, None)?;
        if list.is_empty() {
            return Err(namespace_not_found(&ns));
        }
        Ok(list)
    })
    .await?;
    Ok(list_json(&list))
}

async fn uds_delete_namespace(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(ns): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    in_user_store(&state, user, params, move |conn, owner| {
        if !namespace_used(conn, &owner.uid, &ns)? {
            return Err(namespace_not_found(&ns));
        }
        delete_namespace(conn, &owner.uid, &ns)?;
        Ok(WebMessage::ok(StatusCode::OK, format!("Namespace deleted: '{ns}'")).into_response())
    })
    .await
}

async fn uds_get(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((ns, key)): Path<(String, String)>,
    params: Params,
) -> Result<Response, ApiError> {
    let e = in_user_store(&state, user, params, move |conn, owner| user_entry(conn, owner, &ns, &key)).await?;
    Ok(raw_json(e.value))
}

async fn uds_post(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((ns, key)): Path<(String, String)>,
    params: Params,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Failure> {
    let value = json_value(&headers, body, &key).await?;
    let encrypt = flag(&params, "encrypt");
    let caller_uid = user.uid.clone();
    Ok(in_user_store(&state, user, params, move |conn, owner| {
        if entry(conn, &owner.uid, &ns, &key)?.is_some() {
            return Err(ApiError::Conflict(format!("Key '{key}' already exists in namespace '{ns}'")));
        }
        let mut e = new_entry(&owner.uid, &ns, &key, value, encrypt, owner);
        e.last_updated_by = Some(caller_uid);
        insert(conn, &e)?;
        Ok(created(format!("Key '{key}' in namespace '{ns}' created.")))
    })
    .await?)
}

async fn uds_put(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((ns, key)): Path<(String, String)>,
    params: Params,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Failure> {
    let value = json_value(&headers, body, &key).await?;
    let caller_uid = user.uid.clone();
    Ok(in_user_store(&state, user, params, move |conn, owner| {
        let e = user_entry(conn, owner, &ns, &key)?;
        update_value(conn, &e.uid, &value, &caller_uid)?;
        Ok(WebMessage::ok(StatusCode::OK, format!("Key updated: '{key}'")).into_response())
    })
    .await?)
}

async fn uds_delete(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((ns, key)): Path<(String, String)>,
    params: Params,
) -> Result<Response, ApiError> {
    in_user_store(&state, user, params, move |conn, owner| {
        let e = user_entry(conn, owner, &ns, &key)?;
        delete_entry(conn, &e.uid)?;
        Ok(WebMessage::ok(StatusCode::OK, format!("Key '{key}' deleted from the namespace '{ns}'.")).into_response())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(uid: &str) -> User {
        User {
            uid: uid.into(),
            username: uid.to_lowercase(),
            password_hash: String::new(),
            first_name: "A".into(),
            surname: "B".into(),
            display_name: "A B".into(),
            superuser: false,
            disabled: false,
            created: String::new(),
            last_updated: String::new(),
        }
    }

    #[test]
    fn access_follows_owner_public_and_user_sharing() {
        let owner = user("Owner000001");
        let other = user("Other000001");
        let mut e = new_entry("", "ns", "k", "1".into(), false, &owner);
        assert_eq!(access(&e, &other, false), Access { read: true, write: true });
        e.public_access = "--------".into();
        assert_eq!(access(&e, &other, false), Access { read: false, write: false });
        assert_eq!(access(&e, &owner, false), Access { read: true, write: true });
        assert_eq!(access(&e, &other, true), Access { read: true, write: true });
        e.user_accesses = vec![UserAccess { id: other.uid.clone(), access: "r-------".into() }];
        assert_eq!(access(&e, &other, false), Access { read: true, write: false });
        e.public_access = "r-------".into();
        e.user_accesses.clear();
        assert_eq!(access(&e, &other, false), Access { read: true, write: false });
    }

    #[test]
    fn table_round_trip() {
        let conn = Connection::open_in_memory().expect("open");
        create_tables(&conn).expect("schema");
        create_tables(&conn).expect("idempotent");
        let e = new_entry("", "ns", "k", r#"{"a":1}"#.into(), true, &user("Owner000001"));
        insert(&conn, &e).expect("insert");
        assert_eq!(entry(&conn, "", "ns", "k").expect("get"), Some(e.clone()));
        assert_eq!(entry_by_uid(&conn, &e.uid).expect("by uid"), Some(e.clone()));
        assert!(insert(&conn, &e).is_err());
        set_sharing(&conn, &e.uid, "--------", &[UserAccess { id: "X".into(), access: "rw------".into() }])
            .expect("share");
        let shared = entry(&conn, "", "ns", "k").expect("get").expect("some");
        assert_eq!(shared.public_access, "--------");
        assert_eq!(shared.user_accesses.len(), 1);
        assert_eq!(namespaces(&conn, "").expect("ns"), vec!["ns".to_owned()]);
        assert!(namespaces(&conn, "Owner000001").expect("ns").is_empty());
    }
}
