//! What this context knows of its contacts with the server, owned apart from the rest of the
//! engine (each part with its own lock): whether the network is worth trying (the offline fast
//! path), the device's backoff and the server's `Retry-After`, the last known reachability,
//! when a flush last reached the server, and when the server's version was last asked.

use std::sync::Mutex;

/// How long after a failed contact requests go straight to the local copy (the fast path),
/// before the network is tried again.
pub const OFFLINE_FAST_PATH_MS: i64 = 15_000;

/// What the last contacts with the server say about trying the network.
#[derive(Debug, Default, Clone, Copy)]
pub struct Connectivity {
    last_failure_ms: Option<i64>,
    /// Until when the server asked not to be sent anything (`Retry-After`).
    busy_until_ms: Option<i64>,
    /// Contacts in a row that did not get through (busy or unreachable).
    failed_contacts: u32,
    /// Whether the last of them got no answer at all (the network, not the server).
    last_failure_unanswered: bool,
    /// Until when automatic flushes wait: the device's backoff, shared by every trigger
    /// ([`crate::backoff::next_flush_delay_ms`]).
    backoff_until_ms: Option<i64>,
}

impl Connectivity {
    /// True if a request should try the network first.
    pub fn should_try_network(&self, now_ms: i64) -> bool {
        self.last_failure_ms.is_none_or(|t| now_ms.saturating_sub(t) >= OFFLINE_FAST_PATH_MS)
            && self.busy_wait_ms(now_ms).is_none()
    }

    /// How long the server still asked to be left alone (`Retry-After`), if it did.
    pub fn busy_wait_ms(&self, now_ms: i64) -> Option<u64> {
        self.busy_until_ms.filter(|t| *t > now_ms).map(|t| (t - now_ms) as u64)
    }

    /// How long automatic flushes (after a capture, on a timer, on `online`, Background Sync
    /// or a login) still wait: the later of the server's `Retry-After` and the device's backoff
    /// after contacts that did not get through. None: a flush may start now.
    pub fn flush_wait_ms(&self, now_ms: i64) -> Option<u64> {
        let until = self.busy_until_ms.max(self.backoff_until_ms)?;
        (until > now_ms).then(|| (until - now_ms) as u64)
    }

    /// The browser says the network is back (`online`, Background Sync): a backoff that grew
    /// while no answer came at all ends (the network was the problem), one the server asked
    /// for or earned with 429/5xx stays.
    pub fn network_back(&mut self) {
        if self.last_failure_unanswered {
            self.failed_contacts = 0;
            self.backoff_until_ms = None;
            self.last_failure_ms = None;
        }
    }

    /// Records the outcome of a contact. 429 and 5xx count as "busy", not reachable (see
    /// [`crate::backoff`]): the app is answered from the local copy while the server recovers.
    /// A contact that does not get through starts the next backoff step
    /// ([`crate::backoff::next_flush_delay_ms`] with `random` in 0..1, counted from this
    /// contact); one during a running step may lengthen it but does not count as a new step.
    /// An answer ends the backoff.
    pub fn record(&mut self, load: crate::backoff::Load, now_ms: i64, random: f64) -> bool {
        use crate::backoff::Load;
        let asked = match load {
            Load::Answered => {
                self.last_failure_ms = None;
                self.failed_contacts = 0;
                self.backoff_until_ms = None;
                return true;
            }
            Load::Busy { retry_after_ms } => retry_after_ms,
            Load::Unreachable => None,
        };
        self.last_failure_ms = Some(now_ms);
        self.last_failure_unanswered = load == Load::Unreachable;
        if let Some(wait) = asked {
            let until = now_ms.saturating_add(i64::try_from(wait).unwrap_or(i64::MAX));
            self.busy_until_ms = Some(self.busy_until_ms.map_or(until, |t| t.max(until)));
        }
        // One step per backoff: the failures of one attempt (a flush's version check and its
        // request, reads meanwhile) do not count twice.
        let running = self.backoff_until_ms.is_some_and(|t| t > now_ms);
        let steps = if running { self.failed_contacts.saturating_sub(1) } else { self.failed_contacts };
        let delay = crate::backoff::next_flush_delay_ms(steps, asked, random);
        let until = now_ms.saturating_add(i64::try_from(delay).unwrap_or(i64::MAX));
        self.backoff_until_ms = Some(self.backoff_until_ms.map_or(until, |t| t.max(until)));
        if !running {
            self.failed_contacts = self.failed_contacts.saturating_add(1);
        }
        false
    }
}

/// The engine's record of its contacts with the server.
#[derive(Debug, Default)]
pub struct ServerContact {
    connectivity: Mutex<Connectivity>,
    online: Mutex<Option<bool>>,
    last_sync: Mutex<Option<i64>>,
    version_checked_ms: Mutex<Option<i64>>,
}

impl ServerContact {
    /// True if a request should try the network first (false during the fast path after a
    /// failure, or while the server asked to be left alone).
    pub fn should_try_network(&self, now_ms: i64) -> bool {
        self.connectivity.lock().map(|c| c.should_try_network(now_ms)).unwrap_or(true)
    }

    /// Records how a contact went ([`Connectivity::record`]); returns whether the server
    /// counts as reachable and taking work.
    pub fn record(&self, load: crate::backoff::Load, now_ms: i64, random: f64) -> bool {
        let reachable = self.connectivity.lock().map(|mut c| c.record(load, now_ms, random)).unwrap_or(false);
        self.set_online(reachable);
        reachable
    }

    /// How long the server still asked to be left alone (`Retry-After`), if it did.
    pub fn busy_wait_ms(&self, now_ms: i64) -> Option<u64> {
        self.connectivity.lock().ok().and_then(|c| c.busy_wait_ms(now_ms))
    }

    /// How long automatic flushes still wait ([`Connectivity::flush_wait_ms`]).
    pub fn flush_wait_ms(&self, now_ms: i64) -> Option<u64> {
        self.connectivity.lock().ok().and_then(|c| c.flush_wait_ms(now_ms))
    }

    /// The browser says the network is back ([`Connectivity::network_back`]).
    pub fn network_back(&self) {
        if let Ok(mut c) = self.connectivity.lock() {
            c.network_back();
        }
    }

    /// Notes whether the last contact reached the server (a login or a download page that did
    /// not go through [`ServerContact::record`]).
    pub fn set_online(&self, online: bool) {
        if let Ok(mut guard) = self.online.lock() {
            *guard = Some(online);
        }
    }

    /// Whether the last contact with the server succeeded (None before any contact).
    pub fn last_known_online(&self) -> Option<bool> {
        self.online.lock().ok().and_then(|g| *g)
    }

    /// When the last flush that reached the server finished (ms since epoch).
    pub fn last_sync_at(&self) -> Option<i64> {
        self.last_sync.lock().ok().and_then(|g| *g)
    }

    /// A flush reached the server and finished at `now_ms`.
    pub fn synced_at(&self, now_ms: i64) {
        if let Ok(mut g) = self.last_sync.lock() {
            *g = Some(now_ms);
        }
    }

    /// Whether the server's version may be asked now (at most once per `every_ms`); marks it
    /// asked when it may.
    pub fn version_check_due(&self, now_ms: i64, every_ms: i64) -> bool {
        let Ok(mut checked) = self.version_checked_ms.lock() else { return true };
        if checked.is_some_and(|t| now_ms.saturating_sub(t) < every_ms) {
            return false;
        }
        *checked = Some(now_ms);
        true
    }

    /// Forgets when the version was asked: the next flush asks again (a legacy endpoint
    /// answered 404: the server may have been upgraded).
    pub fn forget_version_check(&self) {
        if let Ok(mut checked) = self.version_checked_ms.lock() {
            *checked = None;
        }
    }
}
