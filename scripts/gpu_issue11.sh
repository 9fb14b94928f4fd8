#!/usr/bin/env bash
# Issue 11 (memory history in the same run) on the GPU machine, about 3-4 minutes on one H200:
#   bash scripts/gpu_issue11.sh OUTDIR        # after `. scripts/device_env.sh` (profkit installed, $PROFKIT_NSYS)
#   PROFKIT_GPU_DRY=1 bash scripts/gpu_issue11.sh OUTDIR   # the same plumbing on CPU: tiny sizes, no history
# Items, each failing on its own (OUTDIR/status.txt lists them):
#   fixture  profkit run --model tiny --mode step --dtype bf16 --warmup 2 --steps 1 --memory-snapshot, scrubbed
#            into OUTDIR/fixture/h200_memory_tiny_step/ (commit as tests/data/h200_memory_tiny_step/)
#   study    scripts/memory_study.py (one process): first the cost (small step bf16, 10 measured steps with history,
#            then 10 without: OUTDIR/study/cost.json), then small and 2.7B x contexts 128/256/512 x fwd/step x
#            fp32/bf16, a report each, laid out as reports/h200/memory/ (OUTDIR/study/reports/h200/memory/)
#   capture  profkit profile --model small --mode step --dtype bf16 --memory-snapshot, and report memory on it
#            (GPU time beside memory, from the same run)
# Pickles over 4 MiB are moved out of OUTDIR at the end (listed in OUTDIR/big_pickles.txt).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:?usage: bash scripts/gpu_issue11.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
py=python3
[[ -x .venv/bin/python ]] && py=.venv/bin/python
dry=${PROFKIT_GPU_DRY:-0}
flags="--memory-snapshot"  # dry: CPU, tiny, no history (torch records it on CUDA only)
[[ $dry == 1 ]] && flags="--device cpu --model tiny"
export out py dry flags
: > "$out/status.txt"

item() {  # item NAME LIMIT_S CMD...: run one item under a time limit, log it, never stop the script
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  echo "== $name" | tee -a "$out/log.txt"
  if timeout "$limit" bash -c '"$@"' _ "$@" >> "$out/log.txt" 2>&1; then
    echo "$name ok $((SECONDS - t0)) s" | tee -a "$out/status.txt"
  else
    echo "$name FAILED (exit $?) $((SECONDS - t0)) s: see log.txt" | tee -a "$out/status.txt"
  fi
}

fixture() {
  local run="$out/fixture/run" dst="$out/fixture/h200_memory_tiny_step"
  rm -rf "$run" "$dst"
  # shellcheck disable=SC2086
  "$py" -m profkit run --model tiny --mode step --dtype bf16 --warmup 2 --steps 1 $flags --out "$run" || return 1
  mkdir -p "$dst"
  cp "$run/run.json" "$dst/"
  if [[ -f "$run/memory.pickle" ]]; then
    cp "$run/memory.json" "$dst/"
    "$py" -c "import sys; from pathlib import Path; from profkit.scrub import scrub_snapshot; \
print('frames shortened:', scrub_snapshot(Path(sys.argv[1]), Path(sys.argv[2])))" \
      "$run/memory.pickle" "$dst/memory.pickle" || return 1
    "$py" -m profkit report memory "$dst" > "$dst/report.md" || return 1
  fi
  "$py" - "$dst" <<'EOF'
import json, sys
from pathlib import Path
d = Path(sys.argv[1])
run = json.loads((d / "run.json").read_text())
env, m = run["environment"], run.get("memory") or {}
(d / "README.md").write_text(f"""# h200_memory_tiny_step

A real allocator history from the GPU machine, made by `scripts/gpu_issue11.sh OUTDIR` (item `fixture`):

```
profkit run --model tiny --mode step --dtype bf16 --warmup 2 --steps 1 --memory-snapshot
```

- GPU: {env.get('gpu')}, driver {env.get('driver')}; torch {env.get('torch')}, CUDA {env.get('cuda')}
- memory.pickle: `torch.cuda.memory._snapshot()` of the one measured step ({m.get('events')} events, Python stacks),
  pickle protocol 4, frame paths shortened with `profkit.scrub.scrub_snapshot` (no home or environment paths)
- memory.json: profkit's sidecar (the window's start blocks, torch's peaks, the range log, the storages)
- run.json: the run's record; `peak_memory_bytes` is torch's max_memory_allocated over the measured step
  ({run.get('peak_memory_bytes')} B), which tests/test_memory_fixture.py checks the replay against
- report.md: `profkit report memory` on this folder, as made on the GPU machine
""")
EOF
}

capture() {
  local name=small-step-bf16-memory
  [[ $dry == 1 ]] && name=tiny-step-memory
  # shellcheck disable=SC2086
  "$py" -m profkit profile --model small --mode step --dtype bf16 --warmup 2 --steps 1 $flags --name "$name" \
    --out-dir "$out/captures" --force || return 1
  local dest="$out/study/reports/h200/memory"
  mkdir -p "$dest"
  [[ -f "$out/captures/$name/memory.pickle" ]] || return 0  # dry: no history on CPU
  rm -f "$dest/$name.memory."{md,json,png,html}
  "$py" -m profkit report memory "$out/captures/$name/memory.pickle" -o "$dest/$name.memory.md" \
    --png "$dest/$name.memory.png" --html "$dest/$name.memory.html" || return 1
  "$py" -m profkit report memory "$out/captures/$name" --format json -o "$dest/$name.memory.json"
}

export -f fixture capture
item fixture 60 fixture
item study 210 "$py" scripts/memory_study.py "$out/study"
item capture 120 capture
find "$out" -name '*.pickle' -size +4M > "$out/big_pickles.txt"
if [[ -s "$out/big_pickles.txt" ]]; then
  big=$(mktemp -d /tmp/issue11-pickles.XXXX)
  while read -r f; do mkdir -p "$big/$(dirname "${f#$out/}")" && mv "$f" "$big/${f#$out/}"; done < "$out/big_pickles.txt"
  echo "moved $(wc -l < "$out/big_pickles.txt") pickles over 4 MiB to $big" | tee -a "$out/status.txt"
fi
cat "$out/status.txt"
