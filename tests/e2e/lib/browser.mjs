// Launches Debian's chromium through playwright-core (no browser download), and helpers that
// run inside the page: wait for the app, dump every byte the origin stores.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './sim.mjs';

export const ARTIFACTS = join(ROOT, 'tests', 'artifacts');
mkdirSync(ARTIFACTS, { recursive: true });

const ARGS = ['--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];

export async function launch() {
  return chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', headless: true, args: ARGS });
}

/** A browser with a profile folder; `options` are Playwright's (e.g. `locale`: the browser's language). */
export async function launchPersistent(userDataDir, options = {}) {
  return chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', headless: true, args: ARGS, ...options,
  });
}

/** Opens the library's page and waits until `window.trackerOffline` is ready. */
export async function openApp(context, baseUrl, path = '/index.html') {
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error('[page error]', e.message));
  if (process.env.E2E_DEBUG) page.on('console', (m) => { if (m.type() === 'error') console.error('[page console]', m.text(), m.location()?.url ?? ''); });
  if (process.env.E2E_DEBUG) page.on('requestfailed', (r) => console.error('[request failed]', r.url(), r.failure()?.errorText));
  await page.goto(baseUrl + path);
  await page.waitForFunction(() => window.trackerOffline !== undefined, null, { timeout: 20000, polling: 100 });
  return page;
}

/** Calls `app[method](...args)` in the page; resolves `{ ok, value }` or `{ ok:false, code, message, retryAfterMs }`. */
export async function call(page, method, ...args) {
  return page.evaluate(async ({ method, args }) => {
    try {
      return { ok: true, value: await window.trackerOffline[method](...args) };
    } catch (e) {
      return { ok: false, code: e.code, message: e.message, retryAfterMs: e.retryAfterMs, isError: e instanceof Error };
    }
  }, { method, args });
}

/**
 * Every stored byte of the origin, as text for scanning: all IndexedDB databases (keys and
 * values, byte arrays decoded as latin1 and UTF-8, strings, Blobs, nested objects), Cache
 * Storage, localStorage, sessionStorage (the browser's, whatever the page replaced) and the
 * origin private file system.
 */
export async function dumpOriginStorage(page) {
  return page.evaluate(async () => {
    const parts = [];
    const bytesToText = (u8) => {
      let latin1 = '';
      for (let i = 0; i < u8.length; i++) latin1 += String.fromCharCode(u8[i]);
      return latin1 + '\n' + new TextDecoder('utf-8', { fatal: false }).decode(u8) + '\n' +
        new TextDecoder('utf-16le', { fatal: false }).decode(u8.subarray(0, u8.length - (u8.length % 2)));
    };
    const flatten = async (v) => {
      if (v === null || v === undefined) return '';
      if (typeof v === 'string') return v;
      if (typeof v === 'number' || typeof v === 'boolean') return String(v);
      if (v instanceof ArrayBuffer) return bytesToText(new Uint8Array(v));
      if (ArrayBuffer.isView(v)) return bytesToText(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
      if (v instanceof Blob) return bytesToText(new Uint8Array(await v.arrayBuffer()));
      if (Array.isArray(v)) return (await Promise.all(v.map(flatten))).join('\n');
      if (typeof v === 'object') {
        const out = [];
        for (const [k, x] of Object.entries(v)) out.push(k, await flatten(x));
        return out.join('\n');
      }
      return String(v);
    };
    for (const { name } of await indexedDB.databases()) {
      parts.push(`#db ${name}`);
      const db = await new Promise((res, rej) => { const r = indexedDB.open(name); r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error); });
      for (const storeName of db.objectStoreNames) {
        const tx = db.transaction(storeName, 'readonly');
        const store = tx.objectStore(storeName);
        const [keys, values] = await Promise.all([
          new Promise((res) => { const r = store.getAllKeys(); r.onsuccess = () => res(r.result); }),
          new Promise((res) => { const r = store.getAll(); r.onsuccess = () => res(r.result); }),
        ]);
        parts.push(`#store ${storeName} (${values.length})`);
        for (let i = 0; i < values.length; i++) parts.push(await flatten(keys[i]), await flatten(values[i]));
      }
      db.close();
    }
    for (const cacheName of await caches.keys()) {
      const cache = await caches.open(cacheName);
      for (const request of await cache.keys()) {
        const response = await cache.match(request);
        parts.push(request.url, bytesToText(new Uint8Array(await response.arrayBuffer())));
      }
    }
    // The browser's own Storage objects, from a fresh same-origin frame: a page may replace
    // window.localStorage/sessionStorage (the Tracker Capture loader keeps some keys in memory).
    const frame = document.createElement('iframe');
    document.documentElement.append(frame);
    for (const storage of [frame.contentWindow.localStorage, frame.contentWindow.sessionStorage]) {
      for (let i = 0; i < storage.length; i++) parts.push(storage.key(i), storage.getItem(storage.key(i)));
    }
    frame.remove();
    try {
      const walk = async (dir) => {
        for await (const [name, handle] of dir.entries()) {
          parts.push(name);
          if (handle.kind === 'file') parts.push(bytesToText(new Uint8Array(await (await handle.getFile()).arrayBuffer())));
          else await walk(handle);
        }
      };
      await walk(await navigator.storage.getDirectory());
    } catch { /* no OPFS */ }
    return parts.join('\n');
  });
}

/** `app.sync()` until the outbox is empty and the flush was not stopped (or `attempts` tries). */
export async function syncUntilDone(page, attempts = 40) {
  let report;
  for (let i = 0; i < attempts; i++) {
    report = (await call(page, 'sync')).value;
    if (report && report.remaining === 0 && !report.stopped) return report;
    await new Promise((r) => setTimeout(r, 200));
  }
  return report;
}

/** nurse1 logs in online in a new context and downloads the clinic; then the sim is killed. */
export async function onlineThenOffline(browser, sim, user = { username: 'nurse1', password: 'Nurse1!clinic' }) {
  const context = await browser.newContext();
  const page = await openApp(context, sim.url);
  const login = await call(page, 'login', user.username, user.password);
  if (!login.ok) throw new Error(`login: ${JSON.stringify(login)}`);
  await page.evaluate(() => window.trackerOffline.download());
  await sim.kill();
  return { context, page };
}
