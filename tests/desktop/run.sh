#!/usr/bin/env bash
# Runs the desktop end-to-end test (test/app.test.js) under a virtual X
# display and a private D-Bus session bus (dbus-run-session), on which the
# test reads and clicks the tray menu and sends a screen lock signal. The
# test drives the app through tauri-driver and
# WebKitWebDriver, and saves a screenshot of each screen to
# DESKTOP_SCREENS_DIR (default target/desktop-screens in the repository).
#
# KEYPORT_DESKTOP_BIN names the app binary (default:
# $CARGO_TARGET_DIR/debug/keyport-desktop, built by
# `npm run tauri build -- --debug`). The binary must come from
# `tauri build`, because a plain `cargo build` makes an app that loads its UI
# from the Vite dev server instead of ui/dist.
set -uo pipefail
cd "$(dirname "$0")"

# Time limits in seconds: one test, and the whole run.
TEST_TIMEOUT=120
SUITE_TIMEOUT=180

if ! command -v xvfb-run >/dev/null 2>&1; then
  echo "xvfb-run not found; install the xvfb and xauth packages (scripts/setup.sh does)" >&2
  exit 1
fi

for tool in dbus-run-session busctl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "$tool not found; install the dbus-daemon and systemd packages (scripts/setup.sh does)" >&2
    exit 1
  fi
done

if [ -z "${TAURI_DRIVER:-}" ] && command -v tauri-driver >/dev/null 2>&1; then
  TAURI_DRIVER="$(command -v tauri-driver)"
  export TAURI_DRIVER
fi

# xvfb-run -a picks a free display number; the screen is larger than the
# app's 1100x720 window so that nothing is clipped. dbus-run-session ends
# its bus when the test exits.
exec timeout --kill-after=10 "$SUITE_TIMEOUT" \
  dbus-run-session -- \
  xvfb-run -a -s "-screen 0 1280x900x24 -nolisten tcp" \
  node --test --test-timeout="$((TEST_TIMEOUT * 1000))" test/*.test.js
