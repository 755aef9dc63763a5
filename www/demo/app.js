// A small point-of-care app for the MCH tracker program, built to show tracker-offline at work.
// It talks to the DHIS2 Web API exactly as Tracker Capture does (docs/dhis2-clients.md A1):
// ordinary fetch calls to the legacy endpoints, which the library's service worker answers
// from the encrypted local copy (and queues) when the server cannot be reached. The library
// API is used only for login, logout, status, download, sync and the failures screen.
//
// Nothing typed is written to localStorage/sessionStorage: unsaved input lives in memory
// (the form itself, and `drafts` for a registration form left half-filled), and every visit
// value is saved through the service worker the moment it changes.

import { TrackerOffline } from '../tracker-offline.js';
import { LANGUAGES, describeChange, direction, explainError, formatDateTime, pickLanguage, t as translate } from '../tracker-capture/i18n.js';

const API = '/api';
const PROGRAM = 'PrMchProg01';
const ATTR = { nid: 'AtNationId1', first: 'AtFirstNam1', last: 'AtLastName1', dob: 'AtBirthDat1', phone: 'AtPhoneNum1', reg: 'AtRegNumbr1' };
// One fixed URL, so that the answer the service worker keeps (sealed) online is found offline.
const PROGRAM_URL = `/programs/${PROGRAM}.json?fields=id,displayName,trackedEntityType[id],` +
  'programTrackedEntityAttributes[mandatory,displayInList,sortOrder,trackedEntityAttribute[id,displayName,valueType,unique,generated]],' +
  'programStages[id,displayName,repeatable,sortOrder,executionDateLabel,programStageDataElements[compulsory,sortOrder,' +
  'dataElement[id,displayName,valueType,optionSet[options[code,displayName]]]]]';

// ---------------------------------------------------------------------------------------
// Texts: the catalogue shared with the Tracker Capture loader (English and Arabic). Metadata
// names come from the server as they are.
let lang = localStorage.getItem('tracker-offline-demo:lang') ?? pickLanguage(navigator.languages); // a UI preference, nothing sensitive
if (!LANGUAGES.includes(lang)) lang = 'en';
const t = (key, vars = {}) => translate(lang, key, vars);

// ---------------------------------------------------------------------------------------
// Tiny DOM helpers.
const $ = (sel, root = document) => root.querySelector(sel);
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}
const today = () => new Date().toISOString().slice(0, 10);
const day = (s) => (s ? String(s).slice(0, 10) : '');

// ---------------------------------------------------------------------------------------
// State (memory only).
const state = {
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
function beginScreen() {
  const mine = ++state.screen;
  return () => state.screen === mine;
}

// ---------------------------------------------------------------------------------------
// The DHIS2 API, called as Tracker Capture calls it. `local` tells whether the library's
// service worker answered from this device.
async function api(method, path, body) {
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
function importSummary(json) {
  const summary = json?.response?.importSummaries?.[0] ?? json?.response ?? json;
  if (summary?.status && summary.status !== 'SUCCESS' && summary.status !== 'OK') {
    const reasons = (summary.conflicts ?? []).map((c) => c.value).concat(summary.description ?? []).filter(Boolean);
    throw Object.assign(new Error(reasons.join('; ') || summary.status), { code: summary.status });
  }
  return summary;
}

// ---------------------------------------------------------------------------------------
// Header: status, counts, progress.
function showNotice(text, kind = 'info') {
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
function noteReachable(reachable) {
  if (state.reachable === reachable) return;
  state.reachable = reachable;
  renderStatus();
}

/** Like Tracker Capture's availability check (dhis2.availability polls a ping). */
async function ping() {
  try {
    const r = await fetch(`${API}/system/ping`, { headers: { 'X-Requested-With': 'XMLHttpRequest' }, credentials: 'same-origin' });
    noteReachable(!r.headers.has('x-tracker-offline')); // any server answer (even a 401) means it is up
  } catch {
    noteReachable(false);
  }
}

function renderStatus() {
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

async function refreshStatus() {
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

function showProgress(label, detail) {
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

async function confirmDialog(title, text, okLabel) {
  const dialog = $('#confirm');
  $('#confirm-title').textContent = title;
  $('#confirm-text').textContent = text;
  $('#confirm-ok').textContent = okLabel;
  dialog.returnValue = 'cancel';
  dialog.showModal();
  $('#confirm-cancel').focus();
  return new Promise((resolve) => dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true }));
}

// ---------------------------------------------------------------------------------------
// Screens.
const view = () => $('#view');

function setView(title, ...content) {
  const main = view();
  main.replaceChildren(h('h1', { id: 'view-title', tabindex: '-1' }, title), ...content);
  $('#view-title').focus({ preventScroll: true });
  document.title = `${title} – ${t('title')}`;
}

function fieldError(id) {
  return h('p', { class: 'field-error', id: `${id}-error`, role: 'alert' });
}

function setFieldError(form, name, message) {
  const input = form.elements[name];
  const err = $(`#${input.id}-error`, form);
  err.textContent = message ?? '';
  if (message) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
}

async function screenLogin(message, shift = false) {
  beginScreen();
  const registered = state.status?.registeredUsers;
  const pending = state.status?.pending ?? 0;
  const form = h('form', { id: 'login-form', class: 'card narrow', novalidate: true },
    shift ? h('p', { id: 'shift-help' }, t('shiftHelp', { name: state.user.displayName })) : h('p', { class: 'muted' }, t('loginHelp')),
    shift && pending ? h('p', { class: 'muted small' }, `${pending} ${t('stillPending')}`) : null,
    shift && state.drafts.register ? h('p', { class: 'muted small' }, t('leaveDraft')) : null,
    h('label', { for: 'username' }, t('username')),
    h('input', { id: 'username', name: 'username', autocomplete: 'username', required: true, 'aria-describedby': 'username-error', autocapitalize: 'none', spellcheck: 'false' }),
    fieldError('username'),
    h('label', { for: 'password' }, t('password')),
    h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true, 'aria-describedby': 'password-error' }),
    fieldError('password'),
    h('p', { class: 'field-error', id: 'form-error', role: 'alert' }, message ?? ''),
    h('div', { class: 'row' },
      h('button', { type: 'submit', class: 'primary', id: 'login-btn' }, t('loginBtn')),
      shift ? h('button', { type: 'button', id: 'logout-btn', onclick: logout }, t('logoutBtn')) : null,
      shift ? h('a', { href: '#/list', class: 'button', id: 'cancel-switch' }, t('cancel')) : null),
    Number.isFinite(registered) ? h('p', { class: 'muted small' }, `${t('usersHere')}: ${registered || t('none')}`) : null,
    h('p', { class: 'muted small' }, t('outageHelp')),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    setFieldError(form, 'username');
    setFieldError(form, 'password');
    $('#form-error').textContent = '';
    const username = form.elements.username.value.trim();
    const password = form.elements.password.value;
    if (!username) return setFieldError(form, 'username', t('required')), form.elements.username.focus();
    if (!password) return setFieldError(form, 'password', t('required')), form.elements.password.focus();
    const button = $('#login-btn');
    button.disabled = true;
    button.textContent = t('loading');
    try {
      const outcome = await state.app.login(username, password);
      form.elements.password.value = '';
      await afterLogin(outcome);
    } catch (error) {
      const text = `${explainError(lang, error)} (${t('errorCode')}: ${error.code ?? 'ERROR'})`;
      const field = ['UNKNOWN_USER_OFFLINE', 'HANDOVER_REQUIRED', 'OUTSIDE_CLINIC'].includes(error.code) ? 'username'
        : ['BAD_CREDENTIALS', 'LOCKED_OUT', 'CREDENTIAL_EXPIRED', 'CREDENTIAL_REVOKED', 'BAD_INPUT'].includes(error.code) ? 'password' : null;
      if (field) {
        setFieldError(form, field, text);
        form.elements[field].focus();
      } else {
        $('#form-error').textContent = text;
      }
      button.disabled = false;
      button.textContent = t('loginBtn');
    }
  });
  setView(shift ? t('switchTitle') : t('loginTitle'), form);
  form.elements.username.focus();
}

async function afterLogin(outcome) {
  const profile = outcome.profile ?? {};
  // A different user: nothing the previous one typed stays on screen.
  if (state.user?.username !== outcome.username) state.drafts = { register: null, search: '' };
  state.user = { username: outcome.username, displayName: profile.displayName ?? outcome.username, mode: outcome.mode };
  state.orgUnit = profile.organisationUnits?.[0] ?? null;
  await refreshStatus();
  try {
    state.program = (await api('GET', PROGRAM_URL)).json;
  } catch (error) {
    state.program = null;
    showNotice(`${t('metadataMissing')} (${error.code})`, 'error');
  }
  if (!state.orgUnit?.displayName && state.orgUnit?.id) state.orgUnit.displayName = state.orgUnit.id;
  showNotice(outcome.mode === 'online' ? '' : t('loggedInOffline'));
  noteReachable(outcome.mode === 'online');
  // Online: keep the clinic copy fresh (incremental after the first time).
  if (outcome.mode === 'online') runDownload();
  if (!location.hash || ['#/login', '#/switch'].includes(location.hash)) location.hash = '#/list';
  else route();
}

async function runDownload() {
  if (state.busy === 'download') return;
  state.busy = 'download';
  const button = $('#download-btn');
  button.disabled = true;
  showProgress(t('downloading'), { done: 0, total: 0 });
  try {
    await state.app.download({ onProgress: (p) => showProgress(t('downloading'), p) });
  } catch (error) {
    showNotice(error.code === 'SERVER_UNREACHABLE' ? `${t('download')}: ${t('serverUnreachable')}` : `${t('download')}: ${explainError(lang, error)} (${t('errorCode')}: ${error.code})`, 'error');
  } finally {
    state.busy = null;
    showProgress(null, null);
    button.disabled = false;
    await refreshStatus();
    renderLastDownload();
  }
}

async function runSync() {
  if (state.busy) return;
  state.busy = 'sync';
  const button = $('#sync-btn');
  button.disabled = true;
  showProgress(t('sending'), { done: 0, total: state.status?.pending ?? 0 });
  try {
    const report = await state.app.sync();
    noteReachable(report.stopped !== 'SERVER_UNREACHABLE');
    if (report.stopped === 'SERVER_UNREACHABLE') showNotice(t('serverUnreachable'));
    else if (report.stopped === 'SERVER_BUSY') showNotice(t('serverBusy', { seconds: Math.ceil((report.retryAfterMs ?? 0) / 1000) }));
    else if (report.stopped === 'AUTH_REQUIRED') showNotice(t('passwordRefused'), 'error');
    else if (!report.remaining && !report.failed) showNotice(t('sentOk'));
    else showNotice(t('sentSome', report), report.failed ? 'error' : 'info');
  } catch (error) {
    showNotice(`${error.message} (${error.code})`, 'error');
  } finally {
    state.busy = null;
    showProgress(null, null);
    button.disabled = false;
    await refreshStatus();
  }
}

function renderLastDownload() {
  const el = $('#last-download');
  if (!el) return;
  const at = state.status?.lastDownloadAt;
  el.textContent = at ? `${t('lastDownload')} ${formatDateTime(lang, at)}` : t('neverDownloaded');
}

function gridRows(grid) {
  const idx = Object.fromEntries((grid?.headers ?? []).map((hd, i) => [hd.name, i]));
  return (grid?.rows ?? []).map((r) => ({
    tei: r[idx.instance], nid: r[idx[ATTR.nid]], first: r[idx[ATTR.first]], last: r[idx[ATTR.last]],
    dob: r[idx[ATTR.dob]], reg: r[idx[ATTR.reg]], created: r[idx.created],
  }));
}

function queryUrl(filter) {
  const base = `/trackedEntityInstances/query.json?ou=${state.orgUnit?.id}&ouMode=SELECTED&program=${PROGRAM}`;
  return `${base}${filter ? `&attribute=${filter}` : ''}&pageSize=50&page=1&totalPages=true`;
}

async function screenList() {
  beginScreen();
  const searchForm = h('form', { class: 'search row', role: 'search' },
    h('label', { for: 'search', class: 'sr-only' }, t('search')),
    h('input', { id: 'search', name: 'q', type: 'search', placeholder: t('search'), value: state.drafts.search, autocomplete: 'off' }),
    h('button', { type: 'submit', class: 'primary' }, t('searchBtn')),
    h('button', { type: 'button', id: 'clear-search', onclick: () => { state.drafts.search = ''; $('#search').value = ''; loadList(); } }, t('clear')),
    h('span', { class: 'grow' }),
    h('a', { href: '#/register', class: 'button', id: 'register-link' }, t('register')),
  );
  searchForm.addEventListener('submit', (e) => {
    e.preventDefault();
    state.drafts.search = e.target.elements.q.value.trim();
    loadList();
  });
  setView(t('list'), h('p', { class: 'muted small', id: 'last-download' }), searchForm, h('div', { id: 'results', 'aria-live': 'polite' }));
  renderLastDownload();
  await loadList();
}

async function loadList() {
  const results = $('#results');
  if (!results) return;
  results.replaceChildren(h('p', { class: 'muted' }, t('loading')));
  const q = state.drafts.search;
  try {
    let rows;
    if (!q) rows = gridRows((await api('GET', queryUrl())).json);
    else if (/^[0-9]+$/.test(q)) rows = gridRows((await api('GET', queryUrl(`${ATTR.nid}:EQ:${encodeURIComponent(q)}`))).json);
    else {
      // One query per name field, as Tracker Capture sends one attribute filter per field.
      const [a, b] = await Promise.all([ATTR.first, ATTR.last].map((at) => api('GET', queryUrl(`${at}:LIKE:${encodeURIComponent(q)}`))));
      const seen = new Set();
      rows = [...gridRows(a.json), ...gridRows(b.json)].filter((r) => !seen.has(r.tei) && seen.add(r.tei));
    }
    if (!rows.length) return results.replaceChildren(h('p', { class: 'muted', id: 'no-results' }, t('noResults')));
    const table = h('table', { class: 'list' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, t('name')), h('th', { scope: 'col' }, t('nid')), h('th', { scope: 'col' }, t('dob')), h('th', { scope: 'col' }, t('regNo')))),
      h('tbody', {}, rows.map((r) => h('tr', {},
        h('td', {}, h('a', { href: `#/tei/${r.tei}`, 'data-tei': r.tei }, `${r.first ?? ''} ${r.last ?? ''}`.trim() || r.tei)),
        h('td', { dir: 'ltr' }, r.nid ?? ''), h('td', { dir: 'ltr' }, day(r.dob)), h('td', { dir: 'ltr' }, r.reg ?? '—'),
      ))),
    );
    results.replaceChildren(table);
  } catch (error) {
    results.replaceChildren(h('p', { class: 'field-error' }, `${error.message} (${error.code})`));
  }
}

function attributeMeta() {
  const list = state.program?.programTrackedEntityAttributes ?? [];
  return [...list].sort((a, b) => (a.sortOrder ?? 0) - (b.sortOrder ?? 0));
}

async function screenRegister() {
  beginScreen();
  if (!state.program) return setView(t('regTitle'), h('p', { class: 'field-error' }, t('metadataMissing')));
  const draft = (state.drafts.register ??= { values: {} });
  const inputType = (vt) => (vt === 'DATE' ? 'date' : vt === 'PHONE_NUMBER' ? 'tel' : 'text');
  const fields = attributeMeta().map((pa) => {
    const a = pa.trackedEntityAttribute;
    const id = `attr-${a.id}`;
    const generated = a.generated;
    return h('div', { class: 'field' },
      h('label', { for: id }, a.displayName, pa.mandatory ? h('span', { class: 'req', 'aria-hidden': 'true' }, ' *') : null),
      h('input', {
        id, name: a.id, type: inputType(a.valueType), required: pa.mandatory, readonly: generated, value: draft.values[a.id] ?? '',
        max: a.valueType === 'DATE' ? today() : null, 'aria-describedby': `${id}-error${generated ? ` ${id}-help` : ''}`,
        inputmode: a.id === ATTR.nid ? 'numeric' : null, dir: ['DATE', 'PHONE_NUMBER'].includes(a.valueType) || a.id === ATTR.nid ? 'ltr' : null,
        oninput: (e) => { draft.values[a.id] = e.target.value; },
      }),
      generated ? h('p', { class: 'muted small', id: `${id}-help` }) : null,
      fieldError(id),
    );
  });
  const form = h('form', { id: 'register-form', class: 'card', novalidate: true },
    h('div', { class: 'grid' }, fields,
      h('div', { class: 'field' },
        h('label', { for: 'enroll-date' }, t('enrollDate'), h('span', { class: 'req', 'aria-hidden': 'true' }, ' *')),
        h('input', { id: 'enroll-date', name: 'enrollDate', type: 'date', required: true, max: today(), value: draft.values.enrollDate ?? today(), dir: 'ltr', 'aria-describedby': 'enroll-date-error', oninput: (e) => { draft.values.enrollDate = e.target.value; } }),
        fieldError('enroll-date')),
      h('div', { class: 'field' },
        h('label', { for: 'lmp' }, t('lmp')),
        h('input', { id: 'lmp', name: 'lmp', type: 'date', max: today(), value: draft.values.lmp ?? '', dir: 'ltr', 'aria-describedby': 'lmp-error', oninput: (e) => { draft.values.lmp = e.target.value; } }),
        fieldError('lmp')),
    ),
    h('p', { class: 'field-error', id: 'form-error', role: 'alert' }),
    h('div', { class: 'row' },
      h('button', { type: 'submit', class: 'primary', id: 'register-btn' }, t('saveReg')),
      h('a', { href: '#/list', class: 'button' }, t('back'))),
  );
  form.addEventListener('submit', (e) => { e.preventDefault(); submitRegistration(form, draft); });
  // A field's error goes away as soon as she corrects it (it is checked again on submit).
  form.addEventListener('input', (e) => {
    if (e.target.name && e.target.getAttribute('aria-invalid') === 'true' && e.target.value) setFieldError(form, e.target.name, '');
  });
  setView(t('regTitle'), form);
  form.querySelector('input:not([readonly])')?.focus();
  fillRegistrationNumber(form, draft);
}

/**
 * The registration number comes from the server; offline, from the values the library reserved
 * on the server while online (each handed out once). A cached copy is never used.
 */
async function fillRegistrationNumber(form, draft) {
  const reg = attributeMeta().find((pa) => pa.trackedEntityAttribute.generated);
  if (!reg) return;
  const id = reg.trackedEntityAttribute.id;
  const help = $(`#attr-${id}-help`, form);
  if (draft.values[id]) return;
  try {
    const { json, local } = await api('GET', `/trackedEntityAttributes/${id}/generate`);
    if (!json?.value || (local && local !== 'local')) throw new Error('offline');
    draft.values[id] = json.value;
    form.elements[id].value = json.value;
    help.textContent = t(local ? 'regNoHelpReserved' : 'regNoHelpOnline');
  } catch {
    help.textContent = t('regNoHelpOffline');
  }
}

function validDate(value) {
  return /^\d{4}-\d{2}-\d{2}$/.test(value) && !Number.isNaN(Date.parse(value));
}

async function submitRegistration(form, draft) {
  $('#form-error', form).textContent = '';
  let firstBad = null;
  const bad = (name, msg) => { setFieldError(form, name, msg); firstBad ??= form.elements[name]; };
  const values = {};
  for (const pa of attributeMeta()) {
    const a = pa.trackedEntityAttribute;
    const v = form.elements[a.id].value.trim();
    setFieldError(form, a.id);
    if (pa.mandatory && !v) bad(a.id, t('required'));
    else if (v && a.valueType === 'DATE' && !validDate(v)) bad(a.id, t('badDate'));
    else if (v && a.valueType === 'DATE' && v > today()) bad(a.id, t('dateFuture'));
    if (v) values[a.id] = v;
  }
  const enrollDate = form.elements.enrollDate.value;
  setFieldError(form, 'enrollDate');
  if (!enrollDate) bad('enrollDate', t('required'));
  else if (!validDate(enrollDate)) bad('enrollDate', t('badDate'));
  else if (enrollDate > today()) bad('enrollDate', t('dateFuture'));
  const lmp = form.elements.lmp.value;
  setFieldError(form, 'lmp');
  if (lmp && !validDate(lmp)) bad('lmp', t('badDate'));
  else if (lmp > today()) bad('lmp', t('dateFuture'));
  if (firstBad) return firstBad.focus();

  const button = $('#register-btn', form);
  button.disabled = true;
  try {
    // Unique national ID: ask first (the local copy answers offline), as Tracker Capture does.
    const existing = gridRows((await api('GET', queryUrl(`${ATTR.nid}:EQ:${encodeURIComponent(values[ATTR.nid])}`))).json);
    if (existing.length) {
      bad(ATTR.nid, `${t('nidTaken')}: ${existing[0].first ?? ''} ${existing[0].last ?? ''}`);
      return firstBad.focus();
    }
    const ou = state.orgUnit.id;
    const teiSummary = importSummary((await api('POST', '/trackedEntityInstances', {
      trackedEntityType: state.program.trackedEntityType?.id ?? 'TetPerson01',
      orgUnit: ou,
      attributes: Object.entries(values).map(([attribute, value]) => ({ attribute, value })),
    })).json);
    const tei = teiSummary.reference;
    importSummary((await api('POST', '/enrollments', {
      trackedEntityInstance: tei, program: PROGRAM, status: 'ACTIVE', orgUnit: ou,
      enrollmentDate: enrollDate, incidentDate: lmp || enrollDate,
    })).json);
    state.drafts.register = null;
    await refreshStatus();
    location.hash = `#/tei/${tei}`;
  } catch (error) {
    $('#form-error', form).textContent = `${error.message} (${t('errorCode')}: ${error.code ?? error.status ?? 'ERROR'})`;
  } finally {
    button.disabled = false;
  }
}

function stagesMeta() {
  return [...(state.program?.programStages ?? [])].sort((a, b) => (a.sortOrder ?? 0) - (b.sortOrder ?? 0));
}

async function loadTei(tei) {
  return (await api('GET', `/trackedEntityInstances/${tei}.json?program=${PROGRAM}&fields=*`)).json;
}

function attrValue(tei, id) {
  return tei.attributes?.find((a) => a.attribute === id)?.value ?? '';
}

function statusText(s) {
  return s === 'COMPLETED' ? t('completed') : s === 'SCHEDULE' ? t('schedule') : t('active');
}

async function screenTei(teiUid) {
  const stillShown = beginScreen();
  setView(t('dashboard'), h('p', { class: 'muted' }, t('loading')));
  let tei;
  try {
    tei = await loadTei(teiUid);
  } catch (error) {
    if (!stillShown()) return;
    return setView(t('dashboard'), h('p', { class: 'field-error' }, `${error.message} (${error.code})`), h('a', { href: '#/list', class: 'button' }, t('back')));
  }
  if (!stillShown()) return; // she went to another screen while this one loaded
  const enrollment = (tei.enrollments ?? []).find((e) => e.program === PROGRAM && e.status === 'ACTIVE') ?? tei.enrollments?.[0];
  const name = `${attrValue(tei, ATTR.first)} ${attrValue(tei, ATTR.last)}`.trim();
  const profile = h('dl', { class: 'profile card' },
    attributeMeta().map((pa) => [h('dt', {}, pa.trackedEntityAttribute.displayName), h('dd', { dir: 'auto' }, attrValue(tei, pa.trackedEntityAttribute.id) || '—')]),
    enrollment ? [h('dt', {}, t('enrollDate')), h('dd', { dir: 'ltr' }, day(enrollment.enrollmentDate))] : null,
  );
  const deMeta = new Map();
  for (const st of stagesMeta()) for (const psde of st.programStageDataElements ?? []) deMeta.set(psde.dataElement.id, psde.dataElement);
  const shown = (dv) => {
    const de = deMeta.get(dv.dataElement);
    const option = de?.optionSet?.options?.find((o) => o.code === dv.value);
    const value = option ? option.displayName
      : de?.valueType === 'BOOLEAN' || de?.valueType === 'TRUE_ONLY' ? (dv.value === 'true' ? t('yes') : t('no'))
        : de?.valueType === 'DATE' ? day(dv.value) : dv.value;
    return `${de?.displayName ?? dv.dataElement}: ${value}`;
  };
  const stages = stagesMeta().map((st) => {
    const events = (enrollment?.events ?? []).filter((ev) => ev.programStage === st.id && !ev.deleted)
      .sort((a, b) => String(a.eventDate ?? a.dueDate).localeCompare(String(b.eventDate ?? b.dueDate)));
    const canAdd = enrollment && (st.repeatable || events.length === 0);
    return h('section', { class: 'stage card', 'aria-labelledby': `stage-${st.id}` },
      h('div', { class: 'row' },
        h('h2', { id: `stage-${st.id}` }, st.displayName, h('span', { class: 'muted small' }, ` (${events.length})`)),
        h('span', { class: 'grow' }),
        canAdd ? h('button', { type: 'button', class: 'primary', 'data-stage': st.id, onclick: (e) => newEvent(e.currentTarget, tei, enrollment, st) }, `${t('newEvent')}: ${st.displayName}`) : null),
      events.length ? h('table', { class: 'list events' },
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, t('visitDate')), h('th', { scope: 'col' }, t('status')), h('th', { scope: 'col' }, t('by')), h('th', { scope: 'col' }, t('values')))),
        h('tbody', {}, events.map((ev) => h('tr', { 'data-event': ev.event },
          h('td', { dir: 'ltr' }, h('a', { href: `#/event/${tei.trackedEntityInstance}/${ev.event}` }, day(ev.eventDate ?? ev.dueDate) || '—')),
          h('td', {}, h('span', { class: `pill ${String(ev.status).toLowerCase()}` }, statusText(ev.status))),
          h('td', { class: 'stored-by' }, ev.storedBy ?? ''),
          h('td', { class: 'small' }, (ev.dataValues ?? []).map(shown).join(' · ')),
        )))) : h('p', { class: 'muted small' }, t('noEvents')),
    );
  });
  setView(name || t('dashboard'),
    h('div', { class: 'row' }, h('a', { href: '#/list', class: 'button' }, t('back'))),
    h('div', { class: 'dash' }, profile, h('div', { class: 'stages' }, stages)));
}

async function newEvent(button, tei, enrollment, stage) {
  button.disabled = true;
  try {
    const summary = importSummary((await api('POST', '/events.json', {
      events: [{
        trackedEntityInstance: tei.trackedEntityInstance, program: PROGRAM, programStage: stage.id, enrollment: enrollment.enrollment,
        orgUnit: state.orgUnit?.id ?? enrollment.orgUnit, dataValues: [], notes: [], status: 'ACTIVE', eventDate: today(),
      }],
    })).json);
    await refreshStatus();
    location.hash = `#/event/${tei.trackedEntityInstance}/${summary.reference}`;
  } catch (error) {
    showNotice(`${error.message} (${error.code})`, 'error');
    button.disabled = false;
  }
}

function validateValue(valueType, value) {
  if (value === '') return null;
  switch (valueType) {
    case 'NUMBER': return /^-?\d+([.,]\d+)?$/.test(value) ? null : t('notNumber');
    case 'INTEGER': return /^-?\d+$/.test(value) ? null : t('notInteger');
    case 'INTEGER_POSITIVE': return !/^-?\d+$/.test(value) ? t('notInteger') : Number(value) > 0 ? null : t('notPositive');
    case 'INTEGER_ZERO_OR_POSITIVE': return !/^-?\d+$/.test(value) ? t('notInteger') : Number(value) >= 0 ? null : t('notZeroPos');
    case 'DATE': return validDate(value) ? null : t('badDate');
    default: return null;
  }
}

async function screenEvent(teiUid, eventUid) {
  const stillShown = beginScreen();
  setView(t('loading'), h('p', { class: 'muted' }, t('loading')));
  let tei;
  try {
    tei = await loadTei(teiUid);
  } catch (error) {
    if (!stillShown()) return;
    return setView(t('dashboard'), h('p', { class: 'field-error' }, `${error.message} (${error.code})`));
  }
  if (!stillShown()) return;
  const enrollment = (tei.enrollments ?? []).find((en) => (en.events ?? []).some((ev) => ev.event === eventUid));
  const event = enrollment?.events.find((ev) => ev.event === eventUid);
  const stage = stagesMeta().find((st) => st.id === event?.programStage);
  if (!event || !stage) return setView(t('dashboard'), h('p', { class: 'field-error' }, t('notAvailableOffline')));
  const name = `${attrValue(tei, ATTR.first)} ${attrValue(tei, ATTR.last)}`.trim();
  const readOnly = event.status === 'COMPLETED';
  const values = Object.fromEntries((event.dataValues ?? []).map((dv) => [dv.dataElement, dv.value]));
  const current = { ...values }; // what the form holds (memory only)
  let queue = Promise.resolve(); // values are saved one at a time, in order (Tracker Capture's AssignmentQueue)
  const base = {
    event: event.event, orgUnit: event.orgUnit, program: PROGRAM, programStage: stage.id, status: event.status,
    trackedEntityInstance: tei.trackedEntityInstance,
  };

  const save = (de, value, input) => {
    const mark = $(`#de-${de}-state`);
    const err = validateValue(input.dataset.valueType, value);
    $(`#de-${de}-error`).textContent = err ?? '';
    if (err) { input.setAttribute('aria-invalid', 'true'); mark.textContent = ''; return; }
    input.removeAttribute('aria-invalid');
    current[de] = value;
    mark.textContent = t('saving');
    mark.className = 'save-state';
    queue = queue.then(async () => {
      try {
        const { local } = await api('PUT', `/events/${event.event}/${de}`, { ...base, dataValues: [{ dataElement: de, value, providedElsewhere: false }] });
        mark.textContent = local ? t('savedLocal') : t('saved');
        mark.className = `save-state ${local ? 'local' : 'ok'}`;
      } catch (error) {
        mark.textContent = '';
        $(`#de-${de}-error`).textContent = `${t('saveFailed')}: ${error.message} (${error.code})`;
      }
      refreshStatus();
    });
  };

  const fields = (stage.programStageDataElements ?? []).sort((a, b) => (a.sortOrder ?? 0) - (b.sortOrder ?? 0)).map((psde) => {
    const de = psde.dataElement;
    const id = `de-${de.id}`;
    const v = values[de.id] ?? '';
    const common = { id, name: de.id, disabled: readOnly, 'data-value-type': de.valueType, 'aria-describedby': `${id}-error ${id}-state` };
    let input;
    if (de.optionSet?.options?.length) {
      input = h('select', common, h('option', { value: '' }, '—'), de.optionSet.options.map((o) => h('option', { value: o.code, selected: o.code === v }, o.displayName)));
    } else if (de.valueType === 'BOOLEAN') {
      input = h('select', common, h('option', { value: '' }, '—'), h('option', { value: 'true', selected: v === 'true' }, t('yes')), h('option', { value: 'false', selected: v === 'false' }, t('no')));
    } else if (de.valueType === 'TRUE_ONLY') {
      input = h('input', { ...common, type: 'checkbox', checked: v === 'true' });
    } else if (de.valueType === 'DATE') {
      input = h('input', { ...common, type: 'date', value: day(v), dir: 'ltr' });
    } else if (de.valueType === 'LONG_TEXT' || de.id === 'DeRemarks01') {
      input = h('textarea', { ...common, rows: '2' }, v);
    } else {
      const numeric = /NUMBER|INTEGER/.test(de.valueType);
      input = h('input', { ...common, type: 'text', value: v, inputmode: numeric ? 'decimal' : null, dir: numeric ? 'ltr' : 'auto', autocomplete: 'off' });
    }
    input.addEventListener('change', () => {
      const value = input.type === 'checkbox' ? (input.checked ? 'true' : '') : input.value.trim();
      save(de.id, value, input);
    });
    return h('div', { class: `field ${de.valueType === 'TRUE_ONLY' ? 'check' : ''}` },
      h('label', { for: id }, de.displayName),
      input,
      h('p', { class: 'save-state', id: `${id}-state`, 'aria-live': 'polite' }),
      fieldError(id));
  });

  const form = h('form', { id: 'event-form', class: 'card', novalidate: true },
    h('p', { class: 'muted' }, `${stage.executionDateLabel ?? t('visitDate')}: `, h('span', { dir: 'ltr' }, day(event.eventDate)), ' · ', statusText(event.status)),
    readOnly ? h('p', { class: 'muted' }, t('eventReadOnly')) : null,
    h('div', { class: 'grid' }, fields),
    h('p', { class: 'field-error', id: 'form-error', role: 'alert' }),
    h('div', { class: 'row' },
      readOnly ? null : h('button', { type: 'submit', class: 'primary', id: 'complete-btn' }, t('completeBtn')),
      h('a', { href: `#/tei/${tei.trackedEntityInstance}`, class: 'button', id: 'back-to-woman' }, t('backToWoman'))),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    // A value typed but not yet "changed" (focus still in the field) is saved first.
    const active = document.activeElement;
    if (active?.form === form && active.name && active.dataset.valueType) active.dispatchEvent(new Event('change'));
    if (form.querySelector('[aria-invalid="true"]')) return form.querySelector('[aria-invalid="true"]').focus();
    const button = $('#complete-btn');
    button.disabled = true;
    try {
      await queue;
      importSummary((await api('PUT', `/events/${event.event}`, {
        ...base, enrollment: enrollment.enrollment, status: 'COMPLETED', eventDate: day(event.eventDate) || today(), dueDate: day(event.dueDate) || undefined,
        completedDate: today(),
        dataValues: Object.entries(current).filter(([, value]) => value !== '').map(([dataElement, value]) => ({ dataElement, value, providedElsewhere: false })),
      })).json);
      await refreshStatus();
      location.hash = `#/tei/${tei.trackedEntityInstance}`;
    } catch (error) {
      $('#form-error').textContent = `${error.message} (${t('errorCode')}: ${error.code})`;
      button.disabled = false;
    }
  });
  setView(`${stage.displayName} · ${name}`, form);
}

/** A field key of a conflict (`dv:<data element>`, `attr:<attribute>`, or a field name) as a label. */
function fieldLabel(field) {
  const [kind, uid] = field.includes(':') ? field.split(':') : ['', field];
  const names = kind === 'dv'
    ? stagesMeta().flatMap((st) => (st.programStageDataElements ?? []).map((psde) => psde.dataElement))
    : kind === 'attr' ? attributeMeta().map((a) => a.trackedEntityAttribute) : [];
  return names.find((x) => x?.id === uid)?.displayName ?? uid;
}

function shownValue(v) {
  return v === null || v === undefined || v === '' ? t('emptyValue') : String(v);
}

function conflictCards(conflicts) {
  return h('ul', { class: 'failures conflicts' }, conflicts.map((c) => h('li', { class: 'card', 'data-conflict': c.id },
    h('h2', {}, `${t('field')}: `, h('bdi', {}, fieldLabel(c.field))),
    h('p', { class: 'small muted' }, t(windowed(c) ? 'windowText' : c.held ? 'heldText' : 'conflictText')),
    h('dl', { class: 'values' },
      h('dt', {}, t(windowed(c) ? 'laterValue' : c.held ? 'deviceHeld' : 'deviceValue')), h('dd', { 'data-side': 'device' }, h('bdi', {}, shownValue(c.device))),
      h('dt', {}, t(windowed(c) ? 'windowValue' : 'serverValue')), h('dd', { 'data-side': 'server' }, h('bdi', {}, shownValue(c.server))),
      h('dt', {}, t('baseValue')), h('dd', {}, h('bdi', {}, shownValue(c.base)))),
    h('p', { class: 'small muted' }, `${t('author')}: ${c.author} · ${formatDateTime(lang, c.changedAtMs)}`),
    h('div', { class: 'row' },
      h('button', { type: 'button', class: 'primary', 'data-keep': 'device', onclick: () => resolve(c, 'device') }, t(windowed(c) ? 'keepLater' : 'keepDevice')),
      h('button', { type: 'button', 'data-keep': 'server', onclick: () => resolve(c, 'server') }, t(windowed(c) ? 'keepEarlier' : 'keepServer'))),
  )));
  function windowed(c) {
    return c.source === 'window';
  }
  async function resolve(c, keep) {
    try {
      await state.app.resolveConflict(c.id, keep);
      if (keep === 'server') await runSync();
    } catch (error) {
      showNotice(`${error.message} (${error.code})`, 'error');
    }
    await refreshStatus();
    screenFailures();
  }
}

function warningCards(warnings) {
  return h('ul', { class: 'failures warnings' }, warnings.map((f) => h('li', { class: 'card', 'data-warning': f.id },
    h('h2', {}, describeChange(lang, f.summary, f.change)),
    h('ul', { class: 'reasons' }, (f.reasons ?? []).map((r) => h('li', {}, r))),
    h('div', { class: 'row' }, h('button', { type: 'button', onclick: async () => {
      await state.app.discard(f.id).catch((e) => showNotice(`${e.message} (${e.code})`, 'error'));
      await refreshStatus();
      screenFailures();
    } }, t('dismiss'))))));
}

async function screenFailures() {
  const stillShown = beginScreen();
  setView(t('failuresTitle'), h('p', { class: 'muted' }, t('loading')));
  let items = [];
  let conflicts = [];
  try {
    [items, conflicts] = await Promise.all([state.app.failures(), state.app.conflicts()]);
  } catch (error) {
    if (!stillShown()) return;
    return setView(t('failuresTitle'), h('p', { class: 'field-error' }, `${error.message} (${error.code})`));
  }
  // She went back to the form while the list loaded: the form stays (its fields with it).
  if (!stillShown()) return;
  const failures = items.filter((f) => f.severity !== 'warning');
  const warnings = items.filter((f) => f.severity === 'warning');
  const extra = [
    ...(conflicts.length ? [h('h2', { id: 'conflicts-title' }, t('conflictsTitle')), conflictCards(conflicts)] : []),
    ...(warnings.length ? [h('h2', {}, t('warningsTitle')), warningCards(warnings)] : []),
  ];
  const list = failures.length ? h('ul', { class: 'failures' }, failures.map((f) => h('li', { class: 'card', 'data-failure': f.id },
    h('h2', {}, describeChange(lang, f.summary, f.change)),
    h('p', { class: 'small muted', dir: 'ltr' }, f.summary ?? f.id),
    h('p', { class: 'small muted' }, `${t('author')}: ${f.author ?? '?'}${f.failedAtMs ? ` · ${formatDateTime(lang, f.failedAtMs)}` : ''}`),
    h('p', {}, h('strong', {}, `${t('reasons')}: `)),
    h('ul', { class: 'reasons' }, (f.reasons ?? []).map((r) => h('li', {}, r))),
    h('div', { class: 'row' },
      h('button', { type: 'button', class: 'primary', onclick: async (e) => {
      e.currentTarget.disabled = true;
      try {
        await state.app.retry(f.id);
        await runSync();
      } catch (error) {
        showNotice(`${error.message} (${error.code})`, 'error');
      }
      await refreshStatus();
      screenFailures();
    } }, t('retry')),
      h('button', { type: 'button', class: 'danger', onclick: async () => {
        if (!(await confirmDialog(t('discardTitle'), `${f.summary ?? ''} — ${t('discardText')}`, t('discard')))) return;
        await state.app.discard(f.id).catch((e) => showNotice(`${e.message} (${e.code})`, 'error'));
        await refreshStatus();
        screenFailures();
      } }, t('discard'))),
  ))) : h('p', { class: 'muted' }, t('noFailures'));
  state.shownFailures = failures.length;
  setView(t('failuresTitle'), list, ...extra, h('a', { href: '#/list', class: 'button' }, t('back')));
}

/**
 * Device users: removing a user who left the clinic (the library rotates the data key). The
 * register holds no usernames in clear, so the supervisor types hers.
 */
function screenUsers() {
  beginScreen();
  const input = h('input', { id: 'remove-username', name: 'username', autocomplete: 'off', required: true, 'aria-describedby': 'remove-username-error', dir: 'ltr' });
  const form = h('form', { class: 'card', novalidate: true },
    h('h2', {}, t('removeUserTitle')),
    h('p', { class: 'small muted' }, t('removeUserHelp')),
    h('label', { for: 'remove-username' }, t('username')), input, fieldError('remove-username'),
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'danger', id: 'remove-user-btn' }, t('removeUserBtn'))));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const username = input.value.trim();
    setFieldError(form, 'username', username ? null : t('required'));
    if (!username) return input.focus();
    if (!(await confirmDialog(t('removeUserConfirm', { username }), t('removeUserConfirmText'), t('removeUserBtn')))) return;
    const button = $('#remove-user-btn', form);
    button.disabled = true;
    try {
      const outcome = await state.app.removeUser(username);
      const rejoin = outcome.usersToLogInOnlineAgain ? ` ${t('removedUserRejoin', { count: outcome.usersToLogInOnlineAgain })}` : '';
      showNotice(`${t('removedUser', { username: outcome.username, kept: outcome.usersKept })}${rejoin}`);
      input.value = '';
    } catch (error) {
      const text = error.code === 'UNKNOWN_USER_OFFLINE' ? t('removeUnknown')
        : error.code === 'BAD_INPUT' && username === state.user?.username ? t('removeSelf')
          : explainError(lang, error);
      setFieldError(form, 'username', `${text} (${t('errorCode')}: ${error.code ?? 'ERROR'})`);
    } finally {
      button.disabled = false;
    }
    await refreshStatus();
  });
  setView(t('deviceUsers'), form, h('a', { href: '#/list', class: 'button' }, t('back')));
}

// ---------------------------------------------------------------------------------------
// Routing and wiring.
function route() {
  if (!state.user) return screenLogin();
  const parts = location.hash.replace(/^#\/?/, '').split('/');
  switch (parts[0]) {
    case 'register': return screenRegister();
    case 'tei': return screenTei(parts[1]);
    case 'event': return screenEvent(parts[1], parts[2]);
    case 'failures': return screenFailures();
    case 'users': return screenUsers();
    case 'switch': return screenLogin(undefined, true);
    default: return screenList();
  }
}

/**
 * Shift change: the next user logs in while this session is still open, so that a user new
 * to this device receives the clinic's data key from it (the library's handover). "Log out"
 * closes the session without a successor.
 */
function switchUser() {
  location.hash = '#/switch';
}

async function logout() {
  await state.app.logout();
  state.user = null;
  state.program = null;
  state.orgUnit = null;
  state.drafts = { register: null, search: '' };
  showNotice('');
  await refreshStatus();
  history.replaceState(null, '', '#/login');
  screenLogin();
}

function applyLanguage() {
  document.documentElement.lang = lang;
  document.documentElement.dir = direction(lang);
  for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  const btn = $('#lang-btn');
  const other = lang === 'ar' ? 'en' : 'ar';
  btn.textContent = translate(other, 'languageName');
  btn.lang = other;
}

async function detectSimFaults() {
  // The demo server (dhis2-sim --faults) has an admin API that can drop every /api request.
  try {
    const r = await fetch('/__sim/faults', { cache: 'no-store' });
    if (!r.ok) return;
    const body = await r.json();
    state.simFaults = body?.enabled === true;
    state.serverDown = (body.rules ?? []).some((rule) => rule.path === '/api' && rule.drop && !rule.rate);
  } catch { /* not the demo server, or unreachable */ }
}

async function setServerDown(down) {
  try {
    if (down) {
      await fetch('/__sim/faults', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify([{ path: '/api', drop: true }]) });
    } else {
      await fetch('/__sim/faults', { method: 'DELETE' });
    }
    state.serverDown = down;
    showNotice(down ? t('downOn') : t('downOff'));
    if (!down && state.user) state.app.sync().catch(() => {});
  } catch (error) {
    showNotice(error.message, 'error');
  }
  refreshStatus();
}

async function main() {
  applyLanguage();
  $('#lang-btn').addEventListener('click', () => {
    lang = lang === 'ar' ? 'en' : 'ar';
    localStorage.setItem('tracker-offline-demo:lang', lang);
    applyLanguage();
    renderStatus();
    // Re-render the current screen, keeping in-memory drafts (a login form keeps nothing).
    route();
  });
  $('#sync-btn').addEventListener('click', runSync);
  $('#download-btn').addEventListener('click', runDownload);
  $('#switch-btn').addEventListener('click', switchUser);
  $('#users-btn').addEventListener('click', () => { location.hash = '#/users'; });
  $('#failed-btn').addEventListener('click', () => { location.hash = '#/failures'; });
  $('#pending-btn').addEventListener('click', runSync);
  $('#server-down-box').addEventListener('change', (e) => setServerDown(e.target.checked));
  window.addEventListener('hashchange', route);

  const app = await TrackerOffline.start({ apiBase: API, serviceWorker: '../sw.js' });
  state.app = app;
  window.trackerOffline = app; // for tests and the console
  app.addEventListener('status', (e) => {
    state.status = e.detail;
    renderStatus();
    // The failures screen follows what the outbox holds (a retry refused again comes back).
    if (state.user && location.hash === '#/failures' && state.shownFailures !== e.detail.failed && !$('#confirm').open) screenFailures();
  });
  app.addEventListener('progress', (e) => showProgress(t('downloading'), e.detail));
  // Flush progress (from this page's "Send now" or the service worker's own flushes) is a
  // FlushReport { sent, failed, remaining, stopped }: a bar while work goes out.
  let flushIdle = null;
  app.addEventListener('flush', (e) => {
    const r = e.detail ?? {};
    const done = (r.sent ?? 0) + (r.failed ?? 0);
    clearTimeout(flushIdle);
    if (r.stopped === 'SERVER_UNREACHABLE') noteReachable(false);
    else if (r.sent) noteReachable(true);
    if (r.stopped || !r.remaining) {
      if (!state.busy) showProgress(null, null);
      refreshStatus();
      return;
    }
    if (!state.busy || state.busy === 'sync') showProgress(t('sending'), { done, total: done + r.remaining });
    flushIdle = setTimeout(() => { if (!state.busy) showProgress(null, null); }, 2000);
  });
  await detectSimFaults();
  await refreshStatus();
  ping();
  setInterval(refreshStatus, 5000);
  setInterval(() => { if (state.user) ping(); }, 10000);
  addEventListener('online', ping);
  addEventListener('offline', () => noteReachable(false));
  const s = state.status;
  if (s?.user && !s.locked) {
    // The library still holds a session for this page (e.g. another tab's): carry on.
    await afterLogin({ username: s.user.username, mode: s.user.mode, profile: { displayName: s.user.displayName, organisationUnits: s.user.organisationUnits } });
    return;
  }
  // A reload keeps no key in the page: log in again (the work saved before is on the device).
  history.replaceState(null, '', '#/login');
  route();
}

main().catch((error) => {
  view().replaceChildren(h('h1', {}, 'tracker-offline'), h('p', { class: 'field-error' }, `${error.message} (${error.code ?? 'ERROR'})`));
  console.error(error);
});
