"""Anomaly benchmark bundles: ``<root>/<Name>/images/*`` paired by file stem with ``<root>/<Name>/labels_masks/*.png``.

After loading, every label uses one convention: 0 in-distribution, 1 anomaly, 255 void. How each benchmark's raw
mask values map onto it is data (:data:`BUNDLE_SPECS`), not code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from roadanomaly.data.io import IMAGE_EXTENSIONS, is_listed_file, read_pair
from roadanomaly.errors import UserError
from roadanomaly.labels import ANOMALY, INLIER, VOID

STANDARD_VALUES: dict[int, int] = {0: INLIER, 1: ANOMALY, 255: VOID}


@dataclass(frozen=True)
class BundleSpec:
    """One benchmark: its canonical name, the folder names it is found under and its raw mask values."""

    name: str
    folders: tuple[str, ...]
    label_values: dict[int, int]
    label_suffixes: tuple[str, ...] = ("", "_labels_semantic")


BUNDLE_SPECS: tuple[BundleSpec, ...] = (
    BundleSpec("RoadAnomaly21", ("RoadAnomaly21",), STANDARD_VALUES),
    BundleSpec("RoadObstacle21", ("RoadObstacle21", "RoadObsticle21"), STANDARD_VALUES),
    BundleSpec("FS_LostFound_full", ("FS_LostFound_full",), STANDARD_VALUES),
    BundleSpec("fs_static", ("fs_static",), STANDARD_VALUES),
    BundleSpec("RoadAnomaly", ("RoadAnomaly",), {0: INLIER, 2: ANOMALY, 255: VOID}),
    BundleSpec("SynthAnomaly", ("SynthAnomaly",), STANDARD_VALUES),
    BundleSpec("SynthObstacle", ("SynthObstacle",), STANDARD_VALUES),
)


def spec_for_folder(folder: str) -> BundleSpec:
    """The spec whose folder names include ``folder`` (case-insensitive); unknown folders use 0/1/255 masks."""
    for spec in BUNDLE_SPECS:
        if folder.lower() in (f.lower() for f in spec.folders):
            return spec
    return BundleSpec(folder, (folder,), STANDARD_VALUES)


@dataclass(frozen=True)
class Sample:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    label: np.ndarray  # (H, W) uint8 in {0, 1, 255}
    image_path: Path
    label_path: Path


class AnomalyBundle:
    """One benchmark folder; pairs each image with its mask by stem, checks sizes and values on load."""

    def __init__(self, folder: str | Path, spec: BundleSpec | None = None) -> None:
        self.folder = Path(folder)
        self.spec = spec or spec_for_folder(self.folder.name)
        images_dir, labels_dir = self.folder / "images", self.folder / "labels_masks"
        for needed in (images_dir, labels_dir):
            if not needed.is_dir():
                raise UserError(needed, "folder not found (expected <Name>/images and <Name>/labels_masks)")
        self.image_paths = sorted(p for p in images_dir.iterdir() if is_listed_file(p))
        if not self.image_paths:
            raise UserError(images_dir, f"no images found (looked for {', '.join(IMAGE_EXTENSIONS)} files)")
        _check_unique_stems(self.image_paths)
        labels = {p.stem: p for p in labels_dir.iterdir() if is_listed_file(p, (".png",))}
        self.label_paths = [self._pair(p, labels, labels_dir) for p in self.image_paths]
        self._lut, self._allowed = _value_table(self.spec.label_values)

    @property
    def name(self) -> str:
        return self.spec.name

    def _pair(self, image_path: Path, labels: dict[str, Path], labels_dir: Path) -> Path:
        """The one label of ``image_path``; none, or two (``a.png`` and ``a_labels_semantic.png``), is an error."""
        matches = [labels[key] for key in (image_path.stem + s for s in self.spec.label_suffixes) if key in labels]
        if len(matches) > 1:
            raise UserError(image_path, f"two labels match it: {matches[0].name} and {matches[1].name} (keep one)")
        if matches:
            return matches[0]
        looked = ", ".join(f"{image_path.stem}{s}.png" for s in self.spec.label_suffixes)
        stem = image_path.stem
        others = sorted(p.name for p in labels_dir.iterdir() if p.stem == stem and p.suffix.lower() != ".png")
        hint = f"; found {', '.join(others)}, but labels must be .png files" if others else ""
        raise UserError(image_path, f"no label found in {labels_dir} (looked for {looked}{hint})")

    def __len__(self) -> int:
        return len(self.image_paths)

    def __getitem__(self, index: int) -> Sample:
        image_path, label_path = self.image_paths[index], self.label_paths[index]
        image, raw = read_pair(image_path, label_path)
        counts = np.bincount(raw.ravel(), minlength=256)
        unknown = np.flatnonzero(counts * ~self._allowed)
        if unknown.size:
            allowed = sorted(self.spec.label_values)
            raise UserError(label_path, f"unknown label values {unknown.tolist()} (expected {allowed})")
        return Sample(image, self._lut[raw], image_path, label_path)


def _check_unique_stems(paths: list[Path]) -> None:
    """Images are paired with labels by stem: two images with one stem (``a.png``, ``a.jpg``) are ambiguous."""
    seen: dict[str, Path] = {}
    for path in paths:
        other = seen.setdefault(path.stem, path)
        if other is not path:
            raise UserError(path, f"has the same stem as {other.name}: images are paired with their labels by "
                            "stem, so keep only one of the two")


def _value_table(values: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    lut = np.full(256, VOID, dtype=np.uint8)
    allowed = np.zeros(256, dtype=bool)
    for raw, mapped in values.items():
        lut[raw], allowed[raw] = mapped, True
    return lut, allowed


def discover_bundles(root: str | Path, names: list[str] | None = None) -> list[AnomalyBundle]:
    """Every benchmark folder under ``root`` (those with ``images/``), or the ones ``names`` asks for, in that order."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(root, "data folder not found")
    found = {p.name: p for p in sorted(root.iterdir()) if (p / "images").is_dir()}
    if not found:
        raise UserError(root, "no benchmark folders found (expected <root>/<Name>/images and labels_masks)")
    if names is None:
        return [AnomalyBundle(path) for path in found.values()]
    chosen = []
    for name in names:
        folder = _resolve(name, found)
        if folder is None:
            raise UserError(root, f"dataset {name!r} not found (available: {', '.join(found)})")
        chosen.append(AnomalyBundle(found[folder]))
    return chosen


def _resolve(name: str, found: dict[str, Path]) -> str | None:
    wanted = {name.lower()}
    for spec in BUNDLE_SPECS:
        if name.lower() in {spec.name.lower(), *(f.lower() for f in spec.folders)}:
            wanted |= {spec.name.lower(), *(f.lower() for f in spec.folders)}
    return next((folder for folder in found if folder.lower() in wanted), None)
