// The outbox end to end against a real dhis2-sim process with fault injection: Tracker
// Capture's registration and an ANC visit made offline reach the server exactly once under
// their author; faults (5xx, commit-then-drop, latency) lose and duplicate nothing; a refused
// record is kept with the server's reasons while unrelated work goes on; two tabs and the
// service worker flushing at once send each record once.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Sim, DEMO } from './lib/sim.mjs';
import { launch, openApp, call, dumpOriginStorage, ARTIFACTS, syncUntilDone, onlineThenOffline as goOffline } from './lib/browser.mjs';
import { registerAndVisit, simGet, simFaults, simRequests, A, DE } from './lib/tracker-capture.mjs';

const OU = DEMO.clinic.id;
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('registration and an ANC visit offline reach the server once, under their author', async () => {
  const sim = new Sim({ extraArgs: ['--faults', '--tracked-entities', '10'] });
  await sim.start();
  try {
    const { context, page } = await goOffline(browser, sim);
    const ids = await registerAndVisit(page, { nid: '498765432', first: 'Yasmin', last: 'Odeh', ou: OU });
    let status = (await call(page, 'status')).value;
    assert.equal(status.pending, 7, JSON.stringify(status));
    assert.equal(status.pendingByAuthor.nurse1, 7);

    // Reload while offline: the registration is there, answered from the local copy.
    await page.reload();
    await page.waitForFunction(() => window.trackerOffline !== undefined, null, { polling: 100 });
    const dash = await page.evaluate(async (tei) => (await fetch(`/api/trackedEntityInstances/${tei}.json?program=PrMchProg01&fields=*`)).json(), ids.tei);
    assert.equal(dash.enrollments[0].events[0].status, 'COMPLETED');
    assert.equal(dash.enrollments[0].events[0].dataValues.length, 3);
    await page.screenshot({ path: join(ARTIFACTS, 'outbox-offline-dashboard.png') });
    const raw = await dumpOriginStorage(page);
    // Payload values, the password, and the Basic credential the flush sends (base64 of user:password).
    const basic = Buffer.from(`${DEMO.nurse1.username}:${DEMO.nurse1.password}`).toString('base64');
    for (const needle of ['498765432', 'Yasmin', '"64.5"', basic, DEMO.nurse1.password]) {
      assert.equal(raw.includes(needle), false, `${needle} in clear`);
    }

    // The server comes back: the outbox is sent.
    await sim.start();
    const report = await syncUntilDone(page);
    assert.equal(report.remaining, 0, JSON.stringify(report));
    status = (await call(page, 'status')).value;
    assert.equal(status.pending, 0);
    assert.equal(status.failed, 0);

    const tei = await simGet(sim, `/api/trackedEntityInstances/${ids.tei}.json?fields=*`);
    assert.equal(tei.status, 200, JSON.stringify(tei.body));
    const event = tei.body.enrollments[0].events.find((e) => e.event === ids.event);
    assert.equal(event.status, 'COMPLETED');
    assert.equal(event.storedBy, 'nurse1');
    assert.deepEqual(Object.fromEntries(event.dataValues.map((v) => [v.dataElement, v.value])), { [DE.weight]: '64.5', [DE.weeks]: '12', [DE.bp]: '118' });
    const found = await simGet(sim, `/api/trackedEntityInstances/query.json?ou=${OU}&program=PrMchProg01&attribute=${A.nid}:EQ:498765432`);
    assert.equal(found.body.rows.length, 1, 'one woman, not two');
    const log = await simRequests(sim, '?method=POST');
    const teiPosts = log.filter((r) => r.path.includes('trackedEntityInstances') && JSON.stringify(r.body).includes(ids.tei));
    assert.equal(teiPosts.length, 1, JSON.stringify(teiPosts.map((r) => r.path)));
    await context.close();
  } finally {
    await sim.kill();
  }
});

test('5xx, lost answers after commit and latency lose and duplicate nothing', async () => {
  const sim = new Sim({ extraArgs: ['--faults', '--tracked-entities', '5'] });
  await sim.start();
  try {
    const { context, page } = await goOffline(browser, sim);
    const women = [];
    for (let i = 0; i < 6; i++) {
      women.push(await registerAndVisit(page, { nid: `49100000${i}`, first: `Woman${i}`, last: 'Test', ou: OU }));
    }
    await sim.start();
    await simFaults(sim, [
      // Certain hits first (the random ones below may meet few requests), then random ones.
      { path: '/api/trackedEntityInstances', method: 'POST', status: 503, times: 1 },
      { path: '/api/events', method: 'POST', commitThenDrop: true, times: 1 },
      { path: '/api/trackedEntityInstances', method: 'POST', status: 503, rate: 0.2 },
      { path: '/api/enrollments', method: 'POST', status: 502, rate: 0.2 },
      { path: '/api/events', method: 'POST', status: 503, rate: 0.2 },
      { path: '/api/trackedEntityInstances', method: 'POST', commitThenDrop: true, rate: 0.1 },
      { path: '/api/events', method: 'POST', commitThenDrop: true, rate: 0.1 },
      { path: '/api', latencyMs: { min: 5, max: 120 } },
    ]);
    const report = await syncUntilDone(page, 60);
    assert.equal(report.remaining, 0, JSON.stringify(report));
    // The faults did happen (a test that met none would prove nothing).
    const faults = await (await fetch(`${sim.url}/__sim/faults`)).json();
    const hits = faults.hits.slice(0, 7).reduce((a, b) => a + b, 0);
    assert.ok(faults.hits[0] === 1 && faults.hits[1] === 1 && hits >= 2, `faults hit ${JSON.stringify(faults.hits)}`);
    await fetch(`${sim.url}/__sim/faults`, { method: 'DELETE' });
    for (let i = 0; i < women.length; i++) {
      const found = await simGet(sim, `/api/trackedEntityInstances/query.json?ou=${OU}&program=PrMchProg01&attribute=${A.nid}:EQ:49100000${i}`);
      assert.equal(found.body.rows.length, 1, `woman ${i} exactly once`);
      const tei = await simGet(sim, `/api/trackedEntityInstances/${women[i].tei}.json?fields=*`);
      assert.equal(tei.body.enrollments.length, 1, `woman ${i}: one enrollment`);
      assert.equal(tei.body.enrollments[0].events.length, 1, `woman ${i}: one visit`);
      assert.equal(tei.body.enrollments[0].events[0].status, 'COMPLETED');
    }
    await context.close();
  } finally {
    await sim.kill();
  }
});

test('a refused registration is kept with the server reasons; unrelated work is delivered', async () => {
  const sim = new Sim({ extraArgs: ['--faults', '--tracked-entities', '5'] });
  await sim.start();
  try {
    const existing = await simGet(sim, `/api/trackedEntityInstances/query.json?ou=${OU}&program=PrMchProg01&pageSize=1`);
    const takenNid = existing.body.rows[0][existing.body.headers.findIndex((h) => h.name === A.nid)];
    const { context, page } = await goOffline(browser, sim);
    const bad = await registerAndVisit(page, { nid: takenNid, first: 'Dup', last: 'Licate', ou: OU });
    const good = await registerAndVisit(page, { nid: '492222222', first: 'Salma', last: 'Awad', ou: OU });
    await sim.start();
    // Sent by this call, or already by the worker's own retry (whichever ran first).
    await call(page, 'sync');
    const afterSync = (await call(page, 'status')).value;
    assert.ok(afterSync.failed >= 1 && afterSync.pending === 0, JSON.stringify(afterSync));
    const failures = (await call(page, 'failures')).value;
    const teiFailure = failures.find((f) => f.records.includes(bad.tei));
    assert.ok(teiFailure, JSON.stringify(failures));
    assert.ok(teiFailure.reasons.join(' ').length > 10, JSON.stringify(teiFailure));
    assert.ok(failures.some((f) => f.records.includes(bad.event)), 'the visit of the refused woman waits as a failure');
    assert.equal((await simGet(sim, `/api/trackedEntityInstances/${good.tei}.json`)).status, 200);
    assert.notEqual((await simGet(sim, `/api/trackedEntityInstances/${bad.tei}.json`)).status, 200);
    const status = (await call(page, 'status')).value;
    assert.equal(status.failed, failures.length);
    // Retry keeps failing for the same reason; discard drops it.
    await call(page, 'retry', teiFailure.id);
    await call(page, 'sync');
    const again = (await call(page, 'failures')).value;
    assert.ok(again.some((f) => f.records.includes(bad.tei)));
    for (const f of again) assert.equal((await call(page, 'discard', f.id)).ok, true);
    assert.equal((await call(page, 'status')).value.failed, 0);
    await context.close();
  } finally {
    await sim.kill();
  }
});

test('two tabs and the service worker flushing at once send each record once', async () => {
  const sim = new Sim({ extraArgs: ['--faults', '--tracked-entities', '5'] });
  await sim.start();
  try {
    const { context, page } = await goOffline(browser, sim);
    const women = [];
    for (let i = 0; i < 4; i++) women.push(await registerAndVisit(page, { nid: `49300000${i}`, first: `Tab${i}`, last: 'Race', ou: OU }));
    const second = await openApp(context, sim.url.replace('127.0.0.1', '127.0.0.1'));
    await sim.start();
    await simFaults(sim, [{ path: '/api', latencyMs: { min: 20, max: 80 } }]);
    const cdp = await context.newCDPSession(page);
    const regs = new Map();
    cdp.on('ServiceWorker.workerRegistrationUpdated', ({ registrations }) => registrations.forEach((r) => regs.set(r.scopeURL, r.registrationId)));
    await cdp.send('ServiceWorker.enable');
    for (let i = 0; i < 50 && !regs.has(sim.url + '/'); i++) await new Promise((r) => setTimeout(r, 100));
    const [a, b] = await Promise.all([
      call(page, 'sync'),
      call(second, 'sync'),
      cdp.send('ServiceWorker.dispatchSyncEvent', { origin: sim.url, registrationId: regs.get(sim.url + '/'), tag: 'tracker-offline-outbox', lastChance: false }),
    ]);
    assert.equal(a.ok && b.ok, true, JSON.stringify([a, b]));
    assert.equal((await syncUntilDone(page)).remaining, 0);
    const log = await simRequests(sim, '?method=POST');
    for (const w of women) {
      const posts = log.filter((r) => r.path.endsWith('/trackedEntityInstances') && JSON.stringify(r.body).includes(w.tei));
      assert.equal(posts.length, 1, `${w.tei} sent ${posts.length} times`);
      const eventPosts = log.filter((r) => r.path.endsWith('/events') && JSON.stringify(r.body).includes(w.event));
      assert.equal(eventPosts.length, 1, `${w.event} sent ${eventPosts.length} times`);
    }
    await context.close();
  } finally {
    await sim.kill();
  }
});
