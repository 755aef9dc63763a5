// The folder the benchmark's dhis2-sim serves: a copy of www/ (the library as shipped, with
// its built wasm package) plus the benchmark page and, under /wb/, a page and a service worker
// of their own for workbox-background-sync (bundled from the npm package by esbuild).
import { cpSync, mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';

export async function buildWww(root) {
  const pkg = join(root, 'www', 'pkg', 'tracker_offline_bg.wasm');
  if (!existsSync(pkg)) throw new Error(`${pkg} is missing: run scripts/build-wasm.sh first`);
  const dir = mkdtempSync(join(tmpdir(), 'bench-www-'));
  cpSync(join(root, 'www'), dir, { recursive: true });
  const own = join(root, 'tests', 'bench', 'www');
  cpSync(join(own, 'bench.html'), join(dir, 'bench.html'));
  cpSync(join(own, 'bench-writer.html'), join(dir, 'bench-writer.html'));
  cpSync(join(own, 'wb', 'index.html'), join(dir, 'wb', 'index.html'), { recursive: true });
  await build({
    entryPoints: [join(own, 'wb', 'sw.src.js')],
    bundle: true,
    format: 'iife',
    minify: true,
    target: 'chrome120',
    outfile: join(dir, 'wb', 'sw.js'),
    absWorkingDir: join(root, 'tests'),
    nodePaths: [join(root, 'tests', 'node_modules')],
    logLevel: 'warning',
    define: { 'process.env.NODE_ENV': '"production"' },
  });
  return { dir, dispose: () => rmSync(dir, { recursive: true, force: true }) };
}
