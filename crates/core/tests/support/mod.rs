//! Test doubles shared by the core's integration tests: a scripted HTTP client and helpers.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use std::{cell::RefCell, collections::VecDeque};

use tracker_offline_core::{
    engine::{Engine, EngineConfig},
    http::{HttpClient, HttpRequest, HttpResponse},
    kdf::RustPbkdf2,
    profile::{OrgUnitRef, UserProfile},
    random::OsRandom,
    store::{KvStore, MemoryStore, StoreName, WriteBatch},
    vault::{Vault, VaultPolicy},
    CoreError, Result,
};

pub const DAY: i64 = 24 * 60 * 60 * 1000;
pub const T0: i64 = 1_780_000_000_000;

/// Fast policy for tests (the KDF count is stored per user, so this is realistic otherwise).
pub fn fast_policy() -> VaultPolicy {
    VaultPolicy { iterations: 1_000, ..VaultPolicy::default() }
}

pub type TestVault = Vault<MemoryStore, RustPbkdf2, OsRandom>;

pub fn vault(store: &MemoryStore) -> TestVault {
    Vault::new(store.clone(), RustPbkdf2, OsRandom, fast_policy())
}

pub fn profile(username: &str, display: &str) -> UserProfile {
    UserProfile {
        id: format!("U{:0>10}", username.len()),
        username: username.into(),
        display_name: display.into(),
        organisation_units: vec![OrgUnitRef {
            id: "DiszpKrYNg8".into(),
            display_name: Some("Bani Naim Clinic".into()),
        }],
        tei_search_organisation_units: vec![],
        authorities: vec![],
    }
}

/// Every byte of every store, concatenated with the keys, for plaintext scans.
pub async fn dump(store: &MemoryStore) -> Vec<u8> {
    let mut all = Vec::new();
    for name in StoreName::ALL {
        for (k, v) in store.list(name).await.unwrap() {
            all.extend_from_slice(k.as_bytes());
            all.extend_from_slice(&v);
        }
    }
    all
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// A small deterministic generator (xorshift), so a seed replays a case exactly.
pub struct Rng(pub u64);

impl Rng {
    /// A generator whose first numbers differ widely for neighbouring seeds.
    pub fn new(seed: u64) -> Self {
        let mut rng = Rng((seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03) | 1);
        rng.next();
        rng
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    /// True with `percent` % probability.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    pub fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }
    pub fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
}

/// One scripted answer of [`ScriptedHttp`].
pub enum Answer {
    Status(u16, &'static str),
    NetworkDown,
}

/// An HTTP client that replays scripted answers and records requests.
#[derive(Default)]
pub struct ScriptedHttp {
    pub answers: RefCell<VecDeque<Answer>>,
    pub requests: RefCell<Vec<HttpRequest>>,
}

impl ScriptedHttp {
    pub fn push(&self, answer: Answer) {
        self.answers.borrow_mut().push_back(answer);
    }
}

impl HttpClient for &ScriptedHttp {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse> {
        self.requests.borrow_mut().push(request);
        match self.answers.borrow_mut().pop_front() {
            Some(Answer::Status(status, body)) => {
                Ok(HttpResponse { status, headers: vec![], body: body.as_bytes().to_vec() })
            }
            Some(Answer::NetworkDown) | None => Err(CoreError::ServerUnreachable("Failed to fetch".into())),
        }
    }
}

pub type TestEngine<'a> = Engine<MemoryStore, RustPbkdf2, OsRandom, &'a ScriptedHttp>;

pub fn engine<'a>(store: &MemoryStore, http: &'a ScriptedHttp) -> TestEngine<'a> {
    Engine::new(EngineConfig::new("/api", fast_policy()).unwrap(), store.clone(), RustPbkdf2, OsRandom, http)
}

/// A future that is pending once (waking itself), so other tasks of the executor run: a
/// request in flight, for tests that interleave a capture with a flush.
pub async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

/// A store that counts, for one store name, the values it hands out (get, get_many, list) and
/// the keys it lists.
#[derive(Clone)]
pub struct ReadsCounted {
    pub inner: MemoryStore,
    counted: StoreName,
    values_read: std::rc::Rc<std::cell::Cell<usize>>,
    keys_listed: std::rc::Rc<std::cell::Cell<usize>>,
    counted_entries: std::rc::Rc<std::cell::Cell<usize>>,
}

impl ReadsCounted {
    pub fn new(inner: MemoryStore, counted: StoreName) -> Self {
        Self {
            inner,
            counted,
            values_read: Default::default(),
            keys_listed: Default::default(),
            counted_entries: Default::default(),
        }
    }
    fn note(&self, store: StoreName, values: usize, keys: usize) {
        if store == self.counted {
            self.values_read.set(self.values_read.get() + values);
            self.keys_listed.set(self.keys_listed.get() + keys);
        }
    }
    /// Values read since the last call.
    pub fn take_count(&self) -> usize {
        self.values_read.replace(0)
    }
    /// Keys listed since the last call.
    pub fn take_keys_listed(&self) -> usize {
        self.keys_listed.replace(0)
    }
    /// How often the store's entries were counted since the last call.
    pub fn take_counted_entries(&self) -> usize {
        self.counted_entries.replace(0)
    }
}

impl KvStore for ReadsCounted {
    async fn get(&self, store: StoreName, key: &str) -> Result<Option<Vec<u8>>> {
        let value = self.inner.get(store, key).await?;
        self.note(store, usize::from(value.is_some()), 0);
        Ok(value)
    }
    async fn get_many(&self, store: StoreName, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        let values = self.inner.get_many(store, keys).await?;
        self.note(store, values.iter().flatten().count(), 0);
        Ok(values)
    }
    async fn list(&self, store: StoreName) -> Result<Vec<(String, Vec<u8>)>> {
        let values = self.inner.list(store).await?;
        self.note(store, values.len(), 0);
        Ok(values)
    }
    async fn list_keys(&self, store: StoreName) -> Result<Vec<String>> {
        let keys = self.inner.list_keys(store).await?;
        self.note(store, 0, keys.len());
        Ok(keys)
    }
    async fn list_keys_with_prefixes(&self, store: StoreName, prefixes: &[String]) -> Result<Vec<String>> {
        let keys = self.inner.list_keys_with_prefixes(store, prefixes).await?;
        self.note(store, 0, keys.len());
        Ok(keys)
    }
    async fn count(&self, store: StoreName) -> Result<u64> {
        if store == self.counted {
            self.counted_entries.set(self.counted_entries.get() + 1);
        }
        self.inner.count(store).await
    }
    async fn write(&self, batch: WriteBatch) -> Result<()> {
        self.inner.write(batch).await
    }
}
