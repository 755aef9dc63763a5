// The benchmark harness (issue 7): every figure side by side with its baseline, in one run,
// headless Chromium (Playwright) against a release dhis2-sim with a generated database.
//
//   node tests/bench/run.mjs [--sizes 5000,20000,50000] [--repeats 3] [--flush-writes 5000]
//                            [--out bench] [--smoke]
//
// Writes <out>/results.json and <out>/scaling.svg and prints a table. Exits non-zero when a
// measurement could not be taken. Targets are reported, never asserted: `--smoke` (tiny sizes,
// one repeat, results under target/bench-smoke) only proves every measurement can be taken.
import { readFileSync, writeFileSync, mkdirSync, existsSync, statSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { cpus, totalmem, release } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { BenchSim } from './lib/sim.mjs';
import { buildWww } from './lib/www.mjs';
import { summary, fmt } from './lib/stats.mjs';
import { scalingSvg } from './lib/svg.mjs';
import { attachToWorker, memoryOf } from './lib/cdp.mjs';
import { registerAndVisit } from '../e2e/lib/tracker-capture.mjs';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));

// ---------------------------------------------------------------- options
function parseArgs(argv) {
  const o = { smoke: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => argv[++i];
    if (a === '--smoke') o.smoke = true;
    else if (a === '--sizes') o.sizes = next().split(',').map((s) => Number(s.trim())).filter(Boolean);
    else if (a === '--repeats') o.repeats = Number(next());
    else if (a === '--flush-writes') o.flushWrites = Number(next());
    else if (a === '--out') o.out = next();
    else if (a === '--sim-bin') o.simBin = next();
    else if (a === '--help' || a === '-h') {
      console.log('usage: node tests/bench/run.mjs [--smoke] [--sizes 5000,20000,50000] [--repeats N] [--flush-writes N] [--out DIR] [--sim-bin PATH]');
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  const smoke = o.smoke;
  const simBin = o.simBin ?? process.env.DHIS2_SIM_BIN ?? (() => {
    const rel = join(ROOT, 'target', 'release', 'dhis2-sim');
    const dbg = join(ROOT, 'target', 'debug', 'dhis2-sim');
    // The smoke step of scripts/test.sh builds the debug binary; take the newer of the two.
    if (smoke && existsSync(dbg) && (!existsSync(rel) || statSync(dbg).mtimeMs > statSync(rel).mtimeMs)) return dbg;
    return rel;
  })();
  return {
    smoke,
    sizes: o.sizes ?? (smoke ? [200] : [5000, 20000, 50000]),
    repeats: o.repeats ?? (smoke ? 1 : 3),
    // The 50,000-TEI downloads take about 2 minutes a repeat: 2 repeats there keep the run under 15 minutes.
    repeatsAt: (size) => o.repeats ?? (smoke ? 1 : size >= 50000 ? 2 : 3),
    flushWrites: o.flushWrites ?? (smoke ? 200 : 5000),
    flushSimTeis: smoke ? 200 : 1000,
    mergeWrites: smoke ? 100 : 1000,
    p1Repeats: smoke ? 1 : 5,
    p4Writes: smoke ? 20 : 300,
    p3Samples: smoke ? 10 : 100,
    // P8's offline day: reads, values saved on existing visits, registrations with a visit.
    day: smoke ? { reads: 30, values: 5, registrations: 2 } : { reads: 300, values: 40, registrations: 10 },
    out: resolve(ROOT, o.out ?? (smoke ? 'target/bench-smoke' : 'bench')),
    simBin,
    iterations: 600000,
  };
}

const cfg = parseArgs(process.argv.slice(2));
const P = 'PrMchProg01';
const ANC = 'PsAncVisit1';
const OU = 'OuBaniNaim1';
const ROOT_OU = 'OuPalestin1';
const FIRST = 'AtFirstNam1';
const DE_REMARKS = 'DeRemarks01';
const DE_WEIGHT = 'DeWeightKg1';
const ADMIN = { username: 'admin', password: 'district' };
const NURSE = { username: 'nurse1', password: 'Nurse1!clinic' };
const HEADERS = { 'X-Requested-With': 'XMLHttpRequest', Accept: 'application/json' };

const results = {
  date: new Date().toISOString(),
  mode: cfg.smoke ? 'smoke' : 'full',
  command: `node tests/bench/run.mjs ${process.argv.slice(2).join(' ')}`.trim(),
  machine: machineInfo(),
  config: { ...cfg, out: undefined, simBin: undefined, repeatsAt: undefined, repeatsBySize: Object.fromEntries(cfg.sizes.map((s) => [s, cfg.repeatsAt(s)])) },
  figures: { P2: {}, P3: {}, P7: {}, P8: {} },
  targets: [],
  errors: [],
};

function machineInfo() {
  let cpu = cpus()[0]?.model ?? 'unknown';
  let cores = cpus().length;
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8');
    cpu = info.match(/^model name\s*:\s*(.+)$/m)?.[1]?.trim() ?? cpu;
    cores = (info.match(/^processor\s*:/gm) ?? []).length || cores;
  } catch { /* not Linux */ }
  return { cpu, cores, memoryGiB: Number((totalmem() / 2 ** 30).toFixed(1)), kernel: release(), node: process.version };
}

const log = (...a) => console.error(`[bench ${((performance.now() - T0) / 1000).toFixed(0).padStart(4)}s]`, ...a);
const T0 = performance.now();

/** Runs one measurement; a failure is recorded (the run then exits non-zero) and the rest goes on. */
async function measure(name, fn) {
  try {
    return await fn();
  } catch (error) {
    log(`FAILED ${name}: ${error.stack ?? error}`);
    results.errors.push({ measurement: name, error: String(error.message ?? error) });
    return null;
  }
}

// ---------------------------------------------------------------- browser helpers
const ARGS = ['--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];

async function openBench(context, base, hash = '') {
  const page = await context.newPage();
  page.on('pageerror', (e) => log('[page error]', e.message));
  await page.goto(`${base}/bench.html${hash}`);
  await page.waitForFunction(() => window.benchMarks?.done, null, { timeout: 60000, polling: 50 });
  const marks = await page.evaluate(() => window.benchMarks);
  if (marks.error) throw new Error(`bench page: ${marks.error}`);
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 20000, polling: 50 });
  return page;
}

async function appCall(page, method, ...args) {
  const r = await page.evaluate(async ({ method, args }) => {
    try {
      return { ok: true, value: await window.trackerOffline[method](...args) };
    } catch (e) {
      return { ok: false, code: e.code, message: e.message };
    }
  }, { method, args });
  if (!r.ok) throw new Error(`app.${method}: ${r.code} ${r.message}`);
  return r.value;
}

async function timedLogin(page, user) {
  return page.evaluate(async ({ username, password }) => {
    const t = performance.now();
    const outcome = await window.trackerOffline.login(username, password);
    return { ms: performance.now() - t, mode: outcome.mode };
  }, user);
}

// ---------------------------------------------------------------- P6: shipped size
function measureSize() {
  const files = ['pkg/tracker_offline_bg.wasm', 'pkg/tracker_offline.js', 'tracker-offline.js', 'sw.js'];
  const sizes = {};
  for (const f of files) {
    const bytes = readFileSync(join(ROOT, 'www', f));
    sizes[f] = { bytes: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length };
  }
  const wasmGlue = sizes['pkg/tracker_offline_bg.wasm'].gzip + sizes['pkg/tracker_offline.js'].gzip;
  const all = Object.values(sizes).reduce((s, x) => s + x.gzip, 0);
  results.figures.P6 = { files: sizes, wasmAndGlueGzipBytes: wasmGlue, allShippedGzipBytes: all };
  target('P6', 'wasm + JS glue, gzipped', wasmGlue / 1024, '<=', 250, 'KB');
}

function target(id, what, value, op, goal, unit) {
  const met = value === null || value === undefined ? null : op === '<=' ? value <= goal : value >= goal;
  results.targets.push({ id, what, value: value === null || value === undefined ? null : Number(value.toFixed(3)), op, target: goal, unit, met });
}

// ---------------------------------------------------------------- phase A: P1, P4, P5
async function phaseFlush(browser, www) {
  const sim = new BenchSim({ binary: cfg.simBin, www, trackedEntities: cfg.flushSimTeis });
  await sim.start();
  log(`flush sim ${sim.url} with ${cfg.flushSimTeis} TEIs`);
  const base = sim.url;
  const contexts = [];
  try {
    // Existing records to write to, as the nurse sees them.
    const enrollments = (await sim.get(`/api/enrollments?ou=${OU}&program=${P}&programStatus=ACTIVE&paging=false`)).enrollments;
    const events = (await sim.get(`/api/events.json?orgUnit=${OU}&program=${P}&programStage=${ANC}&paging=false`)).events;
    if (!enrollments.length || !events.length) throw new Error('the generated database has no active enrollments or events');
    log(`${enrollments.length} active enrollments, ${events.length} ANC events at ${OU}`);

    // Three browser contexts, prepared online: P1 + P4, P5 (ours), P5 (Workbox).
    const ctxLogin = await browser.newContext();
    const ctxOurs = await browser.newContext();
    const ctxWb = await browser.newContext();
    contexts.push(ctxLogin, ctxOurs, ctxWb);
    const pageLogin = await openBench(ctxLogin, base);
    let pageOurs = await openBench(ctxOurs, base);
    for (const page of [pageLogin, pageOurs]) {
      const l = await timedLogin(page, NURSE);
      if (l.mode !== 'online') throw new Error(`online login was ${l.mode}`);
      await appCall(page, 'download', {});
    }
    const openWriter = async (context) => {
      const page = await context.newPage(); // opened online: the shell cache does not hold it
      await page.goto(`${base}/bench-writer.html`);
      await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 20000 });
      return page;
    };
    const writer = await openWriter(ctxOurs);
    const loginWriter = await openWriter(ctxLogin);
    const pageWb = await ctxWb.newPage();
    await pageWb.goto(`${base}/wb/index.html`);
    await pageWb.waitForFunction(() => window.wbReady === true, null, { timeout: 30000 });

    await sim.kill();
    log('sim killed: offline');

    // P1: offline login beside WebCrypto PBKDF2 alone (from JS, same password, salt size and
    // iterations). The shipped wasm exports no KDF of its own for benchmarks.
    await measure('P1', async () => {
      await appCall(pageLogin, 'logout');
      const p1 = await pageLogin.evaluate(async ({ user, repeats, iterations }) => {
        const salt = crypto.getRandomValues(new Uint8Array(16));
        const enc = new TextEncoder();
        const out = { login: [], webCrypto: [], modes: [] };
        const time = async (fn) => { const t = performance.now(); await fn(); return performance.now() - t; };
        for (let r = 0; r < repeats; r++) {
          out.login.push(await time(async () => {
            const o = await window.trackerOffline.login(user.username, user.password);
            out.modes.push(o.mode);
          }));
          await window.trackerOffline.logout();
          out.webCrypto.push(await time(async () => {
            const key = await crypto.subtle.importKey('raw', enc.encode(user.password), 'PBKDF2', false, ['deriveBits']);
            await crypto.subtle.deriveBits({ name: 'PBKDF2', hash: 'SHA-256', salt, iterations }, key, 256);
          }));
        }
        return out;
      }, { user: NURSE, repeats: cfg.p1Repeats, iterations: cfg.iterations });
      if (p1.modes.some((m) => m !== 'offline')) throw new Error(`login modes ${p1.modes}`);
      const fig = {
        iterations: cfg.iterations,
        offlineLoginMs: summary(p1.login),
        webCryptoMs: summary(p1.webCrypto),
      };
      fig.ratioLoginToWebCrypto = Number((fig.offlineLoginMs.median / fig.webCryptoMs.median).toFixed(3));
      results.figures.P1 = fig;
      target('P1', 'offline login / WebCrypto PBKDF2 (medians)', fig.ratioLoginToWebCrypto, '<=', 1.2, 'x');
      log(`P1 login ${fig.offlineLoginMs.median} ms, WebCrypto ${fig.webCryptoMs.median} ms`);
    });

    // P4: one data value written offline (PUT /api/events/{ev}/{de}), as Tracker Capture saves a field.
    await measure('P4', async () => {
      const l = await timedLogin(pageLogin, NURSE);
      if (l.mode !== 'offline') throw new Error(`login mode ${l.mode}`);
      const writes = [];
      for (let i = 0; i < cfg.p4Writes + 3; i++) {
        const ev = events[i % events.length];
        writes.push({
          path: `/api/events/${ev.event}/${DE_WEIGHT}`,
          body: {
            event: ev.event, orgUnit: ev.orgUnit, program: P, programStage: ANC, status: ev.status,
            trackedEntityInstance: ev.trackedEntityInstance,
            dataValues: [{ dataElement: DE_WEIGHT, value: String(50 + (i % 40)) + '.5', providedElsewhere: false }],
          },
        });
      }
      const times = await writeSequentially(pageLogin, 'PUT', writes);
      const fig = { writes: cfg.p4Writes, warmupsDropped: 3, firstMs: Number(times[0].toFixed(2)), ms: summary(times.slice(3)) };
      results.figures.P4 = fig;
      target('P4', 'offline write to response, p95', fig.ms.p95, '<=', 15, 'ms');
      log(`P4 p50 ${fig.ms.median} ms, p95 ${fig.ms.p95} ms`);

      // The same writes with as many creates queued as P5 flushes (5,000) before them: queued
      // from a page without a TrackerOffline instance (as P5's), then the app page writes again.
      const runId = Date.now().toString(36);
      const today = new Date().toISOString().slice(0, 10);
      const creates = Array.from({ length: cfg.flushWrites }, (_, i) => {
        const en = enrollments[i % enrollments.length];
        return {
          path: '/api/events.json',
          body: { events: [{ trackedEntityInstance: en.trackedEntityInstance, program: P, programStage: ANC, enrollment: en.enrollment, orgUnit: en.orgUnit, status: 'ACTIVE', eventDate: today, dataValues: [{ dataElement: DE_REMARKS, value: `bench-${runId}-q-${i}` }] }] },
        };
      });
      await writeSequentially(loginWriter, 'POST', creates);
      const pending = (await appCall(pageLogin, 'status')).pending;
      if (pending < cfg.flushWrites) throw new Error(`${pending} pending, expected at least ${cfg.flushWrites}`);
      const queuedTimes = await writeSequentially(pageLogin, 'PUT', writes);
      const queued = { queuedBefore: pending, writes: cfg.p4Writes, warmupsDropped: 3, ms: summary(queuedTimes.slice(3)) };
      results.figures.P4.withQueue = queued;
      target('P4q', `offline write to response with ${pending} entries queued, p95`, queued.ms.p95, '<=', 15, 'ms');
      log(`P4 with ${pending} queued: p50 ${queued.ms.median} ms, p95 ${queued.ms.p95} ms`);
    });
    await ctxLogin.close(); // its queued writes must not reach the sim during P5

    // P5: the same creates queued offline by our service worker and by Workbox's Queue.
    await measure('P5', async () => {
      const runId = Date.now().toString(36);
      const today = new Date().toISOString().slice(0, 10);
      const bodyFor = (i, who) => {
        const en = enrollments[i % enrollments.length];
        return {
          events: [{
            trackedEntityInstance: en.trackedEntityInstance, program: P, programStage: ANC, enrollment: en.enrollment,
            orgUnit: en.orgUnit, status: 'ACTIVE', eventDate: today,
            dataValues: [{ dataElement: DE_REMARKS, value: `bench-${runId}-${who}-${i}` }],
          }],
        };
      };
      const n = cfg.flushWrites;
      const ours = Array.from({ length: n }, (_, i) => ({ path: '/api/events.json', body: bodyFor(i, 'o') }));
      const wb = Array.from({ length: n }, (_, i) => ({ path: '/api/events.json', body: bodyFor(i, 'w') }));
      // Workbox first: its queue waits in IndexedDB while ours is filled and flushed.
      let t = performance.now();
      const wbQueue = await writeSequentially(pageWb, 'POST', wb, sim.auth(`${NURSE.username}:${NURSE.password}`), 202);
      const wbQueueS = (performance.now() - t) / 1000;
      const wbQueued = await pageWb.evaluate(() => new Promise((resolve) => {
        const ch = new MessageChannel();
        ch.port1.onmessage = (e) => resolve(e.data.queued);
        navigator.serviceWorker.controller.postMessage({ type: 'count' }, [ch.port2]);
      }));
      log(`P5 Workbox: ${n} creates queued in ${wbQueueS.toFixed(1)} s, ${wbQueued} in its queue`);
      if (wbQueued !== n) throw new Error(`Workbox queue holds ${wbQueued}, expected ${n}`);

      // Ours: the writes come from a page under the app's worker without a TrackerOffline
      // instance (the app page refreshes its status after every queued write, which reads the
      // whole outbox: see the note on P5 queueing in the README).
      await pageOurs.close();
      t = performance.now();
      const oursQueue = await writeSequentially(writer, 'POST', ours);
      const oursQueueS = (performance.now() - t) / 1000;
      log(`P5 ours: ${n} creates queued in ${oursQueueS.toFixed(1)} s (first 100 p50 ${summary(oursQueue.slice(0, 100)).median} ms, last 100 p50 ${summary(oursQueue.slice(-100)).median} ms)`);

      pageOurs = await openBench(ctxOurs, base); // offline: the shell comes from the worker
      const pending = (await appCall(pageOurs, 'status')).pending;
      if (pending !== n) throw new Error(`ours: ${pending} pending, expected ${n}`);

      // Ours: from the server's return to an empty outbox (whichever flush sends it: the
      // worker may start one on its own as soon as the server answers).
      await sim.start();
      await sim.clearLog();
      t = performance.now();
      let report;
      for (let i = 0; i < 20; i++) {
        report = await appCall(pageOurs, 'sync');
        if (report.remaining === 0) break;
      }
      const oursMs = performance.now() - t;
      const oursStatus = await appCall(pageOurs, 'status');
      const oursCounters = await sim.counters();
      const oursServerMs = serverMs(await sim.requests());
      log(`P5 ours flushed in ${oursMs.toFixed(0)} ms: ${JSON.stringify(report)}; sim saw ${oursCounters.total} requests`);
      if (oursStatus.pending !== 0 || oursStatus.failed !== 0) throw new Error(`ours: pending ${oursStatus.pending}, failed ${oursStatus.failed}`);

      // Workbox: its sync event (as the browser fires it when back online) to an empty queue.
      await sim.clearLog();
      const cdp = await ctxWb.newCDPSession(pageWb);
      const regs = new Map();
      cdp.on('ServiceWorker.workerRegistrationUpdated', ({ registrations }) => registrations.forEach((r) => regs.set(r.scopeURL, r.registrationId)));
      await cdp.send('ServiceWorker.enable');
      const scope = `${base}/wb/`;
      for (let i = 0; i < 100 && !regs.has(scope); i++) await new Promise((r) => setTimeout(r, 50));
      if (!regs.has(scope)) throw new Error(`no registration for ${scope}: ${[...regs.keys()]}`);
      await pageWb.evaluate(() => { window.wbMessages.length = 0; });
      t = performance.now();
      await cdp.send('ServiceWorker.dispatchSyncEvent', { origin: base, registrationId: regs.get(scope), tag: 'workbox-background-sync:bench-events', lastChance: false });
      const wbHandle = await pageWb.waitForFunction(() => window.wbMessages.find((m) => m.type === 'wb-replayed'), null, { timeout: 900000, polling: 20 });
      const wbMs = performance.now() - t;
      const wbResult = await wbHandle.jsonValue();
      const wbCounters = await sim.counters();
      const wbServerMs = serverMs(await sim.requests());
      log(`P5 Workbox replayed in ${wbMs.toFixed(0)} ms (${JSON.stringify(wbResult)}); sim saw ${wbCounters.total} requests`);
      if (wbResult.error || wbResult.left !== 0) throw new Error(`Workbox replay: ${JSON.stringify(wbResult)}`);

      // Duplicates and losses, counted in the sim's data: each marker must be stored once.
      const stored = (await sim.get(`/api/events.json?orgUnit=${OU}&program=${P}&programStage=${ANC}&paging=false`)).events;
      const seen = { o: new Map(), w: new Map() };
      for (const ev of stored) {
        const v = ev.dataValues?.find((d) => d.dataElement === DE_REMARKS)?.value ?? '';
        const m = v.match(new RegExp(`^bench-${runId}-(o|w)-(\\d+)$`));
        if (m) seen[m[1]].set(m[2], (seen[m[1]].get(m[2]) ?? 0) + 1);
      }
      const tally = (map) => ({
        stored: [...map.values()].reduce((a, b) => a + b, 0),
        duplicates: [...map.values()].reduce((a, c) => a + Math.max(0, c - 1), 0),
        missing: n - map.size,
      });
      const writeRequests = (c) => Object.entries(c.byRoute).filter(([k]) => !k.startsWith('GET ')).reduce((a, [, v]) => a + v, 0);
      const fig = {
        writes: n,
        ours: {
          flushMs: Number(oursMs.toFixed(1)), writesPerSecond: Number((n / (oursMs / 1000)).toFixed(1)),
          serverMs: oursServerMs, requests: oursCounters.total, writeRequests: writeRequests(oursCounters), byRoute: oursCounters.byRoute,
          queueMs: summary(oursQueue), queueMsFirst100: summary(oursQueue.slice(0, 100)), queueMsLast100: summary(oursQueue.slice(-100)), queueSeconds: Number(oursQueueS.toFixed(2)), ...tally(seen.o),
        },
        workbox: {
          flushMs: Number(wbMs.toFixed(1)), writesPerSecond: Number((n / (wbMs / 1000)).toFixed(1)),
          serverMs: wbServerMs, requests: wbCounters.total, writeRequests: writeRequests(wbCounters), byRoute: wbCounters.byRoute,
          queueMs: summary(wbQueue), queueMsFirst100: summary(wbQueue.slice(0, 100)), queueMsLast100: summary(wbQueue.slice(-100)), queueSeconds: Number(wbQueueS.toFixed(2)), ...tally(seen.w),
        },
      };
      fig.speedup = Number((wbMs / oursMs).toFixed(2));
      results.figures.P5 = fig;
      target('P5', 'flush speed-up vs workbox-background-sync', fig.speedup, '>=', 20, 'x');
      target('P5dup', 'duplicates stored (ours)', fig.ours.duplicates, '<=', 0, '');
      log(`P5 ours ${oursMs.toFixed(0)} ms vs Workbox ${wbMs.toFixed(0)} ms: ${fig.speedup}x; duplicates ours ${fig.ours.duplicates} (missing ${fig.ours.missing}), Workbox ${fig.workbox.duplicates} (missing ${fig.workbox.missing})`);
      if (fig.ours.missing !== 0) throw new Error(`ours: ${fig.ours.missing} writes missing on the sim`);
    });

    // P5m: offline updates to existing visits, flushed with the merge (the server's current
    // copies read first, only the changed values sent), beside the same updates sent naively
    // in the same run: whole events in bulk POSTs, as the flush did before the merge (and as
    // it would revert every value someone else changed meanwhile).
    await measure('P5m', async () => {
      const n = cfg.mergeWrites;
      await sim.kill();
      const runId = Date.now().toString(36);
      const targets = Array.from({ length: n }, (_, i) => events[i % events.length]);
      const valueOf = (i, who) => `${who}-${runId}-${i}`;
      const updates = targets.map((ev, i) => ({
        path: `/api/events/${ev.event}/${DE_REMARKS}`,
        body: {
          event: ev.event, orgUnit: ev.orgUnit, program: P, programStage: ANC, status: ev.status,
          trackedEntityInstance: ev.trackedEntityInstance, dataValues: [{ dataElement: DE_REMARKS, value: valueOf(i, 'm') }],
        },
      }));
      await writeSequentially(writer, 'PUT', updates);
      const pending = (await appCall(pageOurs, 'status')).pending;
      if (pending !== n) throw new Error(`P5m: ${pending} pending, expected ${n}`);
      await sim.start();
      await sim.clearLog();
      let t = performance.now();
      let report;
      for (let i = 0; i < 20; i++) {
        report = await appCall(pageOurs, 'sync');
        if (report.remaining === 0) break;
      }
      const oursMs = performance.now() - t;
      const oursCounters = await sim.counters();
      const oursLog = await sim.requests();
      if (report.remaining !== 0 || report.failed !== 0) throw new Error(`P5m ours: ${JSON.stringify(report)}`);
      // Naive: the whole events (as the server holds them now, with the new value), 250 per POST.
      const current = (await sim.get(`/api/events.json?orgUnit=${OU}&program=${P}&programStage=${ANC}&paging=false`)).events;
      const byUid = new Map(current.map((e) => [e.event, e]));
      const whole = targets.map((ev, i) => {
        const e = structuredClone(byUid.get(ev.event));
        e.dataValues = (e.dataValues ?? []).filter((d) => d.dataElement !== DE_REMARKS).concat([{ dataElement: DE_REMARKS, value: valueOf(i, 'n') }]);
        return e;
      });
      await sim.clearLog();
      t = performance.now();
      for (let i = 0; i < whole.length; i += 250) {
        const r = await fetch(`${sim.url}/api/events?strategy=CREATE_AND_UPDATE`, {
          method: 'POST',
          headers: { Authorization: sim.auth(`${NURSE.username}:${NURSE.password}`), 'Content-Type': 'application/json', 'X-Requested-With': 'XMLHttpRequest' },
          body: JSON.stringify({ events: whole.slice(i, i + 250) }),
        });
        if (!r.ok) throw new Error(`P5m naive: ${r.status} ${(await r.text()).slice(0, 300)}`);
      }
      const naiveMs = performance.now() - t;
      const naiveCounters = await sim.counters();
      const naiveLog = await sim.requests();
      const fig = {
        updates: n,
        distinctEvents: new Set(targets.map((e) => e.event)).size,
        ours: {
          flushMs: Number(oursMs.toFixed(1)), requests: oursCounters.total, byRoute: oursCounters.byRoute, serverMs: serverMs(oursLog),
          serverMsByRequest: oursLog.map((r) => `${r.method} ${r.path} ${Math.round(r.durationMs ?? 0)} ms`),
        },
        naive: { flushMs: Number(naiveMs.toFixed(1)), requests: naiveCounters.total, byRoute: naiveCounters.byRoute, serverMs: serverMs(naiveLog) },
      };
      fig.ratio = Number((oursMs / naiveMs).toFixed(2));
      results.figures.P5m = fig;
      target('P5m', 'flush of offline updates with merge reads / naive whole-record flush', fig.ratio, '<=', 2, 'x');
      log(`P5m ${n} updates (${fig.distinctEvents} visits): merge flush ${oursMs.toFixed(0)} ms (${oursCounters.total} requests; server ${fig.ours.serverMs.toFixed(0)} ms: ${fig.ours.serverMsByRequest.join(', ')}) vs naive ${naiveMs.toFixed(0)} ms (${naiveCounters.total} requests; server ${fig.naive.serverMs.toFixed(0)} ms): ${fig.ratio}x`);
    });
  } finally {
    for (const c of contexts) await c.close().catch(() => {});
    await sim.dispose();
  }
}

/** Time the sim spent handling the logged requests (sum of their durationMs). */
function serverMs(log) {
  return log.reduce((a, r) => a + (r.durationMs ?? 0), 0);
}

/** Sends writes one after the other from the page; returns each one's time to response (ms). */
async function writeSequentially(page, method, writes, authorization = null, expectStatus = null) {
  return page.evaluate(async ({ method, writes, authorization, expectStatus, HEADERS }) => {
    const headers = { ...HEADERS, 'Content-Type': 'application/json' };
    if (authorization) headers.Authorization = authorization;
    const times = [];
    for (const w of writes) {
      const t = performance.now();
      const r = await fetch(w.path, { method, headers, body: JSON.stringify(w.body) });
      await r.arrayBuffer();
      times.push(performance.now() - t);
      if (expectStatus ? r.status !== expectStatus : !r.ok) throw new Error(`${method} ${w.path}: ${r.status}`);
    }
    return times;
  }, { method, writes, authorization, expectStatus, HEADERS });
}

// ---------------------------------------------------------------- phase B: P2, P3, P7 at size N
async function phaseSize(browser, www, size) {
  const sim = new BenchSim({ binary: cfg.simBin, www, trackedEntities: size });
  let t = performance.now();
  await sim.start();
  const generatedS = (performance.now() - t) / 1000;
  log(`size ${size}: sim ${sim.url} generated in ${generatedS.toFixed(1)} s`);
  const base = sim.url;
  let keep = null;
  try {
    // Reads to replay offline: LIKE filters that fill a 50-row page, working-list pages, TEIs.
    const firstPage = await sim.get(`/api/trackedEntityInstances/query.json?ou=${OU}&ouMode=SELECTED&program=${P}&pageSize=50&page=1&totalPages=true`);
    const col = firstPage.headers.findIndex((h) => h.name === FIRST);
    const totalAtClinic = firstPage.metaData.pager.total;
    const candidates = new Set();
    for (const row of firstPage.rows) {
      const name = String(row[col]).toLowerCase();
      candidates.add(name.slice(0, 2));
      candidates.add(name.slice(1, 3));
    }
    const tried = [];
    for (const value of candidates) {
      if (tried.filter((l) => l.rows === 50).length >= 8 || tried.length >= 30) break;
      const path = `/api/trackedEntityInstances/query.json?ou=${OU}&ouMode=SELECTED&program=${P}&attribute=${FIRST}:LIKE:${encodeURIComponent(value)}&pageSize=50&page=1`;
      tried.push({ value, path, rows: (await sim.get(path)).rows.length });
    }
    // Full pages when the database is large enough; at smoke sizes the fullest ones.
    tried.sort((a, b) => b.rows - a.rows);
    const likes = tried.filter((l) => l.rows === 50).slice(0, 8);
    if (!likes.length) likes.push(...tried.filter((l) => l.rows > 0).slice(0, 3));
    if (!likes.length) throw new Error('no LIKE filter matches');
    const pages = Math.max(1, Math.min(40, Math.floor(totalAtClinic / 50)));
    const listPaths = Array.from({ length: pages }, (_, i) => `/api/trackedEntityInstances/query.json?ou=${OU}&ouMode=SELECTED&program=${P}&pageSize=50&page=${1 + ((i * 7) % pages)}&totalPages=true`);
    const uids = [];
    for (let p = 1; p <= Math.min(4, pages); p++) {
      const g = p === 1 ? firstPage : await sim.get(`/api/trackedEntityInstances/query.json?ou=${OU}&ouMode=SELECTED&program=${P}&pageSize=50&page=${p * 3}`);
      uids.push(...g.rows.map((r) => r[0]));
    }
    const dashPaths = uids.map((u) => `/api/trackedEntityInstances/${u}.json?program=${P}&fields=*`);

    // P2: download + encrypted store, beside plain IndexedDB writes of the same pages, in the same page.
    const ours = [];
    const plain = [];
    let teis = null;
    await measure(`P2@${size}`, async () => {
      for (let r = 0; r < cfg.repeatsAt(size); r++) {
        const ctx = await browser.newContext();
        const page = await openBench(ctx, base);
        const l = await timedLogin(page, ADMIN);
        if (l.mode !== 'online') throw new Error(`online login was ${l.mode}`);
        const order = r % 2 === 0 ? ['ours', 'plain'] : ['plain', 'ours'];
        for (const which of order) {
          if (which === 'ours') {
            const d = await page.evaluate(async () => {
              const t = performance.now();
              const report = await window.trackerOffline.download({});
              return { ms: performance.now() - t, report };
            });
            if (d.report.trackedEntities !== size) throw new Error(`downloaded ${d.report.trackedEntities} of ${size} TEIs`);
            teis = d.report.trackedEntities;
            ours.push({ ms: d.ms, teis: d.report.trackedEntities, pages: d.report.pages });
          } else {
            const d = await plainDownload(page, ADMIN);
            if (d.teis !== size) throw new Error(`plain stored ${d.teis} of ${size} TEIs`);
            plain.push(d);
          }
        }
        log(`P2@${size} repeat ${r + 1}: ours ${(ours.at(-1).ms / 1000).toFixed(1)} s, plain ${(plain.at(-1).ms / 1000).toFixed(1)} s`);
        if (keep) await keep.ctx.close();
        keep = { ctx, page };
      }
      const oursRate = ours.map((d) => d.teis / (d.ms / 1000));
      const plainRate = plain.map((d) => d.teis / (d.ms / 1000));
      const ratios = ours.map((d, i) => oursRate[i] / plainRate[i]);
      const fig = {
        trackedEntities: teis, pageSize: 50, pages: ours[0].pages, eventsPerTei: null,
        oursSeconds: summary(ours.map((d) => d.ms / 1000)), plainSeconds: summary(plain.map((d) => d.ms / 1000)),
        oursTeisPerSecond: summary(oursRate, 1), plainTeisPerSecond: summary(plainRate, 1),
        ratio: summary(ratios, 3),
      };
      results.figures.P2[size] = fig;
      log(`P2@${size}: ours ${fig.oursTeisPerSecond.median} TEI/s, plain ${fig.plainTeisPerSecond.median} TEI/s, ratio ${fig.ratio.median}`);
    });
    if (!keep) throw new Error(`no downloaded copy at ${size}`);

    await sim.kill();
    const page = keep.page;

    // P3: offline reads through the service worker, as the app calls them.
    await measure(`P3@${size}`, async () => {
      const kinds = {
        grid: likes.map((l) => l.path),
        list: listPaths,
        dashboard: dashPaths,
      };
      const r = await page.evaluate(async ({ kinds, samples, HEADERS }) => {
        const get = async (path) => {
          const t = performance.now();
          const res = await fetch(path, { headers: HEADERS });
          const body = await res.json();
          const ms = performance.now() - t;
          if (res.status !== 200 || !['local', 'cache'].includes(res.headers.get('x-tracker-offline'))) {
            throw new Error(`${path}: ${res.status} ${res.headers.get('x-tracker-offline')} ${JSON.stringify(body).slice(0, 200)}`);
          }
          return { ms, rows: body.rows?.length ?? null };
        };
        const out = { cold: {}, ms: {}, rows: {} };
        for (const [k, paths] of Object.entries(kinds)) {
          out.cold[k] = (await get(paths[0])).ms;
          out.ms[k] = [];
          out.rows[k] = new Set();
        }
        for (let i = 0; i < samples; i++) {
          for (const [k, paths] of Object.entries(kinds)) {
            const g = await get(paths[(i + 1) % paths.length]);
            out.ms[k].push(g.ms);
            if (g.rows !== null) out.rows[k].add(g.rows);
          }
        }
        for (const k of Object.keys(kinds)) out.rows[k] = [...out.rows[k]];
        return out;
      }, { kinds, samples: cfg.p3Samples, HEADERS });
      const fig = {
        samples: cfg.p3Samples,
        likeFilters: likes.map((l) => l.value),
        gridLikeMs: summary(r.ms.grid), workingListMs: summary(r.ms.list), dashboardMs: summary(r.ms.dashboard),
        firstReadMs: Object.fromEntries(Object.entries(r.cold).map(([k, v]) => [k, Number(v.toFixed(1))])),
        rowsPerPage: r.rows,
      };
      results.figures.P3[size] = fig;
      log(`P3@${size}: grid p95 ${fig.gridLikeMs.p95} ms, list p95 ${fig.workingListMs.p95} ms, dashboard p95 ${fig.dashboardMs.p95} ms`);
    });

    // P7: page load to ready offline (log in, first working-list page shown), minus the KDF.
    await measure(`P7@${size}`, async () => {
      const runs = [];
      // The first load after a download opens every index row and writes the snapshot (once per
      // download): a run of its own, reported apart; then a pause for the worker to finish
      // writing the snapshot, as between a download and the next shift's login.
      let firstAfterDownload = null;
      for (let r = -1; r < cfg.repeats; r++) {
        await appCall(page, 'logout');
        const hash = `#login=${ADMIN.username}:${ADMIN.password}&query=${encodeURIComponent(listPaths[0])}`;
        await page.goto('about:blank'); // a full load, not a same-document hash change
        await page.goto(`${base}/bench.html${hash}`);
        await page.waitForFunction(() => window.benchMarks?.done, null, { timeout: 120000, polling: 20 });
        const marks = await page.evaluate(() => window.benchMarks);
        if (marks.error || marks.mode !== 'offline' || marks.status !== 200 || !marks.local) throw new Error(`P7 marks ${JSON.stringify(marks)}`);
        const kdf = await page.evaluate(async (iterations) => {
          const t = performance.now();
          const key = await crypto.subtle.importKey('raw', new TextEncoder().encode('a password'), 'PBKDF2', false, ['deriveBits']);
          await crypto.subtle.deriveBits({ name: 'PBKDF2', hash: 'SHA-256', salt: new Uint8Array(16), iterations }, key, 256);
          return performance.now() - t;
        }, cfg.iterations);
        if (r < 0) {
          firstAfterDownload = { readyMs: Number(marks.ready.toFixed(1)), firstPageMs: Number((marks.ready - marks.loggedIn).toFixed(1)) };
          await new Promise((resolve) => setTimeout(resolve, Math.max(2000, size / 10)));
          continue;
        }
        runs.push({
          answeredBy: marks.local,
          readyMs: marks.ready, startMs: marks.started, loginMs: marks.loggedIn - marks.started,
          firstPageMs: marks.ready - marks.loggedIn, kdfMs: kdf, readyMinusKdfMs: marks.ready - kdf,
        });
      }
      const pick = (k) => summary(runs.map((x) => x[k]));
      const fig = {
        readyMs: pick('readyMs'), kdfMs: pick('kdfMs'), readyMinusKdfMs: pick('readyMinusKdfMs'),
        parts: { loadAndStartMs: pick('startMs'), loginMs: pick('loginMs'), firstPageMs: pick('firstPageMs') },
        // The first page's x-tracker-offline header: `local` (the clinic copy, its index loaded
        // after the login) or `cache` (a sealed copy of an earlier server answer to that URL).
        answeredBy: [...new Set(runs.map((x) => x.answeredBy))],
        firstPageEachRunMs: runs.map((x) => Number(x.firstPageMs.toFixed(1))),
        firstAfterDownload,
      };
      results.figures.P7[size] = fig;
      log(`P7@${size}: ready ${fig.readyMs.median} ms, minus KDF ${fig.readyMinusKdfMs.median} ms (start ${fig.parts.loadAndStartMs.median}, login ${fig.parts.loginMs.median}, first page ${fig.parts.firstPageMs.median}; each run's first page ${fig.firstPageEachRunMs.join(', ')} ms, answered by ${fig.answeredBy.join(', ')}; the first after the download: ready ${firstAfterDownload?.readyMs} ms)`);
    });

    // P8: memory of the page and of the worker after an unlock (the last P7 load: logged in
    // offline, the first page shown) and after a full offline day, beside the raw size of the
    // clinic copy (the bytes of the pages the download fetched, as the baseline of P2 read them).
    await measure(`P8@${size}`, async () => {
      const worker = await attachToWorker(await browser.newBrowserCDPSession(), `${base}/sw.js`);
      const afterUnlock = await memoryOf(page, worker);
      const day = await offlineDay(page, size, { grid: likes.map((l) => l.path), list: listPaths, dashboard: dashPaths });
      const afterDay = await memoryOf(page, worker);
      const rawBytes = plain.at(-1)?.bytes;
      if (!rawBytes) throw new Error('the raw size of the copy was not measured (P2 baseline)');
      const fig = {
        rawBytes, afterUnlock, afterDay, day,
        ratioAfterUnlock: Number((afterUnlock.totalBytes / rawBytes).toFixed(3)),
        ratioAfterDay: Number((afterDay.totalBytes / rawBytes).toFixed(3)),
      };
      results.figures.P8[size] = fig;
      const mb = (b) => (b / 1048576).toFixed(1);
      log(`P8@${size}: raw ${mb(rawBytes)} MB; after unlock ${mb(afterUnlock.totalBytes)} MB (page JS ${mb(afterUnlock.page.jsHeapBytes)}, page wasm ${mb(afterUnlock.page.wasmBytes)}, worker JS ${mb(afterUnlock.worker.jsHeapBytes)}, worker wasm ${mb(afterUnlock.worker.wasmBytes)}); after the day ${mb(afterDay.totalBytes)} MB (worker wasm ${mb(afterDay.worker.wasmBytes)}); ${day.requests} requests in ${day.seconds} s`);
    });
  } finally {
    await keep?.ctx.close().catch(() => {});
    await sim.dispose();
  }
}

/**
 * A full offline day at the clinic (P8), through the service worker as the app sends it: reads
 * (working lists, searches, dashboards, in turn), values saved on visits seen on the dashboards,
 * and registrations each with an ANC visit of three values (Tracker Capture's seven requests).
 */
async function offlineDay(page, size, paths) {
  const t = performance.now();
  const kinds = Object.values(paths).filter((list) => list.length);
  const reads = Array.from({ length: cfg.day.reads }, (_, i) => kinds[i % kinds.length][Math.floor(i / kinds.length) % kinds[i % kinds.length].length]);
  const visits = await page.evaluate(async ({ reads, HEADERS }) => {
    const seen = new Map();
    for (const path of reads) {
      const r = await fetch(path, { headers: HEADERS });
      const body = await r.json();
      if (r.status !== 200) throw new Error(`${path}: ${r.status} ${JSON.stringify(body).slice(0, 200)}`);
      for (const en of body.enrollments ?? []) {
        for (const ev of en.events ?? []) {
          if (ev.programStage === 'PsAncVisit1') seen.set(ev.event, { event: ev.event, orgUnit: ev.orgUnit, status: ev.status, tei: body.trackedEntityInstance });
        }
      }
    }
    return [...seen.values()];
  }, { reads, HEADERS });
  if (visits.length < cfg.day.values) throw new Error(`the day's dashboards showed ${visits.length} ANC visits, ${cfg.day.values} wanted`);
  const values = visits.slice(0, cfg.day.values).map((v, i) => ({
    path: `/api/events/${v.event}/${DE_WEIGHT}`,
    body: {
      event: v.event, orgUnit: v.orgUnit, program: P, programStage: ANC, status: v.status, trackedEntityInstance: v.tei,
      dataValues: [{ dataElement: DE_WEIGHT, value: `${55 + (i % 30)}.5`, providedElsewhere: false }],
    },
  }));
  await writeSequentially(page, 'PUT', values);
  const run = Date.now() % 9_000_000;
  for (let i = 0; i < cfg.day.registrations; i++) {
    await registerAndVisit(page, { nid: String(700_000_000 + run * 10 + i), first: `Day${i}`, last: `Bench${size}`, ou: OU });
  }
  const requests = reads.length + values.length + 7 * cfg.day.registrations;
  return { reads: reads.length, values: values.length, registrations: cfg.day.registrations, requests, seconds: Number(((performance.now() - t) / 1000).toFixed(1)) };
}

/**
 * The baseline of P2: the same pages the library downloads (legacy API on 2.40, page size 50,
 * same Authorization), parsed and put unencrypted into a plain IndexedDB store, one
 * transaction per page, awaited before the next page, as the library does.
 */
async function plainDownload(page, user) {
  return page.evaluate(async ({ user, ROOT_OU, P }) => {
    const auth = `Basic ${btoa(`${user.username}:${user.password}`)}`;
    const name = `plain-bench-${Math.random().toString(36).slice(2)}`;
    const db = await new Promise((resolve, reject) => {
      const req = indexedDB.open(name, 1);
      req.onupgradeneeded = () => req.result.createObjectStore('teis');
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    const t = performance.now();
    let teis = 0;
    let pages = 0;
    let bytes = 0;
    const decoder = new TextDecoder();
    for (let p = 1; ; p++) {
      const url = `/api/trackedEntityInstances.json?ou=${ROOT_OU}&ouMode=DESCENDANTS&program=${P}&fields=*&includeDeleted=true&totalPages=true&page=${p}&pageSize=50`;
      const res = await fetch(url, { headers: { Authorization: auth, 'X-Requested-With': 'XMLHttpRequest', Accept: 'application/json' } });
      if (!res.ok) throw new Error(`${url}: ${res.status}`);
      const buffer = await res.arrayBuffer();
      const body = JSON.parse(decoder.decode(buffer));
      bytes += buffer.byteLength;
      pages += 1;
      const items = body.trackedEntityInstances;
      await new Promise((resolve, reject) => {
        const tx = db.transaction('teis', 'readwrite');
        const store = tx.objectStore('teis');
        for (const item of items) store.put(item, item.trackedEntityInstance);
        tx.oncomplete = resolve;
        tx.onerror = () => reject(tx.error);
        tx.onabort = () => reject(tx.error);
      });
      teis += items.length;
      const total = body.pager?.total;
      if (items.length < 50 || (total !== undefined && p * 50 >= total)) break;
    }
    const ms = performance.now() - t;
    db.close();
    return { ms, teis, pages, bytes };
  }, { user, ROOT_OU, P });
}

// ---------------------------------------------------------------- output
function table() {
  const f = results.figures;
  const rows = [];
  const row = (id, what, ours, base, value, goal) => rows.push([id, what, ours, base, value, goal]);
  const t = (id) => results.targets.find((x) => x.id === id);
  const verdict = (x) => (!x || x.met === null ? 'n/a' : x.met ? 'met' : 'MISSED');
  if (f.P1) {
    row('P1', `offline login, ${cfg.iterations.toLocaleString('en-US')} it.`, fmt(f.P1.offlineLoginMs, ' ms'),
      `WebCrypto ${fmt(f.P1.webCryptoMs, ' ms')}`,
      `${f.P1.ratioLoginToWebCrypto}x`, `<= 1.2x ${verdict(t('P1'))}`);
  }
  for (const size of cfg.sizes) {
    const d = f.P2[size];
    if (d) {
      row('P2', `download+store ${size.toLocaleString('en-US')} TEIs`, fmt(d.oursTeisPerSecond, ' TEI/s', 0),
        `plain IDB ${fmt(d.plainTeisPerSecond, ' TEI/s', 0)}`, `${d.ratio.median}x`, `>= 0.9x ${d.ratio.median >= 0.9 ? 'met' : 'MISSED'}`);
    }
  }
  for (const size of cfg.sizes) {
    const d = f.P3[size];
    if (d) {
      row('P3', `query page (LIKE) @${size.toLocaleString('en-US')}`, `p50 ${d.gridLikeMs.median} / p95 ${d.gridLikeMs.p95} ms`, '', `${d.gridLikeMs.p95} ms`, `<= 50 ms ${d.gridLikeMs.p95 <= 50 ? 'met' : 'MISSED'}`);
      row('P3', `working list page @${size.toLocaleString('en-US')}`, `p50 ${d.workingListMs.median} / p95 ${d.workingListMs.p95} ms`, '', `${d.workingListMs.p95} ms`, `<= 50 ms ${d.workingListMs.p95 <= 50 ? 'met' : 'MISSED'}`);
      row('P3', `dashboard (TEI fields=*) @${size.toLocaleString('en-US')}`, `p50 ${d.dashboardMs.median} / p95 ${d.dashboardMs.p95} ms`, '', `${d.dashboardMs.p95} ms`, `<= 20 ms ${d.dashboardMs.p95 <= 20 ? 'met' : 'MISSED'}`);
    }
  }
  if (f.P4) row('P4', 'offline write (PUT value) to response', `p50 ${f.P4.ms.median} / p95 ${f.P4.ms.p95} ms`, '', `${f.P4.ms.p95} ms`, `<= 15 ms ${verdict(t('P4'))}`);
  if (f.P4?.withQueue) {
    const q = f.P4.withQueue;
    row('P4', `the same, ${q.queuedBefore.toLocaleString('en-US')} entries queued`, `p50 ${q.ms.median} / p95 ${q.ms.p95} ms`, '', `${q.ms.p95} ms`, `<= 15 ms ${verdict(t('P4q'))}`);
  }
  if (f.P5m) {
    row('P5m', `flush ${f.P5m.updates.toLocaleString('en-US')} offline updates (merge reads included)`, `${(f.P5m.ours.flushMs / 1000).toFixed(2)} s, ${f.P5m.ours.requests} req`,
      `whole records ${(f.P5m.naive.flushMs / 1000).toFixed(2)} s, ${f.P5m.naive.requests} req`, `${f.P5m.ratio}x`, `<= 2x ${f.P5m.ratio <= 2 ? 'met' : 'MISSED'}`);
  }
  if (f.P5) {
    row('P5', `flush ${f.P5.writes.toLocaleString('en-US')} queued creates`, `${(f.P5.ours.flushMs / 1000).toFixed(2)} s, ${f.P5.ours.writeRequests} req, ${f.P5.ours.duplicates} dup`,
      `Workbox ${(f.P5.workbox.flushMs / 1000).toFixed(2)} s, ${f.P5.workbox.writeRequests} req, ${f.P5.workbox.duplicates} dup`,
      `${f.P5.speedup}x`, `>= 20x, 0 dup ${f.P5.speedup >= 20 && f.P5.ours.duplicates === 0 ? 'met' : 'MISSED'}`);
  }
  if (f.P6) row('P6', 'wasm + JS glue, gzipped', `${(f.P6.wasmAndGlueGzipBytes / 1024).toFixed(1)} KB`, `(all shipped ${(f.P6.allShippedGzipBytes / 1024).toFixed(1)} KB)`, `${(f.P6.wasmAndGlueGzipBytes / 1024).toFixed(1)} KB`, `<= 250 KB ${verdict(t('P6'))}`);
  for (const size of cfg.sizes) {
    const d = f.P7[size];
    if (d) {
      const first = d.firstAfterDownload ? `; the first after the download ${d.firstAfterDownload.readyMs.toLocaleString('en-US')} ms` : '';
      row('P7', `offline load to ready @${size.toLocaleString('en-US')}, minus KDF`, fmt(d.readyMinusKdfMs, ' ms'), `(KDF ${fmt(d.kdfMs, ' ms')}${first})`, `${d.readyMinusKdfMs.median} ms`, `<= 1000 ms ${d.readyMinusKdfMs.median <= 1000 ? 'met' : 'MISSED'}`);
    }
  }
  const mb = (b) => `${(b / 1048576).toFixed(1)} MB`;
  for (const size of cfg.sizes) {
    const d = f.P8[size];
    if (d) {
      row('P8', `memory after unlock @${size.toLocaleString('en-US')} (page + worker, JS + wasm)`, mb(d.afterUnlock.totalBytes), `raw copy ${mb(d.rawBytes)}`, `${d.ratioAfterUnlock}x`, `<= 3x ${d.ratioAfterUnlock <= 3 ? 'met' : 'MISSED'}`);
      row('P8', `memory after an offline day @${size.toLocaleString('en-US')}`, mb(d.afterDay.totalBytes), `raw copy ${mb(d.rawBytes)}`, `${d.ratioAfterDay}x`, `<= 3x ${d.ratioAfterDay <= 3 ? 'met' : 'MISSED'}`);
    }
  }
  const head = ['', 'measure', 'tracker-offline', 'baseline (same run)', 'value', 'target'];
  const md = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
  return md;
}

function addScaleTargets() {
  for (const size of cfg.sizes) {
    const p2 = results.figures.P2[size];
    if (p2) target(`P2@${size}`, 'encrypted / plain records/s (median of per-repeat ratios)', p2.ratio.median, '>=', 0.9, 'x');
    const p3 = results.figures.P3[size];
    if (p3) {
      target(`P3grid@${size}`, 'query page (LIKE) p95', p3.gridLikeMs.p95, '<=', 50, 'ms');
      target(`P3list@${size}`, 'working list page p95', p3.workingListMs.p95, '<=', 50, 'ms');
      target(`P3dash@${size}`, 'dashboard p95', p3.dashboardMs.p95, '<=', 20, 'ms');
    }
    const p7 = results.figures.P7[size];
    if (p7) target(`P7@${size}`, 'offline load to ready minus KDF (median)', p7.readyMinusKdfMs.median, '<=', 1000, 'ms');
    const p8 = results.figures.P8[size];
    if (p8) target(`P8@${size}`, 'memory (page + worker, JS heap + wasm) after an offline day / raw size of the copy', p8.ratioAfterDay, '<=', 3, 'x');
  }
}

// ---------------------------------------------------------------- main
async function main() {
  if (!existsSync(cfg.simBin)) throw new Error(`${cfg.simBin} missing: cargo build --release -p dhis2-sim`);
  log(`mode ${results.mode}: sizes ${cfg.sizes.join(', ')}, ${cfg.repeats} repeats, ${cfg.flushWrites} flush writes, sim ${cfg.simBin}`);
  await measure('P6', async () => measureSize());
  const www = await buildWww(ROOT);
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', headless: true, args: ARGS });
  results.machine.browser = `Chromium ${browser.version()} (headless, Playwright ${JSON.parse(readFileSync(join(ROOT, 'tests', 'node_modules', 'playwright-core', 'package.json'), 'utf8')).version})`;
  try {
    await measure('P1/P4/P5', () => phaseFlush(browser, www.dir));
    for (const size of cfg.sizes) await measure(`size ${size}`, () => phaseSize(browser, www.dir, size));
  } finally {
    await browser.close().catch(() => {});
    www.dispose();
  }
  addScaleTargets();
  const expected = ['P1', 'P4', 'P4q', 'P5', 'P5m', 'P6', ...cfg.sizes.flatMap((s) => [`P2@${s}`, `P3grid@${s}`, `P7@${s}`, `P8@${s}`])];
  for (const id of expected) {
    if (!results.targets.some((t) => t.id === id && t.value !== null)) results.errors.push({ measurement: id, error: 'not taken' });
  }
  results.durationSeconds = Number(((performance.now() - T0) / 1000).toFixed(1));
  const md = table();
  results.table = md;
  mkdirSync(cfg.out, { recursive: true });
  writeFileSync(join(cfg.out, 'results.json'), JSON.stringify(results, null, 2) + '\n');
  writeFileSync(join(cfg.out, 'scaling.svg'), scalingSvg(results, cfg.sizes));
  console.log(`\ntracker-offline benchmarks (${results.mode}) — ${results.date}`);
  console.log(`machine: ${results.machine.cpu}, ${results.machine.cores} cores; ${results.machine.browser}`);
  console.log(md);
  console.log(`\nwritten: ${join(cfg.out, 'results.json')}, ${join(cfg.out, 'scaling.svg')} (${results.durationSeconds} s)`);
  if (results.errors.length) {
    console.error(`\n${results.errors.length} measurement(s) could not be taken:`);
    for (const e of results.errors) console.error(`  ${e.measurement}: ${e.error}`);
    process.exitCode = 1;
  } else if (cfg.smoke) {
    console.log(`bench smoke: every measurement taken (${results.targets.length} figures)`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
