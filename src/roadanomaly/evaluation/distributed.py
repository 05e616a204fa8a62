"""Evaluation over several processes (torchrun): which images a rank evaluates, and sums over ranks."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    """This process's place among ``world`` evaluation processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, indices: list[int]) -> list[int]:
        """The indices this rank evaluates: every ``world``-th one from ``rank`` on (of the dataset's full list)."""
        return [i for i in indices if i % self.world == self.rank]

    def sum_int(self, value: int) -> int:
        """``value`` summed over every rank."""
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.int64, device=_device())
        dist.all_reduce(tensor)
        return int(tensor.item())

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def _device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def init_from_environment(device: str = "cpu") -> Ranks:
    """Join the process group torchrun describes (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``); a single process
    without those variables gets ``Ranks()``. NCCL when the device is CUDA, else gloo."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return Ranks(rank, world, local_rank)
