"""`profkit flops`: FLOPs and minimum bytes per NVTX path, by replaying one step on `meta`.

The workload of a RunConfig is built on the `meta` device (shapes only: no memory, no GPU) and
one step of `make_step` runs as `step_0` under `PathCounter`, a FlopCounterMode whose every
count also lands on the path that profkit's range helper has open: `ranges.redirect` makes
`phase`, `annotate` and the module hooks push names onto the counter's stack instead of NVTX,
so the paths are the capture's (`step_0/backward/layer_2/attention`). Backward runs on the
calling thread on `meta`, under the main thread's `backward`, where profkit's analysis grafts
the autograd thread's ranges in a capture.

Three numbers per op, each kept apart:
- `flops`: exactly what torch.utils.flop_counter's registry counts (matmuls, attention,
  convolutions), so the total equals FlopCounterMode's for the same step;
- `vector_flops`: softmax, norms, elementwise and reductions (the optimizer's too), at the
  per-element counts of `VECTOR_PER_ELEMENT` below, each with its source;
- `bytes`: each tensor input read once and each output written once (views move nothing).

Attention: on `meta`, SDPA falls back to its math path whatever backend is pinned, so for
`flash`, `efficient` and `cudnn` the replay calls the fused ATen op the GPU runs
(`_FusedSDPA`), which the registry counts as FlashAttention does: 4·B·H·T²·d forward and
2.5x that backward, causal or not (the mask is not subtracted). The naive path's masked
matmuls count their full T×T too. Both are *executed* FLOPs; `useful_attention_flops` (half of
them when causal) is reported beside them.

Dtype: autocast does not run on `meta` (torch.autocast refuses the device, and CUDA's autocast
kernels need a CUDA build). FLOPs do not depend on it; bytes do. So under bf16 or fp16 the
forward runs under `Autocast`, a TorchFunctionMode that applies CUDA autocast's rules at the
same level autocast does (above autograd, before composite ops decompose): the ops of its
lower-precision list get their floating inputs cast to 16 bits, those of its fp32 lists to
fp32, the promote list to the widest; the casts are real ops, recorded by autograd, so the
backward runs in the dtypes the GPU's does and every tensor's bytes are its own dtype's.

The replay runs one step unseen before `step_0`, as the capture measures steps after warm-up:
state made on the first step (AdamW's moments) would otherwise count as step_0's work.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

import profkit.models as models
from profkit import layout, ranges
from profkit.collect import hooks, workload
from profkit.config import RunConfig
from profkit.errors import RunError

META = torch.device("meta")
STEP = "step_0"

# Per-element vector FLOPs, per output element unless noted (`in`: per input element).
VECTOR_PER_ELEMENT: dict[str, tuple[float, str]] = {
    # softmax: max, subtract-exp, sum, divide; seed 002 (CS336 assignment 2 write-up) counts 3 per element.
    "_softmax": (3, "out"), "_log_softmax": (3, "out"),
    # backward y * (g - sum(g * y)): multiply, sum, subtract, multiply (derived from the formula).
    "_softmax_backward_data": (4, "out"), "_log_softmax_backward_data": (4, "out"),
    # LayerNorm: DeepSpeed flops_profiler (_layer_norm_flops_compute) counts 5 per element with affine.
    "native_layer_norm": (5, "in"),
    # backward counted at twice the forward, the backward = 2x forward convention of Kaplan et al. 2020, sec. 2.1.
    "native_layer_norm_backward": (10, "in"),
    # one FLOP per output element for elementwise ops and activations: DeepSpeed flops_profiler
    # (_elementwise_flops_compute, _gelu/_silu_flops_compute: numel).
    **{op: (1, "out") for op in (
        "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "neg", "rsqrt", "sqrt", "exp", "log", "pow",
        "reciprocal", "silu", "gelu", "relu", "sigmoid", "tanh", "masked_fill", "masked_fill_", "where", "clamp",
        "maximum", "minimum", "threshold_backward", "silu_backward", "gelu_backward", "sigmoid_backward", "fill_",
        "_foreach_add_", "_foreach_mul_", "_foreach_div_", "_foreach_sqrt")},
    # a + w * (b - a) and a + v * b * c (PyTorch's definitions of lerp, addcmul, addcdiv): 3 per element.
    **{op: (3, "out") for op in ("lerp", "lerp_", "addcmul", "addcmul_", "addcdiv", "addcdiv_",
                                 "_foreach_lerp_", "_foreach_addcmul_", "_foreach_addcdiv_")},
    # reductions: one add (or compare) per input element (DeepSpeed flops_profiler, _reduction_flops_compute).
    **{op: (1, "in") for op in ("sum", "mean", "amax", "amin", "max", "min", "norm", "linalg_vector_norm",
                                "nll_loss_forward", "embedding_dense_backward")},
}
# CUDA autocast's policies, by the name of the Python-level function the model calls (what a
# TorchFunctionMode sees), from aten/src/ATen/autocast_mode.h (AT_FORALL_LOWER_PRECISION_FP,
# AT_FORALL_FP32, AT_FORALL_FP32_SET_OPT_DTYPE, AT_FORALL_PROMOTE) and the AMP docs' op reference
# ("CUDA Ops that can autocast to float16 / float32", which names the Python operators:
# __matmul__, __pow__, __rtruediv__, ...). tests/test_flops.py checks every name against the
# dispatcher's AutocastCUDA kernels.
AUTOCAST_LOWP = frozenset({
    "conv1d", "conv2d", "conv3d", "conv_tbc", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "convolution", "prelu", "addmm", "addmv", "addr", "matmul", "einsum", "mm", "mv", "linalg_vecdot", "linear",
    "addbmm", "baddbmm", "bmm", "chain_matmul", "linalg_multi_dot", "lstm_cell", "gru_cell", "rnn_tanh_cell",
    "rnn_relu_cell", "scaled_dot_product_attention", "__matmul__", "__rmatmul__"})
AUTOCAST_FP32 = frozenset({
    "acos", "asin", "cosh", "erfinv", "exp", "expm1", "log", "log10", "log2", "log1p", "reciprocal", "rsqrt", "sinh",
    "tan", "pow", "__pow__", "__rpow__", "__rtruediv__", "__rdiv__", "softplus", "layer_norm", "group_norm",
    "frobenius_norm", "nuclear_norm", "cosine_similarity", "poisson_nll_loss", "cosine_embedding_loss", "nll_loss",
    "hinge_embedding_loss", "kl_div", "l1_loss", "smooth_l1_loss", "huber_loss", "mse_loss", "margin_ranking_loss",
    "multilabel_margin_loss", "soft_margin_loss", "triplet_margin_loss", "multi_margin_loss",
    "binary_cross_entropy_with_logits", "dist", "pdist", "cdist", "renorm", "logsumexp", "norm",
    # composite in C++ (no autocast kernel of its own; the Python level never sees its log_softmax and
    # nll_loss, both on autocast's fp32 lists): fp32 as a whole, as the AMP docs list it
    "cross_entropy"})
# fp32 unless the call names a dtype (autocast then leaves it alone)
AUTOCAST_FP32_UNLESS_DTYPE = frozenset({"prod", "softmax", "log_softmax", "cumprod", "cumsum", "linalg_vector_norm",
                                        "linalg_matrix_norm", "sum"})
AUTOCAST_PROMOTE = frozenset({"addcdiv", "addcmul", "atan2", "bilinear", "cross", "dot", "grid_sampler", "index_put",
                              "scatter_add", "tensordot"})
GATHER_OPS = frozenset({"embedding", "index_select", "gather"})
# Ops whose tensor inputs give only a shape: nothing is read.
NO_READ = frozenset({"zeros_like", "empty_like", "ones_like", "full_like", "rand_like", "randn_like", "new_zeros",
                     "new_empty", "new_ones", "new_full", "zero_", "fill_", "empty_strided"})
ATTENTION_OPS = frozenset({"bmm_attention", "_scaled_dot_product_flash_attention",
                           "_scaled_dot_product_flash_attention_backward", "_scaled_dot_product_efficient_attention",
                           "_scaled_dot_product_efficient_attention_backward", "_scaled_dot_product_cudnn_attention",
                           "_scaled_dot_product_cudnn_attention_backward"})


# Views whose schema does not say so: _unsafe_view (matmul's and linear's reshape of their mm
# result) is declared non-aliasing for autograd's sake, but moves nothing.
VIEWS = frozenset({"_unsafe_view", "lift_fresh"})


def _is_view(packet: Any) -> bool:
    """Whether an ATen op only makes views (its returns alias an input, unwritten): no bytes move."""
    if getattr(packet, "__name__", "") in VIEWS:
        return True
    try:
        schema = getattr(packet, packet.overloads()[0])._schema
    except (AttributeError, IndexError):
        return False
    returns = schema.returns
    return bool(returns) and all(r.alias_info is not None and not r.alias_info.is_write for r in returns)


def _touched(t: torch.Tensor) -> int:
    """Bytes a tensor occupies once: broadcast (stride 0) dimensions count once."""
    return math.prod(s for s, st in zip(t.shape, t.stride(), strict=True) if st != 0) * t.element_size()


def _once(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each tensor once (`addcmul_(g, g)` reads g once)."""
    seen: set[int] = set()
    return [t for t in tensors if not (id(t) in seen or seen.add(id(t)))]  # type: ignore[func-returns-value]


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for x in obj:
            yield from _tensors(x)
    elif isinstance(obj, dict):
        for x in obj.values():
            yield from _tensors(x)


class Ranges:
    """The stack of profkit ranges open, with `autocast` on while a step's forward phase is
    (make_step's autocast covers the forward and the loss)."""

    def __init__(self, autocast: Autocast | None = None) -> None:
        self.stack: list[str] = []
        self.autocast = autocast

    def push(self, name: str) -> None:
        self.stack.append(name)
        if self.autocast is not None and self.stack[1:] == ["forward"]:
            self.autocast.enabled = True

    def pop(self, name: str) -> None:
        if name in self.stack:  # the innermost range of that name, as NVTX pops the top
            del self.stack[len(self.stack) - 1 - self.stack[::-1].index(name)]
        if self.autocast is not None and name == "forward" and len(self.stack) == 1:
            self.autocast.leave()


class PathCounter(FlopCounterMode):
    """FlopCounterMode that also books every op's FLOPs, vector FLOPs and bytes on the path of
    profkit ranges open at the time (`push`/`pop`), exclusive of children."""

    def __init__(self, *, builtin: bool = True, autocast: Autocast | None = None, device_type: str = "meta") -> None:
        super().__init__(display=False)
        self.device_type = device_type  # "cuda": the same books for a real step (scripts/gpu_issue10.sh checks bytes)
        self.ranges = Ranges(autocast)
        self.stack = self.ranges.stack
        self.builtin = builtin
        self.rows: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        self.attention: dict[str, int] = defaultdict(int)  # executed attention FLOPs per path
        self._views: dict[Any, bool] = {}

    def push(self, name: str) -> None:
        self.ranges.push(name)
        self.rows["/".join(self.stack)]  # a range without ops still gets its row

    def pop(self, name: str) -> None:
        self.ranges.pop(name)

    def _is_attention(self, name: str) -> bool:
        """The fused attention ops; in the built-in models also every bmm under attention's ranges:
        forward's attn_scores and attn_final_matmul, and `.../attention` in backward, where the
        scores' and the final matmul's gradients run (its projections are nn.Linear: mm, not bmm)."""
        if name in ATTENTION_OPS:
            return True
        return self.builtin and name == "bmm" and any(p == "attention" or p.startswith("attn_") for p in self.stack)

    def _count_flops(self, func_packet: Any, out: Any, args: Any, kwargs: Any) -> Any:
        before = self.get_total_flops()
        result = super()._count_flops(func_packet, out, args, kwargs)
        flops = self.get_total_flops() - before
        name = getattr(func_packet, "__name__", str(func_packet))
        path = "/".join(self.stack)
        row = self.rows[path]
        row[0] += flops
        if self._is_attention(name):
            self.attention[path] += flops
        view = self._views.get(func_packet)
        if view is None:
            view = self._views[func_packet] = _is_view(func_packet)
        if view:
            return result
        dev = self.device_type
        ins = [] if name in NO_READ else _once([t for t in _tensors((args, kwargs)) if t.device.type == dev])
        outs = _once([t for t in _tensors(out) if t.device.type == dev])
        if name in GATHER_OPS:  # a lookup reads the rows it gathers (as many bytes as it writes), not the table
            ins = [t for t in ins if not t.is_floating_point()] + outs
        row[2] += sum(_touched(t) for t in ins) + sum(_touched(t) for t in outs)
        per, basis = VECTOR_PER_ELEMENT.get(name, (0, "out"))
        if per:
            elems = sum(t.numel() for t in (ins[:1] if basis == "in" else outs))
            row[1] += int(per * elems)
        return result


class Autocast(TorchFunctionMode):
    """CUDA autocast's casting rules, applied on `meta` while `enabled` (the forward phase).

    Casts eligible tensors (floating, not float64) as autocast_mode.cpp does, with its cache of
    casts of leaf tensors that require grad (a weight used twice is cast once per forward).
    It sees what Python calls, not what a composite op runs inside (autocast does): the lists
    therefore name composites by their effect (cross_entropy: fp32, as its log_softmax and
    nll_loss are); a Python composite outside them runs its inner ops uncast.
    """

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.dtype = dtype
        self.enabled = False
        self._cache: dict[int, torch.Tensor] = {}

    def leave(self) -> None:
        self.enabled = False
        self._cache.clear()

    def _cast(self, x: Any, to: torch.dtype) -> Any:
        if isinstance(x, torch.Tensor):
            if not x.is_floating_point() or x.dtype in (torch.float64, to):
                return x
            leaf = x.is_leaf and x.requires_grad
            if leaf and id(x) in self._cache:
                return self._cache[id(x)]
            y = x.to(to)
            if leaf:
                self._cache[id(x)] = y
            return y
        if isinstance(x, (list, tuple)):
            return type(x)(self._cast(v, to) for v in x)
        return x

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if not self.enabled or name.endswith("_") and not name.startswith("__"):  # in-place ops are not eligible
            return func(*args, **kwargs)
        to: torch.dtype | None = None
        if name in AUTOCAST_LOWP:
            to = self.dtype
        elif name in AUTOCAST_FP32 or (name in AUTOCAST_FP32_UNLESS_DTYPE and kwargs.get("dtype") is None):
            to = torch.float32
        elif name in AUTOCAST_PROMOTE:
            floats = [t.dtype for t in _tensors((args, kwargs)) if t.is_floating_point() and t.dtype != torch.float64]
            to = torch.float32 if torch.float32 in floats else None
        if to is not None:
            args, kwargs = self._cast(tuple(args), to), {k: self._cast(v, to) for k, v in kwargs.items()}
        return func(*args, **kwargs)


class _FusedSDPA(TorchFunctionMode):
    """Runs F.scaled_dot_product_attention as the fused ATen op of `backend` (on `meta` SDPA
    would take its math path whatever backend is pinned, and count other FLOPs)."""

    def __init__(self, backend: str) -> None:
        super().__init__()
        self.backend = backend

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is not F.scaled_dot_product_attention or kwargs.get("attn_mask") is not None or len(args) > 3:
            return func(*args, **kwargs)
        q, k, v = args
        causal, scale = kwargs.get("is_causal", False), kwargs.get("scale")
        if self.backend == "flash":
            return torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, causal, scale=scale)[0]
        grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
        return torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, None, grad, 0.0, causal,
                                                                      scale=scale)[0]


def _meta_workload(cfg: RunConfig) -> workload.Workload:
    B, T = cfg.resolved_batch_size, cfg.resolved_context_length
    if models.is_user_model(cfg.model):
        model, make_batch = workload.load_user_model(cfg.model, B, T)
        model = model.to(META)
        return workload.Workload(model, make_batch, models.count_params(model), False)
    if cfg.model not in models.SIZES:
        raise RunError(f"unknown model {cfg.model!r}; choose from {', '.join(models.SIZES)} or package.module:factory")
    model = models.build(cfg.model, attn=cfg.attn, device=META)
    tokens = torch.randint(models.SIZES[cfg.model].vocab_size, (B, T + 1), device=META)
    return workload.Workload(model, lambda _: (tokens[:, :-1], tokens[:, 1:]), models.count_params(model), True)


def count(cfg: RunConfig) -> dict[str, Any]:
    """FLOPs, vector FLOPs and bytes per NVTX path of one step of `cfg`, replayed on `meta`.

    Returns:
        The flops.json object: config, total_flops (FlopCounterMode's total), total_vector_flops,
        total_bytes, attention_flops / useful_attention_flops, params, tokens, and `paths`, one row
        per path (path, flops, vector_flops, bytes, attention_flops, useful_attention_flops),
        inclusive of children, in the order the ranges opened.

    Raises:
        RunError: unknown model, a user model that cannot be built or run on `meta`.
    """
    w = _meta_workload(cfg)
    if w.builtin:
        hooks.add_backward_ranges(w.model)
    elif not cfg.compile:
        hooks.add_module_ranges(w.model, cfg.nvtx_depth)
    step = workload.make_step(cfg, w, w.model, META)
    autocast = Autocast(workload.DTYPES[cfg.dtype]) if cfg.dtype != "fp32" else None
    counter = PathCounter(builtin=w.builtin, autocast=autocast)
    fused = _FusedSDPA(cfg.attn) if cfg.attn in ("flash", "efficient", "cudnn") else contextlib.nullcontext()
    try:
        # Autocast is entered last, so it sees F.scaled_dot_product_attention before _FusedSDPA does;
        # `meta` the default device, for models that make tensors without naming one (torch.arange(T)).
        with META, fused, autocast or contextlib.nullcontext():
            warm = Ranges(autocast)  # the unseen warm-up step
            with ranges.redirect(warm.push, warm.pop, inner=not cfg.compile), ranges.phase("warmup"):
                step()
            with ranges.redirect(counter.push, counter.pop, inner=not cfg.compile), counter:
                with ranges.phase(STEP):
                    step()
    except (NotImplementedError, RuntimeError) as e:
        raise RunError(f"--model {cfg.model} cannot be replayed on the meta device: {str(e).splitlines()[0][:200]}"
                       ) from None
    if cfg.mode == "step" and cfg.optimizer == "adamw-fused":
        _fused_adamw_bytes(counter, w.model)
    result = _result(cfg, counter, w.n_params)
    if w.builtin:  # for PaLM's attention term (analyze.flops.palm_flops)
        size = models.SIZES[cfg.model]
        result["shape"] = {"n_layers": size.n_layers, "n_heads": size.n_heads, "head_dim": size.d_model // size.n_heads}
    return result


def _fused_adamw_bytes(counter: PathCounter, model: torch.nn.Module) -> None:
    """The optimizer's bytes as torch's fused AdamW moves them: one kernel per chunk of tensors
    reads each parameter, its gradient and both moments once and writes the parameter and the
    moments once (7 tensors of the parameter's size). The replay ran the foreach path (fused AdamW
    has no `meta` kernel), whose every op reads and writes whole tensors: about twice the traffic.
    Its FLOPs (elementwise, in vector_flops) are the same arithmetic and stay."""
    fused = sum(7 * p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    under = [path for path in counter.rows if path == f"{STEP}/optimizer" or path.startswith(f"{STEP}/optimizer/")]
    for path in under:
        counter.rows[path][2] = 0
    counter.rows[f"{STEP}/optimizer"][2] = fused


def _result(cfg: RunConfig, counter: PathCounter, n_params: int) -> dict[str, Any]:
    inclusive: dict[str, list[int]] = {}
    for path, (f, v, b) in counter.rows.items():
        parts = path.split("/") if path else []
        for i in range(1, len(parts) + 1):
            row = inclusive.setdefault("/".join(parts[:i]), [0, 0, 0, 0])
            row[0] += f
            row[1] += v
            row[2] += b
            row[3] += counter.attention.get(path, 0)
    causal = True  # the built-in models' attention is causal; user models: the same assumption
    paths = [{"path": p, "flops": f, "vector_flops": v, "bytes": b, "attention_flops": a,
              "useful_attention_flops": a // 2 if causal else a} for p, (f, v, b, a) in inclusive.items()]
    total_attn = sum(counter.attention.values())
    return {
        "version": 1,
        "config": {"model": cfg.model, "mode": cfg.mode, "dtype": cfg.dtype, "attn": cfg.attn,
                   "batch_size": cfg.resolved_batch_size, "context_length": cfg.resolved_context_length,
                   "compile": cfg.compile, "grad_accum": cfg.grad_accum, "optimizer": cfg.optimizer,
                   "nvtx_depth": cfg.nvtx_depth},
        "replay": "meta device, one step as step_0, torch.utils.flop_counter registry",
        "params": n_params,
        "tokens": cfg.resolved_batch_size * cfg.resolved_context_length * cfg.grad_accum,  # every micro-batch
        "total_flops": counter.get_total_flops(),
        "total_vector_flops": sum(r[1] for r in counter.rows.values()),
        "total_bytes": sum(r[2] for r in counter.rows.values()),
        "attention_flops": total_attn,
        "useful_attention_flops": total_attn // 2,
        "paths": paths,
    }


def write(result: dict[str, Any], folder: Path) -> Path:
    """flops.json into a run or capture folder."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / layout.FLOPS_FILE
    layout.write_text(path, json.dumps(result, indent=1) + "\n")
    return path
