#!/usr/bin/env bash
# Issue 15 on TWO GPUs (nvidia-h200-x2; nsys 2025.3.1 as $PROFKIT_NSYS): DDP and FSDP2 captures of
# `small` and `medium` on two ranks, bf16, flash attention, --mode step, the same configs bare and on
# one GPU (scaling efficiency side by side), one --single-file capture, the ranks report and report.md
# of each capture, the summary table, and a scrubbed two-rank fixture for the CPU tests.
#   bash scripts/gpu_issue15.sh OUTDIR                    # about 8-10 min
#   PROFKIT_MODELS=small bash scripts/gpu_issue15.sh OUT1; PROFKIT_MODELS=medium ... OUT2   # in two calls
#   PROFKIT_GPU_DRY=1 bash scripts/gpu_issue15.sh OUTDIR  # the same steps on CPU (tiny, gloo)
# NVLink multicast stays off for every process (never cuMulticastCreate on the lent machines).
# Back in OUTDIR: env.txt, allreduce.log, NAME.{log,ranks.md,ranks.json,ranks.png,report.md}, summary.md
# (the table), fixtures/h200x2_small_step_bf16_ddp/ (scrubbed rank{0,1}.sqlite and run records), summary.txt.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:?usage: bash scripts/gpu_issue15.sh OUTDIR}
mkdir -p "$out/captures" "$out/runs" "$out/fixtures"
out=$(cd "$out" && pwd)
cap="$out/captures"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
py=python3
[[ -x .venv/bin/python && -z "${PROFKIT_GPU_PY:-}" ]] && py=.venv/bin/python
[[ -n "${PROFKIT_GPU_PY:-}" ]] && py=$PROFKIT_GPU_PY
if [[ -n "${PROFKIT_GPU_DRY:-}" ]]; then
  MODELS=(tiny); BASE=(--device cpu --mode step); CAPW=(--warmup 1 --steps 2); RUNW=(--warmup 1 --steps 3)
else
  read -r -a MODELS <<< "${PROFKIT_MODELS:-small medium}"  # PROFKIT_MODELS=small: half the run, in two calls
  BASE=(--mode step --dtype bf16 --attn flash); CAPW=(--warmup 3 --steps 3)
  RUNW=(--warmup 5 --steps 20)
fi
log() { echo "[gpu_issue15 $(date +%T)] $*" | tee -a "$out/summary.txt"; }
item() {
  local name=$1; shift
  log "start $name"
  if "$@" > "$out/$name.log" 2>&1; then log "ok    $name"; else log "FAIL  $name (exit $?): $(tail -n 3 "$out/$name.log" | tr '\n' ' ')"; fi
}
{ env | grep -E '^(NCCL_|TORCH_SYMM|NVSHMEM|PROFKIT_)'; nvidia-smi -L 2>&1; $py -c "import torch; print('torch', torch.__version__, 'gpus', torch.cuda.device_count())"; } > "$out/env.txt" 2>&1
cat "$out/env.txt"
cat > "$out/allreduce.py" <<'PY'
import os, torch, torch.distributed as dist
cuda = torch.cuda.is_available()
dev = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")
dist.init_process_group("nccl" if cuda else "gloo", **({"device_id": dev} if cuda else {}))
t = torch.ones(1 << 24, device=dev)
dist.all_reduce(t)
ok = t[0].item() == dist.get_world_size()
print("rank", dist.get_rank(), "of", dist.get_world_size(), "all-reduce", "ok" if ok else "WRONG")
dist.destroy_process_group()
raise SystemExit(0 if ok else 1)
PY
item allreduce $py -m torch.distributed.run --standalone --nproc-per-node 2 "$out/allreduce.py"
pairs=()
for model in "${MODELS[@]}"; do
  # one GPU, bare: the baseline of both strategies
  item "$model-1gpu" $py -m profkit run --model $model "${BASE[@]}" "${RUNW[@]}" --out "$out/runs/$model-1gpu" --force
  for strategy in ddp fsdp2; do
    name=$model-$strategy
    item "$name-bare" $py -m profkit run --model $model "${BASE[@]}" "${RUNW[@]}" --strategy $strategy \
      --nproc-per-node 2 --out "$out/runs/$name" --force
    item "$name-1rank" $py -m profkit run --model $model "${BASE[@]}" "${RUNW[@]}" --strategy $strategy \
      --nproc-per-node 1 --out "$out/runs/$name-1rank" --force
    item "$name" $py -m profkit profile --model $model "${BASE[@]}" "${CAPW[@]}" --strategy $strategy \
      --nproc-per-node 2 --name "$name" --out-dir "$cap" --force
    pairs+=("$name=$out/runs/$name" "$name-1gpu=$out/runs/$model-1gpu" "$name-capture=$cap/$name")
    [[ -d "$cap/$name" ]] || continue
    item "$name.ranks" bash -c "$py -m profkit report ranks '$cap/$name' --png '$out/$name.ranks.png' > '$out/$name.ranks.md' \
      && $py -m profkit report ranks '$cap/$name' --format json > '$out/$name.ranks.json'"
    item "$name.report" bash -c "$py -m profkit report '$cap/$name' --force && cp '$cap/$name/report.md' '$out/$name.report.md' \
      && { cp '$cap/$name/ranks_timeline.png' '$out/$name.report-timeline.png' 2>/dev/null || true; }"
  done
done
name=${MODELS[0]}-ddp-single
item "$name" $py -m profkit profile --model ${MODELS[0]} "${BASE[@]}" "${CAPW[@]}" --strategy ddp --nproc-per-node 2 \
  --single-file --name "$name" --out-dir "$cap" --force
[[ -d "$cap/$name" ]] && item "$name.ranks" bash -c "$py -m profkit report ranks '$cap/$name' > '$out/$name.ranks.md' \
  && $py -m profkit report ranks '$cap/$name' --format json > '$out/$name.ranks.json'"
item table $py scripts/ranks_fixture.py table "$out/summary.md" "${pairs[@]}"
# The two-rank fixture: one measured step of small DDP, scrubbed.
fix=${MODELS[0]}-ddp-fixture
item "$fix" $py -m profkit profile --model ${MODELS[0]} "${BASE[@]}" --warmup 3 --steps 1 --strategy ddp \
  --nproc-per-node 2 --name "$fix" --out-dir "$cap" --force
rm -rf "$out/fixtures/h200x2_small_step_bf16_ddp"
[[ -d "$cap/$fix" ]] && item "$fix.scrub" $py scripts/ranks_fixture.py fixture "$cap/$fix" "$out/fixtures/h200x2_small_step_bf16_ddp"
[[ -d "$cap/$fix" ]] && item "$fix.nccl" $py scripts/ranks_fixture.py nccl "$cap/$fix/rank0.sqlite" "$out/$fix.nccl.jsonl"
du -sh "$out/fixtures"/* 2>/dev/null | tee -a "$out/summary.txt"
log "done: $out"
