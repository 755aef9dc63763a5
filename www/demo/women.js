// The women of the clinic: the working list with its search, and a registration with its
// enrollment (written through the service worker as Tracker Capture writes them).

import { $, ATTR, PROGRAM, api, beginScreen, day, fieldError, h, importSummary, refreshStatus, setFieldError, setView, state, t, today } from './ui.js';
import { renderLastDownload } from './session.js';

export function gridRows(grid) {
  const idx = Object.fromEntries((grid?.headers ?? []).map((hd, i) => [hd.name, i]));
  return (grid?.rows ?? []).map((r) => ({
    tei: r[idx.instance], nid: r[idx[ATTR.nid]], first: r[idx[ATTR.first]], last: r[idx[ATTR.last]],
    dob: r[idx[ATTR.dob]], reg: r[idx[ATTR.reg]], created: r[idx.created],
  }));
}

export function queryUrl(filter) {
  const base = `/trackedEntityInstances/query.json?ou=${state.orgUnit?.id}&ouMode=SELECTED&program=${PROGRAM}`;
  return `${base}${filter ? `&attribute=${filter}` : ''}&pageSize=50&page=1&totalPages=true`;
}

export async function screenList() {
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

export async function loadList() {
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

export function attributeMeta() {
  const list = state.program?.programTrackedEntityAttributes ?? [];
  return [...list].sort((a, b) => (a.sortOrder ?? 0) - (b.sortOrder ?? 0));
}

export async function screenRegister() {
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
export async function fillRegistrationNumber(form, draft) {
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

export function validDate(value) {
  return /^\d{4}-\d{2}-\d{2}$/.test(value) && !Number.isNaN(Date.parse(value));
}

export async function submitRegistration(form, draft) {
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
