//! The answers of the legacy query endpoints: the `query.json` grid and its count, the lists of
//! tracked entities, events and enrollments, over the query parts of the parent module.

use super::*;

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
