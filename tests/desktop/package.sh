#!/usr/bin/env bash
# Tests the Linux packages that `tauri build` makes. It lists the .deb's
# files and installs it with dpkg. The installed app then starts under a
# private Xvfb display with a temporary data folder, and the test checks
# that its window appears and that the proxy stays stopped while no vault
# is unlocked. Then it ends the app and removes the package. The .rpm, when
# present, is checked with `rpm -qpl`.
#
# BUNDLE_DIR is the bundler's output folder (default
# $CARGO_TARGET_DIR/debug/bundle). Installing needs root or passwordless
# sudo; without either, the script checks the package contents only and
# says so.
set -euo pipefail
cd "$(dirname "$0")"
source lib/display.sh

repo_root="$(cd ../.. && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
bundle_dir="${BUNDLE_DIR:-$target_dir/debug/bundle}"
binary_name=keyport-desktop
window_title=Keyport

# Seconds: until the window appears, and how long the app must then keep
# running.
WINDOW_TIMEOUT=60
ALIVE_SECONDS=3

fail() {
  echo "package test: $*" >&2
  exit 1
}

shopt -s nullglob
debs=("$bundle_dir"/deb/*.deb)
rpms=("$bundle_dir"/rpm/*.rpm)
shopt -u nullglob
[ "${#debs[@]}" -eq 1 ] || fail "expected one .deb in $bundle_dir/deb, found ${#debs[@]}; run \`npm run tauri build -- --debug --bundles deb,rpm\`"
deb="${debs[0]}"
package="$(dpkg-deb --field "$deb" Package)"
echo "== $deb (package $package)"

# Checks that a file list ($1, one path per line) has the binary, a
# .desktop entry and PNG icons.
check_file_list() {
  local list="$1" kind="$2"
  grep -qx "/usr/bin/$binary_name" <<<"$list" || fail "$kind has no /usr/bin/$binary_name"
  grep -q '^/usr/share/applications/.*\.desktop$' <<<"$list" || fail "$kind has no .desktop entry in /usr/share/applications"
  grep -q '^/usr/share/icons/hicolor/[0-9x@]*/apps/.*\.png$' <<<"$list" || fail "$kind has no PNG icons in /usr/share/icons/hicolor"
}

# tar lists "usr/bin/x" or "./usr/bin/x" depending on the packer, so
# both become "/usr/bin/x".
deb_files="$(dpkg-deb --fsys-tarfile "$deb" | tar -t | sed -e 's|^\./||' -e 's|^|/|' -e 's|/$||')"
check_file_list "$deb_files" "$deb"
echo "contents: binary, .desktop entry and $(grep -c '/apps/.*\.png$' <<<"$deb_files") icons"

if [ "${#rpms[@]}" -gt 0 ]; then
  if command -v rpm >/dev/null 2>&1; then
    check_file_list "$(rpm -qpl "${rpms[0]}" 2>/dev/null)" "${rpms[0]}"
    echo "== ${rpms[0]}: binary, .desktop entry and icons listed"
  else
    echo "== ${rpms[0]} not checked: the rpm tool is not installed"
  fi
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo_cmd=(sudo -n)
  else
    echo "SKIPPED: installing $deb needs root or passwordless sudo; only its contents were checked"
    exit 0
  fi
fi
if dpkg -s "$package" >/dev/null 2>&1; then
  echo "SKIPPED: package $package is already installed on this machine; the test does not replace it"
  exit 0
fi

work="$(mktemp -d -t keyport-package-test-XXXXXX)"
installed=0
app_pid=""
XVFB_PID=""
cleanup() {
  [ -n "$app_pid" ] && end_tree "$app_pid"
  [ -n "$XVFB_PID" ] && end_tree "$XVFB_PID"
  if [ "$installed" -eq 1 ]; then
    "${sudo_cmd[@]}" dpkg -r "$package" >/dev/null || echo "package test: dpkg -r $package failed" >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "== dpkg -i"
"${sudo_cmd[@]}" dpkg -i "$deb" >"$work/dpkg.log" 2>&1 || {
  cat "$work/dpkg.log" >&2
  "${sudo_cmd[@]}" dpkg -r "$package" >/dev/null 2>&1 || true
  fail "dpkg -i failed; its runtime dependencies come from scripts/setup.sh"
}
installed=1
for file in "/usr/bin/$binary_name" $(grep -E '\.desktop$|/apps/.*\.png$' <<<"$deb_files"); do
  [ -f "$file" ] || fail "$file is listed in the package but was not installed"
done
desktop_file="$(grep '\.desktop$' <<<"$deb_files" | head -n 1)"
grep -q "^Exec=$binary_name" "$desktop_file" || fail "$desktop_file does not start $binary_name"
grep -q "^Name=$window_title$" "$desktop_file" || fail "$desktop_file is not named $window_title"
if command -v desktop-file-validate >/dev/null 2>&1; then
  desktop-file-validate "$desktop_file"
fi

echo "== start /usr/bin/$binary_name"
start_xvfb "$work"
data_dir="$work/data"
mkdir -m 700 "$data_dir" "$work/home"
proxy_port="$(free_port)"
printf '[proxy]\nport = %s\n' "$proxy_port" >"$data_dir/config.toml"
HOME="$work/home" XDG_CONFIG_HOME="$work/home/.config" XDG_DATA_HOME="$work/home/.local/share" \
  XDG_CACHE_HOME="$work/home/.cache" KEYPORT_DATA_DIR="$data_dir" \
  "/usr/bin/$binary_name" >"$work/app.log" 2>&1 &
app_pid=$!

started=$(date +%s%N)
if ! wait_for_window "$window_title" "$WINDOW_TIMEOUT" "$app_pid"; then
  cat "$work/app.log" >&2
  fail "no window titled $window_title appeared within $WINDOW_TIMEOUT s"
fi
echo "window after $((($(date +%s%N) - started) / 1000000)) ms"
sleep "$ALIVE_SECONDS"
kill -0 "$app_pid" 2>/dev/null || {
  cat "$work/app.log" >&2
  fail "the app exited within $ALIVE_SECONDS s of showing its window"
}
if curl --silent --max-time 2 "http://127.0.0.1:$proxy_port/healthz" >/dev/null; then
  fail "the proxy answers on port $proxy_port although no vault exists yet"
fi
[ ! -e "$work/home/.local/share/keyport" ] || fail "the app created the default data folder although KEYPORT_DATA_DIR was set"

end_tree "$app_pid"
app_pid=""
end_tree "$XVFB_PID"
XVFB_PID=""

echo "== dpkg -r"
"${sudo_cmd[@]}" dpkg -r "$package" >/dev/null
installed=0
[ ! -e "/usr/bin/$binary_name" ] || fail "/usr/bin/$binary_name is still there after dpkg -r"
echo "package test passed"
