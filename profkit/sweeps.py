"""The grids of `profkit sweep attention` and `profkit sweep models`, and the presets that
reproduce the seeds' studies (no torch: expanding a grid is pure, so CPU tests and the
resume logic see exactly the points a GPU run measures).

Presets (../shared/seeds/):
- `cs336`: seed 002, CS336 assignment 2's `pytorch_attention` benchmark: batch 8, one head,
  head dim 16..128, length 256..16,384, fp32, 100 passes; naive attention and the same compiled.
- `flash2`: seed 003, FlashAttention-2 against PyTorch attention: batch 32, 32 heads, embedding
  2048 (head dim 64), causal, length 8..16,384; the same without the causal mask; the embedding
  dim 32..2048 at length 1024; the head count 1..16 at embedding 32.
- `mac`: seed 001's shapes: batch 64, 32 heads, length 256, head dim 32, fp16, every backend.
- models `nanogpt`: seed 000's study: nanoGPT, batch 6 x 1024, 5 micro-batches and one AdamW
  step per iteration, 4 attention types, eager and compiled, bf16 and fp32.
- models `cs336`: seed 002's sizes table, small..2.7B, forward / forward+backward / step, fp32, bf16.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from profkit.config import RunConfig
from profkit.sizes import ATTN_BACKENDS

ATTN_IMPLS = ("naive", "math", "flash", "efficient", "cudnn", "compiled")
"""`naive`: scores, softmax, matmul spelled out; `compiled`: the same under torch.compile; the
others: scaled_dot_product_attention pinned to that backend."""
ATTN_DTYPES = ("fp32", "bf16", "fp16")
ATTN_MODES = ("fwd", "bwd", "fwd_bwd")
AXES = ("seq_len", "head_dim", "heads", "embed", "batch_size")
assert set(ATTN_BACKENDS) <= set(ATTN_IMPLS)


def point_id(config: dict[str, Any]) -> str:
    """A point's key in the results database: a hash of its config columns (sorted JSON).

    >>> point_id({"b": 1, "a": "x"}) == point_id({"a": "x", "b": 1})
    True
    """
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class AttentionPoint:
    """One attention shape on one implementation: q, k, v of (batch, heads, seq_len, head_dim)."""

    impl: str
    batch_size: int
    heads: int
    seq_len: int
    head_dim: int
    causal: bool
    dtype: str
    device: str

    @property
    def embed(self) -> int:
        return self.heads * self.head_dim

    def config(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def id(self) -> str:
        return point_id(self.config())

    @property
    def label(self) -> str:
        """`flash B32 H32 T1024 d64 causal bf16`."""
        return (f"{self.impl} B{self.batch_size} H{self.heads} T{self.seq_len} d{self.head_dim}"
                f"{' causal' if self.causal else ''} {self.dtype}")


def _positive(values: tuple[int, ...], what: str) -> None:
    if not values:
        raise ValueError(f"{what}: give at least one value")
    bad = [v for v in values if v < 1]
    if bad:
        raise ValueError(f"{what} must be at least 1, got {bad[0]}")


@dataclass(frozen=True, slots=True)
class AttentionGrid:
    """impls x batch sizes x heads x lengths x head dims (or embedding dims: head dim = embed / heads)."""

    name: str = "grid"
    impls: tuple[str, ...] = ("naive", "math", "flash", "efficient")
    batch_sizes: tuple[int, ...] = (8,)
    heads: tuple[int, ...] = (12,)
    seq_lens: tuple[int, ...] = (256, 1024, 4096)
    head_dims: tuple[int, ...] = (64,)
    embeds: tuple[int, ...] = ()
    """When given, replaces head_dims: each embedding dim split over each head count."""
    causal: bool = True
    dtype: str = "bf16"
    axis: str = "seq_len"
    """The x axis of this grid's plots and of its transposed (seed 003) table."""

    def __post_init__(self) -> None:
        for impl in self.impls:
            if impl not in ATTN_IMPLS:
                raise ValueError(f"unknown attention impl {impl!r}; choose from {', '.join(ATTN_IMPLS)}")
        if not self.impls:
            raise ValueError("impl: give at least one")
        if self.dtype not in ATTN_DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; choose from {', '.join(ATTN_DTYPES)}")
        if self.axis not in AXES:
            raise ValueError(f"unknown axis {self.axis!r}; choose from {', '.join(AXES)}")
        for values, what in ((self.batch_sizes, "batch-size"), (self.heads, "heads"), (self.seq_lens, "seq-len")):
            _positive(values, what)
        if self.embeds:
            _positive(self.embeds, "embed")
            bad = [(e, h) for e in self.embeds for h in self.heads if e % h]
            if bad:
                raise ValueError(f"embed {bad[0][0]} does not split over {bad[0][1]} heads")
        else:
            _positive(self.head_dims, "head-dim")

    def points(self, device: str) -> list[AttentionPoint]:
        """Every point, in the grid's order (impl slowest, then batch, heads, dims, length).

        >>> [p.label for p in AttentionGrid(impls=("naive",), heads=(2, 4), embeds=(64,), seq_lens=(8,)).points("cpu")]
        ['naive B8 H2 T8 d32 causal bf16', 'naive B8 H4 T8 d16 causal bf16']
        """
        dims: list[tuple[int, int]] = (
            [(h, e // h) for h in self.heads for e in self.embeds] if self.embeds
            else [(h, d) for h in self.heads for d in self.head_dims])
        return [AttentionPoint(impl=impl, batch_size=b, heads=h, seq_len=t, head_dim=d, causal=self.causal,
                               dtype=self.dtype, device=device)
                for impl, b, (h, d), t in itertools.product(self.impls, self.batch_sizes, dims, self.seq_lens)]


@dataclass(frozen=True, slots=True)
class AttentionSettings:
    """How each point is measured (not part of its key: a rerun with other settings skips it)."""

    reps: int = 30
    """Timed passes per mode (flash-attention's benchmark default), fewer when they would pass max_seconds."""
    warmup: int = 5
    """Untimed passes per mode first (the compile of `compiled` comes before them, timed apart)."""
    max_seconds: float = 3.0
    """Per point and mode: the timed passes stop being added once their estimate passes this (at least 3)."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.reps < 1:
            raise ValueError(f"reps must be at least 1, got {self.reps}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be 0 or more, got {self.warmup}")
        if self.max_seconds <= 0:
            raise ValueError(f"max-seconds must be positive, got {self.max_seconds}")


@dataclass(frozen=True, slots=True)
class AttentionPreset:
    grids: tuple[AttentionGrid, ...]
    reps: int
    source: str


POW2 = tuple(2**i for i in range(3, 15))  # 8 .. 16384
ATTENTION_PRESETS: dict[str, AttentionPreset] = {
    "cs336": AttentionPreset(
        (AttentionGrid(name="cs336", impls=("naive", "compiled", "math", "efficient", "flash"), batch_sizes=(8,),
                       heads=(1,), seq_lens=(256, 1024, 4096, 8192, 16384), head_dims=(16, 32, 64, 128),
                       causal=False, dtype="fp32"),),
        reps=100, source="seed 002 (CS336 assignment 2, pytorch_attention and torch_compile)"),
    "flash2": AttentionPreset(
        (AttentionGrid(name="flash2-seq", impls=("naive", "flash"), batch_sizes=(32,), heads=(32,), seq_lens=POW2,
                       head_dims=(64,), causal=True, dtype="bf16"),
         AttentionGrid(name="flash2-seq-noncausal", impls=("flash",), batch_sizes=(32,), heads=(32,),
                       seq_lens=POW2, head_dims=(64,), causal=False, dtype="bf16"),
         AttentionGrid(name="flash2-embed", impls=("naive", "flash"), batch_sizes=(32,), heads=(32,),
                       seq_lens=(1024,), embeds=(32, 64, 128, 256, 512, 1024, 2048), causal=True, dtype="bf16",
                       axis="embed"),
         AttentionGrid(name="flash2-heads", impls=("naive", "flash"), batch_sizes=(32,), heads=(1, 2, 4, 8, 16),
                       seq_lens=(1024,), embeds=(32,), causal=True, dtype="bf16", axis="heads")),
        reps=100, source="seed 003 (FlashAttention-2 against PyTorch attention, lab 5)"),
    "mac": AttentionPreset(
        (AttentionGrid(name="mac", impls=ATTN_IMPLS, batch_sizes=(64,), heads=(32,), seq_lens=(256,),
                       head_dims=(32,), causal=False, dtype="fp16"),),
        reps=100, source="seed 001 (SDPA backends on a MacBook: batch 64, 32 heads, length 256, head dim 32, fp16)"),
}


def attention_points(grids: tuple[AttentionGrid, ...] | list[AttentionGrid], device: str) -> list[AttentionPoint]:
    """The grids' points in order, each once (sub-grids of a preset may share points).

    >>> len(attention_points(ATTENTION_PRESETS["cs336"].grids, "cuda"))
    100
    """
    seen: dict[str, AttentionPoint] = {}
    for g in grids:
        for p in g.points(device):
            seen.setdefault(p.id, p)
    return list(seen.values())


# -- models -----------------------------------------------------------------------------------

MODEL_KEY = ("model", "mode", "dtype", "attn", "compile", "compile_mode", "grad_accum", "optimizer", "batch_size",
             "context_length", "warmup", "steps", "device", "seed")
"""The RunConfig fields that make a models point (batch and context resolved), and its `profile` flag."""


@dataclass(frozen=True, slots=True)
class ModelGrid:
    """sizes x modes x dtypes x attention x compile x the run knobs, each point one `profkit run`.

    A knob that does not apply to a point is left at its default there, and the points that
    then coincide are one: the optimizer outside `step`, the compile mode without compile,
    grad-accum for `fwd`.
    """

    models: tuple[str, ...] = ("small",)
    modes: tuple[str, ...] = ("fwd", "fwd_bwd", "step")
    dtypes: tuple[str, ...] = ("fp32", "bf16")
    attns: tuple[str, ...] = ("naive",)
    compiles: tuple[bool, ...] = (False,)
    compile_modes: tuple[str, ...] = ("default",)
    batch_sizes: tuple[int | None, ...] = (None,)
    context_lengths: tuple[int | None, ...] = (None,)
    grad_accums: tuple[int, ...] = (1,)
    optimizers: tuple[str, ...] = ("adamw",)
    warmup: int = field(default_factory=lambda: RunConfig().warmup)
    steps: int = field(default_factory=lambda: RunConfig().steps)
    seed: int = field(default_factory=lambda: RunConfig().seed)

    def configs(self, device: str | None) -> list[RunConfig]:
        """Every RunConfig of the grid, each once, in order.

        Raises:
            ValueError: a value RunConfig refuses (unknown model, mode, ...), with its reason.

        >>> [c.label for c in ModelGrid(models=("tiny",), modes=("fwd", "step"), dtypes=("fp32",),
        ...                             optimizers=("adamw", "sgd")).configs("cpu")]
        ['tiny-fwd-fp32-naive', 'tiny-step-fp32-naive', 'tiny-step-fp32-naive-sgd']
        """
        d = RunConfig()
        out: dict[str, RunConfig] = {}
        for (model, mode, dtype, attn, comp, cmode, batch, ctx, accum, opt) in itertools.product(
                self.models, self.modes, self.dtypes, self.attns, self.compiles, self.compile_modes,
                self.batch_sizes, self.context_lengths, self.grad_accums, self.optimizers):
            cfg = RunConfig(model=model, mode=mode, dtype=dtype, attn=attn, compile=comp,
                            compile_mode=cmode if comp else d.compile_mode,
                            grad_accum=accum if mode != "fwd" else d.grad_accum,
                            optimizer=opt if mode == "step" else d.optimizer, batch_size=batch, context_length=ctx,
                            warmup=self.warmup, steps=self.steps, seed=self.seed, device=device)
            out.setdefault(model_point_id(cfg, profile=False), cfg)
        return list(out.values())


def model_config(cfg: RunConfig) -> dict[str, Any]:
    """A models point's config columns: MODEL_KEY, batch and context resolved."""
    d = cfg.to_dict()
    d["batch_size"], d["context_length"] = cfg.resolved_batch_size, cfg.resolved_context_length
    return {k: d[k] for k in MODEL_KEY}


def model_point_id(cfg: RunConfig, *, profile: bool) -> str:
    return point_id({**model_config(cfg), "profiled": profile})


@dataclass(frozen=True, slots=True)
class ModelPreset:
    grids: tuple[ModelGrid, ...]
    source: str


MODEL_PRESETS: dict[str, ModelPreset] = {
    "nanogpt": ModelPreset(
        (ModelGrid(models=("nanogpt",), modes=("step",), dtypes=("bf16", "fp32"),
                   attns=("naive", "math", "flash", "efficient"), compiles=(False, True), batch_sizes=(6,),
                   context_lengths=(1024,), grad_accums=(5,), warmup=3, steps=10),),
        source="seed 000 (nanoGPT: batch 6 x 1024, 5 micro-batches, AdamW weight decay 1e-2, 4 attention types, "
               "torch.compile on and off)"),
    "cs336": ModelPreset(
        (ModelGrid(models=("small", "medium", "large", "xl", "2.7B"), modes=("fwd", "fwd_bwd", "step"),
                   dtypes=("fp32", "bf16"), warmup=3, steps=10),),
        source="seed 002 (CS336 assignment 2's benchmarking table: sizes small..2.7B, batch 4 x 256)"),
}


def model_configs(grids: tuple[ModelGrid, ...] | list[ModelGrid], device: str | None) -> list[RunConfig]:
    """The grids' configs in order, each once.

    >>> len(model_configs(MODEL_PRESETS["nanogpt"].grids, "cuda")), len(model_configs(MODEL_PRESETS["cs336"].grids,
    ...                                                                                  "cuda"))
    (16, 30)
    """
    seen: dict[str, RunConfig] = {}
    for g in grids:
        for c in g.configs(device):
            seen.setdefault(model_point_id(c, profile=False), c)
    return list(seen.values())


# -- from the command line ---------------------------------------------------------------------

def split(text: str | None, what: str, kind: type = str) -> tuple[Any, ...] | None:
    """A comma-separated option: `"256,1024"` -> (256, 1024); None stays None.

    >>> split("256, 1024", "seq-len", int), split("off,on", "compile", bool)
    ((256, 1024), (False, True))
    """
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ValueError(f"--{what}: give at least one value")
    if kind is bool:
        words = {"on": True, "yes": True, "true": True, "off": False, "no": False, "false": False}
        bad = [p for p in parts if p.lower() not in words]
        if bad:
            raise ValueError(f"--{what}: {bad[0]!r} is not on or off")
        return tuple(words[p.lower()] for p in parts)
    if kind is int:
        bad = [p for p in parts if not p.isdigit()]
        if bad:
            raise ValueError(f"--{what}: {bad[0]!r} is not a whole number")
        return tuple(int(p) for p in parts)
    return tuple(parts)


def flag(field_name: str) -> str:
    """The option of a grid field: `seq_lens` -> `seq-len`, `heads` -> `heads`."""
    return field_name if field_name in ("heads", "causal") else field_name.removesuffix("s").replace("_", "-")


def attention_grids(preset: str | None, options: dict[str, Any]) -> list[AttentionGrid]:
    """The grids of `profkit sweep attention`: a preset's (its impls narrowed by `impls`), or one
    grid from the options given (None: AttentionGrid's default).

    Raises:
        ValueError: a bad value, or grid options beside a preset.
    """
    given = {k: v for k, v in options.items() if v is not None}
    if preset is not None:
        extra = sorted(set(given) - {"impls"})
        if extra:
            raise ValueError(f"--preset {preset} sets the grid; drop --{flag(extra[0])} "
                             "(only --impl narrows a preset)")
        grids = list(ATTENTION_PRESETS[preset].grids)
        if "impls" in given:
            unknown = [i for i in given["impls"] if i not in ATTN_IMPLS]
            if unknown:
                raise ValueError(f"unknown attention impl {unknown[0]!r}; choose from {', '.join(ATTN_IMPLS)}")
            grids = [dataclasses.replace(g, impls=tuple(i for i in g.impls if i in given["impls"])) for g in grids]
            grids = [g for g in grids if g.impls]
            if not grids:
                raise ValueError(f"--impl {','.join(given['impls'])}: the preset {preset} has none of these")
        return grids
    return [AttentionGrid(**given)]


def model_grids(preset: str | None, options: dict[str, Any], *, warmup: int | None, steps: int | None,
                seed: int | None) -> list[ModelGrid]:
    """The grids of `profkit sweep models`, as attention_grids; warmup/steps/seed apply to presets too."""
    given = {k: v for k, v in options.items() if v is not None}
    runs: dict[str, Any] = {k: v for k, v in (("warmup", warmup), ("steps", steps), ("seed", seed)) if v is not None}
    if preset is not None:
        if given:
            raise ValueError(f"--preset {preset} sets the grid; drop --{flag(sorted(given)[0])}")
        return [dataclasses.replace(g, **runs) for g in MODEL_PRESETS[preset].grids]
    return [ModelGrid(**given, **runs)]
