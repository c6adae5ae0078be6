#!/usr/bin/env bash
# Set up a fresh machine and run the test suite (the command CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v Xvfb >/dev/null || ! command -v xdotool >/dev/null; then
  # The real-window test of the labelling UI needs a virtual screen; it is skipped (with a reason) without one.
  { apt-get install -y -qq xvfb xdotool || { apt-get update -qq && apt-get install -y -qq xvfb xdotool; }; } >/dev/null 2>&1 \
    || echo "note: could not install xvfb/xdotool: the real-window test will be skipped"
fi
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  # The web labeling page's tests drive a real browser; they are skipped (with a reason) without one.
  { apt-get install -y -qq chromium chromium-driver || { apt-get update -qq && apt-get install -y -qq chromium chromium-driver; }; } \
    >/dev/null 2>&1 || echo "note: could not install chromium/chromium-driver: the browser tests will be skipped"
fi
bash scripts/setup.sh
export MUJOCO_GL="${MUJOCO_GL:-egl}"
# The store's PostgreSQL tests need a real server: a throw-away local cluster, stopped at the end.
if PG_URL="$(bash scripts/postgres.sh start)"; then
  export PREFWRAP_TEST_POSTGRES_URL="$PG_URL"
  trap 'bash scripts/postgres.sh stop >/dev/null 2>&1 || true' EXIT
else
  echo "note: PostgreSQL unavailable: the store's PostgreSQL tests will be skipped"
fi

# 1. Without extras: importing prefwrap, classic control and CartPole clips must work with no mujoco,
#    ale-py or pygame; tests that need an extra skip with a reason.
bash scripts/setup.sh --core .venv-core
echo "== tests without extras (.venv-core: no mujoco, ale-py, pygame)"
.venv-core/bin/python -m pytest -q -p no:cacheprovider tests

# 2. Everything, with the module doctests.
echo "== full suite with every extra (.venv), doctests included"
.venv/bin/python -m pytest --doctest-modules src/prefwrap tests
