//! # tracker-offline (wasm)
//!
//! The browser face of tracker-offline. This crate contains no domain rule: it implements the
//! core's platform traits for the browser ([`idb::IdbStore`] on IndexedDB, [`platform`] for
//! fetch, WebCrypto and randomness) and binds the core's engine to JavaScript ([`api`]).
//! Nothing here touches `window`, so the same package runs in the page and in the service
//! worker.

pub mod api;
pub mod error;
pub mod idb;
pub mod platform;
