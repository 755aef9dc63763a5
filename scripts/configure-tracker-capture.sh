#!/usr/bin/env bash
# Makes the offline-capable Tracker Capture: copies a Tracker Capture build folder to <out> and
# adds the tracker-offline package to it (building the package first if it is missing).
# Usage: scripts/configure-tracker-capture.sh <tracker-capture build> [<out>] [--zip <app.zip>] [--package DIR|TGZ] [--config JSON]
#   --zip: also an app zip for DHIS2 App Management; it overrides the bundled Tracker Capture
#   (served at /dhis-web-tracker-capture/). See www/INTEGRATION.md and docs/deploy.md.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [[ " $* " != *" --package "* && ! -f "$root/target/npm/package/package.json" ]]; then
  "$root/scripts/package.sh"
fi
exec node "$root/scripts/configure-tracker-capture.mjs" "$@"
