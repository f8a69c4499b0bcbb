#!/usr/bin/env bash
# Runs every check and test: formatting, the desktop UI's type check, unit
# tests and build, lints, and the Rust unit and integration tests. Then the
# end-to-end tests run KaibanJS and the official SDKs against mock
# upstreams on 127.0.0.1, the desktop app runs in a real window through
# WebDriver, its .deb and .rpm packages are checked, and a short fuzz pass
# runs (FUZZ_SECONDS per target, default 15; KEYPORT_SKIP_FUZZ=1 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
export KAIBAN_TELEMETRY_OPT_OUT=1
target_dir="${CARGO_TARGET_DIR:-target}"

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check

# The desktop crate embeds ui/dist at compile time, so the UI is built
# before Clippy and the tests compile the workspace.
step "desktop UI: typecheck, unit tests, build"
npm run typecheck
npm test
npm run build

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test"
cargo test --workspace

step "end-to-end tests"
cargo build -p keyport-cli
if [ -x tests/e2e/run.sh ]; then
  KEYPORT_BIN="$(realpath "$target_dir")/debug/keyport" tests/e2e/run.sh
else
  echo "tests/e2e/run.sh is missing" >&2
  exit 1
fi

# A debug build keeps CI time down: it reuses the dependencies that the
# tests above compiled, where a release build would compile all of them
# again with optimisations. The bundler packs the same binary into both
# packages, and the WebDriver test runs that binary too. ui/dist is
# already built, so the config override skips beforeBuildCommand.
# NOTE: tauri build adds the tauri/custom-protocol feature, so the tauri
# crate, its plugins and keyport-desktop compile once more here.
step "desktop app build (debug, .deb and .rpm)"
npm run tauri build -- --debug --bundles deb,rpm --config '{"build":{"beforeBuildCommand":null}}'

step "desktop app in a real window (WebDriver)"
KEYPORT_DESKTOP_BIN="$(realpath "$target_dir")/debug/keyport-desktop" tests/desktop/run.sh

step "desktop packages"
BUNDLE_DIR="$(realpath "$target_dir")/debug/bundle" tests/desktop/package.sh

if [ "${KEYPORT_SKIP_FUZZ:-0}" != 1 ]; then
  step "fuzz smoke pass"
  FUZZ_SECONDS="${FUZZ_SECONDS:-15}" scripts/fuzz-smoke.sh
fi

step "all tests passed"
