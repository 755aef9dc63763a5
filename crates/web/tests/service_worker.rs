//! The browser suite in a service-worker context (no `window`).
#![cfg(target_arch = "wasm32")]

mod suite;

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_service_worker);

browser_suite!(
    idb_store_conformance,
    idb_store_reopens_with_data,
    data_stored_by_one_user_is_readable_by_another_and_not_without_login,
    tampered_and_swapped_records_are_detected_on_idb,
    removing_a_user_rotates_the_key_on_idb,
    webcrypto_pbkdf2_equals_rust_pbkdf2,
    webcrypto_open_many_equals_rust_open,
    webcrypto_seal_many_equals_rust_seal,
    bulk_open_timings_side_by_side,
    random_source_works_here,
);
