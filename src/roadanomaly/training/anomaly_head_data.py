"""Samples for anomaly-head training: pasted inlier images, their segment targets and the pixels losses read.

Sample ``i`` is drawn from ``numpy.random.default_rng([seed, i])`` alone (image ``i % n``, pasting, square crop,
points), so the full path and the cache build see exactly the same samples. Each sample is cut to the square crop
the EoMT predictor uses (shorter side scaled to the model's crop size), and carries ``num_points`` distinct pixels
of that crop: mask logits and targets are read at the pixel centres, so binary targets stay binary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from roadanomaly.data.labels import IGNORE_INDEX, NUM_CLASSES
from roadanomaly.data.outlier_exposure import OutlierPaster, segment_targets


@dataclass
class PastedSample:
    """One training sample at crop size S: ``image`` (3, S, S) float 0..255, ``masks`` (T, S, S) bool target
    segments, ``anomaly`` (T,) bool, ``classes`` (T,) train ids (-1 for pasted objects), ``coords`` (P, 2) point
    positions (x, y) in [0, 1] at pixel centres, ``point_targets`` (T, P) and ``point_labels`` (P,) (0 inlier,
    1 anomaly, 255 void) read there."""

    image: Tensor
    masks: Tensor
    anomaly: Tensor
    classes: Tensor
    coords: Tensor
    point_targets: Tensor
    point_labels: Tensor


def _resize(image: np.ndarray, labels: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    if image.shape[:2] == tuple(size):
        return image, labels
    h, w = size
    return (
        np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR)),
        np.asarray(Image.fromarray(labels).resize((w, h), Image.NEAREST)),
    )


class PastedTrainSet(Dataset):
    """``copies`` pasted versions of each (image, train ids) pair; item ``i`` depends only on (seed, i)."""

    def __init__(
        self,
        images: list[np.ndarray],
        labels: list[np.ndarray],
        paster: OutlierPaster,
        crop: int,
        num_points: int = 1024,
        copies: int = 1,
        seed: int = 0,
        size: tuple[int, int] | None = None,
    ) -> None:
        if len(images) != len(labels) or not images:
            raise ValueError("need as many label maps as images, and at least one")
        self.images, self.labels = images, labels
        self.paster, self.crop, self.num_points = paster, crop, num_points
        self.copies, self.seed, self.size = copies, seed, size

    def __len__(self) -> int:
        return len(self.images) * self.copies

    def __getitem__(self, index: int) -> PastedSample:
        rng = np.random.default_rng([self.seed, index])
        image, labels = self.images[index % len(self.images)], self.labels[index % len(self.images)]
        if self.size is not None:
            image, labels = _resize(image, labels, self.size)
        h, w = labels.shape
        scale = self.crop / min(h, w)
        scaled = (max(self.crop, round(h * scale)), max(self.crop, round(w * scale)))
        image, labels = _resize(image, labels, scaled)
        pasted = self.paster.paste(image, labels, rng)
        top = int(rng.integers(0, scaled[0] - self.crop + 1))
        left = int(rng.integers(0, scaled[1] - self.crop + 1))
        box = (slice(top, top + self.crop), slice(left, left + self.crop))
        crop_labels = pasted.labels[box]
        instances = pasted.instances[(slice(None), *box)]
        instances = instances[instances.any(axis=(1, 2))]
        targets = segment_targets(crop_labels, instances, NUM_CLASSES)
        n = self.crop * self.crop
        flat = rng.choice(n, size=min(self.num_points, n), replace=False)
        ys, xs = flat // self.crop, flat % self.crop
        coords = np.stack([(xs + 0.5) / self.crop, (ys + 0.5) / self.crop], axis=-1)
        point_labels = np.where(crop_labels[ys, xs] == IGNORE_INDEX, IGNORE_INDEX, 0).astype(np.uint8)
        point_labels[instances[:, ys, xs].any(axis=0)] = 1
        return PastedSample(
            image=torch.from_numpy(np.ascontiguousarray(pasted.image[box])).permute(2, 0, 1).float(),
            masks=torch.from_numpy(targets.masks),
            anomaly=torch.from_numpy(targets.anomaly),
            classes=torch.from_numpy(targets.classes),
            coords=torch.from_numpy(coords).float(),
            point_targets=torch.from_numpy(targets.masks[:, ys, xs]),
            point_labels=torch.from_numpy(point_labels),
        )


def collate_samples(samples: list[PastedSample]) -> list[PastedSample]:
    """Batches stay lists (targets differ in number); the module stacks what it needs."""
    return list(samples)
