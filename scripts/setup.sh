#!/usr/bin/env bash
# Create a venv with prefwrap and its pinned dependencies (CPU torch); idempotent.
#   bash scripts/setup.sh                     -> .venv with every extra (all, dev, docs, sweep)
#   bash scripts/setup.sh --core .venv-core   -> a venv with only the test tools (no mujoco/ale-py/pygame)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="all,dev,docs,sweep"
venv=".venv"
if [[ "${1:-}" == "--core" ]]; then
  extras="dev"
  venv="${2:-.venv-core}"
fi
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -c constraints.txt -e ".[$extras]"
