"""ERFNet training data: Cityscapes-layout samples read from disk per item, with the published augmentation."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from roadanomaly.data.cityscapes import CityscapesDataset
from roadanomaly.data.io import read_label
from roadanomaly.data.labels import IGNORE_INDEX, NUM_CLASSES, label_ids_to_train_ids


class SegmentationTrainSet(Dataset):
    """Serves (image float [0,1] (3,H,W), train ids long (H,W)) pairs, each decoded from disk when asked for."""

    def __init__(
        self,
        source: CityscapesDataset,
        resize: tuple[int, int] | None = None,
        crop: tuple[int, int] | None = None,
        augment: bool = True,
        max_translate: int = 2,
        limit: int | None = None,
    ) -> None:
        self.source = source
        self.count = len(source) if limit is None else min(limit, len(source))
        self.resize, self.crop, self.augment, self.max_translate = resize, crop, augment, max_translate

    def __len__(self) -> int:
        return self.count

    def _resized(self, image: np.ndarray | None, label: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        if self.resize is not None and label.shape != tuple(self.resize):
            size = (self.resize[1], self.resize[0])
            if image is not None:
                image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
            label = np.asarray(Image.fromarray(label).resize(size, Image.NEAREST))
        return image, label

    def class_frequencies(self) -> np.ndarray:
        """Share of each of the 19 classes among the labelled pixels (one pass over the label files)."""
        counts = np.zeros(NUM_CLASSES, np.int64)
        for path in self.source.label_paths[: self.count]:
            _, label = self._resized(None, label_ids_to_train_ids(read_label(path)))
            counts += np.bincount(label.ravel(), minlength=256)[:NUM_CLASSES]
        return counts / max(1, counts.sum())

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.source[index]
        image, label = self._resized(sample.image, sample.train_ids)
        assert image is not None
        if self.augment:
            image, label = self._augment(image, label)
        x = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).float().div_(255.0)
        return x, torch.from_numpy(np.array(label, copy=True)).long()

    def _augment(self, image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Random flip, translation and crop, drawn from torch's generator (seeded per worker by Lightning)."""
        if torch.rand(()) < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        if self.max_translate > 0:
            dy, dx = (int(v) for v in torch.randint(-self.max_translate, self.max_translate + 1, (2,)))
            image, label = _shift(image, dy, dx, 0), _shift(label, dy, dx, IGNORE_INDEX)
        if self.crop is not None:
            h, w = label.shape
            ch, cw = min(self.crop[0], h), min(self.crop[1], w)
            y, x = int(torch.randint(0, h - ch + 1, ())), int(torch.randint(0, w - cw + 1, ()))
            image, label = image[y : y + ch, x : x + cw], label[y : y + ch, x : x + cw]
        return image, label


def _shift(array: np.ndarray, dy: int, dx: int, fill: int) -> np.ndarray:
    out = np.full_like(array, fill)
    h, w = array.shape[:2]
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = array[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def enet_class_weights(frequencies: np.ndarray, num_outputs: int) -> torch.Tensor:
    """ENet class weighting w_c = 1 / ln(1.02 + p_c); extra output channels (void) get weight 0."""
    weights = np.zeros(num_outputs, np.float32)
    weights[: len(frequencies)] = 1.0 / np.log(1.02 + frequencies)
    return torch.from_numpy(weights)
