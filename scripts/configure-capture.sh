#!/usr/bin/env bash
# Makes the offline-capable Capture app (dhis2/capture-app, DHIS2 2.41+): copies a Capture build
# folder (its `build/app`) to <out> and adds the tracker-offline package to it, exactly as for
# Tracker Capture (one command does both: scripts/configure-tracker-capture.mjs); this name only
# checks that the build is a Capture build first.
# Usage: scripts/configure-capture.sh <capture build/app> [<out>] [--zip <capture.zip>] [--package DIR|TGZ] [--config JSON]
#   --zip: also an app zip for DHIS2 App Management under the Capture app's key (`capture`); it
#   overrides the bundled Capture app (served at /dhis-web-capture/). See www/INTEGRATION.md.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-}"
if [[ -z "$build" || "$build" == -* ]]; then
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
if ! grep -q '"short_name": *"capture"' "$build/manifest.webapp" 2>/dev/null; then
  echo "configure-capture: $build is not a Capture build (its manifest.webapp does not name the app 'capture'; use the build's build/app folder)" >&2
  exit 2
fi
exec "$root/scripts/configure-tracker-capture.sh" "$@"
