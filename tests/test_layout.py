"""The import arrows of README's Layout section, read from the source with `ast`.

Stages, earliest first; a module may import its own stage or an earlier one, never a later one.
`cli.py` imports everything and is imported by nothing but `__main__.py`.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PKG = ROOT / "profkit"
MODELS = ROOT / "models"

STAGES = ["foundation", "models", "collect", "parse", "analyze", "pipeline", "report", "console", "cli"]
# Module (dotted, as installed) -> stage. Packages are matched by their prefix below.
STAGE_OF = {
    "profkit": "foundation",  # __init__: the version and RunConfig
    "profkit.errors": "foundation",
    "profkit.heap": "foundation",  # glibc's mmap threshold and trim (ctypes; elsewhere nothing)
    "profkit.config": "foundation",
    "profkit.sizes": "foundation",
    "profkit.frames": "foundation",
    "profkit.table": "foundation",  # columns without pandas: rows, CSV, JSON
    "profkit.layout": "foundation",
    "profkit.ranges": "foundation",
    "profkit.nsys": "foundation",
    "profkit.sweeps": "foundation",  # grids and presets, pure
    "profkit.results": "foundation",  # the results database's schema, read and write (sqlite-utils)
    "profkit.models": "models",
    "profkit.collect": "collect",
    "profkit.parse": "parse",
    "profkit.parse_ranks": "parse",  # a multi-rank export's processes, NCCL ranges, session start
    "profkit.columns": "parse",  # the export's columns as numpy arrays (parse's reading, without pandas)
    "profkit.scrub": "parse",  # rewrites an export; imports nothing of profkit's
    "profkit.snapshot": "parse",  # reads a memory snapshot (restricted unpickler) and its sidecar
    "profkit.unpickle": "parse",  # the streaming restricted unpickler: trace events as columns
    "profkit.analyze": "analyze",
    "profkit.pipeline": "pipeline",
    "profkit.ranks": "pipeline",  # a multi-rank capture -> per-rank tables (parallel processes) -> merged
    "profkit.report": "report",
    "profkit.console": "console",
    "profkit.cli": "cli",
    "profkit.fastpath": "cli",  # the entry point's first look (a cached report) and plain reports without click
    "profkit.__main__": "cli",
}
TORCH_ALLOWED = {"profkit.collect.workload", "profkit.collect.flops", "profkit.collect.hooks", "profkit.collect.env",
                 "profkit.collect.outputs", "profkit.collect.attention_bench", "profkit.collect.parallel",
                 "profkit.collect.peaks", "profkit.collect.memory"}
TORCH_IN_FUNCTION_ONLY = {"profkit.collect.doctor", "profkit.collect.sweep"}


def module_files() -> dict[str, Path]:
    """Installed dotted name -> source file, for every module of profkit/ and models/."""
    out = {}
    for root, name in ((PKG, "profkit"), (MODELS, "profkit.models")):
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([name, *parts])] = path
    return out


MODULES = module_files()


def stage(module: str) -> str | None:
    """The stage of a profkit module (its longest listed prefix); None for other packages."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in STAGE_OF:
            return STAGE_OF[prefix]
    return None


def imports(module: str) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function) for every import in `module`'s source.

    `from profkit import layout` names the module profkit.layout; relative imports are
    resolved against the installed name (models/ is profkit.models).
    """
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, inner) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                if base == "__future__":
                    continue
                for a in child.names:
                    sub = f"{base}.{a.name}"
                    found.append((sub if sub in MODULES else base, child.lineno, inner))
            visit(child, inner)

    visit(tree, False)
    return found


def test_every_module_has_a_stage() -> None:
    assert len(MODULES) > 25  # the walk found the package
    assert {m for m in MODULES if stage(m) is None} == set()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_nothing_imports_a_later_stage(module: str) -> None:
    own = STAGES.index(stage(module))  # type: ignore[arg-type]
    upward = [f"{target} (line {line}, stage {stage(target)})" for target, line, _ in imports(module)
              if stage(target) is not None and STAGES.index(stage(target)) > own]  # type: ignore[arg-type]
    assert upward == [], f"{module} ({stage(module)}) imports a later stage"


def test_cli_is_imported_by_main_only() -> None:
    importers = {m for m in MODULES for target, _, _ in imports(m) if target == "profkit.cli"}
    assert importers == {"profkit.__main__"}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_only_collect_and_models_import_torch(module: str) -> None:
    torch = [(line, in_function) for target, line, in_function in imports(module)
             if target == "torch" or target.startswith("torch.")]
    if module in TORCH_ALLOWED or stage(module) == "models":
        return
    if module in TORCH_IN_FUNCTION_ONLY:
        assert torch and all(in_function for _, in_function in torch), torch
        return
    assert torch == [], f"{module} imports torch at lines {[line for line, _ in torch]}"


def test_cli_imports_no_pandas_or_numpy_at_module_level() -> None:
    heavy = [(t, line) for t, line, in_function in imports("profkit.cli")
             if not in_function and t.split(".")[0] in ("pandas", "numpy", "torch")]
    assert heavy == []
    # Nor through what it imports at module level: `profkit --help` stays quick.
    code = ("import sys, profkit.cli; bad = {'pandas', 'numpy', 'torch'} & set(sys.modules); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_pyproject_lists_every_package() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {".".join(["profkit", *p.parent.relative_to(PKG).parts]) for p in PKG.rglob("__init__.py")}
    assert folders >= {"profkit", "profkit.analyze", "profkit.collect", "profkit.report"}
    assert set(setuptools["packages"]) == folders | {"profkit.models"}
    assert setuptools["package-dir"]["profkit.models"] == "models" and (MODELS / "__init__.py").exists()
    assert not list(MODELS.glob("*/__init__.py"))  # models/ has no subpackages the list would miss


def test_multi_rank_modules_keep_to_their_stage() -> None:
    """The launcher imports no torch (it runs torchrun, as launch.py runs nsys); only the rank's own
    side (parallel.py) does, and workload.py imports it only inside functions, for ranks."""
    assert stage("profkit.collect.distributed") == "collect" and "profkit.collect.distributed" not in TORCH_ALLOWED
    assert [t for t, _, _ in imports("profkit.collect.distributed") if t.split(".")[0] == "torch"] == []
    lazy = [inner for target, _, inner in imports("profkit.collect.workload") if target == "profkit.collect.parallel"]
    assert lazy and all(lazy)
    assert stage("profkit.analyze.ranks") == "analyze" and stage("profkit.report.ranks") == "report"
    code = ("import sys, profkit.ranks, profkit.parse_ranks, profkit.analyze.ranks, profkit.report.ranks, "
            "profkit.collect.distributed; assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_memory_report_runs_without_torch(tmp_path: Path) -> None:
    """`profkit report memory` reads, replays and draws a snapshot with torch never imported."""
    from tests.memory_scenario import build

    build(tmp_path, seed=0)
    code = ("import sys; from profkit.cli import cli; sys.argv = ['profkit', 'report', 'memory', sys.argv[1], '--png', "
            "sys.argv[1] + '/m.png', '--html', sys.argv[1] + '/m.html', '-o', sys.argv[1] + '/m.md']\n"
            "try:\n    cli()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, cwd=ROOT)
    assert (tmp_path / "m.png").stat().st_size > 1000 and "Peak allocated" in (tmp_path / "m.md").read_text()
