"""Helpers to combine metric states across ``torch.distributed`` processes (no-ops when it is not initialised)."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """True when a default process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def _comm_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum_(tensor: Tensor) -> Tensor:
    """Replace ``tensor`` by its sum over all processes, in place; returns it."""
    if not is_distributed():
        return tensor
    device = _comm_device()
    buffer = tensor.to(device)
    dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
    if buffer is not tensor:
        tensor.copy_(buffer)
    return tensor


def all_gather_cat(tensor: Tensor) -> Tensor:
    """Concatenate a 1-D tensor of any length from all processes (in rank order); the input when not distributed."""
    if not is_distributed():
        return tensor
    device = _comm_device()
    world = dist.get_world_size()
    length = torch.tensor([tensor.numel()], dtype=torch.int64, device=device)
    lengths = [torch.zeros_like(length) for _ in range(world)]
    dist.all_gather(lengths, length)
    sizes = [int(n) for n in lengths]
    padded = torch.zeros(max(sizes), dtype=tensor.dtype, device=device)
    padded[: tensor.numel()] = tensor.to(device)
    gathered = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    return torch.cat([g[:n] for g, n in zip(gathered, sizes)]).to(tensor.device)
