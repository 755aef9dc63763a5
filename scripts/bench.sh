#!/usr/bin/env bash
# The benchmarks (issue 7): installs what is missing, builds the release wasm package and the
# release dhis2-sim, then runs every measurement side by side with its baseline in headless
# Chromium and writes bench/results.json and bench/scaling.svg (about 12 minutes on 2 cores), and
# the reconnect storm (R8) to bench/storm.json and bench/storm.svg.
# Usage: scripts/bench.sh [--sizes 5000,20000,50000] [--repeats N] [--flush-writes N] [--smoke]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-wasm.sh
cargo build --release -p dhis2-sim
# R8, the reconnect storm: 500 devices (50 with --smoke) released at once against one dhis2-sim
# process behind a limit of 16 requests in flight; bench/storm.json and bench/storm.svg.
cargo build --release -p tracker-offline-conformance --bin storm
devices=500
for arg in "$@"; do [ "$arg" = --smoke ] && devices=50; done
target/release/storm --sim target/release/dhis2-sim --devices "$devices" --max-inflight 16 \
  --out bench/storm.json --svg bench/storm.svg --check
export DHIS2_SIM_BIN="$PWD/target/release/dhis2-sim"
exec node tests/bench/run.mjs "$@"
