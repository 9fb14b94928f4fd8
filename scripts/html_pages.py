"""report.html of real captures, with a screenshot of each, for reports/<gpu>/html/.

For each capture folder (profile.sqlite + run.json): links them into a scratch `profiles/NAME/`,
runs `profkit report profiles/NAME --html` there (FLOPs counted from run.json: needs torch, CPU
is enough), copies report.html to OUTDIR/NAME.html and screenshots it in headless Chromium
(tests/browser.py; network off) as OUTDIR/NAME.png (its first screens as NAME.top.png), checking
that it drew every plot with no errors.

A capture folder holding memory.pickle (+ memory.json) gets the memory section too. `--sweep
KIND:DB:NAME` (repeatable) writes `profkit sweep report KIND --html` of a copy of the database DB
as OUTDIR/NAME.html, screenshot beside it.

Example (the committed pages; about a minute on 2 cores):
    python scripts/html_pages.py reports/h200/html /work/caps/h200_i10/small-step-bf16-flash \\
        /work/caps/h200_i10/nanogpt-step-bf16-flash --sweep models:reports/h200/sweeps/nanogpt.db:sweeps-nanogpt
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.browser import Browser  # noqa: E402

TOP_PX = 1500


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("outdir", type=Path)
    p.add_argument("captures", type=Path, nargs="*")
    p.add_argument("--sweep", action="append", default=[], metavar="KIND:DB:NAME",
                   help="Also the page of `profkit sweep report KIND --html` of database DB, as NAME.html.")
    args = p.parse_args()
    args.outdir.mkdir(parents=True, exist_ok=True)
    failed = 0
    with tempfile.TemporaryDirectory() as tmp, Browser() as browser:
        for capture in args.captures:
            name = capture.name
            folder = Path(tmp) / "profiles" / name
            folder.mkdir(parents=True)
            for f in ("profile.sqlite", "run.json", "flops.json", "memory.pickle", "memory.json"):
                if (capture / f).is_file():
                    (folder / f).symlink_to((capture / f).resolve())
            r = subprocess.run([sys.executable, "-m", "profkit", "report", f"profiles/{name}", "--html", "--no-cache"],
                               cwd=tmp, capture_output=True, text=True)
            if r.returncode:
                print(f"{name}: {r.stderr.strip()}", file=sys.stderr)
                failed += 1
                continue
            failed += not shot(browser, folder / "report.html", args.outdir, name)
        for item in args.sweep:
            kind, db, name = item.split(":")
            work = Path(tmp) / "sweeps" / name
            work.mkdir(parents=True)
            shutil.copyfile(db, work / Path(db).name)  # the committed database is only read
            r = subprocess.run([sys.executable, "-m", "profkit", "sweep", "report", kind, "--db", Path(db).name,
                                "--out", "out", "--html"], cwd=work, capture_output=True, text=True)
            if r.returncode:
                print(f"{name}: {r.stderr.strip() or r.stdout.strip()}", file=sys.stderr)
                failed += 1
                continue
            failed += not shot(browser, work / "out" / f"{kind}.html", args.outdir, name)
    return 1 if failed else 0


def shot(browser: Browser, made: Path, outdir: Path, name: str) -> bool:
    """Copy a page to OUTDIR/NAME.html, screenshot it; True when every plot drew, with no errors."""
    page_file = outdir / f"{name}.html"
    shutil.copyfile(made, page_file)
    page = browser.open(page_file.resolve().as_uri())
    figures = page.evaluate("document.querySelectorAll('figure.plot').length")
    drawn = page.evaluate("document.documentElement.dataset.plots")
    errors = page.errors
    page.screenshot(outdir / f"{name}.png")
    page.screenshot(outdir / f"{name}.top.png", max_height=TOP_PX)  # README's view: the first screens
    ok = drawn == str(figures) and not errors and len(page.requests) == 1
    print(f"{page_file} ({page_file.stat().st_size / 1e3:,.0f} kB, {drawn}/{figures} plots"
          f"{', errors: ' + '; '.join(errors) if errors else ''}) + {name}.png")
    return bool(ok)


if __name__ == "__main__":
    sys.exit(main())
