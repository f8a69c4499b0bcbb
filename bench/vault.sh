#!/usr/bin/env bash
# Measures the vault in a release build: create, unlock, save and password
# change times, and the process's peak memory. Prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -p keyport-core --example vault_bench "$@"
