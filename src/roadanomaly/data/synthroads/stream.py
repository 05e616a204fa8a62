"""SynthRoads as an endless stream: a fresh, deterministic scene for every training sample, rendered where asked
(in DataLoader workers), so a model never sees the same scene twice and never waits for a dataset on disk.

Scene k of the stream is ``render_scene(seed, split, k)``, the very image that ``write_cityscapes`` writes as index k
of that split, so a stream of the ``val`` split reproduces the validation set that ``roadanomaly synth`` writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .config import SceneConfig
from .scene import render_scene


@dataclass(frozen=True)
class SceneSource:
    """``source(k)`` = (RGB uint8 (H, W, 3), train ids uint8 (H, W)) of scene k; picklable for workers."""

    seed: int = 0
    split: str = "train"
    size: tuple[int, int] = (256, 512)
    config: SceneConfig | None = None

    def __call__(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        sample = render_scene(self.seed, self.split, k, (self.config or SceneConfig()).with_size(self.size))
        return sample.image, sample.labels


def synthroads_stream(
    batch_size: int,
    seed: int = 0,
    split: str = "train",
    size: tuple[int, int] = (256, 512),
    start_batch: int = 0,
    transform: Callable[[int, np.ndarray, np.ndarray], Any] | None = None,
    config: SceneConfig | None = None,
):
    """An endless ``IterableDataset`` of scenes in batch order from ``start_batch`` (see
    :class:`~roadanomaly.training.streams.IndexedStream`); ``transform(k, image, labels)`` makes each item."""
    from roadanomaly.training.streams import IndexedStream

    source = SceneSource(seed, split, tuple(size), config)
    item = source if transform is None else _Transformed(source, transform)
    return IndexedStream(item, batch_size, start_batch)


@dataclass(frozen=True)
class _Transformed:
    source: Callable[[int], tuple[np.ndarray, np.ndarray]]
    transform: Callable[[int, np.ndarray, np.ndarray], Any]

    def __call__(self, k: int) -> Any:
        return self.transform(k, *self.source(k))
