// Sync you can trust, end to end against a real dhis2-sim process (killed and restarted, with
// fault injection): a captive portal answering 200 with HTML leaves the outbox intact; a visit
// value saved while a flush waits for a slow server arrives; two tabs editing one visit offline
// (different fields) both arrive, or (same field) the later is sent and the earlier is shown as a
// conflict that can be put back; the clinic copy is downloaded by the service worker, the one
// writer of the local copy, while the page only asks.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Sim, DEMO } from './lib/sim.mjs';
import { launch, openApp, call, syncUntilDone, onlineThenOffline as goOffline } from './lib/browser.mjs';
import { registerAndVisit, simGet, simFaults, anOpenVisit, ANC, P, DE } from './lib/tracker-capture.mjs';

const OU = DEMO.clinic.id;
const PORTAL = '<!DOCTYPE html><html><body><h1>Clinic WiFi</h1><p>Accept the terms to continue.</p></body></html>';
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/** Tracker Capture's per-value save, from a page (through the service worker). */
async function putValue(page, ids, de, value) {
  return page.evaluate(async ({ ids, de, value, ou, P, ANC }) => {
    const r = await fetch(`/api/events/${ids.event}/${de}`, {
      method: 'PUT',
      headers: { 'Content-Type': 'application/json', 'X-Requested-With': 'XMLHttpRequest' },
      body: JSON.stringify({ event: ids.event, orgUnit: ou, program: P, programStage: ANC, status: 'ACTIVE',
        trackedEntityInstance: ids.tei, dataValues: [{ dataElement: de, value }] }),
    });
    return r.status;
  }, { ids, de, value, ou: OU, P, ANC });
}

async function serverValues(sim, event) {
  const r = await simGet(sim, `/api/events/${event}.json`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return Object.fromEntries(r.body.dataValues.map((v) => [v.dataElement, v.value]));
}

test('a captive portal answering 200 with HTML leaves the outbox intact', async () => {
  const sim = new Sim({ extraArgs: ['--faults', '--tracked-entities', '5'] });
  await sim.start();
  try {
    const { context, page } = await goOffline(browser, sim);
    const ids = await registerAndVisit(page, { nid: '491111111', first: 'Rania', last: 'Saleh', ou: OU });
    const before = (await call(page, 'status')).value.pending;
    assert.ok(before > 0);
    await sim.start();
    await simFaults(sim, [{ path: '/api', status: 200, html: PORTAL }]);
    const report = (await call(page, 'sync')).value;
    assert.equal(report.stopped, 'SERVER_UNREACHABLE', JSON.stringify(report));
    assert.equal(report.sent, 0, JSON.stringify(report));
    assert.equal((await call(page, 'status')).value.pending, before, 'nothing left the outbox');
    await simFaults(sim, []);
    const done = await syncUntilDone(page);
    assert.equal(done.remaining, 0, JSON.stringify(done));
    const tei = await simGet(sim, `/api/trackedEntityInstances/${ids.tei}.json?fields=*`);
    assert.equal(tei.status, 200, 'the registration arrived after the portal');
    assert.equal((await serverValues(sim, ids.event))[DE.weight], '64.5');
    await context.close();
  } finally {
    await sim.kill();
  }
});

test('a visit value saved while a flush waits for a slow server arrives', async () => {
  const sim = new Sim({ extraArgs: ['--faults', '--tracked-entities', '5'] });
  await sim.start();
  try {
    const { context, page } = await goOffline(browser, sim);
    const ids = await registerAndVisit(page, { nid: '492222222', first: 'Huda', last: 'Nasser', ou: OU });
    await sim.start();
    await simFaults(sim, [{ path: '/api', method: 'POST', latencyMs: 1500 }]);
    const flushing = call(page, 'sync');
    await new Promise((r) => setTimeout(r, 400));
    // The flush is waiting for the server: the nurse corrects the weight meanwhile.
    assert.equal(await putValue(page, ids, DE.weight, '66.1'), 200);
    await flushing;
    await simFaults(sim, []);
    const done = await syncUntilDone(page);
    assert.equal(done.remaining, 0, JSON.stringify(done));
    const values = await serverValues(sim, ids.event);
    assert.equal(values[DE.weight], '66.1', JSON.stringify(values));
    assert.equal(values[DE.bp], '118', JSON.stringify(values));
    await context.close();
  } finally {
    await sim.kill();
  }
});

test('two tabs editing one visit offline (different fields) both arrive', async () => {
  const sim = new Sim({ extraArgs: ['--tracked-entities', '5'] });
  await sim.start();
  try {
    const { context, page } = await goOffline(browser, sim);
    const ids = await registerAndVisit(page, { nid: '493333333', first: 'Salma', last: 'Odeh', ou: OU });
    const second = await context.newPage();
    await second.goto(`${sim.url}/index.html`);
    await second.waitForFunction(() => window.trackerOffline !== undefined, null, { timeout: 20000, polling: 100 });
    // Both tabs save at once, each its own field of the same visit.
    const statuses = await Promise.all([putValue(page, ids, DE.weight, '67.0'), putValue(second, ids, DE.bp, '121')]);
    assert.deepEqual(statuses, [200, 200]);
    await sim.start();
    const done = await syncUntilDone(page);
    assert.equal(done.remaining, 0, JSON.stringify(done));
    const values = await serverValues(sim, ids.event);
    assert.equal(values[DE.weight], '67.0', JSON.stringify(values));
    assert.equal(values[DE.bp], '121', JSON.stringify(values));
    await context.close();
  } finally {
    await sim.kill();
  }
});

test('two tabs saving one field of a visit offline: the later value is sent, the earlier is shown and can be put back', async () => {
  const sim = new Sim({ extraArgs: ['--tracked-entities', '5'] });
  await sim.start();
  try {
    const open = await anOpenVisit(sim, OU, { [DE.weight]: '60' });
    const ids = { event: open.event, tei: open.trackedEntity };
    const { context, page } = await goOffline(browser, sim);
    const second = await context.newPage();
    await second.goto(`${sim.url}/index.html`);
    await second.waitForFunction(() => window.trackerOffline !== undefined, null, { timeout: 20000, polling: 100 });
    assert.equal(await putValue(page, ids, DE.weight, '70.1'), 200);
    assert.equal(await putValue(second, ids, DE.weight, '70.2'), 200);
    const conflicts = (await call(page, 'conflicts')).value;
    assert.equal(conflicts.length, 1, JSON.stringify(conflicts));
    const [c] = conflicts;
    assert.deepEqual([c.source, c.field, c.server, c.device], ['window', `dv:${DE.weight}`, '70.1', '70.2']);
    await sim.start();
    assert.equal((await syncUntilDone(page)).remaining, 0);
    assert.equal((await serverValues(sim, ids.event))[DE.weight], '70.2', 'the later value is sent');
    // The nurse decides the first tab was right: its value reaches the server.
    assert.ok((await call(page, 'resolveConflict', c.id, 'server')).ok);
    assert.equal((await syncUntilDone(page)).remaining, 0);
    assert.equal((await serverValues(sim, ids.event))[DE.weight], '70.1');
    assert.deepEqual((await call(page, 'conflicts')).value, []);
    await context.close();
  } finally {
    await sim.kill();
  }
});

test('the page asks the service worker to download: the worker is the one writer of the local copy', async () => {
  const sim = new Sim({ extraArgs: ['--tracked-entities', '30'] });
  await sim.start();
  try {
    const context = await browser.newContext();
    const page = await openApp(context, sim.url);
    assert.ok((await call(page, 'login', 'nurse1', 'Nurse1!clinic')).ok);
    // Requests the page itself makes (answered by the worker or not) are seen here; the
    // worker's own requests are not.
    const fromPage = [];
    page.on('request', (r) => { if (/trackedEntit/.test(r.url())) fromPage.push(r.url()); });
    const { report, progress } = await page.evaluate(async () => {
      const progress = [];
      const report = await window.trackerOffline.download({ pageSize: 5, onProgress: (p) => progress.push(p) });
      return { report, progress };
    });
    assert.ok(report.trackedEntities >= 10 && report.pages >= 2, JSON.stringify(report));
    assert.ok(progress.length >= 2 && progress.at(-1).done === report.trackedEntities, `progress reached the page: ${JSON.stringify(progress)}`);
    assert.deepEqual(fromPage, [], 'the page downloaded nothing itself');
    const status = (await call(page, 'status')).value;
    assert.ok(status.records >= report.trackedEntities && status.lastDownloadAt, JSON.stringify(status));
    await context.close();
  } finally {
    await sim.kill();
  }
});
