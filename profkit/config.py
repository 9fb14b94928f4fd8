"""RunConfig: every option of `profkit run`, each default defined here and nowhere else."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from profkit.sizes import ATTN_BACKENDS, SIZES, is_user_model

MODES = ("fwd", "fwd_bwd", "step")
DTYPES = ("fp32", "bf16", "fp16")
DEVICES = ("cuda", "cpu")
NVTX_MODES = ("auto", "on", "off")
OPTIMIZERS = ("adamw", "adamw-fused", "sgd")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
STRATEGIES = ("none", "ddp", "fsdp2")
DEFAULT_TIMEOUT_S = 1800
"""A multi-rank job still running this long is ended (30 min: gloo's own collective timeout,
three times NCCL's 10 min, longer than any step profkit profiles should take)."""
MEMORY_STACKS = ("python", "all")
USER_DEFAULT_BATCH, USER_DEFAULT_CONTEXT = 4, 256


_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,),
                                       "Path": (str,)}


def typed_fields(cls: type, values: dict[str, Any], *, signed: tuple[str, ...] = ()) -> dict[str, Any]:
    """`values` (as read from JSON) after checking each against the field of dataclass `cls` that it
    fills: the annotation's simple types (int, float, str, bool, Path, X | None, list[float]), numbers
    finite and, but for the fields named in `signed`, not negative. A file written by profkit passes;
    a damaged one is refused here rather than misread by a report.

    >>> typed_fields(RunConfig, {"steps": 3, "model": "tiny"})
    {'steps': 3, 'model': 'tiny'}
    >>> typed_fields(RunConfig, {"steps": "3"})
    Traceback (most recent call last):
    ValueError: steps is '3', not int

    Raises:
        ValueError: a value of another type, or a number that is not finite or below zero.
    """
    annotations = {f.name: f.type for f in dataclasses.fields(cls)}
    for key, value in values.items():
        want = annotations.get(key)
        kinds = [k.strip() for k in want.split("|") if k.strip() != "None"] if isinstance(want, str) else ["?"]
        if (value is None and "None" in str(want)) or not all(k in _TYPES or k == "list[float]" for k in kinds):
            continue  # optional and absent, or a nested record or other type: checked where it is built
        if kinds == ["list[float]"]:
            if not isinstance(value, list):
                raise ValueError(f"{key} is {value!r}, not {want}")
            items, types = value, [_TYPES["float"]]
        else:
            items, types = [value], [_TYPES[k] for k in kinds]
        for item in items:
            if not any(isinstance(item, ts) and (bool in ts) == isinstance(item, bool) for ts in types):
                raise ValueError(f"{key} is {value!r}, not {want}")
            number = isinstance(item, (int, float)) and not isinstance(item, bool)
            if number and ((isinstance(item, float) and not math.isfinite(item)) or (item < 0 and key not in signed)):
                raise ValueError(f"{key} holds {item!r}, not a finite number of 0 or more")
    return values


def _choice(value: str, choices: tuple[str, ...], what: str) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose from {', '.join(choices)}")


@dataclass(kw_only=True, slots=True)
class RunConfig:
    model: str = "small"
    """A named size (`profkit run --help` lists them) or `package.module:factory` for your own."""
    mode: str = "fwd_bwd"
    """`fwd`: forward + loss, no grad; `fwd_bwd`: + backward; `step`: + AdamW step and zero_grad."""
    attn: str = "naive"
    """Attention: `naive` (explicit scores/softmax/matmul) or an SDPA backend pinned with sdpa_kernel."""
    dtype: str = "fp32"
    """Compute precision: fp32, or bf16/fp16 autocast (fp16 adds a GradScaler)."""
    compile: bool = False
    """torch.compile the model; the first step and compile time are reported apart."""
    compile_mode: str = "default"
    """torch.compile's mode under --compile: `default`, `reduce-overhead` (CUDA graphs) or `max-autotune`."""
    grad_accum: int = 1
    """Micro-batches per step (fwd_bwd, step): each a forward and backward of --batch-size sequences, gradients
    accumulated (the loss divided by it), then one optimizer step. Seed 000's iteration is 5 of 6 x 1024."""
    optimizer: str = "adamw"
    """`step`'s optimizer, lr 1e-4: `adamw` (torch's default foreach AdamW, weight decay 1e-2 as seed 000),
    `adamw-fused` (the same with fused=True: one kernel per parameter group), `sgd` (plain, no momentum)."""
    batch_size: int | None = None
    """Sequences per step; None takes the size's default (CS336: 4)."""
    context_length: int | None = None
    """Tokens per sequence; None takes the size's default (CS336: 256)."""
    warmup: int = 5
    """Steps run before measuring (excluded from every statistic and from the nsys capture)."""
    steps: int = 10
    """Measured steps."""
    device: str | None = None
    """`cuda` or `cpu`; None: cuda when available."""
    seed: int = 0
    """Seed for weights and token ids."""
    nvtx: str = "auto"
    """NVTX ranges: `auto` emits them when a tool (nsys, ncu) is attached, `on` always, `off` never."""
    nvtx_depth: int = 2
    """For your own model: how many module levels get forward and backward ranges."""
    memory_snapshot: bool = False
    """Record the allocator's history over the measured steps into memory.pickle (CUDA only)."""
    memory_stacks: str = "python"
    """Frames kept per allocator event: `python`, or `all` (C++ too: much slower dumps)."""
    memory_max_entries: int = 1_000_000
    """Allocator events kept; past it the oldest are dropped and the report refuses the history."""
    out: Path | None = None
    """Folder for run.json; None: runs/<model>-<mode>-<dtype>-<attn>-<time>."""
    force: bool = False
    """Overwrite an existing run.json in `out`."""
    strategy: str = "none"
    """Data parallelism across ranks: `none`, `ddp` (DistributedDataParallel) or `fsdp2`
    (torch.distributed.fsdp.fully_shard per transformer block, then the root)."""
    nproc_per_node: int = 1
    """Ranks on this node, each on its own GPU (torchrun's --nproc-per-node)."""
    nnodes: str = "1"
    """Nodes (torchrun's --nnodes: N or MIN:MAX); under srun, Slurm's SLURM_NNODES when not given."""
    node_rank: int | None = None
    """This node's rank (torchrun's --node-rank); under srun, SLURM_NODEID when not given."""
    rdzv_backend: str | None = None
    """torchrun's --rdzv-backend (c10d for several nodes); None: torchrun's default."""
    rdzv_endpoint: str | None = None
    """torchrun's --rdzv-endpoint HOST:PORT."""
    rdzv_id: str | None = None
    """torchrun's --rdzv-id; under srun, SLURM_JOB_ID when not given."""
    timeout: int = DEFAULT_TIMEOUT_S
    """Seconds a multi-rank job may run before it is ended and its ranks' stacks reported."""

    def __post_init__(self) -> None:
        if not is_user_model(self.model) and self.model not in SIZES:
            raise ValueError(f"unknown model {self.model!r}; choose from {', '.join(SIZES)} "
                             "or give package.module:factory")
        _choice(self.mode, MODES, "mode")
        _choice(self.attn, ATTN_BACKENDS, "attention backend")
        _choice(self.dtype, DTYPES, "dtype")
        _choice(self.nvtx, NVTX_MODES, "nvtx setting")
        _choice(self.memory_stacks, MEMORY_STACKS, "memory stacks setting")
        if self.memory_max_entries < 1:
            raise ValueError(f"memory-max-entries must be at least 1, got {self.memory_max_entries}")
        if self.device is not None:
            _choice(self.device, DEVICES, "device")
        for name in ("batch_size", "context_length", "steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name.replace('_', '-')} must be at least 1, got {value}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be 0 or more, got {self.warmup}")
        _choice(self.optimizer, OPTIMIZERS, "optimizer")
        _choice(self.compile_mode, COMPILE_MODES, "compile mode")
        if self.grad_accum < 1:
            raise ValueError(f"grad-accum must be at least 1, got {self.grad_accum}")
        if self.grad_accum > 1 and self.mode == "fwd":
            raise ValueError("grad-accum needs mode fwd_bwd or step (a forward alone accumulates no gradients)")
        if self.optimizer != "adamw" and self.mode != "step":
            raise ValueError(f"optimizer {self.optimizer!r} needs mode step (only a step runs the optimizer)")
        if self.compile_mode != "default" and not self.compile:
            raise ValueError(f"compile mode {self.compile_mode!r} needs --compile")
        _choice(self.strategy, STRATEGIES, "strategy")
        if self.nproc_per_node < 1:
            raise ValueError(f"nproc-per-node must be at least 1, got {self.nproc_per_node}")
        if not re.fullmatch(r"[1-9][0-9]*(:[1-9][0-9]*)?", self.nnodes):
            raise ValueError(f"nnodes must be N or MIN:MAX (torchrun's form), got {self.nnodes!r}")
        if self.node_rank is not None and self.node_rank < 0:
            raise ValueError(f"node-rank must be 0 or more, got {self.node_rank}")
        if self.timeout < 1:
            raise ValueError(f"timeout must be at least 1 second, got {self.timeout}")
        if self.distributed and self.strategy == "none":
            raise ValueError(f"{self.world_label} needs a --strategy (ddp or fsdp2): each rank would train its own "
                             "copy of the model")
        if self.strategy == "ddp" and self.mode == "fwd":
            raise ValueError("--strategy ddp synchronizes gradients, and --mode fwd computes none; use fwd_bwd or "
                             "step (or --strategy fsdp2, whose forward gathers the weights)")
        if self.strategy == "fsdp2" and self.dtype == "fp16":
            raise ValueError("--strategy fsdp2 with --dtype fp16 needs a sharded GradScaler profkit does not run; "
                             "use --dtype bf16")
        if self.nvtx_depth < 0:
            raise ValueError(f"nvtx-depth must be 0 or more, got {self.nvtx_depth}")
        size = SIZES.get(self.model)
        if size is not None and self.context_length is not None and self.context_length > size.max_context:
            raise ValueError(f"context length {self.context_length} is longer than model {self.model!r} "
                             f"allows ({size.max_context})")

    @property
    def distributed(self) -> bool:
        """Several ranks (or a strategy on one): the run goes through torchrun."""
        return self.strategy != "none" or self.nproc_per_node > 1 or self.nnodes != "1"

    @property
    def world_label(self) -> str:
        return (f"--nproc-per-node {self.nproc_per_node}" + (f" --nnodes {self.nnodes}" if self.nnodes != "1" else ""))

    @property
    def resolved_batch_size(self) -> int:
        size = SIZES.get(self.model)
        return self.batch_size or (size.batch_size if size else USER_DEFAULT_BATCH)

    @property
    def resolved_context_length(self) -> int:
        size = SIZES.get(self.model)
        return self.context_length or (size.context_length if size else USER_DEFAULT_CONTEXT)

    @property
    def label(self) -> str:
        """Short name of the workload: `small-fwd_bwd-bf16-flash[-compile[-max-autotune]][-accum5][-sgd]`.

        >>> RunConfig(model="nanogpt", mode="step", compile=True, compile_mode="max-autotune", grad_accum=5,
        ...           optimizer="adamw-fused").label
        'nanogpt-step-fp32-naive-compile-max-autotune-accum5-adamw-fused'
        """
        model = self.model.rsplit(":", 1)[-1] if is_user_model(self.model) else self.model
        label = f"{model}-{self.mode}-{self.dtype}-{self.attn}" + ("-compile" if self.compile else "")
        if self.compile_mode != "default":
            label += f"-{self.compile_mode}"
        if self.grad_accum > 1:
            label += f"-accum{self.grad_accum}"
        if self.optimizer != "adamw":
            label += f"-{self.optimizer}"
        return label + (f"-{self.strategy}{self.nproc_per_node}" if self.strategy != "none" else "")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["out"] = None if self.out is None else str(self.out)
        return d

    def to_args(self) -> list[str]:
        """`profkit run` options that rebuild this config (defaults left out; not out/force).

        >>> RunConfig(model="tiny", mode="step", compile=True, steps=3).to_args()
        ['--model', 'tiny', '--mode', 'step', '--compile', '--steps', '3']
        """
        args: list[str] = []
        default = RunConfig()
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("out", "force") or value == getattr(default, f.name):
                continue
            flag = "--" + f.name.replace("_", "-")
            if isinstance(value, bool):
                args.append(flag if value else f"--no-{flag[2:]}")
            else:
                args += [flag, str(value)]
        return args

    def command(self) -> str:
        """The `profkit run` line reports show: model, mode, dtype and attention, then each knob
        that changes what a step runs, when not its default (batch and context are shown apart).

        >>> RunConfig(model="nanogpt", mode="step", compile=True, grad_accum=5, optimizer="sgd").command()
        'profkit run --model nanogpt --mode step --dtype fp32 --attn naive --compile --grad-accum 5 --optimizer sgd'
        """
        knobs = {"--compile", "--compile-mode", "--grad-accum", "--optimizer", "--strategy", "--nproc-per-node"}
        args, extra = self.to_args(), []
        for i, a in enumerate(args):
            if a in knobs:
                extra += [a] if a == "--compile" else [a, args[i + 1]]
        return " ".join(["profkit run", "--model", self.model, "--mode", self.mode, "--dtype", self.dtype,
                         "--attn", self.attn, *extra])

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """The config `to_dict` wrote (keys this version does not know are ignored).

        >>> RunConfig.from_dict(RunConfig(model="tiny", steps=3).to_dict()) == RunConfig(model="tiny", steps=3)
        True
        """
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = typed_fields(cls, {k: v for k, v in d.items() if k in names}, signed=("seed",))
        if kwargs.get("out") is not None:
            kwargs["out"] = Path(kwargs["out"])
        return cls(**kwargs)
