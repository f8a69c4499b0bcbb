#!/usr/bin/env bash
# Runs every check and test: formatting, lints, the Rust unit and
# integration tests, the end-to-end tests with real KaibanJS and the
# official SDKs against mock upstreams on 127.0.0.1, and a short fuzz pass
# (FUZZ_SECONDS per target, default 15; KEYPORT_SKIP_FUZZ=1 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
export KAIBAN_TELEMETRY_OPT_OUT=1
target_dir="${CARGO_TARGET_DIR:-target}"

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check

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

if [ "${KEYPORT_SKIP_FUZZ:-0}" != 1 ]; then
  step "fuzz smoke pass"
  FUZZ_SECONDS="${FUZZ_SECONDS:-15}" scripts/fuzz-smoke.sh
fi

step "all tests passed"
