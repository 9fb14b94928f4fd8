#!/usr/bin/env bash
# Issue 12's sweeps on the GPU machine (one H200), in parts so that each device call stays under
# ~8 minutes; every part resumes the databases under OUTDIR (carry OUTDIR back between calls):
#   bash scripts/gpu_issue12.sh OUTDIR PART
# PART (estimated wall time on the H200; startup of a `profkit run` process ~10 s, a nanoGPT compile ~40-60 s):
#   attn-cs336        seed 002's grid (preset cs336: 100 points, 20 compiled)                ~4-5 min
#   attn-flash2       seed 003's sweeps (preset flash2, length 8..16384) and seed 001's (mac)  ~3 min
#   nanogpt-eager     seed 000's study, eager: 4 attention types x bf16/fp32                  ~2.5 min
#   nanogpt-compiled  the same compiled, bf16                                                 ~4-5 min
#   nanogpt-compiled-fp32  compiled, fp32 (the one to prune when time is short)               ~5 min
#   search            the fastest nanoGPT iteration: bf16, compiled, fused AdamW, flash/cudnn,
#                     fewer larger micro-batches (same 30,720 tokens per iteration)           ~5-6 min
#   best              the fastest point of nanogpt.db again under `profkit profile` (--profile):
#                     its report.md, verdict, categories, exact FLOPs                         ~3 min
#   sizes-bf16        CS336 sizes small..2.7B x fwd/fwd_bwd/step, bf16 (bare runs)            ~3.5 min
#   sizes-fp32        the same, fp32                                                          ~4 min
#   report            the markdown and PNGs of every database (no GPU needed)                 seconds
# Output, as it is to be committed in reports/h200/sweeps/: attention.db, nanogpt.db, sizes.db,
# {cs336,flash2,mac}/attention.md + PNGs, {nanogpt,sizes}/models.md + PNG, logs/PART.log; run
# folders (run.json, run.log) and the capture of `best` under runs/ (keep run.json, drop captures).
# PROFKIT_GPU_DRY=1: the same commands on the CPU with tiny grids (checks the script, not the GPU).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:?usage: gpu_issue12.sh OUTDIR PART}
part=${2:?usage: gpu_issue12.sh OUTDIR PART}
mkdir -p "$out/logs"
out=$(cd "$out" && pwd)
P=(python3 -m profkit)
[[ -x .venv/bin/python ]] && P=(.venv/bin/python -m profkit)
# One inductor cache for every part: `best` reuses `search`'s compiled graphs; the study's compiles are cold.
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/profkit-inductor-i12}
dry=${PROFKIT_GPU_DRY:-}
log="$out/logs/$part.log"
say() { echo "[gpu_issue12 $part $(date +%H:%M:%S)] $*" | tee -a "$log"; }
# Each item fails soft: its exit code goes to the log, the part goes on.
item() { say "$*"; "$@" >> "$log" 2>&1; local rc=$?; [[ $rc == 0 ]] || say "FAILED ($rc): $*"; return 0; }

A=(sweep attention --db "$out/attention.db" --max-seconds 2)
N=(sweep models --db "$out/nanogpt.db" --runs-dir "$out/runs/nanogpt" --timeout 420)
S=(sweep models --db "$out/sizes.db" --runs-dir "$out/runs/sizes" --timeout 300)
NANO=(--model nanogpt --mode step --batch-size 6 --context-length 1024 --grad-accum 5 --warmup 3 --steps 10)
SIZES=(--model small,medium,large,xl,2.7B --mode fwd,fwd_bwd,step --warmup 3 --steps 10)
if [[ -n $dry ]]; then
  A+=(--device cpu --reps 3 --warmup 1 --max-seconds 0.2)
  N+=(--device cpu)
  S+=(--device cpu)
  NANO=(--model tiny --mode step --grad-accum 2 --warmup 1 --steps 2)
  SIZES=(--model tiny --mode fwd,fwd_bwd,step --warmup 1 --steps 2)
fi
tiny_attn=(--batch-size 1 --heads 2 --head-dim 8 --seq-len 16,32 --dtype fp32)

case $part in
  attn-cs336)
    if [[ -n $dry ]]; then item "${P[@]}" "${A[@]}" --impl naive,math,flash "${tiny_attn[@]}"
    else item "${P[@]}" "${A[@]}" --preset cs336; fi ;;
  attn-flash2)
    if [[ -n $dry ]]; then item "${P[@]}" "${A[@]}" --impl naive,math "${tiny_attn[@]}" --no-causal
    else item "${P[@]}" "${A[@]}" --preset flash2; item "${P[@]}" "${A[@]}" --preset mac; fi ;;
  nanogpt-eager)
    item "${P[@]}" "${N[@]}" "${NANO[@]}" --dtype bf16,fp32 --attn naive,math,flash,efficient --compile off ;;
  nanogpt-compiled)
    if [[ -n $dry ]]; then item "${P[@]}" "${N[@]}" "${NANO[@]}" --dtype fp32 --attn naive --compile on
    else item "${P[@]}" "${N[@]}" "${NANO[@]}" --dtype bf16 --attn flash,naive,efficient,math --compile on; fi ;;
  nanogpt-compiled-fp32)
    if [[ -n $dry ]]; then say "dry: skipped (a CPU compile of every attention type adds nothing to nanogpt-compiled)"
    else item "${P[@]}" "${N[@]}" "${NANO[@]}" --dtype fp32 --attn flash,naive,efficient,math --compile on; fi ;;
  search)
    # 30,720 tokens per iteration throughout: 6 x 1024 x 5, 15 x 1024 x 2, 30 x 1024 x 1
    if [[ -n $dry ]]; then
      item "${P[@]}" "${N[@]}" --model tiny --mode step --batch-size 4 --grad-accum 1 --optimizer adamw-fused \
        --warmup 1 --steps 2
    else
      item "${P[@]}" "${N[@]}" "${NANO[@]}" --dtype bf16 --attn flash,cudnn --compile on --optimizer adamw-fused
      for bg in "15 2" "30 1"; do
        set -- $bg
        item "${P[@]}" "${N[@]}" --model nanogpt --mode step --context-length 1024 --batch-size "$1" --grad-accum "$2" \
          --dtype bf16 --attn flash,cudnn --compile on --optimizer adamw-fused --warmup 3 --steps 10
      done
    fi ;;
  best)
    # The fastest ms/iter among the points that process 30,720 tokens per iteration, rerun under nsys.
    args=$(python3 - "$out/nanogpt.db" <<'PY'
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
r = con.execute("select model, dtype, attn, compile, compile_mode, batch_size, context_length, grad_accum, optimizer,"
                " warmup, steps, device from models where status = 'ok' and profiled = 0 and"
                " batch_size * context_length * grad_accum = (select max(batch_size * context_length * grad_accum)"
                " from models) order by ms_per_step limit 1").fetchone()
m, d, a, c, cm, b, t, g, o, w, s, dev = r
print(f"--model {m} --mode step --dtype {d} --attn {a} --compile {'on' if c else 'off'} --compile-mode {cm} "
      f"--batch-size {b} --context-length {t} --grad-accum {g} --optimizer {o} --warmup {w} --steps {s} --device {dev}")
PY
)
    if [[ -z $args ]]; then say "no measured point in $out/nanogpt.db: run nanogpt-eager or search first"
    else
      # shellcheck disable=SC2086
      item "${P[@]}" sweep models --db "$out/nanogpt.db" --runs-dir "$out/runs/nanogpt" --timeout 540 --profile $args
      python3 - "$out/nanogpt.db" <<'PY' | tee -a "$log"
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
for r in con.execute("select attn, batch_size, grad_accum, ms_per_step, mfu, mfu_exact, verdict, categories, capture,"
                     " profile_note from models where profiled = 1"):
    print(r)
PY
    fi ;;
  sizes-bf16) item "${P[@]}" "${S[@]}" "${SIZES[@]}" --dtype bf16 ;;
  sizes-fp32) item "${P[@]}" "${S[@]}" "${SIZES[@]}" --dtype fp32 ;;
  report) ;;
  *) echo "unknown part $part; see the header of $0" >&2; exit 2 ;;
esac

# Every part ends with the reports of what the databases hold so far (cheap; matplotlib optional).
[[ -f $out/attention.db ]] && for p in cs336 flash2 mac; do
  if [[ -n $dry ]]; then item "${P[@]}" sweep report attention --db "$out/attention.db" --out "$out/$p" --force; break
  else item "${P[@]}" sweep report attention --db "$out/attention.db" --out "$out/$p" --preset "$p" --force; fi
done
[[ -f $out/nanogpt.db ]] && item "${P[@]}" sweep report models --db "$out/nanogpt.db" --out "$out/nanogpt" --force
[[ -f $out/sizes.db ]] && item "${P[@]}" sweep report models --db "$out/sizes.db" --out "$out/sizes" --force
say "done"
