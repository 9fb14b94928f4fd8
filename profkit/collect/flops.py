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

Dtype: autocast does not run on `meta`. FLOPs do not depend on it; bytes do, so under bf16 or
fp16 the operands of the ops autocast runs in 16 bits (`LOWP_OPS`) are counted at 2 bytes an
element, everything else at the replay's dtype (fp32): an upper bound for elementwise ops.
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
# Ops autocast (CUDA) runs in the lower precision: torch/csrc/autograd/autocast_mode.cpp's lower_precision_fp list.
LOWP_OPS = frozenset({"mm", "bmm", "addmm", "baddbmm", "addbmm", "convolution", "convolution_backward",
                      "_scaled_dot_product_flash_attention", "_scaled_dot_product_flash_attention_backward",
                      "_scaled_dot_product_efficient_attention", "_scaled_dot_product_efficient_attention_backward",
                      "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_cudnn_attention_backward"})
ATTENTION_OPS = frozenset({"bmm_attention", "_scaled_dot_product_flash_attention",
                           "_scaled_dot_product_flash_attention_backward", "_scaled_dot_product_efficient_attention",
                           "_scaled_dot_product_efficient_attention_backward", "_scaled_dot_product_cudnn_attention",
                           "_scaled_dot_product_cudnn_attention_backward"})


def _is_view(packet: Any) -> bool:
    """Whether an ATen op only makes views (its returns alias an input, unwritten): no bytes move."""
    try:
        schema = getattr(packet, packet.overloads()[0])._schema
    except (AttributeError, IndexError):
        return False
    returns = schema.returns
    return bool(returns) and all(r.alias_info is not None and not r.alias_info.is_write for r in returns)


def _touched(t: torch.Tensor, lowp: bool) -> int:
    """Bytes a tensor occupies once: broadcast (stride 0) dimensions count once."""
    n = math.prod(s for s, st in zip(t.shape, t.stride(), strict=True) if st != 0)
    size = 2 if (lowp and t.is_floating_point()) else t.element_size()
    return n * size


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for x in obj:
            yield from _tensors(x)
    elif isinstance(obj, dict):
        for x in obj.values():
            yield from _tensors(x)


class PathCounter(FlopCounterMode):
    """FlopCounterMode that also books every op's FLOPs, vector FLOPs and bytes on the path of
    profkit ranges open at the time (`push`/`pop`), exclusive of children."""

    def __init__(self, *, lowp: bool = False) -> None:
        super().__init__(display=False)
        self.stack: list[str] = []
        self.lowp = lowp
        self.rows: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        self.attention: dict[str, int] = defaultdict(int)  # executed attention FLOPs per path
        self._views: dict[Any, bool] = {}

    def push(self, name: str) -> None:
        self.stack.append(name)
        self.rows["/".join(self.stack)]  # a range without ops still gets its row

    def pop(self, name: str) -> None:
        if name in self.stack:  # the innermost range of that name, as NVTX pops the top
            del self.stack[len(self.stack) - 1 - self.stack[::-1].index(name)]

    def _count_flops(self, func_packet: Any, out: Any, args: Any, kwargs: Any) -> Any:
        before = self.get_total_flops()
        result = super()._count_flops(func_packet, out, args, kwargs)
        flops = self.get_total_flops() - before
        name = getattr(func_packet, "__name__", str(func_packet))
        path = "/".join(self.stack)
        row = self.rows[path]
        row[0] += flops
        if name in ATTENTION_OPS or (name == "bmm" and self.stack and self.stack[-1].startswith("attn_")):
            self.attention[path] += flops
        view = self._views.get(func_packet)
        if view is None:
            view = self._views[func_packet] = _is_view(func_packet)
        if view:
            return result
        ins = [t for t in _tensors((args, kwargs)) if t.device.type == "meta"]
        outs = [t for t in _tensors(out) if t.device.type == "meta"]
        lowp = self.lowp and name in LOWP_OPS
        row[2] += sum(_touched(t, lowp) for t in ins) + sum(_touched(t, lowp) for t in outs)
        per, basis = VECTOR_PER_ELEMENT.get(name, (0, "out"))
        if per:
            elems = sum(t.numel() for t in (ins[:1] if basis == "in" else outs))
            row[1] += int(per * elems)
        return result


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
    counter = PathCounter(lowp=cfg.dtype != "fp32")
    fused = _FusedSDPA(cfg.attn) if cfg.attn in ("flash", "efficient", "cudnn") else contextlib.nullcontext()
    try:
        with ranges.redirect(counter.push, counter.pop, inner=not cfg.compile), counter, fused:
            with ranges.phase(STEP):
                step()
    except (NotImplementedError, RuntimeError) as e:
        raise RunError(f"--model {cfg.model} cannot be replayed on the meta device: {str(e).splitlines()[0][:200]}"
                       ) from None
    result = _result(cfg, counter, w.n_params)
    if w.builtin:  # for PaLM's attention term (analyze.flops.palm_flops)
        size = models.SIZES[cfg.model]
        result["shape"] = {"n_layers": size.n_layers, "n_heads": size.n_heads, "head_dim": size.d_model // size.n_heads}
    return result


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
                   "compile": cfg.compile, "nvtx_depth": cfg.nvtx_depth},
        "replay": "meta device, one step as step_0, torch.utils.flop_counter registry",
        "params": n_params,
        "tokens": cfg.resolved_batch_size * cfg.resolved_context_length,
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
