//! Queries of the legacy API: the `query.json` grid and its count, and the lists of tracked
//! entities, enrollments and events, with org unit modes, attribute filters, ordering and
//! DHIS2's pager shapes. Here the parts they share (the SQL they build, parameters, paging,
//! the tracked entity query and read checks); the endpoints' answers in [`answers`].

use std::collections::HashMap;

use rusqlite::{params_from_iter, types::Value as SqlValue, Connection};
use serde_json::{json, Map, Value};

use super::{
    dates,
    scope::{path_within, UserScope},
    store::{self, RenderCtx},
};
use crate::{api::Params, db::OrgUnit, error::ApiError, model::Metadata};

mod answers;

pub use answers::{count, enrollment_list, event_list, grid, te_list, within_any};

/// Org unit selection mode (`ouMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OuMode {
    /// Exactly the given org units.
    Selected,
    /// The given org units and their children.
    Children,
    /// The given org units and everything below.
    Descendants,
    /// The user's search org units and below.
    Accessible,
    /// The user's capture org units and below.
    Capture,
    /// Everything.
    All,
}

impl OuMode {
    /// Parses `ouMode`; `None` when absent.
    pub fn parse(raw: Option<&str>) -> Result<Option<Self>, ApiError> {
        let Some(raw) = raw.map(str::trim).filter(|s| !s.is_empty()) else { return Ok(None) };
        Ok(Some(match raw.to_ascii_uppercase().as_str() {
            "SELECTED" => OuMode::Selected,
            "CHILDREN" => OuMode::Children,
            "DESCENDANTS" => OuMode::Descendants,
            "ACCESSIBLE" => OuMode::Accessible,
            "CAPTURE" => OuMode::Capture,
            "ALL" => OuMode::All,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "Value '{raw}' is not valid for parameter ouMode. Valid values are: \
                     [SELECTED, CHILDREN, DESCENDANTS, ACCESSIBLE, CAPTURE, ALL]"
                )))
            }
        }))
    }
}

/// A `WHERE` clause under construction with its arguments.
#[derive(Debug, Default)]
struct Sql {
    clauses: Vec<String>,
    args: Vec<SqlValue>,
}

impl Sql {
    fn push(&mut self, clause: impl Into<String>, args: impl IntoIterator<Item = SqlValue>) {
        self.clauses.push(clause.into());
        self.args.extend(args);
    }

    fn where_sql(&self) -> String {
        if self.clauses.is_empty() {
            "1".into()
        } else {
            self.clauses.join(" AND ")
        }
    }
}

fn text(s: &str) -> SqlValue {
    SqlValue::Text(s.to_owned())
}

/// Adds the org unit restriction on `{alias}.org_unit` / `{alias}.ou_path`.
#[allow(clippy::too_many_arguments)]
fn ou_clause(
    sql: &mut Sql,
    alias: &str,
    mode: OuMode,
    selected: &[String],
    user: &UserScope,
    ous: &HashMap<String, OrgUnit>,
    check_scope: bool,
) -> Result<(), ApiError> {
    let mut roots: Vec<&OrgUnit> = Vec::new();
    for uid in selected {
        let ou = ous.get(uid).ok_or_else(|| ApiError::Conflict(format!("Organisation unit does not exist: {uid}")))?;
        if check_scope && !user.can_search(&ou.path) {
            return Err(ApiError::Conflict(format!("Organisation unit is not part of the search scope: {uid}")));
        }
        roots.push(ou);
    }
    let descendants = |sql: &mut Sql, paths: Vec<String>| {
        if paths.is_empty() {
            sql.push("0", []);
            return;
        }
        let parts: Vec<String> =
            paths.iter().map(|_| format!("({alias}.ou_path = ? OR {alias}.ou_path LIKE ? ESCAPE '\\')")).collect();
        let args: Vec<SqlValue> = paths.iter().flat_map(|p| [text(p), text(&format!("{p}/%"))]).collect();
        sql.push(format!("({})", parts.join(" OR ")), args);
    };
    match mode {
        OuMode::All => {
            if !user.superuser {
                return Err(ApiError::Conflict(
                    "Current user is not authorized to query across all organisation units".into(),
                ));
            }
        }
        OuMode::Accessible if user.superuser => {}
        OuMode::Accessible => descendants(sql, user.search.clone()),
        OuMode::Capture if user.superuser => {}
        OuMode::Capture => descendants(sql, user.capture.clone()),
        OuMode::Descendants => descendants(sql, roots.iter().map(|o| o.path.clone()).collect()),
        OuMode::Selected | OuMode::Children => {
            let mut uids: Vec<String> = roots.iter().map(|o| o.uid.clone()).collect();
            if mode == OuMode::Children {
                uids.extend(
                    ous.values()
                        .filter(|o| roots.iter().any(|r| o.parent.as_deref() == Some(&r.uid)))
                        .map(|o| o.uid.clone()),
                );
            }
            if uids.is_empty() {
                sql.push("0", []);
            } else {
                let marks = vec!["?"; uids.len()].join(",");
                sql.push(format!("{alias}.org_unit IN ({marks})"), uids.iter().map(|u| text(u)));
            }
        }
    }
    Ok(())
}

/// `ou=A;B` (also repeated) as a list of UIDs.
fn uid_list(params: &Params, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .flat_map(|n| params.all(n))
        .flat_map(|v| v.split([';', ',']))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn int_param(params: &Params, name: &str, default: i64) -> Result<i64, ApiError> {
    match params.get(name).map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(default),
        Some(raw) => raw.parse::<i64>().map_err(|_| {
            ApiError::BadRequest(format!(
                "Value '{raw}' is not valid for parameter {name}. It should be of type Integer"
            ))
        }),
    }
}

fn bool_param(params: &Params, name: &str) -> bool {
    params.get(name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Paging of a list request.
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    /// Page, from 1.
    pub page: i64,
    /// Page size.
    pub page_size: i64,
    /// `false` with `skipPaging=true` or `paging=false`.
    pub paging: bool,
    /// `totalPages=true`.
    pub total_pages: bool,
}

impl Paging {
    /// Reads `page`, `pageSize`, `totalPages`, `skipPaging` and `paging`.
    pub fn from_params(params: &Params) -> Result<Self, ApiError> {
        let skip =
            bool_param(params, "skipPaging") || params.get("paging").is_some_and(|v| v.eq_ignore_ascii_case("false"));
        Ok(Self {
            page: int_param(params, "page", 1)?.max(1),
            page_size: int_param(params, "pageSize", 50)?.max(1),
            paging: !skip,
            total_pages: bool_param(params, "totalPages"),
        })
    }

    fn limit_offset(&self, extra: i64) -> String {
        if self.paging {
            format!(" LIMIT {} OFFSET {}", self.page_size + extra, (self.page - 1).saturating_mul(self.page_size))
        } else {
            String::new()
        }
    }
}

/// DHIS2's `Pager` (page clamped to the page count, at least 1).
pub fn pager_json(page: i64, total: i64, page_size: i64) -> Value {
    let page_size = page_size.max(1);
    let page_count = (total + page_size - 1) / page_size;
    let page = page.min(page_count).max(1);
    json!({"page": page, "pageCount": page_count, "total": total, "pageSize": page_size})
}

/// One attribute condition of `attribute=` / `filter=`.
#[derive(Debug, Clone)]
struct AttrFilter {
    attribute: String,
    conditions: Vec<(String, String)>,
}

fn parse_attr_items(params: &Params, name: &str, md: &Metadata) -> Result<Vec<AttrFilter>, ApiError> {
    let mut out = Vec::new();
    for raw in params.all(name) {
        let mut parts = raw.split(':');
        let attribute = parts.next().unwrap_or_default().trim().to_owned();
        if md.attribute(&attribute).is_none() {
            return Err(ApiError::Conflict(format!("Attribute does not exist: {attribute}")));
        }
        let rest: Vec<&str> = parts.collect();
        let mut conditions = Vec::new();
        let mut i = 0;
        while i < rest.len() {
            let op = rest[i].trim().to_ascii_uppercase();
            let is_unary = matches!(op.as_str(), "NULL" | "!NULL");
            let value =
                if is_unary { String::new() } else { rest.get(i + 1).map(|v| (*v).to_owned()).unwrap_or_default() };
            if !matches!(
                op.as_str(),
                "EQ" | "NE"
                    | "NEQ"
                    | "LIKE"
                    | "SW"
                    | "EW"
                    | "IN"
                    | "GT"
                    | "GE"
                    | "LT"
                    | "LE"
                    | "NULL"
                    | "!NULL"
                    | "ILIKE"
            ) {
                return Err(ApiError::Conflict(format!("Query item or filter is invalid: {raw}")));
            }
            conditions.push((op, value));
            i += if is_unary { 1 } else { 2 };
        }
        out.push(AttrFilter { attribute, conditions });
    }
    Ok(out)
}

fn attr_clause(sql: &mut Sql, md: &Metadata, f: &AttrFilter) {
    let numeric = md.attribute(&f.attribute).is_some_and(|a| {
        matches!(
            a.value_type.as_str(),
            "NUMBER" | "INTEGER" | "INTEGER_POSITIVE" | "INTEGER_NEGATIVE" | "INTEGER_ZERO_OR_POSITIVE"
        )
    });
    for (op, value) in &f.conditions {
        let exists = "EXISTS (SELECT 1 FROM attribute_values a WHERE a.te_id = t.id AND a.attribute = ?";
        let like_escape = |v: &str| v.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        let cmp = |sym: &str| {
            if numeric {
                format!("{exists} AND CAST(a.value AS REAL) {sym} CAST(? AS REAL))")
            } else {
                format!("{exists} AND lower(a.value) {sym} lower(?))")
            }
        };
        let attr = text(&f.attribute);
        match op.as_str() {
            // Through the (attribute, value NOCASE) index: an exact lookup, not a scan.
            "EQ" => sql.push(
                "t.id IN (SELECT a.te_id FROM attribute_values a WHERE a.attribute = ? AND a.value = ? COLLATE NOCASE)",
                [attr, text(value)],
            ),
            "NE" | "NEQ" => sql.push(
                "NOT EXISTS (SELECT 1 FROM attribute_values a WHERE a.te_id = t.id AND a.attribute = ? AND a.value = ? COLLATE NOCASE)",
                [attr, text(value)],
            ),
            "LIKE" | "ILIKE" => sql.push(
                format!("{exists} AND a.value LIKE ? ESCAPE '\\')"),
                [attr, text(&format!("%{}%", like_escape(value)))],
            ),
            "SW" => sql.push(format!("{exists} AND a.value LIKE ? ESCAPE '\\')"), [attr, text(&format!("{}%", like_escape(value)))]),
            "EW" => sql.push(format!("{exists} AND a.value LIKE ? ESCAPE '\\')"), [attr, text(&format!("%{}", like_escape(value)))]),
            "IN" => {
                let vals: Vec<&str> = value.split(';').collect();
                let marks = vec!["?"; vals.len()].join(",");
                let mut args = vec![attr];
                args.extend(vals.iter().map(|v| text(&v.to_lowercase())));
                sql.push(format!("{exists} AND lower(a.value) IN ({marks}))"), args);
            }
            "GT" => sql.push(cmp(">"), [attr, text(value)]),
            "GE" => sql.push(cmp(">="), [attr, text(value)]),
            "LT" => sql.push(cmp("<"), [attr, text(value)]),
            "LE" => sql.push(cmp("<="), [attr, text(value)]),
            "NULL" => sql.push(
                "NOT EXISTS (SELECT 1 FROM attribute_values a WHERE a.te_id = t.id AND a.attribute = ?)",
                [attr],
            ),
            _ => sql.push(format!("{exists})"), [attr]),
        }
    }
}

fn date_param(params: &Params, name: &str) -> Result<Option<String>, ApiError> {
    match params.get(name).map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(raw) => dates::normalise(raw).map(Some).ok_or_else(|| {
            ApiError::BadRequest(format!("Value '{raw}' is not valid for parameter {name}. It should be a date"))
        }),
    }
}

/// Everything a tracked entity query resolved to.
struct TeQuery {
    sql: Sql,
    order: String,
    order_args: Vec<SqlValue>,
    columns: Vec<String>,
    program: Option<String>,
}

fn te_query(
    params: &Params,
    md: &Metadata,
    user: &UserScope,
    ous: &HashMap<String, OrgUnit>,
    grid: bool,
) -> Result<TeQuery, ApiError> {
    let mut sql = Sql::default();
    sql.push("t.deleted = 0", []);
    let program = match params.get("program").map(str::trim).filter(|s| !s.is_empty()) {
        Some(p) => Some(md.program(p).ok_or_else(|| ApiError::Conflict(format!("Program does not exist: {p}")))?),
        None => None,
    };
    let tet = params.get("trackedEntityType").map(str::trim).filter(|s| !s.is_empty());
    if let Some(t) = tet {
        if md.tracked_entity_type(t).is_none() {
            return Err(ApiError::Conflict(format!("Tracked entity type does not exist: {t}")));
        }
        sql.push("t.tracked_entity_type = ?", [text(t)]);
    }
    let te_uids = uid_list(params, &["trackedEntityInstance"]);
    if program.is_none() && tet.is_none() && te_uids.is_empty() {
        return Err(ApiError::Conflict("Either Program or Tracked entity type should be specified".into()));
    }
    if !te_uids.is_empty() {
        let marks = vec!["?"; te_uids.len()].join(",");
        sql.push(format!("t.uid IN ({marks})"), te_uids.iter().map(|u| text(u)));
    }
    let selected = uid_list(params, &["ou", "orgUnit"]);
    let mode = OuMode::parse(params.get("ouMode"))?.unwrap_or(if selected.is_empty() {
        OuMode::Accessible
    } else {
        OuMode::Selected
    });
    if selected.is_empty()
        && matches!(mode, OuMode::Selected | OuMode::Children | OuMode::Descendants)
        && te_uids.is_empty()
    {
        return Err(ApiError::Conflict("At least one organisation unit must be specified".into()));
    }
    if selected.is_empty() && matches!(mode, OuMode::Selected | OuMode::Children | OuMode::Descendants) {
        // Only explicit TEI uids: limit to what the user may search.
        ou_clause(&mut sql, "t", OuMode::Accessible, &[], user, ous, true)?;
    } else {
        ou_clause(&mut sql, "t", mode, &selected, user, ous, true)?;
    }
    if let Some(p) = program {
        let mut clause =
            "EXISTS (SELECT 1 FROM enrollments e WHERE e.te_id = t.id AND e.program = ? AND e.deleted = 0".to_owned();
        let mut args = vec![text(&p.uid)];
        if let Some(status) = params.get("programStatus").map(str::trim).filter(|s| !s.is_empty()) {
            clause.push_str(" AND e.status = ?");
            args.push(text(&status.to_ascii_uppercase()));
        }
        if let Some(f) = params.get("followUp").map(str::trim).filter(|s| !s.is_empty()) {
            clause.push_str(" AND e.followup = ?");
            args.push(SqlValue::Integer(i64::from(f.eq_ignore_ascii_case("true"))));
        }
        for (name, op) in [("programStartDate", ">="), ("programEnrollmentStartDate", ">=")] {
            if let Some(d) = date_param(params, name)? {
                clause.push_str(&format!(" AND e.enrollment_date {op} ?"));
                args.push(text(&d));
            }
        }
        for name in ["programEndDate", "programEnrollmentEndDate"] {
            if let Some(d) = date_param(params, name)? {
                clause.push_str(" AND substr(e.enrollment_date, 1, 10) <= substr(?, 1, 10)");
                args.push(text(&d));
            }
        }
        clause.push(')');
        sql.push(clause, args);
    }
    if let Some(d) = date_param(params, "lastUpdatedStartDate")? {
        sql.push("t.last_updated >= ?", [text(&d)]);
    }
    if let Some(d) = date_param(params, "lastUpdatedEndDate")? {
        sql.push("substr(t.last_updated, 1, 10) <= substr(?, 1, 10)", [text(&d)]);
    }
    let attributes = parse_attr_items(params, "attribute", md)?;
    let filters = parse_attr_items(params, "filter", md)?;
    for f in attributes.iter().chain(filters.iter()) {
        attr_clause(&mut sql, md, f);
    }
    // Grid columns: the program's (or type's) list attributes, then any other `attribute=`.
    let mut columns: Vec<String> = match (program, tet) {
        (Some(p), _) => {
            let mut pa: Vec<_> = p.attributes.iter().filter(|a| a.display_in_list).collect();
            pa.sort_by_key(|a| a.sort_order);
            pa.into_iter().map(|a| a.attribute.clone()).collect()
        }
        (None, Some(t)) => md
            .tracked_entity_type(t)
            .map(|t| t.attributes.iter().filter(|a| a.display_in_list).map(|a| a.attribute.clone()).collect())
            .unwrap_or_default(),
        (None, None) => Vec::new(),
    };
    if grid {
        for a in &attributes {
            if !columns.contains(&a.attribute) {
                columns.push(a.attribute.clone());
            }
        }
    }
    // Order.
    let mut order_parts = Vec::new();
    let mut order_args = Vec::new();
    for raw in params.all("order").flat_map(|o| o.split(',')) {
        let mut it = raw.split(':');
        let col = it.next().unwrap_or_default().trim();
        let dir = if it.next().is_some_and(|d| d.trim().eq_ignore_ascii_case("desc")) { "DESC" } else { "ASC" };
        let expr = match col {
            "created" | "createdAt" => "t.created".to_owned(),
            "lastupdated" | "lastUpdated" | "updatedAt" => "t.last_updated".to_owned(),
            "inactive" => "t.inactive".to_owned(),
            "ou" | "orgUnit" => "t.org_unit".to_owned(),
            "ouname" | "orgUnitName" => "(SELECT name FROM organisation_units o WHERE o.uid = t.org_unit)".to_owned(),
            "instance" | "trackedEntityInstance" | "trackedEntity" => "t.uid".to_owned(),
            "enrollmentDate" | "enrolledAt" if program.is_some() => {
                order_args.push(text(&program.map(|p| p.uid.clone()).unwrap_or_default()));
                "(SELECT MAX(e.enrollment_date) FROM enrollments e WHERE e.te_id = t.id AND e.program = ? AND e.deleted = 0)".to_owned()
            }
            a if md.attribute(a).is_some() => {
                order_args.push(text(a));
                "(SELECT a.value FROM attribute_values a WHERE a.te_id = t.id AND a.attribute = ?) COLLATE NOCASE"
                    .to_owned()
            }
            "" => continue,
            other => return Err(ApiError::Conflict(format!("Invalid order property: {other}"))),
        };
        order_parts.push(format!("{expr} {dir}"));
    }
    order_parts.push("t.id ASC".into());
    Ok(TeQuery { sql, order: order_parts.join(", "), order_args, columns, program: program.map(|p| p.uid.clone()) })
}

fn te_ids(conn: &Connection, q: &TeQuery, paging: &Paging) -> Result<Vec<i64>, ApiError> {
    let sql = format!(
        "SELECT t.id FROM tracked_entities t WHERE {} ORDER BY {}{}",
        q.sql.where_sql(),
        q.order,
        paging.limit_offset(0)
    );
    let mut stmt = conn.prepare(&sql)?;
    let args = q.sql.args.iter().chain(q.order_args.iter());
    let ids = stmt.query_map(params_from_iter(args), |r| r.get(0))?.collect::<rusqlite::Result<Vec<i64>>>()?;
    Ok(ids)
}

fn te_count(conn: &Connection, q: &TeQuery) -> Result<i64, ApiError> {
    let sql = format!("SELECT COUNT(*) FROM tracked_entities t WHERE {}", q.sql.where_sql());
    Ok(conn.query_row(&sql, params_from_iter(q.sql.args.iter()), |r| r.get(0))?)
}

/// Whether the user owns the tracked entity for a protected program (superusers always).
fn owns(
    conn: &Connection,
    md: &Metadata,
    user: &UserScope,
    ous: &HashMap<String, OrgUnit>,
    te: &store::TeRow,
    program: &str,
) -> Result<bool, ApiError> {
    if user.superuser || md.program(program).is_some_and(|p| matches!(p.access_level.as_str(), "OPEN" | "AUDITED")) {
        return Ok(true);
    }
    let owner = owner_org_unit(conn, te, program)?;
    Ok(ous.get(&owner).is_some_and(|o| user.can_capture(&o.path)))
}

/// The owner org unit of a tracked entity for a program (its own org unit when unset).
pub fn owner_org_unit(conn: &Connection, te: &store::TeRow, program: &str) -> Result<String, ApiError> {
    use rusqlite::OptionalExtension;
    let owner: Option<String> = conn
        .prepare_cached("SELECT org_unit FROM program_owners WHERE te_id = ?1 AND program = ?2")?
        .query_row(rusqlite::params![te.id, program], |r| r.get(0))
        .optional()?;
    Ok(owner.unwrap_or_else(|| te.org_unit.clone()))
}

/// Why a user may not read one tracked entity (`GET …/{uid}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TeReadDenied {
    /// Its org unit is outside the user's search scope (legacy: 409 with this message).
    OutsideSearchScope(String),
    /// The program's ownership forbids it: `OWNERSHIP_ACCESS_DENIED` or `PROGRAM_ACCESS_CLOSED`.
    Ownership(&'static str),
}

/// Checks that the user may read `te` (with `program`, if given), as the legacy
/// `GET /api/trackedEntityInstances/{uid}` and the new `GET /api/tracker/trackedEntities/{uid}` do.
pub fn check_te_read(
    conn: &Connection,
    md: &Metadata,
    user: &UserScope,
    ous: &HashMap<String, OrgUnit>,
    te: &store::TeRow,
    program: Option<&crate::model::Program>,
) -> Result<Result<(), TeReadDenied>, ApiError> {
    if !user.can_search(&te.ou_path) {
        return Ok(Err(TeReadDenied::OutsideSearchScope(format!(
            "[User has no read access to organisation unit: {}]",
            te.org_unit
        ))));
    }
    let _ = md;
    if let Some(prog) = program {
        let owner = owner_org_unit(conn, te, &prog.uid)?;
        let owner_ok = user.superuser
            || matches!(prog.access_level.as_str(), "OPEN" | "AUDITED")
                && ous.get(&owner).is_some_and(|o| user.can_search(&o.path))
            || ous.get(&owner).is_some_and(|o| user.can_capture(&o.path));
        if !owner_ok {
            return Ok(Err(TeReadDenied::Ownership(if prog.access_level == "CLOSED" {
                "PROGRAM_ACCESS_CLOSED"
            } else {
                "OWNERSHIP_ACCESS_DENIED"
            })));
        }
    }
    Ok(Ok(()))
}
