"""Helpers for the multi-GPU scripts (scripts/gpu_issue14.sh, scripts/gpu_issue15.sh):

    python scripts/ranks_fixture.py nccl EXPORT OUT.jsonl      # NCCL's NVTX rows, every column, and NCCL kernels
    python scripts/ranks_fixture.py fixture CAPTURE DEST        # a scrubbed copy of a capture folder (exports,
                                                                # run records; no .nsys-rep, no logs)
    python scripts/ranks_fixture.py table OUT.md NAME=FOLDER...  # step time, tokens/s, scaling, communication

`table` takes run or capture folders; NAME ending in `-1gpu` is the one-GPU baseline of the
NAME without it (`small-ddp` against `small-ddp-1gpu`): scaling efficiency = tokens/s on N GPUs
(every rank's tokens) over N x tokens/s on one.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import sys
from pathlib import Path

from profkit import layout
from profkit.pipeline import capture_ranks
from profkit.scrub import scrub_export


def nccl(export: Path, out: Path) -> None:
    db = sqlite3.connect(f"file:{export}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    rows = db.execute("SELECT n.*, s.value AS textValue FROM NVTX_EVENTS n LEFT JOIN StringIds s ON s.id = n.textId "
                      "WHERE n.domainId IN (SELECT domainId FROM NVTX_EVENTS WHERE eventType = 75 AND "
                      "(text = 'NCCL' OR textId IN (SELECT id FROM StringIds WHERE value = 'NCCL'))) "
                      "ORDER BY n.start LIMIT 400").fetchall()
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    kernels = []
    if "CUPTI_ACTIVITY_KIND_KERNEL" in tables:
        kernels = db.execute("SELECT s.value AS name, count(*) AS n, sum(k.end - k.start) AS ns FROM "
                             "CUPTI_ACTIVITY_KIND_KERNEL k JOIN StringIds s ON s.id = k.demangledName WHERE s.value "
                             "LIKE '%nccl%' GROUP BY 1").fetchall()
    schemas = [dict(r) for r in db.execute("SELECT * FROM NVTX_PAYLOAD_SCHEMAS")] if "NVTX_PAYLOAD_SCHEMAS" in tables \
        else []
    db.close()
    with out.open("w") as f:
        for r in rows:
            f.write(json.dumps({k: (v.hex() if isinstance(v, bytes) else v) for k, v in dict(r).items()}) + "\n")
        f.write(json.dumps({"nccl_kernels": [dict(k) for k in kernels], "payload_schemas": schemas[:50],
                            "tables": sorted(t for t in tables if "NVTX" in t)}, default=str) + "\n")
    print(f"{out}: {len(rows)} NCCL NVTX rows, {len(kernels)} NCCL kernel names")


def fixture(capture: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=False)
    for f in sorted(capture.iterdir()):
        if f.suffix == ".sqlite":
            scrub_export(f, dest / f.name)
        elif f.name.endswith(".run.json") or f.name == layout.RUN_FILE:
            (dest / f.name).write_text(f.read_text())
    print(f"{dest}: {', '.join(sorted(p.name for p in dest.iterdir()))}")


def _records(folder: Path) -> list[layout.RunRecord]:
    ranks = layout.rank_files(folder, layout.RANK_RUN)
    if ranks:
        return [layout.RunRecord.read_file(p) for p in ranks.values()]
    return [layout.RunRecord.read(folder)]


def table(out: Path, pairs: list[str]) -> None:
    folders = dict(p.split("=", 1) for p in pairs)
    rows = ["| config | GPUs | step ms (median, rank 0) | tokens/s (all ranks) | scaling efficiency | comm ms/step "
            "| exposed ms/step | wait ms/step (max) | busbw GB/s |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: "
            "| ---: | ---: |"]
    tps: dict[str, float] = {}
    for name, folder in folders.items():
        try:
            recs = _records(Path(folder))
        except Exception as e:  # noqa: BLE001  (one config failing leaves the others' rows)
            rows.append(f"| {name} | — | failed: {e} | | | | | | |")
            continue
        tps[name] = sum(r.summary.tokens_per_s for r in recs)
    for name, folder in folders.items():
        if name not in tps:
            continue
        recs = _records(Path(folder))
        base = tps.get(f"{name}-1gpu") or tps.get(name.rsplit("-", 1)[0] + "-1gpu")
        eff = f"{100 * tps[name] / (len(recs) * base):.1f}%" if base and len(recs) > 1 else "—"
        comm = exposed = wait = bw = "—"
        if capture_ranks(Path(folder)) and any(Path(folder).glob("*.sqlite")):
            from profkit.ranks import load_ranks

            r = load_ranks(Path(folder))
            t = r.table
            comm, exposed = f"{t['comm_ns'].median() / 1e6:.3f}", f"{t['comm_exposed_ns'].median() / 1e6:.3f}"
            wait = f"{t['wait_ns'].max() / 1e6:.3f}"
            bw = ", ".join(f"{x['collective']} {x['busbw_gbps']:.0f}" for _, x in r.bandwidth.iterrows()
                           if x["busbw_gbps"] == x["busbw_gbps"]) or "—"
        rows.append(f"| {name} | {len(recs)} | {statistics.median(recs[0].steps_ms):.2f} | {tps[name]:,.0f} | {eff} "
                    f"| {comm} | {exposed} | {wait} | {bw} |")
    out.write_text("\n".join(rows) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    what, *args = sys.argv[1:]
    if what == "nccl":
        nccl(Path(args[0]), Path(args[1]))
    elif what == "fixture":
        fixture(Path(args[0]), Path(args[1]))
    elif what == "table":
        table(Path(args[0]), args[1:])
    else:
        raise SystemExit(__doc__)
