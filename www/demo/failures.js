// Work that needs a person: entries the server refused, fields changed here and on the server
// (conflicts), and the server's remarks on accepted work.

import { describeChange, formatDateTime } from '../tracker-capture/i18n.js';
import { $, beginScreen, confirmDialog, h, lang, refreshStatus, setView, showNotice, state, t } from './ui.js';
import { runSync } from './session.js';
import { attributeMeta } from './women.js';
import { stagesMeta } from './visits.js';

/** A field key of a conflict (`dv:<data element>`, `attr:<attribute>`, or a field name) as a label. */
export function fieldLabel(field) {
  const [kind, uid] = field.includes(':') ? field.split(':') : ['', field];
  const names = kind === 'dv'
    ? stagesMeta().flatMap((st) => (st.programStageDataElements ?? []).map((psde) => psde.dataElement))
    : kind === 'attr' ? attributeMeta().map((a) => a.trackedEntityAttribute) : [];
  return names.find((x) => x?.id === uid)?.displayName ?? uid;
}

export function shownValue(v) {
  return v === null || v === undefined || v === '' ? t('emptyValue') : String(v);
}

export function conflictCards(conflicts) {
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

export function warningCards(warnings) {
  return h('ul', { class: 'failures warnings' }, warnings.map((f) => h('li', { class: 'card', 'data-warning': f.id },
    h('h2', {}, describeChange(lang, f.summary, f.change)),
    h('ul', { class: 'reasons' }, (f.reasons ?? []).map((r) => h('li', {}, r))),
    h('div', { class: 'row' }, h('button', { type: 'button', onclick: async () => {
      await state.app.discard(f.id).catch((e) => showNotice(`${e.message} (${e.code})`, 'error'));
      await refreshStatus();
      screenFailures();
    } }, t('dismiss'))))));
}

export async function screenFailures() {
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
