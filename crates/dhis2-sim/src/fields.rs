//! The DHIS2 `fields` parameter, as a filter over `serde_json::Value`.
//!
//! Handlers build the full object (references expanded, e.g. org units with name, code, level,
//! path) and this filter trims it to what the client asked for:
//!
//! - `id,displayName`: those properties; unknown names are ignored, as in DHIS2.
//! - `organisationUnits[id,name]` (or `(…)`): nested selection, for objects and arrays.
//! - `*` / `:all` (also `:owner`, `:persisted`): every property. Nested *references* (objects
//!   with an `id`, except keys declared embedded in [`FilterOptions`]) collapse to `{"id"}`,
//!   which is also what a plain name gives for a reference: `fields=organisationUnits` →
//!   `[{"id":"…"}]`.
//! - `:identifiable`, `:nameable`: the DHIS2 presets.
//! - `!name`: remove, whatever the order.
//! - Transformers `name~rename(other)`, `name~size`, `name~isEmpty`, `name~isNotEmpty`,
//!   `name~pluck` / `name~pluck(field)` (also written with `::`).
//!
//! Parsing is lenient (unbalanced brackets are closed or ignored) and never fails.

use serde_json::{Map, Value};

/// Properties of `:identifiable`.
const IDENTIFIABLE: &[&str] =
    &["id", "name", "displayName", "code", "created", "lastUpdated", "createdBy", "lastUpdatedBy", "href"];
/// Extra properties of `:nameable`.
const NAMEABLE_EXTRA: &[&str] = &["shortName", "displayShortName", "description"];

/// A parsed `fields` expression.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldFilter {
    items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    /// `*` and the presets meaning "everything".
    All,
    /// `:identifiable` / `:nameable`.
    Preset(Vec<&'static str>),
    /// A named property.
    Include { name: String, children: Option<FieldFilter>, transformers: Vec<Transformer> },
    /// `!name`.
    Exclude(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Transformer {
    Rename(String),
    Size,
    IsEmpty,
    IsNotEmpty,
    Pluck(String),
}

/// How the filter tells references from embedded objects.
#[derive(Debug, Clone, Copy, Default)]
pub struct FilterOptions<'a> {
    /// Keys whose object values are embedded (shown whole under `*`) even though they carry
    /// an `id`, e.g. `userCredentials`.
    pub embedded: &'a [&'a str],
}

impl FieldFilter {
    /// Parses a `fields` expression. Never fails; junk yields names that match nothing.
    pub fn parse(expr: &str) -> Self {
        let chars: Vec<char> = expr.chars().collect();
        let mut pos = 0;
        let mut items = Vec::new();
        // Stray closing brackets at the top level end `parse_list`; skip them and go on.
        while pos < chars.len() {
            items.extend(parse_list(&chars, &mut pos).items);
        }
        Self { items }
    }

    /// Parses all `fields` values of a query (DHIS2 merges repeated parameters); `None` when
    /// none is given or all are blank, so the caller uses its default.
    pub fn from_query<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        let joined: Vec<&str> = values.into_iter().map(str::trim).filter(|v| !v.is_empty()).collect();
        if joined.is_empty() {
            None
        } else {
            Some(Self::parse(&joined.join(",")))
        }
    }

    /// Applies the filter (arrays: to each element; objects: selection; scalars: unchanged).
    pub fn apply(&self, value: &Value, opts: &FilterOptions<'_>) -> Value {
        match value {
            Value::Array(items) => Value::Array(items.iter().map(|v| self.apply(v, opts)).collect()),
            Value::Object(map) => Value::Object(self.apply_object(map, opts)),
            other => other.clone(),
        }
    }

    fn apply_object(&self, map: &Map<String, Value>, opts: &FilterOptions<'_>) -> Map<String, Value> {
        let mut out = Map::new();
        let mut excluded: Vec<&str> = Vec::new();
        for item in &self.items {
            match item {
                Item::All => {
                    for (k, v) in map {
                        if !out.contains_key(k) {
                            out.insert(k.clone(), default_view(k, v, opts));
                        }
                    }
                }
                Item::Preset(names) => {
                    for name in names {
                        if let Some(v) = map.get(*name) {
                            if !out.contains_key(*name) {
                                out.insert((*name).to_owned(), default_view(name, v, opts));
                            }
                        }
                    }
                }
                Item::Include { name, children, transformers } => {
                    let Some(v) = map.get(name) else { continue };
                    let mut shown = match children {
                        Some(filter) => filter.apply(v, opts),
                        None => default_view(name, v, opts),
                    };
                    let mut key = name.clone();
                    for t in transformers {
                        match t {
                            Transformer::Rename(to) => key = to.clone(),
                            Transformer::Size => shown = size_of(&shown),
                            Transformer::IsEmpty => shown = Value::Bool(is_empty(&shown)),
                            Transformer::IsNotEmpty => shown = Value::Bool(!is_empty(&shown)),
                            Transformer::Pluck(field) => shown = pluck(v, field),
                        }
                    }
                    out.insert(key, shown);
                }
                Item::Exclude(name) => excluded.push(name),
            }
        }
        for name in excluded {
            out.remove(name);
        }
        out
    }
}

/// Whether an object is a reference to another identifiable object.
fn is_reference(key: &str, v: &Value, opts: &FilterOptions<'_>) -> bool {
    matches!(v, Value::Object(m) if m.contains_key("id")) && !opts.embedded.contains(&key)
}

/// What a property named without sub-selection shows: references collapse to `{"id"}`,
/// embedded objects show all their properties (with their own references collapsed).
fn default_view(key: &str, v: &Value, opts: &FilterOptions<'_>) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.iter().map(|i| default_view(key, i, opts)).collect()),
        Value::Object(m) if is_reference(key, v, opts) => {
            let mut out = Map::new();
            if let Some(id) = m.get("id") {
                out.insert("id".into(), id.clone());
            }
            Value::Object(out)
        }
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), default_view(k, v, opts))).collect()),
        other => other.clone(),
    }
}

fn size_of(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::from(a.len()),
        Value::Object(m) => Value::from(m.len()),
        Value::String(s) => Value::from(s.chars().count()),
        other => other.clone(),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        Value::String(s) => s.is_empty(),
        Value::Null => true,
        _ => false,
    }
}

fn pluck(v: &Value, field: &str) -> Value {
    let one = |i: &Value| i.get(field).cloned().unwrap_or(Value::Null);
    match v {
        Value::Array(items) => Value::Array(items.iter().map(one).collect()),
        other => one(other),
    }
}

/// Parses items until the end or a closing bracket (which it consumes).
fn parse_list(s: &[char], pos: &mut usize) -> FieldFilter {
    let mut items = Vec::new();
    while *pos < s.len() {
        match s[*pos] {
            ',' => {
                *pos += 1;
                continue;
            }
            ']' | ')' => {
                *pos += 1;
                break;
            }
            _ => {}
        }
        let mut token = String::new();
        let mut children = None;
        while *pos < s.len() {
            let c = s[*pos];
            match c {
                ',' | ']' | ')' => break,
                '[' => {
                    *pos += 1;
                    children = Some(parse_list(s, pos));
                    if ends_item_after_block(s, *pos) {
                        break;
                    }
                }
                '(' if token.contains('~') || token.contains("::") => {
                    // Transformer arguments: raw up to the closing parenthesis.
                    while *pos < s.len() {
                        let c = s[*pos];
                        token.push(c);
                        *pos += 1;
                        if c == ')' {
                            break;
                        }
                    }
                }
                '(' => {
                    *pos += 1;
                    children = Some(parse_list(s, pos));
                    if ends_item_after_block(s, *pos) {
                        break;
                    }
                }
                _ => {
                    token.push(c);
                    *pos += 1;
                }
            }
        }
        if let Some(item) = make_item(token.trim(), children) {
            items.push(item);
        }
    }
    FieldFilter { items }
}

/// As DHIS2's parser: a closing bracket ends the item, so a name right after it is the next
/// item (`a[x]b` is `a[x],b`); only a transformer (`~`, `::`) still belongs to it.
fn ends_item_after_block(s: &[char], pos: usize) -> bool {
    !matches!(s.get(pos), None | Some('~' | ':' | ',' | ']' | ')'))
}

fn make_item(token: &str, children: Option<FieldFilter>) -> Option<Item> {
    if token.is_empty() {
        return None;
    }
    match token {
        "*" | ":all" | ":owner" | ":persisted" => return Some(Item::All),
        ":identifiable" => return Some(Item::Preset(IDENTIFIABLE.to_vec())),
        ":nameable" => {
            let mut v = IDENTIFIABLE.to_vec();
            v.extend_from_slice(NAMEABLE_EXTRA);
            return Some(Item::Preset(v));
        }
        _ => {}
    }
    if token.starts_with(':') {
        // Unknown preset: matches nothing.
        return None;
    }
    if let Some(name) = token.strip_prefix('!') {
        let name = name.trim();
        return (!name.is_empty()).then(|| Item::Exclude(name.to_owned()));
    }
    let normalised = token.replace("::", "~");
    let mut parts = normalised.split('~');
    let name = parts.next().unwrap_or_default().trim().to_owned();
    if name.is_empty() {
        return None;
    }
    let transformers = parts.filter_map(parse_transformer).collect();
    Some(Item::Include { name, children, transformers })
}

fn parse_transformer(t: &str) -> Option<Transformer> {
    let t = t.trim();
    let (name, arg) = match t.split_once('(') {
        Some((n, rest)) => (n.trim(), Some(rest.trim_end_matches(')').trim())),
        None => (t, None),
    };
    match (name, arg) {
        ("rename", Some(to)) if !to.is_empty() => Some(Transformer::Rename(to.to_owned())),
        ("size", _) => Some(Transformer::Size),
        ("isEmpty", _) => Some(Transformer::IsEmpty),
        ("isNotEmpty", _) => Some(Transformer::IsNotEmpty),
        ("pluck", Some(f)) if !f.is_empty() => Some(Transformer::Pluck(f.to_owned())),
        ("pluck", _) => Some(Transformer::Pluck("id".to_owned())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn me() -> Value {
        json!({
            "id": "U1",
            "username": "nurse1",
            "displayName": "Amal Haddad",
            "organisationUnits": [
                {"id": "O1", "name": "Bani Naim Clinic", "displayName": "Bani Naim Clinic",
                 "code": "C1", "level": 3, "path": "/R/D/O1", "parent": {"id": "D", "name": "Dist"}}
            ],
            "authorities": ["A", "B"],
            "userCredentials": {"id": "U1", "username": "nurse1",
                                "userRoles": [{"id": "R1", "name": "Role"}]},
            "settings": {"keyUiLocale": "en"}
        })
    }

    fn run(expr: &str) -> Value {
        FieldFilter::parse(expr).apply(&me(), &FilterOptions { embedded: &["userCredentials"] })
    }

    #[test]
    fn simple_selection_ignores_unknown() {
        assert_eq!(run("id,displayName,nope"), json!({"id":"U1","displayName":"Amal Haddad"}));
    }

    #[test]
    fn plain_reference_collapses_to_id() {
        assert_eq!(run("organisationUnits"), json!({"organisationUnits":[{"id":"O1"}]}));
    }

    #[test]
    fn nested_selection() {
        assert_eq!(
            run("id,organisationUnits[id,displayName,name,code,level,path]"),
            json!({"id":"U1","organisationUnits":[{"id":"O1","displayName":"Bani Naim Clinic",
                "name":"Bani Naim Clinic","code":"C1","level":3,"path":"/R/D/O1"}]})
        );
        assert_eq!(
            run("organisationUnits(id,parent[name])"),
            json!({"organisationUnits":[{"id":"O1","parent":{"name":"Dist"}}]})
        );
        assert_eq!(
            run("userCredentials[username,userRoles[id,name]]"),
            json!({"userCredentials":{"username":"nurse1","userRoles":[{"id":"R1","name":"Role"}]}})
        );
    }

    #[test]
    fn star_and_all_collapse_references_but_not_embedded() {
        let expected = json!({
            "id": "U1", "username": "nurse1", "displayName": "Amal Haddad",
            "organisationUnits": [{"id": "O1"}], "authorities": ["A", "B"],
            "userCredentials": {"id": "U1", "username": "nurse1", "userRoles": [{"id": "R1"}]},
            "settings": {"keyUiLocale": "en"}
        });
        assert_eq!(run("*"), expected);
        assert_eq!(run(":all"), expected);
    }

    #[test]
    fn star_with_override_and_exclusions() {
        let v = run("*,organisationUnits[name],!authorities,!settings,!userCredentials");
        assert_eq!(
            v,
            json!({"id":"U1","username":"nurse1","displayName":"Amal Haddad",
                   "organisationUnits":[{"name":"Bani Naim Clinic"}]})
        );
        // Exclusion wins regardless of order.
        assert_eq!(run("!id,id,username"), json!({"username":"nurse1"}));
        assert_eq!(
            run("organisationUnits[*,!parent,!path]"),
            json!({"organisationUnits":[{"id":"O1","name":"Bani Naim Clinic",
                "displayName":"Bani Naim Clinic","code":"C1","level":3}]})
        );
    }

    /// DHIS2's parser ends an item at a closing bracket: a name right after `]` is the next
    /// item at the outer level (the Capture app's program query relies on it:
    /// `dataEntryForm[id,htmlCode]programStageSections[...]`, `...]]programSections[...]`).
    #[test]
    fn a_name_right_after_a_closing_bracket_is_the_next_item() {
        assert_eq!(
            run("userCredentials[id,userRoles[id]username]organisationUnits[id]settings"),
            json!({"userCredentials": {"id": "U1", "userRoles": [{"id": "R1"}], "username": "nurse1"},
                   "organisationUnits": [{"id": "O1"}], "settings": {"keyUiLocale": "en"}})
        );
        assert_eq!(
            run("organisationUnits[id, name]"),
            json!({"organisationUnits": [{"id": "O1", "name": "Bani Naim Clinic"}]})
        );
    }

    #[test]
    fn presets() {
        assert_eq!(run(":identifiable"), json!({"id":"U1","displayName":"Amal Haddad"}));
    }

    #[test]
    fn transformers() {
        assert_eq!(
            run("id~rename(uid),organisationUnits~size,authorities::isEmpty"),
            json!({"uid":"U1","organisationUnits":1,"authorities":false})
        );
        assert_eq!(run("organisationUnits~pluck(name)"), json!({"organisationUnits":["Bani Naim Clinic"]}));
        assert_eq!(run("organisationUnits~pluck"), json!({"organisationUnits":["O1"]}));
    }

    #[test]
    fn arrays_and_scalars() {
        let f = FieldFilter::parse("id");
        let opts = FilterOptions::default();
        assert_eq!(f.apply(&json!([{"id":1,"x":2},{"id":3}]), &opts), json!([{"id":1},{"id":3}]));
        assert_eq!(f.apply(&json!("s"), &opts), json!("s"));
    }

    #[test]
    fn malformed_expressions_do_not_panic() {
        for expr in [
            "",
            "[",
            "]",
            "((",
            "))",
            "a[b[c",
            "a]b]c",
            ",,,",
            "!",
            "~",
            "a~",
            "a~rename(",
            "a::",
            ":",
            "*[id]",
            "a[]",
            "organisationUnits[id",
            "id]]],displayName",
            "é,ü[",
        ] {
            let _ = run(expr);
        }
        assert_eq!(run("id]]],displayName"), json!({"id":"U1","displayName":"Amal Haddad"}));
        assert_eq!(run("organisationUnits[id"), json!({"organisationUnits":[{"id":"O1"}]}));
    }

    #[test]
    fn from_query_merges_and_skips_blank() {
        assert_eq!(FieldFilter::from_query(["", "  "]), None);
        let f = FieldFilter::from_query(["id", "username"]).expect("some");
        assert_eq!(f.apply(&me(), &FilterOptions::default()), json!({"id":"U1","username":"nurse1"}));
    }
}
