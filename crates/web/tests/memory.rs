//! No copy of a secret survives logout in wasm memory (issue 13, item 8).
//!
//! A page logs in through the JS-facing `Engine` with a password made in JavaScript (so the
//! test itself never holds it in wasm memory), against a stand-in server (the global `fetch`
//! replaced for this page), sends work that needs the Basic header, and logs out. Then the whole
//! wasm linear memory is searched for the password, `user:password`, its base64 (the Basic
//! header's value), the data key and the keys derived from it and from the password. The keys
//! are computed by WebCrypto from the stored register entry, in JavaScript: the needles never
//! enter wasm memory, so whatever is found there is a copy the library left.
//!
//! Own test binary (own page, own wasm instance): the other suites' keys and passwords are not
//! in this memory.
#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use js_sys::{Array, Function, JsString, Object, Promise, Reflect, Uint8Array};
use tracker_offline::{
    api::{Engine, PreparedRequest},
    idb::IdbStore,
};
use tracker_offline_core::{
    register::{UserEntry, VaultMeta, VAULT_META_KEY},
    store::{KvStore, StoreName},
};
use wasm_bindgen::{convert::TryFromJsValue, JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

const API_BASE: &str = "https://dhis2.stand-in.invalid/api";

/// Makes the password (random, ASCII) in JS and replaces `fetch` with a stand-in DHIS2 that
/// accepts exactly `nurse1` with that password; every request it sees is recorded with whether
/// it carried the right Basic header.
const STAND_IN: &str = r#"
const hex = Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, '0')).join('');
const password = 'Mq7-' + hex + '-zP';
const plain = username + ':' + password;
const basic = 'Basic ' + btoa(plain);
const seen = [];
globalThis.fetch = async (input, init) => {
  const request = input instanceof Request ? input : new Request(input, init);
  const url = new URL(request.url);
  const authorization = request.headers.get('Authorization');
  seen.push({ method: request.method, path: url.pathname, basic: authorization === basic });
  if (url.pathname.endsWith('/api/me')) {
    if (authorization !== basic) return new Response('{}', { status: 401 });
    return new Response(JSON.stringify({
      id: 'xE7jOejl9FI', username, displayName: 'Nurse One',
      organisationUnits: [{ id: 'DiszpKrYNg8', displayName: 'Bani Naim Clinic' }],
    }), { status: 200, headers: { 'content-type': 'application/json' } });
  }
  return new Response('{}', { status: 200, headers: { 'content-type': 'application/json' } });
};
return { password, seen, plain: new TextEncoder().encode(plain), basic: new TextEncoder().encode(btoa(plain)),
         passwordBytes: new TextEncoder().encode(password) };
"#;

/// The register entry's secrets by WebCrypto: PBKDF2 master, key-encryption key, the data key
/// unwrapped, and the lookup key derived from it (see core `crypto` and `vault`).
const DERIVE: &str = r#"
const subtle = crypto.subtle;
const hmac = async (key, label) => {
  const k = await subtle.importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return new Uint8Array(await subtle.sign('HMAC', k, new TextEncoder().encode(label)));
};
const base = await subtle.importKey('raw', new TextEncoder().encode(password), 'PBKDF2', false, ['deriveBits']);
const master = new Uint8Array(await subtle.deriveBits({ name: 'PBKDF2', hash: 'SHA-256', salt, iterations }, base, 256));
const kek = await hmac(master, 'tracker-offline/kek/v1');
const aesKek = await subtle.importKey('raw', kek, 'AES-GCM', false, ['decrypt']);
const dataKey = new Uint8Array(await subtle.decrypt(
  { name: 'AES-GCM', iv: wrapped.slice(1, 13), additionalData: aad }, aesKek, wrapped.slice(13)));
const lookupKey = await hmac(dataKey, 'tracker-offline/lookup/v1');
return { master, kek, dataKey, lookupKey };
"#;

/// Every offset of `needle` in a snapshot of `memory` (both JS values: the needles never enter
/// wasm memory).
const SCAN: &str = r#"
const hay = new Uint8Array(memory.buffer).slice();
const found = [];
let at = hay.indexOf(needle[0]);
while (at !== -1 && at + needle.length <= hay.length) {
  let i = 1;
  while (i < needle.length && hay[at + i] === needle[i]) i++;
  if (i === needle.length) found.push(at);
  at = hay.indexOf(needle[0], at + 1);
}
return found;
"#;

fn get(object: &JsValue, key: &str) -> JsValue {
    Reflect::get(object, &key.into()).unwrap()
}

async fn resolve(promise: Promise) -> JsValue {
    JsFuture::from(promise).await.unwrap()
}

/// Where each secret is found in wasm memory: (name, offsets).
fn scan(needles: &[(&str, JsValue)]) -> Vec<(String, Vec<u32>)> {
    let scan = Function::new_with_args("memory, needle", SCAN);
    let memory = wasm_bindgen::memory();
    needles
        .iter()
        .map(|(name, needle)| {
            let offsets = scan.call2(&JsValue::NULL, &memory, needle).unwrap();
            let offsets: Vec<u32> =
                Array::from(&offsets).iter().map(|v| v.as_f64().unwrap() as u32).collect::<Vec<_>>();
            (name.to_string(), offsets)
        })
        .collect()
}

fn describe(found: &[(String, Vec<u32>)]) -> String {
    found
        .iter()
        .filter(|(_, at)| !at.is_empty())
        .map(|(name, at)| {
            let places: Vec<String> =
                at.iter().map(|o| format!("{o} ({})", if *o < 1 << 20 { "stack" } else { "heap/data" })).collect();
            format!("{name} at {}", places.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

async fn pause() {
    let promise = Promise::new(&mut |resolve, _| {
        let set_timeout: Function = get(&js_sys::global(), "setTimeout").unchecked_into();
        set_timeout.call2(&JsValue::NULL, &resolve, &JsValue::from(0)).unwrap();
    });
    resolve(promise).await;
}

#[wasm_bindgen_test]
async fn no_copy_of_the_password_or_the_keys_survives_logout_in_wasm_memory() {
    let id: [u8; 8] = tracker_offline_core::random::random_array(&tracker_offline::platform::WebRandom).unwrap();
    let database = format!("test-memory-{}", id.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let stand_in = Function::new_with_args("username", STAND_IN).call1(&JsValue::NULL, &"nurse1".into()).unwrap();
    let password: JsString = get(&stand_in, "password").unchecked_into();

    let options = Object::new();
    Reflect::set(&options, &"apiBase".into(), &API_BASE.into()).unwrap();
    Reflect::set(&options, &"database".into(), &database.as_str().into()).unwrap();
    Reflect::set(&options, &"pbkdf2Iterations".into(), &JsValue::from(1_000)).unwrap();
    let engine = Engine::open(options.into()).await.unwrap();
    let outcome = resolve(engine.login("nurse1".into(), password.clone())).await;
    assert_eq!(get(&outcome, "mode"), JsValue::from_str("online"));

    // Work that needs the Basic header built from the session's password: a raw write queued
    // and flushed, and a renewal of the browser's DHIS2 session.
    let plan = resolve(engine.plan_write(
        "PUT".into(),
        format!("{API_BASE}/userSettings/keyUiLocale"),
        "text/plain".into(),
        b"fr".to_vec(),
    ))
    .await;
    assert_eq!(get(&plan, "kind"), JsValue::from_str("send"), "online, nothing queued: sent");
    let prepared = PreparedRequest::try_from_js_value(get(&plan, "prepared")).unwrap();
    let captured = resolve(engine.capture_write(&prepared)).await;
    assert_eq!(get(&captured, "queued"), JsValue::TRUE);
    resolve(engine.flush(None, None)).await;
    assert_eq!(resolve(engine.renew_session()).await, JsValue::TRUE);
    let seen = Array::from(&get(&stand_in, "seen"));
    let authed: Vec<String> = seen
        .iter()
        .filter(|r| get(r, "basic") == JsValue::TRUE)
        .map(|r| format!("{} {}", get(&r, "method").as_string().unwrap(), get(&r, "path").as_string().unwrap()))
        .collect();
    assert!(
        authed.iter().any(|r| r == "PUT /api/userSettings/keyUiLocale"),
        "the flush sent the write with the Basic header: {authed:?}"
    );
    assert!(authed.iter().filter(|r| r.ends_with("/api/me")).count() >= 3, "login, session, renewal: {authed:?}");

    // The keys, from the stored register entry (WebCrypto, in JS).
    let store = IdbStore::open(&database).await.unwrap();
    let meta = VaultMeta::decode(&store.get(StoreName::Meta, VAULT_META_KEY).await.unwrap().unwrap()).unwrap();
    let users = store.list(StoreName::Users).await.unwrap();
    assert_eq!(users.len(), 1);
    let (user_key, entry) = &users[0];
    let entry = UserEntry::decode(entry).unwrap();
    let mut aad = b"tracker-offline\x01".to_vec();
    aad.extend_from_slice(format!("users|dek|{}|{}", meta.vault_id, user_key).as_bytes());
    let derive = Function::new_with_args(
        "password, salt, iterations, wrapped, aad",
        &format!("return (async () => {{ {DERIVE} }})();"),
    );
    let args = Array::of5(
        &password,
        &Uint8Array::from(entry.kdf.salt.0.as_slice()),
        &JsValue::from(entry.kdf.iterations),
        &Uint8Array::from(entry.wrapped_data_key.0.as_slice()),
        &Uint8Array::from(aad.as_slice()),
    );
    let keys = resolve(derive.apply(&JsValue::NULL, &args).unwrap().unchecked_into()).await;
    let needles = [
        ("password", get(&stand_in, "passwordBytes")),
        ("user:password", get(&stand_in, "plain")),
        ("base64(user:password)", get(&stand_in, "basic")),
        ("data key", get(&keys, "dataKey")),
        ("lookup key", get(&keys, "lookupKey")),
        ("key-encryption key", get(&keys, "kek")),
        ("PBKDF2 master secret", get(&keys, "master")),
    ];

    // The search works: while logged in, the session holds the password and the data key.
    let before = scan(&needles);
    for name in ["password", "data key"] {
        let hits = &before.iter().find(|(n, _)| n == name).unwrap().1;
        assert!(!hits.is_empty(), "{name} not found while logged in: the search or the derivation is wrong");
    }
    web_sys::console::log_1(&format!("while logged in: {}", describe(&before)).into());

    engine.logout();
    pause().await;
    let after = scan(&needles);
    let left = describe(&after);
    assert!(left.is_empty(), "after logout, still in wasm memory: {left}");
    drop(engine);
}
