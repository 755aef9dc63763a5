// The shared catalogue of texts (www/ui/i18n.js): every key in both languages and
// never empty, the same {placeholders} in both, a text for every error code the library can
// give (the TrackerOfflineErrorCode union and WorkerErrorBody of the declarations, the codes of
// crates/core/src/error.rs), and every text the loader and the demo ask for by a literal key.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { LANGUAGES, MESSAGES, explainError, formatDateTime, formatNumber, pickLanguage, t } = await import(
  pathToFileURL(join(root, 'www/ui/i18n.js')).href
);
const read = (file) => readFileSync(join(root, file), 'utf8');
/** The scripts that draw screens: the loader, the demo's modules and the shared ones. */
const SCREENS = ['www/tracker-capture/loader.js', 'www/ui/work.js', 'www/ui/dom.js', 'www/ui/login.js',
  ...readdirSync(join(root, 'www/demo')).filter((f) => f.endsWith('.js')).map((f) => `www/demo/${f}`)];
const placeholders = (text) => [...text.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();

test('the catalogue has English and Arabic', () => {
  assert.deepEqual(LANGUAGES, ['en', 'ar']);
  assert.deepEqual(Object.keys(MESSAGES).sort(), ['ar', 'en']);
});

test('every key has a text in both languages, none empty, with the same placeholders', () => {
  const missing = [];
  for (const lang of LANGUAGES) {
    for (const other of LANGUAGES) {
      for (const key of Object.keys(MESSAGES[other])) if (!(key in MESSAGES[lang])) missing.push(`${lang} lacks ${key}`);
    }
    for (const [key, text] of Object.entries(MESSAGES[lang])) {
      if (typeof text !== 'string' || !text.trim()) missing.push(`${lang}.${key} is empty`);
    }
  }
  assert.deepEqual(missing, []);
  for (const key of Object.keys(MESSAGES.en)) {
    assert.deepEqual(placeholders(MESSAGES.ar[key]), placeholders(MESSAGES.en[key]), `placeholders of ${key}`);
  }
});

test('every error code of the declarations and of the core has a text in both languages', () => {
  const dts = read('www/tracker-offline.d.ts');
  const union = dts.match(/export type TrackerOfflineErrorCode =([\s\S]*?);/)[1];
  const declared = [...union.matchAll(/'([A-Z][A-Z_]+)'/g)].map((m) => m[1]);
  const workerCode = dts.match(/export interface WorkerErrorBody \{[\s\S]*?\n\s*code: ([^;]*);/)[1];
  const workerOnly = [...workerCode.matchAll(/'([A-Z][A-Z_]+)'/g)].map((m) => m[1]);
  const core = [...read('crates/core/src/error.rs').matchAll(/=> "([A-Z][A-Z_]+)",/g)].map((m) => m[1]);
  assert.ok(declared.length >= 20 && core.length >= 16 && workerOnly.includes('OFFLINE_NOT_AVAILABLE'), 'codes found');
  const codes = [...new Set([...declared, ...workerOnly, ...core])];
  const missing = codes.flatMap((code) => LANGUAGES.filter((lang) => !MESSAGES[lang][`error.${code}`]?.trim()).map((lang) => `${lang}: ${code}`));
  assert.deepEqual(missing, []);
  // No text for a code the library does not give.
  const stale = Object.keys(MESSAGES.en).filter((k) => k.startsWith('error.') && !codes.includes(k.slice(6)));
  assert.deepEqual(stale, []);
});

test('every literal key the loader and the demo ask for is in the catalogue', () => {
  const asked = new Map();
  for (const file of SCREENS) {
    const source = read(file);
    // t('key'), t(x ? 'a' : 'b'), translate(other, 'key'), and data-i18n="key" of the demo's page.
    for (const call of source.matchAll(/\b(?:t|translate)\(([^()]*)\)/g)) {
      for (const m of call[1].matchAll(/'([A-Za-z][\w.]*)'/g)) asked.set(m[1], file);
    }
  }
  assert.ok(asked.size > 100, `keys found: ${asked.size}`);
  for (const m of read('www/demo/index.html').matchAll(/data-i18n="([\w.]+)"/g)) asked.set(m[1], 'www/demo/index.html');
  const missing = [...asked].filter(([key]) => !(key in MESSAGES.en)).map(([key, file]) => `${file}: ${key}`);
  assert.deepEqual(missing, []);
});

test('no text of a person\'s language is left in the loader or the demo script', () => {
  for (const file of SCREENS) {
    assert.doesNotMatch(read(file), /[\u0600-\u06ff]/, `${file} holds Arabic text: it belongs in the catalogue`);
  }
});

test('language choice, texts with values, numerals and dates as DHIS2 writes them', () => {
  assert.equal(pickLanguage(['ar-PS', 'en-US']), 'ar');
  assert.equal(pickLanguage('ar_EG'), 'ar', 'a DHIS2 keyUiLocale');
  assert.equal(pickLanguage(['fr-FR', 'en-GB', 'ar']), 'en', 'the first language of the catalogue wins');
  assert.equal(pickLanguage(['fr']), 'en');
  assert.equal(pickLanguage(undefined), 'en');
  assert.equal(t('ar', 'pendingCount', { count: 12 }), '12 بانتظار الإرسال', 'Western digits in Arabic');
  assert.equal(formatNumber('ar', 1234.5), '1234.5');
  assert.match(formatDateTime('ar', Date.UTC(2026, 2, 7, 12, 0)), /^2026-03-0[67] \d\d:\d\d$/);
  assert.equal(explainError('ar', { code: 'LOCKED_OUT', retryAfterMs: 29001 }), 'كلمات مرور خاطئة كثيرة. حاول مجدداً بعد 30 ثانية.');
  assert.equal(explainError('en', { code: 'HTTP_409', message: 'from the server' }), 'from the server', 'an unknown code keeps its message');
});
