"""`profkit profile` and `profkit doctor`: command building, nsys discovery, failures, and a
real end-to-end capture with nsys on CPU (CI installs nsys; PROFKIT_REQUIRE_NSYS=1 makes its
absence a failure instead of a skip)."""

from __future__ import annotations

import json
import os
import shlex
import sqlite3
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from profkit.cli import cli
from profkit.collect import launch
from profkit.collect.launch import CaptureError
from profkit.config import RunConfig
from profkit.nsys import (
    Nsys,
    NsysError,
    NsysNotFound,
    build_profile_command,
    cuda_limits,
    find_nsys,
    kit_env,
    parse_version,
)
from profkit.pipeline import ExportSummary, InputError, check_export, summarize_export
from profkit.scrub import scrub_export
from tests.conftest import TESTS, real_nsys

NSYS = Path("/opt/nsys/bin/nsys")
PY = "/usr/bin/python3"
GPU_DEFAULT_ARGS = ["--trace=cuda,nvtx,osrt,cublas,cudnn", "--capture-range=cudaProfilerApi",
                    "--capture-range-end=stop", "--sample=none", "--cpuctxsw=none", "--cuda-memory-usage=true"]


def nsys_part(cmd: list[str]) -> list[str]:
    """The nsys options of a built command (between `profile` and --output)."""
    return cmd[2:cmd.index(next(a for a in cmd if a.startswith("--output=")))]


@pytest.mark.parametrize("user,device,expected", [
    ([], "cuda", GPU_DEFAULT_ARGS),
    ([], "cpu", ["--trace=nvtx,osrt", "--sample=none", "--cpuctxsw=none"]),
    (["-t", "cuda,nvtx"], "cuda", ["-t", "cuda,nvtx", *GPU_DEFAULT_ARGS[1:]]),
    (["--trace=cuda"], "cuda", ["--trace=cuda", *GPU_DEFAULT_ARGS[1:]]),
    (["--capture-range", "none", "--pytorch=autograd-nvtx"], "cuda",
     ["--capture-range", "none", "--pytorch=autograd-nvtx", GPU_DEFAULT_ARGS[0], *GPU_DEFAULT_ARGS[2:]]),
    (["-s", "cpu", "--cpuctxsw=process-tree"], "cuda",
     ["-s", "cpu", "--cpuctxsw=process-tree", *GPU_DEFAULT_ARGS[:3], GPU_DEFAULT_ARGS[5]]),
])
def test_nsys_defaults_and_user_overrides(user: list[str], device: str, expected: list[str]) -> None:
    cmd = build_profile_command(NSYS, RunConfig(model="tiny"), device=device, user_args=user, out=Path("p/x"),
                                python=PY)
    assert cmd[:2] == [str(NSYS), "profile"]
    assert nsys_part(cmd) == expected


GRAPH_FLAG = {"--cuda-graph-trace"}


@pytest.mark.parametrize("user,flags,device,expected", [
    ([], GRAPH_FLAG, "cuda", [*GPU_DEFAULT_ARGS, "--cuda-graph-trace=node"]),
    ([], set(), "cuda", GPU_DEFAULT_ARGS),  # an nsys that lists no such flag is not given it
    ([], GRAPH_FLAG, "cpu", ["--trace=nvtx,osrt", "--sample=none", "--cpuctxsw=none"]),  # no CUDA, no graphs
    (["--cuda-graph-trace=graph"], GRAPH_FLAG, "cuda", ["--cuda-graph-trace=graph", *GPU_DEFAULT_ARGS]),
    (["--cuda-graph-trace", "graph:host-only"], GRAPH_FLAG, "cuda",
     ["--cuda-graph-trace", "graph:host-only", *GPU_DEFAULT_ARGS]),
])
def test_cuda_graphs_traced_node_by_node_by_default(user: list[str], flags: set[str], device: str,
                                                    expected: list[str]) -> None:
    cmd = build_profile_command(NSYS, RunConfig(model="tiny"), device=device, user_args=user, out=Path("p/x"),
                                python=PY, flags=flags)
    assert nsys_part(cmd) == expected


@pytest.mark.nsys
def test_the_found_nsys_lists_cuda_graph_trace() -> None:
    """The flag is read from the nsys in use (2023.4.4 in CI has it): profkit profile passes it on CUDA."""
    from profkit.nsys import profile_flags

    nsys = real_nsys()
    flags = profile_flags(nsys)
    assert "--cuda-graph-trace" in flags
    cmd = build_profile_command(nsys.path, RunConfig(model="tiny"), device="cuda", user_args=[], out=Path("o"),
                                python=PY, flags=flags)
    assert "--cuda-graph-trace=node" in cmd


def test_profiled_program_and_output() -> None:
    cfg = RunConfig(model="small", mode="step", dtype="bf16", compile=True, steps=3)
    cmd = build_profile_command(NSYS, cfg, device="cuda", user_args=[], out=Path("profiles/.a b.partial"),
                                python=PY)
    tail = cmd[len(GPU_DEFAULT_ARGS) + 2:]
    assert tail == ["--output=profiles/.a b.partial/profile", "--force-overwrite=true", PY, "-m", "profkit", "run",
                    "--mode", "step", "--dtype", "bf16", "--compile", "--steps", "3", "--device", "cuda",
                    "--out", "profiles/.a b.partial", "--force"]
    # No shell: a space in a path stays one argument, and shlex quotes it for display.
    assert "'--output=profiles/.a b.partial/profile'" in shlex.join(cmd)


def test_device_given_is_passed_once() -> None:
    cmd = build_profile_command(NSYS, RunConfig(model="tiny", device="cpu"), device="cpu", user_args=[],
                                out=Path("o"), python=PY)
    assert cmd.count("--device") == 1 and cmd[cmd.index("--device") + 1] == "cpu"


@pytest.mark.parametrize("user", [["-o", "x"], ["--output=x"], ["--output", "x"]])
def test_output_is_profkits(user: list[str]) -> None:
    with pytest.raises(NsysError, match="--output is profkit's to set"):
        build_profile_command(NSYS, RunConfig(), device="cuda", user_args=user, out=Path("o"))


@pytest.mark.parametrize("text,version", [
    ("NVIDIA Nsight Systems version 2023.4.4.54-234433681190v0", (2023, 4, 4, 54)),
    ("NVIDIA Nsight Systems version 2025.3.1.90-253135822126v0", (2025, 3, 1, 90)),
    ("NVIDIA Nsight Systems version 2022.4.2.1-df9881f", (2022, 4, 2, 1)),
])
def test_parse_version(text: str, version: tuple[int, ...]) -> None:
    assert parse_version(text) == version


@pytest.mark.parametrize("version,cuda,limited", [
    ((2023, 4, 4, 54), "13.0", True),
    ((2023, 4, 4, 54), "12.4", False),
    ((2025, 3, 1, 0), "13.0", False),
    ((2022, 4, 2, 1), "12.1", True),
    ((2023, 4, 4, 54), None, False),
])
def test_cuda_limits(version: tuple[int, ...], cuda: str | None, limited: bool) -> None:
    assert bool(cuda_limits(version, cuda)) is limited


def fake_kit(root: Path, version: str) -> Path:
    """An NVIDIA-style kit whose nsys prints `version`, with a syslib/ beside it."""
    (root / "target-linux-x64").mkdir(parents=True)
    (root / "syslib").mkdir()
    nsys = root / "target-linux-x64" / "nsys"
    nsys.write_text(f"#!/bin/sh\necho 'NVIDIA Nsight Systems version {version}-x'\n")
    nsys.chmod(0o755)
    return nsys


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = fake_kit(tmp_path / "a", "2025.3.1.90")
    env = fake_kit(tmp_path / "b", "2024.1.1.1")
    on_path = fake_kit(tmp_path / "c", "2023.4.4.54")
    monkeypatch.setenv("PATH", f"{on_path.parent}:{os.environ['PATH']}")
    monkeypatch.setenv("PROFKIT_NSYS", str(env))
    assert find_nsys(str(explicit)).source == "--nsys"
    found = find_nsys()
    assert (found.source, found.version) == ("$PROFKIT_NSYS", (2024, 1, 1, 1))
    assert found.env["LD_LIBRARY_PATH"].split(":")[0] == str(tmp_path / "b" / "syslib")
    monkeypatch.delenv("PROFKIT_NSYS")
    assert find_nsys().source == "PATH"
    with pytest.raises(NsysNotFound, match=r"nsys from --nsys \(/nope\) is not an executable file; install it with "
                                           r"scripts/install_nsys.sh"):
        find_nsys("/nope")


def test_kit_env_without_syslib(tmp_path: Path) -> None:
    nsys = tmp_path / "nsys"
    nsys.touch()
    assert kit_env(nsys) == {}


@pytest.mark.parametrize("summary,device,message", [
    (ExportSummary(None, {"step_0": 1, "forward": 1}), "cuda", "the export has no kernels table although"),
    (ExportSummary(0, {"step_0": 1, "forward": 1}), "cuda", "the export has no kernels although the run used CUDA"),
    (ExportSummary(None, {"forward": 1}), "cpu", r"NVTX ranges profkit emitted are missing from the export \(step_0\)"),
    (ExportSummary(None, {}), "cpu", r"missing from the export \(forward, step_0\): this nsys did not record"),
])
def test_check_export_refuses(summary: ExportSummary, device: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        check_export(summary, device=device, steps=1, ranges=True)


def test_check_export_accepts() -> None:
    check_export(ExportSummary(12, {"step_0": 1, "step_1": 1, "forward": 2}), device="cuda", steps=2, ranges=True)
    # --nvtx off: no ranges were emitted, so none are expected (the export still needs its kernels).
    check_export(ExportSummary(12, {}), device="cuda", steps=2, ranges=False)
    with pytest.raises(InputError, match="no kernels although"):
        check_export(ExportSummary(0, {}), device="cuda", steps=2, ranges=False)


@pytest.mark.parametrize("mode,first_line", [
    ("analysis_failed", "Error: nsys 2099.1.1.1's analysis of the trace failed (it met CUDA calls it does not know), "
                        "so its export would hold only part of the run; use a newer nsys"),
    ("partial_analysis", "Error: nsys 2099.1.1.1's analysis of the trace failed (it met CUDA calls it does not "
                         "know), so its export would hold only part of the run"),
    ("program_fails", "Error: the profiled program failed (exit code 1):"),
    ("ok_no_ranges", "Error: NVTX ranges profkit emitted are missing from the export (forward, step_0)"),
    # A warning about an unknown call alone is not a failed analysis (seen with nsys 2023.4.4).
    ("warns_but_works", "Error: NVTX ranges profkit emitted are missing from the export (forward, step_0)"),
])
def test_failures_one_cause_and_nothing_in_the_way(tmp_path: Path, mode: str, first_line: str) -> None:
    fake = TESTS / "fake_nsys.py"
    env = {"FAKE_NSYS_MODE": mode}
    args = ["profile", "--model", "tiny", "--device", "cpu", "--steps", "1", "--name", "cap", "--out-dir",
            str(tmp_path), "--nsys", str(fake)]
    result = CliRunner(env=env).invoke(cli, args)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith(first_line)
    assert "Traceback" not in result.stderr or mode == "program_fails"
    if mode == "program_fails":
        assert "RuntimeError: boom" in result.stderr  # the tail of the program's output
    assert f"(log: {tmp_path / 'cap.failed' / 'nsys.log'})" in result.stderr
    assert not (tmp_path / "cap").exists() and not (tmp_path / ".cap.partial").exists()
    assert (tmp_path / "cap.failed" / "nsys.log").exists()
    # The next attempt is not blocked by the failed one.
    result = CliRunner(env=env).invoke(cli, args)
    assert result.stderr.splitlines()[0].startswith(first_line)


@pytest.mark.parametrize("options,user,message", [
    (["--compile"], [], "nsys 2023.4.4.54 loses most kernels of a torch.compile'd CUDA 13.0 run; use nsys 2025.1"),
    ([], ["--capture-range=none"], "nsys 2023.4.4.54 cannot analyse a whole-program capture of a CUDA 13.0 program"),
])
def test_old_nsys_limits_are_refused_up_front(tmp_path: Path, options: list[str], user: list[str],
                                               message: str) -> None:
    nsys = Nsys(fake_kit(tmp_path / "kit", "2023.4.4.54"), (2023, 4, 4, 54), "--nsys")
    cfg = RunConfig(model="tiny", compile="--compile" in options)
    with pytest.raises(CaptureError, match=message):
        launch.refuse_early(nsys, cfg, device="cuda", cuda="13.0", user_args=user)
    assert not (tmp_path / "x").exists() and not (tmp_path / ".x.partial").exists()


def test_existing_capture_is_kept(tmp_path: Path) -> None:
    (tmp_path / "cap").mkdir()
    (tmp_path / "cap" / "profile.sqlite").write_text("mine")
    result = CliRunner().invoke(cli, ["profile", "--model", "tiny", "--device", "cpu", "--name", "cap",
                                      "--out-dir", str(tmp_path), "--nsys", str(TESTS / "fake_nsys.py")])
    assert result.exit_code == 2
    assert result.stderr == f"Error: {tmp_path / 'cap'} exists; choose another --name or pass --force to replace it\n"
    assert (tmp_path / "cap" / "profile.sqlite").read_text() == "mine"


def test_nsys_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROFKIT_NSYS", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("profkit.nsys.DEFAULT_PREFIX", tmp_path / "none")
    result = CliRunner().invoke(cli, ["profile", "--model", "tiny", "--device", "cpu", "--out-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr == ("Error: nsys not found; install it with scripts/install_nsys.sh, or pass --nsys PATH / "
                             "set PROFKIT_NSYS\n")


def test_doctor_names_missing_nsys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROFKIT_NSYS", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("profkit.nsys.DEFAULT_PREFIX", tmp_path / "none")
    from profkit.collect.doctor import diagnose

    rows = {what: (found, fix) for what, found, fix in diagnose()}
    assert rows["nsys"] == ("nsys not found", "bash scripts/install_nsys.sh")
    assert rows["nvtx package"] == ("0.2.10", "")
    assert rows["torch"][1] == ""


def test_doctor_with_fake_old_nsys(tmp_path: Path) -> None:
    from profkit.collect.doctor import diagnose

    nsys = fake_kit(tmp_path, "2023.4.4.54")
    rows = {what: (found, fix) for what, found, fix in diagnose(str(nsys))}
    assert rows["nsys"] == (f"2023.4.4.54 at {nsys} (from --nsys)", "")
    result = CliRunner().invoke(cli, ["doctor", "--nsys", str(nsys)])
    assert result.exit_code == 0 and "nvtx package" in result.stdout


def test_scrub_removes_environment_and_host(tmp_path: Path) -> None:
    src = tmp_path / "a.sqlite"
    db = sqlite3.connect(src)
    db.execute("CREATE TABLE StringIds (id INTEGER PRIMARY KEY, value TEXT)")
    db.executemany("INSERT INTO StringIds VALUES (?, ?)", [(1, "HOME=/home/alice"), (2, "step_0"),
                                                            (3, "SECRET_TOKEN=abc123"), (4, "a = b")])
    db.execute("CREATE TABLE TARGET_INFO_SYSTEM_ENV (name TEXT, value TEXT)")
    db.executemany("INSERT INTO TARGET_INFO_SYSTEM_ENV VALUES (?, ?)",
                   [("Hostname", "alice-laptop"), ("DeviceEnvironment", "HOME=/home/alice;X=1"), ("CpuCores", "2")])
    db.execute("CREATE TABLE META_DATA_CAPTURE (name TEXT, value TEXT)")
    db.executemany("INSERT INTO META_DATA_CAPTURE VALUES (?, ?)",
                   [("PROCESS_0:ENVIRONMENT_VARIABLE", 'API_KEY="abc123"'), ("PROCESS_0:ARGUMENT_0", "-m")])
    db.commit()
    db.close()
    dst = tmp_path / "b.sqlite"
    assert scrub_export(src, dst) == {"strings": 2, "system": 2, "metadata": 1}
    db = sqlite3.connect(dst)
    assert db.execute("SELECT value FROM StringIds ORDER BY id").fetchall() == [
        ("<scrubbed>",), ("step_0",), ("<scrubbed>",), ("a = b",)]
    assert dict(db.execute("SELECT * FROM TARGET_INFO_SYSTEM_ENV")) == {
        "Hostname": "<scrubbed>", "DeviceEnvironment": "<scrubbed>", "CpuCores": "2"}
    assert db.execute("SELECT * FROM META_DATA_CAPTURE").fetchall() == [
        ("PROCESS_0:ENVIRONMENT_VARIABLE", "<scrubbed>"), ("PROCESS_0:ARGUMENT_0", "-m")]
    db.close()
    raw = dst.read_bytes()
    assert b"alice" not in raw and b"abc123" not in raw  # not left behind in free pages
    with pytest.raises(FileExistsError):
        scrub_export(src, dst)


# --- with the real nsys, on CPU ---------------------------------------------------------

def nvtx_paths(sqlite: Path) -> list[tuple[int, str, int, int]]:
    """(thread, path, start, end) of every NVTX push/pop range, nesting by time on each thread."""
    db = sqlite3.connect(f"file:{sqlite}?mode=ro", uri=True)
    rows = db.execute(
        "SELECT n.globalTid, coalesce(n.text, s.value), n.start, n.end FROM NVTX_EVENTS n "
        "LEFT JOIN StringIds s ON s.id = n.textId WHERE n.eventType = "
        "(SELECT id FROM ENUM_NSYS_EVENT_TYPE WHERE name = 'NvtxPushPopRange') ORDER BY n.globalTid, n.start, "
        "n.end DESC").fetchall()
    db.close()
    out, stack, last_tid = [], [], None
    for tid, name, start, end in rows:
        if tid != last_tid:
            stack, last_tid = [], tid
        while stack and stack[-1][2] <= start:
            stack.pop()
        assert not stack or end <= stack[-1][2], f"{name} overlaps {stack[-1][0]} without nesting"
        stack.append((name, start, end))
        out.append((tid, "/".join(s[0] for s in stack), start, end))
    return out


@pytest.mark.nsys
def test_end_to_end_capture_on_cpu(tmp_path: Path) -> None:
    nsys = real_nsys()
    result = CliRunner().invoke(cli, ["profile", "--model", "tiny", "--mode", "step", "--device", "cpu",
                                      "--warmup", "1", "--steps", "2", "--name", "tiny", "--out-dir", str(tmp_path),
                                      "--nsys", str(nsys.path)])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "tiny"
    assert sorted(p.name for p in folder.iterdir()) == ["nsys.log", "profile.nsys-rep", "profile.sqlite", "run.json"]
    assert f"capture: {folder}/" in result.stdout
    assert "Step time (2 measured steps): median " in result.stdout and "(under nsys)" in result.stdout
    assert result.stdout.endswith(f"next: profkit report {folder}\n")
    # run.json names the final folder, not the .partial one it was written in, and is not world-writable
    # (nsys runs the program with umask 0).
    run = json.loads((folder / "run.json").read_text())
    assert run["config"]["out"] == str(folder) and run["config"]["force"] is False
    assert stat.S_IMODE((folder / "run.json").stat().st_mode) == 0o644
    paths = [p for _, p, _, _ in nvtx_paths(folder / "profile.sqlite")]
    for step in ("step_0", "step_1"):
        for expected in ("forward", "forward/embed", "forward/layer_0/attention/attn_softmax", "forward/layer_1/mlp",
                         "forward/lm_head", "forward/loss", "backward", "backward/lm_head", "backward/layer_1",
                         "backward/layer_1/mlp", "backward/layer_0/attention", "optimizer"):
            assert paths.count(f"{step}/{expected}") == 1, f"{step}/{expected}"
    assert "warmup" in paths and "warmup/forward/layer_0" in paths  # CPU: whole program captured
    assert len([p for p in paths if p.startswith("step_")]) == 2 * len([p for p in paths if p.startswith("step_0")])
    # Backward nests layer by layer, last layer first.
    bwd = [p for p in paths if p.startswith("step_0/backward/layer_") and p.count("/") == 2]
    assert bwd == ["step_0/backward/layer_1", "step_0/backward/layer_0"]
    check_export(summarize_export(folder / "profile.sqlite"), device="cpu", steps=2, ranges=True)
    # profkit's ranges sit in their own NVTX domain, apart from PyTorch's push/pop stack.
    db = sqlite3.connect(f"file:{folder / 'profile.sqlite'}?mode=ro", uri=True)
    domains = db.execute("SELECT DISTINCT n.domainId, d.text FROM NVTX_EVENTS n JOIN NVTX_EVENTS d ON "
                         "d.domainId = n.domainId AND d.eventType = 75 WHERE n.eventType = 59").fetchall()
    db.close()
    assert [name for _, name in domains] == ["profkit"]
