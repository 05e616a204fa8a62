"""Builders for tiny data trees and checkpoints in the exact real layouts (used by several test modules)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from roadanomaly.data.labels import TRAIN_ID_TO_ID
from roadanomaly.models.erfnet import ERFNet

# folder name, image extension, raw value used for "anomaly"
BUNDLE_LAYOUT: tuple[tuple[str, str, int], ...] = (
    ("RoadAnomaly21", ".png", 1),
    ("RoadObsticle21", ".webp", 1),
    ("FS_LostFound_full", ".png", 1),
    ("fs_static", ".jpg", 1),
    ("RoadAnomaly", ".jpg", 2),
)


def save_image(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {"lossless": True} if path.suffix == ".webp" else {}
    Image.fromarray(array).save(path, **kwargs)


def random_mask(rng: np.random.Generator, size: tuple[int, int], anomaly_value: int, with_void: bool) -> np.ndarray:
    h, w = size
    mask = np.zeros(size, np.uint8)
    y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
    mask[y : y + rng.integers(3, 8), x : x + rng.integers(3, 8)] = anomaly_value
    if with_void:
        mask[: h // 6] = 255
    return mask


def make_bundle(root: Path, size: tuple[int, int] = (32, 48), images: int = 3, seed: int = 0) -> Path:
    """``root/<Name>/images/*`` and ``labels_masks/*.png`` for the five common validation folders."""
    rng = np.random.default_rng(seed)
    for name, ext, anomaly_value in BUNDLE_LAYOUT:
        for i in range(images):
            stem = f"{name.lower()}_{i:04d}"
            save_image(root / name / "images" / f"{stem}{ext}", rng.integers(0, 256, (*size, 3), dtype=np.uint8))
            mask = random_mask(rng, size, anomaly_value, with_void=anomaly_value == 1)
            save_image(root / name / "labels_masks" / f"{stem}.png", mask)
    return root


def make_cityscapes(root: Path, split: str = "val", size: tuple[int, int] = (32, 64), images: int = 2,
                    seed: int = 0) -> Path:
    """A Cityscapes tree: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` and ``gtFine/...*_gtFine_labelIds.png``."""
    rng = np.random.default_rng(seed)
    for i in range(images):
        city = ("aachen", "bremen")[i % 2]
        stem = f"{city}_{i:06d}_000019"
        save_image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
                   rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        train_ids = rng.integers(0, 19, size)
        label_ids = TRAIN_ID_TO_ID[train_ids]
        label_ids[:2] = 0  # unlabeled -> ignore
        save_image(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", label_ids.astype(np.uint8))
    return root


def make_erfnet_checkpoint(path: Path, num_classes: int = 20, prefix: str = "module.", seed: int = 0) -> ERFNet:
    """Save a randomly initialised ERFNet (with non-trivial BN statistics) as the published checkpoint does."""
    torch.manual_seed(seed)
    model = ERFNet(num_classes)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({prefix + k: v for k, v in model.state_dict().items()}, path)
    return model.eval()


def make_learnable_cityscapes(root: Path, splits: dict[str, int], size: tuple[int, int] = (32, 64),
                              seed: int = 0) -> Path:
    """A Cityscapes tree whose classes are learnable: horizontal bands, each class with its own colour."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (19, 3))
    for split, count in splits.items():
        for i in range(count):
            classes = rng.choice(19, size=4, replace=False)
            bounds = np.sort(rng.integers(1, size[0], 3))
            rows = np.searchsorted(bounds, np.arange(size[0]), side="right")
            train_ids = np.repeat(classes[rows][:, None], size[1], axis=1)
            image = palette[train_ids] + rng.integers(-20, 21, (*size, 3))
            stem = f"toyville_{i:06d}_000019"
            save_image(root / "leftImg8bit" / split / "toyville" / f"{stem}_leftImg8bit.png",
                       np.clip(image, 0, 255).astype(np.uint8))
            save_image(root / "gtFine" / split / "toyville" / f"{stem}_gtFine_labelIds.png",
                       TRAIN_ID_TO_ID[train_ids].astype(np.uint8))
    return root
