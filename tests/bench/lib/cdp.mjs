// Chrome DevTools Protocol helpers of the benchmarks: a session on the service worker (CPU
// profiles in profile.mjs, memory in run.mjs) and the memory of a page and of the worker.

/** A CDP session on the service worker target, through the browser session (not flattened). */
export async function attachToWorker(browserSession, scriptUrlPart) {
  const { targetInfos } = await browserSession.send('Target.getTargets');
  const target = targetInfos.find((t) => t.type === 'service_worker' && t.url.includes(scriptUrlPart));
  if (!target) throw new Error(`no service worker target: ${targetInfos.map((t) => `${t.type} ${t.url}`).join(', ')}`);
  const { sessionId } = await browserSession.send('Target.attachToTarget', { targetId: target.targetId, flatten: false });
  let next = 1;
  const pending = new Map();
  browserSession.on('Target.receivedMessageFromTarget', (event) => {
    if (event.sessionId !== sessionId) return;
    const message = JSON.parse(event.message);
    const waiter = pending.get(message.id);
    if (!waiter) return;
    pending.delete(message.id);
    if (message.error) waiter.reject(new Error(`${message.error.message}`));
    else waiter.resolve(message.result);
  });
  return {
    send(method, params = {}) {
      const id = next++;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        browserSession.send('Target.sendMessageToTarget', { sessionId, message: JSON.stringify({ id, method, params }) }).catch(reject);
      });
    },
  };
}

/**
 * The memory of the page and of the service worker after a garbage collection: each one's JS
 * heap in use (`Runtime.getHeapUsage`) and its wasm linear memory (the bytes of the wasm's
 * `memory`: it grows, never shrinks, so it is the peak since the context started).
 * The page needs `window.wasm` (the glue module, as bench.html sets it).
 */
export async function memoryOf(page, worker) {
  const pageCdp = await page.context().newCDPSession(page);
  try {
    await pageCdp.send('HeapProfiler.collectGarbage');
    const pageHeap = await pageCdp.send('Runtime.getHeapUsage');
    const pageWasm = await page.evaluate(async () => (await window.wasm.default()).memory.buffer.byteLength);
    await worker.send('HeapProfiler.collectGarbage');
    const workerHeap = await worker.send('Runtime.getHeapUsage');
    // The worker's glue (wasm-bindgen's no-modules build) is the global `wasm_bindgen`; called
    // again once loaded, it answers the wasm's exports.
    const evaluated = await worker.send('Runtime.evaluate', {
      expression: 'wasm_bindgen().then((w) => w.memory.buffer.byteLength)',
      awaitPromise: true,
      returnByValue: true,
    });
    const workerWasm = evaluated.result?.value;
    if (!Number.isFinite(workerWasm)) throw new Error(`the worker's wasm memory: ${JSON.stringify(evaluated)}`);
    const out = {
      page: { jsHeapBytes: pageHeap.usedSize, wasmBytes: pageWasm },
      worker: { jsHeapBytes: workerHeap.usedSize, wasmBytes: workerWasm },
    };
    out.totalBytes = out.page.jsHeapBytes + out.page.wasmBytes + out.worker.jsHeapBytes + out.worker.wasmBytes;
    return out;
  } finally {
    await pageCdp.detach().catch(() => {});
  }
}
