// The configured Tracker Capture stand-in (tests/e2e/fixtures/tc-like made into an app by
// scripts/configure-tracker-capture.mjs from the packed npm tarball), served by dhis2-sim at
// `/tracker-capture/`: its service worker's scope is that folder, as on a DHIS2 server.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './sim.mjs';

/** Where scripts/package.sh leaves the unpacked package. */
export const PACKAGE = join(ROOT, 'target', 'npm', 'package');
/** The packed tarball, as an integrator receives it (configure extracts it). */
export const TARBALL = () => join(ROOT, 'target', 'npm', readdirSync(join(ROOT, 'target', 'npm')).find((f) => f.endsWith('.tgz')));

/** Configures the stand-in (or another build) into a fresh folder named `name`. */
export function configure(source = join(ROOT, 'tests', 'e2e', 'fixtures', 'tc-like'), name = 'tracker-capture') {
  const out = join(mkdtempSync(join(tmpdir(), 'tc-configured-')), name);
  execFileSync('node', [join(ROOT, 'scripts', 'configure-tracker-capture.mjs'), source, out, '--package', TARBALL(),
    '--config', JSON.stringify({ idleLockMinutes: 0, title: 'Tracker Capture' })]);
  return out;
}

/** Logs in through the loader's form. */
export async function loginThroughOverlay(page, { username, password }) {
  await page.locator('#tracker-offline-username').fill(username);
  await page.locator('#tracker-offline-password').fill(password);
  await page.locator('#tracker-offline-password').press('Enter');
}
