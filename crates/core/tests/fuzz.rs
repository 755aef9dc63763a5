//! Fuzzing on stable Rust: a self-contained, seeded property harness (no cargo-fuzz, no
//! proptest) over every door through which outside bytes reach the core.
//!
//! Targets (one test each):
//! - `writes`: `prepare_write(method, url, content type, body)` on the app's writes (legacy
//!   `trackedEntityInstances`/`enrollments`/`events` bodies, `/api/tracker` bundles, one-value
//!   and note endpoints, deletes, raw writes), then `capture_write` on a logged-in engine;
//! - `stored`: the vault envelope and every stored format (bundles, index rows, outbox entries,
//!   the conflict log, warnings, the download cursor, metadata, reserved values, cached
//!   answers, the register) damaged in storage, then read back through the public APIs
//!   (`status`, `outbox_entries`, `failures`, `conflicts`, `answer_offline`, a capture, a
//!   download, discarding the damaged entries);
//! - `answers`: `answer::interpret` / `accepts_all` / `raw_accepted`, the `Retry-After` reading
//!   and the `/api/me` check on arbitrary statuses, headers and bodies (legacy ImportSummaries,
//!   `/api/tracker` ImportReports, job answers, WebMessages, HTML);
//! - `download`: `Engine::download` against a scripted server whose pages (both API families),
//!   metadata and answers are mutated;
//! - `reads`: URL and query parameter parsing (`Target::parse`, `TeiQuery`, `fields`, filters,
//!   the API base) and the offline read routing (`answer_offline`, `answer_read_offline`).
//!
//! Inputs are structure-aware: realistic valid inputs mutated (fields deleted, duplicated or
//! retyped, huge numbers, unicode, empty strings, invalid UIDs, deep nesting, truncation, byte
//! flips, random bytes), plus purely random ones; many stay valid (a valid write must be
//! prepared and captured). Properties checked on every case: no panic; every error is a
//! `CoreError` whose code is one the call may give; a call that fails leaves the store exactly
//! as it was (capture; download: as at its last request, earlier pages kept); reads never
//! write; what a call stores can be read back; target-specific invariants (a verdict names only
//! the records sent, never one both accepted and refused; a download stores every good record
//! and reports every bad one; a tampered envelope never opens).
//!
//! `cargo test -p tracker-offline-core --test fuzz` runs 10,000 cases per target (seeds
//! 1..=10000); `... --test fuzz -- --ignored long_mode --nocapture` runs 1,000,000 per target on
//! every core (seeds from 1,000,001; `FUZZ_TARGETS=writes,stored` picks targets). Both print,
//! per target, the cases, the seeds, the time and how the cases ended (so a generator that
//! stopped reaching past the first check shows). `FUZZ_CASES=<n>` changes the count,
//! `FUZZ_SEED=<n>` replays one case of each target selected, with its input printed. A failure
//! prints the target, the seed, the replay command and the input. Both run in the dev profile,
//! whose overflow checks turn an arithmetic overflow into a panic the harness reports. Every
//! crash found became a named regression test (at the end of this file or next to its fix).
//!
//! About 3,400 lines: one harness (its generators, the storage diff and the replay by seed) that
//! every target shares, then each target and the regressions it found; split, each file would
//! repeat the harness.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    cell::{Cell, RefCell},
    collections::{BTreeMap, BTreeSet},
    fmt,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::OnceLock,
    time::Instant,
};

use futures::executor::block_on;
use serde_json::{json, Map, Value};
use support::{fast_policy, Rng, T0};
use tracker_offline_core::{
    answer::{accepts_all, interpret, is_import_success, raw_accepted, Verdict},
    backoff::{load_of, retry_after_ms, Load, MAX_RETRY_AFTER_MS},
    clinic::{bundle_id, parse_bundle, CURSOR_ID, METADATA_ID},
    conflicts::CONFLICTS_ID,
    crypto::SecretKey,
    download::{DownloadOptions, DownloadReport, MAX_SKIPPED_LISTED},
    engine::{interpret_me_response, session_lost, Engine, EngineConfig, PASSWORD_REFUSED_ID},
    family::{convert, Kind, Naming},
    fields::FieldSelection,
    flush::is_key_value_put,
    http::{HttpClient, HttpRequest, HttpResponse},
    index::IndexRow,
    kdf::RustPbkdf2,
    merge::{Conflict, ConflictSource},
    metadata::ClinicMetadata,
    outbox::{EntryState, Failure, Severity, WARNINGS_ID},
    params::{base_path, percent_decode, percent_encode, Target},
    query::{AttributeFilter, TeiQuery},
    random::DeterministicRandom,
    reads::{route, ReadRoute},
    records::is_uid,
    register::{UserEntry, VaultMeta, VAULT_META_KEY},
    store::{KvStore, MemoryStore, StoreName},
    writes::{Family, Mutation},
    CoreError, Result,
};

// ---------------------------------------------------------------------------------------------
// The harness: seeds, the random generator, panics caught and reported with their input.
// ---------------------------------------------------------------------------------------------

/// Cases per target in the test command.
const DEFAULT_CASES: u64 = 10_000;
/// Cases per target in the long mode.
const LONG_CASES: u64 = 1_000_000;
/// First seed of the long mode (the test command's seeds are 1..=N).
const LONG_FIRST_SEED: u64 = 1_000_001;

/// Bytes shown as text when they are UTF-8, escaped otherwise.
struct Shown(Vec<u8>);

impl fmt::Debug for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(text) => write!(f, "{text:?}"),
            Err(_) => write!(f, "b\"{}\"", self.0.escape_ascii()),
        }
    }
}

/// One fuzz target: a generator of inputs and the properties every input must satisfy.
trait FuzzTarget: Sync {
    type Input: fmt::Debug;
    /// Short name, for reports.
    const NAME: &'static str;
    /// The test function that runs it (for the replay command).
    const TEST: &'static str;
    fn generate(&self, rng: &mut Rng, seed: u64) -> Self::Input;
    /// `Err` names the property that failed.
    fn check(&self, input: &Self::Input) -> std::result::Result<(), String>;
}

thread_local! {
    /// While set, a panic is recorded here instead of printed (the harness reports it).
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CATCHING.with(Cell::get) {
                let payload = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".into());
                let location = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{payload}{location}")));
            } else {
                default(info);
            }
        }));
    });
}

/// Longest input text put in a failure report (a replay prints it whole).
const SHOWN_INPUT_CHARS: usize = 4_000;

fn cut(text: String, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}… ({} more bytes; replay to see all)", &text[..i], text.len() - i),
        None => text,
    }
}

/// Runs one seed: `Err(report)` when a property failed or the code panicked.
fn run_one<T: FuzzTarget>(target: &T, seed: u64, full_input: bool) -> std::result::Result<(), String> {
    let mut rng = Rng::new(seed);
    let input = target.generate(&mut rng, seed);
    CATCHING.with(|c| c.set(true));
    let outcome = catch_unwind(AssertUnwindSafe(|| target.check(&input)));
    CATCHING.with(|c| c.set(false));
    let why = match outcome {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(why)) => why,
        Err(_) => format!("PANIC: {}", LAST_PANIC.with(|p| p.borrow_mut().take()).unwrap_or_default()),
    };
    let shown = format!("{input:#?}");
    let shown = if full_input { shown } else { cut(shown, SHOWN_INPUT_CHARS) };
    Err(format!(
        "fuzz target '{}' seed {seed} failed (replay: FUZZ_SEED={seed} cargo test -p tracker-offline-core --test fuzz {} -- --nocapture)\n{why}\ninput: {shown}",
        T::NAME,
        T::TEST
    ))
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// What a run of seeds found: how many ran and failed, the first failures in full, and how
/// the cases ended (see [`note`]), to show the inputs reach past the first checks.
#[derive(Default)]
struct Tally {
    cases: u64,
    failed: u64,
    first: Vec<String>,
    outcomes: BTreeMap<&'static str, u64>,
}

/// Failure reports kept in full per run (the rest are counted).
const KEPT_REPORTS: usize = 5;

impl Tally {
    fn add(&mut self, other: Tally) {
        self.cases += other.cases;
        self.failed += other.failed;
        self.first.extend(other.first);
        self.first.truncate(KEPT_REPORTS);
        for (k, v) in other.outcomes {
            *self.outcomes.entry(k).or_default() += v;
        }
    }

    fn outcomes(&self) -> String {
        self.outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
    }

    fn fail_if_any(&self, name: &str) {
        if self.failed > 0 {
            panic!(
                "fuzz target '{name}': {} of {} cases failed; the first:\n\n{}",
                self.failed,
                self.cases,
                self.first.join("\n\n")
            );
        }
    }
}

thread_local! {
    static OUTCOMES: RefCell<BTreeMap<&'static str, u64>> = const { RefCell::new(BTreeMap::new()) };
}

/// Counts how a case ended (printed with the run's figures).
fn note(outcome: &'static str) {
    OUTCOMES.with(|o| *o.borrow_mut().entry(outcome).or_default() += 1);
}

fn run_seeds<T: FuzzTarget>(target: &T, seeds: std::ops::Range<u64>) -> Tally {
    OUTCOMES.with(|o| o.borrow_mut().clear());
    let mut tally = Tally::default();
    for seed in seeds {
        tally.cases += 1;
        if let Err(report) = run_one(target, seed, false) {
            tally.failed += 1;
            if tally.first.len() < KEPT_REPORTS {
                tally.first.push(report);
            }
        }
    }
    tally.outcomes = OUTCOMES.with(|o| std::mem::take(&mut *o.borrow_mut()));
    tally
}

/// The test command: `FUZZ_CASES` seeds from 1, or the one `FUZZ_SEED`.
fn fuzz<T: FuzzTarget>(target: T) {
    install_panic_hook();
    if let Some(seed) = env_u64("FUZZ_SEED") {
        let mut rng = Rng::new(seed);
        eprintln!("fuzz {} seed {seed}: input {:#?}", T::NAME, target.generate(&mut rng, seed));
        if let Err(report) = run_one(&target, seed, true) {
            panic!("{report}");
        }
        eprintln!("fuzz {} seed {seed}: ok", T::NAME);
        return;
    }
    let n = env_u64("FUZZ_CASES").unwrap_or(DEFAULT_CASES);
    let started = Instant::now();
    let tally = run_seeds(&target, 1..n + 1);
    eprintln!(
        "fuzz {}: {} cases (seeds 1..={n}) in {:.1} s, {} failed; {}",
        T::NAME,
        tally.cases,
        started.elapsed().as_secs_f64(),
        tally.failed,
        tally.outcomes()
    );
    tally.fail_if_any(T::NAME);
}

/// The long mode for one target: `total` seeds spread over every core.
fn fuzz_long<T: FuzzTarget>(target: &T, total: u64) -> Tally {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get() as u64);
    let started = Instant::now();
    let mut tally = Tally::default();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let from = LONG_FIRST_SEED + t * total / threads;
                let to = LONG_FIRST_SEED + (t + 1) * total / threads;
                scope.spawn(move || run_seeds(target, from..to))
            })
            .collect();
        for h in handles {
            tally.add(h.join().unwrap());
        }
    });
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "long mode {}: {} cases (seeds {LONG_FIRST_SEED}..{}) on {threads} threads in {secs:.1} s ({:.0} cases/s), {} failed; {}",
        T::NAME,
        tally.cases,
        LONG_FIRST_SEED + total,
        tally.cases as f64 / secs.max(1e-9),
        tally.failed,
        tally.outcomes()
    );
    tally
}

// ---------------------------------------------------------------------------------------------
// Realistic data: the clinic of the other tests (a program, its attributes and data elements).
// ---------------------------------------------------------------------------------------------

const API: &str = "http://fuzz.test/api";
const USER: &str = "nurse1";
const PASSWORD: &str = "Nurse1!clinic";
const OU: &str = "OuBaniNaim1";
const OU_PATH: &str = "/OuPalestin1/OuHebronDs1/OuBaniNaim1";
const PROGRAM: &str = "PrMchProg01";
const STAGE: &str = "PsAncVisit1";
const TET: &str = "TetPerson01";
const ATTRS: [&str; 3] = ["AtFirstNam1", "AtNationId1", "AtRegNumbr1"];
const GENERATED: &str = "AtRegNumbr1";
const DES: [&str; 3] = ["DeWeightKg1", "DeBpSystol1", "DeRemarks01"];
/// Tracked entities of the template's clinic copy.
const CLINIC_TEIS: usize = 6;
const NAMES: [&str; 6] = ["Fatima", "Huda", "Mariam", "Aisha", "Layla", "فاطمة"];

fn tei_uid(n: usize) -> String {
    format!("Te{n:09}")
}
fn enrollment_uid(n: usize) -> String {
    format!("En{n:09}")
}
fn event_uid(n: usize, v: usize) -> String {
    format!("Ev{n:06}v{v:02}")
}

fn date(rng: &mut Rng) -> String {
    format!("2026-{:02}-{:02}T{:02}:00:00.000", 1 + rng.below(12), 1 + rng.below(28), rng.below(24))
}

fn new_uid(rng: &mut Rng) -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut uid = String::new();
    uid.push(LETTERS[rng.below(LETTERS.len())] as char);
    for _ in 0..10 {
        uid.push(ALNUM[rng.below(ALNUM.len())] as char);
    }
    uid
}

/// UIDs that are not: wrong length, a digit first, punctuation, non-ASCII, path tricks.
const BAD_UIDS: &[&str] = &[
    "",
    "x",
    "1AAAAAAAAAA",
    "AAAAAAAAAA",
    "AAAAAAAAAAAA",
    "AAAAA-AAAAA",
    "AAAAA AAAAA",
    "ÀAAAAAAAAAA",
    "../../../..",
    "Te00000000%",
    "tei:Te00000",
    "null",
];

/// Strings a server or an app might send that break naive code.
fn odd_string(rng: &mut Rng) -> String {
    match rng.below(26) {
        0 => String::new(),
        1 => " ".into(),
        2 => "null".into(),
        3 => "true".into(),
        4 => "-1".into(),
        5 => "18446744073709551616".into(),
        6 => "ACTIVE".into(),
        7 => "ERROR".into(),
        8 => "2026-02-30T25:61:61.000".into(),
        9 => "99999999999999-01-01T00:00:00.000".into(),
        10 => "2026-01-01T00:00:00.éé".into(),
        11 => "فاطمة".into(),
        12 => "\u{0}\u{1}\u{7f}".into(),
        13 => "\u{202E}evil".into(),
        14 => "😀".repeat(1 + rng.below(5)),
        15 => "a".repeat(1 + rng.below(5_000)),
        16 => "%".into(),
        17 => "%ZZ%FF%".into(),
        18 => "<!DOCTYPE html><html>".into(),
        19 => BAD_UIDS[rng.below(BAD_UIDS.len())].into(),
        20 => new_uid(rng),
        21 => tei_uid(rng.below(CLINIC_TEIS + 2)),
        22 => event_uid(rng.below(CLINIC_TEIS), rng.below(2)),
        23 => enrollment_uid(rng.below(CLINIC_TEIS)),
        24 => format!("{}", rng.next()),
        _ => {
            let n = rng.below(12);
            (0..n).map(|_| char::from_u32(rng.below(0x3000) as u32).unwrap_or('?')).collect()
        }
    }
}

/// Keys worth inventing: the ones the core reads.
const KEYS: &[&str] = &[
    "trackedEntityInstance",
    "trackedEntity",
    "trackedEntityType",
    "enrollment",
    "event",
    "enrollments",
    "events",
    "trackedEntities",
    "trackedEntityInstances",
    "instances",
    "attributes",
    "attribute",
    "dataValues",
    "dataElement",
    "value",
    "notes",
    "note",
    "deleted",
    "status",
    "program",
    "programStage",
    "orgUnit",
    "eventDate",
    "occurredAt",
    "enrollmentDate",
    "lastUpdated",
    "updatedAt",
    "created",
    "reference",
    "importSummaries",
    "responseType",
    "importCount",
    "ignored",
    "conflicts",
    "description",
    "errorReports",
    "warningReports",
    "uid",
    "bundleReport",
    "persistenceReport",
    "typeReportMap",
    "objectReports",
    "validationReport",
    "stats",
    "pager",
    "total",
    "page",
    "pageSize",
    "sync",
    "changes",
    "settled_at",
    "ordinal",
    "seq",
    "payload",
    "touches",
    "kind",
    "tei",
    "state",
    "reasons",
    "atMs",
    "type",
    "method",
    "url",
    "body",
    "family",
    "httpStatusCode",
    "message",
    "response",
    "id",
    "location",
    "steps",
    "step",
    "totals",
    "complete",
    "since",
    "lastCompleteMs",
    "lastCompleteServerMs",
    "runStartedServerMs",
    "done",
    "values",
    "*",
    "",
];

fn random_value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 2 { 12 } else { 15 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.chance(50)),
        2 => json!(0),
        3 => json!(-1),
        4 => json!(u64::MAX),
        5 => json!(i64::MIN),
        6 => json!(1e308),
        7 => json!(-0.5),
        8 => json!(9_007_199_254_740_993u64),
        9..=11 => Value::String(odd_string(rng)),
        12 => json!([]),
        13 => json!({}),
        _ => {
            let mut map = Map::new();
            for _ in 0..rng.below(4) {
                map.insert(rng.pick(KEYS).to_string(), random_value(rng, depth + 1));
            }
            if rng.chance(30) {
                Value::Array(vec![Value::Object(map)])
            } else {
                Value::Object(map)
            }
        }
    }
}

/// One step of a path into a JSON value.
#[derive(Clone)]
enum Step {
    Key(String),
    Index(usize),
}

fn paths(value: &Value, prefix: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    out.push(prefix.clone());
    if out.len() > 4_000 {
        return;
    }
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                prefix.push(Step::Key(k.clone()));
                paths(v, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                prefix.push(Step::Index(i));
                paths(v, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn at<'v>(value: &'v mut Value, path: &[Step]) -> Option<&'v mut Value> {
    let mut node = value;
    for step in path {
        node = match (step, node) {
            (Step::Key(k), Value::Object(map)) => map.get_mut(k)?,
            (Step::Index(i), Value::Array(items)) => items.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(node)
}

/// Nested lists `depth` deep (serde_json refuses more than 128 levels).
fn nested(depth: usize) -> Value {
    let mut v = json!("deep");
    for _ in 0..depth {
        v = Value::Array(vec![v]);
    }
    v
}

/// One structural mutation at a random place of `value`.
fn mutate_json(rng: &mut Rng, value: &mut Value) {
    let mut all = Vec::new();
    paths(value, &mut Vec::new(), &mut all);
    let path = all[rng.below(all.len())].clone();
    let donor = {
        let other = all[rng.below(all.len())].clone();
        at(value, &other).cloned().unwrap_or(Value::Null)
    };
    // Removing the node from its parent.
    if !path.is_empty() && rng.chance(20) {
        let (last, parent) = path.split_last().unwrap();
        if let Some(parent) = at(value, parent) {
            match (last, parent) {
                (Step::Key(k), Value::Object(map)) => {
                    map.remove(k);
                }
                (Step::Index(i), Value::Array(items)) if *i < items.len() => {
                    items.remove(*i);
                }
                _ => {}
            }
        }
        return;
    }
    let Some(node) = at(value, &path) else { return };
    match rng.below(12) {
        0 | 1 => *node = random_value(rng, 0),
        2 => *node = donor,
        3 => *node = Value::String(odd_string(rng)),
        4 => *node = nested(100 + rng.below(40)),
        5 => *node = json!([node.clone()]),
        _ => match node {
            Value::Object(map) => match rng.below(4) {
                0 if !map.is_empty() => {
                    let key = map.keys().nth(rng.below(map.len())).cloned().unwrap();
                    map.remove(&key);
                }
                1 if !map.is_empty() => {
                    // A key renamed (the value kept).
                    let key = map.keys().nth(rng.below(map.len())).cloned().unwrap();
                    let v = map.remove(&key).unwrap();
                    map.insert(rng.pick(KEYS).to_string(), v);
                }
                _ => {
                    map.insert(rng.pick(KEYS).to_string(), random_value(rng, 1));
                }
            },
            Value::Array(items) => match rng.below(4) {
                0 if !items.is_empty() => {
                    let i = rng.below(items.len());
                    items.remove(i);
                }
                1 if !items.is_empty() => {
                    let i = rng.below(items.len());
                    let copy = items[i].clone();
                    items.insert(i, copy);
                }
                2 => items.clear(),
                _ => items.push(random_value(rng, 1)),
            },
            Value::String(s) => {
                *s = match rng.below(5) {
                    0 => String::new(),
                    1 => s.chars().take(rng.below(s.chars().count() + 1)).collect(),
                    2 => format!("{s}{}", odd_string(rng)),
                    3 => BAD_UIDS[rng.below(BAD_UIDS.len())].into(),
                    _ => odd_string(rng),
                }
            }
            Value::Number(_) => {
                *node = rng.pick(&[
                    json!(0),
                    json!(-1),
                    json!(u64::MAX),
                    json!(i64::MIN),
                    json!(1e308),
                    json!(0.5),
                    json!("12"),
                ])
            }
            Value::Bool(b) => *node = if rng.chance(50) { Value::Bool(!*b) } else { json!("true") },
            Value::Null => *node = random_value(rng, 0),
        },
    }
}

/// 1 to 4 structural mutations.
fn mutate_json_some(rng: &mut Rng, value: &mut Value) {
    for _ in 0..1 + rng.below(4) {
        mutate_json(rng, value);
    }
}

/// One byte-level mutation of serialised bytes.
fn mutate_bytes(rng: &mut Rng, bytes: &mut Vec<u8>) {
    let len = bytes.len();
    match rng.below(9) {
        0 if len > 0 => bytes.truncate(rng.below(len)),
        1 if len > 0 => {
            let i = rng.below(len);
            bytes[i] ^= 1 << rng.below(8);
        }
        2 => {
            let at = rng.below(len + 1);
            let junk = match rng.below(4) {
                0 => vec![0xFF],
                1 => vec![0xC3],
                2 => b"\\u0000".to_vec(),
                _ => {
                    let n = 1 + rng.below(8);
                    rng.bytes(n)
                }
            };
            bytes.splice(at..at, junk);
        }
        3 if len > 0 => {
            let from = rng.below(len);
            let to = (from + 1 + rng.below(16)).min(len);
            bytes.drain(from..to);
        }
        4 if len > 0 => {
            let from = rng.below(len);
            let to = (from + 1 + rng.below(32)).min(len);
            let copy = bytes[from..to].to_vec();
            bytes.splice(from..from, copy);
        }
        5 => {
            let n = rng.below(64);
            *bytes = rng.bytes(n);
        }
        6 => *bytes = "[".repeat(200 + rng.below(5_000)).into_bytes(),
        7 => bytes.clear(),
        _ => {
            if len > 0 {
                let i = rng.below(len);
                bytes[i] = rng.pick(b"{}[]\",:0-e.\\");
            }
        }
    }
}

/// The legacy tracked entity `n` of the clinic, as the server gives it (`fields=*`).
fn legacy_tei(n: usize, updated: &str) -> Value {
    let uid = tei_uid(n);
    let events: Vec<Value> = (0..2)
        .map(|v| {
            json!({"event": event_uid(n, v), "program": PROGRAM, "programStage": STAGE, "orgUnit": OU,
                "orgUnitName": "Bani Naim Clinic", "trackedEntityInstance": uid, "enrollment": enrollment_uid(n),
                "status": if v == 0 { "COMPLETED" } else { "ACTIVE" }, "eventDate": format!("2026-02-{:02}T00:00:00.000", n % 28 + 1),
                "dueDate": "2026-02-01T00:00:00.000", "created": "2026-02-01T10:00:00.000", "lastUpdated": updated,
                "deleted": false, "followup": false, "storedBy": "admin",
                "dataValues": DES.iter().enumerate().map(|(i, de)| json!({"dataElement": de, "value": format!("{}", 60 + n + i),
                    "providedElsewhere": false, "storedBy": "admin", "created": "2026-02-01T10:00:00.000", "lastUpdated": updated})).collect::<Vec<_>>(),
                "notes": [{"note": format!("No{n:06}v{v:02}"), "value": "seen", "storedBy": "admin", "storedDate": "2026-02-01T10:00:00.000"}]})
        })
        .collect();
    json!({
        "trackedEntityInstance": uid, "trackedEntityType": TET, "orgUnit": OU,
        "created": format!("2026-01-{:02}T10:00:00.000", n % 28 + 1), "lastUpdated": updated,
        "inactive": false, "deleted": false, "potentialDuplicate": false, "relationships": [],
        "programOwners": [{"ownerOrgUnit": OU, "program": PROGRAM, "trackedEntityInstance": uid}],
        "attributes": [
            {"attribute": ATTRS[0], "value": NAMES[n % NAMES.len()], "displayName": "First name", "valueType": "TEXT"},
            {"attribute": ATTRS[1], "value": format!("40{n:07}"), "displayName": "National ID", "valueType": "TEXT"}],
        "enrollments": [{"enrollment": enrollment_uid(n), "program": PROGRAM, "orgUnit": OU, "orgUnitName": "Bani Naim Clinic",
            "trackedEntityInstance": uid, "trackedEntityType": TET, "status": "ACTIVE", "followup": n % 2 == 0, "deleted": false,
            "enrollmentDate": "2026-01-05T00:00:00.000", "incidentDate": "2026-01-01T00:00:00.000",
            "notes": [], "attributes": [], "events": events}]
    })
}

/// A tracked entity for a download page: a clinic one (merged with the local copy, some with
/// unsent changes) or a new one, with 0-2 enrollments of 0-3 events, some deleted.
fn page_tei(rng: &mut Rng, uid: String) -> Value {
    if let Some(n) = (0..CLINIC_TEIS).find(|n| tei_uid(*n) == uid) {
        if rng.chance(60) {
            let mut tei = legacy_tei(n, "2026-06-01T00:00:00.000");
            if rng.chance(20) {
                tei["enrollments"][0]["events"][1]["deleted"] = json!(true);
            }
            if rng.chance(10) {
                tei["enrollments"][0]["deleted"] = json!(true);
            }
            return tei;
        }
    }
    let enrollments: Vec<Value> = (0..rng.below(3))
        .map(|_| {
            let enrollment = new_uid(rng);
            let events: Vec<Value> = (0..rng.below(4))
                .map(|_| {
                    json!({"event": new_uid(rng), "program": PROGRAM, "programStage": STAGE, "orgUnit": OU,
                        "enrollment": enrollment, "status": rng.pick(&["ACTIVE", "COMPLETED", "SCHEDULE"]),
                        "eventDate": date(rng), "deleted": rng.chance(10),
                        "dataValues": [{"dataElement": rng.pick(&DES), "value": odd_string(rng)}],
                        "notes": [{"note": new_uid(rng), "value": odd_string(rng)}]})
                })
                .collect();
            json!({"enrollment": enrollment, "program": PROGRAM, "orgUnit": OU,
                "status": rng.pick(&["ACTIVE", "COMPLETED", "CANCELLED"]), "enrollmentDate": date(rng),
                "incidentDate": date(rng), "followup": rng.chance(20), "deleted": rng.chance(5), "events": events})
        })
        .collect();
    json!({"trackedEntityInstance": uid, "trackedEntityType": TET, "orgUnit": OU, "created": date(rng),
        "lastUpdated": date(rng), "inactive": rng.chance(10), "deleted": rng.chance(8),
        "attributes": [{"attribute": ATTRS[0], "value": odd_string(rng)}, {"attribute": ATTRS[1], "value": format!("{}", rng.below(1_000_000))}],
        "enrollments": enrollments})
}

/// A record made malformed the way a server bug or a proxy would: an invalid UID, a list that
/// is not one, a record that is not an object.
fn break_record(rng: &mut Rng, tei: &mut Value) {
    let bad = Value::String(rng.pick(BAD_UIDS).to_string());
    match rng.below(9) {
        0 => tei["trackedEntityInstance"] = bad,
        1 => tei["trackedEntityInstance"] = json!(12345),
        2 => tei["enrollments"] = rng.pick(&[json!("oops"), json!({}), json!(3), Value::Null]),
        3 if tei["enrollments"].as_array().is_some_and(|l| !l.is_empty()) => tei["enrollments"][0]["enrollment"] = bad,
        4 if tei["enrollments"].as_array().is_some_and(|l| !l.is_empty()) => {
            tei["enrollments"][0]["events"] = rng.pick(&[json!("x"), json!(7), json!({"event": "x"})])
        }
        5 if tei["enrollments"][0]["events"].as_array().is_some_and(|l| !l.is_empty()) => {
            tei["enrollments"][0]["events"][0]["event"] = rng.pick(&[bad, json!(42), Value::Null])
        }
        6 if tei["enrollments"].as_array().is_some_and(|l| !l.is_empty()) => {
            tei["enrollments"][0] = rng.pick(&[json!("enrollment"), json!(1), json!([])])
        }
        7 => *tei = rng.pick(&[json!("not a record"), json!(null), json!([1, 2]), json!(0)]),
        _ => {
            if let Some(o) = tei.as_object_mut() {
                o.remove("trackedEntityInstance");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A scripted DHIS2: metadata, pages of tracked entities, faults, and a watch on the store.
// ---------------------------------------------------------------------------------------------

/// Every (key, value) of every store.
type Snapshot = BTreeMap<StoreName, BTreeMap<String, Vec<u8>>>;

async fn snapshot(store: &MemoryStore) -> Snapshot {
    let mut out = Snapshot::new();
    for name in StoreName::ALL {
        out.insert(name, store.list(name).await.unwrap().into_iter().collect());
    }
    out
}

/// Drops the sealed manifest (its root and shards in the meta store) from a snapshot: for
/// comparisons that allow a write, whose manifest update comes with it in the same batch.
fn without_manifest(s: &mut Snapshot) {
    if let Some(meta) = s.get_mut(&StoreName::Meta) {
        meta.retain(|k, _| k != "manifest" && !k.starts_with("manifest:"));
    }
}

/// What differs between two snapshots (store, key: added / removed / changed).
fn diff(before: &Snapshot, after: &Snapshot) -> String {
    let mut out = Vec::new();
    for name in StoreName::ALL {
        let (a, b) = (&before[&name], &after[&name]);
        for (k, v) in b {
            match a.get(k) {
                None => out.push(format!("{}:{k} added", name.as_str())),
                Some(old) if old != v => out.push(format!("{}:{k} changed", name.as_str())),
                _ => {}
            }
        }
        for k in a.keys().filter(|k| !b.contains_key(*k)) {
            out.push(format!("{}:{k} removed", name.as_str()));
        }
    }
    out.join(", ")
}

/// An injected failure of one request.
#[derive(Debug, Clone)]
enum Fault {
    Network,
    Status(u16),
    Html,
    Empty,
}

/// What a page request got.
#[derive(Debug, Clone)]
struct Served {
    tracker: bool,
    body: Vec<u8>,
    fault: Option<Fault>,
}

/// A scripted DHIS2 2.40-2.42 for the download: bodies fixed by the generator, served in the
/// order asked; page `p` of the tracked entities is `pages[p - 1]` (an empty page after).
struct Dhis2Mock {
    system_info: Vec<u8>,
    org_units: Vec<u8>,
    own_org_unit: Vec<u8>,
    programs: Vec<u8>,
    reserve: Vec<u8>,
    pages: Vec<Vec<u8>>,
    /// Faults by request number (0-based).
    faults: BTreeMap<usize, Fault>,
    requests: Cell<usize>,
    served: RefCell<Vec<Served>>,
    /// The store whose state is recorded at each request (what a failed call must leave).
    watch: Option<MemoryStore>,
    at_last_request: RefCell<Option<Snapshot>>,
}

/// More requests than any download of a generated server needs: the download did not stop.
const RUNAWAY_REQUESTS: usize = 200;

impl Dhis2Mock {
    fn valid(version: &str, pages: Vec<Vec<u8>>) -> Self {
        Dhis2Mock {
            system_info: json!({"version": version, "serverDate": "2026-11-26T09:00:00.000"}).to_string().into_bytes(),
            org_units: json!({"organisationUnits": [{"id": OU, "path": OU_PATH, "displayName": "Bani Naim Clinic"}]})
                .to_string()
                .into_bytes(),
            own_org_unit: json!({"id": OU, "path": OU_PATH, "displayName": "Bani Naim Clinic"}).to_string().into_bytes(),
            programs: programs_json().to_string().into_bytes(),
            reserve: json!([{"ownerObject": "TRACKEDENTITYATTRIBUTE", "ownerUid": GENERATED, "key": "RNO", "value": "RNO-000001",
                "created": "2026-11-26T09:00:00.000", "expiryDate": "2027-01-26T09:00:00.000"},
                {"ownerObject": "TRACKEDENTITYATTRIBUTE", "ownerUid": GENERATED, "key": "RNO", "value": "RNO-000002",
                "created": "2026-11-26T09:00:00.000", "expiryDate": "2027-01-26T09:00:00.000"}])
            .to_string()
            .into_bytes(),
            pages,
            faults: BTreeMap::new(),
            requests: Cell::new(0),
            served: RefCell::default(),
            watch: None,
            at_last_request: RefCell::default(),
        }
    }

    fn runaway(&self) -> bool {
        self.requests.get() > RUNAWAY_REQUESTS
    }
}

fn programs_json() -> Value {
    json!({"programs": [{"id": PROGRAM, "displayName": "MCH", "programType": "WITH_REGISTRATION",
        "trackedEntityType": {"id": TET}, "programTrackedEntityAttributes": [
            {"displayInList": true, "trackedEntityAttribute": {"id": ATTRS[0], "displayName": "First name", "valueType": "TEXT"}},
            {"displayInList": true, "trackedEntityAttribute": {"id": ATTRS[1], "displayName": "National ID", "valueType": "TEXT"}},
            {"displayInList": false, "trackedEntityAttribute": {"id": GENERATED, "displayName": "Registration number",
                "valueType": "TEXT", "generated": true}}]}]})
}

fn ok_json(body: Vec<u8>) -> Result<HttpResponse> {
    Ok(HttpResponse { status: 200, headers: vec![("content-type".into(), "application/json".into())], body })
}

impl HttpClient for &Dhis2Mock {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse> {
        let n = self.requests.get();
        self.requests.set(n + 1);
        if n >= RUNAWAY_REQUESTS {
            return Err(CoreError::ServerUnreachable("the scripted server stopped answering (runaway)".into()));
        }
        if let Some(store) = &self.watch {
            *self.at_last_request.borrow_mut() = Some(snapshot(store).await);
        }
        let t = Target::parse(&request.url);
        let fault = self.faults.get(&n).cloned();
        let body = match t.path.as_str() {
            "/api/me" => json!({"id": "UsNurse0001", "username": USER, "displayName": "Amal Haddad",
                "organisationUnits": [{"id": OU, "displayName": "Bani Naim Clinic"}], "teiSearchOrganisationUnits": [],
                "authorities": []})
            .to_string()
            .into_bytes(),
            "/api/system/info" => self.system_info.clone(),
            "/api/organisationUnits" => self.org_units.clone(),
            p if p.starts_with("/api/organisationUnits/") => self.own_org_unit.clone(),
            "/api/programs" => self.programs.clone(),
            p if p.ends_with("/generateAndReserve") => self.reserve.clone(),
            p @ ("/api/trackedEntityInstances.json" | "/api/tracker/trackedEntities") => {
                let tracker = p.starts_with("/api/tracker");
                let page: usize = t.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
                let body = match page.checked_sub(1).and_then(|i| self.pages.get(i)) {
                    Some(body) => body.clone(),
                    None if tracker => br#"{"trackedEntities":[]}"#.to_vec(),
                    None => br#"{"trackedEntityInstances":[]}"#.to_vec(),
                };
                self.served.borrow_mut().push(Served { tracker, body: body.clone(), fault: fault.clone() });
                body
            }
            _ => {
                return Ok(HttpResponse {
                    status: 404,
                    headers: vec![],
                    body: br#"{"httpStatusCode":404,"status":"ERROR","message":"Not found"}"#.to_vec(),
                })
            }
        };
        match fault {
            None => ok_json(body),
            Some(Fault::Network) => Err(CoreError::ServerUnreachable("Failed to fetch".into())),
            Some(Fault::Status(status)) => Ok(HttpResponse {
                status,
                headers: vec![("content-type".into(), "application/json".into())],
                body: json!({"httpStatusCode": status, "status": "ERROR", "message": "injected"})
                    .to_string()
                    .into_bytes(),
            }),
            Some(Fault::Html) => Ok(HttpResponse {
                status: 200,
                headers: vec![("content-type".into(), "text/html".into())],
                body: b"<!DOCTYPE html><html><body>Clinic WiFi</body></html>".to_vec(),
            }),
            Some(Fault::Empty) => Ok(HttpResponse { status: 200, headers: vec![], body: vec![] }),
        }
    }
}

/// The network is down (captures and offline reads never ask it).
struct Down;

impl HttpClient for Down {
    async fn send(&self, _request: HttpRequest) -> Result<HttpResponse> {
        Err(CoreError::ServerUnreachable("offline".into()))
    }
}

type Eng<H> = Engine<MemoryStore, RustPbkdf2, DeterministicRandom, H>;

fn open<H: HttpClient>(store: &MemoryStore, http: H, seed: u64) -> Eng<H> {
    Engine::new(
        EngineConfig::new(API, fast_policy()).unwrap(),
        store.clone(),
        RustPbkdf2,
        DeterministicRandom::new(seed),
        http,
    )
}

// ---------------------------------------------------------------------------------------------
// The template: a device after an online login, a download and a morning of offline work.
// ---------------------------------------------------------------------------------------------

/// The stored state every engine case starts from, and what the generators need to know of it.
struct Template {
    data: Vec<(StoreName, String, Vec<u8>)>,
    /// The vault's data key (a case unlocks with it: no password derivation per case).
    key: Vec<u8>,
    /// The tracked entity registered offline.
    new_tei: String,
    /// Sealed records by (store, id): their storage key and plaintext.
    records: Vec<(StoreName, String, String, Vec<u8>)>,
    /// Tracked entities with unsent changes.
    changed_teis: BTreeSet<String>,
}

fn template() -> &'static Template {
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    TEMPLATE.get_or_init(build_template)
}

async fn capture<H: HttpClient>(e: &Eng<H>, method: &str, path: &str, body: Value) -> HttpResponse {
    let body = if body.is_null() { vec![] } else { body.to_string().into_bytes() };
    let prepared = e.prepare_write(method, &format!("{API}/{path}"), "application/json", &body).unwrap();
    e.capture_write(&prepared, T0 + 60_000).await.unwrap()
}

fn build_template() -> Template {
    block_on(async {
        let store = MemoryStore::new();
        let page = json!({"pager": {"page": 1, "pageSize": 50, "total": CLINIC_TEIS},
            "trackedEntityInstances": (0..CLINIC_TEIS).map(|n| legacy_tei(n, "2026-03-01T00:00:00.000")).collect::<Vec<_>>()});
        let server = Dhis2Mock::valid("2.40.3", vec![page.to_string().into_bytes()]);
        let e = open(&store, &server, 7);
        e.login(USER, PASSWORD, T0).await.unwrap();
        let report = e.download(DownloadOptions::default(), T0, &mut |_| {}).await.unwrap();
        assert_eq!(report.tracked_entities, CLINIC_TEIS as u64);
        assert_eq!(report.reserved_values, 2);
        // Offline work: a value changed, a woman registered, a note, a visit through the tracker
        // API, a raw write.
        capture(
            &e,
            "PUT",
            &format!("events/{}/{}", event_uid(0, 0), DES[0]),
            json!({"dataValues": [{"dataElement": DES[0], "value": "63.5"}]}),
        )
        .await;
        let registered = capture(&e, "POST", "trackedEntityInstances", json!({"trackedEntityType": TET, "orgUnit": OU,
            "attributes": [{"attribute": ATTRS[0], "value": "Noor"}, {"attribute": ATTRS[1], "value": "409999999"}],
            "enrollments": [{"program": PROGRAM, "orgUnit": OU, "enrollmentDate": "2026-11-26T00:00:00.000",
                "incidentDate": "2026-11-01T00:00:00.000", "events": [{"programStage": STAGE, "orgUnit": OU, "status": "ACTIVE",
                    "eventDate": "2026-11-26T00:00:00.000", "dataValues": [{"dataElement": DES[0], "value": "58"}]}]}]})).await;
        let answer: Value = serde_json::from_slice(&registered.body).unwrap();
        let new_tei = answer["response"]["importSummaries"][0]["reference"].as_str().unwrap().to_string();
        capture(&e, "POST", &format!("events/{}/note", event_uid(2, 1)), json!({"value": "called her"})).await;
        capture(&e, "POST", "tracker?async=true", json!({"events": [{"event": event_uid(1, 1), "trackedEntity": tei_uid(1),
            "enrollment": enrollment_uid(1), "program": PROGRAM, "programStage": STAGE, "orgUnit": OU, "status": "COMPLETED",
            "occurredAt": "2026-11-20T00:00:00.000", "dataValues": [{"dataElement": DES[1], "value": "120"}]}]})).await;
        capture(&e, "PUT", "dataStore/clinic/settings", json!({"language": "ar"})).await;
        // One entry the server refused, a warning on accepted work, a conflict, the refused
        // password of another user, cached answers.
        let entries = e.outbox_entries().await.unwrap();
        let raw = entries.iter().find(|x| x.summary.contains("dataStore")).unwrap();
        let mut failed = raw.clone();
        failed.state = EntryState::Failed { reasons: vec!["E1000: refused".into()], at_ms: T0 + 90_000 };
        e.vault().put_record(StoreName::Outbox, &raw.id(), &serde_json::to_vec(&failed).unwrap()).await.unwrap();
        let warning = Failure {
            id: "warning:00001780000000000000".into(),
            author: USER.into(),
            summary: "POST /api/tracker".into(),
            records: vec![event_uid(3, 0)],
            reasons: vec!["E1017: Attribute value ignored".into()],
            created_at_ms: T0,
            failed_at_ms: T0 + 1,
            severity: Severity::Warning,
            change: None,
        };
        e.vault()
            .put_record(StoreName::Cache, WARNINGS_ID, &serde_json::to_vec(&vec![warning]).unwrap())
            .await
            .unwrap();
        let conflict = Conflict {
            id: format!("conflict:{}:dv:{}:{T0}", event_uid(4, 0), DES[1]),
            kind: tracker_offline_core::family::Kind::Event,
            record: event_uid(4, 0),
            tei: tei_uid(4),
            field: format!("dv:{}", DES[1]),
            base: json!("110"),
            server: json!("130"),
            device: json!("125"),
            author: USER.into(),
            changed_at_ms: T0,
            found_at_ms: T0 + 1,
            server_updated: Some("2026-05-28T20:30:00.000".into()),
            held: false,
            source: ConflictSource::Server,
        };
        e.vault()
            .put_record(StoreName::Cache, CONFLICTS_ID, &serde_json::to_vec(&vec![conflict]).unwrap())
            .await
            .unwrap();
        e.vault().put_record(StoreName::Cache, PASSWORD_REFUSED_ID, br#"{"username":"nurse9"}"#).await.unwrap();
        e.cache_response(
            &format!("{API}/me?fields=id,username"),
            200,
            "application/json",
            br#"{"id":"UsNurse0001","username":"nurse1"}"#,
        )
        .await
        .unwrap();
        e.cache_response(
            &format!("{API}/programs?paging=false"),
            200,
            "application/json",
            &programs_json().to_string().into_bytes(),
        )
        .await
        .unwrap();

        let mut ids: Vec<(StoreName, String)> = Vec::new();
        for uid in (0..CLINIC_TEIS).map(tei_uid).chain([new_tei.clone()]) {
            ids.push((StoreName::Records, bundle_id(&uid)));
            ids.push((StoreName::Index, bundle_id(&uid)));
        }
        for entry in e.outbox_entries().await.unwrap() {
            ids.push((StoreName::Outbox, entry.id()));
        }
        for id in [METADATA_ID, CURSOR_ID, WARNINGS_ID, CONFLICTS_ID, PASSWORD_REFUSED_ID, "reserved:AtRegNumbr1"] {
            ids.push((StoreName::Cache, id.to_string()));
        }
        let mut records = Vec::new();
        for (name, id) in ids {
            let key = e.vault().record_storage_key(name, &id).unwrap();
            let plain = e.vault().get_record(name, &id).await.unwrap().unwrap_or_else(|| panic!("{id} stored"));
            records.push((name, id, key, plain));
        }
        let mut changed_teis = BTreeSet::new();
        for uid in (0..CLINIC_TEIS).map(tei_uid).chain([new_tei.clone()]) {
            let bundle =
                parse_bundle(&e.vault().get_record(StoreName::Records, &bundle_id(&uid)).await.unwrap().unwrap())
                    .unwrap();
            if bundle.has_local_changes() {
                changed_teis.insert(uid);
            }
        }
        let key = e.vault().export_data_key().unwrap().to_vec();
        let mut data = Vec::new();
        for name in StoreName::ALL {
            for (k, v) in store.list(name).await.unwrap() {
                data.push((name, k, v));
            }
        }
        Template { data, key, new_tei, records, changed_teis }
    })
}

/// A store holding the template's bytes (with a quota, when given).
fn restore(quota: Option<usize>) -> MemoryStore {
    let store = match quota {
        Some(q) => MemoryStore::with_quota(q),
        None => MemoryStore::new(),
    };
    for (name, key, value) in &template().data {
        store.raw_put(*name, key, value.clone()).unwrap();
    }
    store
}

fn template_bytes() -> usize {
    template().data.iter().map(|(_, k, v)| k.len() + v.len()).sum()
}

/// An engine over `store`, unlocked as the nurse (the service worker's way: the data key).
async fn unlocked<H: HttpClient>(store: &MemoryStore, http: H, seed: u64) -> Result<Eng<H>> {
    let e = open(store, http, seed);
    e.vault().unlock_with_data_key(USER, &template().key, Some(PASSWORD)).await?;
    Ok(e)
}

/// An error of a call must be one of the codes it may give.
fn coded(what: &str, error: &CoreError, allowed: &[&str]) -> std::result::Result<(), String> {
    let code = error.code();
    let _readable = error.to_string();
    if allowed.contains(&code) {
        Ok(())
    } else {
        Err(format!("{what} failed with {code} ({error}); expected one of {allowed:?}"))
    }
}

/// Every bundle and index row stored since `before` opens and parses (as every read parses
/// them), and each bundle has its row.
async fn readable<H: HttpClient>(e: &Eng<H>, before: &Snapshot) -> std::result::Result<(), String> {
    let store = e.vault().store();
    for name in [StoreName::Records, StoreName::Index] {
        let old = before.get(&name);
        let changed: BTreeSet<String> = store
            .list(name)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|(key, sealed)| old.and_then(|t| t.get(key)) != Some(sealed))
            .map(|(key, _)| key)
            .collect();
        if changed.is_empty() {
            continue;
        }
        for (key, plain) in e.vault().open_all(name).await.map_err(|e| e.to_string())? {
            if !changed.contains(&key) {
                continue;
            }
            let plain = plain.map_err(|e| format!("{}:{key} does not open: {e}", name.as_str()))?;
            match name {
                StoreName::Records => {
                    parse_bundle(&plain).map_err(|e| format!("a stored bundle cannot be read back: {e}"))?;
                }
                _ => {
                    serde_json::from_slice::<IndexRow>(&plain)
                        .map_err(|e| format!("a stored index row cannot be read back: {e}"))?;
                }
            }
        }
    }
    let (bundles, rows) =
        (store.count(StoreName::Records).await.unwrap_or(0), store.count(StoreName::Index).await.unwrap_or(0));
    if bundles != rows {
        return Err(format!("{bundles} bundles but {rows} index rows"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Target 1: the app's writes, prepared and captured.
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct WriteInput {
    seed: u64,
    method: String,
    url: String,
    content_type: String,
    body: Shown,
    /// False for a valid write (it must be prepared and captured).
    mutated: bool,
    /// Room left under a storage quota, when the store has one.
    quota_room: Option<usize>,
}

struct Writes;

/// A UID of a record of the clinic (70 %) or a new one.
fn some_tei(rng: &mut Rng) -> String {
    if rng.chance(70) {
        if rng.chance(15) {
            template().new_tei.clone()
        } else {
            tei_uid(rng.below(CLINIC_TEIS))
        }
    } else {
        new_uid(rng)
    }
}

fn data_values(rng: &mut Rng) -> Value {
    Value::Array(
        (0..rng.below(4))
            .map(|_| {
                let value =
                    if rng.chance(70) { json!(format!("{}", rng.below(200))) } else { Value::String(odd_string(rng)) };
                json!({"dataElement": rng.pick(&DES), "value": value})
            })
            .collect(),
    )
}

fn event_body(rng: &mut Rng, with_uid: bool) -> Value {
    let n = rng.below(CLINIC_TEIS);
    let mut ev = json!({"program": PROGRAM, "programStage": STAGE, "orgUnit": OU, "status": rng.pick(&["ACTIVE", "COMPLETED"]),
        "eventDate": date(rng), "dataValues": data_values(rng)});
    if with_uid {
        ev["event"] = json!(if rng.chance(70) { event_uid(n, rng.below(2)) } else { new_uid(rng) });
    }
    if rng.chance(60) {
        ev["enrollment"] = json!(enrollment_uid(n));
    }
    if rng.chance(50) {
        ev["trackedEntityInstance"] = json!(tei_uid(n));
    }
    if rng.chance(30) {
        ev["notes"] = json!([{"value": odd_string(rng)}]);
    }
    ev
}

fn enrollment_body(rng: &mut Rng) -> Value {
    let mut e = json!({"trackedEntityInstance": some_tei(rng), "program": PROGRAM, "orgUnit": OU, "status": "ACTIVE",
        "enrollmentDate": date(rng), "incidentDate": date(rng)});
    if rng.chance(40) {
        e["enrollment"] = json!(if rng.chance(50) { enrollment_uid(rng.below(CLINIC_TEIS)) } else { new_uid(rng) });
    }
    if rng.chance(50) {
        e["events"] = Value::Array(
            (0..1 + rng.below(2))
                .map(|_| {
                    let with_uid = rng.chance(30);
                    event_body(rng, with_uid)
                })
                .collect(),
        );
    }
    e
}

fn tei_body(rng: &mut Rng) -> Value {
    let mut t = json!({"trackedEntityType": TET, "orgUnit": OU,
        "attributes": [{"attribute": ATTRS[0], "value": rng.pick(&NAMES)}, {"attribute": ATTRS[1], "value": format!("4{:08}", rng.below(100_000_000))}]});
    if rng.chance(40) {
        t["trackedEntityInstance"] = json!(some_tei(rng));
    }
    if rng.chance(60) {
        let mut e = enrollment_body(rng);
        e.as_object_mut().unwrap().remove("trackedEntityInstance");
        t["enrollments"] = json!([e]);
    }
    t
}

/// A `/api/tracker` import body (tracker naming).
fn tracker_body(rng: &mut Rng) -> Value {
    let mut body = Map::new();
    if rng.chance(40) {
        body.insert("trackedEntities".into(), tracker_list(rng, 2, Kind::TrackedEntity, tei_body));
    }
    if rng.chance(40) {
        body.insert("enrollments".into(), tracker_list(rng, 2, Kind::Enrollment, enrollment_body));
    }
    if body.is_empty() || rng.chance(60) {
        let event = |rng: &mut Rng| {
            let with_uid = rng.chance(60);
            event_body(rng, with_uid)
        };
        body.insert("events".into(), tracker_list(rng, 3, Kind::Event, event));
    }
    Value::Object(body)
}

/// One to `most` records of `kind` made by `make` (legacy naming), as a list in the tracker naming.
fn tracker_list(rng: &mut Rng, most: usize, kind: Kind, mut make: impl FnMut(&mut Rng) -> Value) -> Value {
    let list = (0..1 + rng.below(most))
        .map(|_| Value::Object(convert(kind, make(rng).as_object().unwrap(), Naming::Tracker { minor: 40 })))
        .collect();
    Value::Array(list)
}

/// Bulk (`{wrapper: [...]}`) or single.
fn bulk_or_single(bulk: bool, wrapper: &str, item: Value) -> Value {
    if bulk {
        json!({ wrapper: [item] })
    } else {
        item
    }
}

impl FuzzTarget for Writes {
    type Input = WriteInput;
    const NAME: &'static str = "writes";
    const TEST: &'static str = "fuzz_prepare_write_and_capture";

    fn generate(&self, rng: &mut Rng, seed: u64) -> WriteInput {
        let n = rng.below(CLINIC_TEIS);
        let (ev, en, tei) = (event_uid(n, rng.below(2)), enrollment_uid(n), some_tei(rng));
        let json_suffix = if rng.chance(20) { ".json" } else { "" };
        let (method, path, body): (&str, String, Value) = match rng.below(16) {
            0 | 1 => ("POST", format!("trackedEntityInstances{json_suffix}"), {
                let item = tei_body(rng);
                bulk_or_single(rng.chance(50), "trackedEntityInstances", item)
            }),
            2 => ("PUT", format!("trackedEntityInstances/{tei}"), tei_body(rng)),
            3 => ("POST", format!("enrollments{json_suffix}"), {
                let item = enrollment_body(rng);
                bulk_or_single(rng.chance(50), "enrollments", item)
            }),
            4 => ("PUT", format!("enrollments/{en}"), enrollment_body(rng)),
            5 => (
                "PUT",
                format!("enrollments/{en}/{}", rng.pick(&["completed", "cancelled", "incompleted"])),
                Value::Null,
            ),
            6 => ("POST", format!("events{json_suffix}"), {
                let with_uid = rng.chance(50);
                let item = event_body(rng, with_uid);
                bulk_or_single(rng.chance(50), "events", item)
            }),
            7 => ("PUT", format!("events/{ev}"), event_body(rng, false)),
            8 => ("PUT", format!("events/{ev}/eventDate"), json!({"eventDate": date(rng)})),
            9 => ("POST", format!("events/{ev}/note"), json!({"value": odd_string(rng)})),
            10 => {
                let de = rng.pick(&DES);
                (
                    "PUT",
                    format!("events/{ev}/{de}"),
                    json!({"dataValues": [{"dataElement": de, "value": format!("{}", rng.below(300))}]}),
                )
            }
            11 => {
                let (collection, uid) = rng.pick(&[
                    ("trackedEntityInstances", tei.clone()),
                    ("enrollments", en.clone()),
                    ("events", ev.clone()),
                ]);
                ("DELETE", format!("{collection}/{uid}"), Value::Null)
            }
            12 | 13 => {
                let query = rng.pick(&[
                    "",
                    "?async=false",
                    "?async=true",
                    "?importStrategy=CREATE_AND_UPDATE",
                    "?importStrategy=DELETE&async=false",
                ]);
                ("POST", format!("tracker{query}"), tracker_body(rng))
            }
            14 => (
                "POST",
                "trackedEntityInstances?strategy=DELETE".to_string(),
                json!({"trackedEntityInstances": [{"trackedEntityInstance": tei}]}),
            ),
            _ => {
                let (m, p, b) = rng.pick(&[
                    ("PUT", "dataStore/clinic/settings", json!({"language": "ar"})),
                    ("POST", "userSettings/keyUiLocale", json!("ar")),
                    ("PUT", "userDataStore/capture/prefs", json!({"columns": [ATTRS[0]]})),
                    ("POST", "messageConversations", json!({"subject": "hello", "text": "from the clinic"})),
                ]);
                (m, p.to_string(), b)
            }
        };
        let mut mutated = false;
        let base = if rng.chance(85) {
            API.to_string()
        } else {
            let (base, valid) = rng.pick(&[
                ("/api", true),
                ("http://fuzz.test/api/40", true),
                ("http://fuzz.test:80/api", true),
                ("http://other.host/api", true),
                ("/dhis/api", false),
                ("http://fuzz.test", false),
                ("", false),
                ("http://fuzz.test/apix", false),
            ]);
            mutated |= !valid;
            base.to_string()
        };
        let mut url = format!("{base}/{path}");
        let mut body_value = body;
        let mut method = method.to_string();
        if rng.chance(55) {
            mutated = true;
            match rng.below(10) {
                0 => url = mutate_text(rng, &url),
                1 => method = rng.pick(&["get", "PATCH", "put", "", "DELETE", "POST ", "ÖPT"]).to_string(),
                _ => mutate_json_some(rng, &mut body_value),
            }
        }
        let mut body =
            if body_value.is_null() && rng.chance(70) { Vec::new() } else { body_value.to_string().into_bytes() };
        if rng.chance(12) {
            mutated = true;
            mutate_bytes(rng, &mut body);
        }
        let content_type =
            rng.pick(&["application/json", "application/json;charset=UTF-8", "text/plain", ""]).to_string();
        let quota_room = rng.chance(8).then(|| rng.below(20_000));
        WriteInput { seed, method, url, content_type, body: Shown(body), mutated, quota_room }
    }

    fn check(&self, input: &WriteInput) -> std::result::Result<(), String> {
        let store = restore(input.quota_room.map(|room| template_bytes() + room));
        block_on(async {
            let e = unlocked(&store, Down, input.seed).await.map_err(|e| format!("unlock: {e}"))?;
            let prepared = match e.prepare_write(&input.method, &input.url, &input.content_type, &input.body.0) {
                Ok(p) => p,
                Err(err) => {
                    note("refused by prepare_write");
                    coded("prepare_write", &err, &["BAD_INPUT"])?;
                    if !input.mutated {
                        return Err(format!("a valid write was refused: {err}"));
                    }
                    return Ok(());
                }
            };
            let before = snapshot(&store).await;
            match e.capture_write(&prepared, T0 + 120_000).await {
                Err(err) => {
                    note("refused by capture_write");
                    coded("capture_write", &err, &["BAD_INPUT", "STORAGE_FULL"])?;
                    let after = snapshot(&store).await;
                    if after != before {
                        return Err(format!("capture_write failed ({err}) but wrote: {}", diff(&before, &after)));
                    }
                    if !input.mutated && input.quota_room.is_none() {
                        return Err(format!("a valid write was not captured: {err}"));
                    }
                }
                Ok(answer) => {
                    note(if prepared.mutation == Mutation::Raw {
                        "captured raw"
                    } else {
                        "captured with its local effect"
                    });
                    if !(200..300).contains(&answer.status) {
                        return Err(format!("the queued write's answer has status {}", answer.status));
                    }
                    if !answer.body.is_empty() {
                        serde_json::from_slice::<Value>(&answer.body)
                            .map_err(|err| format!("the queued write's answer is not JSON: {err}"))?;
                    }
                    let after = snapshot(&store).await;
                    let (was, now) = (before[&StoreName::Outbox].len(), after[&StoreName::Outbox].len());
                    if now != was + 1 {
                        return Err(format!("a capture made {} outbox entries", now as i64 - was as i64));
                    }
                    let damaged = e.damaged_entries().await.map_err(|err| err.to_string())?;
                    if !damaged.is_empty() {
                        return Err(format!("a capture stored an entry that cannot be read: {damaged:?}"));
                    }
                    readable(&e, &before).await?;
                    e.status().await.map_err(|err| format!("status after a capture: {err}"))?;
                }
            }
            Ok(())
        })
    }
}

/// One character-level mutation of a text (it stays UTF-8).
fn mutate_text(rng: &mut Rng, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let len = chars.len();
    match rng.below(8) {
        0 if len > 0 => {
            chars.truncate(rng.below(len));
        }
        1 if len > 0 => {
            let i = rng.below(len);
            chars.remove(i);
        }
        2 => {
            let i = rng.below(len + 1);
            let c = rng.pick(&['/', '?', '&', '=', '#', '%', '+', ';', ':', '.', ' ', 'é', '😀', '\u{0}', '[', ']']);
            chars.insert(i, c);
        }
        3 => {
            let i = rng.below(len + 1);
            let s = rng.pick(&["%", "%2", "%2F", "%zz", "%C3", "%FF%FE", "//", "/..", "?x=", "&&", "#", "://"]);
            for (k, c) in s.chars().enumerate() {
                chars.insert(i + k, c);
            }
        }
        4 if len > 0 => {
            let from = rng.below(len);
            let to = (from + 1 + rng.below(12)).min(len);
            let copy: Vec<char> = chars[from..to].to_vec();
            for (k, c) in copy.into_iter().enumerate() {
                chars.insert(to + k, c);
            }
        }
        5 => {
            let extra = odd_string(rng);
            chars.extend(extra.chars());
        }
        _ => {
            if len > 0 {
                let i = rng.below(len);
                chars[i] = char::from_u32(rng.below(0x2FF) as u32).unwrap_or('x');
            }
        }
    }
    chars.into_iter().collect()
}

#[test]
fn fuzz_prepare_write_and_capture() {
    fuzz(Writes);
}

// ---------------------------------------------------------------------------------------------
// Target 2: damaged storage, read back through the public APIs; the envelope itself.
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
enum Edit {
    /// The record's plaintext replaced and sealed again (authentic, malformed).
    Plain { store: StoreName, id: String, plaintext: Shown },
    /// The record's sealed bytes replaced.
    Sealed { store: StoreName, id: String, bytes: Shown },
    /// Two records' sealed bytes swapped (each fails its binding to its key).
    Swap { a: (StoreName, String), b: (StoreName, String) },
    /// Bytes under a key nothing wrote.
    Junk { store: StoreName, key: String, bytes: Shown },
    /// A record removed.
    Removed { store: StoreName, id: String },
    /// The vault metadata replaced.
    Meta(Shown),
    /// The nurse's register entry replaced.
    User(Shown),
}

/// The envelope alone: `sealed` is `plaintext` sealed under a random key and `aad`; `open` is
/// what is opened (the same, or changed).
#[derive(Debug)]
struct EnvelopeCase {
    key: Vec<u8>,
    aad: Shown,
    plaintext: Shown,
    sealed: Shown,
    open_aad: Shown,
    open: Shown,
}

#[derive(Debug)]
struct StoredInput {
    seed: u64,
    edits: Vec<Edit>,
    /// The app's reads made over the damaged storage (a few of [`STORED_READS`] per case).
    reads: Vec<&'static str>,
    /// Whether a download runs over it too.
    download: bool,
    envelope: EnvelopeCase,
}

struct Stored;

/// A damaged envelope: a bit flipped (version, nonce, ciphertext or tag), cut, lengthened,
/// emptied, or random bytes.
fn damage_envelope(rng: &mut Rng, sealed: &[u8]) -> Vec<u8> {
    let mut bytes = sealed.to_vec();
    match rng.below(8) {
        0 if !bytes.is_empty() => {
            let i = rng.below(bytes.len());
            bytes[i] ^= 1 << rng.below(8);
        }
        1 if !bytes.is_empty() => bytes[0] = rng.pick(&[0, 2, 255]),
        2 => bytes.truncate(rng.below(bytes.len() + 1)),
        3 => bytes.truncate(rng.pick(&[0, 1, 12, 13, 28, 29, 30])),
        4 => {
            let n = 1 + rng.below(16);
            bytes.extend(rng.bytes(n));
        }
        5 => {
            let n = rng.below(80);
            bytes = rng.bytes(n);
        }
        6 => {
            // A valid header before random bytes.
            let n = rng.below(60);
            bytes = [vec![1u8], rng.bytes(n)].concat();
        }
        _ => mutate_bytes(rng, &mut bytes),
    }
    bytes
}

/// Edits that make a stored format wrong in the ways an older build, a crash or a bug might.
fn damage_plaintext(rng: &mut Rng, store: StoreName, id: &str, plain: &[u8]) -> Vec<u8> {
    let Ok(mut value) = serde_json::from_slice::<Value>(plain) else { return plain.to_vec() };
    if rng.chance(10) {
        let mut bytes = plain.to_vec();
        mutate_bytes(rng, &mut bytes);
        return bytes;
    }
    match (store, id) {
        (_, CURSOR_ID) if rng.chance(60) => {
            // An interrupted run, with its position in odd places.
            value["complete"] = json!(false);
            for _ in 0..1 + rng.below(2) {
                let key = rng.pick(&[
                    "step",
                    "page",
                    "totals",
                    "steps",
                    "done",
                    "since",
                    "lastCompleteServerMs",
                    "runStartedServerMs",
                    "lastCompleteMs",
                ]);
                value[key] = rng.pick(&[
                    json!(0),
                    json!(1),
                    json!(u64::MAX),
                    json!(i64::MIN),
                    json!(i64::MAX),
                    json!(usize::MAX / 2),
                    json!([]),
                    json!([null, null]),
                    json!([[OU, PROGRAM]]),
                    json!("2026-01-01T00:00:00.000"),
                    Value::Null,
                ]);
            }
            if rng.chance(50) {
                return value.to_string().into_bytes();
            }
        }
        (StoreName::Outbox, _) if rng.chance(40) => {
            value["state"] = rng.pick(&[
                json!({"state": "failed", "reasons": ["E1000"], "at_ms": 1}),
                json!({"state": "failed"}),
                json!({"state": "sent"}),
                json!("pending"),
            ]);
            if rng.chance(50) {
                return value.to_string().into_bytes();
            }
        }
        (StoreName::Records, _) if rng.chance(30) => {
            let uid = value["events"][0]["event"].clone();
            if let Some(uid) = uid.as_str() {
                value["sync"][uid] = rng.pick(&[json!("TO_UPDATE"), json!("ERROR"), json!("BOGUS"), json!(3)]);
                value["changes"][uid] = rng.pick(&[
                    json!({"dv:DeWeightKg1": {"base": "60", "value": "61"}}),
                    json!({"*": {"base": null, "value": null}}),
                    json!([]),
                    json!({"x": 1}),
                ]);
            }
            if rng.chance(50) {
                return value.to_string().into_bytes();
            }
        }
        _ => {}
    }
    mutate_json_some(rng, &mut value);
    value.to_string().into_bytes()
}

/// Reads of the app and of the demo, answered from the local copy.
const STORED_READS: &[&str] = &[
    "trackedEntityInstances/Te000000000.json?fields=*",
    "trackedEntityInstances.json?ouMode=ALL&skipPaging=true",
    "trackedEntityInstances/query.json?ou=OuBaniNaim1&ouMode=DESCENDANTS&program=PrMchProg01&totalPages=true",
    "trackedEntityInstances/count.json?ou=OuBaniNaim1&ouMode=DESCENDANTS",
    "events.json?ouMode=ACCESSIBLE&program=PrMchProg01&skipPaging=true&fields=*",
    "events/Ev000000v00.json",
    "enrollments/En000000001",
    "tracker/trackedEntities?orgUnits=OuBaniNaim1&orgUnitMode=DESCENDANTS&fields=*",
    "tracker/events/Ev000001v01",
    "me?fields=id,username",
    "programs?paging=false",
    "trackedEntityAttributes/AtRegNumbr1/requiredValues",
];

/// What reads of damaged storage may answer.
const READ_CODES: &[&str] = &["STORAGE_CORRUPT", "VAULT_LOCKED"];

fn read_ok<T>(what: &str, r: &Result<T>) -> std::result::Result<(), String> {
    match r {
        Ok(_) => Ok(()),
        Err(e) => coded(what, e, READ_CODES),
    }
}

impl FuzzTarget for Stored {
    type Input = StoredInput;
    const NAME: &'static str = "stored";
    const TEST: &'static str = "fuzz_stored_formats";

    fn generate(&self, rng: &mut Rng, seed: u64) -> StoredInput {
        let tpl = template();
        let sealed_of = |key: &str, store: StoreName| {
            tpl.data.iter().find(|(n, k, _)| *n == store && k == key).map(|(_, _, v)| v.clone()).unwrap_or_default()
        };
        let mut edits = Vec::new();
        for _ in 0..if rng.chance(15) { 2 + rng.below(2) } else { 1 } {
            let (store, id, key, plain) = tpl.records[rng.below(tpl.records.len())].clone();
            edits.push(match rng.below(100) {
                0..=44 => {
                    Edit::Plain { store, id: id.clone(), plaintext: Shown(damage_plaintext(rng, store, &id, &plain)) }
                }
                45..=69 => Edit::Sealed { store, id, bytes: Shown(damage_envelope(rng, &sealed_of(&key, store))) },
                70..=76 => {
                    let (other_store, other, _, _) = tpl.records[rng.below(tpl.records.len())].clone();
                    Edit::Swap { a: (store, id), b: (other_store, other) }
                }
                77..=82 => {
                    let store = rng.pick(&[StoreName::Outbox, StoreName::Records, StoreName::Index, StoreName::Cache]);
                    let key = if rng.chance(50) { hex_key(rng) } else { odd_string(rng) };
                    let bytes = if rng.chance(50) {
                        sealed_of(&tpl.records[rng.below(tpl.records.len())].2, store)
                    } else {
                        damage_envelope(rng, &[])
                    };
                    Edit::Junk { store, key, bytes: Shown(bytes) }
                }
                83..=86 => Edit::Removed { store, id },
                87..=93 => {
                    let meta = tpl
                        .data
                        .iter()
                        .find(|(n, k, _)| *n == StoreName::Meta && k == VAULT_META_KEY)
                        .unwrap()
                        .2
                        .clone();
                    Edit::Meta(Shown(damage_plaintext(rng, StoreName::Meta, VAULT_META_KEY, &meta)))
                }
                _ => {
                    let user = tpl.data.iter().find(|(n, _, _)| *n == StoreName::Users).unwrap().2.clone();
                    Edit::User(Shown(damage_plaintext(rng, StoreName::Users, "", &user)))
                }
            });
        }
        // The envelope alone.
        let key: Vec<u8> = rng.bytes(32);
        let aad = format!("{}|{}", rng.pick(&["records", "outbox", "cache", "index"]), hex_key(rng)).into_bytes();
        let len = rng.below(200);
        let plaintext = rng.bytes(len);
        let secret = SecretKey::from_slice(&key).unwrap();
        let sealed = secret.seal(&DeterministicRandom::new(seed), &aad, &plaintext).unwrap();
        let (open_aad, open) = match rng.below(4) {
            0 => (aad.clone(), sealed.clone()),
            1 => {
                let mut other = aad.clone();
                mutate_bytes(rng, &mut other);
                (other, sealed.clone())
            }
            _ => (aad.clone(), damage_envelope(rng, &sealed)),
        };
        let reads = (0..3).map(|_| rng.pick(STORED_READS)).collect();
        let touches_download = edits.iter().any(|e| match e {
            Edit::Plain { id, .. } | Edit::Sealed { id, .. } | Edit::Removed { id, .. } => {
                id == CURSOR_ID || id == METADATA_ID
            }
            Edit::Swap { a, b } => [a, b].iter().any(|(_, id)| id == CURSOR_ID || id == METADATA_ID),
            _ => false,
        });
        StoredInput {
            seed,
            edits,
            reads,
            // Always when the download's own records (cursor, metadata) are damaged.
            download: rng.chance(33) || touches_download,
            envelope: EnvelopeCase {
                key,
                aad: Shown(aad),
                plaintext: Shown(plaintext),
                sealed: Shown(sealed),
                open_aad: Shown(open_aad),
                open: Shown(open),
            },
        }
    }

    fn check(&self, input: &StoredInput) -> std::result::Result<(), String> {
        check_envelope(&input.envelope)?;
        let tpl = template();
        let store = restore(None);
        let server = Dhis2Mock::valid("2.40.3", vec![]);
        block_on(async {
            let sealer = unlocked(&store, Down, input.seed).await.map_err(|e| format!("unlock: {e}"))?;
            let key_of = |store: StoreName, id: &str| sealer.vault().record_storage_key(store, id).unwrap();
            // The last authentic bytes of each record (the template's, or sealed again by an edit):
            // any other bytes under its key must not open.
            let mut authentic: BTreeMap<(StoreName, String), Vec<u8>> = BTreeMap::new();
            for (name, id, key, _) in &tpl.records {
                authentic.insert((*name, id.clone()), store.get(*name, key).await.unwrap().unwrap_or_default());
            }
            for edit in &input.edits {
                match edit {
                    Edit::Plain { store: name, id, plaintext } => {
                        sealer.vault().put_record(*name, id, &plaintext.0).await.map_err(|e| format!("reseal: {e}"))?;
                        let resealed = store.get(*name, &key_of(*name, id)).await.unwrap().unwrap_or_default();
                        authentic.insert((*name, id.clone()), resealed);
                    }
                    Edit::Sealed { store: name, id, bytes } => {
                        store.raw_put(*name, &key_of(*name, id), bytes.0.clone()).unwrap();
                    }
                    Edit::Swap { a, b } => {
                        let (ka, kb) = (key_of(a.0, &a.1), key_of(b.0, &b.1));
                        let va = store.get(a.0, &ka).await.unwrap().unwrap_or_default();
                        let vb = store.get(b.0, &kb).await.unwrap().unwrap_or_default();
                        store.raw_put(a.0, &ka, vb).unwrap();
                        store.raw_put(b.0, &kb, va).unwrap();
                    }
                    Edit::Junk { store: name, key, bytes } => {
                        if !key.is_empty() {
                            store.raw_put(*name, key, bytes.0.clone()).unwrap();
                        }
                    }
                    Edit::Removed { store: name, id } => {
                        sealer.vault().delete_record(*name, id).await.unwrap();
                        authentic.remove(&(*name, id.clone()));
                    }
                    Edit::Meta(bytes) => store.raw_put(StoreName::Meta, VAULT_META_KEY, bytes.0.clone()).unwrap(),
                    Edit::User(bytes) => {
                        let key = tpl.data.iter().find(|(n, _, _)| *n == StoreName::Users).unwrap().1.clone();
                        store.raw_put(StoreName::Users, &key, bytes.0.clone()).unwrap();
                    }
                }
                // The decoders of the register, alone.
                match edit {
                    Edit::Meta(bytes) => read_ok("VaultMeta::decode", &VaultMeta::decode(&bytes.0))?,
                    Edit::User(bytes) => read_ok("UserEntry::decode", &UserEntry::decode(&bytes.0))?,
                    Edit::Plain { store: StoreName::Records, plaintext, .. } => {
                        read_ok("parse_bundle", &parse_bundle(&plaintext.0))?
                    }
                    _ => {}
                }
            }
            let mut tampered: Vec<(StoreName, String)> = Vec::new();
            for ((name, id), bytes) in &authentic {
                if store.get(*name, &key_of(*name, id)).await.unwrap().is_some_and(|now| now != *bytes) {
                    tampered.push((*name, id.clone()));
                }
            }
            drop(sealer);
            // A fresh engine over the damaged store (a reload of the service worker).
            let e = open(&store, &server, input.seed + 1);
            let unlock = e.vault().unlock_with_data_key(USER, &tpl.key, Some(PASSWORD)).await;
            if let Err(err) = &unlock {
                note("locked (the register is damaged)");
                coded("unlock_with_data_key", err, &["STORAGE_CORRUPT", "BAD_INPUT", "VAULT_LOCKED"])?;
            }
            let before = snapshot(&store).await;
            let status = e.status().await;
            read_ok("status", &status)?;
            let entries = e.outbox_entries().await;
            read_ok("outbox_entries", &entries)?;
            let damaged = e.damaged_entries().await;
            read_ok("damaged_entries", &damaged)?;
            read_ok("failures", &e.failures().await)?;
            read_ok("outbox_counts", &e.outbox_counts().await)?;
            read_ok("conflicts", &e.conflicts().await)?;
            read_ok("reserved_count", &e.reserved_count(GENERATED).await)?;
            let _ = e.last_download_at().await;
            for read in &input.reads {
                let answer = e.answer_offline(&format!("{API}/{read}")).await;
                read_ok(read, &answer)?;
                note(if answer.is_ok() { "read answered" } else { "read refused as damaged" });
                if let Ok(Some(r)) = &answer {
                    json_answer(read, r)?;
                }
            }
            for (name, id) in &tampered {
                match e.vault().get_record(*name, id).await {
                    Err(err) => coded("a tampered record", &err, READ_CODES)?,
                    Ok(_) if unlock.is_err() => {}
                    Ok(_) => return Err(format!("tampered bytes of {}:{id} were opened", name.as_str())),
                }
            }
            let after = snapshot(&store).await;
            if after != before {
                return Err(format!("reads of damaged storage wrote: {}", diff(&before, &after)));
            }
            let stored = store.count(StoreName::Outbox).await.unwrap();
            if let (Ok(entries), Ok(damaged)) = (&entries, &damaged) {
                if (entries.len() + damaged.len()) as u64 != stored {
                    return Err(format!(
                        "{stored} stored entries, {} read and {} damaged",
                        entries.len(),
                        damaged.len()
                    ));
                }
            }
            if let (Ok(status), Ok(_)) = (&status, &unlock) {
                if status.pending + status.failed != stored {
                    return Err(format!(
                        "{stored} stored entries, status counts {} + {}",
                        status.pending, status.failed
                    ));
                }
            }
            if unlock.is_err() {
                return Ok(());
            }
            // Writes over damaged storage: a capture fails whole or succeeds; every damaged entry
            // can be discarded; a download runs.
            let prepared = e
                .prepare_write(
                    "PUT",
                    &format!("{API}/events/{}/{}", event_uid(3, 0), DES[2]),
                    "application/json",
                    json!({"dataValues": [{"dataElement": DES[2], "value": "checked"}]}).to_string().as_bytes(),
                )
                .unwrap();
            let before = snapshot(&store).await;
            if let Err(err) = e.capture_write(&prepared, T0 + 120_000).await {
                coded("capture_write", &err, READ_CODES)?;
                let after = snapshot(&store).await;
                if after != before {
                    return Err(format!("a failed capture wrote: {}", diff(&before, &after)));
                }
            }
            if let Ok(damaged) = damaged {
                for (key, _) in damaged {
                    note("damaged entry discarded");
                    if let Err(err) = e.discard(&format!("damaged:{key}")).await {
                        return Err(format!("the damaged entry {key:?} cannot be discarded: {err}"));
                    }
                }
                let left = e.damaged_entries().await.map_err(|e| e.to_string())?;
                if !left.is_empty() {
                    return Err(format!("damaged entries left after discarding them: {left:?}"));
                }
            }
            if input.download {
                // An edit may leave a valid "password refused" mark for her: then the download
                // must refuse to send the password, and nothing else.
                let refused = e.password_refused().await;
                match e.download(DownloadOptions::default(), T0 + 3_600_000, &mut |_| {}).await {
                    Err(err) if refused => {
                        coded("download with her password marked refused", &err, &["AUTH_REQUIRED"])?
                    }
                    Ok(_) if refused => return Err("a download ran with her password marked refused".into()),
                    Err(err) => coded("download", &err, READ_CODES)?,
                    Ok(_) => {}
                }
            }
            Ok(())
        })
    }
}

fn hex_key(rng: &mut Rng) -> String {
    rng.bytes(32).iter().map(|b| format!("{b:02x}")).collect()
}

fn check_envelope(case: &EnvelopeCase) -> std::result::Result<(), String> {
    let key = SecretKey::from_slice(&case.key).unwrap();
    let opened = key.open(&case.open_aad.0, &case.open.0);
    let same = case.open_aad.0 == case.aad.0 && case.open.0 == case.sealed.0;
    match opened {
        Ok(plain) if same && plain == case.plaintext.0 => Ok(()),
        Ok(_) if same => Err("the envelope opened to other bytes".into()),
        Ok(_) => Err("a changed envelope (or associated data) was opened".into()),
        Err(err) if same => Err(format!("a sealed envelope does not open: {err}")),
        Err(err) => coded("open", &err, &["STORAGE_CORRUPT"]),
    }
}

/// A JSON answer made on this device parses.
fn json_answer(what: &str, r: &HttpResponse) -> std::result::Result<(), String> {
    let json = r.header("content-type").is_some_and(|c| c.contains("json"));
    if json && !r.body.is_empty() {
        match serde_json::from_slice::<Value>(&r.body) {
            // Deeper than serde_json reads (128 levels), not invalid: the app's JSON.parse reads it.
            Err(e) if e.to_string().starts_with("recursion limit exceeded") => {}
            Err(e) => return Err(format!("{what}: the local answer is not JSON: {e}")),
            Ok(_) => {}
        }
    }
    Ok(())
}

#[test]
fn fuzz_stored_formats() {
    fuzz(Stored);
}

// ---------------------------------------------------------------------------------------------
// Target 3: the server's answers to writes, and its load signals.
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct AnswerInput {
    status: u16,
    headers: Vec<(String, String)>,
    body: Shown,
    uids: Vec<String>,
    family: Family,
    now_ms: i64,
}

struct Answers;

fn legacy_summary(rng: &mut Rng, uid: Option<&str>, depth: usize) -> Value {
    let status = rng.pick(&["SUCCESS", "SUCCESS", "ERROR", "WARNING", "OK"]);
    let ignored = usize::from(rng.chance(10));
    let mut s = json!({"responseType": "ImportSummary", "status": status,
        "importCount": {"imported": 1 - ignored, "updated": 0, "ignored": ignored, "deleted": 0}});
    if let Some(uid) = uid {
        s["reference"] = json!(uid);
    }
    if status != "SUCCESS" || rng.chance(10) {
        s["conflicts"] = json!([{"object": rng.pick(&DES), "value": "value_not_numeric"}]);
        s["description"] = json!(rng.pick(&["", "Event.orgUnit does not point to a valid organisation unit"]));
    }
    if depth < 2 && rng.chance(30) {
        let key = rng.pick(&["enrollments", "events"]);
        let nested: Vec<Value> = (0..1 + rng.below(2))
            .map(|_| {
                let uid = new_uid(rng);
                legacy_summary(rng, Some(&uid), depth + 1)
            })
            .collect();
        s[key] = json!({"responseType": "ImportSummaries", "importSummaries": nested});
    }
    s
}

fn tracker_report(rng: &mut Rng, uids: &[String]) -> Value {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut objects = Vec::new();
    for uid in uids {
        match rng.below(10) {
            0 | 1 => errors.push(json!({"message": "Value not numeric", "errorCode": "E1302", "trackerType": "EVENT", "uid": uid})),
            2 => warnings.push(json!({"message": "Attribute value ignored", "warningCode": "E1017", "trackerType": "EVENT", "uid": uid})),
            _ => {}
        }
        if rng.chance(85) {
            objects.push(json!({"trackerType": "EVENT", "uid": uid, "index": 0, "errorReports": []}));
        }
    }
    if rng.chance(10) {
        errors.push(json!({"message": "Payload error", "errorCode": "E1000", "trackerType": "EVENT"}));
    }
    let n = uids.len();
    let status = if errors.is_empty() { rng.pick(&["OK", "WARNING"]) } else { "ERROR" };
    let mut report = json!({"status": status, "validationReport": {"errorReports": errors, "warningReports": warnings},
        "stats": {"created": 0, "updated": n, "deleted": 0, "ignored": 0, "total": n}});
    if rng.chance(80) {
        report["bundleReport"] = json!({"status": "OK", "typeReportMap": {"EVENT": {"trackerType": "EVENT",
            "stats": {"created": 0, "updated": n, "deleted": 0, "ignored": 0, "total": n}, "objectReports": objects}}});
    }
    report
}

fn web_message(status: u16, response: Value) -> Value {
    json!({"httpStatus": if status < 300 { "OK" } else { "Conflict" }, "httpStatusCode": status,
        "status": if status < 300 { "OK" } else { "ERROR" }, "message": "Import was successful.", "response": response})
}

fn retry_after_value(rng: &mut Rng) -> String {
    let date = format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        rng.pick(&["Wed", "Sun", "Mon"]),
        rng.below(33),
        rng.pick(&["Oct", "Nov", "Feb", "Foo"]),
        rng.pick(&[2026u64, 1994, 0, 9999, 4_294_967_295, 99_999]),
        rng.below(26),
        rng.below(61),
        rng.below(62)
    );
    match rng.below(8) {
        0 => format!("{}", rng.below(7200)),
        1 => rng.pick(&["0", "-5", "18446744073709551615", "99999999999999999999", "1.5", " 30 ", ""]).to_string(),
        2 | 3 => date,
        4 => "Wed, 21 Oct 2026 07:28:00.éé GMT".into(),
        5 => mutate_text(rng, &date),
        _ => odd_string(rng),
    }
}

impl FuzzTarget for Answers {
    type Input = AnswerInput;
    const NAME: &'static str = "answers";
    const TEST: &'static str = "fuzz_server_answers";

    fn generate(&self, rng: &mut Rng, _seed: u64) -> AnswerInput {
        let uids: Vec<String> = (0..rng.below(6))
            .map(|_| if rng.chance(80) { some_tei(rng) } else { event_uid(rng.below(6), rng.below(2)) })
            .collect();
        let mut named: Vec<String> = uids.clone();
        if rng.chance(20) {
            named.push(new_uid(rng));
        }
        if rng.chance(15) && !named.is_empty() {
            let dup = named[rng.below(named.len())].clone();
            named.push(dup); // a record named twice
        }
        let family = if rng.chance(50) { Family::Legacy } else { Family::Tracker };
        let status = if rng.chance(50) {
            // What DHIS2 answers an import with.
            rng.pick(&[200u16, 200, 200, 201, 409, 409, 400])
        } else if rng.chance(90) {
            rng.pick(&[
                200u16, 200, 200, 201, 202, 204, 302, 400, 401, 403, 404, 408, 409, 409, 413, 429, 500, 502, 503,
            ])
        } else {
            rng.next() as u16
        };
        let body = match rng.below(12) {
            0 | 1 => {
                let summaries: Vec<Value> = named
                    .iter()
                    .map(|u| {
                        let with_ref = rng.chance(90);
                        legacy_summary(rng, with_ref.then_some(u.as_str()), 0)
                    })
                    .collect();
                web_message(
                    status,
                    json!({"responseType": "ImportSummaries", "status": "SUCCESS", "importSummaries": summaries}),
                )
            }
            2 => {
                let summaries: Vec<Value> = named.iter().map(|u| legacy_summary(rng, Some(u), 0)).collect();
                json!({"responseType": "ImportSummaries", "importSummaries": summaries})
            }
            3 => {
                let uid = named.first().cloned().unwrap_or_else(|| new_uid(rng));
                web_message(status, legacy_summary(rng, Some(&uid), 0))
            }
            4 | 5 => tracker_report(rng, &named),
            6 => web_message(
                status,
                json!({"responseType": "TrackerJob", "id": "JbAsync0001", "location": format!("{API}/tracker/jobs/JbAsync0001")}),
            ),
            7 => {
                json!({"httpStatus": "Conflict", "httpStatusCode": status, "status": "ERROR", "message": odd_string(rng)})
            }
            8 => {
                json!({"id": "UsNurse0001", "username": rng.pick(&[USER, "", "Nurse1"]), "displayName": odd_string(rng),
                "organisationUnits": [{"id": OU, "displayName": "Bani Naim Clinic"}], "authorities": ["F_TRACKED_ENTITY_INSTANCE_ADD"]})
            }
            9 => Value::String(
                rng.pick(&[
                    "<!DOCTYPE html><html><body>Clinic WiFi</body></html>",
                    "OWNERSHIP_ACCESS_DENIED",
                    "PROGRAM_ACCESS_CLOSED",
                    "",
                ])
                .to_string(),
            ),
            10 => random_value(rng, 0),
            _ => Value::Null,
        };
        let mut body = body;
        if rng.chance(35) {
            mutate_json_some(rng, &mut body);
        }
        let mut bytes = match &body {
            Value::Null if rng.chance(50) => Vec::new(),
            Value::String(s) if rng.chance(70) => s.clone().into_bytes(),
            other => other.to_string().into_bytes(),
        };
        if rng.chance(10) {
            mutate_bytes(rng, &mut bytes);
        }
        let mut headers = Vec::new();
        if rng.chance(80) {
            let ct = rng.pick(&[
                "application/json",
                "application/json;charset=UTF-8",
                "text/html",
                "TEXT/HTML; charset=utf-8",
                "text/plain",
                "",
            ]);
            let name = rng.pick(&["content-type", "Content-Type", "CONTENT-TYPE"]);
            headers.push((name.to_string(), ct.to_string()));
        }
        if rng.chance(40) {
            headers.push((rng.pick(&["retry-after", "Retry-After"]).to_string(), retry_after_value(rng)));
        }
        if rng.chance(5) {
            headers.push(("x-tracker-offline".into(), "local".into()));
        }
        let now_ms = rng.pick(&[T0, 0, i64::MAX, i64::MIN, -1]);
        AnswerInput { status, headers, body: Shown(bytes), uids, family, now_ms }
    }

    fn check(&self, input: &AnswerInput) -> std::result::Result<(), String> {
        let response =
            HttpResponse { status: input.status, headers: input.headers.clone(), body: input.body.0.clone() };
        let status = input.status;
        let ours: BTreeSet<&str> = input.uids.iter().map(String::as_str).collect();
        let verdict = interpret(Some(&response), &input.uids, input.family);
        note(match &verdict {
            Verdict::PerRecord { ok, refused, .. } if !ok.is_empty() && !refused.is_empty() => {
                "some accepted, some refused"
            }
            Verdict::PerRecord { ok, .. } if !ok.is_empty() => "accepted",
            Verdict::PerRecord { refused, .. } if !refused.is_empty() => "refused",
            Verdict::PerRecord { .. } => "names none",
            Verdict::Job { .. } => "job",
            Verdict::Retry(_) => "retry",
            Verdict::AuthRequired => "auth required",
        });
        match &verdict {
            Verdict::PerRecord { ok, refused, warnings } => {
                if let Some(stranger) =
                    ok.iter().chain(refused.keys()).chain(warnings.keys()).find(|u| !ours.contains(u.as_str()))
                {
                    return Err(format!("the verdict names {stranger}, a record not sent: {verdict:?}"));
                }
                if let Some(both) = ok.iter().find(|u| refused.contains_key(*u)) {
                    return Err(format!("{both} is both accepted and refused: {verdict:?}"));
                }
                if let Some(w) = warnings.keys().find(|u| !ok.contains(*u)) {
                    return Err(format!("a warning on {w}, which was not accepted: {verdict:?}"));
                }
                if status >= 500 || status == 408 || status == 429 || (300..400).contains(&status) {
                    return Err(format!("HTTP {status} is not evidence but gave {verdict:?}"));
                }
            }
            Verdict::Job { .. } if input.family == Family::Legacy => {
                return Err(format!("a legacy answer read as a tracker job: {verdict:?}"))
            }
            _ => {}
        }
        let accepted = accepts_all(&response, &input.uids, input.family);
        if accepted && !input.uids.is_empty() {
            let all_ok = matches!(&verdict, Verdict::PerRecord { ok, refused, .. } if refused.is_empty() && input.uids.iter().all(|u| ok.contains(u)));
            let bare_success = matches!(&verdict, Verdict::Retry(_)) && (200..300).contains(&status);
            if !all_ok && !bare_success {
                return Err(format!("accepts_all, but the verdict is {verdict:?}"));
            }
        }
        let _ = is_import_success(&response);
        if raw_accepted(&response) && !(200..300).contains(&status) && status != 409 {
            return Err(format!("a raw write answered HTTP {status} was taken as accepted"));
        }
        if !matches!(interpret(None, &input.uids, input.family), Verdict::Retry(_)) {
            return Err("no answer is not a retry".into());
        }
        match load_of(Some(&response), input.now_ms) {
            Load::Busy { retry_after_ms } => {
                if !(status == 429 || (500..600).contains(&status)) {
                    return Err(format!("HTTP {status} counted as busy"));
                }
                if retry_after_ms.is_some_and(|ms| ms > MAX_RETRY_AFTER_MS) {
                    return Err(format!("Retry-After read as {retry_after_ms:?} ms"));
                }
            }
            Load::Answered if status == 429 || (500..600).contains(&status) => {
                return Err(format!("HTTP {status} counted as an answer"))
            }
            _ => {}
        }
        for (_, value) in input.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("retry-after")) {
            if retry_after_ms(value, input.now_ms).is_some_and(|ms| ms > MAX_RETRY_AFTER_MS) {
                return Err(format!("Retry-After {value:?} read beyond the cap"));
            }
            let mut connectivity = tracker_offline_core::server_contact::Connectivity::default();
            let asked = retry_after_ms(value, input.now_ms);
            connectivity.record(Load::Busy { retry_after_ms: asked }, input.now_ms, 1.0);
            let _ = connectivity.busy_wait_ms(input.now_ms);
            let _ = connectivity.should_try_network(input.now_ms);
            // The backoff never ends sooner than the server asked, nor past twice its cap.
            let wait = connectivity.flush_wait_ms(input.now_ms).unwrap_or(0);
            let clock_fits = input.now_ms.checked_add(2 * MAX_RETRY_AFTER_MS as i64).is_some();
            if clock_fits && asked.is_some_and(|a| wait < a) || wait > 2 * MAX_RETRY_AFTER_MS {
                return Err(format!("Retry-After {value:?} gave a backoff of {wait} ms"));
            }
        }
        let _ = interpret_me_response(&response, USER);
        let _ = session_lost(status, None);
        Ok(())
    }
}

#[test]
fn fuzz_server_answers() {
    fuzz(Answers);
}

// ---------------------------------------------------------------------------------------------
// Target 4: download pages (and the metadata before them) from a scripted, mutated server.
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct DownloadInput {
    seed: u64,
    system_info: Shown,
    org_units: Shown,
    programs: Shown,
    reserve: Shown,
    pages: Vec<Shown>,
    page_size: Option<usize>,
    full: Option<bool>,
    org_units_option: Option<Vec<String>>,
    faults: Vec<(usize, Fault)>,
    quota_room: Option<usize>,
    twice: bool,
}

struct Download;

/// What the download must do with one item of a page.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    /// Stored (merged with the local copy).
    Good(String),
    /// Deleted by the server.
    Deleted(String),
    /// Malformed: skipped and reported (with its UID when it has a valid one).
    Bad(Option<String>),
}

/// The download's contract for one item (`tracker`: the `/api/tracker` naming).
fn classify(item: &Value, tracker: bool) -> Item {
    let Some(o) = item.as_object() else { return Item::Bad(None) };
    let o = if tracker { convert(Kind::TrackedEntity, o, Naming::Legacy) } else { o.clone() };
    let uid = match o.get("trackedEntityInstance") {
        Some(Value::String(u)) if is_uid(u) => u.clone(),
        _ => return Item::Bad(None),
    };
    if o.get("deleted") == Some(&Value::Bool(true)) {
        return Item::Deleted(uid);
    }
    let valid = |record: &Value, key: &str| record.get(key).and_then(Value::as_str).is_some_and(is_uid);
    let good = match o.get("enrollments") {
        None => true,
        Some(Value::Array(list)) => list.iter().all(|e| {
            e.is_object()
                && valid(e, "enrollment")
                && match e.get("events") {
                    None => true,
                    Some(Value::Array(events)) => events.iter().all(|ev| ev.is_object() && valid(ev, "event")),
                    Some(_) => false,
                }
        }),
        Some(_) => false,
    };
    if good {
        Item::Good(uid)
    } else {
        Item::Bad(Some(uid))
    }
}

/// The items of a served page, or None when it is not a page of its family.
fn page_items(served: &Served) -> Option<Vec<Value>> {
    if served.fault.is_some() {
        return None;
    }
    let body: Value = serde_json::from_slice(&served.body).ok()?;
    let list = if served.tracker {
        body.get("trackedEntities").or_else(|| body.get("instances"))
    } else {
        body.get("trackedEntityInstances")
    };
    list?.as_array().cloned()
}

/// What a download may fail with.
const DOWNLOAD_CODES: &[&str] = &["BAD_RESPONSE", "SERVER_UNREACHABLE", "AUTH_REQUIRED", "STORAGE_FULL"];

impl FuzzTarget for Download {
    type Input = DownloadInput;
    const NAME: &'static str = "download";
    const TEST: &'static str = "fuzz_download_pages";

    fn generate(&self, rng: &mut Rng, seed: u64) -> DownloadInput {
        let version =
            rng.pick(&["2.40.3", "2.40.3", "2.41.2", "2.42.1", "2.42.1", "2.39.0", "2.42", "", "2.x.1", "3.45.0"]);
        let server_date = rng.pick(&[
            Some("2026-11-26T09:00:00.000"),
            Some("2026-11-26T09:00:00.000"),
            None,
            Some("2026-11-26T09:00:00"),
            Some("garbage"),
            Some("2026-01-01T00:00:00.éé"),
            Some("99999999999999-01-01T00:00:00.000"),
            Some("-99999999999999-01-01T00:00:00.000"),
            Some("-292277022-01-01T00:00:00.000"),
            Some("2026-02-31T00:00:00.000"),
        ]);
        let mut info = json!({"version": version, "revision": "abc", "serverDate": server_date});
        if rng.chance(5) {
            mutate_json_some(rng, &mut info);
        }
        let tracker =
            ClinicMetadata { server_version: version.to_string(), ..Default::default() }.minor_version() >= 42;
        let valid = Dhis2Mock::valid(version, vec![]);
        let metadata = |rng: &mut Rng, bytes: Vec<u8>| {
            if rng.chance(4) {
                let mut v: Value = serde_json::from_slice(&bytes).unwrap();
                mutate_json_some(rng, &mut v);
                Shown(v.to_string().into_bytes())
            } else {
                Shown(bytes)
            }
        };
        let org_units = metadata(rng, valid.org_units.clone());
        let programs = metadata(rng, valid.programs.clone());
        let reserve = metadata(rng, valid.reserve.clone());
        let page_size = rng.pick(&[None, None, Some(1), Some(2), Some(3), Some(0), Some(5_000)]);
        let effective = page_size.unwrap_or(50).clamp(1, 1000);
        let (page_count, last_items) =
            if effective <= 3 { (1 + rng.below(3), rng.below(effective + 1)) } else { (1, rng.below(9)) };
        // Tracked entities: each UID once (clinic ones first at random, then new ones).
        let mut clinic: Vec<String> = (0..CLINIC_TEIS).map(tei_uid).chain([template().new_tei.clone()]).collect();
        let mut uid = |rng: &mut Rng| {
            if !clinic.is_empty() && rng.chance(50) {
                clinic.remove(rng.below(clinic.len()))
            } else {
                new_uid(rng)
            }
        };
        let mut pages = Vec::new();
        let counts: Vec<usize> =
            (0..page_count).map(|p| if p + 1 == page_count { last_items } else { effective }).collect();
        let total_items: usize = counts.iter().sum();
        for (p, count) in counts.iter().enumerate() {
            let mut items = Vec::new();
            for _ in 0..*count {
                let uid = uid(rng);
                let mut tei = page_tei(rng, uid);
                if rng.chance(25) {
                    break_record(rng, &mut tei);
                } else if rng.chance(12) {
                    mutate_json_some(rng, &mut tei);
                }
                if tracker {
                    if let Some(o) = tei.as_object() {
                        tei = Value::Object(convert(Kind::TrackedEntity, o, Naming::Tracker { minor: 40 }));
                    }
                }
                items.push(tei);
            }
            let total = match rng.below(10) {
                0 => Value::Null,
                1 => rng.pick(&[json!(0), json!(1), json!(u64::MAX), json!(-1), json!("12")]),
                _ => json!(total_items),
            };
            let pager = json!({"page": p + 1, "pageSize": effective, "total": total, "pageCount": total_items.div_ceil(effective)});
            let mut page = if !tracker {
                json!({"pager": pager, "trackedEntityInstances": items})
            } else if rng.chance(10) {
                json!({"page": p + 1, "pageSize": effective, "total": total, "instances": items})
            } else {
                json!({"pager": pager, "trackedEntities": items})
            };
            if rng.chance(5) {
                mutate_json(rng, &mut page);
            }
            if rng.chance(4) {
                // The list missing, renamed or of the wrong type (another JSON answered 200).
                let list = ["trackedEntityInstances", "trackedEntities", "instances"];
                let present = list.iter().find(|k| page.get(**k).is_some()).map(|k| k.to_string());
                if let (Some(key), Some(o)) = (present, page.as_object_mut()) {
                    let items = o.remove(&key).unwrap_or_default();
                    match rng.below(3) {
                        0 => {}
                        1 => {
                            o.insert(
                                rng.pick(&list).to_string(),
                                rng.pick(&[json!({}), json!("x"), Value::Null, items]),
                            );
                        }
                        _ => page = rng.pick(&[json!([]), json!({"httpStatusCode": 200, "status": "OK"}), json!("ok")]),
                    }
                }
            }
            let mut bytes = page.to_string().into_bytes();
            if rng.chance(3) {
                mutate_bytes(rng, &mut bytes);
            }
            pages.push(Shown(bytes));
        }
        let faults = if rng.chance(15) {
            let fault = rng.pick(&[
                Fault::Network,
                Fault::Status(500),
                Fault::Status(401),
                Fault::Status(404),
                Fault::Status(429),
                Fault::Html,
                Fault::Empty,
            ]);
            vec![(rng.below(9), fault)]
        } else {
            vec![]
        };
        let org_units_option = if rng.chance(3) {
            let odd = odd_string(rng);
            Some(vec![rng.pick(&[OU.to_string(), odd])])
        } else {
            None
        };
        DownloadInput {
            seed,
            system_info: Shown(info.to_string().into_bytes()),
            org_units,
            programs,
            reserve,
            pages,
            page_size,
            full: rng.chance(10).then_some(true),
            org_units_option,
            faults,
            quota_room: rng.chance(8).then(|| rng.below(30_000)),
            twice: rng.chance(15),
        }
    }

    fn check(&self, input: &DownloadInput) -> std::result::Result<(), String> {
        let store = restore(input.quota_room.map(|room| template_bytes() + room));
        let mut server = Dhis2Mock::valid("2.40.3", input.pages.iter().map(|p| p.0.clone()).collect());
        server.system_info = input.system_info.0.clone();
        server.org_units = input.org_units.0.clone();
        server.programs = input.programs.0.clone();
        server.reserve = input.reserve.0.clone();
        server.faults = input.faults.iter().cloned().collect();
        server.watch = Some(store.clone());
        let options = || DownloadOptions {
            org_units: input.org_units_option.clone(),
            programs: None,
            page_size: input.page_size,
            full: input.full,
        };
        // BAD_INPUT only for the app's own options; what the server sends is BAD_RESPONSE.
        let codes: Vec<&str> =
            DOWNLOAD_CODES.iter().copied().chain(input.org_units_option.is_some().then_some("BAD_INPUT")).collect();
        block_on(async {
            let e = unlocked(&store, &server, input.seed).await.map_err(|e| format!("unlock: {e}"))?;
            let refused_key = e.vault().record_storage_key(StoreName::Cache, PASSWORD_REFUSED_ID).unwrap();
            let before = snapshot(&store).await;
            let first = e.download(options(), T0 + 3_600_000, &mut |_| {}).await;
            if server.runaway() {
                return Err("the download did not stop".into());
            }
            match &first {
                Err(err) => {
                    note(err.code());
                    coded("download", err, &codes)?;
                    failed_download_wrote_nothing(&store, &server, &before, err, &refused_key).await?;
                }
                Ok(report) => {
                    note(if report.skipped > 0 { "stored, some skipped" } else { "stored" });
                    download_oracle(&e, &server, &before, report).await?
                }
            }
            if input.twice {
                server.served.borrow_mut().clear();
                let before = snapshot(&store).await;
                *server.at_last_request.borrow_mut() = None;
                if let Err(err) = e.download(options(), T0 + 7_200_000, &mut |_| {}).await {
                    coded("a second download", &err, &codes)?;
                    failed_download_wrote_nothing(&store, &server, &before, &err, &refused_key).await?;
                }
                if server.runaway() {
                    return Err("the second download did not stop".into());
                }
            }
            Ok(())
        })
    }
}

/// A download that fails leaves the store as it was when it made its last request (the pages
/// before are kept: each is one transaction), apart from the mark of a refused password.
async fn failed_download_wrote_nothing(
    store: &MemoryStore,
    server: &Dhis2Mock,
    before: &Snapshot,
    err: &CoreError,
    refused_key: &str,
) -> std::result::Result<(), String> {
    let mut expected = server.at_last_request.borrow().clone().unwrap_or_else(|| before.clone());
    let mut after = snapshot(store).await;
    if err.code() == "AUTH_REQUIRED" {
        for s in [&mut expected, &mut after] {
            s.get_mut(&StoreName::Cache).unwrap().remove(refused_key);
            without_manifest(s);
        }
    }
    if after != expected {
        return Err(format!("the download failed ({err}) after writing: {}", diff(&expected, &after)));
    }
    Ok(())
}

async fn download_oracle<H: HttpClient>(
    e: &Eng<H>,
    server: &Dhis2Mock,
    before: &Snapshot,
    report: &DownloadReport,
) -> std::result::Result<(), String> {
    let tpl = template();
    let mut items: Vec<Item> = Vec::new();
    for served in server.served.borrow().iter() {
        let Some(list) = page_items(served) else {
            return Err(format!(
                "a page that is not one was accepted (fault {:?}): {:?}",
                served.fault,
                Shown(served.body.clone())
            ));
        };
        items.extend(list.iter().map(|item| classify(item, served.tracker)));
    }
    let good = items.iter().filter(|i| matches!(i, Item::Good(_))).count() as u64;
    let bad = items.iter().filter(|i| matches!(i, Item::Bad(_))).count() as u64;
    if report.tracked_entities != good || report.skipped != bad {
        return Err(format!(
            "{good} good and {bad} bad records served, but the report says {} stored and {} skipped ({items:?}; {report:?})",
            report.tracked_entities, report.skipped
        ));
    }
    if report.skipped_records.len() as u64 != bad.min(MAX_SKIPPED_LISTED as u64) {
        return Err(format!("{bad} skipped but {} listed", report.skipped_records.len()));
    }
    let once = |uid: &str| {
        items.iter().filter(|i| matches!(i, Item::Good(u) | Item::Deleted(u) | Item::Bad(Some(u)) if u == uid)).count()
            == 1
    };
    let stored_before = |uid: &str| {
        let key = e.vault().record_storage_key(StoreName::Records, &bundle_id(uid)).unwrap();
        before[&StoreName::Records].contains_key(&key)
    };
    for item in &items {
        let (uid, expect) = match item {
            Item::Good(uid) => (uid, true),
            Item::Deleted(uid) => (uid, stored_before(uid) && tpl.changed_teis.contains(uid)),
            Item::Bad(Some(uid)) => (uid, stored_before(uid)),
            Item::Bad(None) => continue,
        };
        if !once(uid) {
            continue;
        }
        let stored =
            e.vault().get_record(StoreName::Records, &bundle_id(uid)).await.map_err(|e| e.to_string())?.is_some();
        if stored != expect {
            return Err(format!("{item:?} is {} after the download", if stored { "stored" } else { "not stored" }));
        }
    }
    readable(e, before).await
}

#[test]
fn fuzz_download_pages() {
    fuzz(Download);
}

// ---------------------------------------------------------------------------------------------
// Target 5: URLs and query parameters, and the offline read routing.
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct ReadInput {
    method: String,
    url: String,
    body: Shown,
    /// An arbitrary text for the percent codec.
    text: String,
}

struct Reads;

const ROUTES: &[&str] = &[
    "trackedEntityInstances/query.json",
    "trackedEntityInstances/count.json",
    "trackedEntityInstances.json",
    "trackedEntityInstances",
    "trackedEntityInstances/{tei}.json",
    "trackedEntityInstances/{tei}",
    "events.json",
    "events",
    "events/{ev}.json",
    "enrollments",
    "enrollments/{en}",
    "tracker/trackedEntities",
    "tracker/trackedEntities/{tei}",
    "tracker/events",
    "tracker/events/{ev}",
    "tracker/enrollments",
    "tracker/enrollments/{en}",
    "tracker/jobs/JbAsync0001/report",
    "trackedEntityAttributes/AtRegNumbr1/generate",
    "trackedEntityAttributes/AtRegNumbr1/requiredValues",
    "trackedEntityAttributes/{tei}/generate.json",
    "me",
    "programs",
    "dataStore/clinic/settings",
    "userDataStore/capture/prefs",
    "userSettings/keyUiLocale",
    "potentialDuplicates",
    "system/info",
    "40/events",
    "41/tracker/events",
    "i18n",
    "",
    "/",
    "//",
    "..",
];

const PARAMS: &[(&str, &[&str])] = &[
    ("ou", &[OU, "OuUnknown01", "OuBaniNaim1;OuBeitUmar1", ""]),
    ("orgUnit", &[OU, "x"]),
    ("orgUnits", &[OU, ",,"]),
    ("ouMode", &["SELECTED", "DESCENDANTS", "CHILDREN", "ACCESSIBLE", "ALL", "CAPTURE", "bogus", ""]),
    ("orgUnitMode", &["DESCENDANTS", "selected", "?"]),
    ("program", &[PROGRAM, "PrUnknown01", ""]),
    ("programStage", &[STAGE]),
    ("programStatus", &["ACTIVE", "completed", "x"]),
    (
        "attribute",
        &[
            "AtFirstNam1",
            "AtFirstNam1:LIKE:fat",
            "AtFirstNam1:EQ:Fatima:NE:x",
            "AtNationId1:GT:1:LT:5",
            "AtFirstNam1:IN:a;b",
            "AtFirstNam1:LIKE",
            ":LIKE:x",
            "AtFirstNam1:BOGUS:x",
            "::",
            "",
        ],
    ),
    ("filter", &["AtNationId1:GE:40000:LE:99999999999999999999", "AtFirstNam1:SW:f:EW:a", "AtFirstNam1:!EQ:x"]),
    ("query", &["fat", "LIKE:fat", "EQ:", ""]),
    ("order", &["created:desc", "AtFirstNam1:asc,lastUpdated", "::", ",,", "AtNationId1:DESC"]),
    (
        "page",
        &["1", "2", "0", "-1", "abc", "", "18446744073709551615", "18446744073709551616", "99999999999", "4294967296"],
    ),
    ("pageSize", &["1", "50", "0", "-5", "x", "4294967296", "18446744073709551615", "99999999999"]),
    ("totalPages", &["true", "false", "TRUE", "x"]),
    ("skipPaging", &["true", "false"]),
    ("paging", &["false", "true"]),
    (
        "fields",
        &[
            "*",
            "id",
            "trackedEntityInstance,attributes[attribute,value]",
            "enrollments[events[dataValues]]",
            "*,!enrollments",
            "[[[[",
            "]]]",
            ":all",
            ":owner",
            "a(b(c))",
            "!",
            "attributes[",
            "!*",
            "a::rename~b",
        ],
    ),
    ("trackedEntityInstance", &["Te000000001", "Te000000001;Te000000002", ""]),
    ("trackedEntities", &["Te000000003,Te000000004"]),
    ("trackedEntity", &["Te000000005"]),
    ("event", &["Ev000001v01", "x"]),
    ("events", &["Ev000001v01;Ev000002v00"]),
    ("enrollment", &["En000000001"]),
    ("lastUpdatedStartDate", &["2026-01-01", "x", "2026-11-26T09:00:00.000"]),
    ("updatedAfter", &["2026-01-01"]),
    ("includeDeleted", &["true"]),
    ("followUp", &["true", "false"]),
    ("status", &["ACTIVE", "COMPLETED"]),
    ("eventStatus", &["SCHEDULE"]),
    ("_", &["1780000000000"]),
    ("trackedEntityType", &[TET]),
];

impl FuzzTarget for Reads {
    type Input = ReadInput;
    const NAME: &'static str = "reads";
    const TEST: &'static str = "fuzz_query_parameters_and_read_routing";

    fn generate(&self, rng: &mut Rng, _seed: u64) -> ReadInput {
        let base = if rng.chance(55) {
            API
        } else {
            rng.pick(&[
                API,
                "/api",
                "http://fuzz.test/api/40",
                "http://fuzz.test:8080/api",
                "//fuzz.test/api",
                "/dhis/api",
                "http://fuzz.test",
                "",
                "http://fuzz.test/dhis-web-commons",
                "http://fuzz.test/dhis-web-commons-ajax-json",
                "http://user@fuzz.test/api",
                "HTTP://FUZZ.TEST/api",
            ])
        };
        let n = rng.below(CLINIC_TEIS + 1);
        let path = rng
            .pick(ROUTES)
            .replace("{tei}", &tei_uid(n))
            .replace("{ev}", &event_uid(n, rng.below(2)))
            .replace("{en}", &enrollment_uid(n));
        let mut url = format!("{base}/{path}");
        let mut params = Vec::new();
        for _ in 0..rng.below(7) {
            let (name, values) = rng.pick(PARAMS);
            let value = if rng.chance(85) { rng.pick(values).to_string() } else { odd_string(rng) };
            let value = if rng.chance(30) { percent_encode(&value) } else { value };
            params.push(format!("{name}={value}"));
        }
        if rng.chance(10) {
            params.push(format!("{}={}", percent_encode(&odd_string(rng)), odd_string(rng)));
        }
        if !params.is_empty() {
            url.push('?');
            url.push_str(&params.join(rng.pick(&["&", "&", "&", "&&", ";"])));
        }
        if rng.chance(5) {
            url.push_str("#frag");
        }
        if rng.chance(20) {
            for _ in 0..1 + rng.below(3) {
                url = mutate_text(rng, &url);
            }
        }
        if rng.chance(3) {
            let n = rng.below(60);
            url = String::from_utf8_lossy(&rng.bytes(n)).into_owned();
        }
        let method = rng.pick(&["GET", "GET", "GET", "get", "POST", "PUT", "HEAD", ""]).to_string();
        let len = if rng.chance(20) { rng.below(40) } else { 0 };
        let body = rng.bytes(len);
        ReadInput { method, url, body: Shown(body), text: odd_string(rng) }
    }

    fn check(&self, input: &ReadInput) -> std::result::Result<(), String> {
        let url = input.url.as_str();
        // The parsers alone.
        let t = Target::parse(url);
        for (name, _) in PARAMS {
            if t.get(name) != t.all(name).first().copied() {
                return Err(format!("get({name}) is not the first of all({name})"));
            }
            let _ = t.flag(name);
        }
        let relative = t.relative_to("/api").map(str::to_string);
        if let Some(relative) = &relative {
            let _ = route(relative);
        }
        let _ = base_path(url);
        if let Err(err) = TeiQuery::from_target(&t) {
            coded("TeiQuery::from_target", &err, &["BAD_INPUT"])?;
        }
        for filter in t.all("attribute").into_iter().chain(t.all("filter")) {
            if let Err(err) = AttributeFilter::parse(filter) {
                coded("AttributeFilter::parse", &err, &["BAD_INPUT"])?;
            }
        }
        let sample = legacy_tei(0, "2026-03-01T00:00:00.000");
        let _ = FieldSelection::parse(t.get("fields").unwrap_or(url)).apply(&sample);
        if let Err(err) = EngineConfig::new(url, fast_policy()) {
            coded("EngineConfig::new", &err, &["BAD_INPUT"])?;
        }
        let _ = session_lost(200, Some(url));
        let _ = is_key_value_put(&input.method, url, "/api");
        for text in [url, input.text.as_str()] {
            if percent_decode(&percent_encode(text)) != text {
                return Err(format!("percent encoding does not round-trip {text:?}"));
            }
        }
        // The read routing of an unlocked engine (one per thread, rebuilt after a write).
        thread_local! {
            static READER: RefCell<Option<(MemoryStore, Eng<Down>)>> = const { RefCell::new(None) };
        }
        let (store, e) = match READER.with(|r| r.borrow_mut().take()) {
            Some(reader) => reader,
            None => {
                let store = restore(None);
                let e = block_on(unlocked(&store, Down, 11)).map_err(|e| format!("unlock: {e}"))?;
                (store, e)
            }
        };
        let outcome = block_on(async {
            let before = snapshot(&store).await;
            let _ = e.is_server_read(&input.method, url);
            let answer = e.answer_offline(url).await;
            note(match &answer {
                Err(_) => "refused",
                Ok(Some(r)) if r.status == 200 => "answered 200",
                Ok(Some(_)) => "answered (404, 409)",
                Ok(None) => "nothing local",
            });
            match &answer {
                Err(err) => coded("answer_offline", err, &["BAD_INPUT"])?,
                Ok(Some(r)) => json_answer("answer_offline", r)?,
                Ok(None) => {}
            }
            match e.answer_read_offline(&input.method, url, &input.body.0).await {
                Err(err) => coded("answer_read_offline", &err, &["BAD_INPUT"])?,
                Ok(Some(r)) => json_answer("answer_read_offline", &r)?,
                Ok(None) => {}
            }
            let after = snapshot(&store).await;
            if after == before {
                return Ok(true);
            }
            // Only `generate` hands out (and removes) a reserved value.
            if relative.as_deref().map(route).is_some_and(|r| matches!(r, ReadRoute::Generate(_))) {
                return Ok(false);
            }
            Err(format!("a read wrote: {}", diff(&before, &after)))
        });
        if let Ok(true) = outcome {
            READER.with(|r| *r.borrow_mut() = Some((store, e)));
        }
        outcome.map(|_| ())
    }
}

#[test]
fn fuzz_query_parameters_and_read_routing() {
    fuzz(Reads);
}

// ---------------------------------------------------------------------------------------------
// The long mode.
// ---------------------------------------------------------------------------------------------

#[test]
#[ignore = "long mode (1,000,000 cases per target on every core): cargo test -p tracker-offline-core --test fuzz -- --ignored long_mode --nocapture"]
fn long_mode() {
    install_panic_hook();
    let total = env_u64("FUZZ_CASES").unwrap_or(LONG_CASES);
    let only = std::env::var("FUZZ_TARGETS").ok();
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o.split(',').any(|t| t.trim() == name));
    template();
    let started = Instant::now();
    let mut all = Tally::default();
    if wanted(Writes::NAME) {
        all.add(fuzz_long(&Writes, total));
    }
    if wanted(Stored::NAME) {
        all.add(fuzz_long(&Stored, total));
    }
    if wanted(Answers::NAME) {
        all.add(fuzz_long(&Answers, total));
    }
    if wanted(Download::NAME) {
        all.add(fuzz_long(&Download, total));
    }
    if wanted(Reads::NAME) {
        all.add(fuzz_long(&Reads, total));
    }
    eprintln!("long mode: {} cases in {:.1} s, {} failed", all.cases, started.elapsed().as_secs_f64(), all.failed);
    all.fail_if_any("long mode");
}

// ---------------------------------------------------------------------------------------------
// Regressions: each crash or broken property the harness found, as a named test with its input
// (a seed stops replaying an input once the generators change). Unit tests next to the fixes
// cover the functions alone.
// ---------------------------------------------------------------------------------------------

/// `answers` seeds 6 and 39: a Retry-After date with non-ASCII milliseconds cut a character in
/// two; one with a huge year overflowed (time.rs).
#[test]
fn regression_retry_after_dates_that_panicked() {
    for value in ["Wed, 21 Oct 2026 07:28:00.éé GMT", "Sun, 06 Nov 4294967295 08:49:37 GMT"] {
        assert_eq!(retry_after_ms(value, T0), None, "{value}");
        let busy = HttpResponse { status: 503, headers: vec![("retry-after".into(), value.into())], body: vec![] };
        assert_eq!(load_of(Some(&busy), T0), Load::Busy { retry_after_ms: None });
    }
}

async fn download_from(server: &Dhis2Mock, store: &MemoryStore) -> Result<DownloadReport> {
    let e = unlocked(store, server, 1).await?;
    e.download(DownloadOptions::default(), T0 + 3_600_000, &mut |_| {}).await
}

/// `download` seeds 4 and 13: a serverDate with non-ASCII milliseconds or a huge year made the
/// download panic (time.rs); it is now an unknown server time.
#[test]
fn regression_download_with_odd_server_dates() {
    for date in ["2026-01-01T00:00:00.éé", "99999999999999-01-01T00:00:00.000"] {
        let mut server = Dhis2Mock::valid("2.40.3", vec![]);
        server.system_info = json!({"version": "2.40.3", "serverDate": date}).to_string().into_bytes();
        let report = block_on(download_from(&server, &restore(None))).unwrap();
        assert_eq!(report.skipped, 0);
    }
}

/// `writes` seed 204: an event value nested 120 levels was captured, and its bundle (two levels
/// deeper) could no longer be read back (writes.rs).
#[test]
fn regression_a_deeply_nested_event_value_is_refused_not_stored() {
    let store = restore(None);
    block_on(async {
        let e = unlocked(&store, Down, 1).await.unwrap();
        let body = json!({"events": [{"program": PROGRAM, "programStage": STAGE, "orgUnit": OU, "eventDate": "2026-11-26",
            "trackedEntityInstance": tei_uid(1), "dataValues": [{"dataElement": DES[0], "value": nested(120)}]}]});
        let before = snapshot(&store).await;
        let err = e
            .prepare_write("POST", &format!("{API}/events"), "application/json", body.to_string().as_bytes())
            .unwrap_err();
        assert_eq!(err.code(), "BAD_INPUT");
        assert_eq!(snapshot(&store).await, before);
        readable(&e, &Snapshot::new()).await.unwrap();
    });
}

/// `stored` seed 1345: a stored bundle whose tracked entity lost its UID was read as good and a
/// capture over it failed with BAD_INPUT (clinic.rs); it is damaged storage, and nothing is
/// written.
#[test]
fn regression_a_capture_over_a_bundle_without_its_uid() {
    let store = restore(None);
    block_on(async {
        let e = unlocked(&store, Down, 1).await.unwrap();
        let id = bundle_id(&tei_uid(3));
        let mut bundle: Value =
            serde_json::from_slice(&e.vault().get_record(StoreName::Records, &id).await.unwrap().unwrap()).unwrap();
        bundle["tei"].as_object_mut().unwrap().remove("trackedEntityInstance");
        e.vault().put_record(StoreName::Records, &id, bundle.to_string().as_bytes()).await.unwrap();
        let e = unlocked(&store, Down, 2).await.unwrap();
        let body = json!({"dataValues": [{"dataElement": DES[2], "value": "checked"}]});
        let prepared = e
            .prepare_write(
                "PUT",
                &format!("{API}/events/{}/{}", event_uid(3, 0), DES[2]),
                "application/json",
                body.to_string().as_bytes(),
            )
            .unwrap();
        let before = snapshot(&store).await;
        let err = e.capture_write(&prepared, T0).await.unwrap_err();
        assert_eq!(err.code(), "STORAGE_CORRUPT");
        assert_eq!(snapshot(&store).await, before);
    });
}

/// `download` seeds 10, 127, 158, 197: a 2.42 server's 200 without a `trackedEntities` list was
/// taken for an empty last page (download.rs); the run fails, the copy stays as it was.
#[test]
fn regression_a_tracker_page_that_is_not_one() {
    for page in [
        json!({"httpStatusCode": 200, "status": "OK"}),
        json!({"pager": {"page": 1}, "trackedEntities": "x"}),
        json!([]),
    ] {
        let store = restore(None);
        let server = Dhis2Mock::valid("2.42.1", vec![page.to_string().into_bytes()]);
        let before = block_on(snapshot(&store));
        let err = block_on(download_from(&server, &store)).unwrap_err();
        assert_eq!(err.code(), "BAD_RESPONSE", "{page}");
        let mut after = block_on(snapshot(&store));
        // Only the metadata read before the page is new (with its manifest update).
        let meta = block_on(unlocked(&store, Down, 3))
            .unwrap()
            .vault()
            .record_storage_key(StoreName::Cache, METADATA_ID)
            .unwrap();
        let mut expected = before;
        for s in [&mut expected, &mut after] {
            s.get_mut(&StoreName::Cache).unwrap().remove(&meta);
            without_manifest(s);
        }
        assert_eq!(after, expected, "{page}");
    }
}

/// Sets `field` of the index row of Te000000002 in `store` to `value`, sealed with the data key
/// (damaged, authentic storage).
async fn edit_the_index_row_of_te2(store: &MemoryStore, field: &str, value: Value) {
    let e = unlocked(store, Down, 1).await.unwrap();
    let id = bundle_id(&tei_uid(2));
    let mut row: Value =
        serde_json::from_slice(&e.vault().get_record(StoreName::Index, &id).await.unwrap().unwrap()).unwrap();
    row[field] = value;
    e.vault().put_record(StoreName::Index, &id, row.to_string().as_bytes()).await.unwrap();
}

/// `stored` seeds with an index row at the largest position and an entry at the last sequence
/// number (damaged, authentic storage): the next position and the next sequence overflowed
/// (index.rs, outbox.rs). Positions saturate; the sequence refuses the capture, writing nothing.
#[test]
fn regression_largest_positions_and_sequence_in_storage() {
    let store = restore(None);
    block_on(async {
        edit_the_index_row_of_te2(&store, "ordinal", json!(u64::MAX)).await;
        let e = unlocked(&store, Down, 2).await.unwrap();
        let answer =
            capture(&e, "POST", "trackedEntityInstances", json!({"trackedEntityType": TET, "orgUnit": OU})).await;
        assert_eq!(answer.status, 200);
        let page = json!({"trackedEntityInstances": [legacy_tei(CLINIC_TEIS + 3, "2026-06-01T00:00:00.000")]});
        let server = Dhis2Mock::valid("2.40.3", vec![page.to_string().into_bytes()]);
        assert_eq!(download_from(&server, &store).await.unwrap().tracked_entities, 1);

        let e = unlocked(&store, Down, 4).await.unwrap();
        let mut entry = e.outbox_entries().await.unwrap().remove(0);
        let id = entry.id();
        entry.seq = u64::MAX;
        e.vault().put_record(StoreName::Outbox, &id, &serde_json::to_vec(&entry).unwrap()).await.unwrap();
        let e = unlocked(&store, Down, 5).await.unwrap();
        let prepared = e.prepare_write("PUT", &format!("{API}/dataStore/clinic/x"), "application/json", b"{}").unwrap();
        let before = snapshot(&store).await;
        assert_eq!(e.capture_write(&prepared, T0).await.unwrap_err().code(), "STORAGE_CORRUPT");
        assert_eq!(snapshot(&store).await, before);
    });
}

/// `answers` seeds 891, 1023, 2252, 2730, 2737: a record named by an ERROR and a SUCCESS summary
/// was both accepted and refused, or kept a warning while refused (answer.rs).
#[test]
fn regression_a_record_both_accepted_and_refused() {
    let uid = tei_uid(3);
    let body = json!({"httpStatusCode": 409, "status": "ERROR", "response": {"responseType": "ImportSummaries", "importSummaries": [
        {"responseType": "ImportSummary", "status": "ERROR", "reference": uid, "conflicts": [{"object": DES[2], "value": "😀"}]},
        {"responseType": "ImportSummary", "status": "SUCCESS", "reference": uid, "conflicts": [{"object": DES[0], "value": "value_not_numeric"}]}]}});
    let response = HttpResponse { status: 409, headers: vec![], body: body.to_string().into_bytes() };
    let Verdict::PerRecord { ok, refused, warnings } =
        interpret(Some(&response), std::slice::from_ref(&uid), Family::Legacy)
    else {
        panic!("a verdict per record")
    };
    assert!(ok.is_empty() && warnings.is_empty() && refused.contains_key(&uid));
}

/// `reads` seed 573: a huge `page` on an event list overflowed the pager offline (reads.rs,
/// family.rs).
#[test]
fn regression_a_huge_page_number_offline() {
    let store = restore(None);
    block_on(async {
        let e = unlocked(&store, Down, 1).await.unwrap();
        for url in [
            format!("{API}/events?page=18446744073709551615"),
            format!("{API}/events.json?page=99999999999&pageSize=18446744073709551615&totalPages=true"),
            format!("{API}/tracker/events?page=18446744073709551615&pageSize=50"),
        ] {
            let answer = e.answer_offline(&url).await.unwrap().unwrap();
            assert_eq!(answer.status, 200, "{url}");
        }
    });
}

/// `answers` seeds 949, 1167, 1613: an ImportReport refused as a whole (an error tied to no
/// record) kept the warnings of the records it refused (answer.rs).
#[test]
fn regression_a_report_refused_as_a_whole_keeps_no_warnings() {
    let uids = vec![tei_uid(3), new_uid(&mut Rng::new(1))];
    let body = json!({"status": "ERROR", "validationReport": {
        "errorReports": [{"message": "Value not numeric", "errorCode": "E1302", "trackerType": "EVENT"}],
        "warningReports": [{"message": "Attribute value ignored", "warningCode": "E1017", "trackerType": "EVENT", "uid": uids[0]}]},
        "stats": {"created": 0, "updated": 2, "deleted": 0, "ignored": 0, "total": 2}});
    let response = HttpResponse { status: 409, headers: vec![], body: body.to_string().into_bytes() };
    let Verdict::PerRecord { ok, refused, warnings } = interpret(Some(&response), &uids, Family::Tracker) else {
        panic!("a verdict per record")
    };
    assert!(ok.is_empty() && warnings.is_empty() && refused.len() == 2);
}

/// `stored` seed 26621 (of 30,000): a damaged download cursor whose last complete run is at the
/// start of i64 overflowed the incremental margin (download.rs).
#[test]
fn regression_a_damaged_download_cursor() {
    let store = restore(None);
    block_on(async {
        let e = unlocked(&store, Down, 1).await.unwrap();
        let mut cursor: Value =
            serde_json::from_slice(&e.vault().get_record(StoreName::Cache, CURSOR_ID).await.unwrap().unwrap()).unwrap();
        cursor["lastCompleteServerMs"] = json!(i64::MIN);
        e.vault().put_record(StoreName::Cache, CURSOR_ID, cursor.to_string().as_bytes()).await.unwrap();
        let server = Dhis2Mock::valid("2.40.3", vec![]);
        download_from(&server, &store).await.unwrap();
    });
}

/// Found by the `download` figures (139 of 10,000 cases ended BAD_INPUT with no option given):
/// a program or org unit UID the server sent that is not a UID blamed the app (BAD_INPUT); it
/// is the server's answer that cannot be used (download.rs).
#[test]
fn regression_a_server_program_that_is_not_a_uid_is_a_bad_response() {
    let mut server = Dhis2Mock::valid("2.40.3", vec![]);
    let mut programs = programs_json();
    programs["programs"][0]["id"] = json!("MCH program");
    server.programs = programs.to_string().into_bytes();
    let err = block_on(download_from(&server, &restore(None))).unwrap_err();
    assert_eq!(err.code(), "BAD_RESPONSE");
    let options = DownloadOptions { org_units: Some(vec!["not a uid".into()]), ..Default::default() };
    let (store, server) = (restore(None), Dhis2Mock::valid("2.40.3", vec![]));
    let err = block_on(async {
        let e = unlocked(&store, &server, 1).await?;
        e.download(options, T0, &mut |_| {}).await
    })
    .unwrap_err();
    assert_eq!(err.code(), "BAD_INPUT");
}

/// Long-mode `stored` seeds 1071684 and 1120598: an index row (authentic, damaged) whose UID
/// was no UID made every list read fail with BAD_INPUT (a record id too long), blaming the app;
/// it is a damaged row, skipped like one that does not open (download.rs).
#[test]
fn regression_an_index_row_without_a_uid() {
    for uid in [json!(""), json!("Te000000002".to_string() + &"a".repeat(5_000)), json!("x/y")] {
        let store = restore(None);
        block_on(async {
            edit_the_index_row_of_te2(&store, "uid", uid.clone()).await;
            let e = unlocked(&store, Down, 2).await.unwrap();
            for read in [
                "tracker/trackedEntities?orgUnits=OuBaniNaim1&orgUnitMode=DESCENDANTS&fields=*",
                "events.json?ouMode=ACCESSIBLE&program=PrMchProg01&skipPaging=true&fields=*",
                "trackedEntityInstances.json?ouMode=ALL&skipPaging=true",
            ] {
                let answer = e.answer_offline(&format!("{API}/{read}")).await.unwrap().unwrap();
                assert_eq!(answer.status, 200, "{read} with {uid}");
            }
            assert_eq!(e.status().await.unwrap().records, CLINIC_TEIS as u64, "the damaged row is not counted");
        });
    }
}

/// `stored` long-mode seed 1550678: the template's "password refused" mark (for another user)
/// was changed into a valid mark for the logged-in nurse; the download then rightly refused to
/// send her password (AUTH_REQUIRED), which the harness did not allow. Not a core fault: the
/// harness now requires AUTH_REQUIRED, and no download at all, when the mark is hers.
#[test]
fn regression_a_stored_password_refused_mark_for_her_stops_the_download() {
    let mut input = Stored.generate(&mut Rng::new(1_550_678), 1_550_678);
    input.edits = vec![Edit::Plain {
        store: StoreName::Cache,
        id: PASSWORD_REFUSED_ID.into(),
        plaintext: Shown(br#"{"username":"nurse1"}"#.to_vec()),
    }];
    input.reads = vec![];
    input.download = true;
    Stored.check(&input).unwrap();
}
