//! The tracker data model: tracked entities (TEIs), enrollments, events, data values and notes
//! in SQLite, the user's org unit scope, and the legacy import and query logic the
//! `/api/trackedEntityInstances`, `/api/enrollments` and `/api/events` endpoints share.

pub mod bundle;
pub mod dates;
pub mod effects;
pub mod import;
pub mod persist;
pub mod query;
pub mod reserved;
pub mod scope;
pub mod store;
pub mod summary;
pub mod validate;
