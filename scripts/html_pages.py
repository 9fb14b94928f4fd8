"""report.html of real captures, with a screenshot of each, for reports/<gpu>/html/.

For each capture folder (profile.sqlite + run.json): links them into a scratch `profiles/NAME/`,
runs `profkit report profiles/NAME --html` there (FLOPs counted from run.json: needs torch, CPU
is enough), copies report.html to OUTDIR/NAME.html and screenshots it in headless Chromium
(tests/browser.py; network off) as OUTDIR/NAME.png (its first screens as NAME.top.png), checking
that it drew every plot with no errors.

Example (the committed pages; about a minute on 2 cores):
    python scripts/html_pages.py reports/h200/html /work/caps/h200_i10/small-step-bf16-flash \\
        /work/caps/h200_i10/nanogpt-step-bf16-flash
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
    p.add_argument("captures", type=Path, nargs="+")
    args = p.parse_args()
    args.outdir.mkdir(parents=True, exist_ok=True)
    failed = 0
    with tempfile.TemporaryDirectory() as tmp, Browser() as browser:
        for capture in args.captures:
            name = capture.name
            folder = Path(tmp) / "profiles" / name
            folder.mkdir(parents=True)
            for f in ("profile.sqlite", "run.json", "flops.json"):
                if (capture / f).is_file():
                    (folder / f).symlink_to((capture / f).resolve())
            r = subprocess.run([sys.executable, "-m", "profkit", "report", f"profiles/{name}", "--html", "--no-cache"],
                               cwd=tmp, capture_output=True, text=True)
            if r.returncode:
                print(f"{name}: {r.stderr.strip()}", file=sys.stderr)
                failed += 1
                continue
            page_file = args.outdir / f"{name}.html"
            shutil.copyfile(folder / "report.html", page_file)
            page = browser.open(page_file.resolve().as_uri())
            figures = page.evaluate("document.querySelectorAll('figure.plot').length")
            drawn = page.evaluate("document.documentElement.dataset.plots")
            errors = page.errors
            page.screenshot(args.outdir / f"{name}.png")
            page.screenshot(args.outdir / f"{name}.top.png", max_height=TOP_PX)  # README's view: the first screens
            ok = drawn == str(figures) and not errors and len(page.requests) == 1
            print(f"{page_file} ({page_file.stat().st_size / 1e3:,.0f} kB, {drawn}/{figures} plots"
                  f"{', errors: ' + '; '.join(errors) if errors else ''}) + {name}.png")
            failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
