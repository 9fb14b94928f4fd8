#!/usr/bin/env bash
# The foundation issue's GPU figures: `small` in three modes x fp32/bf16 x naive/flash, one
# compiled run, and the NVTX-overhead benchmark. Run from the repository root on a GPU machine:
#   OUT=/some/dir bash scripts/h100_foundation.sh
set -euo pipefail
OUT=${OUT:-reports}
RUNS=${RUNS:-/tmp/profkit-runs}
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())'
python3 scripts/run_matrix.py --model small --modes fwd,fwd_bwd,step --dtypes fp32,bf16 --attn naive,flash \
  --runs-dir "$RUNS/matrix" --report "$OUT/small_h100.md" --title "small on H100: modes x precision x attention" \
  -- --warmup 10 --steps 50
python3 -m profkit run --model small --mode step --dtype bf16 --attn flash --compile --warmup 10 --steps 50 \
  --out "$RUNS/compiled" --force
# The other backends and the nanoGPT model, once each (refusals print their one-line reason).
for attn in efficient cudnn math; do for dtype in fp32 bf16; do
  python3 -m profkit run --model small --mode fwd_bwd --attn $attn --dtype $dtype --steps 20 --out "$RUNS/$attn-$dtype" \
    --force 2>&1 | grep -E "Error|mean" || true
done; done
python3 -m profkit run --model nanogpt --mode step --dtype bf16 --attn flash --steps 10 --out "$RUNS/nanogpt" --force
python3 scripts/bench_nvtx_overhead.py --model small --dtype bf16 --mode step --rounds 40 --steps-per-round 5 \
  --report "$OUT/nvtx_overhead.md"
