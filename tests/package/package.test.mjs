// The npm package (scripts/package.sh): its tarball, its package.json, its exports, and its
// TypeScript declarations against the JS and a consumer compiled with `tsc --strict`.
// Needs www/pkg (scripts/build-wasm.sh; scripts/test.sh builds it before the node tests).

import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createRequire } from 'node:module';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(join(root, 'tests', 'package.json'));
const ts = require('typescript');
const tsc = join(root, 'tests', 'node_modules', 'typescript', 'bin', 'tsc');

let tarball; // absolute path of the .tgz
let stage; // target/npm/package
let pkg; // its package.json

function workspaceVersion() {
  const toml = readFileSync(join(root, 'Cargo.toml'), 'utf8');
  const section = toml.split(/^\[/m).find((s) => s.startsWith('workspace.package]'));
  return section.match(/^version\s*=\s*"([^"]+)"/m)[1];
}

function filesUnder(dir, base = dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path, base) : [relative(base, path)];
  });
}

before(() => {
  assert.ok(existsSync(join(root, 'www/pkg/tracker_offline_bg.wasm')), 'www/pkg is built (scripts/build-wasm.sh)');
  // From another folder: the script must not depend on the caller's cwd.
  const out = execFileSync(join(root, 'scripts/package.sh'), ['--no-build'], { cwd: tmpdir(), encoding: 'utf8' });
  const lines = out.trim().split('\n');
  tarball = join(root, lines.find((l) => l.endsWith('.tgz')));
  assert.match(lines.at(-1), /bytes gzipped/);
  stage = join(root, 'target/npm/package');
  pkg = JSON.parse(readFileSync(join(stage, 'package.json'), 'utf8'));
});

test('the tarball is named after the workspace version and holds exactly the package files', () => {
  const version = workspaceVersion();
  assert.equal(pkg.version, version);
  assert.equal(tarball, join(root, `target/npm/tracker-offline-${version}.tgz`));
  assert.ok(existsSync(tarball));

  const listed = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).trim().split('\n').sort();
  // The loader and the screens it shares with the demo (ui/).
  const loader = existsSync(join(root, 'www/tracker-capture'))
    ? ['tracker-capture', 'ui'].flatMap((dir) =>
        filesUnder(join(root, 'www', dir))
          .filter((f) => !/(^|\/)\.|\.test\.|\.map$/.test(f))
          .map((f) => `${dir}/${f}`))
    : [];
  const expected = [
    'LICENSE',
    'README.md',
    'package.json',
    'pkg/tracker_offline.d.ts',
    'pkg/tracker_offline.js',
    'pkg/tracker_offline_bg.wasm',
    'pkg/tracker_offline_bg.wasm.d.ts',
    'pkg/tracker_offline_worker.js',
    'sw.js',
    'tracker-offline.d.ts',
    'tracker-offline.js',
    ...loader,
  ]
    .map((f) => `package/${f}`)
    .sort();
  assert.deepEqual(listed, expected);
  for (const f of listed) {
    assert.doesNotMatch(f, /\.gitignore$|\.test\.|\.map$|\.rs$|node_modules/, f);
  }
  // Packed copies are the sources' (no stale file from an earlier run).
  for (const f of ['tracker-offline.d.ts', 'pkg/tracker_offline_bg.wasm', 'pkg/tracker_offline_worker.js']) {
    assert.ok(readFileSync(join(stage, f)).equals(readFileSync(join(root, 'www', f))), f);
  }
  // The worker and the page module are the sources with the package's version stamped in.
  const stamped = JSON.parse(readFileSync(join(stage, 'package.json'), 'utf8')).version;
  for (const f of ['sw.js', 'tracker-offline.js']) {
    const source = readFileSync(join(root, 'www', f), 'utf8');
    assert.ok(source.includes("const LIBRARY_VERSION = 'dev';"), f);
    assert.equal(readFileSync(join(stage, f), 'utf8'), source.replace("const LIBRARY_VERSION = 'dev';", `const LIBRARY_VERSION = '${stamped}';`), f);
  }
});

test('package.json: ES module, license, no dependencies, every export resolves', () => {
  assert.equal(pkg.name, 'tracker-offline');
  assert.equal(pkg.type, 'module');
  assert.equal(pkg.license, 'BSD-3-Clause');
  for (const field of ['dependencies', 'peerDependencies', 'optionalDependencies', 'scripts']) {
    assert.equal(pkg[field], undefined, field);
  }
  assert.deepEqual(pkg.exports['.'], { types: './tracker-offline.d.ts', default: './tracker-offline.js' });
  assert.equal(pkg.exports['./sw.js'], './sw.js');
  assert.equal(pkg.exports['./pkg/*'], './pkg/*');
  if (existsSync(join(root, 'www/tracker-capture/loader.js'))) {
    assert.equal(pkg.exports['./tracker-capture/loader.js'], './tracker-capture/loader.js');
  }
  if (existsSync(join(root, 'www/tracker-capture/loader.css'))) {
    assert.equal(pkg.exports['./tracker-capture/loader.css'], './tracker-capture/loader.css');
  }
  for (const [key, target] of Object.entries(pkg.exports)) {
    const targets = typeof target === 'string' ? [target] : Object.values(target);
    for (const t of targets) {
      if (t.includes('*')) {
        const dir = join(stage, dirname(t));
        assert.ok(readdirSync(dir).length > 0, `${key}: ${dir} is empty`);
      } else {
        assert.ok(existsSync(join(stage, t)), `${key} -> ${t}`);
      }
    }
  }
  assert.ok(existsSync(join(stage, pkg.main)) && existsSync(join(stage, pkg.types)));
  assert.ok(pkg.sideEffects.includes('./sw.js'));
  assert.match(readFileSync(join(stage, 'LICENSE'), 'utf8'), /BSD|Redistribution/);
});

test('tracker-offline.js of the package imports in node (no browser global at top level)', async () => {
  const mod = await import(pathToFileURL(join(stage, 'tracker-offline.js')).href);
  assert.deepEqual(Object.keys(mod), ['TrackerOffline']);
  assert.equal(typeof mod.TrackerOffline.start, 'function');
  // sw.js touches `self` at top level: syntax only.
  execFileSync(process.execPath, ['--check', join(stage, 'sw.js')]);
  // The loader runs in the page (document, window): syntax only.
  if (existsSync(join(stage, 'tracker-capture'))) {
    for (const f of filesUnder(join(stage, 'tracker-capture')).filter((f) => f.endsWith('.js'))) {
      execFileSync(process.execPath, ['--check', join(stage, 'tracker-capture', f)]);
    }
  }
});

/** Members of `class TrackerOffline` in the declarations: { static: [...], instance: [...] }. */
function declaredMembers() {
  const file = join(root, 'www/tracker-offline.d.ts');
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const cls = source.statements.find((s) => ts.isClassDeclaration(s) && s.name?.text === 'TrackerOffline');
  assert.ok(cls, 'class TrackerOffline is declared');
  const out = { static: new Set(), instance: new Set() };
  for (const m of cls.members) {
    if (!m.name) continue; // constructor
    const isStatic = m.modifiers?.some((k) => k.kind === ts.SyntaxKind.StaticKeyword);
    out[isStatic ? 'static' : 'instance'].add(m.name.text);
  }
  return { source, out };
}

test('the declarations name every public member of the JS class, and nothing it lacks', async () => {
  const { TrackerOffline } = await import(pathToFileURL(join(root, 'www/tracker-offline.js')).href);
  const { out } = declaredMembers();
  const jsInstance = Object.getOwnPropertyNames(TrackerOffline.prototype).filter((n) => n !== 'constructor');
  const jsStatic = Object.getOwnPropertyNames(TrackerOffline).filter((n) => !['length', 'name', 'prototype'].includes(n));
  // addEventListener/removeEventListener are EventTarget's, re-declared for typed events.
  const declaredInstance = [...out.instance].filter((n) => !['addEventListener', 'removeEventListener'].includes(n));
  assert.deepEqual(declaredInstance.sort(), jsInstance.sort());
  assert.deepEqual([...out.static].sort(), jsStatic.sort());
  const module = await import(pathToFileURL(join(root, 'www/tracker-offline.js')).href);
  assert.deepEqual(Object.keys(module), ['TrackerOffline'], 'a new export needs its declaration');
});

test('TrackerOfflineErrorCode lists every code of the core and of the JS layer', () => {
  const core = readFileSync(join(root, 'crates/core/src/error.rs'), 'utf8');
  const coreCodes = [...core.matchAll(/=> "([A-Z][A-Z_]+)",/g)].map((m) => m[1]);
  assert.ok(coreCodes.length >= 16, 'codes found in error.rs');
  const jsCodes = ['www/tracker-offline.js', 'www/sw.js'].flatMap((f) => {
    const text = readFileSync(join(root, f), 'utf8');
    return [...text.matchAll(/(?:codedError|coded)\('([A-Z][A-Z_]+)'|code \?\? '([A-Z][A-Z_]+)'/g)].map((m) => m[1] ?? m[2]);
  });
  assert.ok(jsCodes.includes('SERVICE_WORKER_UNAVAILABLE'));
  const { source } = declaredMembers();
  const alias = source.statements.find((s) => ts.isTypeAliasDeclaration(s) && s.name.text === 'TrackerOfflineErrorCode');
  const declared = alias.type.types.map((t) => t.literal.text);
  assert.deepEqual([...new Set(declared)].sort(), [...new Set([...coreCodes, ...jsCodes])].sort());
});

test('a strict TypeScript consumer of the installed tarball type-checks (nodenext and bundler resolution)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tracker-offline-consumer-'));
  try {
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--ignore-scripts', '--no-save', tarball], {
      cwd: dir,
      stdio: 'pipe',
    });
    assert.ok(existsSync(join(dir, 'node_modules/tracker-offline/tracker-offline.d.ts')));
    cpSync(join(root, 'tests/package/consumer.ts'), join(dir, 'consumer.ts'));
    for (const [module, moduleResolution] of [
      ['nodenext', 'nodenext'],
      ['esnext', 'bundler'],
    ]) {
      const config = {
        compilerOptions: {
          strict: true,
          noEmit: true,
          target: 'es2022',
          module,
          moduleResolution,
          lib: ['es2022', 'dom', 'dom.iterable', 'esnext.disposable'],
          types: [],
          skipLibCheck: false,
          noUnusedLocals: true,
          exactOptionalPropertyTypes: true,
        },
        files: ['consumer.ts'],
      };
      writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify(config, null, 2));
      try {
        execFileSync(process.execPath, [tsc, '-p', dir, '--noEmit', '--strict'], { cwd: dir, encoding: 'utf8' });
      } catch (error) {
        assert.fail(`tsc (${moduleResolution}) failed:\n${error.stdout}${error.stderr}`);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the declarations reject wrong usage (a consumer with a type error fails tsc)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tracker-offline-wrong-'));
  try {
    writeFileSync(
      join(dir, 'wrong.ts'),
      `import { TrackerOffline } from '${join(root, 'www/tracker-offline.js')}';\n` +
        `const app = await TrackerOffline.start({ idleLockMinutes: '15' });\nexport const n: number = (await app.status()).user;\n`,
    );
    const compilerOptions = { strict: true, noEmit: true, target: 'es2022', module: 'esnext', moduleResolution: 'bundler', lib: ['es2022', 'dom'], types: [] };
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions, files: ['wrong.ts'] }));
    let failed = null;
    try {
      execFileSync(process.execPath, [tsc, '-p', dir], { encoding: 'utf8' });
    } catch (error) {
      failed = error.stdout;
    }
    assert.ok(failed, 'tsc must fail');
    assert.match(failed, /wrong\.ts\(2,.*TS2322.*'string' is not assignable to type 'number'/);
    assert.match(failed, /wrong\.ts\(3,.*TS2322/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
