// The service worker's message channel (issue "Security hardening", item 1). On a DHIS2 server
// every app shares one origin, including apps anyone with app-management rights uploads: a
// page of another app can find our worker (`navigator.serviceWorker.getRegistrations()`) and
// post to it. The worker answers only windows it controls inside its scope, never hands out
// key material or the password (it runs the login itself), takes only the messages the vault's
// state allows, and opens no vault for an API base of the asker's choosing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { DEMO, Sim } from './lib/sim.mjs';
import { launch } from './lib/browser.mjs';
import { configure, loginThroughOverlay } from './lib/stand-in.mjs';

/** Every message type the worker has ever known (the removed `unlock` included). */
const TYPES = ['configure', 'login', 'escrow', 'unlock', 'lock', 'download', 'cache-shell', 'sync', 'failures', 'retry',
  'discard', 'conflicts', 'resolve-conflict', 'remove-user', 'status', 'resume'];

let sim;
let browser;

before(async () => {
  sim = new Sim({ extraArgs: ['--app', `tracker-capture=${configure()}`] });
  await sim.start();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await sim?.kill();
});

/** Posts each message to the worker of `scopeSuffix` from this page; resolves every answer (or `{ timeout }`). */
async function postAll(page, scopeSuffix, messages) {
  return page.evaluate(async ({ scopeSuffix, messages }) => {
    const registration = (await navigator.serviceWorker.getRegistrations()).find((r) => r.scope.endsWith(scopeSuffix));
    if (!registration?.active) return { noWorker: true };
    const ask = (message) =>
      new Promise((resolve) => {
        const channel = new MessageChannel();
        const timer = setTimeout(() => resolve({ timeout: true }), 5000);
        channel.port1.onmessage = ({ data }) => {
          if (data && 'progress' in data) return;
          clearTimeout(timer);
          resolve(data);
        };
        registration.active.postMessage(message, [channel.port2]);
      });
    const answers = [];
    for (const message of messages) answers.push(await ask(message));
    return answers;
  }, { scopeSuffix, messages });
}

test('another app of the origin gets nothing from the worker; the app itself gets no key material', async () => {
  const context = await browser.newContext();
  const app = await context.newPage();
  app.on('pageerror', (e) => console.error('[page error]', e.message));
  await app.goto(`${sim.url}/tracker-capture/`);
  await app.locator('#tracker-offline-overlay').waitFor({ timeout: 30000 });
  await loginThroughOverlay(app, DEMO.nurse1);
  await app.locator('#tracker-offline-user', { hasText: DEMO.nurse1.displayName }).waitFor({ timeout: 30000 });
  const apiBase = `${sim.url}/api`;
  assert.equal((await app.evaluate(() => window.trackerOffline.workerStatus())).unlocked, true);

  // Another app of the same origin, outside the worker's scope, tries every message type.
  const other = await context.newPage();
  await other.goto(`${sim.url}/demo/app.css`);
  const everything = TYPES.map((type) => ({
    type, apiBase, id: 'x', keep: 'server', username: DEMO.nurse1.username, password: 'guess', urls: [`${sim.url}/secret`],
    options: {}, sharing: { users: ['attacker'], userGroups: [] }, policy: { pbkdf2Iterations: 1000 },
  }));
  const answers = await postAll(other, '/tracker-capture/', everything);
  assert.ok(Array.isArray(answers), JSON.stringify(answers));
  answers.forEach((answer, i) => {
    assert.equal(answer?.ok, false, `${TYPES[i]}: ${JSON.stringify(answer)}`);
    assert.equal(answer.error.code, 'NOT_ALLOWED', `${TYPES[i]}: ${JSON.stringify(answer)}`);
  });
  // Nothing it sent took effect: the session is open, under nurse1.
  const held = await app.evaluate(() => window.trackerOffline.workerStatus());
  assert.deepEqual([held.unlocked, held.username], [true, DEMO.nurse1.username]);

  // The app's own page: `resume` says who is logged in and nothing else; no answer carries a key
  // or a password; an API base of the asker's choosing opens no vault.
  const own = await postAll(app, '/tracker-capture/', [
    { type: 'resume', apiBase },
    { type: 'status', apiBase },
    { type: 'unlock', apiBase, username: 'nurse1', key: new Uint8Array(32) },
    { type: 'status', apiBase: sim.url },
    { type: 'status', apiBase: `${sim.url}/api/apps/other` },
  ]);
  assert.deepEqual(own[0], { ok: true, result: { unlocked: true, username: DEMO.nurse1.username } });
  assert.equal(own[1].ok, true);
  assert.equal(own[1].result.username, DEMO.nurse1.username);
  assert.doesNotMatch(JSON.stringify(own), /"key"|"password"|Nurse1/);
  assert.equal(own[2].error?.code, 'BAD_INPUT', JSON.stringify(own[2]));
  assert.equal(own[3].error?.code, 'BAD_INPUT', JSON.stringify(own[3]));
  assert.equal(own[4].error?.code, 'BAD_INPUT', JSON.stringify(own[4]));
  const databases = await app.evaluate(async () => (await indexedDB.databases()).map((d) => d.name));
  assert.deepEqual(databases.filter((name) => name.startsWith('tracker-offline:')), [`tracker-offline:${apiBase}`]);

  // Locked, the work of the session is not reachable even for the app's own page.
  await app.evaluate(() => window.trackerOffline.logout());
  const locked = await postAll(app, '/tracker-capture/', [{ type: 'failures', apiBase }, { type: 'discard', apiBase, id: 'x' }, { type: 'sync', apiBase }]);
  for (const answer of locked) assert.equal(answer.error?.code, 'VAULT_LOCKED', JSON.stringify(answer));
  await context.close();
});
