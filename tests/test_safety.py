"""Every input and output safe (issue 7): one `Error: ...` line, exit code 2, no traceback, and
nothing written or lost; outputs go where they are asked to, and nowhere else."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result

from profkit.cli import cli
from tests.conftest import ENCODER, TESTS, real_nsys

FAKE = TESTS / "fake_nsys.py"
NAME_RULE = "must be one folder name (letters, digits, . _ + = , @ -, not starting with . or -), not a path"


def invoke(*args: object, env: dict[str, str] | None = None) -> Result:
    return CliRunner(env=env).invoke(cli, [str(a) for a in args])


def assert_one_error(result: Result, message: str) -> None:
    """Exactly `Error: message` on stderr, exit code 2, and no exception escaped (no traceback)."""
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2
    assert result.stderr == f"Error: {message}\n"
    assert "Traceback" not in result.output


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# --- outputs ---------------------------------------------------------------------------------

def test_output_into_missing_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert_one_error(invoke("report", "kernels", ENCODER, "-o", "missing_dir/x.md"),
                     "cannot write missing_dir/x.md: folder missing_dir does not exist")
    assert_one_error(invoke("report", "compare", ENCODER, ENCODER, "-o", "missing_dir/x"),
                     "cannot write missing_dir/x: folder missing_dir does not exist")
    assert tree(tmp_path) == []


def test_dash_is_stdout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    plain = invoke("report", "kernels", ENCODER, "--format", "csv")
    dash = invoke("report", "kernels", ENCODER, "--format", "csv", "-o", "-")
    assert dash.exit_code == 0 and dash.stdout == plain.stdout and dash.stdout.startswith("name,category,")
    assert dash.stderr == ""
    assert tree(tmp_path) == []  # no file named `-`


@pytest.mark.parametrize("args", [["kernels", ENCODER], ["kernels", ENCODER, "--by", "category"],
                                  ["nvtx", ENCODER], ["compare", ENCODER, ENCODER]])
def test_json_to_stdout_ends_with_one_newline(args: list[object]) -> None:
    result = invoke("report", *args, "--format", "json")
    assert result.exit_code == 0
    assert result.stdout.endswith("]\n") and not result.stdout.endswith("\n\n")
    assert json.loads(result.stdout)


def test_report_md_kept_unless_force(tmp_path: Path) -> None:
    folder = tmp_path / "enc"
    folder.mkdir()
    shutil.copyfile(ENCODER, folder / "profile.sqlite")
    (folder / "report.md").write_text("my notes\n")
    assert_one_error(invoke("report", folder), f"{folder / 'report.md'} exists; pass --force to replace it")
    assert (folder / "report.md").read_text() == "my notes\n"
    assert sorted(p.name for p in folder.iterdir()) == ["profile.sqlite", "report.md"]
    result = invoke("report", folder, "--force")
    assert result.exit_code == 0, result.output
    text = (folder / "report.md").read_text()
    assert text.startswith("# enc\n\n## What bounds the step") and "234 kernels, 8.902 ms of kernel time" in text
    assert stat.S_IMODE((folder / "report.md").stat().st_mode) == 0o644


def test_report_capture_takes_a_sqlite_and_a_folder(tmp_path: Path) -> None:
    export = tmp_path / "enc.sqlite"
    shutil.copyfile(ENCODER, export)
    result = invoke("report", "capture", export)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"report: {tmp_path / 'enc.report.md'}\n"
    assert (tmp_path / "enc.report.md").read_text().startswith("# enc\n\n## What bounds the step")
    folder = tmp_path / "cap"
    folder.mkdir()
    shutil.copyfile(ENCODER, folder / "profile.sqlite")
    for target in (folder, folder / "profile.sqlite"):  # the folder, or its export: report.md in the folder
        result = invoke("report", "capture", target, "--force")
        assert result.stdout == f"report: {folder / 'report.md'}\n"
    assert (folder / "report.md").read_text().startswith("# cap\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cap", "enc.report.md", "enc.sqlite"]


# --- profile: refused before nsys starts -------------------------------------------------------

@pytest.mark.parametrize("options,message", [
    (["--name", "a/b"], f"--name 'a/b' {NAME_RULE}"),
    (["--name", "../escape"], f"--name '../escape' {NAME_RULE}"),
    (["--name", ".hidden"], f"--name '.hidden' {NAME_RULE}"),
    (["--attn", "flash"], "attention backend 'flash' is a CUDA kernel and the device is cpu; use --attn naive or "
                          "math"),
])
def test_profile_refuses_before_nsys_starts(tmp_path: Path, options: list[str], message: str) -> None:
    calls = tmp_path / "calls"
    out = tmp_path / "w" / "profiles"
    result = invoke("profile", "--model", "tiny", "--device", "cpu", *options, "--out-dir", out, "--nsys", FAKE,
                    env={"FAKE_NSYS_CALLS": str(calls)})
    assert_one_error(result, message)
    assert not calls.exists()  # nsys never ran, not even for --version
    assert tree(tmp_path) == []  # no out-dir, no .partial, nothing outside it


def test_fake_nsys_records_its_calls(tmp_path: Path) -> None:
    """The proof above is only as good as the recording: a capture that starts is recorded."""
    calls = tmp_path / "calls"
    invoke("profile", "--model", "tiny", "--device", "cpu", "--steps", "1", "--name", "x", "--out-dir", tmp_path,
           "--nsys", FAKE, env={"FAKE_NSYS_CALLS": str(calls)})
    assert [json.loads(line)[0] for line in calls.read_text().splitlines()][-2:] == ["profile", "export"]


# --- running out of memory -------------------------------------------------------------------

@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 79 GiB"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried "
                 "to allocate 21474836480 bytes. Error code 12 (Cannot allocate memory)"),
], ids=["cuda", "cpu"])
def test_out_of_memory_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    from profkit.collect import workload

    def step_that_runs_out(*args: object, **kwargs: object):
        def step() -> None:
            raise error
        return step

    monkeypatch.setattr(workload, "make_step", step_that_runs_out)
    out = tmp_path / "run"
    result = invoke("run", "--model", "tiny", "--device", "cpu", "--batch-size", "3", "--context-length", "16",
                    "--warmup", "1", "--steps", "1", "--out", out)
    first = str(error).splitlines()[0]
    assert_one_error(result, f"out of memory on cpu: --model tiny --mode fwd_bwd --dtype fp32 with batch 3 x 16 did "
                             f"not fit ({first}); try a smaller --batch-size or --context-length")
    assert not out.exists()


def test_other_runtime_errors_are_not_called_out_of_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from profkit.collect import workload

    def broken(*args: object, **kwargs: object):
        def step() -> None:
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")
        return step

    monkeypatch.setattr(workload, "make_step", broken)
    result = invoke("run", "--model", "tiny", "--device", "cpu", "--warmup", "1", "--out", tmp_path / "run")
    assert isinstance(result.exception, RuntimeError)  # a bug, with its traceback, not a misleading Error line


# --- doctor ------------------------------------------------------------------------------------

def test_doctor_exits_non_zero_without_nsys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROFKIT_NSYS", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("profkit.nsys.DEFAULT_PREFIX", tmp_path / "none")
    result = invoke("doctor")
    assert result.exit_code == 1
    assert "scripts/install_nsys.sh" in result.stdout  # the fix, in the table (which wraps its cells)
    assert "nsys options" not in result.stdout


@pytest.mark.nsys
def test_doctor_lists_what_the_found_nsys_supports() -> None:
    from profkit.collect.doctor import NOTABLE_OPTIONS, diagnose
    from profkit.nsys import profile_flags

    nsys = real_nsys()
    rows = {what: found for what, found, _ in diagnose(str(nsys.path))}
    flags = profile_flags(nsys)
    have = [f"{flag}: {what}" for flag, what in NOTABLE_OPTIONS.items() if flag in flags]
    lacks = [flag for flag in NOTABLE_OPTIONS if flag not in flags]
    assert rows["nsys options"] == "; ".join(have) + (f"; lacks {', '.join(lacks)}" if lacks else "")
    assert "--trace" in flags and "--capture-range" in flags  # read from this nsys's own help
    assert "nsys options" in invoke("doctor", "--nsys", nsys.path).stdout


# --- with the real nsys, on CPU ------------------------------------------------------------------

@pytest.mark.nsys
def test_nvtx_off_capture_on_cpu(tmp_path: Path) -> None:
    nsys = real_nsys()
    result = invoke("profile", "--model", "tiny", "--mode", "fwd", "--device", "cpu", "--nvtx", "off", "--warmup",
                    "0", "--steps", "1", "--name", "off", "--out-dir", tmp_path, "--nsys", nsys.path)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "off"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["off"]
    run = json.loads((folder / "run.json").read_text())
    assert run["resolved"]["nvtx"] is False and run["config"]["out"] == str(folder)
    assert stat.S_IMODE((folder / "run.json").stat().st_mode) == 0o644
    assert invoke("report", "nvtx", folder, "--format", "json").stdout == "[]\n"  # an export without ranges


@pytest.mark.nsys
def test_an_option_this_nsys_lacks_is_refused_before_capturing(tmp_path: Path) -> None:
    """README's `-- --pytorch=autograd-nvtx` with an nsys that has no --pytorch (2023.4.4, as CI
    installs): one line before anything runs, not a failed capture."""
    from profkit.nsys import profile_flags

    nsys = real_nsys()
    if "--pytorch" in profile_flags(nsys):
        pytest.skip(f"nsys {nsys.version_str} has --pytorch")
    result = invoke("profile", "--model", "tiny", "--device", "cpu", "--name", "x", "--out-dir", tmp_path / "p",
                    "--nsys", nsys.path, "--", "--pytorch=autograd-nvtx")
    assert_one_error(result, f"nsys {nsys.version_str} has no --pytorch option (see `{nsys.path} profile --help`); "
                             "drop it, or use a newer nsys (profkit doctor says how)")
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("args", [["ranks", "tests/data/h200_small_step_bf16_ddp_1rank", "--png", "lanes.svg.new"],
                                  ["flops", "tests/data/h100_small_step_bf16", "--waterfall", "gap"],
                                  ["memory", "tests/data/h200_memory_tiny_step/memory.pickle", "--png", "m.jpg"]])
def test_a_png_option_takes_only_png_files(args: list[str], tmp_path: Path) -> None:
    """A plotting library guesses the format from the suffix and raises on an unknown one: refused first."""
    args = [*args[:-1], str(tmp_path / args[-1])]
    r = CliRunner().invoke(cli, ["report", *args])
    assert r.exit_code == 2 and r.output.startswith("Error: --") and "ending in .png" in r.output
    assert r.output.count("\n") == 1 and list(tmp_path.iterdir()) == []
