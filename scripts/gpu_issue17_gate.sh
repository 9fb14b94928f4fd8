#!/usr/bin/env bash
# Issue 17, compare as a gate, on one GPU (nsys 2025.3.1 as $PROFKIT_NSYS): is --fail-above's noise rule
# right on real captures? Same-config captures must pass against each other, a real regression must fail,
# and the between-run spread of medians is measured against the within-run step spread the rule assumes.
#   bash scripts/gpu_issue17_gate.sh OUTDIR                    # about 7-9 min on an H200
#   PROFKIT_GPU_DRY=1 bash scripts/gpu_issue17_gate.sh OUTDIR  # the same steps on CPU (tiny, 3 steps: no kernels,
#                                                         # so the gates refuse; it checks the plumbing)
# Back in OUTDIR: env.txt, summary.txt (every item ok/FAIL), runs/run-K/run.json (5 bare runs of one config),
# noise.md (per run: median, 1.4826 x MAD; between runs: the medians' spread; the rule's verdict on every
# pair of runs at PCT 0/1/2/5 and k 1/2/3), captures/ (small: same-a, same-b, naive; tiny: gate-a, gate-b,
# gate-foreach), gates/*.json and *.txt (report compare --fail-above on each pair: JSON, stderr, exit code),
# gates.md (the table), fixtures/h200_tiny_step_bf16_gate_{a,b,foreach}/ (scrubbed exports and run.json).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:?usage: bash scripts/gpu_issue17_gate.sh OUTDIR}
mkdir -p "$out/captures" "$out/runs" "$out/gates" "$out/fixtures"
out=$(cd "$out" && pwd)
cap="$out/captures"
py=python3
[[ -x .venv/bin/python && -z "${PROFKIT_GPU_PY:-}" ]] && py=.venv/bin/python
[[ -n "${PROFKIT_GPU_PY:-}" ]] && py=$PROFKIT_GPU_PY
if [[ -n "${PROFKIT_GPU_DRY:-}" ]]; then
  SMALL=(--model tiny --device cpu --mode step); TINY=(--model tiny --device cpu --mode step)
  RUNW=(--warmup 1 --steps 4); CAPS=(--warmup 1 --steps 3); FIXS=(--warmup 1 --steps 3); NRUNS=2
else
  SMALL=(--model small --mode step --dtype bf16 --attn flash --optimizer adamw-fused)
  TINY=(--model tiny --mode step --dtype bf16 --attn flash)
  RUNW=(--warmup 10 --steps 30); CAPS=(--warmup 5 --steps 10); FIXS=(--warmup 5 --steps 8); NRUNS=5
fi
log() { echo "[gpu_issue17 $(date +%T)] $*" | tee -a "$out/summary.txt"; }
item() {
  local name=$1; shift
  log "start $name"
  if "$@" > "$out/$name.log" 2>&1; then log "ok    $name"; else log "FAIL  $name (exit $?): $(tail -n 3 "$out/$name.log" | tr '\n' ' ')"; fi
}
{ nvidia-smi -L 2>&1; nvidia-smi -q -d CLOCK 2>&1 | head -30; echo "PROFKIT_NSYS=${PROFKIT_NSYS:-}";
  $py -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } > "$out/env.txt" 2>&1
head -3 "$out/env.txt"

# 1. Bare runs of one config, one after another: the between-run spread the gate must not call a regression.
for k in $(seq 1 $NRUNS); do
  item "run-$k" $py -m profkit run "${SMALL[@]}" "${RUNW[@]}" --out "$out/runs/run-$k" --force
done
item noise $py - "$out" <<'PY'
import itertools, json, sys
from pathlib import Path
from profkit.analyze.gate import NoiseCheck, median, spread
out = Path(sys.argv[1])
runs = {p.parent.name: json.loads(p.read_text())["steps_ms"] for p in sorted(out.glob("runs/run-*/run.json"))}
lines = ["# Noise: bare runs of one config", "", "| run | steps | median ms | 1.4826 x MAD ms | min | max |",
         "| :--- | ---: | ---: | ---: | ---: | ---: |"]
for name, v in runs.items():
    lines.append(f"| {name} | {len(v)} | {median(v):.4f} | {spread(v):.4f} | {min(v):.4f} | {max(v):.4f} |")
meds = [median(v) for v in runs.values()]
if len(meds) > 1:
    lines += ["", f"Between runs: medians {min(meds):.4f} to {max(meds):.4f} ms (range {max(meds) - min(meds):.4f} ms, "
              f"{100 * (max(meds) - min(meds)) / min(meds):.2f}%), 1.4826 x MAD of the medians {spread(meds):.4f} ms; "
              f"within runs, the median spread {median([spread(v) for v in runs.values()]):.4f} ms.", ""]
lines += ["## The rule on every ordered pair of runs (all of one config: every FAIL is a false alarm)", "",
          "| PCT | k | pairs | FAIL | largest change % | its noise % |", "| ---: | ---: | ---: | ---: | ---: | ---: |"]
pairs = list(itertools.permutations(runs.values(), 2))
for pct in (0, 1, 2, 5):
    for k in (1, 2, 3):
        checks = [NoiseCheck("ms/step", "run", tuple(a), tuple(b), float(pct), float(k)) for a, b in pairs]
        worst = max(checks, key=lambda c: c.change_pct or 0, default=None)
        lines.append(f"| {pct} | {k} | {len(checks)} | {sum(c.failed for c in checks)} | "
                     + (f"{worst.change_pct:+.2f} | {worst.noise_pct or 0:.2f} |" if worst else "| |"))
(out / "noise.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY

# 2. Captures: two of one config and one slower (naive attention); tiny fixtures: two alike, one with foreach AdamW.
item cap-same-a $py -m profkit profile "${SMALL[@]}" "${CAPS[@]}" --name same-a --out-dir "$cap" --force
item cap-same-b $py -m profkit profile "${SMALL[@]}" "${CAPS[@]}" --name same-b --out-dir "$cap" --force
slower=("${SMALL[@]}"); [[ -z "${PROFKIT_GPU_DRY:-}" ]] && slower=(--model small --mode step --dtype bf16 --attn naive --optimizer adamw-fused)
item cap-naive $py -m profkit profile "${slower[@]}" "${CAPS[@]}" --name naive --out-dir "$cap" --force
item cap-gate-a $py -m profkit profile "${TINY[@]}" --optimizer adamw-fused "${FIXS[@]}" --name gate-a --out-dir "$cap" --force
item cap-gate-b $py -m profkit profile "${TINY[@]}" --optimizer adamw-fused "${FIXS[@]}" --name gate-b --out-dir "$cap" --force
item cap-gate-foreach $py -m profkit profile "${TINY[@]}" --optimizer adamw "${FIXS[@]}" --name gate-foreach --out-dir "$cap" --force

# 3. The gate on each pair, at PCT 0, 2 and 5, ms/step and three ranges: JSON, stderr and exit code.
gate() {  # NAME BASE NEW PCT
  local name=$1 base=$2 new=$3 pct=$4
  [[ -d "$cap/$base" && -d "$cap/$new" ]] || { log "skip  gate $name ($base or $new missing)"; return; }
  $py -m profkit report compare "$cap/$base" "$cap/$new" --fail-above "$pct" --range forward --range backward \
    --range optimizer --format json > "$out/gates/$name.json" 2> "$out/gates/$name.txt"
  local rc=$?
  echo "exit $rc" >> "$out/gates/$name.txt"
  log "gate  $name: exit $rc ($(grep -c ': FAIL$' "$out/gates/$name.txt") checks FAIL)"
}
for pct in 0 2 5; do
  gate "same-a_same-b_$pct" same-a same-b $pct
  gate "same-b_same-a_$pct" same-b same-a $pct
  gate "same-a_naive_$pct" same-a naive $pct
  gate "gate-a_gate-b_$pct" gate-a gate-b $pct
  gate "gate-a_gate-foreach_$pct" gate-a gate-foreach $pct
done
item gates-table $py - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
lines = ["# report compare --fail-above on real captures", "",
         "| pair (base -> new) | PCT | quantity | base ms | new ms | change % | noise % | result |",
         "| :--- | ---: | :--- | ---: | ---: | ---: | ---: | :--- |"]
for path in sorted(out.glob("gates/*.json")):
    try:
        doc = json.loads(path.read_text())
    except ValueError:
        lines.append(f"| {path.stem} | | (no JSON: {path.with_suffix('.txt').read_text().strip()[:100]}) | | | | | |")
        continue
    pair, pct = path.stem.rsplit("_", 1)
    for c in doc["checks"]:
        change = "new" if c["change_pct"] is None else f"{c['change_pct']:+.2f}"
        noise = "?" if c["noise_pct"] is None else f"{c['noise_pct']:.2f}"
        lines.append(f"| {pair} | {pct} | {c['quantity']} | {c['base_ms']:.4f} | {c['new_ms']:.4f} | {change} | "
                     f"{noise} | {c['result']} |")
(out / "gates.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY

# 4. Fixtures for the CPU tests: the tiny captures, scrubbed (exports embed the environment and host name).
for name in gate-a gate-b gate-foreach; do
  [[ -d "$cap/$name" ]] || continue
  dst="$out/fixtures/h200_tiny_step_bf16_${name#gate-}"
  rm -rf "$dst"; mkdir -p "$dst"
  item "fixture-$name" $py -c "
from pathlib import Path
from profkit.scrub import scrub_export
import shutil
src, dst = Path('$cap/$name'), Path('$dst')
print(scrub_export(src / 'profile.sqlite', dst / 'profile.sqlite'))
shutil.copyfile(src / 'run.json', dst / 'run.json')
"
done
du -sh "$out/fixtures"/* 2>/dev/null | tee -a "$out/summary.txt"
log "done: $out"
