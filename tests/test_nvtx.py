"""NVTX ranges nest as named, forward and backward, on the thread that launches the work."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from profkit import models, ranges
from profkit.collect import hooks
from tests.conftest import Recorder
from tests.user_models import make_encoder


def _train_step(model: nn.Module, idx: torch.Tensor) -> None:
    with ranges.phase("forward"):
        loss = model(idx).float().logsumexp(-1).mean()
    with ranges.phase("backward"):
        loss.backward()


def test_forward_paths_of_builtin_model(nvtx_recorder: Recorder) -> None:
    model = models.build("tiny", attn="naive")
    with torch.no_grad(), ranges.phase("forward"):
        model(torch.randint(512, (1, 8)))
    paths = [p for _, p in nvtx_recorder.paths()]
    assert paths == [
        "forward", "forward/embed", "forward/layer_0",
        "forward/layer_0/attn_norm", "forward/layer_0/attention",
        "forward/layer_0/attention/qkv_proj", "forward/layer_0/attention/rope",
        "forward/layer_0/attention/attn_scores", "forward/layer_0/attention/attn_softmax",
        "forward/layer_0/attention/attn_final_matmul", "forward/layer_0/attention/out_proj",
        "forward/layer_0/mlp_norm", "forward/layer_0/mlp",
        "forward/layer_1",
        "forward/layer_1/attn_norm", "forward/layer_1/attention",
        "forward/layer_1/attention/qkv_proj", "forward/layer_1/attention/rope",
        "forward/layer_1/attention/attn_scores", "forward/layer_1/attention/attn_softmax",
        "forward/layer_1/attention/attn_final_matmul", "forward/layer_1/attention/out_proj",
        "forward/layer_1/mlp_norm", "forward/layer_1/mlp",
        "forward/final_norm", "forward/lm_head",
    ]


def test_sdpa_backends_get_one_range(nvtx_recorder: Recorder) -> None:
    with torch.no_grad():
        models.build("tiny", attn="math")(torch.randint(512, (1, 8)))
    paths = [p for _, p in nvtx_recorder.paths()]
    assert "layer_0/attention/sdpa" in paths
    assert not any("attn_softmax" in p for p in paths)


@pytest.mark.parametrize("full_hooks", [False, True])
def test_backward_ranges_nest_per_layer_in_reverse_order(nvtx_recorder: Recorder, full_hooks: bool) -> None:
    model = models.build("tiny")
    handles = hooks.add_backward_ranges(model, full_hooks=full_hooks)
    _train_step(model, torch.randint(512, (1, 8)))
    paths = [p for _, p in nvtx_recorder.paths()]
    backward = [p for p in paths if p.startswith("backward")]
    # On CPU the engine runs backward on the calling thread, so it nests under `backward`.
    assert backward == [
        "backward", "backward/lm_head",
        "backward/layer_1", "backward/layer_1/mlp", "backward/layer_1/attention",
        "backward/layer_0", "backward/layer_0/mlp", "backward/layer_0/attention",
    ]
    for h in handles:
        h.remove()


def test_backward_ranges_change_nothing_numerically() -> None:
    torch.manual_seed(0)
    model = models.build("tiny")
    idx = torch.randint(512, (2, 8))
    model(idx).float().logsumexp(-1).mean().backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    hooks.add_backward_ranges(model)
    model(idx).float().logsumexp(-1).mean().backward()
    for a, b in zip(plain, (p.grad for p in model.parameters()), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_no_backward_hooks_without_grad(nvtx_recorder: Recorder) -> None:
    """Under no_grad the backward ranges' hooks record nothing: the ranges are the forward's alone."""
    model = models.build("tiny")
    idx = torch.randint(512, (1, 4))
    with torch.no_grad():
        model(idx)
    plain = list(nvtx_recorder.events)
    assert [p for _, p in nvtx_recorder.paths()][:2] == ["embed", "layer_0"]
    nvtx_recorder.events.clear()
    hooks.add_backward_ranges(model)
    with torch.no_grad():
        logits = model(idx)
    assert logits.grad_fn is None
    assert nvtx_recorder.events == plain  # no push waiting for a gradient that never comes, no extra range


def test_backward_ranges_live_on_the_thread_that_runs_backward(nvtx_recorder: Recorder) -> None:
    """As on CUDA, where autograd's device thread runs backward: ranges stay balanced per thread."""
    model = models.build("tiny")
    hooks.add_backward_ranges(model)
    loss = model(torch.randint(512, (1, 8))).float().logsumexp(-1).mean()
    worker = threading.Thread(target=loss.backward)
    worker.start()
    worker.join()
    by_thread = {}
    for tid, path in nvtx_recorder.paths():
        by_thread.setdefault(tid, []).append(path)
    assert by_thread[worker.ident][:3] == ["lm_head", "layer_1", "layer_1/mlp"]
    assert "layer_0/attention" in by_thread[worker.ident]
    assert not any(p.startswith("layer_0/") for p in by_thread[threading.get_ident()][-3:])


def test_user_model_ranges_from_outside_forward_and_backward(nvtx_recorder: Recorder) -> None:
    model, make_batch = make_encoder(batch_size=2, context_length=8)
    handles = hooks.add_module_ranges(model, depth=2)
    idx, _ = make_batch(torch.device("cpu"))
    _train_step(model, idx)
    paths = [p for _, p in nvtx_recorder.paths()]
    assert "forward/embed" in paths and "forward/head" in paths
    assert "forward/layers.0/self_attn" in paths and "forward/layers.1/linear2" in paths
    assert not any(p.count("/") > 2 for p in paths if p.startswith("forward"))  # depth 2
    assert "backward/head" in paths and "backward/layers.1" in paths
    assert "backward/layers.1/linear2" in paths and "backward/layers.0/self_attn" in paths
    assert paths.index("backward/layers.1") < paths.index("backward/layers.0")
    for h in handles:
        h.remove()


def test_module_range_names_and_depth() -> None:
    model, _ = make_encoder(batch_size=1, context_length=4)
    assert [n for n, _ in hooks.module_ranges(model, 1)] == ["embed", "layers.0", "layers.1", "head"]
    assert [n for n, _ in hooks.module_ranges(model, 0)] == []


def test_switching_off(nvtx_recorder: Recorder) -> None:
    ranges.set_enabled(True, inner=False)
    with ranges.phase("step_0"), ranges.annotate("attn_softmax"):
        pass
    ranges.set_enabled(False)
    with ranges.phase("step_1"), ranges.annotate("attn_softmax"):
        pass
    assert [p for _, p in nvtx_recorder.paths()] == ["step_0"]
    assert ranges.annotate("x") is ranges.phase("y")  # one shared null context when off


@pytest.mark.parametrize("setting,env,expected", [
    ("auto", None, False),
    ("auto", "/opt/nsys/libToolsInjection64.so", True),
    ("on", None, True),
    ("off", "/opt/nsys/libToolsInjection64.so", False),
])
def test_auto_follows_an_attached_tool(monkeypatch: pytest.MonkeyPatch, setting: str, env: str | None,
                                       expected: bool) -> None:
    if env is None:
        monkeypatch.delenv("NVTX_INJECTION64_PATH", raising=False)
    else:
        monkeypatch.setenv("NVTX_INJECTION64_PATH", env)
    assert ranges.resolve(setting) is expected
