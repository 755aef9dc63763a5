//! Server escrow of the data key against dhis2-sim's dataStore and sharing: a colleague's
//! first login on a device whose vault is locked joins it through the escrow; a user the
//! entry is not shared with cannot; servers without dataStore read sharing are refused. And
//! escrow cut short (issue 13, item 4): the answer to a write of the escrow is lost after the
//! sim applied it (between the entry's creation and its sharing, or after the sharing);
//! nothing the sim keeps may hold the data key where others can read it, and enabling again
//! once the network is back works.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/mod.rs"]
mod support;

use support::*;
use tracker_offline_core::{
    engine::{Engine, EngineConfig},
    escrow::EscrowSharing,
    kdf::RustPbkdf2,
    random::OsRandom,
    store::{MemoryStore, StoreName},
    vault::VaultPolicy,
};

fn engine<'a>(server: &'a InProcess, store: &MemoryStore) -> TestEngine<'a> {
    let policy = VaultPolicy { iterations: 1_000, ..VaultPolicy::default() };
    Engine::new(EngineConfig::new(BASE, policy).unwrap(), store.clone(), RustPbkdf2, OsRandom, server)
}

fn nurses() -> EscrowSharing {
    EscrowSharing { users: vec!["UsNurse0001".into(), "UsNurse0002".into()], user_groups: vec![] }
}

#[tokio::test(flavor = "current_thread")]
async fn a_first_login_on_a_locked_device_joins_through_the_escrow() {
    let dir = tempfile::tempdir().unwrap();
    let server = sim("2.40.3", dir.path(), 0);
    let store = MemoryStore::new();
    let e = engine(&server, &store);
    e.login("nurse1", "Nurse1!clinic", NOW).await.unwrap();
    e.vault().put_record(StoreName::Records, "tei:PQfMcpmXeFE", b"Fatima").await.unwrap();
    e.enable_escrow(&nurses()).await.unwrap();
    e.logout();

    // midwife1 is not in the sharing: the sim answers 403 and the first login stays refused.
    let err = e.login("midwife1", "Midwife1!district", NOW).await.unwrap_err();
    assert_eq!(err.code(), "HANDOVER_REQUIRED");
    assert_eq!(e.vault().registered_users().await.unwrap(), 1);

    let out = e.login("nurse2", "Nurse2!clinic", NOW).await.unwrap();
    assert!(out.handover);
    assert_eq!(e.vault().get_record(StoreName::Records, "tei:PQfMcpmXeFE").await.unwrap().unwrap(), b"Fatima");
    e.logout();
    // Registered now: offline login works for her.
    server.set_down(true);
    e.login("nurse2", "Nurse2!clinic", NOW).await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn escrow_is_refused_where_the_datastore_does_not_enforce_read_sharing() {
    let dir = tempfile::tempdir().unwrap();
    let server = sim("2.40.0", dir.path(), 0);
    let store = MemoryStore::new();
    let e = engine(&server, &store);
    e.login("nurse1", "Nurse1!clinic", NOW).await.unwrap();
    assert_eq!(e.enable_escrow(&nurses()).await.unwrap_err().code(), "ESCROW_UNSAFE");
    let (status, _) = get(&server, "/api/dataStore/tracker-offline-escrow").await;
    assert_eq!(status, 404, "nothing was stored");
    assert_eq!(e.enable_escrow(&EscrowSharing::default()).await.unwrap_err().code(), "BAD_INPUT");
}

#[tokio::test(flavor = "current_thread")]
async fn an_escrow_whose_answers_are_lost_leaves_no_readable_key() {
    for lost in ["/api/dataStore/tracker-offline-escrow", "/api/sharing"] {
        let dir = tempfile::tempdir().unwrap();
        let server = sim("2.41.0", dir.path(), 0);
        let store = MemoryStore::new();
        let e = engine(&server, &store);
        e.login("nurse1", "Nurse1!clinic", NOW).await.unwrap();
        e.vault().put_record(StoreName::Records, "tei:PQfMcpmXeFE", b"Fatima").await.unwrap();
        let entry =
            format!("/api/dataStore/tracker-offline-escrow/vault-{}", e.vault().vault_id().await.unwrap().unwrap());

        server.drop_write_answers_on(Some(lost));
        assert!(e.enable_escrow(&nurses()).await.is_err(), "{lost}");
        server.drop_write_answers_on(None);
        // The entry was deleted (the network still carried the DELETE).
        let (status, left) = get(&server, &entry).await;
        assert_eq!(status, 404, "{lost}: the sim still holds {left}");

        // Back to normal: escrow works, private to the two nurses.
        e.enable_escrow(&nurses()).await.unwrap();
        let (status, meta) = get(&server, &format!("{entry}/metaData")).await;
        assert_eq!(status, 200);
        assert_eq!(meta["sharing"]["public"], "--------", "{meta}");
        assert_eq!(get(&server, &entry).await.1["dataKey"].as_str().map(str::len), Some(44));
        e.logout();
        let err = e.login("midwife1", "Midwife1!district", NOW).await.unwrap_err();
        assert_eq!(err.code(), "HANDOVER_REQUIRED");
        let out = e.login("nurse2", "Nurse2!clinic", NOW).await.unwrap();
        assert!(out.handover, "{lost}");
        assert_eq!(e.vault().get_record(StoreName::Records, "tei:PQfMcpmXeFE").await.unwrap().unwrap(), b"Fatima");
        e.logout();
        // nurse2's own online login re-enables nothing she does not own, and breaks nothing.
        e.login("nurse2", "Nurse2!clinic", NOW).await.unwrap();
        assert!(e.enable_escrow(&nurses()).await.is_err());
        assert_eq!(get(&server, &entry).await.0, 200, "{lost}: nurse1's escrow stays");
    }
}
