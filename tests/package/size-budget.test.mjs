// The size budget (issue 17, P6): everything of ours a browser downloads, gzipped at level 9,
// must stay under BUDGET_BYTES. A size is stable where a timing is not, so this one is a test.
// The target is 250 KB (issue 17); the budget is a ratchet set just above the size measured
// when it was last lowered, so nothing grows unnoticed while the size work goes on: lower it
// whenever the size drops, never raise it without saying why in the commit.
// Needs www/pkg (scripts/build-wasm.sh; scripts/test.sh builds it before the node tests).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const www = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'www');

/** What a page and its service worker load of ours (the Tracker Capture loader included). */
const SHIPPED = [
  'pkg/tracker_offline_bg.wasm',
  'pkg/tracker_offline.js',
  'pkg/tracker_offline_worker.js',
  'tracker-offline.js',
  'sw.js',
  'tracker-capture/loader.js',
  'tracker-capture/loader.css',
  'ui/i18n.js',
  'ui/dom.js',
  'ui/work.js',
  'ui/login.js',
];

/**
 * Measured 2026-12-04: 520,210 bytes (the wasm about 460,000 of it, built with the `wasm-release`
 * profile); 656,533 before that profile. Target: 250 KB.
 * Raised to 533,000 in session 10: 528,947 bytes (wasm 468,305) after the download and login work
 * of issue 17 (a page fetched ahead, `get_many`, the KDF beside the server check: async state
 * machines the size work has not reached yet). The budget failed CI at 525,000 (found at the stop).
 * Raised to 548,000 in session 12: 544,610 bytes (wasm 476,608 gzipped, +6,800 this session)
 * after issue 14's offline answers for the Capture app (org units, `me` and program metadata
 * built from what is known; the dataStore entries query).
 * Raised to 552,000 in session 13: 549,090 bytes (wasm 481,092 gzipped, +4,500 this session)
 * after issue 14's attribution (each record and value sent names its author), references filled
 * in metadata answered offline (the profile widget's labels), the `fields` parser's DHIS2 rule and
 * the loader keeping the app sending with no network.
 * Raised to 553,000 later in session 13: 552,356 bytes after the offline answer to
 * `tracker/relationships` of a record known to have none (the Capture app's visit page).
 * Raised to 575,000 in session 14: 572,803 bytes (wasm 510,204 gzipped, +20,000) for issue 17's
 * P7 and P4 work: the index snapshot (256 packed chunks read at unlock instead of one value per
 * woman, rewritten when stale), WebCrypto opening many values at once, the outbox counts kept by
 * each write. P7 at 5,000 women went from 1,121 ms to 450 ms in the same benchmark.
 * Raised to 578,000 later in session 14: 575,902 bytes (wasm 513,252) after the values of a write
 * are sealed together at commit (WebCrypto `encrypt`; the store's refusal of unsealed values) and
 * the flush reads a segment's records at once.
 * Raised to 581,000 in session 15: 580,649 bytes (wasm 517,636 gzipped) after issue 18 moved the
 * worker's request rules into the core (fetch plans: +3,100 with their exports) and failures
 * carry a structured change (+3,000: its serde, stored with the warnings); 1,700 came back by
 * removing exports nothing used and the benchmark-only KDFs, and 400 by returning plain values
 * without a `Result` shim.
 * Raised to 588,500 in session 16: 588,002 bytes (wasm +7,900) for issue 17's P7: an unlock
 * takes each snapshot chunk whose manifest versions still hold and reads only the other key
 * prefixes (key ranges, the manifest's versions and counts per prefix, chunks as sealed copies
 * outside the manifest: +10,400 raw in the load, -5,100 for the listing it replaced), and the
 * in-memory index's maps on the Fx hash (their own hashbrown instances). The first page after
 * an offline login at 20,000 women went from 746-907 ms to 388-422 ms in the same profile.
 * Raised to 592,000 in session 17: 591,830 bytes. +3,271 for issue 18's www/ui (no wasm change):
 * the loader's DOM helper, its list of refused work and its login form became ui/dom.js,
 * ui/work.js and ui/login.js, shared with the demo (the loader -1,013; dom.js 545, work.js 1,796,
 * login.js 1,612, each gzipped on its own; the loader now has the demo's list (dates, the reasons
 * as a list, a button disabled while its action runs) and its login checks (an empty field, the
 * refusal beside the field it is about, with its code)); then +557 in the wasm after the clinic
 * copy became an owned part (ClinicCopy) and both stores check a batch's keys in one function
 * (found by CI's clean build: the budget had been measured on a stale www/pkg; not traced
 * further). Then 592,500: 592,127 bytes (+297) for issue 17's P4 (the page asks the status once
 * per burst of writes; the worker reads a write's body without copying the request and asks
 * its windows once; the flush a capture asks for while backing off counts nothing).
 * Lowered to 588,500 in session 18: 587,919 bytes (-4,208): sorts whose keys never tie became
 * unstable sorts (18 stable sort instances were 45 KB raw), and the index snapshot's chunks
 * are a binary layout read by hand instead of JSON through serde. Then 589,500: 589,217 bytes
 * (+811, the wasm +601) once the download and the merge's reads take the women's list out of
 * the server's answer through one helper instead of copying it (the merge's legacy branch
 * converts its own list; the code grew where the copies were inlined).
 */
const BUDGET_BYTES = 589_500;
const TARGET_BYTES = 250 * 1024;

test('everything shipped stays within the size budget (gzip -9)', () => {
  const sizes = SHIPPED.map((file) => [file, gzipSync(readFileSync(join(www, file)), { level: 9 }).length]);
  const total = sizes.reduce((sum, [, bytes]) => sum + bytes, 0);
  const table = sizes.map(([file, bytes]) => `  ${String(bytes).padStart(9)}  ${file}`).join('\n');
  console.log(`shipped, gzipped: ${total} bytes (budget ${BUDGET_BYTES}, target ${TARGET_BYTES})\n${table}`);
  assert.ok(total <= BUDGET_BYTES, `${total} bytes gzipped, over the budget of ${BUDGET_BYTES}:\n${table}`);
});
