#!/usr/bin/env bash
# Makes the offline-capable Tracker Capture: copies a Tracker Capture build folder to <out> and
# adds the tracker-offline package to it (building the package first if it is missing).
# Usage: scripts/configure-tracker-capture.sh <tracker-capture build> <out> [--package DIR|TGZ] [--config JSON]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [[ " $* " != *" --package "* && ! -f "$root/target/npm/package/package.json" ]]; then
  "$root/scripts/package.sh"
fi
exec node "$root/scripts/configure-tracker-capture.mjs" "$@"
