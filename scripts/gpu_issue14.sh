#!/usr/bin/env bash
# Issue 14 on ONE GPU (about 2-3 min on an H200, nsys 2025.3.1 as $PROFKIT_NSYS): one rank with NCCL,
# `small` bf16 step, DDP and FSDP2, so that NCCL's kernels and NCCL's own NVTX ranges are seen in a
# real capture, the ranks report runs on it, and a scrubbed fixture comes back for the CPU tests.
#   bash scripts/gpu_issue14.sh OUTDIR
#   PROFKIT_GPU_DRY=1 bash scripts/gpu_issue14.sh OUTDIR   # the same steps on CPU (tiny, gloo, 2 ranks)
# NCCL refuses two ranks on one GPU ("Duplicate GPU detected"), so the one-GPU run is one NCCL
# rank: its collectives are real NCCL calls (NVTX ranges with their message sizes) whose kernels,
# if NCCL launches any for one rank, land in the fixture. Each item fails soft: logged, the rest runs.
# Back in OUTDIR: env.txt, allreduce.txt, CAPTURE.{log,ranks.md,ranks.json,report.md,nccl.jsonl},
# fixtures/h200_small_step_bf16_{ddp,fsdp2}_1rank/ (scrubbed rank0.sqlite, run records), summary.txt.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:?usage: bash scripts/gpu_issue14.sh OUTDIR}
mkdir -p "$out/captures" "$out/fixtures"
out=$(cd "$out" && pwd)
cap="$out/captures"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # no NVLink multicast
py=python3
[[ -x .venv/bin/python && -z "${PROFKIT_GPU_PY:-}" ]] && py=.venv/bin/python
[[ -n "${PROFKIT_GPU_PY:-}" ]] && py=$PROFKIT_GPU_PY
if [[ -n "${PROFKIT_GPU_DRY:-}" ]]; then
  W=(--model tiny --device cpu --mode step --warmup 1 --steps 1 --nproc-per-node 2)
else
  W=(--model small --mode step --dtype bf16 --attn flash --warmup 2 --steps 1 --nproc-per-node 1)
fi
log() { echo "[gpu_issue14 $(date +%T)] $*" | tee -a "$out/summary.txt"; }
item() {  # item NAME CMD...: run one item, its output in NAME.log, failing soft
  local name=$1; shift
  log "start $name"
  if "$@" > "$out/$name.log" 2>&1; then log "ok    $name"; else log "FAIL  $name (exit $?): $(tail -n 3 "$out/$name.log" | tr '\n' ' ')"; fi
}
{ env | grep -E '^(NCCL_|TORCH_SYMM|NVSHMEM|PROFKIT_)' ; $py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'gpus', torch.cuda.device_count(), 'nccl', torch.cuda.nccl.version() if torch.cuda.is_available() else None)"; } > "$out/env.txt" 2>&1
cat > "$out/allreduce.py" <<'PY'
import os, torch, torch.distributed as dist
cuda = torch.cuda.is_available()
dev = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")
dist.init_process_group("nccl" if cuda else "gloo", **({"device_id": dev} if cuda else {}))
t = torch.ones(1 << 20, device=dev)
dist.all_reduce(t)
print("rank", dist.get_rank(), "of", dist.get_world_size(), "all-reduce ok:", t[0].item() == dist.get_world_size())
dist.destroy_process_group()
PY
nproc=${W[-1]}
item allreduce $py -m torch.distributed.run --standalone --nproc-per-node "$nproc" "$out/allreduce.py"
for strategy in ddp fsdp2; do
  name=small-step-bf16-$strategy
  item "$name" $py -m profkit profile "${W[@]}" --strategy $strategy --name "$name" --out-dir "$cap" --force
  [[ -d "$cap/$name" ]] || continue
  item "$name.ranks" bash -c "$py -m profkit report ranks '$cap/$name' --png '$out/$name.ranks.png' > '$out/$name.ranks.md' \
    && $py -m profkit report ranks '$cap/$name' --format json > '$out/$name.ranks.json'"
  item "$name.report" bash -c "$py -m profkit report '$cap/$name' --force && cp '$cap/$name/report.md' '$out/$name.report.md'"
  item "$name.kernels" bash -c "$py -m profkit report kernels '$cap/$name' --by category > '$out/$name.categories.md'"
  item "$name.nccl" $py scripts/ranks_fixture.py nccl "$cap/$name/rank0.sqlite" "$out/$name.nccl.jsonl"
  rm -rf "$out/fixtures/h200_small_step_bf16_${strategy}_1rank"
  item "$name.fixture" $py scripts/ranks_fixture.py fixture "$cap/$name" "$out/fixtures/h200_small_step_bf16_${strategy}_1rank"
done
# The single-file layout with NCCL (one rank: nsys around torchrun, the rank a child process).
name=small-step-bf16-ddp-single
item "$name" $py -m profkit profile "${W[@]}" --strategy ddp --single-file --name "$name" --out-dir "$cap" --force
[[ -d "$cap/$name" ]] && item "$name.ranks" bash -c "$py -m profkit report ranks '$cap/$name' > '$out/$name.ranks.md'"
du -sh "$out/fixtures"/* 2>/dev/null | tee -a "$out/summary.txt"
log "done: $out"
