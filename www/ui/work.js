// The work that needs a person, drawn the same way by the demo and the Tracker Capture loader:
// entries the server refused (its reasons, retry, discard), fields changed here and on the
// server (conflicts: keep one side), and the server's remarks on accepted work (dismiss). Texts
// come from the shared catalogue; what an action leads to (a confirmation, a refresh, a notice on
// failure) is the caller's. Class names carry the `tracker-offline-` prefix: the loader draws
// inside another app's page, whose styles must not reach these lists.

import { h } from './dom.js';
import { describeChange, formatDateTime, t as translate } from './i18n.js';

/**
 * The lists, with their titles, as nodes to put in a screen or a panel.
 * `work`: `{ failures, conflicts, warnings }` as the library's `failures()` (split by severity)
 * and `conflicts()` give them. `actions`: `retry(failure)`, `discard(failure)`,
 * `keep(conflict, 'device' | 'server')`, `dismiss(warning)`, each returning a promise; and
 * `fieldLabel(conflict)`, the name of a conflict's field (its key when not given).
 */
export function workLists(lang, { failures = [], conflicts = [], warnings = [] }, actions) {
  const t = (key, vars) => translate(lang, key, vars);
  const shown = (v) => (v === null || v === undefined || v === '' ? t('emptyValue') : String(v));
  const label = actions.fieldLabel ?? ((c) => c.field);
  /** A button that stays disabled while its action runs. */
  const act = (text, attrs, run) => h('button', { type: 'button', ...attrs, onclick: async (event) => {
    const button = event.currentTarget;
    button.disabled = true;
    try {
      await run();
    } finally {
      button.disabled = false;
    }
  } }, text);
  const reasonsOf = (item) => (item.reasons ?? []).map((r) => (typeof r === 'string' ? r : r.message ?? JSON.stringify(r)));
  const heading = (item) => h('h3', { class: 'tracker-offline-title' }, describeChange(lang, item.summary, item.change) || item.id);
  const summary = (item) => h('p', { class: 'tracker-offline-summary' }, h('bdi', { dir: 'ltr' }, item.summary ?? item.id));

  const failureItems = failures.map((f) => {
    const reasons = reasonsOf(f);
    return h('li', { class: 'tracker-offline-failure', 'data-failure': f.id },
      heading(f),
      summary(f),
      h('p', { class: 'tracker-offline-meta' }, `${t('author')}: `, h('bdi', {}, f.author ?? '?'), f.failedAtMs ? ` · ${formatDateTime(lang, f.failedAtMs)}` : ''),
      reasons.length
        ? [h('p', { class: 'tracker-offline-meta' }, `${t('reasons')}:`), h('ul', { class: 'tracker-offline-reasons' }, reasons.map((r) => h('li', { dir: 'auto' }, r)))]
        : h('p', { class: 'tracker-offline-reasons' }, t('refusedNoReason')),
      h('div', { class: 'tracker-offline-actions' },
        act(t('retry'), { class: 'tracker-offline-retry tracker-offline-primary' }, () => actions.retry(f)),
        act(t('discard'), { class: 'tracker-offline-discard tracker-offline-danger' }, () => actions.discard(f))));
  });

  const conflictItems = conflicts.map((c) => {
    const windowed = c.source === 'window';
    return h('li', { class: 'tracker-offline-conflict', 'data-conflict': c.id },
      h('h3', { class: 'tracker-offline-title' }, t('fieldOfRecord', { field: label(c), record: c.record })),
      h('p', { class: 'tracker-offline-meta' }, t(windowed ? 'windowText' : c.held ? 'heldText' : 'conflictText')),
      h('dl', { class: 'tracker-offline-values' },
        h('dt', {}, t(windowed ? 'laterValue' : c.held ? 'deviceHeld' : 'deviceValue')), h('dd', { 'data-side': 'device' }, h('bdi', {}, shown(c.device))),
        h('dt', {}, t(windowed ? 'windowValue' : 'serverValue')), h('dd', { 'data-side': 'server' }, h('bdi', {}, shown(c.server))),
        h('dt', {}, t('baseValue')), h('dd', { 'data-side': 'base' }, h('bdi', {}, shown(c.base)))),
      h('p', { class: 'tracker-offline-meta' }, `${t('author')}: `, h('bdi', {}, c.author ?? '?'), c.changedAtMs ? ` · ${formatDateTime(lang, c.changedAtMs)}` : ''),
      h('div', { class: 'tracker-offline-actions' },
        act(t(windowed ? 'keepLater' : 'keepDevice'), { class: 'tracker-offline-keep-device tracker-offline-primary', 'data-keep': 'device' }, () => actions.keep(c, 'device')),
        act(t(windowed ? 'keepEarlier' : 'keepServer'), { class: 'tracker-offline-keep-server', 'data-keep': 'server' }, () => actions.keep(c, 'server'))));
  });

  const warningItems = warnings.map((w) => h('li', { class: 'tracker-offline-warning', 'data-warning': w.id },
    heading(w),
    summary(w),
    h('ul', { class: 'tracker-offline-reasons' }, reasonsOf(w).map((r) => h('li', { dir: 'auto' }, r))),
    h('div', { class: 'tracker-offline-actions' }, act(t('dismiss'), {}, () => actions.dismiss(w)))));

  return [
    failureItems.length ? h('ul', { class: 'tracker-offline-list' }, failureItems) : h('p', { class: 'tracker-offline-meta' }, t('noFailures')),
    conflictItems.length ? [h('h2', { id: 'tracker-offline-conflicts-title' }, t('conflictsTitle')), h('ul', { class: 'tracker-offline-list' }, conflictItems)] : [],
    warningItems.length ? [h('h2', {}, t('warningsTitle')), h('ul', { class: 'tracker-offline-list' }, warningItems)] : [],
  ].flat();
}
