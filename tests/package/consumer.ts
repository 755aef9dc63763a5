// A consumer of the packed package: uses every member of the page API with the types an
// integrator would write. tests/package/package.test.mjs installs the tarball beside a copy of
// this file and runs `tsc --noEmit --strict` on it; the @ts-expect-error lines must be errors.

import { TrackerOffline } from 'tracker-offline';
import type {
  CountsByAuthor,
  DiscardedEntry,
  DownloadOptions,
  DownloadProgress,
  DownloadReport,
  EscrowErrorDetail,
  EscrowSharing,
  FlushScope,
  LoginMode,
  LoginResult,
  OrgUnitRef,
  OutboxFailure,
  OutboxPayload,
  OutboxState,
  OutboxTouch,
  StatusUser,
  SyncReport,
  SyncStopReason,
  TrackerOfflineError,
  TrackerOfflineErrorBase,
  TrackerOfflineErrorCode,
  TrackerOfflineEventMap,
  TrackerOfflineEventType,
  TrackerOfflineLockedOutError,
  TrackerOfflineOptions,
  TrackerOfflineOtherError,
  TrackerOfflineStatus,
  UserProfile,
  WorkerAnswer,
  WorkerBroadcast,
  WorkerErrorBody,
  WorkerRequest,
  WorkerStatus,
} from 'tracker-offline';
// The wasm-bindgen build is reachable through "./pkg/*", with its own declarations.
import type { Engine } from 'tracker-offline/pkg/tracker_offline.js';

function show(...values: unknown[]): void {
  console.log(...values);
}

const escrow: EscrowSharing = { users: ['u1'], userGroups: ['g1'] };
const scope: FlushScope = 'author';
const options: TrackerOfflineOptions = {
  apiBase: '../api',
  serviceWorker: new URL('sw.js', 'https://clinic.example/app/'),
  flushScope: scope,
  escrow,
  idleLockMinutes: 0,
  pbkdf2Iterations: 600_000,
  lockoutFreeAttempts: 5,
  lockoutBaseMs: 30_000,
  maxOfflineDays: 30,
  requestTimeoutMs: 15_000,
};
const noWorker: TrackerOfflineOptions = { serviceWorker: false, escrow: null };
const workerAt: TrackerOfflineOptions = { serviceWorker: './offline-sw.js' };

function describeError(error: unknown): string {
  const e = error as TrackerOfflineError;
  const base: TrackerOfflineErrorBase = e;
  const name: 'TrackerOfflineError' = base.name;
  if (e.code === 'LOCKED_OUT') {
    const locked: TrackerOfflineLockedOutError = e;
    const wait: number | undefined = locked.retryAfterMs;
    return `${name}: wait ${wait ?? '?'} ms`;
  }
  const other: TrackerOfflineOtherError = e;
  const code: TrackerOfflineErrorCode = other.code;
  switch (code) {
    case 'BAD_CREDENTIALS':
    case 'UNKNOWN_USER_OFFLINE':
    case 'CREDENTIAL_EXPIRED':
    case 'CREDENTIAL_REVOKED':
    case 'SERVER_UNREACHABLE':
    case 'AUTH_REQUIRED':
    case 'VAULT_LOCKED':
    case 'HANDOVER_REQUIRED':
    case 'OUTSIDE_CLINIC':
    case 'UNSENT_WORK':
    case 'STORAGE_FULL':
    case 'STORAGE_CORRUPT':
    case 'STORAGE_ERROR':
    case 'STALE_WRITE':
    case 'BAD_INPUT':
    case 'CONFLICT':
    case 'ESCROW_UNSAFE':
    case 'BAD_RESPONSE':
    case 'CRYPTO_ERROR':
    case 'SERVICE_WORKER_UNAVAILABLE':
    case 'SERVICE_WORKER_ERROR':
    case 'NOT_ALLOWED':
      return `${code}: ${other.message}`;
    default: {
      const never: never = code;
      return never;
    }
  }
}

function orgUnits(units: OrgUnitRef[]): string[] {
  return units.map((u) => u.displayName ?? u.id);
}

function showProfile(profile: UserProfile): void {
  show(profile.id, profile.username, profile.displayName, orgUnits(profile.organisationUnits));
  show(orgUnits(profile.teiSearchOrganisationUnits), profile.authorities.includes('ALL'));
}

function showStatus(s: TrackerOfflineStatus): void {
  const user: StatusUser | null = s.user;
  if (user) {
    const mode: LoginMode | null = user.mode;
    show(user.username, user.displayName, mode, orgUnits(user.organisationUnits));
  }
  const byAuthor: CountsByAuthor = s.pendingByAuthor;
  const lastSync: number | null = s.lastSyncAt;
  const lastDownload: number | null = s.lastDownloadAt;
  const usage: number | null = s.usage;
  const quota: number | null = s.quota;
  show(s.online === true, s.locked, s.pending, s.failed, lastSync, byAuthor, s.failedByAuthor['nurse'] ?? 0);
  show(s.registeredUsers, s.records, lastDownload, usage, quota, s.persisted ? 'persisted' : 'evictable');
}

function showSync(r: SyncReport): void {
  const stopped: SyncStopReason | null = r.stopped;
  show(r.sent, r.failed, r.remaining, r.requests, stopped, r.waitingFor.join(', '));
}

function showProgress(p: DownloadProgress): void {
  show(`${p.done} / ${p.total ?? '?'}`);
}

function showPayload(payload: OutboxPayload): string {
  if (payload.type === 'touches') {
    return payload.touches.map((t: OutboxTouch) => `${t.kind} ${t.uid} of ${t.tei}${t.deleted ? ' (deleted)' : ''}`).join(', ');
  }
  return `${payload.method} ${payload.url} ${payload.content_type} ${payload.body.length}`;
}

function showState(state: OutboxState): string {
  return state.state === 'failed' ? `failed at ${state.at_ms}: ${state.reasons.join('; ')}` : 'pending';
}

async function main(): Promise<void> {
  const app: TrackerOffline = await TrackerOffline.start(options);
  await TrackerOffline.start();
  await TrackerOffline.start(noWorker);
  await TrackerOffline.start(workerAt);
  const apiBase: string = app.apiBase;
  show(apiBase);

  // Events: the detail is typed by the event type.
  app.addEventListener('status', (e) => showStatus(e.detail));
  app.addEventListener('progress', (e) => showProgress(e.detail));
  app.addEventListener('flush', (e) => showSync(e.detail));
  app.addEventListener('escrow-error', (e) => {
    const detail: EscrowErrorDetail = e.detail;
    show(detail.code, detail.message);
  });
  const onIdle = (e: TrackerOfflineEventMap['idle-lock']): void => {
    const detail: null = e.detail;
    show('locked after idle', detail);
  };
  app.addEventListener('idle-lock', onIdle, { once: true });
  app.removeEventListener('idle-lock', onIdle);
  const type: TrackerOfflineEventType = 'status';
  app.addEventListener(type, (e) => show(e.type));
  app.addEventListener('some-other-event', (e: Event) => show(e.type)); // plain EventTarget use still allowed

  try {
    const login: LoginResult = await app.login('nurse', 'secret');
    showProfile(login.profile);
    show(login.username, login.mode === 'online', login.handover);
  } catch (error) {
    show(describeError(error));
  }

  const downloadOptions: DownloadOptions = {
    orgUnits: ['DiszpKrYNg8'],
    programs: ['IpHINAT79UW'],
    pageSize: 100,
    full: false,
    onProgress: showProgress,
  };
  const report: DownloadReport = await app.download(downloadOptions);
  await app.download();
  show(report.trackedEntities, report.deleted, report.keptLocal, report.pages, report.incremental, report.resumed);
  show(report.records, report.reservedValues);

  showStatus(await app.status());
  showSync(await app.sync());

  const failures: OutboxFailure[] = await app.failures();
  for (const f of failures) {
    show(f.id, f.author, f.summary, f.records, f.reasons, new Date(f.createdAtMs), new Date(f.failedAtMs));
    const retried: void = await app.retry(f.id);
    show(retried);
    const dropped: DiscardedEntry = await app.discard(f.id);
    show(dropped.seq, dropped.author, dropped.createdAtMs, dropped.summary, dropped.family, dropped.attempts);
    show(showPayload(dropped.payload), showState(dropped.state));
  }

  const worker: WorkerStatus = await app.workerStatus();
  const kept: { added: number } = await app.cacheAppFiles(['./views/home.html', new URL('https://clinic.example/app/x.js')]);
  show(kept.added);
  // @ts-expect-error cacheAppFiles takes an array
  await app.cacheAppFiles('./views/home.html');
  show(worker.unlocked, worker.username, worker.records, worker.online, worker.pending, worker.failed);
  show(worker.pendingByAuthor, worker.failedByAuthor);

  const loggedOut: void = await app.logout();
  show(loggedOut);

  // Wrong usage is rejected.
  // @ts-expect-error the constructor is private: use TrackerOffline.start
  new TrackerOffline();
  // @ts-expect-error flushScope is 'all' or 'author'
  await TrackerOffline.start({ flushScope: 'everyone' });
  // @ts-expect-error unknown option (a typo of apiBase)
  await TrackerOffline.start({ apiBaseUrl: '/api' });
  // @ts-expect-error login takes a username and a password
  await app.login('nurse');
  // @ts-expect-error the detail of 'progress' is { done, total }, not a status
  app.addEventListener('progress', (e) => show(e.detail.pending));
  // @ts-expect-error orgUnits is a list of UIDs
  await app.download({ orgUnits: 'DiszpKrYNg8' });
  // @ts-expect-error not a code of this library
  const wrongCode: TrackerOfflineErrorCode = 'NOT_A_CODE';
  show(wrongCode);
  // @ts-expect-error the status may have no user
  show((await app.status()).user.username);
}

// The service worker protocol, as a page listener would see it.
function onWorkerMessage(data: WorkerBroadcast): void {
  switch (data.type) {
    case 'tracker-offline:flush-progress':
      showSync(data.progress);
      break;
    case 'tracker-offline:flushed':
      show(data.apiBase, data.report.sent);
      break;
    case 'tracker-offline:queued':
      show(data.apiBase);
      break;
  }
}
const request: WorkerRequest = { type: 'sync', apiBase: '/api', scope: 'all' };
const answer: WorkerAnswer<SyncReport> = { ok: false, error: { code: 'VAULT_LOCKED', message: 'locked' } };
const body: WorkerErrorBody = { httpStatus: 'Service Unavailable', httpStatusCode: 503, status: 'ERROR', message: 'm', code: 'OFFLINE_NOT_AVAILABLE' };
declare const engine: Engine;
show(onWorkerMessage, request, answer, body, engine.unlocked);

main().catch((error: unknown) => show(describeError(error)));
