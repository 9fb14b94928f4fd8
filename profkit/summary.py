"""The `profkit report` commands as library calls: an export in, text (markdown, CSV, JSON) out.

parse (read the export) -> analyze (rank, categorize, project NVTX) -> report (format).
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from profkit import analyze, parse
from profkit.categories import categorize, load_rules
from profkit.errors import ProfkitError
from profkit.report import categories_markdown, kernels_markdown, markdown_table, nvtx_markdown

FORMATS = ("markdown", "csv", "json")
REPORT_FILE = "report.md"
DEMO = "h100_small_step_fp32.sqlite"


class ReportError(ProfkitError):
    """Bad report options or input."""


@dataclass(slots=True)
class Analysis:
    data: parse.ProfileData
    kernels: pd.DataFrame
    """kernel_frame(): one row per kernel with name, short_name, category, and its owner range's path."""
    ranges: pd.DataFrame
    """project(): one row per NVTX range with its path and projected GPU time."""
    owner: np.ndarray

    @property
    def unattributed_pct(self) -> float:
        total = self.kernels["dur_ns"].sum()
        return 100.0 * self.kernels["dur_ns"][self.owner < 0].sum() / total if total else 0.0


def resolve_input(path: Path) -> Path:
    """A .sqlite, a capture folder (its profile.sqlite) or a .nsys-rep (exported beside it first)."""
    if path.is_dir() and (path / "profile.sqlite").exists():
        return path / "profile.sqlite"
    if path.suffix == ".nsys-rep" and path.is_file():
        out = path.with_suffix(".sqlite")
        if out.exists():
            return out
        from profkit.collect.nsys import NsysNotFound, find_nsys

        try:
            nsys = find_nsys()
        except NsysNotFound as e:
            raise ReportError(f"{path} is an nsys report; exporting it to SQLite needs nsys: {e}") from None
        proc = subprocess.run([str(nsys.path), "export", "--type=sqlite", f"--output={out}", str(path)],
                              capture_output=True, text=True, env=nsys.run_env())
        if proc.returncode != 0 or not out.exists():
            raise ReportError(f"nsys export of {path} failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
        return out
    return path


def demo_path() -> Path:
    """The real H100 export that ships inside the package (scrubbed), for `profkit report --demo`."""
    return Path(str(resources.files("profkit").joinpath("data", DEMO)))


def demo_report(*, top: int = 15) -> str:
    path = demo_path()
    a = analyze_profile(path)
    run = json.loads(path.with_suffix(".run.json").read_text())
    return render_report(a, run, title="Demo: CS336 small, one AdamW step per capture step, on an H100", top=top)


def analyze_profile(path: Path, *, rules: Path | None = None, allow_incomplete: bool = False,
                    nvtx: bool = True) -> Analysis:
    """Load, categorize and (with `nvtx`) project NVTX; nvtx=False skips the launch join."""
    data = parse.load(resolve_input(path), allow_incomplete=allow_incomplete, launches=nvtx)
    rule_list = load_rules(rules)
    ids = pd.Series(pd.unique(data.kernels["name_id"]))
    cats = pd.Series(categorize(ids.map(data.names).fillna("<unknown>"), rule_list).to_numpy(), index=ids.to_numpy())
    kernels = analyze.kernel_frame(data.kernels, data.names, cats)
    tree = analyze.nvtx_tree(data.nvtx if nvtx else data.nvtx.iloc[:0])
    owner = analyze.attribute(kernels, tree)
    ranges = analyze.project(kernels, tree, owner)
    path_codes, uniq = pd.factorize(ranges["path"])
    codes = np.where(owner >= 0, path_codes[np.clip(owner, 0, None)] if len(path_codes) else -1, -1)
    kernels = kernels.assign(range_path=pd.Categorical.from_codes(codes.astype(np.int32),
                                                                  categories=pd.Index(uniq, dtype=object)))
    return Analysis(data, kernels, ranges, owner)


def _require_kernels(a: Analysis) -> None:
    if not a.data.has_kernel_table:
        raise ReportError(f"{a.data.path} has no kernels table: nsys recorded no CUDA kernels (its analysis failed, "
                          "or the capture traced no CUDA); capture again with --trace including cuda")


def _format(frame: pd.DataFrame, fmt: str, markdown: str) -> str:
    if fmt == "markdown":
        return markdown
    if fmt == "csv":
        return frame.to_csv(index=False)
    records = json.loads(frame.to_json(orient="records"))
    return json.dumps(records, indent=2) + "\n"


def kernels_report(path: Path, *, range_regex: str | None = None, top: int | None = 20, by: str = "name",
                   name: str = "demangled", fmt: str = "markdown", rules: Path | None = None,
                   allow_incomplete: bool = False) -> str:
    """`profkit report kernels`: kernel time by name (as nsys's cuda_gpu_kern_sum) or category."""
    a = analyze_profile(path, rules=rules, allow_incomplete=allow_incomplete, nvtx=bool(range_regex))
    _require_kernels(a)
    kernels = a.kernels
    if range_regex:
        try:
            pattern = re.compile(range_regex)
        except re.error as e:
            raise ReportError(f"--range {range_regex!r} is not a regular expression: {e}") from None
        paths = kernels["range_path"].cat.categories
        matching = [p for p in paths if pattern.search(p)]
        kernels = kernels[kernels["range_path"].isin(matching)]
    column = "category" if by == "category" else ("name" if name == "demangled" else "short_name")
    top = top or None  # 0: every kernel
    ranked = analyze.rank_kernels(kernels, by=column, top_k=top if fmt == "markdown" else None)
    if fmt != "markdown" and top:
        ranked = ranked.head(top)
    return _format(ranked, fmt, kernels_markdown(ranked, "category" if by == "category" else "name"))


def nvtx_report(path: Path, *, by: str = "path", fmt: str = "markdown", rules: Path | None = None,
                allow_incomplete: bool = False) -> str:
    """`profkit report nvtx`: projected GPU time per range path or name."""
    a = analyze_profile(path, rules=rules, allow_incomplete=allow_incomplete)
    summary = analyze.nvtx_summary(a.ranges, a.kernels, a.owner, by=by)
    return _format(summary, fmt, nvtx_markdown(summary, by))


def compare_report(paths: list[Path], *, top: int = 10, rules: Path | None = None,
                   allow_incomplete: bool = False) -> str:
    """`profkit report compare`: category shares and top kernels side by side, deltas against the first."""
    if len(paths) < 2:
        raise ReportError("compare needs at least two profiles")
    analyses = [analyze_profile(p, rules=rules, allow_incomplete=allow_incomplete, nvtx=False) for p in paths]
    for a in analyses:
        _require_kernels(a)
    labels = [_label(p) for p in paths]
    shares = [analyze.category_shares(a.kernels, a.data.memcpy, a.data.memset).set_index("category")
              for a in analyses]
    cats = sorted(set().union(*(s.index for s in shares)), key=lambda c: -shares[0]["total_ns"].get(c, 0))
    header = ["category"] + [f"{lab} ms (%)" for lab in labels] + [f"Δ {lab} ms (pp)" for lab in labels[1:]]
    rows = []
    for c in cats:
        cells = [c]
        for s in shares:
            cells.append(f"{s['total_ns'].get(c, 0) / 1e6:,.3f} ({s['pct'].get(c, 0.0):.1f}%)")
        for s in shares[1:]:
            d_ms = (s["total_ns"].get(c, 0) - shares[0]["total_ns"].get(c, 0)) / 1e6
            d_pp = s["pct"].get(c, 0.0) - shares[0]["pct"].get(c, 0.0)
            cells.append(f"{d_ms:+,.3f} ({d_pp:+.1f})")
        rows.append(cells)
    totals = ["**all kernels**"] + [f"{s['total_ns'].sum() / 1e6:,.3f}" for s in shares] + [
        f"{(s['total_ns'].sum() - shares[0]['total_ns'].sum()) / 1e6:+,.3f}" for s in shares[1:]]
    rows.append(totals)
    parts = ["## Categories", "", markdown_table(header, rows), "", "## Top kernels", ""]
    for lab, a in zip(labels, analyses, strict=True):
        ranked = analyze.rank_kernels(a.kernels, top_k=top)
        parts += [f"### {lab}", "", kernels_markdown(ranked), ""]
    return "\n".join(parts)


def _label(path: Path) -> str:
    p = path.parent if path.name == "profile.sqlite" else path
    return p.stem if p.suffix else p.name


def capture_report(folder: Path, *, top: int = 15, rules: Path | None = None, allow_incomplete: bool = False) -> Path:
    """`profkit report PROFILE_DIR`: write report.md (config, categories, kernels, ranges) into the folder."""
    if not folder.is_dir():
        raise ReportError(f"{folder} is not a capture folder (profiles/NAME/); give a folder or a subcommand")
    a = analyze_profile(folder, rules=rules, allow_incomplete=allow_incomplete)
    run_file = folder / "run.json"
    run: dict[str, Any] = json.loads(run_file.read_text()) if run_file.exists() else {}
    text = render_report(a, run, title=folder.name, top=top)
    out = folder / REPORT_FILE
    tmp = folder / f".{REPORT_FILE}.tmp"
    tmp.write_text(text)
    tmp.replace(out)
    return out


def render_report(a: Analysis, run: dict[str, Any], *, title: str, top: int = 15) -> str:
    lines = [f"# {title}", ""]
    if run:
        c, res, env, s = run["config"], run["resolved"], run["environment"], run["summary"]
        lines += [
            f"`profkit run --model {c['model']} --mode {c['mode']} --dtype {c['dtype']} --attn {c['attn']}"
            + (" --compile" if c["compile"] else "") + f"` — batch {res['batch_size']} x {res['context_length']}, "
            f"{res['params']:,} parameters, {len(run['steps_ms'])} measured steps.", "",
            (f"On {env['gpu']} (driver {env.get('driver')}), torch {env['torch']}, CUDA {env.get('cuda')}. "
             if env.get("gpu") else f"On CPU ({env.get('cpu_threads')} threads), torch {env['torch']}. ")
            +
            f"Step time under the profiler: median {s['median_ms']:.2f} ms, mean {s['mean_ms']:.2f} ± "
            f"{s['std_ms']:.2f} ms (profiled times are not bare times).", "",
        ]
    k = a.kernels
    if a.data.has_kernel_table and not k.empty:
        total = k["dur_ns"].sum()
        lines += [f"{len(k):,} kernels, {total / 1e6:,.3f} ms of kernel time; "
                  f"{a.unattributed_pct:.2f}% of it launched outside every NVTX range.", "",
                  "## Where the GPU time went, by category", "",
                  categories_markdown(analyze.category_shares(k, a.data.memcpy, a.data.memset)), "",
                  f"## Top {top} kernels", "", kernels_markdown(analyze.rank_kernels(k, top_k=top)), ""]
    else:
        lines += ["No CUDA kernels in this capture (a CPU run, or no CUDA traced).", ""]
    if not a.ranges.empty:
        summary = analyze.nvtx_summary(a.ranges, a.kernels, a.owner, by="name")
        if a.kernels.empty:  # a CPU capture: only host time to show
            rows = [[str(r.name), f"{int(r.instances):,}", f"{r.cpu_total_ns / 1e6:,.3f}"]
                    for r in summary.itertuples()]
            table = markdown_table(["name", "instances", "CPU ms"], rows)
            note = "CPU ms: time between push and pop, all instances added."
        else:
            table = nvtx_markdown(summary, "name")
            note = ("GPU kernel ms: kernels launched while the range was open, nested ranges and other threads "
                    "(backward's autograd thread) included.")
        lines += ["## NVTX ranges, by name (all instances added)", "", note, "", table, ""]
    return "\n".join(lines)

