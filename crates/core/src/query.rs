//! Query semantics of the tracked-entity searches the app makes (`query.json`, the legacy TEI
//! list, `/api/tracker/trackedEntities`): org unit modes, program and status, attribute
//! filters, free text, ordering, paging and counts, evaluated on the [`ClinicIndex`].

use std::{borrow::Cow, cmp::Ordering};

use crate::{
    error::{CoreError, Result},
    index::{ClinicIndex, IndexRow},
    metadata::ClinicMetadata,
    params::Target,
    scope::UserScope,
};

/// How `ou` selects org units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OuMode {
    /// Exactly the given org units.
    Selected,
    /// The given org units and their direct children.
    Children,
    /// The given org units and everything below.
    Descendants,
    /// Everything below the user's org units (ACCESSIBLE, CAPTURE, SEARCH).
    Accessible,
    /// Every org unit.
    All,
}

impl OuMode {
    fn parse(value: &str) -> Result<Self> {
        Ok(match value.to_ascii_uppercase().as_str() {
            "SELECTED" => OuMode::Selected,
            "CHILDREN" => OuMode::Children,
            "DESCENDANTS" => OuMode::Descendants,
            "ACCESSIBLE" | "CAPTURE" | "SEARCH" => OuMode::Accessible,
            "ALL" => OuMode::All,
            other => return Err(CoreError::BadInput(format!("unknown ouMode {other}"))),
        })
    }
}

/// One attribute condition. The values of the case-insensitive ones are held lowercased (a
/// search compares them with every woman's value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Case-insensitive substring.
    Like(String),
    /// Case-insensitive equality.
    Eq(String),
    /// Case-insensitive membership.
    In(Vec<String>),
    /// Greater than.
    Gt(String),
    /// Greater or equal.
    Ge(String),
    /// Less than.
    Lt(String),
    /// Less or equal.
    Le(String),
    /// Not equal.
    Ne(String),
    /// Starts with (case-insensitive).
    Sw(String),
    /// Ends with (case-insensitive).
    Ew(String),
}

/// `attribute=A:OP:v[:OP:v]` or `filter=A:OP:v`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeFilter {
    /// Attribute UID.
    pub attribute: String,
    /// Conditions, all of which must hold (none = the attribute is only selected as a column).
    pub conditions: Vec<Condition>,
}

impl AttributeFilter {
    /// Parses `A`, `A:LIKE:v`, `A:GT:1:LT:5`, `A:IN:a;b`.
    pub fn parse(text: &str) -> Result<Self> {
        let mut parts = text.split(':');
        let attribute = parts.next().unwrap_or_default().to_string();
        if attribute.is_empty() {
            return Err(CoreError::BadInput(format!("empty attribute in filter {text:?}")));
        }
        let rest: Vec<&str> = parts.collect();
        if rest.len() % 2 != 0 {
            return Err(CoreError::BadInput(format!("filter {text:?} must be attribute:OPERATOR:value")));
        }
        let conditions = rest
            .chunks(2)
            .map(|pair| {
                let value = pair[1].to_string();
                let lower = pair[1].to_lowercase();
                Ok(match pair[0].to_ascii_uppercase().as_str() {
                    "LIKE" => Condition::Like(lower),
                    "EQ" => Condition::Eq(lower),
                    "IN" => Condition::In(lower.split(';').map(str::to_string).collect()),
                    "GT" => Condition::Gt(value),
                    "GE" => Condition::Ge(value),
                    "LT" => Condition::Lt(value),
                    "LE" => Condition::Le(value),
                    "NE" | "!EQ" => Condition::Ne(lower),
                    "SW" => Condition::Sw(lower),
                    "EW" => Condition::Ew(lower),
                    other => return Err(CoreError::BadInput(format!("unknown filter operator {other}"))),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { attribute, conditions })
    }

    fn matches(&self, row: &IndexRow) -> bool {
        if self.conditions.is_empty() {
            return true;
        }
        let Some(value) = row.attribute(&self.attribute) else { return false };
        let lower = lowercase(value);
        let lower = lower.as_ref();
        self.conditions.iter().all(|c| match c {
            Condition::Like(v) => contains(lower, v),
            Condition::Eq(v) => lower == v,
            Condition::Ne(v) => lower != v,
            Condition::In(vs) => vs.iter().any(|v| lower == v),
            Condition::Sw(v) => lower.starts_with(v.as_str()),
            Condition::Ew(v) => lower.ends_with(v.as_str()),
            Condition::Gt(v) => compare_values(value, v) == Ordering::Greater,
            Condition::Ge(v) => compare_values(value, v) != Ordering::Less,
            Condition::Lt(v) => compare_values(value, v) == Ordering::Less,
            Condition::Le(v) => compare_values(value, v) != Ordering::Greater,
        })
    }
}

/// `text` lowercased, borrowed when lowercasing changes nothing (most values: digits, dates,
/// Arabic, lowercase Latin), so a search over every woman allocates only for the others.
fn lowercase(text: &str) -> Cow<'_, str> {
    let unchanged = |c: char| {
        // Arabic script has no case (its blocks answer at once; the general case is a table
        // search per character).
        if matches!(c, '\u{0600}'..='\u{06FF}' | '\u{0750}'..='\u{077F}' | '\u{08A0}'..='\u{08FF}') {
            return true;
        }
        let mut lower = c.to_lowercase();
        lower.next() == Some(c) && lower.next().is_none()
    };
    let unchanged =
        if text.is_ascii() { !text.bytes().any(|b| b.is_ascii_uppercase()) } else { text.chars().all(unchanged) };
    if unchanged {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(text.to_lowercase())
    }
}

/// `needle` within `haystack`, byte by byte: attribute values are short, and `str::contains`
/// prepares a two-way search at each call (the largest part of a LIKE search over every woman
/// once the lowercasing allocated nothing). A match of valid UTF-8 bytes is a match of
/// characters (no character's bytes start inside another's).
fn contains(haystack: &str, needle: &str) -> bool {
    needle.is_empty() || haystack.as_bytes().windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Numbers compare as numbers, anything else as text (ISO dates sort as text).
fn compare_values(a: &str, b: &str) -> Ordering {
    match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
        (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        _ => a.to_lowercase().cmp(&b.to_lowercase()),
    }
}

/// A tracked-entity search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeiQuery {
    /// Org units (`ou`, `orgUnit`, `orgUnits`, `;` or `,` separated).
    pub org_units: Vec<String>,
    /// Org unit mode.
    pub ou_mode: OuMode,
    /// Program.
    pub program: Option<String>,
    /// Enrollment status in the program.
    pub program_status: Option<String>,
    /// Tracked entity type.
    pub tracked_entity_type: Option<String>,
    /// Follow-up flag in the program.
    pub follow_up: Option<bool>,
    /// Attribute conditions (`attribute=` and `filter=`).
    pub filters: Vec<AttributeFilter>,
    /// Free text over every attribute (`query=`, optionally `LIKE:` prefixed), lowercased.
    pub text: Option<String>,
    /// Only these tracked entities (`trackedEntityInstance=a;b`, `trackedEntities=`).
    pub uids: Option<Vec<String>>,
    /// Updated on or after (ISO text compare).
    pub updated_after: Option<String>,
    /// Ordering: (column, descending).
    pub order: Vec<(String, bool)>,
    /// 1-based page.
    pub page: usize,
    /// Page size.
    pub page_size: usize,
    /// No paging at all.
    pub skip_paging: bool,
    /// Totals asked for.
    pub total_pages: bool,
    /// Include soft-deleted.
    pub include_deleted: bool,
}

fn split_list(v: &str) -> Vec<String> {
    v.split([';', ',']).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

impl TeiQuery {
    /// Reads the parameters of either API family.
    pub fn from_target(target: &Target) -> Result<Self> {
        let org_units = ["ou", "orgUnit", "orgUnits"].iter().flat_map(|k| target.all(k)).flat_map(split_list).collect();
        let ou_mode = match target.get("ouMode").or_else(|| target.get("orgUnitMode")) {
            Some(m) => OuMode::parse(m)?,
            None => OuMode::Selected,
        };
        let mut filters = Vec::new();
        for f in target.all("attribute").into_iter().chain(target.all("filter")) {
            filters.push(AttributeFilter::parse(f)?);
        }
        let text = target.get("query").map(|q| {
            let q = q.strip_prefix("LIKE:").or_else(|| q.strip_prefix("EQ:")).unwrap_or(q);
            q.to_lowercase()
        });
        let order = target
            .get("order")
            .map(|o| {
                o.split(',')
                    .filter(|s| !s.is_empty())
                    .map(|part| {
                        let (col, dir) = part.split_once(':').unwrap_or((part, "asc"));
                        (col.to_string(), dir.eq_ignore_ascii_case("desc"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let number = |name: &str, default: usize| -> Result<usize> {
            match target.get(name) {
                None | Some("") => Ok(default),
                Some(v) => v.parse::<usize>().map_err(|_| CoreError::BadInput(format!("{name} must be a number"))),
            }
        };
        let page = number("page", 1)?.max(1);
        let page_size = number("pageSize", 50)?;
        if page_size == 0 {
            return Err(CoreError::BadInput("pageSize must be at least 1".into()));
        }
        let uids = target
            .get("trackedEntityInstance")
            .or_else(|| target.get("trackedEntities"))
            .or_else(|| target.get("trackedEntity"))
            .map(split_list);
        Ok(Self {
            org_units,
            ou_mode,
            program: target.get("program").map(str::to_string),
            program_status: target.get("programStatus").map(|s| s.to_ascii_uppercase()),
            tracked_entity_type: target.get("trackedEntityType").map(str::to_string),
            follow_up: target.flag("followUp"),
            filters,
            text,
            uids,
            updated_after: target
                .get("lastUpdatedStartDate")
                .or_else(|| target.get("updatedAfter"))
                .map(str::to_string),
            order,
            page,
            page_size,
            skip_paging: target.flag("skipPaging") == Some(true) || target.flag("paging") == Some(false),
            total_pages: target.flag("totalPages") == Some(true),
            include_deleted: target.flag("includeDeleted") == Some(true),
        })
    }

    /// The first asked org unit that `scope` (the logged-in user's org units) does not see, for
    /// modes that name org units; without a scope, as [`TeiQuery::outside_search_scope`].
    pub fn outside_scope(&self, meta: &ClinicMetadata, scope: Option<&UserScope>) -> Option<String> {
        match scope {
            Some(scope) if matches!(self.ou_mode, OuMode::Selected | OuMode::Children | OuMode::Descendants) => {
                self.org_units.iter().find(|ou| !scope.sees(ou, meta)).cloned()
            }
            Some(_) => None,
            None => self.outside_search_scope(meta),
        }
    }

    /// The first asked org unit outside the user's search scope (the server refuses such a
    /// query with 409), for modes that name org units.
    pub fn outside_search_scope(&self, meta: &ClinicMetadata) -> Option<String> {
        // Without a download the user's scope is unknown: nothing to check against.
        if !matches!(self.ou_mode, OuMode::Selected | OuMode::Children | OuMode::Descendants)
            || meta.capture_org_units.is_empty() && meta.search_org_units.is_empty()
        {
            return None;
        }
        self.org_units.iter().find(|ou| !meta.in_search_scope(ou)).cloned()
    }

    fn in_scope(&self, row: &IndexRow, meta: &ClinicMetadata) -> bool {
        match self.ou_mode {
            OuMode::All => true,
            OuMode::Selected => self.org_units.contains(&row.org_unit),
            OuMode::Children => {
                let path = meta.path_of(&row.org_unit);
                let mut parts = path.rsplit('/');
                let own = parts.next().unwrap_or_default();
                let parent = parts.next().unwrap_or_default();
                self.org_units.iter().any(|ou| ou == own || ou == parent)
            }
            OuMode::Descendants => {
                let path = meta.path_of(&row.org_unit);
                self.org_units.iter().any(|ou| path.split('/').any(|p| p == ou))
            }
            OuMode::Accessible => {
                let path = meta.path_of(&row.org_unit);
                meta.capture_org_units.iter().any(|ou| path.split('/').any(|p| p == ou))
            }
        }
    }

    /// True when `row` satisfies every condition.
    pub fn matches(&self, row: &IndexRow, meta: &ClinicMetadata) -> bool {
        if row.deleted && !self.include_deleted {
            return false;
        }
        if !self.in_scope(row, meta) {
            return false;
        }
        if let Some(uids) = &self.uids {
            if !uids.contains(&row.uid) {
                return false;
            }
        }
        if let Some(tet) = &self.tracked_entity_type {
            if *tet != row.tracked_entity_type {
                return false;
            }
        }
        if let Some(program) = &self.program {
            let enrolled = row.enrollments.iter().any(|e| {
                e.program == *program
                    && !e.deleted
                    && self.program_status.as_ref().is_none_or(|s| *s == e.status)
                    && self.follow_up.is_none_or(|f| f == e.follow_up)
            });
            if !enrolled {
                return false;
            }
        }
        if let Some(after) = &self.updated_after {
            if row.last_updated.as_str() < after.as_str() {
                return false;
            }
        }
        if !self.filters.iter().all(|f| f.matches(row)) {
            return false;
        }
        if let Some(text) = &self.text {
            if !text.is_empty() && !row.attributes.iter().any(|(_, v)| contains(&lowercase(v), text)) {
                return false;
            }
        }
        true
    }

    fn sort_key<'a>(row: &'a IndexRow, column: &str) -> &'a str {
        match column {
            "created" | "createdAt" => &row.created,
            "lastupdated" | "lastUpdated" | "updatedAt" => &row.last_updated,
            "ou" | "orgUnit" => &row.org_unit,
            "instance" | "trackedEntity" | "trackedEntityInstance" => &row.uid,
            attribute => row.attribute(attribute).unwrap_or(""),
        }
    }

    /// Runs the query: the page of matching rows and the total number of matches.
    pub fn run<'a>(&self, index: &'a ClinicIndex, meta: &ClinicMetadata) -> (Vec<&'a IndexRow>, usize) {
        self.run_within(index, meta, None)
    }

    /// As [`TeiQuery::run`], counting and returning only the rows `scope` sees (the logged-in
    /// user's org units), so totals and pages are hers.
    pub fn run_within<'a>(
        &self,
        index: &'a ClinicIndex,
        meta: &ClinicMetadata,
        scope: Option<&UserScope>,
    ) -> (Vec<&'a IndexRow>, usize) {
        // A clinic has a few org units and many women: whether the user sees one is worked out
        // once per org unit (a lookup of its path and a walk up it), not once per woman.
        let mut seen: Vec<(&str, bool)> = Vec::new();
        let mut visible = |r: &'a IndexRow| {
            let Some(scope) = scope else { return true };
            if let Some((_, sees)) = seen.iter().find(|(ou, _)| *ou == r.org_unit) {
                return *sees;
            }
            let sees = scope.sees(&r.org_unit, meta);
            seen.push((&r.org_unit, sees));
            sees
        };
        let mut hits: Vec<&IndexRow> = index.rows().filter(|r| self.matches(r, meta) && visible(r)).collect();
        hits.sort_unstable_by(|a, b| {
            for (column, desc) in &self.order {
                let ord = compare_values(Self::sort_key(a, column), Self::sort_key(b, column));
                let ord = if *desc { ord.reverse() } else { ord };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            // DHIS2's default order is its internal id: the order the download received them.
            a.ordinal.cmp(&b.ordinal).then_with(|| a.uid.cmp(&b.uid))
        });
        let total = hits.len();
        if self.skip_paging {
            return (hits, total);
        }
        let start = (self.page - 1).saturating_mul(self.page_size);
        let page = hits.into_iter().skip(start).take(self.page_size).collect();
        (page, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{metadata::OrgUnitInfo, profile::UserProfile, records::TeiBundle};

    fn row(uid: &str, org_unit: &str, first_name: &str) -> IndexRow {
        let mut row = IndexRow::of(&TeiBundle::default());
        row.uid = uid.into();
        row.org_unit = org_unit.into();
        row.attributes = vec![("AtFirstNam1".into(), first_name.into())];
        row
    }

    fn uids(q: &str, index: &ClinicIndex, meta: &ClinicMetadata, scope: Option<&UserScope>) -> Vec<String> {
        let q = TeiQuery::from_target(&Target::parse(&format!("/api/trackedEntityInstances/query.json?{q}"))).unwrap();
        let (rows, total) = q.run_within(index, meta, scope);
        assert_eq!(rows.len(), total);
        let mut uids: Vec<String> = rows.iter().map(|r| r.uid.clone()).collect();
        uids.sort_unstable();
        uids
    }

    /// Case-insensitive conditions compare lowercased values, whatever the script: Latin with
    /// and without accents, Greek (a final sigma), Arabic (no case); the user's scope is worked
    /// out per org unit and still applies to every woman.
    #[test]
    fn searches_ignore_case_in_every_script_and_keep_to_the_users_org_units() {
        let index = ClinicIndex::of_rows(vec![
            row("Te000000001", "OuBaniNaim1", "FATIMA"),
            row("Te000000002", "OuBaniNaim1", "Élodie"),
            row("Te000000003", "OuBaniNaim1", "ΟΔΥΣΣΕΑΣ"),
            row("Te000000004", "OuBaniNaim1", "فاطمة"),
            row("Te000000005", "OuDura00001", "Fatima"),
            row("Te000000006", "OuDura00001", "fatma"),
        ]);
        let mut meta = ClinicMetadata::default();
        for (id, path) in [("OuBaniNaim1", "/OuPalestin1/OuBaniNaim1"), ("OuDura00001", "/OuPalestin1/OuDura00001")] {
            meta.org_units.insert(id.into(), OrgUnitInfo { id: id.into(), path: path.into(), display_name: id.into() });
        }
        let all = "ouMode=ALL";
        assert_eq!(uids(&format!("{all}&attribute=AtFirstNam1:LIKE:fat"), &index, &meta, None).len(), 3);
        assert_eq!(uids(&format!("{all}&attribute=AtFirstNam1:LIKE:FATI"), &index, &meta, None).len(), 2);
        assert_eq!(uids(&format!("{all}&attribute=AtFirstNam1:LIKE:éLO"), &index, &meta, None), ["Te000000002"]);
        assert_eq!(uids(&format!("{all}&attribute=AtFirstNam1:EQ:ΟΔΥΣΣΕΑΣ"), &index, &meta, None), ["Te000000003"]);
        assert_eq!(uids(&format!("{all}&attribute=AtFirstNam1:LIKE:اطم"), &index, &meta, None), ["Te000000004"]);
        assert_eq!(
            uids(&format!("{all}&attribute=AtFirstNam1:IN:FATMA;élodie"), &index, &meta, None),
            ["Te000000002", "Te000000006"]
        );
        assert_eq!(
            uids(&format!("{all}&attribute=AtFirstNam1:SW:Fa:EW:MA"), &index, &meta, None),
            ["Te000000001", "Te000000005", "Te000000006"]
        );
        assert_eq!(uids(&format!("{all}&query=ATM"), &index, &meta, None), ["Te000000006"]);
        let nurse = UserProfile::from_me_json(
            br#"{"id":"Us000000001","username":"nurse1","displayName":"N","organisationUnits":[{"id":"OuBaniNaim1"}],"teiSearchOrganisationUnits":[],"authorities":[]}"#,
            "nurse1",
        )
        .unwrap();
        let scope = UserScope::of(&nurse);
        assert_eq!(
            uids(&format!("{all}&attribute=AtFirstNam1:LIKE:fat"), &index, &meta, Some(&scope)),
            ["Te000000001"]
        );
        assert_eq!(uids(all, &index, &meta, Some(&scope)).len(), 4);
    }
}
