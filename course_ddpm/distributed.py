"""Devices and multi-process (DistributedDataParallel) plumbing for :mod:`course_ddpm.training`.

One process: nothing here does anything beyond picking a device. Under
``torchrun --nproc_per_node N`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``) :func:`setup` joins the process group: ``gloo`` on the
CPU, ``nccl`` on CUDA GPUs (one GPU per process, ``cuda:LOCAL_RANK``).

How training stays identical to one process over the combined batch: every rank draws
the *global* batch (indices, t, eps, label drop-outs) from the same seeded generators and
keeps the slice :func:`rank_slice` gives it; DDP then averages the gradients of the
equal-sized slices, which is the gradient of the mean loss over the global batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.distributed as dist

DeviceName = Literal["auto", "cpu", "cuda", "mps"]


def resolve_device(name: DeviceName | str = "auto", local_rank: int = 0) -> torch.device:
    """``"auto"`` -> CUDA if present, else Apple MPS, else CPU; a named device is checked.

    Args:
        name: "auto", "cpu", "cuda", "cuda:K" or "mps".
        local_rank: GPU index for ``"cuda"``/``"auto"`` (the process's LOCAL_RANK under torchrun).
    """
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} was asked for but CUDA is not available (use --device cpu or auto)")
        return torch.device(name if ":" in name else f"cuda:{local_rank}")
    if name == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise ValueError("device 'mps' was asked for but Apple MPS is not available (use --device cpu or auto)")
        return torch.device("mps")
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'mps', got {name!r}")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: rank r of world_size processes, on device.

    ``owns_group``: True if :func:`setup` created the process group (and
    :func:`teardown` should destroy it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes logs, samples and checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """More than one process."""
        return self.world_size > 1


def setup(device: DeviceName | str = "auto") -> DistInfo:
    """Pick the device and, under torchrun (WORLD_SIZE > 1), join the process group."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world_size == 1:
        return DistInfo(device=dev)
    if dev.type == "mps":
        raise ValueError("multi-process training supports CPU (gloo) and CUDA (nccl), not MPS")
    owns_group = False
    if not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", init_method="env://")
        owns_group = True
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank, device=dev,
                    owns_group=owns_group)


def teardown(info: DistInfo) -> None:
    """Leave the process group if :func:`setup` created it."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def rank_slice(global_batch: int, info: DistInfo) -> slice:
    """This rank's rows of a global batch: rows [r * B / W, (r + 1) * B / W)."""
    if global_batch % info.world_size:
        raise ValueError(
            f"batch_size {global_batch} must be divisible by the number of processes {info.world_size}"
        )
    local = global_batch // info.world_size
    return slice(info.rank * local, (info.rank + 1) * local)


def all_reduce_sum(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum of ``x`` over all ranks (``x`` itself with one process); returns a CPU tensor."""
    if not info.enabled:
        return x.cpu()
    x = x.to(info.device)  # nccl reduces CUDA tensors only
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x.cpu()


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` (``[obj]`` with one process)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out
