//! Generated attribute values (`/api/trackedEntityAttributes/{id}/generate` and
//! `/generateAndReserve`): text patterns of literal strings and one `SEQUENTIAL(###)`
//! segment. Every value handed out is stored in `reserved_values`, and the sequence counter is
//! persisted, so no value is given twice, even across restarts.

use chrono::{Duration, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};

use crate::model::Attribute;

/// A parsed text pattern: literal prefix, number of `#`, literal suffix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextPattern {
    prefix: String,
    width: usize,
    suffix: String,
}

impl TextPattern {
    /// Parses `"MCH-" + SEQUENTIAL(######)`; `None` for patterns this simulator cannot make.
    pub fn parse(pattern: &str) -> Option<Self> {
        let mut prefix = String::new();
        let mut suffix = String::new();
        let mut width = None;
        for seg in pattern.split('+').map(str::trim) {
            if let Some(lit) = seg.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                if width.is_some() {
                    suffix.push_str(lit);
                } else {
                    prefix.push_str(lit);
                }
            } else if let Some(inner) = seg.strip_prefix("SEQUENTIAL(").and_then(|s| s.strip_suffix(')')) {
                if width.is_some() || inner.is_empty() || !inner.chars().all(|c| c == '#') {
                    return None;
                }
                width = Some(inner.len());
            } else {
                return None;
            }
        }
        Some(Self { prefix, width: width?, suffix })
    }

    /// The reservation key: the pattern with the sequence as `#`s (`MCH-######`).
    pub fn key(&self) -> String {
        format!("{}{}{}", self.prefix, "#".repeat(self.width), self.suffix)
    }

    /// The value for sequence number `n`.
    pub fn value(&self, n: i64) -> String {
        format!("{}{:0width$}{}", self.prefix, n, self.suffix, width = self.width)
    }

    /// Largest sequence number that fits.
    pub fn capacity(&self) -> i64 {
        10_i64.saturating_pow(u32::try_from(self.width).unwrap_or(18).min(18)) - 1
    }
}

/// Why values could not be generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GenerateError {
    /// The attribute is not generated or its pattern is unsupported.
    NotGenerated,
    /// The sequence is used up.
    Exhausted,
    /// Database failure.
    Db(String),
}

impl From<rusqlite::Error> for GenerateError {
    fn from(e: rusqlite::Error) -> Self {
        GenerateError::Db(e.to_string())
    }
}

/// Generates and reserves `n` values of `attr`, expiring after `days` days; returns the
/// `ReservedValue` objects (`ownerObject, ownerUid, key, value, created, expiryDate`).
pub fn reserve(conn: &Connection, attr: &Attribute, n: usize, days: i64) -> Result<Vec<Value>, GenerateError> {
    let pattern = attr
        .pattern
        .as_deref()
        .filter(|_| attr.generated)
        .and_then(TextPattern::parse)
        .ok_or(GenerateError::NotGenerated)?;
    let key = pattern.key();
    let now = Utc::now();
    let created = now.format("%Y-%m-%dT%H:%M:%S%.3f").to_string();
    let expiry = (now + Duration::days(days.clamp(1, 36_500))).format("%Y-%m-%dT%H:%M:%S%.3f").to_string();
    let mut counter: i64 = conn
        .query_row(
            "SELECT counter FROM value_sequences WHERE attribute = ?1 AND key = ?2",
            params![attr.uid, key],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0);
    let mut used = conn.prepare_cached(
        "SELECT 1 FROM reserved_values WHERE attribute = ?1 AND value = ?2 \
         UNION ALL SELECT 1 FROM attribute_values WHERE attribute = ?1 AND value = ?2 LIMIT 1",
    )?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO reserved_values (attribute, value, owner_object, key, created, expiry_date) \
         VALUES (?1, ?2, 'TRACKEDENTITYATTRIBUTE', ?3, ?4, ?5)",
    )?;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        counter += 1;
        if counter > pattern.capacity() {
            return Err(GenerateError::Exhausted);
        }
        let value = pattern.value(counter);
        if used.query_row(params![attr.uid, value], |_| Ok(())).optional()?.is_some() {
            continue;
        }
        insert.execute(params![attr.uid, value, key, created, expiry])?;
        out.push(json!({
            "ownerObject": "TRACKEDENTITYATTRIBUTE",
            "ownerUid": attr.uid,
            "key": key,
            "value": value,
            "created": created,
            "expiryDate": expiry,
        }));
    }
    conn.execute(
        "INSERT INTO value_sequences (attribute, key, counter) VALUES (?1, ?2, ?3) \
         ON CONFLICT(attribute, key) DO UPDATE SET counter = excluded.counter",
        params![attr.uid, key, counter],
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let p = TextPattern::parse("\"MCH-\" + SEQUENTIAL(######)").expect("pattern");
        assert_eq!(p.key(), "MCH-######");
        assert_eq!(p.value(42), "MCH-000042");
        assert_eq!(p.capacity(), 999_999);
        assert!(TextPattern::parse("RANDOM(###)").is_none());
        assert!(TextPattern::parse("\"A\"").is_none());
    }
}
