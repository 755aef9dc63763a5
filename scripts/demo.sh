#!/usr/bin/env bash
# The demo: installs what is missing, builds the optimised wasm package, and starts dhis2-sim
# with the demo seed (data kept in .sim-data/) serving www/, with the clinic app at /demo/.
# Ctrl-C stops it.
# Usage: scripts/demo.sh [--port 8080] [--faults] [--tracker-capture BUILD] [any other dhis2-sim flag]
#   --faults  turns on the sim's fault injection: the demo app then shows a "Server down (demo)"
#             switch that makes the server drop every /api request (and undo it).
#   --tracker-capture BUILD  also serves the real Tracker Capture, configured with this library
#             (scripts/configure-tracker-capture.sh on a build of it; www/INTEGRATION.md says how
#             to make one), at /tracker-capture/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-wasm.sh
cargo build --release -p dhis2-sim
port=8080
faults=no
tc_build=""
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port="$2"; shift 2 ;;
    --port=*) port="${1#--port=}"; shift ;;
    --faults|--faults-file|--faults-file=*) faults=yes; args+=("$1"); shift ;;
    --tracker-capture) tc_build="$2"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
tc_line=""
if [ -n "$tc_build" ]; then
  scripts/package.sh --no-build >/dev/null
  node scripts/configure-tracker-capture.mjs "$tc_build" .sim-data/tracker-capture --package target/npm/package
  args+=(--app "tracker-capture=.sim-data/tracker-capture")
  tc_line="  Tracker Capture, offline-capable:  http://127.0.0.1:$port/tracker-capture/"
fi
if [ "$faults" = yes ]; then
  outage="tick \"Server down (demo)\" in the app's header (and untick it to come back),
               or press Ctrl-C here (the data stays in .sim-data/) and run this again."
else
  outage="press Ctrl-C here (the data stays in .sim-data/), then run this again.
               Run with --faults to get the app's \"Server down (demo)\" switch instead."
fi
cat <<TXT

  tracker-offline demo clinic app:  http://127.0.0.1:$port/demo/
  (the library's bare login page:   http://127.0.0.1:$port/)
$tc_line
  Demo users:  nurse1 / Nurse1!clinic   nurse2 / Nurse2!clinic   (Bani Naim Clinic)
               admin / district          (superuser)
  Log in online once as each nurse (the second one while the first is logged in: "Switch
  user"), so that both can log in offline later.
  Simulate an outage: $outage

TXT
exec target/release/dhis2-sim --port "$port" --data .sim-data --seed demo --www www "${args[@]}"
