#!/usr/bin/env bash
# Create .venv with prefwrap and its pinned dependencies (CPU torch); idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e ".[all,dev,docs]"
