//! Test-only crate: see `tests/`. It compares the core's offline answers with dhis2-sim's online
//! answers, and drives real core engines against a real dhis2-sim process ([`live`]).

pub mod live;
