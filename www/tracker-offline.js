// tracker-offline: the JS face of the library, for the page. A thin layer over the wasm
// package (www/pkg): every rule lives in Rust (crates/core); this file only loads the module,
// registers the service worker, passes the typed credentials to it (where a worker runs, it is
// the only holder of the data key and the password), and turns answers into JS values.
// Types of everything here: tracker-offline.d.ts. One file of about 630 lines on purpose: the
// page API and its two channels (the worker's messages, this page's engine) ship as the one
// module an app imports, beside sw.js and pkg/ (no further file for every packaging path).
//
//   import { TrackerOffline } from './tracker-offline.js';
//   const app = await TrackerOffline.start({ apiBase: '/api' });
//   await app.login(username, password);   // -> { username, mode: 'online' | 'offline', profile, handover }
//   await app.logout();
//   await app.status();                    // -> { online, user, locked, pending, failed, lastSyncAt, records,
//                                          //      usage, quota, lastDownloadAt, pendingByAuthor,
//                                          //      failedByAuthor, registeredUsers, persisted, authRequired }
//   await app.download({ orgUnits, programs, onProgress }); // clinic copy for offline use
//   await app.sync();                      // -> { sent, failed, remaining, requests, stopped, waitingFor, retryAfterMs, nextTryInMs, waitsForServer }
//   await app.failures(); await app.retry(id); await app.discard(id);
//   await app.conflicts(); await app.resolveConflict(id, 'device' | 'server');
//   await app.cacheAppFiles(urls);         // app files kept for offline use
//   app.addEventListener('status' | 'progress' | 'flush' | 'escrow-error' | 'idle-lock', (e) => e.detail);
//
// Failures reject with an Error whose `code` is stable (BAD_CREDENTIALS, UNKNOWN_USER_OFFLINE,
// LOCKED_OUT with retryAfterMs, CREDENTIAL_EXPIRED, CREDENTIAL_REVOKED, SERVER_UNREACHABLE, AUTH_REQUIRED,
// VAULT_LOCKED, HANDOVER_REQUIRED, OUTSIDE_CLINIC, ESCROW_UNSAFE, STORAGE_FULL, STORAGE_CORRUPT, STORAGE_ERROR,
// CONFLICT, BAD_INPUT, BAD_RESPONSE, CRYPTO_ERROR, SERVICE_WORKER_UNAVAILABLE,
// SERVICE_WORKER_ERROR, NOT_ALLOWED); the full list is TrackerOfflineErrorCode in tracker-offline.d.ts.

import init, { Engine, checkFlushScope, triggerDelayMs, workerAnswerWithinMs } from './pkg/tracker_offline.js';

/** A queued write with no flush report in sight: when an automatic flush is tried anyway (ms). */
const QUEUED_CHECK_MS = 30000;
/** How long the status after a queued write waits for the writes of its burst. */
const STATUS_AFTER_WRITES_MS = 250;
/** The library version, stamped by scripts/package.sh ('dev' in the source tree). */
const LIBRARY_VERSION = 'dev';

let wasmReady = null;
function loadWasm() {
  wasmReady ??= init({ module_or_path: new URL('./pkg/tracker_offline_bg.wasm', import.meta.url) });
  return wasmReady;
}

function codedError(code, message, extra = {}) {
  return Object.assign(new Error(message), { name: 'TrackerOfflineError', code }, extra);
}

/**
 * Sends one message to the active service worker and waits for its answer, as long as the
 * core's table of messages says (`worker_protocol`); `onProgress` gets what the worker reports
 * on the way.
 */
async function askWorker(registration, message, onProgress = null) {
  const worker = registration?.active ?? (await navigator.serviceWorker.ready).active;
  if (!worker) throw codedError('SERVICE_WORKER_UNAVAILABLE', 'the service worker is not active');
  const channel = new MessageChannel();
  const answer = new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(codedError('SERVICE_WORKER_UNAVAILABLE', 'the service worker did not answer')),
      workerAnswerWithinMs(message.type),
    );
    channel.port1.onmessage = ({ data }) => {
      if (data && 'progress' in data) return onProgress?.(data.progress);
      clearTimeout(timer);
      if (data?.ok) resolve(data.result);
      else {
        const extra = typeof data?.error?.retryAfterMs === 'number' ? { retryAfterMs: data.error.retryAfterMs } : {};
        reject(codedError(data?.error?.code ?? 'SERVICE_WORKER_ERROR', data?.error?.message ?? 'service worker error', extra));
      }
    };
  });
  worker.postMessage(message, [channel.port2]);
  return answer;
}

/**
 * Where the session, the clinic copy and the outbox live when a service worker runs: in the
 * worker, the one holder of the data key; every call is a message. Chosen once, at start.
 */
class WorkerChannel {
  #registration;
  #apiBase;
  #heartbeat = null;
  /** Whether the worker holds a session (it alone holds the key). */
  unlocked = false;

  constructor(registration, apiBase) {
    this.#registration = registration;
    this.#apiBase = apiBase;
  }

  #ask(type, fields = {}, onProgress = null) {
    return askWorker(this.#registration, { type, apiBase: this.#apiBase, ...fields }, onProgress);
  }

  /** After a reload the worker may still hold the session: carry on with it. */
  async resume() {
    const held = await this.#ask('resume').catch(() => null);
    this.unlocked = held?.unlocked === true;
  }

  /** The worker checks the credentials (server first, then its register) and keeps the key. */
  async login(username, password) {
    const outcome = await this.#ask('login', { username, password });
    this.unlocked = true;
    return outcome;
  }

  escrow(sharing) {
    return this.#ask('escrow', { sharing });
  }

  async logout() {
    this.unlocked = false;
    await askWorker(this.#registration, { type: 'lock' }).catch(() => {});
  }

  /** The page's status with the worker's view laid over it: it holds the session and sees every request. */
  async status(page) {
    const worker = await this.workerStatus().catch(() => null);
    if (worker && typeof worker.online === 'boolean') page.online = worker.online;
    this.unlocked = worker?.unlocked === true;
    page.user = this.unlocked ? worker.user : null;
    page.locked = !this.unlocked;
    // The worker queues and sends the outbox and downloads the copy: its counts are the current ones.
    if (worker?.unlocked && typeof worker.pending === 'number') {
      Object.assign(page, {
        pending: worker.pending, failed: worker.failed, pendingByAuthor: worker.pendingByAuthor, failedByAuthor: worker.failedByAuthor,
        records: worker.records, lastDownloadAt: worker.lastDownloadAt ?? page.lastDownloadAt, authRequired: worker.authRequired,
      });
    }
    return page;
  }

  /** Where a worker runs it is the one writer of the local copy: it downloads, the page asks. */
  download(options, onProgress) {
    return this.#ask('download', { options }, onProgress);
  }

  sync({ scope, ifDue, networkBack }) {
    return this.#ask('sync', { scope, ifDue, networkBack });
  }

  failures() {
    return this.#ask('failures');
  }

  conflicts() {
    return this.#ask('conflicts');
  }

  resolveConflict(id, keep) {
    return this.#ask('resolve-conflict', { id, keep });
  }

  retry(id) {
    return this.#ask('retry', { id });
  }

  discard(id) {
    return this.#ask('discard', { id });
  }

  removeUser(username) {
    return this.#ask('remove-user', { username });
  }

  cacheShell(urls) {
    return askWorker(this.#registration, { type: 'cache-shell', urls });
  }

  workerStatus() {
    return this.#ask('status');
  }

  /**
   * Browsers stop an idle service worker after about 30 s, and a stopped worker has forgotten the
   * key. While a session is open the page asks it for its status every 20 s, which keeps it
   * running; should it have been stopped anyway, `onLost` is called.
   */
  keepAlive(onLost) {
    if (this.#heartbeat !== null) return;
    this.#heartbeat = setInterval(() => {
      if (!this.unlocked) return;
      this.workerStatus()
        .then((worker) => {
          if (worker?.unlocked === false) {
            this.unlocked = false;
            onLost();
          }
        })
        .catch(() => {});
    }, 20000);
  }
}

/**
 * Where they live without a service worker (none registered, or a page it does not control):
 * in this page's own engine, which is then the writer of the local copy.
 */
class EngineChannel {
  #engine;
  #apiBase;

  constructor(engine, apiBase) {
    this.#engine = engine;
    this.#apiBase = apiBase;
  }

  get unlocked() {
    return this.#engine.unlocked;
  }

  async resume() {}

  login(username, password) {
    return this.#engine.login(username, password);
  }

  escrow(sharing) {
    return this.#engine.enableEscrow(sharing);
  }

  async logout() {}

  async status(page) {
    return page;
  }

  /** One download at a time across tabs (Web Locks). */
  download(options, onProgress) {
    const run = () => this.#engine.download(options, onProgress);
    return navigator.locks ? navigator.locks.request(`tracker-offline:download:${this.#apiBase}`, run) : run();
  }

  sync({ scope, ifDue, networkBack }, onProgress) {
    if (networkBack) this.#engine.networkBack();
    return ifDue ? this.#engine.flushIfDue(scope, onProgress) : this.#engine.flush(scope, onProgress);
  }

  failures() {
    return this.#engine.failures();
  }

  conflicts() {
    return this.#engine.conflicts();
  }

  resolveConflict(id, keep) {
    return this.#engine.resolveConflict(id, keep);
  }

  retry(id) {
    return this.#engine.retry(id);
  }

  discard(id) {
    return this.#engine.discard(id);
  }

  removeUser(username) {
    return this.#engine.removeUser(username);
  }

  async cacheShell() {
    return { added: 0 };
  }

  workerStatus() {
    return Promise.reject(codedError('SERVICE_WORKER_UNAVAILABLE', 'no service worker runs for this page'));
  }

  keepAlive() {}
}

export class TrackerOffline extends EventTarget {
  #engine;
  #apiBase;
  /** The worker's channel where a worker runs, else this page's engine: chosen at start. */
  #channel;
  #flushScope;
  #conflictPolicy = 'device-wins';
  #serverErrorLimit = undefined;
  #escrow = null;
  #idleLockMs = 0;
  #idleTimer = null;
  #retryTimer = null;
  #statusTimer = null;

  constructor(engine, apiBase, channel, flushScope) {
    super();
    this.#engine = engine;
    this.#apiBase = apiBase;
    this.#channel = channel;
    this.#flushScope = flushScope;
    // Every device of a region sees `online` at once: each waits a random moment first.
    addEventListener('online', () => this.#autoSync({ spread: true, networkBack: true }));
    navigator.serviceWorker?.addEventListener('message', (event) => {
      if (event.data?.apiBase !== this.#apiBase) return;
      if (event.data.type === 'tracker-offline:flush-progress') {
        this.dispatchEvent(new CustomEvent('flush', { detail: event.data.progress }));
      }
      if (event.data.type === 'tracker-offline:flushed' || event.data.type === 'tracker-offline:queued') {
        this.#emitStatusSoon();
        // The worker's flush after a capture says when the next try is due (its backoff).
        if (event.data.type === 'tracker-offline:flushed') this.#followUp(event.data.report);
        else if (this.#retryTimer === null) this.#scheduleRetry(QUEUED_CHECK_MS);
      }
    });
  }

  /** Whether a session is open: the worker's where it runs, else this page's own engine. */
  get #unlocked() {
    return this.#channel.unlocked;
  }

  /**
   * Loads the library, opens the vault of `apiBase` and registers the service worker beside
   * the page (`serviceWorker`: another URL within the app's folder, or `false` for none).
   * Policy options: pbkdf2Iterations, lockoutFreeAttempts, lockoutBaseMs, maxOfflineDays,
   * requestTimeoutMs. `flushScope`: 'all' (default) or 'author'. `escrow`: `{ users, userGroups }`
   * to keep the data key in the server's dataStore after each online login, shared read-only
   * with them (refused with ESCROW_UNSAFE where the server does not enforce read sharing).
   * `idleLockMinutes` (default 15, 0 = never): log out after that long without input.
   * `conflictPolicy`: 'device-wins' (default: a field changed here and on the server is sent
   * with this device's value, the server's kept in `conflicts()`) or 'hold' (that field waits
   * for `resolveConflict`, every other field flows). `serverErrorLimit` (default 5): how many
   * server errors (HTTP 500) one record may get before its entry is moved aside as a failure
   * (the rest of the outbox flows meanwhile).
   */
  static async start(options = {}) {
    const apiBase = new URL(options.apiBase ?? '/api', location.href).href.replace(/\/+$/, '');
    await loadWasm();
    const engine = await Engine.open({
      apiBase,
      pbkdf2Iterations: options.pbkdf2Iterations,
      lockoutFreeAttempts: options.lockoutFreeAttempts,
      lockoutBaseMs: options.lockoutBaseMs,
      maxOfflineDays: options.maxOfflineDays,
      requestTimeoutMs: options.requestTimeoutMs,
    });
    let registration = null;
    if (options.serviceWorker !== false && 'serviceWorker' in navigator) {
      const url = new URL(options.serviceWorker ?? 'sw.js', location.href);
      // Each release registers its worker under its own URL: a newer release installed on the
      // server (App Management) is then installed by the first page load that runs its code,
      // whatever the HTTP cache holds of the older worker script.
      if (!url.searchParams.has('v')) url.searchParams.set('v', LIBRARY_VERSION);
      if (url.origin !== location.origin) throw codedError('BAD_INPUT', 'the service worker must be on the app\'s origin');
      try {
        // Classic, not a module: a module worker's script is fetched without the session's
        // cookies, which a server login in front of the app's folder answers with a redirect.
        // updateViaCache 'none': update checks of the worker and its imports skip the HTTP cache (DHIS2
        // serves app files without Cache-Control, so browsers would cache them by heuristics).
        registration = await navigator.serviceWorker.register(url, { type: 'classic', updateViaCache: 'none' });
      } catch (error) {
        // Offline, the update check of the worker script fails; the installed worker still runs.
        registration = await navigator.serviceWorker.getRegistration(url);
        if (!registration) throw codedError('SERVER_UNREACHABLE', `cannot install the service worker: ${error.message}`);
      }
      await navigator.serviceWorker.ready;
      // The worker takes messages only from pages it controls: a first visit waits for it to
      // claim this page. A page it does not control (a hard reload) is its own writer.
      if (!navigator.serviceWorker.controller) {
        await Promise.race([
          new Promise((resolve) => navigator.serviceWorker.addEventListener('controllerchange', resolve, { once: true })),
          new Promise((resolve) => setTimeout(resolve, 5000)),
        ]);
      }
      if (!navigator.serviceWorker.controller) registration = null;
    }
    if (registration) {
      // The files this page loaded before the worker controlled it: keep them for offline
      // reloads (and put them back if another app emptied Cache Storage).
      const shell = [location.href, ...performance.getEntriesByType('resource').map((e) => e.name)];
      askWorker(registration, { type: 'cache-shell', urls: shell }).catch(() => {});
    }
    // Ask the browser not to evict the clinic copy under storage pressure.
    await navigator.storage?.persist?.().catch(() => false);
    const flushScope = options.flushScope ?? 'all';
    checkFlushScope(flushScope); // the core checks it (BAD_INPUT)
    const conflictPolicy = options.conflictPolicy ?? 'device-wins';
    engine.setConflictPolicy(conflictPolicy); // the core checks it (BAD_INPUT)
    if (options.serverErrorLimit !== undefined) engine.setServerErrorLimit(options.serverErrorLimit);
    if (registration) {
      // The worker runs the logins: it opens the vault with the same policy as this page.
      const policy = {
        pbkdf2Iterations: options.pbkdf2Iterations, lockoutFreeAttempts: options.lockoutFreeAttempts,
        lockoutBaseMs: options.lockoutBaseMs, maxOfflineDays: options.maxOfflineDays, requestTimeoutMs: options.requestTimeoutMs,
      };
      await askWorker(registration, { type: 'configure', apiBase, policy, flushScope, conflictPolicy, serverErrorLimit: options.serverErrorLimit });
    }
    const channel = registration ? new WorkerChannel(registration, apiBase) : new EngineChannel(engine, apiBase);
    const app = new TrackerOffline(engine, apiBase, channel, flushScope);
    app.#conflictPolicy = conflictPolicy;
    app.#serverErrorLimit = options.serverErrorLimit;
    app.#escrow = options.escrow ?? null;
    app.#idleLockMs = options.idleLockMinutes === 0 ? 0 : (options.idleLockMinutes ?? 15) * 60000;
    // After a reload the worker may still hold the session: carry on with it (the key stays in
    // the worker) rather than showing a login form while it serves decrypted data to this origin.
    await channel.resume();
    channel.keepAlive(() => app.#emitStatus());
    app.#watchIdle();
    return app;
  }

  /** The absolute API base this instance talks to. */
  get apiBase() {
    return this.#apiBase;
  }

  /** Logs in: the server first; the local register when the server cannot be reached. */
  async login(username, password) {
    // Where a worker runs it checks them and keeps the key; the page gets the outcome only.
    const outcome = await this.#channel.login(String(username ?? ''), String(password ?? ''));
    this.#emitStatus();
    // Online login: send the unsent work now, and keep the key in escrow if the clinic wants it.
    if (outcome.mode === 'online') {
      this.#autoSync({ spread: true });
      if (this.#escrow) {
        await this.#channel.escrow(this.#escrow).catch((error) =>
          this.dispatchEvent(new CustomEvent('escrow-error', { detail: { code: error.code, message: error.message } })),
        );
      }
    }
    return outcome;
  }

  /** Logs out: keys and password are forgotten here and in the service worker. */
  async logout() {
    clearTimeout(this.#retryTimer);
    this.#engine.logout();
    await this.#channel.logout();
    this.#emitStatus();
  }

  /**
   * `{ online, user, locked, pending, failed, lastSyncAt, records, usage, quota,
   * lastDownloadAt, persisted, registeredUsers, pendingByAuthor, failedByAuthor }`.
   */
  async status() {
    // Where a worker runs, its view is laid over this page's: it holds the session, sees every
    // request the app makes, and keeps the outbox.
    const s = await this.#channel.status(await this.#engine.status());
    const estimate = (await navigator.storage?.estimate?.().catch(() => null)) ?? {};
    return {
      online: s.online ?? navigator.onLine,
      user: s.user
        ? {
            username: s.user.username,
            displayName: s.user.profile?.displayName ?? s.user.username,
            mode: s.user.mode,
            organisationUnits: s.user.profile?.organisationUnits ?? [],
          }
        : null,
      locked: s.locked,
      pending: s.pending,
      failed: s.failed,
      lastSyncAt: s.lastSyncAt ?? null,
      pendingByAuthor: s.pendingByAuthor,
      failedByAuthor: s.failedByAuthor,
      registeredUsers: s.registeredUsers,
      authRequired: s.authRequired ?? false,
      records: s.records,
      lastDownloadAt: s.lastDownloadAt ?? null,
      usage: estimate.usage ?? null,
      quota: estimate.quota ?? null,
      persisted: (await navigator.storage?.persisted?.().catch(() => false)) ?? false,
    };
  }

  /**
   * Downloads (or refreshes) the clinic copy: tracked entities, enrollments and events of the
   * user's org units (or `orgUnits`) for every program (or `programs`). One download at a time
   * across tabs (Web Locks). Progress goes to `onProgress` and to 'progress' events as
   * `{ done, total }`. Resolves with `{ trackedEntities, deleted, keptLocal, pages,
   * incremental, resumed, records }`.
   */
  async download({ orgUnits, programs, pageSize, full, onProgress } = {}) {
    const options = { orgUnits, programs, pageSize, full };
    const progress = (p) => {
      onProgress?.(p);
      this.dispatchEvent(new CustomEvent('progress', { detail: p }));
    };
    const report = await this.#channel.download(options, progress);
    this.#emitStatus();
    return report;
  }

  /**
   * Sends the outbox now (through the service worker, which also flushes on its own).
   * Resolves with `{ sent, failed, remaining, requests, stopped, waitingFor, retryAfterMs, nextTryInMs,
   * waitsForServer }`;
   * `stopped` is `SERVER_UNREACHABLE`, `SERVER_BUSY` (429/5xx: the device waits, at least
   * `retryAfterMs` when the server said) or `AUTH_REQUIRED` (nothing is sent with a password
   * the server refused until an online login).
   */
  async sync() {
    return this.#sync(false);
  }

  /**
   * A flush: the nurse's "send now", or (`ifDue`) an automatic one the device's backoff holds;
   * `networkBack` when the browser said the network is back (ends a backoff of no answers).
   */
  async #sync(ifDue, networkBack = false) {
    const onProgress = (p) => this.dispatchEvent(new CustomEvent('flush', { detail: p }));
    const report = await this.#channel.sync({ scope: this.#flushScope, ifDue, networkBack }, onProgress);
    this.#followUp(report);
    this.#emitStatus();
    return report;
  }

  /**
   * Entries the server refused (`severity: 'error'`, kept unsent) and warnings the server gave
   * on accepted work (`severity: 'warning'`, dismissed with `discard`):
   * `[{ id, author, summary, records, reasons, createdAtMs, failedAtMs, severity, change }]`, where
   * `change` (`{ kind, action, record, dataElement }`) says what the entry changes, to name it on
   * screen without reading `summary`.
   */
  async failures() {
    return this.#channel.failures();
  }

  /**
   * Fields changed here and, meanwhile, to another value on the server: the device's value was
   * sent and the server's is kept here, or (`held`, policy 'hold') neither was sent yet.
   * `[{ id, kind, record, tei, field, base, server, device, author, changedAtMs, foundAtMs,
   * serverUpdated, held }]`.
   */
  async conflicts() {
    return this.#channel.conflicts();
  }

  /** Resolves a conflict: `keep` 'device' (what was sent stays) or 'server' (its value is put back and sent). */
  async resolveConflict(id, keep) {
    const conflict = await this.#channel.resolveConflict(id, keep);
    this.#autoSync({ now: true }); // either choice may have queued a value for the server
    this.#emitStatus();
    return conflict;
  }

  /** Puts a refused entry back in line and tries to send it. */
  async retry(id) {
    await this.#channel.retry(id);
    this.#autoSync({ now: true });
  }

  /** Drops an entry for good (the app asks the user first); resolves with the dropped entry. */
  async discard(id) {
    const dropped = await this.#channel.discard(id);
    console.info('[tracker-offline] discarded outbox entry', dropped.summary, 'by', dropped.author);
    this.#emitStatus();
    return dropped;
  }

  /**
   * Removes a user from this device (she left the clinic, her phone or password leaked): her
   * offline login goes, and the data key is rotated, so what she kept of this device opens
   * nothing written afterwards. Her queued work stays and is sent under her name. Rejects with
   * `BAD_INPUT` for the logged-in user herself, `UNSENT_WORK` while she has requests only she can send,
   * `UNKNOWN_USER_OFFLINE` when she is not registered here.
   */
  async removeUser(username) {
    const outcome = await this.#channel.removeUser(username);
    console.info('[tracker-offline] removed', outcome.username, 'from this device; data key rotated');
    this.#emitStatus();
    return outcome;
  }

  /** Locks (logs out) after `idleLockMinutes` without keyboard, pointer or touch input. */
  #watchIdle() {
    if (!this.#idleLockMs || typeof addEventListener !== 'function') return;
    const restart = () => {
      clearTimeout(this.#idleTimer);
      this.#idleTimer = setTimeout(() => {
        if (this.#unlocked) {
          this.logout().then(() => this.dispatchEvent(new CustomEvent('idle-lock')));
        }
      }, this.#idleLockMs);
    };
    for (const type of ['keydown', 'pointerdown', 'touchstart', 'wheel']) addEventListener(type, restart, { passive: true });
    restart();
  }

  /**
   * An automatic flush (held while the device backs off), now or (`spread`) after a random
   * moment of up to 10 s; `now` for the nurse's own actions (retry, a resolved conflict), which
   * skip the backoff as "send now" does; `networkBack` for the `online` event.
   */
  #autoSync({ spread = false, now = false, networkBack = false } = {}) {
    if (!this.#unlocked) return;
    if (spread) {
      setTimeout(() => this.#autoSync({ now, networkBack }), triggerDelayMs());
      return;
    }
    this.#sync(!now, networkBack).catch(() => this.#scheduleRetry(QUEUED_CHECK_MS));
  }

  /** Work waits on a busy or unreachable server: a timer for when the core says it is due. */
  #followUp(report) {
    if (report?.remaining > 0 && typeof report.nextTryInMs === 'number') this.#scheduleRetry(report.nextTryInMs);
  }

  /** The one retry timer, set to the latest due time the core gave. */
  #scheduleRetry(delayMs) {
    if (!this.#unlocked) return;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      this.#autoSync();
    }, delayMs);
  }

  /**
   * Keeps these files of the app (same origin, outside the API) in the service worker's shell
   * cache, so screens never opened online still load offline. Files already kept are skipped
   * (they are refreshed whenever the app loads them online). Resolves with `{ added }`.
   */
  async cacheAppFiles(urls) {
    if (!Array.isArray(urls)) throw codedError('BAD_INPUT', 'cacheAppFiles takes an array of URLs');
    return this.#channel.cacheShell(urls.map((u) => new URL(String(u), location.href).href));
  }

  /** What the service worker holds: `{ unlocked, username }` (for diagnostics and tests). */
  async workerStatus() {
    return this.#channel.workerStatus();
  }

  #emitStatus() {
    this.status().then((s) => this.dispatchEvent(new CustomEvent('status', { detail: s })), () => {});
  }

  /** The status after queued or sent work, asked once per burst of writes (issue 17, P4). */
  #emitStatusSoon() {
    if (this.#statusTimer !== null) return;
    this.#statusTimer = setTimeout(() => {
      this.#statusTimer = null;
      this.#emitStatus();
    }, STATUS_AFTER_WRITES_MS);
  }
}
