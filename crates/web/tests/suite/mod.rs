//! The browser test suite, run once in a page (`browser.rs`) and once in a service worker
//! (`service_worker.rs`): the store conformance suite on real IndexedDB, the vault over it,
//! tampering, and WebCrypto PBKDF2 and AES-GCM against the Rust reference.
#![allow(dead_code, clippy::unwrap_used, missing_docs)]

use tracker_offline::{
    error::to_js_error,
    idb::IdbStore,
    platform::{WebCryptoPbkdf2, WebRandom},
};
use tracker_offline_core::{
    crypto::{envelope_of, envelope_parts, pbkdf2_sha256, SealInput, SecretKey},
    kdf::PasswordKdf,
    profile::{OrgUnitRef, UserProfile},
    random::{random_array, RandomSource},
    store::{conformance, KvStore, StoreName},
    vault::{Vault, VaultPolicy},
    CoreError,
};
use wasm_bindgen::{JsCast, JsValue};

pub fn log(text: &str) {
    web_sys::console::log_1(&text.into());
}

pub fn unique_db(label: &str) -> String {
    let id: [u8; 8] = random_array(&WebRandom).unwrap();
    format!("test-{label}-{}", hex(&id))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

async fn performance_now() -> f64 {
    let global = js_sys::global();
    let perf = js_sys::Reflect::get(&global, &"performance".into()).unwrap();
    let now = js_sys::Reflect::get(&perf, &"now".into()).unwrap();
    let f: js_sys::Function = now.into();
    f.call0(&perf).unwrap().as_f64().unwrap()
}

fn policy() -> VaultPolicy {
    VaultPolicy { iterations: 1_000, ..VaultPolicy::default() }
}

fn profile(username: &str) -> UserProfile {
    UserProfile {
        id: "xE7jOejl9FI".into(),
        username: username.into(),
        display_name: format!("{username} display"),
        organisation_units: vec![OrgUnitRef {
            id: "DiszpKrYNg8".into(),
            display_name: Some("Bani Naim Clinic".into()),
        }],
        tei_search_organisation_units: vec![],
        authorities: vec![],
    }
}

/// Every key and value of every store of database `name`, concatenated (for plaintext scans).
async fn raw_bytes(name: &str) -> Vec<u8> {
    let store = IdbStore::open(name).await.unwrap();
    let mut raw = Vec::new();
    for s in StoreName::ALL {
        for (k, v) in store.list(s).await.unwrap() {
            raw.extend_from_slice(k.as_bytes());
            raw.extend_from_slice(&v);
        }
    }
    raw
}

pub async fn idb_store_conformance() {
    conformance::run_all(|label| async move { IdbStore::open(&unique_db(label)).await.unwrap() }).await.unwrap();
}

pub async fn idb_store_reopens_with_data() {
    let name = unique_db("reopen");
    let store = IdbStore::open(&name).await.unwrap();
    store
        .write(tracker_offline_core::store::WriteBatch::new().put(StoreName::Outbox, "k", vec![1, 2, 3]))
        .await
        .unwrap();
    store.close();
    let store = IdbStore::open(&name).await.unwrap();
    assert_eq!(store.get(StoreName::Outbox, "k").await.unwrap(), Some(vec![1, 2, 3]));
}

pub async fn data_stored_by_one_user_is_readable_by_another_and_not_without_login() {
    let name = unique_db("vault");
    let vault = Vault::new(IdbStore::open(&name).await.unwrap(), WebCryptoPbkdf2, WebRandom, policy());
    let t0 = now_ms() as i64;
    vault.login_verified_online("nurse1", "Nurse1!clinic", profile("nurse1"), t0).await.unwrap();
    vault.put_record(StoreName::Records, "tei:PQfMcpmXeFE", b"Fatima Nasser").await.unwrap();
    // Shift change: nurse2's first login on this device while nurse1 is logged in.
    let out = vault.login_verified_online("nurse2", "Nurse2!clinic", profile("nurse2"), t0).await.unwrap();
    assert!(out.handover);
    vault.lock();

    // A fresh connection, as after a reload.
    let vault = Vault::new(IdbStore::open(&name).await.unwrap(), WebCryptoPbkdf2, WebRandom, policy());
    let err = vault.get_record(StoreName::Records, "tei:PQfMcpmXeFE").await.unwrap_err();
    assert_eq!(err, CoreError::VaultLocked);
    assert_eq!(vault.login_offline("nurse2", "wrong", t0).await.unwrap_err(), CoreError::BadCredentials);
    vault.login_offline("nurse2", "Nurse2!clinic", t0).await.unwrap();
    assert_eq!(vault.get_record(StoreName::Records, "tei:PQfMcpmXeFE").await.unwrap().unwrap(), b"Fatima Nasser");
    vault.put_record(StoreName::Records, "tei:Zx9aX0nFCnP", b"Huda Saleh").await.unwrap();
    vault.lock();
    vault.login_offline("nurse1", "Nurse1!clinic", t0).await.unwrap();
    assert_eq!(vault.get_record(StoreName::Records, "tei:Zx9aX0nFCnP").await.unwrap().unwrap(), b"Huda Saleh");

    // Nothing readable in the raw database.
    let raw = raw_bytes(&name).await;
    for needle in ["Fatima Nasser", "Huda Saleh", "Nurse1!clinic", "nurse2 display", "Bani Naim", "PQfMcpmXeFE"] {
        assert!(!raw.windows(needle.len()).any(|w| w == needle.as_bytes()), "{needle} in clear");
    }
}

pub async fn tampered_and_swapped_records_are_detected_on_idb() {
    let name = unique_db("tamper");
    let store = IdbStore::open(&name).await.unwrap();
    let vault = Vault::new(store, WebCryptoPbkdf2, WebRandom, policy());
    vault.login_verified_online("nurse1", "Nurse1!clinic", profile("nurse1"), now_ms() as i64).await.unwrap();
    for id in ["a", "b", "c"] {
        vault.put_record(StoreName::Records, id, id.repeat(20).as_bytes()).await.unwrap();
    }
    let raw = IdbStore::open(&name).await.unwrap();
    let ka = vault.record_storage_key(StoreName::Records, "a").unwrap();
    let kb = vault.record_storage_key(StoreName::Records, "b").unwrap();
    let mut a = raw.get(StoreName::Records, &ka).await.unwrap().unwrap();
    a[30] ^= 1;
    raw.write(tracker_offline_core::store::WriteBatch::new().put(StoreName::Records, ka.clone(), a)).await.unwrap();
    let err = vault.get_record(StoreName::Records, "a").await.unwrap_err();
    assert_eq!(err.code(), "STORAGE_CORRUPT");
    // The error reaches JS as an Error with the code.
    let js = to_js_error(&err);
    assert_eq!(js_sys::Reflect::get(&js, &"code".into()).unwrap(), JsValue::from_str("STORAGE_CORRUPT"));
    assert!(js.is_instance_of::<js_sys::Error>());
    // Swap c's bytes into b's place.
    let kc = vault.record_storage_key(StoreName::Records, "c").unwrap();
    let c = raw.get(StoreName::Records, &kc).await.unwrap().unwrap();
    raw.write(tracker_offline_core::store::WriteBatch::new().put(StoreName::Records, kb, c)).await.unwrap();
    assert_eq!(vault.get_record(StoreName::Records, "b").await.unwrap_err().code(), "STORAGE_CORRUPT");
    assert_eq!(vault.get_record(StoreName::Records, "c").await.unwrap().unwrap(), "c".repeat(20).as_bytes());
}

/// Issue 13 item 7 on real IndexedDB: removing a user rotates the data key in one
/// transaction; after a reload a colleague opens the new key offline and reads everything, the
/// removed user is gone, and nothing is in clear.
pub async fn removing_a_user_rotates_the_key_on_idb() {
    let name = unique_db("rotate");
    let vault = Vault::new(IdbStore::open(&name).await.unwrap(), WebCryptoPbkdf2, WebRandom, policy());
    let t0 = now_ms() as i64;
    for user in ["nurse1", "nurse2", "nurse3"] {
        let password = format!("{}!clinic", user.replace('n', "N"));
        vault.login_verified_online(user, &password, profile(user), t0).await.unwrap();
    }
    for i in 0..200 {
        vault
            .put_record(StoreName::Records, &format!("tei:{i:011}"), format!("Woman number {i}").as_bytes())
            .await
            .unwrap();
    }
    let outcome = vault.remove_user("nurse2").await.unwrap();
    assert_eq!((outcome.users_kept, outcome.users_to_log_in_online_again), (2, 0));
    assert!(outcome.values_resealed >= 200, "{outcome:?}");
    vault.lock();

    let vault = Vault::new(IdbStore::open(&name).await.unwrap(), WebCryptoPbkdf2, WebRandom, policy());
    assert_eq!(vault.login_offline("nurse2", "Nurse2!clinic", t0).await.unwrap_err().code(), "UNKNOWN_USER_OFFLINE");
    vault.login_offline("nurse1", "Nurse1!clinic", t0).await.unwrap();
    for i in [0, 99, 199] {
        let plain = vault.get_record(StoreName::Records, &format!("tei:{i:011}")).await.unwrap().unwrap();
        assert_eq!(plain, format!("Woman number {i}").as_bytes());
    }
    let raw = raw_bytes(&name).await;
    for needle in ["Woman number", "Nurse1!clinic", "nurse1 display", "Bani Naim"] {
        assert!(!raw.windows(needle.len()).any(|w| w == needle.as_bytes()), "{needle} in clear");
    }
}

pub async fn webcrypto_pbkdf2_equals_rust_pbkdf2() {
    let cases: [(&[u8], &[u8], u32); 4] = [
        (b"passwd", b"salt", 1),
        (b"password", b"salt", 4096),
        ("كلمة-السر".as_bytes(), &[0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], 1000),
        (b"Nurse1!clinic", b"0123456789abcdef", 600_000),
    ];
    for (password, salt, iterations) in cases {
        let web = WebCryptoPbkdf2.pbkdf2_sha256(password, salt, iterations).await.unwrap();
        let rust = pbkdf2_sha256(password, salt, iterations);
        assert_eq!(web.expose(), rust.expose(), "iterations {iterations}");
    }
    assert_eq!(WebCryptoPbkdf2.pbkdf2_sha256(b"x", b"y", 0).await.unwrap_err().code(), "BAD_INPUT");
}

fn sealed_cases(key: &SecretKey) -> Vec<(Vec<u8>, Vec<u8>)> {
    let plaintexts: Vec<Vec<u8>> = vec![
        vec![],
        b"x".to_vec(),
        "فاطمة أحمد, 3 visits".as_bytes().to_vec(),
        (0..70_000u32).map(|i| (i % 251) as u8).collect(),
    ];
    plaintexts
        .iter()
        .enumerate()
        .map(|(i, plain)| {
            let aad = format!("records|key{i}").into_bytes();
            let sealed = key.seal(&WebRandom, &aad, plain).unwrap();
            (aad, sealed)
        })
        .collect()
}

/// WebCrypto's AES-GCM opens what the Rust AES-GCM sealed, and refuses what it refuses.
pub async fn webcrypto_open_many_equals_rust_open() {
    let key = SecretKey::filled(|k| k.copy_from_slice(&random_array::<32>(&WebRandom).unwrap()));
    let mut cases = sealed_cases(&key);
    let (aad, sealed) = cases[2].clone();
    let mut tampered = sealed.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    cases.push((aad.clone(), tampered));
    cases.push((b"records|another key".to_vec(), sealed.clone()));
    let other_key = SecretKey::filled(|k| k.copy_from_slice(&random_array::<32>(&WebRandom).unwrap()));
    cases.push((aad, other_key.seal(&WebRandom, b"records|key2", b"under another key").unwrap()));
    let parts: Vec<_> = cases.iter().map(|(aad, sealed)| envelope_parts(aad, sealed).unwrap()).collect();
    // None would mean no WebCrypto AES-GCM here: every browser we support has it.
    let web = WebCryptoPbkdf2.open_many(&key, &parts).await.unwrap();
    assert_eq!(web.len(), cases.len());
    for (i, ((aad, sealed), web)) in cases.iter().zip(web).enumerate() {
        let rust = key.open(aad, sealed);
        match (&web, &rust) {
            (Ok(w), Ok(r)) => assert_eq!(w, r, "case {i}"),
            (Err(w), Err(r)) => assert_eq!(w.code(), r.code(), "case {i}"),
            _ => panic!("case {i}: WebCrypto {web:?} but Rust {rust:?}"),
        }
        assert_eq!(rust.is_ok(), i < 4, "case {i}: only the first four open");
    }
}

/// WebCrypto's AES-GCM seals to the same bytes as the Rust AES-GCM under the same nonce.
pub async fn webcrypto_seal_many_equals_rust_seal() {
    let key = SecretKey::filled(|k| k.copy_from_slice(&random_array::<32>(&WebRandom).unwrap()));
    let plaintexts: Vec<Vec<u8>> = vec![vec![], b"x".to_vec(), "فاطمة أحمد".as_bytes().to_vec(), vec![7u8; 70_000]];
    let inputs: Vec<SealInput<'_>> = plaintexts
        .iter()
        .enumerate()
        .map(|(i, p)| SealInput::new(random_array(&WebRandom).unwrap(), format!("records|key{i}").as_bytes(), p))
        .collect();
    let web = WebCryptoPbkdf2.seal_many(&key, &inputs).await.unwrap();
    for (i, (input, sealed)) in inputs.iter().zip(web).enumerate() {
        let envelope = envelope_of(input, &sealed.unwrap()).unwrap();
        let aad = format!("records|key{i}");
        assert_eq!(envelope, key.seal_with_nonce(input.nonce, aad.as_bytes(), input.plaintext).unwrap(), "case {i}");
        assert_eq!(key.open(aad.as_bytes(), &envelope).unwrap(), plaintexts[i]);
    }
}

/// Prints (does not assert) the time to open 256 values of 6 KB, WebCrypto next to Rust.
pub async fn bulk_open_timings_side_by_side() {
    let key = SecretKey::filled(|k| k.copy_from_slice(&random_array::<32>(&WebRandom).unwrap()));
    let plain: Vec<u8> = (0..6_000u32).map(|i| (i % 97) as u8).collect();
    let cases: Vec<(Vec<u8>, Vec<u8>)> = (0..256)
        .map(|i| {
            let aad = format!("cache|chunk{i}").into_bytes();
            let sealed = key.seal(&WebRandom, &aad, &plain).unwrap();
            (aad, sealed)
        })
        .collect();
    let parts: Vec<_> = cases.iter().map(|(aad, sealed)| envelope_parts(aad, sealed).unwrap()).collect();
    let (mut web_ms, mut rust_ms) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let t = performance_now().await;
        let opened = WebCryptoPbkdf2.open_many(&key, &parts).await.unwrap();
        assert!(opened.iter().all(Result::is_ok));
        web_ms.push(performance_now().await - t);
        let t = performance_now().await;
        for (aad, sealed) in &cases {
            key.open(aad, sealed).unwrap();
        }
        rust_ms.push(performance_now().await - t);
    }
    web_ms.sort_by(f64::total_cmp);
    rust_ms.sort_by(f64::total_cmp);
    log(&format!(
        "open 256 x 6 KB AES-256-GCM, median of 3: WebCrypto {:.1} ms, Rust/wasm {:.1} ms (ratio {:.2})",
        web_ms[1],
        rust_ms[1],
        rust_ms[1] / web_ms[1]
    ));
}

/// Prints (does not assert) PBKDF2 timings at 600,000 iterations, WebCrypto next to Rust.
pub async fn pbkdf2_timings_side_by_side() {
    let salt: [u8; 16] = random_array(&WebRandom).unwrap();
    let mut web_ms = Vec::new();
    let mut rust_ms = Vec::new();
    for _ in 0..3 {
        let t = performance_now().await;
        WebCryptoPbkdf2.pbkdf2_sha256(b"Nurse1!clinic", &salt, 600_000).await.unwrap();
        web_ms.push(performance_now().await - t);
        let t = performance_now().await;
        let _ = pbkdf2_sha256(b"Nurse1!clinic", &salt, 600_000);
        rust_ms.push(performance_now().await - t);
    }
    web_ms.sort_by(f64::total_cmp);
    rust_ms.sort_by(f64::total_cmp);
    log(&format!(
        "PBKDF2-SHA256 600k iterations, median of 3: WebCrypto {:.0} ms, Rust/wasm {:.0} ms (ratio {:.2})",
        web_ms[1],
        rust_ms[1],
        rust_ms[1] / web_ms[1]
    ));
}

pub async fn random_source_works_here() {
    let a: [u8; 32] = random_array(&WebRandom).unwrap();
    let mut b = [0u8; 32];
    WebRandom.fill(&mut b).unwrap();
    assert_ne!(a, b);
}

/// Declares one `#[wasm_bindgen_test]` per suite function, for the context of the including file.
#[macro_export]
macro_rules! browser_suite {
    ($($name:ident),* $(,)?) => {
        $(
            #[wasm_bindgen_test::wasm_bindgen_test]
            async fn $name() {
                suite::$name().await;
            }
        )*
    };
}
