//! Flushing the outbox: pending entries, in capture order, compiled into bulk requests in
//! dependency order (tracked entities, then enrollments, then events, then deletes), each
//! record sent in its current local state with its author as `storedBy` and
//! `CREATE_AND_UPDATE` with known UIDs, so a replay after a lost response creates nothing
//! twice. Each server answer is mapped back per record: accepted records are done; refused
//! ones (and what depends on them) are kept as failures with the server's reasons; a network
//! error, 5xx or timeout stops the flush to retry later; a 401 stops it for a new login,
//! except an ownership refusal, which fails only the records concerned.
//!
//! Split by job: [`crate::flush_requests`] compiles a segment into requests,
//! [`crate::flush_merge`] merges updates with the server's copies, [`crate::error_hunt`] finds
//! the record a server error comes from, [`crate::answer`] reads the server's answers. This
//! file keeps the flush itself (one pass over the outbox: segments, sending, settling each
//! answer into the local copy and the outbox), about 930 lines: the sending loop is one state
//! machine whose steps share the segment's state, and splitting it further would pass that
//! state between files rather than make it clearer.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::answer::{interpret, Verdict};
use crate::{
    answer::{message_of, raw_accepted},
    backoff::is_busy_status,
    clinic::{bundle_id, parse_bundle},
    engine::Engine,
    error::{CoreError, Result},
    error_hunt::{answer_text, blame, halves, ErrorHunt, HuntStep, QueuedRequest},
    family::Kind,
    flush_merge::{settle_merge, PlannedMerge},
    flush_requests::{plan_segment, replan_without, RecordSource},
    http::{HttpClient, HttpRequest},
    kdf::PasswordKdf,
    merge::Conflict,
    outbox::{EntryPayload, EntryState, OutboxEntry},
    random::RandomSource,
    records::{text, Object, SyncState, TeiBundle},
    store::{KvStore, StoreName, WriteBatch},
    write_effect::Touch,
    writes::Family,
};

/// Whose entries a flush sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FlushScope {
    /// Every author's tracker records, under the session of whoever is logged in, each with its
    /// author as `storedBy` (default). Raw requests wait for their own author's session.
    #[default]
    All,
    /// Only the logged-in user's own entries.
    Author,
}

impl FlushScope {
    /// The scope a page or the app named (`all`, the default when none is named, or `author`).
    pub fn parse(name: Option<&str>) -> Result<Self> {
        match name {
            None | Some("all") => Ok(FlushScope::All),
            Some("author") => Ok(FlushScope::Author),
            Some(other) => Err(CoreError::BadInput(format!("flushScope must be 'all' or 'author', not {other:?}"))),
        }
    }
}

/// How often a flush with legacy work waiting asks the server its version (an upgrade to 2.42
/// removes the legacy endpoints).
pub const VERSION_CHECK_MS: i64 = 10 * 60 * 1000;

/// How many times the report of an async import job is asked for before the flush gives up
/// (the records stay queued).
pub const JOB_REPORT_TRIES: usize = 5;

/// The outcome of a flush.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct FlushReport {
    /// Entries the server accepted.
    pub sent: u64,
    /// Entries the server refused in this flush.
    pub failed: u64,
    /// Entries still pending (`BACKING_OFF`: entries stored, pending or failed; not opened).
    pub remaining: u64,
    /// Requests made.
    pub requests: u64,
    /// Why the flush stopped early (`SERVER_UNREACHABLE`, `SERVER_BUSY`, `AUTH_REQUIRED`;
    /// `BACKING_OFF` from [`Engine::flush_if_due`]), if it did.
    pub stopped: Option<String>,
    /// Authors whose entries wait (author scope).
    pub waiting_for: Vec<String>,
    /// `SERVER_BUSY`: how long the server asked to be left alone (`Retry-After`), in ms.
    pub retry_after_ms: Option<u64>,
    /// When the flush stopped because the server was busy or out of reach (or, from
    /// [`Engine::flush_if_due`], `BACKING_OFF`: it did not start): in how many ms the next
    /// automatic flush is due, by the device's backoff shared by every trigger.
    pub next_try_in_ms: Option<u64>,
}

impl FlushReport {
    /// Whether entries still wait for the server (out of reach, busy, or the device backing
    /// off): a trigger that can come again later (Background Sync) should.
    pub fn waits_for_server(&self) -> bool {
        self.remaining > 0
            && matches!(self.stopped.as_deref(), Some("SERVER_UNREACHABLE" | "SERVER_BUSY" | "BACKING_OFF"))
    }
}

/// A PUT of one key of the dataStore or the userDataStore (`dataStore/{namespace}/{key}`).
pub fn is_key_value_put(method: &str, url: &str, api_path: &str) -> bool {
    let target = crate::params::Target::parse(url);
    let Some(relative) = target.relative_to(api_path) else { return false };
    let parts: Vec<&str> = relative.trim_matches('/').split('/').collect();
    method.eq_ignore_ascii_case("PUT")
        && parts.len() == 3
        && matches!(parts[0], "dataStore" | "userDataStore")
        && parts.iter().all(|p| !p.is_empty())
}

/// A delete the server answers with "does not exist" has reached its goal: the record was
/// never created there (registered and deleted offline) or is gone already (a replay).
fn already_gone_is_done(verdict: Verdict) -> Verdict {
    let Verdict::PerRecord { mut ok, refused, warnings } = verdict else { return verdict };
    let gone = |reasons: &Vec<String>| {
        reasons.iter().all(|r| {
            ["E1063", "E1081", "E1032", "not present in the system", "does not exist", "do not exist"]
                .iter()
                .any(|needle| r.contains(needle))
        })
    };
    let mut still = BTreeMap::new();
    for (uid, reasons) in refused {
        if gone(&reasons) {
            ok.insert(uid);
        } else {
            still.insert(uid, reasons);
        }
    }
    Verdict::PerRecord { ok, refused: still, warnings }
}

impl<S: KvStore, K: PasswordKdf, R: RandomSource, H: HttpClient> Engine<S, K, R, H> {
    /// Sends pending outbox entries. See the module documentation for the rules.
    pub async fn flush(
        &self,
        scope: FlushScope,
        now_ms: i64,
        progress: &mut dyn FnMut(&FlushReport),
    ) -> Result<FlushReport> {
        let me = self.vault.session_info().map(|s| s.username).ok_or(CoreError::VaultLocked)?;
        self.ensure_clinic_loaded().await?;
        let mut report = FlushReport::default();
        // Nothing goes out with a password the server refused, nor while the server asked to be
        // left alone (every trigger, the nurse's own included).
        let refused_password = self.password_refused().await;
        let busy = self.busy_wait_ms(now_ms);
        if refused_password || busy.is_some() {
            report.stopped = Some(if refused_password { "AUTH_REQUIRED" } else { "SERVER_BUSY" }.into());
            report.retry_after_ms = busy.filter(|_| !refused_password);
            report.next_try_in_ms = self.flush_wait_ms(now_ms).filter(|_| !refused_password);
            report.remaining = self.outbox_counts().await?.pending;
            return Ok(report);
        }
        if let Some(early) = self.unanswered_before_opening(&mut report, now_ms).await? {
            return Ok(early);
        }
        let entries = self.outbox_entries().await?;
        // Records refused before (failed entries) hold back what depends on them.
        let mut failed_records: BTreeSet<String> = BTreeSet::new();
        let mut failed_teis: BTreeSet<String> = BTreeSet::new();
        for e in entries.iter().filter(|e| !e.is_pending()) {
            if let EntryPayload::Touches { touches } = &e.payload {
                for t in touches {
                    failed_records.insert(t.uid.clone());
                    if t.kind == Kind::TrackedEntity {
                        failed_teis.insert(t.tei.clone());
                    }
                }
            }
        }
        // Author scope: a record first touched (usually created) by another author's unsent
        // entry waits for that author, and so does everything under it. One author per record
        // and parents before children: no two nurses ever wait for each other.
        let mut first_author: BTreeMap<String, String> = BTreeMap::new();
        let mut waiting: BTreeSet<String> = BTreeSet::new();
        if scope == FlushScope::Author {
            for e in entries.iter().filter(|e| e.is_pending()) {
                if e.author != me {
                    waiting.insert(e.author.clone());
                }
                if let EntryPayload::Touches { touches } = &e.payload {
                    for t in touches {
                        first_author.entry(t.uid.clone()).or_insert_with(|| e.author.clone());
                    }
                }
            }
        }
        let others_first = |uid: &str| first_author.get(uid).is_some_and(|a| a != &me);
        // A raw request (a write the library does not model, e.g. a `userDataStore` key) names
        // no author: the server applies it as whoever sends it. It waits for its author's own
        // session, whatever the scope; tracker records flow with their author as `storedBy`.
        let is_others_raw = |e: &OutboxEntry| matches!(e.payload, EntryPayload::Raw { .. }) && e.author != me;
        for e in entries.iter().filter(|e| e.is_pending() && is_others_raw(e)) {
            waiting.insert(e.author.clone());
        }
        let pending: Vec<&OutboxEntry> = entries
            .iter()
            .filter(|e| e.is_pending())
            .filter(|e| scope == FlushScope::All || e.author == me)
            .filter(|e| !is_others_raw(e))
            .collect();
        report.waiting_for = waiting.into_iter().collect();

        // Segments: runs of touch entries of one family; each raw entry alone.
        let mut segments: Vec<Vec<&OutboxEntry>> = Vec::new();
        for e in &pending {
            let joins = match (segments.last().and_then(|s| s.last()), &e.payload) {
                (Some(prev), EntryPayload::Touches { .. }) => {
                    matches!(prev.payload, EntryPayload::Touches { .. }) && prev.family == e.family
                }
                _ => false,
            };
            if joins {
                if let Some(s) = segments.last_mut() {
                    s.push(e);
                }
            } else {
                segments.push(vec![e]);
            }
        }

        let api = self.config.api_base.clone();
        let tracker_only = self.server_has_only_tracker_api(&pending, now_ms).await;
        let segments = if self.password_refused().await {
            report.stopped = Some("AUTH_REQUIRED".into());
            Vec::new()
        } else {
            segments
        };
        'segments: for segment in segments {
            if let EntryPayload::Raw { method, url, content_type, body } = &segment[0].payload {
                let entry = segment[0];
                let request = HttpRequest {
                    opens_session: false,
                    method: method.clone(),
                    url: url.clone(),
                    headers: {
                        let mut h = self.auth_headers();
                        h.push(("Content-Type".into(), content_type.clone()));
                        h
                    },
                    body: if body.0.is_empty() { None } else { Some(body.0.clone()) },
                };
                report.requests += 1;
                let mut response = self.http.send(request.clone()).await.ok();
                // A key-value PUT means "set this key" (the app PUTs, then POSTs when the key is
                // new); queued offline, it creates the key when the server has none.
                if response.as_ref().is_some_and(|r| r.status == 404) && is_key_value_put(method, url, &self.api_path())
                {
                    report.requests += 1;
                    let mut post = request;
                    post.method = "POST".into();
                    post.opens_session = false;
                    response = self.http.send(post).await.ok();
                }
                self.record_answer(response.as_ref(), now_ms);
                match response {
                    None => {
                        report.stopped = Some("SERVER_UNREACHABLE".into());
                        break 'segments;
                    }
                    Some(r) if is_busy_status(r.status) => {
                        report.stopped = Some("SERVER_BUSY".into());
                        report.retry_after_ms = self.busy_wait_ms(now_ms);
                        break 'segments;
                    }
                    Some(r) if r.status == 408 => {
                        report.stopped = Some("SERVER_UNREACHABLE".into());
                        break 'segments;
                    }
                    Some(r) if r.status == 401 => {
                        self.mark_password_refused().await?;
                        report.stopped = Some("AUTH_REQUIRED".into());
                        break 'segments;
                    }
                    Some(r) if raw_accepted(&r) => {
                        self.vault
                            .store()
                            .write(self.vault.delete_into(WriteBatch::new(), StoreName::Outbox, &entry.id())?)
                            .await?;
                        report.sent += 1;
                    }
                    // A 2xx that is not the server's (a portal's HTML): not reached.
                    Some(r) if (200..300).contains(&r.status) => {
                        report.stopped = Some("SERVER_UNREACHABLE".into());
                        break 'segments;
                    }
                    Some(r) => {
                        let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                        self.mark_failed(entry, vec![message_of(&body, r.status)], now_ms).await?;
                        report.failed += 1;
                    }
                }
                progress(&report);
                continue;
            }

            // Tracker records of this segment, loaded once.
            // Rendered in the API family of the server as it is now: a server upgraded to
            // 2.42 while the clinic was offline has no legacy endpoints any more.
            let family = if tracker_only { Family::Tracker } else { segment[0].family };
            let mut touches: Vec<Touch> = Vec::new();
            for e in &segment {
                if let EntryPayload::Touches { touches: t } = &e.payload {
                    touches.extend(t.iter().cloned());
                }
            }
            let teis: BTreeSet<String> = touches.iter().map(|t| t.tei.clone()).collect();
            let mut bundles = BTreeMap::new();
            // One read for the segment's records (one transaction, opened together), not one each.
            for (tei, bytes) in self.read_bundles(teis.iter()).await? {
                bundles.insert(tei.clone(), parse_bundle(&bytes)?);
            }
            // Records held back: author scope, or their tracked entity / parent was refused.
            let blocked = |t: &Touch, failed: &BTreeSet<String>, failed_teis: &BTreeSet<String>| -> bool {
                let enrollment = (t.kind == Kind::Event)
                    .then(|| {
                        bundles
                            .get(&t.tei)
                            .and_then(|b| b.events.iter().find(|e| text(e, "event") == Some(t.uid.as_str())))
                            .and_then(|e| text(e, "enrollment"))
                    })
                    .flatten();
                if others_first(&t.uid)
                    || (t.kind != Kind::TrackedEntity && others_first(&t.tei))
                    || enrollment.is_some_and(others_first)
                {
                    return true;
                }
                if t.kind != Kind::TrackedEntity && failed_teis.contains(&t.tei) {
                    return true;
                }
                enrollment.is_some_and(|e| failed.contains(e))
            };
            let sendable: Vec<Touch> =
                touches.iter().filter(|t| !blocked(t, &failed_records, &failed_teis)).cloned().collect();
            // A record with a queued delete (its own, or its tracked entity's; deletes go last)
            // has nothing else to send: a woman registered and deleted offline is never created
            // on the server.
            let deletes: Vec<&Touch> = pending_touches(&pending).filter(|t| t.deleted).collect();
            let deletes_queued: BTreeSet<&str> = deletes.iter().map(|t| t.uid.as_str()).collect();
            let deleted_teis: BTreeSet<&str> =
                deletes.iter().filter(|t| t.kind == Kind::TrackedEntity).map(|t| t.uid.as_str()).collect();
            let (covered, sendable): (Vec<Touch>, Vec<Touch>) = sendable.into_iter().partition(|t| {
                !t.deleted && (deletes_queued.contains(t.uid.as_str()) || deleted_teis.contains(t.tei.as_str()))
            });
            // Updates: the server's current copies first (a few batched reads), then the merge.
            let captured = entry_times(&segment);
            let authors: BTreeMap<String, String> =
                captured.iter().map(|(uid, (author, _))| (uid.clone(), author.clone())).collect();
            let merges = match self.merge_updates(family, &sendable, &bundles, captured, now_ms).await {
                Ok(m) => m,
                Err(CoreError::AuthRequired) => {
                    self.mark_password_refused().await?;
                    report.stopped = Some("AUTH_REQUIRED".into());
                    break 'segments;
                }
                // No usable answer (down, 5xx, a portal's HTML): not reached, tried again later;
                // a busy server's Retry-After holds.
                Err(CoreError::ServerUnreachable(_)) | Err(CoreError::BadResponse(_)) => {
                    report.retry_after_ms = self.busy_wait_ms(now_ms);
                    let busy = report.retry_after_ms.is_some();
                    report.stopped = Some(if busy { "SERVER_BUSY" } else { "SERVER_UNREACHABLE" }.into());
                    break 'segments;
                }
                Err(other) => return Err(other),
            };
            // Conflicts are kept before anything is sent: an answer lost after the server
            // committed must not lose the record of the value it overwrote.
            self.log_conflicts(merges.values().flat_map(|m| m.conflicts.iter().cloned()).collect()).await?;
            let deltas: BTreeMap<String, Option<Object>> =
                merges.iter().map(|(uid, m)| (uid.clone(), m.delta.clone())).collect();
            let source = RecordSource { bundles: &bundles, deltas: &deltas, authors: &authors };
            let minor = self.clinic.minor_version().unwrap_or(40);
            let plan = plan_segment(&api, family, minor, &sendable, &source);
            // A record missing from the local copy was lost from storage: never counted as sent,
            // kept as a failure for the user.
            let mut accepted: BTreeSet<String> = covered.iter().map(|t| t.uid.clone()).collect();
            let mut refused: BTreeMap<String, Vec<String>> = BTreeMap::new();
            // Updates the server already holds entirely: nothing to send.
            accepted.extend(merges.iter().filter(|(_, m)| m.delta.is_none()).map(|(uid, _)| uid.clone()));
            for t in sendable.iter().filter(|t| !t.deleted && !source.exists(t)) {
                refused
                    .entry(t.uid.clone())
                    .or_default()
                    .push("the record is missing from this device's copy (damaged storage?): it was not sent".into());
            }
            let mut warnings: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let mut stopped = false;
            // Records the server failed on (HTTP 500) in this flush, with its answer: their
            // entries count an error, their dependents wait, the rest goes on.
            let mut server_errors: BTreeMap<String, String> = BTreeMap::new();
            let mut hunt = ErrorHunt::default();
            let limit = self.outbox.server_error_limit();
            // Blames the record the hunt found the server failing on (see `blame`), in this segment.
            let blame_here = |uid: &str, answer, errors: &mut _, records: &mut _, teis: &mut _| {
                blame(uid, answer, &segment, &touches, errors, records, teis, limit)
            };
            let mut queue: VecDeque<QueuedRequest> =
                plan.into_iter().map(|request| QueuedRequest { request, half: None }).collect();
            while let Some(QueuedRequest { request, half }) = queue.pop_front() {
                // Children of a record refused earlier in this flush wait as failures too.
                let skip: Vec<String> = request
                    .uids
                    .iter()
                    .filter(|u| {
                        touches.iter().find(|t| &t.uid == *u).is_some_and(|t| blocked(t, &failed_records, &failed_teis))
                    })
                    .cloned()
                    .collect();
                for u in &skip {
                    refused.entry(u.clone()).or_default().push("waits for a record the server refused".into());
                }
                // Children of a record the server failed on in this flush stay queued.
                let held: BTreeSet<String> = server_errors.keys().cloned().collect();
                let held_teis: BTreeSet<String> = touches
                    .iter()
                    .filter(|t| t.kind == Kind::TrackedEntity && held.contains(&t.uid))
                    .map(|t| t.tei.clone())
                    .collect();
                let waits: Vec<String> = request
                    .uids
                    .iter()
                    .filter(|u| !skip.contains(u))
                    .filter(|u| touches.iter().find(|t| &t.uid == *u).is_some_and(|t| blocked(t, &held, &held_teis)))
                    .cloned()
                    .collect();
                let left_out: Vec<String> = skip.iter().chain(waits.iter()).cloned().collect();
                if left_out.len() == request.uids.len() {
                    continue;
                }
                let request = if left_out.is_empty() { request } else { replan_without(&request, &left_out) };
                report.requests += 1;
                let http = HttpRequest {
                    opens_session: false,
                    method: request.method.clone(),
                    url: request.url.clone(),
                    headers: {
                        let mut h = self.auth_headers();
                        h.push(("Content-Type".into(), request.content_type.clone()));
                        h
                    },
                    body: Some(request.body.clone()),
                };
                let response = self.http.send(http).await.ok();
                self.record_answer(response.as_ref(), now_ms);
                let status = response.as_ref().map(|r| r.status);
                // Too large for the server (or a proxy before it): halves, down to one record.
                if status == Some(413) {
                    if request.uids.len() > 1 {
                        let (a, b) = halves(&request);
                        queue.push_front(QueuedRequest { request: b, half: None });
                        queue.push_front(QueuedRequest { request: a, half: None });
                    } else {
                        for uid in &request.uids {
                            failed_records.insert(uid.clone());
                            // As for a refusal: her enrollments and visits wait with her.
                            if let Some(t) = touches.iter().find(|t| &t.uid == uid && t.kind == Kind::TrackedEntity) {
                                failed_teis.insert(t.tei.clone());
                            }
                            refused.entry(uid.clone()).or_default().push(
                                "too large for the server (HTTP 413): ask the administrator to raise its upload limit"
                                    .into(),
                            );
                        }
                    }
                    continue;
                }
                // An internal server error: find the record it fails on, by halves, the other
                // half being the evidence that the server itself works.
                if status == Some(500) {
                    let answer = response.as_ref().map(answer_text).unwrap_or_default();
                    // One record alone, nothing imported yet: one light read tells whether the
                    // server works (then the record is the culprit) or fails as a whole.
                    let step = match hunt.failed(request, half, answer) {
                        HuntStep::Probe(uid, answer) if self.server_answers(&mut report, now_ms).await => {
                            HuntStep::Culprit(uid, answer)
                        }
                        HuntStep::Probe(..) => HuntStep::ServerFailing,
                        other => other,
                    };
                    match step {
                        HuntStep::Wait => {}
                        HuntStep::Send(a, b) => {
                            queue.push_front(*b);
                            queue.push_front(*a);
                        }
                        HuntStep::Culprit(uid, answer) => {
                            blame_here(&uid, answer, &mut server_errors, &mut failed_records, &mut failed_teis)
                        }
                        HuntStep::Probe(..) | HuntStep::ServerFailing => {
                            report.stopped = Some("SERVER_BUSY".into());
                            report.retry_after_ms = self.busy_wait_ms(now_ms);
                            stopped = true;
                            break;
                        }
                    }
                    continue;
                }
                if status.is_some_and(is_busy_status) {
                    report.stopped = Some("SERVER_BUSY".into());
                    report.retry_after_ms = self.busy_wait_ms(now_ms);
                    stopped = true;
                    break;
                }
                let mut verdict = interpret(response.as_ref(), &request.uids, request.family);
                if request.is_delete() {
                    verdict = already_gone_is_done(verdict);
                }
                // A legacy endpoint answering 404 for the whole request: the server was upgraded
                // (2.42 has none). Nothing is refused; the next flush asks its version again.
                if request.family == Family::Legacy && response.as_ref().is_some_and(|r| r.status == 404) {
                    self.contact.forget_version_check();
                    verdict = Verdict::Retry("the legacy endpoint is gone (a server upgrade?)".into());
                }
                if let Verdict::Job { location } = &verdict {
                    verdict = self.job_report(location, &request.uids, &mut report).await;
                }
                match verdict {
                    Verdict::Job { .. } | Verdict::Retry(_) => {
                        report.stopped = Some("SERVER_UNREACHABLE".into());
                        stopped = true;
                        break;
                    }
                    Verdict::AuthRequired => {
                        self.mark_password_refused().await?;
                        report.stopped = Some("AUTH_REQUIRED".into());
                        stopped = true;
                        break;
                    }
                    Verdict::PerRecord { ok, refused: r, warnings: w } => {
                        for (uid, reasons) in w {
                            warnings.entry(uid).or_default().extend(reasons);
                        }
                        for (uid, reasons) in r {
                            failed_records.insert(uid.clone());
                            if let Some(t) = touches.iter().find(|t| t.uid == uid && t.kind == Kind::TrackedEntity) {
                                failed_teis.insert(t.tei.clone());
                            }
                            refused.entry(uid).or_default().extend(reasons);
                        }
                        accepted.extend(ok);
                        match hunt.answered(half) {
                            Some(HuntStep::Send(a, b)) => {
                                queue.push_front(*b);
                                queue.push_front(*a);
                            }
                            Some(HuntStep::Culprit(uid, answer)) => {
                                blame_here(&uid, answer, &mut server_errors, &mut failed_records, &mut failed_teis)
                            }
                            _ => {}
                        }
                    }
                }
            }
            // Settle the entries of this segment in one transaction.
            let settled = self.settle_segment(&segment, &accepted, &refused, &merges, &server_errors, now_ms).await?;
            self.keep_warnings(&segment, &accepted, &warnings, now_ms).await?;
            report.sent += settled.0;
            report.failed += settled.1;
            progress(&report);
            if stopped {
                break 'segments;
            }
        }
        // The kept counts change only when an entry was sent or refused; a try that settled
        // nothing (the server did not answer) keeps them, so the next write does not recount.
        if report.sent + report.failed > 0 {
            self.outbox_changed();
        }
        report.remaining = self.outbox_counts().await?.pending;
        if report.stopped.is_none() {
            self.contact.synced_at(now_ms);
        }
        if matches!(report.stopped.as_deref(), Some("SERVER_BUSY" | "SERVER_UNREACHABLE")) {
            report.next_try_in_ms = self.flush_wait_ms(now_ms);
        }
        Ok(report)
    }

    /// The stored records of `teis` that exist, read in one transaction and opened together.
    async fn read_bundles<'a>(&self, teis: impl Iterator<Item = &'a String>) -> Result<Vec<(&'a String, Vec<u8>)>> {
        let teis: Vec<&String> = teis.collect();
        let ids: Vec<String> = teis.iter().map(|t| bundle_id(t)).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let values = self.vault.get_records(StoreName::Records, &refs).await?;
        Ok(teis.into_iter().zip(values).filter_map(|(tei, bytes)| Some((tei, bytes?))).collect())
    }

    /// The flush of every automatic trigger (after a capture, a retry timer, `online`,
    /// Background Sync, a login): while the device backs off (the server asked to wait, or
    /// the last contacts did not get through) it sends nothing and reports `BACKING_OFF` with
    /// `next_try_in_ms`; otherwise it is [`Engine::flush`]. Only the nurse's own "send now"
    /// calls `flush` directly, which skips the backoff but not the server's `Retry-After`.
    pub async fn flush_if_due(
        &self,
        scope: FlushScope,
        now_ms: i64,
        progress: &mut dyn FnMut(&FlushReport),
    ) -> Result<FlushReport> {
        let Some(wait) = self.flush_wait_ms(now_ms) else {
            return self.flush(scope, now_ms, progress).await;
        };
        self.vault.session_info().ok_or(CoreError::VaultLocked)?;
        // Not opened while backing off (a capture asks this after every write): the entries
        // stored, pending or failed, as this context keeps them (its own captures keep the counts
        // exact), else counted (one transaction, which every write paid here before).
        let remaining = match self.outbox.counts() {
            Some(kept) => kept.pending + kept.failed,
            None => self.vault.store().count(StoreName::Outbox).await?,
        };
        Ok(FlushReport {
            remaining,
            stopped: Some("BACKING_OFF".into()),
            retry_after_ms: self.busy_wait_ms(now_ms),
            next_try_in_ms: Some(wait),
            ..FlushReport::default()
        })
    }

    /// After a contact that got no answer, the server is asked first (one light read) before the
    /// outbox is opened: a device offline with thousands of entries queued opened every one of
    /// them twice at each due try, about 400 ms at 5,300 entries in the worker every write
    /// waits on (issue 17, P4 with a queue). The report when it still does not answer; None
    /// when it does, or when the last contact got through (the flush goes on as before).
    async fn unanswered_before_opening(&self, report: &mut FlushReport, now_ms: i64) -> Result<Option<FlushReport>> {
        if self.contact.last_known_online() != Some(false) || !self.outbox_has_work().await? {
            return Ok(None);
        }
        if self.server_answers(report, now_ms).await {
            return Ok(None);
        }
        let busy = self.busy_wait_ms(now_ms);
        let mut early = std::mem::take(report);
        early.stopped = Some(if busy.is_some() { "SERVER_BUSY" } else { "SERVER_UNREACHABLE" }.into());
        early.retry_after_ms = busy;
        early.next_try_in_ms = self.flush_wait_ms(now_ms);
        // The counts this context keeps (opened once, then kept by its own writes).
        early.remaining = self.outbox_counts().await?.pending;
        Ok(Some(early))
    }

    /// Whether the server answers a light read (`system/info`) with its JSON: it works, so an
    /// error on a record is the record's.
    async fn server_answers(&self, report: &mut FlushReport, now_ms: i64) -> bool {
        report.requests += 1;
        let request = HttpRequest {
            opens_session: false,
            method: "GET".into(),
            url: format!("{}/system/info", self.config.api_base),
            headers: self.auth_headers(),
            body: None,
        };
        let response = self.http.send(request).await.ok();
        self.record_answer(response.as_ref(), now_ms);
        response.is_some_and(|r| {
            r.status == 200 && serde_json::from_slice::<Value>(&r.body).is_ok_and(|v| v.get("version").is_some())
        })
    }

    /// Whether the server now offers only `/api/tracker` (2.42+), asked when legacy tracker
    /// writes wait (one `system/info` read; no answer means "as before").
    async fn server_has_only_tracker_api(&self, pending: &[&OutboxEntry], now_ms: i64) -> bool {
        let known = self.clinic.minor_version().unwrap_or(0);
        if known >= 42 {
            return true;
        }
        let legacy_waiting =
            pending.iter().any(|e| e.family == Family::Legacy && matches!(e.payload, EntryPayload::Touches { .. }));
        if !legacy_waiting {
            return false;
        }
        // Asked at most once per VERSION_CHECK_MS in this context (flushes are frequent).
        if !self.contact.version_check_due(now_ms, VERSION_CHECK_MS) {
            return false;
        }
        let info = match self.get_json_at(&format!("{}/system/info", self.config.api_base), Some(now_ms)).await {
            Ok(info) => info,
            Err(CoreError::AuthRequired) => {
                // The password is refused: the flush sends nothing more with it.
                let _ = self.mark_password_refused().await;
                return false;
            }
            Err(_) => return false,
        };
        let version = info.get("version").and_then(Value::as_str).unwrap_or_default();
        let minor: u32 = version.split('.').nth(1).and_then(|m| m.parse().ok()).unwrap_or(0);
        if minor >= 42 {
            self.clinic.update(|clinic| clinic.metadata.server_version = version.to_string());
        }
        minor >= 42
    }

    /// Polls an async import job's report (a server that queued the bulk request as a job):
    /// a few immediate tries; a report not ready yet means the records stay queued and are
    /// sent again later (idempotent).
    async fn job_report(&self, location: &str, uids: &[String], report: &mut FlushReport) -> Verdict {
        for _ in 0..JOB_REPORT_TRIES {
            let request = HttpRequest {
                opens_session: false,
                method: "GET".into(),
                url: format!("{}/report", location.trim_end_matches('/')),
                headers: self.auth_headers(),
                body: None,
            };
            report.requests += 1;
            let response = self.http.send(request).await.ok();
            if response.as_ref().is_some_and(|r| r.status == 404) {
                continue; // DHIS2 answers 404 until the report is ready
            }
            return interpret(response.as_ref(), uids, Family::Tracker);
        }
        Verdict::Retry("the import job's report is not ready".into())
    }

    /// Keeps the server's warnings on accepted records (values it ignored, ...) for the user.
    async fn keep_warnings(
        &self,
        segment: &[&OutboxEntry],
        accepted: &BTreeSet<String>,
        warnings: &BTreeMap<String, Vec<String>>,
        now_ms: i64,
    ) -> Result<()> {
        let mut found = Vec::new();
        for entry in segment {
            let EntryPayload::Touches { touches } = &entry.payload else { continue };
            let reasons: Vec<String> = touches
                .iter()
                .filter(|t| accepted.contains(&t.uid))
                .filter_map(|t| {
                    warnings.get(&t.uid).map(|w| w.iter().map(|x| format!("{}: {x}", t.uid)).collect::<Vec<_>>())
                })
                .flatten()
                .collect();
            if !reasons.is_empty() {
                found.push(crate::outbox::Failure {
                    id: crate::outbox::warning_id(entry.seq),
                    author: entry.author.clone(),
                    summary: entry.summary.clone(),
                    records: crate::outbox::entry_records(entry),
                    reasons,
                    created_at_ms: entry.created_at_ms,
                    failed_at_ms: now_ms,
                    severity: crate::outbox::Severity::Warning,
                    change: Some(crate::outbox::entry_change(entry)),
                });
            }
        }
        if found.is_empty() {
            return Ok(());
        }
        let mut kept = self.sync_warnings().await?;
        kept.retain(|w| !found.iter().any(|f| f.id == w.id));
        kept.extend(found);
        self.store_sync_warnings(&kept).await
    }

    async fn mark_failed(&self, entry: &OutboxEntry, reasons: Vec<String>, now_ms: i64) -> Result<()> {
        let mut e = entry.clone();
        e.state = EntryState::Failed { reasons, at_ms: now_ms };
        e.attempts += 1;
        let bytes = serde_json::to_vec(&e).map_err(|err| CoreError::BadInput(err.to_string()))?;
        self.vault.put_record(StoreName::Outbox, &e.id(), &bytes).await
    }

    /// Deletes entries whose every record was accepted, marks entries with a refused record
    /// as failed, and updates the records' sync states. Returns (sent, failed) counts. Runs
    /// under the one writer on the bundles as they are now (a capture made while the requests
    /// were in flight is kept, and its record stays unsynced: its entry is still queued).
    async fn settle_segment(
        &self,
        segment: &[&OutboxEntry],
        accepted: &BTreeSet<String>,
        refused: &BTreeMap<String, Vec<String>>,
        merges: &BTreeMap<String, PlannedMerge>,
        server_errors: &BTreeMap<String, String>,
        now_ms: i64,
    ) -> Result<(u64, u64)> {
        let _writer = self.writer.lock().await;
        let limit = self.outbox.server_error_limit();
        let mut batch = WriteBatch::new();
        let (mut sent, mut failed) = (0, 0);
        // (tracked entity, record) -> new state (None: synced).
        let mut states: Vec<(String, String, Option<SyncState>)> = Vec::new();
        let mut done: BTreeSet<u64> = BTreeSet::new();
        for entry in segment {
            let EntryPayload::Touches { touches } = &entry.payload else { continue };
            let reasons: Vec<String> = touches
                .iter()
                .filter_map(|t| {
                    refused.get(&t.uid).map(|r| r.iter().map(|x| format!("{}: {x}", t.uid)).collect::<Vec<_>>())
                })
                .flatten()
                .collect();
            if !reasons.is_empty() {
                let mut e = (*entry).clone();
                e.state = EntryState::Failed { reasons, at_ms: now_ms };
                e.attempts += 1;
                let bytes = serde_json::to_vec(&e).map_err(|err| CoreError::BadInput(err.to_string()))?;
                batch = self.vault.seal_into(batch, StoreName::Outbox, &e.id(), &bytes)?;
                failed += 1;
                for t in touches.iter().filter(|t| refused.contains_key(&t.uid)) {
                    states.push((t.tei.clone(), t.uid.clone(), Some(SyncState::Error)));
                }
            } else if touches.iter().all(|t| accepted.contains(&t.uid)) {
                batch = self.vault.delete_into(batch, StoreName::Outbox, &entry.id())?;
                done.insert(entry.seq);
                sent += 1;
            } else if let Some((uid, answer)) = touches.iter().find_map(|t| server_errors.get_key_value(&t.uid)) {
                // The server failed on one of its records: one more error; at the limit the
                // entry is moved aside as a failure (the rest of the outbox flows meanwhile).
                let mut e = (*entry).clone();
                e.attempts += 1;
                if e.attempts >= limit {
                    e.state = EntryState::Failed {
                        reasons: vec![format!(
                            "{uid}: the server failed on this record {} times in a row; its last answer: {answer}",
                            e.attempts
                        )],
                        at_ms: now_ms,
                    };
                    failed += 1;
                    for t in touches.iter().filter(|t| server_errors.contains_key(&t.uid)) {
                        states.push((t.tei.clone(), t.uid.clone(), Some(SyncState::Error)));
                    }
                }
                let bytes = serde_json::to_vec(&e).map_err(|err| CoreError::BadInput(err.to_string()))?;
                batch = self.vault.seal_into(batch, StoreName::Outbox, &e.id(), &bytes)?;
            }
        }
        // A record is synced once no entry left in the outbox touches it.
        let remaining: Vec<OutboxEntry> =
            self.outbox_entries().await?.into_iter().filter(|e| !done.contains(&e.seq)).collect();
        let still: BTreeSet<String> = remaining.iter().flat_map(crate::outbox::entry_records).collect();
        for entry in segment {
            let EntryPayload::Touches { touches } = &entry.payload else { continue };
            for t in touches.iter().filter(|t| accepted.contains(&t.uid) && !still.contains(&t.uid)) {
                states.push((t.tei.clone(), t.uid.clone(), None));
            }
        }
        let merged_accepted: Vec<(&String, &PlannedMerge)> =
            merges.iter().filter(|(uid, _)| accepted.contains(*uid)).collect();
        let mut teis: BTreeSet<&String> = states.iter().map(|(tei, _, _)| tei).collect();
        teis.extend(merged_accepted.iter().map(|(_, m)| &m.tei));
        let mut changed: Vec<TeiBundle> = Vec::new();
        for (tei, bytes) in self.read_bundles(teis.into_iter()).await? {
            let mut bundle = parse_bundle(&bytes)?;
            // Accepted updates: the server now holds the fields sent; the local record becomes
            // the server's copy with whatever the device changed since (a capture during the
            // flush) applied over it.
            for (uid, merge) in merged_accepted.iter().filter(|(_, m)| &m.tei == tei) {
                settle_merge(&mut bundle, uid, merge);
                bundle.settled_at.insert((*uid).clone(), now_ms);
            }
            for (_, uid, state) in states.iter().filter(|(t, _, _)| t == tei) {
                match state {
                    Some(state) => {
                        bundle.sync.insert(uid.clone(), *state);
                    }
                    None => {
                        bundle.settled_at.insert(uid.clone(), now_ms);
                        // Fields held for a person (policy `hold`) stay changed and unsent.
                        if merges.contains_key(uid) && bundle.changes.get(uid).is_some_and(|c| !c.is_empty()) {
                            bundle.sync.insert(uid.clone(), SyncState::ToUpdate);
                        } else {
                            bundle.sync.remove(uid);
                            bundle.changes.remove(uid);
                        }
                    }
                }
            }
            changed.push(bundle);
        }
        // A refused update overwrote nothing: its conflicts are not kept.
        let refused_conflicts: Vec<&Conflict> =
            merges.iter().filter(|(uid, _)| refused.contains_key(*uid)).flat_map(|(_, m)| m.conflicts.iter()).collect();
        if !refused_conflicts.is_empty() {
            let mut log = self.conflict_log().await?;
            log.retain(|c| !refused_conflicts.iter().any(|r| r.same_as(c)));
            batch = self.seal_conflict_log(batch, &log)?;
        }
        self.commit_bundles(batch, &changed.iter().collect::<Vec<_>>(), &[]).await?;
        Ok((sent, failed))
    }
}

/// The tracker records touched by some entries.
fn pending_touches<'a>(entries: &'a [&'a OutboxEntry]) -> impl Iterator<Item = &'a Touch> + 'a {
    entries
        .iter()
        .filter_map(|e| match &e.payload {
            EntryPayload::Touches { touches } => Some(touches),
            EntryPayload::Raw { .. } => None,
        })
        .flatten()
}

/// Each record's latest capture (author, time) in a segment.
fn entry_times(segment: &[&OutboxEntry]) -> BTreeMap<String, (String, i64)> {
    let mut out = BTreeMap::new();
    for entry in segment {
        if let EntryPayload::Touches { touches } = &entry.payload {
            for t in touches {
                out.insert(t.uid.clone(), (entry.author.clone(), entry.created_at_ms));
            }
        }
    }
    out
}
