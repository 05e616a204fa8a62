"""SegmentMeIfYouCan download layout: ``dataset_AnomalyTrack/`` and ``dataset_ObstacleTrack/``, each with
``images/<frame>.<ext>`` and ``labels_masks/<frame>_labels_semantic.png``.

Masks use 0 = in-distribution (road on the obstacle track), 1 = anomaly / obstacle, 255 = void. SMIYC publishes
labels for the validation frames only: images without a mask are left out (listed in ``unlabelled``).
"""

from __future__ import annotations

from pathlib import Path

from roadanomaly.data.bundle import STANDARD_VALUES
from roadanomaly.data.io import is_listed_file
from roadanomaly.data.paired import LabelMap, PairedFrames
from roadanomaly.errors import UserError

#: Download folder name -> dataset name.
SMIYC_TRACKS: dict[str, str] = {"dataset_AnomalyTrack": "AnomalyTrack", "dataset_ObstacleTrack": "ObstacleTrack"}
LABEL_SUFFIX = "_labels_semantic.png"
LABELS = LabelMap(dict(STANDARD_VALUES))


def smiyc_track_name(folder: str | Path) -> str | None:
    """The dataset name of a SMIYC track folder (case-insensitive), or None."""
    name = Path(folder).name.lower()
    return next((track for download, track in SMIYC_TRACKS.items() if download.lower() == name), None)


class SmiycTrack(PairedFrames):
    """One SMIYC track folder; only its frames with a mask are evaluated."""

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        name = smiyc_track_name(folder)
        if name is None:
            raise UserError(folder, f"not a SMIYC track folder (expected one of {', '.join(SMIYC_TRACKS)})")
        images_dir, labels_dir = folder / "images", folder / "labels_masks"
        for needed in (images_dir, labels_dir):
            if not needed.is_dir():
                raise UserError(needed, "folder not found (expected images/ and labels_masks/)")
        images = sorted(p for p in images_dir.iterdir() if is_listed_file(p))
        if not images:
            raise UserError(images_dir, "no images found")
        pairs = [(image, labels_dir / f"{image.stem}{LABEL_SUFFIX}") for image in images]
        labelled = [(image, label) for image, label in pairs if label.is_file()]
        self.unlabelled = [image for image, label in pairs if not label.is_file()]
        if not labelled:
            raise UserError(labels_dir, f"no masks found for the images (expected <frame>{LABEL_SUFFIX})")
        super().__init__(name, folder, [i for i, _ in labelled], [m for _, m in labelled], LABELS)
