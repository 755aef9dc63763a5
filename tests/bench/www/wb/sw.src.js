// workbox-background-sync driven the way its docs show ("Advanced usage": a Queue in the
// service worker's fetch handler; a failed request is pushed, the queue replays on `sync`).
// Bundled by esbuild from the npm package into /wb/sw.js at benchmark time.
import { Queue } from 'workbox-background-sync';

const queue = new Queue('bench-events', {
  maxRetentionTime: 24 * 60, // minutes
  onSync: async ({ queue }) => {
    const started = performance.now();
    let error = null;
    try {
      await queue.replayRequests();
    } catch (e) {
      error = String(e?.message ?? e);
    }
    const left = (await queue.getAll()).length;
    const message = { type: 'wb-replayed', ms: performance.now() - started, error, left };
    for (const client of await self.clients.matchAll({ includeUncontrolled: true })) client.postMessage(message);
    if (error) throw new Error(error);
  },
});

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('fetch', (event) => {
  if (event.request.method === 'GET') return;
  const bgSyncLogic = async () => {
    try {
      return await fetch(event.request.clone());
    } catch {
      await queue.pushRequest({ request: event.request });
      // The docs' sample hands the error back; the app gets an answer it can show instead.
      return new Response(JSON.stringify({ queued: true }), { status: 202, headers: { 'content-type': 'application/json' } });
    }
  };
  event.respondWith(bgSyncLogic());
});

self.addEventListener('message', (event) => {
  if (event.data?.type === 'count') {
    event.waitUntil(queue.getAll().then((all) => event.ports[0]?.postMessage({ queued: all.length })));
  }
});
