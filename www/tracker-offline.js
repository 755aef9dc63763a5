// tracker-offline: the JS face of the library, for the page. A thin layer over the wasm
// package (www/pkg): every rule lives in Rust (crates/core); this file only loads the module,
// registers the service worker, hands the data key to it, and turns answers into JS values.
//
//   import { TrackerOffline } from './tracker-offline.js';
//   const app = await TrackerOffline.start({ apiBase: '/api' });
//   await app.login(username, password);   // -> { username, mode: 'online' | 'offline', profile }
//   await app.logout();
//   await app.status();                    // -> { online, user, locked, pending, failed, lastSyncAt,
//                                          //      records, usage, quota, lastDownloadAt }
//   await app.download({ orgUnits, programs, onProgress }); // clinic copy for offline use
//   app.addEventListener('status' | 'progress', (e) => e.detail);
//
// Failures reject with an Error whose `code` is stable (BAD_CREDENTIALS, UNKNOWN_USER_OFFLINE,
// LOCKED_OUT with retryAfterMs, CREDENTIAL_EXPIRED, SERVER_UNREACHABLE, VAULT_LOCKED,
// HANDOVER_REQUIRED, STORAGE_FULL, STORAGE_CORRUPT, BAD_INPUT).

import init, { Engine } from './pkg/tracker_offline.js';

let wasmReady = null;
function loadWasm() {
  wasmReady ??= init({ module_or_path: new URL('./pkg/tracker_offline_bg.wasm', import.meta.url) });
  return wasmReady;
}

function codedError(code, message, extra = {}) {
  return Object.assign(new Error(message), { name: 'TrackerOfflineError', code }, extra);
}

/** Sends one message to the active service worker and waits for its answer. */
async function askWorker(registration, message, transfer = [], timeoutMs = 10000) {
  const worker = registration?.active ?? (await navigator.serviceWorker.ready).active;
  if (!worker) throw codedError('SERVICE_WORKER_UNAVAILABLE', 'the service worker is not active');
  const channel = new MessageChannel();
  const answer = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(codedError('SERVICE_WORKER_UNAVAILABLE', 'the service worker did not answer')), timeoutMs);
    channel.port1.onmessage = ({ data }) => {
      clearTimeout(timer);
      if (data?.ok) resolve(data.result);
      else reject(codedError(data?.error?.code ?? 'SERVICE_WORKER_ERROR', data?.error?.message ?? 'service worker error'));
    };
  });
  worker.postMessage(message, [channel.port2, ...transfer]);
  return answer;
}

export class TrackerOffline extends EventTarget {
  #engine;
  #apiBase;
  #registration;

  constructor(engine, apiBase, registration) {
    super();
    this.#engine = engine;
    this.#apiBase = apiBase;
    this.#registration = registration;
    // A restarted service worker asks open pages for the key again.
    navigator.serviceWorker?.addEventListener('message', (event) => {
      if (event.data?.type === 'tracker-offline:key-request' && this.#engine.unlocked) {
        this.#handKeyToWorker(this.#engine.status().then((s) => s.user?.username)).catch(() => {});
      }
    });
  }

  /**
   * Loads the library, opens the vault of `apiBase` and registers the service worker beside
   * the page (`serviceWorker`: another URL within the app's folder, or `false` for none).
   * Policy options: pbkdf2Iterations, lockoutFreeAttempts, lockoutBaseMs, maxOfflineDays,
   * requestTimeoutMs.
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
      if (url.origin !== location.origin) throw codedError('BAD_INPUT', 'the service worker must be on the app\'s origin');
      registration = await navigator.serviceWorker.register(url, { type: 'module' });
      await navigator.serviceWorker.ready;
    }
    // Ask the browser not to evict the clinic copy under storage pressure.
    await navigator.storage?.persist?.().catch(() => false);
    return new TrackerOffline(engine, apiBase, registration);
  }

  /** The absolute API base this instance talks to. */
  get apiBase() {
    return this.#apiBase;
  }

  /** Logs in: the server first; the local register when the server cannot be reached. */
  async login(username, password) {
    const outcome = await this.#engine.login(String(username ?? ''), String(password ?? ''));
    await this.#handKeyToWorker(outcome.username);
    this.#emitStatus();
    return outcome;
  }

  /** Logs out: keys and password are forgotten here and in the service worker. */
  async logout() {
    this.#engine.logout();
    if (this.#registration) {
      await askWorker(this.#registration, { type: 'lock' }).catch(() => {});
    }
    this.#emitStatus();
  }

  /**
   * `{ online, user, locked, pending, failed, lastSyncAt, records, usage, quota,
   * lastDownloadAt, persisted, registeredUsers }`.
   */
  async status() {
    const s = await this.#engine.status();
    const estimate = (await navigator.storage?.estimate?.().catch(() => null)) ?? {};
    return {
      online: s.online ?? navigator.onLine,
      user: s.user ? { username: s.user.username, displayName: s.user.profile?.displayName ?? s.user.username, mode: s.user.mode } : null,
      locked: s.locked,
      pending: s.pending,
      failed: s.failed,
      lastSyncAt: s.lastSyncAt ?? null,
      registeredUsers: s.registeredUsers,
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
    const run = async () => {
      const report = await this.#engine.download({ orgUnits, programs, pageSize, full }, (progress) => {
        onProgress?.(progress);
        this.dispatchEvent(new CustomEvent('progress', { detail: progress }));
      });
      if (this.#registration) await askWorker(this.#registration, { type: 'invalidate', apiBase: this.#apiBase }).catch(() => {});
      this.#emitStatus();
      return report;
    };
    if (navigator.locks) return navigator.locks.request(`tracker-offline:download:${this.#apiBase}`, run);
    return run();
  }

  /** What the service worker holds: `{ unlocked, username }` (for diagnostics and tests). */
  async workerStatus() {
    return askWorker(this.#registration, { type: 'status', apiBase: this.#apiBase });
  }

  async #handKeyToWorker(username) {
    if (!this.#registration) return;
    const name = await username;
    const key = this.#engine.exportDataKey();
    await askWorker(this.#registration, { type: 'unlock', apiBase: this.#apiBase, username: name, key }, [key.buffer]);
  }

  #emitStatus() {
    this.status().then((s) => this.dispatchEvent(new CustomEvent('status', { detail: s })), () => {});
  }
}
