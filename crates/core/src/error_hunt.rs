//! Finding the record a server error comes from: a bulk request the server fails on (HTTP 500)
//! is split in halves until the record that makes it fail is alone; every other record of
//! the request is sent and settled as usual.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::{
    answer::message_of,
    family::Kind,
    flush_requests::{replan_without, PlannedRequest},
    http::HttpResponse,
    outbox::OutboxEntry,
    write_effect::Touch,
};

/// A request of a flush waiting to be sent, and which half it is when it was split to find
/// the record a server error comes from.
pub(crate) struct QueuedRequest {
    pub(crate) request: PlannedRequest,
    pub(crate) half: Option<Half>,
}

/// One of the two halves of a request split in the search for a failing record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Half {
    pair: u32,
    first: bool,
}

/// What to do after an answer, in the search for the record an HTTP 500 comes from.
pub(crate) enum HuntStep {
    /// Nothing yet: the first half failed, its sibling goes next.
    Wait,
    /// Send these halves next.
    Send(Box<QueuedRequest>, Box<QueuedRequest>),
    /// The record the server fails on, with its answer.
    Culprit(String, String),
    /// Both halves failed: the server itself fails.
    ServerFailing,
    /// One record alone failed and nothing else was sent yet: whether the server works is
    /// asked with one light read; if it does, this record is the culprit.
    Probe(String, String),
}

/// The search for the record an HTTP 500 comes from. A request of several records that gets a
/// 500 is sent again in halves; when one half fails and the other is imported, the failing
/// half is the suspect and is split again, down to one record; when both fail, the server is
/// failing, not a record, and the flush backs off. So one record the server cannot import
/// costs about 2 log2(n) requests and holds nothing else back.
#[derive(Default)]
pub(crate) struct ErrorHunt {
    next_pair: u32,
    /// First halves that failed, waiting for their sibling's answer (with their answer).
    first_failed: BTreeMap<u32, (PlannedRequest, String)>,
    /// Whether the server imported anything in this flush.
    imported: bool,
}

impl ErrorHunt {
    /// A request answered HTTP 500 (`answer`: what it said).
    pub(crate) fn failed(&mut self, request: PlannedRequest, half: Option<Half>, answer: String) -> HuntStep {
        match half {
            Some(h) if h.first => {
                self.first_failed.insert(h.pair, (request, answer));
                HuntStep::Wait
            }
            Some(h) => match self.first_failed.remove(&h.pair) {
                Some(_) => HuntStep::ServerFailing,
                None => self.narrow(request, answer),
            },
            None if request.uids.len() > 1 => self.split(&request),
            None if self.imported => self.narrow(request, answer),
            None => match request.uids.as_slice() {
                [uid] => HuntStep::Probe(uid.clone(), answer),
                _ => HuntStep::ServerFailing,
            },
        }
    }

    /// A request was imported; when it was a second half whose sibling failed, the sibling is
    /// the suspect.
    pub(crate) fn answered(&mut self, half: Option<Half>) -> Option<HuntStep> {
        self.imported = true;
        let h = half.filter(|h| !h.first)?;
        let (sibling, answer) = self.first_failed.remove(&h.pair)?;
        Some(self.narrow(sibling, answer))
    }

    fn narrow(&mut self, request: PlannedRequest, answer: String) -> HuntStep {
        match request.uids.as_slice() {
            [uid] => HuntStep::Culprit(uid.clone(), answer),
            _ => self.split(&request),
        }
    }

    fn split(&mut self, request: &PlannedRequest) -> HuntStep {
        let (a, b) = halves(request);
        let pair = self.next_pair;
        self.next_pair += 1;
        HuntStep::Send(
            Box::new(QueuedRequest { request: a, half: Some(Half { pair, first: true }) }),
            Box::new(QueuedRequest { request: b, half: Some(Half { pair, first: false }) }),
        )
    }
}

/// Notes the record the server failed on. When this error brings its entry to the limit, the
/// record counts as refused at once, so what depends on it waits as a failure in this flush.
#[allow(clippy::too_many_arguments)]
pub(crate) fn blame(
    uid: &str,
    answer: String,
    segment: &[&OutboxEntry],
    touches: &[Touch],
    server_errors: &mut BTreeMap<String, String>,
    failed_records: &mut BTreeSet<String>,
    failed_teis: &mut BTreeSet<String>,
    limit: u32,
) {
    let at_limit =
        segment.iter().any(|e| e.attempts + 1 >= limit && crate::outbox::entry_records(e).iter().any(|r| r == uid));
    if at_limit {
        failed_records.insert(uid.to_string());
        if let Some(t) = touches.iter().find(|t| t.uid == uid && t.kind == Kind::TrackedEntity) {
            failed_teis.insert(t.tei.clone());
        }
    }
    server_errors.insert(uid.to_string(), answer);
}

/// A request of several records as two requests of half of them each.
pub(crate) fn halves(request: &PlannedRequest) -> (PlannedRequest, PlannedRequest) {
    let middle = request.uids.len() / 2;
    let (first, second) = request.uids.split_at(middle);
    (replan_without(request, second), replan_without(request, first))
}

/// What an answer said, for a person: status and DHIS2's message when there is one.
pub(crate) fn answer_text(response: &HttpResponse) -> String {
    let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    message_of(&body, response.status).chars().take(300).collect::<String>() + &format!(" (HTTP {})", response.status)
}
