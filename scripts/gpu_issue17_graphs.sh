#!/usr/bin/env bash
# Issue 17, CUDA graphs, on ONE GPU (about 2-3 min on an H200, nsys 2025.3.1 as $PROFKIT_NSYS): a
# torch.compile(mode="reduce-overhead") small bf16 flash step captured by `profkit profile` with its
# new default (--cuda-graph-trace=node, since this nsys lists the flag) and with nsys's own
# (`-- --cuda-graph-trace=graph`), each checked by plain SQL (graph rows or kernels sharing their
# cudaGraphLaunch's correlation id) and reported on; then the two compared.
#   bash scripts/gpu_issue17_graphs.sh OUTDIR
#   PROFKIT_GPU_DRY=1 bash scripts/gpu_issue17_graphs.sh OUTDIR   # the same steps on CPU (tiny, not compiled)
# Each item fails soft: logged in OUTDIR/summary.txt, the rest runs. Back in OUTDIR: env.txt,
# NAME.log (profile), NAME.nsys-cmd.txt (the nsys command profkit ran), NAME.sql.json (GRAPH_TRACE
# rows, kernels, kernels of graph launches, from SQL), NAME.{kernels,nvtx,timeline}.md, NAME.report.md,
# compare.md, summary.txt. Nothing needs committing: tests/data/h200_small_step_bf16_flash_graphs_*
# are the fixtures; this run checks `profkit profile`'s default end to end on the GPU.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:?usage: bash scripts/gpu_issue17_graphs.sh OUTDIR}
mkdir -p "$out/captures"
out=$(cd "$out" && pwd)
cap="$out/captures"
py=python3
[[ -x .venv/bin/python && -z "${PROFKIT_GPU_PY:-}" ]] && py=.venv/bin/python
[[ -n "${PROFKIT_GPU_PY:-}" ]] && py=$PROFKIT_GPU_PY
if [[ -n "${PROFKIT_GPU_DRY:-}" ]]; then
  W=(--model tiny --device cpu --mode step --warmup 1 --steps 1)
else
  W=(--model small --mode step --dtype bf16 --attn flash --compile --compile-mode reduce-overhead --warmup 3 --steps 2)
fi
log() { echo "[gpu_issue17 $(date +%T)] $*" | tee -a "$out/summary.txt"; }
item() {  # item NAME CMD...: run one item, its output in NAME.log, failing soft
  local name=$1; shift
  log "start $name"
  if "$@" > "$out/$name.log" 2>&1; then log "ok    $name"; else log "FAIL  $name (exit $?): $(tail -n 3 "$out/$name.log" | tr '\n' ' ')"; fi
}
{ env | grep -E '^PROFKIT_' ; $py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } > "$out/env.txt" 2>&1
cat > "$out/graph_sql.py" <<'PY'
"""GRAPH_TRACE rows, kernels and the kernels of cudaGraphLaunch calls of one export, by plain SQL."""
import json, sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
out = {"graph_table": "CUPTI_ACTIVITY_KIND_GRAPH_TRACE" in tables}
K = "CUPTI_ACTIVITY_KIND_KERNEL"
if K in tables:
    out["kernels"], out["kernel_ns"] = db.execute(f"SELECT count(*), coalesce(sum(end - start), 0) FROM {K}").fetchone()
    out["graph_launch_kernels"], out["graph_launch_kernel_ns"] = db.execute(
        f"SELECT count(*), coalesce(sum(end - start), 0) FROM {K} WHERE correlationId IN (SELECT correlationId FROM "
        "CUPTI_ACTIVITY_KIND_RUNTIME WHERE nameId IN (SELECT id FROM StringIds WHERE value LIKE 'cudaGraphLaunch%'))"
    ).fetchone()
if out["graph_table"]:
    out["replays"], out["replay_ns"] = db.execute(
        "SELECT count(*), coalesce(sum(end - start), 0) FROM CUPTI_ACTIVITY_KIND_GRAPH_TRACE").fetchone()
print(json.dumps(out, indent=2))
PY
for mode in default graph; do
  name=graphs-$mode
  extra=()
  [[ $mode == graph ]] && extra=(-- --cuda-graph-trace=graph)
  item "$name" $py -m profkit profile "${W[@]}" --name "$name" --out-dir "$cap" --force "${extra[@]}"
  [[ -d "$cap/$name" ]] || continue
  head -n 1 "$cap/$name/nsys.log" > "$out/$name.nsys-cmd.txt"
  grep -o -- '--cuda-graph-trace=[a-z:-]*' "$out/$name.nsys-cmd.txt" | tee -a "$out/summary.txt"
  item "$name.sql" bash -c "$py '$out/graph_sql.py' '$cap/$name/profile.sqlite' > '$out/$name.sql.json'"
  for report in kernels nvtx timeline; do
    args=()
    [[ $report == nvtx ]] && args=(--steps merged --depth 2)
    item "$name.$report" bash -c "$py -m profkit report $report '$cap/$name' ${args[*]:-} > '$out/$name.$report.md'"
  done
  item "$name.report" bash -c "$py -m profkit report '$cap/$name' --force && cp '$cap/$name/report.md' '$out/$name.report.md'"
done
if [[ -d "$cap/graphs-default" && -d "$cap/graphs-graph" ]]; then
  item compare bash -c "$py -m profkit report compare '$cap/graphs-graph' '$cap/graphs-default' > '$out/compare.md'"
fi
for f in "$out"/*.sql.json; do [[ -f $f ]] && { echo "$(basename "$f"):"; cat "$f"; } >> "$out/summary.txt"; done
log "done: $out"
