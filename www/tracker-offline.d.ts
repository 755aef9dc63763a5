// TypeScript declarations of the page API of tracker-offline (www/tracker-offline.js).
// Hand-written: keep in step with tracker-offline.js, sw.js and the serialised shapes of
// crates/core (tests/package/ checks the members and the error codes against them).
// Uses the DOM types (EventTarget, CustomEvent): a consumer keeps "dom" in `lib`.

// ---------------------------------------------------------------------------------------------
// Errors

/**
 * Every stable `code` an error of this library can carry.
 *
 * From the Rust core (crates/core/src/error.rs):
 * - `BAD_CREDENTIALS`: the server (online) or the local register (offline) refused the password.
 * - `UNKNOWN_USER_OFFLINE`: offline, and this user never logged in online on this device.
 * - `LOCKED_OUT`: too many failed offline attempts; `retryAfterMs` says how long to wait.
 * - `CREDENTIAL_EXPIRED`: the last online login is older than `maxOfflineDays`.
 * - `CREDENTIAL_REVOKED`: the server refused this very password at an online login (changed
 *   there, account disabled): offline it opens nothing until an online login the server accepts.
 * - `SERVER_UNREACHABLE`: the server was needed and could not be reached (also: the service
 *   worker could not be installed at all).
 * - `AUTH_REQUIRED`: the server asks for a new online login (e.g. the password changed).
 * - `VAULT_LOCKED`: nobody is logged in.
 * - `HANDOVER_REQUIRED`: first login on this device with nobody logged in and no escrow.
 * - `OUTSIDE_CLINIC`: first login on this device of a user whose org units do not cover the
 *   clinic copied here: the logged-in colleague's data key is not handed over to her.
 * - `UNSENT_WORK`: `removeUser` refused: she has requests only she can send (her own settings).
 * - `STORAGE_FULL`: the browser's quota is exhausted; nothing of that write was kept.
 * - `STORAGE_CORRUPT`: stored bytes were changed, moved or do not parse; never used.
 * - `STORAGE_ERROR`: IndexedDB failed for another reason.
 * - `STALE_WRITE`: another context (a tab's engine, the worker) kept changing the same stored
 *   data while this write was retried; nothing of it was written. Try again.
 * - `BAD_INPUT`: empty or oversized username/password, malformed body, bad options, unknown id.
 * - `CONFLICT`: the request conflicts with a rule of the server (DHIS2's 409, answered offline).
 * - `ESCROW_UNSAFE`: escrow refused on a server that does not enforce dataStore read sharing.
 * - `BAD_RESPONSE`: the server answered something that cannot be interpreted.
 * - `CRYPTO_ERROR`: a cryptographic primitive failed (no random source, key of wrong size).
 *
 * From the JS layer (tracker-offline.js):
 * - `SERVICE_WORKER_UNAVAILABLE`: no active service worker, or it did not answer in time.
 * - `SERVICE_WORKER_ERROR`: the service worker failed without a code of its own.
 */
export type TrackerOfflineErrorCode =
  | 'BAD_CREDENTIALS'
  | 'UNKNOWN_USER_OFFLINE'
  | 'LOCKED_OUT'
  | 'CREDENTIAL_EXPIRED'
  | 'CREDENTIAL_REVOKED'
  | 'SERVER_UNREACHABLE'
  | 'AUTH_REQUIRED'
  | 'VAULT_LOCKED'
  | 'HANDOVER_REQUIRED'
  | 'OUTSIDE_CLINIC'
  | 'UNSENT_WORK'
  | 'STORAGE_FULL'
  | 'STORAGE_CORRUPT'
  | 'STORAGE_ERROR'
  | 'STALE_WRITE'
  | 'BAD_INPUT'
  | 'CONFLICT'
  | 'ESCROW_UNSAFE'
  | 'BAD_RESPONSE'
  | 'CRYPTO_ERROR'
  | 'SERVICE_WORKER_UNAVAILABLE'
  | 'SERVICE_WORKER_ERROR'
  /** The service worker refused a message: it takes them only from windows of its app that it controls. */
  | 'NOT_ALLOWED';

/** The fields every error of this library has. */
export interface TrackerOfflineErrorBase extends Error {
  /** Always `'TrackerOfflineError'`. */
  name: 'TrackerOfflineError';
  /** Stable, machine-readable; `message` is for people and may change. */
  code: TrackerOfflineErrorCode;
}

/** A lockout after too many failed offline logins. */
export interface TrackerOfflineLockedOutError extends TrackerOfflineErrorBase {
  code: 'LOCKED_OUT';
  /**
   * Milliseconds until the next offline attempt is accepted. Set on errors from `login`;
   * absent when the error came through the service worker (which passes only code and message).
   */
  retryAfterMs?: number;
}

/** Any other error of this library. */
export interface TrackerOfflineOtherError extends TrackerOfflineErrorBase {
  code: Exclude<TrackerOfflineErrorCode, 'LOCKED_OUT'>;
  retryAfterMs?: undefined;
}

/**
 * What the promises of this library reject with: an `Error` with a stable `code`; narrow on
 * `code` (`'LOCKED_OUT'` carries `retryAfterMs`). A failure to load the WebAssembly file itself
 * (network, wrong MIME type) rejects with the browser's own error, without `code`.
 */
export type TrackerOfflineError = TrackerOfflineLockedOutError | TrackerOfflineOtherError;

// ---------------------------------------------------------------------------------------------
// Options

/** Who may read the data key kept in escrow in the server's dataStore (DHIS2 UIDs). */
export interface EscrowSharing {
  /** DHIS2 user UIDs. */
  users?: string[];
  /** DHIS2 user group UIDs. */
  userGroups?: string[];
}

/**
 * Whose saved work an online session sends: `'all'` (everyone's, each record keeping its
 * author as `storedBy`) or `'author'` (only the logged-in user's).
 */
export type FlushScope = 'all' | 'author';

/** Options of {@link TrackerOffline.start}; all optional. */
export interface TrackerOfflineOptions {
  /**
   * The DHIS2 Web API base, resolved against the page (default `'/api'`; Tracker Capture uses
   * `'../api'`). One encrypted vault per API base.
   */
  apiBase?: string;
  /**
   * The service worker script, resolved against the page (default `'sw.js'`, beside the page),
   * on the page's origin and within the app's folder; `false` for none (then reads and writes
   * are not answered offline, and `sync`/`failures`/`retry`/`discard` use the page's engine).
   */
  serviceWorker?: string | URL | false;
  /** Whose saved work is sent (default `'all'`); anything else rejects with `BAD_INPUT`. */
  flushScope?: FlushScope;
  /**
   * A field changed on this device and, meanwhile, on the server: `'device-wins'` (default)
   * sends this device's value and keeps the server's in {@link TrackerOffline.conflicts};
   * `'hold'` does not send that field (the rest flows) until {@link TrackerOffline.resolveConflict}.
   */
  conflictPolicy?: 'device-wins' | 'hold';
  /**
   * How many server errors (HTTP 500) one record may get before its entry is moved aside as a
   * failure, while the rest of the outbox flows (default 5; below 1 rejects with `BAD_INPUT`).
   */
  serverErrorLimit?: number;
  /**
   * Keep the data key in the server's dataStore after each online login, shared read-only with
   * these users and groups, so a first login on this device works with nobody logged in.
   * Failures do not fail the login: they are dispatched as `escrow-error` events
   * (`ESCROW_UNSAFE` where the server does not enforce dataStore read sharing). Default none.
   */
  escrow?: EscrowSharing | null;
  /** Log out (page and service worker) after this many minutes without input; default 15, 0 = never. */
  idleLockMinutes?: number;
  /** PBKDF2-HMAC-SHA256 iterations for new registrations (default 600,000, minimum 1,000). */
  pbkdf2Iterations?: number;
  /** Failed offline logins allowed before a lockout (default 5). */
  lockoutFreeAttempts?: number;
  /** First lockout in milliseconds, doubling per further failure up to 1 hour (default 30,000). */
  lockoutBaseMs?: number;
  /** Offline logins are refused when the last online login is older than this (default 30 days). */
  maxOfflineDays?: number;
  /** Timeout of the library's own requests to the server, in milliseconds (default 15,000). */
  requestTimeoutMs?: number;
}

/** Options of {@link TrackerOffline.download}; all optional. */
export interface DownloadOptions {
  /** Org unit roots (default: the user's capture org units). */
  orgUnits?: string[];
  /** Tracker programs (default: every tracker program the server lists). */
  programs?: string[];
  /** Page size of the server requests (default 50, at most 1000). */
  pageSize?: number;
  /** Forget the incremental mark and download everything again. */
  full?: boolean;
  /** Called after every page (as are `progress` events). */
  onProgress?: (progress: DownloadProgress) => void;
}

// ---------------------------------------------------------------------------------------------
// Results

/** How a login was checked: by the server, or by the register on this device. */
export type LoginMode = 'online' | 'offline';

/** An org unit of a user's profile. */
export interface OrgUnitRef {
  /** DHIS2 UID. */
  id: string;
  /** Display name; absent when the server did not send it. */
  displayName?: string;
}

/** The user's profile (from `GET {apiBase}/me`, or the register offline). */
export interface UserProfile {
  /** DHIS2 user UID. */
  id: string;
  /** Login name. */
  username: string;
  /** Name to show. */
  displayName: string;
  /** Capture org units. */
  organisationUnits: OrgUnitRef[];
  /** Search org units. */
  teiSearchOrganisationUnits: OrgUnitRef[];
  /** Authorities (`ALL` for superusers). */
  authorities: string[];
}

/** What {@link TrackerOffline.login} resolves with. */
export interface LoginResult {
  /** The user's login name (as the server spells it). */
  username: string;
  /** `'online'`: the server accepted the password; `'offline'`: the local register did. */
  mode: LoginMode;
  /** The user's profile. */
  profile: UserProfile;
  /** True when this login registered the user on this device by a shift-change handover of the data key. */
  handover: boolean;
}

/** The logged-in user as {@link TrackerOfflineStatus} shows it. */
export interface StatusUser {
  /** Login name. */
  username: string;
  /** Display name (the username when no profile is known). */
  displayName: string;
  /** How the session was opened; `null` for a session taken back from the service worker after a reload. */
  mode: LoginMode | null;
  /** Capture org units (empty when no profile is known). */
  organisationUnits: OrgUnitRef[];
}

/** Counts per author (username -> entries). */
export type CountsByAuthor = Record<string, number>;

/** What {@link TrackerOffline.status} resolves with (and `status` events carry). */
export interface TrackerOfflineStatus {
  /** Whether the server answered the last contact (the service worker's view when it has one; else `navigator.onLine`). */
  online: boolean;
  /** Who is logged in, or `null`. */
  user: StatusUser | null;
  /** True when no key is in memory (nobody logged in). */
  locked: boolean;
  /** Outbox entries waiting to be sent. */
  pending: number;
  /** Outbox entries the server refused, kept for the user (see `failures()`). */
  failed: number;
  /** Last successful send (ms since the epoch), or `null`. */
  lastSyncAt: number | null;
  /** Pending entries per author. */
  pendingByAuthor: CountsByAuthor;
  /** Refused entries per author. */
  failedByAuthor: CountsByAuthor;
  /** Users registered on this device. */
  registeredUsers: number;
  /** Tracked entities in the local copy (0 while locked). */
  records: number;
  /** Last complete download (ms since the epoch), or `null`. */
  lastDownloadAt: number | null;
  /** Bytes this origin uses (`navigator.storage.estimate()`), or `null` when unknown. */
  usage: number | null;
  /** Bytes this origin may use, or `null` when unknown. */
  quota: number | null;
  /** Whether the browser granted persistent storage (no eviction under pressure). */
  persisted: boolean;
  /**
   * The server refused the logged-in user's password (HTTP 401): nothing is sent with it again
   * (so retries never lock her account on the server) until she logs in online.
   */
  authRequired: boolean;
}

/** Progress of a download, after every page (`onProgress` and `progress` events). */
export interface DownloadProgress {
  /** Tracked entities stored so far in this run. */
  done: number;
  /** Tracked entities the server reported for the steps seen so far; `null` when not known yet. */
  total: number | null;
}

/** What {@link TrackerOffline.download} resolves with. */
export interface DownloadReport {
  /** Tracked entities received and stored. */
  trackedEntities: number;
  /** Tracked entities removed because the server deleted them. */
  deleted: number;
  /** Records whose unsent local changes were kept over the server's copy. */
  keptLocal: number;
  /** Pages fetched. */
  pages: number;
  /** True when only changes since the last run were asked for. */
  incremental: boolean;
  /** True when this run continued an interrupted one. */
  resumed: boolean;
  /** Tracked entities in the local copy afterwards. */
  records: number;
  /** Generated attribute values newly reserved on the server for offline registrations. */
  reservedValues: number;
  /**
   * Tracked entities of the server's pages that could not be stored (a malformed record in
   * them or in one of their enrollments or events): each skipped whole, the rest stored.
   */
  skipped: number;
  /** The first 100 skipped tracked entities: their UID as the server wrote it (or `null`) and why. */
  skippedRecords: { uid: string | null; reason: string }[];
}

/**
 * Why a send stopped early: no answer (`SERVER_UNREACHABLE`); the server is overloaded or
 * failing (`SERVER_BUSY`: 429 or 5xx; the device waits, at least `retryAfterMs`); the server
 * refused the password (`AUTH_REQUIRED`). `BACKING_OFF` only from the automatic sends (after a
 * capture, on a timer, `online`, Background Sync, a login), never from `sync()`: the device is
 * backing off and did not start.
 */
export type SyncStopReason = 'SERVER_UNREACHABLE' | 'SERVER_BUSY' | 'AUTH_REQUIRED' | 'BACKING_OFF';

/** What {@link TrackerOffline.sync} resolves with (and `flush` events carry, after each step). */
export interface SyncReport {
  /** Entries the server accepted. */
  sent: number;
  /** Entries the server refused in this run (kept: see `failures()`). */
  failed: number;
  /** Entries still pending (`BACKING_OFF`: entries stored, pending or failed). */
  remaining: number;
  /** Requests made. */
  requests: number;
  /** Why the run stopped early, or `null` when it did not. */
  stopped: SyncStopReason | null;
  /** Authors whose entries wait for them to log in online (`flushScope: 'author'`). */
  waitingFor: string[];
  /** `SERVER_BUSY`: how long the server asked not to be sent anything (`Retry-After`), in ms, or `null`. */
  retryAfterMs: number | null;
  /**
   * `SERVER_UNREACHABLE`, `SERVER_BUSY`, `BACKING_OFF`: in how many ms the next automatic send is
   * due (the device's backoff, shared by every trigger: exponential with full jitter, or the
   * server's `Retry-After` spread over up to twice that), or `null`.
   */
  nextTryInMs: number | null;
  /**
   * Whether entries still wait for the server (`stopped` is `SERVER_UNREACHABLE`,
   * `SERVER_BUSY` or `BACKING_OFF` with entries remaining): a trigger that comes again later
   * sends them then.
   */
  waitsForServer: boolean;
}

/** An outbox entry the server refused, as {@link TrackerOffline.failures} lists it. */
export interface OutboxFailure {
  /** Entry id, for `retry(id)` and `discard(id)`. */
  id: string;
  /** Username of who made the change. */
  author: string;
  /** `METHOD /path` of the write. */
  summary: string;
  /** UIDs of the records concerned. */
  records: string[];
  /** The server's reasons, readable. */
  reasons: string[];
  /** Capture time (ms since the epoch). */
  createdAtMs: number;
  /** Refusal time (ms since the epoch). */
  failedAtMs: number;
  /**
   * `error`: the server refused the entry; it is kept unsent (`retry`, `discard`).
   * `warning`: the server accepted the work with remarks (a value it ignored); `discard`
   * dismisses it.
   */
  severity: 'error' | 'warning';
  /**
   * What the entry changes, to show it without reading `summary`: absent for an entry that
   * cannot be read and for warnings kept by versions before it.
   */
  change?: OutboxChange;
}

/** What a queued write changes (never the record's content). */
export interface OutboxChange {
  /** Kind of record. */
  kind: 'trackedEntity' | 'enrollment' | 'event' | 'other';
  /** `save`: created or changed (`/api/tracker` imports, create-and-update). */
  action: 'create' | 'update' | 'delete' | 'save';
  /** The record's UID, when the write names one record. */
  record?: string;
  /** The data element of a single value (`PUT events/{event}/{dataElement}`). */
  dataElement?: string;
}

/**
 * A field changed on this device and, meanwhile, to another value on the server, as
 * {@link TrackerOffline.conflicts} lists it. The device's value was sent; the server's
 * overwritten value is kept here until someone resolves it.
 */
export interface SyncConflict {
  /** Id, for `resolveConflict(id, keep)`. */
  id: string;
  /** Record kind. */
  kind: 'tei' | 'enrollment' | 'event';
  /** Record UID. */
  record: string;
  /** UID of the owning tracked entity. */
  tei: string;
  /** `dv:<data element>`, `attr:<attribute>`, `note:<note>` or a field name (`status`, `eventDate`, ...). */
  field: string;
  /** The value both sides started from (`null`: none). */
  base: unknown;
  /**
   * The value replaced by the device's: saved on the server meanwhile (`source: 'server'`), or
   * saved unsent by another open window of this device that the later window had not seen
   * (`source: 'window'`).
   */
  server: unknown;
  /** The device's value (the later window's, for `source: 'window'`), sent. */
  device: unknown;
  /** Who made the device's change. */
  author: string;
  /** When the device's change was made (ms since the epoch). */
  changedAtMs: number;
  /** When the flush found the conflict (ms since the epoch). */
  foundAtMs: number;
  /** The server's last update time of the record, as it said. */
  serverUpdated: string | null;
  /** True when the device's value was not sent (`conflictPolicy: 'hold'`): it waits for a person. */
  held: boolean;
  /** Where the replaced value came from: the server, or another window of this device. */
  source: 'server' | 'window';
}

/** A tracker record an outbox entry sends in its current local state. */
export interface OutboxTouch {
  /** Record kind. */
  kind: 'tei' | 'enrollment' | 'event';
  /** Record UID. */
  uid: string;
  /** UID of the owning tracked entity. */
  tei: string;
  /** True when the write deleted the record. */
  deleted: boolean;
}

/** What an outbox entry sends: tracker records, or a request replayed as it was made. */
export type OutboxPayload =
  | { type: 'touches'; touches: OutboxTouch[] }
  | {
      type: 'raw';
      /** HTTP method. */
      method: string;
      /** Absolute URL. */
      url: string;
      /** Content type of the body (snake_case, as stored). */
      content_type: string;
      /** The body, base64. */
      body: string;
    };

/** Where an outbox entry stands (field names as stored: `at_ms` is snake_case). */
export type OutboxState =
  | { state: 'pending' }
  | {
      state: 'failed';
      /** The server's reasons. */
      reasons: string[];
      /** Refusal time (ms since the epoch). */
      at_ms: number;
    };

/** What {@link TrackerOffline.removeUser} did. */
export interface RemovalOutcome {
  username: string;
  /** Colleagues who keep access (the new key sealed to their public key). */
  usersKept: number;
  /** Users registered before key pairs existed (or whose entry was damaged): removed too; they log in online again. */
  usersToLogInOnlineAgain: number;
  /** Stored values sealed again under the new key. */
  valuesResealed: number;
  /** Values that were unreadable already (damaged or tampered), dropped. */
  unreadableValuesDropped: number;
}

/** The entry {@link TrackerOffline.discard} dropped (its stored form, for the app's log). */
export interface DiscardedEntry {
  /** Order of capture (the id is `entry:` and this number, zero-padded to 20 digits). */
  seq: number;
  /** Username of who made the change. */
  author: string;
  /** Capture time (ms since the epoch). */
  createdAtMs: number;
  /** `METHOD /path` of the write. */
  summary: string;
  /** API family the write came through (replays use the same). */
  family: 'legacy' | 'tracker';
  /** What it would have sent. */
  payload: OutboxPayload;
  /** Pending or failed. */
  state: OutboxState;
  /** Send attempts so far. */
  attempts: number;
}

/** What the service worker holds, from {@link TrackerOffline.workerStatus}. */
export interface WorkerStatus {
  /** True while the worker holds the data key. */
  unlocked: boolean;
  /** The user whose session the worker holds, or `null`. */
  username: string | null;
  /** That user's session as {@link TrackerOffline.status} has it before shaping (`null` while locked). */
  user: { username: string; mode: 'online' | 'offline'; profile?: UserProfile } | null;
  /** True while the worker holds no session. */
  locked: boolean;
  /** When the clinic copy was last downloaded (ms since 1970), or `null`. */
  lastDownloadAt: number | null;
  /** Whether the server refused the session's password (an online login is needed to send). */
  authRequired: boolean;
  /** The library version of this worker (`'dev'` when served from the source tree): which release a device runs after an upgrade. */
  version: string;
  /** Tracked entities in the local copy (0 while locked). */
  records: number;
  /** Whether the server answered the worker's last contact; `null` before any contact. */
  online: boolean | null;
  /** Outbox entries waiting to be sent. */
  pending: number;
  /** Outbox entries the server refused. */
  failed: number;
  /** Pending entries per author. */
  pendingByAuthor: CountsByAuthor;
  /** Refused entries per author. */
  failedByAuthor: CountsByAuthor;
}

// ---------------------------------------------------------------------------------------------
// Events

/** Detail of an `escrow-error` event. */
export interface EscrowErrorDetail {
  /** The error's code (`ESCROW_UNSAFE`, `SERVER_UNREACHABLE`, ...). */
  code: TrackerOfflineErrorCode;
  /** Readable message. */
  message: string;
}

/** The events a {@link TrackerOffline} dispatches, by type. */
export interface TrackerOfflineEventMap {
  /** The state changed (login, logout, download, sync, a write queued or sent): the new `status()`. */
  status: CustomEvent<TrackerOfflineStatus>;
  /** A download page was stored. */
  progress: CustomEvent<DownloadProgress>;
  /** A step of sending the outbox (from this page or the service worker): the report so far. */
  flush: CustomEvent<SyncReport>;
  /** Keeping the key in escrow failed after an online login (the login itself succeeded). */
  'escrow-error': CustomEvent<EscrowErrorDetail>;
  /** The session was locked (logged out) after `idleLockMinutes` without input; `detail` is `null`. */
  'idle-lock': CustomEvent<null>;
}

/** The type of an event a {@link TrackerOffline} dispatches. */
export type TrackerOfflineEventType = keyof TrackerOfflineEventMap;

// ---------------------------------------------------------------------------------------------
// The page API

/**
 * The library in a page: one instance per API base. Create it with {@link TrackerOffline.start}.
 * Every method rejects with a {@link TrackerOfflineError}.
 */
export declare class TrackerOffline extends EventTarget {
  /** Use {@link TrackerOffline.start}. */
  private constructor();

  /**
   * Loads the WebAssembly module, opens the vault of `apiBase`, registers the service worker
   * beside the page (module worker) and takes back a session the worker still holds after a
   * reload. Rejects with `BAD_INPUT` (bad options, a worker on another origin) or
   * `SERVER_UNREACHABLE` (the worker could not be installed and none is installed).
   */
  static start(options?: TrackerOfflineOptions): Promise<TrackerOffline>;

  /** The absolute API base this instance talks to (no trailing slash). */
  readonly apiBase: string;

  /**
   * Logs in: the server first (`GET {apiBase}/me`, Basic authentication, without cookies); the
   * register on this device when the server cannot be reached. Where the service worker runs,
   * it runs the login and alone keeps the data key and the password (this page gets the
   * outcome); after an online login sends the outbox and, with `escrow`, keeps the key in escrow.
   * Rejects with `BAD_CREDENTIALS`, `UNKNOWN_USER_OFFLINE`, `LOCKED_OUT`, `CREDENTIAL_EXPIRED`, `CREDENTIAL_REVOKED`,
   * `HANDOVER_REQUIRED`, `OUTSIDE_CLINIC`, `AUTH_REQUIRED`, `BAD_INPUT`, ...
   */
  login(username: string, password: string): Promise<LoginResult>;

  /** Logs out: keys and password are forgotten here and in the service worker. */
  logout(): Promise<void>;

  /** The state to show: connectivity, who is logged in, outbox counts, storage. */
  status(): Promise<TrackerOfflineStatus>;

  /**
   * Downloads (or refreshes, incrementally) the clinic copy: tracked entities, enrollments and
   * events of the user's org units (or `orgUnits`) for every program (or `programs`). Where the
   * service worker runs, it downloads (it is the one writer of the local copy); one download at
   * a time across tabs. Rejects with `VAULT_LOCKED` when nobody is logged in,
   * `SERVER_UNREACHABLE`, `STORAGE_FULL`, ...
   */
  download(options?: DownloadOptions): Promise<DownloadReport>;

  /** Sends the outbox now (it is also sent on its own). */
  sync(): Promise<SyncReport>;

  /** The outbox entries the server refused. */
  failures(): Promise<OutboxFailure[]>;

  /** Conflicts found by flushes and not resolved yet, oldest first. */
  conflicts(): Promise<SyncConflict[]>;

  /**
   * Resolves a conflict: `'device'` keeps what was sent; `'server'` puts the replaced value
   * (the server's, or the other window's) back in the local copy and queues it for the server. Rejects with `BAD_INPUT` for an unknown id.
   */
  resolveConflict(id: string, keep: 'device' | 'server'): Promise<SyncConflict>;

  /** Puts a refused entry back in line and tries to send it. Rejects with `BAD_INPUT` for an unknown id. */
  retry(id: string): Promise<void>;

  /** Drops an entry for good (ask the user first); resolves with the dropped entry. */
  discard(id: string): Promise<DiscardedEntry>;

  /**
   * Removes a user from this device and rotates the data key: what she kept of this device
   * (her register entry, a copy of the storage) opens nothing written afterwards. Colleagues
   * keep their access: the new key is sealed to each one's public key and their next login,
   * online or offline, opens it. Her queued tracker work stays and is sent under her name.
   * Rejects with `BAD_INPUT` for the logged-in user, `UNSENT_WORK` while she has requests only
   * she can send (her own settings), `UNKNOWN_USER_OFFLINE` when she is not registered here,
   * `VAULT_LOCKED` when nobody is logged in. The server escrow (if enabled) still holds the
   * old key until the next online login of its owner with the `escrow` option, or `enableEscrow`.
   */
  removeUser(username: string): Promise<RemovalOutcome>;

  /**
   * Keeps these files of the app (same origin, outside the API) in the service worker's shell
   * cache, so screens never opened online still load offline; files already kept are skipped.
   * Rejects with `BAD_INPUT` when `urls` is not an array.
   */
  cacheAppFiles(urls: readonly (string | URL)[]): Promise<{ added: number }>;

  /**
   * What the service worker holds (diagnostics and tests). Rejects with
   * `SERVICE_WORKER_UNAVAILABLE` when the worker is not active or does not answer within 10 s.
   * Started with `serviceWorker: false`, it waits for `navigator.serviceWorker.ready` (it does
   * not settle while no worker is registered).
   */
  workerStatus(): Promise<WorkerStatus>;

  /** Listens to one of the library's events (`e.detail` is typed by `type`). */
  addEventListener<K extends TrackerOfflineEventType>(
    type: K,
    listener: (this: TrackerOffline, event: TrackerOfflineEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;

  /** Removes a listener added with `addEventListener`. */
  removeEventListener<K extends TrackerOfflineEventType>(
    type: K,
    listener: (this: TrackerOffline, event: TrackerOfflineEventMap[K]) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
}

// ---------------------------------------------------------------------------------------------
// Service worker messages (for diagnostics; tracker-offline.js and sw.js of the same package
// speak this among themselves, and it may change between versions).

/**
 * What sw.js posts to every open window of its scope
 * (`navigator.serviceWorker.addEventListener('message', ...)`).
 */
export type WorkerBroadcast =
  | { type: 'tracker-offline:flush-progress'; apiBase: string; progress: SyncReport }
  | { type: 'tracker-offline:flushed'; apiBase: string; report: SyncReport }
  | { type: 'tracker-offline:queued'; apiBase: string };

/**
 * The requests a page sends sw.js with `postMessage(message, [port])`; the answer comes on the
 * port as a {@link WorkerAnswer}.
 */
export type WorkerRequest =
  | {
      type: 'configure';
      apiBase: string;
      policy?: Pick<TrackerOfflineOptions, 'pbkdf2Iterations' | 'lockoutFreeAttempts' | 'lockoutBaseMs' | 'maxOfflineDays' | 'requestTimeoutMs'>;
      flushScope?: FlushScope;
      conflictPolicy?: 'device-wins' | 'hold';
      serverErrorLimit?: number;
    }
  /** The worker runs the login and answers a {@link LoginOutcome}; the key and the password stay there. */
  | { type: 'login'; apiBase: string; username: string; password: string }
  | { type: 'escrow'; apiBase: string; sharing: EscrowSharing }
  | { type: 'lock' }
  | { type: 'download'; apiBase: string; options?: Omit<DownloadOptions, 'onProgress'> }
  | { type: 'cache-shell'; urls: string[] }
  | { type: 'sync'; apiBase: string; scope?: FlushScope }
  | { type: 'failures'; apiBase: string }
  | { type: 'retry'; apiBase: string; id: string }
  | { type: 'discard'; apiBase: string; id: string }
  | { type: 'conflicts'; apiBase: string }
  | { type: 'remove-user'; apiBase: string; username: string }
  | { type: 'resolve-conflict'; apiBase: string; id: string; keep: 'device' | 'server' }
  | { type: 'status'; apiBase: string }
  | { type: 'resume'; apiBase: string };

/**
 * The answer of sw.js to a {@link WorkerRequest}, on the message port (a `download` first posts
 * `{ progress }` after every page).
 */
export type WorkerAnswer<T = unknown> =
  | { progress: DownloadProgress }
  | { ok: true; result: T }
  | { ok: false; error: { code: TrackerOfflineErrorCode; message: string } };

/**
 * The JSON body of an error response made by the service worker (DHIS2's WebMessage shape;
 * such responses carry `X-Tracker-Offline: local`). `OFFLINE_NOT_AVAILABLE`: offline, and the
 * request is not in the local copy.
 */
export interface WorkerErrorBody {
  httpStatus: string;
  httpStatusCode: number;
  status: 'ERROR';
  message: string;
  code: TrackerOfflineErrorCode | 'OFFLINE_NOT_AVAILABLE';
}
