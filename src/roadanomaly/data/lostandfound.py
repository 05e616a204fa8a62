"""LostAndFound, original layout: ``leftImg8bit/<split>/<scene>/*_leftImg8bit.<ext>`` with
``gtCoarse/<split>/<scene>/*_gtCoarse_labelIds.png``.

Label ids (as the SMIYC toolkit reads them): 1 = free road (in-distribution), 2..200 = obstacles (anomaly), every
other id (0 = unlabelled, 201..255) void.
"""

from __future__ import annotations

from pathlib import Path

from roadanomaly.data.bundle import ANOMALY, INLIER
from roadanomaly.data.paired import LabelMap, PairedFrames
from roadanomaly.errors import UserError

IMAGE_SUFFIX = "_leftImg8bit"
LABEL_SUFFIX = "_gtCoarse_labelIds.png"
IMAGE_FORMATS = (".png", ".webp", ".jpg")
LABELS = LabelMap({1: INLIER, **{obstacle: ANOMALY for obstacle in range(2, 201)}}, others=255)


def lostandfound_splits(root: str | Path) -> list[str]:
    """The splits with both an image and a label folder under ``root``."""
    root = Path(root)
    images, labels = root / "leftImg8bit", root / "gtCoarse"
    if not (images.is_dir() and labels.is_dir()):
        return []
    return sorted(p.name for p in images.iterdir() if p.is_dir() and (labels / p.name).is_dir())


class LostAndFound(PairedFrames):
    """One split of a LostAndFound tree, named ``LostAndFound-<split>``."""

    def __init__(self, root: str | Path, split: str = "test") -> None:
        root = Path(root)
        images_dir, labels_dir = root / "leftImg8bit" / split, root / "gtCoarse" / split
        for needed in (images_dir, labels_dir):
            if not needed.is_dir():
                raise UserError(needed, "folder not found (expected a LostAndFound layout: leftImg8bit/ and gtCoarse/)")
        image_paths = sorted(p for p in images_dir.glob(f"*/*{IMAGE_SUFFIX}.*") if p.suffix.lower() in IMAGE_FORMATS)
        if not image_paths:
            raise UserError(images_dir, f"no images found (expected <scene>/*{IMAGE_SUFFIX}.png)")
        label_paths = []
        for image_path in image_paths:
            stem = image_path.name[: image_path.name.rindex(IMAGE_SUFFIX)]
            label_path = labels_dir / image_path.parent.name / f"{stem}{LABEL_SUFFIX}"
            if not label_path.is_file():
                raise UserError(image_path, f"no label found (looked for {label_path})")
            label_paths.append(label_path)
        super().__init__(f"LostAndFound-{split}", root, image_paths, label_paths, LABELS)
        self.split = split
