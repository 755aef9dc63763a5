#!/usr/bin/env bash
# The demo: installs what is missing, builds the optimised wasm package, and starts dhis2-sim
# with the demo seed (data kept in .sim-data/) serving www/. Ctrl-C stops it.
# Usage: scripts/demo.sh [--port 8080] [any other dhis2-sim flag]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-wasm.sh
cargo build --release -p dhis2-sim
port=8080
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port="$2"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
cat <<TXT

  tracker-offline demo on http://127.0.0.1:$port/
  Demo users:  nurse1 / Nurse1!clinic   nurse2 / Nurse2!clinic   (Bani Naim Clinic)
               admin / district          (superuser)
  Simulate an outage: press Ctrl-C here (the data stays in .sim-data/), then run this again.

TXT
exec target/release/dhis2-sim --port "$port" --data .sim-data --seed demo --www www "${args[@]}"
