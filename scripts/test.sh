#!/usr/bin/env bash
# The one test command: installs what is missing, then runs formatting and lint checks (native
# and wasm32), native tests, wasm tests in headless Chromium (page and service worker), and the
# end-to-end tests (Playwright driving Debian's chromium against a real dhis2-sim process).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
# Each step says how long the run has taken so far, so CI logs show where the time goes.
step() { printf '\n\033[1;32m==> [%dm%02ds] %s\033[0m\n' $(((SECONDS - started) / 60)) $(((SECONDS - started) % 60)) "$*"; }

step "setup"
scripts/setup.sh

step "rustfmt"
cargo fmt --all -- --check

step "clippy (native)"
cargo clippy --workspace --all-targets -- -D warnings
step "clippy (wasm32)"
cargo clippy -p tracker-offline-core --target wasm32-unknown-unknown --lib -- -D warnings
cargo clippy -p tracker-offline --target wasm32-unknown-unknown --all-targets -- -D warnings

step "native tests"
cargo test --workspace --exclude tracker-offline

step "wasm tests in headless Chromium (page and service worker)"
export WASM_BINDGEN_TEST_WEBDRIVER_JSON="$PWD/crates/web/webdriver.json"
cargo test -p tracker-offline --target wasm32-unknown-unknown

step "build the wasm package and dhis2-sim"
scripts/build-wasm.sh
cargo build -p dhis2-sim

step "reconnect storm, small (R8: 50 devices of the real core against a dhis2-sim process behind an overload limit; correctness only)"
cargo run -q -p tracker-offline-conformance --bin storm -- --sim target/debug/dhis2-sim --devices 50 --max-inflight 4 --check

step "npm package (scripts/package.sh; declarations checked by a strict tsc consumer)"
node --test tests/package/

step "end-to-end tests (Playwright + chromium + dhis2-sim)"
node --test --test-concurrency=1 --test-timeout=180000 tests/e2e/

step "benchmark smoke (tiny sizes: every measurement taken, no timing asserted)"
node tests/bench/run.mjs --smoke

step "all tests passed"
