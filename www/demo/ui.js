// The demo's shared parts: the program's constants, texts (the catalogue shared with the Tracker
// Capture loader, English and Arabic), the DOM helper, the page state (memory only), the DHIS2
// API called as Tracker Capture calls it, and the header (status, counts, progress, notices).

import { h } from '../ui/dom.js';
import { LANGUAGES, pickLanguage, t as translate } from '../ui/i18n.js';

export const API = '/api';
export const PROGRAM = 'PrMchProg01';
export const ATTR = { nid: 'AtNationId1', first: 'AtFirstNam1', last: 'AtLastName1', dob: 'AtBirthDat1', phone: 'AtPhoneNum1', reg: 'AtRegNumbr1' };
// One fixed URL, so that the answer the service worker keeps (sealed) online is found offline.
export const PROGRAM_URL = `/programs/${PROGRAM}.json?fields=id,displayName,trackedEntityType[id],` +
  'programTrackedEntityAttributes[mandatory,displayInList,sortOrder,trackedEntityAttribute[id,displayName,valueType,unique,generated]],' +
  'programStages[id,displayName,repeatable,sortOrder,executionDateLabel,programStageDataElements[compulsory,sortOrder,' +
  'dataElement[id,displayName,valueType,optionSet[options[code,displayName]]]]]';

// Texts: the catalogue shared with the Tracker Capture loader (English and Arabic). Metadata
// names come from the server as they are.
export let lang = localStorage.getItem('tracker-offline-demo:lang') ?? pickLanguage(navigator.languages); // a UI preference, nothing sensitive
if (!LANGUAGES.includes(lang)) lang = 'en';
export const t = (key, vars = {}) => translate(lang, key, vars);

// DOM helpers: the library's one element builder (ui/dom.js), and a query.
export { h };
export const $ = (sel, root = document) => root.querySelector(sel);
export const today = () => new Date().toISOString().slice(0, 10);
export const day = (s) => (s ? String(s).slice(0, 10) : '');

// State (memory only).
export const state = {
  app: null,
  user: null, // { username, displayName, mode }
  orgUnit: null, // { id, displayName }
  program: null, // metadata
  status: null,
  simFaults: false,
  reachable: null, // null until the first answer
  busy: null, // 'download' | 'sync' while this page runs one
  serverDown: false,
  drafts: { register: null, search: '' },
  screen: 0, // bumped by every screen that starts; a screen still loading draws only if it is the latest
};

/** Starts a screen: returns a check that tells, after an await, whether it is still the one shown. */
export function beginScreen() {
  const mine = ++state.screen;
  return () => state.screen === mine;
}

/** Switches the language of the screens (a UI preference, kept in localStorage: nothing sensitive). */
export function setLang(next) {
  lang = next;
  localStorage.setItem('tracker-offline-demo:lang', lang);
}

// The DHIS2 API, called as Tracker Capture calls it. `local` tells whether the library's
// service worker answered from this device.
export async function api(method, path, body) {
  let response;
  try {
    response = await fetch(API + path, {
      method,
      credentials: 'same-origin',
      headers: { Accept: 'application/json', 'X-Requested-With': 'XMLHttpRequest', ...(body ? { 'Content-Type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch (error) {
    noteReachable(false);
    throw Object.assign(new Error(t('serverUnreachable')), { code: 'NETWORK', cause: error });
  }
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  // The library marks what it answered on this device: 'local' (the clinic copy), 'cache' (a
  // sealed copy of an earlier server answer) or 'queued' (a write kept in the outbox).
  const local = response.headers.get('x-tracker-offline');
  // A read answered on this device means the service worker could not reach the server.
  if (method === 'GET') noteReachable(!local);
  if (!response.ok) {
    if (response.status === 401) showNotice(t('sessionEnded'));
    const message = json?.message ?? `${response.status} ${response.statusText}`;
    throw Object.assign(new Error(message), { status: response.status, code: json?.code ?? `HTTP_${response.status}`, body: json, local });
  }
  return { json, local, status: response.status };
}

/** `importSummaries[0]` of a legacy write, or an error with the server's conflicts. */
export function importSummary(json) {
  const summary = json?.response?.importSummaries?.[0] ?? json?.response ?? json;
  if (summary?.status && summary.status !== 'SUCCESS' && summary.status !== 'OK') {
    const reasons = (summary.conflicts ?? []).map((c) => c.value).concat(summary.description ?? []).filter(Boolean);
    throw Object.assign(new Error(reasons.join('; ') || summary.status), { code: summary.status });
  }
  return summary;
}

// Header: status, counts, progress.
export function showNotice(text, kind = 'info') {
  const el = $('#notice');
  el.textContent = text;
  el.className = `notice ${kind}`;
  el.hidden = !text;
}

/**
 * Whether the server answers, as this page last saw it through the service worker: a read
 * answered from the device (or a network error) means offline. The library's own
 * `status().online` is what the page's engine last saw, which can lag behind the worker.
 */
export function noteReachable(reachable) {
  if (state.reachable === reachable) return;
  state.reachable = reachable;
  renderStatus();
}

/** Like Tracker Capture's availability check (dhis2.availability polls a ping). */
export async function ping() {
  try {
    const r = await fetch(`${API}/system/ping`, { headers: { 'X-Requested-With': 'XMLHttpRequest' }, credentials: 'same-origin' });
    noteReachable(!r.headers.has('x-tracker-offline')); // any server answer (even a 401) means it is up
  } catch {
    noteReachable(false);
  }
}

export function renderStatus() {
  const s = state.status;
  const badge = $('#badge');
  if (s) {
    const online = (state.reachable ?? s.online) && navigator.onLine && !state.serverDown;
    badge.textContent = online ? t('online') : t('offline');
    badge.className = `badge ${online ? 'online' : 'offline'}`;
    $('#pending').textContent = s.pending ?? 0;
    // Refused work and conflicts both need a person: one counter, one screen.
    $('#failed').textContent = (s.failed ?? 0) + (state.conflicts ?? 0);
  }
  const loggedIn = Boolean(state.user);
  $('#pending-btn').hidden = !loggedIn;
  $('#failed-btn').hidden = !loggedIn;
  $('#failed-btn').classList.toggle('has', (s?.failed ?? 0) + (state.conflicts ?? 0) > 0);
  $('#sync-btn').hidden = !loggedIn;
  $('#download-btn').hidden = !loggedIn;
  $('#switch-btn').hidden = !loggedIn;
  $('#users-btn').hidden = !loggedIn;
  $('#server-down').hidden = !state.simFaults;
  $('#server-down-box').checked = state.serverDown;
  $('#who').replaceChildren(...(loggedIn ? [h('bdi', {}, `${state.user.displayName} (${state.user.username})`), ` · ${state.user.mode === 'online' ? t('loggedInOnline') : t('loggedInOffline')}`] : []));
  $('#clinic').textContent = state.orgUnit ? `· ${state.orgUnit.displayName}` : '';
}

export async function refreshStatus() {
  if (!state.app) return;
  try {
    state.status = await state.app.status();
    state.conflicts = (await state.app.conflicts()).length;
  } catch { /* keep the last one */ }
  // The server refused the saved password: say so once, until she logs in online again.
  if (state.status?.authRequired && !state.passwordRefusedShown) showNotice(t('passwordRefused'), 'error');
  state.passwordRefusedShown = Boolean(state.status?.authRequired);
  renderStatus();
}

export function showProgress(label, detail) {
  const wrap = $('#progress-wrap');
  const bar = $('#progress');
  if (!detail) {
    wrap.hidden = true;
    return;
  }
  wrap.hidden = false;
  const total = Number(detail.total ?? 0);
  const done = Number(detail.done ?? detail.sent ?? 0);
  $('#progress-label').textContent = total ? `${label}: ${done} / ${total}` : `${label}…`;
  if (total > 0) {
    bar.max = total;
    bar.value = Math.min(done, total);
  } else {
    bar.removeAttribute('value'); // indeterminate
  }
}

export async function confirmDialog(title, text, okLabel) {
  const dialog = $('#confirm');
  $('#confirm-title').textContent = title;
  $('#confirm-text').textContent = text;
  $('#confirm-ok').textContent = okLabel;
  dialog.returnValue = 'cancel';
  dialog.showModal();
  $('#confirm-cancel').focus();
  return new Promise((resolve) => dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true }));
}

// Screens.
export const view = () => $('#view');

export function setView(title, ...content) {
  const main = view();
  main.replaceChildren(h('h1', { id: 'view-title', tabindex: '-1' }, title), ...content);
  $('#view-title').focus({ preventScroll: true });
  document.title = `${title} – ${t('title')}`;
}

export function fieldError(id) {
  return h('p', { class: 'field-error', id: `${id}-error`, role: 'alert' });
}

export function setFieldError(form, name, message) {
  const input = form.elements[name];
  const err = $(`#${input.id}-error`, form);
  err.textContent = message ?? '';
  if (message) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
}
