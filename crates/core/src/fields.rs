//! The DHIS2 `fields` parameter applied to JSON answered offline: names, `*` / `:all`,
//! nested selections `a[b,c]` (or `a(b,c)`), `!excluded` names, and the collection
//! transformers `a::size`, `a::isEmpty`, `a::isNotEmpty` (others are ignored: the value is
//! given whole).

use serde_json::{Map, Value};

/// A parsed field selection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelection {
    all: bool,
    include: Vec<(String, Option<FieldSelection>, Option<Transform>)>,
    exclude: Vec<String>,
}

/// A DHIS2 field transformer (`name::transformer`) this selection applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transform {
    Size,
    IsEmpty,
    IsNotEmpty,
}

impl Transform {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "size" => Some(Self::Size),
            "isEmpty" => Some(Self::IsEmpty),
            "isNotEmpty" => Some(Self::IsNotEmpty),
            _ => None,
        }
    }

    fn apply(self, value: &Value) -> Value {
        let size = match value {
            Value::Array(items) => items.len(),
            Value::Object(map) => map.len(),
            Value::String(s) => s.chars().count(),
            Value::Null => 0,
            _ => 1,
        };
        match self {
            Self::Size => Value::from(size),
            Self::IsEmpty => Value::Bool(size == 0),
            Self::IsNotEmpty => Value::Bool(size > 0),
        }
    }
}

impl FieldSelection {
    /// Everything.
    pub fn everything() -> Self {
        Self { all: true, ..Self::default() }
    }

    /// Parses a `fields` value; an empty one selects everything.
    pub fn parse(spec: &str) -> Self {
        let chars: Vec<char> = spec.chars().collect();
        let mut pos = 0;
        let sel = parse_list(&chars, &mut pos);
        if sel.include.is_empty() && !sel.all && sel.exclude.is_empty() {
            Self::everything()
        } else {
            sel
        }
    }

    /// Whether it keeps every field (`*`, `:all`, a preset, or an empty `fields`).
    pub fn keeps_everything(&self) -> bool {
        self.all
    }

    /// The top-level names it includes (transformers and renames stripped).
    pub fn included(&self) -> impl Iterator<Item = &str> {
        self.include.iter().map(|(name, _, _)| name.as_str())
    }

    /// Applies the selection to a value (objects are filtered, arrays element-wise).
    pub fn apply(&self, value: &Value) -> Value {
        match value {
            Value::Array(items) => Value::Array(items.iter().map(|v| self.apply(v)).collect()),
            Value::Object(map) => Value::Object(self.apply_object(map)),
            other => other.clone(),
        }
    }

    fn apply_object(&self, map: &Map<String, Value>) -> Map<String, Value> {
        let mut out = Map::new();
        if self.all {
            for (k, v) in map {
                out.insert(k.clone(), v.clone());
            }
        }
        for (name, nested, transform) in &self.include {
            if let Some(v) = map.get(name) {
                let v = match (nested, transform) {
                    (_, Some(t)) => t.apply(v),
                    (Some(sel), None) => sel.apply(v),
                    (None, None) => v.clone(),
                };
                out.insert(name.clone(), v);
            }
        }
        for name in &self.exclude {
            out.remove(name);
        }
        out
    }
}

fn parse_list(chars: &[char], pos: &mut usize) -> FieldSelection {
    let mut sel = FieldSelection::default();
    loop {
        let mut name = String::new();
        while *pos < chars.len() && !matches!(chars[*pos], ',' | '[' | ']' | '(' | ')') {
            name.push(chars[*pos]);
            *pos += 1;
        }
        let name = name.trim().to_string();
        let mut nested = None;
        if *pos < chars.len() && matches!(chars[*pos], '[' | '(') {
            *pos += 1;
            nested = Some(parse_list(chars, pos));
            if *pos < chars.len() && matches!(chars[*pos], ']' | ')') {
                *pos += 1;
            }
        }
        match name.as_str() {
            "" => {}
            "*" | ":all" | ":owner" => sel.all = true,
            n if n.starts_with('!') => sel.exclude.push(n[1..].to_string()),
            n if n.starts_with(':') => sel.all = true,
            n => {
                let (n, transform) = match n.split_once("::") {
                    Some((n, t)) => (n, Transform::parse(t.split('(').next().unwrap_or(t))),
                    None => (n, None),
                };
                let n = n.split('~').next().unwrap_or(n).to_string();
                sel.include.push((n, nested, transform));
            }
        }
        if *pos >= chars.len() {
            break;
        }
        match chars[*pos] {
            ',' => *pos += 1,
            ']' | ')' => break,
            // A name right after a closing bracket is the next item, as DHIS2 parses
            // (`a[x]b` is `a[x],b`).
            _ => {}
        }
    }
    sel
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selects_nested_and_excludes() {
        let v =
            json!({"id": "a", "name": "n", "enrollments": [{"enrollment": "e", "events": [1], "status": "ACTIVE"}]});
        assert_eq!(FieldSelection::parse("id").apply(&v), json!({"id": "a"}));
        assert_eq!(FieldSelection::parse("*,!name").apply(&v)["name"], Value::Null);
        assert_eq!(
            FieldSelection::parse("id,enrollments[enrollment,status]").apply(&v),
            json!({"id": "a", "enrollments": [{"enrollment": "e", "status": "ACTIVE"}]})
        );
        assert_eq!(FieldSelection::parse("").apply(&v), v);
        assert_eq!(FieldSelection::parse(":all").apply(&v), v);
        assert_eq!(
            FieldSelection::parse("id,enrollments::size,events::isNotEmpty,none::isEmpty")
                .apply(&json!({"id": "a", "enrollments": [1, 2], "events": [], "none": []})),
            json!({"id": "a", "enrollments": 2, "events": false, "none": true})
        );
        assert_eq!(FieldSelection::parse("name::rename(n)").apply(&v), json!({"name": "n"}));
        // As DHIS2 parses: a name right after a closing bracket is the next item at the outer
        // level (the Capture app's program query: `...dataEntryForm[id]programStageSections[...]`).
        let program = json!({"id": "p", "programStages": [{"id": "s", "dataEntryForm": {"id": "f", "htmlCode": "x"},
            "programStageSections": [{"id": "c", "sortOrder": 1}], "programStageDataElements": [{"compulsory": true}]}],
            "programSections": [{"id": "ps", "sortOrder": 2}]});
        assert_eq!(
            FieldSelection::parse("id,programStages[id,dataEntryForm[id]programStageSections[id],programStageDataElements[compulsory]]programSections[id, sortOrder]")
                .apply(&program),
            json!({"id": "p", "programStages": [{"id": "s", "dataEntryForm": {"id": "f"},
                "programStageSections": [{"id": "c"}], "programStageDataElements": [{"compulsory": true}]}],
                "programSections": [{"id": "ps", "sortOrder": 2}]})
        );
        // Unbalanced input never panics.
        let _ = FieldSelection::parse("a[b,c").apply(&v);
        let _ = FieldSelection::parse("]]],[[").apply(&v);
    }
}
