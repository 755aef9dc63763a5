// tracker-offline service worker. Registered beside the app (its folder is its scope).
// - Holds the vault's data key only while a page has handed it over, forgets it on logout,
//   and asks open pages for it again after the browser restarted the worker.
// - GET requests under an API base: network first; when the server cannot be reached (or
//   during the fast path after a failure) the answer comes from the local copy (Rust core).
//   Successful online answers the core deems cacheable are kept sealed (per user where the
//   answer depends on the user). The server pages Tracker Capture reads outside the API (the
//   org unit tree, fetched with a POST) are treated the same way.
// - The clinic copy is downloaded here when a page asks (`download`): the worker is the one
//   writer of the local copy and the outbox wherever it runs.
// - Writes under an API base: sent straight through while the server answers and nothing is
//   queued (with client UIDs added to creates, so a lost answer cannot cause a duplicate);
//   otherwise captured into the encrypted outbox and answered as the server would.
//   The outbox is flushed on Background Sync, on a page's request, and after a capture while
//   the server answers, one flusher at a time (Web Locks).
// - Everything else of the app's origin (the app shell): network first, copy kept in Cache
//   Storage and re-cached on every online load.
// It never touches `window`; every rule lives in Rust.

import init, { Engine } from './pkg/tracker_offline.js';

const SYNC_TAG = 'tracker-offline-outbox';

const SHELL_CACHE = 'tracker-offline-shell-v1';
const NETWORK_TIMEOUT_MS = 8000;
const KEY_WAIT_MS = 1500;
const DB_PREFIX = 'tracker-offline:';

let wasmReady = null;
const engines = new Map(); // absolute apiBase -> Promise<Engine>
const flushScopes = new Map(); // absolute apiBase -> 'all' | 'author'
let keyWaiters = [];

function loadWasm() {
  wasmReady ??= init({ module_or_path: new URL('./pkg/tracker_offline_bg.wasm', import.meta.url) });
  return wasmReady;
}

function coded(code, message) {
  return Object.assign(new Error(message), { code });
}

async function engineFor(apiBase) {
  if (typeof apiBase !== 'string' || !apiBase) throw coded('BAD_INPUT', 'apiBase missing');
  await loadWasm();
  if (!engines.has(apiBase)) engines.set(apiBase, Engine.open({ apiBase }));
  return engines.get(apiBase);
}

/** The API bases known on this origin: every vault database is named after one. */
async function knownApiBases() {
  const fromDbs = (await indexedDB.databases())
    .map((d) => d.name)
    .filter((n) => n?.startsWith(DB_PREFIX))
    .map((n) => n.slice(DB_PREFIX.length));
  return [...new Set([...engines.keys(), ...fromDbs])];
}

async function apiBaseOf(url) {
  for (const base of await knownApiBases()) {
    const path = new URL(base).pathname.replace(/\/+$/, '');
    if (new URL(base).origin === url.origin && (url.pathname === path || url.pathname.startsWith(path + '/'))) return base;
  }
  return null;
}

/** After a restart the worker has no key: ask the open pages, wait briefly. */
async function requestKey(engine) {
  if (engine.unlocked) return true;
  const arrived = new Promise((resolve) => {
    keyWaiters.push(resolve);
    setTimeout(() => resolve(false), KEY_WAIT_MS);
  });
  for (const client of await self.clients.matchAll({ type: 'window' })) client.postMessage({ type: 'tracker-offline:key-request' });
  await arrived;
  return engine.unlocked;
}

function jsonResponse(status, body, extraHeaders = {}) {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json;charset=UTF-8', 'x-tracker-offline': 'local', ...extraHeaders },
  });
}

function webMessage(status, httpStatus, message, code) {
  return jsonResponse(status, { httpStatus, httpStatusCode: status, status: 'ERROR', message, code });
}

async function fetchWithTimeout(request) {
  return fetch(request, { signal: AbortSignal.timeout(NETWORK_TIMEOUT_MS) });
}

/**
 * Sends the app's request; when the server lost the session (it restarted while the clinic was
 * offline), opens a new one for the logged-in user and sends the request once more.
 * `makeRequest` builds a fresh Request each time (a body can be read once).
 */
async function fetchWithSession(engine, makeRequest) {
  const response = await fetchWithTimeout(makeRequest());
  const lost = engine.sessionLost(response.status, response.redirected ? response.url : undefined);
  if (!lost || !engine.unlocked || !(await engine.renewSession())) return response;
  return fetchWithTimeout(makeRequest());
}

/**
 * A read: API GETs, and the server pages the app reads outside the API (org unit tree, with a
 * POST). Network first; online answers the core deems cacheable are kept sealed (per user where
 * they depend on the user); offline, the answer comes from the local copy or that cache.
 */
async function answerRead(event, request, apiBase) {
  const engine = await engineFor(apiBase);
  const requestBody = request.method === 'GET' ? new Uint8Array() : new Uint8Array(await request.clone().arrayBuffer());
  // A credential check must reach the server or fail: never answer it from local data.
  if (request.headers.has('authorization')) {
    try {
      const response = await fetchWithTimeout(request);
      engine.recordNetwork(response.status, response.headers.get('retry-after') ?? undefined);
      return response;
    } catch {
      engine.recordNetwork(undefined);
      return Response.error();
    }
  }
  if (engine.shouldTryNetwork()) {
    try {
      const response = await fetchWithSession(engine, () => request.clone());
      if (engine.recordNetwork(response.status, response.headers.get('retry-after') ?? undefined)) {
        if ((response.ok || response.status === 404) && !response.redirected && engine.unlocked) {
          const copy = response.clone();
          event.waitUntil(
            copy.arrayBuffer().then((body) =>
              engine.cacheRead(request.method, request.url, requestBody, copy.status, copy.headers.get('content-type') ?? '', new Uint8Array(body)),
            ).catch(() => {}),
          );
        }
        return response;
      }
    } catch {
      engine.recordNetwork(undefined);
    }
  }
  if (!(await requestKey(engine))) {
    return webMessage(503, 'Service Unavailable', 'Offline, and the local copy is locked: log in again.', 'VAULT_LOCKED');
  }
  try {
    const local = await engine.answerReadOffline(request.method, request.url, requestBody);
    if (local) return new Response(local.body, { status: local.status, headers: local.headers });
    return webMessage(503, 'Service Unavailable', 'Offline, and this is not in the local copy.', 'OFFLINE_NOT_AVAILABLE');
  } catch (error) {
    const status = error.code === 'BAD_INPUT' ? 400 : 503;
    return webMessage(status, status === 400 ? 'Bad Request' : 'Service Unavailable', error.message, error.code);
  }
}

/** The API base whose server serves this page as a read (e.g. the org unit tree), if any. */
async function serverReadBaseOf(url, method) {
  for (const base of await knownApiBases()) {
    if (new URL(base).origin !== url.origin) continue;
    if ((await engineFor(base)).isServerRead(method, url.href)) return base;
  }
  return null;
}

function toResponse(answer) {
  return new Response(answer.body.length ? answer.body : null, { status: answer.status, headers: answer.headers });
}

async function notifyClients(message) {
  for (const client of await self.clients.matchAll({ type: 'window' })) client.postMessage(message);
}

/** Sends the outbox of one API base; one flusher at a time across tabs and this worker. */
async function flush(apiBase, scope) {
  const engine = await engineFor(apiBase);
  if (!engine.unlocked) throw coded('VAULT_LOCKED', 'the outbox cannot be sent while locked');
  const run = () =>
    engine.flush(scope ?? flushScopes.get(apiBase) ?? 'all', (progress) =>
      notifyClients({ type: 'tracker-offline:flush-progress', apiBase, progress }),
    );
  const report = self.navigator.locks ? await self.navigator.locks.request(`tracker-offline:flush:${apiBase}`, run) : await run();
  await notifyClients({ type: 'tracker-offline:flushed', apiBase, report });
  return report;
}

async function registerSync() {
  try {
    await self.registration.sync?.register(SYNC_TAG);
  } catch {
    /* Background Sync unavailable: pages retry on a timer. */
  }
}

async function answerWrite(event, request, apiBase) {
  const engine = await engineFor(apiBase);
  const body = new Uint8Array(await request.clone().arrayBuffer());
  if (!(await requestKey(engine))) {
    // Without the key nothing can be queued: the server answers or the app sees the failure.
    try {
      return await fetchWithTimeout(request);
    } catch {
      return webMessage(503, 'Service Unavailable', 'Offline, and the local copy is locked: log in again.', 'VAULT_LOCKED');
    }
  }
  let prepared;
  try {
    prepared = engine.prepareWrite(request.method, request.url, request.headers.get('content-type') ?? '', body);
  } catch (error) {
    return webMessage(400, 'Bad Request', error.message, error.code);
  }
  const queueFirst = !engine.shouldTryNetwork() || (await engine.outboxHasWork());
  if (!queueFirst) {
    try {
      const sent = () =>
        new Request(request.url, {
          method: request.method,
          headers: request.headers,
          body: prepared.body.length ? prepared.body : undefined,
          credentials: 'same-origin',
        });
      const response = await fetchWithSession(engine, sent);
      if (engine.recordNetwork(response.status, response.headers.get('retry-after') ?? undefined)) {
        // The local copy follows only an answer that accepts the write (read by the core).
        event.waitUntil(
          response
            .clone()
            .arrayBuffer()
            .then((bytes) =>
              engine.recordOnlineWrite(prepared, response.status, response.headers.get('content-type') ?? undefined, new Uint8Array(bytes)),
            )
            .catch(() => {}),
        );
        return response;
      }
    } catch {
      engine.recordNetwork(undefined);
    }
  }
  try {
    // Which window wrote, and which are open: a value another open window saved and this one
    // replaces is kept as a conflict (the core decides).
    if (event.clientId) prepared.fromWindow(event.clientId, (await self.clients.matchAll({ type: 'window' })).map((c) => c.id));
    const answer = await engine.captureWrite(prepared);
    event.waitUntil(
      (async () => {
        await notifyClients({ type: 'tracker-offline:queued', apiBase });
        await registerSync();
        if (engine.shouldTryNetwork()) await flush(apiBase).catch(() => {});
      })(),
    );
    return toResponse(answer);
  } catch (error) {
    const status = error.code === 'STORAGE_FULL' ? 507 : 503;
    return webMessage(status, status === 507 ? 'Insufficient Storage' : 'Service Unavailable', error.message, error.code);
  }
}

/** API paths, server pages and test/admin endpoints are never part of the app shell. */
function isNeverShell(url) {
  return url.pathname.startsWith('/api/') || url.pathname.startsWith('/__') || url.pathname.includes('/dhis-web-commons');
}

async function answerShell(event, request) {
  const cache = await caches.open(SHELL_CACHE);
  try {
    const response = await fetchWithTimeout(request);
    if (response.ok && response.type === 'basic' && !isNeverShell(new URL(request.url))) {
      event.waitUntil(cache.put(request, response.clone()).catch(() => {}));
    }
    return response;
  } catch (error) {
    const cached = await cache.match(request.url, { ignoreVary: true });
    if (cached) return cached;
    throw error;
  }
}

self.addEventListener('fetch', (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (request.method === 'HEAD' || request.method === 'OPTIONS') return;
  event.respondWith(
    (async () => {
      const apiBase = await apiBaseOf(url);
      if (apiBase) {
        const read = (await engineFor(apiBase)).isServerRead(request.method, request.url);
        return read ? answerRead(event, request, apiBase) : answerWrite(event, request, apiBase);
      }
      const serverBase = await serverReadBaseOf(url, request.method);
      if (serverBase) return answerRead(event, request, serverBase);
      if (request.method !== 'GET' || url.pathname.startsWith('/api/')) return fetch(request);
      return answerShell(event, request);
    })(),
  );
});

self.addEventListener('sync', (event) => {
  if (event.tag !== SYNC_TAG) return;
  event.waitUntil(
    (async () => {
      let unreachable = false;
      for (const apiBase of await knownApiBases()) {
        const engine = await engineFor(apiBase);
        if (!(await requestKey(engine))) continue;
        const report = await flush(apiBase).catch(() => null);
        if (report?.stopped === 'SERVER_UNREACHABLE') unreachable = true;
      }
      // Rejecting makes the browser retry the sync later, with its own backoff.
      if (unreachable && !event.lastChance) throw new Error('server unreachable; the outbox waits');
    })(),
  );
});

/**
 * Downloads (or refreshes) the clinic copy here, so that the worker stays the one writer of the
 * local copy while pages keep registering and recording through it. One download at a time
 * across tabs (Web Locks); progress goes back on the asking page's port.
 */
async function download(apiBase, options, port) {
  const engine = await engineFor(apiBase);
  if (!(await requestKey(engine))) throw coded('VAULT_LOCKED', 'the clinic copy cannot be downloaded while locked');
  const run = () => engine.download(options ?? {}, (progress) => port?.postMessage({ progress }));
  return self.navigator.locks ? self.navigator.locks.request(`tracker-offline:download:${apiBase}`, run) : run();
}

async function handle(message, port) {
  switch (message?.type) {
    case 'unlock': {
      const engine = await engineFor(message.apiBase);
      // The clinic index stays valid across a shift change (same vault, same key); a logout
      // already dropped it, and downloads run here.
      await engine.unlockWithDataKey(message.username, message.key, message.password);
      if (message.flushScope) flushScopes.set(message.apiBase, message.flushScope);
      if (message.conflictPolicy) engine.setConflictPolicy(message.conflictPolicy);
      if (message.serverErrorLimit !== undefined) engine.setServerErrorLimit(message.serverErrorLimit);
      const waiters = keyWaiters;
      keyWaiters = [];
      waiters.forEach((resolve) => resolve(true));
      return { unlocked: engine.unlocked, username: message.username };
    }
    case 'lock': {
      for (const pending of engines.values()) (await pending).logout();
      return { unlocked: false };
    }
    case 'download':
      return download(message.apiBase, message.options, port);
    case 'cache-shell':
      return cacheShell(message.urls ?? []);
    case 'sync':
      return flush(message.apiBase, message.scope);
    case 'failures':
      return (await engineFor(message.apiBase)).failures();
    case 'retry':
      await (await engineFor(message.apiBase)).retry(message.id);
      return {};
    case 'discard':
      return (await engineFor(message.apiBase)).discard(message.id);
    case 'conflicts':
      return (await engineFor(message.apiBase)).conflicts();
    case 'resolve-conflict':
      return (await engineFor(message.apiBase)).resolveConflict(message.id, message.keep);
    case 'status': {
      const engine = await engineFor(message.apiBase);
      const status = await engine.status();
      return {
        unlocked: engine.unlocked, username: status.user?.username ?? null, records: status.records, online: status.online,
        pending: status.pending, failed: status.failed, pendingByAuthor: status.pendingByAuthor, failedByAuthor: status.failedByAuthor,
        lastDownloadAt: status.lastDownloadAt ?? null, authRequired: status.authRequired,
      };
    }
    case 'resume': {
      // A reloaded page of the same origin takes the open session back (same-origin channel,
      // as the handover that gave it to this worker).
      const engine = await engineFor(message.apiBase);
      if (!engine.unlocked) return { unlocked: false };
      const status = await engine.status();
      const key = engine.exportDataKey();
      return { unlocked: true, username: status.user?.username, key, password: engine.sessionPassword() };
    }
    default:
      throw coded('BAD_INPUT', `unknown message ${message?.type}`);
  }
}

/** The library's own files, kept so a reload works offline. */
const LIBRARY_FILES = ['./tracker-offline.js', './pkg/tracker_offline.js', './pkg/tracker_offline_bg.wasm'];

/** Caches the given same-origin URLs that are not yet in the shell cache (or all, when `refresh`). */
async function cacheShell(urls, refresh = false) {
  const cache = await caches.open(SHELL_CACHE);
  let added = 0;
  for (const href of urls) {
    const url = new URL(href, self.location.href);
    if (url.origin !== self.location.origin || (await apiBaseOf(url)) || isNeverShell(url)) continue;
    if (!refresh && (await cache.match(url.href, { ignoreVary: true }))) continue;
    try {
      const response = await fetch(url.href, { cache: 'no-cache' });
      if (response.ok) {
        await cache.put(url.href, response);
        added += 1;
      }
    } catch {
      /* offline: keep what is there */
    }
  }
  return { added };
}

self.addEventListener('install', (event) =>
  event.waitUntil(cacheShell(LIBRARY_FILES.map((f) => new URL(f, self.location.href).href)).then(() => self.skipWaiting())),
);
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));
self.addEventListener('message', (event) => {
  const port = event.ports[0];
  event.waitUntil(
    handle(event.data, port).then(
      (result) => port?.postMessage({ ok: true, result }),
      (error) => port?.postMessage({ ok: false, error: { code: error?.code ?? 'SERVICE_WORKER_ERROR', message: String(error?.message ?? error) } }),
    ),
  );
});
