// Makes an offline-capable Tracker Capture from a Tracker Capture build folder: copies it,
// adds the tracker-offline npm package (service worker in the app's own folder, so its scope
// covers the app; the page module; the wasm package; the loader), and rewrites index.html so
// the app's scripts wait for a login through the library. See www/INTEGRATION.md.
//
// node scripts/configure-tracker-capture.mjs <tracker-capture build> [<out>] [--zip <app.zip>]
//      [--package DIR|TGZ] [--config '{"idleLockMinutes":15,"flushScope":"all","title":"..."}']
//
// --zip also packs the result as an app for DHIS2's App Management (`POST /api/apps`). Its
// manifest.webapp keeps the app's key, `short_name` "tracker-capture" (or "capture" for a build
// of the Capture app), so the zip overrides the bundled app and is served where it was,
// `/dhis-web-tracker-capture/` (DHIS2 2.39-2.41; `/api/apps/tracker-capture/` redirects there)
// or `/dhis-web-capture/`. Not beside it under another
// key: Tracker Capture hard-codes `../api` and `../dhis-web-commons/...`, which only work from
// that folder, and the library's API base must be the one the app calls (`../api`, which is
// also what `activities.dhis.href: ".."` says). The version is the library's.
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix, relative, resolve, sep } from 'node:path';
import { execFileSync } from 'node:child_process';
import { zipBytes } from './zip.mjs';

const DEFERRED = 'tracker-offline/deferred';
const PACKAGE_FILES = ['tracker-offline.js', 'sw.js', 'pkg', 'tracker-capture', 'ui'];
/** Files of newer packages only: an older package's loader keeps its texts in tracker-capture/ and has no ui/. */
const NEWER_ONLY = new Set(['ui']);
const JS_TYPES = new Set(['', 'text/javascript', 'application/javascript', 'module', 'text/ecmascript', 'application/ecmascript']);

function fail(message) {
  console.error(`configure-tracker-capture: ${message}`);
  process.exit(2);
}

function parseArgs(argv) {
  const positional = [];
  const options = { package: null, config: {}, zip: null };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--package') options.package = argv[++i];
    else if (arg === '--zip') options.zip = argv[++i];
    else if (arg === '--config') {
      try {
        options.config = JSON.parse(argv[++i]);
      } catch (error) {
        fail(`--config is not JSON: ${error.message}`);
      }
    } else if (arg === '-h' || arg === '--help') {
      console.log('usage: configure-tracker-capture <tracker-capture build> [<out>] [--zip <app.zip>] [--package DIR|TGZ] [--config JSON]');
      process.exit(0);
    } else positional.push(arg);
  }
  if (positional.length !== 2 && !(positional.length === 1 && options.zip)) fail('expected <tracker-capture build> <out> or --zip <app.zip>; see --help');
  if (options.zip !== null && !/\.zip$/i.test(options.zip)) fail('--zip takes a file name ending in .zip (DHIS2 names the app\'s folder after it)');
  const out = positional[1] ? resolve(positional[1]) : join(mkdtempSync(join(tmpdir(), 'tracker-capture-zip-')), 'tracker-capture');
  return { source: resolve(positional[0]), out, ...options, zip: options.zip && resolve(options.zip) };
}

/**
 * The manifest.webapp of the offline app: the build's own with the name and version App
 * Management shows, and the key of the app it is, so the zip overrides that bundled app where
 * DHIS2 serves it. A Capture build (app platform, `short_name` "capture", `activities.dhis.href`
 * "*": DHIS2 puts its base URL into index.html) keeps its key: served at `/dhis-web-capture/`.
 * Anything else is taken as Tracker Capture (its manifest has `short_name` "tracker-capture",
 * `core_app: true`, `activities.dhis.href` ".."): DHIS2 (2.39-2.41) fails on a manifest without
 * `version` or `activities.dhis`; 2.39.0-2.39.5 and 2.40.0-2.40.4 refuse a bundled key without
 * `core_app`.
 */
export function offlineManifest(original, version) {
  const capture = original.short_name === 'capture';
  const activities = { ...(original.activities ?? {}) };
  activities.dhis = { href: '..', ...(activities.dhis ?? {}) };
  const app = capture ? 'Capture' : 'Tracker Capture';
  return {
    ...original,
    name: `${app} (offline)`,
    short_name: capture ? 'capture' : 'tracker-capture',
    version,
    description: `${app}${original.version ? ` ${original.version}` : ''} with tracker-offline ${version}: offline login, encrypted local data, an outbox sent once on reconnect`,
    launch_path: original.launch_path ?? 'index.html',
    core_app: true,
    activities,
  };
}

/** The unpacked package folder: a directory as is, a .tgz extracted to a temporary folder. */
function packageDir(path) {
  if (!existsSync(path)) fail(`package not found: ${path} (build it with scripts/package.sh)`);
  if (statSync(path).isDirectory()) return path;
  const dir = mkdtempSync(join(tmpdir(), 'tracker-offline-package-'));
  execFileSync('tar', ['-xzf', path, '-C', dir]);
  return join(dir, 'package');
}

/**
 * Turns every executable script into an inert placeholder (same attributes and content), and
 * puts the configuration, the loader's stylesheet and the loader first in <head>.
 */
export function rewriteIndex(html, config) {
  if (html.includes('id="tracker-offline-config"')) throw new Error('index.html is already configured');
  let deferred = 0;
  const rewritten = html.replace(/<script\b([^>]*)>/gi, (tag, attributes) => {
    const typeMatch = attributes.match(/\stype\s*=\s*(["']?)([^"'\s>]*)\1/i);
    const type = typeMatch ? typeMatch[2].trim().toLowerCase() : '';
    if (!JS_TYPES.has(type)) return tag; // templates (text/ng-template), JSON, ...
    deferred += 1;
    const rest = typeMatch ? attributes.replace(typeMatch[0], '') : attributes;
    const keep = typeMatch ? ` data-tracker-offline-type="${typeMatch[2]}"` : '';
    return `<script type="${DEFERRED}"${keep}${rest}>`;
  });
  // Stylesheets from the server (the instance's custom style) wait for the login too.
  let links = 0;
  const withLinks = rewritten.replace(/<link\b([^>]*?)\shref\s*=\s*(["'])(\.\.\/[^"']*)\2([^>]*)>/gi, (tag, before, quote, href, after) => {
    links += 1;
    return `<link${before} data-tracker-offline-href=${quote}${href}${quote}${after}>`;
  });
  // The <head> tag itself, not one named in a comment (blanked to the same length).
  const head = withLinks.replace(/<!--[\s\S]*?-->/g, (comment) => ' '.repeat(comment.length)).match(/<head\b[^>]*>/i);
  if (!head) throw new Error('index.html has no <head>');
  const json = JSON.stringify(config).replace(/</g, '\\u003c');
  const inject =
    `\n    <script id="tracker-offline-config" type="application/json">${json}</script>` +
    `\n    <link rel="stylesheet" href="tracker-capture/loader.css">` +
    `\n    <script type="module" src="tracker-capture/loader.js"></script>`;
  const at = head.index + head[0].length;
  return { html: withLinks.slice(0, at) + inject + withLinks.slice(at), deferred, links };
}

/** Every file below `dir`, as paths relative to `root` with forward slashes. */
function filesBelow(root, dir = root) {
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...filesBelow(root, path));
    else out.push(relative(root, path).split(sep).join('/'));
  }
  return out;
}

/**
 * The files the app needs offline (the service worker keeps them after the first online
 * login): everything outside `vendor/` (views, templates, translations, styles), the vendor
 * files index.html loads, and what their stylesheets point to (fonts, images). Source maps and
 * the rest of `vendor/` (about 50 MB of unused libraries in Tracker Capture's build) are left out.
 */
export function offlineFiles(appDir, indexHtml) {
  const wanted = new Set(filesBelow(appDir).filter((f) => !f.startsWith('vendor/') && !f.endsWith('.map')));
  const queue = [];
  for (const m of indexHtml.matchAll(/\s(?:src|href)\s*=\s*["']([^"'#?]+)(?:\?[^"']*)?["']/gi)) {
    if (!/^(?:[a-z]+:|\/|\.\.\/)/i.test(m[1])) queue.push(posix.normalize(m[1]));
  }
  while (queue.length) {
    const file = queue.pop();
    if (wanted.has(file) || !existsSync(join(appDir, file)) || !statSync(join(appDir, file)).isFile()) continue;
    wanted.add(file);
    if (file.endsWith('.css')) {
      const css = readFileSync(join(appDir, file), 'utf8');
      for (const m of css.matchAll(/url\(\s*["']?([^"')?#]+)[^)]*\)/gi)) {
        if (!/^(?:[a-z]+:|\/)/i.test(m[1])) queue.push(posix.normalize(posix.join(posix.dirname(file), m[1])));
      }
    }
  }
  wanted.delete('index.html');
  return ['./', ...[...wanted].filter((f) => !f.endsWith('.map')).sort()];
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const root = resolve(new URL('..', import.meta.url).pathname);
  const pkg = packageDir(resolve(args.package ?? join(root, 'target/npm/package')));
  if (!existsSync(join(args.source, 'index.html'))) fail(`${args.source} has no index.html: not a Tracker Capture build`);
  if (args.out === args.source || !relative(args.source, args.out).startsWith('..')) fail('<out> must be outside the build folder');
  const shipped = PACKAGE_FILES.filter((file) => existsSync(join(pkg, file)) || !NEWER_ONLY.has(file));
  for (const file of shipped) {
    if (!existsSync(join(pkg, file))) fail(`the package lacks ${file}: rebuild it with scripts/package.sh`);
    if (existsSync(join(args.source, file))) fail(`the app already has ${file}; it would be overwritten`);
  }
  const version = JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8')).version;

  rmSync(args.out, { recursive: true, force: true });
  cpSync(args.source, args.out, { recursive: true });
  for (const file of shipped) cpSync(join(pkg, file), join(args.out, file), { recursive: true });
  const config = { apiBase: '../api', ...args.config };
  const { html, deferred } = rewriteIndex(readFileSync(join(args.out, 'index.html'), 'utf8'), config);
  writeFileSync(join(args.out, 'index.html'), html);
  writeFileSync(join(args.out, 'tracker-offline.version'), `${version}\n`);
  const files = offlineFiles(args.out, html);
  writeFileSync(join(args.out, 'tracker-offline-files.json'), JSON.stringify({ version, files }, null, 1));
  const manifestPath = join(args.out, 'manifest.webapp');
  let original = {};
  if (existsSync(manifestPath)) {
    try {
      original = JSON.parse(readFileSync(manifestPath, 'utf8'));
    } catch (error) {
      fail(`the build's manifest.webapp is not JSON: ${error.message}`);
    }
  }
  const manifest = offlineManifest(original, version);
  writeFileSync(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
  console.log(`configured ${args.out}: tracker-offline ${version}, ${deferred} scripts wait for the login, ${files.length} files kept for offline use`);
  if (args.zip) {
    // Every file: an app that overrides a bundled one has no fallback to the bundled files.
    const entries = filesBelow(args.out).sort().map((name) => ({ name, data: readFileSync(join(args.out, name)) }));
    writeFileSync(args.zip, zipBytes(entries));
    console.log(`app zip ${args.zip}: ${entries.length} files, ${statSync(args.zip).size} bytes; install it with App Management (key ${manifest.short_name}, served at /dhis-web-${manifest.short_name}/)`);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(new URL(import.meta.url).pathname)) main();
