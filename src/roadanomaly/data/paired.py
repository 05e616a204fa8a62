"""Images paired with label maps whose raw values are mapped onto 0 (in-distribution), 1 (anomaly), 255 (void).

The shared reading and checking behind the benchmark layouts that are not bundles (LostAndFound, SMIYC, Road
Anomaly): each layout only finds its files and says how its raw label values map (a :class:`LabelMap`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from roadanomaly.data.bundle import VOID, Sample
from roadanomaly.data.io import read_pair
from roadanomaly.errors import UserError


@dataclass(frozen=True)
class LabelMap:
    """Raw label value -> 0/1/255. Values not listed become ``others``; ``others=None`` makes them an error."""

    values: dict[int, int]
    others: int | None = None
    lut: np.ndarray = field(init=False, repr=False, compare=False)
    allowed: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lut = np.full(256, VOID if self.others is None else self.others, dtype=np.uint8)
        allowed = np.full(256, self.others is not None)
        for raw, mapped in self.values.items():
            lut[raw], allowed[raw] = mapped, True
        object.__setattr__(self, "lut", lut)
        object.__setattr__(self, "allowed", allowed)

    def apply(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """The mapped labels of ``raw`` (uint8); ``UserError`` naming ``path`` for values that are not allowed."""
        if not self.allowed.all():
            unknown = np.flatnonzero(np.bincount(raw.ravel(), minlength=256) * ~self.allowed)
            if unknown.size:
                raise UserError(path, f"unknown label values {unknown.tolist()} (expected {sorted(self.values)})")
        return self.lut[raw]


class PairedFrames:
    """A dataset of (image, label) file pairs: ``name``, ``folder``, ``len()`` and ``[i] -> Sample``."""

    def __init__(self, name: str, folder: Path, image_paths: Sequence[Path], label_paths: Sequence[Path],
                 label_map: LabelMap) -> None:
        if not image_paths:
            raise UserError(folder, "no labelled images found")
        self.name, self.folder = name, Path(folder)
        self.image_paths, self.label_paths = list(image_paths), list(label_paths)
        self.label_map = label_map

    def __len__(self) -> int:
        return len(self.image_paths)

    def __getitem__(self, index: int) -> Sample:
        image_path, label_path = self.image_paths[index], self.label_paths[index]
        image, raw = read_pair(image_path, label_path)
        return Sample(image, self.label_map.apply(raw, label_path), image_path, label_path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {str(self.folder)!r}, {len(self)} images)"
