#!/usr/bin/env bash
# Set up a fresh machine and run the test suite (the command CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v Xvfb >/dev/null || ! command -v xdotool >/dev/null; then
  # The real-window test of the labelling UI needs a virtual screen; it is skipped (with a reason) without one.
  { apt-get install -y -qq xvfb xdotool || { apt-get update -qq && apt-get install -y -qq xvfb xdotool; }; } >/dev/null 2>&1 \
    || echo "note: could not install xvfb/xdotool: the real-window test will be skipped"
fi
bash scripts/setup.sh
export MUJOCO_GL="${MUJOCO_GL:-egl}"
.venv/bin/python -m pytest
