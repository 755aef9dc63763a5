// Where the time of a login or a download goes (issue 17: "profile first"), with Chrome's CPU
// profiler on the service worker, which runs both. The benchmark's setup: release dhis2-sim with
// a generated database, the library as shipped.
// - `--what login` (P1): a nurse logs in online and downloads the clinic, the server is killed,
//   then offline logins, each profiled. Per login: the time the page waited, the worker's busy
//   time on its thread (JS + wasm) and idle time (waiting for WebCrypto's PBKDF2, IndexedDB,
//   the failed request to the server).
// - `--what download` (P2): after an online login, one download of the whole clinic, profiled.
// - `--what load` (P7): after a download of the whole clinic as the administrator, the server is
//   killed; then, per round, a logout, an offline login (not profiled) and the first
//   working-list page read through the worker (which loads the clinic copy), profiled. The
//   first round also writes the index snapshot: its functions are left out of the totals.
// - `--what write` (P4): a nurse logs in and downloads her clinic, the server is killed; then
//   rounds of 50 offline `PUT /api/events/{ev}/{de}` (a field saved), each round profiled, with
//   the p50 and p95 of the page's wait per write.
// - `--what flush` (P5m) / `--what flush-creates` (P5): a nurse logs in and downloads her clinic,
//   the server is killed, `--writes` offline writes are queued (a remark saved on that many
//   visits; or that many new visits posted), the server is started again, and the `sync` calls
//   that send them are profiled together.
// Then the functions with the most self time.
//
//   node tests/bench/profile.mjs [--what login|download|load|write|flush|flush-creates] [--logins 5] [--teis 1000] [--writes 1000]
//        [--settle-ms 1500] [--sim-bin target/release/dhis2-sim] [--callers <part of a name>]
//
// Build the package with `TRACKER_OFFLINE_WASM_NAMES=1 scripts/build-wasm.sh` first to see the
// wasm functions by name (without it they show as wasm-function[N]).
import { resolve, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { BenchSim } from './lib/sim.mjs';
import { buildWww } from './lib/www.mjs';
import { attachToWorker } from './lib/cdp.mjs';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const WHAT = arg('--what', 'login');
const LOGINS = Number(arg('--logins', 5));
const TEIS = Number(arg('--teis', 1000));
const WRITES = Number(arg('--writes', 1000));
const SIM_BIN = arg('--sim-bin', join(ROOT, 'target', 'release', 'dhis2-sim'));
const SETTLE_MS = Number(arg('--settle-ms', 1500));
// `--callers <part of a name>`: also the callers of the functions so named, by self time.
const CALLERS = arg('--callers', null);
const NURSE = { username: 'nurse1', password: 'Nurse1!clinic' };
// P2 downloads as the administrator (every woman of the generated database); P1 logs a nurse in.
const ADMIN = { username: 'admin', password: 'district' };
const USER = ['login', 'write', 'flush', 'flush-creates'].includes(WHAT) ? NURSE : ADMIN;

/** Self time per function (ms) and busy/idle split of a CPU profile. */
function digest(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const callers = new Map();
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n);
  const dts = profile.timeDeltas;
  let idle = 0;
  let busy = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i]);
    const dt = (dts[i + 1] ?? 0) / 1000;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === '(idle)' || functionName === '(program)') {
      idle += dt;
      continue;
    }
    busy += dt;
    const name = `${functionName || '(anonymous)'} ${url.split('/').pop()}${url ? `:${lineNumber + 1}` : ''}`;
    self.set(name, (self.get(name) ?? 0) + dt);
    if (CALLERS && name.includes(CALLERS)) {
      // The first caller up the stack that is not glue between the two (handleError and the like).
      let up = parent.get(node.id);
      while (up && /^(handleError|\(anonymous\)|__wbg_.*|wasm-to-js|js-to-wasm|js_sys::.*|wasm_bindgen::.*)$/.test(up.callFrame.functionName) && parent.get(up.id)) up = parent.get(up.id);
      const by = up ? `${up.callFrame.functionName || '(anonymous)'} ${up.callFrame.url.split('/').pop()}` : '(root)';
      callers.set(by, (callers.get(by) ?? 0) + dt);
    }
  }
  return { idle, busy, self, callers };
}

async function main() {
  const www = await buildWww(ROOT);
  const sim = new BenchSim({ binary: SIM_BIN, www: www.dir, trackedEntities: TEIS });
  await sim.start();
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', headless: true, args: ['--disable-gpu'] });
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${sim.url}/bench.html`);
    await page.waitForFunction(() => window.benchMarks?.done, null, { timeout: 60000, polling: 50 });
    await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 20000, polling: 50 });
    const call = (method, ...args) => page.evaluate(({ method, args }) => window.trackerOffline[method](...args), { method, args });
    const cdp = await attachToWorker(await browser.newBrowserCDPSession(), '/sw.js');
    await cdp.send('Profiler.enable');
    await cdp.send('Profiler.setSamplingInterval', { interval: WHAT === 'login' ? 100 : 1000 });
    const total = new Map();
    const totalCallers = new Map();
    const profiled = async (label, run, { counted = true } = {}) => {
      await cdp.send('Profiler.start');
      const waited = await run();
      const { profile } = await cdp.send('Profiler.stop');
      const { idle, busy, self, callers } = digest(profile);
      if (counted) for (const [name, ms] of self) total.set(name, (total.get(name) ?? 0) + ms);
      if (counted) for (const [name, ms] of callers) totalCallers.set(name, (totalCallers.get(name) ?? 0) + ms);
      console.log(`${label}: page waited ${waited.toFixed(1)} ms; worker busy ${busy.toFixed(1)} ms, idle ${idle.toFixed(1)} ms`);
    };
    const online = await call('login', USER.username, USER.password);
    if (online.mode !== 'online') throw new Error(`online login was ${online.mode}`);
    if (WHAT === 'download') {
      await profiled(`download of ${TEIS} women`, () => page.evaluate(async () => {
        const t = performance.now();
        await window.trackerOffline.download({});
        return performance.now() - t;
      }));
    } else if (WHAT === 'write') {
      await call('download', {});
      const events = (await sim.get('/api/events.json?orgUnit=OuBaniNaim1&program=PrMchProg01&programStage=PsAncVisit1&paging=false')).events;
      await sim.kill();
      console.log(`${events.length} visits at the clinic; the server is killed`);
      for (let i = 0; i < LOGINS; i++) {
        const writes = events.slice(i * 50, i * 50 + 50).map((ev, j) => ({
          path: `/api/events/${ev.event}/DeWeightKg1`,
          body: {
            event: ev.event, orgUnit: ev.orgUnit, program: 'PrMchProg01', programStage: 'PsAncVisit1', status: ev.status,
            trackedEntityInstance: ev.trackedEntityInstance,
            dataValues: [{ dataElement: 'DeWeightKg1', value: `${60 + (j % 30)}.5`, providedElsewhere: false }],
          },
        }));
        let times = [];
        await profiled(`50 offline writes, round ${i + 1}`, async () => {
          times = await page.evaluate(async (writes) => {
            const out = [];
            for (const w of writes) {
              const t = performance.now();
              const r = await fetch(w.path, {
                method: 'PUT',
                headers: { 'X-Requested-With': 'XMLHttpRequest', Accept: 'application/json', 'Content-Type': 'application/json' },
                body: JSON.stringify(w.body),
              });
              await r.arrayBuffer();
              if (!r.ok) throw new Error(`PUT ${w.path}: ${r.status}`);
              out.push(performance.now() - t);
            }
            return out;
          }, writes);
          return times.reduce((a, b) => a + b, 0);
        });
        const sorted = [...times].sort((a, b) => a - b);
        console.log(`  per write: p50 ${sorted[Math.floor(sorted.length / 2)].toFixed(1)} ms, p95 ${sorted[Math.floor(sorted.length * 0.95)].toFixed(1)} ms`);
      }
    } else if (WHAT === 'flush' || WHAT === 'flush-creates') {
      await call('download', {});
      const events = (await sim.get('/api/events.json?orgUnit=OuBaniNaim1&program=PrMchProg01&programStage=PsAncVisit1&paging=false')).events;
      const enrollments = (await sim.get('/api/enrollments?ou=OuBaniNaim1&program=PrMchProg01&programStatus=ACTIVE&paging=false')).enrollments;
      await sim.kill();
      const runId = Date.now().toString(36);
      const today = new Date().toISOString().slice(0, 10);
      const writes = Array.from({ length: WRITES }, (_, i) => {
        const ev = events[i % events.length];
        const en = enrollments[i % enrollments.length];
        return WHAT === 'flush'
          ? {
            method: 'PUT', path: `/api/events/${ev.event}/DeRemarks01`,
            body: {
              event: ev.event, orgUnit: ev.orgUnit, program: 'PrMchProg01', programStage: 'PsAncVisit1', status: ev.status,
              trackedEntityInstance: ev.trackedEntityInstance, dataValues: [{ dataElement: 'DeRemarks01', value: `p-${runId}-${i}` }],
            },
          }
          : {
            method: 'POST', path: '/api/events.json',
            body: {
              events: [{
                trackedEntityInstance: en.trackedEntityInstance, program: 'PrMchProg01', programStage: 'PsAncVisit1', enrollment: en.enrollment,
                orgUnit: en.orgUnit, status: 'ACTIVE', eventDate: today, dataValues: [{ dataElement: 'DeRemarks01', value: `p-${runId}-${i}` }],
              }],
            },
          };
      });
      await page.evaluate(async (writes) => {
        for (const w of writes) {
          const r = await fetch(w.path, {
            method: w.method,
            headers: { 'X-Requested-With': 'XMLHttpRequest', Accept: 'application/json', 'Content-Type': 'application/json' },
            body: JSON.stringify(w.body),
          });
          await r.arrayBuffer();
          if (!r.ok) throw new Error(`${w.method} ${w.path}: ${r.status}`);
        }
      }, writes);
      const pending = (await call('status')).pending;
      console.log(`${writes.length} offline writes queued (${pending} pending); the server starts again`);
      await sim.start();
      await profiled(`flush of ${pending} writes`, () => page.evaluate(async () => {
        const t = performance.now();
        for (let i = 0; i < 20; i++) {
          const report = await window.trackerOffline.sync();
          if (report.failed) throw new Error(`sync: ${JSON.stringify(report)}`);
          if (report.remaining === 0) break;
        }
        return performance.now() - t;
      }));
    } else if (WHAT === 'load') {
      await call('download', {});
      await sim.kill();
      console.log(`${TEIS} women downloaded; the server is killed`);
      for (let i = 0; i < LOGINS; i++) {
        await call('logout');
        await call('login', ADMIN.username, ADMIN.password);
        await profiled(`first working-list page ${i + 1}`, () => page.evaluate(async () => {
          const t = performance.now();
          // The benchmark's working list (P3, P7): the MCH program at the generated clinic.
          const r = await fetch('/api/trackedEntityInstances/query.json?ou=OuBaniNaim1&ouMode=SELECTED&program=PrMchProg01&pageSize=50&page=1&totalPages=true');
          if (r.status !== 200 || !r.headers.get('x-tracker-offline')) throw new Error(`HTTP ${r.status}, not answered locally`);
          await r.json();
          return performance.now() - t;
        }), { counted: i > 0 });
      }
    } else {
      await call('download', {});
      await sim.kill();
      console.log(`${TEIS} women downloaded; the server is killed`);
      for (let i = 0; i < LOGINS; i++) {
        await call('logout');
        // The page asks for the status after each login, which loads the clinic copy in the
        // worker: let that finish, as between two logins at a clinic.
        await new Promise((r) => setTimeout(r, SETTLE_MS));
        await profiled(`login ${i + 1}`, () => page.evaluate(async ({ username, password }) => {
          const t = performance.now();
          const outcome = await window.trackerOffline.login(username, password);
          if (outcome.mode !== 'offline') throw new Error(`login mode ${outcome.mode}`);
          return performance.now() - t;
        }, NURSE));
      }
    }
    console.log(`\nself time (ms), the top 30:`);
    for (const [name, ms] of [...total].sort((a, b) => b[1] - a[1]).slice(0, 30)) console.log(`${ms.toFixed(1).padStart(8)}  ${name}`);
    if (CALLERS) {
      console.log(`\ncallers of functions named like "${CALLERS}", by their self time (ms):`);
      for (const [name, ms] of [...totalCallers].sort((a, b) => b[1] - a[1]).slice(0, 15)) console.log(`${ms.toFixed(1).padStart(8)}  ${name}`);
    }
  } finally {
    await browser.close();
    await sim.dispose();
    www.dispose();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
