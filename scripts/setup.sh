#!/usr/bin/env bash
# Installs everything Keyport's build and tests need on a fresh Debian
# machine: system packages, Rust crates, tauri-driver, npm packages for
# the desktop UI and the end-to-end tests, and the Python OpenAI SDK. Safe
# to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null 2>&1; then
  # The desktop package test needs curl, xwininfo (x11-utils) and rpm,
  # which lists the .rpm's files; the bundler builds the .rpm without it.
  # The desktop WebDriver test runs a D-Bus session bus (dbus-daemon),
  # talks to the tray through busctl (systemd) and closes the window with
  # python3-xlib. python3-venv gives the Python tests their own environment.
  test_packages=(curl x11-utils rpm dbus-daemon systemd python3-venv python3-xlib)
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  # The desktop app's Tauri build needs WebKitGTK, libxdo (menus),
  # appindicator (the tray icon) and librsvg; xvfb and webkit2gtk-driver
  # run its WebDriver tests without a display.
  packages=(build-essential pkg-config libwebkit2gtk-4.1-dev libxdo-dev
    libayatana-appindicator3-dev librsvg2-dev xvfb xauth webkit2gtk-driver)
  missing=()
  for package in "${packages[@]}" "${test_packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}"
  fi
fi

cargo fetch
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
if ! command -v tauri-driver >/dev/null 2>&1; then
  cargo install tauri-driver --locked
fi

if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund
elif [ -f package.json ]; then
  npm install --no-audit --no-fund
fi
if [ -f tests/e2e/package-lock.json ]; then
  (cd tests/e2e && npm ci --no-audit --no-fund)
fi
if [ -f tests/e2e/python/requirements.txt ]; then
  # A virtual environment inside the repository: PEP 668 systems (Debian
  # 12 and later) refuse `pip install` into the system Python.
  [ -x tests/e2e/.venv/bin/python ] || python3 -m venv tests/e2e/.venv
  tests/e2e/.venv/bin/python -m pip install --quiet --disable-pip-version-check \
    -r tests/e2e/python/requirements.txt
fi
echo "Set-up complete."
