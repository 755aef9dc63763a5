// The failures screen: work that needs a person (entries the server refused, fields changed here
// and on the server, the server's remarks on accepted work), drawn by the lists shared with the
// Tracker Capture loader (ui/work.js); this file says what each action leads to in the demo.

import { workLists } from '../ui/work.js';
import { beginScreen, confirmDialog, h, lang, refreshStatus, setView, showNotice, state, t } from './ui.js';
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

/** Runs an action of the screen, shows its error if it fails, then draws the screen again. */
async function thenRedraw(action) {
  try {
    await action();
  } catch (error) {
    showNotice(`${error.message} (${error.code})`, 'error');
  }
  await refreshStatus();
  screenFailures();
}

const actions = {
  retry: (f) => thenRedraw(async () => {
    await state.app.retry(f.id);
    await runSync();
  }),
  discard: async (f) => {
    if (!(await confirmDialog(t('discardTitle'), `${f.summary ?? ''} — ${t('discardText')}`, t('discard')))) return;
    await thenRedraw(() => state.app.discard(f.id));
  },
  keep: (c, side) => thenRedraw(async () => {
    await state.app.resolveConflict(c.id, side);
    if (side === 'server') await runSync();
  }),
  dismiss: (w) => thenRedraw(() => state.app.discard(w.id)),
  fieldLabel: (c) => fieldLabel(c.field),
};

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
  state.shownFailures = failures.length;
  setView(t('failuresTitle'), ...workLists(lang, { failures, conflicts, warnings }, actions), h('a', { href: '#/list', class: 'button' }, t('back')));
}
