//! Queries of the legacy API: the `query.json` grid and its count, and the lists of tracked
//! entities, enrollments and events, with org unit modes, attribute filters, ordering and
//! DHIS2's pager shapes.

use std::collections::HashMap;

use rusqlite::{params_from_iter, types::Value as SqlValue, Connection};
use serde_json::{json, Map, Value};

use super::{
    dates,
    scope::{path_within, UserScope},
    store::{self, RenderCtx},
};
use crate::{api::Params, db::OrgUnit, error::ApiError, model::Metadata};

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

/// `GET /api/trackedEntityInstances/query.json`: the grid.
pub fn grid(
    conn: &Connection,
    md: &Metadata,
    user: &UserScope,
    ous: &HashMap<String, OrgUnit>,
    params: &Params,
) -> Result<Value, ApiError> {
    let q = te_query(params, md, user, ous, true)?;
    let paging = Paging::from_params(params)?;
    let ids = te_ids(conn, &q, &paging)?;
    let rows_te = store::tes_by_ids(conn, &ids)?;
    let header = |name: &str, column: &str| json!({"name": name, "column": column, "type": "java.lang.String", "hidden": false, "meta": false});
    let mut headers = vec![
        header("instance", "Instance"),
        header("created", "Created"),
        header("lastupdated", "Last updated"),
        header("ou", "Organisation unit"),
        header("ouname", "Organisation unit name"),
        header("te", "Tracked entity type"),
        header("inactive", "Inactive"),
        header("potentialduplicate", "Potential duplicate"),
    ];
    for c in &q.columns {
        headers.push(header(c, md.attribute(c).map_or(c.as_str(), |a| a.name.as_str())));
    }
    let mut rows = Vec::with_capacity(rows_te.len());
    let mut types: Vec<String> = Vec::new();
    for te in &rows_te {
        if let Some(p) = &q.program {
            if !owns(conn, md, user, ous, te, p)? {
                continue;
            }
        }
        let values: HashMap<String, String> =
            store::attribute_values(conn, te.id)?.into_iter().map(|(a, v, ..)| (a, v)).collect();
        let mut row = vec![
            json!(te.uid),
            json!(dates::grid_format(&te.created)),
            json!(dates::grid_format(&te.last_updated)),
            json!(te.org_unit),
            json!(ous.get(&te.org_unit).map_or("", |o| o.name.as_str())),
            json!(te.tracked_entity_type),
            json!(te.inactive.to_string()),
            json!(te.potential_duplicate.to_string()),
        ];
        for c in &q.columns {
            row.push(values.get(c).map_or(Value::Null, |v| json!(v)));
        }
        if !types.contains(&te.tracked_entity_type) {
            types.push(te.tracked_entity_type.clone());
        }
        rows.push(Value::Array(row));
    }
    let mut meta = Map::new();
    if paging.paging {
        let total = if paging.total_pages { te_count(conn, &q)? } else { 0 };
        meta.insert("pager".into(), pager_json(paging.page, total, paging.page_size));
    }
    if !bool_param(params, "skipMeta") {
        let names: Map<String, Value> =
            types.iter().map(|t| (t.clone(), json!(md.tracked_entity_type(t).map(|x| x.name.clone())))).collect();
        meta.insert("names".into(), Value::Object(names));
    }
    let width = headers.len();
    Ok(json!({
        "headers": headers,
        "metaData": meta,
        "rowContext": {},
        "width": width,
        "height": rows.len(),
        "headerWidth": width,
        "rows": rows,
    }))
}

/// `GET /api/trackedEntityInstances/count.json`: the number of matches.
pub fn count(
    conn: &Connection,
    md: &Metadata,
    user: &UserScope,
    ous: &HashMap<String, OrgUnit>,
    params: &Params,
) -> Result<i64, ApiError> {
    let q = te_query(params, md, user, ous, false)?;
    te_count(conn, &q)
}

/// `GET /api/trackedEntityInstances`: `{"pager"?, "trackedEntityInstances":[…]}`.
pub fn te_list(
    conn: &Connection,
    rc: &RenderCtx<'_>,
    user: &UserScope,
    params: &Params,
    children: bool,
) -> Result<Value, ApiError> {
    let q = te_query(params, rc.md, user, rc.ous, false)?;
    let paging = Paging::from_params(params)?;
    let ids = te_ids(conn, &q, &paging)?;
    let mut items = Vec::with_capacity(ids.len());
    for te in store::tes_by_ids(conn, &ids)? {
        if let Some(p) = &q.program {
            if !owns(conn, rc.md, user, rc.ous, &te, p)? {
                continue;
            }
        }
        items.push(store::te_json(conn, rc, &te, q.program.as_deref(), children)?);
    }
    let mut out = Map::new();
    if paging.paging && paging.total_pages {
        out.insert("pager".into(), pager_json(paging.page, te_count(conn, &q)?, paging.page_size));
    }
    out.insert("trackedEntityInstances".into(), Value::Array(items));
    Ok(Value::Object(out))
}

fn slim_or_full_pager(
    out: &mut Map<String, Value>,
    paging: &Paging,
    fetched: usize,
    count: impl FnOnce() -> Result<i64, ApiError>,
) -> Result<(), ApiError> {
    if !paging.paging {
        return Ok(());
    }
    if paging.total_pages {
        out.insert("pager".into(), pager_json(paging.page, count()?, paging.page_size));
    } else {
        let last = i64::try_from(fetched).unwrap_or(i64::MAX) <= paging.page_size;
        out.insert("pager".into(), json!({"page": paging.page, "pageSize": paging.page_size, "isLastPage": last}));
    }
    Ok(())
}

/// `GET /api/events`: `{"pager"?, "events":[…]}` (the caller applies `fields`).
pub fn event_list(conn: &Connection, rc: &RenderCtx<'_>, user: &UserScope, params: &Params) -> Result<Value, ApiError> {
    let mut sql = Sql::default();
    if !bool_param(params, "includeDeleted") {
        sql.push("v.deleted = 0", []);
    }
    if let Some(p) = params.get("program").map(str::trim).filter(|s| !s.is_empty()) {
        if rc.md.program(p).is_none() {
            return Err(ApiError::Conflict(format!("Program is specified but does not exist: {p}")));
        }
        sql.push("v.program = ?", [text(p)]);
    }
    if let Some(s) = params.get("programStage").map(str::trim).filter(|s| !s.is_empty()) {
        if rc.md.stage(s).is_none() {
            return Err(ApiError::Conflict(format!("Program stage is specified but does not exist: {s}")));
        }
        sql.push("v.program_stage = ?", [text(s)]);
    }
    let te_uid = params.get("trackedEntityInstance").map(str::trim).filter(|s| !s.is_empty());
    if let Some(t) = te_uid {
        match store::te_by_uid(conn, t)? {
            Some(te) => sql.push("v.te_id = ?", [SqlValue::Integer(te.id)]),
            None => {
                return Err(ApiError::Conflict(format!("Tracked entity instance is specified but does not exist: {t}")))
            }
        }
    }
    if let Some(e) = params.get("enrollment").map(str::trim).filter(|s| !s.is_empty()) {
        sql.push("e.uid = ?", [text(e)]);
    }
    let event_uids = uid_list(params, &["event"]);
    if !event_uids.is_empty() {
        let marks = vec!["?"; event_uids.len()].join(",");
        sql.push(format!("v.uid IN ({marks})"), event_uids.iter().map(|u| text(u)));
    }
    if let Some(s) = params.get("status").map(str::trim).filter(|s| !s.is_empty()) {
        sql.push("v.status = ?", [text(&s.to_ascii_uppercase())]);
    }
    if let Some(s) = params.get("programStatus").map(str::trim).filter(|s| !s.is_empty()) {
        sql.push("e.status = ?", [text(&s.to_ascii_uppercase())]);
    }
    if let Some(d) = date_param(params, "startDate")? {
        sql.push("v.event_date >= ?", [text(&d)]);
    }
    if let Some(d) = date_param(params, "endDate")? {
        sql.push("substr(v.event_date, 1, 10) <= substr(?, 1, 10)", [text(&d)]);
    }
    if let Some(d) = date_param(params, "lastUpdatedStartDate")? {
        sql.push("v.last_updated >= ?", [text(&d)]);
    }
    if let Some(d) = date_param(params, "lastUpdatedEndDate")? {
        sql.push("substr(v.last_updated, 1, 10) <= substr(?, 1, 10)", [text(&d)]);
    }
    let selected = uid_list(params, &["orgUnit"]);
    let mode = OuMode::parse(params.get("ouMode"))?.unwrap_or(if selected.is_empty() {
        OuMode::Accessible
    } else {
        OuMode::Selected
    });
    if selected.is_empty() && matches!(mode, OuMode::Selected | OuMode::Children | OuMode::Descendants) {
        if te_uid.is_none() && event_uids.is_empty() {
            return Err(ApiError::Conflict("Org unit is specified but does not exist: ".into()));
        }
        ou_clause(&mut sql, "v", OuMode::Accessible, &[], user, rc.ous, false)?;
    } else {
        ou_clause(&mut sql, "v", mode, &selected, user, rc.ous, true)?;
    }
    let mut order = Vec::new();
    for raw in params.all("order").flat_map(|o| o.split(',')) {
        let mut it = raw.split(':');
        let col = it.next().unwrap_or_default().trim();
        let dir = if it.next().is_some_and(|d| d.trim().eq_ignore_ascii_case("desc")) { "DESC" } else { "ASC" };
        let expr = match col {
            "eventDate" | "occurredAt" => "v.event_date",
            "dueDate" | "scheduledAt" => "v.due_date",
            "created" | "createdAt" => "v.created",
            "lastUpdated" | "updatedAt" => "v.last_updated",
            "status" => "v.status",
            "orgUnit" => "v.org_unit",
            "" => continue,
            other => return Err(ApiError::Conflict(format!("Invalid order property: {other}"))),
        };
        order.push(format!("{expr} {dir}"));
    }
    order.push("v.id ASC".into());
    let paging = Paging::from_params(params)?;
    let where_sql = format!("{} ORDER BY {}{}", sql.where_sql(), order.join(", "), paging.limit_offset(1));
    let args: Vec<&dyn rusqlite::ToSql> = sql.args.iter().map(|a| a as &dyn rusqlite::ToSql).collect();
    let mut rows = store::events_where(conn, &where_sql, &args)?;
    let fetched = rows.len();
    if paging.paging {
        rows.truncate(usize::try_from(paging.page_size).unwrap_or(usize::MAX));
    }
    let mut events = Vec::with_capacity(rows.len());
    for ev in &rows {
        events.push(store::event_json(conn, rc, ev)?);
    }
    let mut out = Map::new();
    slim_or_full_pager(&mut out, &paging, fetched, || {
        let count_sql = format!("SELECT COUNT(*) FROM {} WHERE {}", store::EV_FROM, sql.where_sql());
        Ok(conn.query_row(&count_sql, params_from_iter(sql.args.iter()), |r| r.get(0))?)
    })?;
    out.insert("events".into(), Value::Array(events));
    Ok(Value::Object(out))
}

/// `GET /api/enrollments`: `{"pager"?, "enrollments":[…]}`.
pub fn enrollment_list(
    conn: &Connection,
    rc: &RenderCtx<'_>,
    user: &UserScope,
    params: &Params,
) -> Result<Value, ApiError> {
    let mut sql = Sql::default();
    if !bool_param(params, "includeDeleted") {
        sql.push("e.deleted = 0", []);
    }
    if let Some(p) = params.get("program").map(str::trim).filter(|s| !s.is_empty()) {
        if rc.md.program(p).is_none() {
            return Err(ApiError::Conflict(format!("Program does not exist: {p}")));
        }
        sql.push("e.program = ?", [text(p)]);
    }
    if let Some(s) = params.get("programStatus").map(str::trim).filter(|s| !s.is_empty()) {
        sql.push("e.status = ?", [text(&s.to_ascii_uppercase())]);
    }
    let te_uid = params.get("trackedEntityInstance").map(str::trim).filter(|s| !s.is_empty());
    if let Some(t) = te_uid {
        sql.push("t.uid = ?", [text(t)]);
    }
    if let Some(d) = date_param(params, "lastUpdated")? {
        sql.push("e.last_updated >= ?", [text(&d)]);
    }
    if let Some(d) = date_param(params, "programStartDate")? {
        sql.push("e.enrollment_date >= ?", [text(&d)]);
    }
    if let Some(d) = date_param(params, "programEndDate")? {
        sql.push("substr(e.enrollment_date, 1, 10) <= substr(?, 1, 10)", [text(&d)]);
    }
    let selected = uid_list(params, &["ou", "orgUnit"]);
    let mode = OuMode::parse(params.get("ouMode"))?.unwrap_or(if selected.is_empty() {
        OuMode::Accessible
    } else {
        OuMode::Selected
    });
    // Enrollments carry no path; filter through the org unit table.
    let mut ou_sql = Sql::default();
    if selected.is_empty() && matches!(mode, OuMode::Selected | OuMode::Children | OuMode::Descendants) {
        if te_uid.is_none() {
            return Err(ApiError::Conflict("At least one organisation unit must be specified".into()));
        }
        ou_clause(&mut ou_sql, "o", OuMode::Accessible, &[], user, rc.ous, false)?;
    } else {
        ou_clause(&mut ou_sql, "o", mode, &selected, user, rc.ous, true)?;
    }
    if !ou_sql.clauses.is_empty() {
        let inner = ou_sql.where_sql().replace("o.ou_path", "o.path").replace("o.org_unit", "o.uid");
        sql.push(format!("e.org_unit IN (SELECT o.uid FROM organisation_units o WHERE {inner})"), ou_sql.args);
    }
    let paging = Paging::from_params(params)?;
    let where_sql = format!("{} ORDER BY e.id{}", sql.where_sql(), paging.limit_offset(1));
    let args: Vec<&dyn rusqlite::ToSql> = sql.args.iter().map(|a| a as &dyn rusqlite::ToSql).collect();
    let mut rows = store::enrollments_where(conn, &where_sql, &args)?;
    let fetched = rows.len();
    if paging.paging {
        rows.truncate(usize::try_from(paging.page_size).unwrap_or(usize::MAX));
    }
    let mut items = Vec::with_capacity(rows.len());
    for e in &rows {
        items.push(store::enrollment_json(conn, rc, e, false)?);
    }
    let mut out = Map::new();
    slim_or_full_pager(&mut out, &paging, fetched, || {
        let count_sql = format!("SELECT COUNT(*) FROM {} WHERE {}", store::EN_FROM, sql.where_sql());
        Ok(conn.query_row(&count_sql, params_from_iter(sql.args.iter()), |r| r.get(0))?)
    })?;
    out.insert("enrollments".into(), Value::Array(items));
    Ok(Value::Object(out))
}

/// Whether `path` is in one of `roots` (re-exported for handlers).
pub fn within_any(path: &str, roots: &[String]) -> bool {
    roots.iter().any(|r| path_within(path, r))
}
