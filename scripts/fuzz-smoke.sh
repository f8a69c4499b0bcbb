#!/usr/bin/env bash
# Runs each fuzz target in fuzz/ for a short, bounded time, starting from
# its committed seeds. Exits non-zero when a target crashes; the input is
# left under fuzz/artifacts/TARGET/.
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). On a stable
# toolchain the targets build without a sanitizer (`--sanitizer none`):
# Keyport forbids unsafe code, so AddressSanitizer would find little, and
# the sanitizers need nightly. Set FUZZ_SANITIZER=address with a nightly
# toolchain to use one anyway.
#
# Environment:
#   FUZZ_SECONDS     time per target, default 20
#   FUZZ_SANITIZER   cargo-fuzz sanitizer, default none
#   FUZZ_TARGET_DIR  build directory, default $CARGO_TARGET_DIR/fuzz
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${FUZZ_SECONDS:-20}"
sanitizer="${FUZZ_SANITIZER:-none}"
target_dir="${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$PWD/target}/fuzz}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is not installed; run: cargo install cargo-fuzz --locked" >&2
  exit 1
fi

cargo fuzz build --sanitizer "$sanitizer" --target-dir "$target_dir"

# libFuzzer writes new inputs into the first corpus directory, so each run
# gets a scratch copy and the committed seeds stay as they are.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

for target in $(cargo fuzz list); do
  mkdir -p "$scratch/$target"
  printf '\n== fuzz %s for %s s\n' "$target" "$seconds"
  cargo fuzz run --sanitizer "$sanitizer" --target-dir "$target_dir" "$target" \
    "$scratch/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done

printf '\n== every fuzz target ran %s s without a crash\n' "$seconds"
