// The real Tracker Capture (dhis2/tracker-capture-app 31.13.x), configured with
// scripts/configure-tracker-capture.mjs, driven through its own UI in Chromium against a real
// dhis2-sim process that is killed and restarted. Its build never enters this project: set
// TRACKER_CAPTURE_BUILD to a build folder (www/INTEGRATION.md says how to make one); without
// it this test is skipped, and the stand-in test (tracker-capture-loader.test.mjs) covers the
// loader in CI.
//
// Offline (sim dead): the app loads after a reload, the org unit and program are selected,
// the working list and search answer from the local copy, a woman is registered (duplicate
// check, generated registration number), her dashboard opens, an ANC visit is created, filled
// value by value and completed; a shift change to another nurse inside the app keeps the
// unsent work. Back online: everything reaches the sim exactly once under its author, and the
// app shows the server's state.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEMO, ROOT, Sim } from './lib/sim.mjs';
import { ARTIFACTS, dumpOriginStorage, launchPersistent } from './lib/browser.mjs';

const BUILD = process.env.TRACKER_CAPTURE_BUILD;
const PROGRAM = 'PrMchProg01';
const WOMAN = { nationalId: '409990017', first: 'Mariam', last: 'Zaytoun', birth: '1995-03-02', phone: '+970590001717' };

async function homeReady(page) {
  await page.locator('#orgUnitTree li a.selected').first().waitFor({ timeout: 60000 });
  await page.locator('.program-select', { hasText: 'Maternal and Child Health' }).first().waitFor({ timeout: 60000 });
}

async function login(page, user) {
  await page.locator('#tracker-offline-username').fill(user.username);
  await page.locator('#tracker-offline-password').fill(user.password);
  await page.locator('#tracker-offline-password').press('Enter');
}

async function status(page) {
  return page.evaluate(() => window.trackerOffline.status());
}

async function until(page, predicate, what, timeoutMs = 60000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const s = await status(page);
    if (predicate(s)) return s;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(s)}`);
    await page.waitForTimeout(300);
  }
}

async function listRows(page) {
  const rows = page.locator('#mainPage table tbody tr:visible');
  await rows.first().waitFor({ timeout: 30000 });
  return rows.allInnerTexts();
}

function field(scope, label) {
  return scope.locator(`table.default-form-table tr:has(td a.wrap-text:text-is("${label}")) input.form-control`).first();
}

async function fillDate(locator, value) {
  await locator.fill(value);
  await locator.press('Escape');
  await locator.blur();
}

test('real Tracker Capture: offline through its own UI, shift change, exactly once on reconnect', {
  skip: BUILD ? false : 'TRACKER_CAPTURE_BUILD is not set (the real app is built outside the project; see www/INTEGRATION.md)',
  timeout: 600000,
}, async () => {
  assert.ok(existsSync(join(BUILD, 'index.html')), `${BUILD} is not a Tracker Capture build`);
  const out = join(mkdtempSync(join(tmpdir(), 'tc-real-')), 'tracker-capture');
  execFileSync('node', [join(ROOT, 'scripts', 'configure-tracker-capture.mjs'), BUILD, out,
    '--package', join(ROOT, 'target', 'npm', 'package'), '--config', JSON.stringify({ idleLockMinutes: 0 })]);

  const sim = new Sim({ extraArgs: ['--app', `tracker-capture=${out}`, '--tracked-entities', '40', '--faults'] });
  await sim.start();
  const context = await launchPersistent(mkdtempSync(join(tmpdir(), 'tc-real-profile-')));
  const page = context.pages()[0] ?? (await context.newPage());
  await page.setViewportSize({ width: 1366, height: 900 });
  const appErrors = [];
  page.on('pageerror', (e) => appErrors.push(e.message));
  page.on('dialog', (d) => d.accept());
  const network = [];
  page.on('requestfailed', (r) => network.push(`failed ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
  page.on('response', async (r) => {
    const m = r.request().method();
    if (m !== 'GET' && r.url().includes('/api/')) network.push(`${m} ${r.url()} ${(r.request().postData() ?? '').slice(0, 300)} -> ${r.status()} ${(await r.text().catch(() => '')).slice(0, 300)}`);
    if (m === 'GET' && /\/api\/(trackedEntityInstances\/\w+|enrollments|events)/.test(r.url()) && !r.url().includes('query.json')) network.push(`TEI ${r.url()} -> ${(await r.text().catch(() => '')).slice(0, 4000)}`);
  });
  page.on('response', (r) => { if (r.status() >= 400) network.push(`${r.status()} ${r.request().method()} ${r.url()} ${r.headers()['x-tracker-offline'] ?? ''}`); });
  const shot = (name) => page.screenshot({ path: join(ARTIFACTS, `tc-real-${name}.png`) });
  const app = `${sim.url}/tracker-capture/`;
  try {
    // Online: nurse2 then nurse1 log in through the library (so both can log in offline later).
    await page.goto(app);
    await page.locator('#tracker-offline-overlay').waitFor({ timeout: 30000 });
    // Before a login through the library the app has asked the server for nothing.
    const early = (await (await fetch(`${sim.url}/__sim/requests`)).json())
      .map((r) => r.path).filter((p) => p.startsWith('/api') || p.includes('dhis-web-commons'));
    assert.deepEqual(early, [], 'no server request before the login');
    await login(page, DEMO.nurse2);
    await homeReady(page);
    await page.locator('#tracker-offline-switch').click();
    let restarted = page.waitForEvent('load');
    await login(page, DEMO.nurse1);
    await restarted;
    await page.locator('#tracker-offline-user', { hasText: DEMO.nurse1.displayName }).waitFor({ timeout: 30000 });
    await homeReady(page);
    // The clinic copy (the loader refreshes it after an online login; one download at a time).
    const copy = await page.evaluate(() => window.trackerOffline.download());
    assert.ok(copy.records > 0, JSON.stringify(copy));
    const files = JSON.parse(readFileSync(join(out, 'tracker-offline-files.json'), 'utf8')).files;
    await page.evaluate((urls) => window.trackerOffline.cacheAppFiles(urls), files.map((f) => new URL(f, app).href));
    const onlineRows = await listRows(page);
    assert.ok(onlineRows.length >= 10, `working list online: ${onlineRows.length} rows`);

    // The server dies; the app is reloaded and works from the local copy.
    await sim.kill();
    await page.reload();
    await homeReady(page);
    await page.locator('#tracker-offline-state', { hasText: 'Offline' }).waitFor({ timeout: 30000 });
    assert.deepEqual(await listRows(page), onlineRows, 'working list offline equals online');
    await shot('offline-list');

    // Search by first name, answered from the local copy.
    const firstName = onlineRows[0].split('\t')[1].trim();
    await page.locator('#mainPage ul.nav-pills li a:text-is("Search")').click();
    const nameForm = page.locator('form.search-tei-form:has(label.control-label-search:text-is("First name"))').first();
    await nameForm.locator('.form-group:has(label.control-label-search:text-is("First name")) input.form-control').first().fill(firstName);
    await nameForm.locator('button.btn-tei-search').last().click();
    await page.locator('.modal-dialog').waitFor({ timeout: 30000 });
    assert.match(await page.locator('.modal-dialog').innerText(), new RegExp(firstName));
    await shot('offline-search');
    await page.locator('.modal-dialog button:text-is("Back")').click();

    // Registration offline: duplicate check, generated registration number, then the dashboard.
    await page.locator('#mainPage ul.nav-pills li a:text-is("Register")').click();
    const form = page.locator('#mainPage');
    const regNumber = field(form, 'Registration number');
    await regNumber.waitFor({ timeout: 30000 });
    await page.waitForFunction(() => [...document.querySelectorAll('table.default-form-table tr')]
      .some((tr) => /Registration number/.test(tr.innerText) && tr.querySelector('input.form-control')?.value), null, { timeout: 30000 });
    const generated = await regNumber.inputValue();
    await field(form, 'National ID').fill(WOMAN.nationalId);
    await field(form, 'First name').fill(WOMAN.first);
    await field(form, 'Last name').fill(WOMAN.last);
    await fillDate(field(form, 'Date of birth'), WOMAN.birth);
    await field(form, 'Phone number').fill(WOMAN.phone);
    await shot('offline-register');
    await page.locator('button:has-text("Save and continue")').click();
    await page.waitForURL(/#\/dashboard\?tei=/, { timeout: 60000 });
    const tei = new URL(page.url().replace('#/', '')).searchParams.get('tei');
    await page.locator('#profile').waitFor({ timeout: 60000 });
    await page.waitForFunction((last) => document.body.innerText.includes(last) || [...document.querySelectorAll('#profile input')].some((i) => i.value === last), WOMAN.last, { timeout: 30000 });

    // An ANC visit: created, filled value by value, completed.
    // The widget is ready once it has listed her (no) events.
    await page.locator('#dataentry', { hasText: 'No event exists' }).waitFor({ timeout: 30000 });
    await page.locator('#dataentry a.disable-link-effects[title="Add new"]:visible').first().click();
    const modal = page.locator('.modal-dialog');
    await modal.waitFor({ timeout: 30000 });
    const stagePicker = modal.locator('.ui-select-container .select2-choice');
    if (await stagePicker.count()) {
      await stagePicker.first().click();
      await page.locator('.ui-select-choices-row:has-text("ANC visit")').first().click();
    }
    await modal.locator('.modal-footer button:has-text("Save")').click();
    await modal.waitFor({ state: 'detached', timeout: 30000 });
    const entry = page.locator('#dataentry');
    const weight = entry.locator('table.default-form-table tr:has(td a.wrap-text:has-text("Weight (kg)")) input[name=foo]:visible').first();
    await weight.waitFor({ timeout: 30000 });
    await weight.fill('63.5');
    await weight.blur();
    const systolic = entry.locator('table.default-form-table tr:has(td a.wrap-text:has-text("Systolic blood pressure")) input[name=foo]:visible').first();
    await systolic.fill('118');
    await systolic.blur();
    const remarks = entry.locator('table.default-form-table tr:has(td a.wrap-text:has-text("Remarks")) input[name=foo]:visible').first();
    await remarks.fill('Seen offline');
    await remarks.blur();
    await page.waitForTimeout(500);
    await entry.locator('a.btn:visible:text-is("Complete")').click();
    await page.locator('.modal-footer button:text-is("Complete")').click();
    await page.waitForTimeout(1000);
    await shot('offline-event-completed');
    const afterVisit = await until(page, (s) => (s.pendingByAuthor?.nurse1 ?? 0) > 0, 'nurse1 work queued');
    assert.equal(afterVisit.failed, 0);

    // Tracker Capture offers to schedule the next visit; not now.
    const schedule = page.locator('.modal-dialog button:has-text("Cancel")');
    if (await schedule.isVisible()) await schedule.click();

    // Shift change inside the app, offline: nurse1 logs out with the app's own header bar link,
    // nurse2 logs in offline; nurse1's unsent work stays.
    await page.locator('#header div[size="32"]').first().click();
    restarted = page.waitForEvent('load');
    await page.locator('#header a[href$="/dhis-web-commons-security/logout.action"]').click();
    await restarted;
    await page.locator('#tracker-offline-overlay').waitFor({ timeout: 30000 });
    assert.equal((await status(page)).user, null, 'logged out');
    await login(page, DEMO.nurse2);
    await page.locator('#tracker-offline-user', { hasText: DEMO.nurse2.displayName }).waitFor({ timeout: 30000 });
    await homeReady(page);
    await shot('offline-shift-change');
    const shift = await status(page);
    assert.equal(shift.user.mode, 'offline');
    assert.equal(shift.pendingByAuthor.nurse1, afterVisit.pendingByAuthor.nurse1, 'nurse1 work kept across the shift change');
    assert.ok((await listRows(page)).some((r) => r.includes(WOMAN.nationalId)), 'the new registration is in nurse2\'s working list');

    // Nothing readable on the device: the woman, the nurses, the passwords, the credential.
    const dump = await dumpOriginStorage(page);
    for (const secret of [WOMAN.nationalId, WOMAN.last, WOMAN.phone, DEMO.nurse1.displayName, DEMO.nurse2.displayName,
      DEMO.nurse1.password, DEMO.nurse2.password, Buffer.from(`${DEMO.nurse1.username}:${DEMO.nurse1.password}`).toString('base64')]) {
      const at = dump.indexOf(secret);
      assert.ok(at < 0, `device storage holds ${secret}: …${dump.slice(Math.max(0, at - 300), at + 100)}…`);
    }

    // Back online: the outbox reaches the sim exactly once, under each author.
    await sim.restart();
    await page.locator('#tracker-offline-sync').click();
    const done = await until(page, (s) => s.pending === 0, 'the outbox to empty', 120000);
    assert.equal(done.failed, 0, 'nothing refused');
    const log = await (await fetch(`${sim.url}/__sim/requests?method=POST`)).json();
    const posts = log.filter((r) => JSON.stringify(r.body ?? '').includes(WOMAN.nationalId));
    assert.equal(posts.length, 1, `the registration was POSTed once: ${posts.map((p) => p.path).join(', ')}`);
    const admin = { authorization: `Basic ${Buffer.from(`${DEMO.admin.username}:${DEMO.admin.password}`).toString('base64')}` };
    const found = await (await fetch(`${sim.url}/api/trackedEntityInstances.json?ou=${DEMO.clinic.id}&ouMode=DESCENDANTS&program=${PROGRAM}&fields=*`, { headers: admin })).json();
    const stored = found.trackedEntityInstances.filter((t) => t.attributes.some((a) => a.value === WOMAN.nationalId));
    assert.equal(stored.length, 1, 'one woman on the server');
    assert.equal(stored[0].trackedEntityInstance, tei, 'with the UID the app was given offline');
    assert.ok(stored[0].attributes.some((a) => a.value === generated), 'with the generated registration number');
    assert.equal(stored[0].enrollments.length, 1);
    const visits = stored[0].enrollments[0].events;
    assert.equal(visits.length, 1, 'one ANC visit');
    assert.equal(visits[0].status, 'COMPLETED');
    const values = Object.fromEntries(visits[0].dataValues.map((d) => [d.dataElement, String(d.value)]));
    assert.ok(Object.values(values).includes('118') && Object.values(values).includes('Seen offline'), JSON.stringify(values));
    assert.equal(visits[0].storedBy, DEMO.nurse1.username, 'stored under the nurse who recorded it');

    // The app now shows the server's state (answered by the sim, not the local copy).
    const fromServer = page.waitForResponse((r) => r.url().includes(`/api/trackedEntityInstances/${tei}`) && r.request().method() === 'GET', { timeout: 60000 });
    await page.goto(`${app}#/dashboard?tei=${tei}&program=${PROGRAM}&ou=${DEMO.clinic.id}`);
    const response = await fromServer;
    assert.equal(response.headers()['x-tracker-offline'], undefined, 'dashboard answered by the server');
    const body = await response.json();
    assert.equal(body.enrollments[0].events[0].status, 'COMPLETED');
    await page.locator('#dataentry').waitFor({ timeout: 30000 });
    await shot('online-dashboard');
  } catch (error) {
    await shot('failure').catch(() => {});
    network.push('scope: ' + await page.evaluate(() => {
      const el = document.querySelector('#dataentry [ng-controller]') ?? document.querySelector('#dataentry');
      const sc = window.angular?.element(el).scope();
      return JSON.stringify({ stages: sc?.programStages?.map((s) => [s.id, s.access, s.repeatable]), sel: sc?.selectedProgram?.programStages?.length, notShowing: sc?.stagesNotShowingInStageTasks, events: sc?.allEventsSorted?.length });
    }).catch((e) => String(e)));
    writeFileSync(join(ARTIFACTS, 'tc-real-page-errors.txt'), [...appErrors, '--- network', ...network].join('\n'));
    throw error;
  } finally {
    await context.close();
    await sim.kill();
  }
});
