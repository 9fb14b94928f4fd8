"""scripts/setup.sh's decisions, without installing anything: where torch comes from
(`--torch-index`) and whether profkit needs `pip install -e .` again (its install stamp)."""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SETUP = ROOT / "scripts" / "setup.sh"


def torch_line(tmp_path: Path, **env: str) -> str:
    """The line `setup.sh --torch-index` prints, with no nvidia-smi on PATH unless env's PATH has one."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PROFKIT_")}
    base["PATH"] = env.pop("PATH", os.pathsep.join(p for p in base["PATH"].split(os.pathsep)
                                                    if not (Path(p) / "nvidia-smi").exists()))
    out = subprocess.run(["bash", str(SETUP), "--torch-index"], env={**base, **env}, cwd=tmp_path,
                         capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.count("\n") == 1, out.stdout
    return out.stdout.strip()


@pytest.fixture
def cpu_index() -> Iterator[str]:
    """A local stand-in for PyTorch's CPU index: answers GET /torch/ with 200."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/torch/" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_override_wins_and_is_not_probed(tmp_path: Path) -> None:
    line = torch_line(tmp_path, PROFKIT_TORCH_INDEX=f"http://127.0.0.1:{closed_port()}/x", PROFKIT_TORCH="2.9.1")
    assert line.startswith("setup: torch==2.9.1 from http://127.0.0.1:") and "(PROFKIT_TORCH_INDEX is set)" in line


def test_driver_present_uses_default_index(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\nexit 0\n")
    (fake / "nvidia-smi").chmod(0o755)
    line = torch_line(tmp_path, PATH=f"{fake}{os.pathsep}{os.environ['PATH']}",
                      PROFKIT_CPU_INDEX=f"http://127.0.0.1:{closed_port()}/")
    assert line == "setup: torch==2.13.0 from pip's default index (an NVIDIA driver is present)"


def test_no_driver_reachable_cpu_index(tmp_path: Path, cpu_index: str) -> None:
    line = torch_line(tmp_path, PROFKIT_ASSUME_NO_DRIVER="1", PROFKIT_CPU_INDEX=cpu_index)
    assert line == f"setup: torch==2.13.0 from {cpu_index} (no NVIDIA driver: PyTorch's CPU wheels)"


def test_no_driver_refused_cpu_index_falls_back(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/"
    line = torch_line(tmp_path, PROFKIT_ASSUME_NO_DRIVER="1", PROFKIT_CPU_INDEX=url)
    assert line.startswith(f"setup: torch==2.13.0 from pip's default index (no NVIDIA driver, but {url} "
                           "cannot be reached: "), line


def test_no_driver_silent_cpu_index_falls_back_in_time(tmp_path: Path) -> None:
    """A server that accepts and never answers (a black-holed network) costs the timeout, no more."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        url = f"http://127.0.0.1:{s.getsockname()[1]}/"
        start = time.monotonic()
        line = torch_line(tmp_path, PROFKIT_ASSUME_NO_DRIVER="1", PROFKIT_CPU_INDEX=url, PROFKIT_PROBE_TIMEOUT="0.5")
        assert time.monotonic() - start < 5
    assert "from pip's default index (no NVIDIA driver, but" in line and "cannot be reached" in line, line


# The install stamp, checked with the interpreter running these tests: a venv whose bin/python
# runs it, and whose stamp lies in tmp_path.
def editable_here() -> bool:
    # -I: without the checkout on sys.path, whose profkit.egg-info would be found first.
    code = ("import importlib.metadata as m, sys; "
            "d = m.distribution('profkit').read_text('direct_url.json') or ''; "
            "sys.exit(not ('\"editable\": true' in d and sys.argv[1] in d))")
    found = subprocess.run([sys.executable, "-I", "-c", code, ROOT.resolve().as_uri()], capture_output=True)
    return found.returncode == 0


needs_editable = pytest.mark.skipif(not editable_here(), reason="profkit is not installed editable from this checkout")


def install_state(tmp_path: Path, stamp: str | None) -> str:
    """What setup.sh says about profkit; a `-m pip` call stops it (the venv's python refuses one)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    (venv / "bin" / "python").write_text('#!/bin/sh\n[ "$1 $2" = "-m pip" ] && { echo "pip was run" >&2; exit 3; }\n'
                                         f'exec "{sys.executable}" "$@"\n')
    (venv / "bin" / "python").chmod(0o755)
    if stamp is not None:
        (venv / ".profkit-setup-stamp").write_text(stamp)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROFKIT_")}
    env["PROFKIT_VENV"] = str(venv)
    out = subprocess.run(["bash", str(SETUP)], env=env, capture_output=True, text=True, timeout=60)
    return out.stderr


@needs_editable
def test_stamp_of_this_pyproject_skips_pip(tmp_path: Path) -> None:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    err = install_state(tmp_path, digest + "\n")
    assert "pip install skipped" in err and "pip was run" not in err, err


@needs_editable
@pytest.mark.parametrize("stamp,why", [(None, "no install stamp"),
                                       ("0" * 64, "pyproject.toml changed since the last install")])
def test_missing_or_stale_stamp_reinstalls(tmp_path: Path, stamp: str | None, why: str) -> None:
    err = install_state(tmp_path, stamp)
    assert f"setup: installing profkit ({why})" in err and "pip was run" in err, err
