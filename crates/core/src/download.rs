//! Download of the clinic copy: metadata first, then tracked entities with their enrollments
//! and events for each (org unit, program), page by page, through the API family the server
//! offers (legacy up to 2.41, `/api/tracker` on 2.42+). Each page and the cursor are written in
//! one transaction, so an interrupted download resumes where it stopped; later runs are
//! incremental (`lastUpdatedStartDate` / `updatedAfter`) and apply deletions. Records with
//! unsent local changes are never overwritten. A malformed tracked entity on a page (an invalid
//! UID, a value of the wrong JSON type, in it or in one of its enrollments or events) is
//! skipped whole and reported ([`DownloadReport::skipped`]); the rest of its page is stored.
//! An incremental run asks for it again once it changes on the server; a full run
//! (`full: true`) asks for it again at once.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    clinic::{CURSOR_ID, METADATA_ID},
    engine::Engine,
    error::{CoreError, Result},
    family::{take_list, take_tracker_items, Kind},
    http::{HttpClient, HttpRequest},
    index_snapshot,
    kdf::PasswordKdf,
    metadata::ClinicMetadata,
    params::percent_encode,
    random::RandomSource,
    store::{KvStore, StoreName, WriteBatch},
    time::iso_from_ms,
};

/// Incremental downloads ask for changes since the last complete run minus this margin, to
/// absorb clock differences between device and server.
pub const INCREMENTAL_MARGIN_MS: i64 = 10 * 60 * 1000;

/// What to download.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DownloadOptions {
    /// Org unit roots (default: the user's capture org units).
    #[serde(default)]
    pub org_units: Option<Vec<String>>,
    /// Programs (default: every tracker program the server lists).
    #[serde(default)]
    pub programs: Option<Vec<String>>,
    /// Page size (default 50, at most 1000).
    #[serde(default)]
    pub page_size: Option<usize>,
    /// Forget the incremental mark and download everything again.
    #[serde(default)]
    pub full: Option<bool>,
}

/// Progress of a download, reported after every page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Tracked entities stored so far in this run.
    pub done: u64,
    /// Tracked entities the server reported for the steps seen so far.
    pub total: Option<u64>,
}

/// The outcome of a download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DownloadReport {
    /// Tracked entities received and stored.
    pub tracked_entities: u64,
    /// Tracked entities removed because the server deleted them.
    pub deleted: u64,
    /// Records whose local unsent changes were kept over the server's copy.
    pub kept_local: u64,
    /// Pages fetched.
    pub pages: u64,
    /// True when only changes since the last run were asked for.
    pub incremental: bool,
    /// True when this run continued an interrupted one.
    pub resumed: bool,
    /// Tracked entities in the local copy afterwards.
    pub records: u64,
    /// Generated attribute values newly reserved on the server for offline registrations.
    pub reserved_values: u64,
    /// Tracked entities of the server's pages that could not be stored in this call: a
    /// malformed record (a missing or invalid UID, a JSON value of the wrong type) in the
    /// tracked entity or in any of its enrollments and events. Each is skipped whole (a local
    /// copy of it, if any, stays as it was) and the rest of its page is stored.
    pub skipped: u64,
    /// The first [`MAX_SKIPPED_LISTED`] skipped records, in page order: which and why.
    pub skipped_records: Vec<SkippedRecord>,
}

/// How many skipped records a [`DownloadReport`] lists (all are counted in `skipped`).
pub const MAX_SKIPPED_LISTED: usize = 100;

/// A tracked entity of a download page that could not be stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SkippedRecord {
    /// The tracked entity's UID as the server wrote it, when it is a string (it may be the
    /// invalid part); None when the item has none (or is not an object).
    pub uid: Option<String>,
    /// Why it was skipped (which record and field are wrong).
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DownloadCursor {
    steps: Vec<(String, String)>,
    step: usize,
    page: usize,
    since: Option<String>,
    run_started_ms: i64,
    done: u64,
    totals: Vec<Option<u64>>,
    complete: bool,
    last_complete_ms: Option<i64>,
    /// The server's clock (`system/info` `serverDate`, read as if UTC) when this run started,
    /// and when the last complete run started: incremental runs ask from the server's clock,
    /// never the device's (a clinic PC 10 minutes fast would miss changes for good).
    #[serde(default)]
    run_started_server_ms: Option<i64>,
    #[serde(default)]
    last_complete_server_ms: Option<i64>,
}

impl DownloadCursor {
    /// Whether an unfinished run can be continued from here: one total per step, a step still
    /// to do, a page from 1 that this run reached (each page before it was full, so brought at
    /// least one of the records counted in `done`).
    fn fits(&self) -> bool {
        self.totals.len() == self.steps.len()
            && self.step < self.steps.len()
            && self.page >= 1
            && (self.page - 1) as u64 <= self.done
    }
}

impl<S: KvStore, K: PasswordKdf, R: RandomSource, H: HttpClient> Engine<S, K, R, H> {
    pub(crate) fn auth_headers(&self) -> Vec<(String, String)> {
        let mut headers = vec![
            ("X-Requested-With".to_string(), "XMLHttpRequest".to_string()),
            ("Accept".to_string(), "application/json".to_string()),
        ];
        if let (Some(info), Some(password)) = (self.vault.session_info(), self.vault.session_password()) {
            headers.push(crate::http::basic_authorization(&info.username, &password));
        }
        headers
    }

    /// GET a JSON document from the server with the session's credentials.
    pub(crate) async fn get_json(&self, url: &str) -> Result<Value> {
        self.get_json_at(url, None).await
    }

    /// [`Self::get_json`] that also records how the server answered at `now_ms` (a busy
    /// answer's `Retry-After` holds back every flush), for the reads a flush makes.
    pub(crate) async fn get_json_at(&self, url: &str, now_ms: Option<i64>) -> Result<Value> {
        let request = HttpRequest {
            opens_session: false,
            method: "GET".into(),
            url: url.into(),
            headers: self.auth_headers(),
            body: None,
        };
        let sent = self.http.send(request).await;
        if let Some(now) = now_ms {
            self.record_answer(sent.as_ref().ok(), now);
        }
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                self.set_online(false);
                return Err(match e {
                    CoreError::ServerUnreachable(m) => CoreError::ServerUnreachable(m),
                    other => CoreError::ServerUnreachable(other.to_string()),
                });
            }
        };
        match response.status {
            200 => {
                self.set_online(true);
                serde_json::from_slice(&response.body)
                    .map_err(|e| CoreError::BadResponse(format!("{url}: not JSON ({e})")))
            }
            401 => Err(CoreError::AuthRequired),
            s if crate::backoff::is_busy_status(s) => {
                self.set_online(false);
                Err(CoreError::ServerUnreachable(format!("{url}: HTTP {s}")))
            }
            s => Err(CoreError::BadResponse(format!("{url}: HTTP {s}"))),
        }
    }

    /// Loads the clinic copy (metadata and index rows) into memory if not done since unlock.
    pub async fn ensure_clinic_loaded(&self) -> Result<()> {
        if !self.vault.is_unlocked() {
            return Err(CoreError::VaultLocked);
        }
        if self.clinic.is_loaded() {
            return Ok(());
        }
        let metadata = match self.vault.get_record(StoreName::Cache, METADATA_ID).await? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| CoreError::StorageCorrupt(format!("clinic metadata: {e}")))?,
            None => ClinicMetadata::default(),
        };
        // The index snapshot first (256 values); then, under the prefixes where the manifest
        // changed since a chunk was made, the keys and only the rows written since.
        let chunk_ids = index_snapshot::chunk_ids();
        let chunk_refs: Vec<&str> = chunk_ids.iter().map(String::as_str).collect();
        let mut snapshot = index_snapshot::Snapshot::parse(self.vault.open_copies(&chunk_refs).await);
        let stale = snapshot.settle(&self.vault.manifest_versions().await?);
        let (stored, states) = if stale.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            self.vault.open_under_except(StoreName::Index, &stale, &|fp| snapshot.holds(fp)).await?
        };
        let loaded = index_snapshot::rebuild(snapshot, stored, &states);
        let state = crate::clinic::ClinicState {
            loaded: true,
            metadata,
            damaged_rows: loaded.damaged,
            index: crate::index::ClinicIndex::of_rows(loaded.rows),
        };
        // In memory first: a capture committed while the snapshot is written below updates
        // this state, not one that would replace it afterwards.
        self.clinic.replace(state)?;
        if !loaded.chunk_writes.is_empty() {
            // Best effort: a snapshot not written (a full device) is written at a later load.
            if let Ok(batch) = index_snapshot::write_chunks(&self.vault, WriteBatch::new(), &loaded.chunk_writes) {
                let _ = self.vault.commit(batch).await;
            }
        }
        Ok(())
    }

    /// When the last complete download started (ms since epoch), if any.
    pub async fn last_download_at(&self) -> Option<i64> {
        if !self.vault.is_unlocked() {
            return None;
        }
        let bytes = self.vault.get_record(StoreName::Cache, CURSOR_ID).await.ok()??;
        serde_json::from_slice::<DownloadCursor>(&bytes).ok()?.last_complete_ms
    }

    /// Number of tracked entities in the local copy.
    pub fn record_count(&self) -> u64 {
        self.clinic.women()
    }

    async fn fetch_metadata(&self) -> Result<(ClinicMetadata, Option<i64>)> {
        let api = &self.config.api_base;
        let info = self.get_json(&format!("{api}/system/info")).await?;
        let server_now = info.get("serverDate").and_then(Value::as_str).and_then(crate::time::ms_from_iso);
        let mut meta = ClinicMetadata {
            server_version: info.get("version").and_then(Value::as_str).unwrap_or_default().to_string(),
            ..Default::default()
        };
        let profile = self.vault.session_info().and_then(|s| s.profile).ok_or(CoreError::VaultLocked)?;
        meta.capture_org_units = profile.organisation_units.iter().map(|o| o.id.clone()).collect();
        meta.search_org_units = profile.tei_search_organisation_units.iter().map(|o| o.id.clone()).collect();
        let roots: BTreeSet<String> = profile
            .organisation_units
            .iter()
            .chain(profile.tei_search_organisation_units.iter())
            .map(|o| o.id.clone())
            .collect();
        for root in roots {
            let url = format!(
                "{api}/organisationUnits?fields=id,path,displayName&paging=false&filter=path:like:{}",
                percent_encode(&root)
            );
            let body = self.get_json(&url).await?;
            meta.add_org_units(body.to_string().as_bytes())?;
            // The root itself may not match a `path:like` filter on every server; its
            // ancestors name the root's place in the offline answers to org unit reads.
            let own = self
                .get_json(&format!(
                    "{api}/organisationUnits/{root}?fields=id,path,displayName,ancestors[id,path,displayName]"
                ))
                .await?;
            meta.add_org_units(serde_json::json!({ "organisationUnits": [own] }).to_string().as_bytes())?;
        }
        let programs = self
            .get_json(&format!(
                "{api}/programs?paging=false&fields=id,displayName,programType,trackedEntityType[id],\
programTrackedEntityAttributes[displayInList,trackedEntityAttribute[id,displayName,valueType,generated]]"
            ))
            .await?;
        meta.set_programs(programs.to_string().as_bytes())?;
        Ok((meta, server_now))
    }

    fn page_url(
        &self,
        meta: &ClinicMetadata,
        ou: &str,
        program: &str,
        page: usize,
        page_size: usize,
        since: Option<&str>,
    ) -> String {
        let api = &self.config.api_base;
        let minor = meta.minor_version();
        let since_param = |name: &str| since.map(|s| format!("&{name}={}", percent_encode(s))).unwrap_or_default();
        if minor >= 42 {
            format!(
                "{api}/tracker/trackedEntities?orgUnits={ou}&orgUnitMode=DESCENDANTS&program={program}&fields=*\
&includeDeleted=true&totalPages=true&page={page}&pageSize={page_size}{}",
                since_param("updatedAfter")
            )
        } else {
            format!(
                "{api}/trackedEntityInstances.json?ou={ou}&ouMode=DESCENDANTS&program={program}&fields=*\
&includeDeleted=true&totalPages=true&page={page}&pageSize={page_size}{}",
                since_param("lastUpdatedStartDate")
            )
        }
    }

    /// Downloads (or refreshes) the clinic copy. `progress` is called after every page.
    pub async fn download(
        &self,
        options: DownloadOptions,
        now_ms: i64,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<DownloadReport> {
        // Never with a password the server refused (it would count towards a lockout).
        if self.password_refused().await {
            return Err(CoreError::AuthRequired);
        }
        let outcome = self.download_pages(options, now_ms, progress).await;
        if matches!(outcome, Err(CoreError::AuthRequired)) && self.vault.session_password().is_some() {
            self.mark_password_refused().await?;
        }
        outcome
    }

    async fn download_pages(
        &self,
        options: DownloadOptions,
        now_ms: i64,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<DownloadReport> {
        self.ensure_clinic_loaded().await?;
        let page_size = options.page_size.unwrap_or(50).clamp(1, 1000);
        let (meta, server_now) = self.fetch_metadata().await?;
        let roots = options.org_units.clone().unwrap_or_else(|| meta.capture_org_units.clone());
        let programs = options.programs.clone().unwrap_or_else(|| meta.programs.iter().map(|p| p.id.clone()).collect());
        // A UID the app gave is its mistake; one the server gave (the user's org units, the
        // program list) is the server's answer that cannot be used.
        for (uids, given) in [(&roots, options.org_units.is_some()), (&programs, options.programs.is_some())] {
            if let Some(uid) = uids.iter().find(|u| !crate::records::is_uid(u)) {
                return Err(if given {
                    CoreError::BadInput(format!("not a UID: {uid:?}"))
                } else {
                    CoreError::BadResponse(format!(
                        "the server named an org unit or program that is not a UID: {uid:?}"
                    ))
                });
            }
        }
        let steps: Vec<(String, String)> =
            roots.iter().flat_map(|ou| programs.iter().map(move |p| (ou.clone(), p.clone()))).collect();

        // A cursor that does not parse, or an unfinished one that does not fit its own steps
        // (damaged storage), is ignored: the run starts over in full.
        let previous: Option<DownloadCursor> = match self.vault.get_record(StoreName::Cache, CURSOR_ID).await? {
            Some(b) => serde_json::from_slice::<DownloadCursor>(&b).ok().filter(|c| c.complete || c.fits()),
            None => None,
        };
        let resumed = previous.as_ref().is_some_and(|c| !c.complete && c.steps == steps);
        let mut cursor = match previous {
            Some(c) if !c.complete && c.steps == steps => c,
            other => {
                let full = options.full == Some(true);
                let last = if full { None } else { other.as_ref().and_then(|c| c.last_complete_ms) };
                let last_server = if full { None } else { other.as_ref().and_then(|c| c.last_complete_server_ms) };
                // Since the server's clock at the last complete run when known (older cursors:
                // the device's), with a margin for a run that overlapped changes being saved.
                let since = last_server.or(last).map(|ms| iso_from_ms(ms.saturating_sub(INCREMENTAL_MARGIN_MS)));
                DownloadCursor {
                    totals: vec![None; steps.len()],
                    steps: steps.clone(),
                    step: 0,
                    page: 1,
                    since,
                    run_started_ms: now_ms,
                    done: 0,
                    complete: false,
                    last_complete_ms: last,
                    run_started_server_ms: server_now,
                    last_complete_server_ms: last_server,
                }
            }
        };
        let metadata_batch = self.vault.seal_into(
            WriteBatch::new(),
            StoreName::Cache,
            METADATA_ID,
            &serde_json::to_vec(&meta).map_err(|e| CoreError::BadInput(e.to_string()))?,
        )?;
        self.vault.commit(metadata_batch).await?;
        self.clinic.update(|c| c.metadata = meta.clone());

        let mut report = DownloadReport {
            tracked_entities: 0,
            deleted: 0,
            kept_local: 0,
            pages: 0,
            incremental: cursor.since.is_some(),
            resumed,
            records: 0,
            reserved_values: 0,
            skipped: 0,
            skipped_records: Vec::new(),
        };
        let family_is_tracker = meta.minor_version() >= 42;
        // The next page is fetched while this one is merged and committed (one page ahead):
        // the server's time and the device's overlap instead of adding up. A failed fetch of
        // the next page shows once this one is stored, so the cursor keeps what was done.
        let mut fetched_ahead: Option<Result<Value>> = None;
        while cursor.step < cursor.steps.len() {
            // The page's items are taken out of the answer, not copied (a page is 50 women with
            // every enrollment and event).
            let mut body = match fetched_ahead.take() {
                Some(body) => body?,
                None => {
                    let (ou, program) = &cursor.steps[cursor.step];
                    self.get_json(&self.page_url(&meta, ou, program, cursor.page, page_size, cursor.since.as_deref()))
                        .await?
                }
            };
            report.pages += 1;
            // Every item of the page, as the server sent it: a malformed one is skipped (and
            // reported) by `apply_server_page`, never dropped silently, and counts for paging.
            let (items, total) = if family_is_tracker {
                // A 200 without the list (another JSON) is not an empty page: taking it for one
                // would end the run as complete and move the incremental mark past records
                // never received.
                let total = body
                    .get("pager")
                    .and_then(|p| p.get("total"))
                    .or_else(|| body.get("total"))
                    .and_then(Value::as_u64);
                let items = take_tracker_items(Kind::TrackedEntity, &mut body)
                    .ok_or_else(|| CoreError::BadResponse("no 'trackedEntities' (or 'instances') list".into()))?;
                (items, total)
            } else {
                let total = body.get("pager").and_then(|p| p.get("total")).and_then(Value::as_u64);
                let items = take_list(&mut body, "trackedEntityInstances")
                    .ok_or_else(|| CoreError::BadResponse("no 'trackedEntityInstances' list".into()))?;
                (items, total)
            };
            if cursor.page == 1 {
                cursor.totals[cursor.step] = total;
            }
            let received = items.len();
            let last_page =
                received < page_size || total.is_some_and(|t| cursor.page.saturating_mul(page_size) as u64 >= t);
            cursor.done = cursor.done.saturating_add(received as u64);
            if last_page {
                cursor.step += 1;
                cursor.page = 1;
            } else {
                cursor.page = cursor.page.saturating_add(1);
            }
            if cursor.step >= cursor.steps.len() {
                cursor.complete = true;
                cursor.last_complete_ms = Some(cursor.run_started_ms);
                cursor.last_complete_server_ms = cursor.run_started_server_ms;
            }
            let next_url = cursor.steps.get(cursor.step).map(|(ou, program)| {
                self.page_url(&meta, ou, program, cursor.page, page_size, cursor.since.as_deref())
            });
            let cursor_bytes = serde_json::to_vec(&cursor).map_err(|e| CoreError::BadInput(e.to_string()))?;
            let store_page = async {
                // The page is merged into the local copy as it is now, under the one writer.
                let _writer = self.writer.lock().await;
                let (batch, mut applied) = self.apply_server_page(items, family_is_tracker, now_ms).await?;
                let batch = self.vault.seal_into(batch, StoreName::Cache, CURSOR_ID, &cursor_bytes)?;
                self.vault.commit(batch).await?;
                // The index in memory follows the commit before the writer is let go.
                self.clinic.update(|c| {
                    for uid in &applied.removed {
                        c.index.remove(uid);
                    }
                    for row in std::mem::take(&mut applied.rows) {
                        c.index.upsert(row);
                    }
                });
                Ok::<_, CoreError>(applied)
            };
            let fetch_next = async {
                match &next_url {
                    Some(url) => Some(self.get_json(url).await),
                    None => None,
                }
            };
            let (stored, next) = futures::future::join(store_page, fetch_next).await;
            let applied = stored?;
            fetched_ahead = next;
            report.tracked_entities += applied.stored;
            report.deleted += applied.deleted;
            report.kept_local += applied.kept_local;
            report.skipped += applied.skipped.len() as u64;
            let room = MAX_SKIPPED_LISTED.saturating_sub(report.skipped_records.len());
            report.skipped_records.extend(applied.skipped.into_iter().take(room));
            let known: Option<u64> = cursor.totals.iter().try_fold(0u64, |acc, t| t.map(|t| acc.saturating_add(t)));
            progress(Progress { done: cursor.done, total: known.or(total) });
        }
        report.records = self.record_count();
        // Values for generated attributes, reserved while online, so registration works offline.
        report.reserved_values = self.top_up_reserved_values(&meta, now_ms).await.unwrap_or(0);
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored cursor of a download (resumed after a reload or a lost network), and that a
    /// cursor written before the server-clock fields still reads.
    #[test]
    fn the_download_cursor_format_is_stable() {
        let cursor = DownloadCursor {
            steps: vec![("OuBaniNaim1".into(), "PrMchProg01".into()), ("OuSaeerCli1".into(), "PrMchProg01".into())],
            step: 1,
            page: 3,
            since: Some("2026-12-01T00:00:00.000".into()),
            run_started_ms: 1_764_900_000_000,
            done: 120,
            totals: vec![Some(80), None],
            complete: false,
            last_complete_ms: Some(1_764_800_000_000),
            run_started_server_ms: Some(1_764_899_990_000),
            last_complete_server_ms: None,
        };
        insta::assert_snapshot!("download_cursor", serde_json::to_string_pretty(&cursor).unwrap());
        let older = r#"{"steps":[["OuBaniNaim1","PrMchProg01"]],"step":0,"page":1,"since":null,"runStartedMs":1,"done":0,"totals":[null],"complete":false,"lastCompleteMs":null}"#;
        let read: DownloadCursor = serde_json::from_str(older).unwrap();
        assert_eq!(read.run_started_server_ms, None);
    }
}
