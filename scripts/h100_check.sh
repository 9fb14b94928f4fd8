#!/usr/bin/env bash
# End-to-end check on a GPU machine with the current code: capture with nsys 2025.3.1, report on
# it there, and show that a capture whose nsys 2023.4.4 analysis fails is refused.
#   OUT=/some/dir bash scripts/h100_check.sh
set -uo pipefail
OUT=${OUT:-/tmp/profkit-out}
NCU=$(ls -d /opt/nvidia/nsight-compute/*/ | sort -V | tail -n 1)
bash scripts/install_nsys.sh --from-nsight-compute "${NCU%/}" --libs .tools/device-libs --prefix /tmp/nsys25
bash scripts/install_nsys.sh --from-archive .tools/nsys-2023.4.4-linux-x64.tar.xz --prefix /tmp/nsys23
python3 -m profkit profile --model small --mode step --dtype bf16 --attn flash --steps 3 --name check \
  --out-dir /tmp/p --nsys /tmp/nsys25/target-linux-x64/nsys
python3 -m profkit report /tmp/p/check && cp /tmp/p/check/report.md "$OUT/report_check.md"
python3 -m profkit report nvtx /tmp/p/check --by name --format csv | head -20
python3 -m profkit report kernels /tmp/p/check --by category
python3 -m profkit profile --model small --mode step --steps 3 --name old --out-dir /tmp/p \
  --nsys /tmp/nsys23/target-linux-x64/nsys; echo "exit code with nsys 2023.4.4: $?"
ls /tmp/p
