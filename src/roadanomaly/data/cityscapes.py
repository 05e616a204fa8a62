"""Cityscapes layout: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with ``gtFine/<split>/<city>/*_gtFine_labelIds.png``.

Label ids are mapped to the 19 train ids (255 = ignore) on load; no pre-conversion step is needed. A label file
holding values that are no Cityscapes label id (34..254) is an error: it is most likely another kind of file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from roadanomaly.data.io import is_listed_file, read_pair
from roadanomaly.data.labels import LABELS, label_ids_to_train_ids
from roadanomaly.errors import UserError

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"
KNOWN_IDS = np.zeros(256, dtype=bool)
KNOWN_IDS[[label.id for label in LABELS]] = True
KNOWN_IDS[255] = True  # what id -1 ('license plate') becomes in an 8-bit file


@dataclass(frozen=True)
class CityscapesSample:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    train_ids: np.ndarray  # (H, W) uint8, 0..18 and 255
    image_path: Path


class CityscapesDataset:
    """One split of a Cityscapes-layout tree (real Cityscapes or SynthRoads)."""

    def __init__(self, root: str | Path, split: str = "val") -> None:
        self.root = Path(root)
        self.split = split
        images_dir = self.root / "leftImg8bit" / split
        labels_dir = self.root / "gtFine" / split
        for needed in (images_dir, labels_dir):
            if not needed.is_dir():
                raise UserError(needed, "folder not found (expected a Cityscapes layout: leftImg8bit/ and gtFine/)")
        self.image_paths = sorted(p for p in images_dir.glob(f"*/*{IMAGE_SUFFIX}") if is_listed_file(p))
        if not self.image_paths:
            raise UserError(images_dir, f"no images found (expected <city>/*{IMAGE_SUFFIX})")
        self.label_paths = []
        for image_path in self.image_paths:
            stem = image_path.name[: -len(IMAGE_SUFFIX)]
            label_path = labels_dir / image_path.parent.name / f"{stem}{LABEL_SUFFIX}"
            if not label_path.is_file():
                raise UserError(image_path, f"no label found (looked for {label_path})")
            self.label_paths.append(label_path)

    def __len__(self) -> int:
        return len(self.image_paths)

    def __getitem__(self, index: int) -> CityscapesSample:
        image_path, label_path = self.image_paths[index], self.label_paths[index]
        image, label_ids = read_pair(image_path, label_path)
        unknown = np.flatnonzero(np.bincount(label_ids.ravel(), minlength=256) * ~KNOWN_IDS)
        if unknown.size:
            raise UserError(label_path, f"unknown Cityscapes label ids {unknown.tolist()} (expected 0..33 as in "
                            f"*{LABEL_SUFFIX})")
        return CityscapesSample(image, label_ids_to_train_ids(label_ids), image_path)
