#!/usr/bin/env bash
# Builds the wasm package into www/pkg (release, --target web; and the `no-modules` glue of the
# same wasm for the classic service worker, pkg/tracker_offline_worker.js), then shrinks it with
# binaryen's wasm-opt from npm (Debian's binaryen 108 produces wasm that fails in Chromium).
# Usage: scripts/build-wasm.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
# The release build uses the workspace's `wasm-release` profile: sized for download, the crypto
# at full speed (issue 17, P6).
profile=(--profile wasm-release)
profile_dir=wasm-release
if [ "${1:-}" = "--dev" ]; then profile=(--dev); profile_dir=debug; fi
wasm-pack --quiet build crates/web --target web --out-dir ../../www/pkg --out-name tracker_offline "${profile[@]}" --no-pack
wasm_opt=tests/node_modules/.bin/wasm-opt
if [ "$profile_dir" = wasm-release ] && [ -x "$wasm_opt" ]; then
  # TRACKER_OFFLINE_WASM_NAMES=1 keeps the function names, for CPU profiles (tests/bench/profile-login.mjs).
  names=()
  if [ "${TRACKER_OFFLINE_WASM_NAMES:-}" = 1 ]; then names=(-g); fi
  "$wasm_opt" -O3 "${names[@]}" --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
    --enable-reference-types --enable-multivalue \
    www/pkg/tracker_offline_bg.wasm -o www/pkg/tracker_offline_bg.wasm
fi
# The service worker is a classic worker (see www/sw.js): it loads wasm-bindgen's `no-modules`
# glue of the same wasm. Same out-name, so its imports match the _bg.wasm above.
raw="${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/$profile_dir/tracker_offline.wasm"
glue=$(mktemp -d)
wasm-bindgen --target no-modules --out-dir "$glue" --out-name tracker_offline "$raw"
cp "$glue/tracker_offline.js" www/pkg/tracker_offline_worker.js
rm -rf "$glue"
rm -f www/pkg/.gitignore
echo "www/pkg: $(du -b www/pkg/tracker_offline_bg.wasm | cut -f1) bytes wasm, $(gzip -9c www/pkg/tracker_offline_bg.wasm | wc -c) gzipped"
