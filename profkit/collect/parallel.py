"""A rank's side of a multi-rank run: torch.distributed's process group, and DDP or FSDP2 around the model.

torchrun starts the ranks (profkit.collect.distributed); each one's `profkit run` joins the group
here: NCCL on CUDA (one GPU per rank, `cuda:LOCAL_RANK`), gloo on CPU. FSDP2 is
`torch.distributed.fsdp.fully_shard` on every transformer block, then on the root (the layout
TorchTitan and the FSDP2 tutorial use), with bf16 parameters and fp32 gradient reduction under
`--dtype bf16` (MixedPrecisionPolicy).
"""

from __future__ import annotations

from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from profkit.collect.distributed import RankEnv
from profkit.config import RunConfig
from profkit.errors import RunError


def device_of(env: RankEnv, device_type: str) -> torch.device:
    """This rank's device: `cuda:LOCAL_RANK` (checked against the GPUs present), else the CPU.

    Raises:
        RunError: LOCAL_RANK names a GPU this node does not have.
    """
    if device_type != "cuda":
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if env.local_rank >= count:
        raise RunError(f"rank {env.rank} (local rank {env.local_rank}) has no GPU: this node has {count}")
    torch.cuda.set_device(env.local_rank)
    return torch.device("cuda", env.local_rank)


def start(cfg: RunConfig, env: RankEnv, device: torch.device) -> str:
    """Join torchrun's process group (its rendezvous, from the environment); returns the backend."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs = {"device_id": device} if device.type == "cuda" else {}
    dist.init_process_group(backend, timeout=timedelta(seconds=cfg.timeout), **kwargs)  # type: ignore[arg-type]
    return backend


def barrier(device: torch.device) -> None:
    if device.type == "cuda":
        dist.barrier(device_ids=[device.index])
    else:
        dist.barrier()


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def blocks(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks FSDP2 shards one by one: a built-in model's `layers`, else the
    nn.ModuleList holding the most parameters (transformers' `model.layers`, GPT-2's `transformer.h`).

    Raises:
        RunError: the model has no nn.ModuleList of blocks.
    """
    lists: list[nn.ModuleList] = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if not lists:
        raise RunError(f"--strategy fsdp2 shards per transformer block, and {type(model).__name__} has no "
                       "nn.ModuleList of blocks; use --strategy ddp")
    biggest: nn.ModuleList = max(lists, key=lambda m: sum(p.numel() for p in m.parameters()))
    return list(biggest)


def wrap(model: nn.Module, cfg: RunConfig, device: torch.device) -> nn.Module:
    """DDP around the model, or FSDP2 (fully_shard per block, then the root, in place).

    Raises:
        RunError: the model cannot take the strategy (no parameters to train, no blocks for FSDP2).
    """
    if not any(p.requires_grad for p in model.parameters()):
        raise RunError(f"--strategy {cfg.strategy}: the model has no parameters that require grad")
    if cfg.strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
              if cfg.dtype == "bf16" else MixedPrecisionPolicy())
    for block in blocks(model):
        fully_shard(block, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    return model
