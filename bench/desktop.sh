#!/usr/bin/env bash
# Measures the desktop app's start-up times and idle memory (see the
# header of bench/desktop.mjs) under a virtual X display and prints two
# Markdown tables for docs/benchmarks.md.
#
# Uses $CARGO_TARGET_DIR/release/keyport-desktop when it exists, else the
# debug build; KEYPORT_DESKTOP_BIN overrides both. Build the release binary
# with `npm run tauri build -- --no-bundle`. BENCH_ROUNDS (default 5) and
# BENCH_SETTLE_SECONDS (default 10) set the rounds and the wait before
# reading memory.
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir="${CARGO_TARGET_DIR:-target}"
if [ -z "${KEYPORT_DESKTOP_BIN:-}" ]; then
  KEYPORT_DESKTOP_BIN="$target_dir/release/keyport-desktop"
  [ -x "$KEYPORT_DESKTOP_BIN" ] || KEYPORT_DESKTOP_BIN="$target_dir/debug/keyport-desktop"
fi
if [ ! -x "$KEYPORT_DESKTOP_BIN" ]; then
  echo "no desktop binary at $KEYPORT_DESKTOP_BIN; build it with \`npm run tauri build -- --no-bundle\`" >&2
  exit 1
fi
export KEYPORT_DESKTOP_BIN="$(realpath "$KEYPORT_DESKTOP_BIN")"

# Each round takes about 2 × BENCH_SETTLE_SECONDS plus start-up.
limit=$(( (${BENCH_ROUNDS:-5} + 1) * (2 * ${BENCH_SETTLE_SECONDS:-10} + 40) ))
timeout --kill-after=10 "$limit" \
  xvfb-run -a -s "-screen 0 1280x900x24 -nolisten tcp" node bench/desktop.mjs
