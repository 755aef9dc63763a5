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
        let profile: UserProfile =
            serde_json::from_str(r#"{"id":"xE7jOejl9FI","username":"nurse1","displayName":"Amal Haddad"}"#).unwrap();
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

/// A register entry written before key pairs (issue 13 item 7) still reads: it has no key pair
/// until her next login makes one.
#[test]
fn a_register_entry_from_before_key_pairs_still_reads() {
    let before = r#"{"failedAttempts":0,"format":1,"kdf":{"algorithm":"pbkdf2-hmac-sha256","iterations":1000,
        "salt":"bjmJv9q5Z1CJopb4uXRDHA=="},"lastOnlineLoginMs":1780000000000,"lockedUntilMs":0,
        "sealedProfile":"AUd5zumOg/GhWS3k8sMEpOLmC2Rg1bnQ1a/EfSZHUYK6b3KxmsJnhBf6unTqWojx1iLrGzWutE1tpLN/o+W8hWU=",
        "verifier":"sr8E02cBLjoytvLPlSMGAUn3j4JDb0xe8sLlEJorIjw=",
        "wrappedDataKey":"AY6bzUP3pLJXlTy8Kwgy2dru3mrUEnX4CJ/+wwdoRzIbEh+wf37nAedOYagZ0E6gT3Kcg2yxiwW3sdeM6w=="}"#;
    let entry = UserEntry::decode(before.as_bytes()).unwrap();
    assert_eq!((entry.public_key, entry.wrapped_private_key, entry.rotated_data_key), (None, None, None));
}

/// The sync formats (inside sealed values): a bundle with field changes, an outbox entry, a
/// conflict, a warning. A bundle written before fields were tracked (no `changes`) still reads.
#[test]
fn sync_formats_are_stable() {
    use serde_json::json;
    use tracker_offline_core::{
        merge::{Conflict, ConflictSource, FieldChange},
        outbox::{EntryPayload, EntryState, Failure, OutboxEntry, Severity},
        records::{SyncState, TeiBundle},
        write_effect::Touch,
        writes::Family,
    };
    let mut bundle = TeiBundle::from_nested(
        json!({"trackedEntityInstance": "PQfMcpmXeFE", "orgUnit": "OuBaniNaim1", "enrollments": [
            {"enrollment": "EnMch000001", "program": "PrMchProg01", "events": [
                {"event": "EvAnc000001", "status": "ACTIVE", "dataValues": [{"dataElement": "DeWeightKg1", "value": "61.5"}]}]}]})
        .as_object()
        .cloned()
        .unwrap(),
    )
    .unwrap();
    bundle.sync.insert("EvAnc000001".into(), SyncState::ToUpdate);
    bundle.changes.insert(
        "EvAnc000001".into(),
        [("dv:DeWeightKg1".to_string(), FieldChange::new(json!("60"), json!("61.5")))].into(),
    );
    insta::assert_snapshot!("bundle_with_changes", serde_json::to_string_pretty(&bundle).unwrap());
    let before: TeiBundle = serde_json::from_str(
        r#"{"tei":{"trackedEntityInstance":"PQfMcpmXeFE"},"enrollments":[],"events":[],"sync":{"PQfMcpmXeFE":"TO_UPDATE"},"ordinal":3}"#,
    )
    .unwrap();
    assert!(before.changes.is_empty(), "an older bundle reads, with no field record (sent whole once)");

    let entry = OutboxEntry {
        seq: 1_780_000_000_000_000,
        author: "nurse1".into(),
        created_at_ms: 1_780_000_000_000,
        summary: "PUT /api/events/EvAnc000001/DeWeightKg1".into(),
        family: Family::Legacy,
        payload: EntryPayload::Touches {
            touches: vec![Touch {
                kind: tracker_offline_core::family::Kind::Event,
                uid: "EvAnc000001".into(),
                tei: "PQfMcpmXeFE".into(),
                deleted: false,
            }],
        },
        state: EntryState::Pending,
        attempts: 0,
    };
    insta::assert_snapshot!("outbox_entry", serde_json::to_string_pretty(&entry).unwrap());

    let conflict = Conflict {
        id: "conflict:EvAnc000001:dv:DeBpSystol1:1780000000000".into(),
        kind: tracker_offline_core::family::Kind::Event,
        record: "EvAnc000001".into(),
        tei: "PQfMcpmXeFE".into(),
        field: "dv:DeBpSystol1".into(),
        base: json!("110"),
        server: json!("130"),
        device: json!("125"),
        author: "nurse1".into(),
        changed_at_ms: 1_780_000_000_000,
        found_at_ms: 1_780_000_100_000,
        server_updated: Some("2026-05-28T20:30:00.000".into()),
        held: false,
        source: ConflictSource::Server,
    };
    insta::assert_snapshot!("conflict", serde_json::to_string_pretty(&conflict).unwrap());
    // A log written before conflicts had a source: they were all the server's.
    let mut older = serde_json::to_value(&conflict).unwrap();
    older.as_object_mut().unwrap().remove("source");
    assert_eq!(serde_json::from_value::<Conflict>(older).unwrap(), conflict);

    let warning = Failure {
        id: "warning:00001780000000000000".into(),
        author: "nurse1".into(),
        summary: "POST /api/tracker".into(),
        records: vec!["EvAnc000001".into()],
        reasons: vec!["EvAnc000001: E1017: Attribute value ignored".into()],
        created_at_ms: 1_780_000_000_000,
        failed_at_ms: 1_780_000_100_000,
        severity: Severity::Warning,
        change: None,
    };
    // A warning kept before changes were described: written and read as it was.
    insta::assert_snapshot!("sync_warning", serde_json::to_string_pretty(&warning).unwrap());
    let described = Failure {
        change: Some(tracker_offline_core::writes::Change {
            kind: tracker_offline_core::writes::ChangeKind::Event,
            action: tracker_offline_core::writes::ChangeAction::Save,
            record: Some("EvAnc000001".into()),
            data_element: None,
        }),
        ..warning
    };
    insta::assert_snapshot!("sync_warning_with_change", serde_json::to_string_pretty(&described).unwrap());
}

#[test]
fn clinic_copy_and_queue_formats_are_stable() {
    use serde_json::json;
    use tracker_offline_core::{
        index::IndexRow,
        metadata::{AttributeInfo, ClinicMetadata, OrgUnitInfo, ProgramInfo},
        outbox::{EntryPayload, EntryState, OutboxEntry},
        records::TeiBundle,
        register::Bytes,
        writes::Family,
    };
    let bundle = TeiBundle::from_nested(
        json!({"trackedEntityInstance": "PQfMcpmXeFE", "trackedEntityType": "TetPerson01", "orgUnit": "OuBaniNaim1",
            "created": "2026-11-30T09:00:00.000", "lastUpdated": "2026-12-01T10:30:00.000",
            "attributes": [{"attribute": "AtFirstNam1", "value": "فاطمة"}, {"attribute": "AtNationId1", "value": "401234567"}],
            "enrollments": [{"enrollment": "EnMch000001", "program": "PrMchProg01", "status": "ACTIVE", "orgUnit": "OuBaniNaim1",
                "enrollmentDate": "2026-11-30T00:00:00.000", "followup": true,
                "events": [{"event": "EvAnc000001", "status": "ACTIVE"}]}]})
        .as_object()
        .cloned()
        .unwrap(),
    )
    .unwrap();
    insta::assert_snapshot!("index_row", serde_json::to_string_pretty(&IndexRow::of(&bundle)).unwrap());

    let metadata = ClinicMetadata {
        server_version: "2.41.3".into(),
        org_units: [(
            "OuBaniNaim1".to_string(),
            OrgUnitInfo {
                id: "OuBaniNaim1".into(),
                path: "/OuPalestin1/OuHebronDi1/OuBaniNaim1".into(),
                display_name: "Bani Naim Clinic".into(),
            },
        )]
        .into(),
        programs: vec![ProgramInfo {
            id: "PrMchProg01".into(),
            display_name: "MCH".into(),
            tracked_entity_type: "TetPerson01".into(),
            attributes: vec![AttributeInfo {
                id: "AtFirstNam1".into(),
                display_name: "First name".into(),
                value_type: "TEXT".into(),
                display_in_list: true,
                generated: false,
            }],
        }],
        capture_org_units: vec!["OuBaniNaim1".into()],
        search_org_units: vec![],
    };
    insta::assert_snapshot!("clinic_metadata", serde_json::to_string_pretty(&metadata).unwrap());

    // A write the core could not apply locally is queued raw; refused, it is kept with the reasons.
    let raw = OutboxEntry {
        seq: 1_780_000_000_000_001,
        author: "nurse2".into(),
        created_at_ms: 1_780_000_000_000,
        summary: "PUT /api/userSettings/keyUiLocale".into(),
        family: Family::Legacy,
        payload: EntryPayload::Raw {
            method: "PUT".into(),
            url: "/api/userSettings/keyUiLocale".into(),
            content_type: "text/plain".into(),
            body: Bytes(b"ar".to_vec()),
        },
        state: EntryState::Failed { reasons: vec!["Not allowed (HTTP 403)".into()], at_ms: 1_780_000_100_000 },
        attempts: 2,
    };
    insta::assert_snapshot!("raw_failed_outbox_entry", serde_json::to_string_pretty(&raw).unwrap());
}
