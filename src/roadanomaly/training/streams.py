"""Endless, step-indexed training streams: item k of the stream is a pure function of k.

:class:`IndexedStream` serves ``item(k)`` for k = 0, 1, 2, ... in the order a DataLoader batches them, whatever
the number of workers and processes. A DataLoader over an ``IterableDataset`` takes whole batches from its workers
in turn, so worker w of W builds the batches w, w + W, w + 2W, ...; under DDP, rank r of R takes every R-th batch
of the global order. Batch j of a process therefore always holds k = ((start + j) * R + r) * B + i, i < B, and a
run resumed at step ``start`` sees exactly the data it would have seen without stopping.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from roadanomaly.data.cityscapes import CityscapesDataset


class IndexedStream(IterableDataset):
    """The endless stream ``item(k)``; see the module docstring for the order."""

    def __init__(self, item: Callable[[int], Any], batch_size: int, start_batch: int = 0) -> None:
        self.item, self.batch_size, self.start_batch = item, batch_size, start_batch
        self.rank, self.world_size = 0, 1

    def indices(self, worker: int = 0, workers: int = 1) -> Iterator[int]:
        """The item indices ``worker`` of ``workers`` produces, in order."""
        b, r, world = self.batch_size, self.rank, self.world_size
        j = worker
        while True:
            first = ((self.start_batch + j) * world + r) * b
            yield from range(first, first + b)
            j += workers

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return (self.item(k) for k in self.indices(worker, workers))


class ShuffledSplit:
    """Item k of an endless pass over a Cityscapes-layout split: epoch k // N in a seeded order, read from disk."""

    def __init__(self, root: str | Path, split: str, seed: int = 0, limit: int | None = None) -> None:
        self.dataset = CityscapesDataset(root, split)
        self.count = len(self.dataset) if limit is None else min(limit, len(self.dataset))
        self.seed = seed
        self._order: tuple[int, np.ndarray] | None = None

    def index(self, k: int) -> int:
        epoch = k // self.count
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.count))
        return int(self._order[1][k % self.count])

    def __call__(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(RGB uint8 (H, W, 3), train ids uint8 (H, W)) of item k."""
        sample = self.dataset[self.index(k)]
        return sample.image, sample.train_ids
