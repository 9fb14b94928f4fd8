"""Backward ranges for any module (hooks.module_hooks): open at the first output gradient, closed
at the last input gradient, nested as the forward, on whichever thread runs backward.

The proof: every parameter's gradient must be computed while its module's backward range is
the innermost open one, the same path as its module's forward range with `forward` read
`backward`; pushes and pops balance per thread; and gradients are bit for bit the same.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from profkit import pipeline, ranges
from profkit.cli import cli
from profkit.collect import hooks
from tests import hf_like
from tests.conftest import TESTS, Recorder, real_nsys


def _walk(events: list[tuple[str, str, int]]) -> tuple[dict[int, list[str]], list[tuple[str, str, int]]]:
    """Per thread, the paths pushed in order; and each mark with the path open when it was logged."""
    stacks: dict[int, list[str]] = {}
    pushed: dict[int, list[str]] = {}
    marks = []
    for kind, name, tid in events:
        stack = stacks.setdefault(tid, [])
        if kind == "push":
            stack.append(name)
            pushed.setdefault(tid, []).append("/".join(stack))
        elif kind == "pop":
            assert stack and stack[-1] == name, f"pop {name!r} does not match open {stack}"
            stack.pop()
        else:
            marks.append((name, "/".join(stack), tid))
    assert all(not s for s in stacks.values()), f"ranges left open: {stacks}"
    return pushed, marks


def _mark_parameters(model: nn.Module, rec: Recorder) -> dict[str, str]:
    """Log a mark when each parameter's gradient is complete; returns parameter -> owning module."""
    owners: dict[str, tuple[int, str]] = {}
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if id(p) in [q for q, _ in owners.values()]:
                continue  # a shared parameter: one gradient
            owners[full] = (id(p), mod_name)
            p.register_hook(lambda g, full=full: rec.events.append(("grad", full, threading.get_ident())))
    for mod_name, module in model.named_modules():
        # After profkit's pre-hook (registered earlier), so the forward range is already open.
        module.register_forward_pre_hook(
            lambda m, a, mod_name=mod_name: rec.events.append(("fwd", mod_name, threading.get_ident())))
    return {full: mod for full, (_, mod) in owners.items()}


def _check(model: nn.Module, step: Callable[[], torch.Tensor], rec: Recorder, depth: int, *,
           thread: bool = False) -> list[str]:
    hooks.add_module_ranges(model, depth)
    owners = _mark_parameters(model, rec)
    with ranges.phase("forward"):
        loss = step()
    with ranges.phase("backward"):
        if thread:  # as on CUDA, where autograd's device thread runs backward
            worker = threading.Thread(target=loss.backward)
            worker.start()
            worker.join()
        else:
            loss.backward()
    pushed, marks = _walk(rec.events)
    fwd_path = {}
    for name, path, _ in marks:
        if name in owners.values() and path.startswith("forward"):
            fwd_path.setdefault(name, path)
    grads = {name: (path, tid) for name, path, tid in marks if name in owners}
    assert set(grads) == set(owners), "every parameter got a gradient"
    main = threading.get_ident()
    for p, (path, tid) in grads.items():
        expected = fwd_path[owners[p]].replace("forward", "backward", 1)
        if thread:
            assert tid != main
            expected = expected.removeprefix("backward").lstrip("/")
        assert path == expected, f"{p}: gradient computed under {path!r}, its module's forward is under " \
                                 f"{fwd_path[owners[p]]!r}"
    backward = [p for tid, ps in pushed.items() for p in ps if (tid != main) == thread]
    return [p for p in backward if p.startswith("backward") or thread]


@pytest.mark.parametrize("depth", [1, 2, 3, 9])
def test_llama_shaped_model_with_labels(nvtx_recorder: Recorder, depth: int) -> None:
    model, make_batch = hf_like.causal_lm_with_labels(batch_size=2, context_length=8)
    kwargs, _ = make_batch(torch.device("cpu"))
    backward = _check(model, lambda: model(**kwargs).loss, nvtx_recorder, depth)
    if depth == 9:
        assert backward[:4] == ["backward", "backward/lm_head", "backward/model", "backward/model/norm"]
        prefix = "backward/model/layers.1/"
        layer = [p.removeprefix(prefix) for p in backward if p.startswith(prefix)]
        assert layer == ["gate", "mlp", "mlp/down", "mlp/act", "mlp/act", "mlp/up", "post_attention_layernorm",
                         "self_attn", "self_attn/o_proj", "self_attn/v_proj", "self_attn/k_proj", "self_attn/q_proj",
                         "input_layernorm"]
        assert backward[-1] == "backward/model/embed_tokens"  # the tied weight's gradient completes last
        assert not any("rotary_emb" in p for p in backward)  # its output needs no gradient: no range


def test_backward_on_another_thread(nvtx_recorder: Recorder) -> None:
    model, make_batch = hf_like.causal_lm_with_labels(batch_size=2, context_length=8)
    kwargs, _ = make_batch(torch.device("cpu"))
    backward = _check(model, lambda: model(**kwargs).loss, nvtx_recorder, 3, thread=True)
    assert backward[:3] == ["lm_head", "model", "model/norm"] and "model/layers.0/self_attn" in backward


def test_gradients_are_unchanged() -> None:
    def grads(with_ranges: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model, make_batch = hf_like.causal_lm_with_labels(batch_size=2, context_length=8)
        if with_ranges:
            hooks.add_module_ranges(model, 9)
        kwargs, _ = make_batch(torch.device("cpu"))
        model(**kwargs).loss.backward()
        return [p.grad for p in model.parameters()]

    for a, b in zip(grads(False), grads(True), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_in_place_after_a_module_is_allowed(nvtx_recorder: Recorder) -> None:
    lin = nn.Linear(4, 4)
    hooks.module_hooks(lin, "lin")
    x = torch.randn(2, 4, requires_grad=True)
    y = lin(x)
    y.mul_(2)  # the output is not a view made inside a custom Function
    y.sum().backward()
    assert [p for _, p in nvtx_recorder.paths()] == ["lin", "lin"]  # forward, then backward
    torch.testing.assert_close(x.grad, 2 * lin.weight.sum(0).expand(2, 4))


def test_an_input_the_outputs_ignore(nvtx_recorder: Recorder) -> None:
    class Ignores(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor, unused: torch.Tensor, *, also: torch.Tensor) -> torch.Tensor:
            return self.lin(also)

    model = nn.Sequential(nn.Linear(4, 4))
    ignores = Ignores()
    _check_model = nn.ModuleDict({"first": model, "ignores": ignores})

    def step() -> torch.Tensor:
        h = model(torch.randn(2, 4))
        return ignores(h, h * 2, also=torch.ones(2, 4)).sum()

    _check(_check_model, step, nvtx_recorder, 3)  # balanced, each gradient under its module


def test_no_ranges_without_grad(nvtx_recorder: Recorder) -> None:
    model, make_batch = hf_like.causal_lm_with_labels(batch_size=1, context_length=4)
    hooks.add_module_ranges(model, 3)
    kwargs, _ = make_batch(torch.device("cpu"))
    with torch.no_grad():
        out = model(**kwargs)
    assert out.loss.grad_fn is None
    assert all(not p.startswith("backward") for _, p in nvtx_recorder.paths())


def test_forward_error_leaves_ranges_balanced(nvtx_recorder: Recorder) -> None:
    class Boom(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise ValueError("boom")

    model = nn.Sequential(Boom())
    hooks.add_module_ranges(model, 1)
    with pytest.raises(ValueError):
        model(torch.ones(1, requires_grad=True))
    model[0].forward = lambda x: x * 2  # type: ignore[method-assign]
    model(torch.ones(1, requires_grad=True)).sum().backward()
    assert [p for _, p in nvtx_recorder.paths()] == ["0", "0", "0"]


@dataclass(frozen=True)
class Frozen:
    a: torch.Tensor
    b: Any = None


@pytest.mark.parametrize("value", [
    (1, [None, "s"], {"k": 3}),
    Frozen(torch.ones(1), b=(torch.ones(2), None)),
    hf_like.CausalLMOutput(loss=torch.ones(()), logits=torch.ones(2)),
    {"x": [torch.ones(1), {"y": torch.ones(1)}]},
    torch.ones(2, 3).max(dim=0),  # torch.return_types.max: .values and .indices kept
])
def test_map_tensors_keeps_structure(value: Any) -> None:
    out = hooks.map_tensors(value, lambda t: t + 1)
    assert type(out) is type(value)
    flat_in: list[torch.Tensor] = []
    flat_out: list[torch.Tensor] = []
    hooks.map_tensors(value, lambda t: flat_in.append(t) or t)
    hooks.map_tensors(out, lambda t: flat_out.append(t) or t)
    assert len(flat_in) == len(flat_out) and all(torch.equal(a + 1, b) for a, b in zip(flat_in, flat_out, strict=True))
    if isinstance(value, hf_like.ModelOutput):
        assert out.logits is out["logits"] and list(out.keys()) == ["loss", "logits"]
    if not flat_in:
        assert out is value


def _hf(kind: str) -> tuple[nn.Module, torch.Tensor]:
    tf = pytest.importorskip("transformers")
    torch.manual_seed(0)
    if kind == "gpt2":
        model = tf.GPT2LMHeadModel(tf.GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=256, n_positions=64,
                                                 use_cache=False))
    else:
        model = tf.LlamaForCausalLM(tf.LlamaConfig(num_hidden_layers=2, hidden_size=64, intermediate_size=128,
                                                   num_attention_heads=4, num_key_value_heads=2, vocab_size=256,
                                                   use_cache=False, attn_implementation="sdpa"))
    return model, torch.randint(256, (2, 16))


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_real_transformers_model(nvtx_recorder: Recorder, kind: str) -> None:
    model, ids = _hf(kind)
    backward = _check(model, lambda: model(input_ids=ids, labels=ids).loss, nvtx_recorder, 4)
    attn = "attn" if kind == "gpt2" else "self_attn"
    layers = "transformer/h.0" if kind == "gpt2" else "model/layers.0"
    assert f"backward/{layers}/{attn}" in backward


@pytest.mark.parametrize("kind,small", [
    ("gpt2", dict(n_layer=2, n_embd=64, n_head=2, vocab_size=256)),
    ("llama", dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                   intermediate_size=128, vocab_size=256)),
])
def test_scripts_hf_models(nvtx_recorder: Recorder, kind: str, small: dict[str, int]) -> None:
    """scripts/hf_models.py's factories, shrunk: the contract holds and the ranges nest."""
    pytest.importorskip("transformers")
    from scripts import hf_models

    model, make_batch = hf_models.build(kind, 2, 16, **small)
    kwargs, targets = make_batch(torch.device("cpu"))
    assert targets is None
    _check(model, lambda: model(**kwargs).loss, nvtx_recorder, 3)


def test_module_paths_are_the_range_paths(nvtx_recorder: Recorder) -> None:
    model, make_batch = hf_like.causal_lm_with_labels(batch_size=1, context_length=4)
    hooks.add_module_ranges(model, 3)
    kwargs, _ = make_batch(torch.device("cpu"))
    with torch.no_grad():
        model(**kwargs)
    pushed = {p for _, p in nvtx_recorder.paths()}
    paths = [p for p, _ in hooks.module_paths(model, 3)]
    assert "model/layers.0/self_attn" in paths and len(paths) == len(list(hooks.module_ranges(model, 3)))
    assert set(paths) == pushed


@pytest.mark.nsys
def test_backward_paths_mirror_forward_in_a_real_capture(tmp_path: Path) -> None:
    """Under the real nsys on CPU: the export's backward paths are the forward paths, phase swapped."""
    nsys = real_nsys()
    env = {"PYTHONPATH": f"{TESTS}:{TESTS.parent}"}
    result = CliRunner(env=env).invoke(cli, [
        "profile", "--model", "hf_like:causal_lm_with_labels", "--mode", "fwd_bwd", "--device", "cpu",
        "--warmup", "0", "--steps", "1", "--batch-size", "1", "--context-length", "8", "--nvtx-depth", "3",
        "--name", "hf", "--out-dir", str(tmp_path), "--nsys", str(nsys.path)])
    assert result.exit_code == 0, result.output
    paths = pipeline.load(tmp_path / "hf").ranges["path"].tolist()
    forward = {p.removeprefix("step_0/forward/") for p in paths if p.startswith("step_0/forward/")}
    backward = {p.removeprefix("step_0/backward/") for p in paths if p.startswith("step_0/backward/")}
    assert "model/layers.1/self_attn" in backward and "model/embed_tokens" in backward
    # Every backward path is a forward path; forward-only: the loss and modules whose outputs need no grad.
    assert backward <= forward
    assert forward - backward == {"loss", "model/rotary_emb"}
