// A day at the clinic, through the demo app's UI (www/demo/), against a real dhis2-sim process
// that is killed and restarted: nurse1 logs in online and the clinic is downloaded; the server
// dies; nurse1 registers a woman and records an ANC visit (clicks and typing), reloads the page,
// logs out; nurse2 logs in offline, finds the woman by national ID and records a second visit;
// the server comes back and the pending work of both nurses is sent; the server then holds the
// woman, her enrollment and both visits exactly once, each visit under its author; nurse1 sees
// nurse2's visit; and the origin's storage holds none of the woman's details in clear.
// Screenshots of every step: tests/artifacts/clinic-day-*.png (1366x768).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Sim, DEMO } from './lib/sim.mjs';
import { launch, openApp, dumpOriginStorage } from './lib/browser.mjs';
import { simGet, simRequests } from './lib/tracker-capture.mjs';
import { loginUI, switchUserUI, logoutUI, searchUI, typeValue, screenshot, waitForStatus } from './lib/demo-ui.mjs';

const WOMAN = { nid: '401234567', first: 'Layla', last: 'Jaber', dob: '1996-04-12', phone: '+970599123456' };
const REMARK = 'swollen ankles since Tuesday';
const DE = { weight: 'DeWeightKg1', weeks: 'DeGestWeek1', bp: 'DeBpSystol1', hb: 'DeHaemoglb1', danger: 'DeDangerSg1', remarks: 'DeRemarks01' };

let sim;
let browser;
before(async () => {
  sim = new Sim({ extraArgs: ['--faults', '--tracked-entities', '20'] });
  await sim.start();
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await sim?.kill();
});

/** Opens the woman's dashboard from the working list by national ID. */
async function openWoman(page) {
  await searchUI(page, WOMAN.nid);
  const link = page.locator('#results a', { hasText: `${WOMAN.first} ${WOMAN.last}` });
  await link.waitFor({ timeout: 15000 });
  assert.equal(await page.locator('#results tbody tr').count(), 1, 'one woman with this national ID');
  await link.click();
  await page.locator('h1', { hasText: `${WOMAN.first} ${WOMAN.last}` }).waitFor();
}

/** On her dashboard: "New: ANC visit", values typed one by one (saved on change), completed. */
async function recordVisit(page, values) {
  await page.locator('button[data-stage="PsAncVisit1"]').click();
  await page.locator('#event-form').waitFor();
  for (const [de, value] of values) {
    if (de === DE.danger) {
      await page.locator(`#de-${de}`).selectOption(value);
      await page.locator(`#de-${de}-state`).filter({ hasText: /Saved/ }).waitFor();
    } else {
      await typeValue(page, de, value);
    }
  }
}

async function completeVisit(page) {
  await page.locator('#complete-btn').click();
  await page.locator('#event-form').waitFor({ state: 'detached' });
  await page.locator('h1', { hasText: `${WOMAN.first} ${WOMAN.last}` }).waitFor();
}

test('a clinic day: offline registration and visits by two nurses reach the server once', async () => {
  const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
  let page = await openApp(context, sim.url, '/demo/');
  await screenshot(page, 'login');

  // Morning, online: nurse1 logs in; nurse2 logs in once on this device too (handover of the
  // clinic key from nurse1's open session), then nurse1 takes the device again.
  assert.match(await loginUI(page, DEMO.nurse1, 'online'), /Amal Haddad/);
  await switchUserUI(page, DEMO.nurse2, 'online');
  await switchUserUI(page, DEMO.nurse1, 'online');
  // The online login refreshes the clinic copy; the progress bar shows while it runs.
  await waitForStatus(page, (s) => s.lastDownloadAt && s.records > 0);
  await page.locator('#download-btn:not([disabled])').waitFor();
  await page.locator('#progress-wrap').waitFor({ state: 'hidden' });
  await page.locator('#results tbody tr').first().waitFor();
  await page.locator('#last-download', { hasText: 'Clinic copy from' }).waitFor();
  await screenshot(page, 'online-list');

  // The server dies.
  await sim.kill();

  // nurse1 registers a woman offline, keyboard first.
  await page.locator('#register-link').click();
  await page.locator('#register-form').waitFor();
  // The registration number comes from the values reserved on the server while online.
  await page.locator('#attr-AtRegNumbr1-help', { hasText: 'Reserved from the server earlier' }).waitFor();
  const regNumber = await page.locator('#attr-AtRegNumbr1').inputValue();
  assert.match(regNumber, /^MCH-\d{6}$/);
  // A missing mandatory field is reported next to it, and nothing is sent.
  await page.locator('#register-btn').click();
  await page.locator('#attr-AtNationId1-error', { hasText: 'Required' }).waitFor();
  assert.equal(await page.locator('#attr-AtNationId1').getAttribute('aria-invalid'), 'true');
  await screenshot(page, 'register-errors');
  await page.locator('#attr-AtNationId1').fill(WOMAN.nid);
  await page.locator('#attr-AtFirstNam1').fill(WOMAN.first);
  await page.locator('#attr-AtLastName1').fill(WOMAN.last);
  await page.locator('#attr-AtBirthDat1').fill(WOMAN.dob);
  await page.locator('#attr-AtPhoneNum1').fill(WOMAN.phone);
  await screenshot(page, 'register-filled');
  await page.locator('#attr-AtPhoneNum1').press('Enter');
  await page.locator('h1', { hasText: `${WOMAN.first} ${WOMAN.last}` }).waitFor({ timeout: 20000 });
  await screenshot(page, 'registered-offline');

  // Her first ANC visit, value by value; a bad value is refused next to its field.
  await recordVisit(page, [[DE.weight, '64.5'], [DE.weeks, '12']]);
  await typeValue(page, DE.bp, 'abc', null);
  await page.locator(`#de-${DE.bp}-error`, { hasText: 'whole number' }).waitFor();
  await screenshot(page, 'visit1-error');
  await typeValue(page, DE.bp, '118');
  await typeValue(page, DE.remarks, REMARK);
  assert.match(await page.locator(`#de-${DE.weight}-state`).textContent(), /on this device/);
  await screenshot(page, 'visit1-values');
  await completeVisit(page);
  assert.equal(await page.locator('tr[data-event] .pill.completed').count(), 1);
  await screenshot(page, 'visit1-completed');
  let status = await waitForStatus(page, (s) => s.pending > 0);
  assert.equal(status.pendingByAuthor.nurse1, status.pending, JSON.stringify(status));
  assert.equal(await page.locator('#pending').textContent(), String(status.pending));

  // Reload while the server is down: the app comes back from the device, locked.
  await page.reload();
  await page.waitForFunction(() => window.trackerOffline !== undefined, null, { timeout: 20000, polling: 100 });
  // The reloaded page takes nurse1's session back from the service worker (no login form while
  // the worker still holds the key).
  await page.locator('#who').filter({ hasText: `(${DEMO.nurse1.username})` }).waitFor({ timeout: 20000 });
  // sw.js lives in www/, so its scope (/) covers /demo/: the reloaded page is controlled.
  const sw = await page.evaluate(async () => ({ scope: (await navigator.serviceWorker.getRegistration())?.scope, controlled: Boolean(navigator.serviceWorker.controller) }));
  assert.deepEqual(sw, { scope: `${sim.url}/`, controlled: true });
  await screenshot(page, 'reloaded-offline');
  await page.evaluate(() => { location.hash = '#/list'; });
  await openWoman(page);
  assert.equal(await page.locator('tr[data-event]').count(), 1);
  await logoutUI(page);
  await screenshot(page, 'logged-out');

  // nurse2's shift, still offline.
  await loginUI(page, DEMO.nurse2, 'offline');
  await openWoman(page);
  await screenshot(page, 'nurse2-found');
  await recordVisit(page, [[DE.weight, '65'], [DE.weeks, '16'], [DE.bp, '121'], [DE.hb, '11.2'], [DE.danger, 'false']]);
  await screenshot(page, 'visit2-values');
  await completeVisit(page);
  assert.equal(await page.locator('tr[data-event] .pill.completed').count(), 2);
  status = await waitForStatus(page, (s) => s.pendingByAuthor?.nurse2 > 0);
  assert.ok(status.pendingByAuthor.nurse1 > 0, JSON.stringify(status));
  await screenshot(page, 'visit2-completed');

  // The server comes back; nurse2 presses "Send now" until everything is out.
  await sim.start();
  for (let i = 0; i < 40; i++) {
    await page.locator('#sync-btn:not([disabled])').click();
    await page.locator('#sync-btn:not([disabled])').waitFor();
    status = await page.evaluate(() => window.trackerOffline.status());
    if (status.pending === 0) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.equal(status.pending, 0, JSON.stringify(status));
  assert.equal(status.failed, 0, JSON.stringify(status));
  await page.locator('#pending', { hasText: '0' }).waitFor();
  await screenshot(page, 'sent');

  // The server holds her, her enrollment and both visits, once each, under their authors.
  const found = await simGet(sim, `/api/trackedEntityInstances/query.json?ou=${DEMO.clinic.id}&program=PrMchProg01&attribute=AtNationId1:EQ:${WOMAN.nid}`);
  assert.equal(found.body.rows.length, 1, 'one woman');
  const teiUid = found.body.rows[0][found.body.headers.findIndex((hd) => hd.name === 'instance')];
  const tei = (await simGet(sim, `/api/trackedEntityInstances/${teiUid}.json?program=PrMchProg01&fields=*`)).body;
  const attrs = Object.fromEntries(tei.attributes.map((a) => [a.attribute, a.value]));
  assert.deepEqual([attrs.AtFirstNam1, attrs.AtLastName1, attrs.AtBirthDat1?.slice(0, 10), attrs.AtPhoneNum1], [WOMAN.first, WOMAN.last, WOMAN.dob, WOMAN.phone]);
  assert.equal(attrs.AtRegNumbr1, regNumber, 'the reserved registration number reached the server');
  assert.equal(tei.enrollments.length, 1, 'one enrollment');
  const enrollment = tei.enrollments[0];
  assert.equal(enrollment.status, 'ACTIVE');
  const visits = enrollment.events.filter((e) => e.programStage === 'PsAncVisit1' && !e.deleted);
  assert.equal(visits.length, 2, JSON.stringify(visits));
  const byAuthor = Object.fromEntries(visits.map((v) => [v.storedBy, v]));
  assert.deepEqual(Object.keys(byAuthor).sort(), ['nurse1', 'nurse2']);
  const valuesOf = (ev) => Object.fromEntries(ev.dataValues.map((v) => [v.dataElement, v.value]));
  assert.equal(byAuthor.nurse1.status, 'COMPLETED');
  assert.equal(byAuthor.nurse2.status, 'COMPLETED');
  assert.deepEqual(valuesOf(byAuthor.nurse1), { [DE.weight]: '64.5', [DE.weeks]: '12', [DE.bp]: '118', [DE.remarks]: REMARK });
  assert.deepEqual(valuesOf(byAuthor.nurse2), { [DE.weight]: '65', [DE.weeks]: '16', [DE.bp]: '121', [DE.hb]: '11.2', [DE.danger]: 'false' });
  for (const v of visits) for (const dv of v.dataValues) assert.equal(dv.storedBy, v.storedBy, `${dv.dataElement} of ${v.event}`);
  // Exactly once on the wire too: one create of each record reached the server.
  const log = await simRequests(sim, '?method=POST');
  const creates = (uid) => log.filter((r) => r.status !== null && r.status < 400 && JSON.stringify(r.body ?? '').includes(`"${uid}"`)
    && (/\/trackedEntityInstances$/.test(r.path) ? JSON.stringify(r.body).includes('"attributes"') && uid === teiUid
      : /\/enrollments$/.test(r.path) ? uid === enrollment.enrollment : /\/events(\.json)?$/.test(r.path) ? JSON.stringify(r.body).includes(`"event":"${uid}"`) : false)).length;
  assert.equal(creates(teiUid), 1, 'the woman was created once');
  assert.equal(creates(enrollment.enrollment), 1, 'the enrollment was created once');
  for (const v of visits) assert.equal(creates(v.event), 1, `visit ${v.event} was created once`);
  const writers = new Set(log.concat(await simRequests(sim, '?method=PUT')).map((r) => r.user));
  assert.ok([...writers].every((u) => u === 'nurse1' || u === 'nurse2'), [...writers].join());

  // nurse1 takes over again (online now) and sees nurse2's visit.
  await switchUserUI(page, DEMO.nurse1, 'online');
  await openWoman(page);
  assert.equal(await page.locator('tr[data-event]').count(), 2);
  assert.deepEqual((await page.locator('tr[data-event] .stored-by').allTextContents()).sort(), ['nurse1', 'nurse2']);
  await screenshot(page, 'nurse1-sees-both');
  await page.setViewportSize({ width: 800, height: 1280 }); // a tablet, upright
  await screenshot(page, 'tablet-dashboard');

  // Nothing about her, or the visit remarks, is stored in clear anywhere in the origin.
  const raw = await dumpOriginStorage(page);
  for (const needle of [WOMAN.nid, WOMAN.first, WOMAN.last, WOMAN.phone, REMARK, DEMO.nurse1.password, DEMO.nurse2.password]) {
    assert.equal(raw.includes(needle), false, `${needle} in clear`);
  }
  await context.close();
});

test('a registration the server refuses: failures screen with its reasons, retry, discard after confirmation', async () => {
  const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
  const page = await openApp(context, sim.url, '/demo/');
  await loginUI(page, DEMO.nurse1, 'online');
  await waitForStatus(page, (s) => s.lastDownloadAt);
  await page.locator('#download-btn:not([disabled])').waitFor();
  // Meanwhile, at another clinic, the same national ID is registered on the server.
  const taken = '409999999';
  const created = await fetch(`${sim.url}/api/trackedEntityInstances`, {
    method: 'POST',
    headers: { Authorization: `Basic ${Buffer.from('admin:district').toString('base64')}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ trackedEntityType: 'TetPerson01', orgUnit: 'OuDuraClin1', attributes: [
      { attribute: 'AtNationId1', value: taken }, { attribute: 'AtFirstNam1', value: 'Other' }, { attribute: 'AtLastName1', value: 'Woman' },
      { attribute: 'AtBirthDat1', value: '1990-01-01' }] }),
  });
  assert.equal(created.status, 200, await created.text());

  // The network drops in the middle of the form: what was typed stays, the rest is added.
  await page.locator('#register-link').click();
  await page.locator('#attr-AtRegNumbr1-help', { hasText: 'Given by the server' }).waitFor();
  await page.locator('#attr-AtNationId1').fill(taken);
  await page.locator('#attr-AtFirstNam1').fill('Nour');
  await sim.kill();
  // Away to another screen and back before that screen has loaded (its list is made slow here,
  // as a busy worker makes it): the late list must not replace the form she came back to.
  await page.evaluate(() => {
    const app = window.trackerOffline;
    const failures = app.failures.bind(app);
    app.failures = async () => { await new Promise((r) => setTimeout(r, 1500)); return failures(); };
  });
  await page.locator('#failed-btn').click();
  await page.locator('h1', { hasText: 'Refused by the server' }).waitFor();
  await page.goBack();
  await page.locator('#register-form').waitFor();
  await page.waitForTimeout(2000); // the slow list has arrived by now
  await page.locator('#register-form').waitFor({ timeout: 1000 });
  await page.evaluate(() => { delete window.trackerOffline.failures; });
  assert.equal(await page.locator('#attr-AtNationId1').inputValue(), taken);
  assert.equal(await page.locator('#attr-AtFirstNam1').inputValue(), 'Nour');
  assert.match(await page.locator('#attr-AtRegNumbr1').inputValue(), /^MCH-\d{6}$/);
  await page.locator('#attr-AtLastName1').fill('Sabbah');
  await page.locator('#attr-AtBirthDat1').fill('1993-07-01');
  await page.locator('#register-btn').click();
  await page.locator('h1', { hasText: 'Nour Sabbah' }).waitFor({ timeout: 20000 });

  await sim.start();
  let status;
  for (let i = 0; i < 40; i++) {
    await page.locator('#sync-btn:not([disabled])').click();
    await page.locator('#sync-btn:not([disabled])').waitFor();
    status = await page.evaluate(() => window.trackerOffline.status());
    if (status.pending === 0) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.ok(status.failed >= 1, JSON.stringify(status));
  await page.locator('#failed-btn.has').click();
  await page.locator('h1', { hasText: 'Refused by the server' }).waitFor();
  const first = page.locator('li[data-failure]').first();
  await first.waitFor();
  assert.ok((await first.locator('.tracker-offline-reasons li').first().textContent()).length > 10, 'the server\'s reason is shown');
  await screenshot(page, 'failures');

  // Retry: sent again, refused again for the same reason; the screen follows.
  await first.getByRole('button', { name: 'Retry' }).click();
  status = await waitForStatus(page, (s) => s.pending === 0 && s.failed === status.failed);
  await page.waitForFunction((n) => document.querySelectorAll('li[data-failure]').length === n, status.failed);

  // Discard asks first; Escape keeps it.
  await page.locator('li[data-failure]').first().getByRole('button', { name: 'Discard' }).click();
  await page.locator('#confirm[open]').waitFor();
  await screenshot(page, 'discard-confirm');
  await page.keyboard.press('Escape');
  await page.locator('#confirm[open]').waitFor({ state: 'detached' });
  assert.equal((await page.evaluate(() => window.trackerOffline.status())).failed, status.failed);
  for (let left = status.failed; left > 0; left--) {
    await page.locator('li[data-failure]').first().getByRole('button', { name: 'Discard' }).click();
    await page.locator('#confirm-ok').click();
    await waitForStatus(page, (s) => s.failed === left - 1);
    if (left > 1) await page.waitForFunction((n) => document.querySelectorAll('li[data-failure]').length === n, left - 1);
  }
  await page.locator('text=Nothing was refused.').waitFor();
  await waitForStatus(page, (s) => s.failed === 0);

  // The same screens read right to left in Arabic.
  await page.locator('#lang-btn').click();
  assert.equal(await page.evaluate(() => document.documentElement.dir), 'rtl');
  await page.locator('a.button[href="#/list"]').click();
  await page.locator('#results tbody tr').first().waitFor();
  await screenshot(page, 'arabic-list');
  await context.close();
});
