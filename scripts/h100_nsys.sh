#!/usr/bin/env bash
# The nsys issue's GPU work: set up both nsys kits, capture `small` in three modes x fp32/bf16
# and one compiled run with profkit profile, make the test fixtures, and time bare against
# under nsys. On the GPU machine, from the repository root, with .tools/ carried:
#   OUT=/some/dir bash scripts/h100_nsys.sh [captures|rest|all]   (two stages: each fits one 10-minute call)
set -euo pipefail
STAGE=${1:-all}
OUT=${OUT:-/tmp/profkit-out}
W=${W:-/tmp/profkit-h100}
mkdir -p "$OUT" "$W"
NCU=$(ls -d /opt/nvidia/nsight-compute/*/ | sort -V | tail -n 1)
bash scripts/install_nsys.sh --from-nsight-compute "${NCU%/}" --libs .tools/device-libs --prefix /tmp/nsys25
bash scripts/install_nsys.sh --from-archive .tools/nsys-2023.4.4-linux-x64.tar.xz --prefix /tmp/nsys23
N25=/tmp/nsys25/target-linux-x64/nsys
N23=/tmp/nsys23/target-linux-x64/nsys
if [ "$STAGE" != rest ]; then
python3 -m profkit doctor --nsys $N25 | tee "$OUT/doctor.txt"
python3 -m profkit doctor --nsys $N23 | grep -A1 "nsys" | tee -a "$OUT/doctor.txt"
# small, three modes x fp32/bf16, flash, and one compiled run, with nsys 2025.3.1: these are
# the test fixtures too (make_fixtures.py captures, scrubs and describes them).
python3 scripts/make_fixtures.py --nsys $N25 --dest "$W/data" --work "$W/captures"
tar czf "$OUT/fixtures.tgz" -C "$W" data
fi
if [ "$STAGE" != captures ]; then
  # 2023.4.4 with the capture-range default on this CUDA 13 stack (its log is kept either way).
  python3 -m profkit profile --model small --mode step --dtype fp32 --steps 5 --name small-step-fp32-nsys2023 \
    --out-dir "$W/captures" --force --nsys $N23 || true
  cp "$W"/captures/small-step-fp32-nsys2023*/nsys.log "$OUT/nsys2023.log" || true
  for d in "$W"/captures/*/; do
    [ -f "$d/profile.sqlite" ] || continue
    python3 -c "import sys; from profkit.pipeline import summarize_export as s; x = s(sys.argv[1] + 'profile.sqlite'); print(sys.argv[1], x.kernels, 'kernels,', len(x.ranges), 'range names')" "$d"
  done | tee "$OUT/captures.txt"
  # nsys's own per-op ranges (--pytorch=autograd-nvtx) on top of profkit's: a fixture for the parser.
  python3 scripts/make_fixtures.py --nsys $N25 --dest "$W/data" --work "$W/captures" --only h100_small_step_bf16_autograd_nvtx
  tar czf "$OUT/fixture_autograd.tgz" -C "$W" data || true
  python3 scripts/nsys_overhead.py --nsys $N25 --nsys $N23 --work "$W/overhead" --report "$OUT/nsys_overhead.md"
fi
