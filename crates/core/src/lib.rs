//! # tracker-offline-core
//!
//! The sans-I/O core of tracker-offline: every rule of the library lives here, with no web
//! crate. Storage, HTTP, password KDF and randomness come in through traits
//! ([`store::KvStore`], [`http::HttpClient`], [`kdf::PasswordKdf`], [`random::RandomSource`])
//! that `crates/web` implements for the browser and this crate implements in memory for tests.
//!
//! - [`crypto`]: keys, the versioned AES-256-GCM envelope, keyed hashes.
//! - [`vault`]: data key per server, user register, offline login, sealed records.
//! - [`engine`]: online-then-offline login and status, as the JS API exposes them.
//! - [`fetch_plan`]: what the service worker does with each request of the app;
//!   [`worker_protocol`]: the messages a page sends it.
//! - [`outbox`], [`flush`]: queued writes and how they reach the server; [`answer`]: which
//!   server answers count as evidence; [`merge`]: field-level change tracking and the three-way
//!   merge; [`conflicts`]: the conflict log and its resolution.

pub mod answer;
pub mod api_path;
pub mod backoff;
pub mod clinic;
pub mod clinic_copy;
pub mod conflicts;
pub mod crypto;
pub mod download;
pub mod download_page;
pub mod engine;
pub mod error;
pub mod error_hunt;
pub mod escrow;
pub mod family;
pub mod fast_hash;
pub mod fetch_plan;
pub mod fields;
pub mod flush;
pub mod flush_merge;
pub mod flush_requests;
pub mod http;
pub mod index;
pub mod index_snapshot;
pub mod kdf;
pub mod keypair;
pub mod local_answer;
pub mod manifest;
pub mod merge;
pub mod metadata;
pub mod metadata_answers;
pub mod outbox;
pub mod outbox_failures;
pub mod params;
pub mod profile;
pub mod query;
pub mod random;
pub mod read_cache;
pub mod read_shapes;
pub mod reads;
pub mod records;
pub mod register;
pub mod reserved;
pub mod scope;
pub mod server_contact;
pub mod store;
pub mod time;
pub mod uid;
pub mod vault;
pub mod worker_protocol;
pub mod write_answer;
pub mod write_effect;
pub mod writes;

pub use error::{CoreError, Result};
