"""NVTX ranges by name: the one annotation helper that models and the runner use (no torch).

Why the `nvtx` package and not `torch.cuda.nvtx`: it works on CPU-only machines too (the CPU
tests and CI capture real exports with nsys), and its ranges carry registered strings.
It is pinned to 0.2.10 because nsys 2023.4.4 did not record ranges from 0.2.17 at all
(see ../shared/nsys/README.md); tests/test_profile.py checks ranges reach a real export.

Two kinds of range: `phase` marks what the runner does (warmup, step_3, forward, backward,
optimizer, loss) and `annotate` marks steps inside a model. They are switched apart because a
torch.compile'd model must not contain NVTX calls (each would be a graph break, and the
compiler fuses the steps anyway), while the phases around it still matter.

Cost: a range is one dict lookup and two C calls, and the NVTX C library makes push/pop
no-ops when no tool is attached. So `profkit run --nvtx auto`, the default, turns ranges on
only when a tool is attached (`tool_attached`) and pays nothing otherwise. Switched off,
`annotate` hands back one shared `contextlib.nullcontext`, which torch.compile traces
without a graph break.

Ranges for modules (forward and backward hooks) are attached from outside a model by
`profkit.collect.hooks`, which calls `push` and `pop` here.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import nvtx

# profkit's ranges live in an NVTX domain of their own: push/pop stacks are kept per domain,
# so ranges that PyTorch pushes on the same thread (emit_nvtx, nsys --pytorch=autograd-nvtx)
# cannot pop profkit's, nor profkit pop theirs.
DOMAIN = "profkit"
RANK_DOMAIN = "profkit/rank{rank}"
"""A rank's domain in a multi-rank run: in one export holding every rank (--single-file), each
process's ranges say which rank made them (profkit.parse_ranks reads it back)."""
_DOMAIN = DOMAIN
_ENABLED = True  # every range
_INNER = True  # ranges inside models (`annotate`, module hooks)
_NULL = contextlib.nullcontext()
_CACHE: dict[str, Any] = {}
_SINK: tuple[Callable[[str], None], Callable[[str], None]] | None = None
_TAP: tuple[Callable[[str], None], Callable[[str], None]] | None = None
_TAP_NVTX = False  # whether ranges also reach NVTX while tapped (they were switched on before)


def tool_attached() -> bool:
    """True under nsys, Nsight Compute or any NVTX tool: they set NVTX_INJECTION64_PATH
    (seen with nsys 2023.4.4, whose launcher sets it together with LD_PRELOAD)."""
    return bool(os.environ.get("NVTX_INJECTION64_PATH"))


def resolve(setting: str) -> bool:
    """Whether `--nvtx auto|on|off` means ranges in this process.

    >>> resolve("on"), resolve("off")
    (True, False)
    """
    return setting == "on" or (setting == "auto" and tool_attached())


def set_enabled(enabled: bool, *, inner: bool = True) -> None:
    """Turn ranges on or off: all of them, or (inner=False) only those inside models."""
    global _ENABLED, _INNER
    _ENABLED, _INNER = enabled, enabled and inner


def set_rank(rank: int | None) -> None:
    """Put every range from now on into rank `rank`'s domain (None: profkit's own)."""
    global _DOMAIN, _CACHE
    _DOMAIN = DOMAIN if rank is None else RANK_DOMAIN.format(rank=rank)
    _CACHE = {}


def inner_enabled() -> bool:
    """Whether ranges inside models (annotate, module hooks) are on."""
    return _INNER


class _SinkRange:
    """A range whose push and pop go to `redirect`'s functions instead of NVTX."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        assert _SINK is not None
        _SINK[0](self.name)

    def __exit__(self, *exc: object) -> None:
        assert _SINK is not None
        _SINK[1](self.name)


class _TapRange:
    """A range that calls `tap`'s functions and, when ranges were on before, NVTX too."""

    __slots__ = ("name", "nvtx")

    def __init__(self, name: str, nvtx_range: Any) -> None:
        self.name, self.nvtx = name, nvtx_range

    def __enter__(self) -> None:
        assert _TAP is not None
        _TAP[0](self.name)
        if self.nvtx is not None:
            self.nvtx.__enter__()

    def __exit__(self, *exc: object) -> None:
        assert _TAP is not None
        if self.nvtx is not None:
            self.nvtx.__exit__()
        _TAP[1](self.name)


def _range(name: str) -> Any:
    # nvtx.annotate registers its string once; reusing the object keeps push/pop cheap.
    r = _CACHE.get(name)
    if r is None:
        if _SINK is not None:
            r = _SinkRange(name)
        elif _TAP is not None:
            r = _TapRange(name, nvtx.annotate(name, domain=_DOMAIN) if _TAP_NVTX else None)
        else:
            r = nvtx.annotate(name, domain=_DOMAIN)
        _CACHE[name] = r
    return r


@contextlib.contextmanager
def redirect(on_push: Callable[[str], None], on_pop: Callable[[str], None], *, inner: bool = True) -> Iterator[None]:
    """Every range (phase, annotate, push/pop) calls `on_push(name)`/`on_pop(name)` instead of NVTX,
    all of them switched on (inner=False: the phases only, as for a compiled model), until the
    block ends: `profkit flops` counts FLOPs under exactly the names a capture's ranges have.
    Not reentrant; the NVTX ranges and switches come back after.

    >>> seen = []
    >>> with redirect(lambda n: seen.append("+" + n), lambda n: seen.append("-" + n)):
    ...     with phase("step_0"), annotate("attn_softmax"):
    ...         pass
    >>> seen
    ['+step_0', '+attn_softmax', '-attn_softmax', '-step_0']
    """
    global _SINK, _CACHE, _ENABLED, _INNER
    saved = _SINK, _CACHE, _ENABLED, _INNER
    _SINK, _CACHE, _ENABLED, _INNER = (on_push, on_pop), {}, True, inner
    try:
        yield
    finally:
        _SINK, _CACHE, _ENABLED, _INNER = saved


@contextlib.contextmanager
def tap(on_push: Callable[[str], None], on_pop: Callable[[str], None], *, inner: bool = True) -> Iterator[None]:
    """Every range also calls `on_push(name)`/`on_pop(name)`, all of them switched on (inner=False:
    the phases only, as for a compiled model), until the block ends; NVTX gets the ranges too
    exactly when they were on before. `profkit run --memory-snapshot` records the range timeline
    of the measured steps this way, with or without a profiler attached. Not reentrant.

    >>> seen = []
    >>> set_enabled(False)
    >>> with tap(lambda n: seen.append("+" + n), lambda n: seen.append("-" + n)):
    ...     with phase("step_0"), annotate("mlp"):
    ...         pass
    >>> set_enabled(True)
    >>> seen
    ['+step_0', '+mlp', '-mlp', '-step_0']
    """
    global _TAP, _TAP_NVTX, _CACHE, _ENABLED, _INNER
    saved = _TAP, _TAP_NVTX, _CACHE, _ENABLED, _INNER
    _TAP, _TAP_NVTX, _CACHE = (on_push, on_pop), _ENABLED, {}
    _ENABLED, _INNER = True, inner
    try:
        yield
    finally:
        _TAP, _TAP_NVTX, _CACHE, _ENABLED, _INNER = saved


def annotate(name: str) -> contextlib.AbstractContextManager[Any]:
    """`with annotate("attn_softmax"):` marks one step of a model's forward."""
    return _range(name) if _INNER else _NULL


def phase(name: str) -> contextlib.AbstractContextManager[Any]:
    """`with phase("step_3"):` marks what the runner does around the model."""
    return _range(name) if _ENABLED else _NULL


def push(name: str) -> None:
    if _INNER:
        _range(name).__enter__()


def pop(name: str) -> None:
    if _INNER:
        _range(name).__exit__()
