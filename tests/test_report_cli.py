"""`profkit report`: the output contract (JSON keys, totals equal to nsys's own), and bad input."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from profkit.cli import cli
from tests.conftest import export_variant, real_nsys

DATA = Path(__file__).parent / "data"
ENCODER = DATA / "h100_encoder_layer_nsys2023" / "profile.sqlite"
KERNEL_KEYS = ["name", "category", "instances", "total_ns", "avg_ns", "median_ns", "min_ns", "max_ns", "stddev_ns",
               "time_pct"]
NVTX_KEYS = ["instances", "cpu_total_ns", "gpu_total_ns", "gpu_span_ns", "kernels", "top_kernel"]


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_kernels_json_contract() -> None:
    result = invoke("report", "kernels", ENCODER, "--format", "json", "--top", "0")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert all(list(r) == KERNEL_KEYS for r in rows)
    assert sum(r["instances"] for r in rows) == 234
    assert sum(r["total_ns"] for r in rows) == 8_901_567
    assert rows[0]["name"].startswith("sm80_xmma_gemm_f32f32_f32f32_f32_tn_n_tilesize64x64x8")
    assert (rows[0]["instances"], rows[0]["total_ns"], rows[0]["median_ns"]) == (12, 1_625_446, 130_402.5)
    assert rows[0]["category"] == "gemm"


def test_kernels_by_category_and_range() -> None:
    rows = json.loads(invoke("report", "kernels", ENCODER, "--by", "category", "--format", "json").stdout)
    assert rows[0]["name"] == "gemm" and rows[0]["total_ns"] == 6_002_887
    bwd = json.loads(invoke("report", "kernels", ENCODER, "--range", "backward$", "--format", "json",
                            "--top", "0").stdout)
    assert sum(r["instances"] for r in bwd) == 132 and sum(r["total_ns"] for r in bwd) == 5_039_025


def test_kernels_by_category_markdown() -> None:
    lines = invoke("report", "kernels", ENCODER, "--by", "category").stdout.splitlines()
    assert lines[0] == "| category | instances | total ms | avg us | median us | min us | max us | time % |"
    assert lines[2] == "| gemm | 42 | 6.003 | 142.9 | 185.9 | 6.3 | 250.7 | 67.4 |"


def test_kernels_csv_and_short_names() -> None:
    out = invoke("report", "kernels", ENCODER, "--format", "csv", "--name", "short", "--top", "3").stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    # --top folds the rest into `others` in every format, so the rows still add up to every kernel.
    assert list(rows[0]) == KERNEL_KEYS and len(rows) == 4 and rows[-1]["name"] == "others"
    assert sum(int(r["instances"]) for r in rows) == 234 and sum(int(r["total_ns"]) for r in rows) == 8_901_567


def test_kernels_markdown_shortens_names() -> None:
    out = invoke("report", "kernels", ENCODER, "--top", "3").stdout
    lines = out.splitlines()
    assert lines[0] == ("| kernel | category | instances | total ms | avg us | median us | min us | max us | "
                        "time % |")
    assert len(lines) == 2 + 3 + 1  # header, rule, 3 kernels, others
    assert "| cutlass: 80_simt_sgemm_256x128_8x4_nt_align1 | gemm | 6 | 0.842 |" in out
    assert "| gemm: xmma f32f32 tn 64x64x8 (ffma) | gemm | 12 | 1.625 |" in out


@pytest.mark.parametrize("by,key", [("path", "path"), ("name", "name")])
def test_nvtx_json_contract(by: str, key: str) -> None:
    rows = json.loads(invoke("report", "nvtx", ENCODER, "--by", by, "--format", "json").stdout)
    assert all(list(r) == [key, *NVTX_KEYS] for r in rows)
    if by == "path":
        step0 = next(r for r in rows if r["path"] == "step_0/backward")
        assert (step0["instances"], step0["gpu_total_ns"], step0["kernels"]) == (1, 1_678_882, 44)
    else:
        backward = next(r for r in rows if r["name"] == "backward")
        assert (backward["instances"], backward["gpu_total_ns"], backward["kernels"]) == (3, 5_039_025, 132)
        assert backward["top_kernel"] == ("void cutlass::Kernel2<cutlass_80_simt_sgemm_256x128_8x4_nt_align1>"
                                          "(T1::Params)")


def test_compare_reports_deltas() -> None:
    out = invoke("report", "compare", ENCODER, ENCODER).stdout
    # Per measured step (3 steps in the encoder capture: 6.003 ms of GEMMs in all), labels told apart.
    assert ("| gemm | 2.001 (66.8%) | 2.001 (66.8%) | +0.000 (+0.0) |" in out)
    assert "| measured steps | 3 | 3 |  |" in out
    assert "h100_encoder_layer_nsys2023 (1) ms/step (%)" in out and "h100_encoder_layer_nsys2023 (2) ms/step (%)" in out
    assert "## Kernels, matched by name" in out


def test_compare_runs_per_step_with_config_differences(tmp_path: Path) -> None:
    """A 2-step eager capture against a 2-step compiled one: ms/step and what differs in the configs."""
    flash, compiled = DATA / "h100_small_step_bf16_flash", DATA / "h100_small_step_bf16_flash_compile"
    out = invoke("report", "compare", flash, compiled).stdout
    assert "| ms/step (median, under nsys) | 94.35 | 38.30 | -56.05 (-59.4%) |" in out
    assert "| config: compile | False | True |  |" in out
    assert "config: dtype" not in out  # the same in both
    rows = json.loads(invoke("report", "compare", flash, compiled, "--format", "json").stdout)
    gemm = {r["capture"]: r for r in rows if r["category"] == "gemm"}
    assert gemm[compiled.name]["per_step_ns"] == gemm[compiled.name]["total_ns"] / 2
    assert gemm[compiled.name]["delta_ns"] == gemm[compiled.name]["per_step_ns"] - gemm[flash.name]["per_step_ns"]


def test_capture_folder_gets_report_md(tmp_path: Path) -> None:
    folder = tmp_path / "enc"
    folder.mkdir()
    shutil.copyfile(ENCODER, folder / "profile.sqlite")
    result = invoke("report", folder)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"report: {folder / 'report.md'}\n"
    text = (folder / "report.md").read_text()
    assert text.startswith("# enc\n")
    assert "234 kernels, 8.902 ms of kernel time; 0.00% of it launched outside every NVTX range." in text
    assert "| gemm | 2.001 | 1.999 | 2.004 | 66.8 |" in text  # per measured step; memcpy and memset count in the shares


def test_output_file_never_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "k.md"
    out.write_text("mine")
    result = invoke("report", "kernels", ENCODER, "-o", out)
    assert result.exit_code == 2 and result.stderr == f"Error: {out} exists; choose another -o FILE\n"
    assert out.read_text() == "mine"
    new = tmp_path / "new.json"
    assert invoke("report", "kernels", ENCODER, "--format", "json", "-o", new).exit_code == 0
    assert json.loads(new.read_text())[0]["instances"] == 12


BAD = [
    ("text", lambda p, t: p.write_text("not sqlite\n" * 50), "is not a readable SQLite file"),
    ("empty", lambda p, t: p.write_bytes(b""), "is empty; export the capture again with nsys export --type sqlite"),
    ("truncated", lambda p, t: p.write_bytes(ENCODER.read_bytes()[:3000]), "is not a readable SQLite file"),
    ("other tool", lambda p, t: sqlite3.connect(p).execute("CREATE TABLE t (x)").connection.commit(),
     "is SQLite but not an nsys export"),
    ("missing", None, "does not exist"),
]


@pytest.mark.parametrize("what,make,message", BAD, ids=[b[0] for b in BAD])
@pytest.mark.parametrize("command", ["kernels", "nvtx"])
def test_bad_input_one_line_exit_2(tmp_path: Path, what: str, make, message: str, command: str) -> None:
    p = tmp_path / "in.sqlite"
    if make:
        make(p, tmp_path)
    before = sorted(tmp_path.iterdir())
    proc = subprocess.run([sys.executable, "-m", "profkit", "report", command, str(p)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("Error: ") and message in proc.stderr
    assert proc.stdout == ""
    assert sorted(tmp_path.iterdir()) == before  # nothing written


def test_no_kernel_table(tmp_path: Path) -> None:
    p = export_variant(tmp_path, "DROP TABLE CUPTI_ACTIVITY_KIND_KERNEL")
    result = invoke("report", "kernels", p)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {p} has no kernels table: nsys recorded no CUDA kernels")
    assert invoke("report", "nvtx", p).exit_code == 0  # ranges still report


def test_no_nvtx_still_reports_kernels(tmp_path: Path) -> None:
    p = export_variant(tmp_path, "DROP TABLE NVTX_EVENTS")
    rows = json.loads(invoke("report", "kernels", p, "--format", "json", "--top", "0").stdout)
    assert sum(r["total_ns"] for r in rows) == 8_901_567
    assert invoke("report", "nvtx", p, "--format", "json").stdout == "[]\n"


def test_incomplete_refused_unless_allowed(tmp_path: Path) -> None:
    p = export_variant(tmp_path, "UPDATE NVTX_EVENTS SET end = end + 2000000000 WHERE text = 'step_2'")
    result = invoke("report", "kernels", p)
    assert result.exit_code == 2 and "looks incomplete" in result.stderr and "--allow-incomplete" in result.stderr
    assert invoke("report", "kernels", p, "--allow-incomplete").exit_code == 0


def test_unicode_and_10kb_kernel_names(tmp_path: Path) -> None:
    long_name = "void ünïcødé_kernel_λ<" + "T, " * 3400 + "float>(float *)"
    assert len(long_name) > 10_000
    p = export_variant(tmp_path, f"INSERT INTO StringIds (id, value) VALUES (77777, '{long_name}')",
                 "UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET demangledName = 77777 WHERE rowid = 1")
    rows = json.loads(invoke("report", "kernels", p, "--format", "json", "--top", "0").stdout)
    assert any(r["name"] == long_name for r in rows)  # full name kept in JSON
    md = invoke("report", "kernels", p, "--top", "0").stdout
    assert "| ünïcødé_kernel_λ float |" in md and max(len(line) for line in md.splitlines()) < 300


def test_bad_rules_file(tmp_path: Path) -> None:
    rules = tmp_path / "r.toml"
    rules.write_text('[[rule]]\ncategory = "x"\npattern = "("\n')
    result = invoke("report", "kernels", ENCODER, "--rules", rules)
    assert result.exit_code == 2 and result.stderr.startswith(f"Error: {rules}: rule 1 has a bad pattern '('")


def test_report_needs_something() -> None:
    result = invoke("report")
    assert result.exit_code == 2
    assert result.stderr == ("Error: give a capture folder (profiles/NAME), a subcommand (kernels, nvtx, compare) "
                             "or --demo\n")


# --- against nsys's own numbers ------------------------------------------------------------

def nsys_kern_sum(nsys, sqlite: Path, tmp_path: Path) -> dict[str, tuple[int, int]]:
    copy = tmp_path / sqlite.name
    shutil.copyfile(sqlite, copy)  # nsys stats may write into the export's folder
    proc = subprocess.run([str(nsys.path), "stats", "-r", "cuda_gpu_kern_sum", "-f", "csv", "-o", str(tmp_path / "s"),
                           "--force-export=false", str(copy)], capture_output=True, text=True, env=nsys.run_env())
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "s_cuda_gpu_kern_sum.csv") as f:
        return {r["Name"]: (int(r["Instances"]), int(r["Total Time (ns)"])) for r in csv.DictReader(f)}


@pytest.mark.nsys
@pytest.mark.parametrize("fixture", sorted(p.parent.name for p in DATA.glob("*/profile.sqlite")))
def test_totals_equal_nsys_stats_to_the_nanosecond(tmp_path: Path, fixture: str) -> None:
    nsys = real_nsys()
    sqlite = DATA / fixture / "profile.sqlite"
    theirs = nsys_kern_sum(nsys, sqlite, tmp_path)
    rows = json.loads(invoke("report", "kernels", sqlite, "--format", "json", "--top", "0").stdout)
    # cuda_gpu_kern_sum lists kernel rows only: whole CUDA-graph replays (--cuda-graph-trace=graph) are
    # profkit's own rows, checked against SQL in test_cuda_graphs.py.
    ours = {r["name"]: (r["instances"], r["total_ns"]) for r in rows if r["category"] != "cuda graph"}
    assert ours == theirs
    assert all(r["name"].startswith("CUDA graph ") for r in rows if r["category"] == "cuda graph")


@pytest.mark.nsys
def test_cpu_capture_report_shows_host_time(tmp_path: Path) -> None:
    """README's quickstart on a CPU-only machine: capture tiny, then report.md from host time."""
    nsys = real_nsys()
    args = ["profile", "--model", "tiny", "--mode", "step", "--device", "cpu", "--warmup", "1", "--steps", "2",
            "--name", "cpu", "--out-dir", tmp_path, "--nsys", nsys.path]
    assert invoke(*args).exit_code == 0
    result = invoke("report", tmp_path / "cpu")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "cpu" / "report.md").read_text()
    assert "On CPU (" in text and "No CUDA kernels in this capture" in text
    assert "## Where the step's time goes (no GPU work in this capture)" in text and "What bounds the step" not in text
    # Per measured step: the warm-up step (whole program captured on CPU) is not counted.
    ranges = text.split("## Ranges, per measured step")[1]
    assert "| path (steps merged) | instances | CPU ms |" in ranges and "| backward | 1.0 |" in ranges
    assert "warmup" not in ranges
    # A bare .nsys-rep is exported beside itself first (nsys is there), then reported.
    rep = tmp_path / "alone" / "capture.nsys-rep"
    rep.parent.mkdir()
    shutil.copyfile(tmp_path / "cpu" / "profile.nsys-rep", rep)
    rows = json.loads(invoke("report", "nvtx", rep, "--by", "name", "--format", "json").stdout)
    assert (tmp_path / "alone" / "capture.sqlite").exists()
    assert {"step_0", "step_1", "forward", "backward", "optimizer"} <= {r["name"] for r in rows}


def test_nsys_rep_without_nsys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rep = tmp_path / "x.nsys-rep"
    rep.write_bytes(b"not really")
    monkeypatch.delenv("PROFKIT_NSYS", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("profkit.nsys.DEFAULT_PREFIX", tmp_path / "none")
    result = invoke("report", "kernels", rep)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {rep} is an nsys report; exporting it to SQLite needs nsys: "
                                    "nsys not found")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.nsys-rep"]


@pytest.mark.parametrize("fixture", sorted(p.name for p in DATA.iterdir() if (p / "profile.sqlite").exists()))
def test_short_names_tell_every_kernel_apart(fixture: str) -> None:
    """No two rows of a kernel table read the same, though the names are shortened."""
    export = DATA / fixture / "profile.sqlite"
    db = sqlite3.connect(f"file:{export}?mode=ro", uri=True)
    distinct = db.execute("SELECT COUNT(DISTINCT demangledName) FROM CUPTI_ACTIVITY_KIND_KERNEL").fetchone()[0]
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'CUPTI_ACTIVITY_KIND_GRAPH_TRACE'").fetchone():
        distinct += db.execute("SELECT COUNT(*) FROM (SELECT DISTINCT graphId, graphExecId "
                               "FROM CUPTI_ACTIVITY_KIND_GRAPH_TRACE)").fetchone()[0]  # a row per graph too
    db.close()
    md = invoke("report", "kernels", export, "--top", "0").stdout.split("\n\n")[0].splitlines()[2:]  # the table
    names = [line.split(" | ")[0].removeprefix("| ") for line in md]
    assert len(names) == distinct and len(set(names)) == distinct
    assert all(len(n) <= 70 for n in names)
