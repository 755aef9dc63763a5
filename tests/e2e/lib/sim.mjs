// Starts and stops a real dhis2-sim process for end-to-end tests: a temporary data folder,
// a free port, the www/ folder served at /. `kill()` is SIGKILL (a real outage); `restart()`
// brings it back on the same port with the same data.
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(fileURLToPath(new URL('../../..', import.meta.url)));
const BINARY = process.env.DHIS2_SIM_BIN ?? join(ROOT, 'target', 'debug', 'dhis2-sim');

export const DEMO = {
  nurse1: { username: 'nurse1', password: 'Nurse1!clinic', displayName: 'Amal Haddad' },
  nurse2: { username: 'nurse2', password: 'Nurse2!clinic', displayName: 'Rania Khalil' },
  admin: { username: 'admin', password: 'district', displayName: 'System Administrator' },
  clinic: { id: 'OuBaniNaim1', name: 'Bani Naim Clinic' },
};

export class Sim {
  constructor({ version = '2.40', extraArgs = [] } = {}) {
    this.dataDir = mkdtempSync(join(tmpdir(), 'dhis2-sim-'));
    this.version = version;
    this.extraArgs = extraArgs;
    this.port = 0;
    this.child = null;
    this.url = null;
  }

  async start() {
    const args = ['--host', '127.0.0.1', '--port', String(this.port), '--data', this.dataDir, '--seed', 'demo',
      '--www', join(ROOT, 'www'), '--version', this.version, ...this.extraArgs];
    const child = spawn(BINARY, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    this.url = await new Promise((resolvePromise, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`dhis2-sim did not start in 20 s: ${stderr}`)), 20000);
      child.stdout.on('data', (d) => {
        out += d;
        const m = out.match(/dhis2-sim listening on (http:\/\/[^\s]+)/);
        if (m) { clearTimeout(timer); resolvePromise(m[1]); }
      });
      child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`dhis2-sim exited (${code}): ${stderr}`)); });
    });
    this.port = Number(new URL(this.url).port);
    return this.url;
  }

  /** SIGKILL: the server is gone mid-flight, its data stays on disk. */
  async kill() {
    if (!this.child || this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGKILL');
    await exited;
  }

  async restart() {
    await this.kill();
    return this.start();
  }
}
