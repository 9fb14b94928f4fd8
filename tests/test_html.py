"""report.html: the page's contents against the commands' JSON and plain SQL, the --force rules,
and the pages opened in headless Chromium from file:// with the network off (every section
rendered, plots drew marks, no console errors, tables sort on click, hostile names stay text,
plain tables without JavaScript). A screenshot of each page is kept under the artifacts folder
the run prints ($PROFKIT_ARTIFACTS, default tmp/artifacts/html)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner

from profkit import pipeline
from profkit.cli import cli
from profkit.report import html
from tests.browser import Browser, find_chromium
from tests.conftest import export_variant

ROOT = Path(__file__).parents[1]
DATA = Path(__file__).parent / "data"
ENCODER = DATA / "h100_encoder_layer_nsys2023" / "profile.sqlite"
CAPTURES = ["h100_small_fwd_fp32", "h100_small_step_bf16", "h100_small_step_bf16_flash",
            "h100_small_step_bf16_flash_compile", "h100_small_step_bf16_autograd_nvtx", "h200_llama_step_bf16"]
FLOPS_CAPTURE = "h100_small_step_bf16_flash"  # the page made through the CLI, FLOPs counted from run.json
CAPTURE_SECTIONS = ["verdict", "steps", "categories", "kernels", "modules", "timeline", "flops"]
HOSTILE_RANGE = '<img src=x onerror="window.__pwned=1">'
HOSTILE_RANGE_2 = "<script>window.__pwned=2</script>"
HOSTILE_KERNEL = "<script>window.__pwned=3</script>evil_kernel"


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def block(page: str, section: str) -> object:
    """The JSON block a section embeds, parsed."""
    m = re.search(rf'<script type="application/json" id="data-{re.escape(section)}">(.*?)</script>', page, re.S)
    assert m, f"no JSON block for {section}"
    return json.loads(m.group(1))


def copy_capture(name: str, tmp: Path) -> Path:
    dest = tmp / name
    shutil.copytree(DATA / name, dest)
    return dest


# --- without a browser -------------------------------------------------------------------------------------------

def test_html_beside_report_md_and_force_rules(tmp_path: Path) -> None:
    folder = copy_capture("h100_small_fwd_fp32", tmp_path)
    (folder / "report.html").write_text("mine")
    r = invoke("report", folder, "--html")
    assert r.exit_code == 2 and r.output == f"Error: {folder / 'report.html'} exists; pass --force to replace it\n"
    assert not (folder / "report.md").exists() and (folder / "report.html").read_text() == "mine"  # nothing written
    r = invoke("report", folder, "--html", "--force")
    assert r.exit_code == 0, r.output
    assert r.output == f"report: {folder / 'report.md'}\nhtml: {folder / 'report.html'}\n"
    assert (folder / "report.html").read_text().startswith("<!doctype html>")
    assert invoke("report", folder, "--html").exit_code == 2  # both exist now: kept without --force
    r = invoke("report", "--demo", "--html")
    assert r.exit_code == 2 and r.output.startswith("Error: --html writes report.html beside a capture")


def test_export_elsewhere_gets_name_report_html(tmp_path: Path) -> None:
    export = tmp_path / "enc.sqlite"
    shutil.copyfile(ENCODER, export)
    r = invoke("report", export, "--html")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "enc.report.md").is_file() and (tmp_path / "enc.report.html").is_file()
    page = (tmp_path / "enc.report.html").read_text()
    # no run.json and no flops.json beside it: those sections say why instead of failing the page
    assert page.count('class="unavailable"') == 2 and "no run.json beside the export" in page
    assert "flops.json does not exist" in page


@pytest.fixture(scope="module")
def flops_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FLOPS_CAPTURE's report.html, made by the CLI (FLOPs counted from run.json on `meta`)."""
    folder = copy_capture(FLOPS_CAPTURE, tmp_path_factory.mktemp("flops-page"))
    r = invoke("report", folder, "--html")
    assert r.exit_code == 0, r.output
    return folder / "report.html"


def test_sections_hold_the_commands_json(flops_page: Path) -> None:
    """Each section's block is what its command prints, so nothing on the page is computed twice."""
    page, folder = flops_page.read_text(), flops_page.parent

    def command(*args: object) -> object:
        r = invoke("report", *args, "--format", "json")
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)

    assert block(page, "kernels") == command("kernels", folder, "--top", html.KERNEL_ROWS)
    assert block(page, "categories") == command("kernels", folder, "--by", "category", "--top", 0)
    assert block(page, "modules") == command("modules", folder)
    assert block(page, "timeline") == command("timeline", folder, "--by", "name")
    assert block(page, "verdict")["timeline"] == command("timeline", folder)  # type: ignore[index]
    assert block(page, "flops")["rows"] == command("flops", folder)  # type: ignore[index]
    run = json.loads((folder / "run.json").read_text())
    steps = block(page, "steps")  # run.json as profkit's RunRecord writes it (the config's keys normalised)
    assert steps["steps_ms"] == run["steps_ms"] and steps["summary"] == run["summary"]  # type: ignore[index]


def test_kernel_totals_match_plain_sql(flops_page: Path) -> None:
    db = sqlite3.connect(flops_page.parent / "profile.sqlite")
    total, count = db.execute('SELECT sum("end" - start), count(*) FROM CUPTI_ACTIVITY_KIND_KERNEL').fetchone()
    rows = block(flops_page.read_text(), "categories")
    assert sum(r["total_ns"] for r in rows) == total and sum(r["instances"] for r in rows) == count  # type: ignore
    by_name = dict(db.execute("SELECT s.value, sum(k.\"end\" - k.start) FROM CUPTI_ACTIVITY_KIND_KERNEL k "
                              "JOIN StringIds s ON s.id = k.demangledName GROUP BY s.value").fetchall())
    for r in block(flops_page.read_text(), "kernels"):  # type: ignore[union-attr]
        assert r["total_ns"] == by_name[r["name"]]


def test_page_loads_nothing_and_only_its_own_script_runs(flops_page: Path) -> None:
    page = flops_page.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page, re.I)
    assert "@import" not in page and "url(" not in page
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    policy = unescape(csp.group(1)) if csp else ""
    assert "default-src 'none'" in policy and "script-src 'sha256-" in policy and "unsafe" not in policy
    assert len(re.findall(r"<script>", page)) == 1  # the page's script; the rest are JSON blocks


def test_hostile_names_are_escaped_in_the_markup(tmp_path: Path) -> None:
    page = hostile_page(tmp_path).read_text()
    for name in (HOSTILE_RANGE, HOSTILE_RANGE_2, HOSTILE_KERNEL):
        assert name not in page
    assert html.esc(HOSTILE_RANGE) in page and html.esc(HOSTILE_KERNEL) in page


def test_compare_html_refuses_an_existing_file(tmp_path: Path) -> None:
    out = tmp_path / "c.html"
    out.write_text("mine")
    r = invoke("report", "compare", DATA / "h100_small_step_bf16", DATA / "h100_small_step_bf16_flash", "--html", out)
    assert r.exit_code == 2 and r.output == f"Error: {out} exists; choose another --html FILE\n"
    assert out.read_text() == "mine"


# --- in Chromium -------------------------------------------------------------------------------------------------

def hostile_page(tmp: Path) -> Path:
    """The encoder export with ranges and a kernel renamed to markup, and its page."""
    export = export_variant(
        tmp, f"UPDATE NVTX_EVENTS SET text = '{HOSTILE_RANGE}' WHERE text = 'softmax'",
        f"UPDATE NVTX_EVENTS SET text = '{HOSTILE_RANGE_2}' WHERE text = 'scores'",
        f"UPDATE StringIds SET value = '{HOSTILE_KERNEL}' WHERE id = 100")
    out = export.with_name("variant.report.html")
    if not out.exists():
        r = invoke("report", export, "--html")
        assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def artifacts(request: pytest.FixtureRequest) -> Path:
    folder = Path(os.environ.get("PROFKIT_ARTIFACTS", ROOT / "tmp" / "artifacts")) / "html"
    folder.mkdir(parents=True, exist_ok=True)
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"\ntest_html: screenshots in {folder}")
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if find_chromium() is None:
        if os.environ.get("PROFKIT_REQUIRE_CHROMIUM"):
            pytest.fail("no chromium on PATH, and PROFKIT_REQUIRE_CHROMIUM is set (scripts/test.sh installs it)")
        pytest.skip("no chromium on PATH (apt-get install chromium; scripts/test.sh does it as root)")
    with Browser() as b:
        yield b


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory, flops_page: Path) -> dict[str, Path]:
    """Every committed capture's page; FLOPS_CAPTURE's through the CLI, the others through the
    library with the FLOP section left out (counting each config on `meta` costs seconds)."""
    tmp = tmp_path_factory.mktemp("pages")
    out = {FLOPS_CAPTURE: flops_page}
    for name in CAPTURES:
        if name == FLOPS_CAPTURE:
            continue
        a = pipeline.load(DATA / name)
        text = html.capture_page(a, title=name, profile=f"tests/data/{name}", name=name)
        (tmp / f"{name}.html").write_text(text)
        out[name] = tmp / f"{name}.html"
    return out


def check_rendered(page, sections: list[str]) -> None:
    """Every section there, its table filled, every plot drawn with marks, no errors, no requests."""
    assert page.evaluate("Array.from(document.querySelectorAll('main > section')).map(s => s.id)") == sections
    for s in sections:
        rows = page.evaluate(f"document.querySelectorAll('#{s} tbody tr').length")
        assert rows > 0, f"section {s} has no table rows"
        assert page.evaluate(f"document.querySelectorAll('#{s} .unavailable').length") == 0, s
    figures = page.evaluate("document.querySelectorAll('figure.plot').length")
    assert figures >= len(sections) - (1 if "compare-kernels" in sections else 0)
    assert page.evaluate("document.documentElement.dataset.plots") == str(figures)
    marks = page.evaluate("Array.from(document.querySelectorAll('figure.plot')).map(f => f.querySelectorAll("
                          "'svg .mark').length)")
    assert all(m > 0 for m in marks), marks
    assert page.errors == []
    assert len(page.requests) == 1 and page.requests[0].startswith("file://")


@pytest.mark.parametrize("name", CAPTURES)
def test_capture_page_in_chromium(name: str, pages: dict[str, Path], browser: Browser, artifacts: Path) -> None:
    page = browser.open(pages[name].as_uri())
    sections = CAPTURE_SECTIONS if name == FLOPS_CAPTURE else CAPTURE_SECTIONS[:-1]
    check_rendered(page, sections)
    # the embedded JSON survives HTML parsing whole (its <, >, & are \u escapes)
    assert page.evaluate("JSON.parse(document.getElementById('data-kernels').textContent)") == \
        block(pages[name].read_text(), "kernels")
    # one bar per kernel (up to PLOT_ROWS), and a full name on hover of every kernel cell
    kernels = len(block(pages[name].read_text(), "kernels"))  # type: ignore[arg-type]
    assert page.evaluate("document.querySelectorAll('#kernels svg rect.mark').length") == min(kernels, html.PLOT_ROWS)
    assert page.evaluate("Array.from(document.querySelectorAll('#kernels tbody tr td:first-child')).every("
                         "td => td.title.length >= 1)")
    if name == FLOPS_CAPTURE:
        rows = block(pages[name].read_text(), "flops")["rows"]  # type: ignore[index]
        drawable = sum(1 for r in rows if (r["intensity"] or 0) > 0 and (r["tflops_per_s"] or 0) > 0)
        assert page.evaluate("document.querySelectorAll('#flops svg circle.mark').length") == drawable > 0
        assert page.evaluate("document.querySelectorAll('#flops svg polyline.roof').length") == 2  # bf16 and fp32
    page.screenshot(artifacts / f"{name}.png")
    assert (artifacts / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def column(page, section: str, index: int) -> list[str]:
    return page.evaluate(f"Array.from(document.querySelectorAll('#{section} tbody tr')).map(r => "
                         f"r.cells[{index}].dataset.v)")


def test_tables_sort_on_click(pages: dict[str, Path], browser: Browser) -> None:
    page = browser.open(pages["h100_small_step_bf16"].as_uri())
    before = column(page, "kernels", 2)  # instances; the command sorts by total time
    assert [float(v) for v in before] != sorted((float(v) for v in before), reverse=True)
    page.click("#kernels th:nth-child(3)")
    assert [float(v) for v in column(page, "kernels", 2)] == sorted((float(v) for v in before), reverse=True)
    assert page.evaluate("document.querySelector('#kernels th:nth-child(3)').getAttribute('aria-sort')") == \
        "descending"
    page.click("#kernels th:nth-child(3)")
    assert [float(v) for v in column(page, "kernels", 2)] == sorted(float(v) for v in before)
    unsorted = column(page, "kernels", 0)
    page.click("#kernels th:nth-child(1)")  # text: A to Z first, as the browser's locale orders it
    names = column(page, "kernels", 0)
    assert names != unsorted and sorted(names) == sorted(unsorted)
    assert names == page.evaluate(f"{json.dumps(unsorted)}.sort((a, b) => a.localeCompare(b))")
    assert page.errors == []


def test_hostile_names_stay_text(tmp_path: Path, browser: Browser, artifacts: Path) -> None:
    page = browser.open(hostile_page(tmp_path).as_uri())
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    assert page.evaluate("document.querySelectorAll('main script, main [onerror]').length") == 0
    text = page.evaluate("document.body.innerText")
    assert HOSTILE_RANGE in text and HOSTILE_RANGE_2 in text
    hover = page.evaluate("Array.from(document.querySelectorAll('#kernels td[title]')).map(td => td.title)")
    assert HOSTILE_KERNEL in hover
    svg_titles = page.evaluate("Array.from(document.querySelectorAll('#timeline svg text title')).map(t => "
                               "t.textContent)")
    assert HOSTILE_RANGE in svg_titles  # the plot's labels are text too
    assert page.errors == []
    page.screenshot(artifacts / "hostile-names.png")


def test_plain_tables_without_javascript(pages: dict[str, Path], browser: Browser, artifacts: Path) -> None:
    name = "h100_small_step_bf16"
    page = browser.open(pages[name].as_uri(), javascript=False)
    rows = page.evaluate("Array.from(document.querySelectorAll('main > section')).map(s => "
                         "s.querySelectorAll('tbody tr').length)")
    assert len(rows) == 6 and all(n > 0 for n in rows)
    assert page.evaluate("document.querySelectorAll('svg').length") == 0
    assert page.evaluate("document.querySelectorAll('p.noplot').length") == \
        page.evaluate("document.querySelectorAll('figure.plot').length") > 0
    assert page.errors == []
    page.screenshot(artifacts / f"{name}-no-javascript.png")


def test_compare_page_in_chromium(tmp_path: Path, browser: Browser, artifacts: Path) -> None:
    a, b = DATA / "h100_small_step_bf16", DATA / "h100_small_step_bf16_flash"
    out = tmp_path / "compare.html"
    r = invoke("report", "compare", a, b, "--html", out, "--format", "json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    page = browser.open(out.as_uri())
    check_rendered(page, ["runs", "compare", "compare-kernels"])
    # regressions first: the top row is the category whose time per step grew most
    worst = max((x for x in rows if x["capture"] != rows[0]["capture"]), key=lambda x: x["delta_ns"])
    assert page.evaluate("document.querySelector('#compare tbody tr td').textContent") == worst["category"]
    bars = page.evaluate("document.querySelectorAll('#compare svg rect.mark').length")
    assert bars == min(len({x["category"] for x in rows}), html.PLOT_ROWS) * 2
    page.screenshot(artifacts / "compare.png")


def test_a_large_capture_page_stays_small_and_opens_fast(tmp_path: Path, browser: Browser,
                                                          bench_parser: ModuleType) -> None:
    """The encoder export laid end to end 200 times (46,800 kernels, as scripts/bench_parser.py
    builds its 1 M one): the page's size does not grow with the kernels, and it opens in < 2 s."""
    big = tmp_path / "big.sqlite"
    bench_parser.build(ENCODER, 200, big)
    r = invoke("report", big, "--html")
    assert r.exit_code == 0, r.output
    out = tmp_path / "big.report.html"
    assert sum(x["instances"] for x in block(out.read_text(), "categories")) == 234 * 200  # type: ignore[union-attr]
    assert out.stat().st_size < 5 * 2**20
    t0 = time.monotonic()
    page = browser.open(out.as_uri())
    assert time.monotonic() - t0 < 2.0
    assert page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd") < 2000
    assert page.errors == []


# --- the memory, floor-and-gap, ranks and sweep pages --------------------------------------------------------

MEMORY = DATA / "h200_memory_tiny_step"
RANKS_CAPTURE = DATA / "h200_small_step_bf16_ddp_1rank"
SWEEPS = ROOT / "reports" / "h200" / "sweeps"


@pytest.fixture(scope="module")
def memory_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A capture folder holding a memory snapshot (the tiny step's, beside the small bf16 step's export)."""
    folder = copy_capture("h100_small_step_bf16", tmp_path_factory.mktemp("memory-page"))
    for name in ("memory.pickle", "memory.json"):
        shutil.copyfile(MEMORY / name, folder / name)
    r = invoke("report", folder, "--html")
    assert r.exit_code == 0, r.output
    return folder / "report.html"


def test_memory_section_holds_report_memorys_json(memory_page: Path) -> None:
    folder = memory_page.parent
    r = invoke("report", "memory", folder / "memory.pickle", "--format", "json")
    assert r.exit_code == 0, r.output
    doc = block(memory_page.read_text(), "memory")
    assert doc == json.loads(r.stdout)
    # the replayed peak is torch's own counter, recorded in the sidecar at the window's end
    end = json.loads((MEMORY / "memory.json").read_text())["end"]
    assert doc["peak_allocated_bytes"] == end["peak_allocated_bytes"] == max(  # type: ignore[index]
        p["allocated_bytes"] for p in doc["timeline"])  # type: ignore[index]
    assert sum(c["bytes"] for c in doc["categories"]) == doc["peak_allocated_bytes"]  # type: ignore[index]


def test_memory_page_in_chromium(memory_page: Path, browser: Browser, artifacts: Path) -> None:
    page = browser.open(memory_page.as_uri())
    check_rendered(page, CAPTURE_SECTIONS + ["memory"])
    doc = block(memory_page.read_text(), "memory")
    assert page.evaluate("document.querySelectorAll('#memory svg polygon.allocated').length") == 1
    assert page.evaluate("document.querySelectorAll('#memory svg polyline.reserved').length") == 1
    assert page.evaluate("document.querySelectorAll('#memory svg circle.peak').length") == 1
    phases = doc["phases"]  # type: ignore[index]
    assert len(phases) == 3 and page.evaluate("document.querySelectorAll('#memory svg rect.phase').length") == 3
    assert page.evaluate("document.querySelector('#memory svg circle.peak title').textContent").endswith(
        doc["peak_path"])  # type: ignore[index]
    cats = doc["categories"]  # type: ignore[index]
    assert page.evaluate("document.querySelectorAll('#memory svg rect.mark').length") == len(cats)
    assert page.evaluate("document.querySelectorAll('#memory table.top-allocations tbody tr').length") == \
        len(doc["top_allocations"]) > 0  # type: ignore[index]
    page.screenshot(artifacts / "memory.png")


def test_flops_section_has_the_floor_and_gap_waterfall(flops_page: Path, browser: Browser) -> None:
    gap = block(flops_page.read_text(), "flops")["gap"]  # type: ignore[index]
    run = json.loads((flops_page.parent / "run.json").read_text())
    # the components add up to the measured step (run.json's median, computed here from its steps)
    steps = sorted(run["steps_ms"])
    median = (steps[(len(steps) - 1) // 2] + steps[len(steps) // 2]) / 2
    assert sum(g["ns"] for g in gap) == pytest.approx(median * 1e6, rel=1e-9)
    assert [g["component"] for g in gap][0] == "floor"
    page = browser.open(flops_page.as_uri())
    bars = page.evaluate("Array.from(document.querySelectorAll('#flops figure')).filter(f => "
                         "JSON.parse(f.dataset.plot).kind === 'waterfall').map(f => f.querySelectorAll("
                         "'rect.mark').length)")
    assert bars == [len(gap) + 1]  # one per component and the step
    assert page.evaluate("document.querySelectorAll('#flops tbody tr').length") == \
        len(block(flops_page.read_text(), "flops")["rows"]) + len(gap)  # type: ignore[index]
    assert page.errors == []


def test_ranks_section_of_a_multi_rank_capture(tmp_path: Path, browser: Browser, artifacts: Path) -> None:
    folder = tmp_path / "ddp"
    shutil.copytree(RANKS_CAPTURE, folder)
    r = invoke("report", folder, "--html")
    assert r.exit_code == 0, r.output
    out = folder / "report.html"
    r = invoke("report", "ranks", folder, "--format", "json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert block(out.read_text(), "ranks") == rows and [x["rank"] for x in rows] == [0]
    # the rank's kernel time, plain SQL: compute is the union of its kernels (one stream per step here or not,
    # never more than the sum of their durations)
    db = sqlite3.connect(folder / "rank0.sqlite")
    (total,) = db.execute('SELECT sum("end" - start) FROM CUPTI_ACTIVITY_KIND_KERNEL').fetchone()
    assert 0 < rows[0]["compute_ns"] * rows[0]["steps"] <= total
    page = browser.open(out.as_uri())
    check_rendered(page, ["ranks"] + CAPTURE_SECTIONS)
    assert page.evaluate("document.querySelectorAll('#ranks svg rect.mark').length") == 4 * len(rows)
    assert page.evaluate("document.querySelector('#ranks svg text.label').firstChild.textContent") == "rank 0"
    page.screenshot(artifacts / "ranks.png")


def sweep_db(tmp: Path, name: str) -> Path:
    db = tmp / name
    shutil.copyfile(SWEEPS / name, db)  # never written where it is committed
    return db


def test_sweep_report_html_and_its_force_rules(tmp_path: Path, browser: Browser, artifacts: Path) -> None:
    db, out = sweep_db(tmp_path, "nanogpt.db"), tmp_path / "nanogpt"
    hostile = '<img src=x onerror="window.__pwned=4">'
    with sqlite3.connect(db) as c:
        c.execute("UPDATE models SET reason = ? WHERE status != 'ok'", (hostile,))
        ok, points = c.execute("SELECT sum(status = 'ok'), count(*) FROM models").fetchone()
    r = invoke("sweep", "report", "models", "--db", db, "--out", out, "--html")
    assert r.exit_code == 0, r.output
    assert f"html: {out / 'models.html'}" in r.output.splitlines()
    again = invoke("sweep", "report", "models", "--db", db, "--out", out, "--html")
    assert again.exit_code == 2 and again.output.startswith(f"Error: {out / 'models.md'} exists")
    text = (out / "models.html").read_text()
    assert hostile not in text and html.esc(hostile) in text
    assert len(block(text, "sweep")["rows"]) == points  # type: ignore[index]
    page = browser.open((out / "models.html").as_uri())
    check_rendered(page, ["sweep"])
    assert page.evaluate("Array.from(document.querySelectorAll('#sweep figure')).map(f => f.querySelectorAll("
                         "'rect.mark').length)") == [ok, ok]
    # "Every point" lists each row of the table, as models.md does
    md_rows = [x for x in (out / "models.md").read_text().split("## Every point")[1].split("\n## ")[0].splitlines()
               if x.startswith("|")][2:]
    assert page.evaluate("document.querySelectorAll('#sweep table.seed')[0].tBodies[0].rows.length") == \
        len(md_rows) == points
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert hostile in page.evaluate("document.body.innerText")
    page.screenshot(artifacts / "sweep-models.png")


def test_sweep_attention_page_per_grid(tmp_path: Path, browser: Browser, artifacts: Path) -> None:
    db, out = sweep_db(tmp_path, "attention.db"), tmp_path / "cs336"
    r = invoke("sweep", "report", "attention", "--db", db, "--out", out, "--preset", "cs336", "--html")
    assert r.exit_code == 0, r.output
    doc = block((out / "attention.html").read_text(), "sweep")
    (grid,) = doc["grids"]  # type: ignore[index]
    with sqlite3.connect(db) as c:
        ids = set(grid["ids"])
        rows = [x for x in c.execute("SELECT point_id, impl, seq_len, head_dim, embed, status FROM attention")
                if x[0] in ids]
    ok = [x for x in rows if x[5] == "ok"]
    labels = {x[2:5] for x in ok}
    page = browser.open((out / "attention.html").as_uri())
    check_rendered(page, ["sweep"])
    marks = page.evaluate("Array.from(document.querySelectorAll('#sweep figure')).map(f => f.querySelectorAll("
                          "'rect.mark').length)")
    impls = {x[1] for x in ok}
    assert marks == [min(len(labels), html.PLOT_ROWS) * len(impls)] * 3  # a bar per implementation and shape
    page.screenshot(artifacts / "sweep-attention.png")


def test_sweep_html_needs_report_dir(tmp_path: Path) -> None:
    r = invoke("sweep", "models", "--html", "--db", tmp_path / "x.db", "--model", "tiny", "--device", "cpu")
    assert r.exit_code == 2
    assert r.output == "Error: --html writes KIND.html into the --report folder; give --report DIR\n"
    assert not (tmp_path / "x.db").exists()
