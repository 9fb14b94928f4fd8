"""Module ranges attached from outside a model: forward and backward, on the right thread.

Backward: PyTorch runs backward on its autograd thread (on CUDA), so ranges pushed during
forward never cover backward kernels. Backward ranges are pushed when a module's output
gradient arrives and popped when its input gradient is done, by code that autograd runs on
the thread that launches that module's backward kernels, so each range lives on the right
thread's NVTX stack. Two ways, both attached from outside the model:
- built-in models: gradient hooks on the module's output (push) and on a view of its input
  (pop), registered by forward hooks (`_grad_hook_pair`), the cheapest way measured; their
  modules take one tensor and return one;
- user models: `module_hooks`, two identity autograd nodes per call around all of a call's
  tensor inputs and outputs (args and kwargs, nested in any container), which hold for any
  signature. PyTorch's full backward hooks do not: they see positional inputs only, so on
  transformers' LlamaAttention (called with keyword arguments) both fired at the output's
  gradient and its backward range was empty.
An identity autograd Function around input and output was measured to cost more than
gradient hooks (reports/nvtx_overhead.md), hence the two ways. The ranges are profkit.ranges'.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from profkit.ranges import inner_enabled, pop, push


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
    for name, _, module in _walk(model, depth):
        yield name, module


def module_paths(model: nn.Module, depth: int) -> Iterator[tuple[str, nn.Module]]:
    """module_ranges' modules with their path below `step_i/forward` (and `step_i/backward`).

    >>> [p for p, _ in module_paths(nn.Sequential(nn.Sequential(nn.ReLU())), 2)]
    ['0', '0/0']
    """
    for _, path, module in _walk(model, depth):
        yield path, module


def _walk(model: nn.Module, depth: int) -> Iterator[tuple[str, str, nn.Module]]:
    """(range name, path, module) for every module that gets a range, in definition order."""
    containers = (nn.ModuleList, nn.ModuleDict)

    def walk(module: nn.Module, level: int, path: str, prefix: str) -> Iterator[tuple[str, str, nn.Module]]:
        for child_name, child in module.named_children():
            name = f"{prefix}{child_name}"
            if isinstance(child, containers):
                yield from walk(child, level, path, f"{name}.")
                continue
            full = f"{path}/{name}" if path else name
            yield name, full, child
            if level < depth:
                yield from walk(child, level + 1, full, "")

    if depth >= 1:
        yield from walk(model, 1, "", "")


def add_module_ranges(model: nn.Module, depth: int, *, backward: bool = True) -> list[RemovableHandle]:
    """Attach forward (and backward) ranges to a user's model from outside, `depth` levels deep.

    Forward: pushed by a forward pre-hook, popped by a forward hook. Backward: `module_hooks`,
    which holds for any signature (see there). The backward ranges nest as the forward ones
    do, so `step_0/backward/transformer/h.0` mirrors `step_0/forward/transformer/h.0`.
    """
    handles: list[RemovableHandle] = []
    for name, module in module_ranges(model, depth):
        handles += module_hooks(module, name, backward=backward)
    return handles


# --- Backward ranges for any module --------------------------------------------------------
#
# A module's backward range opens when the first gradient of any of its outputs reaches
# autograd and closes when the last gradient of its inputs that require grad is computed.
# Two identity autograd nodes per call do it, whatever the signature:
#
#   inputs (args and kwargs, nested in tuples, lists, dicts, dataclasses) that require grad
#     -> _Close (one node for all of them; its backward pops)
#     -> the module's own ops
#     -> _Open (one node for all outputs that require grad; its backward pushes)
#
# Autograd runs a node once every gradient flowing into it is in, so _Open runs before any of
# the module's backward ops and _Close after the last of them that feeds an input (_Open also
# feeds _Close a None gradient, so _Close runs even for an input the outputs ignore); outputs
# left unused (LlamaAttention's `None`s, a KV cache) and inputs that need no grad (a mask, the
# rotary (cos, sin)) simply have no edge. Each call has its own pair, so a module called twice
# gets two ranges. The nodes nest like the forward: a parent's _Open wraps what its child's
# _Open produced (parent pushes first) and a parent's _Close is created before its child's
# (child pops first). Autograd's ready queue runs the node created last first, so a module's
# ops (created between its _Close and _Open) run between its push and its pop.
#
# A module none of whose inputs requires grad (an embedding fed token ids, a whole model fed
# them) has no _Close: its range closes when the gradients of the parameters (leaves) its
# outputs depend on are accumulated, found by walking the autograd graph from its outputs once
# per call. The nodes' outputs are `detach()`ed inputs, not views, so in-place ops after them
# stay legal; `set_materialize_grads(False)` passes unused gradients as None (no zeros made).


class _Call:
    """One call of one module: its range name and the state of its backward range."""

    __slots__ = ("name", "open", "closer", "closed_inputs", "waiting", "handles")

    def __init__(self, name: str) -> None:
        self.name = name
        self.open = False
        self.closer = False  # a _Close node closes the range (else parameter gradients do)
        self.closed_inputs: tuple[Tensor, ...] = ()  # _Close's outputs, until the forward hook
        self.waiting = 0  # parameter gradients still to come, when no _Close
        self.handles: list[RemovableHandle] = []

    def push(self) -> None:
        if not self.open:
            push(self.name)
            self.open = True
            if not self.closer and self.waiting == 0:  # nothing below it: an empty range
                self.pop()

    def pop(self) -> None:
        if self.open:
            pop(self.name)
            self.open = False

    def leaf_done(self, *_: Any) -> None:
        self.waiting -= 1
        if self.waiting == 0:
            self.pop()
            for h in self.handles:  # removing hooks while they run is safe: autograd iterates a copy
                h.remove()
            self.handles.clear()


class _Open(torch.autograd.Function):
    """Identity on the first `n` tensors; also takes the call's _Close outputs, to which it gives
    no gradient, so that _Close runs whenever _Open does (an input the outputs ignore included)."""

    @staticmethod
    def forward(ctx: Any, call: _Call, n: int, *xs: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        ctx.call, ctx.extra = call, len(xs) - n
        ctx.set_materialize_grads(False)
        return tuple(x.detach() for x in xs[:n])

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        ctx.call.push()
        return (None, None, *grads, *([None] * ctx.extra))


class _Close(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, call: _Call, *xs: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        ctx.call = call
        ctx.set_materialize_grads(False)
        return tuple(x.detach() for x in xs)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        ctx.call.pop()
        return (None, *grads)


_MAX_DEPTH = 6  # containers nested deeper than this are left alone


def map_tensors(obj: Any, fn: Callable[[Tensor], Tensor], depth: int = 0) -> Any:
    """`obj` with `fn` applied to every tensor in it, through tuples (named too), lists, dicts,
    dataclasses and dict-dataclasses such as transformers' ModelOutput; containers in which
    nothing changed are returned as they are, and other objects (a KV cache) are not entered.

    >>> map_tensors((1, {"a": torch.ones(1)}, [None]), lambda t: t * 2)
    (1, {'a': tensor([2.])}, [None])
    """
    if isinstance(obj, Tensor):
        return fn(obj)
    if depth >= _MAX_DEPTH:
        return obj
    if isinstance(obj, (tuple, list)):
        items = [map_tensors(x, fn, depth + 1) for x in obj]
        if all(a is b for a, b in zip(items, obj, strict=True)):
            return obj
        if isinstance(obj, list) or type(obj) is tuple:
            return items if isinstance(obj, list) else tuple(items)
        if hasattr(obj, "_fields"):  # a namedtuple
            return type(obj)(*items)
        try:
            return type(obj)(items)  # torch.return_types and other tuple subclasses built from a sequence
        except TypeError:
            return tuple(items)
    if isinstance(obj, dict):
        changed = {k: v2 for k, v in obj.items() if (v2 := map_tensors(v, fn, depth + 1)) is not v}
        if not changed:
            return obj
        new = copy.copy(obj)  # a ModelOutput stays one: its __setitem__ sets the attribute too
        for k, v in changed.items():
            new[k] = v
        return new
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changed = {f.name: v2 for f in dataclasses.fields(obj)
                   if (v := getattr(obj, f.name, None)) is not None and (v2 := map_tensors(v, fn, depth + 1)) is not v}
        if not changed:
            return obj
        new = copy.copy(obj)  # type: ignore[arg-type]
        for k, v in changed.items():
            object.__setattr__(new, k, v)  # frozen dataclasses too
        return new
    return obj


def _grad_tensors(obj: Any, found: list[Tensor], depth: int = 0) -> None:
    """Append to `found` every tensor in `obj` that requires grad, in map_tensors' order (a
    lean walk: it runs for every call of every ranged module, and mostly finds one tensor)."""
    if isinstance(obj, Tensor):
        if obj.requires_grad:
            found.append(obj)
    elif depth >= _MAX_DEPTH:
        return
    elif isinstance(obj, (tuple, list)):
        for x in obj:
            _grad_tensors(x, found, depth + 1)
    elif isinstance(obj, dict):
        for x in obj.values():
            _grad_tensors(x, found, depth + 1)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name, None)
            if v is not None:
                _grad_tensors(v, found, depth + 1)


def _replace_with(new: Iterator[Tensor]) -> Callable[[Tensor], Tensor]:
    return lambda t: next(new) if t.requires_grad else t


def _leaf_accumulators(roots: list[Tensor]) -> list[Any]:
    """The AccumulateGrad nodes (parameters, leaves) that the gradients of `roots` reach."""
    seen: set[Any] = set()
    stack = [t.grad_fn for t in roots]
    found = []
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if hasattr(node, "variable"):  # AccumulateGrad
            found.append(node)
            continue
        stack.extend(f for f, _ in node.next_functions)
    return found


def module_hooks(module: nn.Module, name: str, *, backward: bool = True) -> list[RemovableHandle]:
    """A forward range for every call of `module`, and (backward=True) a backward range that
    opens at its outputs' first gradient and closes at its inputs' last one (see above)."""
    calls: list[_Call | None] = []  # one per call in progress (a module may run inside itself)

    def before(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any] | None:
        push(name)
        if not (backward and torch.is_grad_enabled() and inner_enabled()):
            calls.append(None)
            return None
        call = _Call(name)
        calls.append(call)
        leaves: list[Tensor] = []
        _grad_tensors(args, leaves)
        _grad_tensors(kwargs, leaves)
        if not leaves:
            return None
        call.closer = True
        call.closed_inputs = _Close.apply(call, *leaves)
        return map_tensors((args, kwargs), _replace_with(iter(call.closed_inputs)))

    def after(m: nn.Module, args: tuple[Any, ...], out: Any) -> Any:
        pop(name)
        call = calls.pop() if calls else None
        if call is None or out is None:
            if call is not None:
                call.closed_inputs = ()  # no activations kept by a call that failed
            return None
        closed, call.closed_inputs = call.closed_inputs, ()
        leaves: list[Tensor] = []
        _grad_tensors(out, leaves)
        if not leaves:
            return None
        if not call.closer:
            accumulators = _leaf_accumulators(leaves)
            call.waiting = len(accumulators)
            call.handles = [node.register_hook(call.leaf_done) for node in accumulators]
        opened = _Open.apply(call, len(leaves), *leaves, *closed)
        return opened[0] if out is leaves[0] else map_tensors(out, _replace_with(iter(opened)))

    return [module.register_forward_pre_hook(before, with_kwargs=True),
            module.register_forward_hook(after, always_call=True)]
