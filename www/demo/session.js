// Login and shift change, the clinic copy's download, "send now", and the device's users.

import { explainError, formatDateTime } from '../ui/i18n.js';
import { focusLogin, loginForm } from '../ui/login.js';
import { $, PROGRAM_URL, api, beginScreen, confirmDialog, fieldError, h, lang, noteReachable, refreshStatus, setFieldError, setView, showNotice, showProgress, state, t } from './ui.js';
import { route } from './app.js';

export async function screenLogin(message, shift = false) {
  beginScreen();
  const registered = state.status?.registeredUsers;
  const pending = state.status?.pending ?? 0;
  const form = loginForm(lang, {
    className: 'card narrow',
    before: [
      shift ? h('p', { id: 'shift-help' }, t('shiftHelp', { name: state.user.displayName })) : h('p', { class: 'muted' }, t('loginHelp')),
      shift && pending ? h('p', { class: 'muted small' }, `${pending} ${t('stillPending')}`) : null,
      shift && state.drafts.register ? h('p', { class: 'muted small' }, t('leaveDraft')) : null,
    ],
    actions: shift ? [
      h('button', { type: 'button', id: 'logout-btn', onclick: logout }, t('logoutBtn')),
      h('a', { href: '#/list', class: 'button', id: 'cancel-switch' }, t('cancel')),
    ] : [],
    after: [
      Number.isFinite(registered) ? h('p', { class: 'muted small' }, `${t('usersHere')}: ${registered || t('none')}`) : null,
      h('p', { class: 'muted small' }, t('outageHelp')),
    ],
    login: (username, password) => state.app.login(username, password),
    done: afterLogin,
  });
  form.id = 'login-form';
  $('#form-error', form).textContent = message ?? '';
  setView(shift ? t('switchTitle') : t('loginTitle'), form);
  focusLogin(form);
}

export async function afterLogin(outcome) {
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

export async function runDownload() {
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

export async function runSync() {
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

export function renderLastDownload() {
  const el = $('#last-download');
  if (!el) return;
  const at = state.status?.lastDownloadAt;
  el.textContent = at ? `${t('lastDownload')} ${formatDateTime(lang, at)}` : t('neverDownloaded');
}

/**
 * Device users: removing a user who left the clinic (the library rotates the data key). The
 * register holds no usernames in clear, so the supervisor types hers.
 */
export function screenUsers() {
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

/**
 * Shift change: the next user logs in while this session is still open, so that a user new
 * to this device receives the clinic's data key from it (the library's handover). "Log out"
 * closes the session without a successor.
 */
export function switchUser() {
  location.hash = '#/switch';
}

export async function logout() {
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
