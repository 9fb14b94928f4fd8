#!/usr/bin/env bash
# FLOPs per range on the GPU machine (issue 10): measured peaks, captures and their FLOP reports,
# laid out as reports/h200/flops/ is to be committed.
#   bash scripts/gpu_issue10.sh OUTDIR
#   PROFKIT_GPU_DRY=1 bash scripts/gpu_issue10.sh OUTDIR   # CPU rehearsal: tiny model, no flash, no compile
# Budget: 4 minutes wall on the H200 (PROFKIT_BUDGET_S, default 200 s for the captures; the rest is the
# reports finishing). Captures run one at a time (the GPU is timed); each one's reports run in the
# background while the next captures. Every item fails soft: its log says why, the rest go on.
# OUTDIR/
#   peaks.json, doctor.txt          profkit doctor --measure-peaks (the cache entry) and doctor's table
#   NAME/{report.md, flops.md, flops.json, flops_count.json, flops_measured.md, roofline.png, waterfall.png, run.json}
#   autocast_bytes.json             replay's bytes per path (autocast emulated on meta) against a real bf16 step's
#   fixture/h200_nanogpt_step_bf16_flash_compile/   scrubbed export + run.json + flops.json for CPU tests
#   timing.tsv, log.txt             per item: seconds and exit status
#   captures/                       the captures' profile.sqlite (not for the commit; .nsys-rep removed)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:?usage: gpu_issue10.sh OUTDIR}
mkdir -p "$out/captures"
out=$(cd "$out" && pwd)
cap="$out/captures"
P=(python3 -m profkit)
budget=${PROFKIT_BUDGET_S:-200}
start=$SECONDS
dry=${PROFKIT_GPU_DRY:-0}
log() { echo "$*" | tee -a "$out/log.txt"; }
timed() {  # timed NAME CMD...: run, log seconds and status
  local name=$1 t0=$SECONDS rc; shift
  "$@" >> "$out/log.txt" 2>&1; rc=$?
  printf '%s\t%s\t%s\n' "$name" "$((SECONDS - t0))" "$rc" >> "$out/timing.tsv"
  [[ $rc == 0 ]] || log "FAILED ($rc): $name"
  return $rc
}
printf 'item\tseconds\trc\n' > "$out/timing.tsv"

small=small; nano=nanogpt; nano_shape=(--batch-size 6 --context-length 1024); device=()
if [[ $dry == 1 ]]; then
  small=tiny; nano=tiny; nano_shape=(--batch-size 2 --context-length 32); device=(--device cpu)
  log "dry run: tiny on CPU, flash as naive, no --compile"
fi

# 1. peaks (about 10 s)
timed doctor-measure-peaks "${P[@]}" doctor --measure-peaks
"${P[@]}" doctor > "$out/doctor.txt" 2>&1
python3 - "$out/peaks.json" >> "$out/log.txt" 2>&1 <<'EOF'
import shutil, sys
from profkit import peaks
found = peaks.cached()
if found:
    shutil.copyfile(peaks.entry_path(found[0].gpu, found[0].driver), sys.argv[1])
    print("peaks:", found[0].gpu, found[0].flops, found[0].bandwidth)
else:
    print("no measured peaks (doctor --measure-peaks failed?)")
EOF

post() {  # post NAME: flops.json from run.json's config, report flops (md, json, PNGs), report.md
  local name=$1 dir="$cap/$1" dst="$out/$1"
  mkdir -p "$dst"
  timed "$name:flops-count" python3 -c "
import sys; from pathlib import Path
from profkit import layout; from profkit.collect import flops
d = Path(sys.argv[1]); flops.write(flops.count(layout.RunRecord.read(d).config), d)" "$dir" || return
  cp "$dir/flops.json" "$dst/flops_count.json"
  cp "$dir/run.json" "$dst/run.json"
  rm -f "$dst/flops.md" "$dst/flops.json" "$dst/flops_measured.md" "$dst/roofline.png" "$dst/waterfall.png"
  timed "$name:report-flops" "${P[@]}" report flops "$dir" -o "$dst/flops.md" --png "$dst/roofline.png" \
    --waterfall "$dst/waterfall.png"
  timed "$name:report-flops-json" "${P[@]}" report flops "$dir" --format json -o "$dst/flops.json"
  timed "$name:report-flops-measured" "${P[@]}" report flops "$dir" --peaks measured -o "$dst/flops_measured.md"
  timed "$name:report-md" "${P[@]}" report "$dir" --force && cp "$dir/report.md" "$dst/report.md"
}

capture() {  # capture NAME EST_S PROFILE_ARGS...: skipped when the budget would be passed
  local name=$1 est=$2; shift 2
  if (( SECONDS - start + est > budget )); then
    log "SKIPPED (budget ${budget}s, $((SECONDS - start))s used): $name"; return
  fi
  timed "$name:profile" "${P[@]}" profile --name "$name" --out-dir "$cap" --force "${device[@]}" "$@" || return
  rm -f "$cap/$name/profile.nsys-rep"
  post "$name" &
}

# 2. nanogpt step bf16 flash, eager and compiled (the issue's headline: 25.8 / 16.8 ms against a ~4.8 ms floor)
attn_flash=flash; [[ $dry == 1 ]] && attn_flash=naive
capture nanogpt-step-bf16-flash 25 --model $nano --mode step --dtype bf16 --attn $attn_flash "${nano_shape[@]}" \
  --warmup 2 --steps 2
if [[ $dry == 1 ]]; then
  capture nanogpt-step-bf16-flash-compile 60 --model $nano --mode step --dtype bf16 --attn $attn_flash \
    "${nano_shape[@]}" --warmup 2 --steps 2
else  # torch.compile's default mode makes no CUDA graphs; the flag keeps any graph's kernels visible
  capture nanogpt-step-bf16-flash-compile 60 --model $nano --mode step --dtype bf16 --attn $attn_flash --compile \
    "${nano_shape[@]}" --warmup 2 --steps 2 -- --cuda-graph-trace=node
fi
# 3. small: step, fwd_bwd, fwd; fp32 naive, bf16 naive, bf16 flash (flash cannot run fp32: PyTorch refuses it)
for mode in step fwd_bwd fwd; do
  for cfg in "bf16 flash" "bf16 naive" "fp32 naive"; do
    set -- $cfg
    attn=$2; [[ $dry == 1 && $attn == flash ]] && attn=naive
    capture "small-$mode-$1-$2" 18 --model $small --mode $mode --dtype $1 --attn $attn --warmup 2 --steps 1
  done
done
wait
log "captures and reports: $((SECONDS - start)) s"

# 4. bytes: the replay's (autocast emulated on meta) against a real bf16 step's, per path (~10 s)
[[ $dry == 1 ]] && autocast_device=cpu || autocast_device=cuda
timed autocast-bytes python3 - "$out/autocast_bytes.json" "$small" "$autocast_device" <<'EOF'
import json, sys
import torch
from profkit import ranges
from profkit.collect import flops, hooks, workload
from profkit.config import RunConfig
out, model, device = sys.argv[1], sys.argv[2], torch.device(sys.argv[3])
cfg = RunConfig(model=model, mode="fwd_bwd", dtype="bf16", attn="naive", device=device.type)
replay = {r["path"]: r["bytes"] for r in flops.count(cfg)["paths"]}
w = workload.build_workload(cfg, device)
hooks.add_backward_ranges(w.model)
step = workload.make_step(cfg, w, w.model, device)
step()  # warm-up, as the replay's
c = flops.PathCounter(device_type=device.type)
with ranges.redirect(c.push, c.pop), c, ranges.phase("step_0"):
    step()
real = {p: r[2] for p, r in c.rows.items()}
inclusive = {}
for p, b in real.items():
    parts = p.split("/")
    for i in range(1, len(parts) + 1):
        inclusive["/".join(parts[:i])] = inclusive.get("/".join(parts[:i]), 0) + b
rows = [{"path": p, "replay_bytes": replay.get(p), "real_bytes": inclusive.get(p)} for p in sorted(set(replay) | set(inclusive))]
diff = [r for r in rows if r["replay_bytes"] != r["real_bytes"]]
json.dump({"device": str(device), "autocast": "real torch.autocast on the device vs profkit's emulation on meta",
           "paths": len(rows), "differing": len(diff), "rows": diff or rows[:5]}, open(out, "w"), indent=1)
print(f"autocast bytes: {len(diff)} of {len(rows)} paths differ")
EOF

# 5. a fixture for CPU tests: the compiled nanogpt step, scrubbed
fix="$out/fixture/h200_nanogpt_step_bf16_flash_compile"
src="$cap/nanogpt-step-bf16-flash-compile"
if [[ -f $src/profile.sqlite && -f $src/flops.json ]]; then
  rm -rf "$fix" && mkdir -p "$fix"
  timed fixture python3 -c "
import sys; from pathlib import Path; from profkit.scrub import scrub_export
print(scrub_export(Path(sys.argv[1]), Path(sys.argv[2])))" "$src/profile.sqlite" "$fix/profile.sqlite" &&
    cp "$src/run.json" "$src/flops.json" "$fix/" && du -sh "$fix" | tee -a "$out/log.txt"
  python3 - "$fix" "${PROFKIT_NSYS:-nsys}" <<'EOF' >> "$out/log.txt" 2>&1
import subprocess, sys
from pathlib import Path
from profkit.layout import RunRecord
fix = Path(sys.argv[1]); r = RunRecord.read(fix); e = r.environment
nsys = subprocess.run([sys.argv[2], "--version"], capture_output=True, text=True).stdout.strip()
(fix / "README.md").write_text(f"""# h200_nanogpt_step_bf16_flash_compile

A real Nsight Systems export, scrubbed (`profkit.scrub.scrub_export`), made by
`scripts/gpu_issue10.sh OUTDIR` on the GPU machine:

```
profkit profile --model nanogpt --mode step --dtype bf16 --attn flash --compile --batch-size 6 \\
    --context-length 1024 --warmup 2 --steps 2 --name nanogpt-step-bf16-flash-compile -- --cuda-graph-trace=node
```

- nsys: {nsys}
- GPU: {e.gpu}, driver {e.driver}; torch {e.torch}, CUDA {e.cuda}
- flops.json: `profkit flops` of the run's config (the meta replay), beside run.json
""")
EOF
else
  log "no fixture: the compiled nanogpt capture is missing"
fi
log "total: $((SECONDS - start)) s"
