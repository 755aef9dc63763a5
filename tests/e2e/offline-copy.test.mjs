// The clinic copy end to end: online login, download with progress, the sim process killed,
// the page reloaded, and every read the app makes answered by the service worker from the
// local copy with the body the server gave online; search by name and by national ID; and no
// attribute value in clear anywhere in the origin's storage.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Sim, DEMO } from './lib/sim.mjs';
import { launch, openApp, call, dumpOriginStorage, ARTIFACTS } from './lib/browser.mjs';

const P = 'PrMchProg01';
const OU = DEMO.clinic.id;
const NID = 'AtNationId1';
const FIRST = 'AtFirstNam1';

let sim;
let browser;
before(async () => {
  sim = new Sim({ extraArgs: ['--tracked-entities', '60'] });
  await sim.start();
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await sim?.kill();
});

/** GET through the page (and so through the service worker). */
async function get(page, path) {
  return page.evaluate(async (path) => {
    const r = await fetch(path, { headers: { 'X-Requested-With': 'XMLHttpRequest', Accept: 'application/json' } });
    const text = await r.text();
    let body = null;
    try { body = JSON.parse(text); } catch { body = text; }
    return { status: r.status, local: r.headers.get('x-tracker-offline'), body };
  }, path);
}

/** Drops what legitimately differs between the server's answer and the local one. */
function normalise(value) {
  if (Array.isArray(value)) return value.map(normalise);
  if (value && typeof value === 'object') {
    const out = {};
    for (const [k, v] of Object.entries(value)) {
      if (['names', 'headerWidth', 'width'].includes(k)) continue; // grid metadata names: server adds its own
      out[k] = normalise(v);
    }
    return out;
  }
  return value;
}

test('download, kill the server, reload: the app reads from the local copy', async () => {
  const context = await browser.newContext();
  let page = await openApp(context, sim.url);
  const login = await call(page, 'login', DEMO.nurse1.username, DEMO.nurse1.password);
  assert.equal(login.ok, true, JSON.stringify(login));

  const progress = await page.evaluate(async () => {
    const seen = [];
    window.trackerOffline.addEventListener('progress', (e) => seen.push(e.detail));
    const report = await window.trackerOffline.download({ pageSize: 20 });
    return { seen, report, status: await window.trackerOffline.status() };
  });
  assert.ok(progress.seen.length >= 2, JSON.stringify(progress.seen));
  const last = progress.seen.at(-1);
  assert.equal(last.done, last.total);
  assert.ok(progress.report.trackedEntities > 0);
  assert.equal(progress.status.records, progress.report.records);
  assert.ok(progress.status.lastDownloadAt > 0);
  assert.ok(progress.status.quota > 0);

  // The reads Tracker Capture and the Capture app make, online first.
  const grid = (await get(page, `/api/trackedEntityInstances/query.json?ou=${OU}&ouMode=SELECTED&program=${P}&pageSize=50&page=1&totalPages=true`)).body;
  const someTei = grid.rows[0][0];
  const someNid = grid.rows[0][grid.headers.findIndex((h) => h.name === NID)];
  const someName = grid.rows[0][grid.headers.findIndex((h) => h.name === FIRST)];
  const teiBody = (await get(page, `/api/trackedEntityInstances/${someTei}.json?program=${P}&fields=*`)).body;
  const someEnrollment = teiBody.enrollments[0].enrollment;
  const someEvent = teiBody.enrollments[0].events[0]?.event;
  const reads = [
    `/api/trackedEntityInstances/query.json?ou=${OU}&ouMode=SELECTED&program=${P}&pageSize=50&page=1&totalPages=true`,
    `/api/trackedEntityInstances/query.json?ou=${OU}&program=${P}&attribute=${NID}:EQ:${someNid}&pageSize=50&page=1&totalPages=true`,
    `/api/trackedEntityInstances/query.json?ou=${OU}&program=${P}&attribute=${FIRST}:LIKE:${encodeURIComponent(someName.slice(0, 3))}&pageSize=10&page=1&totalPages=true`,
    `/api/trackedEntityInstances/count.json?ou=${OU}&program=${P}`,
    `/api/trackedEntityInstances/${someTei}.json?program=${P}&fields=*`,
    `/api/events.json?ouMode=ACCESSIBLE&trackedEntityInstance=${someTei}&program=${P}&skipPaging=true`,
    `/api/enrollments?trackedEntityInstance=${someTei}&paging=false`,
    `/api/tracker/trackedEntities?orgUnit=${OU}&program=${P}&pageSize=5&page=2&totalPages=true`,
    `/api/tracker/trackedEntities/${someTei}?program=${P}&fields=*`,
    `/api/tracker/enrollments/${someEnrollment}`,
    `/api/tracker/events?trackedEntity=${someTei}&skipPaging=true`,
    ...(someEvent ? [`/api/tracker/events/${someEvent}`] : []),
    `/api/me?fields=id,username,displayName`,
  ];
  const online = {};
  for (const path of reads) {
    const r = await get(page, path);
    assert.equal(r.status, 200, `${path}: ${JSON.stringify(r.body).slice(0, 300)}`);
    assert.equal(r.local, null, `${path} came from the network`);
    online[path] = r.body;
  }

  // The server dies; the page reloads (the shell comes from the service worker).
  await sim.kill();
  await page.reload();
  await page.waitForFunction(() => window.trackerOffline !== undefined, null, { timeout: 20000, polling: 100 });
  await page.screenshot({ path: join(ARTIFACTS, 'offline-copy-reload.png') });

  for (const path of reads) {
    const r = await get(page, path);
    assert.equal(r.status, 200, `${path} offline: ${JSON.stringify(r.body).slice(0, 300)}`);
    assert.ok(r.local === 'local' || r.local === 'cache', `${path} answered by ${r.local}`);
    assert.deepEqual(normalise(r.body), normalise(online[path]), `${path} differs offline`);
  }

  // Search by national ID and by name, offline.
  const byId = (await get(page, `/api/trackedEntityInstances/query.json?ou=${OU}&program=${P}&attribute=${NID}:EQ:${someNid}`)).body;
  assert.equal(byId.rows.length, 1);
  assert.equal(byId.rows[0][0], someTei);
  const byName = (await get(page, `/api/trackedEntityInstances/query.json?ou=${OU}&program=${P}&attribute=${FIRST}:LIKE:${encodeURIComponent(someName)}`)).body;
  assert.ok(byName.rows.some((row) => row[0] === someTei));

  // Nothing of the downloaded people in clear.
  const raw = await dumpOriginStorage(page);
  assert.ok(raw.includes('#store records'), 'the dump read the records store');
  const values = new Set();
  for (const row of online[reads[0]].rows) {
    for (const cell of row.slice(8)) if (cell && String(cell).length >= 6) values.add(String(cell));
  }
  assert.ok(values.size > 20);
  for (const v of values) assert.equal(raw.includes(v), false, `"${v}" found in clear in storage`);
  await context.close();
});
