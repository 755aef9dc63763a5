// tracker-offline service worker. Registered beside the app (its folder is its scope).
// - The only holder of the vault's data key and the session password: a page sends the typed
//   credentials here (`login`), the worker runs the login and answers with the outcome only.
//   Nothing ever sends key material or a password back. Messages are taken only from windows
//   this worker controls, inside its scope, and only the kinds allowed in the vault's state
//   (locked: configure, login, lock, status, resume, cache-shell). A worker the browser restarts
//   has no key: the nurse logs in again (open pages keep it alive with their status calls).
// - GET requests under an API base: network first; when the server cannot be reached (or
//   during the fast path after a failure) the answer comes from the local copy (Rust core).
//   Successful online answers the core deems cacheable are kept sealed (per user, except the
//   clinic-wide metadata of the core's allow-list). The server pages Tracker Capture reads outside the API (the
//   org unit tree, fetched with a POST) are treated the same way.
// - The clinic copy is downloaded here when a page asks (`download`): the worker is the one
//   writer of the local copy and the outbox wherever it runs.
// - Writes under an API base: sent straight through while the server answers and nothing is
//   queued (with client UIDs added to creates, so a lost answer cannot cause a duplicate);
//   otherwise captured into the encrypted outbox and answered as the server would.
//   The outbox is flushed on Background Sync (after the random trigger delay: the browser fires
//   it on every device of a region when the network comes back), on a page's request, and
//   after a capture, one flusher at a time (Web Locks); every automatic trigger waits while
//   the device backs off (the core's backoff, shared by all of them).
// - Everything else of the app's origin (the app shell): network first, copy kept in Cache
//   Storage and re-cached on every online load.
// It never touches `window`; every rule lives in Rust: the core's fetch plans (`fetch_plan.rs`)
// decide whose each request is and what to do with it, this file carries the plans out.
//
// A classic worker, not a module: browsers fetch a module worker's script without cookies, and
// on DHIS2 the app's folder is behind the server's login (the script would be answered with a
// redirect to the login page, which a worker registration refuses). A classic worker's script
// and its importScripts are fetched with the session's cookies. The wasm glue it imports is
// wasm-bindgen's `no-modules` build of the same wasm (scripts/build-wasm.sh).
'use strict';

/**
 * The library version, stamped by scripts/package.sh ('dev' in the source tree). It also makes
 * every release's worker script differ byte for byte, which is what makes browsers install it.
 */
const LIBRARY_VERSION = 'dev';

// Versioned URL: a newer release's worker never gets an older glue from the HTTP cache.
importScripts(`./pkg/tracker_offline_worker.js?v=${LIBRARY_VERSION}`);
/* global wasm_bindgen */
const { Engine, triggerDelayMs, routeRequest, keepsShellCopy, appRequestTimeoutMs, checkWorkerMessage, checkFlushScope } = wasm_bindgen;
const init = wasm_bindgen;

const SYNC_TAG = 'tracker-offline-outbox';

const SHELL_CACHE = 'tracker-offline-shell-v1';
const DB_PREFIX = 'tracker-offline:';

/** The vault policy a page may set (`configure`), as `Engine.open` takes it. */
const POLICY_OPTIONS = ['pbkdf2Iterations', 'lockoutFreeAttempts', 'lockoutBaseMs', 'maxOfflineDays', 'requestTimeoutMs'];

let wasmReady = null;
const engines = new Map(); // absolute apiBase -> Promise<Engine>
const policies = new Map(); // absolute apiBase -> the policy its engine was opened with (JSON)
const settings = new Map(); // absolute apiBase -> { flushScope, conflictPolicy, serverErrorLimit }

/**
 * This worker's own copy of the wasm, kept at install under its version: the glue it imported
 * (`importScripts`, kept by the browser with the worker) works only with the wasm of the same
 * build. Fetching the server's wasm instead breaks a worker still running when a newer release
 * is installed on the server (seen with 0.1.0: the first page load after an upgrade failed).
 */
const WASM_URL = new URL('./pkg/tracker_offline_bg.wasm', self.location.href).href;

/** Cache Storage name of this release's own library files. */
const LIBRARY_CACHE = `tracker-offline-library-${LIBRARY_VERSION}`;

function loadWasm() {
  wasmReady ??= (async () => {
    const own = await caches.open(LIBRARY_CACHE).then((cache) => cache.match(WASM_URL)).catch(() => undefined);
    return init({ module_or_path: own ?? WASM_URL });
  })();
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

/** An API base this worker serves (the core's rule: its origin's `/api`, after a context path). */
function isApiBase(apiBase) {
  return typeof apiBase === 'string' && wasm_bindgen.isApiBase(apiBase, self.location.origin);
}

async function checkedApiBase(apiBase) {
  await loadWasm();
  if (!isApiBase(apiBase)) throw coded('BAD_INPUT', `not an API base of this app's origin: ${String(apiBase).slice(0, 200)}`);
  return apiBase;
}

/** The API bases known on this origin: every vault database is named after one (any other name, which any page can create, is ignored). */
async function knownApiBases() {
  await loadWasm();
  const fromDbs = (await indexedDB.databases())
    .map((d) => d.name)
    .filter((n) => n?.startsWith(DB_PREFIX))
    .map((n) => n.slice(DB_PREFIX.length));
  return [...new Set([...engines.keys(), ...fromDbs])].filter(isApiBase);
}

async function fetchWithTimeout(request) {
  return fetch(request, { signal: AbortSignal.timeout(appRequestTimeoutMs()) });
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

/** Reports an answer of the server to the core: what to do with it (`{ useAnswer, keepCopy }`). */
function afterAnswer(engine, response) {
  return engine.afterNetwork(response.status, response.headers.get('retry-after') ?? undefined, response.redirected);
}

/**
 * A read: API GETs, and the server pages the app reads outside the API (org unit tree, with a
 * POST), on the core's plan: network only (a credential check), network first, or local at once.
 */
async function answerRead(event, request, apiBase) {
  const engine = await engineFor(apiBase);
  const requestBody = request.method === 'GET' ? new Uint8Array() : new Uint8Array(await request.clone().arrayBuffer());
  const plan = engine.planRead(request.headers.has('authorization'));
  if (plan === 'network-only') {
    try {
      const response = await fetchWithTimeout(request);
      afterAnswer(engine, response);
      return response;
    } catch {
      engine.afterNetwork(undefined, undefined, false);
      return Response.error();
    }
  }
  if (plan === 'network-first') {
    try {
      const response = await fetchWithSession(engine, () => request.clone());
      const next = afterAnswer(engine, response);
      if (next.useAnswer) {
        if (next.keepCopy) {
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
      engine.afterNetwork(undefined, undefined, false);
    }
  }
  return toResponse(await engine.answerReadLocally(request.method, request.url, requestBody));
}

function toResponse(answer) {
  return new Response(answer.body.length ? answer.body : null, { status: answer.status, headers: answer.headers });
}

/** Posts a message to every window of this worker (`windows`: a list already asked for). */
async function notifyClients(message, windows) {
  for (const client of windows ?? (await self.clients.matchAll({ type: 'window' }))) client.postMessage(message);
}

/**
 * Sends the outbox of one API base; one flusher at a time across tabs and this worker.
 * `ifDue` for automatic triggers: while the device backs off (the core's backoff, shared by
 * every trigger) nothing is sent and the report says `BACKING_OFF` with `nextTryInMs`.
 */
async function flush(apiBase, scope, { ifDue = false, networkBack = false } = {}) {
  const engine = await engineFor(apiBase);
  if (!engine.unlocked) throw coded('VAULT_LOCKED', 'the outbox cannot be sent while locked');
  if (networkBack) engine.networkBack();
  const onProgress = (progress) => notifyClients({ type: 'tracker-offline:flush-progress', apiBase, progress });
  const flushScope = scope ?? settings.get(apiBase)?.flushScope ?? 'all';
  const run = () => (ifDue ? engine.flushIfDue(flushScope, onProgress) : engine.flush(flushScope, onProgress));
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

/**
 * A write under an API base, on the core's plan: sent as is (locked), refused, sent (queued when
 * the server does not take it), or queued at once.
 */
async function answerWrite(event, request, apiBase) {
  const engine = await engineFor(apiBase);
  // The body is read once (no copy of the request): a write sent as it came is rebuilt from it.
  const body = new Uint8Array(await request.arrayBuffer());
  const plan = await engine.planWrite(request.method, request.url, request.headers.get('content-type') ?? '', body);
  if (plan.kind === 'send-as-is') {
    try {
      // The bytes always go as the body: a request built from a read one without a body of its
      // own would be refused (an empty body read is still a read body).
      return await fetchWithTimeout(new Request(request, { body }));
    } catch {
      return toResponse(plan.answer);
    }
  }
  if (plan.kind === 'refuse') return toResponse(plan.answer);
  const { prepared } = plan;
  if (plan.kind === 'send') {
    try {
      const sent = () =>
        new Request(request.url, {
          method: request.method,
          headers: request.headers,
          body: prepared.body.length ? prepared.body : undefined,
          credentials: 'same-origin',
        });
      const response = await fetchWithSession(engine, sent);
      if (afterAnswer(engine, response).useAnswer) {
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
      engine.afterNetwork(undefined, undefined, false);
    }
  }
  // Which window wrote, and which are open: a value another open window saved and this one
  // replaces is kept as a conflict (the core decides).
  const windows = await self.clients.matchAll({ type: 'window' });
  if (event.clientId) prepared.fromWindow(event.clientId, windows.map((c) => c.id));
  const { queued, answer } = await engine.captureWrite(prepared);
  if (queued) {
    event.waitUntil(
      (async () => {
        await notifyClients({ type: 'tracker-offline:queued', apiBase }, windows);
        await registerSync();
        // Never while the device backs off (the core decides; the report says when).
        await flush(apiBase, undefined, { ifDue: true }).catch(() => {});
      })(),
    );
  }
  return toResponse(answer);
}

async function answerShell(event, request, apiBases) {
  const cache = await caches.open(SHELL_CACHE);
  try {
    const response = await fetchWithTimeout(request);
    if (keepsShellCopy(request.url, self.location.origin, apiBases, response.status, response.redirected, response.type === 'basic')) {
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
  // Decided before the wasm can be loaded (a fetch event is answered or left at once): requests
  // of other origins, HEAD and OPTIONS stay the browser's, as the core's routing says too.
  if (new URL(request.url).origin !== self.location.origin || request.method === 'HEAD' || request.method === 'OPTIONS') return;
  event.respondWith(
    (async () => {
      const apiBases = await knownApiBases();
      const route = routeRequest(request.method, request.url, self.location.origin, apiBases);
      if (route.kind === 'read') return answerRead(event, request, route.apiBase);
      if (route.kind === 'write') return answerWrite(event, request, route.apiBase);
      if (route.kind === 'shell') return answerShell(event, request, apiBases);
      return fetch(request);
    })(),
  );
});

self.addEventListener('sync', (event) => {
  if (event.tag !== SYNC_TAG) return;
  event.waitUntil(
    (async () => {
      // Fired when the network comes back, on every device of a region at the same moment
      // (as `online`): each waits a random moment (the core's trigger delay) first.
      await loadWasm();
      await new Promise((resolve) => setTimeout(resolve, triggerDelayMs()));
      let waiting = false;
      for (const apiBase of await knownApiBases()) {
        const engine = await engineFor(apiBase);
        if (!engine.unlocked) continue;
        const report = await flush(apiBase, undefined, { ifDue: true, networkBack: true }).catch(() => null);
        if (report?.waitsForServer) waiting = true;
      }
      // Rejecting makes the browser retry the sync later, with its own backoff.
      if (waiting && !event.lastChance) throw new Error('the server is out of reach or busy; the outbox waits');
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
  const run = () => engine.download(options ?? {}, (progress) => port?.postMessage({ progress }));
  return self.navigator.locks ? self.navigator.locks.request(`tracker-offline:download:${apiBase}`, run) : run();
}

/**
 * Opens (again) the engine of `apiBase` with the policy the app configured. An engine holding a
 * session keeps its policy until the session ends.
 */
async function configure(apiBase, message) {
  const policy = {};
  for (const name of POLICY_OPTIONS) if (message.policy?.[name] !== undefined) policy[name] = message.policy[name];
  const wanted = JSON.stringify(policy);
  const current = await engineFor(apiBase);
  if (policies.get(apiBase) !== wanted && !current.unlocked) {
    const engine = await Engine.open({ apiBase, ...policy }); // BAD_INPUT for a policy below the minimums
    engines.set(apiBase, Promise.resolve(engine));
    policies.set(apiBase, wanted);
  }
  const { flushScope, conflictPolicy, serverErrorLimit } = message;
  checkFlushScope(flushScope); // BAD_INPUT from the core
  settings.set(apiBase, { flushScope, conflictPolicy, serverErrorLimit });
  applySettings(apiBase, await engineFor(apiBase));
  return {};
}

function applySettings(apiBase, engine) {
  const { conflictPolicy, serverErrorLimit } = settings.get(apiBase) ?? {};
  if (conflictPolicy !== undefined) engine.setConflictPolicy(conflictPolicy);
  if (serverErrorLimit !== undefined) engine.setServerErrorLimit(serverErrorLimit);
}

/** What the worker tells a page of its vault: counts and who is logged in, never key material. */
async function statusOf(engine) {
  const status = await engine.status();
  return {
    unlocked: engine.unlocked, locked: status.locked, username: status.user?.username ?? null, user: status.user ?? null,
    records: status.records, online: status.online, pending: status.pending, failed: status.failed,
    pendingByAuthor: status.pendingByAuthor, failedByAuthor: status.failedByAuthor,
    lastDownloadAt: status.lastDownloadAt ?? null, authRequired: status.authRequired,
    version: LIBRARY_VERSION,
  };
}

/** Acts on a page's message, once the core's table of messages (`worker_protocol`) took it. */
async function handle(message, port) {
  await loadWasm();
  const type = String(message?.type);
  if (!checkWorkerMessage(type, true)) {
    // Messages that name no vault.
    if (type === 'lock') {
      for (const pending of engines.values()) (await pending).logout();
      return { unlocked: false };
    }
    return cacheShell(Array.isArray(message.urls) ? message.urls : []);
  }
  const apiBase = await checkedApiBase(message.apiBase);
  if (type === 'configure') return configure(apiBase, message);
  const engine = await engineFor(apiBase);
  checkWorkerMessage(type, engine.unlocked); // VAULT_LOCKED for a session's message
  switch (type) {
    case 'login': {
      // The password stays here: the page gets the outcome (who, online or offline, profile).
      const outcome = await engine.login(String(message.username ?? ''), String(message.password ?? ''));
      applySettings(apiBase, engine);
      return outcome;
    }
    case 'escrow':
      return engine.enableEscrow(message.sharing);
    case 'download':
      return download(apiBase, message.options, port);
    case 'sync':
      return flush(apiBase, message.scope, { ifDue: message.ifDue === true, networkBack: message.networkBack === true });
    case 'failures':
      return engine.failures();
    case 'retry':
      await engine.retry(String(message.id ?? ''));
      return {};
    case 'discard':
      return engine.discard(String(message.id ?? ''));
    case 'conflicts':
      return engine.conflicts();
    case 'remove-user':
      return engine.removeUser(String(message.username ?? ''));
    case 'resolve-conflict':
      return engine.resolveConflict(String(message.id ?? ''), String(message.keep ?? ''));
    case 'status':
      return statusOf(engine);
    case 'resume': {
      // A reloaded page learns whether a session is open and whose; the key stays here.
      const status = await engine.status();
      return { unlocked: engine.unlocked, username: engine.unlocked ? (status.user?.username ?? null) : null };
    }
    default:
      throw coded('BAD_INPUT', `unknown message ${type}`);
  }
}

/**
 * The window that sent a message, when this worker controls it and its URL is inside this
 * registration's scope; otherwise null (another app of the origin, an uncontrolled page, a
 * worker, a frame of another scope).
 */
async function checkedSender(source) {
  if (!source || source.type !== 'window' || typeof source.url !== 'string') return null;
  if (!source.url.startsWith(self.registration.scope)) return null;
  const controlled = await self.clients.matchAll({ type: 'window' });
  return controlled.some((client) => client.id === source.id) ? source : null;
}

/** The library's own files, kept so a reload works offline. */
const LIBRARY_FILES = ['./tracker-offline.js', './pkg/tracker_offline.js', './pkg/tracker_offline_bg.wasm'];

/** Caches the given same-origin URLs that are not yet in the shell cache (or all, when `refresh`). */
async function cacheShell(urls, refresh = false) {
  const cache = await caches.open(SHELL_CACHE);
  const apiBases = await knownApiBases();
  let added = 0;
  for (const href of urls) {
    const url = new URL(href, self.location.href);
    if (routeRequest('GET', url.href, self.location.origin, apiBases).kind !== 'shell') continue;
    if (!refresh && (await cache.match(url.href, { ignoreVary: true }))) continue;
    try {
      const response = await fetch(url.href, { cache: 'no-cache' });
      if (keepsShellCopy(url.href, self.location.origin, apiBases, response.status, response.redirected, response.type === 'basic')) {
        await cache.put(url.href, response);
        added += 1;
      }
    } catch {
      /* offline: keep what is there */
    }
  }
  return { added };
}

/** Keeps this release's wasm under its own name (see `loadWasm`); in development, refreshed. */
async function keepOwnWasm() {
  const response = await fetch(WASM_URL, { cache: 'no-cache' });
  if (!response.ok) throw new Error(`the wasm could not be fetched: ${response.status}`);
  await (await caches.open(LIBRARY_CACHE)).put(WASM_URL, response);
}

// Install: this release's wasm under its version, and the library files of the page refreshed
// in the shell cache (an offline page load must get the files of the worker that answers it).
self.addEventListener('install', (event) =>
  event.waitUntil(
    keepOwnWasm()
      .then(() => cacheShell(LIBRARY_FILES.map((f) => new URL(f, self.location.href).href), true))
      .then(() => self.skipWaiting()),
  ),
);
// Activate: take the open pages over; older releases' wasm goes.
self.addEventListener('activate', (event) =>
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) {
        if (name.startsWith('tracker-offline-library-') && name !== LIBRARY_CACHE) await caches.delete(name);
      }
      await self.clients.claim();
    })(),
  ),
);
/**
 * The app platform's question to the worker of its page (the Capture app): at every start it
 * posts `GET_CLIENTS_INFO` and waits up to 2 s for `CLIENTS_INFO` with the number of windows
 * in the worker's scope (app-platform `pwa/src/offline-interface/offline-interface.js`,
 * `getClientsInfo`, asked by `PWALoadingBoundary`), before it renders anything. Answered here,
 * to a window this worker controls, so every start of the app is not 2 s late. Nothing else of
 * the platform's worker protocol is taken (this worker never waits: see `install`).
 */
async function answerClientsInfo(event) {
  const sender = await checkedSender(event.source);
  if (!sender) return;
  const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  const inScope = windows.filter((client) => client.url.startsWith(self.registration.scope));
  sender.postMessage({ type: 'CLIENTS_INFO', payload: { clientsCount: inScope.length } });
}

self.addEventListener('message', (event) => {
  if (event.data?.type === 'GET_CLIENTS_INFO' && !event.ports[0]) {
    event.waitUntil(answerClientsInfo(event));
    return;
  }
  const port = event.ports[0];
  event.waitUntil(
    (async () => {
      if (!(await checkedSender(event.source))) {
        throw coded('NOT_ALLOWED', 'this worker takes messages only from the windows of its app that it controls');
      }
      return handle(event.data, port);
    })().then(
      (result) => port?.postMessage({ ok: true, result }),
      (error) =>
        port?.postMessage({
          ok: false,
          error: { code: error?.code ?? 'SERVICE_WORKER_ERROR', message: String(error?.message ?? error), retryAfterMs: error?.retryAfterMs },
        }),
    ),
  );
});
