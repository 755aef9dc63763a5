import { DEMO, Sim } from './e2e/lib/sim.mjs';
import { launch } from './e2e/lib/browser.mjs';
import { loginThroughOverlay } from './e2e/lib/stand-in.mjs';
const sim = new Sim({ version: '2.41', extraArgs: ['--app', 'capture=/work/capture/configured/dhis-web-capture', '--tracked-entities', '20'] });
await sim.start();
const browser = await launch();
const page = await (await browser.newContext()).newPage();
const t0 = Date.now();
const log = [];
page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning' || m.text().includes('tracker-offline')) log.push(`[console ${m.type()}] ${m.text().slice(0, 200)}`); });
page.on('pageerror', (e) => log.push(`[pageerror] ${e.message.slice(0, 300)}`));
page.on('response', (r) => { if (r.url().includes('/api/') && (r.status() >= 400 || process.env.ALL)) log.push(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${r.status()} ${r.request().method()} ${r.url().replace(sim.url, '').slice(0, 140)} ${r.headers()['x-tracker-offline'] ?? ''}`); });
page.on('requestfailed', (r) => { if (!r.url().includes('cdnjs')) log.push(`[failed] ${r.url().slice(0, 150)} ${r.failure()?.errorText}`); });
await page.goto(`${sim.url}/capture/`);
await page.locator('#tracker-offline-overlay').waitFor({ timeout: 30000 });
await loginThroughOverlay(page, DEMO.nurse1);
await new Promise((r) => setTimeout(r, 30000));
await page.screenshot({ path: '/work/capture/real-online.png' });
console.log(log.join('\n'));
log.length = 0;
console.log(JSON.stringify(await page.evaluate(async () => ({
  regs: (await navigator.serviceWorker.getRegistrations()).map((r) => [r.scope, r.active?.scriptURL]),
  controller: navigator.serviceWorker.controller?.scriptURL,
  caches: await Promise.all((await caches.keys()).map(async (k) => [k, (await (await caches.open(k)).keys()).length])),
  text: document.body.innerText.slice(0, 300),
}))));
console.log('---- download');
console.log(JSON.stringify(await page.evaluate(() => window.trackerOffline.download())).slice(0, 300));
await sim.kill();
console.log('---- offline reload');
const t1 = Date.now();
await page.reload().catch((e) => console.log('reload', e.message.split('\n')[0]));
await new Promise((r) => setTimeout(r, 25000));
await page.screenshot({ path: '/work/capture/real-offline.png' });
console.log(log.join('\n'));
console.log(JSON.stringify(await page.evaluate(() => ({ text: document.body.innerText.slice(0, 300) })).catch((e) => e.message)));
await browser.close();
