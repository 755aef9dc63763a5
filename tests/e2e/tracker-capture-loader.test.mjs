// The configured build and its loader, on a stand-in with Tracker Capture's index.html
// structure (tests/e2e/fixtures/tc-like; the real app is not built in CI, see
// tracker-capture-real.test.mjs): configure-tracker-capture adds the npm package, the app does
// not talk to the server before a login through the library, its scripts then run in their
// order, its boot reads (profile, org unit tree, working list, a user setting) are answered
// offline with the sim killed, per user across a shift change, the server's lost session is
// renewed for the logged-in user when it is back, and nothing readable is stored.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEMO, ROOT, Sim } from './lib/sim.mjs';
import { launchPersistent, dumpOriginStorage } from './lib/browser.mjs';
import { PACKAGE, configure, loginThroughOverlay } from './lib/stand-in.mjs';

async function simRequests(sim, since = 0) {
  return (await (await fetch(`${sim.url}/__sim/requests?since=${since}`)).json()).filter((r) => !r.path.startsWith('/__sim'));
}

async function appResults(page) {
  await page.waitForFunction(() => window.appResults !== undefined, null, { timeout: 30000, polling: 100 });
  return page.evaluate(() => window.appResults);
}

test('configured stand-in: login gate, script order, offline boot reads per user, shift change, no plaintext', { timeout: 170000 }, async () => {
  assert.ok(existsSync(join(PACKAGE, 'package.json')), 'scripts/package.sh must run before this test');
  const out = configure(join(ROOT, 'tests', 'e2e', 'fixtures', 'tc-like'));
  const html = readFileSync(join(out, 'index.html'), 'utf8');
  assert.match(html, /<script type="text\/ng-template" id="template.html">/, 'templates stay as they are');
  assert.doesNotMatch(html, /<script src=/, 'every app script waits');
  assert.doesNotMatch(html, /\shref="\.\.\/api\/files\/style"/, 'the server stylesheet waits');
  for (const f of ['sw.js', 'tracker-offline.js', 'pkg/tracker_offline_bg.wasm', 'tracker-capture/loader.js']) assert.ok(existsSync(join(out, f)), f);

  const sim = new Sim({ extraArgs: ['--app', `tracker-capture=${out}`, '--faults', '--tracked-entities', '5'] });
  await sim.start();
  const profile = mkdtempSync(join(tmpdir(), 'tc-profile-'));
  let context = await launchPersistent(profile);
  try {
    let page = await context.newPage();
    page.on('pageerror', (e) => console.error('[page error]', e.message));
    await page.goto(`${sim.url}/tracker-capture/`);
    await page.locator('#tracker-offline-overlay').waitFor({ timeout: 30000 });
    // Before a login: the app has not run and has asked the server for nothing.
    assert.equal(await page.evaluate(() => window.bootOrder), undefined);
    const before = await simRequests(sim);
    assert.deepEqual(before.filter((r) => r.path.startsWith('/api') || r.path.includes('dhis-web-commons')).map((r) => r.path), []);
    assert.ok(await page.locator('#view').isHidden() || (await page.evaluate(() => getComputedStyle(document.querySelector('#view')).visibility)) === 'hidden');

    // nurse2 first, online, so that she can log in offline later on this device.
    await loginThroughOverlay(page, DEMO.nurse2);
    let results = await appResults(page);
    assert.deepEqual(await page.evaluate(() => window.bootOrder), ['first', 'inline', 'app']);
    assert.equal(results.me.status, 200);
    assert.equal(results.me.body.displayName, DEMO.nurse2.displayName);
    assert.equal(results.tree.status, 200);
    const nurse2Tree = results.tree.body;
    await page.locator('#tracker-offline-state', { hasText: 'Online' }).waitFor();
    await page.locator('#tracker-offline-user', { hasText: DEMO.nurse2.displayName }).waitFor();

    // Shift change online through the bar: nurse1 logs in while nurse2's session is open.
    await page.locator('#tracker-offline-switch').click();
    const restarted = page.waitForEvent('load');
    await loginThroughOverlay(page, DEMO.nurse1);
    await restarted; // the app starts again for nurse1
    await page.locator('#tracker-offline-user', { hasText: DEMO.nurse1.displayName }).waitFor({ timeout: 30000 });
    results = await appResults(page);
    assert.equal(results.me.body.displayName, DEMO.nurse1.displayName);
    const online = results;
    assert.equal(online.list.status, 200);
    assert.ok(online.list.body.rows.length > 0, 'the clinic has women');
    // The clinic copy (the loader refreshes it after an online login; one download at a time,
    // so this waits for that one and completes it).
    const copy = await page.evaluate(() => window.trackerOffline.download());
    assert.ok(copy.records > 0, JSON.stringify(copy));

    // The server dies. A reload boots the app from the worker: same reads, from local data.
    await sim.kill();
    await page.reload();
    results = await appResults(page);
    assert.deepEqual(await page.evaluate(() => window.bootOrder), ['first', 'inline', 'app']);
    assert.equal(results.me.status, 200);
    assert.equal(results.me.body.displayName, DEMO.nurse1.displayName, 'the cached profile is nurse1\'s');
    assert.deepEqual(results.tree.body, online.tree.body, 'org unit tree answered offline');
    assert.equal(results.list.local, 'local');
    assert.deepEqual(results.list.body.rows, online.list.body.rows, 'working list from the local copy');
    assert.equal(results.layout.status, online.layout.status, 'a user setting answers as it did online');
    await page.locator('#tracker-offline-state', { hasText: 'Offline' }).waitFor({ timeout: 20000 });

    // The app's own logout link, offline: the library logs out, the next user logs in offline.
    await page.locator('#app-logout').click();
    await page.locator('#tracker-offline-overlay').waitFor({ timeout: 20000 });
    await loginThroughOverlay(page, DEMO.nurse2);
    results = await appResults(page);
    assert.equal(results.me.body.displayName, DEMO.nurse2.displayName, 'nurse2 sees her own profile, never nurse1\'s');
    assert.deepEqual(results.tree.body, nurse2Tree);

    // The server comes back without the sessions it had: the worker opens a new one for the
    // logged-in nurse, and the app's reads are answered by the server again, as hers.
    // (The worker answers locally for up to 15 s after a failure; the app's read is repeated.)
    await sim.restart();
    const me = await page.evaluate(async () => {
      for (let i = 0; i < 40; i++) {
        const r = await fetch('../api/me.json?fields=id,displayName');
        if (!r.headers.get('x-tracker-offline')) return { status: r.status, body: await r.json() };
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
      return null;
    });
    assert.equal(me?.status, 200, 'answered by the server');
    assert.equal(me.body.displayName, DEMO.nurse2.displayName);

    // Nothing readable in any storage of the origin.
    const dump = await dumpOriginStorage(page);
    for (const secret of [DEMO.nurse1.displayName, DEMO.nurse2.displayName, DEMO.nurse1.password, DEMO.nurse2.password,
      Buffer.from(`${DEMO.nurse1.username}:${DEMO.nurse1.password}`).toString('base64')]) {
      assert.ok(!dump.includes(secret), `storage holds ${secret}`);
    }
  } finally {
    await context.close();
    await sim.kill();
  }
});
