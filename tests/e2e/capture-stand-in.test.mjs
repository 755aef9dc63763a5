// The Capture app's stand-in (tests/e2e/fixtures/capture-like), configured like Tracker Capture
// and served by dhis2-sim 2.41 and 2.42 at `/capture/` (issue 14). What it proves, in real
// Chromium against a real sim process that is killed and restarted:
// - the app platform's start-up unregisters the page's service worker and clears the origin's
//   caches; the loader keeps the library's worker registered (the call answers false; any
//   other is unregistered) and its caches; so a reload with the server gone still loads the
//   app, through the worker; the platform's question for the worker's clients is answered at
//   once (it waits 2 s for it at every start);
// - the Capture app's reads with the API version in the path (`/api/41/...`) are answered from
//   the local copy offline;
// - a registration posted as the Capture app posts it (`POST /api/<v>/tracker?async=false`,
//   nested, the enrollment without a UID) is answered offline with the UIDs the app reads from
//   the bundle report, is in the working list at once, and reaches the server once on
//   reconnect, with the enrollment UID the app was given.
// - made into an App Management zip by the same command, it installs under the Capture app's own
//   key (`capture`, not Tracker Capture's), is served where DHIS2 serves Capture
//   (`/dhis-web-capture/`) and runs offline from there.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEMO, ROOT, Sim } from './lib/sim.mjs';
import { launch, syncUntilDone } from './lib/browser.mjs';
import { TARBALL, configure, loginThroughOverlay } from './lib/stand-in.mjs';
import { simGet } from './lib/tracker-capture.mjs';

const APP = '/capture/';
let browser;
let configured;

before(async () => {
  configured = configure(join(ROOT, 'tests', 'e2e', 'fixtures', 'capture-like'), 'capture');
  browser = await launch();
});

after(async () => {
  await browser?.close();
});

async function appResults(page) {
  await page.waitForFunction(() => window.appResults !== undefined, null, { timeout: 30000, polling: 100 });
  return page.evaluate(() => window.appResults);
}

/** The registration as the Capture app posts it (RegistrationDataEntry: TEI, enrollment and first visit, nested). */
function registration(tei, event, nid, first) {
  return {
    trackedEntities: [{
      trackedEntity: tei, orgUnit: 'OuBaniNaim1', trackedEntityType: 'TetPerson01',
      attributes: [{ attribute: 'AtNationId1', value: nid }, { attribute: 'AtFirstNam1', value: first },
        { attribute: 'AtLastName1', value: 'Qawasmeh' }, { attribute: 'AtBirthDat1', value: '1995-04-02' }],
      enrollments: [{
        program: 'PrMchProg01', status: 'ACTIVE', orgUnit: 'OuBaniNaim1', occurredAt: '2026-12-01', enrolledAt: '2026-12-01', attributes: [],
        events: [{ event, programStage: 'PsAncVisit1', program: 'PrMchProg01', orgUnit: 'OuBaniNaim1', status: 'ACTIVE',
          occurredAt: '2026-12-01', dataValues: [{ dataElement: 'DeWeightKg1', value: '61' }] }],
      }],
    }],
  };
}

for (const version of ['2.41', '2.42']) {
  test(`Capture stand-in on ${version}: the worker survives the app platform, reads and a registration work offline, sent once`, { timeout: 170000 }, async () => {
    const sim = new Sim({ version, extraArgs: ['--app', `capture=${configured}`, '--tracked-entities', '5'] });
    await sim.start();
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      page.on('pageerror', (e) => console.error('[page error]', e.message));
      await page.goto(`${sim.url}${APP}`);
      await page.locator('#tracker-offline-overlay').waitFor({ timeout: 30000 });
      await loginThroughOverlay(page, DEMO.nurse1);
      const online = await appResults(page);
      assert.equal(online.me.status, 200, JSON.stringify(online.me));
      assert.equal(online.me.body.firstName, 'Amal');
      assert.equal(online.unregistered, false, 'the platform\'s unregister left the library\'s worker');
      assert.deepEqual(online.cachesCleared, [], 'the platform\'s cache clearing left the library\'s caches');
      assert.deepEqual(online.clientsInfo, { clientsCount: 1 }, 'the worker answered the platform\'s question at once');
      await page.evaluate(() => window.trackerOffline.download());

      // Another registration of the origin is unregistered as asked (the guard keeps ours only).
      const other = await page.evaluate(async () => {
        const registration = await navigator.serviceWorker.register('/sw.js', { scope: '/capture/other/' });
        const unregistered = await registration.unregister();
        const left = (await navigator.serviceWorker.getRegistrations()).map((r) => r.scope);
        return { unregistered, left };
      });
      assert.equal(other.unregistered, true, JSON.stringify(other));
      assert.deepEqual(other.left, [`${sim.url}${APP}`], JSON.stringify(other));

      // The server is gone; the page is loaded again: the app runs through the worker.
      await sim.kill();
      await page.reload();
      const offline = await appResults(page);
      assert.equal(await page.evaluate(() => navigator.serviceWorker.controller?.scriptURL.split('?')[0]), `${sim.url}${APP}sw.js`);
      assert.deepEqual(offline.clientsInfo, { clientsCount: 1 });
      // Answered by the worker: kept from the online read (`cache`), or made from the local copy.
      for (const [read, by] of [['info', 'cache'], ['me', 'cache'], ['list', 'local']]) {
        assert.equal(offline[read].status, 200, `${read}: ${JSON.stringify(offline[read])}`);
        assert.equal(offline[read].local, by, `${read} answered by the worker`);
      }
      const uidsOf = (list) => list.body.trackedEntities.map((t) => t.trackedEntity).sort();
      assert.ok(uidsOf(online.list).length > 0, JSON.stringify(online.list));
      assert.deepEqual(uidsOf(offline.list), uidsOf(online.list), 'the working list offline is the server\'s');

      const tei = version === '2.41' ? 'CaptureTe41' : 'CaptureTe42';
      const event = version === '2.41' ? 'CaptureEv41' : 'CaptureEv42';
      const nid = version === '2.41' ? '409551141' : '409551142';
      const posted = await page.evaluate(async (body) => {
        const r = await fetch(`${window.captureApi}/tracker?async=false`, {
          method: 'POST', headers: { 'Content-Type': 'application/json', 'X-Requested-With': 'XMLHttpRequest' }, body: JSON.stringify(body),
        });
        return { status: r.status, local: r.headers.get('x-tracker-offline'), body: await r.json() };
      }, registration(tei, event, nid, 'Sawsan'));
      assert.equal(posted.status, 200, JSON.stringify(posted));
      assert.equal(posted.local, 'queued');
      const types = posted.body.bundleReport.typeReportMap;
      assert.equal(types.TRACKED_ENTITY.objectReports[0].uid, tei, JSON.stringify(posted.body));
      const enrollment = types.ENROLLMENT.objectReports[0]?.uid;
      assert.match(enrollment ?? '', /^[A-Za-z][A-Za-z0-9]{10}$/, `the enrollment's UID the app reads: ${JSON.stringify(types.ENROLLMENT)}`);

      const listed = await page.evaluate(async () => (await (await fetch(`${window.captureApi}/tracker/trackedEntities?program=PrMchProg01&orgUnits=OuBaniNaim1&orgUnitMode=SELECTED&page=1&pageSize=15&fields=trackedEntity,attributes[attribute,value]`)).json()));
      assert.ok(listed.trackedEntities.some((t) => t.trackedEntity === tei), 'she is in the working list offline');
      const dashboard = await page.evaluate(async ({ tei }) => {
        const r = await fetch(`${window.captureApi}/tracker/trackedEntities/${tei}?program=PrMchProg01&fields=enrollments[*,!attributes],attributes,inactive`);
        return { status: r.status, body: await r.json() };
      }, { tei });
      assert.equal(dashboard.status, 200, JSON.stringify(dashboard));
      assert.equal(dashboard.body.enrollments[0].enrollment, enrollment, JSON.stringify(dashboard.body));
      assert.equal(dashboard.body.enrollments[0].events[0].event, event);

      // Back online: sent once, under her, with the UIDs the app was given.
      await sim.restart();
      const report = await syncUntilDone(page);
      assert.equal(report?.remaining, 0, JSON.stringify(report));
      const onServer = await simGet(sim, `/api/tracker/trackedEntities?orgUnits=OuBaniNaim1&program=PrMchProg01&filter=AtNationId1:EQ:${nid}&fields=trackedEntity,enrollments[enrollment,events[event,dataValues]]`);
      const found = onServer.body.trackedEntities ?? onServer.body.instances;
      assert.equal(found.length, 1, JSON.stringify(onServer.body));
      assert.equal(found[0].trackedEntity, tei);
      assert.deepEqual(found[0].enrollments.map((e) => e.enrollment), [enrollment]);
      assert.deepEqual(found[0].enrollments[0].events.map((e) => e.event), [event]);
      const creates = await simGet(sim, '/api/tracker/trackedEntities?orgUnits=OuBaniNaim1&program=PrMchProg01&fields=trackedEntity&pageSize=100');
      assert.equal((creates.body.trackedEntities ?? creates.body.instances).filter((t) => t.trackedEntity === tei).length, 1);
    } finally {
      await context.close();
      await sim.kill();
    }
  });
}

test('Capture stand-in as an App Management zip (2.41): installed under its own key, served at /dhis-web-capture/, runs offline there', { timeout: 120000 }, async () => {
  const zip = join(mkdtempSync(join(tmpdir(), 'capture-zip-')), 'capture.zip');
  execFileSync('node', [join(ROOT, 'scripts', 'configure-tracker-capture.mjs'), join(ROOT, 'tests', 'e2e', 'fixtures', 'capture-like'),
    '--zip', zip, '--package', TARBALL(), '--config', JSON.stringify({ idleLockMinutes: 0, title: 'Capture' })]);
  const sim = new Sim({ version: '2.41', extraArgs: ['--tracked-entities', '5'] });
  await sim.start();
  const context = await browser.newContext();
  try {
    const form = new FormData();
    form.append('file', new Blob([readFileSync(zip)], { type: 'application/zip' }), 'capture.zip');
    const admin = `Basic ${Buffer.from(`${DEMO.admin.username}:${DEMO.admin.password}`).toString('base64')}`;
    const installed = await fetch(`${sim.url}/api/apps`, { method: 'POST', headers: { Authorization: admin }, body: form });
    assert.equal(installed.status, 204, await installed.text());
    const apps = await simGet(sim, '/api/apps');
    assert.deepEqual(apps.body.map((a) => [a.key, a.name]), [['capture', 'Capture (offline)']], JSON.stringify(apps.body));

    const page = await context.newPage();
    page.on('pageerror', (e) => console.error('[page error]', e.message));
    // Installed apps are behind DHIS2's login (a server session first, as the sim's login page opens one).
    await page.goto(`${sim.url}/dhis-web-commons/security/login.action`);
    const basic = `Basic ${Buffer.from(`${DEMO.nurse1.username}:${DEMO.nurse1.password}`).toString('base64')}`;
    assert.equal(await page.evaluate(async (authorization) => (await fetch('/api/me', { headers: { Authorization: authorization } })).status, basic), 200);
    await page.goto(`${sim.url}/dhis-web-capture/`);
    await page.locator('#tracker-offline-overlay').waitFor({ timeout: 30000 });
    await loginThroughOverlay(page, DEMO.nurse1);
    const online = await appResults(page);
    assert.equal(online.me.body?.firstName, 'Amal', JSON.stringify(online.me));
    await page.evaluate(() => window.trackerOffline.download());
    await sim.kill();
    await page.reload();
    const offline = await appResults(page);
    assert.equal(await page.evaluate(() => navigator.serviceWorker.controller?.scriptURL.split('?')[0]), `${sim.url}/dhis-web-capture/sw.js`);
    assert.equal(offline.me.status, 200, JSON.stringify(offline.me));
    assert.equal(offline.list.local, 'local', 'the working list answered from the local copy');
  } finally {
    await context.close();
    await sim.kill();
  }
});
