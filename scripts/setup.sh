#!/usr/bin/env bash
# Set up .venv for profkit (idempotent). Sourced or run from the repository root.
#   bash scripts/setup.sh          # runtime only
#   PROFKIT_DEV=1 bash scripts/setup.sh   # with the test and lint tools
#   bash scripts/setup.sh --torch-index   # only print where torch would come from, and why
# torch: an installed torch is kept. Otherwise `torch==$PROFKIT_TORCH` (default 2.13.0) is
# installed before profkit, so profkit's `torch>=2.5` requirement is already met and pip never
# pulls a different build. Where from (torch_index below): $PROFKIT_TORCH_INDEX when set; pip's
# default index when an NVIDIA driver is present (a CUDA build); else PyTorch's CPU wheel index
# (public PyPI's Linux torch is the CUDA build, several GB of nvidia-* wheels), if it answers
# within 5 s, else pip's default index (on the project's machines that pin resolves to a local
# CPU wheel). For tests: PROFKIT_ASSUME_NO_DRIVER=1 ignores a driver; PROFKIT_CPU_INDEX and
# PROFKIT_PROBE_TIMEOUT replace the CPU index and the 5 s.
# profkit: `pip install -e .[extra]` is skipped while the venv's stamp holds this pyproject.toml's
# hash and profkit is installed editable from this checkout with every requirement met.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=${PROFKIT_VENV:-.venv}
TORCH=${PROFKIT_TORCH:-2.13.0}

# Sets TORCH_INDEX (empty: pip's default) and TORCH_WHY.
torch_index() {
  local cpu=${PROFKIT_CPU_INDEX:-https://download.pytorch.org/whl/cpu} err
  TORCH_INDEX=""
  if [ -n "${PROFKIT_TORCH_INDEX:-}" ]; then
    TORCH_INDEX=$PROFKIT_TORCH_INDEX TORCH_WHY="PROFKIT_TORCH_INDEX is set"
  elif [ -z "${PROFKIT_ASSUME_NO_DRIVER:-}" ] && { command -v nvidia-smi >/dev/null || [ -e /proc/driver/nvidia ]; }; then
    TORCH_WHY="an NVIDIA driver is present"
  elif err=$(python3 - "$cpu" "${PROFKIT_PROBE_TIMEOUT:-5}" <<'EOF'
import sys, threading, urllib.error, urllib.request
url, timeout = sys.argv[1].rstrip("/") + "/torch/", float(sys.argv[2])
out = []
def probe() -> None:
    try:
        urllib.request.urlopen(url, timeout=timeout).close()
        out.append("")
    except urllib.error.URLError as e:
        out.append(str(getattr(e, "reason", e)))
    except Exception as e:
        out.append(f"{type(e).__name__}: {e}")
t = threading.Thread(target=probe, daemon=True)
t.start()
t.join(timeout)  # bounds the name lookup too, which urlopen's timeout does not
print(out[0] if out else f"no answer in {timeout:g} s", end="")
sys.exit(1 if not out or out[0] else 0)
EOF
  ); then
    TORCH_INDEX=$cpu TORCH_WHY="no NVIDIA driver: PyTorch's CPU wheels"
  else
    TORCH_WHY="no NVIDIA driver, but $cpu cannot be reached: $err"
  fi
}
torch_line() {
  local from=${TORCH_INDEX:-"pip's default index"}
  echo "setup: torch==$TORCH from $from ($TORCH_WHY)"
}

if [ "${1:-}" = "--torch-index" ]; then torch_index; torch_line; exit 0; fi

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV" || { echo "Error: python3 -m venv failed; on Debian/Ubuntu: apt-get install python3-venv" >&2; exit 1; }
fi
PY="$VENV/bin/python"
# Presence only: importing torch costs seconds, and the last line imports it anyway.
if ! "$PY" -I -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is None)'; then
  torch_index
  torch_line >&2
  "$PY" -m pip install -q ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} "torch==$TORCH"
fi

extra=""
[ -n "${PROFKIT_DEV:-}" ] && extra="dev"
# profkit_state check|write: `check` exits 0 when nothing needs installing (else prints why);
# `write` records pyproject.toml's hash after an install.
profkit_state() {
  "$PY" -I - "$1" "$extra" "$VENV/.profkit-setup-stamp" <<'EOF'
import hashlib, json, sys
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse
mode, extra, stamp = sys.argv[1], sys.argv[2], Path(sys.argv[3])
digest = hashlib.sha256(Path("pyproject.toml").read_bytes()).hexdigest()
if mode == "write":
    stamp.write_text(digest + "\n")
    sys.exit(0)
def stale() -> str:
    if not stamp.is_file() or stamp.read_text().strip() != digest:
        return "pyproject.toml changed since the last install" if stamp.is_file() else "no install stamp"
    try:
        dist = metadata.distribution("profkit")
    except metadata.PackageNotFoundError:
        return "profkit is not installed"
    url = json.loads(dist.read_text("direct_url.json") or "{}")
    if not url.get("dir_info", {}).get("editable") or \
            Path(unquote(urlparse(url.get("url", "")).path)).resolve() != Path.cwd().resolve():
        return "profkit is not installed editable from this checkout"
    try:
        from packaging.requirements import Requirement
    except ImportError:
        from pip._vendor.packaging.requirements import Requirement
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker and not req.marker.evaluate({"extra": extra}):
            continue
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            return f"{req.name} is missing"
        if not req.specifier.contains(version, prereleases=True):
            return f"{req.name} {version} does not meet {req.specifier}"
    return ""
why = stale()
print(why, end="")
sys.exit(1 if why else 0)
EOF
}
if why=$(profkit_state check); then
  echo "setup: profkit${extra:+[$extra]} already installed from this checkout; pip install skipped" >&2
else
  echo "setup: installing profkit${extra:+[$extra]} ($why)" >&2
  "$PY" -m pip install -q -e ".${extra:+[$extra]}"
  profkit_state write
fi
echo "setup: $("$PY" -c 'import torch, profkit; print(f"profkit {profkit.__version__}, torch {torch.__version__}")') in $VENV" >&2
