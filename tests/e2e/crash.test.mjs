// The browser is killed (SIGKILL) in the middle of a flush and started again on the same
// profile: nothing queued is lost, nothing reaches the server twice.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Sim, DEMO } from './lib/sim.mjs';
import { launchPersistent, openApp, call } from './lib/browser.mjs';
import { registerAndVisit, simGet, simFaults, A } from './lib/tracker-capture.mjs';

const OU = DEMO.clinic.id;

async function killBrowser(context) {
  const cdp = await context.browser()?.newBrowserCDPSession?.().catch(() => null);
  let pid = null;
  if (cdp) {
    const { processInfo } = await cdp.send('SystemInfo.getProcessInfo');
    pid = processInfo.find((p) => p.type === 'browser')?.id ?? null;
  }
  const closed = new Promise((r) => context.once('close', r));
  if (pid) process.kill(pid, 'SIGKILL');
  else await context.close();
  await closed;
}

test('a browser killed mid-flush loses and duplicates nothing', async () => {
  const sim = new Sim({ extraArgs: ['--faults', '--tracked-entities', '5'] });
  await sim.start();
  const profile = mkdtempSync(join(tmpdir(), 'tracker-offline-profile-'));
  let context = await launchPersistent(profile);
  try {
    let page = await openApp(context, sim.url);
    assert.equal((await call(page, 'login', DEMO.nurse1.username, DEMO.nurse1.password)).ok, true);
    await page.evaluate(() => window.trackerOffline.download());
    await sim.kill();
    const women = [];
    for (let i = 0; i < 5; i++) women.push(await registerAndVisit(page, { nid: `49400000${i}`, first: `Crash${i}`, last: 'Test', ou: OU }));
    assert.equal((await call(page, 'status')).value.pending, 35);

    // The server comes back slow; a flush starts and the browser dies in the middle of it.
    await sim.start();
    await simFaults(sim, [{ path: '/api', method: 'POST', latencyMs: 1500 }]);
    page.evaluate(() => window.trackerOffline.sync()).catch(() => {});
    await new Promise((r) => setTimeout(r, 2200));
    const log = await (await fetch(`${sim.url}/__sim/requests?method=POST`)).json();
    assert.ok(log.length >= 1, 'the flush had started');
    await killBrowser(context);

    // Same profile again: the queued work is still there and goes out once.
    await fetch(`${sim.url}/__sim/faults`, { method: 'DELETE' });
    context = await launchPersistent(profile);
    page = await openApp(context, sim.url);
    const login = await call(page, 'login', DEMO.nurse1.username, DEMO.nurse1.password);
    assert.equal(login.ok, true, JSON.stringify(login));
    let report;
    for (let i = 0; i < 30; i++) {
      report = (await call(page, 'sync')).value;
      if (report?.remaining === 0 && !report.stopped) break;
      await new Promise((r) => setTimeout(r, 300));
    }
    assert.equal(report.remaining, 0, JSON.stringify(report));
    assert.equal((await call(page, 'status')).value.failed, 0);
    for (let i = 0; i < women.length; i++) {
      const found = await simGet(sim, `/api/trackedEntityInstances/query.json?ou=${OU}&program=PrMchProg01&attribute=${A.nid}:EQ:49400000${i}`);
      assert.equal(found.body.rows.length, 1, `woman ${i} exactly once`);
      const tei = await simGet(sim, `/api/trackedEntityInstances/${women[i].tei}.json?fields=*`);
      assert.equal(tei.body.enrollments.length, 1);
      assert.equal(tei.body.enrollments[0].events.length, 1);
      assert.equal(tei.body.enrollments[0].events[0].dataValues.length, 3);
    }
  } finally {
    await context.close().catch(() => {});
    await sim.kill();
  }
});
