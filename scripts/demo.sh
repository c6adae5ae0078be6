#!/usr/bin/env bash
# Set up a fresh machine and run the main job: a short synthetic-oracle RLHF run (a few minutes on a CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUJOCO_GL="${MUJOCO_GL:-egl}"
.venv/bin/prefwrap train "$@"
