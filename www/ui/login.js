// The login form of the library's screens: the demo's login and shift change, and the gate the
// Tracker Capture loader puts before the app. Two fields and a button; a refusal is said beside
// the field it is about (a user not known here: the username; a wrong, locked or expired
// password: the password), else under the form, with its error code for whoever helps her.

import { h } from './dom.js';
import { explainError, t as translate } from './i18n.js';

/** The field an error code is about. */
const FIELD_OF_ERROR = {
  UNKNOWN_USER_OFFLINE: 'username', HANDOVER_REQUIRED: 'username', OUTSIDE_CLINIC: 'username',
  BAD_CREDENTIALS: 'password', LOCKED_OUT: 'password', CREDENTIAL_EXPIRED: 'password', CREDENTIAL_REVOKED: 'password', BAD_INPUT: 'password',
};

/**
 * A login form. `prefix` starts every id: `<prefix>username`, `<prefix>password`, their
 * `-error`, `<prefix>form-error` and the button `<prefix>login`. `before` and `after`: nodes
 * above the fields and below the button; `actions`: more buttons beside it. `login(username,
 * password)` asks the library; `done(outcome)` follows a login that succeeded (the password is
 * cleared first). `username` pre-fills the first field.
 */
export function loginForm(lang, { prefix = '', className, username = '', before = [], actions = [], after = [], login, done }) {
  const t = (key, vars) => translate(lang, key, vars);
  const id = (name) => `${prefix}${name}`;
  const errorOf = (name) => h('p', { class: 'tracker-offline-field-error', id: id(`${name}-error`), role: 'alert' });
  const field = (name, attrs) => [
    h('label', { for: id(name) }, t(name)),
    h('input', { id: id(name), name, required: true, dir: 'ltr', 'aria-describedby': id(`${name}-error`), ...attrs }),
    errorOf(name),
  ];
  const submit = h('button', { type: 'submit', id: id('login'), class: 'tracker-offline-primary' }, t('loginBtn'));
  const message = h('p', { class: 'tracker-offline-message', id: id('form-error'), role: 'alert' });
  const form = h('form', { class: className, novalidate: true },
    before,
    field('username', { autocomplete: 'username', autocapitalize: 'none', spellcheck: 'false', value: username }),
    field('password', { type: 'password', autocomplete: 'current-password' }),
    message,
    h('div', { class: 'tracker-offline-actions' }, submit, actions),
    after);
  const say = (name, text) => {
    const input = form.elements[name];
    form.querySelector(`#${id(`${name}-error`)}`).textContent = text ?? '';
    if (text) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  };
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    say('username');
    say('password');
    message.textContent = '';
    const name = form.elements.username.value.trim();
    const password = form.elements.password.value;
    if (!name) return say('username', t('required')), form.elements.username.focus();
    if (!password) return say('password', t('required')), form.elements.password.focus();
    submit.disabled = true;
    submit.textContent = t('loggingIn');
    try {
      const outcome = await login(name, password);
      form.elements.password.value = '';
      await done(outcome);
    } catch (error) {
      const text = `${explainError(lang, error)} (${t('errorCode')}: ${error.code ?? 'ERROR'})`;
      const about = FIELD_OF_ERROR[error.code];
      if (about) {
        say(about, text);
        form.elements[about].select();
      } else {
        message.textContent = text;
      }
    } finally {
      submit.disabled = false;
      submit.textContent = t('loginBtn');
    }
  });
  return form;
}

/** Puts the caret in the first field of a login form still to fill. */
export function focusLogin(form) {
  (form.elements.username.value ? form.elements.password : form.elements.username).focus();
}
