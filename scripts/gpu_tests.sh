#!/usr/bin/env bash
# The GPU tier (tests/gpu, @pytest.mark.gpu), on a machine with a CUDA GPU and nsys:
#   bash scripts/gpu_tests.sh OUTDIR
# captures the built-in models with `profkit profile`, reports them end to end, and writes what
# pytest prints (OUTDIR/pytest.txt) and each capture's report.md (OUTDIR/NAME.report.md) into
# OUTDIR, for reports/. The captures themselves go to a temporary folder (KEEP=1 keeps them in
# OUTDIR/captures). Fails when nothing ran: every test skipped means no GPU or no nsys here.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:?usage: bash scripts/gpu_tests.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
if [[ "${KEEP:-}" == 1 ]]; then
    captures="$out/captures"
    mkdir -p "$captures"
else
    captures=$(mktemp -d)
    trap 'rm -rf "$captures"' EXIT
fi
py=.venv/bin/python
[[ -x "$py" ]] || py=python3

status=0
PROFKIT_GPU_OUT="$captures" "$py" -m pytest tests/gpu -m gpu -v -p no:cacheprovider 2>&1 | tee "$out/pytest.txt" \
    || status=$?
for report in "$captures"/*/report.md; do
    [[ -f "$report" ]] && cp "$report" "$out/$(basename "$(dirname "$report")").report.md"
done
if ! grep -qE '[0-9]+ passed' "$out/pytest.txt"; then
    echo "gpu_tests: no GPU test ran (a CUDA GPU and nsys are needed; see profkit doctor)" >&2
    status=1
fi
echo "gpu_tests: output in $out" >&2
exit "$status"
