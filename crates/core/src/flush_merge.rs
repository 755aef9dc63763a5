//! The simple merge of a flush: the tracked changes of each record to update are merged with
//! the server's current copy (read in a few batched requests) so that nothing someone else
//! changed on the server is undone; a field changed on both sides is a conflict, kept and
//! shown ([`crate::merge`] holds the field rules).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::{
    engine::Engine,
    error::{CoreError, Result},
    family::{convert_owned, take_list, take_tracker_items, Kind, Naming},
    flush_requests::TEIS_PER_REQUEST,
    http::HttpClient,
    kdf::PasswordKdf,
    merge::{delta_record, merge_record, server_updated, Conflict, ConflictPolicy, ConflictSource, WHOLE_RECORD},
    random::RandomSource,
    records::{Object, SyncState, TeiBundle},
    store::KvStore,
    write_effect::Touch,
    writes::Family,
};

/// An update merged with the server's current copy, as planned for one flush.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedMerge {
    /// The record's kind.
    pub kind: Kind,
    /// Its tracked entity.
    pub tei: String,
    /// The server's current record (legacy naming), if the server has it.
    pub server: Option<Object>,
    /// The fields sent (and those the server already held) with the values the server holds
    /// once the request is accepted.
    pub settled: BTreeMap<String, Value>,
    /// The record to send, or None when the server already holds every change.
    pub delta: Option<Object>,
    /// Fields changed on both sides (logged once the record is accepted).
    pub conflicts: Vec<Conflict>,
}

/// Applies an accepted merge to a bundle as it is stored now.
pub(crate) fn settle_merge(bundle: &mut TeiBundle, uid: &str, merge: &PlannedMerge) {
    let remaining: BTreeMap<String, Value> = match bundle.changes.get_mut(uid) {
        Some(changes) => {
            for (key, value) in &merge.settled {
                match changes.get_mut(key) {
                    Some(change) if &change.value == value => {
                        changes.remove(key);
                    }
                    // Changed again during the flush: the server's value is now what was sent.
                    Some(change) => change.base = value.clone(),
                    None => {}
                }
            }
            changes.iter().map(|(k, c)| (k.clone(), c.value.clone())).collect()
        }
        None => BTreeMap::new(),
    };
    if let Some(server) = &merge.server {
        if let Some(record) = bundle.record_mut(merge.kind, uid) {
            let mut fresh = server.clone();
            // Keep what the local copy holds beside the server's fields (nested lists).
            for key in ["enrollments", "events"] {
                if let Some(v) = record.get(key) {
                    fresh.insert(key.into(), v.clone());
                }
            }
            crate::merge::apply_fields(&mut fresh, &merge.settled);
            crate::merge::apply_fields(&mut fresh, &remaining);
            *record = fresh;
        }
    }
}

impl<S: KvStore, K: PasswordKdf, R: RandomSource, H: HttpClient> Engine<S, K, R, H> {
    /// Merges the tracked changes of the records to update with the server's current copies,
    /// read in a few batched requests.
    pub(crate) async fn merge_updates(
        &self,
        family: Family,
        sendable: &[Touch],
        bundles: &BTreeMap<String, TeiBundle>,
        captured: BTreeMap<String, (String, i64)>,
        now: i64,
    ) -> Result<BTreeMap<String, PlannedMerge>> {
        let updates: Vec<&Touch> = sendable
            .iter()
            .filter(|t| !t.deleted)
            .filter(|t| {
                bundles.get(&t.tei).is_some_and(|b| {
                    b.state(&t.uid) != SyncState::ToPost
                        && b.record(t.kind, &t.uid).is_some()
                        && b.changes.get(&t.uid).is_some_and(|c| !c.contains_key(WHOLE_RECORD))
                })
            })
            .collect();
        let mut out = BTreeMap::new();
        if updates.is_empty() {
            return Ok(out);
        }
        let policy = self.outbox.conflict_policy();
        let teis: Vec<String> = updates.iter().map(|t| t.tei.clone()).collect::<BTreeSet<_>>().into_iter().collect();
        let mut server: BTreeMap<String, TeiBundle> = BTreeMap::new();
        for chunk in teis.chunks(TEIS_PER_REQUEST) {
            server.extend(self.server_copies(family, chunk, now).await?);
        }
        for t in updates {
            if out.contains_key(&t.uid) {
                continue;
            }
            let Some(bundle) = bundles.get(&t.tei) else { continue };
            let changes = bundle.changes.get(&t.uid).cloned().unwrap_or_default();
            let server_record = server.get(&t.tei).and_then(|b| b.record(t.kind, &t.uid)).cloned();
            let mut merged = merge_record(&changes, server_record.as_ref());
            let hold = policy == ConflictPolicy::Hold;
            if hold {
                for (field, ..) in &merged.conflicts {
                    merged.send.remove(field);
                }
            }
            let (author, changed_at_ms) = captured.get(&t.uid).cloned().unwrap_or_default();
            let conflicts = merged
                .conflicts
                .iter()
                .map(|(field, base, server_value, device)| Conflict {
                    id: format!("conflict:{}:{}:{}", t.uid, field, now),
                    kind: t.kind,
                    record: t.uid.clone(),
                    tei: t.tei.clone(),
                    field: field.clone(),
                    base: base.clone(),
                    server: server_value.clone(),
                    device: device.clone(),
                    author: author.clone(),
                    changed_at_ms,
                    found_at_ms: now,
                    server_updated: server_updated(server_record.as_ref()),
                    held: hold,
                    source: ConflictSource::Server,
                })
                .collect();
            let mut settled = merged.send.clone();
            for key in &merged.already {
                if let Some(c) = changes.get(key) {
                    settled.insert(key.clone(), c.value.clone());
                }
            }
            let delta = if merged.send.is_empty() {
                None
            } else {
                let header = server_record.clone().or_else(|| bundle.record(t.kind, &t.uid).cloned());
                header.map(|h| delta_record(&h, &merged.send, family == Family::Legacy))
            };
            out.insert(
                t.uid.clone(),
                PlannedMerge { kind: t.kind, tei: t.tei.clone(), server: server_record, settled, delta, conflicts },
            );
        }
        Ok(out)
    }

    /// The server's current copies of some tracked entities (with enrollments and events), in
    /// the API family of the writes.
    async fn server_copies(&self, family: Family, teis: &[String], now_ms: i64) -> Result<BTreeMap<String, TeiBundle>> {
        let api = &self.config.api_base;
        let minor = self.clinic.minor_version().unwrap_or(0);
        let url = match family {
            Family::Legacy => format!(
                "{api}/trackedEntityInstances.json?trackedEntityInstance={}&ouMode=ACCESSIBLE&fields=*\
&includeDeleted=true&skipPaging=true",
                teis.join(";")
            ),
            Family::Tracker if minor >= 41 => format!(
                "{api}/tracker/trackedEntities?trackedEntities={}&orgUnitMode=ACCESSIBLE&fields=*\
&includeDeleted=true&paging=false",
                teis.join(",")
            ),
            Family::Tracker => format!(
                "{api}/tracker/trackedEntities?trackedEntity={}&ouMode=ACCESSIBLE&fields=*\
&includeDeleted=true&skipPaging=true",
                teis.join(";")
            ),
        };
        let mut body = self.get_json_at(&url, Some(now_ms)).await?;
        // The women are taken out of the answer, not copied.
        let items: Vec<Object> = match family {
            Family::Legacy => take_list(&mut body, "trackedEntityInstances")
                .ok_or_else(|| CoreError::BadResponse("no 'trackedEntityInstances' list".into()))?
                .into_iter()
                .filter_map(|v| match v {
                    Value::Object(o) => Some(o),
                    _ => None,
                })
                .collect(),
            Family::Tracker => take_tracker_items(Kind::TrackedEntity, &mut body)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|v| match v {
                    Value::Object(o) => Some(convert_owned(Kind::TrackedEntity, o, Naming::Legacy)),
                    _ => None,
                })
                .collect(),
        };
        let mut out = BTreeMap::new();
        for item in items {
            // A record the server deleted is not its current copy: the update will be refused.
            if crate::records::flag(&item, "deleted") {
                continue;
            }
            if let Ok(mut bundle) = TeiBundle::from_nested(item) {
                bundle.enrollments.retain(|e| !crate::records::flag(e, "deleted"));
                bundle.events.retain(|e| !crate::records::flag(e, "deleted"));
                out.insert(bundle.uid().to_string(), bundle);
            }
        }
        Ok(out)
    }
}
