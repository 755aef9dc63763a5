//! Snapshot tests of every persisted format. A change here means every device in the field
//! holds data this build can no longer read: bump the format and write a migration instead.

#![allow(clippy::unwrap_used)]

use futures::executor::block_on;
use tracker_offline_core::{
    kdf::RustPbkdf2,
    profile::UserProfile,
    random::DeterministicRandom,
    register::{UserEntry, VaultMeta},
    store::{KvStore, MemoryStore, StoreName},
    vault::{Vault, VaultPolicy},
};

fn pretty(bytes: &[u8]) -> String {
    serde_json::to_string_pretty(&serde_json::from_slice::<serde_json::Value>(bytes).unwrap()).unwrap()
}

#[test]
fn register_formats_are_stable() {
    block_on(async {
        let store = MemoryStore::new();
        let policy = VaultPolicy { iterations: 1_000, ..VaultPolicy::default() };
        let v = Vault::new(store.clone(), RustPbkdf2, DeterministicRandom::new(42), policy);
        let profile = UserProfile {
            id: "xE7jOejl9FI".into(),
            username: "nurse1".into(),
            display_name: "Amal Haddad".into(),
            organisation_units: vec![],
            tei_search_organisation_units: vec![],
            authorities: vec![],
        };
        v.login_verified_online("nurse1", "Nurse1!clinic", profile, 1_780_000_000_000).await.unwrap();
        v.put_record(StoreName::Records, "tei:PQfMcpmXeFE", b"{}").await.unwrap();

        let meta = store.get(StoreName::Meta, "vault").await.unwrap().unwrap();
        VaultMeta::decode(&meta).unwrap();
        insta::assert_snapshot!("vault_meta", pretty(&meta));

        let users = store.list(StoreName::Users).await.unwrap();
        assert_eq!(users.len(), 1);
        UserEntry::decode(&users[0].1).unwrap();
        insta::assert_snapshot!("user_entry", format!("key: {}\n{}", users[0].0, pretty(&users[0].1)));

        let records = store.list(StoreName::Records).await.unwrap();
        insta::assert_snapshot!(
            "sealed_record",
            format!("key: {}\nvalue: {}", records[0].0, hex::encode(&records[0].1))
        );
    });
}
