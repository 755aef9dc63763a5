#!/usr/bin/env bash
# Builds the npm package integrators install: the wasm build (www/pkg) plus the JS face
# (tracker-offline.js and its TypeScript declarations, sw.js, tracker-capture/, ui/), versioned as
# the Cargo workspace. Writes target/npm/package/ and packs it into
# target/npm/tracker-offline-<version>.tgz (no network needed).
# Usage: scripts/package.sh [--no-build]   (--no-build: reuse www/pkg when it is there)
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
for arg in "$@"; do
  case "$arg" in
    --no-build) build=0 ;;
    -h | --help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "package.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

if [ "$build" = 1 ] || [ ! -f www/pkg/tracker_offline_bg.wasm ]; then
  scripts/build-wasm.sh
fi

# The version of [workspace.package] in the root Cargo.toml.
version=$(awk '
  /^\[/ { section = $0; next }
  section == "[workspace.package]" && $1 == "version" { gsub(/"/, "", $3); print $3; exit }
' Cargo.toml)
if [ -z "$version" ]; then
  echo "package.sh: no version under [workspace.package] in Cargo.toml" >&2
  exit 1
fi

out=target/npm
stage=$out/package
rm -rf "$stage"
rm -f "$out"/tracker-offline-*.tgz
mkdir -p "$stage/pkg"

cp www/tracker-offline.js www/tracker-offline.d.ts www/sw.js "$stage/"
# The worker says which version it is (and so differs from every other release's byte for byte);
# The page registers it under a URL with that version (a newer release installs at once).
for f in sw.js tracker-offline.js; do
  sed -i "s/^const LIBRARY_VERSION = 'dev';\$/const LIBRARY_VERSION = '$version';/" "$stage/$f"
  grep -q "^const LIBRARY_VERSION = '$version';\$" "$stage/$f" || { echo "package.sh: could not stamp the version into $f" >&2; exit 1; }
done
for f in tracker_offline.js tracker_offline_worker.js tracker_offline.d.ts tracker_offline_bg.wasm tracker_offline_bg.wasm.d.ts; do
  cp "www/pkg/$f" "$stage/pkg/"
done
if [ -d www/tracker-capture ]; then
  # Everything of the loader and of the screens it shares with the demo (ui/), except dotfiles,
  # tests and source maps.
  (cd www && find tracker-capture ui -type f ! -name '.*' ! -name '*.test.*' ! -name '*.map' -print0) |
    while IFS= read -r -d '' f; do
      mkdir -p "$stage/$(dirname "$f")"
      cp "www/$f" "$stage/$f"
    done
fi
cp packaging/README.md "$stage/README.md"
if [ -f LICENSE ]; then cp LICENSE "$stage/LICENSE"; else cp packaging/LICENSE "$stage/LICENSE"; fi

# package.json: the template with the workspace version; exports of files not built are dropped
# (tracker-capture/ before the loader exists), so every export resolves.
node - "$stage" "$version" <<'EOF'
const fs = require('fs');
const path = require('path');
const [stage, version] = process.argv.slice(2);
const pkg = JSON.parse(fs.readFileSync('packaging/package.json', 'utf8'));
pkg.version = version;
for (const [key, target] of Object.entries(pkg.exports)) {
  const file = typeof target === 'string' ? target : target.default;
  if (file.includes('*') || key === './package.json') continue;
  if (!fs.existsSync(path.join(stage, file))) {
    console.error(`package.sh: ${file} is not there; export ${key} left out`);
    delete pkg.exports[key];
  }
}
if (!fs.existsSync(path.join(stage, 'tracker-capture'))) {
  pkg.files = pkg.files.filter((f) => !f.startsWith('tracker-capture'));
  pkg.sideEffects = pkg.sideEffects.filter((f) => !f.startsWith('./tracker-capture'));
}
fs.writeFileSync(path.join(stage, 'package.json'), JSON.stringify(pkg, null, 2) + '\n');
EOF

# npm pack needs no network for a package without dependencies or scripts.
tarball=$(cd "$stage" && npm pack --silent --ignore-scripts --pack-destination ..)
tarball="$out/$tarball"
wasm_gz=$(gzip -9c "$stage/pkg/tracker_offline_bg.wasm" | wc -c)
echo "$tarball"
echo "tracker-offline $version: $(wc -c <"$tarball") bytes gzipped (tarball), $(find "$stage" -type f | wc -l) files; wasm $(wc -c <"$stage/pkg/tracker_offline_bg.wasm") bytes, $wasm_gz gzipped"
