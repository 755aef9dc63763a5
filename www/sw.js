// tracker-offline service worker. Registered beside the app (its folder is its scope). It
// holds the vault's data key only while a page has handed it over (after a login) and forgets
// it on logout. It never touches `window`. Later issues add the offline read and write paths
// here; the rules stay in Rust.

import init, { Engine } from './pkg/tracker_offline.js';

let wasmReady = null;
const engines = new Map(); // absolute apiBase -> Engine

function loadWasm() {
  wasmReady ??= init({ module_or_path: new URL('./pkg/tracker_offline_bg.wasm', import.meta.url) });
  return wasmReady;
}

async function engineFor(apiBase) {
  if (typeof apiBase !== 'string' || !apiBase) throw Object.assign(new Error('apiBase missing'), { code: 'BAD_INPUT' });
  await loadWasm();
  if (!engines.has(apiBase)) engines.set(apiBase, Engine.open({ apiBase }));
  return engines.get(apiBase);
}

async function handle(message) {
  switch (message?.type) {
    case 'unlock': {
      const engine = await engineFor(message.apiBase);
      await engine.unlockWithDataKey(message.username, message.key);
      return { unlocked: engine.unlocked, username: message.username };
    }
    case 'lock': {
      for (const pending of engines.values()) (await pending).logout();
      return { unlocked: false };
    }
    case 'status': {
      const engine = await engineFor(message.apiBase);
      const status = await engine.status();
      return { unlocked: engine.unlocked, username: status.user?.username ?? null };
    }
    default:
      throw Object.assign(new Error(`unknown message ${message?.type}`), { code: 'BAD_INPUT' });
  }
}

self.addEventListener('install', (event) => event.waitUntil(self.skipWaiting()));
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));
self.addEventListener('message', (event) => {
  const port = event.ports[0];
  event.waitUntil(
    handle(event.data).then(
      (result) => port?.postMessage({ ok: true, result }),
      (error) => port?.postMessage({ ok: false, error: { code: error?.code ?? 'SERVICE_WORKER_ERROR', message: String(error?.message ?? error) } }),
    ),
  );
});
