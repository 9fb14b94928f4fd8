#!/usr/bin/env bash
# README's first command: set up, then run the main job on a default that fits the machine
# (the CS336 `small` model on a GPU, `tiny` on a CPU-only machine), forward+backward+AdamW.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
model=$(.venv/bin/python -c 'import torch; print("small" if torch.cuda.is_available() else "tiny")')
exec .venv/bin/profkit run --model "$model" --mode step "$@"
