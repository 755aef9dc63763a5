// When the network comes back to a server that is struggling, against a real dhis2-sim process
// (killed and restarted) with its overload mode and DHIS2's failed-login lockout: a device that
// was told to wait (503 + Retry-After) sends nothing until then, whatever the nurse does; a
// password the server refuses is sent once, not again (each retry would extend DHIS2's account
// lock), and the work goes after an online login; Background Sync, which the browser fires on
// every device when the network comes back, waits the random trigger delay first.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Sim, DEMO } from './lib/sim.mjs';
import { launch, call, syncUntilDone, onlineThenOffline as goOffline } from './lib/browser.mjs';
import { registerAndVisit, simGet, simRequests } from './lib/tracker-capture.mjs';

const OU = DEMO.clinic.id;
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

async function simAdmin(sim, method, path, body) {
  const r = await fetch(`${sim.url}${path}`, {
    method, headers: { 'Content-Type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const LOCKED = { httpStatus: 'Unauthorized', httpStatusCode: 401, status: 'ERROR', message: 'Account locked' };

/** `app.sync()` until it stops for a reason (the device may be flushing by itself already). */
async function syncUntilStopped(page, attempts = 20) {
  let report;
  for (let i = 0; i < attempts; i++) {
    report = (await call(page, 'sync')).value;
    if (report?.stopped && report.stopped !== 'SERVER_UNREACHABLE') return report;
    await sleep(200);
  }
  return report;
}

const lastSeq = async (sim) => Math.max(0, ...(await simRequests(sim)).map((r) => r.seq));


test('a busy server (503 + Retry-After) gets nothing more from the device until the time it asked for', async () => {
  const sim = new Sim({ extraArgs: ['--faults', '--tracked-entities', '5'] });
  await sim.start();
  try {
    const { context, page } = await goOffline(browser, sim);
    const ids = await registerAndVisit(page, { nid: '495555555', first: 'Nour', last: 'Hamdan', ou: OU });
    await sim.start();
    // The region comes back at once: the server's proxy refuses everything for 4 s.
    await simAdmin(sim, 'PUT', '/__sim/load', { maxInflight: 0, retryAfterSecs: 4 });
    const since = await lastSeq(sim);
    const first = (await call(page, 'sync')).value;
    assert.equal(first.stopped, 'SERVER_BUSY', JSON.stringify(first));
    assert.ok(first.retryAfterMs > 3000 && first.retryAfterMs <= 4000, JSON.stringify(first));
    const sentBusy = (await simRequests(sim, `?since=${since}`)).length;
    // Meanwhile the nurse keeps working and presses "send" again: nothing goes out.
    await registerAndVisit(page, { nid: '495555556', first: 'Rasha', last: 'Odeh', ou: OU });
    const again = (await call(page, 'sync')).value;
    assert.equal(again.stopped, 'SERVER_BUSY', JSON.stringify(again));
    assert.equal(again.requests, 0, JSON.stringify(again));
    assert.equal((await simRequests(sim, `?since=${since}`)).length, sentBusy, 'no request while the server asked for quiet');
    // The proxy recovers; after the time asked for, everything arrives, once.
    await simAdmin(sim, 'DELETE', '/__sim/load');
    await sleep(4200);
    const done = await syncUntilDone(page);
    assert.equal(done.remaining, 0, JSON.stringify(done));
    const tei = await simGet(sim, `/api/trackedEntityInstances/${ids.tei}.json?fields=*`);
    assert.equal(tei.status, 200);
    await context.close();
  } finally {
    await sim.kill();
  }
});

test('a password the server refuses is sent once and never again (no account lockout from retries); an online login sends the work', async () => {
  const sim = new Sim({ extraArgs: ['--faults', '--tracked-entities', '5'] });
  await sim.start();
  try {
    const { context, page } = await goOffline(browser, sim);
    const ids = await registerAndVisit(page, { nid: '496666666', first: 'Lina', last: 'Qasem', ou: OU });
    // The server comes back refusing nurse1's saved password (her account was locked, as DHIS2
    // answers it), from its very first request.
    const rules = join(sim.dataDir, 'locked.json');
    writeFileSync(rules, JSON.stringify([{ path: '/api', status: 401, body: LOCKED }]));
    sim.extraArgs = [...sim.extraArgs, '--faults-file', rules];
    await sim.start();
    const first = await syncUntilStopped(page);
    assert.equal(first.stopped, 'AUTH_REQUIRED', JSON.stringify(first));
    assert.equal((await call(page, 'status')).value.authRequired, true);
    // The device keeps trying by itself and the nurse presses "send" and keeps working: no
    // request goes out with the refused password again (each would extend a DHIS2 lock).
    const since = await lastSeq(sim);
    await call(page, 'sync');
    await registerAndVisit(page, { nid: '496666667', first: 'Maha', last: 'Saleh', ou: OU });
    await call(page, 'sync');
    await sleep(1000);
    const after = (await simRequests(sim, `?since=${since}`)).filter((r) => r.status === 401);
    assert.deepEqual(after.map((r) => `${r.method} ${r.path}`), [], 'nothing more was sent with the refused password');
    // The lock is lifted; she logs in online: the work goes, once.
    await fetch(`${sim.url}/__sim/faults`, { method: 'DELETE' });
    const login = await call(page, 'login', 'nurse1', 'Nurse1!clinic');
    assert.ok(login.ok && login.value.mode === 'online', JSON.stringify(login));
    assert.equal((await call(page, 'status')).value.authRequired, false);
    const done = await syncUntilDone(page);
    assert.equal(done.remaining, 0, JSON.stringify(done));
    assert.equal((await simGet(sim, `/api/trackedEntityInstances/${ids.tei}.json?fields=*`)).status, 200);
    await context.close();
  } finally {
    await sim.kill();
  }
});

test('Background Sync, fired on every device when the network comes back, waits the random trigger delay before its flush', async () => {
  const sim = new Sim({ extraArgs: ['--faults', '--tracked-entities', '5'] });
  await sim.start();
  try {
    const { context, page } = await goOffline(browser, sim);
    // The device loses its network (the browser holds Background Sync until it is back).
    await context.setOffline(true);
    // The worker's random numbers: this device's draw is 0.6 of the spread (6 s of 10 s). Every
    // worker the context lists gets it (an old one may still be listed beside the active one).
    const workers = context.serviceWorkers();
    assert.ok(workers.length > 0, 'the app has a service worker');
    const set = await Promise.all(workers.map((w) => w.evaluate(() => { Math.random = () => 0.6; return Math.random(); }).catch(() => null)));
    assert.ok(set.includes(0.6), `Math.random set in a worker: ${JSON.stringify(set)}`);
    await registerAndVisit(page, { nid: '497777777', first: 'Dima', last: 'Awad', ou: OU });
    // The page's own timers stay out of it: only the worker's Background Sync sends.
    await page.close();
    await sim.start();
    const since = await lastSeq(sim);
    // The network is back: the browser fires the outbox's Background Sync.
    const back = Date.now();
    await context.setOffline(false);
    let first;
    while (!first && Date.now() - back < 15000) {
      first = (await simRequests(sim, `?since=${since}`)).find((r) => r.path.startsWith('/api/'));
      if (!first) await sleep(100);
    }
    assert.ok(first, 'the outbox was sent');
    const after = Date.parse(first.timestamp) - back;
    assert.ok(after >= 5500 && after < 9000, `first request ${after} ms after the network came back (expected about 6000)`);
    // The registration went, once: the backoff the device built while no answer came (the
    // server down, then no network) ended with the network coming back.
    const deadline = Date.now() + 15000;
    let teis = [];
    while (teis.length === 0 && Date.now() < deadline) {
      teis = (await simRequests(sim, `?since=${since}`)).filter((r) => r.method === 'POST' && r.path.startsWith('/api/trackedEntityInstances'));
      if (teis.length === 0) await sleep(200);
    }
    assert.equal(teis.length, 1, 'the registration went once');
    await context.close();
  } finally {
    await sim.kill();
  }
});
