"""Memory-snapshot benchmark: `profkit report memory` on torch memory snapshots of 10 MB to 1 GB.

Builds snapshots shaped like real ones from the H200 fixture (tests/data/h200_memory_tiny_step:
one measured step of the tiny model, 1,071 allocator events, 93 distinct frames) by repeating its
step end to end: repeat k is the fixture's trace with every time shifted by k x (the step's span +
1 ms) and its ranges renamed step_k. The step frees everything it allocates, and the allocator
merges every freed block back, so it ends in the block layout it began with: the same addresses
are valid again in every repeat, alloc/free pairs stay consistent, and torch's
max_memory_allocated over the window is the fixture's (71,079,936 B) at every size.

The pickle is written as torch's snapshot is dumped (`pickle.dump(snapshot, f, protocol=4)`,
Python's pickler): every frame dict is one object shared by all the events that hold it, so the
pickler writes it once and every later use is a memo reference (BINGET / LONG_BINGET), as are
repeated strings ('alloc', the keys); each event dict and its frames list are new objects
(EMPTY_DICT / EMPTY_LIST + MEMOIZE). Repeats 0 and 1 go through pickle's own pure-Python
pickler; repeat 1 references only objects repeat 0 memoized, so repeats 2.. are repeat 1's bytes
with the 7-byte times patched (the memo counter advanced by repeat 1's count each time) and the
file streams out in constant memory. The sidecar (memory.json) repeats the range log, the
annotations and the per-step storages (gradients, saved tensors) with each step's number.

Then, per size, each a fresh process measured by /usr/bin/time (peak RSS): `profkit report memory
DIR --format json` with this checkout's reader, and the same with the reader of another commit
(--old REV, default 82dc700, unpacked with git archive into --work) where its size allows
(--old-max-mb); the two JSON outputs must be equal, key for key. Writes markdown.

Example (about 15 minutes on 2 cores, builds included):
    python scripts/bench_snapshot.py --sizes 10,100,1000 --report reports/bench_snapshot.md
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import pickle
import platform
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "h200_memory_tiny_step"
GAP_US = 1000


def _load(fixture: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    sys.path.insert(0, str(ROOT))
    from profkit.snapshot import load_pickle  # the restricted reader: the fixture's shared objects stay shared

    return load_pickle(fixture / "memory.pickle"), json.loads((fixture / "memory.json").read_text())


class _Pickler(pickle._Pickler):  # type: ignore[name-defined,misc]
    """pickle's pure-Python pickler with a memo counter that template repeats can advance."""

    extra = 0

    def memoize(self, obj: Any) -> None:
        idx = len(self.memo) + self.extra
        self.write(self.put(idx))
        self.memo[id(obj)] = idx, obj


def _span(snap: dict[str, Any], side: dict[str, Any]) -> tuple[int, int]:
    times = [e["time_us"] for e in snap["device_traces"][side["device"]]]
    times += [a["time_us"] for a in snap.get("external_annotations", [])]
    return min(times), max(times) - min(times) + GAP_US


def _step_name(name: str, k: int) -> str:
    return f"step_{k}" if name == "step_0" else name


def write_snapshot(out: Path, repeats: int, fixture: Path = FIXTURE) -> dict[str, Any]:
    """Write out/memory.pickle and out/memory.json: the fixture's step `repeats` times. Returns
    {events, bytes, repeats}."""
    snap, side = _load(fixture)
    device = int(side["device"])
    trace = snap["device_traces"][device]
    _, span = _span(snap, side)
    out.mkdir(parents=True, exist_ok=True)
    events_total = len(trace) * repeats
    with open(out / "memory.pickle", "wb") as f:
        p = _Pickler(f, protocol=4)
        p.write(pickle.PROTO + bytes([4]))
        p.write(pickle.EMPTY_DICT)
        p.memoize(snap)
        p.write(pickle.MARK)
        for key, value in snap.items():
            p.save(key)
            if key == "device_traces":
                p.write(pickle.EMPTY_LIST)
                p.memoize(value)
                p.write(pickle.MARK)
                for d, t in enumerate(value):
                    if d != device:
                        p.save(t)
                        continue
                    _write_trace(p, f, t, repeats, span)
                p.write(pickle.APPENDS)
            elif key == "external_annotations":
                p.save([dict(a, name=_step_name_prefixed(a["name"], k), time_us=a["time_us"] + k * span)
                        for k in range(repeats) for a in value])
            else:
                p.save(value)
        p.write(pickle.SETITEMS)
        p.write(pickle.STOP)
    side = copy.deepcopy(side)
    rows = side["ranges"]["rows"]
    side["ranges"]["rows"] = [[th, kind, _step_name(name, k), host + k * span * 1000]
                              for k in range(repeats) for th, kind, name, host in rows]
    per_step = [r for r in side["tensors"]["rows"] if r[1] >= 0]
    side["tensors"]["rows"] = [r for r in side["tensors"]["rows"] if r[1] < 0] + [
        [kind, k, addr, size, name] for k in range(repeats) for kind, _, addr, size, name in per_step]
    side["annotations"] = side.get("annotations", 0) * repeats
    side["max_entries"] = max(int(side["max_entries"]), events_total + 1)
    side["run"] = dict(side.get("run") or {}, steps=repeats)
    (out / "memory.json").write_text(json.dumps(side, separators=(",", ":")) + "\n")  # as collect writes it
    return {"events": events_total, "bytes": (out / "memory.pickle").stat().st_size, "repeats": repeats}


def _step_name_prefixed(name: str, k: int) -> str:
    return "profkit:" + _step_name(name[len("profkit:"):], k) if name.startswith("profkit:") else name


def _write_trace(p: _Pickler, f: Any, trace: list[dict[str, Any]], repeats: int, span: int) -> None:
    """The trace list `repeats` times over: repeats 0 and 1 pickled, 2.. patched copies of 1."""
    p.write(pickle.EMPTY_LIST)
    p.memoize(trace)
    if repeats == 0:
        return
    p._batch_appends(trace)
    if repeats == 1:
        return
    # repeat 1: new event dicts and frames lists (as torch makes per event), the same frame dicts
    chunks: list[tuple[bytes, int]] = []
    before = len(p.memo) + p.extra
    buf = io.BytesIO()
    real_write = p.write
    p.write = buf.write
    try:
        for e in trace:
            start = buf.tell()
            ev = dict(e, time_us=e["time_us"] + span, frames=list(e.get("frames", [])))
            p.save(ev)
            data = buf.getvalue()[start:]
            tag = b"\x8a\x07" + struct.pack("<q", ev["time_us"])[:7]
            at = data.find(tag)
            if at < 0 or data.find(tag, at + 1) >= 0 or ev["time_us"] >= 1 << 55:
                raise SystemExit("bench_snapshot: a time is not one 7-byte LONG1; the template needs it")
            chunks.append((data, at + 2))
            p.memo.pop(id(ev), None)
            p.memo.pop(id(ev["frames"]), None)
            p.extra += 2  # the two entries just popped keep their numbers
    finally:
        p.write = real_write
    per_repeat = len(p.memo) + p.extra - before
    base = [e["time_us"] + span for e in trace]

    def emit(k: int) -> None:
        out = bytearray()
        for (data, at), t in zip(chunks, base, strict=True):
            b = bytearray(data)
            b[at:at + 7] = struct.pack("<q", t + (k - 1) * span)[:7]
            out += b
        p.write(pickle.MARK)  # one APPENDS per repeat, as pickle's own batches would be
        p.write(bytes(out))
        p.write(pickle.APPENDS)

    for k in range(1, repeats):
        emit(k)
        if k > 1:
            p.extra += per_repeat
    f.flush()


# --- measuring --------------------------------------------------------------------------------


def _old_tree(rev: str, work: Path) -> Path:
    dst = work / f"old-{rev}"
    if not (dst / "profkit").is_dir():
        dst.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "profkit", "models"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dst)], input=archive, check=True)
        # the old tree imports profkit.models from models/ (setuptools package-dir)
        (dst / "profkit" / "models").symlink_to(dst / "models", target_is_directory=True)
    return dst


def measure(folder: Path, out: Path, *, fmt: str, pythonpath: Path | None) -> dict[str, Any]:
    """One `profkit report memory FOLDER --format FMT` in a fresh process: seconds, peak RSS (MB)."""
    env = dict(os.environ, PROFKIT_NO_CACHE="1")
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    out.unlink(missing_ok=True)
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        cmd = ["/usr/bin/time", "-f", "%M %e", "-o", tf.name, sys.executable, "-m", "profkit", "report", "memory",
               str(folder), "--format", fmt, "-o", str(out)]
        t0 = time.perf_counter()
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=pythonpath or ROOT)
        wall = time.perf_counter() - t0
        stats = Path(tf.name).read_text().split()
    peak = int(stats[-2]) / 1024 if len(stats) >= 2 and stats[-2].isdigit() else None
    if run.returncode != 0:
        return {"ok": False, "error": (run.stderr.strip().splitlines() or ["?"])[-1][:200], "seconds": wall,
                "peak_mb": peak}
    return {"ok": True, "seconds": wall, "peak_mb": peak}


def _old(folder: Path, out: Path, tree: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """The old reader's run, measured once per built snapshot and commit (it does not change):
    kept beside its output and reused."""
    kept = out.with_suffix(out.suffix + ".run.json")
    if kept.is_file() and out.is_file():
        r = json.loads(kept.read_text())
        if r.get("snapshot") == meta:
            return dict(r["result"], reused=True)
    result = measure(folder, out, fmt="json" if out.suffix == ".json" else "markdown", pythonpath=tree)
    kept.write_text(json.dumps({"snapshot": meta, "result": result}))
    return result


def _same(a: Path, b: Path, fmt: str) -> bool:
    if fmt == "json":
        return bool(json.loads(a.read_text()) == json.loads(b.read_text()))
    return a.read_text() == b.read_text()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10,100,1000", help="Target pickle sizes in MB.")
    ap.add_argument("--work", type=Path, default=ROOT / "tmp" / "bench_snapshot")
    ap.add_argument("--old", default="82dc700", help="The commit whose reader is measured beside this one.")
    ap.add_argument("--old-max-mb", type=float, default=100, help="Largest size the old reader runs on (JSON).")
    ap.add_argument("--json-max-mb", type=float, default=100, help="Largest size this reader runs on as JSON too.")
    ap.add_argument("--markdown-max-mb", type=float, default=10,
                    help="Largest size on which the old reader's markdown is compared too.")
    ap.add_argument("--report", type=Path, help="Write markdown here.")
    args = ap.parse_args()
    fixture_bytes = (FIXTURE / "memory.pickle").stat().st_size
    old_tree = _old_tree(args.old, args.work) if args.old else None
    rows = []
    for mb in [float(v) for v in args.sizes.split(",")]:
        repeats = max(1, round(mb * 1e6 / fixture_bytes))
        folder = args.work / f"snap-{mb:g}MB"
        meta_file = folder / "built.json"
        if meta_file.is_file() and json.loads(meta_file.read_text()).get("repeats") == repeats:
            meta = json.loads(meta_file.read_text())
        else:
            t0 = time.perf_counter()
            meta = write_snapshot(folder, repeats)
            meta["build_s"] = time.perf_counter() - t0
            meta_file.write_text(json.dumps(meta))
        w = args.work
        row: dict[str, Any] = {"mb": mb, "meta": meta}
        row["new_md"] = measure(folder, w / f"new-{mb:g}.md", fmt="markdown", pythonpath=None)
        if mb <= args.json_max_mb:
            row["new_json"] = measure(folder, w / f"new-{mb:g}.json", fmt="json", pythonpath=None)
        if old_tree is not None and mb <= args.old_max_mb:
            row["old_json"] = _old(folder, w / f"old-{mb:g}.json", old_tree, meta)
            if row["old_json"]["ok"] and row.get("new_json", {}).get("ok"):
                row["same_json"] = _same(w / f"old-{mb:g}.json", w / f"new-{mb:g}.json", "json")
        if old_tree is not None and mb <= args.markdown_max_mb:
            row["old_md"] = _old(folder, w / f"old-{mb:g}.md", old_tree, meta)
            if row["old_md"]["ok"] and row["new_md"]["ok"]:
                row["same_md"] = _same(w / f"old-{mb:g}.md", w / f"new-{mb:g}.md", "markdown")
        if row["new_md"]["ok"]:
            text = (w / f"new-{mb:g}.md").read_text()
            row["peak_equal"] = "71,079,936 B): equal" in text
        rows.append(row)
        print(json.dumps(row), flush=True)
    text = _markdown(rows, args)
    if args.report:
        args.report.write_text(text)
    print(text)


def _markdown(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    load = os.getloadavg()

    def cell(r: dict[str, Any] | None, key: str, fmt: str) -> str:
        if r is None:
            return "—"
        if not r["ok"] and key == "seconds":
            return f"failed ({r['error']})"
        v = r.get(key)
        return "—" if v is None else format(v, fmt)

    def yes(v: bool | None) -> str:
        return "—" if v is None else "yes" if v else "NO"

    lines = ["# Memory-snapshot benchmark (`profkit report memory` at scale)", "",
             f"`python scripts/bench_snapshot.py --sizes {args.sizes} --work {args.work} --old {args.old} "
             f"--old-max-mb {args.old_max_mb:g} --json-max-mb {args.json_max_mb:g} "
             f"--markdown-max-mb {args.markdown_max_mb:g}`", "",
             f"Machine: {os.cpu_count()}-core {platform.machine()}, Python {platform.python_version()}, shared with "
             f"other test runs; loadavg at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}. Each command a fresh "
             "process (`/usr/bin/time -f %M`: peak RSS), one run each, no cache. new: this checkout; old: "
             f"`{args.old}`'s checkout (its runs kept beside their outputs and reused when the snapshot is the "
             "same).", "",
             "| target | pickle MB | events | new md s | new md peak MB | µs / event | new json s | new json peak MB "
             "| old json s | old json peak MB | same JSON | same markdown | peak = torch's |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|:---:|:---:|"]
    for r in rows:
        meta, new = r["meta"], r["new_md"]
        per = f"{new['seconds'] / meta['events'] * 1e6:.1f}" if new["ok"] else "—"
        lines.append(
            f"| {r['mb']:g} MB | {meta['bytes'] / 1e6:,.1f} | {meta['events']:,} | {cell(new, 'seconds', ',.1f')} | "
            f"{cell(new, 'peak_mb', ',.0f')} | {per} | {cell(r.get('new_json'), 'seconds', ',.1f')} | "
            f"{cell(r.get('new_json'), 'peak_mb', ',.0f')} | {cell(r.get('old_json'), 'seconds', ',.1f')} | "
            f"{cell(r.get('old_json'), 'peak_mb', ',.0f')} | {yes(r.get('same_json'))} | {yes(r.get('same_md'))} | "
            f"{yes(r.get('peak_equal'))} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
