#!/usr/bin/env bash
# Runs the end-to-end tests: KaibanJS and the official Node SDKs
# (node --test), then the Python openai SDK (pytest), all through
# `keyport serve` against mock upstreams on 127.0.0.1.
#
# KEYPORT_BIN names the binary under test (default: target/debug/keyport in
# the repository). Every step has a time limit, so a hang fails the run.
# Exits non-zero if any step fails. Both suites run either way.
set -uo pipefail
cd "$(dirname "$0")"

repo_root="$(cd ../.. && pwd)"
export KEYPORT_BIN="${KEYPORT_BIN:-$repo_root/target/debug/keyport}"
export KAIBAN_TELEMETRY_OPT_OUT=1

# Time limits in seconds: NODE_TEST_TIMEOUT for one Node test, the others
# for a whole step.
NPM_CI_TIMEOUT=300
PIP_TIMEOUT=300
NODE_TEST_TIMEOUT=60
NODE_SUITE_TIMEOUT=150
PYTHON_SUITE_TIMEOUT=90

if [ ! -x "$KEYPORT_BIN" ]; then
  echo "keyport binary not found at $KEYPORT_BIN; run \`cargo build -p keyport-cli\` or set KEYPORT_BIN" >&2
  exit 1
fi

if [ ! -d node_modules ]; then
  echo "== npm ci"
  timeout "$NPM_CI_TIMEOUT" npm ci --no-audit --no-fund || exit 1
fi

# The Python tests run in tests/e2e/.venv, which scripts/setup.sh makes.
python=.venv/bin/python
if [ ! -x "$python" ]; then
  echo "== python3 -m venv .venv"
  timeout "$PIP_TIMEOUT" python3 -m venv .venv || exit 1
fi
if ! "$python" -c 'import openai, pytest' 2>/dev/null; then
  echo "== pip install -r python/requirements.txt"
  timeout "$PIP_TIMEOUT" "$python" -m pip install --quiet --disable-pip-version-check -r python/requirements.txt || exit 1
fi

status=0

echo "== node --test"
timeout --kill-after=10 "$NODE_SUITE_TIMEOUT" \
  node --test --test-timeout="$((NODE_TEST_TIMEOUT * 1000))" test/*.test.js || status=1

echo "== pytest python"
timeout --kill-after=10 "$PYTHON_SUITE_TIMEOUT" \
  "$python" -m pytest -q -p no:cacheprovider python || status=1

exit "$status"
