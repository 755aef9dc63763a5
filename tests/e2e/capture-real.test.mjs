// The real Capture app (dhis2/capture-app, an app-platform build), configured with
// scripts/configure-capture.sh, in Chromium against a real dhis2-sim process (2.41 and
// 2.42) that is killed. Its build never enters this project: set CAPTURE_BUILD to the `build/app`
// folder of a Capture build (www/INTEGRATION.md, "The Capture app", says how one was made here);
// without it this test is skipped, and capture-stand-in.test.mjs covers the loader in CI.
//
// What it checks: with the loader in front, the app boots online through the library's worker
// (the platform's unregister and cache clearing answered by the loader), the whole clinic is
// downloaded and every file of the app kept; with the server killed a reload boots the app again
// to its main page, with the program chosen, the nurse shown and "Offline", no file of the app
// missing; its working list of the program (every org unit she reaches) shows offline the first
// page the server showed, in the same order. Then the browser itself goes offline too
// (navigator.onLine false, as in a clinic with no network at all) and, through the app's own
// screens: a woman is registered (org unit picker, form with the registration number from the
// reserved pool, duplicate check, save), her enrollment dashboard opens with every widget (her
// profile with its labels), her first ANC visit is filled and completed, and a search by last
// name finds a woman of the server and the new one. Nothing of hers is in clear text (the app's
// own databases included). A shift change offline (nurse2 through the library's login) shows
// her at the head of nurse2's working list. Back online the woman, her enrollment and her visit
// reach the server once each, with the UIDs and number given offline, the visit completed, every
// record and value stored by nurse1 though sent in nurse2's session.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEMO, ROOT, Sim } from './lib/sim.mjs';
import { ARTIFACTS, dumpOriginStorage, launch } from './lib/browser.mjs';
import { TARBALL, loginThroughOverlay } from './lib/stand-in.mjs';

const BUILD = process.env.CAPTURE_BUILD;

/** The working list of the program for every org unit she can reach: the National IDs of its first page, in order. */
async function workingList(page) {
  const link = page.getByText('Or see all records accessible to you');
  await page.getByText('Active enrollments').or(link).first().waitFor({ timeout: 30000 });
  if (await link.count()) await link.first().click(); // not when the page kept the list's state
  await page.getByText('Active enrollments').first().waitFor({ timeout: 30000 });
  await page.waitForFunction(() => document.querySelectorAll('table tbody tr td').length > 6, null, { timeout: 30000, polling: 200 });
  return page.evaluate(() => [...document.querySelectorAll('table tbody tr')].map((tr) => tr.querySelectorAll('td')[1]?.innerText.trim()).filter(Boolean));
}

/**
 * Polls `fn` in the page until it resolves truthy. (Playwright's waitForFunction treats the
 * promise an async function returns as a truthy answer and returns at once.)
 */
async function until(page, fn, timeout = 30000) {
  for (const end = Date.now() + timeout; Date.now() < end; await new Promise((r) => setTimeout(r, 250))) {
    if (await page.evaluate(fn)) return;
  }
  throw new Error(`not true within ${timeout} ms: ${fn}`);
}

const PROGRAM = 'PrMchProg01';
const NID = 'AtNationId1';
const WOMAN = { nationalId: '912345678', first: 'Fatima', last: 'Qawasmeh', dob: '1995-03-04', lmp: '2026-10-01', phone: '0599123456' };

/** Fills the form's fields `inputs` in order with `values` (null: left as it is). */
async function fillForm(page, inputs, values) {
  for (const [i, value] of values.entries()) {
    if (value === null) continue;
    await inputs.nth(i).fill(value);
    // A date field opens its calendar: close it the way a click outside does.
    const backdrop = page.locator('#dhis2-portal-root .backdrop');
    if (await backdrop.count()) await backdrop.first().click({ position: { x: 5, y: 5 } });
    await inputs.nth(i).evaluate((el) => el.blur());
  }
}

/** Registers WOMAN through the app's screens; answers the registration number the form was given. */
async function registerOffline(page) {
  await page.getByText('Create new person').first().click();
  await page.getByText('Choose an organisation unit').first().click();
  await page.getByText(DEMO.clinic.name).first().click();
  await page.getByRole('button', { name: 'Save person' }).waitFor({ timeout: 30000 });
  const inputs = page.locator('input:visible');
  // The form's fields in order: registration date (today), LMP, National ID, first and last
  // name, date of birth, phone, registration number (generated, read-only).
  await page.waitForFunction(() => [...document.querySelectorAll('input')].some((i) => /^MCH-/.test(i.value)), null, { timeout: 30000 });
  await fillForm(page, inputs, [null, WOMAN.lmp, WOMAN.nationalId, WOMAN.first, WOMAN.last, WOMAN.dob, WOMAN.phone]);
  const generated = await inputs.nth(7).inputValue();
  await page.getByRole('button', { name: 'Save person' }).click();
  return generated;
}

const VISIT = { date: '2026-12-05', weight: '62.4', gestation: '9', systolic: '118', haemoglobin: '11.5', remarks: 'Swollen ankles, advised rest' };

/** Records a completed ANC visit for the woman whose dashboard is open, through the app's event form. */
async function recordVisit(page) {
  await page.getByText('New ANC visit event').first().click();
  await page.getByRole('button', { name: 'Complete' }).waitFor({ timeout: 30000 });
  // The form's text fields in order: visit date, weight, gestational age, systolic pressure,
  // haemoglobin, next visit date, remarks (danger signs are radio buttons).
  const inputs = page.locator('input[type=text]:visible');
  await fillForm(page, inputs, [VISIT.date, VISIT.weight, VISIT.gestation, VISIT.systolic, VISIT.haemoglobin, null, VISIT.remarks]);
  await page.locator('input[name=DeDangerSg1][value=false]').check();
  await page.getByRole('button', { name: 'Complete' }).click();
  // The stage allows another visit to be scheduled: the app asks; not now.
  await page.getByText('No, cancel').first().click({ timeout: 15000 });
  await page.getByText('1 event').first().waitFor({ timeout: 30000 });
}

/** Searches the program by last name through the app's search screen; answers the text of its results. */
async function searchByLastName(page, lastName) {
  if (!(await page.getByText('Search by attributes').count())) {
    await page.getByRole('button', { name: 'Search' }).first().click();
    await page.getByText('Search for a person in Maternal and Child Health').first().click();
    await page.getByText('Search by attributes').first().click();
  }
  // Search by attributes: first name, last name, date of birth (from, to), phone.
  await page.locator('input[type=text]:visible').nth(1).fill(lastName);
  await page.getByRole('button', { name: 'Search by attributes' }).click();
  const results = page.getByText('Results found in Maternal and Child Health');
  await results.or(page.getByText('No results found')).first().waitFor({ timeout: 30000 });
  return page.evaluate(() => document.body.innerText);
}

/** "Switch user" in the library's status bar, a login, and the app restarted for her. */
async function switchUser(page, nurse) {
  await page.locator('#tracker-offline-switch').click();
  const restarted = page.waitForEvent('load');
  await loginThroughOverlay(page, nurse);
  await restarted;
}

/** The app's main page: its program selector shows the MCH program and its actions are there. */
async function mainPage(page) {
  await page.getByText('Maternal and Child Health').first().waitFor({ timeout: 60000 });
  await page.getByText('Create new person').first().waitFor({ timeout: 60000 });
  assert.ok(!(await page.getByText('could not be loaded').count()), 'the app reported a failed load');
}

for (const version of ['2.41', '2.42']) {
  test(`real Capture app on ${version}: boots through the worker and offline; a woman registered, visited and searched offline with no network, seen by the next nurse, reaches the server once under her nurse`, {
    timeout: 240000,
    skip: BUILD ? false : 'CAPTURE_BUILD is not set (the real app is built outside the project; see www/INTEGRATION.md)',
  }, async () => {
    const configured = join(mkdtempSync(join(tmpdir(), 'capture-configured-')), 'capture');
    execFileSync(join(ROOT, 'scripts', 'configure-capture.sh'), [BUILD, configured, '--package', TARBALL(),
      '--config', JSON.stringify({ idleLockMinutes: 0, title: 'Capture' })]);
    const sim = new Sim({ version, extraArgs: ['--app', `capture=${configured}`, '--tracked-entities', '20', '--faults'] });
    await sim.start();
    const browser = await launch();
    try {
      const page = await (await browser.newContext()).newPage();
      const notes = [];
      page.on('console', (m) => { if (m.text().includes('[tracker-offline]')) notes.push(m.text()); });
      page.on('pageerror', (e) => console.error('[page error]', e.message));
      // Online, nurse2 then nurse1 log in through the library (so both can log in offline).
      const started = Date.now();
      await page.goto(`${sim.url}/capture/`);
      await page.locator('#tracker-offline-overlay').waitFor({ timeout: 30000 });
      const loginShown = Date.now();
      await loginThroughOverlay(page, DEMO.nurse2);
      await mainPage(page);
      const onlineMs = Date.now() - loginShown;
      // She does not open her working list online: offline, her saved lists (per user, never
      // read on this device) are taken as none and the app shows its default list.
      await switchUser(page, DEMO.nurse1);
      await mainPage(page);
      await page.locator('#tracker-offline-user', { hasText: DEMO.nurse1.displayName }).waitFor({ timeout: 30000 });
      assert.ok(notes.some((n) => n.includes('asked to unregister the offline worker')), `the platform's unregister was seen: ${notes}`);
      const listOnline = await workingList(page);
      assert.ok(listOnline.length >= 10 && listOnline.every((id) => /^\d{9}$/.test(id)), JSON.stringify(listOnline));
      // A woman of the server, to be searched for by name offline.
      const admin = { authorization: `Basic ${Buffer.from(`${DEMO.admin.username}:${DEMO.admin.password}`).toString('base64')}` };
      const seeded = (await (await fetch(`${sim.url}/api/tracker/trackedEntities?program=${PROGRAM}&orgUnits=${DEMO.clinic.id}&orgUnitMode=DESCENDANTS&filter=${NID}:eq:${listOnline[3]}&fields=attributes[attribute,value]`, { headers: admin })).json());
      const seededLastName = (seeded.trackedEntities ?? seeded.instances)[0].attributes.find((a) => a.attribute === 'AtLastName1').value;
      await page.evaluate(() => window.trackerOffline.download());
      await until(page, () => window.trackerOffline.status().then((s) => s.pending === 0 && s.lastDownloadAt !== null));
      // Every file of the app is kept (the loader's list), then the server goes.
      const kept = Date.now();
      await until(page, async () => {
        const list = await (await fetch('tracker-offline-files.json')).json();
        return (await (await caches.open('tracker-offline-shell-v1')).keys()).length >= list.files.length;
      }, 120000);
      console.log(`# capture-real ${version}: every app file kept ${Date.now() - kept} ms after the download`);
      await page.screenshot({ path: join(ARTIFACTS, `capture-real-${version}-online.png`) });
      await sim.kill();
      // Offline, none of the app's own files is missing (its fonts included).
      const failedFiles = [];
      page.on('requestfailed', (r) => { if (r.url().startsWith(`${sim.url}/capture/`)) failedFiles.push(r.url()); });

      const reloaded = Date.now();
      await page.reload();
      await mainPage(page);
      const offlineMs = Date.now() - reloaded;
      await page.locator('#tracker-offline-user', { hasText: DEMO.nurse1.displayName }).waitFor({ timeout: 30000 });
      assert.equal(await page.evaluate(() => navigator.serviceWorker.controller?.scriptURL.split('?')[0]), `${sim.url}/capture/sw.js`);
      const listOffline = await workingList(page);
      assert.deepEqual(listOffline, listOnline, 'the working list offline is the server\'s, in its order (newest first)');
      await page.screenshot({ path: join(ARTIFACTS, `capture-real-${version}-offline.png`) });
      console.log(`# capture-real ${version}: page to login form ${loginShown - started} ms, login to main page online ${onlineMs} ms, offline reload to main page ${offlineMs} ms`);

      // From here the clinic has no network at all: the browser itself says offline
      // (navigator.onLine false), so the app's own outbox (redux-offline) would hold its writes,
      // unencrypted, instead of sending them; every write must still reach the library's worker.
      await page.context().setOffline(true);
      assert.equal(await page.evaluate(() => navigator.onLine), true, 'the app is kept sending: the worker answers');

      // A woman registered offline through the app's own screens: org unit, form (the
      // registration number from the reserved pool), duplicate check, save, her dashboard.
      const registered = Date.now();
      const generated = await registerOffline(page);
      assert.match(generated, /^MCH-\d{6}$/, 'the registration number was filled from the reserved pool');
      await page.getByText('Enrollment dashboard').first().waitFor({ timeout: 30000 });
      await page.getByText(WOMAN.phone).first().waitFor({ timeout: 30000 }); // her profile widget
      await page.getByText('Owned by:').first().waitFor({ timeout: 30000 }); // her enrollment widget
      // Her profile's values with their labels (the widget reads the program's attribute names,
      // a read the app never made online).
      await page.getByText('Registration number:').first().waitFor({ timeout: 30000 });
      assert.equal(await page.getByText('could not be loaded').count(), 0, 'every widget of her dashboard loaded');
      const tei = new URL(page.url().replace('#/', '')).searchParams.get('teiId');
      assert.match(tei ?? '', /^[A-Za-z][A-Za-z0-9]{10}$/, page.url());
      const registeredMs = Date.now() - registered;
      await page.screenshot({ path: join(ARTIFACTS, `capture-real-${version}-offline-dashboard.png`) });
      const queued = await page.evaluate(() => window.trackerOffline.status());
      assert.equal(queued.pendingByAuthor.nurse1, 1, JSON.stringify(queued));
      console.log(`# capture-real ${version}: registration offline, form opened to dashboard shown ${registeredMs} ms`);

      // Her first ANC visit, recorded and completed offline through the app's event form.
      const visited = Date.now();
      await recordVisit(page);
      const visitMs = Date.now() - visited;
      await page.getByText('Completed').first().waitFor({ timeout: 30000 });
      await page.getByText(VISIT.weight).first().waitFor({ timeout: 30000 });
      const afterVisit = await page.evaluate(() => window.trackerOffline.status());
      assert.equal(afterVisit.pendingByAuthor.nurse1, 2, `the visit is in the library's outbox: ${JSON.stringify(afterVisit)}`);
      await page.screenshot({ path: join(ARTIFACTS, `capture-real-${version}-offline-visit.png`) });
      console.log(`# capture-real ${version}: visit offline, New event to the completed visit listed ${visitMs} ms`);
      // The visit opens on its own page (it reads the visit's relationships: none, made here).
      const pageErrors = [];
      page.on('pageerror', (e) => pageErrors.push(e.message));
      await page.locator('table tbody tr', { hasText: VISIT.weight }).first().click();
      await page.getByText('Edit event').first().waitFor({ timeout: 30000 });
      await page.getByText(VISIT.remarks).first().waitFor({ timeout: 30000 });
      await page.waitForTimeout(1000);
      assert.deepEqual(pageErrors, [], 'the visit page loaded without an error');

      // Search by name offline: a woman of the server, and the one registered offline.
      const searched = Date.now();
      const found1 = await searchByLastName(page, seededLastName);
      assert.ok(found1.includes(listOnline[3]), `a search for ${seededLastName} finds her offline: ${found1.slice(0, 800)}`);
      const searchMs = Date.now() - searched;
      const found2 = await searchByLastName(page, WOMAN.last);
      assert.ok(found2.includes(WOMAN.nationalId), `a search for ${WOMAN.last} finds the woman registered offline: ${found2.slice(0, 800)}`);
      console.log(`# capture-real ${version}: search by last name offline, menu to results ${searchMs} ms`);

      assert.deepEqual(failedFiles, [], 'every file of the app loads offline');

      // Nothing of hers in clear text, the app's own databases included.
      const dump = await dumpOriginStorage(page);
      for (const secret of [DEMO.nurse1.password, DEMO.nurse1.displayName, WOMAN.nationalId, WOMAN.last, WOMAN.phone, VISIT.remarks]) {
        assert.ok(!dump.includes(secret), `storage holds ${secret}`);
      }

      // A shift change offline: nurse2 logs in with the library's form; the app starts for her,
      // and her working list shows the woman nurse1 registered; nurse1's work waits, kept.
      await switchUser(page, DEMO.nurse2);
      await mainPage(page);
      await page.locator('#tracker-offline-user', { hasText: DEMO.nurse2.displayName }).waitFor({ timeout: 30000 });
      const shift = await page.evaluate(() => window.trackerOffline.status());
      assert.deepEqual([shift.user.mode, shift.pendingByAuthor.nurse1], ['offline', 2], JSON.stringify(shift));
      const listNurse2 = await workingList(page);
      assert.equal(listNurse2[0], WOMAN.nationalId, `the new woman heads nurse2's working list offline: ${listNurse2}`);
      await page.screenshot({ path: join(ARTIFACTS, `capture-real-${version}-offline-nurse2.png`) });

      // Back online (nurse2 still logged in): she and her visit reach the server once, with the
      // UIDs and the number she was given.
      await page.context().setOffline(false);
      await sim.restart();
      await page.locator('#tracker-offline-sync').click();
      // (Sent as the library sends a registration: the woman, then her enrollment, then the visit.)
      const sent = async () => (await (await fetch(`${sim.url}/__sim/requests?method=POST`)).json())
        .filter((r) => JSON.stringify(r.body ?? '').includes(tei));
      for (let i = 0; i < 240 && !((await sent()).length >= 3 && (await page.evaluate(() => window.trackerOffline.status())).pending === 0); i++) {
        await new Promise((r) => setTimeout(r, 500));
      }
      const afterSync = await page.evaluate(() => window.trackerOffline.status());
      assert.deepEqual([afterSync.pending, afterSync.failed], [0, 0], JSON.stringify(afterSync));
      const posts = await sent();
      const womanPosts = posts.filter((r) => (r.body.trackedEntities ?? []).some((t) => t.trackedEntity === tei));
      const enrollmentPosts = posts.filter((r) => (r.body.enrollments ?? []).some((e) => e.trackedEntity === tei));
      const visitPosts = posts.filter((r) => (r.body.events ?? []).some((e) => e.programStage === 'PsAncVisit1'));
      assert.deepEqual([womanPosts.length, enrollmentPosts.length, visitPosts.length, posts.length], [1, 1, 1, 3], `each record POSTed once: ${posts.map((r) => Object.keys(r.body)).join(' | ')}`);
      // Sent under the session of whoever is logged in (nurse2 now), as the outbox sends every
      // author's tracker records by default (flush.rs, FlushScope::All), each record and value
      // naming its author as storedBy: the server keeps nurse1 as who stored her.
      assert.ok(posts.every((r) => r.user === DEMO.nurse2.username), `sent in nurse2's session: ${posts.map((r) => `${r.user} ${r.path}?${r.query}`)}`);
      const found = await (await fetch(`${sim.url}/api/tracker/trackedEntities?program=${PROGRAM}&orgUnits=${DEMO.clinic.id}&orgUnitMode=DESCENDANTS&filter=${NID}:eq:${WOMAN.nationalId}&fields=trackedEntity,storedBy,attributes[attribute,value,storedBy],enrollments[enrollment,status,storedBy,events[event,programStage,status,storedBy,dataValues[dataElement,value,storedBy]]]`, { headers: admin })).json();
      const stored = found.trackedEntities ?? found.instances;
      assert.equal(stored.length, 1, `one woman on the server: ${JSON.stringify(found)}`);
      assert.equal(stored[0].trackedEntity, tei, 'with the UID the app was given offline');
      assert.ok(stored[0].attributes.some((a) => a.value === generated), 'with her registration number');
      const storedBy = [stored[0].storedBy, ...stored[0].attributes.map((a) => a.storedBy), ...stored[0].enrollments.map((e) => e.storedBy)];
      assert.ok(storedBy.every((who) => who === DEMO.nurse1.username), `stored by nurse1, who registered her: ${JSON.stringify(stored[0])}`);
      assert.equal(stored[0].enrollments.length, 1, 'enrolled once');
      const visits = stored[0].enrollments[0].events ?? [];
      assert.equal(visits.length, 1, `one visit: ${JSON.stringify(visits)}`);
      assert.equal(visits[0].status, 'COMPLETED', JSON.stringify(visits[0]));
      const value = (de) => visits[0].dataValues.find((v) => v.dataElement === de)?.value;
      assert.deepEqual([value('DeWeightKg1'), value('DeBpSystol1'), value('DeRemarks01')], [VISIT.weight, VISIT.systolic, VISIT.remarks], JSON.stringify(visits[0]));
      assert.ok([visits[0].storedBy, ...visits[0].dataValues.map((v) => v.storedBy)].every((who) => who === DEMO.nurse1.username), `the visit stored by nurse1: ${JSON.stringify(visits[0])}`);
    } finally {
      await browser.close();
      await sim.kill();
    }
  });
}
