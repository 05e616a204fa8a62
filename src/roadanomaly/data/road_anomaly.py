"""Road Anomaly (Lis et al., 2019), original release: ``frame_list.json`` (the image file names),
``frames/<name>.<ext>`` and ``frames/<name>.labels/labels_semantic.png`` (0 = background, 2 = anomaly).
"""

from __future__ import annotations

import json
from pathlib import Path

from roadanomaly.data.bundle import ANOMALY, INLIER, VOID
from roadanomaly.data.io import IMAGE_EXTENSIONS
from roadanomaly.data.paired import LabelMap, PairedFrames
from roadanomaly.errors import UserError, first_line

FRAME_LIST = "frame_list.json"
LABELS = LabelMap({0: INLIER, 1: INLIER, 2: ANOMALY, 255: VOID})


def is_road_anomaly(folder: str | Path) -> bool:
    """Whether ``folder`` holds the original Road Anomaly layout."""
    return (Path(folder) / FRAME_LIST).is_file() and (Path(folder) / "frames").is_dir()


class RoadAnomalyOriginal(PairedFrames):
    """The frames listed in ``frame_list.json``, in its order; named ``RoadAnomaly``."""

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        list_path, frames_dir = folder / FRAME_LIST, folder / "frames"
        try:
            names = json.loads(list_path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise UserError(list_path, f"cannot read the frame list ({first_line(error)})") from None
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise UserError(list_path, "the frame list must be a JSON list of image file names")
        image_paths, label_paths = [], []
        for name in names:
            image = self._image(frames_dir, name, list_path)
            label = frames_dir / f"{image.stem}.labels" / "labels_semantic.png"
            if not label.is_file():
                raise UserError(image, f"no label found (looked for {label})")
            image_paths.append(image)
            label_paths.append(label)
        super().__init__("RoadAnomaly", folder, image_paths, label_paths, LABELS)

    @staticmethod
    def _image(frames_dir: Path, name: str, list_path: Path) -> Path:
        candidates = [frames_dir / name] + [frames_dir / f"{name}{ext}" for ext in IMAGE_EXTENSIONS]
        found = next((p for p in candidates if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS), None)
        if found is None:
            raise UserError(list_path, f"frame {name!r} is listed but {frames_dir / name} does not exist")
        return found
