//! Removing a user from the device and rotating the data key (issue 13 item 7): what she kept
//! from before opens nothing written after; her colleagues keep their access, offline and
//! online, without anyone knowing their passwords; refusals write nothing.

#![allow(clippy::unwrap_used)]

mod support;

use std::{
    cell::{Cell, RefCell},
    rc::Rc,
};

use futures::{channel::oneshot, executor::block_on};
use support::*;
use tracker_offline_core::{
    kdf::RustPbkdf2,
    random::OsRandom,
    store::{KvStore, MemoryStore, StoreName, WriteBatch},
    vault::Vault,
    CoreError,
};

/// A copy of every byte of `store`, as someone who copied the browser profile holds it.
async fn copy_of(store: &MemoryStore) -> MemoryStore {
    let copy = MemoryStore::new();
    for name in StoreName::ALL {
        for (key, value) in store.list(name).await.unwrap() {
            copy.raw_put(name, &key, value).unwrap();
        }
    }
    copy
}

/// nurse1 creates the vault; nurse2 and nurse3 join by handover. nurse1 stays logged in.
async fn clinic_of_three(store: &MemoryStore) -> TestVault {
    let v = vault(store);
    v.login_verified_online("nurse1", "Nurse1!clinic", profile("nurse1", "Amal"), T0).await.unwrap();
    v.login_verified_online("nurse2", "Nurse2!clinic", profile("nurse2", "Huda"), T0).await.unwrap();
    v.login_verified_online("nurse3", "Nurse3!clinic", profile("nurse3", "Rana"), T0).await.unwrap();
    v.lock();
    v.login_offline("nurse1", "Nurse1!clinic", T0 + 1).await.unwrap();
    v.put_record(StoreName::Records, "tei:before", b"{\"name\":\"Maryam before\"}").await.unwrap();
    v
}

#[test]
fn what_a_removed_user_kept_opens_nothing_written_after_her_removal() {
    block_on(async {
        let store = MemoryStore::new();
        let v = clinic_of_three(&store).await;
        // She copies the storage on her last day, and can open it: she knows her password.
        let kept = copy_of(&store).await;
        let hers = vault(&kept);
        hers.login_offline("nurse3", "Nurse3!clinic", T0 + 2).await.unwrap();
        let old_key = hers.export_data_key().unwrap();

        let outcome = v.remove_user("nurse3").await.unwrap();
        assert_eq!((outcome.users_kept, outcome.users_to_log_in_online_again), (2, 0));
        assert_eq!(outcome.unreadable_values_dropped, 0);
        assert!(outcome.values_resealed >= 1);
        v.put_record(StoreName::Records, "tei:after", b"{\"name\":\"Layla after\"}").await.unwrap();
        // The session that removed her goes on reading both.
        assert!(v.get_record(StoreName::Records, "tei:before").await.unwrap().is_some());

        // Her old key opens neither the new record nor anything rewritten.
        let after_key = v.record_storage_key(StoreName::Records, "tei:after").unwrap();
        let after = store.get(StoreName::Records, &after_key).await.unwrap().unwrap();
        let old = tracker_offline_core::crypto::SecretKey::from_slice(&old_key[..]).unwrap();
        let aad = format!("records|{after_key}");
        assert!(old.open(aad.as_bytes(), &after).is_err(), "the old key opens a record written after the removal");
        let before_key = v.record_storage_key(StoreName::Records, "tei:before").unwrap();
        let before = store.get(StoreName::Records, &before_key).await.unwrap().unwrap();
        assert!(old.open(format!("records|{before_key}").as_bytes(), &before).is_err());
        // Handed to the vault as a key, it is refused.
        let other = vault(&store);
        assert!(other.unlock_with_data_key("nurse3", &old_key[..], None).await.is_err());
        // She is not in the register any more.
        assert_eq!(
            other.login_offline("nurse3", "Nurse3!clinic", T0 + 3).await.unwrap_err().code(),
            "UNKNOWN_USER_OFFLINE"
        );
        // Her old entry put back opens her old key, which opens nothing here.
        for (key, value) in kept.list(StoreName::Users).await.unwrap() {
            if store.get(StoreName::Users, &key).await.unwrap().is_none() {
                store.raw_put(StoreName::Users, &key, value).unwrap();
            }
        }
        let err = other.login_offline("nurse3", "Nurse3!clinic", T0 + 4).await.unwrap_err();
        assert!(!other.is_unlocked(), "her old entry put back let her in: {err}");
    });
}

#[test]
fn colleagues_keep_their_access_offline_and_online_after_a_removal() {
    block_on(async {
        let store = MemoryStore::new();
        let v = clinic_of_three(&store).await;
        v.remove_user("nurse3").await.unwrap();
        v.put_record(StoreName::Records, "tei:after", b"after").await.unwrap();
        v.lock();

        // nurse2 was away: her next login opens the new key with her private key, offline.
        let v2 = vault(&store);
        v2.login_offline("nurse2", "Nurse2!clinic", T0 + DAY).await.unwrap();
        assert_eq!(v2.get_record(StoreName::Records, "tei:after").await.unwrap().unwrap(), b"after");
        assert!(v2.get_record(StoreName::Records, "tei:before").await.unwrap().is_some());
        v2.lock();
        // Wrapped under her password again by that login: she logs in again, and so does nurse1.
        v2.login_offline("nurse2", "Nurse2!clinic", T0 + DAY + 1).await.unwrap();
        v2.lock();
        v2.login_offline("nurse1", "Nurse1!clinic", T0 + DAY + 2).await.unwrap();
        assert_eq!(v2.get_record(StoreName::Records, "tei:after").await.unwrap().unwrap(), b"after");
        v2.lock();
        // An online login opens it too (and joins no one by handover).
        let v3 = vault(&store);
        v3.lock();
        let out = v3.login_verified_online("nurse1", "Nurse1!clinic", profile("nurse1", "Amal"), T0 + DAY + 3).await;
        assert!(!out.unwrap().handover);
        assert_eq!(v3.get_record(StoreName::Records, "tei:after").await.unwrap().unwrap(), b"after");
        // A second rotation works from the first (the lookup key is carried over).
        v3.login_verified_online("nurse4", "Nurse4!clinic", profile("nurse4", "Sara"), T0 + DAY + 4).await.unwrap();
        v3.remove_user("nurse2").await.unwrap();
        assert_eq!(v3.get_record(StoreName::Records, "tei:after").await.unwrap().unwrap(), b"after");
        v3.lock();
        v3.login_offline("nurse1", "Nurse1!clinic", T0 + DAY + 5).await.unwrap();
        assert_eq!(
            v3.get_record(StoreName::Records, "tei:before").await.unwrap().unwrap(),
            b"{\"name\":\"Maryam before\"}"
        );
        assert_eq!(
            v3.login_offline("nurse2", "Nurse2!clinic", T0 + DAY + 6).await.unwrap_err().code(),
            "UNKNOWN_USER_OFFLINE"
        );
    });
}

#[test]
fn a_removal_refused_writes_nothing() {
    block_on(async {
        let store = MemoryStore::new();
        let v = clinic_of_three(&store).await;
        let before = dump(&store).await;
        assert_eq!(v.remove_user("nurse1").await.unwrap_err().code(), "BAD_INPUT");
        assert_eq!(v.remove_user("stranger").await.unwrap_err().code(), "UNKNOWN_USER_OFFLINE");
        v.lock();
        assert_eq!(v.remove_user("nurse3").await.unwrap_err(), CoreError::VaultLocked);
        assert_eq!(dump(&store).await, before);
        // On a full device nothing is written either, and everyone keeps the old key.
        let full = store.full();
        let on_full = vault(&full);
        on_full.login_offline("nurse1", "Nurse1!clinic", T0 + 2).await.unwrap();
        let before = dump(&store).await;
        assert_eq!(on_full.remove_user("nurse3").await.unwrap_err(), CoreError::StorageFull);
        assert_eq!(dump(&store).await, before);
        vault(&store).login_offline("nurse3", "Nurse3!clinic", T0 + 3).await.unwrap();
    });
}

#[test]
fn a_register_entry_edited_before_the_removal_loses_access_instead_of_taking_the_new_key() {
    block_on(async {
        let store = MemoryStore::new();
        let v = clinic_of_three(&store).await;
        // Someone swaps nurse2's public key for one of their own before the removal.
        let other = vault(&store);
        let users = store.list(StoreName::Users).await.unwrap();
        let nurse2_key = {
            // Her entry is the one whose edit stops her login.
            let mut found = None;
            for (key, value) in &users {
                let mut entry: serde_json::Value = serde_json::from_slice(value).unwrap();
                let edited = copy_of(&store).await;
                entry["publicKey"] = serde_json::json!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE=");
                edited.raw_put(StoreName::Users, key, serde_json::to_vec(&entry).unwrap()).unwrap();
                if vault(&edited).login_offline("nurse2", "Nurse2!clinic", T0 + 2).await.is_err() {
                    found = Some((key.clone(), entry));
                }
            }
            found.unwrap()
        };
        store.raw_put(StoreName::Users, &nurse2_key.0, serde_json::to_vec(&nurse2_key.1).unwrap()).unwrap();
        let outcome = v.remove_user("nurse3").await.unwrap();
        assert_eq!((outcome.users_kept, outcome.users_to_log_in_online_again), (1, 1));
        assert!(store.get(StoreName::Users, &nurse2_key.0).await.unwrap().is_none());
        assert_eq!(
            other.login_offline("nurse2", "Nurse2!clinic", T0 + 3).await.unwrap_err().code(),
            "UNKNOWN_USER_OFFLINE"
        );
    });
}

#[test]
fn a_context_still_holding_the_old_key_is_logged_out_and_an_old_escrowed_key_is_refused() {
    block_on(async {
        let store = MemoryStore::new();
        let v = clinic_of_three(&store).await;
        // A second context (a service worker) unlocked with the key before the removal.
        let worker = vault(&store);
        let key = v.export_data_key().unwrap();
        worker.unlock_with_data_key("nurse1", &key[..], None).await.unwrap();
        assert!(worker.get_record(StoreName::Records, "tei:before").await.unwrap().is_some());
        v.remove_user("nurse3").await.unwrap();
        assert_eq!(worker.put_record(StoreName::Records, "tei:x", b"x").await.unwrap_err(), CoreError::VaultLocked);
        assert!(!worker.is_unlocked());
        worker.unlock_with_data_key("nurse1", &key[..], None).await.unwrap_err();
        // What it tried to write is not there (under either key).
        v.get_record(StoreName::Records, "tei:x").await.unwrap().is_none().then_some(()).unwrap();
        // The server escrow still holds the old key: a first login through it is refused.
        let fresh = vault(&store);
        let old = tracker_offline_core::crypto::SecretKey::from_slice(&key[..]).unwrap();
        let err = fresh
            .login_verified_online_with("nurse5", "Nurse5!clinic", profile("nurse5", "Noor"), T0 + 5, Some(old))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "HANDOVER_REQUIRED");
        assert_eq!(
            fresh.login_offline("nurse5", "Nurse5!clinic", T0 + 6).await.unwrap_err().code(),
            "UNKNOWN_USER_OFFLINE"
        );
    });
}

/// A store whose next writes wait until the test lets them through, one at a time, so that a
/// write and a removal in the same context can be made to commit in either order.
#[derive(Clone, Default)]
struct HeldStore {
    inner: MemoryStore,
    /// How many of the next writes are held.
    to_hold: Rc<Cell<usize>>,
    /// The held writes, in the order they arrived, each waiting for its release.
    held: Rc<RefCell<Vec<oneshot::Sender<()>>>>,
}

impl HeldStore {
    fn hold_next_writes(&self, n: usize) {
        self.to_hold.set(n);
    }
    fn waiting(&self) -> usize {
        self.held.borrow().len()
    }
    /// Lets the `i`-th held write (in arrival order) go on.
    fn release(&self, i: usize) {
        let sender = std::mem::replace(&mut self.held.borrow_mut()[i], oneshot::channel().0);
        sender.send(()).unwrap();
    }
}

impl KvStore for HeldStore {
    async fn get(&self, store: StoreName, key: &str) -> tracker_offline_core::Result<Option<Vec<u8>>> {
        self.inner.get(store, key).await
    }
    async fn list(&self, store: StoreName) -> tracker_offline_core::Result<Vec<(String, Vec<u8>)>> {
        self.inner.list(store).await
    }
    async fn count(&self, store: StoreName) -> tracker_offline_core::Result<u64> {
        self.inner.count(store).await
    }
    async fn write(&self, batch: WriteBatch) -> tracker_offline_core::Result<()> {
        if self.to_hold.get() > 0 {
            self.to_hold.set(self.to_hold.get() - 1);
            let (sender, receiver) = oneshot::channel();
            self.held.borrow_mut().push(sender);
            receiver.await.unwrap();
        }
        self.inner.write(batch).await
    }
}

/// Waits (yielding to the other futures of the `join!`) until `n` writes are held.
async fn until_held(store: &HeldStore, n: usize) {
    while store.waiting() < n {
        yield_once().await;
    }
}

/// The clinic of three, on a store whose writes can be held; nurse1 logged in.
async fn held_clinic_of_three(store: &HeldStore) -> Vault<HeldStore, RustPbkdf2, OsRandom> {
    let v = Vault::new(store.clone(), RustPbkdf2, OsRandom, fast_policy());
    v.login_verified_online("nurse1", "Nurse1!clinic", profile("nurse1", "Amal"), T0).await.unwrap();
    v.login_verified_online("nurse2", "Nurse2!clinic", profile("nurse2", "Huda"), T0).await.unwrap();
    v.login_verified_online("nurse3", "Nurse3!clinic", profile("nurse3", "Rana"), T0).await.unwrap();
    v.lock();
    v.login_offline("nurse1", "Nurse1!clinic", T0 + 1).await.unwrap();
    v.put_record(StoreName::Records, "tei:before", b"before").await.unwrap();
    v
}

/// After everything, the vault opens for a colleague and holds what it should.
async fn vault_opens_with(store: &HeldStore, expected: &[(&str, Option<&[u8]>)]) {
    let fresh = vault(&store.inner);
    fresh.login_offline("nurse2", "Nurse2!clinic", T0 + DAY).await.unwrap();
    for (id, value) in expected {
        assert_eq!(fresh.get_record(StoreName::Records, id).await.unwrap().as_deref(), *value, "{id}");
    }
    assert_eq!(
        fresh.login_offline("nurse3", "Nurse3!clinic", T0 + DAY).await.unwrap_err().code(),
        "UNKNOWN_USER_OFFLINE"
    );
}

#[test]
fn a_write_waiting_to_commit_while_a_removal_commits_is_refused_and_the_vault_stays_whole() {
    block_on(async {
        let store = HeldStore::default();
        let v = held_clinic_of_three(&store).await;
        // The write is sealed under the old key and waits for its transaction; the removal
        // runs meanwhile and commits first.
        store.hold_next_writes(1);
        let (written, removed) =
            futures::future::join(v.put_record(StoreName::Records, "tei:during", b"during"), async {
                until_held(&store, 1).await;
                let removed = v.remove_user("nurse3").await;
                store.release(0);
                removed
            })
            .await;
        removed.unwrap();
        assert_eq!(written.unwrap_err(), CoreError::VaultLocked, "the write sealed under the old key");
        // The session goes on under the new key, and nothing of the refused write is stored.
        assert_eq!(v.get_record(StoreName::Records, "tei:before").await.unwrap().unwrap(), b"before");
        v.put_record(StoreName::Records, "tei:again", b"again").await.unwrap();
        vault_opens_with(
            &store,
            &[("tei:before", Some(b"before")), ("tei:during", None), ("tei:again", Some(b"again"))],
        )
        .await;
    });
}

#[test]
fn a_write_that_commits_while_a_removal_waits_to_commit_is_sealed_again_by_the_removal() {
    block_on(async {
        let store = HeldStore::default();
        let v = held_clinic_of_three(&store).await;
        // The removal has read and sealed everything again and waits for its transaction; a
        // write made meanwhile commits first, under the old key.
        store.hold_next_writes(1);
        let (removed, written) = futures::future::join(v.remove_user("nurse3"), async {
            until_held(&store, 1).await;
            let written = v.put_record(StoreName::Records, "tei:during", b"during").await;
            store.release(0);
            yield_once().await;
            written
        })
        .await;
        written.unwrap();
        removed.unwrap();
        assert_eq!(v.get_record(StoreName::Records, "tei:during").await.unwrap().unwrap(), b"during");
        vault_opens_with(&store, &[("tei:before", Some(b"before")), ("tei:during", Some(b"during"))]).await;
    });
}
