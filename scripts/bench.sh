#!/usr/bin/env bash
# The benchmarks (issue 7): installs what is missing, builds the release wasm package and the
# release dhis2-sim, then runs every measurement side by side with its baseline in headless
# Chromium and writes bench/results.json and bench/scaling.svg (about 12 minutes on 2 cores).
# Usage: scripts/bench.sh [--sizes 5000,20000,50000] [--repeats N] [--flush-writes N] [--smoke]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-wasm.sh
cargo build --release -p dhis2-sim
export DHIS2_SIM_BIN="$PWD/target/release/dhis2-sim"
exec node tests/bench/run.mjs "$@"
