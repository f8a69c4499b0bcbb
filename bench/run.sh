#!/usr/bin/env bash
# Measures `keyport serve` against a passthrough floor proxy and against
# the mock provider directly, runs the vault and request log benchmarks,
# prints the results and writes them into docs/benchmarks.md.
#
# Needs wrk (Debian and Ubuntu: apt-get install -y wrk). Everything runs on
# 127.0.0.1. After the build it takes about 6 minutes on 2 cores.
#
# Environment:
#   BENCH_SECONDS   length of each timed run (default 4)
#   BENCH_ROUNDS    interleaved rounds over every cell and target (default 3)
#   BENCH_LOG_ROWS  rows in the request log benchmark (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-target}"
seconds="${BENCH_SECONDS:-4}"
rounds="${BENCH_ROUNDS:-3}"
log_rows="${BENCH_LOG_ROWS:-1000000}"

step() { printf '\n== %s\n' "$*" >&2; }

if ! command -v wrk >/dev/null 2>&1; then
  echo "bench/run.sh: wrk is missing; install it with: apt-get install -y wrk" >&2
  exit 1
fi

# keyport and keyport-bench are built without keyport-core's examples,
# because the examples' dev-dependencies would switch on tokio's test-util
# feature in the measured binary.
step "building keyport and keyport-bench (release)"
cargo build --release -p keyport-cli -p keyport-bench

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

step "vault benchmark (bench/vault.sh)"
bench/vault.sh | tee "$work/vault.txt"

step "request log benchmark, $log_rows rows"
cargo run --release -p keyport-core --example requestlog_bench -- "$log_rows" \
  | tee "$work/requestlog.txt"

# The request log benchmark leaves a few hundred MiB of dirty pages. They
# are written out now, so the disk is quiet during the proxy benchmark.
sync

step "proxy benchmark: direct, floor and keyport, $rounds rounds of ${seconds} s runs"
"$target_dir/release/keyport-bench" run \
  --keyport "$target_dir/release/keyport" \
  --wrk-script bench/wrk/request.lua \
  --seconds "$seconds" \
  --rounds "$rounds" \
  --vault-report "$work/vault.txt" \
  --requestlog-report "$work/requestlog.txt" \
  --repo . \
  --out docs/benchmarks.md
