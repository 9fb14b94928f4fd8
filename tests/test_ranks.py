"""Several ranks: the interval arithmetic (against a per-nanosecond count), collectives across ranks
and clock skew, nccl-tests' bandwidth, torchrun's command lines and refusals, a two-process
export with colliding correlation ids, and the whole pipeline on CPU under the real nsys (two
gloo ranks, DDP per rank and FSDP2 in one file, a failing rank, a hanging rank)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from profkit import layout, pipeline
from profkit import report as reports
from profkit.analyze import ranks as R
from profkit.cli import cli
from profkit.collect import distributed as D
from profkit.config import RunConfig
from profkit.parse_ranks import load_nccl_ranges, payload_bytes, process_ranks
from tests.conftest import TESTS, real_nsys

ROOT = TESTS.parent
AR = "ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevKernelArgsStorage<4096ul>)"
RS = "ncclDevKernel_ReduceScatter_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)"
AG = "ncclDevKernel_AllGather_RING_LL(ncclDevKernelArgsStorage<4096ul>)"
GEMM = "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64"


def frame(rows: list[tuple[int, int, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["start_ns", "end_ns", "name"]).astype({"start_ns": "int64", "end_ns": "int64"})


def by_mask(rows: list[tuple[int, int, str]]) -> tuple[int, int, int, int]:
    """(compute, comm, hidden, exposed) counted nanosecond by nanosecond: the independent answer."""
    end = max(e for _, e, _ in rows) + 1
    comp, comm = np.zeros(end, bool), np.zeros(end, bool)
    for s, e, name in rows:
        (comm if "nccl" in name else comp)[s:e] = True
    return int(comp.sum()), int(comm.sum()), int((comm & comp).sum()), int((comm & ~comp).sum())


@dataclass
class TC:
    name: str
    rows: list[tuple[int, int, str]]


CASES = [
    TC("fully hidden", [(0, 100, GEMM), (10, 50, AR)]),
    TC("fully exposed", [(0, 10, GEMM), (20, 60, AR)]),
    TC("partly", [(0, 30, GEMM), (20, 60, AR)]),
    TC("two streams", [(0, 20, GEMM), (50, 60, GEMM), (10, 40, AR), (30, 70, RS)]),
    TC("compute overlapping itself", [(0, 30, GEMM), (5, 25, GEMM), (40, 45, GEMM), (20, 50, AG)]),
    TC("no communication", [(0, 30, GEMM)]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hidden_and_exposed_against_a_nanosecond_count(case: TC) -> None:
    got = R.rank_comm(frame(case.rows))
    assert (got.compute_ns, got.comm_ns, got.comm_hidden_ns, got.comm_exposed_ns) == by_mask(case.rows)


def test_by_collective_two_streams() -> None:
    rows = CASES[3].rows
    t = R.rank_comm(frame(rows)).by_collective.set_index("collective")
    for kind, name in (("all-reduce", AR), ("reduce-scatter", RS)):
        mine = [r for r in rows if "nccl" not in r[2] or r[2] == name]
        _, comm, hidden, exposed = by_mask(mine)
        assert (t.loc[kind, "busy_ns"], t.loc[kind, "hidden_ns"], t.loc[kind, "exposed_ns"]) == (comm, hidden, exposed)
        assert t.loc[kind, "count"] == 1 and t.loc[kind, "gpu_ns"] == 30 if kind == "all-reduce" else True


@pytest.mark.parametrize("chunk", [1, 3, 1 << 20])
@pytest.mark.parametrize("categorical", [False, True])
def test_hidden_and_exposed_in_chunks_in_any_order(chunk: int, categorical: bool,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """rank_comm streams the rows a chunk at a time in start order, each group's open segment
    carried over: any chunking, rows in any order, the counted rows picked by a mask."""
    monkeypatch.setattr(R, "UNION_CHUNK", chunk)
    rng = np.random.default_rng(7)
    starts = rng.integers(0, 400, 60)
    rows = [(int(s), int(s + rng.integers(1, 40)), str(rng.choice([GEMM, AR, RS, AG]))) for s in starts]
    keep = rng.random(len(rows)) < 0.7
    f = frame(rows)
    if categorical:
        f = f.astype({"name": "category"})
    got = R.rank_comm(f, keep)
    picked = [r for r, k in zip(rows, keep, strict=True) if k]
    assert (got.compute_ns, got.comm_ns, got.comm_hidden_ns, got.comm_exposed_ns) == by_mask(picked)
    t = got.by_collective.set_index("collective")
    for kind, name in (("all-reduce", AR), ("reduce-scatter", RS), ("all-gather", AG)):
        mine = [r for r in picked if "nccl" not in r[2] or r[2] == name]
        _, comm, hidden, exposed = by_mask(mine)
        assert (t.loc[kind, "busy_ns"], t.loc[kind, "hidden_ns"], t.loc[kind, "exposed_ns"]) == (comm, hidden, exposed)
        assert t.loc[kind, "count"] == sum(r[2] == name for r in picked)
        assert t.loc[kind, "gpu_ns"] == sum(e - s for s, e, n in picked if n == name)


@pytest.mark.parametrize("name,kind", [
    (AR, "all-reduce"), (RS, "reduce-scatter"), (AG, "all-gather"), ("ncclKernel_AllReduce_RING_LL_Sum_float",
                                                                      "all-reduce"),
    ("ncclDevKernel_Broadcast_RING_LL(ncclDevKernelArgsStorage<4096ul>)", "broadcast"),
    ("ncclDevKernel_SendRecv(ncclDevKernelArgsStorage<4096ul>)", "send/recv"),
    ("ncclDevKernel_Reduce_Sum_f32_RING_LL", "reduce"), ("ncclAllReduce", "all-reduce"),
    ("ncclReduceScatter", "reduce-scatter"), ("ncclGroupEnd", "other"), (GEMM, None),
])
def test_collective_kind(name: str, kind: str | None) -> None:
    assert R.collective_kind(pd.Series([name])).tolist() == [kind]


def seq(rows: list[tuple[str, int, int]]) -> pd.DataFrame:
    return R.sequence(pd.DataFrame(rows, columns=["collective", "start_ns", "end_ns"]))


def test_waits_and_clock_skew() -> None:
    # One clock: rank 1 reaches both all-reduces late, rank 0 waits; the reduce-scatter rank 0 reaches late.
    r0 = [("all-reduce", 100, 200), ("reduce-scatter", 400, 450), ("all-reduce", 600, 700)]
    r1 = [("all-reduce", 150, 200), ("reduce-scatter", 380, 450), ("all-reduce", 690, 700)]
    expected_wait = {0: (150 - 100) + 0 + (690 - 600), 1: 0 + (400 - 380) + 0}
    for skew in (0, 12_345_678, -987_654):  # rank 1's clock is off by `skew`; every kernel end lines up after
        seqs = {0: seq(r0), 1: seq([(k, s + skew, e + skew) for k, s, e in r1])}
        offsets, how = R.clock_offsets(seqs, {0: None, 1: None}, one_clock=False)
        assert offsets == {0: 0, 1: -skew} and how.startswith("aligned on the end of the first all-reduce")
        per_rank, inst = R.waits(seqs, offsets)
        assert dict(zip(per_rank["rank"], per_rank["wait_ns"], strict=True)) == expected_wait
        assert inst.sort_values(["collective", "ordinal"])["transfer_ns"].tolist() == [200 - 150, 700 - 690, 450 - 400]
        assert inst.sort_values(["collective", "ordinal"])["last_rank"].tolist() == [1, 1, 0]


def test_one_clock_is_not_shifted_and_session_starts_are_a_fallback() -> None:
    seqs = {0: seq([("all-reduce", 0, 10)]), 1: seq([("all-reduce", 5, 12)])}
    assert R.clock_offsets(seqs, {}, one_clock=True) == ({0: 0, 1: 0}, "one export, one clock")
    empty = {0: seq([]), 1: seq([])}
    offsets, how = R.clock_offsets(empty, {0: 1_000, 1: 1_250}, one_clock=False)
    assert offsets == {0: 0, 1: 250} and "wall-clock" in how


def test_bus_bandwidth_follows_nccl_tests() -> None:
    n = 4
    seqs = {r: seq([("all-reduce", 0, 1_000), ("all-gather", 2_000, 2_500)]) for r in range(n)}
    _, inst = R.waits(seqs, {r: 0 for r in range(n)})
    nccl = {r: pd.DataFrame({"name": ["ncclAllReduce", "ncclAllGather"], "collective": ["all-reduce", "all-gather"],
                             "bytes": [8_000_000, 1_000_000]}) for r in range(n)}
    bw = R.bandwidth(nccl, inst, seqs, n).set_index("collective")
    # all-reduce: S = 8 MB in 1 us -> algbw 8000 GB/s, busbw x 2(n-1)/n = 1.5
    assert bw.loc["all-reduce", "algbw_gbps"] == pytest.approx(8_000_000 / 1_000)
    assert bw.loc["all-reduce", "busbw_gbps"] == pytest.approx(8_000_000 / 1_000 * 2 * 3 / 4)
    # all-gather: NCCL's payload is the per-rank part, S = n x it; busbw x (n-1)/n
    assert bw.loc["all-gather", "size_bytes"] == 4_000_000
    assert bw.loc["all-gather", "busbw_gbps"] == pytest.approx(4_000_000 / 500 * 3 / 4)


def test_fsdp2_sizes_from_the_model_and_their_labels() -> None:
    """No NCCL payload: S per step from the run record (model_sizes), over two measured steps."""
    from profkit.report.ranks import ranks_markdown

    n, params, blocks = 2, 1_000_000, 600_000  # not a built-in size: the all-gather stays unknown
    model = R.model_sizes("fsdp2", "bf16", params)
    assert set(model) == {"reduce-scatter"}
    model["all-gather"] = (2 * (2 * blocks + params - blocks), "model: 1,600,000 params x 2 bytes")
    seqs = {r: seq([("all-gather", 0, 100), ("reduce-scatter", 200, 400), ("all-gather", 1_000, 1_100),
                    ("reduce-scatter", 1_200, 1_400)]) for r in range(n)}
    _, inst = R.waits(seqs, {r: 0 for r in range(n)})
    none = {r: pd.DataFrame({"name": [], "collective": [], "bytes": []}) for r in range(n)}
    bw = R.bandwidth(none, inst, seqs, n, model, steps=2).set_index("collective")
    assert bw.loc["reduce-scatter", "size_bytes"] == 2 * 4_000_000  # two steps of 1e6 fp32 gradients
    assert bw.loc["reduce-scatter", "source"] == "model: 1,000,000 params x 4 bytes"
    assert bw.loc["reduce-scatter", "busbw_gbps"] == pytest.approx(8_000_000 / 400 * (n - 1) / n)
    assert bw.loc["all-gather", "size_bytes"] == 2 * 3_200_000 and bw.loc["all-gather", "source"].endswith("x 2 bytes")
    payload = {r: pd.DataFrame({"name": ["ncclReduceScatter"] * 2, "collective": ["reduce-scatter"] * 2,
                                "bytes": [1_000, 1_000]}) for r in range(n)}
    won = R.bandwidth(payload, inst, seqs, n, model, steps=2).set_index("collective")
    assert (won.loc["reduce-scatter", "size_bytes"], won.loc["reduce-scatter", "source"]) == (n * 2_000, R.PAYLOAD)
    steps = pd.DataFrame({"name": ["step_0", "step_1"], "start_ns": [0, 1_000], "end_ns": [1_000, 2_000]})
    k = pd.DataFrame([(0, 100, AG, "step_0"), (200, 400, RS, "step_0"), (1_000, 1_100, AG, "step_1"),
                      (1_200, 1_400, RS, "step_1")], columns=["start_ns", "end_ns", "name", "range_path"])
    inputs = [R.rank_input(r, k, steps, none[r].assign(start_ns=0, end_ns=0)) for r in range(n)]
    md = ranks_markdown(R.merge(inputs, one_clock=True, model=model))
    assert "| reduce-scatter | 1 | 4.00 | model: 1,000,000 params x 4 bytes |" in md  # per step


def test_merge_per_step_and_slowest_rank() -> None:
    from profkit.report.ranks import ranks_report

    steps = pd.DataFrame({"name": ["step_0", "step_1"], "start_ns": [0, 1_000], "end_ns": [1_000, 2_000]})
    no_nccl = pd.DataFrame({"name": [], "start_ns": [], "end_ns": [], "bytes": []})
    inputs = []
    for rank, compute in ((0, 400), (1, 700)):  # rank 1 computes longer before each step's all-reduce
        rows = [(base + a, base + b, name, f"step_{i}/backward") for i, base in enumerate((0, 1_000))
                for a, b, name in ((0, compute, GEMM), (compute, 900, AR))]
        k = pd.DataFrame(rows, columns=["start_ns", "end_ns", "name", "range_path"])
        inputs.append(R.rank_input(rank, k, steps, no_nccl))
    out = R.merge(inputs, one_clock=True)
    t = out.table.set_index("rank")
    assert (t.loc[0, "wait_ns"], t.loc[1, "wait_ns"]) == (300, 0)  # per step: rank 0 waits 700 - 400
    assert (t.loc[0, "compute_ns"], t.loc[1, "compute_ns"]) == (400, 700)
    assert (t.loc[0, "comm_exposed_ns"], t.loc[1, "comm_exposed_ns"]) == (500, 200)
    assert out.slowest["rank"] == 1 and out.slowest["by"] == "waits"
    assert set(out.lanes["lane"]) == {"step", "compute", "communication"}
    records = json.loads(ranks_report(out, fmt="json"))
    assert [r["wait_ns"] for r in records] == [300, 0] and records[0]["by_collective"]["all-reduce"]["count"] == 1
    assert {"rank", "step_ms", "compute_ns", "comm_ns", "comm_hidden_ns", "comm_exposed_ns", "by_collective",
            "wait_ns"} <= set(records[0])
    assert "**Slowest rank: 1**" in ranks_report(out)
    assert "all-reduce_gpu_ns" in ranks_report(out, fmt="csv").splitlines()[0]


def test_payload_bytes() -> None:
    assert payload_bytes('{"Message size [bytes]": 1048576}') == 1048576
    assert payload_bytes('{"schema": {"Communicator": 7, "Message size [bytes]": 64}}') == 64
    assert payload_bytes("{}") == -1


# --- command lines and refusals -------------------------------------------------------------------------------

PY = "/usr/bin/python3"
NSYS = Path("/opt/nsys/bin/nsys")


def test_command_lines() -> None:
    cfg = RunConfig(model="tiny", mode="step", strategy="ddp", nproc_per_node=2, device="cpu")
    run = D.build_run_command(cfg, device="cpu", out=Path("o"), python=PY)
    assert run[:6] == [PY, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone"]
    assert run[6:9] == ["-m", "profkit", "run"] and run[-3:] == ["--out", "o", "--force"]
    assert run[run.index("--strategy") + 1] == "ddp"
    per = D.build_rank_profile_command(NSYS, cfg, device="cpu", user_args=[], out=Path("p"), python=PY)
    i = per.index("--no-python")
    assert per[i + 1:i + 3] == [str(NSYS), "profile"] and "--output=p/rank%q{RANK}" in per
    assert per[per.index("--output=p/rank%q{RANK}") + 2:][:4] == [PY, "-m", "profkit", "run"]
    one = D.build_single_file_command(NSYS, cfg, device="cpu", user_args=["-t", "nvtx"], out=Path("s"), python=PY)
    assert one[:4] == [str(NSYS), "profile", "-t", "nvtx"] and "--output=s/profile" in one
    assert one[one.index("--force-overwrite=true") + 1:][:3] == [PY, "-m", "torch.distributed.run"]
    with pytest.raises(Exception, match="--output is profkit's"):
        D.build_rank_profile_command(NSYS, cfg, device="cpu", user_args=["-o", "x"], out=Path("p"), python=PY)


def test_slurm() -> None:
    cfg = RunConfig(strategy="fsdp2", nproc_per_node=4, rdzv_endpoint="n0:29400")
    env = {"SLURM_STEP_ID": "0", "SLURM_NNODES": "3", "SLURM_NODEID": "2", "SLURM_JOB_ID": "9",
           "SLURM_STEP_TASKS_PER_NODE": "1(x3)"}
    c = D.with_slurm(cfg, env)
    assert D.torchrun_options(c) == ["--nproc-per-node", "4", "--nnodes", "3", "--node-rank", "2", "--rdzv-backend",
                                     "c10d", "--rdzv-endpoint", "n0:29400", "--rdzv-id", "9"]
    assert D.with_slurm(cfg, {}) == cfg  # not under srun
    with pytest.raises(D.DistributedError, match="srun started 2 tasks on this node"):
        D.with_slurm(cfg, {**env, "SLURM_STEP_TASKS_PER_NODE": "2(x3)"})
    assert D.torchrun_options(D.with_slurm(RunConfig(strategy="ddp"), {"SLURM_STEP_ID": "0", "SLURM_NNODES": "1"})) \
        == ["--nproc-per-node", "1", "--standalone"]


def test_root_cause_and_stacks() -> None:
    log = ("Failures:\n[1]:\n  rank      : 0 (local_rank: 0)\n  exitcode  : -15 (pid: 1)\nRoot Cause (first observed "
           "failure):\n[0]:\n  time      : x\n  host      : h\n  rank      : 1 (local_rank: 1)\n  exitcode  : 3 "
           "(pid: 2)\n")
    assert D.root_cause(log) == (1, 3)
    assert D.root_cause("nothing") is None


@pytest.mark.parametrize("args,message", [
    (["--nproc-per-node", "0"], "Error: nproc-per-node must be at least 1, got 0"),
    (["--nproc-per-node", "2"], "Error: --nproc-per-node 2 needs a --strategy (ddp or fsdp2)"),
    (["--strategy", "zero3"], "Error: unknown strategy 'zero3'; choose from none, ddp, fsdp2"),
    (["--strategy", "ddp", "--mode", "fwd"], "Error: --strategy ddp synchronizes gradients"),
    (["--strategy", "fsdp2", "--mode", "step", "--dtype", "fp16"], "Error: --strategy fsdp2 with --dtype fp16"),
    (["--strategy", "ddp", "--nproc-per-node", "2", "--device", "cuda"],
     "Error: device cuda was asked for but torch sees no CUDA GPU; use --device cpu (several ranks on CPU talk "
     "through gloo)"),
    (["--strategy", "ddp", "--nproc-per-node", "2", "--nnodes", "2"], "Error: --nnodes 2 needs --rdzv-endpoint"),
    (["--strategy", "ddp", "--nnodes", "x"], "Error: nnodes must be N or MIN:MAX"),
])
@pytest.mark.parametrize("command", ["run", "profile"])
def test_refused_before_anything_starts(tmp_path: Path, command: str, args: list[str], message: str) -> None:
    if "cuda" in args and shutil.which("nvidia-smi"):
        pytest.skip("a GPU machine runs cuda")
    where = ["--out", str(tmp_path / "r")] if command == "run" else ["--out-dir", str(tmp_path), "--name", "p"]
    result = CliRunner().invoke(cli, [command, "--model", "tiny", "--device", "cpu", *args, *where])
    assert result.exit_code == 2
    assert result.output.startswith(message) and result.output.count("\n") == 1, result.output
    assert not list(tmp_path.iterdir())  # nothing started, nothing written


def test_more_ranks_than_gpus_is_refused() -> None:
    cfg = RunConfig(strategy="ddp", nproc_per_node=3)
    with pytest.raises(D.DistributedError, match="--nproc-per-node 3 needs 3 GPUs, one per rank; this node has 2"):
        D.check_launch(cfg, device="cuda", gpus=2)
    D.check_launch(cfg, device="cpu", gpus=0)  # gloo ranks share the CPU


def test_single_file_needs_ranks(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["profile", "--model", "tiny", "--device", "cpu", "--single-file",
                                      "--out-dir", str(tmp_path)])
    assert result.exit_code == 2 and result.output.startswith("Error: --single-file puts several ranks into one")


# --- a two-process export with colliding correlation ids ----------------------------------------------------

SHIFT = 5_000_000_000


def two_process_export(src: Path, dst: Path) -> tuple[int, int]:
    """`src` (one process) plus a copy of its kernels, runtime calls and NVTX ranges as a second
    process, every time shifted by SHIFT and every correlation id kept (they collide); each process
    gets a profkit/rank{R} domain. Returns the two globalPids."""
    shutil.copyfile(src, dst)
    db = sqlite3.connect(dst)
    (p1,) = db.execute("SELECT DISTINCT globalPid FROM CUPTI_ACTIVITY_KIND_KERNEL").fetchone()
    p2 = p1 + (1 << 24) * 7  # another pid in the same serialised form
    for table, col in (("CUPTI_ACTIVITY_KIND_KERNEL", "globalPid"), ("CUPTI_ACTIVITY_KIND_RUNTIME", "globalTid"),
                       ("NVTX_EVENTS", "globalTid")):
        cols = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
        sel = [f"{c} + {p2 - p1}" if c in (col, "globalPid", "globalTid") and c != "endGlobalTid" else
               (f"{c} + {SHIFT}" if c in ("start", "end") else c) for c in cols]
        db.execute(f"INSERT INTO {table} ({', '.join(cols)}) SELECT {', '.join(sel)} FROM {table}"
                   + (" WHERE globalTid IS NOT NULL" if table == "NVTX_EVENTS" else ""))
    tid = db.execute("SELECT globalTid FROM NVTX_EVENTS WHERE globalTid IS NOT NULL LIMIT 1").fetchone()[0]
    for rank, pid in ((0, p1), (1, p2)):
        db.execute("INSERT INTO NVTX_EVENTS (start, eventType, text, globalTid, domainId) VALUES (0, 75, ?, ?, 4242)",
                   (f"profkit/rank{rank}", tid - p1 + pid))
    db.commit()
    db.close()
    return p1, p2


def test_two_processes_with_colliding_correlation_ids(tmp_path: Path) -> None:
    src = TESTS / "data" / "h100_small_step_bf16" / "profile.sqlite"
    export = tmp_path / "two.sqlite"
    p1, p2 = two_process_export(src, export)
    assert process_ranks(export) == {p1: 0, p2: 1}
    db = sqlite3.connect(export)
    # The independent answer: SQL's join on (correlation id, process).
    expected = db.execute(
        "SELECT k.start, r.start FROM CUPTI_ACTIVITY_KIND_KERNEL k JOIN CUPTI_ACTIVITY_KIND_RUNTIME r ON "
        "r.correlationId = k.correlationId AND (r.globalTid & ~16777215) = k.globalPid WHERE k.globalPid = ? "
        "ORDER BY k.start", (p2,)).fetchall()
    collide = db.execute("SELECT count(DISTINCT k.rowid) FROM CUPTI_ACTIVITY_KIND_KERNEL k JOIN "
                         "CUPTI_ACTIVITY_KIND_KERNEL o ON o.correlationId = k.correlationId AND o.globalPid <> "
                         "k.globalPid").fetchone()[0]
    (n,) = db.execute("SELECT count(*) FROM CUPTI_ACTIVITY_KIND_KERNEL").fetchone()
    db.close()
    assert collide == n  # every kernel shares its correlation id with one of the other process
    one = pipeline.load(src)
    two = pipeline.load(export, rank=1)
    got = two.kernels.sort_values("start_ns")[["start_ns", "launch_ns"]].to_numpy().tolist()
    assert got == [list(r) for r in expected] and len(got) == len(one.kernels)
    assert (two.kernels["launch_ns"].sort_values().to_numpy() == one.kernels["launch_ns"].sort_values().to_numpy()
            + SHIFT).all()
    # Ranges too: rank 1's kernels land in rank 1's ranges, the same paths and times as the original's.
    assert reports.nvtx(two) == reports.nvtx(one)
    assert reports.kernels(pipeline.load(export, rank=0)) == reports.kernels(one)
    assert load_nccl_ranges(export).empty


# --- end to end on CPU, under the real nsys ------------------------------------------------------------------

TINY = ["--model", "tiny", "--mode", "step", "--device", "cpu", "--warmup", "1", "--steps", "2"]


@pytest.fixture
def repo_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ranks import tests.user_models: from the repository root."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.chdir(ROOT)


def domains(export: Path) -> list[tuple[int, str]]:
    db = sqlite3.connect(f"file:{export}?mode=ro", uri=True)
    rows = db.execute("SELECT DISTINCT n.globalTid >> 24, d.text FROM NVTX_EVENTS n JOIN NVTX_EVENTS d ON "
                      "d.domainId = n.domainId AND d.eventType = 75 AND (d.globalTid >> 24) = (n.globalTid >> 24) "
                      "WHERE n.eventType = 59 AND d.text LIKE 'profkit%'").fetchall()
    db.close()
    return sorted(rows)


def test_ddp_one_nsys_per_rank(tmp_path: Path) -> None:
    nsys = real_nsys()
    result = CliRunner().invoke(cli, ["profile", *TINY, "--strategy", "ddp", "--nproc-per-node", "2", "--name", "ddp",
                                      "--out-dir", str(tmp_path), "--nsys", str(nsys.path)])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "ddp"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["nsys.log", "rank0.log", "rank0.nsys-rep", "rank0.run.json", "rank0.sqlite", "rank1.log",
                     "rank1.nsys-rep", "rank1.run.json", "rank1.sqlite", "run.json"]
    records = {r: layout.RunRecord.read_file(p) for r, p in layout.rank_files(folder, layout.RANK_RUN).items()}
    for r, rec in records.items():
        assert (rec.resolved.rank, rec.resolved.world_size, rec.resolved.backend) == (r, 2, "gloo")
        assert rec.config.out == folder and rec.config.strategy == "ddp"
        assert [name for _, name in domains(folder / f"rank{r}.sqlite")] == [f"profkit/rank{r}"]
    assert layout.RunRecord.read(folder).resolved.rank == 0
    out = CliRunner().invoke(cli, ["report", "ranks", str(folder), "--format", "json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)
    for row in rows:
        steps = records[row["rank"]].steps_ms
        assert row["step_ms"] == pytest.approx(float(np.median(steps))) and row["steps"] == 2
        assert row["comm_ns"] == 0 and row["compute_ns"] == 0  # gloo runs no kernels
    md = CliRunner().invoke(cli, ["report", "nvtx", str(folder), "--by", "name"])
    assert md.exit_code == 0 and "holds 2 ranks; this is rank 0's" in md.stderr
    one = CliRunner().invoke(cli, ["report", "nvtx", str(folder), "--rank", "1", "--by", "name", "--format", "json"])
    assert one.exit_code == 0 and "holds 2 ranks" not in one.stderr
    assert {r["name"] for r in json.loads(one.stdout)} >= {"step_0", "step_1", "forward", "backward", "optimizer"}
    bad = CliRunner().invoke(cli, ["report", "nvtx", str(folder), "--rank", "2"])
    assert bad.exit_code == 2 and bad.output == f"Error: {folder} has no rank 2; its ranks are 0, 1\n"
    rep = CliRunner().invoke(cli, ["report", str(folder)])
    assert rep.exit_code == 0, rep.output
    text = (folder / "report.md").read_text()
    assert "## Ranks: 2, per measured step" in text and "## Rank 0" in text


def test_fsdp2_single_file(tmp_path: Path) -> None:
    nsys = real_nsys()
    result = CliRunner().invoke(cli, ["profile", *TINY, "--strategy", "fsdp2", "--nproc-per-node", "2", "--name", "one",
                                      "--single-file", "--out-dir", str(tmp_path), "--nsys", str(nsys.path)])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "one"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["nsys.log", "profile.nsys-rep", "profile.sqlite", "rank0.log", "rank0.run.json", "rank1.log",
                     "rank1.run.json", "run.json"]
    pids = process_ranks(folder / "profile.sqlite")
    assert sorted(pids.values()) == [0, 1] and len(set(pids)) == 2  # two processes of one export
    assert [n for _, n in domains(folder / "profile.sqlite")] == ["profkit/rank0", "profkit/rank1"]
    rows = json.loads(CliRunner().invoke(cli, ["report", "ranks", str(folder), "--format", "json"]).stdout)
    records = {r: layout.RunRecord.read_file(p) for r, p in layout.rank_files(folder, layout.RANK_RUN).items()}
    assert [r["rank"] for r in rows] == [0, 1]
    for row in rows:
        assert row["step_ms"] == pytest.approx(float(np.median(records[row["rank"]].steps_ms)))
        assert records[row["rank"]].config.strategy == "fsdp2"
    # Each rank's ranges are its own process's: two steps each, not four.
    for rank in (0, 1):
        a = pipeline.load(folder, rank=rank)
        assert sorted(a.ranges.loc[a.ranges["depth"] == 0, "name"]) == ["step_0", "step_1", "warmup"]
        assert set(a.data.nvtx["global_pid"]) == {next(p for p, r in pids.items() if r == rank)}


def test_a_failing_rank_ends_the_job(tmp_path: Path, repo_path: None) -> None:
    out = tmp_path / "fail"
    result = CliRunner().invoke(cli, ["run", *TINY[2:], "--model", "tests.user_models:fail_on_rank1",
                                      "--context-length", "16", "--strategy", "ddp", "--nproc-per-node", "2",
                                      "--out", str(out)])
    assert result.exit_code == 2
    assert result.output == (f"Error: rank 1 failed: rank 1 of the test model gave up on purpose (its output: "
                             f"{out}/rank1.log)\n")
    assert not (out / "run.json").exists()


def test_a_hanging_rank_is_ended_after_the_timeout(tmp_path: Path, repo_path: None) -> None:
    # 45 s: two gloo ranks on a loaded 2-core machine took more than 15 s to import torch and reach
    # their first backward, so rank 0 was not yet waiting at the collective when the job was ended.
    out = tmp_path / "hang"
    result = CliRunner().invoke(cli, ["run", *TINY[2:], "--model", "tests.user_models:hang_on_rank1",
                                      "--context-length", "16", "--strategy", "ddp", "--nproc-per-node", "2",
                                      "--out", str(out), "--timeout", "45"])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    line = result.output
    assert line.startswith("Error: the job did not finish within --timeout 45 s and was ended. waiting at a "
                           "collective: rank 0 in backward (gradient synchronisation)")
    assert "not in a collective (the ones waited for, or stuck elsewhere): rank 1 at forward (user_models.py:" in line
    assert not list(D.descendants(os.getpid()))  # every process of the job was ended
