// tracker-offline loader for a configured Tracker Capture build (see www/INTEGRATION.md).
//
// `scripts/configure-tracker-capture.sh` turns every script of the app's index.html into an
// inert placeholder (`<script type="tracker-offline/deferred">`) and puts this module first.
// It then:
//   1. starts the library (service worker in the app's folder, vault of the server's API),
//      and waits until the worker controls the page, so every request of the app goes through it;
//   2. keeps the app from talking to the server until someone is logged in through the library,
//      online (the server checks the password first) or offline (the local register);
//   3. boots the app by putting its scripts back in their order, as if the page had just loaded;
//   4. shows, on top of the app, who is logged in, online/offline, pending work and refusals
//      (with retry and discard), and handles logout, shift change and the idle lock.
// It only presents: every rule lives in the library. Configuration comes from the JSON in
// `<script id="tracker-offline-config" type="application/json">`. Its texts come from the
// catalogue shared with the demo (../ui/i18n.js), in English or Arabic: before a login the
// browser's language, after it the user's DHIS2 UI language (`keyUiLocale`).

import { TrackerOffline } from '../tracker-offline.js';
import { h } from '../ui/dom.js';
import { direction, explainError, pickLanguage, t as translate } from '../ui/i18n.js';
import { focusLogin, loginForm } from '../ui/login.js';
import { workLists } from '../ui/work.js';

const APP_ROOT = new URL('../', import.meta.url);
const DEFERRED = 'tracker-offline/deferred';
const LOGOUT_PATH = 'dhis-web-commons-security/logout.action';
const STATUS_REFRESH_MS = 10000;

/** The language of the loader's texts: the browser's until a user is logged in, then hers. */
let lang = pickLanguage(navigator.languages);
const t = (key, vars) => translate(lang, key, vars);

/** Marks one of the loader's own elements with the language of its texts and their direction. */
function speaking(node) {
  node.lang = lang;
  node.dir = direction(lang);
  return node;
}

/**
 * The app's Storage: the browser's, except for the keys that identify the user, which stay in
 * memory. Tracker Capture writes the user's whole profile (`USER_PROFILE`) to sessionStorage
 * and the username (`ouUsername`) to localStorage in clear text; these never reach the disk
 * (the app fetches the profile again after a reload, from the sealed per-user cache when
 * offline; the loader puts the logged-in username back). Supports the app's `storage[key]`
 * access as well as the Storage methods.
 */
function guardedStorage(real, memoryKeys) {
  const memory = new Map();
  const inMemory = (key) => memoryKeys.includes(String(key));
  const keys = () => [...Object.keys(real), ...memory.keys()];
  const methods = {
    getItem: (k) => (inMemory(k) ? (memory.get(String(k)) ?? null) : real.getItem(k)),
    setItem: (k, v) => (inMemory(k) ? void memory.set(String(k), String(v)) : real.setItem(k, v)),
    removeItem: (k) => (inMemory(k) ? void memory.delete(String(k)) : real.removeItem(k)),
    clear: () => (memory.clear(), real.clear()),
    key: (i) => keys()[i] ?? null,
  };
  return new Proxy(methods, {
    get: (target, key) => (key === 'length' ? keys().length : key in target ? target[key] : (target.getItem(key) ?? undefined)),
    set: (target, key, value) => (target.setItem(key, value), true),
    has: (target, key) => key in target || target.getItem(key) !== null,
    deleteProperty: (target, key) => (target.removeItem(key), true),
    ownKeys: () => keys(),
    getOwnPropertyDescriptor: (target, key) =>
      target.getItem(key) !== null ? { value: target.getItem(key), enumerable: true, configurable: true, writable: true } : undefined,
  });
}

/** The browser's sessionStorage, kept for the loader's own flags (never user data). */
const loaderSession = window.sessionStorage;
const appStorage = {
  localStorage: guardedStorage(window.localStorage, ['ouUsername']),
  sessionStorage: guardedStorage(window.sessionStorage, ['USER_PROFILE']),
};
for (const [name, storage] of Object.entries(appStorage)) {
  Object.defineProperty(window, name, { value: storage, configurable: true, enumerable: true });
}

/**
 * What Tracker Capture expects in its storage from an earlier load, for the logged-in user:
 * the username its org unit tree cache is keyed by, and its user settings (it reads them in
 * a race with its home screen, whose labels stay untranslated without them), fetched online
 * from the server or offline from the sealed per-user cache of the service worker.
 * Resolves with those settings (null when they could not be read).
 */
async function primeAppStorage(username) {
  if (username) window.localStorage.setItem('ouUsername', username);
  try {
    const url = new URL('../api/userSettings.json?key=keyDbLocale&key=keyUiLocale&key=keyStyle', APP_ROOT);
    const response = await fetch(url, { credentials: 'same-origin', headers: { accept: 'application/json' } });
    if (!response.ok) return null;
    const settings = await response.json();
    window.sessionStorage.setItem('USER_SETTING', JSON.stringify(settings));
    return settings;
  } catch {
    return null; /* the app fetches them itself */
  }
}

/**
 * The logged-in user's language: her DHIS2 UI locale (`keyUiLocale` of her user settings), kept
 * per user in localStorage for the loads where the settings cannot be read (offline without a
 * sealed copy of them); the browser's language when neither is known. Only the language is kept,
 * under a SHA-256 of the username so that the key does not name her.
 */
async function userLanguage(username, settings) {
  let storageKey = null;
  if (username && globalThis.crypto?.subtle) {
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(username)));
    storageKey = `tracker-offline:ui-language:${[...digest.slice(0, 16)].map((b) => b.toString(16).padStart(2, '0')).join('')}`;
  }
  const locale = typeof settings?.keyUiLocale === 'string' ? settings.keyUiLocale : null;
  if (locale) {
    const chosen = pickLanguage(locale);
    if (storageKey) window.localStorage.setItem(storageKey, chosen);
    return chosen;
  }
  const kept = storageKey ? window.localStorage.getItem(storageKey) : null;
  return kept ? pickLanguage(kept) : pickLanguage(navigator.languages);
}

function config() {
  const element = document.getElementById('tracker-offline-config');
  try {
    return element ? JSON.parse(element.textContent) : {};
  } catch {
    return {};
  }
}

/** Resolves once the service worker controls this page (reloads once if it never does). */
async function untilControlled() {
  if (!('serviceWorker' in navigator) || navigator.serviceWorker.controller) return;
  const controlled = new Promise((resolve) => navigator.serviceWorker.addEventListener('controllerchange', resolve, { once: true }));
  const timeout = new Promise((resolve) => setTimeout(resolve, 4000, 'timeout'));
  if ((await Promise.race([controlled, timeout])) === 'timeout' && !navigator.serviceWorker.controller) {
    if (!loaderSession.getItem('tracker-offline:reloaded')) {
      loaderSession.setItem('tracker-offline:reloaded', '1');
      location.reload();
      await new Promise(() => {});
    }
  }
  loaderSession.removeItem('tracker-offline:reloaded');
}

/**
 * Puts the app's server stylesheets and scripts back, in document order.
 */
async function bootApp() {
  for (const link of document.querySelectorAll('link[data-tracker-offline-href]')) {
    link.setAttribute('href', link.getAttribute('data-tracker-offline-href'));
    link.removeAttribute('data-tracker-offline-href');
  }
  // The document is long loaded: jQuery (and AngularJS, which boots on jQuery's ready) would
  // run ready handlers between two scripts. Hold them until every script ran, as on a page load.
  let heldReady = null;
  const holdReady = () => {
    if (!heldReady && typeof window.jQuery?.holdReady === 'function') {
      heldReady = window.jQuery;
      heldReady.holdReady(true);
    }
  };
  // External scripts are fetched in parallel and run in order (async = false); an inline script
  // runs once every script before it ran, as the parser would have done.
  let loading = [];
  for (const placeholder of [...document.querySelectorAll(`script[type="${DEFERRED}"]`)]) {
    const script = document.createElement('script');
    for (const { name, value } of placeholder.attributes) {
      if (name === 'type' || name === 'data-tracker-offline-type') continue;
      script.setAttribute(name, value);
    }
    const originalType = placeholder.getAttribute('data-tracker-offline-type');
    if (originalType) script.setAttribute('type', originalType);
    script.async = false;
    if (script.src) {
      loading.push(
        new Promise((resolve) => {
          script.addEventListener('load', () => resolve(holdReady()), { once: true });
          // A missing optional script (e.g. the server's custom script) must not stop the app.
          script.addEventListener('error', resolve, { once: true });
        }),
      );
      placeholder.replaceWith(script);
    } else {
      await Promise.all(loading);
      loading = [];
      script.textContent = placeholder.textContent;
      placeholder.replaceWith(script);
      holdReady();
    }
  }
  await Promise.all(loading);
  retranslateWhenReady();
  heldReady?.holdReady(false);
  document.documentElement.classList.add('tracker-offline-booted');
}

/**
 * Tracker Capture's controllers take labels with `$translate.instant` when they start; on a
 * load where the API answers quickly (from the local copy) the first screen can start before
 * the translations arrive and keep raw keys ("lists", "register"). Once they arrive, the
 * current screen is started again. Registered on the app's module before AngularJS boots it.
 */
function retranslateWhenReady() {
  const name = document.documentElement.getAttribute('ng-app') ?? document.querySelector('[ng-app]')?.getAttribute('ng-app');
  if (!name || !window.angular) return;
  try {
    window.angular.module(name).run(['$rootScope', '$injector', ($rootScope, $injector) => {
      $rootScope.$on('$translateChangeSuccess', () => {
        const route = $injector.has('$route') ? $injector.get('$route') : null;
        if (route?.current) route.reload();
      });
    }]);
  } catch {
    /* not an AngularJS app with that module */
  }
}

class LoginOverlay {
  constructor(app, { title }) {
    this.app = app;
    this.title = title;
    this.root = h('div', { class: 'tracker-offline-overlay', id: 'tracker-offline-overlay', role: 'dialog', 'aria-modal': 'true', 'aria-labelledby': 'tracker-offline-title' });
  }

  /**
   * Shows the form (ui/login.js), in the loader's current language; resolves with the login
   * outcome. `previous` pre-fills the user name. `onLogout`: a shift change, the session still
   * open; the form offers to log out instead.
   */
  show(previous, { onLogout } = {}) {
    const form = loginForm(lang, {
      prefix: 'tracker-offline-',
      className: 'tracker-offline-login',
      username: previous ?? '',
      before: [h('h1', { id: 'tracker-offline-title', text: this.title }), h('p', { class: 'tracker-offline-hint', text: t('loginHelp') })],
      actions: onLogout
        ? [h('button', { type: 'button', id: 'tracker-offline-logout', class: 'tracker-offline-secondary', text: t('logoutNoSuccessor'), onclick: onLogout })]
        : [],
      login: (username, password) => this.app.login(username, password),
      done: (outcome) => {
        this.root.remove();
        this.resolve?.(outcome);
      },
    });
    this.root.replaceChildren(form);
    document.body.append(speaking(this.root));
    focusLogin(form);
    return new Promise((resolve) => {
      this.resolve = resolve;
    });
  }
}

/** The small bar over the app: user, online/offline, pending and refused work, actions. */
class StatusBar {
  constructor(app, { onSwitchUser }) {
    this.app = app;
    this.state = h('span', { class: 'tracker-offline-state', id: 'tracker-offline-state' });
    this.user = h('span', { class: 'tracker-offline-user', id: 'tracker-offline-user' });
    this.pending = h('span', { class: 'tracker-offline-pending', id: 'tracker-offline-pending' });
    this.failedButton = h('button', { type: 'button', id: 'tracker-offline-failed', hidden: true, onclick: () => this.toggleFailures() });
    this.progress = h('span', { class: 'tracker-offline-progress', id: 'tracker-offline-progress', hidden: true });
    this.panel = h('section', { class: 'tracker-offline-panel', id: 'tracker-offline-failures', hidden: true, 'aria-label': t('failuresTitle') });
    this.root = h(
      'div',
      { class: 'tracker-offline-bar', id: 'tracker-offline-bar', role: 'status' },
      this.state,
      this.user,
      this.pending,
      this.progress,
      this.failedButton,
      h('button', { type: 'button', id: 'tracker-offline-sync', text: t('sync'), onclick: () => this.app.sync().catch(() => {}).then(() => this.refresh()) }),
      h('button', { type: 'button', id: 'tracker-offline-switch', text: t('switchUser'), onclick: onSwitchUser }),
    );
    app.addEventListener('status', (e) => this.render(e.detail));
    app.addEventListener('flush', () => this.refresh());
    app.addEventListener('progress', (e) => this.showProgress(e.detail));
    setInterval(() => this.refresh(), STATUS_REFRESH_MS);
  }

  mount() {
    document.body.append(speaking(this.root), speaking(this.panel));
    return this.refresh();
  }

  async refresh() {
    this.render(await this.app.status().catch(() => null));
  }

  render(status) {
    if (!status) return;
    this.status = status;
    this.root.dataset.online = String(status.online);
    this.state.textContent = status.online ? t('online') : t('offline');
    this.user.textContent = status.user ? status.user.displayName : t('locked');
    this.user.dir = 'auto'; // a name may be written in either script
    this.pending.textContent = status.pending ? t('pendingCount', { count: status.pending }) : t('allSent');
    this.pending.dataset.count = String(status.pending ?? 0);
    this.failedButton.hidden = !status.failed;
    this.failedButton.textContent = t('refusedCount', { count: status.failed });
    this.failedButton.dataset.count = String(status.failed ?? 0);
    // Conflicts (changed here and on the server) need a person too: the same button opens them.
    this.app.conflicts().then((conflicts) => {
      if (!conflicts.length) return;
      this.failedButton.hidden = false;
      const bothSides = t('bothSidesCount', { count: conflicts.length });
      this.failedButton.textContent = status.failed ? `${t('refusedCount', { count: status.failed })}${t('listSeparator')}${bothSides}` : bothSides;
    }, () => {});
    if (!this.panel.hidden) this.renderFailures();
  }

  showProgress({ done, total }) {
    this.progress.hidden = done >= total;
    this.progress.textContent = t('copyingClinic', { done, total });
  }

  toggleFailures() {
    this.panel.hidden = !this.panel.hidden;
    if (!this.panel.hidden) this.renderFailures();
  }

  async renderFailures() {
    const items = await this.app.failures().catch(() => []);
    const conflicts = await this.app.conflicts().catch(() => []);
    const failures = items.filter((f) => f.severity !== 'warning');
    const warnings = items.filter((f) => f.severity === 'warning');
    const refreshed = (done) => done.then(() => this.refresh());
    const actions = {
      retry: (f) => refreshed(this.app.retry(f.id)),
      discard: async (f) => {
        if (!confirm(`${t('discardTitle')}\n${f.summary ?? f.id}\n${t('discardText')}`)) return;
        await refreshed(this.app.discard(f.id));
      },
      keep: (c, side) => refreshed(this.app.resolveConflict(c.id, side)),
      dismiss: (w) => refreshed(this.app.discard(w.id)),
    };
    this.panel.replaceChildren(
      h('h2', { text: t('failuresTitle') }),
      ...workLists(lang, { failures, conflicts, warnings }, actions),
      h('button', { type: 'button', text: t('close'), onclick: () => this.toggleFailures() }),
    );
  }
}

/**
 * Wraps `prototype[method]`, once per page, so that a call `kept(target, args)` names answers
 * `false` (nothing done) instead of running.
 */
function keepFrom(prototype, method, kept) {
  if (!prototype || prototype[method].keepsTrackerOffline) return;
  const original = prototype[method];
  const guarded = function (...args) {
    return kept(this, args) ? Promise.resolve(false) : original.apply(this, args);
  };
  guarded.keepsTrackerOffline = true;
  prototype[method] = guarded;
}

/**
 * Keeps the app platform from unregistering the library's worker. A DHIS2 app built on the app
 * platform without its PWA mode (the Capture app) unregisters, each time it starts, whatever
 * registration covers its page (app-platform `pwa/src/offline-interface/offline-interface.js`:
 * `navigator.serviceWorker.ready.then((r) => r.unregister())`); the next load would then run
 * without the worker, and offline not at all. The app's scripts run only after this module
 * (they wait for the login), so the call is answered here: `false` (not unregistered) for the
 * library's worker, anything else is unregistered as asked.
 */
function keepWorkerRegistered() {
  const ours = new URL('sw.js', APP_ROOT).href;
  keepFrom(globalThis.ServiceWorkerRegistration?.prototype, 'unregister', (registration) => {
    const worker = registration.active ?? registration.waiting ?? registration.installing;
    const kept = worker?.scriptURL.split('?')[0] === ours;
    if (kept) console.info('[tracker-offline] the app asked to unregister the offline worker; it stays');
    return kept;
  });
}

/**
 * Keeps the library's caches (the app's files for offline loads, the worker's wasm) when the app
 * platform clears "sensitive caches": when the user it last saw differs (its first start on a
 * device included), it deletes every Cache Storage cache of the origin not named
 * `workbox-precache*` (app-runtime `clearSensitiveCaches`, called by app-platform
 * `adapter/src/utils/useVerifyLatestUser.js`). Those caches hold no data of any user (the
 * library's data is sealed in IndexedDB); without them the app does not load offline.
 */
function keepLibraryCaches() {
  keepFrom(globalThis.CacheStorage?.prototype, 'delete', (_, [name]) => String(name).startsWith('tracker-offline-'));
}

/**
 * Keeps the app sending its writes when the browser itself says it is offline (a clinic with no
 * network at all: `navigator.onLine` false, `offline` events). The Capture app's own outbox
 * (redux-offline, `detectNetwork`) then stops sending and holds each write, unencrypted, in its
 * IndexedDB database until the browser is online again. Every request of the app goes through
 * the library's worker, which answers from the local copy and queues writes in its encrypted
 * outbox, so for the app the network is always there: `navigator.onLine` reads true on this page
 * and the `offline` event does not reach the app (this module runs before the app's scripts, so
 * its listener is the first). The library's status bar takes the connection state from the
 * worker, which sees the real one.
 */
function keepAppSending() {
  const onLine = Object.getOwnPropertyDescriptor(Navigator.prototype, 'onLine');
  if (!onLine?.get || onLine.get.keepsTrackerOffline) return;
  const alwaysOnline = () => true;
  alwaysOnline.keepsTrackerOffline = true;
  Object.defineProperty(Navigator.prototype, 'onLine', { ...onLine, get: alwaysOnline });
  window.addEventListener('offline', (event) => event.stopImmediatePropagation(), true);
}

async function main() {
  keepWorkerRegistered();
  keepLibraryCaches();
  keepAppSending();
  const options = config();
  const app = await TrackerOffline.start({
    ...options,
    apiBase: new URL(options.apiBase ?? '../api', APP_ROOT).href,
    serviceWorker: new URL('sw.js', APP_ROOT).href,
  });
  window.trackerOffline = app; // for the integrator's console and the tests
  await untilControlled();

  const overlay = new LoginOverlay(app, { title: options.title ?? 'Tracker Capture' });

  /**
   * Shift change: the next user logs in while this session is still open, so a colleague new
   * to this device receives the clinic's data key from it (the library's handover). The app
   * then starts again for the new user.
   */
  async function switchUser() {
    const outcome = await overlay.show(null, { onLogout: logout });
    afterLogin(outcome);
    restartAtHome();
  }

  /** A fresh online login refreshes the clinic copy (incremental), once the app is running. */
  function afterLogin(outcome) {
    if (outcome.mode === 'online') loaderSession.setItem('tracker-offline:refresh', '1');
  }

  /** The app's files (listed by configure-tracker-capture), kept for offline use. */
  async function keepAppFiles() {
    try {
      const list = await (await fetch(new URL('tracker-offline-files.json', APP_ROOT), { cache: 'no-cache' })).json();
      const { added } = await app.cacheAppFiles(list.files.map((f) => new URL(f, APP_ROOT).href));
      if (added) console.info(`[tracker-offline] ${added} app files kept for offline use`);
    } catch {
      /* offline: the files kept earlier serve */
    }
  }

  function refreshClinicCopy() {
    if (!loaderSession.getItem('tracker-offline:refresh')) return;
    loaderSession.removeItem('tracker-offline:refresh');
    app.download().catch((error) => console.warn('[tracker-offline] clinic copy not refreshed:', error.code, error.message));
  }

  /**
   * Locks, ends the server session when it can be reached, and starts the page again: the app
   * forgets the previous user's screens and profile, the next user gets the login form. Unsent
   * work stays in the encrypted outbox under its author.
   */
  async function logout() {
    await app.logout();
    await fetch(new URL(LOGOUT_PATH, new URL('../', APP_ROOT)), { credentials: 'same-origin', redirect: 'manual' }).catch(() => {});
    restartAtHome();
  }

  /** Starts the app again on its home screen: the next user never lands on a woman's record. */
  function restartAtHome() {
    if (location.href === APP_ROOT.href) location.reload();
    else location.replace(APP_ROOT.href);
  }

  // The app's logout link would leave for the server's login page (unreachable offline): log out
  // through the library instead and offer the login form to the next user.
  document.addEventListener(
    'click',
    (event) => {
      const link = event.target instanceof Element ? event.target.closest('a[href]') : null;
      if (!link || !link.href.includes(LOGOUT_PATH)) return;
      event.preventDefault();
      event.stopPropagation();
      logout();
    },
    true,
  );
  // The app's screens of the previous session go with a reload (its storage is in memory).
  app.addEventListener('idle-lock', () => restartAtHome());
  // A newer version installed on the server (App Management) brings a new worker, which takes
  // over this page. It holds no session (the old one goes with the old worker): the app starts
  // again on the new version's files and asks for a login. Unsent work stays in the outbox.
  navigator.serviceWorker?.addEventListener('controllerchange', () => restartAtHome());

  const status = await app.status();
  if (!status.user || status.locked) {
    const outcome = await overlay.show(null);
    afterLogin(outcome);
  }
  const username = (await app.status()).user?.username;
  lang = await userLanguage(username, await primeAppStorage(username));
  const bar = new StatusBar(app, { onSwitchUser: switchUser });
  await bar.mount();
  await bootApp();
  refreshClinicCopy();
  keepAppFiles();
}

main().catch((error) => {
  console.error('[tracker-offline] loader failed', error);
  document.body.append(speaking(h('p', { class: 'tracker-offline-fatal', role: 'alert', text: t('startFailed', { reason: explainError(lang, error) }) })));
});
