//! Test-only crate: see `tests/`. It compares the core's offline answers with dhis2-sim's online answers.
