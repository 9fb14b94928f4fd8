#!/usr/bin/env bash
# Set up .venv for profkit (idempotent). Sourced or run from the repository root.
#   bash scripts/setup.sh          # runtime only
#   PROFKIT_DEV=1 bash scripts/setup.sh   # with the test and lint tools
# torch: an installed torch is kept. Otherwise `torch==$PROFKIT_TORCH` (default 2.13.0) is
# installed before profkit, so profkit's `torch>=2.5` requirement is already met and pip never
# pulls a different build: on the project's CPU machines that pin resolves to the local CPU
# wheel, not the multi-GB CUDA one. Elsewhere, point PROFKIT_TORCH_INDEX at PyTorch's CPU
# wheel index to get a CPU build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=${PROFKIT_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV" || { echo "Error: python3 -m venv failed; on Debian/Ubuntu: apt-get install python3-venv" >&2; exit 1; }
fi
PY="$VENV/bin/python"
if ! "$PY" -c 'import torch' 2>/dev/null; then
  echo "setup: installing torch==${PROFKIT_TORCH:-2.13.0}" >&2
  "$PY" -m pip install -q ${PROFKIT_TORCH_INDEX:+--index-url "$PROFKIT_TORCH_INDEX"} "torch==${PROFKIT_TORCH:-2.13.0}"
fi
extra=""
[ -n "${PROFKIT_DEV:-}" ] && extra="[dev]"
"$PY" -m pip install -q -e ".$extra"
echo "setup: $("$PY" -c 'import torch, profkit; print(f"profkit {profkit.__version__}, torch {torch.__version__}")') in $VENV" >&2
