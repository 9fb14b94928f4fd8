"""Module ranges attached from outside a model: forward and backward, on the right thread.

Backward: PyTorch runs backward on its autograd thread (on CUDA), so ranges pushed during
forward never cover backward kernels. Backward ranges are pushed when a module's output
gradient arrives and popped when its input gradient is done, by code that autograd runs on
the thread that launches that module's backward kernels, so each range lives on the right
thread's NVTX stack. Two ways, both attached from outside the model:
- built-in models: gradient hooks on the module's output (push) and on a view of its input
  (pop), registered by forward hooks (`_grad_hook_pair`), the cheapest way measured;
- user models: full backward (pre-)hooks, which PyTorch keeps right for any module
  signature (several inputs, tuple outputs, outputs left unused), at a higher cost.
An identity autograd Function around input and output was measured too, and cost more than
gradient hooks (reports/nvtx_overhead.md). The ranges themselves are profkit.ranges'.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from profkit.ranges import pop, push


def _hook_pair(module: nn.Module, name: str, *, forward: bool, backward: bool) -> list[RemovableHandle]:
    handles = []
    if forward:
        handles.append(module.register_forward_pre_hook(lambda m, a: push(name)))
        handles.append(module.register_forward_hook(lambda m, a, o: pop(name), always_call=True))
    if backward:
        handles.append(module.register_full_backward_pre_hook(lambda m, g: push(name)))
        handles.append(module.register_full_backward_hook(lambda m, gi, go: pop(name)))
    return handles


def _grad_hook_pair(module: nn.Module, name: str) -> list[RemovableHandle]:
    """Backward range from tensor gradient hooks: no Python autograd Function in the graph.

    The output's hook (run as its gradient is complete, before the module's backward) pushes;
    the input is first passed through a view, a node of its own, whose hook (run once the
    module's backward has produced the input's whole gradient) pops. The view matters: a
    block's input is the previous block's output, and a tensor's hooks run in the order they
    were registered, which would push the previous block's range before popping this one's.
    """

    def on_input(m: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        x = args[0]
        if not (torch.is_grad_enabled() and isinstance(x, Tensor) and x.requires_grad):
            return None
        x = x.view_as(x)
        x.register_hook(lambda g: pop(name))
        return (x, *args[1:])

    def on_output(m: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        if torch.is_grad_enabled() and isinstance(out, Tensor) and out.requires_grad:
            out.register_hook(lambda g: push(name))

    return [module.register_forward_pre_hook(on_input), module.register_forward_hook(on_output)]


def builtin_ranges(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """The modules of the built-in models that get a backward range, with its name.

    Names match the forward ranges (`layer_3`, `attention`, `mlp`, `lm_head`), so backward
    reads `step_0/backward/layer_3/attention` once nested under the `backward` range.
    """
    for i, block in enumerate(model.layers):  # type: ignore[arg-type]
        yield f"layer_{i}", block
        yield "attention", block.attn
        yield "mlp", block.mlp
    yield "lm_head", model.lm_head  # type: ignore[misc]


def add_backward_ranges(model: nn.Module, *, full_hooks: bool = False) -> list[RemovableHandle]:
    """Give each layer (and its attention and MLP) of a built-in model a backward range.

    `full_hooks=True` uses full backward hooks instead of gradient hooks (kept to measure
    the difference: scripts/bench_nvtx_overhead.py).
    """
    handles: list[RemovableHandle] = []
    for name, module in builtin_ranges(model):
        if full_hooks:
            handles += _hook_pair(module, name, forward=False, backward=True)
        else:
            handles += _grad_hook_pair(module, name)
    return handles


def module_ranges(model: nn.Module, depth: int) -> Iterator[tuple[str, nn.Module]]:
    """Modules of a user's model down to `depth` levels, named after their attribute.

    Children of a ModuleList/ModuleDict (which have no forward of their own) take their
    container's name: `encoder.layers.3.self_attn` at depth 3 is named `layers.3`, then
    `self_attn`, so the NVTX path reads `encoder/layers.3/self_attn`.

    >>> [n for n, _ in module_ranges(nn.Sequential(nn.Linear(1, 1), nn.ReLU()), 1)]
    ['0', '1']
    """
    containers = (nn.ModuleList, nn.ModuleDict)

    def walk(module: nn.Module, level: int, prefix: str) -> Iterator[tuple[str, nn.Module]]:
        for child_name, child in module.named_children():
            name = f"{prefix}{child_name}"
            if isinstance(child, containers):
                yield from walk(child, level, f"{name}.")
                continue
            yield name, child
            if level < depth:
                yield from walk(child, level + 1, "")

    if depth >= 1:
        yield from walk(model, 1, "")


def add_module_ranges(model: nn.Module, depth: int, *, backward: bool = True) -> list[RemovableHandle]:
    """Attach forward (and backward) ranges to a user's model from outside, `depth` levels deep.

    A module none of whose inputs needs a gradient (an embedding fed token ids) gets an empty
    backward range: PyTorch fires both hooks when its output gradient arrives, and warns.
    That warning is silenced here; its backward kernels fall under the enclosing range.
    """
    warnings.filterwarnings("ignore", message="Full backward hook is firing when gradients are computed with "
                            "respect to module outputs", category=UserWarning)
    handles: list[RemovableHandle] = []
    for name, module in module_ranges(model, depth):
        handles += _hook_pair(module, name, forward=True, backward=backward)
    return handles
