"""EoMT training data: semantic targets as (masks, labels), the augmentation, batching and the validation set.

Augmentation (the EoMT semantic recipe, in its order), all drawn from a generator seeded by (seed, k) so sample k
is the same in every run: photometric distortion (brightness, contrast, saturation, hue, each with probability
1/2), horizontal flip, scale jitter (resize to ``resize`` x a factor from ``scale_range``), padding to at least
the crop (image 0, label void) and a random crop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from roadanomaly.data.labels import IGNORE_INDEX
from roadanomaly.protocol import EvalProtocol


class SemanticTarget(NamedTuple):
    """One image's targets: a boolean mask (T, H, W) and a label (T,) per class present."""

    masks: Tensor
    labels: Tensor


def semantic_targets(train_ids: np.ndarray | Tensor, num_classes: int = 19) -> SemanticTarget:
    """One mask per class id present in ``train_ids`` (H, W), ascending; void (255) and ids >= num_classes none."""
    ids = torch.as_tensor(np.asarray(train_ids)).long()
    classes = [int(c) for c in torch.unique(ids) if int(c) < num_classes]
    labels = torch.tensor(classes, dtype=torch.long)
    masks = ids[None] == labels[:, None, None] if classes else torch.zeros(0, *ids.shape, dtype=torch.bool)
    return SemanticTarget(masks, labels)


def photometric_distortion(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness +-32, contrast x[0.5, 1.5], saturation x[0.5, 1.5], hue +-18 degrees, each with probability 1/2."""
    x = image.astype(np.float32)
    if rng.random() < 0.5:
        x += rng.uniform(-32, 32)
    contrast_first = rng.random() < 0.5
    if contrast_first and rng.random() < 0.5:
        x *= rng.uniform(0.5, 1.5)
    x = np.clip(x, 0, 255)
    saturation = rng.uniform(0.5, 1.5) if rng.random() < 0.5 else None
    hue = rng.uniform(-18, 18) if rng.random() < 0.5 else None
    if saturation is not None or hue is not None:
        hsv = cv2.cvtColor(x / 255, cv2.COLOR_RGB2HSV)  # float input: H in [0, 360), S and V in [0, 1]
        if saturation is not None:
            hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 1)
        if hue is not None:
            hsv[..., 0] = (hsv[..., 0] + hue) % 360
        x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255
    if not contrast_first and rng.random() < 0.5:
        x *= rng.uniform(0.5, 1.5)
    return np.clip(x, 0, 255).round().astype(np.uint8)


def pad_and_crop(
    image: np.ndarray, label: np.ndarray, crop: tuple[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Pad (image 0, label void) to at least ``crop``, then cut a random ``crop`` (H, W)."""
    h, w = label.shape
    ph, pw = max(0, crop[0] - h), max(0, crop[1] - w)
    if ph or pw:
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)))
        label = np.pad(label, ((0, ph), (0, pw)), constant_values=IGNORE_INDEX)
        h, w = label.shape
    y, x = int(rng.integers(0, h - crop[0] + 1)), int(rng.integers(0, w - crop[1] + 1))
    return image[y : y + crop[0], x : x + crop[1]], label[y : y + crop[0], x : x + crop[1]]


@dataclass(frozen=True)
class Augment:
    """``augment(k, image, train_ids)`` -> (image uint8 (3, h, w) tensor, targets) for training sample k."""

    crop: tuple[int, int]
    resize: tuple[int, int] | None = None
    """(H, W) at scale 1; None keeps each image's own size."""
    scale_range: tuple[float, float] = (0.5, 2.0)
    hflip: bool = True
    color_jitter: bool = True
    num_classes: int = 19
    seed: int = 0

    def __call__(self, k: int, image: np.ndarray, label: np.ndarray) -> tuple[Tensor, SemanticTarget]:
        rng = np.random.default_rng([self.seed, k])
        if self.color_jitter:
            image = photometric_distortion(image, rng)
        if self.hflip and rng.random() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        base = self.resize or label.shape
        scale = rng.uniform(*self.scale_range)
        size = (max(1, round(base[0] * scale)), max(1, round(base[1] * scale)))
        if size != label.shape:
            image = cv2.resize(image, size[::-1], interpolation=cv2.INTER_LINEAR)
            label = cv2.resize(label, size[::-1], interpolation=cv2.INTER_NEAREST)
        image, label = pad_and_crop(image, label, self.crop, rng)
        pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()
        return pixels, semantic_targets(np.ascontiguousarray(label), self.num_classes)


def collate(items: list[tuple[Tensor, SemanticTarget]]) -> tuple[Tensor, list[SemanticTarget]]:
    """Stack the images (B, 3, h, w) uint8; targets stay a list (their numbers of masks differ)."""
    return torch.stack([image for image, _ in items]), [target for _, target in items]


class ValSet(Dataset):
    """``count`` validation images from ``source(k)`` -> (image, train ids), resized as ``protocol`` evaluates."""

    def __init__(self, source: Callable[[int], tuple[np.ndarray, np.ndarray]], count: int, protocol: EvalProtocol):
        self.source, self.count, self.protocol = source, count, protocol

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, k: int) -> tuple[Tensor, Tensor]:
        image, label = self.protocol.prepare(*self.source(k))
        return torch.from_numpy(np.array(image)).permute(2, 0, 1), torch.from_numpy(np.array(label)).long()


class SplitSource:
    """``source(k)`` of a Cityscapes-layout split in file order."""

    def __init__(self, root: str, split: str) -> None:
        from roadanomaly.data.cityscapes import CityscapesDataset

        self.dataset = CityscapesDataset(root, split)

    def __len__(self) -> int:
        return len(self.dataset)

    def __call__(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        sample = self.dataset[k]
        return sample.image, sample.train_ids
