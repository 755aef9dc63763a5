// A small point-of-care app for the MCH tracker program, built to show tracker-offline at work.
// It talks to the DHIS2 Web API exactly as Tracker Capture does (docs/dhis2-clients.md A1):
// ordinary fetch calls to the legacy endpoints, which the library's service worker answers
// from the encrypted local copy (and queues) when the server cannot be reached. The library
// API is used only for login, logout, status, download, sync and the failures screen.
//
// Nothing typed is written to localStorage/sessionStorage: unsaved input lives in memory
// (the form itself, and `drafts` for a registration form left half-filled), and every visit
// value is saved through the service worker the moment it changes.
//
// Split by screen: ui.js (shared parts), session.js (login, shift change, download, sync, users),
// women.js (list, search, registration), visits.js (dashboard, visits), failures.js (refused
// work, conflicts, warnings); this file routes and wires them.

import { TrackerOffline } from '../tracker-offline.js';
import { direction, t as translate } from '../ui/i18n.js';
import { $, API, h, lang, noteReachable, ping, refreshStatus, renderStatus, setLang, showNotice, showProgress, state, t, view } from './ui.js';
import { afterLogin, runDownload, runSync, screenLogin, screenUsers, switchUser } from './session.js';
import { screenList, screenRegister } from './women.js';
import { screenEvent, screenTei } from './visits.js';
import { screenFailures } from './failures.js';

// Routing and wiring.
export function route() {
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
    setLang(lang === 'ar' ? 'en' : 'ar');
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
