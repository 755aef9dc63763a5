// A woman's dashboard and her visits: every value is saved through the service worker the
// moment it changes.

import { $, ATTR, PROGRAM, api, beginScreen, day, fieldError, h, importSummary, refreshStatus, setView, showNotice, state, t, today } from './ui.js';
import { attributeMeta, validDate } from './women.js';

export function stagesMeta() {
  return [...(state.program?.programStages ?? [])].sort((a, b) => (a.sortOrder ?? 0) - (b.sortOrder ?? 0));
}

export async function loadTei(tei) {
  return (await api('GET', `/trackedEntityInstances/${tei}.json?program=${PROGRAM}&fields=*`)).json;
}

export function attrValue(tei, id) {
  return tei.attributes?.find((a) => a.attribute === id)?.value ?? '';
}

export function statusText(s) {
  return s === 'COMPLETED' ? t('completed') : s === 'SCHEDULE' ? t('schedule') : t('active');
}

export async function screenTei(teiUid) {
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

export async function newEvent(button, tei, enrollment, stage) {
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

export function validateValue(valueType, value) {
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

export async function screenEvent(teiUid, eventUid) {
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
