//! The one error type of the core, with the stable codes that reach JavaScript.

use thiserror::Error;

/// Every failure the core can report. Each variant has a stable [`CoreError::code`] that the JS
/// API exposes as `error.code`; the `Display` text is the readable message.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// The server (online) or the local register (offline) refused the username/password.
    #[error("wrong username or password")]
    BadCredentials,
    /// Offline login for a user who never logged in online on this device.
    #[error("user '{0}' has never logged in online on this device; an online login is needed first")]
    UnknownUserOffline(String),
    /// Too many failed offline attempts; try again after the delay.
    #[error("too many failed attempts; try again in {} s", retry_after_ms.div_ceil(1000))]
    LockedOut {
        /// Milliseconds until the next attempt is accepted.
        retry_after_ms: u64,
    },
    /// The last online login of this user is older than the allowed offline period.
    #[error("the last online login is too old ({age_days} days); log in online to continue")]
    CredentialExpired {
        /// Days since the last online login.
        age_days: u64,
    },
    /// The server refused this user's stored password (changed, account disabled or locked):
    /// offline login with it stops until an online login the server accepts.
    #[error("the server no longer accepts this password; log in online with the current one")]
    CredentialRevoked,
    /// The server could not be reached (network error, timeout, 5xx) and no offline path applies.
    #[error("the server is unreachable: {0}")]
    ServerUnreachable(String),
    /// The server wants a login again (session expired, password changed): log in online.
    #[error("the server asks for a new login")]
    AuthRequired,
    /// No user is logged in: the data key is not in memory.
    #[error("the vault is locked; log in first")]
    VaultLocked,
    /// First login of a user on this device while the vault is locked: another registered
    /// user must be logged in (shift change handover) so the data key can be shared.
    #[error("this device's data is locked: the first login of '{0}' here needs a logged-in colleague (handover) or server escrow")]
    HandoverRequired(String),
    /// A user new to this device whose organisation units do not cover the clinic copied here:
    /// the clinic's data is not handed over to her (the server would not show it to her).
    #[error("'{0}' is not assigned to this device's clinic: its data is not handed over to her")]
    OutsideClinic(String),
    /// A removal of a user refused: she has raw requests (her own settings) that only her
    /// session can send.
    #[error("'{username}' has {count} unsent request(s) only she can send; she logs in once to send them, or they are discarded, before she is removed")]
    UnsentWork {
        /// Whose requests.
        username: String,
        /// How many.
        count: usize,
    },
    /// The browser's storage quota is exhausted; nothing was written.
    #[error("device storage is full; nothing was written")]
    StorageFull,
    /// Stored bytes failed authentication, were moved, or do not parse: never used.
    #[error("stored data is damaged or was tampered with ({0})")]
    StorageCorrupt(String),
    /// A write's precondition failed: another writer changed the database since this one
    /// read it (see [`crate::store::WriteOp::Expect`]). Nothing was written; the vault reloads
    /// and tries again, so this does not reach the app.
    #[error("the stored data changed under this write; nothing was written: {0}")]
    StaleWrite(String),
    /// The storage backend failed for another reason.
    #[error("storage error: {0}")]
    Storage(String),
    /// The caller passed input that cannot be accepted.
    #[error("invalid input: {0}")]
    BadInput(String),
    /// Server escrow of the data key was refused: this server version does not enforce
    /// dataStore read sharing, so every user could read the key.
    #[error("server escrow refused: DHIS2 {0} does not enforce dataStore read sharing")]
    EscrowUnsafe(String),
    /// The request conflicts with a rule of the server (answered offline as DHIS2's 409).
    #[error("{0}")]
    Conflict(String),
    /// The server answered something we cannot interpret.
    #[error("unexpected server response: {0}")]
    BadResponse(String),
    /// A cryptographic primitive failed (random source unavailable, key of wrong size).
    #[error("cryptographic failure: {0}")]
    Crypto(String),
}

impl CoreError {
    /// The stable, machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            CoreError::BadCredentials => "BAD_CREDENTIALS",
            CoreError::UnknownUserOffline(_) => "UNKNOWN_USER_OFFLINE",
            CoreError::LockedOut { .. } => "LOCKED_OUT",
            CoreError::CredentialExpired { .. } => "CREDENTIAL_EXPIRED",
            CoreError::CredentialRevoked => "CREDENTIAL_REVOKED",
            CoreError::ServerUnreachable(_) => "SERVER_UNREACHABLE",
            CoreError::AuthRequired => "AUTH_REQUIRED",
            CoreError::VaultLocked => "VAULT_LOCKED",
            CoreError::HandoverRequired(_) => "HANDOVER_REQUIRED",
            CoreError::OutsideClinic(_) => "OUTSIDE_CLINIC",
            CoreError::UnsentWork { .. } => "UNSENT_WORK",
            CoreError::StorageFull => "STORAGE_FULL",
            CoreError::StorageCorrupt(_) => "STORAGE_CORRUPT",
            CoreError::Storage(_) => "STORAGE_ERROR",
            CoreError::StaleWrite(_) => "STALE_WRITE",
            CoreError::BadInput(_) => "BAD_INPUT",
            CoreError::Conflict(_) => "CONFLICT",
            CoreError::EscrowUnsafe(_) => "ESCROW_UNSAFE",
            CoreError::BadResponse(_) => "BAD_RESPONSE",
            CoreError::Crypto(_) => "CRYPTO_ERROR",
        }
    }

    /// For [`CoreError::LockedOut`], the delay before the next attempt.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            CoreError::LockedOut { retry_after_ms } => Some(*retry_after_ms),
            _ => None,
        }
    }
}

/// Result alias of the core.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
