// The merge end to end, through the demo app's UI, against a real dhis2-sim process that is
// killed and restarted: nurse1 downloads the clinic, the server dies, she corrects two values of
// a visit "for days"; meanwhile the district changes another value of the same visit and one of
// hers to something else. Back online: her values arrive, the district's other change survives,
// the field both changed is shown as a conflict with both values, and putting the server's
// value back sends it once. Screenshots: tests/artifacts/merge-*.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Sim, DEMO } from './lib/sim.mjs';
import { launch, openApp, ARTIFACTS } from './lib/browser.mjs';
import { simGet, districtSets, anOpenVisit } from './lib/tracker-capture.mjs';
import { loginUI, typeValue, waitForStatus } from './lib/demo-ui.mjs';

const DE = { weight: 'DeWeightKg1', bp: 'DeBpSystol1', remarks: 'DeRemarks01' };
const OU = DEMO.clinic.id;

let sim;
let browser;
before(async () => {
  sim = new Sim({ extraArgs: ['--tracked-entities', '6'] });
  await sim.start();
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await sim?.kill();
});

/** The district's data manager sets values of a visit on the server (`/api/tracker`: values not sent stay). */

async function serverValues(event) {
  const r = await simGet(sim, `/api/tracker/events/${event}?fields=*`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return Object.fromEntries(r.body.dataValues.map((v) => [v.dataElement, v.value]));
}

test('a device offline for days never undoes the district’s changes, and a field changed on both sides is shown', async () => {
  // An open visit (the demo shows completed visits read-only).
  const header = await anOpenVisit(sim, OU, { [DE.weight]: '60', [DE.bp]: '110', [DE.remarks]: 'first visit' });

  const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
  const page = await openApp(context, sim.url, '/demo/');
  await loginUI(page, DEMO.nurse1, 'online');
  await waitForStatus(page, (s) => s.lastDownloadAt && s.records > 0);
  await page.locator('#progress-wrap').waitFor({ state: 'hidden' });

  // Offline: she corrects the weight and the blood pressure of that visit.
  await sim.kill();
  await page.evaluate(([tei, event]) => { location.hash = `#/event/${tei}/${event}`; }, [header.trackedEntity, header.event]);
  await page.locator('#event-form').waitFor();
  await typeValue(page, DE.weight, '61.5');
  await typeValue(page, DE.bp, '125');
  await waitForStatus(page, (s) => s.pending >= 2);

  // Meanwhile, on the server: the district corrects the remarks and the blood pressure.
  await sim.start();
  await districtSets(sim, header, { [DE.remarks]: 'referred to Hebron', [DE.bp]: '130' });

  await page.locator('#sync-btn').click();
  await waitForStatus(page, (s) => s.pending === 0 && s.failed === 0, 60000);
  const after = await serverValues(header.event);
  assert.equal(after[DE.weight], '61.5', JSON.stringify(after));
  assert.equal(after[DE.remarks], 'referred to Hebron', `the district's change survives: ${JSON.stringify(after)}`);
  assert.equal(after[DE.bp], '125', JSON.stringify(after));

  // The conflict is counted and shown with both values.
  await page.locator('#failed', { hasText: '1' }).waitFor({ timeout: 15000 });
  await page.locator('#failed-btn').click();
  const card = page.locator('[data-conflict]');
  await card.waitFor();
  assert.equal(await card.count(), 1);
  assert.match(await card.locator('[data-side="device"]').textContent(), /125/);
  assert.match(await card.locator('[data-side="server"]').textContent(), /130/);
  await page.screenshot({ path: join(ARTIFACTS, 'merge-conflict.png') });

  // The district was right: its value goes back to the server, once.
  await card.locator('[data-keep="server"]').click();
  await card.waitFor({ state: 'detached', timeout: 30000 });
  await waitForStatus(page, (s) => s.pending === 0, 60000);
  const resolved = await serverValues(header.event);
  assert.equal(resolved[DE.bp], '130', JSON.stringify(resolved));
  assert.equal(resolved[DE.weight], '61.5');
  assert.equal(resolved[DE.remarks], 'referred to Hebron');
  assert.equal(await page.evaluate(async () => (await window.trackerOffline.conflicts()).length), 0);
  await context.close();
});
