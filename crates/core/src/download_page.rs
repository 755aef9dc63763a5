//! One page of a download merged into the local copy: each tracked entity checked (a malformed
//! one is skipped whole and reported), converted from the API family it came in, merged with
//! what the device holds (records with unsent changes are never overwritten), sealed, and
//! indexed, as one batch the download commits with its cursor.

use serde_json::Value;

use crate::{
    clinic::{bundle_id, parse_bundle, seal_bundle},
    download::SkippedRecord,
    engine::Engine,
    error::{CoreError, Result},
    family::{convert_owned, Kind, Naming},
    http::HttpClient,
    index::IndexRow,
    kdf::PasswordKdf,
    random::RandomSource,
    records::{flag, text, uid_of, Object, TeiBundle},
    store::{KvStore, StoreName, WriteBatch},
};

#[derive(Default)]
pub(crate) struct AppliedPage {
    pub(crate) stored: u64,
    pub(crate) deleted: u64,
    pub(crate) kept_local: u64,
    pub(crate) rows: Vec<IndexRow>,
    pub(crate) removed: Vec<String>,
    /// Items of the page that could not be stored.
    pub(crate) skipped: Vec<SkippedRecord>,
}

impl AppliedPage {
    pub(crate) fn skip(&mut self, uid: Option<String>, reason: String) {
        self.skipped.push(SkippedRecord { uid, reason });
    }
}

/// The JSON type of a value, for messages.
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

impl<S: KvStore, K: PasswordKdf, R: RandomSource, H: HttpClient> Engine<S, K, R, H> {
    /// Merges one page of tracked entities (`tracker`: in the `/api/tracker` naming) into the
    /// local copy, as a batch to commit. A malformed item (see [`DownloadReport::skipped`]) is
    /// skipped whole and listed in [`AppliedPage::skipped`]; the others are applied. Errors are
    /// the device's (storage, crypto), never the server's data.
    pub(crate) async fn apply_server_page(
        &self,
        items: Vec<Value>,
        tracker: bool,
        fetched_at_ms: i64,
    ) -> Result<(WriteBatch, AppliedPage)> {
        let mut batch = WriteBatch::new();
        let mut applied = AppliedPage::default();
        let mut next_ordinal = self.clinic.next_ordinal().unwrap_or(1);
        // The stored copies of the page's women, read at once (one transaction, not one each).
        let uids: Vec<String> = items
            .iter()
            .filter_map(|item| item.get("trackedEntityInstance").or_else(|| item.get("trackedEntity")))
            .filter_map(Value::as_str)
            .filter(|uid| crate::records::is_uid(uid))
            .map(bundle_id)
            .collect();
        let ids: Vec<&str> = uids.iter().map(String::as_str).collect();
        let mut stored: std::collections::HashMap<String, Option<Vec<u8>>> =
            uids.iter().cloned().zip(self.vault.get_records(StoreName::Records, &ids).await?).collect();
        for item in items {
            let item = match item {
                Value::Object(o) if tracker => convert_owned(Kind::TrackedEntity, o, Naming::Legacy),
                Value::Object(o) => o,
                other => {
                    applied.skip(None, format!("the item is not a JSON object: {}", json_kind(&other)));
                    continue;
                }
            };
            let uid_text = text(&item, "trackedEntityInstance").map(str::to_string);
            let deleted = flag(&item, "deleted");
            // A tracked entity the server deleted needs nothing but its UID.
            let parsed = if deleted {
                uid_of(&item, "trackedEntityInstance").map(|uid| {
                    let mut tei = Object::new();
                    tei.insert("trackedEntityInstance".into(), Value::String(uid));
                    TeiBundle { tei, ..Default::default() }
                })
            } else {
                TeiBundle::from_nested(item)
            };
            let mut server = match parsed {
                Ok(server) => server,
                Err(e) => {
                    let reason = match e {
                        CoreError::BadInput(reason) => reason,
                        other => other.to_string(),
                    };
                    applied.skip(uid_text, reason);
                    continue;
                }
            };
            let uid = server.uid().to_string();
            // Read from storage, not the in-memory index: another context (the service worker,
            // another tab) may have stored her since this engine loaded its index.
            let stored_bytes = match stored.remove(&bundle_id(&uid)) {
                Some(bytes) => bytes,
                None => self.vault.get_record(StoreName::Records, &bundle_id(&uid)).await?,
            };
            let existing = match stored_bytes {
                Some(bytes) => Some(parse_bundle(&bytes)?),
                None => None,
            };
            if deleted {
                match existing {
                    Some(local) if local.has_local_changes() => applied.kept_local += 1,
                    Some(_) => {
                        batch = self.vault.delete_into(batch, StoreName::Records, &bundle_id(&uid))?;
                        batch = self.vault.delete_into(batch, StoreName::Index, &bundle_id(&uid))?;
                        applied.removed.push(uid);
                        applied.deleted += 1;
                    }
                    None => {}
                }
                continue;
            }
            let deleted_children: Vec<String> = server
                .enrollments
                .iter()
                .filter(|e| flag(e, "deleted"))
                .filter_map(|e| text(e, "enrollment").map(str::to_string))
                .chain(
                    server
                        .events
                        .iter()
                        .filter(|e| flag(e, "deleted"))
                        .filter_map(|e| text(e, "event").map(str::to_string)),
                )
                .collect();
            server.enrollments.retain(|e| !flag(e, "deleted"));
            server.events.retain(|e| !flag(e, "deleted"));
            let bundle = match existing {
                Some(mut local) => {
                    let ordinal = local.ordinal;
                    if local.has_local_changes() {
                        applied.kept_local += 1;
                    }
                    let pending = |uid: &str| local.state(uid).has_local_changes();
                    let drop_enrollments: Vec<String> =
                        deleted_children.iter().filter(|u| !pending(u)).cloned().collect();
                    local
                        .enrollments
                        .retain(|e| !text(e, "enrollment").is_some_and(|u| drop_enrollments.iter().any(|d| d == u)));
                    local.events.retain(|e| !text(e, "event").is_some_and(|u| drop_enrollments.iter().any(|d| d == u)));
                    local.merge_from_server_fetched_at(server, fetched_at_ms);
                    local.ordinal = ordinal;
                    local
                }
                None => {
                    server.ordinal = next_ordinal;
                    next_ordinal = next_ordinal.saturating_add(1);
                    server
                }
            };
            let (next, row) = seal_bundle(&self.vault, batch, &bundle)?;
            batch = next;
            applied.rows.push(row);
            applied.stored += 1;
        }
        Ok((batch, applied))
    }
}
