#!/usr/bin/env bash
# GPU captures for the real-models issue, on the GPU machine (nsys 2025.3.1, transformers 5.x):
#   bash scripts/gpu_issue9.sh models OUTDIR   # GPT-2 and Llama from transformers: step bf16, modules, report.md
#   bash scripts/gpu_issue9.sh sweep OUTDIR    # small across attention backends, fp32/bf16, eager/compiled:
#                                              # every kernel name with its time (OUTDIR/kernel_names.jsonl)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
part=${1:?usage: gpu_issue9.sh models|sweep OUTDIR}
out=${2:?usage: gpu_issue9.sh models|sweep OUTDIR}
mkdir -p "$out/captures"
cap="$out/captures"
P=(python3 -m profkit)
names() { python3 scripts/kernel_names.py "$cap/$1" "$1" >> "$out/kernel_names.jsonl"; }
if [[ $part == models ]]; then
  for kind in llama gpt2; do
    name=$kind-step-bf16
    "${P[@]}" profile --model scripts.hf_models:$kind --mode step --dtype bf16 --nvtx-depth 4 --batch-size 4 \
      --context-length 1024 --warmup 3 --steps 2 --name "$name" --out-dir "$cap" --force 2>&1 | tail -4
    "${P[@]}" report "$cap/$name" --force && cp "$cap/$name/report.md" "$out/$name.report.md"
    "${P[@]}" report modules "$cap/$name" > "$out/$name.modules.md"
    "${P[@]}" report timeline "$cap/$name"
    names "$name"
  done
  python3 -m profkit run --model scripts.hf_models:llama --mode step --dtype bf16 --batch-size 4 \
    --context-length 1024 --warmup 3 --steps 10 --out "$out/llama-bare" --force 2>&1 | tail -3
fi
if [[ $part == sweep ]]; then
  for cfg in "naive bf16" "math bf16" "flash bf16" "efficient bf16" "cudnn bf16" "naive fp32" "math fp32" \
             "efficient fp32"; do
    set -- $cfg
    for mode in step fwd; do
      name=small-$mode-$2-$1
      "${P[@]}" profile --model small --mode $mode --dtype $2 --attn $1 --warmup 2 --steps 1 --name "$name" \
        --out-dir "$cap" --force > "$out/$name.log" 2>&1 && names "$name" || tail -3 "$out/$name.log"
    done
  done
  for cfg in "flash bf16" "naive bf16" "cudnn bf16" "math fp32"; do
    set -- $cfg
    name=small-step-$2-$1-compile
    "${P[@]}" profile --model small --mode step --dtype $2 --attn $1 --compile --warmup 2 --steps 1 --name "$name" \
      --out-dir "$cap" --force > "$out/$name.log" 2>&1 && names "$name" || tail -3 "$out/$name.log"
  done
fi
