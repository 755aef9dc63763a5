// A dhis2-sim process for the benchmark: release binary, generated database, fault layer on
// (for /__sim/requests and counters), a chosen folder served at /. kill() is SIGKILL (a real
// outage); restart() brings it back on the same port with the same data.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export class BenchSim {
  constructor({ binary, www, trackedEntities = 0, version = '2.40' }) {
    this.binary = binary;
    this.www = www;
    this.trackedEntities = trackedEntities;
    this.version = version;
    this.dataDir = mkdtempSync(join(tmpdir(), 'bench-sim-'));
    this.port = 0;
    this.child = null;
    this.url = null;
  }

  async start() {
    const args = ['--host', '127.0.0.1', '--port', String(this.port), '--data', this.dataDir, '--seed', 'demo',
      '--tracked-entities', String(this.trackedEntities), '--www', this.www, '--version', this.version, '--faults'];
    const child = spawn(this.binary, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: 'warn' } });
    this.child = child;
    let stderr = '';
    child.stderr.on('data', (d) => { stderr = (stderr + d).slice(-4000); });
    this.url = await new Promise((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`dhis2-sim did not start in 120 s: ${stderr}`)), 120000);
      child.stdout.on('data', (d) => {
        out += d;
        const m = out.match(/dhis2-sim listening on (http:\/\/[^\s]+)/);
        if (m) { clearTimeout(timer); resolve(m[1]); }
      });
      child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`dhis2-sim exited (${code}): ${stderr}`)); });
    });
    this.port = Number(new URL(this.url).port);
    return this.url;
  }

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

  async dispose() {
    await this.kill();
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  auth(user) {
    return `Basic ${Buffer.from(user).toString('base64')}`;
  }

  /** GET as a user (admin by default), bypassing the browser. */
  async get(path, user = 'admin:district') {
    const r = await fetch(this.url + path, { headers: { Authorization: this.auth(user), 'X-Requested-With': 'XMLHttpRequest' } });
    if (!r.ok) throw new Error(`GET ${path}: ${r.status} ${(await r.text()).slice(0, 300)}`);
    return r.json();
  }

  async counters() {
    return (await fetch(`${this.url}/__sim/counters`)).json();
  }

  async clearLog() {
    await fetch(`${this.url}/__sim/requests`, { method: 'DELETE' });
  }

  async requests(query = '') {
    return (await fetch(`${this.url}/__sim/requests${query}`)).json();
  }
}
