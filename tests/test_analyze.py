"""NVTX projection, kernel ranking and categories: hand-built frames with exact answers, then
the real H100 fixture against what nsys's own same-thread projection misses."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from profkit import analyze, parse
from profkit.analyze.categories import categorize, load_rules, triton_fuses
from profkit.pipeline import load as analyze_profile

DATA = Path(__file__).parent / "data"
ENCODER = DATA / "h100_encoder_layer_nsys2023" / "profile.sqlite"
P = 7 << 24  # a process id as nsys serialises it
MAIN, AUTOGRAD, OTHER_PROC = P + 1, P + 2, (8 << 24) + 1


def ranges(*rows: tuple[str, int, int | None, int]) -> pd.DataFrame:
    """(name, start, end, tid) rows -> an nvtx frame as parse.load makes it."""
    f = pd.DataFrame(rows, columns=["name", "start_ns", "end_ns", "global_tid"])
    f["end_ns"] = f["end_ns"].astype("Int64")
    return f.assign(global_pid=f["global_tid"] & ~0xFFFFFF, kind="push_pop")


def kernels(*rows: tuple[int, int, int, int]) -> pd.DataFrame:
    """(launch_ns, launch_tid, start, dur) rows -> a kernels frame."""
    f = pd.DataFrame(rows, columns=["launch_ns", "launch_tid", "start_ns", "dur_ns"])
    return f.assign(end_ns=f["start_ns"] + f["dur_ns"])


STEP = ranges(("step_0", 0, 100, MAIN), ("forward", 5, 40, MAIN), ("backward", 40, 90, MAIN),
              ("layer_1", 45, 60, AUTOGRAD), ("attention", 50, 58, AUTOGRAD), ("layer_0", 62, 80, AUTOGRAD),
              ("optimizer", 91, 99, MAIN))


def test_tree_grafts_autograd_ranges_under_backward() -> None:
    tree = analyze.nvtx_tree(STEP)
    paths = dict(zip(tree["name"], tree["path"], strict=True))
    assert paths == {"step_0": "step_0", "forward": "step_0/forward", "backward": "step_0/backward",
                     "optimizer": "step_0/optimizer", "layer_1": "step_0/backward/layer_1",
                     "attention": "step_0/backward/layer_1/attention", "layer_0": "step_0/backward/layer_0"}
    grafted = dict(zip(tree["name"], tree["grafted"], strict=True))
    assert grafted["layer_1"] and grafted["layer_0"] and not grafted["attention"] and not grafted["forward"]
    assert dict(zip(tree["name"], tree["depth"], strict=True))["attention"] == 3


@dataclass
class Case:
    what: str
    launch: tuple[int, int]
    owner: str | None


CASES = [
    Case("same thread, innermost", (10, MAIN), "forward"),
    Case("same thread, between children", (41, MAIN), "backward"),
    Case("autograd thread inside its own range", (52, AUTOGRAD), "attention"),
    Case("autograd thread outside its ranges: the main thread's open range", (85, AUTOGRAD), "backward"),
    Case("before every range", (-5, MAIN), None),
    Case("another process: never another process's ranges", (50, OTHER_PROC), None),
    Case("launch unknown", (50, -1), None),
    Case("range end is exclusive", (40, MAIN), "backward"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.what for c in CASES])
def test_attribution(case: Case) -> None:
    tree = analyze.nvtx_tree(STEP)
    owner = analyze.attribute(kernels((case.launch[0], case.launch[1], 1000, 10)), tree)
    got = None if owner[0] < 0 else tree["name"].iloc[owner[0]]
    assert got == case.owner


def test_projection_totals_span_and_counts() -> None:
    tree = analyze.nvtx_tree(STEP)
    k = kernels((10, MAIN, 100, 5), (52, AUTOGRAD, 110, 7), (55, AUTOGRAD, 120, 3), (85, AUTOGRAD, 130, 11),
                (95, MAIN, 150, 2), (-1, MAIN, 160, 1000))
    owner = analyze.attribute(k, tree)
    p = analyze.project(k, tree, owner).set_index("name")
    assert p.loc["attention", ["gpu_self_ns", "gpu_total_ns", "kernels"]].tolist() == [10, 10, 2]
    assert p.loc["layer_1", "gpu_total_ns"] == 10 and p.loc["layer_1", "gpu_self_ns"] == 0
    assert p.loc["backward", ["gpu_self_ns", "gpu_total_ns", "kernels"]].tolist() == [11, 21, 3]
    assert p.loc["step_0", ["gpu_total_ns", "kernels"]].tolist() == [28, 5]
    assert p.loc["backward", ["gpu_start_ns", "gpu_end_ns", "gpu_span_ns"]].tolist() == [110, 141, 31]
    assert p.loc["layer_0", ["gpu_start_ns", "gpu_span_ns", "kernels"]].tolist() == [-1, 0, 0]
    assert (owner < 0).sum() == 1  # the kernel launched before every range


def test_open_range_covers_to_the_end() -> None:
    tree = analyze.nvtx_tree(ranges(("step_0", 0, None, MAIN), ("forward", 5, 10, MAIN)))
    owner = analyze.attribute(kernels((500, MAIN, 600, 1)), tree)
    assert tree["name"].iloc[owner[0]] == "step_0"
    assert tree["end_ns"].iloc[0] == analyze.OPEN_END


def test_equal_starts_nest_longest_outside() -> None:
    tree = analyze.nvtx_tree(ranges(("inner", 0, 5, MAIN), ("outer", 0, 10, MAIN)))
    assert dict(zip(tree["name"], tree["path"], strict=True)) == {"outer": "outer", "inner": "outer/inner"}


def test_missing_column_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"nvtx lacks columns \['global_pid'\]"):
        analyze.nvtx_tree(STEP.drop(columns="global_pid"))


def test_inputs_are_not_modified() -> None:
    before = STEP.copy()
    analyze.nvtx_tree(STEP)
    pd.testing.assert_frame_equal(STEP, before)


@pytest.mark.parametrize("durs,expected", [
    ([10, 30, 20], {"instances": 3, "total_ns": 60, "avg_ns": 20.0, "median_ns": 20.0, "min_ns": 10, "max_ns": 30,
                    "stddev_ns": 10.0}),
    ([7], {"instances": 1, "total_ns": 7, "stddev_ns": 0.0, "median_ns": 7.0}),
    ([1, 2, 3, 4], {"median_ns": 2.5}),
])
def test_rank_kernels_statistics(durs: list[int], expected: dict) -> None:
    k = pd.DataFrame({"name": ["k"] * len(durs), "dur_ns": durs, "category": "gemm"})
    row = analyze.rank_kernels(k).iloc[0]
    for key, value in expected.items():
        assert row[key] == value, key


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 18])
def test_rank_kernels_stddev_across_chunks(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Standard deviations summed a chunk of kernels at a time, against statistics.stdev per name
    (groups that start, end and lie within a chunk, and one of a single kernel)."""
    from profkit.analyze import kernels as kernels_mod
    monkeypatch.setattr(kernels_mod, "FIRST_CHUNK", chunk)
    rng = np.random.default_rng(7)
    names = rng.choice(["a", "b", "c", "d", "e"], size=300, p=[0.5, 0.3, 0.1, 0.0966, 0.0034])
    names[0] = "f"  # one instance
    durs = rng.integers(1, 10**9, size=len(names))
    k = pd.DataFrame({"name": names, "dur_ns": durs, "category": "gemm"})
    got = analyze.rank_kernels(k).set_index("name")["stddev_ns"]
    for name, group in k.groupby("name")["dur_ns"]:
        values = group.tolist()
        assert got[name] == pytest.approx(statistics.stdev(values) if len(values) > 1 else 0.0, rel=1e-9), name


def test_rank_kernels_orders_and_folds() -> None:
    k = pd.DataFrame({"name": ["a", "b", "b", "c", "d"], "dur_ns": [5, 10, 10, 3, 1],
                      "category": ["x", "y", "y", "z", "z"]})
    r = analyze.rank_kernels(k, top_k=2)
    assert r["name"].tolist() == ["b", "a", "others"]
    assert r["total_ns"].tolist() == [20, 5, 4]
    assert r["instances"].tolist() == [2, 1, 2]
    assert r["time_pct"].round(3).tolist() == [68.966, 17.241, 13.793]
    by_cat = analyze.rank_kernels(k, by="category")
    assert by_cat[["name", "total_ns"]].values.tolist() == [["y", 20], ["x", 5], ["z", 4]]


@pytest.mark.parametrize("name,category", [
    ("nvjet_sm90_tst_96x64_64x10_1x2_h_bz_TNN", "gemm"),
    ("sm80_xmma_gemm_f32f32_f32f32_f32_tn_n_tilesize64x64x8_stage3_warpsize1x4x1_ffma", "gemm"),
    ("void cutlass::Kernel2<cutlass_80_simt_sgemm_256x128_8x4_nt_align1>(T1::Params)", "gemm"),
    ("void gemv2T_kernel_val<int, int, float, float, float, float, 128, 16, 4, 4, false>", "gemm"),
    ("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64, 128, 128, 4>>", "attention"),
    ("fmha_cutlassB_f32_aligned_64x64_k64_dropout_sm80(PyTorchMemEffAttention::AttentionBackwardKernel)", "attention"),
    ("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_3", "attention"),
    ("void <unnamed>::softmax_warp_forward<float, float, float, 8, false, false>", "softmax"),
    ("void at::native::(anonymous namespace)::cunn_SoftMaxForward<4, float, float, float>", "softmax"),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<float>>", "elementwise"),
    ("void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, at::native::MeanOps<float, float>>>",
     "reduction"),
    ("void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<float, float>", "normalization"),
    ("void at::native::multi_tensor_apply_kernel<at::native::TensorListMetadata<4>, FusedAdamMathFunctor>",
     "optimizer"),
    ("void at::native::unrolled_elementwise_kernel<at::native::direct_copy_kernel_cuda>", "copy/transpose"),
    ("ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevComm *, unsigned long, ncclWork *)", "communication: all-reduce"),
    ("ncclDevKernel_ReduceScatter_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)", "communication: reduce-scatter"),
    ("ncclKernel_AllGather_RING_LL_Sum_int8_t(ncclWorkElem)", "communication: all-gather"),
    ("ncclDevKernel_Broadcast_RING_LL(ncclDevKernelArgsStorage<4096ul>)", "communication: broadcast"),
    ("ncclDevKernel_SendRecv(ncclDevKernelArgsStorage<4096ul>)", "communication: send/recv"),
    ("ncclDevKernel_Reduce_Sum_f32_RING_LL(ncclDevKernelArgsStorage<4096ul>)", "communication"),
    ("triton_poi_fused__to_copy_add_mul_0", "triton"),
    ("triton_tem_fused_mm_3", "triton"),
    ("my_custom_kernel", "other"),
])
def test_categories(name: str, category: str) -> None:
    assert categorize(pd.Series([name]), load_rules()).iloc[0] == category


def test_user_rules_come_first(tmp_path: Path) -> None:
    rules = tmp_path / "r.toml"
    rules.write_text('[[rule]]\ncategory = "rope"\npattern = "rotary|my_custom"\n')
    assert categorize(pd.Series(["my_custom_kernel", "ampere_sgemm_128x64_tn"]), load_rules(rules)).tolist() == [
        "rope", "gemm"]


@pytest.mark.parametrize("name,fuses", [
    ("triton_poi_fused__to_copy_add_mul_0", "pointwise: _to_copy_add_mul"),
    ("triton_red_fused__log_softmax_1", "reduction: _log_softmax"),
    ("triton_per_fused_add_mean_mul_pow_rsqrt_2", "persistent reduction: add_mean_mul_pow_rsqrt"),
    ("ampere_sgemm_128x64_tn", None),
])
def test_triton_fuses(name: str, fuses: str | None) -> None:
    assert triton_fuses(name) == fuses


# --- the real fixture -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def encoder():
    return analyze_profile(ENCODER)


def test_every_kernel_of_the_fixture_lands_in_a_range(encoder) -> None:
    assert encoder.unattributed_pct == 0.0


def test_backward_gets_the_autograd_threads_kernels(encoder) -> None:
    """nsys's nvtx_kern_sum gives `backward` 3 fill kernels (3,008 ns over 3 steps); its kernels
    were launched from the autograd thread."""
    r = encoder.ranges.set_index("path")
    per_step = [r.loc[f"step_{i}/backward", "gpu_total_ns"] for i in range(3)]
    assert per_step == [1_678_882, 1_679_242, 1_680_901]
    assert [r.loc[f"step_{i}/backward", "kernels"] for i in range(3)] == [44, 44, 44]
    k = encoder.kernels
    autograd = k[k["launch_tid"] == 281482459349467]
    assert autograd["range_path"].str.endswith("/backward").all()
    # Forward + backward + optimizer + probes = the whole step, nothing lost or counted twice.
    for i in range(3):
        children = ["forward", "backward", "optimizer", "attn_manual", "sdpa_flash"]
        assert sum(r.loc[f"step_{i}/{c}", "gpu_total_ns"] for c in children) == r.loc[f"step_{i}", "gpu_total_ns"]


def test_fixture_category_shares(encoder) -> None:
    shares = analyze.category_shares(encoder.kernels).set_index("category")["pct"].round(2)
    assert shares["gemm"] == 67.44 and shares.get("other", 0.0) < 1.0


def test_fixture_gemm_share_matches_seed_002s_finding(encoder) -> None:
    """Seed 002: GEMM is ~2/3 of a forward and less of a full AdamW step."""
    k = encoder.kernels
    fwd = k[k["range_path"].str.endswith("/forward")]
    step = k[k["range_path"].str.startswith("step_")]
    gemm = lambda f: f.loc[f["category"] == "gemm", "dur_ns"].sum() / f["dur_ns"].sum()  # noqa: E731
    assert gemm(fwd) > gemm(step)
    assert round(float(gemm(fwd)), 3) == 0.787 and round(float(gemm(step)), 3) == 0.674
    assert np.isclose(k["dur_ns"].sum(), 8_901_567)
    assert parse.load(ENCODER).kernels["dur_ns"].sum() == 8_901_567


# --- nsys --pytorch=autograd-nvtx ------------------------------------------------------------

AUTOGRAD_NVTX = DATA / "h100_small_step_bf16_autograd_nvtx" / "profile.sqlite"


def test_autograd_nvtx_names_are_cleaned_and_keep_profkits_layout() -> None:
    a = analyze_profile(AUTOGRAD_NVTX)
    paths = set(a.ranges["path"])
    assert "step_0/forward/layer_0/attention/qkv_proj/aten::linear" in paths  # no ", seq = ..., op_id = ..."
    assert "step_0/backward/layer_11/mlp/MmBackward0/aten::mm" in paths
    assert "step_0/backward/loss/NllLossBackward0" in paths  # placed by its forward op's range
    assert a.unattributed_pct == 0.0
    assert len(a.kernels) == 2076
    k = a.kernels[a.kernels["range_path"].astype(str).str.startswith("step_0/backward/")]
    layered = k["range_path"].astype(str).str.match(r"step_0/backward/(layer_\d+|lm_head|loss|final_norm|embed)/")
    assert (len(k), int(layered.sum())) == (1225, 1224)  # the one left: the loss gradient's seed (ones_like)


def test_backward_ops_land_under_the_forward_module_that_created_them(tmp_path) -> None:
    """Without profkit's backward ranges (a user's model), nsys's per-op ranges still place
    backward kernels by layer: each autograd node's sequence number names its forward op."""
    import shutil
    import sqlite3

    copy = tmp_path / "p.sqlite"
    shutil.copyfile(AUTOGRAD_NVTX, copy)
    db = sqlite3.connect(copy)
    autograd_tid = db.execute("SELECT globalTid FROM NVTX_EVENTS WHERE text LIKE '%Backward0, seq =%' "
                              "LIMIT 1").fetchone()[0]
    removed = db.execute("DELETE FROM NVTX_EVENTS WHERE globalTid = ? AND text IS NULL", (autograd_tid,)).rowcount
    db.commit()
    db.close()
    assert removed == 37  # profkit's backward ranges of step_0: 12 x (layer, attention, mlp) + lm_head
    a = analyze_profile(copy)
    r = analyze.nvtx_summary(a.ranges, a.kernels).set_index("path")
    mm = "step_0/backward/layer_3/mlp/MmBackward0"
    assert mm in r.index and r.loc[mm, "kernels"] > 0
    layer3 = r.loc["step_0/backward/layer_3"]
    assert layer3["instances"] == 0 and layer3["gpu_total_ns"] > 0  # a prefix no range has, from its kernels
    per_layer = [r.loc[f"step_0/backward/layer_{i}", "gpu_total_ns"] for i in range(12)]
    assert max(per_layer) < 1.2 * min(per_layer)  # identical layers, alike backward
    assert a.unattributed_pct == 0.0


def test_ranges_of_two_domains_that_overlap_without_nesting() -> None:
    """profkit's backward range opens inside one autograd node's range and closes inside a
    later one's (two NVTX domains on the autograd thread): a range's parent is one that holds
    it whole; a kernel's owner is the open range that started last."""
    r = ranges(("step_0", 0, 100, MAIN), ("backward", 10, 90, MAIN),
               ("node_a", 20, 30, AUTOGRAD), ("layer_1", 25, 55, AUTOGRAD), ("node_b", 50, 60, AUTOGRAD))
    tree = analyze.nvtx_tree(r)
    paths = dict(zip(tree["name"], tree["path"], strict=True))
    assert paths["layer_1"] == "step_0/backward/layer_1"  # not under node_a, which it outlives
    assert paths["node_b"] == "step_0/backward/node_b"  # starts inside layer_1 but outlives it
    owner = analyze.attribute(kernels((22, AUTOGRAD, 0, 1), (27, AUTOGRAD, 0, 1), (40, AUTOGRAD, 0, 1),
                                      (52, AUTOGRAD, 0, 1), (57, AUTOGRAD, 0, 1), (65, AUTOGRAD, 0, 1)), tree)
    assert [tree["name"].iloc[o] for o in owner] == ["node_a", "layer_1", "layer_1", "node_b", "node_b",
                                                     "backward"]


@pytest.mark.parametrize("rows", [
    [("a", 0, 100, MAIN), ("b", 10, 50, MAIN), ("c", 20, 30, MAIN), ("d", 60, 90, MAIN)],  # nested
    [("a", 0, 100, MAIN), ("b", 10, 50, MAIN), ("c", 40, 70, MAIN), ("d", 60, 90, MAIN)],  # overlapping
])
def test_timeline_is_the_latest_started_open_range(rows) -> None:
    """Both timeline builders agree with a brute-force answer at every instant."""
    r = ranges(*rows).assign(end_ns=lambda f: f["end_ns"].astype("int64"))
    (timeline,) = analyze.thread_timelines(r)[P].values()
    for t in range(-1, 102):
        open_ = [i for i, (_, s, e, _) in enumerate(rows) if s <= t < e]
        expected = max(open_, key=lambda i: rows[i][1]) if open_ else -1
        assert analyze.innermost_at(timeline, np.array([t]))[0] == expected, t


def _trees(start: np.ndarray, end: np.ndarray, tid: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> tuple:
    """range_tree() with the numpy walk for nested threads and with the stack walk alone."""
    from profkit.analyze import nvtx

    names = ["r"]
    name = np.zeros(len(start), dtype=np.int64)
    fast = nvtx.range_tree(start, end, tid, tid & ~0xFFFFFF, name, names)
    with monkeypatch.context() as m:
        m.setattr(nvtx, "_nest_nested", lambda s, e: None)
        walk = nvtx.range_tree(start, end, tid, tid & ~0xFFFFFF, name, names)
    return fast, walk


def _same_tree(fast, walk) -> None:  # noqa: ANN001
    assert fast.parent.tolist() == walk.parent.tolist()
    assert fast.depth.tolist() == walk.depth.tolist()
    assert fast.timelines.keys() == walk.timelines.keys()
    for pid, threads in walk.timelines.items():
        assert threads.keys() == fast.timelines[pid].keys()
        for tid, (times, owner) in threads.items():
            assert fast.timelines[pid][tid][0].tolist() == times.tolist(), (pid, tid)
            assert fast.timelines[pid][tid][1].tolist() == owner.tolist(), (pid, tid)


def _nested(rng: np.random.Generator, n: int, lo: int, hi: int, depth: int = 0) -> list[tuple[int, int]]:
    """Random properly nested ranges inside [lo, hi): ties, zero-length ranges and shared bounds included."""
    out: list[tuple[int, int]] = []
    t = lo
    while t < hi and len(out) < n:
        a = int(rng.integers(t, min(hi, t + 3) + 1))
        b = int(rng.integers(a, min(hi, a + 40) + 1))
        out.append((a, b))
        if depth < 6 and b - a > 2 and rng.random() < 0.6:
            out += _nested(rng, n - len(out), a, b, depth + 1)
        if rng.random() < 0.1:
            out.append((a, b))  # the same range twice
        t = b if rng.random() < 0.5 else b + int(rng.integers(0, 3))
    return out


@pytest.mark.parametrize("seed", range(12))
def test_nested_walk_in_numpy_equals_the_stack_walk(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(seed)
    rows = []
    for thread in (1, 2, 3):
        ranges = _nested(rng, 400, 0, 3000)
        if seed % 3 == 1 and thread == 2:  # one thread whose ranges overlap without nesting: the walk's
            ranges += [(10, 25), (20, 40)]
        rows += [(a, b, (7 << 24) | thread) for a, b in ranges]
    if seed % 4 == 2:  # a range still open when the capture stopped
        rows.append((5, analyze.OPEN_END, (7 << 24) | 1))
    start, end, tid = (np.array(c, dtype=np.int64) for c in zip(*rows, strict=True))
    _same_tree(*_trees(start, end, tid, monkeypatch))


@pytest.mark.parametrize("export", sorted(DATA.glob("*/profile.sqlite")), ids=lambda p: p.parent.name)
def test_nested_walk_in_numpy_on_every_fixture(export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from profkit import columns

    db, tables = columns.connect(export)
    try:
        r, _ = columns.read_nvtx(columns.Reader(export, db), tables)
    finally:
        db.close()
    _same_tree(*_trees(r["start_ns"], r["end_ns"], r["global_tid"], monkeypatch))


@pytest.mark.parametrize("capture", ["h100_small_step_bf16", "h200_tiny_step_bf16_a", "h200_llama_step_bf16",
                                     "h100_small_step_bf16_autograd_nvtx"])
@pytest.mark.parametrize("moved", [False, True])
def test_fold_steps_equals_a_groupby_of_the_ranges(capture: str, moved: bool) -> None:
    """fold_steps()'s per-step figures against pandas over the projected ranges: each range inside a
    measured step (`step_N/...`) keyed by its path without the step, counted in its distinct steps.
    `moved`: step_1's forward pass renamed out of the steps (warmup/...), so that its paths lie in one
    step fewer than the rest and a path outside the steps has ranges."""
    a = analyze_profile(DATA / capture)
    r = a.ranges
    if moved:  # the last step's forward pass
        last_step = r["path"].str.extract(r"^step_(\d+)")[0].dropna().astype(int).max()
        last = f"step_{last_step}/"
        forward = r["path"].str.startswith(last + "forward/") | (r["path"] == last + "forward")
        assert forward.any()
        r = r.assign(path=r["path"].where(~forward, "warmup/" + r["path"].str.slice(len(last))))
    m = r["path"].str.extract(r"^step_(\d+)/(.+)$")
    inside = r[m[0].notna()].assign(step=m[0].dropna().astype(int), folded=m[1].dropna())
    in_steps = r["path"].str.fullmatch(r"step_\d+") | m[0].notna()
    n_steps = r.loc[in_steps, "path"].str.extract(r"^step_(\d+)")[0].nunique()
    want = inside.groupby("folded").agg(steps=("step", "nunique"), instances=("path", "size"),
                                        gpu=("gpu_total_ns", "sum"), kernels=("kernels", "sum"))
    got = analyze.fold_steps(r, a.kernels).set_index("path")
    assert len(got) and n_steps >= 1
    assert not any(p.startswith("warmup") for p in got.index)  # outside the steps: left out
    if moved:  # the forward pass lies in one step fewer than backward (in none: no row)
        assert got.loc["backward", "steps"] == n_steps
        assert (got.loc["forward", "steps"] == n_steps - 1) if n_steps > 1 else "forward" not in got.index
    assert set(want.index) <= set(got.index)
    for path in set(got.index) - set(want.index):  # a prefix no range has (autograd's grafted ops): in no step
        assert got.loc[path, "steps"] == 0 and any(w.startswith(path + "/") for w in want.index), path
    for path, row in got.loc[list(want.index)].iterrows():
        assert row["steps"] == want.loc[path, "steps"], path
        assert row["instances_per_step"] == pytest.approx(want.loc[path, "instances"] / n_steps), path
        assert row["gpu_ns_per_step"] == pytest.approx(want.loc[path, "gpu"] / n_steps), path
        assert row["kernels_per_step"] == pytest.approx(want.loc[path, "kernels"] / n_steps), path
