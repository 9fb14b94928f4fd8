"""RunConfig: every option of `profkit run`, each default defined here and nowhere else."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from profkit.sizes import ATTN_BACKENDS, SIZES, is_user_model

MODES = ("fwd", "fwd_bwd", "step")
DTYPES = ("fp32", "bf16", "fp16")
DEVICES = ("cuda", "cpu")
NVTX_MODES = ("auto", "on", "off")
MEMORY_STACKS = ("python", "all")
USER_DEFAULT_BATCH, USER_DEFAULT_CONTEXT = 4, 256


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
        if self.nvtx_depth < 0:
            raise ValueError(f"nvtx-depth must be 0 or more, got {self.nvtx_depth}")
        size = SIZES.get(self.model)
        if size is not None and self.context_length is not None and self.context_length > size.max_context:
            raise ValueError(f"context length {self.context_length} is longer than model {self.model!r} "
                             f"allows ({size.max_context})")

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
        """Short name of the workload: `small-fwd_bwd-bf16-flash[-compile]`."""
        model = self.model.rsplit(":", 1)[-1] if is_user_model(self.model) else self.model
        return f"{model}-{self.mode}-{self.dtype}-{self.attn}" + ("-compile" if self.compile else "")

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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """The config `to_dict` wrote (keys this version does not know are ignored).

        >>> RunConfig.from_dict(RunConfig(model="tiny", steps=3).to_dict()) == RunConfig(model="tiny", steps=3)
        True
        """
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names}
        if kwargs.get("out") is not None:
            kwargs["out"] = Path(kwargs["out"])
        return cls(**kwargs)
