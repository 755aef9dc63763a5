// The configured build and its loader, on a stand-in with Tracker Capture's index.html
// structure (tests/e2e/fixtures/tc-like; the real app is not built in CI, see
// tracker-capture-real.test.mjs): configure-tracker-capture adds the npm package, the app does
// not talk to the server before a login through the library, its scripts then run in their
// order, its boot reads (profile, org unit tree, working list, a user setting) are answered
// offline with the sim killed, per user across a shift change, the server's lost session is
// renewed for the logged-in user when it is back, and nothing readable is stored.
// Then the loader's languages: English or Arabic by the browser's language before a login, the
// user's DHIS2 UI locale after it (also offline), right to left in Arabic.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEMO, ROOT, Sim } from './lib/sim.mjs';
import { ARTIFACTS, launchPersistent, dumpOriginStorage, syncUntilDone } from './lib/browser.mjs';
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

/** The language and direction of one of the loader's elements, and its text (never a stray null). */
async function speech(page, selector) {
  const shown = await page.locator(selector).evaluate((e) => ({ lang: e.lang, dir: e.dir, text: e.innerText }));
  assert.doesNotMatch(shown.text, /\b(?:null|undefined|NaN)\b|\{\w+\}/, `${selector}: ${shown.text}`);
  return shown;
}

/** Screenshots for people to look at (tests/artifacts, or $LOADER_SCREENSHOTS). */
async function screenshot(page, name) {
  await page.screenshot({ path: join(process.env.LOADER_SCREENSHOTS ?? ARTIFACTS, `${name}.png`) });
}

test('loader in Arabic: the browser\'s language before a login, the user\'s keyUiLocale after it (online and offline), right to left', { timeout: 170000 }, async () => {
  const out = configure(join(ROOT, 'tests', 'e2e', 'fixtures', 'tc-like'));
  const sim = new Sim({ extraArgs: ['--app', `tracker-capture=${out}`, '--tracked-entities', '5'] });
  await sim.start();
  try {
    const as = (user) => ({ Authorization: `Basic ${Buffer.from(`${user.username}:${user.password}`).toString('base64')}`, 'X-Requested-With': 'XMLHttpRequest' });
    // nurse1 reads Arabic: her DHIS2 UI locale, set as she would in her profile.
    const saved = await fetch(`${sim.url}/api/userSettings/keyUiLocale?value=ar`, { method: 'POST', headers: as(DEMO.nurse1) });
    assert.equal(saved.status, 200, await saved.text());
    // A national ID registered at another clinic: a registration with it is refused later.
    const taken = '409888777';
    const created = await fetch(`${sim.url}/api/trackedEntityInstances`, {
      method: 'POST',
      headers: { ...as(DEMO.admin), 'Content-Type': 'application/json' },
      body: JSON.stringify({ trackedEntityType: 'TetPerson01', orgUnit: 'OuDuraClin1', attributes: [
        { attribute: 'AtNationId1', value: taken }, { attribute: 'AtFirstNam1', value: 'Other' }, { attribute: 'AtLastName1', value: 'Woman' },
        { attribute: 'AtBirthDat1', value: '1990-01-01' }] }),
    });
    assert.equal(created.status, 200, await created.text());

    // A device whose browser is in English: the form is in English; after nurse1's login, the bar
    // is in her language.
    let context = await launchPersistent(mkdtempSync(join(tmpdir(), 'tc-profile-en-')), { locale: 'en-US' });
    try {
      const page = await context.newPage();
      page.on('pageerror', (e) => console.error('[page error]', e.message));
      await page.goto(`${sim.url}/tracker-capture/`);
      await page.locator('#tracker-offline-overlay').waitFor({ timeout: 30000 });
      const form = await speech(page, '#tracker-offline-overlay');
      assert.deepEqual([form.lang, form.dir], ['en', 'ltr']);
      assert.match(form.text, /Username[\s\S]*Password[\s\S]*Log in/);
      await loginThroughOverlay(page, DEMO.nurse1);
      await page.locator('#tracker-offline-state', { hasText: 'متصل' }).waitFor({ timeout: 30000 });
      const bar = await speech(page, '#tracker-offline-bar');
      assert.deepEqual([bar.lang, bar.dir], ['ar', 'rtl']);
      assert.match(bar.text, /أرسل الآن/);
    } finally {
      await context.close();
    }

    // A device whose browser is in Arabic.
    context = await launchPersistent(mkdtempSync(join(tmpdir(), 'tc-profile-ar-')), { locale: 'ar-PS' });
    try {
      const page = await context.newPage();
      page.on('pageerror', (e) => console.error('[page error]', e.message));
      await page.goto(`${sim.url}/tracker-capture/`);
      await page.locator('#tracker-offline-overlay').waitFor({ timeout: 30000 });
      const form = await speech(page, '#tracker-offline-overlay');
      assert.deepEqual([form.lang, form.dir], ['ar', 'rtl']);
      assert.match(form.text, /اسم المستخدم[\s\S]*كلمة المرور[\s\S]*دخول/);
      await loginThroughOverlay(page, { username: DEMO.nurse1.username, password: 'not-her-password' });
      await page.locator('#tracker-offline-password-error', { hasText: 'اسم المستخدم أو كلمة المرور غير صحيحة.' }).waitFor({ timeout: 30000 });
      await screenshot(page, 'ar-login');

      await loginThroughOverlay(page, DEMO.nurse1);
      await page.locator('#tracker-offline-state', { hasText: 'متصل' }).waitFor({ timeout: 30000 });
      assert.deepEqual(Object.values(await speech(page, '#tracker-offline-bar')).slice(0, 2), ['ar', 'rtl']);
      await page.waitForFunction(() => window.appResults !== undefined, null, { timeout: 30000, polling: 100 });
      const copy = await page.evaluate(() => window.trackerOffline.download());
      assert.ok(copy.records > 0, JSON.stringify(copy));
      await screenshot(page, 'ar-status-online');

      // Offline: a reload shows the bar in her language. Her settings are answered from this device.
      await sim.kill();
      await page.reload();
      await page.locator('#tracker-offline-state', { hasText: 'غير متصل' }).waitFor({ timeout: 30000 });
      const offline = await speech(page, '#tracker-offline-bar');
      assert.deepEqual([offline.lang, offline.dir], ['ar', 'rtl']);
      const settings = await page.evaluate(async () => {
        const r = await fetch('../api/userSettings.json?key=keyDbLocale&key=keyUiLocale&key=keyStyle', { headers: { accept: 'application/json' } });
        return { status: r.status, local: r.headers.get('x-tracker-offline'), body: await r.json() };
      });
      assert.equal(settings.status, 200);
      assert.ok(settings.local, 'answered on this device');
      assert.equal(settings.body.keyUiLocale, 'ar');

      // Work made offline that the server refuses: the bar's count and the failures panel.
      const queued = await page.evaluate(async (nid) => {
        const r = await fetch('../api/trackedEntityInstances', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', 'X-Requested-With': 'XMLHttpRequest' },
          body: JSON.stringify({ trackedEntityType: 'TetPerson01', orgUnit: 'OuBaniNaim1', attributes: [
            { attribute: 'AtNationId1', value: nid }, { attribute: 'AtFirstNam1', value: 'Nour' }, { attribute: 'AtLastName1', value: 'Sabbah' },
            { attribute: 'AtBirthDat1', value: '1993-07-01' }] }),
        });
        return r.headers.get('x-tracker-offline');
      }, taken);
      assert.equal(queued, 'queued');
      await page.locator('#tracker-offline-pending', { hasText: 'بانتظار الإرسال' }).waitFor({ timeout: 20000 });
      await screenshot(page, 'ar-status-offline');
      await sim.start();
      const report = await syncUntilDone(page);
      assert.ok(report.failed >= 1 || (await page.evaluate(() => window.trackerOffline.status())).failed >= 1, JSON.stringify(report));
      await page.locator('#tracker-offline-failed', { hasText: 'مرفوض' }).click({ timeout: 20000 });
      await page.locator('#tracker-offline-failures .tracker-offline-failure').waitFor({ timeout: 20000 });
      const panel = await speech(page, '#tracker-offline-failures');
      assert.deepEqual([panel.lang, panel.dir], ['ar', 'rtl']);
      assert.match(panel.text, /ما رفضه الخادم[\s\S]*بواسطة[\s\S]*أعد المحاولة[\s\S]*تجاهل[\s\S]*إغلاق/);
      await screenshot(page, 'ar-failures');
      // Her language is kept for her alone, under a digest of her username; nothing else in clear.
      const kept = await page.evaluate(() => Object.entries(localStorage).filter(([k]) => k.startsWith('tracker-offline:ui-language:')));
      assert.equal(kept.length, 1);
      assert.equal(kept[0][1], 'ar');
      assert.ok(!kept[0][0].includes(DEMO.nurse1.username));
    } finally {
      await context.close();
    }
  } finally {
    await sim.kill();
  }
});
