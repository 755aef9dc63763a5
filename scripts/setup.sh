#!/usr/bin/env bash
# Installs everything the tests and the demo need, idempotently: the wasm32 target,
# wasm-bindgen-cli (same version as the crate in Cargo.lock), wasm-pack, Debian's chromium and
# chromedriver, and the npm packages of tests/ (playwright-core, binaryen's wasm-opt).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# Debian packages: chromium + chromedriver (Playwright and wasm-bindgen-test drive these).
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} (apt)"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi

# Rust: wasm target, rustfmt and clippy.
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi
for component in rustfmt clippy; do
  if ! rustup component list --installed | grep -q "^$component"; then rustup component add "$component"; fi
done

# wasm-bindgen-cli must equal the wasm-bindgen crate version in Cargo.lock.
wb_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -q " $wb_version\$"; then
  log "installing wasm-bindgen-cli $wb_version (about 3 minutes)"
  # --locked fails on this registry mirror (a locked dependency is missing): install without it.
  cargo install wasm-bindgen-cli --version "$wb_version" --force
fi
if ! command -v wasm-pack >/dev/null 2>&1; then
  log "installing wasm-pack (about 2.5 minutes)"
  cargo install wasm-pack --version 0.15.1
fi

# npm packages of the browser tests (no browser download: playwright-core only).
if [ ! -f tests/node_modules/.package-lock.json ] || [ tests/package-lock.json -nt tests/node_modules/.package-lock.json ]; then
  log "installing npm packages in tests/"
  (cd tests && npm ci --no-audit --no-fund)
fi
log "tools ready"
