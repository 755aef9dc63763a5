//! The vault and user register: online registration, offline login, lockout, credential age,
//! handover between users, sealed records, tampering and bad input.

#![allow(clippy::unwrap_used)]

mod support;

use futures::executor::block_on;
use support::*;
use tracker_offline_core::{
    kdf::PasswordKdf,
    random::OsRandom,
    store::{KvStore, MemoryStore, StoreName},
    vault::{LoginMode, LoginOutcome, Vault},
    CoreError, Result,
};

/// nurse1 (Amal) logs in online at `now_ms`: the server accepted her password.
async fn nurse1_online<K: PasswordKdf>(v: &Vault<MemoryStore, K, OsRandom>, now_ms: i64) {
    v.login_verified_online("nurse1", "Nurse1!clinic", profile("nurse1", "Amal"), now_ms).await.unwrap();
}

/// A vault over `store` in which nurse1 logged in online at T0: her session is open.
async fn nurse1_logged_in(store: &MemoryStore) -> TestVault {
    let v = vault(store);
    nurse1_online(&v, T0).await;
    v
}

/// A vault over `store` in which nurse1 logged in online at T0 and out again (locked).
async fn nurse1_registered(store: &MemoryStore) -> TestVault {
    let v = nurse1_logged_in(store).await;
    v.lock();
    v
}

/// A vault over `store` in which nurse1 and then nurse2 (Rania) logged in online at T0, locked.
async fn both_nurses_registered(store: &MemoryStore) -> TestVault {
    let v = nurse1_logged_in(store).await;
    v.login_verified_online("nurse2", "Nurse2!clinic", profile("nurse2", "Rania"), T0).await.unwrap();
    v.lock();
    v
}

/// nurse1 logs in offline at `now_ms` (refused: an error) with her password.
async fn nurse1_offline<K: PasswordKdf>(v: &Vault<MemoryStore, K, OsRandom>, now_ms: i64) -> Result<LoginOutcome> {
    v.login_offline("nurse1", "Nurse1!clinic", now_ms).await
}

/// nurse1 logs in offline at `now_ms`, which must work, and out again (the vault locked).
async fn nurse1_visits_offline<K: PasswordKdf>(v: &Vault<MemoryStore, K, OsRandom>, now_ms: i64) {
    nurse1_offline(v, now_ms).await.unwrap();
    v.lock();
}

#[test]
fn first_online_login_creates_vault_and_offline_login_returns_profile() {
    block_on(async {
        let store = MemoryStore::new();
        let v = vault(&store);
        let out =
            v.login_verified_online("nurse1", "Nurse1!clinic", profile("nurse1", "Amal Haddad"), T0).await.unwrap();
        assert_eq!(out.mode, LoginMode::Online);
        assert!(!out.handover);
        assert!(v.is_unlocked());
        v.lock();
        assert!(!v.is_unlocked());
        assert!(v.session_password().is_none());

        // A new process (fresh Vault over the same store) logs in offline.
        let v2 = vault(&store);
        let out = v2.login_offline("nurse1", "Nurse1!clinic", T0 + DAY).await.unwrap();
        assert_eq!(out.mode, LoginMode::Offline);
        assert_eq!(out.profile.display_name, "Amal Haddad");
        assert_eq!(out.profile.organisation_units[0].display_name.as_deref(), Some("Bani Naim Clinic"));
        assert_eq!(v2.session_password().as_deref().map(String::as_str), Some("Nurse1!clinic"));
    });
}

#[test]
fn offline_login_refuses_wrong_password_and_unknown_user() {
    block_on(async {
        let store = MemoryStore::new();
        let v = vault(&store);
        assert_eq!(v.login_offline("nurse1", "x", T0).await.unwrap_err().code(), "UNKNOWN_USER_OFFLINE");
        nurse1_online(&v, T0).await;
        v.lock();
        assert_eq!(v.login_offline("nurse1", "nurse1!clinic", T0).await.unwrap_err(), CoreError::BadCredentials);
        assert!(!v.is_unlocked());
        assert_eq!(v.login_offline("stranger", "whatever", T0).await.unwrap_err().code(), "UNKNOWN_USER_OFFLINE");
        assert_eq!(v.login_offline("Nurse1", "Nurse1!clinic", T0).await.unwrap_err().code(), "UNKNOWN_USER_OFFLINE");
    });
}

#[test]
fn lockout_engages_after_free_attempts_and_grows() {
    block_on(async {
        let store = MemoryStore::new();
        let v = nurse1_registered(&store).await;
        let policy = v.policy().clone();
        for _ in 0..policy.free_attempts - 1 {
            assert_eq!(v.login_offline("nurse1", "wrong", T0).await.unwrap_err(), CoreError::BadCredentials);
        }
        let err = v.login_offline("nurse1", "wrong", T0).await.unwrap_err();
        assert_eq!(err.retry_after_ms(), Some(policy.lockout_base_ms));
        // While locked out even the right password is not checked.
        let err = nurse1_offline(&v, T0 + 1000).await.unwrap_err();
        assert_eq!(err.code(), "LOCKED_OUT");
        assert_eq!(err.retry_after_ms(), Some(policy.lockout_base_ms - 1000));
        // After the delay, another failure doubles it.
        let t1 = T0 + policy.lockout_base_ms as i64;
        let err = v.login_offline("nurse1", "wrong", t1).await.unwrap_err();
        assert_eq!(err.retry_after_ms(), Some(policy.lockout_base_ms * 2));
        // The right password after the delay works and resets the counter.
        let t2 = t1 + 2 * policy.lockout_base_ms as i64;
        nurse1_visits_offline(&v, t2).await;
        assert_eq!(v.login_offline("nurse1", "wrong", t2).await.unwrap_err(), CoreError::BadCredentials);
    });
}

#[test]
fn lockout_delay_is_capped() {
    let policy = fast_policy();
    assert_eq!(policy.lockout_delay_ms(policy.free_attempts - 1), 0);
    assert_eq!(policy.lockout_delay_ms(policy.free_attempts + 1), policy.lockout_base_ms * 2);
    assert_eq!(policy.lockout_delay_ms(u32::MAX), policy.lockout_max_ms);
}

#[test]
fn credential_expires_after_max_offline_age_and_online_login_renews_it() {
    block_on(async {
        let store = MemoryStore::new();
        let v = nurse1_registered(&store).await;
        nurse1_visits_offline(&v, T0 + 29 * DAY).await;
        let err = nurse1_offline(&v, T0 + 31 * DAY).await.unwrap_err();
        assert_eq!(err, CoreError::CredentialExpired { age_days: 31 });
        assert!(!v.is_unlocked());
        // An expired credential is not a failed attempt.
        let err = nurse1_offline(&v, T0 + 31 * DAY).await.unwrap_err();
        assert_eq!(err.code(), "CREDENTIAL_EXPIRED");
        nurse1_online(&v, T0 + 31 * DAY).await;
        v.lock();
        nurse1_offline(&v, T0 + 32 * DAY).await.unwrap();
    });
}

#[test]
fn shift_change_hands_over_the_data_key_and_both_users_read_the_same_records() {
    block_on(async {
        let store = MemoryStore::new();
        let v = nurse1_logged_in(&store).await;
        v.put_record(StoreName::Records, "tei:PQfMcpmXeFE", br#"{"firstName":"Fatima"}"#).await.unwrap();
        let out = v.login_verified_online("nurse2", "Nurse2!clinic", profile("nurse2", "Rania"), T0).await.unwrap();
        assert!(out.handover);
        assert_eq!(v.session_info().unwrap().username, "nurse2");
        v.put_record(StoreName::Records, "tei:Zx9aX0nFCnP", br#"{"firstName":"Huda"}"#).await.unwrap();
        v.lock();

        let v = vault(&store);
        assert_eq!(v.get_record(StoreName::Records, "tei:PQfMcpmXeFE").await.unwrap_err(), CoreError::VaultLocked);
        v.login_offline("nurse2", "Nurse2!clinic", T0).await.unwrap();
        assert_eq!(
            v.get_record(StoreName::Records, "tei:PQfMcpmXeFE").await.unwrap().unwrap(),
            br#"{"firstName":"Fatima"}"#
        );
        v.lock();
        nurse1_offline(&v, T0).await.unwrap();
        assert_eq!(
            v.get_record(StoreName::Records, "tei:Zx9aX0nFCnP").await.unwrap().unwrap(),
            br#"{"firstName":"Huda"}"#
        );
        assert_eq!(v.registered_users().await.unwrap(), 2);
    });
}

#[test]
fn first_login_of_a_new_user_on_a_locked_vault_needs_handover_and_writes_nothing() {
    block_on(async {
        let store = MemoryStore::new();
        let v = nurse1_registered(&store).await;
        let before = dump(&store).await;
        let err = v.login_verified_online("nurse2", "Nurse2!clinic", profile("nurse2", "Rania"), T0).await.unwrap_err();
        assert_eq!(err.code(), "HANDOVER_REQUIRED");
        assert!(!v.is_unlocked());
        assert_eq!(dump(&store).await, before);
    });
}

#[test]
fn password_changed_on_server_rewraps_when_a_session_is_open() {
    block_on(async {
        let store = MemoryStore::new();
        let v = both_nurses_registered(&store).await;
        // Locked: the new password cannot unwrap the old wrapper.
        let err = v.login_verified_online("nurse1", "New-pass-1", profile("nurse1", "Amal"), T0).await.unwrap_err();
        assert_eq!(err.code(), "HANDOVER_REQUIRED");
        v.login_offline("nurse2", "Nurse2!clinic", T0).await.unwrap();
        v.login_verified_online("nurse1", "New-pass-1", profile("nurse1", "Amal"), T0).await.unwrap();
        v.lock();
        assert_eq!(nurse1_offline(&v, T0).await.unwrap_err(), CoreError::BadCredentials);
        v.login_offline("nurse1", "New-pass-1", T0).await.unwrap();
    });
}

#[test]
fn handed_over_key_unlocks_another_instance_and_a_wrong_key_is_refused() {
    block_on(async {
        let store = MemoryStore::new();
        let page = vault(&store);
        nurse1_online(&page, T0).await;
        page.put_record(StoreName::Cache, "GET /api/me", b"{}").await.unwrap();
        let key = page.export_data_key().unwrap();

        let worker = vault(&store);
        assert_eq!(worker.unlock_with_data_key("nurse1", &[7u8; 32], None).await.unwrap_err().code(), "BAD_INPUT");
        assert_eq!(worker.unlock_with_data_key("nurse1", &[7u8; 3], None).await.unwrap_err().code(), "BAD_INPUT");
        worker.unlock_with_data_key("nurse1", &key[..], None).await.unwrap();
        assert_eq!(worker.get_record(StoreName::Cache, "GET /api/me").await.unwrap().unwrap(), b"{}");
        assert!(worker.session_password().is_none());
        page.lock();
        assert_eq!(page.export_data_key().unwrap_err(), CoreError::VaultLocked);
    });
}

#[test]
fn tampered_or_swapped_records_are_reported_and_others_stay_readable() {
    block_on(async {
        let store = MemoryStore::new();
        let v = nurse1_logged_in(&store).await;
        for id in ["a", "b", "c"] {
            v.put_record(StoreName::Records, id, format!("record {id}").as_bytes()).await.unwrap();
        }
        let ka = v.record_storage_key(StoreName::Records, "a").unwrap();
        let kb = v.record_storage_key(StoreName::Records, "b").unwrap();
        let mut a = store.get(StoreName::Records, &ka).await.unwrap().unwrap();
        let b = store.get(StoreName::Records, &kb).await.unwrap().unwrap();
        // Swap: b's bytes under a's key.
        store.raw_put(StoreName::Records, &ka, b.clone()).unwrap();
        assert_eq!(v.get_record(StoreName::Records, "a").await.unwrap_err().code(), "STORAGE_CORRUPT");
        // One flipped byte.
        a[20] ^= 0x40;
        store.raw_put(StoreName::Records, &ka, a).unwrap();
        assert_eq!(v.get_record(StoreName::Records, "a").await.unwrap_err().code(), "STORAGE_CORRUPT");
        // Moved to another store.
        let kb_outbox = v.record_storage_key(StoreName::Outbox, "b").unwrap();
        store.raw_put(StoreName::Outbox, &kb_outbox, b).unwrap();
        assert_eq!(v.get_record(StoreName::Outbox, "b").await.unwrap_err().code(), "STORAGE_CORRUPT");
        assert_eq!(v.get_record(StoreName::Records, "b").await.unwrap().unwrap(), b"record b");
        assert_eq!(v.get_record(StoreName::Records, "c").await.unwrap().unwrap(), b"record c");
    });
}

#[test]
fn malformed_register_entries_give_errors_not_panics() {
    block_on(async {
        let store = MemoryStore::new();
        let v = both_nurses_registered(&store).await;
        let users = store.list(StoreName::Users).await.unwrap();
        // Damage one of the two entries in several ways; exactly one user stays able to log in.
        let garbage: [&[u8]; 5] = [
            b"",
            b"not json",
            br#"{"format":1}"#,
            br#"{"format":9,"kdf":{"algorithm":"x","iterations":1,"salt":""},"verifier":"","wrappedDataKey":"","sealedProfile":"","lastOnlineLoginMs":0,"failedAttempts":0,"lockedUntilMs":0}"#,
            &[0xff; 300],
        ];
        for bad in garbage {
            store.raw_put(StoreName::Users, &users[0].0, bad.to_vec()).unwrap();
            let r1 = nurse1_offline(&v, T0).await;
            v.lock();
            let r2 = v.login_offline("nurse2", "Nurse2!clinic", T0).await;
            v.lock();
            let codes: Vec<_> = [&r1, &r2].iter().map(|r| r.as_ref().err().map(|e| e.code())).collect();
            assert!(codes.contains(&Some("STORAGE_CORRUPT")) && codes.contains(&None), "{codes:?}");
        }
        // Iteration count lowered by an attacker: refused, not used.
        let mut entry: serde_json::Value = serde_json::from_slice(&users[1].1).unwrap();
        entry["kdf"]["iterations"] = 1.into();
        store.raw_put(StoreName::Users, &users[1].0, serde_json::to_vec(&entry).unwrap()).unwrap();
        let r1 = nurse1_offline(&v, T0).await;
        let r2 = v.login_offline("nurse2", "Nurse2!clinic", T0).await;
        assert!([r1, r2].iter().any(|r| r.as_ref().err().map(|e| e.code()) == Some("STORAGE_CORRUPT")));
        // Damaged metadata.
        store.raw_put(StoreName::Meta, "vault", b"{]".to_vec()).unwrap();
        assert_eq!(nurse1_offline(&v, T0).await.unwrap_err().code(), "STORAGE_CORRUPT");
    });
}

#[test]
fn bad_input_is_refused_before_any_write() {
    block_on(async {
        let store = MemoryStore::new();
        let v = vault(&store);
        let huge = "x".repeat(1_000_000);
        let cases = [
            ("", "pw"),
            ("  ", "pw"),
            ("nurse1", ""),
            (huge.as_str(), "pw"),
            ("nurse1", huge.as_str()),
            ("a:b", "pw"),
            ("a\nb", "pw"),
        ];
        for (u, p) in cases {
            let err = v.login_verified_online(u, p, profile("nurse1", "Amal"), T0).await.unwrap_err();
            assert_eq!(err.code(), "BAD_INPUT", "{:?}", &u[..u.len().min(10)]);
            assert_eq!(v.login_offline(u, p, T0).await.unwrap_err().code(), "BAD_INPUT");
        }
        assert!(dump(&store).await.is_empty());
        nurse1_online(&v, T0).await;
        assert_eq!(v.put_record(StoreName::Records, "", b"x").await.unwrap_err().code(), "BAD_INPUT");
        assert_eq!(v.put_record(StoreName::Users, "x", b"x").await.unwrap_err().code(), "BAD_INPUT");
        assert_eq!(v.put_record(StoreName::Records, &huge, b"x").await.unwrap_err().code(), "BAD_INPUT");
        // A non-ASCII password works.
        v.login_verified_online("nurse1", "كلمة-السر-١٢٣", profile("nurse1", "Amal"), T0).await.unwrap();
        v.lock();
        v.login_offline("nurse1", "كلمة-السر-١٢٣", T0).await.unwrap();
    });
}

#[test]
fn full_quota_fails_with_storage_full_and_keeps_the_vault_consistent() {
    block_on(async {
        // Room for the vault, its register entry and the sealed manifest (a 16 KiB root).
        let store = MemoryStore::with_quota(40_000);
        let v = nurse1_logged_in(&store).await;
        let before = dump(&store).await;
        let err = v.put_record(StoreName::Records, "big", &vec![0u8; 100_000]).await.unwrap_err();
        assert_eq!(err.code(), "STORAGE_FULL");
        assert_eq!(dump(&store).await, before);
        v.lock();
        nurse1_offline(&v, T0).await.unwrap();
    });
}

#[test]
fn nothing_sensitive_is_stored_in_clear() {
    block_on(async {
        let store = MemoryStore::new();
        let v = vault(&store);
        v.login_verified_online("nurse1", "Nurse1!clinic", profile("nurse1", "Amal Haddad"), T0).await.unwrap();
        v.login_verified_online("nurse2", "Nurse2!clinic", profile("nurse2", "Rania Khalil"), T0).await.unwrap();
        v.put_record(StoreName::Records, "PQfMcpmXeFE", b"Fatima Nasser 401234567").await.unwrap();
        v.lock();
        let raw = dump(&store).await;
        for needle in [
            "Nurse1!clinic",
            "Nurse2!clinic",
            "Amal Haddad",
            "Rania Khalil",
            "Bani Naim",
            "nurse1",
            "nurse2",
            "Fatima",
            "401234567",
            "PQfMcpmXeFE",
        ] {
            assert!(!contains(&raw, needle), "{needle} found in clear");
        }
    });
}

#[test]
fn default_policy_uses_600000_iterations() {
    block_on(async {
        let store = MemoryStore::new();
        let v = tracker_offline_core::vault::Vault::new(
            store.clone(),
            tracker_offline_core::kdf::RustPbkdf2,
            tracker_offline_core::random::OsRandom,
            Default::default(),
        );
        nurse1_online(&v, T0).await;
        let users = store.list(StoreName::Users).await.unwrap();
        let entry: serde_json::Value = serde_json::from_slice(&users[0].1).unwrap();
        assert_eq!(entry["kdf"]["iterations"], 600_000);
        assert_eq!(entry["kdf"]["salt"].as_str().unwrap().len(), 24, "16-byte salt in base64");
        v.lock();
        nurse1_offline(&v, T0).await.unwrap();
    });
}

/// Issue 13 item 7: the stored `lastOnlineLoginMs` is plain JSON; what bounds offline login is
/// the time sealed under the data key beside her profile, which nobody without a password
/// changes. An edited plain value extends nothing.
#[test]
fn an_edited_last_online_login_does_not_extend_offline_login() {
    block_on(async {
        let store = MemoryStore::new();
        let v = nurse1_registered(&store).await;
        let users = store.list(StoreName::Users).await.unwrap();
        let mut entry: serde_json::Value = serde_json::from_slice(&users[0].1).unwrap();
        entry["lastOnlineLoginMs"] = serde_json::json!(T0 + 40 * DAY);
        store.raw_put(StoreName::Users, &users[0].0, serde_json::to_vec(&entry).unwrap()).unwrap();
        let err = nurse1_offline(&v, T0 + 31 * DAY).await.unwrap_err();
        assert_eq!(err, CoreError::CredentialExpired { age_days: 31 });
    });
}

/// Issue 13 item 7: a device clock moved back (by hand, or a dead battery) must not give the
/// offline period back. Every offline login seals the latest time seen; a clock earlier than
/// that by more than an hour, or earlier than the last online login, counts as expired.
#[test]
fn a_clock_moved_back_counts_as_expired() {
    block_on(async {
        let store = MemoryStore::new();
        let v = nurse1_registered(&store).await;
        nurse1_visits_offline(&v, T0 + 29 * DAY).await;
        // Back to day 2 so that day 29 seems 27 days ago... refused.
        let err = nurse1_offline(&v, T0 + 2 * DAY).await.unwrap_err();
        assert_eq!(err.code(), "CREDENTIAL_EXPIRED");
        // A clock before her last online login: refused.
        let err = nurse1_offline(&v, T0 - DAY).await.unwrap_err();
        assert_eq!(err.code(), "CREDENTIAL_EXPIRED");
        // A small correction (a few minutes, as a network time sync makes) is fine.
        nurse1_visits_offline(&v, T0 + 29 * DAY - 10 * 60 * 1000).await;
        // An online login starts afresh, whatever the clock said before.
        nurse1_online(&v, T0 + 3 * DAY).await;
        v.lock();
        nurse1_offline(&v, T0 + 4 * DAY).await.unwrap();
    });
}

/// A full device still lets the next nurse log in offline: keeping the latest time seen is
/// best effort there (the e2e storage-full test found the login failing with STORAGE_FULL).
#[test]
fn offline_login_on_a_full_device_works_a_day_later() {
    block_on(async {
        let store = MemoryStore::new();
        nurse1_logged_in(&store).await;
        let full = store.full();
        let v = vault(&full);
        nurse1_offline(&v, T0).await.unwrap();
        assert_eq!(v.put_record(StoreName::Records, "r", b"x").await.unwrap_err().code(), "STORAGE_FULL");
        v.lock();
        nurse1_offline(&v, T0 + DAY).await.unwrap();
    });
}

/// A platform that opens many envelopes at once (as the browser's WebCrypto does), by the Rust
/// AES-GCM, counting the values it opened.
#[derive(Clone, Default)]
struct OpensAtOnce {
    opened: std::rc::Rc<std::cell::Cell<usize>>,
    sealed: std::rc::Rc<std::cell::Cell<usize>>,
}

impl tracker_offline_core::kdf::PasswordKdf for OpensAtOnce {
    async fn pbkdf2_sha256(
        &self,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> tracker_offline_core::Result<tracker_offline_core::crypto::SecretKey> {
        tracker_offline_core::kdf::RustPbkdf2.pbkdf2_sha256(password, salt, iterations).await
    }

    async fn open_many(
        &self,
        key: &tracker_offline_core::crypto::SecretKey,
        envelopes: &[tracker_offline_core::crypto::EnvelopeParts<'_>],
    ) -> Option<Vec<tracker_offline_core::Result<Vec<u8>>>> {
        self.opened.set(self.opened.get() + envelopes.len());
        Some(
            envelopes
                .iter()
                .map(|e| {
                    // Rebuild the envelope: version, nonce, ciphertext (the associated data as
                    // authenticated carries "tracker-offline" and the version before the caller's).
                    let mut envelope = vec![tracker_offline_core::crypto::ENVELOPE_VERSION];
                    envelope.extend_from_slice(e.nonce);
                    envelope.extend_from_slice(e.ciphertext);
                    key.open(&e.aad[tracker_offline_core::crypto::ENVELOPE_AAD_PREFIX_LEN..], &envelope)
                })
                .collect(),
        )
    }

    async fn seal_many(
        &self,
        key: &tracker_offline_core::crypto::SecretKey,
        inputs: &[tracker_offline_core::crypto::SealInput<'_>],
    ) -> Option<Vec<tracker_offline_core::Result<Vec<u8>>>> {
        self.sealed.set(self.sealed.get() + inputs.len());
        Some(
            inputs
                .iter()
                .map(|i| {
                    let aad = &i.aad[tracker_offline_core::crypto::ENVELOPE_AAD_PREFIX_LEN..];
                    // What follows the version and the nonce.
                    key.seal_with_nonce(i.nonce, aad, i.plaintext).map(|envelope| envelope[13..].to_vec())
                })
                .collect(),
        )
    }
}

impl OpensAtOnce {
    fn sealed_count(&self) -> usize {
        self.sealed.get()
    }
}

#[test]
fn many_values_are_sealed_and_opened_at_once_by_the_platform_with_the_same_answers_and_refusals() {
    block_on(async {
        let store = MemoryStore::new();
        let platform = OpensAtOnce::default();
        let v = tracker_offline_core::vault::Vault::new(
            store.clone(),
            platform.clone(),
            tracker_offline_core::random::OsRandom,
            fast_policy(),
        );
        nurse1_online(&v, T0).await;
        let ids: Vec<String> = (0..10).map(|i| format!("tei:{i}")).collect();
        // One batch of ten values: sealed together by the platform, at commit.
        let mut batch = tracker_offline_core::store::WriteBatch::new();
        for id in &ids {
            batch = v.seal_into(batch, StoreName::Records, id, format!("record {id}").as_bytes()).unwrap();
        }
        assert!(batch.has_unsealed(), "nothing is sealed before the commit");
        assert!(store.write(batch.clone()).await.is_err(), "a store refuses a batch not sealed");
        assert!(store.list(StoreName::Records).await.unwrap().is_empty());
        platform.sealed.set(0);
        v.commit(batch).await.unwrap();
        assert_eq!(platform.sealed_count(), 10, "the platform sealed the ten values");
        assert!(!contains(&dump(&store).await, "record tei"), "sealed, not plaintext");
        // A single value is sealed by the Rust AES-GCM (a platform call costs more).
        v.put_record(StoreName::Records, "tei:one", b"record tei:one").await.unwrap();
        assert_eq!(platform.sealed_count(), 10);
        // One damaged, one swapped for another's bytes.
        let k3 = v.record_storage_key(StoreName::Records, "tei:3").unwrap();
        let mut damaged = store.get(StoreName::Records, &k3).await.unwrap().unwrap();
        damaged[20] ^= 1;
        store.raw_put(StoreName::Records, &k3, damaged).unwrap();
        let k5 = v.record_storage_key(StoreName::Records, "tei:5").unwrap();
        let k6 = v.record_storage_key(StoreName::Records, "tei:6").unwrap();
        store.raw_put(StoreName::Records, &k5, store.get(StoreName::Records, &k6).await.unwrap().unwrap()).unwrap();

        // A new context: its first read of many values opens the manifest's shards at once too.
        v.lock();
        let v = tracker_offline_core::vault::Vault::new(
            store.clone(),
            platform.clone(),
            tracker_offline_core::random::OsRandom,
            fast_policy(),
        );
        nurse1_offline(&v, T0).await.unwrap();
        platform.opened.set(0);
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        assert_eq!(v.get_records(StoreName::Records, &refs).await.unwrap_err().code(), "STORAGE_CORRUPT");
        assert!(platform.opened.get() >= 10, "the platform opened them: {}", platform.opened.get());
        let good: Vec<&str> = refs.iter().copied().filter(|id| !["tei:3", "tei:5"].contains(id)).collect();
        let values = v.get_records(StoreName::Records, &good).await.unwrap();
        for (id, value) in good.iter().zip(values) {
            assert_eq!(value.unwrap(), format!("record {id}").into_bytes());
        }
        let all = v.open_all(StoreName::Records).await.unwrap();
        let refused: Vec<&str> = all.iter().filter(|(_, r)| r.is_err()).map(|(k, _)| k.as_str()).collect();
        let mut expected = vec![k3.as_str(), k5.as_str()];
        expected.sort();
        assert_eq!(refused, expected, "open_all refuses the damaged and the swapped value, opens the rest");
    });
}
