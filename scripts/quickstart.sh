#!/usr/bin/env bash
# README's first command: set up (Python packages and nsys), then the whole loop on a default
# that fits the machine (CS336 `small` on a GPU, `tiny` on a CPU-only machine): capture one
# forward+backward+AdamW workload with nsys, export it, and write its report.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
if ! .venv/bin/python -c 'from profkit.nsys import find_nsys; find_nsys()' 2>/dev/null; then
  bash scripts/install_nsys.sh  # Debian's 2023.4.4 into .tools/nsys (no root, apt config untouched)
fi
model=$(.venv/bin/python -c 'import torch; print("small" if torch.cuda.is_available() else "tiny")')
name="quickstart-$model-step-$(date +%Y%m%d-%H%M%S)"
.venv/bin/profkit profile --model "$model" --mode step --name "$name" "$@"
.venv/bin/profkit report "profiles/$name"
echo "open profiles/$name/report.md; the capture opens in the Nsight Systems GUI: profiles/$name/profile.nsys-rep"
