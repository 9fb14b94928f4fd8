#!/usr/bin/env bash
# README's second command, and what CI runs: set up with the dev tools, lint, type-check, test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PROFKIT_DEV=1 bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest -q "$@"
