//! The messages a page sends the service worker, in one table: their names, which ones the
//! worker takes while its vault is locked, which ones name a vault (`apiBase`), and how long a
//! page waits for the answer. `www/sw.js` checks every message here before it acts on it;
//! `www/tracker-offline.js` takes its waits from here. Where no worker runs, the page's own
//! engine does the same work and no message is sent.

use crate::error::{CoreError, Result};

/// One message of the worker protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerMessage {
    /// Its `type`.
    pub name: &'static str,
    /// Taken while the vault is locked (everything else needs an open session).
    pub while_locked: bool,
    /// Names a vault (`apiBase`, an API base of the worker's origin).
    pub names_vault: bool,
    /// How long a page waits for the answer, in ms.
    pub answer_within_ms: u32,
}

const fn message(name: &'static str, while_locked: bool, names_vault: bool, answer_within_ms: u32) -> WorkerMessage {
    WorkerMessage { name, while_locked, names_vault, answer_within_ms }
}

/// A page's default wait for an answer.
const SHORT_MS: u32 = 10_000;

/// Every message the worker takes.
pub const WORKER_MESSAGES: &[WorkerMessage] = &[
    // Opens (again) the vault's engine with the app's policy and settings.
    message("configure", true, true, SHORT_MS),
    // The typed credentials; the answer is the outcome only (a KDF and the server's check).
    message("login", true, true, 120_000),
    // Forgets every session of the worker.
    message("lock", true, false, SHORT_MS),
    // Counts and who is logged in, never key material.
    message("status", true, true, SHORT_MS),
    // Whether a session is open and whose (a reloaded page).
    message("resume", true, true, SHORT_MS),
    // App files kept for offline loads (a page's whole list can take long).
    message("cache-shell", true, false, 600_000),
    // Keeps the data key in the server's dataStore.
    message("escrow", false, true, 60_000),
    // Downloads (or refreshes) the clinic copy; progress on the message's port.
    message("download", false, true, 3_600_000),
    // Sends the outbox.
    message("sync", false, true, 600_000),
    message("failures", false, true, SHORT_MS),
    message("retry", false, true, SHORT_MS),
    message("discard", false, true, SHORT_MS),
    message("conflicts", false, true, SHORT_MS),
    message("resolve-conflict", false, true, SHORT_MS),
    message("remove-user", false, true, SHORT_MS),
];

/// The message `name`: `BAD_INPUT` when the worker takes no such message, `VAULT_LOCKED` when
/// it needs a session and `unlocked` is false.
pub fn check_worker_message(name: &str, unlocked: bool) -> Result<&'static WorkerMessage> {
    let found = WORKER_MESSAGES.iter().find(|m| m.name == name).ok_or_else(|| {
        CoreError::BadInput(format!("unknown message {}", name.chars().take(100).collect::<String>()))
    })?;
    if !found.while_locked && !unlocked {
        return Err(CoreError::VaultLocked);
    }
    Ok(found)
}

/// How long a page waits for the worker's answer to `name` (the default for a name not in
/// the table, which the worker will refuse).
pub fn answer_within_ms(name: &str) -> u32 {
    WORKER_MESSAGES.iter().find(|m| m.name == name).map_or(SHORT_MS, |m| m.answer_within_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locked_vaults_take_only_the_messages_that_open_or_describe_a_session() {
        let while_locked: Vec<&str> = WORKER_MESSAGES.iter().filter(|m| m.while_locked).map(|m| m.name).collect();
        assert_eq!(while_locked, ["configure", "login", "lock", "status", "resume", "cache-shell"]);
        for m in WORKER_MESSAGES {
            assert_eq!(check_worker_message(m.name, true).unwrap(), m);
            let locked = check_worker_message(m.name, false);
            if m.while_locked {
                assert!(locked.is_ok(), "{}", m.name);
            } else {
                assert_eq!(locked.unwrap_err(), CoreError::VaultLocked, "{}", m.name);
            }
        }
    }

    #[test]
    fn an_unknown_message_is_bad_input_whatever_the_session() {
        for unlocked in [true, false] {
            let err = check_worker_message("export-keys", unlocked).unwrap_err();
            assert_eq!(err.code(), "BAD_INPUT");
            assert!(err.to_string().contains("unknown message export-keys"), "{err}");
        }
        assert!(check_worker_message(&"x".repeat(5000), true).unwrap_err().to_string().len() < 200);
    }

    #[test]
    fn names_are_unique_and_only_lock_and_cache_shell_name_no_vault() {
        let mut names: Vec<&str> = WORKER_MESSAGES.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), WORKER_MESSAGES.len());
        let without: Vec<&str> = WORKER_MESSAGES.iter().filter(|m| !m.names_vault).map(|m| m.name).collect();
        assert_eq!(without, ["lock", "cache-shell"]);
        assert_eq!(answer_within_ms("login"), 120_000);
        assert_eq!(answer_within_ms("unknown"), 10_000);
    }
}
