"""No report depends on row order: nsys 2025.6+ no longer writes rows in timestamp order.

Every table of a real export with a `start` column (kernels, runtime calls, NVTX, memcpy, memset,
syncs...) is rewritten in a seeded random order; each report on the copy must equal the report
on the original, byte for byte (the two copies sit in folders of the same name, so labels match).
"""

from __future__ import annotations

import random
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from profkit.cli import cli

DATA = Path(__file__).parent / "data"


def shuffle_rows(path: Path, seed: int = 2025) -> list[str]:
    """Rewrite every event table of `path` in a random order (seeded); the tables shuffled."""
    rng = random.Random(seed)
    db = sqlite3.connect(path)
    tables = [n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
              if "start" in {r[1] for r in db.execute(f"PRAGMA table_info([{n}])")}]
    for table in tables:
        rows = db.execute(f"SELECT * FROM [{table}]").fetchall()
        before = list(rows)
        rng.shuffle(rows)
        while len(set(rows)) > 1 and rows == before:  # a short table can come back in its own order: again
            rng.shuffle(rows)
        db.execute(f"DELETE FROM [{table}]")
        if rows:
            db.executemany(f"INSERT INTO [{table}] VALUES ({', '.join('?' * len(rows[0]))})", rows)
    db.commit()
    db.execute("VACUUM")
    db.close()
    return tables


def twins(tmp_path: Path, fixture: str) -> tuple[Path, Path]:
    """(original, shuffled) copies of a fixture folder, each in a folder of the fixture's name."""
    original = tmp_path / "original" / fixture
    shuffled = tmp_path / "shuffled" / fixture
    shutil.copytree(DATA / fixture, original)
    shutil.copytree(DATA / fixture, shuffled)
    for export in shuffled.glob("*.sqlite"):
        tables = shuffle_rows(export)
        assert {"CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_RUNTIME", "NVTX_EVENTS"} <= set(tables)
    return original, shuffled


def report(args: list, folder: Path) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, (args, result.output)
    return result.stdout.replace(str(folder.parent), "<root>")


SINGLE = {
    "kernels": lambda p: ["report", "kernels", p / "profile.sqlite", "--top", "0", "--no-cache"],
    "kernels-category-json": lambda p: ["report", "kernels", p / "profile.sqlite", "--by", "category", "--format",
                                        "json", "--no-cache"],
    "kernels-range": lambda p: ["report", "kernels", p / "profile.sqlite", "--range", "backward", "--format", "json",
                                "--top", "0", "--no-cache"],
    "nvtx-path": lambda p: ["report", "nvtx", p / "profile.sqlite", "--by", "path", "--format", "json", "--no-cache"],
    "nvtx-name": lambda p: ["report", "nvtx", p / "profile.sqlite", "--by", "name", "--no-cache"],
    "modules": lambda p: ["report", "modules", p / "profile.sqlite", "--format", "json", "--no-cache"],
    "timeline-phase": lambda p: ["report", "timeline", p / "profile.sqlite", "--format", "json", "--no-cache"],
    "timeline-name": lambda p: ["report", "timeline", p / "profile.sqlite", "--by", "name", "--no-cache"],
    "compare": lambda p: ["report", "compare", DATA / "h100_small_step_bf16_flash" / "profile.sqlite",
                          p / "profile.sqlite", "--format", "json", "--no-cache"],
}


@pytest.mark.parametrize("fixture", ["h100_small_step_bf16", "h100_small_step_bf16_autograd_nvtx",
                                     "h200_small_step_bf16_flash_graphs_graph",  # whole-graph rows
                                     "h200_small_step_bf16_flash_graphs_node"])  # kernels sharing a launch's id
def test_reports_ignore_row_order(tmp_path: Path, fixture: str) -> None:
    original, shuffled = twins(tmp_path, fixture)
    for name, make in SINGLE.items():
        assert report(make(shuffled), shuffled) == report(make(original), original), name
    for folder in (original, shuffled):  # report.md, written into each folder
        report(["report", "capture", folder, "--no-cache"], folder)
    assert (shuffled / "report.md").read_text() == (original / "report.md").read_text()


def test_ranks_ignore_row_order(tmp_path: Path) -> None:
    original, shuffled = twins(tmp_path, "h200_small_step_bf16_ddp_1rank")
    for args in (["--format", "json"], []):
        assert (report(["report", "ranks", shuffled, *args], shuffled)
                == report(["report", "ranks", original, *args], original))
